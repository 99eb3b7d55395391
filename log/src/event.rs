//! The events of a log, as the host stores and exports them.
//!
//! These types mirror `wit/agent.wit` one for one; `docs/log-format.md` is their
//! JSON form and `tests/golden/events.jsonl` pins it. The JSON of an [`EventBody`] is the
//! canonical form: it is what the hash chain covers and what the journal stores,
//! so a field's name or order changes the format and needs a new version.
//! Tool arguments and results stay JSON *text*: a model may produce invalid
//! JSON, and the log records what it said, not what we wish it had said.

use serde::{Deserialize, Serialize};

/// Where a log starts or continues from: event `seq` of log `log`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogPos {
    /// The log's id (a UUIDv7, as text).
    pub log: String,
    /// The seq of the event.
    pub seq: u64,
}

/// The guest component a log runs on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GuestRef {
    /// The name it was uploaded under.
    pub name: String,
    /// `sha256:` followed by the hex digest of the component's bytes.
    pub digest: String,
}

/// A tool offered to a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolSpec {
    /// The name a model calls it by.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

/// A model's request to run a tool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolCall {
    /// The call's id, chosen by the model; a tool result refers to it.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as the model wrote them (JSON text).
    pub arguments: String,
}

/// Provider-neutral content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ContentBlock {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// A model's request for a tool to run.
    ToolCall(ToolCall),
    /// The result of a tool call, as the model will read it.
    ToolResult {
        /// The id of the call it answers.
        call_id: String,
        /// What the tool returned.
        content: String,
        /// Whether the tool failed.
        is_error: bool,
        /// Typed content beside the text (images, resources), sent to the
        /// model in each provider's native form.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        parts: Vec<ToolPart>,
    },
    /// A model's reasoning. `opaque` is only ever sent back to `provider`; any
    /// other provider gets `text` or nothing.
    Reasoning {
        /// Readable reasoning, when the provider gives it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// The provider's signature over the reasoning.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
        /// Signed or encrypted provider data.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        opaque: Option<String>,
        /// The provider that produced it.
        provider: String,
    },
}

impl ContentBlock {
    /// A text block.
    pub fn text(text: impl Into<String>) -> Self {
        ContentBlock::Text { text: text.into() }
    }
}

/// Typed content a tool returned beside its text: what an MCP server's image,
/// audio, embedded-resource and resource-link blocks carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ToolPart {
    /// An image.
    Image {
        /// Its media type, such as `image/png`.
        mime_type: String,
        /// Its bytes.
        data: PartData,
        /// The server's annotations (`audience`, `priority`,
        /// `lastModified`), as JSON text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        annotations: Option<String>,
    },
    /// A sound.
    Audio {
        /// Its media type, such as `audio/wav`.
        mime_type: String,
        /// Its bytes.
        data: PartData,
        /// The server's annotations (`audience`, `priority`,
        /// `lastModified`), as JSON text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        annotations: Option<String>,
    },
    /// A resource the tool returned whole: text, or bytes.
    Resource {
        /// Where it lives.
        uri: String,
        /// Its media type, when the server says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mime_type: Option<String>,
        /// Its text, for a text resource.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// Its bytes, for a binary resource.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<PartData>,
        /// The server's annotations (`audience`, `priority`,
        /// `lastModified`), as JSON text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        annotations: Option<String>,
    },
    /// A pointer to a resource, not its content.
    ResourceLink {
        /// Where it lives.
        uri: String,
        /// Its name.
        name: String,
        /// Its media type, when the server says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mime_type: Option<String>,
        /// What it is, when the server says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// The server's annotations (`audience`, `priority`,
        /// `lastModified`), as JSON text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        annotations: Option<String>,
    },
}

/// The bytes of a [`ToolPart`]: in the event itself, or, when large, stored
/// once beside the log by digest (the journal's blobs) so that the event, and
/// every replay of it, carries only the reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PartData {
    /// The bytes, base64 (standard alphabet, padded).
    Base64(String),
    /// A stored blob.
    Blob(BlobRef),
}

/// A blob stored beside the log: `sha256:` and the hex digest of its bytes,
/// and their length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlobRef {
    /// `sha256:` and the hex digest of the bytes.
    pub digest: String,
    /// The number of bytes.
    pub size: u64,
}

impl ToolPart {
    /// The part's bytes, if it has any.
    pub fn data(&self) -> Option<&PartData> {
        match self {
            ToolPart::Image { data, .. } | ToolPart::Audio { data, .. } => Some(data),
            ToolPart::Resource { data, .. } => data.as_ref(),
            ToolPart::ResourceLink { .. } => None,
        }
    }

    /// The part's bytes, to change them (inline to blob, and back).
    pub fn data_mut(&mut self) -> Option<&mut PartData> {
        match self {
            ToolPart::Image { data, .. } | ToolPart::Audio { data, .. } => Some(data),
            ToolPart::Resource { data, .. } => data.as_mut(),
            ToolPart::ResourceLink { .. } => None,
        }
    }

    /// The server's annotations, as JSON text.
    pub fn annotations(&self) -> Option<&str> {
        match self {
            ToolPart::Image { annotations, .. }
            | ToolPart::Audio { annotations, .. }
            | ToolPart::Resource { annotations, .. }
            | ToolPart::ResourceLink { annotations, .. } => annotations.as_deref(),
        }
    }

    /// The bytes of text the part carries (for fuel and limits).
    pub fn text_bytes(&self) -> usize {
        let data = |d: &PartData| match d {
            PartData::Base64(b) => b.len(),
            PartData::Blob(r) => r.digest.len(),
        };
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let own = match self {
            ToolPart::Image { mime_type, .. } | ToolPart::Audio { mime_type, .. } => {
                mime_type.len()
            }
            ToolPart::Resource {
                uri,
                mime_type,
                text,
                ..
            } => uri.len() + opt(mime_type) + opt(text),
            ToolPart::ResourceLink {
                uri,
                name,
                mime_type,
                description,
                ..
            } => uri.len() + name.len() + opt(mime_type) + opt(description),
        };
        own + self.data().map_or(0, data) + self.annotations().map_or(0, str::len)
    }
}

/// The text of the blocks that are text, joined by newlines.
pub fn plain_text(blocks: &[ContentBlock]) -> String {
    let texts: Vec<&str> = blocks
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    texts.join("\n")
}

/// Who sent an input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Sender {
    /// A participant, by principal (`cli`, a tenant's user, ...).
    Principal(String),
    /// Another session's `send` effect.
    Log {
        /// The sending log's id.
        log: String,
        /// The key of its `send` effect.
        key: String,
        /// How many sends between sessions led to the one that wrote this
        /// input: 0 when the sender was answering a participant, one more
        /// than the input it was answering when that came from another
        /// session. The host refuses a send past its `[limits]
        /// max_send_hops`, which bounds cycles (A → B → A …). Not written
        /// when 0, so that the events of hosts before it read and hash alike.
        #[serde(default, skip_serializing_if = "is_zero")]
        hops: u32,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Seq 0 of every log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Created {
    /// The guest the log starts on.
    pub guest: GuestRef,
    /// The session's configuration (an object).
    pub config: serde_json::Value,
    /// Seeds the guest's deterministic randomness.
    pub seed: u64,
    /// Set on a fork: the parent log and the last seq this log shares with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<LogPos>,
    /// Set on a compaction: the log this one continues, and where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted_from: Option<LogPos>,
    /// Set on a compaction: what the old log said, in the guest's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The tools this session may ask for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
}

/// A question for a human.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Question {
    /// What to ask.
    pub text: String,
}

/// What `requested` records of an async effect, before it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "effect", rename_all = "kebab-case")]
pub enum RequestedEffect {
    /// A model call, by digest: the request itself is a pure function of the
    /// log and the guest, so it is not stored (DESIGN §4).
    Model {
        /// The model alias the guest asked for.
        model: String,
        /// `sha256:` and the hex digest of the request's canonical JSON.
        digest: String,
        /// A short, human-readable summary of the request.
        summary: String,
    },
    /// A tool call.
    Tool(ToolCall),
    /// A question for a human.
    Ask(Question),
    /// A timer.
    Sleep {
        /// Unix ms at which it fires.
        until: u64,
    },
}

impl RequestedEffect {
    /// Whether running it twice is harmless, so that it may be re-run after a crash.
    pub fn idempotent(&self) -> bool {
        !matches!(self, RequestedEffect::Tool(_))
    }
}

/// Why a model stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The model finished its turn.
    EndTurn,
    /// The model wants tools to run.
    ToolUse,
    /// The token limit cut it off.
    MaxTokens,
    /// A stop sequence ended it.
    StopSequence,
    /// The model refused.
    Refusal,
    /// Anything else the provider reported.
    Other,
}

/// Tokens a model call used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    /// Tokens read.
    pub input_tokens: u64,
    /// Tokens written.
    pub output_tokens: u64,
}

/// A model's whole answer: what the agent saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelResponse {
    /// What the model said.
    pub content: Vec<ContentBlock>,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// What it cost; `None` when the provider did not say (a stream that
    /// ended without a usage chunk). Left out of the JSON then, so a log
    /// written before this was optional reads and hashes as it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The provider that answered.
    pub provider: String,
    /// The provider's model that answered.
    pub model: String,
}

/// How an async effect ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// A model's response, whole.
    Model(ModelResponse),
    /// A tool's output.
    Tool {
        /// What the tool returned, as text.
        content: String,
        /// Whether the tool failed.
        is_error: bool,
        /// Typed content beside the text (images, resources).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        parts: Vec<ToolPart>,
        /// The tool's structured result (JSON text), when it gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        structured: Option<String>,
    },
    /// A `sleep` reached its time.
    TimerFired,
}

impl Outcome {
    /// A tool's output that is text alone.
    pub fn tool_text(content: impl Into<String>, is_error: bool) -> Outcome {
        Outcome::Tool {
            content: content.into(),
            is_error,
            parts: Vec::new(),
            structured: None,
        }
    }
}

/// Why an effect failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The host stopped while the effect ran and it is not safe to repeat.
    Interrupted,
    /// It took too long.
    Timeout,
    /// The provider asked us to slow down.
    RateLimited,
    /// The provider or tool could not be reached.
    Unavailable,
    /// The answer could not be understood.
    InvalidResponse,
    /// The request was refused as malformed.
    InvalidRequest,
    /// The host cannot perform this effect.
    Unsupported,
    /// The result was larger than `[limits] max_event_bytes`, so it was not
    /// stored; a guest sees it as `other` (the WIT has no such kind).
    TooLarge,
    /// A `send` named no session of the sender's tenant (a session of
    /// another tenant is reported alike); a guest sees it as `other`.
    UnknownTarget,
    /// A `send` named a session that has finished or whose guest failed, so
    /// it takes no input; a guest sees it as `other`.
    TargetEnded,
    /// A limit of the host refused the effect; the message names the
    /// setting. A guest sees it as `other`.
    LimitReached,
    /// Anything else.
    Other,
}

/// The body of an event: what happened. Serialized with a `kind` tag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EventBody {
    /// Seq 0: how the log starts.
    Created(Created),
    /// A participant or another session sent a message.
    Input {
        /// Who sent it.
        from: Sender,
        /// What they said.
        content: Vec<ContentBlock>,
    },
    /// The guest asked for an async effect; written before it runs.
    Requested {
        /// The guest's key for the effect.
        key: String,
        /// What was asked for.
        #[serde(flatten)]
        effect: RequestedEffect,
    },
    /// An async effect finished.
    Completed {
        /// The effect's key.
        key: String,
        /// How it ended.
        #[serde(flatten)]
        outcome: Outcome,
    },
    /// An effect failed or was interrupted.
    Failed {
        /// The effect's key.
        key: String,
        /// What kind of failure.
        error: ErrorKind,
        /// What went wrong, for people.
        message: String,
        /// The host will try again: the effect is still in flight.
        retryable: bool,
        /// Which attempt failed, from 1.
        attempt: u32,
    },
    /// The guest stopped wanting an in-flight effect.
    Cancelled {
        /// The effect's key.
        key: String,
    },
    /// A human decision is needed: about a tool call (host policy) or a question
    /// (the guest's `ask`).
    ApprovalRequested {
        /// The effect's key.
        key: String,
        /// Set when the host's policy asks about a tool call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool: Option<ToolCall>,
        /// Set when the guest asked a question.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        question: Option<Question>,
    },
    /// A human decided.
    ApprovalDecided {
        /// The effect's key.
        key: String,
        /// Allowed (or, for a question, answered yes).
        allow: bool,
        /// The principal who decided.
        by: String,
        /// Their reason or answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The guest said something to the session's participants.
    Output {
        /// The `output` effect's key.
        key: String,
        /// What it said.
        content: Vec<ContentBlock>,
    },
    /// The guest messaged another log; written in the same transaction as the
    /// target's `input`.
    Sent {
        /// The `send` effect's key.
        key: String,
        /// The target log's id.
        target: String,
    },
    /// The session moved to another guest.
    GuestChanged {
        /// The guest it ran on.
        from: GuestRef,
        /// The guest it runs on now.
        to: GuestRef,
    },
    /// The guest trapped or ran out of fuel or memory; the session parks.
    GuestFailed {
        /// What happened.
        message: String,
    },
    /// An operator let a parked session go on (`logbook unpark`): the host
    /// folds its log again, and never hands the guest the input at `skip`,
    /// nor this event (docs/guest-contract.md, rule 11).
    Unparked {
        /// The seq of an input the guest is never to see, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skip: Option<u64>,
        /// The principal who decided.
        by: String,
        /// Why, in their words.
        reason: String,
    },
    /// The session was stopped: the host starts none of its effects and
    /// fires none of its timers until a `resumed` (session::stop). Inputs,
    /// decisions and the results of effects already in flight are still
    /// appended. The guest never sees it.
    Stopped {
        /// The principal who stopped it, or `logbook` when the host did for
        /// a limit.
        by: String,
        /// Why; for a limit: which limit, its value and what was counted.
        reason: String,
    },
    /// A stopped session goes on: the host performs what the guest wants
    /// from here. The guest never sees it.
    Resumed {
        /// The principal who resumed it.
        by: String,
    },
    /// The guest finished.
    Finished {
        /// The `finish` effect's key.
        key: String,
        /// The session's result.
        result: String,
    },
    /// This log was compacted into another.
    Continued {
        /// The new log's id.
        log: String,
    },
}

impl EventBody {
    /// The kebab-case name of this kind of event, as in the log format.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Created(_) => "created",
            EventBody::Input { .. } => "input",
            EventBody::Requested { .. } => "requested",
            EventBody::Completed { .. } => "completed",
            EventBody::Failed { .. } => "failed",
            EventBody::Cancelled { .. } => "cancelled",
            EventBody::ApprovalRequested { .. } => "approval-requested",
            EventBody::ApprovalDecided { .. } => "approval-decided",
            EventBody::Output { .. } => "output",
            EventBody::Sent { .. } => "sent",
            EventBody::GuestChanged { .. } => "guest-changed",
            EventBody::GuestFailed { .. } => "guest-failed",
            EventBody::Unparked { .. } => "unparked",
            EventBody::Stopped { .. } => "stopped",
            EventBody::Resumed { .. } => "resumed",
            EventBody::Finished { .. } => "finished",
            EventBody::Continued { .. } => "continued",
        }
    }

    /// The effect key this event is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            EventBody::Requested { key, .. }
            | EventBody::Completed { key, .. }
            | EventBody::Failed { key, .. }
            | EventBody::Cancelled { key }
            | EventBody::ApprovalRequested { key, .. }
            | EventBody::ApprovalDecided { key, .. }
            | EventBody::Output { key, .. }
            | EventBody::Sent { key, .. }
            | EventBody::Finished { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The blobs this event refers to, in order, each once.
    pub fn blob_refs(&self) -> Vec<&BlobRef> {
        fn part_refs<'a>(parts: &'a [ToolPart], out: &mut Vec<&'a BlobRef>) {
            for part in parts {
                if let Some(PartData::Blob(r)) = part.data()
                    && !out.iter().any(|seen| seen.digest == r.digest)
                {
                    out.push(r);
                }
            }
        }
        fn block_refs<'a>(blocks: &'a [ContentBlock], out: &mut Vec<&'a BlobRef>) {
            for b in blocks {
                if let ContentBlock::ToolResult { parts, .. } = b {
                    part_refs(parts, out);
                }
            }
        }
        let mut out = Vec::new();
        match self {
            EventBody::Input { content, .. } | EventBody::Output { content, .. } => {
                block_refs(content, &mut out)
            }
            EventBody::Completed { outcome, .. } => match outcome {
                Outcome::Model(r) => block_refs(&r.content, &mut out),
                Outcome::Tool { parts, .. } => part_refs(parts, &mut out),
                Outcome::TimerFired => {}
            },
            _ => {}
        }
        out
    }

    /// The bytes of text this event hands a guest that folds it: the UTF-8
    /// length of every string it carries (content, JSON text, keys,
    /// messages). A pure function of the event, so fuel that grows with it
    /// is the same on every host (`Limits::fuel_for`).
    pub fn text_bytes(&self) -> u64 {
        fn blocks(blocks: &[ContentBlock]) -> usize {
            blocks.iter().map(block).sum()
        }
        fn block(b: &ContentBlock) -> usize {
            match b {
                ContentBlock::Text { text } => text.len(),
                ContentBlock::ToolCall(c) => call(c),
                ContentBlock::ToolResult {
                    call_id,
                    content,
                    parts,
                    ..
                } => {
                    call_id.len()
                        + content.len()
                        + parts.iter().map(ToolPart::text_bytes).sum::<usize>()
                }
                ContentBlock::Reasoning {
                    text,
                    signature,
                    opaque,
                    provider,
                } => {
                    let len = |s: &Option<String>| s.as_ref().map_or(0, String::len);
                    len(text) + len(signature) + len(opaque) + provider.len()
                }
            }
        }
        fn call(c: &ToolCall) -> usize {
            c.id.len() + c.name.len() + c.arguments.len()
        }
        let n = match self {
            EventBody::Created(c) => {
                c.config.to_string().len()
                    + c.summary.as_ref().map_or(0, String::len)
                    + c.tools
                        .iter()
                        .map(|t| t.name.len() + t.description.len())
                        .sum::<usize>()
            }
            EventBody::Input { from, content } => {
                let from = match from {
                    Sender::Principal(p) => p.len(),
                    Sender::Log { log, key, .. } => log.len() + key.len(),
                };
                from + blocks(content)
            }
            EventBody::Requested { key, effect } => {
                key.len()
                    + match effect {
                        RequestedEffect::Model {
                            model,
                            digest,
                            summary,
                        } => model.len() + digest.len() + summary.len(),
                        RequestedEffect::Tool(c) => call(c),
                        RequestedEffect::Ask(q) => q.text.len(),
                        RequestedEffect::Sleep { .. } => 0,
                    }
            }
            EventBody::Completed { key, outcome } => {
                key.len()
                    + match outcome {
                        Outcome::Model(r) => blocks(&r.content) + r.provider.len() + r.model.len(),
                        Outcome::Tool {
                            content,
                            parts,
                            structured,
                            ..
                        } => {
                            content.len()
                                + parts.iter().map(ToolPart::text_bytes).sum::<usize>()
                                + structured.as_ref().map_or(0, String::len)
                        }
                        Outcome::TimerFired => 0,
                    }
            }
            EventBody::Failed { key, message, .. } => key.len() + message.len(),
            EventBody::ApprovalRequested {
                key,
                tool,
                question,
            } => {
                key.len()
                    + tool.as_ref().map_or(0, call)
                    + question.as_ref().map_or(0, |q| q.text.len())
            }
            EventBody::ApprovalDecided {
                key, by, reason, ..
            } => key.len() + by.len() + reason.as_ref().map_or(0, String::len),
            EventBody::Output { key, content } => key.len() + blocks(content),
            EventBody::Sent { key, target } => key.len() + target.len(),
            EventBody::Finished { key, result } => key.len() + result.len(),
            EventBody::Cancelled { key } => key.len(),
            EventBody::GuestFailed { message } => message.len(),
            EventBody::Continued { log } => log.len(),
            EventBody::GuestChanged { .. }
            | EventBody::Unparked { .. }
            | EventBody::Stopped { .. }
            | EventBody::Resumed { .. } => 0,
        };
        n as u64
    }

    /// The length of [`EventBody::to_canonical`], without keeping the bytes:
    /// what the size limit `max_event_bytes` measures.
    pub fn canonical_len(&self) -> usize {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        serde_json::to_writer(&mut count, self)
            .expect("event bodies always serialize: no maps with non-string keys");
        count.0
    }

    /// Whether a guest is ever handed this event: every event but an
    /// operator's `unparked` (the input it skips is left out by the
    /// replayer, which knows the skip).
    pub fn for_guest(&self) -> bool {
        !matches!(
            self,
            EventBody::Unparked { .. } | EventBody::Stopped { .. } | EventBody::Resumed { .. }
        )
    }

    /// The canonical bytes of this body: what the journal stores and the chain hashes.
    pub fn to_canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self)
            .expect("event bodies always serialize: no maps with non-string keys")
    }
}

/// One event of a log.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Its position in the log, dense from 0.
    pub seq: u64,
    /// Unix time in milliseconds, from the host's clock, when it was staged.
    pub at: u64,
    /// What happened.
    pub body: EventBody,
}

/// An event with the hash that chains it to its predecessor.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// The event.
    pub event: Event,
    /// Its chained hash (see [`event_hash`](crate::event_hash)).
    pub hash: [u8; 32],
}
