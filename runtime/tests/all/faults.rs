//! Commits that fail or tear, injected under a real redb journal: nothing
//! acknowledged is lost, nothing is logged twice, and the session goes on.

use std::sync::Arc;

use logbook::journal::{
    ContentBlock, Fault, FaultyJournal, JournalConfig, JournalError, LogId, RedbJournal, Sender,
};
use logbook::session::{Host, HostOptions, SessionError};

use crate::fixtures::*;

fn faulty_host(dir: &std::path::Path) -> (Arc<Host>, Arc<FaultyJournal>) {
    let redb = RedbJournal::open(&dir.join("journal.redb"), JournalConfig::default())
        .expect("open journal");
    let faulty = FaultyJournal::wrap(redb);
    let host = Host::with_journal(faulty.clone(), dir, config(), HostOptions::default())
        .expect("open host");
    (host, faulty)
}

async fn inc(host: &Host, log: LogId) -> Result<u64, SessionError> {
    guard(host.input(
        log,
        Sender::Principal("test".into()),
        vec![ContentBlock::text("inc")],
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_writes_nothing_and_the_session_goes_on() {
    let dir = data_dir();
    let (host, faulty) = faulty_host(dir.path());
    let log = start(&host, "counter", "c").await.id();
    inc(&host, log).await.expect("first");
    inc(&host, log).await.expect("second");
    let head = host.journal().info(log).await.unwrap().unwrap().next_seq;

    faulty.inject(1, Fault::Fail);
    match inc(&host, log).await {
        Err(SessionError::Journal(JournalError::Storage(_))) => {}
        other => panic!("expected the storage error, got {other:?}"),
    }
    assert_eq!(
        host.journal().info(log).await.unwrap().unwrap().next_seq,
        head
    );

    inc(&host, log).await.expect("after the failure");
    assert_eq!(
        outputs(&events(&host, log).await),
        ["count = 1", "count = 2", "count = 3"]
    );
    assert_chain_holds(&host, log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_commit_is_in_the_log_once_and_is_not_retried() {
    let dir = data_dir();
    let (host, faulty) = faulty_host(dir.path());
    let log = start(&host, "counter", "c").await.id();
    inc(&host, log).await.expect("first");
    let head = host.journal().info(log).await.unwrap().unwrap().next_seq;

    // Written and durable, but the caller hears of a failure: the caller
    // must not be answered as if nothing happened (it would send again).
    faulty.inject(1, Fault::Tear);
    let seen = faulty.commits_seen();
    match inc(&host, log).await {
        Err(SessionError::Journal(JournalError::Storage(_))) => {}
        other => panic!("expected the storage error, got {other:?}"),
    }
    assert_eq!(faulty.commits_seen(), seen + 1, "the input was not retried");
    assert_eq!(
        host.journal().info(log).await.unwrap().unwrap().next_seq,
        head + 2,
        "the torn commit (input and output) is durable"
    );

    // The next actor replays the torn commit as part of the log.
    inc(&host, log).await.expect("after the tear");
    assert_eq!(
        outputs(&events(&host, log).await),
        ["count = 1", "count = 2", "count = 3"]
    );
    assert_chain_holds(&host, log).await;
}
