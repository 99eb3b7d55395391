//! The bodies `/v1` takes and answers, and its query strings: one type each,
//! so that the handlers and `/v1/openapi.json` (`api.rs`) say the same thing.
//!
//! Invariants: a request body type refuses unknown fields (`deny_unknown_fields`,
//! `additionalProperties: false` in the document); an answer type is what
//! its handler serializes, field for field, except [`EventLine`], which
//! describes the JSONL line the journal writes (`to_jsonl`) rather than
//! serializing it, and is checked against real answers by the tests.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::journal::{
    ContentBlock, EventBody, GuestRef, LogId, LogInfo, LogStatus, RequestedEffect, ToolCall,
};

/// `POST /v1/guests?name=NAME`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GuestQuery {
    /// The name to store the guest under (1 to 128 characters, no control
    /// characters). Required; the body is the component.
    #[param(required = true)]
    pub(crate) name: Option<String>,
}

/// `GET /v1/guests`.
#[derive(Serialize, ToSchema)]
pub(crate) struct GuestList {
    /// The tenant's guests: its uploads, and the built-in examples it has
    /// used (stored for it when first named).
    pub(crate) guests: Vec<GuestRef>,
}

/// `POST /v1/sessions`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    /// The guest's name, or its digest (`sha256:...`): one the tenant
    /// uploaded, or a built-in example (`counter`, `counter-v2`,
    /// `assistant`), which every tenant has without uploading it.
    pub(crate) guest: String,
    /// A name to reach the session by, besides its id.
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// The session's configuration: an object (default `{}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) config: Option<Value>,
}

/// `PUT /v1/sessions/by-name/NAME`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutBody {
    /// The guest's name, or its digest (`sha256:...`): one the tenant
    /// uploaded, or a built-in example (`counter`, `counter-v2`,
    /// `assistant`), which every tenant has without uploading it.
    pub(crate) guest: String,
    /// The session's configuration, when it is created: an object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) config: Option<Value>,
}

/// `GET /v1/sessions?after=ID&limit=N`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// The `next` of the page before; the first page without it.
    #[param(value_type = Option<uuid::Uuid>)]
    pub(crate) after: Option<LogId>,
    /// Sessions in the page: default 100, at most 1,000 (larger is 1,000, 0 is 1).
    #[param(minimum = 0)]
    pub(crate) limit: Option<usize>,
}

/// A page of `GET /v1/sessions`.
#[derive(Serialize, ToSchema)]
pub(crate) struct SessionPage {
    /// The sessions, in creation order.
    pub(crate) sessions: Vec<SessionView>,
    /// The `after` of the next page; `null` on the last.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub(crate) next: Option<LogId>,
    /// Every log the list walks, compactions' new logs included.
    pub(crate) total: u64,
}

/// A session as the API shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = Session)]
pub(crate) struct SessionView {
    /// Its log's id.
    #[schema(value_type = uuid::Uuid)]
    pub(crate) id: LogId,
    /// The name that reaches it, if any.
    pub(crate) name: Option<String>,
    /// The guest it runs on.
    pub(crate) guest: GuestRef,
    /// What it is doing.
    pub(crate) status: LogStatus,
    /// The seq of its last event (`null` only for a log without events).
    pub(crate) head: Option<u64>,
    /// Its number of events.
    pub(crate) events: u64,
    /// Unix ms of its `created` event.
    pub(crate) created_at: u64,
    /// The decisions it waits for.
    pub(crate) pending_approvals: Vec<PendingApproval>,
}

impl SessionView {
    /// The view of a log.
    pub(crate) fn of(info: &LogInfo) -> SessionView {
        let pending_approvals = info
            .open
            .iter()
            .filter(|o| o.awaiting_approval)
            .map(|o| {
                let (tool, question) = match &o.effect {
                    RequestedEffect::Tool(call) => (Some(call.clone()), None),
                    RequestedEffect::Ask(question) => (None, Some(question.text.clone())),
                    _ => (None, None),
                };
                PendingApproval {
                    key: o.key.clone(),
                    tool,
                    question,
                }
            })
            .collect();
        SessionView {
            id: info.id,
            name: info.name.clone(),
            guest: info.guest.clone(),
            status: info.status,
            head: info.next_seq.checked_sub(1),
            events: info.next_seq,
            created_at: info.created_at,
            pending_approvals,
        }
    }
}

/// A decision a session waits for: about a tool call, or a question.
#[derive(Serialize, ToSchema)]
pub(crate) struct PendingApproval {
    /// The effect's key: `POST /v1/sessions/ID/approvals/KEY` decides it.
    pub(crate) key: String,
    /// The tool call to allow or deny.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool: Option<ToolCall>,
    /// The guest's question.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) question: Option<String>,
}

/// `POST /v1/sessions/ID/input`: text, or content blocks (not both).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InputBody {
    /// The input as plain text.
    #[serde(default)]
    pub(crate) text: Option<String>,
    /// The input as content blocks (at least one).
    #[serde(default)]
    pub(crate) content: Option<Vec<ContentBlock>>,
}

/// What `?wait=` may wait for.
#[derive(ToSchema)]
#[schema(rename_all = "kebab-case")]
#[allow(dead_code)] // a schema only: the handler reads the text, to name a bad one
pub(crate) enum Wait {
    /// Until nothing but timers and human decisions is in flight.
    Idle,
}

/// `POST /v1/sessions/ID/input?wait=idle`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InputQuery {
    /// `idle`: answer when the turn is over, with its outputs.
    #[param(inline, value_type = Option<Wait>)]
    pub(crate) wait: Option<String>,
}

/// The seq of the event a request appended, once it is durable.
#[derive(Serialize, ToSchema)]
pub(crate) struct Appended {
    /// Its seq in the session's log.
    pub(crate) seq: u64,
}

/// `POST /v1/sessions/ID/input?wait=idle`, answered when the turn is over.
#[derive(Serialize, ToSchema)]
pub(crate) struct Turn {
    /// The input's seq.
    pub(crate) seq: u64,
    /// The session's status, as `GET /v1/sessions/ID` names it.
    pub(crate) status: LogStatus,
    /// What the guest said in the turn, in order, up to `[server]
    /// max_answer_bytes` of it (1 MiB by default).
    pub(crate) outputs: Vec<TurnOutput>,
    /// Whether outputs were left out past `max_answer_bytes`: read them
    /// with `GET /v1/sessions/{next_log}/events?from={next_seq}`.
    pub(crate) more: bool,
    /// With `more`: the seq of the first output left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_seq: Option<u64>,
    /// With `more`: the log it is in (the session's own, or the one it
    /// continued in after compacting itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_log: Option<String>,
}

/// One `output` event of a turn.
#[derive(Serialize, ToSchema)]
pub(crate) struct TurnOutput {
    /// Its seq, in its own log (a compacted session's turn spans logs).
    pub(crate) seq: u64,
    /// The `output` effect's key.
    pub(crate) key: String,
    /// What it said.
    pub(crate) content: Vec<ContentBlock>,
    /// Its text blocks, joined by newlines.
    pub(crate) text: String,
}

/// `POST /v1/sessions/ID/approvals/KEY`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecideBody {
    /// Allow (or, for a question, answer yes).
    pub(crate) allow: bool,
    /// The reason or answer.
    #[serde(default)]
    pub(crate) reason: Option<String>,
}

/// `POST /v1/sessions/ID/fork`; no body means every default.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ForkBody {
    /// The last seq the fork shares (default: the head).
    #[serde(default)]
    pub(crate) at: Option<u64>,
    /// The new session's name.
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Another guest to run the fork on, by name or digest (an upload of
    /// the tenant's, or a built-in example).
    #[serde(default)]
    pub(crate) guest: Option<String>,
    /// Another configuration: an object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) config: Option<Value>,
}

/// `POST /v1/sessions/ID/unpark`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnparkBody {
    /// The seq of an input the guest is never to see again.
    #[serde(default)]
    pub(crate) skip: Option<u64>,
    /// Why, in the operator's words (required, not empty).
    #[schema(min_length = 1)]
    pub(crate) reason: String,
}

/// `GET /v1/sessions/ID/events?from=SEQ&limit=N&events=kind|message`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// The first seq (default 0).
    pub(crate) from: Option<u64>,
    /// Events in the page: default 100, at most 1,000 (larger is 1,000, 0 is 1).
    #[param(minimum = 0)]
    pub(crate) limit: Option<usize>,
    /// With `Accept: text/event-stream`: the SSE event name of each event.
    /// `kind` (the default): its kind (`created`, `input`, …, `delta`), for
    /// `addEventListener(kind)`. `message`: every event is a plain SSE message
    /// (no `event:` line), so that `EventSource.onmessage` receives them all;
    /// the kind is in the data (`"kind"` of the line; a delta is
    /// `{"kind":"delta","delta":{…}}`).
    #[param(inline)]
    pub(crate) events: Option<EventNames>,
}

/// How Server-Sent Events are named (`?events=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EventNames {
    /// `event:` is the kind.
    #[default]
    Kind,
    /// No `event:` line: every event is a `message`.
    Message,
}

/// A page of a session's log. Described, not serialized: the handler writes
/// the page from the JSONL lines.
#[derive(Serialize, ToSchema)]
pub(crate) struct EventPage {
    /// The events, in order.
    events: Vec<EventLine>,
    /// The `from` of the next page.
    next: u64,
}

/// An event in the JSONL form of docs/log-format.md: its seq, time and hash,
/// and its body's fields (`kind` first). Described, not serialized:
/// `to_jsonl` writes the line.
#[derive(Serialize, ToSchema)]
pub(crate) struct EventLine {
    /// Its position in the log, dense from 0.
    seq: u64,
    /// Unix ms when it was staged.
    at: u64,
    /// Its chained SHA-256, in hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    hash: String,
    /// What happened.
    #[serde(flatten)]
    body: EventBody,
}
