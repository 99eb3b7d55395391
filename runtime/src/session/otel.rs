//! A log as OpenTelemetry traces (`logbook export --format otel`), after the
//! GenAI semantic conventions (docs/ownership.md has the mapping table).
//!
//! - One trace per log: its id is the log's id (a UUID is 16 bytes, as a
//!   trace id is). Span ids derive from the log's id and the seq of the
//!   event that opens the span, so exporting a log twice gives the same
//!   spans, and a receiver that sees both keeps one.
//! - An `invoke_agent` span per turn: from an `input` to the last event
//!   before the next one. A `chat` span per model call and an
//!   `execute_tool` span per tool call, from `requested` to the event that
//!   ends the effect, children of the turn that requested them (effects
//!   before the first input have no parent).
//! - Message content (inputs, model answers, outputs, tool arguments and
//!   results, reasons given for approvals) is left out unless asked for:
//!   traces often go where a transcript should not. Ids, names, models,
//!   usage, who sent an input and who decided an approval are always there.
//! - A retried failure is an event on its span; the failure that ends an
//!   effect sets `error.type` and the span's error status.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event as SpanEvent, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::journal::{
    ContentBlock, Created, ErrorKind, EventBody, LogId, ModelResponse, Outcome, RequestedEffect,
    Sender, StopReason, StoredEvent, ToolCall,
};
use crate::session::{Host, SessionError};

/// Events read from the journal per page.
const PAGE: usize = 4096;

/// Time one POST to a collector may take.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The semantic conventions the spans follow (the GenAI attributes they use,
/// `gen_ai.provider.name` and the message attributes, are from 1.37).
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.37.0";

/// Spans per export request: a file line, or one POST to a collector.
pub const SPANS_PER_REQUEST: usize = 512;

/// What goes into the traces.
#[derive(Clone, Copy, Debug, Default)]
pub struct OtelOptions {
    /// Message content: inputs, answers, outputs, tool arguments and results.
    pub include_content: bool,
}

/// Builds the spans of one log from its events, in order.
pub struct Tracer {
    log: LogId,
    /// The session's name, if it has one.
    name: Option<String>,
    options: OtelOptions,
    /// The guest of the log (`created`, then `guest-changed`): the agent's name.
    agent: String,
    /// Tool descriptions by name, from `created`.
    tools: HashMap<String, String>,
    spans: Vec<Span>,
    turn: Option<Turn>,
    /// Effects requested and not yet ended, by key.
    open: HashMap<String, Open>,
    /// The time of the last event seen (unix ms).
    last_at: u64,
}

/// The event a span opens at, and what kind of span (a byte of its id's input).
struct Origin {
    seq: u64,
    at: u64,
    tag: u8,
}

/// The turn being built.
struct Turn {
    /// Its span, in `Tracer::spans`.
    span: usize,
    provider: Option<String>,
    model: Option<String>,
    input_tokens: u64,
    output_tokens: u64,
    outputs: Vec<Value>,
}

/// An effect's open span.
struct Open {
    span: usize,
    /// The turn's span it belongs to, if any.
    turn: Option<usize>,
}

impl Tracer {
    /// A tracer of log `log` (named `name`).
    pub fn new(log: LogId, name: Option<String>, options: OtelOptions) -> Tracer {
        Tracer {
            log,
            name,
            options,
            agent: String::new(),
            tools: HashMap::new(),
            spans: Vec::new(),
            turn: None,
            open: HashMap::new(),
            last_at: 0,
        }
    }

    fn span_id(&self, seq: u64, tag: u8) -> Vec<u8> {
        let mut hasher = Sha256::new();
        hasher.update(self.log.as_bytes());
        hasher.update(seq.to_be_bytes());
        hasher.update([tag]);
        let digest = hasher.finalize();
        let mut id = digest[..8].to_vec();
        // An all-zero span id is invalid.
        if id.iter().all(|b| *b == 0) {
            id[7] = 1;
        }
        id
    }

    /// A new span, open (its end is set when it ends), under `parent`.
    fn open_span(
        &mut self,
        origin: Origin,
        name: String,
        kind: SpanKind,
        parent: Option<usize>,
        attributes: Vec<KeyValue>,
    ) -> usize {
        let Origin { seq, at, tag } = origin;
        let parent_span_id = parent.map_or_else(Vec::new, |p| self.spans[p].span_id.clone());
        let mut all = vec![kv_str("gen_ai.conversation.id", self.log.to_string())];
        all.extend(attributes);
        self.spans.push(Span {
            trace_id: self.log.as_bytes().to_vec(),
            span_id: self.span_id(seq, tag),
            parent_span_id,
            name,
            kind: kind as i32,
            start_time_unix_nano: nanos(at),
            end_time_unix_nano: nanos(at),
            attributes: all,
            ..Span::default()
        });
        self.spans.len() - 1
    }

    /// Note one event.
    pub fn note(&mut self, stored: &StoredEvent) {
        let event = &stored.event;
        let (seq, at) = (event.seq, event.at);
        match &event.body {
            EventBody::Created(created) => self.created(created),
            EventBody::GuestChanged { to, .. } => self.agent.clone_from(&to.name),
            EventBody::Input { from, content } => {
                self.end_turn();
                let mut attributes = vec![
                    kv_str("gen_ai.operation.name", "invoke_agent"),
                    kv_str("gen_ai.agent.name", self.agent.clone()),
                    kv_str("gen_ai.agent.id", self.log.to_string()),
                    kv_int("logbook.seq", seq),
                ];
                match from {
                    Sender::Principal(p) => {
                        attributes.push(kv_str("logbook.input.from", p.clone()));
                    }
                    Sender::Log { log, key, hops } => {
                        attributes.push(kv_str("logbook.input.from_log", log.clone()));
                        attributes.push(kv_str("logbook.input.from_key", key.clone()));
                        attributes.push(kv_int("logbook.input.hops", u64::from(*hops)));
                    }
                }
                if let Some(name) = &self.name {
                    attributes.push(kv_str("logbook.session.name", name.clone()));
                }
                if self.options.include_content {
                    let messages = json!([{"role": "user", "parts": parts(content)}]);
                    attributes.push(kv_str("gen_ai.input.messages", messages.to_string()));
                }
                let name = format!("invoke_agent {}", self.agent);
                let origin = Origin { seq, at, tag: b't' };
                let span = self.open_span(origin, name, SpanKind::Internal, None, attributes);
                self.turn = Some(Turn {
                    span,
                    provider: None,
                    model: None,
                    input_tokens: 0,
                    output_tokens: 0,
                    outputs: Vec::new(),
                });
            }
            EventBody::Requested { key, effect } => self.requested(seq, at, key, effect),
            EventBody::Completed { key, outcome } => self.completed(at, key, outcome),
            EventBody::Failed {
                key,
                error,
                message,
                retryable,
                attempt,
            } => self.failed(at, key, *error, message, *retryable, *attempt),
            EventBody::Cancelled { key } => {
                if let Some(open) = self.open.remove(key) {
                    let span = &mut self.spans[open.span];
                    span.end_time_unix_nano = nanos(at);
                    span.attributes.push(kv_bool("logbook.cancelled", true));
                }
            }
            EventBody::ApprovalRequested { key, .. } => {
                if let Some(open) = self.open.get(key) {
                    self.spans[open.span].events.push(SpanEvent {
                        time_unix_nano: nanos(at),
                        name: "logbook.approval.requested".into(),
                        ..SpanEvent::default()
                    });
                }
            }
            EventBody::ApprovalDecided {
                key,
                allow,
                by,
                reason,
            } => {
                let mut attributes = vec![kv_bool("logbook.approval.allow", *allow)];
                attributes.push(kv_str("logbook.approval.by", by.clone()));
                if self.options.include_content
                    && let Some(reason) = reason
                {
                    attributes.push(kv_str("logbook.approval.reason", reason.clone()));
                }
                let span = self
                    .open
                    .get(key)
                    .map(|o| o.span)
                    .or(self.turn.as_ref().map(|t| t.span));
                if let Some(span) = span {
                    self.spans[span].events.push(SpanEvent {
                        time_unix_nano: nanos(at),
                        name: "logbook.approval.decided".into(),
                        attributes,
                        ..SpanEvent::default()
                    });
                }
            }
            EventBody::Output { content, .. } => {
                if let Some(turn) = &mut self.turn
                    && self.options.include_content
                {
                    turn.outputs
                        .push(json!({"role": "assistant", "parts": parts(content)}));
                }
            }
            EventBody::Sent { key, target } => {
                if let Some(turn) = &self.turn {
                    self.spans[turn.span].events.push(SpanEvent {
                        time_unix_nano: nanos(at),
                        name: "logbook.sent".into(),
                        attributes: vec![
                            kv_str("logbook.effect.key", key.clone()),
                            kv_str("logbook.sent.to", target.clone()),
                        ],
                        ..SpanEvent::default()
                    });
                }
            }
            EventBody::GuestFailed { message } => {
                if let Some(turn) = &self.turn {
                    let span = &mut self.spans[turn.span];
                    span.attributes.push(kv_str("error.type", "guest_failed"));
                    span.status = Some(Status {
                        code: StatusCode::Error as i32,
                        message: if self.options.include_content {
                            message.clone()
                        } else {
                            "the guest failed".into()
                        },
                    });
                }
            }
            EventBody::Finished { .. } => {
                if let Some(turn) = &self.turn {
                    self.spans[turn.span]
                        .attributes
                        .push(kv_bool("logbook.finished", true));
                }
            }
            _ => {}
        }
        self.last_at = at;
        if let Some(turn) = &self.turn {
            self.spans[turn.span].end_time_unix_nano = nanos(at);
        }
    }

    fn created(&mut self, created: &Created) {
        self.agent.clone_from(&created.guest.name);
        for tool in &created.tools {
            self.tools
                .insert(tool.name.clone(), tool.description.clone());
        }
    }

    fn requested(&mut self, seq: u64, at: u64, key: &str, effect: &RequestedEffect) {
        let turn = self.turn.as_ref().map(|t| t.span);
        let (name, kind, tag, mut attributes) = match effect {
            RequestedEffect::Model { model, .. } => {
                if let Some(turn) = &mut self.turn {
                    turn.model.get_or_insert_with(|| model.clone());
                }
                (
                    format!("chat {model}"),
                    SpanKind::Client,
                    b'm',
                    vec![
                        kv_str("gen_ai.operation.name", "chat"),
                        kv_str("gen_ai.request.model", model.clone()),
                    ],
                )
            }
            RequestedEffect::Tool(ToolCall {
                id,
                name,
                arguments,
            }) => {
                let mut attributes = vec![
                    kv_str("gen_ai.operation.name", "execute_tool"),
                    kv_str("gen_ai.tool.name", name.clone()),
                    kv_str("gen_ai.tool.call.id", id.clone()),
                    kv_str("gen_ai.tool.type", "function"),
                ];
                if let Some(description) = self.tools.get(name) {
                    attributes.push(kv_str("gen_ai.tool.description", description.clone()));
                }
                if self.options.include_content {
                    attributes.push(kv_str("gen_ai.tool.call.arguments", arguments.clone()));
                }
                (
                    format!("execute_tool {name}"),
                    SpanKind::Internal,
                    b'x',
                    attributes,
                )
            }
            // Asking a human and sleeping are not GenAI operations: they
            // show in their turn's duration, not as spans.
            RequestedEffect::Ask(_) | RequestedEffect::Sleep { .. } => return,
        };
        attributes.push(kv_str("logbook.effect.key", key.to_string()));
        attributes.push(kv_int("logbook.seq", seq));
        let span = self.open_span(Origin { seq, at, tag }, name, kind, turn, attributes);
        self.open.insert(key.to_string(), Open { span, turn });
    }

    fn completed(&mut self, at: u64, key: &str, outcome: &Outcome) {
        let Some(open) = self.open.remove(key) else {
            return;
        };
        let include = self.options.include_content;
        let span = &mut self.spans[open.span];
        span.end_time_unix_nano = nanos(at);
        match outcome {
            Outcome::Model(ModelResponse {
                content,
                stop_reason,
                usage,
                provider,
                model,
            }) => {
                let finish = finish_reason(*stop_reason);
                span.attributes.extend([
                    kv_str("gen_ai.provider.name", provider_name(provider)),
                    kv_str("logbook.provider", provider.clone()),
                    kv_str("gen_ai.response.model", model.clone()),
                    kv_strs("gen_ai.response.finish_reasons", [finish]),
                ]);
                if let Some(usage) = usage {
                    span.attributes.extend([
                        kv_int("gen_ai.usage.input_tokens", usage.input_tokens),
                        kv_int("gen_ai.usage.output_tokens", usage.output_tokens),
                    ]);
                }
                if include {
                    let messages = json!([{
                        "role": "assistant",
                        "parts": parts(content),
                        "finish_reason": finish,
                    }]);
                    span.attributes
                        .push(kv_str("gen_ai.output.messages", messages.to_string()));
                }
                if let Some(turn) = &mut self.turn
                    && open.turn == Some(turn.span)
                {
                    turn.provider
                        .get_or_insert_with(|| provider_name(provider).to_string());
                    if let Some(usage) = usage {
                        turn.input_tokens += usage.input_tokens;
                        turn.output_tokens += usage.output_tokens;
                    }
                }
            }
            Outcome::Tool {
                content, is_error, ..
            } => {
                if include {
                    span.attributes
                        .push(kv_str("gen_ai.tool.call.result", content.clone()));
                }
                if *is_error {
                    span.attributes.push(kv_str("error.type", "tool_error"));
                    span.status = Some(Status {
                        code: StatusCode::Error as i32,
                        message: "the tool reported an error".into(),
                    });
                }
            }
            Outcome::TimerFired => {}
        }
    }

    fn failed(
        &mut self,
        at: u64,
        key: &str,
        error: ErrorKind,
        message: &str,
        retryable: bool,
        attempt: u32,
    ) {
        let kind = serde_json::to_value(error)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "other".into());
        if retryable {
            if let Some(open) = self.open.get(key) {
                let mut attributes = vec![
                    kv_str("error.type", kind),
                    kv_int("logbook.attempt", u64::from(attempt)),
                ];
                if self.options.include_content {
                    attributes.push(kv_str("logbook.error.message", message.to_string()));
                }
                self.spans[open.span].events.push(SpanEvent {
                    time_unix_nano: nanos(at),
                    name: "logbook.attempt.failed".into(),
                    attributes,
                    ..SpanEvent::default()
                });
            }
            return;
        }
        let Some(open) = self.open.remove(key) else {
            return;
        };
        let span = &mut self.spans[open.span];
        span.end_time_unix_nano = nanos(at);
        span.attributes.push(kv_str("error.type", kind));
        span.attributes
            .push(kv_int("logbook.attempts", u64::from(attempt)));
        // The message is the host's, but it may quote a provider's answer.
        span.status = Some(Status {
            code: StatusCode::Error as i32,
            message: if self.options.include_content {
                message.to_string()
            } else {
                String::new()
            },
        });
    }

    /// Close the turn being built: its totals onto its span.
    fn end_turn(&mut self) {
        let Some(turn) = self.turn.take() else {
            return;
        };
        let span = &mut self.spans[turn.span];
        span.attributes.push(kv_str(
            "gen_ai.provider.name",
            turn.provider.unwrap_or_else(|| "_OTHER".into()),
        ));
        if let Some(model) = turn.model {
            span.attributes.push(kv_str("gen_ai.request.model", model));
        }
        if turn.input_tokens > 0 || turn.output_tokens > 0 {
            span.attributes.extend([
                kv_int("gen_ai.usage.input_tokens", turn.input_tokens),
                kv_int("gen_ai.usage.output_tokens", turn.output_tokens),
            ]);
        }
        if self.options.include_content && !turn.outputs.is_empty() {
            span.attributes.push(kv_str(
                "gen_ai.output.messages",
                Value::Array(turn.outputs).to_string(),
            ));
        }
    }

    /// The spans, in the order they opened, as export requests of at most
    /// [`SPANS_PER_REQUEST`] spans each. Effects still open at the end of
    /// the log end at its last event, marked `logbook.open`.
    pub fn finish(mut self) -> Vec<ExportTraceServiceRequest> {
        self.end_turn();
        let last = nanos(self.last_at);
        for open in self.open.values() {
            let span = &mut self.spans[open.span];
            span.end_time_unix_nano = last;
            span.attributes.push(kv_bool("logbook.open", true));
        }
        let resource = Resource {
            attributes: vec![
                kv_str("service.name", "logbook"),
                kv_str("service.version", env!("CARGO_PKG_VERSION")),
            ],
            ..Resource::default()
        };
        let scope = InstrumentationScope {
            name: "logbook".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..InstrumentationScope::default()
        };
        let mut spans = self.spans;
        let mut requests = Vec::new();
        while !spans.is_empty() {
            let rest = spans.split_off(spans.len().min(SPANS_PER_REQUEST));
            requests.push(ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(scope.clone()),
                        spans,
                        schema_url: SCHEMA_URL.into(),
                    }],
                    schema_url: SCHEMA_URL.into(),
                }],
            });
            spans = rest;
        }
        requests
    }
}

impl Host {
    /// A log's whole view (ancestry included, as `export` writes it) as
    /// OTLP trace requests ([`Tracer`]).
    pub async fn export_otel(
        &self,
        log: LogId,
        options: OtelOptions,
    ) -> Result<Vec<ExportTraceServiceRequest>, SessionError> {
        let journal = self.journal();
        let Some(info) = journal.info(log).await? else {
            return Err(SessionError::UnknownSession(log.to_string()));
        };
        let mut tracer = Tracer::new(log, info.name, options);
        let mut from = 0;
        loop {
            let page = journal.read(log, from, PAGE).await?;
            let Some(last) = page.last() else { break };
            from = last.event.seq + 1;
            for event in &page {
                tracer.note(event);
            }
        }
        Ok(tracer.finish())
    }
}

/// Why spans did not reach a collector.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpSendError {
    /// The request did not get an answer.
    #[error("cannot send spans to {url}: {source}")]
    Http {
        /// Where they went.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The collector answered with an error.
    #[error("the collector at {url} refused the spans: HTTP {status}: {body}")]
    Refused {
        /// Where they went.
        url: String,
        /// Its status.
        status: u16,
        /// The start of its answer.
        body: String,
    },
}

/// The traces URL of a collector: `endpoint` itself when it names
/// `/v1/traces`, else that path under it (as `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is read).
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// POST each request to a collector over OTLP/HTTP (protobuf), in order.
/// Answers the number of spans sent.
pub async fn send_otlp(
    endpoint: &str,
    requests: &[ExportTraceServiceRequest],
) -> Result<usize, OtlpSendError> {
    use prost::Message as _;
    let url = traces_url(endpoint);
    let http = |source| OtlpSendError::Http {
        url: url.clone(),
        source,
    };
    crate::effects::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .build()
        .map_err(http)?;
    let mut sent = 0;
    for request in requests {
        let answer = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await
            .map_err(http)?;
        let status = answer.status();
        if !status.is_success() {
            let body = answer.text().await.unwrap_or_default();
            return Err(OtlpSendError::Refused {
                url,
                status: status.as_u16(),
                body: body.chars().take(500).collect(),
            });
        }
        sent += request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum::<usize>();
    }
    Ok(sent)
}

/// Message parts after the GenAI conventions' message schema.
fn parts(content: &[ContentBlock]) -> Vec<Value> {
    content
        .iter()
        .map(|block| match block {
            ContentBlock::Text { text } => json!({"type": "text", "content": text}),
            ContentBlock::ToolCall(call) => json!({
                "type": "tool_call",
                "id": call.id,
                "name": call.name,
                "arguments": serde_json::from_str::<Value>(&call.arguments)
                    .unwrap_or_else(|_| Value::String(call.arguments.clone())),
            }),
            ContentBlock::ToolResult {
                call_id, content, ..
            } => json!({"type": "tool_call_response", "id": call_id, "response": content}),
            ContentBlock::Reasoning { text, .. } => {
                json!({"type": "reasoning", "content": text.as_deref().unwrap_or_default()})
            }
        })
        .collect()
}

fn finish_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::EndTurn | StopReason::StopSequence => "stop",
        StopReason::ToolUse => "tool_call",
        StopReason::MaxTokens => "length",
        StopReason::Refusal => "content_filter",
        StopReason::Other => "other",
    }
}

/// `gen_ai.provider.name`: the conventions' name of the wire that answered.
fn provider_name(provider: &str) -> &str {
    match provider {
        "anthropic" | "openai" => provider,
        _ => "_OTHER",
    }
}

fn nanos(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn kv_int(key: &str, value: u64) -> KeyValue {
    kv(
        key,
        any_value::Value::IntValue(i64::try_from(value).unwrap_or(i64::MAX)),
    )
}

fn kv_bool(key: &str, value: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(value))
}

fn kv_strs<const N: usize>(key: &str, values: [&str; N]) -> KeyValue {
    kv(
        key,
        any_value::Value::ArrayValue(ArrayValue {
            values: values
                .iter()
                .map(|v| AnyValue {
                    value: Some(any_value::Value::StringValue((*v).to_string())),
                })
                .collect(),
        }),
    )
}
