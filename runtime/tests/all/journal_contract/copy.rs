//! [`Journal::copy_log`]: logs copied from another journal keep their ids,
//! fork points, events, hashes and projections, and a copy that does not
//! hold writes nothing.

use std::sync::Arc;

use logbook::journal::*;

use super::{compaction, count, create, fork_of, tool_request};
use crate::journal::{T0, input, new_log};

/// A log's own events in `journal`: after its fork point, or all of them.
pub(crate) async fn own_events(journal: &dyn Journal, id: LogId) -> Vec<StoredEvent> {
    let from = match journal.parent(id).await.expect("parent") {
        Some(p) => p.seq + 1,
        None => 0,
    };
    journal.read(id, from, 10_000).await.expect("read")
}

/// A source with two tenants, a named root with an open tool call, forks at
/// and before its head, a fork of a fork, and a compaction that moved a name.
async fn source() -> (Arc<dyn Journal>, Vec<LogId>) {
    let src: Arc<dyn Journal> = MemoryJournal::new();
    src.put_guest("t", "counter", b"counter")
        .await
        .expect("guest");
    src.put_guest("u", "counter", b"counter")
        .await
        .expect("guest");
    let root = create(&*src, "t", Some("bot")).await;
    src.commit(Commit::append(
        root,
        1,
        vec![(T0 + 1, input("a")), (T0 + 2, tool_request("call-1"))],
    ))
    .await
    .expect("append");
    let at_head = fork_of("t", root, 2);
    let early = fork_of("t", root, 1);
    let (at_head_id, early_id) = (at_head.id, early.id);
    src.commit(Commit::new_log(at_head)).await.expect("fork");
    src.commit(Commit::new_log(early)).await.expect("fork");
    src.commit(Commit::append(early_id, 3, vec![(T0 + 3, input("mine"))]))
        .await
        .expect("append");
    let deep = fork_of("t", early_id, 3);
    let deep_id = deep.id;
    src.commit(Commit::new_log(deep))
        .await
        .expect("fork of a fork");
    // The root goes on after its forks, and is compacted; its name moves.
    src.commit(Commit::append(root, 3, vec![(T0 + 4, input("b"))]))
        .await
        .expect("append");
    let (next, mut commit) = compaction(root, 4, "t");
    commit.names.push(NameUpdate {
        tenant: "t".into(),
        name: "bot".into(),
        log: next,
    });
    src.commit(commit).await.expect("compaction");
    let other = create(&*src, "u", Some("bot")).await;
    let ids = vec![root, at_head_id, early_id, deep_id, next, other];
    (src, ids)
}

pub(super) async fn copies_keep_ids_forks_hashes_and_projections(journal: Arc<dyn Journal>) {
    let (src, ids) = source().await;
    for tenant in ["t", "u"] {
        journal
            .put_guest(tenant, "counter", b"counter")
            .await
            .expect("guest");
    }
    for &id in &ids {
        let info = src.info(id).await.expect("info").expect("a source log");
        let copy = CopiedLog::new(&info, own_events(&*src, id).await);
        journal.copy_log(&copy).await.expect("copy");
    }
    for &id in &ids {
        let (a, b) = (src.info(id).await.unwrap(), journal.info(id).await.unwrap());
        assert_eq!(a, b, "the info of {id}");
        assert_eq!(
            src.read(id, 0, 100).await.unwrap(),
            journal.read(id, 0, 100).await.unwrap(),
            "the events of {id}, through its ancestry"
        );
        assert_eq!(
            src.parent(id).await.unwrap(),
            journal.parent(id).await.unwrap()
        );
        assert!(journal.verify(id).await.unwrap().is_ok(), "{id} verifies");
    }
    let at_head = journal.info(ids[1]).await.unwrap().unwrap();
    assert_eq!(
        at_head.status,
        LogStatus::Running,
        "took over the open call"
    );
    assert_eq!(
        journal.info(ids[0]).await.unwrap().unwrap().status,
        LogStatus::Finished
    );
    assert_eq!(journal.resolve("t", "bot").await.unwrap(), Some(ids[4]));
    assert_eq!(journal.resolve("u", "bot").await.unwrap(), Some(ids[5]));
    assert_eq!(count(&*journal, "t").await, count(&*src, "t").await);
    assert_eq!(
        count(&*journal, "t").await,
        (5, 4),
        "a compaction is no session"
    );
    assert_eq!(count(&*journal, "u").await, (1, 1));

    // Refusals write nothing: the id is taken; the chain breaks; the parent
    // is not here; the name is bound to another log.
    let info = src.info(ids[2]).await.unwrap().unwrap();
    let again = CopiedLog::new(&info, own_events(&*src, ids[2]).await);
    let refused = journal.copy_log(&again).await;
    assert!(
        matches!(refused, Err(JournalError::LogExists(l)) if l == ids[2]),
        "{refused:?}"
    );
    let lone = new_log("t", Some("lone"));
    let lone_id = lone.id;
    src.commit(Commit::new_log(lone)).await.unwrap();
    src.commit(Commit::append(lone_id, 1, vec![(T0 + 9, input("x"))]))
        .await
        .unwrap();
    let info = src.info(lone_id).await.unwrap().unwrap();
    let events = own_events(&*src, lone_id).await;
    let mut tampered = CopiedLog::new(&info, events.clone());
    tampered.events[1].event.at += 1;
    let refused = journal.copy_log(&tampered).await;
    assert!(
        matches!(&refused, Err(JournalError::BadLog { copy: Some(c), seq: Some(1), .. }) if *c == lone_id),
        "{refused:?}"
    );
    let orphan = fork_of("t", lone_id, 1);
    let orphan_id = orphan.id;
    src.commit(Commit::new_log(orphan)).await.unwrap();
    let orphan_info = src.info(orphan_id).await.unwrap().unwrap();
    let refused = journal
        .copy_log(&CopiedLog::new(
            &orphan_info,
            own_events(&*src, orphan_id).await,
        ))
        .await;
    assert!(
        matches!(refused, Err(JournalError::BadLog { copy: Some(c), seq: None, .. }) if c == orphan_id),
        "{refused:?}"
    );
    let mut named = CopiedLog::new(&info, events.clone());
    named.name = Some("bot".into());
    let refused = journal.copy_log(&named).await;
    assert!(
        matches!(&refused, Err(JournalError::NameTaken { name, .. }) if name == "bot"),
        "{refused:?}"
    );
    assert!(journal.info(lone_id).await.unwrap().is_none());
    assert_eq!(journal.count_logs().await.unwrap(), ids.len());
    assert_eq!(count(&*journal, "t").await, (5, 4));

    // The sound copy goes in, and its fork after it.
    journal
        .copy_log(&CopiedLog::new(&info, events))
        .await
        .expect("copy");
    journal
        .copy_log(&CopiedLog::new(
            &orphan_info,
            own_events(&*src, orphan_id).await,
        ))
        .await
        .expect("its fork, after it");
    assert_eq!(journal.resolve("t", "lone").await.unwrap(), Some(lone_id));
    assert_eq!(
        journal.info(orphan_id).await.unwrap(),
        src.info(orphan_id).await.unwrap()
    );
    assert_eq!(count(&*journal, "t").await, (7, 6));
}

/// `migrate` stopped part way (a copy refused, a copy written whose answer was
/// lost) finishes on the next run, copying each log once; a run after that
/// copies nothing.
#[tokio::test]
async fn a_migration_resumes_where_it_stopped() {
    let (src, ids) = source().await;
    let tenants = ["t".to_owned(), "u".to_owned()];
    let inner: Arc<dyn Journal> = MemoryJournal::new();
    let dest = FaultyJournal::wrap(inner.clone());
    // The third copy is torn (written, answered with an error), the next fails.
    dest.inject(3, Fault::Tear);
    dest.inject(4, Fault::Fail);
    let stopped = migrate(&*src, &tenants, &*dest, false, |_| {}).await;
    assert!(
        matches!(stopped, Err(MigrateError::Journal(_))),
        "{stopped:?}"
    );
    assert_eq!(inner.count_logs().await.unwrap(), 3, "two copied, one torn");

    let stopped = migrate(&*src, &tenants, &*dest, false, |_| {}).await;
    assert!(stopped.is_err(), "the fourth fails: {stopped:?}");
    let done = migrate(&*src, &tenants, &*dest, false, |_| {})
        .await
        .expect("the rest");
    assert_eq!((done.logs, done.logs_skipped), (3, 3), "{done:?}");
    for &id in &ids {
        assert_eq!(src.info(id).await.unwrap(), inner.info(id).await.unwrap());
        assert_eq!(
            src.read(id, 0, 100).await.unwrap(),
            inner.read(id, 0, 100).await.unwrap()
        );
    }
    for tenant in &tenants {
        assert_eq!(
            src.guests(tenant).await.unwrap(),
            inner.guests(tenant).await.unwrap()
        );
        assert_eq!(count(&*src, tenant).await, count(&*inner, tenant).await);
    }
    let again = migrate(&*src, &tenants, &*dest, false, |_| {})
        .await
        .expect("nothing to do");
    assert_eq!(
        again,
        MigrateProgress {
            tenants: 2,
            logs_skipped: ids.len() as u64,
            ..MigrateProgress::default()
        }
    );
}
