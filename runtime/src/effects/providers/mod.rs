//! Model providers over HTTP: the OpenAI Chat Completions wire and the
//! Anthropic Messages wire, each streaming (SSE) or not.
//!
//! Invariants:
//! - the API key is read from the environment at each call, sent only in a
//!   header, and scrubbed from every error message (providers echo it back);
//! - a provider's opaque reasoning data goes back only to the same wire;
//! - a malformed or truncated response is a [`ModelError`], never a panic;
//! - one call here is one attempt: the session retries (and logs each failure).

mod anthropic;
mod openai;
mod sse;

use std::collections::BTreeMap;
use std::sync::Once;
use std::time::Duration;

pub use anthropic::Anthropic;
pub use openai::OpenAi;

use super::model::{ModelError, RetryPolicy};
use crate::config::ModelConfig;
use crate::journal::ErrorKind;

/// Most bytes of an error body quoted in a failure message.
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
    fn new(config: &ModelConfig, default_base: &str) -> Result<HttpSettings, String> {
        install_crypto_provider();
        let timeout = Duration::from_millis(config.timeout_ms.unwrap_or(300_000));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let model = config
            .model
            .clone()
            .ok_or_else(|| "`model` (the provider's model name) is required".to_string())?;
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
                format!("the environment variable {var} (api_key_env) is not set"),
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
        key: Option<&str>,
    ) -> Result<reqwest::Response, ModelError> {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let bytes = serde_json::to_vec(body).map_err(|e| {
            ModelError::fatal(ErrorKind::InvalidRequest, format!("cannot encode: {e}"))
        })?;
        let response = request
            .body(bytes)
            .send()
            .await
            .map_err(|e| transport_error(&e, key))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        let detail = scrub(&error_detail(&text), key);
        let message = format!("the provider answered {status}: {detail}");
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

/// The provider's own message out of an error body, else the body, cut short.
fn error_detail(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .and_then(|m| m.as_str())
                .map(str::to_string)
        });
    let text = from_json.unwrap_or_else(|| body.trim().to_string());
    let mut cut: String = text.chars().take(ERROR_BODY_CHARS).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    if cut.is_empty() {
        cut = "(no body)".into();
    }
    cut
}

/// Remove the key from a message: providers quote it back in errors
/// ("Incorrect API key provided: sk-...").
pub(crate) fn scrub(message: &str, key: Option<&str>) -> String {
    match key {
        Some(key) if key.len() >= 4 => message.replace(key, "[redacted]"),
        _ => message.to_string(),
    }
}

/// A failure to talk to the provider at all: worth another attempt.
fn transport_error(e: &reqwest::Error, key: Option<&str>) -> ModelError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    let message = scrub(&message, key);
    if e.is_timeout() {
        ModelError::transient(
            ErrorKind::Timeout,
            format!("the provider timed out: {message}"),
        )
    } else {
        ModelError::transient(
            ErrorKind::Unavailable,
            format!("cannot reach the provider: {message}"),
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
fn malformed(what: impl std::fmt::Display) -> ModelError {
    ModelError::fatal(
        ErrorKind::InvalidResponse,
        format!("malformed provider response: {what}"),
    )
}

/// A stream that ended before the provider said it was done: the connection
/// dropped, so another attempt may succeed.
fn truncated(wire: &str) -> ModelError {
    ModelError::transient(
        ErrorKind::InvalidResponse,
        format!("the {wire} stream ended before the response was complete"),
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
    key: Option<&str>,
    mut on_event: impl FnMut(sse::SseEvent) -> Result<bool, ModelError>,
) -> Result<bool, ModelError> {
    let mut parser = sse::SseParser::default();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| transport_error(&e, key))?;
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
    fn the_key_is_scrubbed_from_messages() {
        let m = scrub(
            "Incorrect API key provided: sk-secret-123.",
            Some("sk-secret-123"),
        );
        assert!(!m.contains("sk-secret-123"), "{m}");
        assert!(m.contains("[redacted]"));
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
        assert_eq!(
            error_detail(r#"{"error":{"message":"bad model","type":"x"}}"#),
            "bad model"
        );
        assert_eq!(error_detail(""), "(no body)");
    }
}
