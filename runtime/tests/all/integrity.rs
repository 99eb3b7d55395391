//! The log's integrity where it is read (hardening issue, items 8 and 9.4):
//! an import takes only lines in canonical form and names a line that is not
//! UTF-8; `log`, `run` and [`Journal::read_checked`] check each event they
//! read against its predecessor, and stop at one that does not hold; a
//! damaged log is the server's fault (500), never the request's (issue #8).

use std::path::Path;
use std::sync::Arc;

use logbook::config::Config;
use logbook::journal::tables::{self, EVENTS};
use logbook::journal::{ChainPos, EventBody, JournalError, LogId, StoredEvent};
use logbook::server::{ServerSettings, Tenants};
use logbook::session::{ForkOptions, Host};
use redb::ReadableTable;
use serde_json::json;

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

/// Changes one byte of a stored event, as a bad disk would: the byte at the
/// offset into its stored value that `which` picks. The host must be closed.
fn damage(data: &Path, log: LogId, seq: u64, which: impl FnOnce(&[u8]) -> usize) {
    let db = redb::Database::open(data.join("journal.redb")).expect("open the file");
    let txn = db.begin_write().expect("write");
    {
        let mut table = txn.open_table(EVENTS).expect("events");
        let key = (log.as_u128(), seq);
        let mut value = table.get(key).expect("get").expect("row").value().to_vec();
        let at = which(&value);
        value[at] ^= 0x20;
        table.insert(key, value.as_slice()).expect("insert");
    }
    txn.commit().expect("commit");
}

/// The offset of the first byte of `needle` in an event's stored body.
fn in_body(needle: &'static [u8]) -> impl FnOnce(&[u8]) -> usize {
    move |value| {
        tables::EVENT_HEADER_LEN
            + value[tables::EVENT_HEADER_LEN..]
                .windows(needle.len())
                .position(|w| w == needle)
                .expect("the needle is in the body")
    }
}

/// The seq of the first `output` whose text is `text`.
fn output_seq(events: &[StoredEvent], text: &str) -> u64 {
    events
        .iter()
        .find(|e| {
            matches!(&e.event.body, EventBody::Output { content, .. }
                if logbook::journal::plain_text(content) == text)
        })
        .unwrap_or_else(|| panic!("an output {text:?}"))
        .event
        .seq
}

/// Every event of `log`, read `page` at a time with one [`ChainPos`].
async fn read_all_checked(host: &Host, log: LogId, page: usize) -> (Vec<StoredEvent>, ChainPos) {
    let mut pos = ChainPos::START;
    let mut all = Vec::new();
    loop {
        let got = host
            .journal()
            .read_checked(log, &mut pos, page)
            .await
            .expect("the chain holds");
        assert!(got.len() <= page);
        if got.is_empty() {
            return (all, pos);
        }
        all.extend(got);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_a_line_not_in_canonical_form_naming_line_seq_and_why() {
    let data = data_dir();
    let host = open_host(data.path());
    let log = counted(&host, "c", 4).await;
    let mut file = Vec::new();
    host.export(log, &mut file).await.expect("export");
    let text = String::from_utf8(file).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 7, "{text}");
    let with_line_7 = |line: String| -> String {
        let mut changed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        changed[6] = line;
        changed.join("\n") + "\n"
    };
    let refuse = async |file: String| -> String {
        host.import(TENANT, &mut file.as_bytes(), None)
            .await
            .expect_err("refused")
            .to_string()
    };

    // An extra field decodes, and the chain (over the canonical body) holds:
    // only the bytes tell. It would have vanished on import.
    let extra = lines[6].replacen(r#","kind""#, r#","extra":"kept?","kind""#, 1);
    let why = refuse(with_line_7(extra)).await;
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
    let why = refuse(with_line_7(reordered)).await;
    assert!(
        why.contains("line 7: seq 6: not in canonical form: fields out of order"),
        "{why}"
    );

    // Spaced out, or with Windows line ends.
    let why = refuse(with_line_7(lines[6].replacen(':', ": ", 1))).await;
    assert!(
        why.contains("line 7: seq 6: not in canonical form: spacing"),
        "{why}"
    );
    let why = refuse(text.replace('\n', "\r\n")).await;
    assert!(
        why.contains("line 1: seq 0: not in canonical form"),
        "{why}"
    );

    assert_eq!(
        host.journal().count(TENANT).await.expect("count").logs,
        1,
        "nothing imported"
    );
    // The file as exported still imports.
    host.import(TENANT, &mut text.as_bytes(), Some("copy"))
        .await
        .expect("the export imports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_from_the_command_line_names_the_line_that_is_not_utf8() {
    let data = data_dir();
    let host = open_host(data.path());
    let log = counted(&host, "c", 2).await;
    let mut file = Vec::new();
    host.export(log, &mut file).await.expect("export");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checked_reads_thread_pages_through_a_fork_and_stop_at_the_damage() {
    let data = data_dir();
    let host = open_host(data.path());
    let parent = counted(&host, "c", 3).await;
    let fork = guard(host.fork(TENANT, "c", ForkOptions::default()))
        .await
        .expect("fork");
    let branch = host.session(fork).await.expect("the fork");
    say(&branch, "inc").await;
    settle(&branch).await;

    // Page by page, across the fork's own `created`: what `read` gives.
    let whole = events(&host, fork).await;
    let info = host
        .journal()
        .info(fork)
        .await
        .expect("info")
        .expect("fork");
    for page in [1, 2, 1000] {
        let (read, pos) = read_all_checked(&host, fork, page).await;
        assert_eq!(read, whole, "pages of {page}");
        assert_eq!(
            pos,
            ChainPos {
                next_seq: info.next_seq,
                prev_hash: info.last_hash
            }
        );
    }
    let target = output_seq(&events(&host, parent).await, "count = 2");
    let next = whole.len() as u64;
    host.close().await;
    drop((branch, host));

    // A flipped byte in the parent's body, in the prefix the fork shares.
    damage(data.path(), parent, target, in_body(b"count"));
    let host = open_host(data.path());
    for log in [parent, fork] {
        let mut pos = ChainPos::START;
        let before = host
            .journal()
            .read_checked(log, &mut pos, 1000)
            .await
            .expect("the events before the damage");
        assert_eq!(before.len() as u64, target, "{log}");
        assert_eq!(pos.next_seq, target);
        match host.journal().read_checked(log, &mut pos, 1000).await {
            Err(JournalError::ChainBroken { log: l, seq, why }) => {
                assert_eq!((l, seq), (log, target));
                assert!(why.starts_with("hash mismatch"), "{why}");
            }
            other => panic!("{log}: {other:?}"),
        }
        assert_eq!(pos.next_seq, target, "a refused read does not move on");
    }

    // Past the damage, taking the damaged event's stored hash on trust.
    let all = host.journal().read(fork, 0, 1000).await.expect("unchecked");
    let mut pos = ChainPos::after(&all[target as usize]);
    let rest = host
        .journal()
        .read_checked(fork, &mut pos, 1000)
        .await
        .expect("the rest holds");
    assert_eq!(rest.len() as u64, next - target - 1);

    // A position that is not where the log stands is refused too.
    let mut wrong = ChainPos {
        next_seq: 1,
        prev_hash: [7; 32],
    };
    assert!(matches!(
        host.journal().read_checked(parent, &mut wrong, 10).await,
        Err(JournalError::ChainBroken { seq: 1, .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_shows_a_damaged_log_up_to_the_damage_then_fails_naming_its_seq() {
    let data = data_dir();
    let host = open_host(data.path());
    let log = counted(&host, "c", 3).await;
    let target = output_seq(&events(&host, log).await, "count = 2");
    host.close().await;
    drop(host);
    let whole = run_ok(logbook(data.path()).args(["log", "c"]));
    assert!(whole.stdout.lines().count() as u64 > target + 1);

    damage(data.path(), log, target, in_body(b"count"));
    for json in [false, true] {
        let mut cmd = logbook(data.path());
        cmd.args(["log", "c"]);
        if json {
            cmd.arg("--json");
        }
        let ran = run(&mut cmd);
        assert_eq!(ran.status.code(), Some(1), "{ran:?}");
        assert_eq!(
            ran.stdout.lines().count() as u64,
            target,
            "every event before the damage, and none from it: {}",
            ran.stdout
        );
        assert!(
            ran.stderr.contains(&format!(
                "breaks its hash chain at seq {target}: hash mismatch"
            )),
            "{}",
            ran.stderr
        );
        assert!(ran.stderr.contains("`logbook verify c`"), "{}", ran.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_does_not_wake_a_session_whose_newest_event_was_altered() {
    let data = data_dir();
    let host = open_host(data.path());
    let log = counted(&host, "c", 2).await;
    let head = host
        .journal()
        .info(log)
        .await
        .expect("info")
        .expect("log")
        .next_seq
        - 1;
    host.close().await;
    drop(host);

    // The last byte of its `at`: the body still decodes, the hash is off.
    damage(data.path(), log, head, |_| 7);
    let ran = run(logbook(data.path()).args(["run", "--session", "c", "-i", "inc"]));
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    assert!(
        ran.stderr
            .contains(&format!("breaks its hash chain at seq {head}")),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("`logbook verify c`"), "{}", ran.stderr);
    assert!(!ran.stdout.contains("count = 3"), "{}", ran.stdout);
    let host = open_host(data.path());
    assert_eq!(
        host.journal()
            .info(log)
            .await
            .expect("info")
            .expect("log")
            .next_seq,
        head + 1,
        "the input was not appended"
    );
}

/// Writes seq `from`'s stored row over seq `to`'s, as a bad disk or a bad
/// tool might. The host must be closed.
fn overwrite(data: &Path, log: LogId, from: u64, to: u64) {
    let db = redb::Database::open(data.join("journal.redb")).expect("open the file");
    let txn = db.begin_write().expect("write");
    {
        let mut table = txn.open_table(EVENTS).expect("events");
        let value = table
            .get((log.as_u128(), from))
            .expect("get")
            .expect("row")
            .value()
            .to_vec();
        table
            .insert((log.as_u128(), to), value.as_slice())
            .expect("insert");
    }
    txn.commit().expect("commit");
}

/// A log that does not start with `created` is damaged data: a fork of it
/// over HTTP answers 500 `internal`, saying which log, and not 400
/// `bad_request`, which would tell the client to fix a request that was fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_of_a_log_that_does_not_start_with_created_answers_500() {
    let data = data_dir();
    let host = open_host(data.path());
    let log = counted(&host, "c", 1).await;
    host.close().await;
    drop(host);

    // Seq 1 (an `input`) over seq 0 (its `created`).
    overwrite(data.path(), log, 1, 0);
    let host = open_host(data.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(logbook::server::run(
        listener,
        host.clone(),
        Tenants::from_config(&Config::default()).expect("no tenants"),
        ServerSettings::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let api = crate::server::Api::new(&base, None);

    let answer = api.post("/v1/sessions/c/fork", json!({})).await;
    crate::server::assert_error(&answer, 500, "internal");
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("log {log} is corrupt")) && message.contains("`created`"),
        "{message}"
    );

    let _ = stop.send(());
    server
        .await
        .expect("the server task")
        .expect("the server stops cleanly");
    host.close().await;
}
