//! Conversions between the journal's event types and the WIT types a guest
//! sees. One function per direction and type; no logic beyond the mapping.

use std::sync::Arc;

use super::bindings::wit;
use crate::effects::{Effect, EffectBody, Message, ModelRequest, Role};
use crate::journal::{
    BlobRef, ContentBlock, Created, ErrorKind, Event, EventBody, GuestRef, LogPos, ModelResponse,
    Outcome, PartData, Question, RequestedEffect, Sender, StopReason, ToolCall, ToolPart, ToolSpec,
};

pub(crate) fn created(c: &Created) -> wit::Created {
    wit::Created {
        guest: guest_ref(&c.guest),
        config_json: c.config.to_string(),
        seed: c.seed,
        parent: c.parent.as_ref().map(log_pos),
        compacted_from: c.compacted_from.as_ref().map(log_pos),
        summary: c.summary.clone(),
        tools: c.tools.iter().map(tool_spec).collect(),
    }
}

fn guest_ref(g: &GuestRef) -> wit::GuestRef {
    wit::GuestRef {
        name: g.name.clone(),
        digest: g.digest.clone(),
    }
}

fn log_pos(p: &LogPos) -> wit::LogPos {
    wit::LogPos {
        log: p.log.clone(),
        seq: p.seq,
    }
}

fn tool_spec(t: &ToolSpec) -> wit::ToolSpec {
    wit::ToolSpec {
        name: t.name.clone(),
        description: t.description.clone(),
        parameters_json: t.parameters.to_string(),
    }
}

fn tool_call(c: &ToolCall) -> wit::ToolCall {
    wit::ToolCall {
        id: c.id.clone(),
        name: c.name.clone(),
        arguments_json: c.arguments.clone(),
    }
}

fn blocks(blocks: &[ContentBlock]) -> Vec<wit::ContentBlock> {
    blocks.iter().map(block).collect()
}

fn block(b: &ContentBlock) -> wit::ContentBlock {
    match b {
        ContentBlock::Text { text } => wit::ContentBlock::Text(text.clone()),
        ContentBlock::ToolCall(call) => wit::ContentBlock::ToolCall(tool_call(call)),
        ContentBlock::ToolResult {
            call_id,
            content,
            is_error,
            parts,
        } => wit::ContentBlock::ToolResult(wit::ToolResult {
            call_id: call_id.clone(),
            content: content.clone(),
            is_error: *is_error,
            parts: parts.iter().map(tool_part).collect(),
        }),
        ContentBlock::Reasoning {
            text,
            signature,
            opaque,
            provider,
        } => wit::ContentBlock::Reasoning(wit::Reasoning {
            text: text.clone(),
            signature: signature.clone(),
            opaque: opaque.clone(),
            provider: provider.clone(),
        }),
    }
}

fn question(q: &Question) -> wit::Question {
    wit::Question {
        text: q.text.clone(),
    }
}

fn stop_reason(s: StopReason) -> wit::StopReason {
    match s {
        StopReason::EndTurn => wit::StopReason::EndTurn,
        StopReason::ToolUse => wit::StopReason::ToolUse,
        StopReason::MaxTokens => wit::StopReason::MaxTokens,
        StopReason::StopSequence => wit::StopReason::StopSequence,
        StopReason::Refusal => wit::StopReason::Refusal,
        StopReason::Other => wit::StopReason::Other,
    }
}

fn error_kind(k: ErrorKind) -> wit::ErrorKind {
    match k {
        ErrorKind::Interrupted => wit::ErrorKind::Interrupted,
        ErrorKind::Timeout => wit::ErrorKind::Timeout,
        ErrorKind::RateLimited => wit::ErrorKind::RateLimited,
        ErrorKind::Unavailable => wit::ErrorKind::Unavailable,
        ErrorKind::InvalidResponse => wit::ErrorKind::InvalidResponse,
        ErrorKind::InvalidRequest => wit::ErrorKind::InvalidRequest,
        ErrorKind::Unsupported => wit::ErrorKind::Unsupported,
        // The WIT's error-kind predates it: a guest reads the message.
        ErrorKind::TooLarge
        | ErrorKind::UnknownTarget
        | ErrorKind::TargetEnded
        | ErrorKind::LimitReached
        | ErrorKind::Other => wit::ErrorKind::Other,
    }
}

fn model_response(r: &ModelResponse) -> wit::ModelResponse {
    wit::ModelResponse {
        content: blocks(&r.content),
        stop_reason: stop_reason(r.stop_reason),
        // The WIT's usage predates unknown usage: a guest reads 0 and 0.
        usage: {
            let usage = r.usage.unwrap_or_default();
            wit::Usage {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
            }
        },
        provider: r.provider.clone(),
        model: r.model.clone(),
    }
}

/// An event as the guest sees it; `None` for one no guest is handed
/// (`EventBody::for_guest`).
pub(crate) fn event(e: &Event) -> Option<wit::Event> {
    Some(wit::Event {
        seq: e.seq,
        at: e.at,
        body: event_body(&e.body)?,
    })
}

fn event_body(b: &EventBody) -> Option<wit::EventBody> {
    use wit::EventBody as W;
    Some(match b {
        EventBody::Created(c) => W::Created(created(c)),
        EventBody::Input { from, content } => W::Input(wit::Input {
            from: match from {
                Sender::Principal(p) => wit::Sender::Principal(p.clone()),
                Sender::Log { log, key, .. } => wit::Sender::Log(wit::LogSender {
                    log: log.clone(),
                    key: key.clone(),
                }),
            },
            content: blocks(content),
        }),
        EventBody::Requested { key, effect } => W::Requested(wit::Requested {
            key: key.clone(),
            effect: match effect {
                RequestedEffect::Model {
                    model,
                    digest,
                    summary,
                } => wit::RequestedEffect::Model(wit::ModelDigest {
                    model: model.clone(),
                    digest: digest.clone(),
                    summary: summary.clone(),
                }),
                RequestedEffect::Tool(call) => wit::RequestedEffect::Tool(tool_call(call)),
                RequestedEffect::Ask(q) => wit::RequestedEffect::Ask(question(q)),
                RequestedEffect::Sleep { until } => wit::RequestedEffect::Sleep(*until),
            },
        }),
        EventBody::Completed { key, outcome } => W::Completed(wit::Completed {
            key: key.clone(),
            outcome: match outcome {
                Outcome::Model(r) => wit::Outcome::Model(model_response(r)),
                Outcome::Tool {
                    content,
                    is_error,
                    parts,
                    structured,
                } => wit::Outcome::Tool(wit::ToolOutput {
                    content: content.clone(),
                    is_error: *is_error,
                    parts: parts.iter().map(tool_part).collect(),
                    structured: structured.clone(),
                }),
                Outcome::TimerFired => wit::Outcome::TimerFired,
            },
        }),
        EventBody::Failed {
            key,
            error,
            message,
            retryable,
            attempt,
        } => W::Failed(wit::Failed {
            key: key.clone(),
            kind: error_kind(*error),
            message: message.clone(),
            retryable: *retryable,
            attempt: *attempt,
        }),
        EventBody::Cancelled { key } => W::Cancelled(key.clone()),
        EventBody::ApprovalRequested {
            key,
            tool,
            question: q,
        } => W::ApprovalRequested(wit::ApprovalRequested {
            key: key.clone(),
            tool: tool.as_ref().map(tool_call),
            question: q.as_ref().map(question),
        }),
        EventBody::ApprovalDecided {
            key,
            allow,
            by,
            reason,
        } => W::ApprovalDecided(wit::ApprovalDecided {
            key: key.clone(),
            allow: *allow,
            by: by.clone(),
            reason: reason.clone(),
        }),
        EventBody::Output { key, content } => W::Output(wit::Output {
            key: key.clone(),
            content: blocks(content),
        }),
        EventBody::Sent { key, target } => W::Sent(wit::Sent {
            key: key.clone(),
            target: target.clone(),
        }),
        EventBody::GuestChanged { from, to } => W::GuestChanged(wit::GuestChanged {
            from: guest_ref(from),
            to: guest_ref(to),
        }),
        EventBody::GuestFailed { message } => W::GuestFailed(message.clone()),
        EventBody::Finished { key, result } => W::Finished(wit::Finished {
            key: key.clone(),
            result: result.clone(),
        }),
        EventBody::Continued { log } => W::Continued(log.clone()),
        EventBody::Unparked { .. } | EventBody::Stopped { .. } | EventBody::Resumed { .. } => {
            return None;
        }
    })
}

fn from_block(b: wit::ContentBlock) -> ContentBlock {
    match b {
        wit::ContentBlock::Text(text) => ContentBlock::Text { text },
        wit::ContentBlock::ToolCall(c) => ContentBlock::ToolCall(from_tool_call(c)),
        wit::ContentBlock::ToolResult(r) => ContentBlock::ToolResult {
            call_id: r.call_id,
            content: r.content,
            is_error: r.is_error,
            parts: r.parts.into_iter().map(from_tool_part).collect(),
        },
        wit::ContentBlock::Reasoning(r) => ContentBlock::Reasoning {
            text: r.text,
            signature: r.signature,
            opaque: r.opaque,
            provider: r.provider,
        },
    }
}

fn from_blocks(blocks: Vec<wit::ContentBlock>) -> Vec<ContentBlock> {
    blocks.into_iter().map(from_block).collect()
}

fn from_tool_call(c: wit::ToolCall) -> ToolCall {
    ToolCall {
        id: c.id,
        name: c.name,
        arguments: c.arguments_json,
    }
}

/// A guest's effect, in the host's terms. Tool schemas that are not JSON are
/// kept as JSON strings rather than refused: the guest's words are its own.
pub(crate) fn from_effect(key: String, body: wit::EffectBody) -> Effect {
    let body = match body {
        wit::EffectBody::Model(r) => EffectBody::Model(ModelRequest {
            model: r.model,
            system: r.system,
            extends: r.extends,
            messages: r
                .messages
                .into_iter()
                .map(|m| {
                    Arc::new(Message {
                        role: match m.role {
                            wit::Role::User => Role::User,
                            wit::Role::Assistant => Role::Assistant,
                        },
                        content: from_blocks(m.content),
                    })
                })
                .collect(),
            tools: r
                .tools
                .into_iter()
                .map(|t| ToolSpec {
                    parameters: serde_json::from_str(&t.parameters_json)
                        .unwrap_or(serde_json::Value::String(t.parameters_json)),
                    name: t.name,
                    description: t.description,
                })
                .collect(),
            max_tokens: r.max_tokens,
        }),
        wit::EffectBody::Tool(c) => EffectBody::Tool(from_tool_call(c)),
        wit::EffectBody::Ask(q) => EffectBody::Ask(Question { text: q.text }),
        wit::EffectBody::Sleep(until) => EffectBody::Sleep(until),
        wit::EffectBody::Output(content) => EffectBody::Output(from_blocks(content)),
        wit::EffectBody::Send(s) => EffectBody::Send {
            target: s.target,
            content: from_blocks(s.content),
        },
        wit::EffectBody::Compact(summary) => EffectBody::Compact(summary),
        wit::EffectBody::Finish(result) => EffectBody::Finish(result),
    };
    Effect { key, body }
}

fn part_data(d: &PartData) -> wit::PartData {
    match d {
        PartData::Base64(b) => wit::PartData::Base64(b.clone()),
        PartData::Blob(r) => wit::PartData::Blob(wit::BlobRef {
            digest: r.digest.clone(),
            size: r.size,
        }),
    }
}

fn tool_part(p: &ToolPart) -> wit::ToolPart {
    let media = |mime_type: &String, data: &PartData, annotations: &Option<String>| wit::Media {
        mime_type: mime_type.clone(),
        data: part_data(data),
        annotations: annotations.clone(),
    };
    match p {
        ToolPart::Image {
            mime_type,
            data,
            annotations,
        } => wit::ToolPart::Image(media(mime_type, data, annotations)),
        ToolPart::Audio {
            mime_type,
            data,
            annotations,
        } => wit::ToolPart::Audio(media(mime_type, data, annotations)),
        ToolPart::Resource {
            uri,
            mime_type,
            text,
            data,
            annotations,
        } => wit::ToolPart::Resource(wit::EmbeddedResource {
            uri: uri.clone(),
            mime_type: mime_type.clone(),
            text: text.clone(),
            data: data.as_ref().map(part_data),
            annotations: annotations.clone(),
        }),
        ToolPart::ResourceLink {
            uri,
            name,
            mime_type,
            description,
            annotations,
        } => wit::ToolPart::ResourceLink(wit::ResourceLink {
            uri: uri.clone(),
            name: name.clone(),
            mime_type: mime_type.clone(),
            description: description.clone(),
            annotations: annotations.clone(),
        }),
    }
}

fn from_part_data(d: wit::PartData) -> PartData {
    match d {
        wit::PartData::Base64(b) => PartData::Base64(b),
        wit::PartData::Blob(r) => PartData::Blob(BlobRef {
            digest: r.digest,
            size: r.size,
        }),
    }
}

fn from_tool_part(p: wit::ToolPart) -> ToolPart {
    match p {
        wit::ToolPart::Image(m) => ToolPart::Image {
            mime_type: m.mime_type,
            data: from_part_data(m.data),
            annotations: m.annotations,
        },
        wit::ToolPart::Audio(m) => ToolPart::Audio {
            mime_type: m.mime_type,
            data: from_part_data(m.data),
            annotations: m.annotations,
        },
        wit::ToolPart::Resource(r) => ToolPart::Resource {
            uri: r.uri,
            mime_type: r.mime_type,
            text: r.text,
            data: r.data.map(from_part_data),
            annotations: r.annotations,
        },
        wit::ToolPart::ResourceLink(l) => ToolPart::ResourceLink {
            uri: l.uri,
            name: l.name,
            mime_type: l.mime_type,
            description: l.description,
            annotations: l.annotations,
        },
    }
}
