//! The `logbook` binary: what it prints, its exit codes, and what it leaves
//! (or does not leave) in the data directory.

use logbook::journal::{from_jsonl, verify_events};

use crate::fixtures::*;

const WRITE_A: &str = r#"/tool fs.write {"path":"a.txt","content":"x"}"#;

/// The one line of an error, checked to be one line with the `error: ` prefix.
fn one_line_error(ran: &Ran) -> &str {
    assert!(!ran.status.success(), "{ran:?}");
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {ran:?}");
    assert!(lines[0].starts_with("error: "), "{ran:?}");
    lines[0]
}

#[test]
fn run_prints_each_output_in_order() {
    let dir = data_dir();
    let ran = run_ok(logbook(dir.path()).args([
        "run",
        "counter",
        "--session",
        "c",
        "-i",
        "inc",
        "-i",
        "inc",
    ]));
    assert_eq!(ran.stdout, "count = 1\ncount = 2\n");
    assert_eq!(ran.stderr, "");
    // A second run continues the same session, by name, without the guest.
    let ran = run_ok(logbook(dir.path()).args(["run", "--session", "c", "-i", "get"]));
    assert_eq!(ran.stdout, "count = 2\n");
    // Naming another guest for an existing session is refused.
    let ran = run(logbook(dir.path()).args(["run", "assistant", "--session", "c", "-i", "x"]));
    let line = one_line_error(&ran);
    assert!(line.contains("runs guest counter"), "{line}");
}

#[test]
fn an_unknown_session_is_a_one_line_error() {
    let dir = data_dir();
    let missing = dir.path().join("nowhere");
    let ran = run(logbook(&missing).args(["log", "nope"]));
    let line = one_line_error(&ran);
    assert!(line.contains("no Logbook data"), "{line}");
    assert_eq!(ran.stdout, "");
    assert!(!missing.exists(), "reading creates no data directory");
    for args in [
        &["sessions"][..],
        &["approve", "nope", "call-1"],
        &["run", "--session", "nope"],
    ] {
        let ran = run(logbook(&missing).args(args));
        one_line_error(&ran);
        assert!(!missing.exists(), "{args:?} created the data directory");
    }

    run_ok(logbook(dir.path()).args(["run", "counter", "--session", "c"]));
    let ran = run(logbook(dir.path()).args(["log", "nope"]));
    assert_eq!(one_line_error(&ran), r#"error: no session "nope""#);
    let ran = run(logbook(dir.path()).args(["run", "--session", "nope", "-i", "x"]));
    assert!(one_line_error(&ran).contains("name a guest"), "{ran:?}");
}

#[test]
fn a_guest_that_imports_http_is_refused_by_run() {
    let dir = data_dir();
    let ran = run(logbook(dir.path())
        .arg("run")
        .arg(guest_file("fixture_http"))
        .args(["--session", "x", "-i", "hello"]));
    let line = one_line_error(&ran);
    assert!(line.contains("wasi:http/outgoing-handler"), "{line}");
    assert_eq!(ran.stdout, "");
    let sessions = run_ok(logbook(dir.path()).arg("sessions"));
    let rows: Vec<&str> = sessions.stdout.lines().skip(1).collect();
    assert!(rows.is_empty(), "no session was created: {rows:?}");
    let ran = run(logbook(dir.path()).args(["log", "x"]));
    one_line_error(&ran);
}

#[test]
fn bad_arguments_exit_non_zero_with_usage() {
    let dir = data_dir();
    for args in [
        &["frobnicate"][..],
        &["run", "counter"],
        &["approve", "w"],
        &["log"],
        &["run", "counter", "--session", "c", "--bogus"],
    ] {
        let ran = run(logbook(dir.path()).args(args));
        assert_eq!(ran.status.code(), Some(2), "{args:?}: {ran:?}");
        assert_eq!(ran.stdout, "", "{args:?}");
        assert!(ran.stderr.contains("Usage"), "{args:?}: {ran:?}");
    }
    assert!(
        !dir.path().join("journal.redb").exists(),
        "bad arguments touch nothing"
    );
    let ran = run(logbook(dir.path())
        .env("LOGBOOK_ECHO_DELAY_MS", "soon")
        .args(["run", "assistant", "--session", "a"]));
    assert!(one_line_error(&ran).contains("LOGBOOK_ECHO_DELAY_MS"));
    let ran = run(logbook(dir.path()).args([
        "run",
        "counter",
        "--session",
        "c",
        "--session-config",
        "[1, 2]",
    ]));
    one_line_error(&ran);
}

#[test]
fn log_json_lines_are_events_whose_chain_verifies() {
    let dir = data_dir();
    run_ok(logbook(dir.path()).args([
        "run",
        "assistant",
        "--session",
        "a",
        "-i",
        "hello",
        "-i",
        "line one\nline two",
    ]));
    let (lines, values) = log_json(dir.path(), "a");
    assert!(lines.len() >= 7, "{lines:?}");
    for (i, value) in values.iter().enumerate() {
        let object = value.as_object().expect("each line is an object");
        assert_eq!(object["seq"].as_u64(), Some(i as u64));
        assert!(
            object["at"]
                .as_u64()
                .is_some_and(|at| at > 1_600_000_000_000)
        );
        let hash = object["hash"].as_str().expect("hash");
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(object["kind"].is_string());
    }
    assert_eq!(values[0]["kind"], "created");
    let kinds: Vec<&str> = values.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "created",
            "input",
            "requested",
            "completed",
            "output",
            "input",
            "requested",
            "completed",
            "output"
        ]
    );
    // The lines are the export format: they parse back and their chain holds.
    let events: Vec<_> = lines
        .iter()
        .map(|l| from_jsonl(l).expect("an export line"))
        .collect();
    let verified = verify_events(&events);
    assert!(verified.is_ok(), "{:?}", verified.first_bad);
    assert_eq!(verified.events, lines.len() as u64);
    // The readable form has one line per event too.
    let readable = run_ok(logbook(dir.path()).args(["log", "a"]));
    assert_eq!(readable.stdout.lines().count(), lines.len());
}

#[test]
fn an_approval_survives_the_process_and_a_new_one_decides_it() {
    let dir = data_dir();
    let data = dir.path();
    let asked = run_ok(logbook(data).args(["run", "assistant", "--session", "w", "-i", WRITE_A]));
    assert_eq!(asked.stdout, "");
    let (_, events) = log_json(data, "w");
    let key = events
        .iter()
        .find(|e| e["kind"] == "approval-requested")
        .and_then(|e| e["key"].as_str())
        .expect("an approval is pending")
        .to_string();
    assert!(
        asked.stderr.contains("waiting for approval: tool fs.write"),
        "{asked:?}"
    );
    assert!(
        asked.stderr.contains(&format!("logbook approve w {key}")),
        "{asked:?}"
    );
    // A new process sees the same prompt.
    let again = run_ok(logbook(data).args(["run", "--session", "w"]));
    assert!(
        again.stderr.contains(&format!("logbook approve w {key}")),
        "{again:?}"
    );

    let unknown = run(logbook(data).args(["approve", "w", "call-99"]));
    assert!(one_line_error(&unknown).contains("no pending approval"));

    let denied = run_ok(logbook(data).args(["deny", "w", &key, "--reason", "not in prod"]));
    assert_eq!(
        denied.stdout,
        "tool fs.write returned: denied by cli: not in prod\n"
    );
    let (_, events) = log_json(data, "w");
    let decided: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "approval-decided")
        .collect();
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["allow"], false);
    assert_eq!(decided[0]["reason"], "not in prod");
    assert!(
        !data.join("workspaces").exists()
            || std::fs::read_dir(data.join("workspaces"))
                .unwrap()
                .all(|d| !d.unwrap().path().join("a.txt").exists()),
        "a denied write writes nothing"
    );
    let twice = run(logbook(data).args(["approve", "w", &key]));
    assert!(
        one_line_error(&twice).contains("decided already"),
        "{twice:?}"
    );
    let sessions = run_ok(logbook(data).arg("sessions"));
    assert!(
        sessions
            .stdout
            .lines()
            .any(|l| l.starts_with("w ") && l.contains(" idle ")),
        "{sessions:?}"
    );
}

/// `import` into another data directory: a built-in example's log is taken
/// as is (the example is stored there); another guest's is refused with the
/// command that fixes it, and taken once that command ran.
#[test]
fn import_stores_a_built_in_example_and_names_the_fix_for_another_guest() {
    let from = data_dir();
    let to = data_dir();
    run_ok(logbook(from.path()).args(["run", "assistant", "--session", "a", "-i", "hi"]));
    run_ok(
        logbook(from.path())
            .arg("run")
            .arg(guest_file("fixture_panic"))
            .args(["--session", "p"]),
    );
    for session in ["a", "p"] {
        run_ok(
            logbook(from.path())
                .args(["export", session, "-o"])
                .arg(from.path().join(format!("{session}.jsonl"))),
        );
    }

    let ran = run_ok(
        logbook(to.path())
            .arg("import")
            .arg(from.path().join("a.jsonl"))
            .args(["--as", "a"]),
    );
    assert!(ran.stdout.starts_with("a "), "{ran:?}");
    let ran = run_ok(logbook(to.path()).args(["run", "--session", "a", "-i", "again"]));
    assert_eq!(ran.stdout, "echo: again\n");

    let ran = run(logbook(to.path())
        .arg("import")
        .arg(from.path().join("p.jsonl"))
        .args(["--as", "p"]));
    let line = one_line_error(&ran);
    assert!(
        line.contains("not stored here") && line.contains("logbook guest add fixture_panic FILE"),
        "{line}"
    );
    run_ok(
        logbook(to.path())
            .args(["guest", "add", "fixture_panic"])
            .arg(guest_file("fixture_panic")),
    );
    run_ok(
        logbook(to.path())
            .arg("import")
            .arg(from.path().join("p.jsonl"))
            .args(["--as", "p"]),
    );
}
