//! A tool-using turn through a real LiteLLM proxy (from PyPI, pinned,
//! installed by `scripts/litellm.sh` into `target/litellm/`), the way a
//! session on a local model runs: Logbook → LiteLLM (`openai/` provider) →
//! an upstream OpenAI-compatible server on loopback.
//!
//! LiteLLM parses our request and builds its own for the upstream. It drops
//! a `"content": null` key from an assistant message, so the upstream sees a
//! tool-call message with no `content` at all; llama.cpp-style servers then
//! fail rendering their chat template with `'dict object' has no attribute
//! 'content'` (the failure issue 15 saw). The upstream here refuses such a
//! message the same way, so this test fails when the host sends `null`.
//!
//! `LOGBOOK_SKIP_LITELLM=1` skips it; `LOGBOOK_LITELLM` names another
//! `litellm` executable.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use logbook::config::{Config, ModelConfig};
use logbook::session::Activity;
use serde_json::Value;

use crate::fixtures::*;
use crate::loopback::{Loopback, Reply, oa_stream_text, oa_stream_tool_call};

/// The version scripts/litellm.sh installs.
const VERSION: &str = "1.81.13";

/// The `litellm` executable, or `None` when the caller asked to skip.
fn litellm() -> Option<PathBuf> {
    if std::env::var("LOGBOOK_SKIP_LITELLM").is_ok_and(|v| v == "1") {
        eprintln!("skipped: LOGBOOK_SKIP_LITELLM=1 (this test needs LiteLLM's proxy)");
        return None;
    }
    let path = std::env::var_os("LOGBOOK_LITELLM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../target/litellm/venv-{VERSION}/bin/litellm"))
        });
    assert!(
        path.is_file(),
        "{} is missing: run scripts/litellm.sh (pip, about a minute), \
         or set LOGBOOK_SKIP_LITELLM=1 to skip this test",
        path.display()
    );
    Some(path)
}

/// What a llama.cpp-style upstream cannot render: a message without a
/// string `content` (its template reads `message.content`).
fn template_check(body: &Value) -> Option<Reply> {
    let messages = body["messages"].as_array()?;
    let unreadable = messages.iter().any(|m| !m["content"].is_string());
    unreadable.then(|| {
        Reply::status(
            500,
            r#"{"error": {"message": "'dict object' has no attribute 'content'", "type": "server_error", "code": 500}}"#,
        )
    })
}

/// A LiteLLM proxy, killed on drop.
struct Proxy {
    child: Child,
    base_url: String,
}

impl Proxy {
    /// Start `litellm` with one model, `local`, that is `upstream`.
    fn start(litellm: &PathBuf, upstream: &str, dir: &std::path::Path) -> Proxy {
        let config = dir.join("litellm.yaml");
        std::fs::write(
            &config,
            format!(
                "model_list:\n  - model_name: local\n    litellm_params:\n      \
                 model: openai/upstream-model\n      api_base: {upstream}\n      \
                 api_key: sk-upstream\nlitellm_settings:\n  num_retries: 0\n"
            ),
        )
        .expect("write the LiteLLM config");
        // A free port, handed to the proxy: LiteLLM prints no bound address.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.join("litellm.log")).expect("log file");
        let child = Command::new(litellm)
            .arg("--config")
            .arg(&config)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // Offline: the bundled cost map, no telemetry.
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("LITELLM_TELEMETRY", "False")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start litellm");
        let mut proxy = Proxy {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + GUARD;
        loop {
            let ready = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                s.write_all(
                    b"GET /health/liveliness HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
                )
                .is_ok()
                    && {
                        let mut head = [0u8; 12];
                        s.read_exact(&mut head).is_ok() && head.ends_with(b"200")
                    }
            });
            if ready {
                return proxy;
            }
            if let Ok(Some(status)) = proxy.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("litellm.log")).unwrap_or_default();
                panic!("litellm exited ({status}) before it served:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "litellm did not start in {GUARD:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_using_turn_through_litellm_reaches_a_strict_upstream() {
    let Some(litellm) = litellm() else {
        return;
    };
    let upstream = Loopback::start_checked(
        vec![
            oa_stream_tool_call(),
            oa_stream_text(&["The note says: ", "remember the milk."]),
        ],
        template_check,
    )
    .await;
    let dir = data_dir();
    let proxy = {
        let upstream = upstream.base_url.clone();
        let dir = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || Proxy::start(&litellm, &upstream, &dir))
            .await
            .expect("start the proxy")
    };

    let mut config: Config = config();
    config.models.insert(
        "default".into(),
        ModelConfig {
            provider: "openai".into(),
            model: Some("local".into()),
            base_url: Some(proxy.base_url.clone()),
            stream: Some(true),
            timeout_ms: Some(30_000),
            max_retries: Some(0),
            ..ModelConfig::default()
        },
    );
    let host = open_host_with(dir.path(), config);
    let session = start(&host, "assistant", "local").await;
    let workspace = host.workspace_dir(session.id());
    std::fs::create_dir_all(&workspace).expect("workspace");
    std::fs::write(workspace.join("note.txt"), "remember the milk").expect("note");
    say(&session, "what does note.txt say?").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let log = events(&host, session.id()).await;
    assert_eq!(
        outputs(&log),
        ["The note says: remember the milk."],
        "{:#?}",
        log.iter().map(|e| &e.event.body).collect::<Vec<_>>()
    );

    // What LiteLLM made of our requests, as the upstream got them.
    let requests = upstream.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(
        requests[0].body["tool_choice"], "auto",
        "{}",
        requests[0].body
    );
    let messages = requests[1].body["messages"].as_array().expect("messages");
    let call = messages
        .iter()
        .find(|m| m["role"] == "assistant")
        .expect("the tool call goes back");
    assert_eq!(call["content"], "", "{call}");
    assert_eq!(
        call["tool_calls"][0]["function"]["name"], "fs_read",
        "{call}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m["role"] == "tool" && m["content"] == "remember the milk"),
        "{messages:#?}"
    );
    host.close().await;
    drop(proxy);
}
