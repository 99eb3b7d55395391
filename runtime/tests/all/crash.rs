//! Crash tests: SIGKILL a real `logbook run` in the middle of a turn, start it
//! again, and check the log: nothing acknowledged is lost or changed, the
//! interrupted model call is made again and recorded once, and a pending
//! approval is still pending, once.
//!
//! When to kill. The journal is a redb file that the running process locks, so
//! the test cannot read the log while the child runs. What it can see is the
//! child's stdout: `logbook run -i ping -i hello` prints `echo: ping` once the
//! first turn is idle, and only then appends `hello`, whose `input` and model
//! `requested` go to the journal in one commit right away; the model (EchoModel
//! with `LOGBOOK_ECHO_DELAY_MS`) then holds its answer for [`DELAY_MS`]. The test
//! kills [`KILL_AFTER`] after the line: far longer than one commit takes, far
//! shorter than the delay. A kill that came too early or too late does not pass
//! unnoticed: the restarted log must hold the `requested` written before the
//! restart, and the restarted process must be the one that prints the answer.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::fixtures::*;

const DELAY_MS: &str = "3000";
const KILL_AFTER: Duration = Duration::from_millis(1000);

const WRITE_A: &str = r#"/tool fs.write {"path":"a.txt","content":"x"}"#;

fn kind(e: &Value) -> &str {
    e["kind"].as_str().expect("every event has a kind")
}

fn key(e: &Value) -> Option<&str> {
    e["key"].as_str()
}

fn seq(e: &Value) -> u64 {
    e["seq"].as_u64().expect("every event has a seq")
}

fn at(e: &Value) -> u64 {
    e["at"].as_u64().expect("every event has an at")
}

fn input_text(e: &Value) -> Option<&str> {
    (kind(e) == "input").then(|| e["content"][0]["text"].as_str())?
}

/// The kinds of the events about `k`, in log order.
fn kinds_of(events: &[Value], k: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| key(e) == Some(k))
        .map(|e| kind(e).to_string())
        .collect()
}

/// The one input with this text; panics unless there is exactly one.
fn the_input<'a>(events: &'a [Value], text: &str) -> &'a Value {
    let found: Vec<_> = events
        .iter()
        .filter(|e| input_text(e) == Some(text))
        .collect();
    assert_eq!(found.len(), 1, "inputs {text:?}: {found:?}");
    found[0]
}

/// Start `logbook run --session NAME -i ping -i LAST` with a slow model and
/// SIGKILL it while the model thinks about LAST. Returns the time of the kill.
fn kill_during_the_model_call(data: &Path, session: &str, last: &str) -> u64 {
    let mut child = Running::spawn(logbook(data).env("LOGBOOK_ECHO_DELAY_MS", DELAY_MS).args([
        "run",
        "--session",
        session,
        "-i",
        "ping",
        "-i",
        last,
    ]));
    child.wait_for_line("echo: ping");
    std::thread::sleep(KILL_AFTER);
    child.kill();
    now_ms()
}

/// Check the `requested` of the model call about `text` was written before
/// `killed_at`, and that it completed exactly once, after it. Its key.
fn the_resumed_model_call(events: &[Value], text: &str, killed_at: u64) -> String {
    let input = the_input(events, text);
    let requested = &events[seq(input) as usize + 1];
    assert_eq!(
        kind(requested),
        "requested",
        "the model call was requested with the input (was the child killed too soon?)"
    );
    assert_eq!(requested["effect"], "model");
    assert_eq!(at(requested), at(input), "one commit");
    assert!(at(requested) <= killed_at, "written by the killed process");
    let model_key = key(requested).unwrap().to_string();
    assert_eq!(kinds_of(events, &model_key), ["requested", "completed"]);
    let completed = events
        .iter()
        .find(|e| key(e) == Some(&model_key) && kind(e) == "completed")
        .unwrap();
    assert!(
        at(completed) >= killed_at,
        "completed by the restarted process, not before the kill (was the child killed too late?)"
    );
    model_key
}

/// Open the data directory in this process (no `logbook` runs now) and verify
/// the session's chain.
async fn verify_with_a_host(data: &Path, session: &str) -> std::path::PathBuf {
    let host = open_host(data);
    let info = host
        .resolve(TENANT, session)
        .await
        .expect("the session exists");
    assert_chain_holds(&host, info.id).await;
    host.workspace_dir(info.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_call_cut_by_sigkill_is_made_again_and_recorded_once() {
    let dir = data_dir();
    let data = dir.path();
    let first = run_ok(logbook(data).args(["run", "assistant", "--session", "s", "-i", "first"]));
    assert_eq!(first.stdout, "echo: first\n");
    let (before, _) = log_json(data, "s");

    let killed_at = kill_during_the_model_call(data, "s", "hello");
    let restarted = run_ok(logbook(data).args(["run", "--session", "s"]));
    assert_eq!(
        restarted.stdout, "echo: hello\n",
        "the restarted process gives the answer"
    );

    let (lines, events) = log_json(data, "s");
    assert_eq!(
        lines[..before.len()],
        before[..],
        "the log before the killed process is unchanged, hashes and all"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(seq(e), i as u64, "seqs are dense");
    }
    the_input(&events, "ping");
    let model_key = the_resumed_model_call(&events, "hello", killed_at);
    assert!(
        events
            .iter()
            .all(|e| !matches!(kind(e), "failed" | "cancelled" | "guest-failed")),
        "{events:?}"
    );
    let outs: Vec<&str> = events
        .iter()
        .filter(|e| kind(e) == "output")
        .map(|e| e["content"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(outs, ["echo: first", "echo: ping", "echo: hello"]);
    let answered = events
        .iter()
        .position(|e| kind(e) == "output" && e["content"][0]["text"] == "echo: hello")
        .unwrap();
    let completed = events
        .iter()
        .position(|e| key(e) == Some(&model_key) && kind(e) == "completed")
        .unwrap();
    assert!(completed < answered);
    verify_with_a_host(data, "s").await;
}

/// The key of the one pending approval, from the log; checks there is one.
fn the_one_approval(events: &[Value]) -> String {
    let asked: Vec<_> = events
        .iter()
        .filter(|e| kind(e) == "approval-requested")
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["tool"]["name"], "fs.write");
    key(asked[0]).unwrap().to_string()
}

/// `logbook approve`, then check the tool ran once, after the decision.
async fn approve_and_check(data: &Path, session: &str, approval: &str) {
    let approved = run_ok(logbook(data).args(["approve", session, approval]));
    assert!(
        approved
            .stdout
            .contains("tool fs.write returned: wrote 1 bytes to a.txt"),
        "{approved:?}"
    );
    let (_, events) = log_json(data, session);
    assert_eq!(
        kinds_of(&events, approval),
        [
            "requested",
            "approval-requested",
            "approval-decided",
            "completed"
        ]
    );
    let decided = events
        .iter()
        .find(|e| kind(e) == "approval-decided")
        .unwrap();
    assert_eq!(decided["allow"], true);
    assert_eq!(decided["by"], "cli");
    let workspace = verify_with_a_host(data, session).await;
    assert_eq!(
        std::fs::read_to_string(workspace.join("a.txt")).expect("a.txt was written"),
        "x"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_cut_by_sigkill_before_its_approval_asks_once_after_restart() {
    let dir = data_dir();
    let data = dir.path();
    run_ok(logbook(data).args(["run", "assistant", "--session", "w"]));
    let killed_at = kill_during_the_model_call(data, "w", WRITE_A);

    let restarted = run_ok(logbook(data).args(["run", "--session", "w"]));
    assert_eq!(restarted.stdout, "", "nothing to say until the tool ran");
    assert!(
        restarted.stderr.contains("waiting for approval"),
        "{restarted:?}"
    );
    let (_, events) = log_json(data, "w");
    the_resumed_model_call(&events, WRITE_A, killed_at);
    let approval = the_one_approval(&events);
    assert!(
        restarted
            .stderr
            .contains(&format!("logbook approve w {approval}")),
        "{restarted:?}"
    );
    let sessions = run_ok(logbook(data).arg("sessions"));
    assert!(
        sessions
            .stdout
            .lines()
            .any(|l| l.starts_with("w ") && l.contains("waiting-approval")),
        "{sessions:?}"
    );
    assert!(
        !data.join("workspaces").exists()
            || std::fs::read_dir(data.join("workspaces"))
                .unwrap()
                .all(|d| !d.unwrap().path().join("a.txt").exists()),
        "nothing is written before the approval"
    );
    approve_and_check(data, "w", &approval).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_pending_when_the_process_is_killed_is_still_pending_once() {
    let dir = data_dir();
    let data = dir.path();
    let asked = run_ok(logbook(data).args(["run", "assistant", "--session", "w", "-i", WRITE_A]));
    assert!(asked.stderr.contains("waiting for approval"), "{asked:?}");
    let (before, events) = log_json(data, "w");
    let approval = the_one_approval(&events);

    // The process is alive, with the approval pending, when it is killed.
    let killed_at = kill_during_the_model_call(data, "w", "pong");
    let restarted = run_ok(logbook(data).args(["run", "--session", "w"]));
    assert_eq!(restarted.stdout, "echo: pong\n");
    assert!(
        restarted
            .stderr
            .contains(&format!("logbook approve w {approval}")),
        "the restarted process shows the same prompt: {restarted:?}"
    );
    let (lines, events) = log_json(data, "w");
    assert_eq!(lines[..before.len()], before[..]);
    the_resumed_model_call(&events, "pong", killed_at);
    assert_eq!(the_one_approval(&events), approval);
    assert_eq!(
        kinds_of(&events, &approval),
        ["requested", "approval-requested"]
    );
    approve_and_check(data, "w", &approval).await;
}
