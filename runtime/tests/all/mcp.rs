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

pub(crate) fn config_with_echo_server(policy: Option<Policy>) -> logbook::config::Config {
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

/// The tool calls requested so far, in log order.
fn tool_calls(log: &[logbook::journal::StoredEvent]) -> Vec<String> {
    log.iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Requested {
                key,
                effect: logbook::journal::RequestedEffect::Tool(_),
            } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

/// Poll the log until `n` tool calls have been requested; the last one's key.
async fn until_tool_calls(host: &logbook::Host, log: logbook::journal::LogId, n: usize) -> String {
    guard(async {
        loop {
            let calls = tool_calls(&events(host, log).await);
            if calls.len() >= n {
                return calls[n - 1].clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The content and error flag of the result of the `n`th tool call (from 1).
fn tool_result(log: &[logbook::journal::StoredEvent], n: usize) -> (String, bool) {
    let key = tool_calls(log)
        .get(n - 1)
        .cloned()
        .unwrap_or_else(|| panic!("no tool call {n}"));
    log.iter()
        .find_map(|e| match &e.event.body {
            EventBody::Completed {
                key: k,
                outcome: Outcome::Tool {
                    content, is_error, ..
                },
            } if *k == key => Some((content.clone(), *is_error)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no tool result for {key}"))
}

fn sigkill(pid: &str) {
    let status = Command::new("kill")
        .args(["-KILL", pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -KILL {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_mcp_server_killed_mid_call_is_started_again_for_the_next_call() {
    let dir = data_dir();
    let host = open_host_with(dir.path(), config_with_echo_server(Some(Policy::Allow)));
    let session = start(&host, "assistant", "mcp-kill").await;
    say(&session, "/tool echo.pid {}").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let (pid, is_error) = tool_result(&events(&host, session.id()).await, 1);
    assert!(!is_error, "{pid}");

    say(&session, "/tool echo.sleep {\"ms\": 600000}").await;
    until_tool_calls(&host, session.id(), 2).await;
    sigkill(&pid);
    assert_eq!(settle(&session).await, Activity::Idle);
    let log = events(&host, session.id()).await;
    let (content, is_error) = tool_result(&log, 2);
    assert!(is_error, "the call in flight fails: {content}");
    assert!(content.contains("Transport closed"), "{content}");
    // The log says the host noticed, and what it does about it.
    assert!(content.contains("started again"), "{content}");

    say(&session, "/tool echo.echo {\"text\": \"after the crash\"}").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let log = events(&host, session.id()).await;
    assert_eq!(
        tool_result(&log, 3),
        ("after the crash".to_string(), false),
        "the next call reaches a new server"
    );
    say(&session, "/tool echo.pid {}").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let (new_pid, _) = tool_result(&events(&host, session.id()).await, 4);
    assert_ne!(new_pid, pid, "a new process");
}

/// `mcp-echo --http ADDR --unknown-session-400` (answering a session it does
/// not know as the TypeScript SDK's servers do), and the URL it serves.
fn serve_http(addr: &str) -> (KillOnDrop, String) {
    use std::io::BufRead;
    let mut child = Command::new(mcp_echo())
        .args(["--http", addr, "--unknown-session-400"])
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
    (server, url)
}

/// A host whose MCP server `remote` is `mcp-echo` serving streamable HTTP,
/// and an assistant session on it whose first call reached it.
struct Remote {
    server: KillOnDrop,
    url: String,
    /// The server's address, to start it again there.
    addr: String,
    dir: tempfile::TempDir,
    host: std::sync::Arc<logbook::session::Host>,
    session: logbook::session::Session,
}

/// [`Remote`], with calls that time out after `timeout_ms`.
async fn remote_session(timeout_ms: u64, name: &str) -> Remote {
    let (server, url) = serve_http("127.0.0.1:0");
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    let dir = data_dir();
    let mut config = config();
    config.mcp.insert(
        "remote".into(),
        McpServerConfig {
            url: Some(url.clone()),
            timeout_ms: Some(timeout_ms),
            ..McpServerConfig::default()
        },
    );
    config.tools.policy.insert("remote.*".into(), Policy::Allow);
    let host = open_host_with(dir.path(), config);
    let session = start(&host, "assistant", name).await;
    say(&session, "/tool remote.add {\"a\": 1, \"b\": 2}").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    assert_eq!(
        tool_result(&events(&host, session.id()).await, 1),
        ("3".to_string(), false)
    );
    Remote {
        server,
        url,
        addr,
        dir,
        host,
        session,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamable_http_mcp_server_that_restarts_is_reached_again() {
    // Long enough for a loaded machine, short enough that a call that hangs
    // fails the test rather than its guard.
    let Remote {
        server,
        url,
        addr,
        dir: _dir,
        host,
        session,
    } = remote_session(20_000, "mcp-http-restart").await;

    // The server goes away: a call while it is down fails, and says so.
    drop(server);
    say(&session, "/tool remote.add {\"a\": 3, \"b\": 4}").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let (content, is_error) = tool_result(&events(&host, session.id()).await, 2);
    assert!(is_error, "{content}");
    assert!(content.contains("started again"), "{content}");

    // It is back, on the same address, knowing no sessions.
    let (_server, again) = serve_http(&addr);
    assert_eq!(again, url, "the same address");
    say(&session, "/tool remote.add {\"a\": 20, \"b\": 22}").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let log = events(&host, session.id()).await;
    assert_eq!(
        tool_result(&log, 3),
        ("42".to_string(), false),
        "the call after the restart reaches the new server"
    );
}

#[test]
fn read_only_commands_do_not_start_mcp_servers() {
    let dir = data_dir();
    let data = dir.path();
    run_ok(logbook(data).args(["run", "counter", "--session", "c", "-i", "inc"]));
    // A server that cannot start: only commands that run sessions need it.
    std::fs::write(
        data.join("logbook.toml"),
        "[mcp.broken]\ncommand = \"/nonexistent/mcp-server\"\n",
    )
    .expect("write the configuration");
    let listed = run_ok(logbook(data).arg("sessions"));
    assert!(listed.stdout.contains('c'), "{listed:?}");
    let log = run_ok(logbook(data).args(["log", "c"]));
    assert!(log.stdout.contains("created"), "{log:?}");
    run_ok(logbook(data).args(["export", "c"]));
    run_ok(logbook(data).args(["verify", "c"]));
    // A command that advances a session still says what is wrong, by name.
    let ran = run(logbook(data).args(["run", "--session", "c", "-i", "inc"]));
    assert!(!ran.status.success(), "{ran:?}");
    assert!(ran.stderr.contains("broken"), "{ran:?}");
}

/// The case: the server restarts between two calls. rmcp's client
/// waits on the old session's `400`, so the first call after the restart
/// ends at its timeout (kept short here) and drops the connection; the next
/// call opens a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_hangs_on_a_restarted_http_server_lets_the_next_one_reconnect() {
    let Remote {
        server,
        url,
        addr,
        dir: _dir,
        host,
        session,
    } = remote_session(1_500, "mcp-http-hang").await;

    drop(server);
    let (_server, again) = serve_http(&addr);
    assert_eq!(again, url, "the same address");
    say(&session, "/tool remote.add {\"a\": 3, \"b\": 4}").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let (content, is_error) = tool_result(&events(&host, session.id()).await, 2);
    assert!(is_error, "{content}");
    assert!(content.contains("started again"), "{content}");
    say(&session, "/tool remote.add {\"a\": 20, \"b\": 22}").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    assert_eq!(
        tool_result(&events(&host, session.id()).await, 3),
        ("42".to_string(), false),
        "the call after that reaches the new server"
    );
}
