//! `fs.*` workspaces are rebuilt from the log: a worker whose directory is
//! empty (a fresh one, after a failover) or stale sees every file the log
//! wrote; a fork sees its parent's files as of the fork point; the marker
//! beside a workspace makes the next rebuild read only what is new, and a
//! marker that cannot be right makes it replay the whole log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use logbook::config::Policy;
use logbook::journal::{EventBody, LogId, RequestedEffect};
use logbook::session::{ForkOptions, Host, Session};

use crate::fixtures::*;

/// A host whose `fs.write` needs no approval.
fn writing_host(data: &Path) -> Arc<Host> {
    let mut config = config();
    config.tools.policy.insert("fs.write".into(), Policy::Allow);
    open_host_with(data, config)
}

fn write(path: &str, content: &str) -> String {
    format!(r#"/tool fs.write {{"path":"{path}","content":"{content}"}}"#)
}

fn read(path: &str) -> String {
    format!(r#"/tool fs.read {{"path":"{path}"}}"#)
}

/// Say `text` and wait; the session's last output.
async fn ask(host: &Host, session: &Session, text: &str) -> String {
    say(session, text).await;
    settle(session).await;
    outputs(&events(host, session.id()).await)
        .pop()
        .expect("an answer")
}

/// Hibernate `id` and wake it again: a new actor, which rebuilds.
async fn reactivate(host: &Host, id: LogId) -> Session {
    host.hibernate(id);
    host.session(id).await.expect("wake")
}

fn marker_file(host: &Host, id: LogId) -> PathBuf {
    host.workspace_dir(id).with_file_name(format!("{id}.seq"))
}

/// The marker's `(seq, open_from)`.
fn marker(host: &Host, id: LogId) -> (u64, u64) {
    let text = std::fs::read_to_string(marker_file(host, id)).expect("a marker");
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let field = |name: &str| {
        value[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {text}"))
    };
    (field("seq"), field("open_from"))
}

/// The seqs of the `requested` and `completed` events of the last call of
/// `tool` in the log.
async fn last_call(host: &Host, id: LogId, tool: &str) -> (u64, u64) {
    let log = events(host, id).await;
    let (requested, key) = log
        .iter()
        .rev()
        .find_map(|e| match &e.event.body {
            EventBody::Requested {
                key,
                effect: RequestedEffect::Tool(call),
            } if call.name == tool => Some((e.event.seq, key.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no call of {tool}"));
    let completed = log
        .iter()
        .find(|e| {
            e.event.seq > requested
                && matches!(&e.event.body, EventBody::Completed { key: k, .. } if *k == key)
        })
        .expect("the call completed")
        .event
        .seq;
    (requested, completed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_the_files_rebuilds_them_from_the_log() {
    let dir = data_dir();
    let host = writing_host(dir.path());
    let session = start(&host, "assistant", "a").await;
    let id = session.id();
    let wrote = ask(&host, &session, &write("a.txt", "x")).await;
    assert_eq!(wrote, "tool fs.write returned: wrote 1 bytes to a.txt");
    ask(&host, &session, &write("sub/b.txt", "first")).await;
    ask(&host, &session, &write("sub/b.txt", "second")).await;
    drop(session);

    // As on a worker that never ran this session: no directory, no marker.
    host.hibernate(id);
    std::fs::remove_dir_all(dir.path().join("workspaces")).expect("remove workspaces");
    let woken = host.session(id).await.expect("wake");
    assert_eq!(
        ask(&host, &woken, &read("a.txt")).await,
        "tool fs.read returned: x"
    );
    assert_eq!(
        ask(&host, &woken, &read("sub/b.txt")).await,
        "tool fs.read returned: second",
        "the later write wins"
    );
    drop(woken);

    // The directory lost but its marker kept: the marker no longer speaks
    // for any file, so the whole log is replayed.
    host.hibernate(id);
    std::fs::remove_dir_all(host.workspace_dir(id)).expect("remove the workspace");
    assert!(marker_file(&host, id).exists());
    let woken = host.session(id).await.expect("wake");
    assert_eq!(
        ask(&host, &woken, &read("sub/b.txt")).await,
        "tool fs.read returned: second"
    );
    assert_chain_holds(&host, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_starts_with_its_parents_files_and_keeps_its_own() {
    let dir = data_dir();
    let host = writing_host(dir.path());
    let parent = start(&host, "assistant", "parent").await;
    let parent_id = parent.id();
    ask(&host, &parent, &write("a.txt", "parent")).await;
    let fork_id = host
        .fork(TENANT, "parent", ForkOptions::default())
        .await
        .expect("fork");
    // A write of the parent after the fork point is not the fork's.
    ask(&host, &parent, &write("later.txt", "parent only")).await;

    let fork = host.session(fork_id).await.expect("activate the fork");
    assert_eq!(
        ask(&host, &fork, &read("a.txt")).await,
        "tool fs.read returned: parent"
    );
    let missing = ask(&host, &fork, &read("later.txt")).await;
    assert!(missing.contains("cannot read"), "{missing}");
    ask(&host, &fork, &write("a.txt", "fork")).await;
    assert_eq!(
        ask(&host, &fork, &read("a.txt")).await,
        "tool fs.read returned: fork"
    );

    assert_eq!(
        std::fs::read_to_string(host.workspace_dir(parent_id).join("a.txt")).unwrap(),
        "parent"
    );
    assert_eq!(
        ask(&host, &parent, &read("a.txt")).await,
        "tool fs.read returned: parent"
    );
    // Rebuilt from nothing, each log still gets its own content.
    drop((parent, fork));
    host.hibernate(parent_id);
    host.hibernate(fork_id);
    std::fs::remove_dir_all(dir.path().join("workspaces")).expect("remove workspaces");
    let fork = host.session(fork_id).await.expect("wake the fork");
    assert_eq!(
        ask(&host, &fork, &read("a.txt")).await,
        "tool fs.read returned: fork"
    );
    let parent = host.session(parent_id).await.expect("wake the parent");
    assert_eq!(
        ask(&host, &parent, &read("a.txt")).await,
        "tool fs.read returned: parent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marker_makes_the_next_rebuild_read_only_new_events() {
    let dir = data_dir();
    let host = writing_host(dir.path());
    let session = start(&host, "assistant", "a").await;
    let id = session.id();
    assert!(!marker_file(&host, id).exists(), "no fs call yet");

    // First actor: its first call is a write, still open at its head.
    ask(&host, &session, &write("a.txt", "x")).await;
    let (requested, completed) = last_call(&host, id, "fs.write").await;
    let (seq, open_from) = marker(&host, id);
    assert!(
        requested < seq && seq <= completed,
        "{seq}: {requested}..{completed}"
    );
    assert_eq!(open_from, requested, "the open write is read again");
    drop(session);

    // Second actor: its first call is a read; the write is before it.
    let session = reactivate(&host, id).await;
    ask(&host, &session, &read("a.txt")).await;
    let (requested, completed) = last_call(&host, id, "fs.read").await;
    let (seq, open_from) = marker(&host, id);
    assert!(
        requested < seq && seq <= completed,
        "{seq}: {requested}..{completed}"
    );
    assert_eq!(open_from, seq, "no write was open");
    drop(session);

    // Third actor: nothing before the marker is read again, so a change on
    // disk that the log does not know survives (the marker is trusted, and
    // only the host can write it).
    std::fs::write(host.workspace_dir(id).join("a.txt"), "local").unwrap();
    let session = reactivate(&host, id).await;
    assert_eq!(
        ask(&host, &session, &read("a.txt")).await,
        "tool fs.read returned: local"
    );
    let (next, _) = marker(&host, id);
    assert!(next > seq, "the marker moved on: {next} after {seq}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_impossible_marker_replays_the_whole_log() {
    let dir = data_dir();
    let host = writing_host(dir.path());
    let session = start(&host, "assistant", "a").await;
    let id = session.id();
    ask(&host, &session, &write("a.txt", "x")).await;
    ask(&host, &session, &read("a.txt")).await;
    drop(session);
    let head = host.journal().info(id).await.unwrap().unwrap().next_seq;

    let forged = [
        "garbage".to_string(),
        r#"{"seq":3}"#.to_string(),
        format!(r#"{{"seq":{},"open_from":{}}}"#, head + 1000, head + 1000),
        r#"{"seq":2,"open_from":5}"#.to_string(),
    ];
    for text in forged {
        // A stale file under a marker that would skip the write if trusted.
        std::fs::write(host.workspace_dir(id).join("a.txt"), "stale").unwrap();
        std::fs::write(marker_file(&host, id), &text).unwrap();
        let session = reactivate(&host, id).await;
        assert_eq!(
            ask(&host, &session, &read("a.txt")).await,
            "tool fs.read returned: x",
            "marker {text:?}"
        );
        let (requested, _) = last_call(&host, id, "fs.read").await;
        let (seq, _) = marker(&host, id);
        assert_eq!(seq, requested + 1, "a sound marker replaces {text:?}");
        drop(session);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_cannot_be_replayed_fails_the_call_until_it_can() {
    let dir = data_dir();
    let host = writing_host(dir.path());
    let session = start(&host, "assistant", "a").await;
    let id = session.id();
    ask(&host, &session, &write("sub/b.txt", "b")).await;
    drop(session);

    // A fresh worker whose directory has a file where the log needs one.
    host.hibernate(id);
    std::fs::remove_dir_all(dir.path().join("workspaces")).expect("remove workspaces");
    std::fs::create_dir_all(host.workspace_dir(id)).unwrap();
    std::fs::write(host.workspace_dir(id).join("sub"), "in the way").unwrap();
    let session = host.session(id).await.expect("wake");
    let refused = ask(&host, &session, &read("sub/b.txt")).await;
    assert!(
        refused.contains("the workspace cannot be rebuilt from the log")
            && refused.contains("cannot write \"sub/b.txt\""),
        "{refused}"
    );
    assert!(
        !marker_file(&host, id).exists(),
        "no marker for a failed rebuild"
    );

    // The same actor tries again at its next call.
    std::fs::remove_file(host.workspace_dir(id).join("sub")).unwrap();
    assert_eq!(
        ask(&host, &session, &read("sub/b.txt")).await,
        "tool fs.read returned: b"
    );
    assert!(marker_file(&host, id).exists());
}
