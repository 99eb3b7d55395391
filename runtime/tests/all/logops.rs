//! Log operations (issue 5): fork, export and import, verify. Real redb files,
//! real guests, and the `logbook` binary where the command line is the point.

use std::sync::Arc;

use logbook::journal::tables::{self, EVENTS};
use logbook::journal::{EventBody, LogId, LogPos};
use logbook::session::{ForkOptions, Host};
use redb::{ReadableDatabase, ReadableTable};

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

/// Rows the `events` table holds under a log's own id (the host must be closed).
fn own_rows(data: &std::path::Path, log: LogId) -> Vec<u64> {
    let db = redb::Database::open(data.join("journal.redb")).expect("open the file");
    let txn = db.begin_read().expect("read");
    let events = txn.open_table(EVENTS).expect("events");
    events
        .range((log.as_u128(), 0)..=(log.as_u128(), u64::MAX))
        .expect("range")
        .map(|e| e.expect("row").0.value().1)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_shares_the_prefix_without_copying_and_goes_its_own_way() {
    let data = data_dir();
    let host = open_host(data.path());
    let parent = counted(&host, "c", 3).await;
    let before = events(&host, parent).await;
    // Fork right after the second `count = 2` output.
    let at = before
        .iter()
        .find(|e| {
            matches!(&e.event.body, EventBody::Output { content, .. }
            if logbook::journal::plain_text(content) == "count = 2")
        })
        .expect("counted to two")
        .event
        .seq;
    let fork = guard(host.fork(
        TENANT,
        "c",
        ForkOptions {
            at: Some(at),
            name: Some("c2".into()),
            ..ForkOptions::default()
        },
    ))
    .await
    .expect("fork");

    let seen = events(&host, fork).await;
    assert_eq!(
        &seen[..=at as usize],
        &before[..=at as usize],
        "the shared prefix"
    );
    let EventBody::Created(created) = &seen[at as usize + 1].event.body else {
        panic!("the fork's first own event is `created`: {seen:?}");
    };
    assert_eq!(
        created.parent,
        Some(LogPos {
            log: parent.to_string(),
            seq: at
        })
    );
    assert_chain_holds(&host, fork).await;

    // Both branches count on from where they stand.
    let branch = host.session(fork).await.expect("activate the fork");
    say(&branch, "inc").await;
    settle(&branch).await;
    let trunk = host.session(parent).await.expect("the parent");
    say(&trunk, "inc").await;
    settle(&trunk).await;
    assert_eq!(
        outputs(&events(&host, fork).await)
            .last()
            .map(String::as_str),
        Some("count = 3")
    );
    assert_eq!(
        outputs(&events(&host, parent).await)
            .last()
            .map(String::as_str),
        Some("count = 4")
    );
    assert_chain_holds(&host, fork).await;
    assert_chain_holds(&host, parent).await;
    let fork_len = host
        .journal()
        .info(fork)
        .await
        .expect("info")
        .expect("fork")
        .next_seq;

    // Nothing of the parent was copied: the fork stores only its own events.
    host.close().await;
    drop((branch, trunk, host));
    let rows = own_rows(data.path(), fork);
    assert_eq!(rows.first(), Some(&(at + 1)));
    assert_eq!(rows.last(), Some(&(fork_len - 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_at_a_seq_past_the_head_or_of_an_unknown_session_is_refused() {
    let data = data_dir();
    let host = open_host(data.path());
    counted(&host, "c", 1).await;
    let past = ForkOptions {
        at: Some(1000),
        ..ForkOptions::default()
    };
    let err = host.fork(TENANT, "c", past).await.expect_err("no seq 1000");
    assert!(err.to_string().contains("no seq 1000"), "{err}");
    assert!(
        host.fork(TENANT, "nope", ForkOptions::default())
            .await
            .is_err()
    );
    let bad = ForkOptions {
        config: Some(serde_json::json!(3)),
        ..ForkOptions::default()
    };
    assert!(host.fork(TENANT, "c", bad).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_export_gives_the_same_bytes_and_the_import_runs() {
    let data = data_dir();
    let host = open_host(data.path());
    counted(&host, "c", 2).await;
    let fork = guard(host.fork(TENANT, "c", ForkOptions::default()))
        .await
        .expect("fork");
    let branch = host.session(fork).await.expect("fork");
    say(&branch, "inc").await;
    settle(&branch).await;
    let mut file = Vec::new();
    let n = host.export(fork, &mut file).await.expect("export");
    assert_eq!(
        n as usize,
        events(&host, fork).await.len(),
        "ancestry included"
    );
    let text = String::from_utf8(file.clone()).expect("utf-8");
    assert_eq!(text.lines().count() as u64, n);

    // Elsewhere: counter is a built-in example, which the import stores
    // (another guest is refused until it is added: cli.rs).
    let other = data_dir();
    let there = open_host(other.path());
    assert!(there.journal().guests(TENANT).await.unwrap().is_empty());
    let copy = there
        .import(TENANT, &mut file.as_slice(), Some("copy"))
        .await
        .expect("import");
    assert_ne!(copy, fork);
    assert_chain_holds(&there, copy).await;
    let mut again = Vec::new();
    there.export(copy, &mut again).await.expect("export again");
    assert_eq!(again, file, "export, import, export gives the same bytes");

    // The imported session carries on from the recorded state.
    let session = there.session(copy).await.expect("activate the import");
    say(&session, "inc").await;
    settle(&session).await;
    assert_eq!(
        outputs(&events(&there, copy).await)
            .last()
            .map(String::as_str),
        Some("count = 4")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_names_the_first_bad_line_of_an_altered_reordered_or_cut_file() {
    let data = data_dir();
    let host = open_host(data.path());
    let log = counted(&host, "c", 3).await;
    let mut file = Vec::new();
    host.export(log, &mut file).await.expect("export");
    let text = String::from_utf8(file).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    let refuse = async |bad: String| -> String {
        host.import(TENANT, &mut bad.as_bytes(), None)
            .await
            .expect_err("refused")
            .to_string()
    };

    let altered = text.replacen("count = 2", "count = 9", 1);
    let line = lines
        .iter()
        .position(|l| l.contains("count = 2"))
        .expect("line")
        + 1;
    let why = refuse(altered).await;
    assert!(
        why.contains(&format!("line {line}:")) && why.contains("hash mismatch"),
        "{why}"
    );

    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    let why = refuse(swapped.join("\n") + "\n").await;
    assert!(why.contains("line 3:") && why.contains("seq gap"), "{why}");

    let cut = &text[..text.len() - 10];
    let why = refuse(cut.to_owned()).await;
    assert!(
        why.contains(&format!("line {}:", lines.len())) && why.contains("cut short"),
        "{why}"
    );
    assert_eq!(
        host.journal().count(TENANT).await.expect("count").logs,
        1,
        "nothing imported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_cli_names_the_altered_seq_and_fails() {
    let data = data_dir();
    let host = open_host(data.path());
    let log = counted(&host, "c", 2).await;
    counted(&host, "d", 1).await;
    let target = events(&host, log)
        .await
        .iter()
        .find(|e| matches!(&e.event.body, EventBody::Output { .. }))
        .expect("an output")
        .event
        .seq;
    host.close().await;
    drop(host);

    let ok = run_ok(logbook(data.path()).args(["verify", "--all"]));
    assert_eq!(ok.stdout.matches(": ok,").count(), 2, "{}", ok.stdout);

    // Flip one byte of a stored body, as a bad disk would.
    {
        let db = redb::Database::open(data.path().join("journal.redb")).expect("open");
        let txn = db.begin_write().expect("write");
        {
            let mut table = txn.open_table(EVENTS).expect("events");
            let key = (log.as_u128(), target);
            let mut value = table.get(key).expect("get").expect("row").value().to_vec();
            let at = tables::EVENT_HEADER_LEN
                + value[tables::EVENT_HEADER_LEN..]
                    .windows(5)
                    .position(|w| w == b"count")
                    .expect("the output text");
            value[at] = b'C';
            table.insert(key, value.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let bad = run(logbook(data.path()).args(["verify", "c"]));
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(
        bad.stdout
            .contains(&format!("BAD at seq {target}: hash mismatch")),
        "{}",
        bad.stdout
    );
    let all = run(logbook(data.path()).args(["verify", "--all"]));
    assert_eq!(all.status.code(), Some(1));
    assert_eq!(all.stdout.matches(": ok,").count(), 1, "{}", all.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_export_and_import_work_from_the_command_line() {
    let data = data_dir();
    let host = open_host(data.path());
    counted(&host, "c", 2).await;
    host.close().await;
    drop(host);
    let ran = run_ok(logbook(data.path()).args(["fork", "c", "--at", "2", "--as", "c2"]));
    assert!(ran.stdout.starts_with("c2 "), "{}", ran.stdout);
    let out = data.path().join("c2.jsonl");
    run_ok(logbook(data.path()).args(["export", "c2", "-o"]).arg(&out));
    let exported = std::fs::read_to_string(&out).expect("the export");
    assert_eq!(exported.lines().count(), 4, "{exported}");
    let ran = run_ok(
        logbook(data.path())
            .args(["import"])
            .arg(&out)
            .args(["--as", "c3"]),
    );
    assert!(ran.stdout.starts_with("c3 "), "{}", ran.stdout);
    let again = run_ok(logbook(data.path()).args(["export", "c3"]));
    assert_eq!(again.stdout, exported);
    run_ok(logbook(data.path()).args(["verify", "--all"]));
}

/// The test configuration, with a snapshot every `every` events.
fn snapshotting(every: u64) -> logbook::config::Config {
    let mut config = config();
    config.limits.snapshot_every = every;
    config
}

/// The last output of a session after one more input.
async fn answer_to(host: &Arc<Host>, log: LogId, text: &str) -> String {
    let session = host.session(log).await.expect("activate");
    say(&session, text).await;
    settle(&session).await;
    outputs(&events(host, log).await).pop().expect("an output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_snapshotted_and_wakes_from_its_snapshot() {
    let data = data_dir();
    let host = open_host_with(data.path(), snapshotting(5));
    let log = counted(&host, "c", 10).await;
    let snapshots = host.journal().snapshots(log).await.expect("snapshots");
    assert!(
        !snapshots.is_empty(),
        "an idle session past 5 events is snapshotted"
    );
    let (seq, digest, record) = snapshots.last().cloned().expect("one");
    assert!(seq >= 15, "the newest is near the head: {seq}");
    assert!(
        host.verify_snapshots(log)
            .await
            .expect("verify")
            .iter()
            .all(|c| c.problem.is_none())
    );

    // Wake from the snapshot: the count carries on.
    host.hibernate(log);
    assert_eq!(answer_to(&host, log, "get").await, "count = 10");

    // Prove that activation used it: a record of another state, put in its
    // place, is what the guest wakes with (and verify calls it out).
    let other = counted(&host, "d", 3).await;
    host.hibernate(other);
    let d_seq = host
        .snapshot_now(other)
        .await
        .expect("snapshot")
        .expect("taken");
    let (_, _, d_record) = host
        .journal()
        .snapshots(other)
        .await
        .expect("snapshots")
        .into_iter()
        .find(|(s, _, _)| *s == d_seq)
        .expect("d's snapshot");
    host.hibernate(log);
    let head = host
        .journal()
        .info(log)
        .await
        .expect("info")
        .expect("log")
        .next_seq
        - 1;
    host.journal()
        .put_snapshot(log, head, &digest, &d_record)
        .await
        .expect("put");
    assert_eq!(answer_to(&host, log, "get").await, "count = 3");
    let bad: Vec<_> = host
        .verify_snapshots(log)
        .await
        .expect("verify")
        .into_iter()
        .filter(|c| c.problem.is_some())
        .collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].seq, head);
    assert!(!record.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_foreign_snapshot_falls_back_to_a_full_replay() {
    let data = data_dir();
    let host = open_host_with(data.path(), snapshotting(5));
    let log = counted(&host, "c", 4).await;
    host.hibernate(log);
    let seq = host
        .snapshot_now(log)
        .await
        .expect("snapshot")
        .expect("taken");
    let (_, digest, mut record) = host
        .journal()
        .snapshots(log)
        .await
        .expect("list")
        .pop()
        .expect("one");
    // A flipped byte: the checksum catches it, and the log is replayed whole.
    let last = record.len() - 1;
    record[last] ^= 1;
    host.journal()
        .put_snapshot(log, seq, &digest, &record)
        .await
        .expect("put");
    let checks = host.verify_snapshots(log).await.expect("verify");
    assert!(
        checks
            .iter()
            .any(|c| c.seq == seq && c.problem.as_deref().is_some_and(|p| p.contains("checksum"))),
        "{checks:?}"
    );
    assert_eq!(answer_to(&host, log, "inc").await, "count = 5");
    // Idle again after the full replay: a good snapshot replaced the bad one.
    let checks = host.verify_snapshots(log).await.expect("verify");
    assert_eq!(checks.len(), 1, "only the newest is kept: {checks:?}");
    assert!(
        checks[0].seq > seq && checks[0].problem.is_none(),
        "{checks:?}"
    );

    // A snapshot by another guest is not this guest's state: never restored.
    host.hibernate(log);
    let head = host
        .journal()
        .info(log)
        .await
        .expect("info")
        .expect("log")
        .next_seq
        - 1;
    let good = host.journal().snapshots(log).await.expect("list");
    let (_, _, good_record) = good
        .iter()
        .find(|(s, _, _)| *s != seq)
        .cloned()
        .unwrap_or_else(|| panic!("a good snapshot besides the corrupted one: {good:?}"));
    host.journal()
        .put_snapshot(log, head + 100, "sha256:another-guest", &good_record)
        .await
        .expect("put");
    assert_eq!(answer_to(&host, log, "inc").await, "count = 6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_snapshots_from_the_command_line() {
    let data = data_dir();
    let host = open_host_with(data.path(), snapshotting(5));
    let log = counted(&host, "c", 4).await;
    host.hibernate(log);
    host.snapshot_now(log)
        .await
        .expect("snapshot")
        .expect("taken");
    host.close().await;
    drop(host);
    let ran = run_ok(logbook(data.path()).args(["verify", "c", "--snapshots"]));
    assert!(ran.stdout.contains("snapshot at seq"), "{}", ran.stdout);
    assert!(!ran.stdout.contains("BAD"), "{}", ran.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_moves_the_name_to_a_new_log_that_starts_from_the_summary() {
    let data = data_dir();
    let host = open_host(data.path());
    let old = counted(&host, "c", 3).await;
    let session = host.session(old).await.expect("live");
    say(&session, "compact").await;
    settle(&session).await;

    let old_events = events(&host, old).await;
    let last = old_events.last().expect("events");
    let EventBody::Continued { log } = &last.event.body else {
        panic!("the old log ends with `continued`: {:?}", last.event.body);
    };
    let new = host.resolve(TENANT, "c").await.expect("the name").id;
    assert_eq!(log, &new.to_string(), "the name moved to the new log");
    let old_info = host.journal().info(old).await.expect("info").expect("old");
    assert_eq!(old_info.status.as_str(), "finished");
    assert_eq!(old_info.name, None);
    let fresh = events(&host, new).await;
    assert_eq!(fresh.len(), 1, "the new log shares no events: {fresh:?}");
    let EventBody::Created(created) = &fresh[0].event.body else {
        panic!("seq 0 is `created`");
    };
    assert_eq!(created.summary.as_deref(), Some("count = 3"));
    assert_eq!(
        created.compacted_from,
        Some(LogPos {
            log: old.to_string(),
            seq: last.event.seq
        })
    );
    assert_chain_holds(&host, old).await;
    assert_chain_holds(&host, new).await;

    // The old log takes no more input; the name carries on from the summary.
    let err = session
        .input(
            logbook::journal::Sender::Principal("test".into()),
            vec![logbook::journal::ContentBlock::text("inc")],
        )
        .await
        .expect_err("the old log has ended");
    assert!(err.to_string().contains("continued"), "{err}");
    assert_eq!(answer_to(&host, new, "inc").await, "count = 4");
    assert_eq!(
        host.compaction_chain(new).await.expect("chain"),
        vec![old, new]
    );

    host.close().await;
    drop((session, host));
    let all = run_ok(logbook(data.path()).args(["log", "c", "--all"]));
    assert_eq!(all.stdout.matches("== log ").count(), 2, "{}", all.stdout);
    assert!(all.stdout.contains("continued"), "{}", all.stdout);
    let one = run_ok(logbook(data.path()).args(["log", "c"]));
    assert!(!one.stdout.contains("continued"), "{}", one.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_check_agrees_with_a_compatible_guest_and_names_the_first_difference() {
    let data = data_dir();
    let host = open_host(data.path());
    let log = counted(&host, "c", 2).await;
    let v1 = host.guest(TENANT, "counter").await.expect("v1");
    let v2 = host
        .add_guest(TENANT, "counter-v2", &guest_bytes("counter_v2"))
        .await
        .expect("v2");
    for guest in [&v1, &v2] {
        let report = guard(host.replay_check(TENANT, "c", guest.clone()))
            .await
            .expect("replay");
        assert_eq!(report.difference, None, "{} agrees", guest.name);
        assert_eq!(report.events, events(&host, log).await.len() as u64);
    }

    // Version 1 did not know `dec`; version 2 would have answered otherwise.
    assert_eq!(answer_to(&host, log, "dec").await, "unknown command: dec");
    let seq = events(&host, log).await.last().expect("events").event.seq;
    let report = guard(host.replay_check(TENANT, "c", v2.clone()))
        .await
        .expect("replay");
    let d = report.difference.expect("a difference");
    assert_eq!(d.seq, seq);
    assert!(d.log.contains("unknown command: dec"), "{d:?}");
    assert!(d.guest.contains("count = 1"), "{d:?}");
    let same = guard(host.replay_check(TENANT, "c", v1))
        .await
        .expect("replay");
    assert_eq!(same.difference, None);

    host.close().await;
    drop(host);
    let differs = run(logbook(data.path()).args(["replay", "c", "--guest", "counter-v2"]));
    assert_eq!(differs.status.code(), Some(1), "{differs:?}");
    assert!(
        differs.stdout.contains(&format!("at seq {seq}")),
        "{}",
        differs.stdout
    );
    assert!(differs.stdout.contains("- log:") && differs.stdout.contains("+ guest:"));
    run_ok(logbook(data.path()).args(["replay", "c", "--guest", "counter"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_moves_a_session_to_the_new_guest_which_refolds_the_log() {
    let data = data_dir();
    let host = open_host(data.path());
    let log = counted(&host, "c", 3).await;
    let v2 = host
        .add_guest(TENANT, "counter-v2", &guest_bytes("counter_v2"))
        .await
        .expect("v2");
    let seq = guard(host.upgrade(TENANT, "c", v2.clone()))
        .await
        .expect("upgrade");
    let all = events(&host, log).await;
    let EventBody::GuestChanged { to, .. } = &all[seq as usize].event.body else {
        panic!("guest-changed at {seq}: {all:?}");
    };
    assert_eq!(to, &v2);
    assert_eq!(
        host.journal()
            .info(log)
            .await
            .expect("info")
            .expect("log")
            .guest,
        v2
    );
    // The count came through the re-fold; `dec` is new in version 2.
    assert_eq!(answer_to(&host, log, "dec").await, "count = 2");
    assert_chain_holds(&host, log).await;
    assert!(
        guard(host.upgrade(TENANT, "c", v2)).await.is_err(),
        "on v2 already"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_unparks_a_session_whose_guest_failed() {
    let data = data_dir();
    let host = open_host(data.path());
    let session = start(&host, "fixture_panic", "p").await;
    say(&session, "hi").await;
    let _ = session
        .input(
            logbook::journal::Sender::Principal("test".into()),
            vec![logbook::journal::ContentBlock::text("panic")],
        )
        .await;
    settle(&session).await;
    let log = session.id();
    assert_eq!(
        host.journal()
            .info(log)
            .await
            .expect("info")
            .expect("log")
            .status
            .as_str(),
        "failed"
    );
    let counter = host
        .add_guest(TENANT, "counter", &guest_bytes("counter"))
        .await
        .expect("counter");
    guard(host.upgrade(TENANT, "p", counter))
        .await
        .expect("upgrade");
    assert_ne!(
        host.journal()
            .info(log)
            .await
            .expect("info")
            .expect("log")
            .status
            .as_str(),
        "failed"
    );
    assert_eq!(answer_to(&host, log, "inc").await, "count = 1");
}

/// The SDK's `ChatAgent` compacts by itself when a turn leaves the
/// conversation over its context budget: the turn's answer stays in the old
/// log, the name moves to a log that starts from a summary, and the next
/// input's model request carries that summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_agent_compacts_itself_past_its_context_budget() {
    let data = data_dir();
    let host = open_host(data.path());
    let guest = host
        .add_guest(TENANT, "assistant", &guest_bytes("assistant"))
        .await
        .expect("add guest");
    let old = host
        .create_session(
            TENANT,
            Some("a"),
            guest,
            serde_json::json!({"context_budget": 20}),
        )
        .await
        .expect("create");
    let session = host.session(old).await.expect("live");
    say(
        &session,
        "a message long enough to go over a budget of twenty",
    )
    .await;
    settle(&session).await;

    let old_events = events(&host, old).await;
    assert_eq!(
        outputs(&old_events),
        ["echo: a message long enough to go over a budget of twenty"],
        "the turn's answer is said in the old log"
    );
    let Some(EventBody::Continued { log }) = old_events.last().map(|e| &e.event.body) else {
        panic!("the old log ends with `continued`: {old_events:?}");
    };
    let new = host.resolve(TENANT, "a").await.expect("the name").id;
    assert_eq!(log, &new.to_string());
    let fresh = events(&host, new).await;
    let EventBody::Created(created) = &fresh[0].event.body else {
        panic!("seq 0 is `created`");
    };
    let summary = created.summary.clone().expect("a summary");
    assert!(summary.contains("budget of twenty"), "{summary}");

    let next = host.session(new).await.expect("the new log wakes");
    say(&next, "and now?").await;
    settle(&next).await;
    assert_eq!(outputs(&events(&host, new).await), ["echo: and now?"]);
    assert_chain_holds(&host, old).await;
    assert_chain_holds(&host, new).await;
}
