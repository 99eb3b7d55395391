//! The log's integrity where it is read (hardening issue, item 8): an
//! import takes only lines in canonical form and names a line that is not
//! UTF-8.

use std::sync::Arc;

use logbook::journal::LogId;
use logbook::session::Host;

use crate::fixtures::*;

/// A counter session named `name` that has counted to `n`, settled.
async fn counted(host: &Arc<Host>, name: &str, n: usize) -> LogId {
    let session = start(host, "counter", name).await;
    for _ in 0..n {
        say(&session, "inc").await;
    }
    settle(&session).await;
    session.id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_a_line_not_in_canonical_form_naming_line_seq_and_why() {
    let data = data_dir();
    let host = open_host(data.path());
    let log = counted(&host, "c", 4).await;
    let mut file = Vec::new();
    host.export(log, &mut file).expect("export");
    let text = String::from_utf8(file).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 7, "{text}");
    let with_line_7 = |line: String| -> String {
        let mut changed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        changed[6] = line;
        changed.join("\n") + "\n"
    };
    let refuse = |file: String| -> String {
        host.import(TENANT, &mut file.as_bytes(), None)
            .expect_err("refused")
            .to_string()
    };

    // An extra field decodes, and the chain (over the canonical body) holds:
    // only the bytes tell. It would have vanished on import.
    let extra = lines[6].replacen(r#","kind""#, r#","extra":"kept?","kind""#, 1);
    let why = refuse(with_line_7(extra));
    assert!(
        why.contains(r#"line 7: seq 6: not in canonical form: unknown field "extra""#),
        "{why}"
    );

    // The same fields in another order: the same event, other bytes.
    let fields: serde_json::Value = serde_json::from_str(lines[6]).expect("json");
    let (at, hash) = (&fields["at"], &fields["hash"]);
    let reordered = lines[6].replacen(
        &format!(r#","at":{at},"hash":{hash}"#),
        &format!(r#","hash":{hash},"at":{at}"#),
        1,
    );
    assert_ne!(reordered, lines[6]);
    let why = refuse(with_line_7(reordered));
    assert!(
        why.contains("line 7: seq 6: not in canonical form: fields out of order"),
        "{why}"
    );

    // Spaced out, or with Windows line ends.
    let why = refuse(with_line_7(lines[6].replacen(':', ": ", 1)));
    assert!(
        why.contains("line 7: seq 6: not in canonical form: spacing"),
        "{why}"
    );
    let why = refuse(text.replace('\n', "\r\n"));
    assert!(
        why.contains("line 1: seq 0: not in canonical form"),
        "{why}"
    );

    assert_eq!(
        host.journal().count(TENANT).expect("count").logs,
        1,
        "nothing imported"
    );
    // The file as exported still imports.
    host.import(TENANT, &mut text.as_bytes(), Some("copy"))
        .expect("the export imports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_from_the_command_line_names_the_line_that_is_not_utf8() {
    let data = data_dir();
    let host = open_host(data.path());
    let log = counted(&host, "c", 2).await;
    let mut file = Vec::new();
    host.export(log, &mut file).expect("export");
    host.close().await;
    drop(host);

    let third = file
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .map(|(i, _)| i + 1)
        .expect("three lines");
    // A byte no UTF-8 text holds, inside line 3's hash.
    let column = 20;
    file[third + column - 1] = 0xff;
    let path = data.path().join("bad.jsonl");
    std::fs::write(&path, &file).expect("write");
    let ran = run(logbook(data.path()).arg("import").arg(&path));
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    assert!(
        ran.stderr
            .contains(&format!("line 3: not UTF-8 (byte 0xff at column {column})")),
        "{}",
        ran.stderr
    );
    // From standard input too.
    let ran = run(logbook(data.path())
        .arg("import")
        .arg("-")
        .stdin(std::fs::File::open(&path).expect("open")));
    assert!(ran.stderr.contains("line 3: not UTF-8"), "{}", ran.stderr);
    let listed = run_ok(logbook(data.path()).arg("sessions"));
    assert_eq!(
        listed.stdout.lines().count(),
        2,
        "one session, nothing imported"
    );
}
