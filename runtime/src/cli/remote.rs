//! The commands that talk to a server (`--url` or `LOGBOOK_URL`), with the
//! bearer token from `LOGBOOK_TOKEN`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::anyhow;
use serde_json::{Value, json};

use crate::journal::{FormatError, StoredEvent, event_from_json, from_jsonl};

/// A client of one server.
pub(crate) struct Remote {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl Remote {
    pub(crate) fn new(url: &str) -> anyhow::Result<Remote> {
        crate::effects::install_crypto_provider();
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| anyhow!("cannot make an HTTP client: {e}"))?;
        Ok(Remote {
            base: url.trim_end_matches('/').to_string(),
            client,
            token: std::env::var("LOGBOOK_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Send a request; an API error becomes its message.
    async fn call(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach {}: {e}", self.base))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| anyhow!("unreadable answer ({status}): {e}"))?;
        if status.is_success() {
            Ok(body)
        } else {
            let message = body["error"]["message"].as_str().unwrap_or("unknown error");
            Err(anyhow!("{message} ({status})"))
        }
    }
}

fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) async fn sessions(remote: &Remote) -> anyhow::Result<ExitCode> {
    println!(
        "{:<24} {:<36} {:<16} {:>7}",
        "NAME", "ID", "STATUS", "EVENTS"
    );
    let mut after: Option<String> = None;
    loop {
        let mut path = "/v1/sessions?limit=1000".to_string();
        if let Some(after) = &after {
            path.push_str(&format!("&after={after}"));
        }
        let page = remote
            .call(remote.request(reqwest::Method::GET, &path))
            .await?;
        for s in page["sessions"].as_array().into_iter().flatten() {
            println!(
                "{:<24} {:<36} {:<16} {:>7}",
                s["name"].as_str().unwrap_or("-"),
                s["id"].as_str().unwrap_or("?"),
                s["status"].as_str().unwrap_or("?"),
                s["events"]
            );
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => return Ok(ExitCode::SUCCESS),
        }
    }
}

pub(crate) async fn send(
    remote: &Remote,
    session: &str,
    text: &str,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let path = format!(
        "/v1/sessions/{}/input{}",
        path_segment(session),
        if wait { "?wait=idle" } else { "" }
    );
    let answer = remote
        .call(
            remote
                .request(reqwest::Method::POST, &path)
                .json(&json!({ "text": text })),
        )
        .await?;
    if wait {
        for output in answer["outputs"].as_array().into_iter().flatten() {
            println!("{}", output["text"].as_str().unwrap_or_default());
        }
    } else {
        eprintln!("appended at seq {}", answer["seq"]);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn decide(
    remote: &Remote,
    session: &str,
    key: &str,
    allow: bool,
    reason: Option<String>,
) -> anyhow::Result<ExitCode> {
    let path = format!(
        "/v1/sessions/{}/approvals/{}",
        path_segment(session),
        path_segment(key)
    );
    remote
        .call(
            remote
                .request(reqwest::Method::POST, &path)
                .json(&json!({ "allow": allow, "reason": reason })),
        )
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// `logbook --url … unpark`: `POST /v1/sessions/ID/unpark`.
pub(crate) async fn unpark(
    remote: &Remote,
    session: &str,
    skip: Option<u64>,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/sessions/{}/unpark", path_segment(session));
    let answer = remote
        .call(
            remote
                .request(reqwest::Method::POST, &path)
                .json(&json!({ "skip": skip, "reason": reason })),
        )
        .await?;
    eprintln!("unparked at seq {}", answer["seq"]);
    Ok(ExitCode::SUCCESS)
}

/// `logbook --url … stop`: `POST /v1/sessions/ID/stop`.
pub(crate) async fn stop(remote: &Remote, session: &str, reason: &str) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/sessions/{}/stop", path_segment(session));
    let answer = remote
        .call(
            remote
                .request(reqwest::Method::POST, &path)
                .json(&json!({ "reason": reason })),
        )
        .await?;
    eprintln!("stopped at seq {}", answer["seq"]);
    Ok(ExitCode::SUCCESS)
}

/// `logbook --url … resume`: `POST /v1/sessions/ID/resume`.
pub(crate) async fn resume(remote: &Remote, session: &str) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/sessions/{}/resume", path_segment(session));
    let answer = remote
        .call(remote.request(reqwest::Method::POST, &path))
        .await?;
    eprintln!("resumed at seq {}", answer["seq"]);
    Ok(ExitCode::SUCCESS)
}

/// Print a session's log; with `follow`, keep printing as it grows.
pub(crate) async fn log(
    remote: &Remote,
    session: &str,
    json_lines: bool,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    // A stream's `data:` is a line of the log format; a page's events come
    // parsed, their keys in JSON's order.
    let mut print = |line: &str, event: Result<StoredEvent, FormatError>| -> bool {
        let shown = match event {
            Ok(event) if !json_lines => super::show::timeline_line(&event),
            _ => line.to_string(),
        };
        writeln!(out, "{shown}").is_ok()
    };
    let base = format!("/v1/sessions/{}/events", path_segment(session));
    if !follow {
        let mut from = 0;
        loop {
            let page = remote
                .call(remote.request(
                    reqwest::Method::GET,
                    &format!("{base}?from={from}&limit=1000"),
                ))
                .await?;
            let events = page["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            for event in &events {
                if !print(&event.to_string(), event_from_json(event)) {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            from = page["next"].as_u64().unwrap_or(from + events.len() as u64);
        }
    }
    let mut response = remote
        .request(reqwest::Method::GET, &base)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| anyhow!("cannot reach the server: {e}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        let message = body["error"]["message"].as_str().unwrap_or("unknown error");
        return Err(anyhow!("{message} ({status})"));
    }
    // Server-Sent Events: `data:` lines carry one JSONL event each.
    let mut pending = String::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| anyhow!("the stream broke: {e}"))?
    {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            if let Some(data) = line.trim_end().strip_prefix("data:")
                && !print(data.trim_start(), from_jsonl(data.trim_start()))
            {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
