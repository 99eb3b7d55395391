//! `logbook import --from claude-code` (issue 14, first part): a Claude Code
//! transcript becomes a session of the `assistant` guest that verifies,
//! agrees with the guest on replay, forks and goes on. The real binary and
//! real redb files; the fixtures are written to Claude Code's published
//! transcript format.

use std::path::PathBuf;

use logbook::journal::{ContentBlock, EventBody, Outcome};

use crate::fixtures::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/claude-code")
        .join(name)
}

/// Imports `session.jsonl` as `cc`; answers what the import said on stderr.
fn import_session(data: &std::path::Path) -> String {
    let ran = run_ok(
        logbook(data)
            .args(["import", "--from", "claude-code"])
            .arg(fixture("session.jsonl"))
            .args(["--as", "cc"]),
    );
    assert!(ran.stdout.starts_with("cc "), "{ran:?}");
    ran.stderr
}

#[test]
fn a_transcript_imports_verifies_agrees_on_replay_and_reports_what_it_kept() {
    let data = data_dir();
    let report = import_session(data.path());
    assert!(
        report.contains("imported 11 lines as 13 events"),
        "{report}"
    );
    assert!(
        report.contains("kept verbatim (in created.config.import.kept): 3 lines (file-history-snapshot 1, summary 1, system 1)"),
        "{report}"
    );
    assert!(
        report.contains("torn last line 11 (196 bytes, no end of line): left out"),
        "{report}"
    );

    let ran = run_ok(logbook(data.path()).args(["verify", "cc"]));
    assert!(ran.stdout.contains(": ok, 13 events"), "{ran:?}");
    // The oracle: the guest wants exactly what the log recorded, under the
    // same keys, so waking the session re-performs nothing.
    let ran = run_ok(logbook(data.path()).args(["replay", "cc", "--guest", "assistant"]));
    assert_eq!(
        ran.stdout, "assistant agrees with the log of cc (13 events)\n",
        "{ran:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_imported_log_keeps_times_thinking_signatures_tool_calls_and_kept_lines() {
    let data = data_dir();
    import_session(data.path());
    let host = open_host(data.path());
    let info = host.resolve(TENANT, "cc").await.expect("imported");
    let log = events(&host, info.id).await;
    let kinds: Vec<&str> = log.iter().map(|e| e.event.body.kind()).collect();
    assert_eq!(
        kinds,
        [
            "created",
            "input",
            "requested",
            "completed",
            "requested",
            "completed",
            "requested",
            "completed",
            "output",
            "input",
            "requested",
            "completed",
            "output"
        ]
    );
    // Times are the transcript's.
    assert_eq!(log[1].event.at, 1_748_244_460_079);
    assert_eq!(log[3].event.at, 1_748_244_464_020);
    // The two lines of message msg_01A are one answer: the thinking with its
    // signature, for the anthropic wire only, then the tool call.
    let EventBody::Completed {
        key,
        outcome: Outcome::Model(answer),
    } = &log[3].event.body
    else {
        panic!("a model's answer: {:?}", log[3].event.body)
    };
    assert_eq!(key, "model-1", "the guest's key for the call input 1 asked");
    assert_eq!(
        answer.content[0],
        ContentBlock::Reasoning {
            text: Some("The user wants a listing. I will run ls.".into()),
            signature: Some("EqQBCkYIBRgCKkD0signature0AAA==".into()),
            opaque: None,
            provider: "anthropic".into(),
        }
    );
    assert!(
        matches!(&answer.content[1], ContentBlock::ToolCall(c) if c.id == "toolu_01Ls" && c.name == "Bash"),
        "{:?}",
        answer.content
    );
    assert_eq!(answer.model, "claude-sonnet-4-20250514");
    assert_eq!(
        answer.usage.map(|u| (u.input_tokens, u.output_tokens)),
        Some((2112, 41)),
        "read tokens count the cached ones"
    );
    assert_eq!(kinds_of_key(&log, "toolu_01Ls"), ["requested", "completed"]);
    assert_eq!(
        outputs(&log),
        ["There are two files: a.txt and b.txt.", "You are welcome."]
    );
    // Lines it does not map are in `created`, verbatim.
    let EventBody::Created(created) = &log[0].event.body else {
        panic!("created first")
    };
    let import = &created.config["import"];
    assert_eq!(import["from"], "claude-code");
    assert_eq!(import["session_id"], "4f35e220-c435-4cf7-b9b9-f40426042847");
    let kept = import["kept"].as_array().expect("kept lines");
    let source = std::fs::read_to_string(fixture("session.jsonl")).expect("fixture");
    let lines: Vec<&str> = source.lines().collect();
    let kept_lines: Vec<(u64, &str)> = kept
        .iter()
        .map(|k| (k["line"].as_u64().unwrap(), k["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kept_lines,
        [(1, lines[0]), (6, lines[5]), (8, lines[7])],
        "summary, file-history-snapshot and system, byte for byte"
    );
}

#[test]
fn an_imported_session_continues_on_the_assistant_and_the_model_sees_the_conversation() {
    let data = data_dir();
    import_session(data.path());
    let ran = run_ok(logbook(data.path()).args(["run", "--session", "cc", "-i", "hi"]));
    assert_eq!(ran.stdout, "echo: hi\n");
    // The echo model counts the words of every message it was sent: the
    // imported turns (10 + 7 + 4 + 3) and "hi".
    let (_, log) = log_json(data.path(), "cc");
    let last = log
        .iter()
        .rev()
        .find(|e| e["kind"] == "completed")
        .expect("the echo's answer");
    assert_eq!(last["usage"]["input_tokens"], 25, "{last}");
    let asked = log
        .iter()
        .rev()
        .find(|e| e["kind"] == "requested")
        .expect("the new call");
    assert!(
        asked["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("7 messages")),
        "{asked}"
    );
    // Nothing imported was performed again: the tool ran in Claude Code only.
    let tool_rows = log.iter().filter(|e| e["key"] == "toolu_01Ls").count();
    assert_eq!(tool_rows, 2, "requested and completed, once");
    let ran = run_ok(logbook(data.path()).args(["replay", "cc", "--guest", "assistant"]));
    assert!(ran.stdout.contains("agrees"), "{ran:?}");
}

#[test]
fn an_imported_session_forks() {
    let data = data_dir();
    import_session(data.path());
    run_ok(logbook(data.path()).args(["fork", "cc", "--at", "8", "--as", "f"]));
    let ran = run_ok(logbook(data.path()).args(["run", "--session", "f", "-i", "again"]));
    assert_eq!(ran.stdout, "echo: again\n");
    let ran = run_ok(logbook(data.path()).args(["verify", "f"]));
    assert!(ran.stdout.contains(": ok"), "{ran:?}");
    let ran = run_ok(logbook(data.path()).args(["replay", "f", "--guest", "assistant"]));
    assert!(ran.stdout.contains("agrees"), "{ran:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcript_the_guest_cannot_continue_writes_nothing() {
    let data = data_dir();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("long.jsonl");
    // One answer far over the assistant's context budget (100 000 tokens of
    // four bytes): the guest wants to compact, which this part cannot import.
    let long = "word ".repeat(100_000);
    let text = format!(
        "{}\n{}\n",
        serde_json::json!({"type": "user", "uuid": "u1", "timestamp": "2025-05-26T07:27:40.079Z",
            "message": {"role": "user", "content": "Say a lot."}}),
        serde_json::json!({"type": "assistant", "uuid": "u2", "timestamp": "2025-05-26T07:27:41.000Z",
            "message": {"id": "m1", "role": "assistant", "model": "claude", "stop_reason": "end_turn",
                "content": [{"type": "text", "text": long}]}}),
    );
    std::fs::write(&path, text).expect("write");
    let ran = run(logbook(data.path())
        .args(["import", "--from", "claude-code"])
        .arg(&path)
        .args(["--as", "long"]));
    assert!(!ran.status.success(), "{ran:?}");
    assert!(ran.stderr.contains("compact"), "{ran:?}");
    let ran = run_ok(logbook(data.path()).args(["verify", "--all"]));
    assert_eq!(ran.stdout, "", "no log was written");
    let host = open_host(data.path());
    let stored = host
        .journal()
        .guest_by_name(TENANT, "assistant")
        .await
        .expect("read the guests");
    assert_eq!(stored, None, "nor the built-in guest");
}

#[test]
fn an_answer_the_guest_was_not_waiting_for_is_kept_verbatim_and_the_log_still_agrees() {
    let data = data_dir();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("twice.jsonl");
    let answer = |uuid: &str, id: &str, text: &str| {
        serde_json::json!({"type": "assistant", "uuid": uuid, "timestamp": "2025-05-26T07:27:41.000Z",
            "message": {"id": id, "role": "assistant", "model": "claude", "stop_reason": "end_turn",
                "content": [{"type": "text", "text": text}]}})
        .to_string()
    };
    // A retried answer: two messages for one user turn.
    let lines = [
        serde_json::json!({"type": "user", "uuid": "u1", "timestamp": "2025-05-26T07:27:40.079Z",
            "message": {"role": "user", "content": "Hello?"}})
        .to_string(),
        answer("u2", "m1", "Hi."),
        answer("u3", "m2", "Hi again."),
    ];
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    let ran = run_ok(
        logbook(data.path())
            .args(["import", "--from", "claude-code"])
            .arg(&path)
            .args(["--as", "t"]),
    );
    assert!(
        ran.stderr
            .contains("kept verbatim (in created.config.import.kept): 1 lines (assistant 1)"),
        "{ran:?}"
    );
    let (_, log) = log_json(data.path(), "t");
    let kept = &log[0]["config"]["import"]["kept"][0];
    assert_eq!(kept["line"], 3);
    assert_eq!(kept["text"], lines[2].as_str());
    assert_eq!(kept["why"], "an answer with no model call in flight");
    let ran = run_ok(logbook(data.path()).args(["replay", "t", "--guest", "assistant"]));
    assert!(ran.stdout.contains("agrees"), "{ran:?}");
}

#[test]
fn a_turn_longer_than_the_assistants_max_steps_imports_whole() {
    let data = data_dir();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("long-turn.jsonl");
    let at = "2025-05-26T07:27:40.079Z";
    let mut lines = vec![serde_json::json!({"type": "user", "timestamp": at,
        "message": {"role": "user", "content": "Run it ten times."}})];
    // Ten model calls that each run a tool, then the answer: eleven calls
    // for one input, past the assistant's default max_steps of 8.
    for i in 0..10 {
        lines.push(serde_json::json!({"type": "assistant", "timestamp": at,
            "message": {"id": format!("m{i}"), "role": "assistant", "model": "claude",
                "content": [{"type": "tool_use", "id": format!("t{i}"), "name": "Bash", "input": {"n": i}}]}}));
        lines.push(serde_json::json!({"type": "user", "timestamp": at,
            "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": format!("t{i}"),
                "content": [{"type": "text", "text": format!("ran {i}")}]}]}}));
    }
    lines.push(serde_json::json!({"type": "assistant", "timestamp": at,
        "message": {"id": "m10", "role": "assistant", "model": "claude", "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "Done ten times."}]}}));
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).expect("write");
    let ran = run_ok(
        logbook(data.path())
            .args(["import", "--from", "claude-code"])
            .arg(&path)
            .args(["--as", "long"]),
    );
    assert!(!ran.stderr.contains("kept verbatim"), "{ran:?}");
    let (_, log) = log_json(data.path(), "long");
    assert_eq!(log[0]["config"]["max_steps"], 12, "{}", log[0]);
    let outputs: Vec<&serde_json::Value> = log.iter().filter(|e| e["kind"] == "output").collect();
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    assert_eq!(outputs[0]["content"][0]["text"], "Done ten times.");
    let ran = run_ok(logbook(data.path()).args(["replay", "long", "--guest", "assistant"]));
    assert!(ran.stdout.contains("agrees"), "{ran:?}");
}

#[test]
fn a_turn_interrupted_in_claude_code_is_not_asked_again_when_the_session_wakes() {
    let data = data_dir();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("interrupted.jsonl");
    let at = "2025-05-26T07:27:40.079Z";
    let user = |content: serde_json::Value| {
        serde_json::json!({"type": "user", "timestamp": at,
            "message": {"role": "user", "content": content}})
    };
    // The user refuses a tool call and interrupts, then says what to do
    // instead: the model calls that the tool's result and the interruption
    // led to have no answer in the transcript.
    let lines = [
        user(serde_json::json!("delete it")),
        serde_json::json!({"type": "assistant", "timestamp": at, "message": {"id": "m1",
            "role": "assistant", "model": "claude",
            "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"c": "rm"}}]}}),
        user(
            serde_json::json!([{"type": "tool_result", "tool_use_id": "t1", "is_error": true,
            "content": "The user doesn't want to proceed with this tool use."}]),
        ),
        user(
            serde_json::json!([{"type": "text", "text": "[Request interrupted by user for tool use]"}]),
        ),
        user(serde_json::json!("move it instead")),
        serde_json::json!({"type": "assistant", "timestamp": at, "message": {"id": "m2",
            "role": "assistant", "model": "claude", "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "Moved."}]}}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).expect("write");
    run_ok(
        logbook(data.path())
            .args(["import", "--from", "claude-code"])
            .arg(&path)
            .args(["--as", "i"]),
    );
    let ran = run_ok(logbook(data.path()).args(["replay", "i", "--guest", "assistant"]));
    assert!(ran.stdout.contains("agrees"), "{ran:?}");
    // The answer went to the call the guest was waiting on, and the calls
    // it superseded are closed: waking asks no model but for the new input.
    let ran = run_ok(logbook(data.path()).args(["run", "--session", "i", "-i", "ok?"]));
    assert_eq!(ran.stdout, "echo: ok?\n");
    let (_, log) = log_json(data.path(), "i");
    let outputs: Vec<&str> = log
        .iter()
        .filter(|e| e["kind"] == "output")
        .filter_map(|e| e["content"][0]["text"].as_str())
        .collect();
    assert_eq!(outputs, ["Moved.", "echo: ok?"]);
    let failed = log.iter().filter(|e| e["kind"] == "failed").count();
    assert_eq!(failed, 2, "the two superseded model calls");
}
