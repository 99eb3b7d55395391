//! `http.fetch`: GET or POST to hosts on the configured allowlist, with a
//! size and a time limit. Redirects are followed only to allowed hosts.
//!
//! Its default policy is `allow`: the tool exists only when an operator lists
//! hosts, and that list is the policy. Set `"http.fetch" = "ask"` to review
//! each call (POSTs can change things).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::tool::glob_match;
use super::{SetupError, Tool, ToolAnswer, ToolContext, ToolError};
use crate::config::{HttpFetchConfig, Policy};
use crate::journal::ToolSpec;

/// The `http.fetch` tool.
pub struct HttpFetch {
    client: reqwest::Client,
    allow: Arc<Vec<String>>,
    max_bytes: u64,
}

impl HttpFetch {
    /// From its configuration; fails only if no HTTP client can be built.
    pub fn new(config: &HttpFetchConfig) -> Result<HttpFetch, SetupError> {
        super::providers::install_crypto_provider();
        let allow = Arc::new(config.allow_hosts.clone());
        let redirects = allow.clone();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if host_allowed(&redirects, attempt.url()) {
                    attempt.follow()
                } else {
                    attempt.error("redirect to a host that is not allowed")
                }
            }))
            .build()
            .map_err(SetupError::HttpFetchClient)?;
        Ok(HttpFetch {
            client,
            allow,
            max_bytes: config.max_bytes,
        })
    }

    async fn fetch(&self, arguments: Value) -> Result<String, ToolError> {
        let url = arguments
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| ToolError("`url` is required".into()))?;
        let url = reqwest::Url::parse(url).map_err(|e| ToolError(format!("bad url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ToolError("only http and https URLs can be fetched".into()));
        }
        if !host_allowed(&self.allow, &url) {
            return Err(ToolError(format!(
                "host {} is not on the allowlist",
                url.host_str().unwrap_or("(none)")
            )));
        }
        let method = arguments
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("GET")
            .to_ascii_uppercase();
        let mut request = match method.as_str() {
            "GET" => self.client.get(url),
            "POST" => self.client.post(url),
            other => return Err(ToolError(format!("method {other} is not supported"))),
        };
        if let Some(Value::Object(headers)) = arguments.get("headers") {
            for (name, value) in headers {
                if let Some(value) = value.as_str() {
                    request = request.header(name.as_str(), value);
                }
            }
        }
        if let Some(body) = arguments.get("body") {
            request = request.body(match body {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| ToolError(format!("fetch failed: {e}")))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut body = Vec::new();
        let mut cut = false;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ToolError(format!("reading the body failed: {e}")))?
        {
            let room = (self.max_bytes as usize).saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() > room {
                cut = true;
                break;
            }
        }
        let mut text = format!(
            "HTTP {status}\ncontent-type: {content_type}\n\n{}",
            String::from_utf8_lossy(&body)
        );
        if cut {
            text.push_str(&format!("\n[cut at {} bytes]", self.max_bytes));
        }
        Ok(text)
    }
}

fn host_allowed(allow: &[String], url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let with_port = url.port().map(|p| format!("{host}:{p}"));
    allow.iter().any(|pattern| {
        let pattern = pattern.to_ascii_lowercase();
        glob_match(&pattern, &host)
            || with_port
                .as_deref()
                .is_some_and(|h| glob_match(&pattern, h))
    })
}

impl Tool for HttpFetch {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "http.fetch".into(),
            description: format!(
                "Fetch a URL over HTTP (GET or POST). Allowed hosts: {}.",
                self.allow.join(", ")
            ),
            parameters: json!({
                "type": "object",
                "properties": {
                    "url": {"type": "string", "description": "http(s) URL on an allowed host"},
                    "method": {"type": "string", "enum": ["GET", "POST"]},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "body": {"type": "string", "description": "request body for POST"}
                },
                "required": ["url"]
            }),
        }
    }

    fn default_policy(&self) -> Policy {
        Policy::Allow
    }

    fn call(
        &self,
        _cx: ToolContext,
        arguments: Value,
    ) -> Pin<Box<dyn Future<Output = Result<ToolAnswer, ToolError>> + Send + '_>> {
        Box::pin(async move { self.fetch(arguments).await.map(ToolAnswer::from) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_hosts_are_allowed() {
        let allow = vec![
            "example.com".to_string(),
            "*.docs.rs".to_string(),
            "127.0.0.1:8080".to_string(),
        ];
        let ok = |u: &str| host_allowed(&allow, &reqwest::Url::parse(u).unwrap());
        assert!(ok("https://example.com/x"));
        assert!(ok("https://a.docs.rs/"));
        assert!(ok("http://127.0.0.1:8080/"));
        assert!(!ok("http://127.0.0.1:9090/"));
        assert!(!ok("https://example.com.evil.net/"));
        assert!(!ok("https://docs.rs.evil/"));
    }
}
