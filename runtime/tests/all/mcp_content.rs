//! What an MCP server says beside text: typed content (images, resources,
//! links, structured results) logged as parts and sent to each model wire
//! natively; progress shown live and never logged; a changed tool list
//! listed again; and the client's name and capabilities. Against
//! `runtime/tests/mcp-echo` (the official Rust SDK's server side), and the
//! wires' loopback servers.

use logbook::config::Policy;
use logbook::effects::Live;
use logbook::journal::{EventBody, Outcome, PartData, StoredEvent, ToolPart};
use logbook::session::Activity;
use serde_json::{Value, json};

use crate::fixtures::*;
use crate::loopback::{Loopback, Reply, an_stream_text, oa_whole_text};
use crate::mcp::config_with_echo_server;
use crate::providers::model;

/// The 1×1 red PNG `mcp-echo`'s `picture` returns.
const RED_DOT: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

/// The outcome of the one tool call in `log`.
fn tool_outcome(log: &[StoredEvent]) -> Outcome {
    log.iter()
        .find_map(|e| match &e.event.body {
            EventBody::Completed {
                outcome: o @ Outcome::Tool { .. },
                ..
            } => Some(o.clone()),
            _ => None,
        })
        .expect("a tool result in the log")
}

fn assert_picture_parts(outcome: &Outcome) {
    let Outcome::Tool {
        content,
        is_error,
        parts,
        structured,
    } = outcome
    else {
        unreachable!()
    };
    assert_eq!(content, "a red dot");
    assert!(!is_error);
    assert_eq!(structured.as_deref(), Some(r#"{"height":1,"width":1}"#));
    assert_eq!(
        parts,
        &vec![
            ToolPart::Image {
                mime_type: "image/png".into(),
                data: PartData::Base64(RED_DOT.into()),
                annotations: Some(r#"{"priority":0.5}"#.into()),
            },
            ToolPart::Resource {
                uri: "file:///notes/dot.txt".into(),
                mime_type: Some("text/plain".into()),
                text: Some("the dot is red".into()),
                data: None,
                annotations: None,
            },
            ToolPart::Resource {
                uri: "file:///notes/people.txt".into(),
                mime_type: Some("text/plain".into()),
                text: Some("for the people watching".into()),
                data: None,
                annotations: Some(r#"{"audience":["user"]}"#.into()),
            },
            ToolPart::ResourceLink {
                uri: "file:///notes/big.bin".into(),
                name: "big.bin".into(),
                mime_type: Some("application/octet-stream".into()),
                description: Some("too big to send".into()),
                annotations: None,
            },
        ]
    );
}

fn config_with_echo_and(model: logbook::config::ModelConfig) -> logbook::config::Config {
    let mut config = config_with_echo_server(Some(Policy::Allow));
    config.models.insert("default".into(), model);
    config
}

/// One turn on `provider` in which the model calls `echo.picture` (`call`)
/// and then answers "A red dot." (`answer`): the log's tool result is
/// checked, and the requests the wire's server got are answered.
async fn picture_turn(
    provider: &str,
    call: Reply,
    answer: Reply,
) -> Vec<crate::loopback::Recorded> {
    let server = Loopback::start(vec![call, answer]).await;
    let dir = data_dir();
    let host = open_host_with(
        dir.path(),
        config_with_echo_and(model(provider, &server, provider == "anthropic")),
    );
    let session = start(&host, "assistant", "picture").await;
    say(&session, "what is in the picture?").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let log = events(&host, session.id()).await;
    assert_eq!(outputs(&log), vec!["A red dot."]);
    assert_picture_parts(&tool_outcome(&log));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let sent = requests[1].body.to_string();
    assert!(
        !sent.contains("for the people watching"),
        "a part whose audience is the user alone is not sent: {sent}"
    );
    requests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_image_reaches_the_openai_wire_as_an_image_not_as_text() {
    let call = oa_call("echo_picture", "call_pic");
    let requests = picture_turn("openai", call, oa_whole_text("A red dot.")).await;
    let messages = requests[1].body["messages"].as_array().unwrap().clone();
    let tool = messages
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("a tool message");
    assert_eq!(tool["tool_call_id"], "call_pic");
    let text = tool["content"].as_str().unwrap();
    assert!(text.starts_with("a red dot"), "{text}");
    assert!(
        text.contains("the dot is red"),
        "the resource's text: {text}"
    );
    assert!(text.contains("file:///notes/big.bin"), "the link: {text}");
    assert!(!text.contains(RED_DOT), "no image as text: {text}");
    // The image follows in a user message, as an image.
    let last = messages.last().unwrap();
    assert_eq!(last["role"], "user");
    let image = last["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "image_url")
        .expect("an image_url block");
    assert_eq!(
        image["image_url"]["url"],
        format!("data:image/png;base64,{RED_DOT}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_image_reaches_the_anthropic_wire_inside_the_tool_result() {
    let call = Reply::json(json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "tool_use", "id": "toolu_pic", "name": "echo_picture", "input": {}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 80, "output_tokens": 9}
    }));
    let requests = picture_turn("anthropic", call, an_stream_text(&["A red ", "dot."])).await;
    let last = requests[1].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["role"], "user");
    let result: &Value = last["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_result")
        .expect("a tool_result block");
    assert_eq!(result["tool_use_id"], "toolu_pic");
    let inner = result["content"].as_array().expect("content blocks");
    assert_eq!(inner[0]["type"], "text");
    assert!(
        inner[0]["text"]
            .as_str()
            .unwrap()
            .contains("the dot is red")
    );
    assert_eq!(
        inner[1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": RED_DOT}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_progress_reaches_live_observers_and_never_the_log() {
    let dir = data_dir();
    let host = open_host_with(dir.path(), config_with_echo_server(Some(Policy::Allow)));
    let session = start(&host, "assistant", "progress").await;
    let mut live = session.subscribe_live();
    say(&session, "/tool echo.steps {\"n\": 3}").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let log = events(&host, session.id()).await;
    assert_eq!(outputs(&log), vec!["tool echo.steps returned: 3 steps"]);
    let mut seen = Vec::new();
    while let Ok(item) = live.try_recv() {
        if let Live::Progress(p) = item {
            seen.push((p.key, p.progress, p.total, p.message));
        }
    }
    let want: Vec<_> = (1..=3)
        .map(|i| {
            (
                "call-1".to_string(),
                f64::from(i),
                Some(3.0),
                Some(format!("step {i} of 3")),
            )
        })
        .collect();
    assert_eq!(seen, want);
    let json =
        serde_json::to_string(&log.iter().map(|e| &e.event.body).collect::<Vec<_>>()).unwrap();
    assert!(!json.contains("step 1 of 3"), "progress is not logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_tool_list_is_listed_again_for_the_next_session() {
    let dir = data_dir();
    let host = open_host_with(dir.path(), config_with_echo_server(Some(Policy::Allow)));
    let tools = |log: &[StoredEvent]| -> Vec<String> {
        let EventBody::Created(created) = &log[0].event.body else {
            panic!("seq 0 is created")
        };
        created.tools.iter().map(|t| t.name.clone()).collect()
    };
    let first = start(&host, "assistant", "before").await;
    assert!(!tools(&events(&host, first.id()).await).contains(&"echo.late".to_string()));
    say(&first, "/tool echo.grow {}").await;
    assert_eq!(settle(&first).await, Activity::Idle);
    // The notification is on its way while the call's result is logged.
    let second = guard(async {
        let mut n = 0;
        loop {
            n += 1;
            let session = start(&host, "assistant", &format!("after-{n}")).await;
            if tools(&events(&host, session.id()).await).contains(&"echo.late".to_string()) {
                return session;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    say(&second, "/tool echo.late {}").await;
    assert_eq!(settle(&second).await, Activity::Idle);
    assert_eq!(
        outputs(&events(&host, second.id()).await),
        vec!["tool echo.late returned: late"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_says_who_it_is_and_asks_for_no_capabilities() {
    let dir = data_dir();
    let host = open_host_with(dir.path(), config_with_echo_server(Some(Policy::Allow)));
    let session = start(&host, "assistant", "client").await;
    say(&session, "/tool echo.client {}").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    assert_eq!(
        outputs(&events(&host, session.id()).await),
        vec![format!(
            "tool echo.client returned: logbook {} {{}}",
            env!("CARGO_PKG_VERSION")
        )]
    );
}

/// The 30,000 bytes of `mcp-echo`'s `big` image.
fn big_bytes() -> Vec<u8> {
    (0..30_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn oa_call(name: &str, id: &str) -> Reply {
    Reply::json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1741570283,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": id, "type": "function",
                            "function": {"name": name, "arguments": "{}"}}]},
            "logprobs": null, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 80, "completion_tokens": 9, "total_tokens": 89}
    }))
}

/// The data URL of the image in the last user message of a request.
fn image_url(body: &Value) -> String {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .find(|b| b["type"] == "image_url")
        .map(|b| b["image_url"]["url"].as_str().unwrap().to_string())
        .expect("an image_url block")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_part_is_a_blob_in_the_log_sent_whole_and_exported_beside_it() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let server = Loopback::start(vec![
        oa_call("echo_big", "call_big"),
        oa_whole_text("A big picture."),
        oa_whole_text("Still a big picture."),
    ])
    .await;
    let dir = data_dir();
    let config = config_with_echo_and(model("openai", &server, false));
    let host = open_host_with(dir.path(), config.clone());
    let session = start(&host, "assistant", "big").await;
    say(&session, "show me the big one").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let log = events(&host, session.id()).await;
    assert_eq!(outputs(&log), vec!["A big picture."]);

    // The event holds the reference, not the 40 KB of base64.
    let Outcome::Tool { parts, .. } = tool_outcome(&log) else {
        unreachable!()
    };
    let [
        ToolPart::Image {
            data: PartData::Blob(blob),
            ..
        },
    ] = parts.as_slice()
    else {
        panic!("one image, stored as a blob: {parts:?}")
    };
    assert_eq!(blob.size, 30_000);
    let line = serde_json::to_string(&log.last().unwrap().event.body).unwrap();
    assert!(line.len() < 2_000, "no event carries the bytes: {line}");
    let biggest = log
        .iter()
        .map(|e| e.event.body.canonical_len())
        .max()
        .unwrap();
    assert!(biggest < 4_000, "the largest event is {biggest} bytes");

    // The model gets the image whole.
    let want = format!("data:image/png;base64,{}", b64.encode(big_bytes()));
    assert_eq!(image_url(&server.requests()[1].body), want);

    // The export holds the blob once, before the event that refers to it.
    let mut export = Vec::new();
    host.export(session.id(), &mut export).await.unwrap();
    let text = String::from_utf8(export.clone()).unwrap();
    let blob_lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("{\"blob\":"))
        .collect();
    assert_eq!(blob_lines.len(), 1, "{text}");
    let refers = text
        .lines()
        .position(|l| l.contains(&blob.digest) && !l.starts_with("{\"blob\":"))
        .unwrap();
    assert!(blob_lines[0].0 < refers);

    // Imported elsewhere, the session sends the same image on its next turn.
    let other_dir = data_dir();
    let other = open_host_with(other_dir.path(), config);
    let id = other
        .import("default", &mut export.as_slice(), Some("big-again"))
        .await
        .unwrap();
    let again = other.session(id).await.unwrap();
    say(&again, "and again?").await;
    assert_eq!(settle(&again).await, Activity::Idle);
    assert_eq!(image_url(&server.requests()[2].body), want);

    // A blob line whose bytes do not match its digest is refused, by line.
    let n = blob_lines[0].0;
    let tampered: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == n {
                let mut bytes = big_bytes();
                bytes[0] ^= 1;
                format!(
                    "{{\"blob\":\"{}\",\"data\":\"{}\"}}\n",
                    blob.digest,
                    b64.encode(bytes)
                )
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let err = other
        .import("default", &mut tampered.as_bytes(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("line {}", n + 1)), "{err}");
    assert!(err.contains("digest"), "{err}");

    // Without its blob line, an import into a tenant that lacks the blob is refused.
    let missing: String = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != n)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let err = other
        .import("someone-else", &mut missing.as_bytes(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&blob.digest), "{err}");
}
