//! The journal's key index (session::keys): a long log's closed keys live
//! there, not in the session or its snapshots, and a retired key the guest
//! wants again is still never performed again, whether the session holds
//! the key or only the index does, before and after a restart.

use logbook::config::Config;
use logbook::journal::{EventBody, LogId};

use crate::fixtures::*;

/// More inputs than a session holds closed keys of before it moves them
/// to the index (`INDEX_BATCH`, 1024): each closes one `output-N` key.
const INPUTS: usize = 1200;

fn without_snapshots() -> Config {
    let mut config = config();
    config.limits.snapshot_every = 0;
    config
}

/// How many `output` events of `log` have `key`.
async fn outputs_of(host: &logbook::session::Host, log: LogId, key: &str) -> usize {
    events(host, log)
        .await
        .iter()
        .filter(|e| matches!(&e.event.body, EventBody::Output { key: k, .. } if k == key))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_logs_closed_keys_live_in_the_index_and_are_never_performed_again() {
    let data = data_dir();
    let host = open_host_with(data.path(), without_snapshots());
    let session = start(&host, "fixture_looper", "long").await;
    let log = session.id();
    let mut first = None;
    for i in 0..INPUTS {
        let seq = say(&session, &format!("n{i}")).await;
        first.get_or_insert(seq);
    }
    settle(&session).await;
    let old = format!("output-{}", first.expect("an input"));

    // The index holds the old keys, up to a mark past them.
    let indexed = host
        .journal()
        .indexed_keys(log, &[old.as_str()])
        .await
        .expect("read the index");
    assert!(indexed.mark > 1024, "mark {}", indexed.mark);
    assert_eq!(indexed.found.len(), 1, "{old} is indexed");

    // A retired key wanted again is not performed again; a new one is.
    say(&session, &format!("again {old}")).await;
    say(&session, "again brand-new").await;
    settle(&session).await;
    assert_eq!(outputs_of(&host, log, &old).await, 1);
    assert_eq!(outputs_of(&host, log, "brand-new").await, 1);

    // A snapshot holds only the keys the index lacks, a few hundred at most
    // here: 1,200 keys of 12 bytes or more would not fit in 12 KiB.
    host.snapshot_now(log).await.expect("snapshot");
    let snapshots = host.journal().snapshots(log).await.expect("snapshots");
    let (_, _, record) = snapshots.last().expect("a snapshot");
    assert!(
        record.len() < 12 * 1024,
        "a snapshot of {} bytes holds more than the unindexed keys",
        record.len()
    );

    // After a restart (a full replay that leaves the old keys to the index,
    // or the snapshot), the same holds.
    drop(session);
    drop(host);
    for snapshots in [false, true] {
        let mut config = without_snapshots();
        if snapshots {
            config.limits.snapshot_every = 100;
        }
        let host = reopen_host(data.path(), config).await;
        let session = host.session(log).await.expect("wake");
        say(&session, &format!("again {old}")).await;
        say(&session, "after").await;
        settle(&session).await;
        assert_eq!(
            outputs_of(&host, log, &old).await,
            1,
            "snapshots: {snapshots}"
        );
        assert!(outputs(&events(&host, log).await).contains(&"ok: after".to_string()));
        assert_chain_holds(&host, log).await;
        drop(session);
        drop(host);
    }
}
