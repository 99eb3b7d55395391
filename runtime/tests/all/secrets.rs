//! No secret reaches the log, nor anything that shows it. A loopback provider
//! echoes the request's key header back on every path of both wires: an
//! error body (400, 401, 429 and 500 with retries exhausted), an error in the
//! middle of a stream, a malformed body, a completion, and streamed deltas
//! (one with the key split across two deltas). The key, and its canary
//! substring, are then looked for in the export, the `wait=idle` answer, the
//! events page, and a live SSE stream read over HTTP (deltas included).

use std::collections::BTreeMap;
use std::sync::{Arc, Once};

use logbook::config::{Config, ModelConfig};
use logbook::journal::{EventBody, GuestRef, Outcome, StoredEvent};
use logbook::server::{ServerSettings, Tenants};
use logbook::session::Host;
use serde_json::{Value, json};

use crate::fixtures::*;
use crate::loopback::{Loopback, Reply, oa_chunk, oa_usage};

const KEY_VAR: &str = "LOGBOOK_TEST_LEAK_KEY";
/// A key no test output may ever show.
const KEY: &str = "sk-test-LEAKCANARY-0123456789abcdef";
/// A piece of it: half a key is a leak too.
const CANARY: &str = "LEAKCANARY";
/// The two halves of the key, sent in two deltas.
const KEY_HEAD: &str = "sk-test-LEAK";
const KEY_TAIL: &str = "CANARY-0123456789abcdef";

fn set_key() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: set once, before any host of this module reads it; no other
        // code of the test process writes this variable.
        unsafe { std::env::set_var(KEY_VAR, KEY) };
    });
}

#[derive(Clone, Copy, PartialEq)]
enum Wire {
    OpenAi,
    Anthropic,
}

impl Wire {
    fn provider(self) -> &'static str {
        match self {
            Wire::OpenAi => "openai",
            Wire::Anthropic => "anthropic",
        }
    }

    /// The request header that carries the key, as the loopback echoes it.
    fn echo(self) -> &'static str {
        match self {
            Wire::OpenAi => "{{authorization}}",
            Wire::Anthropic => "{{x-api-key}}",
        }
    }
}

/// How a case ends in the log.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ends {
    /// With this many `failed` events of the model call.
    Failed(usize),
    /// With a completed model call.
    Completed,
}

struct Case {
    name: &'static str,
    stream: bool,
    reply: Reply,
    ends: Ends,
}

fn error_body(wire: Wire) -> String {
    let echo = wire.echo();
    match wire {
        Wire::OpenAi => json!({"error": {
            "message": format!("Incorrect API key provided: {echo}."),
            "type": "invalid_request_error", "code": "invalid_api_key"}}),
        Wire::Anthropic => json!({"type": "error", "error": {
            "type": "authentication_error", "message": format!("invalid x-api-key: {echo}")}}),
    }
    .to_string()
}

fn cases(wire: Wire) -> Vec<Case> {
    let echo = wire.echo();
    let mut cases: Vec<Case> = [(400, 1), (401, 1), (429, 2), (500, 2)]
        .into_iter()
        .map(|(status, failures)| Case {
            name: match status {
                400 => "status-400",
                401 => "status-401",
                429 => "status-429",
                _ => "status-500",
            },
            stream: false,
            reply: Reply::status(status, &error_body(wire)),
            ends: Ends::Failed(failures),
        })
        .collect();
    let (mid_stream, malformed, completion, streamed) = match wire {
        Wire::OpenAi => openai_replies(echo),
        Wire::Anthropic => anthropic_replies(echo),
    };
    cases.extend([
        Case {
            name: "mid-stream",
            stream: true,
            reply: mid_stream,
            ends: Ends::Failed(2),
        },
        Case {
            name: "malformed",
            stream: false,
            reply: malformed,
            ends: Ends::Failed(1),
        },
        Case {
            name: "completion",
            stream: false,
            reply: completion,
            ends: Ends::Completed,
        },
        Case {
            name: "streamed",
            stream: true,
            reply: streamed,
            ends: Ends::Completed,
        },
    ]);
    cases
}

/// Mid-stream error, malformed body, completion, streamed completion.
fn openai_replies(echo: &str) -> (Reply, Reply, Reply, Reply) {
    let mid_stream = Reply::sse(&[
        (
            "",
            oa_chunk(json!({"role": "assistant", "content": "Part"}), None),
        ),
        (
            "",
            json!({"error": {"message": format!("upstream failed; Authorization: {echo}"),
                             "type": "server_error"}})
            .to_string(),
        ),
    ]);
    let malformed = Reply::status(
        200,
        &format!(r#"{{"id": "chatcmpl-1", "echo": "{echo}", "choices": ["#),
    );
    let completion = Reply::json(json!({
        "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
            "content": format!("You sent {echo}."),
            "reasoning": format!("The header was {echo}")}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}
    }));
    let streamed = Reply::sse(&[
        (
            "",
            oa_chunk(json!({"role": "assistant", "content": ""}), None),
        ),
        (
            "",
            oa_chunk(
                json!({"reasoning_content": format!("Header: {echo}")}),
                None,
            ),
        ),
        (
            "",
            oa_chunk(json!({"content": format!("Echo: {echo}. ")}), None),
        ),
        (
            "",
            oa_chunk(json!({"content": format!("Split: {KEY_HEAD}")}), None),
        ),
        (
            "",
            oa_chunk(json!({"content": format!("{KEY_TAIL} done.")}), None),
        ),
        ("", oa_chunk(json!({}), Some("stop"))),
        ("", oa_usage(12, 9)),
        ("", "[DONE]".into()),
    ]);
    (mid_stream, malformed, completion, streamed)
}

/// Mid-stream error, malformed body, completion, streamed completion.
fn anthropic_replies(echo: &str) -> (Reply, Reply, Reply, Reply) {
    let start = json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
        "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "stop_reason": null,
        "usage": {"input_tokens": 25, "output_tokens": 1}}})
    .to_string();
    let block = |index: u64, block: Value| {
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block})
                .to_string(),
        )
    };
    let delta = |index: u64, delta: Value| {
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}).to_string(),
        )
    };
    let mid_stream = Reply::sse(&[
        ("message_start", start.clone()),
        block(0, json!({"type": "text", "text": ""})),
        delta(0, json!({"type": "text_delta", "text": "Part"})),
        (
            "error",
            json!({"type": "error", "error": {"type": "overloaded_error",
                   "message": format!("Overloaded; the request had x-api-key: {echo}")}})
            .to_string(),
        ),
    ]);
    let malformed = Reply::status(
        200,
        &format!(r#"{{"type": "message", "echo": "{echo}", "content": ["#),
    );
    let completion = Reply::json(json!({
        "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": format!("The key was {echo}"), "signature": "EqQBCgIYAh"},
            {"type": "text", "text": format!("You sent {echo}.")}
        ],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 20, "output_tokens": 8}
    }));
    let streamed = Reply::sse(&[
        ("message_start", start),
        block(0, json!({"type": "thinking", "thinking": ""})),
        delta(
            0,
            json!({"type": "thinking_delta", "thinking": format!("Header: {echo}")}),
        ),
        delta(
            0,
            json!({"type": "signature_delta", "signature": "EqQBCgIYAh"}),
        ),
        block(1, json!({"type": "text", "text": ""})),
        delta(
            1,
            json!({"type": "text_delta", "text": format!("Echo: {echo}. ")}),
        ),
        delta(
            1,
            json!({"type": "text_delta", "text": format!("Split: {KEY_HEAD}")}),
        ),
        delta(
            1,
            json!({"type": "text_delta", "text": format!("{KEY_TAIL} done.")}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                   "usage": {"output_tokens": 15}})
            .to_string(),
        ),
        ("message_stop", json!({"type": "message_stop"}).to_string()),
    ]);
    (mid_stream, malformed, completion, streamed)
}

/// A model alias per case, each with its own loopback provider.
fn model(wire: Wire, server: &Loopback, stream: bool) -> ModelConfig {
    ModelConfig {
        provider: wire.provider().into(),
        model: Some("m".into()),
        base_url: Some(server.base_url.clone()),
        api_key_env: Some(KEY_VAR.into()),
        stream: Some(stream),
        timeout_ms: Some(10_000),
        max_retries: Some(1),
        retry_base_ms: Some(5),
        retry_max_ms: Some(20),
        ..ModelConfig::default()
    }
}

/// One Server-Sent Event: `(event, data)`.
type SseEvent = (String, String);

/// A reader of a session's event stream that keeps every byte it read.
struct SseReader {
    response: reqwest::Response,
    pending: String,
    raw: String,
}

impl SseReader {
    async fn open(http: &reqwest::Client, base: &str, session: &str) -> SseReader {
        let response = http
            .get(format!("{base}/v1/sessions/{session}/events"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("open the event stream");
        assert!(response.status().is_success(), "{}", response.status());
        SseReader {
            response,
            pending: String::new(),
            raw: String::new(),
        }
    }

    async fn next(&mut self) -> SseEvent {
        loop {
            while let Some(end) = self.pending.find("\n\n") {
                let frame: String = self.pending.drain(..end + 2).collect();
                let (mut event, mut data) = (String::from("message"), String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if !data.is_empty() {
                    return (event, data);
                }
            }
            let chunk = guard(self.response.chunk())
                .await
                .expect("read the event stream")
                .expect("the event stream ended");
            let text = String::from_utf8_lossy(&chunk);
            self.raw.push_str(&text);
            self.pending.push_str(&text);
        }
    }
}

#[track_caller]
fn assert_clean(case: &str, place: &str, text: &str) {
    assert!(
        !text.contains(KEY) && !text.contains(CANARY),
        "{case}: the key is in {place}: {text}"
    );
}

/// Run one case over HTTP and look for the key everywhere it could show.
async fn run_case(
    wire: Wire,
    case: &Case,
    server: &Loopback,
    host: &Arc<Host>,
    guest: &GuestRef,
    base: &str,
) {
    let what = format!("{} {}", wire.provider(), case.name);
    let id = host
        .create_session(
            TENANT,
            Some(case.name),
            guest.clone(),
            json!({"model": case.name}),
        )
        .await
        .expect("create a session");
    // Resident, so that the stream below gets its deltas.
    let _session = host.session(id).await.expect("activate");
    let http = reqwest::Client::new();
    let mut sse = SseReader::open(&http, base, case.name).await;
    let (first, _) = sse.next().await;
    assert_eq!(first, "created", "{what}");

    let input = {
        let request = http
            .post(format!("{base}/v1/sessions/{}/input?wait=idle", case.name))
            .json(&json!({"text": "what did I send?"}));
        tokio::spawn(async move {
            let response = request.send().await.expect("post the input");
            assert!(response.status().is_success(), "{}", response.status());
            response.text().await.expect("the answer")
        })
    };
    // Every event until the guest says something, deltas by kind.
    let mut seen: Vec<SseEvent> = Vec::new();
    let mut deltas: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let (event, data) = sse.next().await;
        if event == "delta" {
            let delta: Value = serde_json::from_str(&data).expect("a delta is JSON");
            let kind = delta["kind"].as_str().unwrap_or_default().to_string();
            let text = delta["text"].as_str().unwrap_or_default();
            deltas.entry(kind).or_default().push_str(text);
        }
        let done = event == "output";
        seen.push((event, data));
        if done {
            break;
        }
    }
    let answer = guard(input).await.expect("the input task");

    let (status, page) = {
        let response = http
            .get(format!(
                "{base}/v1/sessions/{}/events?from=0&limit=1000",
                case.name
            ))
            .send()
            .await
            .expect("get the events");
        (response.status(), response.text().await.expect("a page"))
    };
    assert!(status.is_success(), "{what}: {status} {page}");
    let mut export = Vec::new();
    host.export(id, &mut export).await.expect("export");
    let export = String::from_utf8(export).expect("UTF-8 JSONL");

    assert_clean(&what, "the export", &export);
    assert_clean(&what, "the wait=idle answer", &answer);
    assert_clean(&what, "the events page", &page);
    assert_clean(&what, "the event stream", &sse.raw);
    for (kind, text) in &deltas {
        assert_clean(&what, &format!("the {kind} deltas, joined"), text);
    }

    // The key was in play, and the provider's echo of it reached the log.
    let request = &server.requests()[0];
    let header = match wire {
        Wire::OpenAi => &request.headers["authorization"],
        Wire::Anthropic => &request.headers["x-api-key"],
    };
    assert!(header.contains(KEY), "{what}: the key was sent");
    assert!(
        export.contains("[redacted]"),
        "{what}: the echo is in the log, redacted: {export}"
    );
    let log = events(host, id).await;
    assert_eq!(ends(&log), case.ends, "{what}: {export}");
    if case.stream && case.ends == Ends::Completed {
        let text = deltas.get("text").map(String::as_str).unwrap_or_default();
        assert!(
            text.contains("[redacted]") && text.ends_with("done."),
            "{what}: the text deltas came, redacted: {deltas:?}"
        );
        assert!(
            deltas.contains_key("reasoning"),
            "{what}: reasoning deltas came: {deltas:?}"
        );
    }
}

/// How the model call of a log ended.
fn ends(log: &[StoredEvent]) -> Ends {
    let completed = log.iter().any(|e| {
        matches!(
            &e.event.body,
            EventBody::Completed {
                outcome: Outcome::Model(_),
                ..
            }
        )
    });
    if completed {
        return Ends::Completed;
    }
    Ends::Failed(
        log.iter()
            .filter(|e| matches!(e.event.body, EventBody::Failed { .. }))
            .count(),
    )
}

async fn no_key_shows_on(wire: Wire) {
    set_key();
    let mut servers = Vec::new();
    let mut config: Config = config();
    let cases = cases(wire);
    for case in &cases {
        let server = Loopback::start(vec![case.reply.clone()]).await;
        config
            .models
            .insert(case.name.into(), model(wire, &server, case.stream));
        servers.push(server);
    }
    let dir = data_dir();
    let tenants = Tenants::from_config(&config).expect("tenants");
    let host = open_host_with(dir.path(), config);
    let guest = host
        .add_guest(TENANT, "assistant", &guest_bytes("assistant"))
        .await
        .expect("add the assistant");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(logbook::server::run(
        listener,
        host.clone(),
        tenants,
        ServerSettings::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    logbook::effects::install_crypto_provider();
    for (case, server) in cases.iter().zip(&servers) {
        run_case(wire, case, server, &host, &guest, &base).await;
    }
    let _ = stop.send(());
    guard(serving)
        .await
        .expect("the server task")
        .expect("the server ends well");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_shows_anywhere_on_the_openai_wire() {
    no_key_shows_on(Wire::OpenAi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_shows_anywhere_on_the_anthropic_wire() {
    no_key_shows_on(Wire::Anthropic).await;
}
