//! Model providers over HTTP: the OpenAI Chat Completions wire and the
//! Anthropic Messages wire, each streaming (SSE) or not.
//!
//! Invariants:
//! - the API key is read from the environment at each call and sent only in
//!   a header;
//! - every string a provider sends passes the call's [`Redactor`], which
//!   knows that key, before it becomes a [`ModelError`] (whose message is a
//!   [`ProviderText`](super::ProviderText)), a response or a live delta
//!   ([`Deltas`]); providers echo keys back in errors and completions alike;
//! - a provider's opaque reasoning data goes back only to the same wire;
//! - a malformed or truncated response is a [`ModelError`], never a panic;
//! - one call here is one attempt: the session retries (and logs each failure).

mod anthropic;
mod openai;
mod parts;
mod sse;

use std::collections::BTreeMap;
use std::sync::Once;
use std::time::Duration;

pub use anthropic::Anthropic;
pub use openai::OpenAi;

use super::model::{DeltaKind, DeltaSink, ModelError, RetryPolicy};
use super::redact::{Redactor, StreamRedactor};
use super::setup::SetupError;
use crate::config::ModelConfig;
use crate::journal::ErrorKind;

/// Most chars of a provider's body quoted in a failure message.
const ERROR_BODY_CHARS: usize = 400;

/// What both wires share: the endpoint, the key's variable, limits, retries.
pub(crate) struct HttpSettings {
    client: reqwest::Client,
    base_url: String,
    model: String,
    api_key_env: Option<String>,
    stream: bool,
    max_tokens: u32,
    retry: RetryPolicy,
}

impl HttpSettings {
    fn new(config: &ModelConfig, default_base: &str) -> Result<HttpSettings, SetupError> {
        install_crypto_provider();
        let timeout = Duration::from_millis(config.timeout_ms.unwrap_or(300_000));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(SetupError::HttpClient)?;
        let model = config.model.clone().ok_or(SetupError::NoModelName)?;
        Ok(HttpSettings {
            client,
            base_url: config
                .base_url
                .clone()
                .unwrap_or_else(|| default_base.to_string())
                .trim_end_matches('/')
                .to_string(),
            model,
            api_key_env: config.api_key_env.clone(),
            stream: config.stream.unwrap_or(true),
            max_tokens: config.max_tokens.unwrap_or(4096),
            retry: RetryPolicy {
                max_retries: config.max_retries.unwrap_or(3),
                base: Duration::from_millis(config.retry_base_ms.unwrap_or(500)),
                max: Duration::from_millis(config.retry_max_ms.unwrap_or(30_000)),
            },
        })
    }

    /// The key, if one is configured; read now so that a rotated key is used.
    fn api_key(&self) -> Result<Option<String>, ModelError> {
        let Some(var) = &self.api_key_env else {
            return Ok(None);
        };
        match std::env::var(var) {
            Ok(key) if !key.is_empty() => Ok(Some(key)),
            _ => Err(ModelError::fatal(
                ErrorKind::InvalidRequest,
                Redactor::new().scrub(&format!(
                    "the environment variable {var} (api_key_env) is not set"
                )),
            )),
        }
    }

    /// POST `body` to `path`; a response whose status is not a success
    /// becomes a classified, scrubbed error.
    async fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &serde_json::Value,
        redact: &Redactor,
    ) -> Result<reqwest::Response, ModelError> {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let bytes = serde_json::to_vec(body).map_err(|e| {
            ModelError::fatal(
                ErrorKind::InvalidRequest,
                redact.scrub(&format!("cannot encode: {e}")),
            )
        })?;
        let response = request
            .body(bytes)
            .send()
            .await
            .map_err(|e| transport_error(&e, redact))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        let detail = error_detail(&text, redact);
        let message = redact.scrub(&format!("the provider answered {status}: {detail}"));
        let code = status.as_u16();
        let mut error = match code {
            429 => ModelError::transient(ErrorKind::RateLimited, message),
            408 => ModelError::transient(ErrorKind::Timeout, message),
            // 529: Anthropic's "overloaded".
            500..=599 => ModelError::transient(ErrorKind::Unavailable, message),
            _ => ModelError::fatal(ErrorKind::InvalidRequest, message),
        };
        error.retry_after = retry_after;
        Err(error)
    }
}

/// Install the TLS crypto provider (rustls with ring) for this process, once.
/// reqwest is built without a provider of its own (so that it needs no
/// system libraries or CMake): call this before building any
/// `reqwest::Client`. Harmless if a provider is installed already.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed one already: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The provider's own message out of an error body, else the body; scrubbed,
/// then cut short.
fn error_detail(body: &str, redact: &Redactor) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .and_then(|m| m.as_str())
                .map(str::to_string)
        });
    excerpt(
        &from_json.unwrap_or_else(|| body.trim().to_string()),
        redact,
    )
}

/// Text scrubbed and then cut to [`ERROR_BODY_CHARS`]: in that order, so that
/// a key at the cut is not kept in part.
fn excerpt(text: &str, redact: &Redactor) -> String {
    let text = redact.scrub(text).into_string();
    let mut cut: String = text.chars().take(ERROR_BODY_CHARS).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    if cut.is_empty() {
        cut = "(no body)".into();
    }
    cut
}

/// A failure to talk to the provider at all: worth another attempt.
fn transport_error(e: &reqwest::Error, redact: &Redactor) -> ModelError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if e.is_timeout() {
        ModelError::transient(
            ErrorKind::Timeout,
            redact.scrub(&format!("the provider timed out: {message}")),
        )
    } else {
        ModelError::transient(
            ErrorKind::Unavailable,
            redact.scrub(&format!("cannot reach the provider: {message}")),
        )
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from APIs), or the
/// `retry-after-ms` some OpenAI-compatible servers send.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return Some(Duration::from_millis(ms.max(0.0) as u64));
    }
    text("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| Duration::from_millis((s.max(0.0) * 1000.0) as u64))
}

/// A malformed answer: recorded, never retried (the same request would get
/// the same answer).
fn malformed(redact: &Redactor, what: impl std::fmt::Display) -> ModelError {
    ModelError::fatal(
        ErrorKind::InvalidResponse,
        redact.scrub(&format!("malformed provider response: {what}")),
    )
}

/// Parse a body or an event's data as JSON; when it is not, the failure
/// quotes how it began (a proxy's HTML page, a cut-off body), scrubbed.
fn parse_json(redact: &Redactor, bytes: &[u8]) -> Result<serde_json::Value, ModelError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let body = excerpt(&String::from_utf8_lossy(bytes), redact);
        malformed(redact, format!("{e}; it began: {body}"))
    })
}

/// A stream that ended before the provider said it was done: the connection
/// dropped, so another attempt may succeed.
fn truncated(redact: &Redactor, wire: &str) -> ModelError {
    ModelError::transient(
        ErrorKind::InvalidResponse,
        redact.scrub(&format!(
            "the {wire} stream ended before the response was complete"
        )),
    )
}

/// Whether a response is an event stream. A server may answer a streaming
/// request with one JSON body (some ignore `stream`): that is read whole.
fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// Read the body of a streaming response as SSE, handing each event to
/// `on_event` until it says the stream is done.
async fn read_sse(
    mut response: reqwest::Response,
    redact: &Redactor,
    mut on_event: impl FnMut(sse::SseEvent) -> Result<bool, ModelError>,
) -> Result<bool, ModelError> {
    let mut parser = sse::SseParser::default();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| transport_error(&e, redact))?;
        let Some(chunk) = chunk else {
            // A last event without its blank line still counts.
            for event in parser.finish() {
                if on_event(event)? {
                    return Ok(true);
                }
            }
            return Ok(false);
        };
        for event in parser.push(&chunk) {
            if on_event(event)? {
                return Ok(true);
            }
        }
    }
}

/// The live deltas of one attempt. Each kind of text is scrubbed as one
/// stream, so that a secret split across pieces is caught whole; what is
/// held back goes out at [`Deltas::finish`], once the answer is complete.
/// With no sink (a call that does not stream) it does nothing.
struct Deltas<'r> {
    sink: Option<DeltaSink>,
    text: StreamRedactor<'r>,
    reasoning: StreamRedactor<'r>,
    arguments: StreamRedactor<'r>,
}

impl<'r> Deltas<'r> {
    fn new(redact: &'r Redactor, sink: Option<DeltaSink>) -> Deltas<'r> {
        Deltas {
            sink,
            text: redact.stream(),
            reasoning: redact.stream(),
            arguments: redact.stream(),
        }
    }

    /// Send `raw`, as the provider wrote it, once scrubbed.
    fn send(&mut self, kind: DeltaKind, raw: &str) {
        let Some(sink) = &self.sink else { return };
        let stream = match kind {
            DeltaKind::Text => &mut self.text,
            DeltaKind::Reasoning => &mut self.reasoning,
            DeltaKind::ToolArguments => &mut self.arguments,
            // The session's word, never a wire's.
            DeltaKind::Restart => return,
        };
        let clean = stream.push(raw);
        if !clean.is_empty() {
            sink(kind, &clean);
        }
    }

    /// The answer is complete: send what was held back.
    fn finish(&mut self) {
        let Some(sink) = &self.sink else { return };
        for (kind, stream) in [
            (DeltaKind::Text, &mut self.text),
            (DeltaKind::Reasoning, &mut self.reasoning),
            (DeltaKind::ToolArguments, &mut self.arguments),
        ] {
            let clean = stream.finish();
            if !clean.is_empty() {
                sink(kind, &clean);
            }
        }
    }
}

/// Tool names as a wire accepts them (`^[a-zA-Z0-9_-]{1,64}$` on both), and
/// back: `fs.read` is sent as `fs_read`. The mapping is built per request
/// from the tools and calls it holds, so it needs no state.
#[derive(Default)]
struct ToolNames {
    to_wire: BTreeMap<String, String>,
    from_wire: BTreeMap<String, String>,
}

impl ToolNames {
    fn wire(&mut self, name: &str) -> String {
        if let Some(wire) = self.to_wire.get(name) {
            return wire.clone();
        }
        let mut base: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        if base.is_empty() {
            base = "tool".into();
        }
        let mut wire = base.clone();
        let mut n = 2;
        while self.from_wire.contains_key(&wire) {
            wire = format!("{base}{n}");
            n += 1;
        }
        self.to_wire.insert(name.to_string(), wire.clone());
        self.from_wire.insert(wire.clone(), name.to_string());
        wire
    }

    fn neutral(&self, wire: &str) -> String {
        self.from_wire
            .get(wire)
            .cloned()
            .unwrap_or_else(|| wire.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_scrubbed_from_error_details_before_they_are_cut() {
        let redact = Redactor::with_secrets(["sk-secret-123"]);
        let m = error_detail(
            r#"{"error":{"message":"Incorrect API key provided: sk-secret-123."}}"#,
            &redact,
        );
        assert_eq!(m, "Incorrect API key provided: [redacted].");
        // The key straddles the cut: cut first, its head would stay.
        let body = format!("{}sk-secret-123", "x".repeat(ERROR_BODY_CHARS - 4));
        let m = error_detail(&body, &redact);
        assert!(!m.contains("sk-s"), "{m}");
    }

    #[test]
    fn a_body_that_is_not_json_is_quoted_scrubbed() {
        let redact = Redactor::with_secrets(["sk-secret-123"]);
        let error =
            parse_json(&redact, b"<html>bad key sk-secret-123</html>").expect_err("not JSON");
        assert_eq!(error.kind, ErrorKind::InvalidResponse);
        let message = error.message.as_str();
        assert!(message.contains("<html>bad key [redacted]"), "{message}");
    }

    #[test]
    fn deltas_hold_back_a_split_key_and_send_it_scrubbed() {
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink: DeltaSink = {
            let sent = sent.clone();
            std::sync::Arc::new(move |kind, text: &super::super::ProviderText| {
                sent.lock()
                    .expect("not poisoned")
                    .push((kind, text.to_string()));
            })
        };
        let redact = Redactor::with_secrets(["sk-secret-123"]);
        let mut deltas = Deltas::new(&redact, Some(sink));
        deltas.send(DeltaKind::Text, "key sk-sec");
        deltas.send(DeltaKind::Reasoning, "thinking about s");
        deltas.send(DeltaKind::Text, "ret-123 ok");
        deltas.finish();
        let sent = sent.lock().expect("not poisoned").clone();
        assert_eq!(
            sent,
            vec![
                (DeltaKind::Text, "key ".to_string()),
                (DeltaKind::Reasoning, "thinking about ".to_string()),
                (DeltaKind::Text, "[redacted] ok".to_string()),
                (DeltaKind::Reasoning, "s".to_string()),
            ]
        );
    }

    #[test]
    fn tool_names_round_trip_through_the_wire() {
        let mut names = ToolNames::default();
        let a = names.wire("fs.read");
        let b = names.wire("fs_read");
        assert_eq!(a, "fs_read");
        assert_ne!(a, b);
        assert_eq!(names.neutral(&a), "fs.read");
        assert_eq!(names.neutral(&b), "fs_read");
    }

    #[test]
    fn backoff_honours_retry_after_and_caps() {
        let policy = RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        assert_eq!(
            policy.backoff(1, Some(Duration::from_secs(5))),
            Duration::from_millis(1000)
        );
        let wait = policy.backoff(3, None);
        assert!(wait >= Duration::from_millis(200) && wait <= Duration::from_millis(400));
    }

    #[test]
    fn error_details_prefer_the_providers_message() {
        let redact = Redactor::new();
        assert_eq!(
            error_detail(r#"{"error":{"message":"bad model","type":"x"}}"#, &redact),
            "bad model"
        );
        assert_eq!(error_detail("", &redact), "(no body)");
    }
}
