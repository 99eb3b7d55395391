//! The Anthropic Messages wire (`POST {base}/messages`).
//!
//! Thinking: `thinking` blocks keep their `signature`, `redacted_thinking`
//! its `data` (as `opaque`); both are sent back to this wire only, in place,
//! as the API requires for tool use with thinking. Another provider's
//! reasoning is dropped.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Deltas, HttpSettings, ToolNames, malformed, parse_json, read_sse, truncated};
use crate::config::ModelConfig;
use crate::effects::SetupError;
use crate::effects::model::{
    DeltaKind, DeltaSink, Message, ModelError, ModelFuture, ModelProvider, ModelRequest,
    RetryPolicy, Role,
};
use crate::effects::redact::Redactor;
use crate::journal::{ContentBlock, ErrorKind, ModelResponse, StopReason, ToolCall, Usage};

/// The provider name recorded on responses and reasoning blocks.
const NAME: &str = "anthropic";

/// A model behind the Messages wire.
pub struct Anthropic {
    http: HttpSettings,
    version: String,
    thinking_budget: Option<u32>,
}

impl Anthropic {
    /// From an alias's configuration (`provider = "anthropic"`).
    pub fn new(config: &ModelConfig) -> Result<Anthropic, SetupError> {
        Ok(Anthropic {
            http: HttpSettings::new(config, "https://api.anthropic.com/v1")?,
            version: config
                .anthropic_version
                .clone()
                .unwrap_or_else(|| "2023-06-01".into()),
            thinking_budget: config.thinking_budget,
        })
    }

    fn body(&self, request: &ModelRequest, stream: bool, names: &mut ToolNames) -> Value {
        let mut messages: Vec<Value> = Vec::new();
        for message in &request.messages {
            let blocks = blocks(message, names);
            if blocks.is_empty() {
                continue;
            }
            let role = match message.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            // The wire wants roles to alternate: merge neighbours of one role.
            match messages.last_mut() {
                Some(last) if last["role"] == role => {
                    if let Some(Value::Array(content)) = last.get_mut("content") {
                        content.extend(blocks);
                    }
                }
                _ => messages.push(json!({"role": role, "content": blocks})),
            }
        }
        let mut body = json!({
            "model": self.http.model,
            "max_tokens": request.max_tokens.unwrap_or(self.http.max_tokens),
            "messages": messages,
        });
        if let Some(system) = &request.system {
            body["system"] = json!(system);
        }
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    json!({"name": names.wire(&t.name), "description": t.description,
                           "input_schema": t.parameters})
                })
                .collect();
            body["tools"] = Value::Array(tools);
        }
        if let Some(budget) = self.thinking_budget {
            body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
        }
        if stream {
            body["stream"] = json!(true);
        }
        body
    }

    async fn call(
        &self,
        request: ModelRequest,
        deltas: Option<DeltaSink>,
    ) -> Result<ModelResponse, ModelError> {
        let key = self.http.api_key()?;
        let redact = Redactor::with_secrets(key.as_deref());
        let mut headers = vec![("anthropic-version", self.version.clone())];
        if let Some(key) = &key {
            headers.push(("x-api-key", key.clone()));
        }
        let stream = self.http.stream && deltas.is_some();
        let mut names = ToolNames::default();
        let body = self.body(&request, stream, &mut names);
        let response = self
            .http
            .post("/messages", &headers, &body, &redact)
            .await?;
        if stream && super::is_event_stream(&response) {
            let mut answer = Answer::new(&redact, deltas);
            let done = read_sse(response, &redact, |event| {
                answer.event(&parse_json(&redact, event.data.as_bytes())?)
            })
            .await?;
            if !done {
                return Err(truncated(&redact, "Messages"));
            }
            answer.deltas.finish();
            Ok(redact.response(answer.into_response(&names, &self.http.model)?))
        } else {
            let mut answer = Answer::new(&redact, None);
            let bytes = response
                .bytes()
                .await
                .map_err(|e| super::transport_error(&e, &redact))?;
            answer.whole(&parse_json(&redact, &bytes)?)?;
            Ok(redact.response(answer.into_response(&names, &self.http.model)?))
        }
    }
}

/// A neutral message's blocks on this wire.
fn blocks(message: &Message, names: &mut ToolNames) -> Vec<Value> {
    let mut out = Vec::new();
    for block in &message.content {
        match block {
            ContentBlock::Text { text } if !text.is_empty() => {
                out.push(json!({"type": "text", "text": text}))
            }
            ContentBlock::Text { .. } => {}
            ContentBlock::ToolCall(call) => {
                // The log keeps what the model wrote; the wire wants an object.
                let input = match serde_json::from_str::<Value>(&call.arguments) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({}),
                };
                out.push(json!({"type": "tool_use", "id": call.id,
                                "name": names.wire(&call.name), "input": input}));
            }
            ContentBlock::ToolResult {
                call_id,
                content,
                is_error,
                parts,
            } => {
                // Text alone is a string; typed parts make it blocks: images
                // as image blocks inside the result, the rest as text.
                let content = if parts.is_empty() {
                    json!(content)
                } else {
                    let text = super::parts::with_text_parts(content, parts);
                    let mut inner = Vec::new();
                    if !text.is_empty() {
                        inner.push(json!({"type": "text", "text": text}));
                    }
                    for (media_type, data) in parts.iter().filter_map(super::parts::image) {
                        inner.push(json!({"type": "image", "source":
                            {"type": "base64", "media_type": media_type, "data": data}}));
                    }
                    Value::Array(inner)
                };
                out.push(json!({"type": "tool_result", "tool_use_id": call_id,
                                "content": content, "is_error": is_error}));
            }
            ContentBlock::Reasoning {
                text,
                signature,
                opaque,
                provider,
            } if provider == NAME => match (text, signature, opaque) {
                (Some(text), Some(signature), _) => {
                    out.push(json!({"type": "thinking", "thinking": text, "signature": signature}))
                }
                (_, _, Some(data)) => out.push(json!({"type": "redacted_thinking", "data": data})),
                // Unsigned thinking would be refused; leave it out.
                _ => {}
            },
            ContentBlock::Reasoning { .. } => {}
        }
    }
    out
}

/// A content block as it is assembled.
enum Block {
    Text(String),
    Thinking {
        text: String,
        signature: String,
    },
    Redacted(String),
    ToolUse {
        id: String,
        name: String,
        json: String,
    },
}

/// A response as it is assembled, from one body or from stream events.
struct Answer<'r> {
    redact: &'r Redactor,
    deltas: Deltas<'r>,
    blocks: BTreeMap<u64, Block>,
    stop_reason: Option<String>,
    /// `None` until the wire reports some: a stream may end without it.
    usage: Option<Usage>,
    model: Option<String>,
}

impl<'r> Answer<'r> {
    fn new(redact: &'r Redactor, sink: Option<DeltaSink>) -> Answer<'r> {
        Answer {
            redact,
            deltas: Deltas::new(redact, sink),
            blocks: BTreeMap::new(),
            stop_reason: None,
            usage: None,
            model: None,
        }
    }

    fn whole(&mut self, value: &Value) -> Result<(), ModelError> {
        if value.get("type").and_then(Value::as_str) != Some("message") {
            return Err(malformed(self.redact, "not a message"));
        }
        let content = value
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed(self.redact, "a message without content"))?;
        for (index, block) in content.iter().enumerate() {
            self.start(index as u64, block)?;
            if let Some(Block::ToolUse { json, .. }) = self.blocks.get_mut(&(index as u64)) {
                *json = block.get("input").map(Value::to_string).unwrap_or_default();
            }
        }
        self.meta(value);
        Ok(())
    }

    fn meta(&mut self, message: &Value) {
        if let Some(reason) = message.get("stop_reason").and_then(Value::as_str) {
            self.stop_reason = Some(reason.to_string());
        }
        if let Some(model) = message.get("model").and_then(Value::as_str) {
            self.model = Some(model.to_string());
        }
        if let Some(usage) = message.get("usage") {
            self.usage_from(usage);
        }
    }

    /// Usage as the wire reports it; cached input counts as input.
    fn usage_from(&mut self, usage: &Value) {
        let n = |f: &str| usage.get(f).and_then(Value::as_u64);
        let input: Option<u64> = [
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ]
        .iter()
        .filter_map(|f| n(f))
        .reduce(|a, b| a + b);
        let output = n("output_tokens");
        if input.is_none() && output.is_none() {
            return;
        }
        let usage = self.usage.get_or_insert_with(Usage::default);
        if let Some(input) = input {
            usage.input_tokens = input;
        }
        if let Some(output) = output {
            usage.output_tokens = output;
        }
    }

    fn start(&mut self, index: u64, block: &Value) -> Result<(), ModelError> {
        let s = |f: &str| {
            block
                .get(f)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let made = match block.get("type").and_then(Value::as_str) {
            Some("text") => Block::Text(s("text")),
            Some("thinking") => Block::Thinking {
                text: s("thinking"),
                signature: s("signature"),
            },
            Some("redacted_thinking") => Block::Redacted(s("data")),
            Some("tool_use") => Block::ToolUse {
                id: s("id"),
                name: s("name"),
                json: String::new(),
            },
            // Block types this build does not know (server tools, citations)
            // are left out rather than failing the turn.
            Some(_) => return Ok(()),
            None => return Err(malformed(self.redact, "a content block without a type")),
        };
        self.blocks.insert(index, made);
        Ok(())
    }

    /// Fold one stream event; `Ok(true)` at `message_stop`.
    fn event(&mut self, value: &Value) -> Result<bool, ModelError> {
        let redact = self.redact;
        let index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
        match value.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let message = value
                    .get("message")
                    .ok_or_else(|| malformed(redact, "message_start without a message"))?;
                self.meta(message);
            }
            Some("content_block_start") => {
                let block = value
                    .get("content_block")
                    .ok_or_else(|| malformed(redact, "content_block_start without a block"))?;
                self.start(index, block)?;
            }
            Some("content_block_delta") => {
                let delta = value
                    .get("delta")
                    .ok_or_else(|| malformed(redact, "content_block_delta without a delta"))?;
                let text = |f: &str| delta.get(f).and_then(Value::as_str).unwrap_or_default();
                match (
                    self.blocks.get_mut(&index),
                    delta.get("type").and_then(Value::as_str),
                ) {
                    (Some(Block::Text(t)), Some("text_delta")) => {
                        self.deltas.send(DeltaKind::Text, text("text"));
                        t.push_str(text("text"));
                    }
                    (Some(Block::Thinking { text: t, .. }), Some("thinking_delta")) => {
                        self.deltas.send(DeltaKind::Reasoning, text("thinking"));
                        t.push_str(text("thinking"));
                    }
                    (Some(Block::Thinking { signature, .. }), Some("signature_delta")) => {
                        signature.push_str(text("signature"));
                    }
                    (Some(Block::ToolUse { json, .. }), Some("input_json_delta")) => {
                        self.deltas
                            .send(DeltaKind::ToolArguments, text("partial_json"));
                        json.push_str(text("partial_json"));
                    }
                    (None, _) => {}
                    (Some(_), kind) => {
                        return Err(malformed(
                            redact,
                            format!(
                                "a {} delta for block {index} of another type",
                                kind.unwrap_or("typeless")
                            ),
                        ));
                    }
                }
            }
            Some("message_delta") => {
                if let Some(reason) = value.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(reason.to_string());
                }
                if let Some(usage) = value.get("usage") {
                    self.usage_from(usage);
                }
            }
            Some("message_stop") => return Ok(true),
            Some("error") => {
                let kind = value.pointer("/error/type").and_then(Value::as_str);
                let message = value
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("an error event");
                let message = redact.scrub(&format!("the provider failed mid-stream: {message}"));
                return Err(match kind {
                    Some("overloaded_error" | "api_error") => {
                        ModelError::transient(ErrorKind::Unavailable, message)
                    }
                    Some("rate_limit_error") => {
                        ModelError::transient(ErrorKind::RateLimited, message)
                    }
                    _ => ModelError::fatal(ErrorKind::Other, message),
                });
            }
            // ping, content_block_stop, and event types added later.
            _ => {}
        }
        Ok(false)
    }

    fn into_response(
        self,
        names: &ToolNames,
        configured: &str,
    ) -> Result<ModelResponse, ModelError> {
        let mut content = Vec::new();
        for block in self.blocks.into_values() {
            content.push(match block {
                Block::Text(text) if text.is_empty() => continue,
                Block::Text(text) => ContentBlock::Text { text },
                Block::Thinking { text, signature } => ContentBlock::Reasoning {
                    text: Some(text),
                    signature: (!signature.is_empty()).then_some(signature),
                    opaque: None,
                    provider: NAME.to_string(),
                },
                Block::Redacted(data) => ContentBlock::Reasoning {
                    text: None,
                    signature: None,
                    opaque: Some(data),
                    provider: NAME.to_string(),
                },
                Block::ToolUse { id, name, json } => {
                    let arguments = if json.trim().is_empty() {
                        "{}".to_string()
                    } else {
                        json
                    };
                    if serde_json::from_str::<Value>(&arguments).is_err() {
                        return Err(malformed(
                            self.redact,
                            format!("the arguments of tool call {id} are not JSON"),
                        ));
                    }
                    ContentBlock::ToolCall(ToolCall {
                        id,
                        name: names.neutral(&name),
                        arguments,
                    })
                }
            });
        }
        let stop_reason = match self.stop_reason.as_deref() {
            Some("end_turn") => StopReason::EndTurn,
            Some("tool_use") => StopReason::ToolUse,
            Some("max_tokens") => StopReason::MaxTokens,
            Some("stop_sequence") => StopReason::StopSequence,
            Some("refusal") => StopReason::Refusal,
            _ => StopReason::Other,
        };
        Ok(ModelResponse {
            content,
            stop_reason,
            usage: self.usage,
            provider: NAME.to_string(),
            model: self.model.unwrap_or_else(|| configured.to_string()),
        })
    }
}

impl ModelProvider for Anthropic {
    fn name(&self) -> &str {
        NAME
    }

    fn complete(&self, request: ModelRequest) -> ModelFuture<'_> {
        Box::pin(self.call(request, None))
    }

    fn complete_streaming(&self, request: ModelRequest, deltas: DeltaSink) -> ModelFuture<'_> {
        Box::pin(self.call(request, Some(deltas)))
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.http.retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold<'r>(redact: &'r Redactor, events: &[Value]) -> (Result<bool, ModelError>, Answer<'r>) {
        let mut answer = Answer::new(redact, None);
        let mut last = Ok(false);
        for event in events {
            last = answer.event(event);
            if !matches!(last, Ok(false)) {
                break;
            }
        }
        (last, answer)
    }

    #[test]
    fn streamed_thinking_and_tool_use_are_assembled() {
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me think"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAh"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "fs_read", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"path\": "}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"a.txt\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 42}}),
            json!({"type": "message_stop"}),
        ];
        let redact = Redactor::new();
        let (done, answer) = fold(&redact, &events);
        assert!(matches!(done, Ok(true)));
        let mut names = ToolNames::default();
        names.wire("fs.read");
        let response = answer.into_response(&names, "m").unwrap();
        assert_eq!(response.stop_reason, StopReason::ToolUse);
        let usage = response.usage.expect("reported");
        assert_eq!(usage.input_tokens, 15);
        assert_eq!(usage.output_tokens, 42);
        assert_eq!(
            response.content[0],
            ContentBlock::Reasoning {
                text: Some("Let me think".into()),
                signature: Some("EqQBCgIYAh".into()),
                opaque: None,
                provider: "anthropic".into(),
            }
        );
        assert_eq!(
            response.content[1],
            ContentBlock::ToolCall(ToolCall {
                id: "toolu_1".into(),
                name: "fs.read".into(),
                arguments: "{\"path\": \"a.txt\"}".into(),
            })
        );
    }

    #[test]
    fn an_overloaded_error_event_is_retryable() {
        let redact = Redactor::new();
        let (done, _) = fold(
            &redact,
            &[
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ],
        );
        let error = done.expect_err("an error event fails the attempt");
        assert!(error.retryable);
        assert_eq!(error.kind, ErrorKind::Unavailable);
    }

    #[test]
    fn reasoning_of_another_provider_is_dropped() {
        let message = Message {
            role: Role::Assistant,
            content: vec![
                ContentBlock::Reasoning {
                    text: Some("t".into()),
                    signature: None,
                    opaque: Some("enc".into()),
                    provider: "openai".into(),
                },
                ContentBlock::text("hi"),
            ],
        };
        let out = blocks(&message, &mut ToolNames::default());
        assert_eq!(out, vec![json!({"type": "text", "text": "hi"})]);
    }
}
