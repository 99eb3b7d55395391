//! The OpenAI Chat Completions wire (`POST {base}/chat/completions`), also
//! spoken by Ollama, vLLM, llama.cpp's server, LM Studio and OpenRouter.
//!
//! What every one of them accepts (docs/models-and-tools.md, "OpenAI-compatible
//! servers"): an assistant message's `content` is always a string (`""` beside
//! tool calls, never `null`), and `tool_choice: "auto"` goes with any tools.
//!
//! Reasoning: `reasoning_content` / `reasoning` text is kept readable;
//! `reasoning_details` (OpenRouter's encrypted reasoning) is kept opaque and
//! sent back on the assistant message, to this wire only. Readable reasoning
//! is not sent back: several servers refuse it in input.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Deltas, HttpSettings, ToolNames, malformed, parse_json, read_sse, truncated};
use crate::config::ModelConfig;
use crate::effects::SetupError;
use crate::effects::model::{
    DeltaKind, DeltaSink, ModelError, ModelFuture, ModelProvider, ModelRequest, RetryPolicy, Role,
};
use crate::effects::redact::Redactor;
use crate::journal::{ContentBlock, ModelResponse, StopReason, ToolCall, Usage};

/// The provider name recorded on responses and reasoning blocks.
const NAME: &str = "openai";

/// A model behind the Chat Completions wire.
pub struct OpenAi {
    http: HttpSettings,
    reasoning_effort: Option<String>,
    max_tokens: Option<u32>,
}

impl OpenAi {
    /// From an alias's configuration (`provider = "openai"`).
    pub fn new(config: &ModelConfig) -> Result<OpenAi, SetupError> {
        Ok(OpenAi {
            http: HttpSettings::new(config, "https://api.openai.com/v1")?,
            reasoning_effort: config.reasoning_effort.clone(),
            max_tokens: config.max_tokens,
        })
    }

    fn body(&self, request: &ModelRequest, stream: bool, names: &mut ToolNames) -> Value {
        let mut messages = Vec::new();
        if let Some(system) = &request.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        for message in &request.messages {
            match message.role {
                Role::User => user_messages(&message.content, &mut messages),
                Role::Assistant => messages.push(assistant_message(&message.content, names)),
            }
        }
        let mut body = json!({"model": self.http.model, "messages": messages});
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": names.wire(&t.name),
                        "description": t.description,
                        "parameters": t.parameters,
                    }})
                })
                .collect();
            body["tools"] = Value::Array(tools);
            // The OpenAI default, said out loud: llama-cpp-python ignores the
            // tools without it.
            body["tool_choice"] = json!("auto");
        }
        if let Some(max) = request.max_tokens.or(self.max_tokens) {
            body["max_tokens"] = json!(max);
        }
        if let Some(effort) = &self.reasoning_effort {
            body["reasoning_effort"] = json!(effort);
        }
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
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
        let mut headers = Vec::new();
        if let Some(key) = &key {
            headers.push(("authorization", format!("Bearer {key}")));
        }
        let stream = self.http.stream && deltas.is_some();
        let mut names = ToolNames::default();
        for call in request
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .filter_map(tool_call)
        {
            names.wire(&call.name);
        }
        let body = self.body(&request, stream, &mut names);
        let response = self
            .http
            .post("/chat/completions", &headers, &body, &redact)
            .await?;
        if stream && super::is_event_stream(&response) {
            let mut answer = Answer::new(&redact, deltas);
            let done = read_sse(response, &redact, |event| {
                if event.data.trim() == "[DONE]" {
                    return Ok(true);
                }
                let chunk = parse_json(&redact, event.data.as_bytes())?;
                answer.chunk(&chunk)?;
                Ok(false)
            })
            .await?;
            if !done && answer.finish_reason.is_none() {
                return Err(truncated(&redact, "Chat Completions"));
            }
            answer.deltas.finish();
            Ok(redact.response(answer.into_response(&names, &self.http.model)))
        } else {
            let mut answer = Answer::new(&redact, None);
            let bytes = response
                .bytes()
                .await
                .map_err(|e| super::transport_error(&e, &redact))?;
            answer.whole(&parse_json(&redact, &bytes)?)?;
            Ok(redact.response(answer.into_response(&names, &self.http.model)))
        }
    }
}

fn tool_call(block: &ContentBlock) -> Option<&ToolCall> {
    match block {
        ContentBlock::ToolCall(call) => Some(call),
        _ => None,
    }
}

/// A neutral user message: tool results become `tool` messages (they must
/// follow the assistant's calls), text a `user` message. A `tool` message
/// holds text only, so the images tool results returned follow in one
/// `user` message, each after a line naming its call.
fn user_messages(content: &[ContentBlock], out: &mut Vec<Value>) {
    let mut images = Vec::new();
    for block in content {
        if let ContentBlock::ToolResult {
            call_id,
            content,
            is_error,
            parts,
        } = block
        {
            let content = super::parts::with_text_parts(content, parts);
            let content = if *is_error {
                format!("error: {content}")
            } else {
                content
            };
            out.push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
            let mut first = true;
            for (media_type, data) in parts.iter().filter_map(super::parts::image) {
                if first {
                    images.push(json!({"type": "text",
                                       "text": format!("The image tool call {call_id} returned:")}));
                    first = false;
                }
                images.push(json!({"type": "image_url",
                                   "image_url": {"url": format!("data:{media_type};base64,{data}")}}));
            }
        }
    }
    if !images.is_empty() {
        out.push(json!({"role": "user", "content": images}));
    }
    let text = crate::journal::plain_text(content);
    if !text.is_empty() {
        out.push(json!({"role": "user", "content": text}));
    }
}

fn assistant_message(content: &[ContentBlock], names: &mut ToolNames) -> Value {
    let text = crate::journal::plain_text(content);
    let calls: Vec<Value> = content
        .iter()
        .filter_map(tool_call)
        .map(|c| {
            json!({"id": c.id, "type": "function",
                   "function": {"name": names.wire(&c.name), "arguments": c.arguments}})
        })
        .collect();
    // Always a string, `""` beside tool calls: `null` is refused by
    // llama-cpp-python's validation, and LiteLLM drops a `null` key, which
    // chat templates that read `message.content` then fail on.
    let mut message = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    // Opaque reasoning goes back to this wire only; another provider's is dropped.
    let details: Vec<Value> = content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Reasoning {
                opaque: Some(opaque),
                provider,
                ..
            } if provider == NAME => serde_json::from_str::<Value>(opaque).ok(),
            _ => None,
        })
        .flat_map(|v| match v {
            Value::Array(items) => items,
            other => vec![other],
        })
        .collect();
    if !details.is_empty() {
        message["reasoning_details"] = Value::Array(details);
    }
    message
}

/// A response as it is assembled, from one body or from stream chunks.
struct Answer<'r> {
    redact: &'r Redactor,
    deltas: Deltas<'r>,
    text: String,
    reasoning: String,
    reasoning_details: Vec<Value>,
    /// By the index the wire gives them: (id, name, arguments).
    calls: BTreeMap<u64, (String, String, String)>,
    finish_reason: Option<String>,
    /// `None` unless the wire reports it (a stream without its usage chunk).
    usage: Option<Usage>,
    model: Option<String>,
}

impl<'r> Answer<'r> {
    fn new(redact: &'r Redactor, sink: Option<DeltaSink>) -> Answer<'r> {
        Answer {
            redact,
            deltas: Deltas::new(redact, sink),
            text: String::new(),
            reasoning: String::new(),
            reasoning_details: Vec::new(),
            calls: BTreeMap::new(),
            finish_reason: None,
            usage: None,
            model: None,
        }
    }

    fn whole(&mut self, value: &Value) -> Result<(), ModelError> {
        let choice = value
            .pointer("/choices/0")
            .ok_or_else(|| malformed(self.redact, "no choices"))?;
        let message = choice
            .get("message")
            .ok_or_else(|| malformed(self.redact, "a choice without a message"))?;
        self.fragment(message)?;
        self.finish_reason = choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string);
        self.meta(value);
        Ok(())
    }

    fn chunk(&mut self, value: &Value) -> Result<(), ModelError> {
        if let Some(error) = value.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("an error event");
            return Err(ModelError::transient(
                crate::journal::ErrorKind::Unavailable,
                self.redact
                    .scrub(&format!("the provider failed mid-stream: {message}")),
            ));
        }
        if let Some(choice) = value.pointer("/choices/0") {
            if let Some(delta) = choice.get("delta") {
                self.fragment(delta)?;
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(reason.to_string());
            }
        }
        self.meta(value);
        Ok(())
    }

    /// Fold a message, or a stream delta of one (the same fields, in pieces).
    fn fragment(&mut self, m: &Value) -> Result<(), ModelError> {
        if let Some(text) = m.get("content").and_then(Value::as_str) {
            self.deltas.send(DeltaKind::Text, text);
            self.text.push_str(text);
        }
        for field in ["reasoning_content", "reasoning"] {
            if let Some(text) = m.get(field).and_then(Value::as_str) {
                self.deltas.send(DeltaKind::Reasoning, text);
                self.reasoning.push_str(text);
            }
        }
        if let Some(Value::Array(details)) = m.get("reasoning_details") {
            self.reasoning_details.extend(details.iter().cloned());
        }
        if let Some(calls) = m.get("tool_calls") {
            let calls = calls
                .as_array()
                .ok_or_else(|| malformed(self.redact, "tool_calls is not a list"))?;
            for (position, call) in calls.iter().enumerate() {
                let index = call
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(position as u64);
                let slot = self.calls.entry(index).or_default();
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    slot.0 = id.to_string();
                }
                let function = call.get("function");
                if let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str) {
                    slot.1.push_str(name);
                }
                match function.and_then(|f| f.get("arguments")) {
                    Some(Value::String(args)) => {
                        self.deltas.send(DeltaKind::ToolArguments, args);
                        slot.2.push_str(args);
                    }
                    // Some servers send the arguments as an object.
                    Some(args @ Value::Object(_)) => slot.2.push_str(&args.to_string()),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn meta(&mut self, value: &Value) {
        if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
            let n = |f: &str| usage.get(f).and_then(Value::as_u64).unwrap_or(0);
            self.usage = Some(Usage {
                input_tokens: n("prompt_tokens"),
                output_tokens: n("completion_tokens"),
            });
        }
        if let Some(model) = value.get("model").and_then(Value::as_str) {
            self.model = Some(model.to_string());
        }
    }

    fn into_response(self, names: &ToolNames, configured: &str) -> ModelResponse {
        let mut content = Vec::new();
        if !self.reasoning.is_empty() || !self.reasoning_details.is_empty() {
            content.push(ContentBlock::Reasoning {
                text: (!self.reasoning.is_empty()).then_some(self.reasoning),
                signature: None,
                opaque: (!self.reasoning_details.is_empty())
                    .then(|| Value::Array(self.reasoning_details).to_string()),
                provider: NAME.to_string(),
            });
        }
        if !self.text.is_empty() {
            content.push(ContentBlock::Text { text: self.text });
        }
        let mut called = false;
        for (index, (id, name, arguments)) in self.calls {
            called = true;
            content.push(ContentBlock::ToolCall(ToolCall {
                // A few local servers leave the id out; the log needs one.
                id: if id.is_empty() {
                    format!("call_{index}")
                } else {
                    id
                },
                name: names.neutral(&name),
                arguments: if arguments.trim().is_empty() {
                    "{}".into()
                } else {
                    arguments
                },
            }));
        }
        let stop_reason = match self.finish_reason.as_deref() {
            // Ollama says `stop` even when it called tools.
            _ if called => StopReason::ToolUse,
            Some("stop") => StopReason::EndTurn,
            Some("length") => StopReason::MaxTokens,
            Some("tool_calls" | "function_call") => StopReason::ToolUse,
            Some("content_filter") => StopReason::Refusal,
            _ => StopReason::Other,
        };
        ModelResponse {
            content,
            stop_reason,
            usage: self.usage,
            provider: NAME.to_string(),
            model: self.model.unwrap_or_else(|| configured.to_string()),
        }
    }
}

impl ModelProvider for OpenAi {
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
