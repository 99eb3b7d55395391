//! `/v1/sessions`: create, name, list, read, send input, decide approvals,
//! unpark.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Path, Query};
use super::{AppState, Caller};
use crate::journal::{ContentBlock, EventBody, LogId, LogInfo, RequestedEffect, Sender};
use crate::session::{Activity, Host};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    guest: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    config: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutBody {
    guest: String,
    #[serde(default)]
    config: Option<Value>,
}

/// A session as the API shows it.
pub(crate) fn view(info: &LogInfo) -> Value {
    let approvals: Vec<Value> = info
        .open
        .iter()
        .filter(|o| o.awaiting_approval)
        .map(|o| match &o.effect {
            RequestedEffect::Tool(call) => json!({"key": o.key, "tool": call}),
            RequestedEffect::Ask(question) => json!({"key": o.key, "question": question.text}),
            _ => json!({"key": o.key}),
        })
        .collect();
    json!({
        "id": info.id,
        "name": info.name,
        "guest": info.guest,
        "status": info.status,
        "head": info.next_seq.checked_sub(1),
        "events": info.next_seq,
        "created_at": info.created_at,
        "pending_approvals": approvals,
    })
}

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
    Ok((StatusCode::CREATED, Json(view(&info))).into_response())
}

pub(crate) async fn put_by_name(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let body: PutBody = caller.json(body).await?;
    if let Ok(info) = state.host.resolve(&caller.tenant, &name).await {
        return Ok(Json(view(&info)).into_response());
    }
    match create_for(&state.host, &caller, &body.guest, Some(&name), body.config).await {
        Ok(info) => Ok((StatusCode::CREATED, Json(view(&info))).into_response()),
        // Created meanwhile by another request: it is there either way.
        Err(_) if state.host.resolve(&caller.tenant, &name).await.is_ok() => {
            let info = state.host.resolve(&caller.tenant, &name).await?;
            Ok(Json(view(&info)).into_response())
        }
        Err(e) => Err(e),
    }
}

/// Sessions in a page of `GET /v1/sessions` when `limit` is not given.
const LIST_PAGE_DEFAULT: usize = 100;
/// The most sessions in a page of `GET /v1/sessions`.
const LIST_PAGE_MAX: usize = 1000;

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    after: Option<LogId>,
    limit: Option<usize>,
}

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
    let sessions: Vec<Value> = page.logs.iter().map(view).collect();
    Ok(Json(json!({"sessions": sessions, "next": page.next, "total": total})).into_response())
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let info = state.host.resolve(&caller.tenant, &id).await?;
    Ok(Json(view(&info)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InputBody {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    content: Option<Vec<ContentBlock>>,
}

#[derive(Deserialize)]
pub(crate) struct InputQuery {
    wait: Option<String>,
}

/// Compactions a `wait=idle` answer follows, one after another, at most.
const MAX_CONTINUATIONS: usize = 16;

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
        return Ok((StatusCode::ACCEPTED, Json(json!({ "seq": seq }))).into_response());
    }
    // A session that compacts itself goes on in a new log (the old one ends
    // `continued`, the name moves): follow it, and answer for the session as
    // it is named now, with the outputs of every log the turn went through.
    let mut outputs = Vec::new();
    let (mut log, mut from) = (log, seq);
    let mut activity = host.wait_idle_after(log, seq, Duration::ZERO).await?;
    let mut hops = 0;
    loop {
        let mut continued = None;
        loop {
            let page = host.journal().read(log, from, 1024).await?;
            let Some(last) = page.last() else { break };
            from = last.event.seq + 1;
            for stored in &page {
                match &stored.event.body {
                    EventBody::Output { key, content } => outputs.push(
                        json!({"seq": stored.event.seq, "key": key, "content": content,
                        "text": crate::journal::plain_text(content)}),
                    ),
                    EventBody::Continued { log } => continued = LogId::parse_str(log).ok(),
                    _ => {}
                }
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
        Activity::Idle => "idle",
        Activity::WaitingApproval => "waiting-approval",
        Activity::Sleeping => "sleeping",
        Activity::Finished => "finished",
        Activity::Failed => "failed",
        Activity::Stopped => "stopped",
    };
    Ok(Json(json!({"seq": seq, "status": status, "outputs": outputs})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecideBody {
    allow: bool,
    #[serde(default)]
    reason: Option<String>,
}

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
    Ok(Json(json!({ "seq": seq })).into_response())
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ForkBody {
    #[serde(default)]
    at: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    guest: Option<String>,
    #[serde(default)]
    config: Option<Value>,
}

/// `POST /v1/sessions/ID/fork`: a new session sharing the parent's log up to
/// `at` (its head by default), copying no event. No body means no options.
pub(crate) async fn fork(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let body: ForkBody = caller.json_or_default(body).await?;
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
    Ok((StatusCode::CREATED, Json(view(&info))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnparkBody {
    #[serde(default)]
    skip: Option<u64>,
    reason: String,
}

/// `POST /v1/sessions/ID/unpark`: let a session whose guest failed go on,
/// skipping the input at `skip` for good when given (session::unpark).
/// Made by the session's tenant, like every write; 409 `not_parked` when it
/// is not parked, 400 when `skip` is not an input of its log.
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
    Ok(Json(json!({ "seq": seq })).into_response())
}
