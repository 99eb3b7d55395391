//! The host runs on any journal: a counter session on a [`MemoryJournal`],
//! through inputs, snapshots, hibernation and waking.

use std::sync::Arc;

use logbook::journal::{Journal, MemoryJournal};
use logbook::session::{Activity, Host, HostOptions};

use crate::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_session_runs_hibernates_and_wakes_on_a_memory_journal() {
    let dir = data_dir();
    let journal: Arc<dyn Journal> = MemoryJournal::new();
    let mut config = config();
    // Small, so that going idle stores a snapshot the wake restores from.
    config.limits.snapshot_every = 2;
    let host = Host::with_journal(journal.clone(), dir.path(), config, HostOptions::default())
        .expect("open host");
    let session = start(&host, "counter", "c").await;
    let id = session.id();
    for _ in 0..3 {
        say(&session, "inc").await;
    }
    assert_eq!(settle(&session).await, Activity::Idle);
    assert_eq!(
        outputs(&events(&host, id).await),
        ["count = 1", "count = 2", "count = 3"]
    );
    assert_eq!(journal.resolve(TENANT, "c").await.unwrap(), Some(id));
    assert!(
        !journal.snapshots(id).await.unwrap().is_empty(),
        "the idle session stored a snapshot in the memory journal"
    );

    let before = journal.info(id).await.unwrap().unwrap().next_seq;
    host.hibernate(id);
    drop(session);
    let woken = host.session(id).await.expect("wake");
    assert_eq!(settle(&woken).await, Activity::Idle);
    assert_eq!(
        journal.info(id).await.unwrap().unwrap().next_seq,
        before,
        "waking a session appends nothing"
    );
    say(&woken, "inc").await;
    say(&woken, "get").await;
    assert_eq!(settle(&woken).await, Activity::Idle);
    let seen = outputs(&events(&host, id).await);
    assert_eq!(seen.last().map(String::as_str), Some("count = 4"));
    assert_chain_holds(&host, id).await;
    host.close().await;
}
