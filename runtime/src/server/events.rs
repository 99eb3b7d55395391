//! `/v1/sessions/ID/events`: a JSON page of the log, or Server-Sent Events
//! that follow it live.
//!
//! Invariants: each SSE event's `id` is its seq, and a stream resumed with
//! `Last-Event-ID: N` starts at N+1: no gap, no duplicate; an N the log does
//! not have is a 400, never a wrap to 0. A quiet stream sends a keep-alive
//! comment every `[server] sse_keep_alive_ms`, below the idle timeout, so
//! the connection is never closed as idle while its client reads. The
//! stream reads the journal (durable events only) and waits on the log's
//! head between reads; it never needs, or wakes, the session's guest. Every
//! follower of a log in this host shares one read and one encoding of each
//! new event (session::feed). While a model call streams, its deltas come as
//! `event: delta` without an `id`: they are not in the log, so they neither
//! advance nor break a resume. With `?events=message` no event has an
//! `event:` name (each is a plain `message`, its kind in its data), ids and
//! resumption unchanged.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use super::AppState;
use super::bodies::{EventNames, EventPage, EventsQuery};
use super::error::{ApiError, ErrorBody};
use super::extract::{Path, Query};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast;

use crate::effects::Live;
use crate::journal::{LogId, to_jsonl};
use crate::session::{FedEvent, Follower, Host};

/// Events one read of the journal takes.
const PAGE: usize = 256;

/// A page of the log as JSON, or with `Accept: text/event-stream` Server-Sent
/// Events that follow it live (OpenAPI 3.1 describes the stream only as
/// text: one SSE event per log event, `id` its seq, `event` its kind, `data`
/// its JSONL line; `event: delta` without `id` for a model's streamed text;
/// with `?events=message`, no `event` name at all).
#[utoipa::path(
    get, path = "/v1/sessions/{id}/events", tag = "sessions",
    params(
        ("id" = String, Path, description = "The session's id, or a name that reaches it."),
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header,
            description = "With `Accept: text/event-stream`: resume after this seq."),
    ),
    responses(
        (status = 200,
            description = "A page of the log (`application/json`), or with \
                `Accept: text/event-stream` Server-Sent Events from `from` that follow the \
                log live: each event's `id` is its seq, its `event` its kind and its `data` \
                its line as in the JSON page; `event: delta` (no `id`) carries a model's \
                streamed text, which is not in the log; a comment line every \
                `sse_keep_alive_ms` keeps a quiet stream open. With `?events=message` \
                no event carries an `event` name (each is a plain `message`, for \
                `EventSource.onmessage`): the kind is the `kind` of the data, and a \
                delta's data is `{\"kind\":\"delta\",\"delta\":{…}}`.",
            content(
                (EventPage = "application/json"),
                (String = "text/event-stream"),
            )
        ),
        (status = 400, description = "`bad_request`: a `Last-Event-ID` that is not a seq of the log", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub(crate) async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let info = state.host.resolve(&caller.tenant, &id).await?;
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !wants_stream {
        let from = query.from.unwrap_or(0);
        let limit = query.limit.unwrap_or(100).clamp(1, 1000);
        let page = state.host.journal().read(info.id, from, limit).await?;
        let next = page.last().map_or(from, |e| e.event.seq + 1);
        // The lines are the log format itself: no second serialization.
        let lines: Vec<String> = page.iter().map(to_jsonl).collect();
        let body = format!("{{\"events\":[{}],\"next\":{next}}}", lines.join(","));
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(resume_after(value, info.next_seq)?),
        None => None,
    };
    let from = resume.or(query.from).unwrap_or(0);
    let follow = Follow {
        host: state.host.clone(),
        next: from,
        buffer: VecDeque::new(),
        follower: state.host.follow(info.id).await?,
        log: info.id,
        closing: state.closing.clone(),
        deltas: None,
        names: query.events.unwrap_or_default(),
    };
    let stream = futures_util::stream::unfold(follow, |mut follow| async move {
        let event = follow.next_event().await?;
        Some((Ok::<_, Infallible>(event), follow))
    });
    let keep_alive = Duration::from_millis(state.host.config().server.sse_keep_alive_ms);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(keep_alive))
        .into_response())
}

/// The seq a stream resumed with `Last-Event-ID: value` starts at: the one
/// after it. Only a seq the log has is taken: a larger one (up to
/// `u64::MAX`, whose successor does not exist) was never sent by this log,
/// and following from it would skip events or wait forever.
fn resume_after(value: &HeaderValue, next_seq: u64) -> Result<u64, ApiError> {
    let shown = String::from_utf8_lossy(value.as_bytes()).into_owned();
    let seq = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| ApiError::bad_request(format!("Last-Event-ID {shown:?} is not a seq")))?;
    if seq >= next_seq {
        return Err(ApiError::bad_request(format!(
            "Last-Event-ID {seq} is not a seq of this log: its last event is {}",
            next_seq.saturating_sub(1)
        )));
    }
    Ok(seq + 1)
}

/// A live reader of one log.
struct Follow {
    host: Arc<Host>,
    log: LogId,
    next: u64,
    buffer: VecDeque<Arc<FedEvent>>,
    follower: Follower,
    closing: tokio::sync::watch::Receiver<bool>,
    /// Deltas of the session's streaming model calls, while it is resident.
    deltas: Option<broadcast::Receiver<Live>>,
    /// How events are named.
    names: EventNames,
}

impl Follow {
    /// The next durable event, waiting for it if need be; `None` ends the
    /// stream (the server or host is going away, or the journal failed).
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if *self.closing.borrow() {
                return None;
            }
            if let Some(fed) = self.buffer.pop_front() {
                // The JSONL line names its kind already: a `message` loses nothing.
                let event = Event::default().id(fed.seq.to_string()).data(&fed.json);
                return Some(match self.names {
                    EventNames::Kind => event.event(fed.kind),
                    EventNames::Message => event,
                });
            }
            // Deltas stream before the event that logs the whole answer is
            // committed: those already sent go out before the journal is read
            // again, so that an observer never sees an answer's deltas after
            // the answer.
            if let Some(deltas) = &mut self.deltas {
                match deltas.try_recv() {
                    Ok(delta) => return Some(delta_event(&delta, self.names)),
                    Err(broadcast::error::TryRecvError::Closed) => self.deltas = None,
                    Err(_) => {}
                }
            }
            // Mark the head as seen before reading, so that an append after
            // this read wakes the wait below.
            self.follower.head();
            match self
                .host
                .read_followed(&self.follower, self.next, PAGE)
                .await
            {
                Ok(page) if !page.is_empty() => {
                    self.next = page.last().map_or(self.next, |e| e.seq + 1);
                    self.buffer.extend(page);
                }
                Ok(_) => {
                    if self.deltas.is_none() {
                        self.deltas = self.host.resident(self.log).map(|s| s.subscribe_live());
                    }
                    tokio::select! {
                        // Deltas first: they precede the commit that ends them.
                        biased;
                        delta = next_delta(&mut self.deltas) => match delta {
                            Ok(delta) => return Some(delta_event(&delta, self.names)),
                            Err(broadcast::error::RecvError::Lagged(_)) => {}
                            // The session hibernated: look again next time.
                            Err(broadcast::error::RecvError::Closed) => self.deltas = None,
                        },
                        changed = self.host.wait_followed(&mut self.follower, self.next) => if !changed { return None },
                        // Disabled, not taken, when nobody can close (an `Err`).
                        Ok(_) = self.closing.wait_for(|closing| *closing) => return None,
                    }
                }
                Err(e) => {
                    tracing::warn!(log = %self.log, "event stream stops: {e}");
                    return None;
                }
            }
        }
    }
}

/// A streamed model delta or tool progress as an SSE event (`delta`,
/// `progress`): no `id`, it is not in the log. As a `message`, the data says
/// its kind, as a log event's line does (a delta's own `kind` is what it adds
/// to, so it goes one level down, under its kind's name).
fn delta_event(live: &Live, names: EventNames) -> Event {
    let (name, data) = match live {
        Live::Delta(delta) => ("delta", serde_json::to_value(delta)),
        Live::Progress(progress) => ("progress", serde_json::to_value(progress)),
    };
    let data = data.unwrap_or_default();
    match names {
        EventNames::Kind => Event::default().event(name).data(data.to_string()),
        EventNames::Message => {
            let data = serde_json::json!({"kind": name, name: data});
            Event::default().data(data.to_string())
        }
    }
}

/// The next delta, or never when there is no subscription.
async fn next_delta(
    deltas: &mut Option<broadcast::Receiver<Live>>,
) -> Result<Live, broadcast::error::RecvError> {
    match deltas {
        Some(deltas) => deltas.recv().await,
        None => std::future::pending().await,
    }
}
