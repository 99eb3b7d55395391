//! MCP tools: a small rmcp server (`runtime/tests/mcp-echo`) started over
//! stdio, or serving streamable HTTP on loopback; its tools reach the guest
//! namespaced, with their schemas, and the assistant calls them under the
//! host's policy.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use logbook::config::{McpServerConfig, Policy};
use logbook::journal::{EventBody, Outcome};
use logbook::session::Activity;

use crate::fixtures::*;

/// The `mcp-echo` binary, built once per test process (`cargo test
/// --workspace` has built it already; `cargo test -p logbook` has not).
fn mcp_echo() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        // target/<profile>/deps/all-HASH → target/<profile>/mcp-echo
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the test binary is in target/<profile>/deps");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp-echo/Cargo.toml");
        let target_dir = profile_dir.parent().expect("target dir");
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "--manifest-path", manifest])
            .arg("--target-dir")
            .arg(target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo to build mcp-echo");
        assert!(status.success(), "building mcp-echo failed");
        let bin = profile_dir.join("mcp-echo");
        assert!(bin.exists(), "no {}", bin.display());
        bin
    })
}

fn config_with_echo_server(policy: Option<Policy>) -> logbook::config::Config {
    let mut config = config();
    config.mcp.insert(
        "echo".into(),
        McpServerConfig {
            command: Some(mcp_echo().display().to_string()),
            ..McpServerConfig::default()
        },
    );
    if let Some(policy) = policy {
        config.tools.policy.insert("echo.*".into(), policy);
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assistant_calls_a_tool_of_an_mcp_server_over_stdio() {
    let dir = data_dir();
    let host = open_host_with(dir.path(), config_with_echo_server(Some(Policy::Allow)));
    let session = start(&host, "assistant", "mcp").await;
    let log = events(&host, session.id()).await;
    let EventBody::Created(created) = &log[0].event.body else {
        panic!("seq 0 is created")
    };
    let echo = created
        .tools
        .iter()
        .find(|t| t.name == "echo.echo")
        .expect("the server's tools are offered, namespaced");
    assert_eq!(echo.description, "Send the text back");
    assert_eq!(echo.parameters["properties"]["text"]["type"], "string");
    assert!(created.tools.iter().any(|t| t.name == "echo.add"));

    say(&session, "/tool echo.add {\"a\": 2, \"b\": 40}").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    say(&session, "/tool echo.echo {\"text\": \"over stdio\"}").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let log = events(&host, session.id()).await;
    assert_eq!(
        outputs(&log),
        vec![
            "tool echo.add returned: 42",
            "tool echo.echo returned: over stdio"
        ]
    );
    let tool_results: Vec<bool> = log
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Completed {
                outcome: Outcome::Tool { is_error, .. },
                ..
            } => Some(*is_error),
            _ => None,
        })
        .collect();
    assert_eq!(tool_results, vec![false, false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tools_ask_a_human_by_default() {
    let dir = data_dir();
    let host = open_host_with(dir.path(), config_with_echo_server(None));
    let session = start(&host, "assistant", "mcp-ask").await;
    say(&session, "/tool echo.echo {\"text\": \"hi\"}").await;
    assert_eq!(settle(&session).await, Activity::WaitingApproval);
    let key = "call-1";
    assert_eq!(
        kinds_of_key(&events(&host, session.id()).await, key),
        vec!["requested", "approval-requested"]
    );
    guard(session.decide(key, true, "tester", None))
        .await
        .expect("decide");
    assert_eq!(settle(&session).await, Activity::Idle);
    assert_eq!(
        outputs(&events(&host, session.id()).await),
        vec!["tool echo.echo returned: hi"]
    );
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_server_over_streamable_http_serves_its_tools() {
    use std::io::BufRead;
    let mut child = Command::new(mcp_echo())
        .arg("--http")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start mcp-echo --http");
    let stdout = child.stdout.take().expect("piped stdout");
    let server = KillOnDrop(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the address");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the first line names the URL")
        .to_string();

    let dir = data_dir();
    let mut config = config();
    config.mcp.insert(
        "remote".into(),
        McpServerConfig {
            url: Some(url),
            ..McpServerConfig::default()
        },
    );
    config
        .tools
        .policy
        .insert("remote.add".into(), Policy::Allow);
    let host = open_host_with(dir.path(), config);
    let session = start(&host, "assistant", "mcp-http").await;
    say(&session, "/tool remote.add {\"a\": 20, \"b\": 22}").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    assert_eq!(
        outputs(&events(&host, session.id()).await),
        vec!["tool remote.add returned: 42"]
    );
    drop(server);
}
