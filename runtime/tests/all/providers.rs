//! Model providers against loopback servers that speak each wire format:
//! request shapes are checked; responses follow the providers' documented
//! examples, streaming included. The assistant guest drives every turn.

use std::sync::Once;
use std::time::{Duration, Instant};

use logbook::config::{Config, ModelConfig, Policy, TenantConfig};
use logbook::effects::DeltaKind;
use logbook::journal::{ContentBlock, ErrorKind, EventBody, LogId, Outcome, StopReason};
use logbook::session::{Activity, Host};
use serde_json::json;

use crate::fixtures::*;
use crate::loopback::{
    Loopback, Reply, an_stream_text, oa_chunk, oa_stream_text, oa_stream_tool_call, oa_whole_text,
};

const OPENAI_KEY_VAR: &str = "LOGBOOK_TEST_OPENAI_KEY";
const OPENAI_KEY: &str = "sk-test-openai-4f9c2a7d1e";
const ANTHROPIC_KEY_VAR: &str = "LOGBOOK_TEST_ANTHROPIC_KEY";
const ANTHROPIC_KEY: &str = "sk-ant-test-8b3e5f0c9a";

fn set_keys() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: set once, before any host of this module reads them; no
        // other code of the test process writes these variables.
        unsafe {
            std::env::set_var(OPENAI_KEY_VAR, OPENAI_KEY);
            std::env::set_var(ANTHROPIC_KEY_VAR, ANTHROPIC_KEY);
        }
    });
}

pub(crate) fn model(provider: &str, server: &Loopback, stream: bool) -> ModelConfig {
    set_keys();
    let (model, key) = match provider {
        "openai" => ("gpt-4o-mini", OPENAI_KEY_VAR),
        _ => ("claude-sonnet-4-5", ANTHROPIC_KEY_VAR),
    };
    ModelConfig {
        provider: provider.into(),
        model: Some(model.into()),
        base_url: Some(server.base_url.clone()),
        api_key_env: Some(key.into()),
        stream: Some(stream),
        timeout_ms: Some(10_000),
        max_retries: Some(2),
        retry_base_ms: Some(5),
        retry_max_ms: Some(50),
        ..ModelConfig::default()
    }
}

fn config_with(default: ModelConfig) -> Config {
    let mut config = config();
    config.models.insert("default".into(), default);
    config
}

/// Start an assistant session with `note.txt` in its workspace.
async fn assistant(host: &std::sync::Arc<Host>, name: &str) -> logbook::session::Session {
    let session = start(host, "assistant", name).await;
    let dir = host.workspace_dir(session.id());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("note.txt"), "remember the milk").unwrap();
    session
}

/// The model effect's events: `(kind, retryable, attempt, error kind)`.
fn failures(events: &[logbook::journal::StoredEvent]) -> Vec<(bool, u32, ErrorKind, String)> {
    events
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Failed {
                retryable,
                attempt,
                error,
                message,
                ..
            } => Some((*retryable, *attempt, *error, message.clone())),
            _ => None,
        })
        .collect()
}

fn model_responses(
    events: &[logbook::journal::StoredEvent],
) -> Vec<logbook::journal::ModelResponse> {
    events
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Completed {
                outcome: Outcome::Model(r),
                ..
            } => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// No key anywhere in the log's JSON.
async fn assert_no_keys(host: &Host, log: LogId) {
    for event in events(host, log).await {
        let text = serde_json::to_string(&event.event.body).unwrap();
        assert!(
            !text.contains(OPENAI_KEY) && !text.contains(ANTHROPIC_KEY),
            "a key is in the log: {text}"
        );
    }
}

const SIGNATURE: &str = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_using_turn_on_the_openai_wire_streams_and_logs_once() {
    let server = Loopback::start(vec![
        oa_stream_tool_call(),
        oa_stream_text(&["The note says: ", "remember the milk."]),
    ])
    .await;
    let dir = data_dir();
    let host = open_host_with(dir.path(), config_with(model("openai", &server, true)));
    let session = assistant(&host, "oa").await;
    let mut deltas = session.subscribe_live();
    say(&session, "what does note.txt say?").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let log = events(&host, session.id()).await;
    assert_eq!(outputs(&log), vec!["The note says: remember the milk."]);

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(
        first.headers["authorization"],
        format!("Bearer {OPENAI_KEY}")
    );
    assert_eq!(first.body["model"], "gpt-4o-mini");
    assert_eq!(first.body["stream"], true);
    assert_eq!(first.body["stream_options"]["include_usage"], true);
    assert!(
        first.body.get("max_tokens").is_none(),
        "neither the assistant nor the alias sets it: {}",
        first.body
    );
    assert_eq!(first.body["messages"][0]["role"], "system");
    assert_eq!(
        first.body["messages"][1],
        json!({"role": "user", "content": "what does note.txt say?"})
    );
    // Said out loud: llama-cpp-python ignores tools without it.
    assert_eq!(first.body["tool_choice"], "auto");
    let tools = first.body["tools"].as_array().unwrap();
    let fs_read = tools
        .iter()
        .find(|t| t["function"]["name"] == "fs_read")
        .expect("fs.read offered as fs_read");
    assert_eq!(fs_read["type"], "function");
    assert!(fs_read["function"]["parameters"].is_object());
    // The second request carries the call and its result, as the wire wants them.
    let messages = requests[1].body["messages"].as_array().unwrap();
    let call = &messages[2];
    assert_eq!(call["role"], "assistant");
    // A string, never null: llama-cpp-python refuses null, LiteLLM drops it.
    assert_eq!(call["content"], "");
    assert_eq!(call["tool_calls"][0]["id"], "call_DdmO9pD3xa9XTPNJ32zg2hcA");
    assert_eq!(call["tool_calls"][0]["function"]["name"], "fs_read");
    assert_eq!(
        call["tool_calls"][0]["function"]["arguments"],
        "{\"path\":\"note.txt\"}"
    );
    assert_eq!(messages[3]["role"], "tool");
    assert_eq!(messages[3]["tool_call_id"], "call_DdmO9pD3xa9XTPNJ32zg2hcA");
    assert_eq!(messages[3]["content"], "remember the milk");

    let responses = model_responses(&log);
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[0].stop_reason, StopReason::ToolUse);
    assert_eq!(responses[0].usage.expect("usage").input_tokens, 82);
    assert_eq!(responses[1].stop_reason, StopReason::EndTurn);
    assert_eq!(responses[1].usage.expect("usage").output_tokens, 9);
    assert_eq!(responses[1].provider, "openai");
    // The neutral call keeps the host's tool name.
    assert!(matches!(&responses[0].content[0], ContentBlock::ToolCall(c) if c.name == "fs.read"));

    let mut texts = String::new();
    while let Ok(live) = deltas.try_recv() {
        if let logbook::effects::Live::Delta(delta) = live
            && delta.kind == DeltaKind::Text
        {
            texts.push_str(&delta.text);
        }
    }
    assert_eq!(
        texts, "The note says: remember the milk.",
        "live deltas add up to the answer"
    );
    assert_no_keys(&host, session.id()).await;
    assert_chain_holds(&host, session.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_using_turn_on_the_anthropic_wire_keeps_signed_thinking() {
    let first = Reply::json(json!({
        "id": "msg_01Aq9w938a90dw8q", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "The user wants the note; I should read it.", "signature": SIGNATURE},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"},
            {"type": "text", "text": "Let me read it."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "fs_read", "input": {"path": "note.txt"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 472, "output_tokens": 89}
    }));
    let server = Loopback::start(vec![
        first,
        an_stream_text(&["It says ", "remember the milk."]),
    ])
    .await;
    let dir = data_dir();
    let host = open_host_with(dir.path(), config_with(model("anthropic", &server, true)));
    let session = assistant(&host, "an").await;
    say(&session, "what does note.txt say?").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let log = events(&host, session.id()).await;
    assert_eq!(outputs(&log), vec!["It says remember the milk."]);

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first.path, "/v1/messages");
    assert_eq!(first.headers["x-api-key"], ANTHROPIC_KEY);
    assert_eq!(first.headers["anthropic-version"], "2023-06-01");
    assert!(!first.headers.contains_key("authorization"));
    assert_eq!(first.body["model"], "claude-sonnet-4-5");
    assert_eq!(
        first.body["max_tokens"], 4096,
        "the host's default: the assistant leaves it unset"
    );
    assert!(first.body["system"].as_str().unwrap().contains("helpful"));
    assert_eq!(first.body["messages"][0]["role"], "user");
    let tools = first.body["tools"].as_array().unwrap();
    assert!(
        tools
            .iter()
            .any(|t| t["name"] == "fs_read" && t["input_schema"].is_object())
    );

    let messages = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{:#}", requests[1].body);
    let said = messages[1]["content"].as_array().unwrap();
    assert_eq!(
        said[0],
        json!({"type": "thinking", "thinking": "The user wants the note; I should read it.", "signature": SIGNATURE})
    );
    assert_eq!(said[1]["type"], "redacted_thinking");
    assert_eq!(said[3]["type"], "tool_use");
    assert_eq!(said[3]["input"], json!({"path": "note.txt"}));
    let result = &messages[2]["content"][0];
    assert_eq!(result["type"], "tool_result");
    assert_eq!(result["tool_use_id"], "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(result["content"], "remember the milk");
    assert_eq!(result["is_error"], false);

    let responses = model_responses(&log);
    assert!(matches!(&responses[0].content[0],
        ContentBlock::Reasoning { signature: Some(s), provider, .. } if s == SIGNATURE && provider == "anthropic"));
    assert_eq!(responses[0].usage.expect("usage").input_tokens, 472);
    assert_eq!(responses[1].usage.expect("usage").output_tokens, 15);
    assert_eq!(responses[1].stop_reason, StopReason::EndTurn);
    assert_no_keys(&host, session.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_started_on_openai_continues_on_anthropic() {
    let reasoning = json!([{"type": "reasoning.encrypted", "data": "gAAAAABoOPAQUE-OPENAI-ONLY", "id": "rs_1", "format": "openai-responses-v1"}]);
    let openai = Loopback::start(vec![Reply::json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
            "content": "Paris is the capital of France.", "reasoning": "Easy geography.",
            "reasoning_details": reasoning}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}
    }))])
    .await;
    let anthropic = Loopback::start(vec![an_stream_text(&["About 2.1 million."])]).await;
    let dir = data_dir();
    let id = {
        let host = open_host_with(dir.path(), config_with(model("openai", &openai, false)));
        let session = assistant(&host, "moving").await;
        say(&session, "What is the capital of France?").await;
        settle(&session).await;
        let log = events(&host, session.id()).await;
        assert_eq!(outputs(&log), vec!["Paris is the capital of France."]);
        assert!(
            openai.requests()[0].body.get("stream").is_none(),
            "stream = false"
        );
        host.close().await;
        session.id()
    };
    // The alias now points at the other wire: the next request is rebuilt from the neutral log.
    let host = reopen_host(
        dir.path(),
        config_with(model("anthropic", &anthropic, true)),
    )
    .await;
    let session = host.session(id).await.unwrap();
    say(&session, "And its population?").await;
    settle(&session).await;
    let log = events(&host, id).await;
    assert_eq!(
        outputs(&log),
        vec!["Paris is the capital of France.", "About 2.1 million."]
    );
    let request = &anthropic.requests()[0].body;
    let messages = request["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(
        messages[0]["content"][0]["text"],
        "What is the capital of France?"
    );
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(
        messages[1]["content"],
        json!([{"type": "text", "text": "Paris is the capital of France."}]),
        "OpenAI's reasoning is dropped"
    );
    assert!(!request.to_string().contains("OPAQUE-OPENAI-ONLY"));
    assert_eq!(messages[2]["content"][0]["text"], "And its population?");
    // The OpenAI reasoning stays in the log, opaque data and all.
    let first = &model_responses(&log)[0];
    assert!(
        matches!(&first.content[0], ContentBlock::Reasoning { opaque: Some(o), provider, .. }
        if o.contains("OPAQUE-OPENAI-ONLY") && provider == "openai")
    );
    assert_chain_holds(&host, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_retried_after_its_retry_after_and_each_failure_is_logged() {
    let limited = Reply::Body {
        status: 429,
        headers: vec![("retry-after".into(), "1".into())],
        body: json!({"error": {"message": "Rate limit reached for gpt-4o-mini", "type": "requests", "code": "rate_limit_exceeded"}}).to_string(),
    };
    let server = Loopback::start(vec![limited, oa_whole_text("hello after waiting")]).await;
    let dir = data_dir();
    let mut config = model("openai", &server, true);
    config.retry_max_ms = Some(5_000);
    let host = open_host_with(dir.path(), config_with(config));
    let session = assistant(&host, "limited").await;
    say(&session, "hi").await;
    settle(&session).await;
    let log = events(&host, session.id()).await;
    assert_eq!(outputs(&log), vec!["hello after waiting"]);
    let failed = failures(&log);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        (failed[0].0, failed[0].1, failed[0].2),
        (true, 1, ErrorKind::RateLimited)
    );
    assert!(
        failed[0].3.contains("Rate limit reached"),
        "{}",
        failed[0].3
    );
    assert_eq!(
        kinds_of_key(&log, "model-1"),
        vec!["requested", "failed", "completed"]
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    // Retry-After said one second; the backoff alone would have been ~5 ms.
    let waited = requests[1].at - requests[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_then_recorded_as_a_final_failure_without_the_key() {
    // Providers quote the key back; the log must not.
    let body = json!({"error": {"message": format!("internal error for key {ANTHROPIC_KEY}"), "type": "api_error"}}).to_string();
    let server = Loopback::start(vec![Reply::status(500, &body)]).await;
    let dir = data_dir();
    let host = open_host_with(dir.path(), config_with(model("anthropic", &server, false)));
    let session = assistant(&host, "down").await;
    say(&session, "hi").await;
    settle(&session).await;
    let log = events(&host, session.id()).await;
    let failed = failures(&log);
    let shape: Vec<(bool, u32)> = failed.iter().map(|f| (f.0, f.1)).collect();
    assert_eq!(shape, vec![(true, 1), (true, 2), (false, 3)]);
    assert!(failed.iter().all(|f| f.2 == ErrorKind::Unavailable));
    assert!(
        failed[2].3.contains("500") && failed[2].3.contains("[redacted]"),
        "{}",
        failed[2].3
    );
    assert_eq!(server.requests().len(), 3);
    let said = outputs(&log);
    assert_eq!(said.len(), 1);
    assert!(said[0].starts_with("the model failed:"), "{said:?}");
    assert_no_keys(&host, session.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_stream_is_a_recorded_failure() {
    let Reply::Sse(mut chunks) = oa_stream_text(&["The answer is", " forty"]) else {
        unreachable!()
    };
    chunks.truncate(2); // no finish_reason, no [DONE]: the connection just closes
    let server = Loopback::start(vec![Reply::Sse(chunks)]).await;
    let dir = data_dir();
    let mut config = model("openai", &server, true);
    config.max_retries = Some(1);
    let host = open_host_with(dir.path(), config_with(config));
    let session = assistant(&host, "cut").await;
    say(&session, "hi").await;
    settle(&session).await;
    let log = events(&host, session.id()).await;
    let failed = failures(&log);
    let shape: Vec<(bool, u32, ErrorKind)> = failed.iter().map(|f| (f.0, f.1, f.2)).collect();
    assert_eq!(
        shape,
        vec![
            (true, 1, ErrorKind::InvalidResponse),
            (false, 2, ErrorKind::InvalidResponse)
        ]
    );
    assert!(failed[1].3.contains("ended before"), "{}", failed[1].3);
    assert!(
        model_responses(&log).is_empty(),
        "a partial answer is never logged as complete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_a_recorded_failure_not_a_panic() {
    let server = Loopback::start(vec![Reply::status(
        200,
        "{\"id\": \"chatcmpl-1\", \"choices\": [",
    )])
    .await;
    let dir = data_dir();
    let host = open_host_with(dir.path(), config_with(model("openai", &server, false)));
    let session = assistant(&host, "garbled").await;
    say(&session, "hi").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let log = events(&host, session.id()).await;
    let failed = failures(&log);
    assert_eq!(
        failed.len(),
        1,
        "malformed answers are not retried: {failed:?}"
    );
    assert_eq!(
        (failed[0].0, failed[0].1, failed[0].2),
        (false, 1, ErrorKind::InvalidResponse)
    );
    assert_eq!(server.requests().len(), 1);
    // The session goes on: the next input gets a (now well-formed) turn.
    assert!(outputs(&log)[0].starts_with("the model failed: malformed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_denied_by_a_tenant_glob_reaches_the_model_as_an_error() {
    let server = Loopback::start(vec![
        oa_stream_tool_call(),
        oa_stream_text(&["I may not read files."]),
    ])
    .await;
    let dir = data_dir();
    let mut config = config_with(model("openai", &server, true));
    let mut tenant = TenantConfig::default();
    tenant.tools.policy.insert("fs.*".into(), Policy::Deny);
    config.tenants.insert(TENANT.into(), tenant);
    let host = open_host_with(dir.path(), config);
    let session = assistant(&host, "denied").await;
    say(&session, "read note.txt").await;
    settle(&session).await;
    let log = events(&host, session.id()).await;
    assert_eq!(outputs(&log), vec!["I may not read files."]);
    let EventBody::Created(created) = &log[0].event.body else {
        panic!("seq 0 is created")
    };
    assert!(
        created.tools.iter().all(|t| !t.name.starts_with("fs.")),
        "denied tools are not offered"
    );
    let key = "call_DdmO9pD3xa9XTPNJ32zg2hcA";
    assert_eq!(kinds_of_key(&log, key), vec!["requested", "completed"]);
    let messages = server.requests()[1].body["messages"]
        .as_array()
        .unwrap()
        .clone();
    let result = messages
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("a tool message");
    assert!(
        result["content"].as_str().unwrap().contains("denied"),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_alias_and_the_sessions_chat_config_shape_the_request() {
    let server = Loopback::start(vec![oa_whole_text("Terse.")]).await;
    let dir = data_dir();
    let mut config = config();
    let mut tenant = TenantConfig::default();
    tenant
        .models
        .insert("fast".into(), model("openai", &server, false));
    config.tenants.insert(TENANT.into(), tenant);
    let host = open_host_with(dir.path(), config);
    let guest = host
        .add_guest(TENANT, "assistant", &guest_bytes("assistant"))
        .await
        .unwrap();
    let settings =
        json!({"model": "fast", "system": "Be terse.", "tools": ["fs.r*"], "max_tokens": 77});
    let id = host
        .create_session(TENANT, Some("configured"), guest, settings)
        .await
        .unwrap();
    let session = host.session(id).await.unwrap();
    say(&session, "hi").await;
    settle(&session).await;
    assert_eq!(outputs(&events(&host, id).await), vec!["Terse."]);
    let body = &server.requests()[0].body;
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "Be terse."})
    );
    assert_eq!(body["max_tokens"], 77);
    let tools: Vec<&str> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        vec!["fs_read"],
        "only the tools the session's config picks"
    );
}

/// A stream that ends without its usage chunk (`stream_options` is not
/// honoured by every server) logs the usage as unknown, not as 0 and 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_missing_from_a_stream_is_logged_unknown() {
    let server = Loopback::start(vec![Reply::sse(&[
        (
            "",
            oa_chunk(json!({"role": "assistant", "content": ""}), None),
        ),
        ("", oa_chunk(json!({"content": "No usage here."}), None)),
        ("", oa_chunk(json!({}), Some("stop"))),
        ("", "[DONE]".into()),
    ])])
    .await;
    let dir = data_dir();
    let host = open_host_with(dir.path(), config_with(model("openai", &server, true)));
    let session = assistant(&host, "nousage").await;
    say(&session, "hi").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let log = events(&host, session.id()).await;
    assert_eq!(outputs(&log), ["No usage here."]);
    let responses = model_responses(&log);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].usage, None, "unknown, not zero");
    // And it is left out of the stored JSON.
    let completed = log
        .iter()
        .find(|e| matches!(e.event.body, EventBody::Completed { .. }))
        .expect("completed");
    let json = serde_json::to_value(&completed.event.body).unwrap();
    assert!(json.get("usage").is_none(), "{json}");
}

/// The assistant leaves `max_tokens` unset unless its config sets it, so the
/// alias's `max_tokens` applies (regression: it always sent 1024).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alias_max_tokens_applies_unless_the_session_config_sets_it() {
    let server = Loopback::start(vec![oa_whole_text("Fine.")]).await;
    let dir = data_dir();
    let mut alias = model("openai", &server, false);
    alias.max_tokens = Some(300);
    let host = open_host_with(dir.path(), config_with(alias));
    let plain = start(&host, "assistant", "plain").await;
    say(&plain, "hi").await;
    settle(&plain).await;
    let guest = host.guest(TENANT, "assistant").await.unwrap();
    let id = host
        .create_session(TENANT, Some("set"), guest, json!({"max_tokens": 77}))
        .await
        .unwrap();
    let set = host.session(id).await.unwrap();
    say(&set, "hi").await;
    settle(&set).await;
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body["max_tokens"], 300, "the alias's");
    assert_eq!(
        requests[1].body["max_tokens"], 77,
        "the session's config wins"
    );
}

/// A model call open at the fork point goes, on the branch, to the alias the
/// branch's config names (`--session-config '{"model": …}'`), and the parent's
/// to its own; both across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_open_at_the_fork_point_goes_to_the_branch_alias() {
    let old = Loopback::start(vec![Reply::Hang, oa_whole_text("from the old alias")]).await;
    let new = Loopback::start(vec![oa_whole_text("from the new alias")]).await;
    let dir = data_dir();
    let mut config = config();
    config
        .models
        .insert("default".into(), model("openai", &old, false));
    config
        .models
        .insert("other".into(), model("openai", &new, false));
    let host = open_host_with(dir.path(), config.clone());
    let parent = start(&host, "assistant", "parent").await;
    say(&parent, "hello").await;
    // The call is open: the old alias's server has it and does not answer.
    let deadline = Instant::now() + GUARD;
    while old.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the call never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let branch = host
        .fork(
            TENANT,
            "parent",
            logbook::session::ForkOptions {
                name: Some("branch".into()),
                config: Some(json!({"model": "other"})),
                ..Default::default()
            },
        )
        .await
        .expect("fork");
    let session = host.session(branch).await.expect("wake the branch");
    assert_eq!(settle(&session).await, Activity::Idle);
    assert_eq!(
        outputs(&events(&host, branch).await),
        ["from the new alias"]
    );
    assert_eq!(new.requests().len(), 1);
    assert_eq!(
        old.requests().len(),
        1,
        "the branch's call is not the old alias's"
    );

    // After a restart: the branch replays to the same state and stays on
    // its alias; the parent's open call is re-run on its own.
    host.close().await;
    drop((session, parent, host));
    let host = reopen_host(dir.path(), config).await;
    let session = host.session(branch).await.expect("wake the branch again");
    assert_eq!(settle(&session).await, Activity::Idle);
    let parent = host.resolve(TENANT, "parent").await.expect("parent").id;
    let parent = host.session(parent).await.expect("wake the parent");
    assert_eq!(settle(&parent).await, Activity::Idle);
    let parent_log = events(&host, parent.id()).await;
    assert_eq!(outputs(&parent_log), ["from the old alias"]);
    assert_eq!(new.requests().len(), 1);
    let guest = host.guest(TENANT, "assistant").await.expect("guest");
    for name in ["branch", "parent"] {
        let report = host
            .replay_check(TENANT, name, guest.clone())
            .await
            .expect("replay check");
        assert_eq!(report.difference, None, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_does_not_answer_times_out_into_a_recorded_failure() {
    let server = Loopback::start(vec![Reply::Hang]).await;
    let dir = data_dir();
    let mut config = model("anthropic", &server, true);
    config.timeout_ms = Some(200);
    config.max_retries = Some(0);
    let host = open_host_with(dir.path(), config_with(config));
    let session = assistant(&host, "silent").await;
    say(&session, "hi").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let failed = failures(&events(&host, session.id()).await);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        (failed[0].0, failed[0].1, failed[0].2),
        (false, 1, ErrorKind::Timeout)
    );
}

/// Over HTTP: while a streaming model call runs, an SSE observer of the
/// session gets its deltas as `event: delta` without an `id` (they are not
/// in the log, so a resume never counts them), then the logged `output` with
/// its seq as `id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_reach_live_sse_observers_without_ids_and_the_answer_is_logged_once() {
    let provider = Loopback::start(vec![oa_stream_text(&["Hello, ", "streamed ", "world."])]).await;
    let dir = data_dir();
    let host = open_host_with(dir.path(), config_with(model("openai", &provider, true)));
    let session = assistant(&host, "live").await;
    let tenants = logbook::server::Tenants::from_config(&Config::default()).unwrap();
    let app = logbook::server::router(host.clone(), tenants, Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });

    logbook::effects::install_crypto_provider();
    let mut stream = reqwest::Client::new()
        .get(format!("http://{addr}/v1/sessions/live/events"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert!(stream.status().is_success());
    // (event, id, data) of each SSE event, until the answer is logged.
    let mut seen: Vec<(String, Option<String>, String)> = Vec::new();
    let mut pending = String::new();
    let mut asked = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|(event, _, _)| event == "output") {
        assert!(Instant::now() < deadline, "deadlock guard: no output came");
        let chunk = tokio::time::timeout(Duration::from_secs(30), stream.chunk())
            .await
            .expect("the stream stalled")
            .unwrap()
            .expect("the stream ended");
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find("\n\n") {
            let block: String = pending.drain(..end + 2).collect();
            let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                seen.push((event, id, data));
            }
        }
        // Once the stream has shown `created`, it is following: ask now.
        if !asked && !seen.is_empty() {
            asked = true;
            say(&session, "say hello").await;
        }
    }

    let deltas: Vec<&(String, Option<String>, String)> = seen
        .iter()
        .filter(|(event, _, _)| event == "delta")
        .collect();
    assert!(
        !deltas.is_empty(),
        "no delta reached the observer: {seen:?}"
    );
    assert!(
        deltas.iter().all(|(_, id, _)| id.is_none()),
        "deltas carry no id: {deltas:?}"
    );
    let streamed: String = deltas
        .iter()
        .map(|(_, _, data)| serde_json::from_str::<serde_json::Value>(data).unwrap())
        .filter(|d| d["kind"] == "text")
        .map(|d| d["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(streamed, "Hello, streamed world.");
    let output = seen.iter().find(|(event, _, _)| event == "output").unwrap();
    assert!(output.1.is_some(), "logged events carry their seq as id");
    assert!(output.2.contains("Hello, streamed world."), "{}", output.2);
    // Logged once: one model response, and no delta in the log.
    settle(&session).await;
    let log = events(&host, session.id()).await;
    assert_eq!(model_responses(&log).len(), 1);
    assert_eq!(outputs(&log), vec!["Hello, streamed world."]);
    serving.abort();
}
