//! Several workers on one database: session limits, leases passing and
//! expiring, fencing, timers of held logs, waiters woken by another worker's
//! commits, and connections that are lost and come back.

use std::time::Duration;

use logbook::journal::*;

use super::{PgDb, create, fresh, sleep_until};
use crate::journal::{T0, input, new_log};

#[tokio::test]
async fn a_session_limit_holds_across_workers() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let a = db.journal(PgConfig::default()).await;
    let b = db.journal(PgConfig::default()).await;
    let mut tickets = Vec::new();
    for i in 0..40 {
        let journal = if i % 2 == 0 { &a } else { &b };
        let nl = NewLog {
            session_limit: Some(5),
            ..new_log("t", None)
        };
        tickets.push(journal.commit(Commit::new_log(nl)));
    }
    let mut admitted = 0;
    for t in tickets {
        match t.await {
            Ok(_) => admitted += 1,
            Err(JournalError::LimitReached { limit: 5, .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(admitted, 5);
    assert_eq!(a.count("t").await.unwrap().sessions, 5);
    assert_eq!(b.list_page("t", None, 100).await.unwrap().logs.len(), 5);
}

#[tokio::test]
async fn leases_pass_between_workers_and_expire_with_their_holder() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let short = PgConfig {
        lease_ttl_ms: 300,
        ..PgConfig::default()
    };
    let a = db.journal(short.clone()).await;
    let b = db
        .journal(PgConfig {
            worker: uuid::Uuid::now_v7(),
            ..short
        })
        .await;
    let id = create(&a, DEFAULT_TENANT, None).await;

    let first = a.acquire_lease(id).await.expect("free");
    assert!(matches!(b.acquire_lease(id).await, Err(JournalError::Leased { log }) if log == id));
    let again = a.acquire_lease(id).await.expect("held by this worker");
    assert!(again.epoch > first.epoch);
    a.release_lease(first).await.unwrap();
    assert!(
        b.acquire_lease(id).await.is_err(),
        "a stale release gives nothing up"
    );
    a.release_lease(again).await.unwrap();
    let taken = b.acquire_lease(id).await.expect("released");
    assert!(taken.epoch > again.epoch);
    assert!(matches!(
        a.acquire_lease(LogId::now_v7()).await,
        Err(JournalError::UnknownLog(_))
    ));

    // B dies: its heartbeat stops, and once it is older than the TTL, A takes over.
    drop(b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let taken_over = loop {
        match a.acquire_lease(id).await {
            Ok(lease) => break lease,
            Err(JournalError::Leased { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the lease never expired: {e:?}"),
        }
    };
    assert!(taken_over.epoch > taken.epoch);
}

#[tokio::test]
async fn appends_under_a_lease_another_worker_took_are_refused() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let a = db.journal(PgConfig::default()).await;
    let b = db.journal(PgConfig::default()).await;
    let id = create(&a, DEFAULT_TENANT, None).await;
    let mine = a.acquire_lease(id).await.unwrap();
    a.commit(Commit::append(id, 1, vec![(T0 + 1, input("a"))]).fenced(mine.epoch))
        .await
        .expect("the holder appends");
    // A gives the log up (as a worker that loses its heartbeat would lose
    // it); B takes it, and A's next append, with its old epoch, is refused
    // whatever its expected seq, while B's goes in.
    a.release_lease(mine).await.unwrap();
    let theirs = b.acquire_lease(id).await.unwrap();
    let stale = a
        .commit(Commit::append(id, 2, vec![(T0 + 2, input("late"))]).fenced(mine.epoch))
        .await;
    assert!(
        matches!(stale, Err(JournalError::Fenced { log, epoch }) if log == id && epoch == mine.epoch),
        "{stale:?}"
    );
    b.commit(Commit::append(id, 2, vec![(T0 + 2, input("b"))]).fenced(theirs.epoch))
        .await
        .expect("the new holder appends");
    let events = a.read(id, 0, 10).await.unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].event.body, input("b"));
}

#[tokio::test]
async fn timers_come_due_in_order_and_skip_logs_other_workers_hold() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let a = db.journal(PgConfig::default()).await;
    let b = db.journal(PgConfig::default()).await;
    let (x, y) = (
        create(&a, DEFAULT_TENANT, None).await,
        create(&a, DEFAULT_TENANT, None).await,
    );
    a.commit(Commit::append(
        x,
        1,
        vec![
            (T0, sleep_until("late", T0 + 200)),
            (T0, sleep_until("soon", T0 + 100)),
        ],
    ))
    .await
    .unwrap();
    a.commit(Commit::append(
        y,
        1,
        vec![(T0, sleep_until("mid", T0 + 150))],
    ))
    .await
    .unwrap();
    let due = a.timers(T0 + 150, 10).await.unwrap();
    let keys: Vec<&str> = due.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["soon", "mid"]);
    assert_eq!(due[0].until, T0 + 100);
    assert_eq!(a.timers(u64::MAX, 1).await.unwrap()[0].key, "soon");

    // Once B holds x, A no longer sees x's timers; B still does.
    b.acquire_lease(x).await.unwrap();
    let keys: Vec<String> = a
        .timers(u64::MAX, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.key)
        .collect();
    assert_eq!(keys, ["mid"]);
    assert_eq!(b.timers(u64::MAX, 10).await.unwrap().len(), 3);
    // A completed timer is no longer open.
    a.commit(Commit::append(
        y,
        2,
        vec![(
            T0 + 150,
            EventBody::Completed {
                key: "mid".into(),
                outcome: Outcome::TimerFired,
            },
        )],
    ))
    .await
    .unwrap();
    assert!(a.timers(u64::MAX, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_waiter_on_one_worker_sees_commits_of_another() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let a = db.journal(PgConfig::default()).await;
    let b = db.journal(PgConfig::default()).await;
    let id = create(&a, DEFAULT_TENANT, None).await;
    // Already there: at once.
    assert_eq!(b.wait_events(id, 0).await.unwrap(), 1);
    let waiting = {
        let b = b.clone();
        tokio::spawn(async move { b.wait_events(id, 1).await })
    };
    // A waiter that gives up costs nothing and does not disturb the other.
    let gave_up = tokio::time::timeout(Duration::from_millis(20), b.wait_events(id, 1)).await;
    assert!(gave_up.is_err());
    a.commit(Commit::append(
        id,
        1,
        vec![(T0 + 1, input("x")), (T0 + 2, input("y"))],
    ))
    .await
    .unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), 3);
}

/// Ends this database's connections of one `application_name`, as a
/// restart of the server or a network failure would; how many it ended.
async fn terminate(db: &PgDb, application: &str) -> i64 {
    db.sql()
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1",
            &[&application],
        )
        .await
        .expect("terminate")
        .get(0)
}

#[tokio::test]
async fn waiters_are_woken_after_the_listener_reconnects() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let a = db.journal(PgConfig::default()).await;
    let b = db.journal(PgConfig::default()).await;
    let id = create(&a, DEFAULT_TENANT, None).await;
    let waiting = {
        let b = b.clone();
        tokio::spawn(async move { b.wait_events(id, 1).await })
    };
    // Let the waiter register and read the head before its listener goes.
    tokio::task::yield_now().await;
    assert_eq!(terminate(&db, "logbook-listener").await, 2);
    // A commit while the listeners are gone: its notification reaches no one.
    a.commit(Commit::append(id, 1, vec![(T0 + 1, input("x"))]))
        .await
        .expect("the writer has its own connection");
    let woken = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the reconnected listener catches up");
    assert_eq!(woken.unwrap().unwrap(), 2);
}

#[tokio::test]
async fn the_writer_reconnects_after_losing_its_connection() {
    let Some((db, journal)) = fresh().await else {
        return;
    };
    let id = create(&journal, DEFAULT_TENANT, None).await;
    assert_eq!(terminate(&db, "logbook-writer").await, 1);
    // The first batch after the loss may fail (its outcome unknown to the
    // caller); one soon after goes through on a new connection.
    let mut expected = 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match journal
            .commit(Commit::append(id, expected, vec![(T0 + 1, input("x"))]))
            .await
        {
            Ok(_) => break,
            Err(JournalError::Postgres(_) | JournalError::Closed)
                if tokio::time::Instant::now() < deadline =>
            {
                expected = journal.info(id).await.unwrap().unwrap().next_seq;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the writer did not come back: {e:?}"),
        }
    }
    assert_eq!(
        terminate(&db, "logbook-writer").await,
        1,
        "a new connection"
    );
    assert!(journal.verify(id).await.unwrap().is_ok());
}

#[tokio::test]
async fn a_worker_appends_after_another_moved_the_log_it_last_wrote() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let a = db.journal(PgConfig::default()).await;
    let b = db.journal(PgConfig::default()).await;
    let id = create(&a, DEFAULT_TENANT, None).await;
    a.commit(Commit::append(id, 1, vec![(T0 + 1, input("a"))]))
        .await
        .unwrap();
    // B moves the log on; A's writer last saw it at seq 2.
    b.commit(Commit::append(
        id,
        2,
        vec![(T0 + 2, input("b")), (T0 + 3, input("c"))],
    ))
    .await
    .unwrap();
    // What A last wrote is stale: refused with the log's real head.
    let stale = a
        .commit(Commit::append(id, 2, vec![(T0 + 4, input("late"))]))
        .await;
    assert!(
        matches!(
            stale,
            Err(JournalError::Conflict {
                expected: 2,
                actual: 4,
                ..
            })
        ),
        "{stale:?}"
    );
    // The real head is accepted, chained on B's events.
    a.commit(Commit::append(id, 4, vec![(T0 + 4, input("d"))]))
        .await
        .expect("an append at the real head");
    b.commit(Commit::append(id, 5, vec![(T0 + 5, input("e"))]))
        .await
        .expect("and B goes on after it");
    a.commit(Commit::append(id, 6, vec![(T0 + 6, input("f"))]))
        .await
        .expect("A again, its cache behind by one");
    assert_eq!(a.info(id).await.unwrap().unwrap().next_seq, 7);
    assert!(a.verify(id).await.unwrap().is_ok());
}
