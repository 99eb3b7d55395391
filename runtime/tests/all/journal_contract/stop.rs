//! The contract for `stopped` and `resumed` (session::stop): the stopped
//! flag and status follow the events, a stopped log's timers and open calls
//! are nobody's to run, a fork starts unstopped, and an import keeps it.

use std::sync::Arc;

use logbook::journal::*;

use super::{create, fork_of, tool_request};
use crate::journal::T0;

fn stopped() -> EventBody {
    EventBody::Stopped {
        by: "logbook".into(),
        reason: "limit session_effects_per_minute = 3: 3 events in the last minute".into(),
    }
}

pub(crate) async fn a_stopped_log_is_stopped_until_resumed(journal: Arc<dyn Journal>) {
    let id = create(&*journal, "t", None).await;
    let sleep = EventBody::Requested {
        key: "nap".into(),
        effect: RequestedEffect::Sleep { until: T0 + 1 },
    };
    journal
        .commit(Commit::append(
            id,
            1,
            vec![(T0, sleep), (T0, tool_request("call")), (T0, stopped())],
        ))
        .await
        .unwrap();
    let info = journal.info(id).await.unwrap().unwrap();
    assert!(info.stopped);
    assert_eq!(info.status, LogStatus::Stopped);
    assert_eq!(info.open.len(), 2, "a stop ends nothing");
    assert!(
        journal.timers(u64::MAX, 10).await.unwrap().is_empty(),
        "nobody fires a stopped log's timers"
    );
    assert!(
        journal.orphans(10).await.unwrap().is_empty(),
        "nobody resumes a stopped log's calls"
    );

    // An import of it is stopped too; a fork of it is not.
    journal
        .put_guest("t", "counter", b"counter")
        .await
        .expect("guest");
    let events = journal.read(id, 0, 100).await.unwrap();
    let imported = journal.import("t", None, &events, None).await.unwrap();
    assert!(journal.info(imported).await.unwrap().unwrap().stopped);
    let fork = fork_of("t", id, 3);
    let fork_id = fork.id;
    journal.commit(Commit::new_log(fork)).await.unwrap();
    let forked = journal.info(fork_id).await.unwrap().unwrap();
    assert!(!forked.stopped);
    assert_ne!(forked.status, LogStatus::Stopped);

    // Input is still taken; `resumed` lifts the stop.
    let resumed = EventBody::Resumed { by: "ops".into() };
    journal
        .commit(Commit::append(
            id,
            4,
            vec![(T0, crate::journal::input("hi")), (T0, resumed)],
        ))
        .await
        .unwrap();
    let info = journal.info(id).await.unwrap().unwrap();
    assert!(!info.stopped);
    assert_eq!(info.status, LogStatus::Running);
    // Its timer, and the fork's (a fork at the head keeps the open effects).
    assert_eq!(journal.timers(u64::MAX, 10).await.unwrap().len(), 2);
    let back = journal.read(id, 3, 10).await.unwrap();
    assert_eq!(back[0].event.body, stopped());
    assert_eq!(back[2].event.body.kind(), "resumed");
}
