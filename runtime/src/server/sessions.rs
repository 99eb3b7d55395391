//! `/v1/sessions`: create, name, list, read, send input, decide approvals,
//! unpark.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::bodies::{
    Appended, CreateBody, DecideBody, ForkBody, InputBody, InputQuery, ListQuery, PutBody,
    SessionPage, SessionView, Turn, TurnOutput, UnparkBody,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{Path, Query};
use super::{AppState, Caller};
use crate::journal::{ContentBlock, EventBody, LogId, LogInfo, LogStatus, Sender};
use crate::session::{Activity, Host, SessionError};

async fn create_for(
    host: &Host,
    caller: &Caller,
    guest: &str,
    name: Option<&str>,
    config: Option<Value>,
) -> Result<LogInfo, ApiError> {
    // The tenant's session limit is checked by the journal, in the
    // transaction that writes the session (429 `limit`).
    let guest = host.guest(&caller.tenant, guest).await?;
    let config = config.unwrap_or_else(|| json!({}));
    let id = host
        .create_session(&caller.tenant, name, guest, config)
        .await?;
    Ok(host.resolve(&caller.tenant, &id.to_string()).await?)
}

#[utoipa::path(
    post, path = "/v1/sessions", tag = "sessions",
    request_body = CreateBody,
    responses(
        (status = 201, description = "Created", body = SessionView),
        (status = 404, description = "`unknown_guest`", body = ErrorBody),
        (status = 409, description = "`name_taken`", body = ErrorBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
        (status = 429, description = "`limit`: the tenant holds its `sessions`", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let body: CreateBody = caller.json(body).await?;
    let info = create_for(
        &state.host,
        &caller,
        &body.guest,
        body.name.as_deref(),
        body.config,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(SessionView::of(&info))).into_response())
}

#[utoipa::path(
    put, path = "/v1/sessions/by-name/{*name}", tag = "sessions",
    params(("name" = String, Path, description = "The session's name (it may hold `/`).")),
    request_body = PutBody,
    responses(
        (status = 200, description = "It existed", body = SessionView),
        (status = 201, description = "Created", body = SessionView),
        (status = 404, description = "`unknown_guest`", body = ErrorBody),
        (status = 409, description = "`name_taken`", body = ErrorBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
        (status = 429, description = "`limit`: the tenant holds its `sessions`", body = ErrorBody),
    )
)]
pub(crate) async fn put_by_name(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let body: PutBody = caller.json(body).await?;
    // Refused whether or not the session exists, like every malformed body.
    if body.config.as_ref().is_some_and(|c| !c.is_object()) {
        return Err(SessionError::ConfigNotObject { of: "session" }.into());
    }
    if let Ok(info) = state.host.resolve(&caller.tenant, &name).await {
        return Ok(Json(SessionView::of(&info)).into_response());
    }
    match create_for(&state.host, &caller, &body.guest, Some(&name), body.config).await {
        Ok(info) => Ok((StatusCode::CREATED, Json(SessionView::of(&info))).into_response()),
        // Created meanwhile by another request: it is there either way.
        Err(_) if state.host.resolve(&caller.tenant, &name).await.is_ok() => {
            let info = state.host.resolve(&caller.tenant, &name).await?;
            Ok(Json(SessionView::of(&info)).into_response())
        }
        Err(e) => Err(e),
    }
}

/// Sessions in a page of `GET /v1/sessions` when `limit` is not given.
const LIST_PAGE_DEFAULT: usize = 100;
/// The most sessions in a page of `GET /v1/sessions`.
const LIST_PAGE_MAX: usize = 1000;

#[utoipa::path(
    get, path = "/v1/sessions", tag = "sessions",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of the tenant's sessions", body = SessionPage),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let limit = query
        .limit
        .unwrap_or(LIST_PAGE_DEFAULT)
        .clamp(1, LIST_PAGE_MAX);
    let journal = state.host.journal();
    let page = journal
        .list_page(&caller.tenant, query.after, limit)
        .await?;
    let total = journal.count(&caller.tenant).await?.logs;
    let sessions = page.logs.iter().map(SessionView::of).collect();
    Ok(Json(SessionPage {
        sessions,
        next: page.next,
        total,
    })
    .into_response())
}

#[utoipa::path(
    get, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "The session's id, or a name that reaches it.")),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let info = state.host.resolve(&caller.tenant, &id).await?;
    Ok(Json(SessionView::of(&info)).into_response())
}

/// Compactions a `wait=idle` answer follows, one after another, at most.
const MAX_CONTINUATIONS: usize = 16;

#[utoipa::path(
    post, path = "/v1/sessions/{id}/input", tag = "sessions",
    params(("id" = String, Path, description = "The session's id, or a name that reaches it."), InputQuery),
    request_body = InputBody,
    responses(
        (status = 200, description = "With `?wait=idle`: the turn is over", body = Turn),
        (status = 202, description = "The input is durable", body = Appended),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`finished`, `parked`, `conflict`", body = ErrorBody),
        (status = 413, description = "`too_large`, `event_too_large`", body = ErrorBody),
        (status = 429, description = "`busy`, `limit`, `memory_budget`", body = ErrorBody),
    )
)]
pub(crate) async fn input(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<InputQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let log = state.host.locate(&caller.tenant, &id).await?;
    let body: InputBody = caller.json(body).await?;
    let content = match (body.text, body.content) {
        (Some(text), None) => vec![ContentBlock::text(text)],
        (None, Some(content)) if !content.is_empty() => content,
        _ => {
            return Err(ApiError::bad_request(
                r#"give either {"text": "..."} or {"content": [blocks]}"#,
            ));
        }
    };
    let wait = match query.wait.as_deref() {
        None => false,
        Some("idle") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "wait={other:?}: the only value is wait=idle"
            )));
        }
    };
    let from = Sender::Principal(caller.tenant.clone());
    let host = &state.host;
    let seq = host.input(log, from, content).await?;
    if !wait {
        return Ok((StatusCode::ACCEPTED, Json(Appended { seq })).into_response());
    }
    // A session that compacts itself goes on in a new log (the old one ends
    // `continued`, the name moves): follow it, and answer for the session as
    // it is named now, with the outputs of every log the turn went through,
    // up to `max_answer_bytes` of them: the rest is paged (`more`).
    let cap = host.config().server.max_answer_bytes;
    let mut answer = Answer::new(cap);
    let (mut log, mut from) = (log, seq);
    let mut activity = host.wait_idle_after(log, seq, Duration::ZERO).await?;
    let mut hops = 0;
    loop {
        let mut continued = None;
        loop {
            let page = host.journal().read(log, from, ANSWER_PAGE).await?;
            let Some(last) = page.last() else { break };
            from = last.event.seq + 1;
            for stored in &page {
                match &stored.event.body {
                    EventBody::Output { key, content } => answer.push(
                        log,
                        TurnOutput {
                            seq: stored.event.seq,
                            key: key.clone(),
                            content: content.clone(),
                            text: crate::journal::plain_text(content),
                        },
                    ),
                    EventBody::Continued { log } => continued = LogId::parse_str(log).ok(),
                    _ => {}
                }
            }
            if answer.next.is_some() {
                // Full: only a `continued`, always a log's last event, is
                // still wanted from this log.
                let head = host.journal().info(log).await?.map_or(from, |i| i.next_seq);
                from = from.max(head.saturating_sub(1));
            }
        }
        match continued {
            Some(next) if activity == Activity::Finished && hops < MAX_CONTINUATIONS => {
                hops += 1;
                (log, from) = (next, 0);
                activity = host.wait_idle(log, Duration::ZERO).await?;
            }
            _ => break,
        }
    }
    // The names `GET /v1/sessions/ID` gives (the log's status).
    let status = match activity {
        Activity::Idle => LogStatus::Idle,
        Activity::WaitingApproval => LogStatus::WaitingApproval,
        Activity::Sleeping => LogStatus::Sleeping,
        Activity::Finished => LogStatus::Finished,
        Activity::Failed => LogStatus::Failed,
        Activity::Stopped => LogStatus::Stopped,
    };
    Ok(Json(Turn {
        seq,
        status,
        more: answer.next.is_some(),
        next_seq: answer.next.map(|(_, seq)| seq),
        next_log: answer.next.map(|(log, _)| log.to_string()),
        outputs: answer.outputs,
    })
    .into_response())
}

/// Events a `wait=idle` answer reads at a time.
const ANSWER_PAGE: usize = 64;

/// The outputs of a `wait=idle` answer, up to `cap` bytes of their JSON;
/// the first left out is where the rest is read.
struct Answer {
    outputs: Vec<TurnOutput>,
    bytes: usize,
    cap: usize,
    /// The log and seq of the first output left out.
    next: Option<(LogId, u64)>,
}

impl Answer {
    fn new(cap: usize) -> Answer {
        Answer {
            outputs: Vec::new(),
            bytes: 0,
            cap,
            next: None,
        }
    }

    /// Take `output` of `log`, unless the answer is full: then it and every
    /// output after it are left out, to be read from the log.
    fn push(&mut self, log: LogId, output: TurnOutput) {
        if self.next.is_some() {
            return;
        }
        let bytes = serde_json::to_vec(&output).map_or(usize::MAX, |json| json.len());
        match self.bytes.checked_add(bytes) {
            Some(total) if total <= self.cap => {
                self.bytes = total;
                self.outputs.push(output);
            }
            _ => self.next = Some((log, output.seq)),
        }
    }
}

#[utoipa::path(
    post, path = "/v1/sessions/{id}/approvals/{key}", tag = "sessions",
    params(("id" = String, Path, description = "The session's id, or a name that reaches it."), ("key" = String, Path, description = "The pending effect's key.")),
    request_body = DecideBody,
    responses(
        (status = 200, description = "The decision is durable", body = Appended),
        (status = 404, description = "`not_found`, `no_pending_approval`", body = ErrorBody),
        (status = 409, description = "`already_decided`, `conflict`", body = ErrorBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
        (status = 429, description = "`memory_budget`", body = ErrorBody),
    )
)]
pub(crate) async fn decide(
    State(state): State<AppState>,
    Path((id, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let log = state.host.locate(&caller.tenant, &id).await?;
    let body: DecideBody = caller.json(body).await?;
    let by = caller.tenant.clone();
    let seq = state
        .host
        .decide(log, &key, body.allow, &by, body.reason)
        .await?;
    Ok(Json(Appended { seq }).into_response())
}

/// `POST /v1/sessions/ID/fork`: a new session sharing the parent's log up to
/// `at` (its head by default), copying no event. No body means no options.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/fork", tag = "sessions",
    params(("id" = String, Path, description = "The session's id, or a name that reaches it.")),
    request_body(content = Option<ForkBody>, description = "Optional: no body means every default."),
    responses(
        (status = 201, description = "The new session", body = SessionView),
        (status = 404, description = "`not_found`, `unknown_guest`", body = ErrorBody),
        (status = 409, description = "`name_taken`", body = ErrorBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
        (status = 429, description = "`limit`: the tenant holds its `sessions`", body = ErrorBody),
    )
)]
pub(crate) async fn fork(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    // No body, or `null`, is every default.
    let body: ForkBody = caller
        .json_or_default::<Option<ForkBody>>(body)
        .await?
        .unwrap_or_default();
    let guest = match &body.guest {
        Some(guest) => Some(state.host.guest(&caller.tenant, guest).await?),
        None => None,
    };
    let options = crate::session::ForkOptions {
        at: body.at,
        name: body.name,
        guest,
        config: body.config,
    };
    let id = state.host.fork(&caller.tenant, &id, options).await?;
    let info = state.host.resolve(&caller.tenant, &id.to_string()).await?;
    Ok((StatusCode::CREATED, Json(SessionView::of(&info))).into_response())
}

/// `POST /v1/sessions/ID/unpark`: let a session whose guest failed go on,
/// skipping the input at `skip` for good when given (session::unpark).
/// Made by the session's tenant, like every write; 409 `not_parked` when it
/// is not parked, 400 when `skip` is not an input of its log.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/unpark", tag = "sessions",
    params(("id" = String, Path, description = "The session's id, or a name that reaches it.")),
    request_body = UnparkBody,
    responses(
        (status = 200, description = "`unparked` is durable", body = Appended),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`not_parked`, `conflict`", body = ErrorBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
    )
)]
pub(crate) async fn unpark(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let body: UnparkBody = caller.json(body).await?;
    let by = caller.tenant.clone();
    let seq = state
        .host
        .unpark(&caller.tenant, &id, body.skip, &by, &body.reason)
        .await?;
    Ok(Json(Appended { seq }).into_response())
}
