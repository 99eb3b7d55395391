//! Activation per log: concurrent wakes of one log start one actor, wakes of
//! many logs go on at once, and a dormant log that has finished or parked
//! refuses input from its stored status without being woken.

use std::collections::BTreeSet;

use logbook::journal::{ContentBlock, Sender};
use logbook::session::{Activity, SessionError};

use crate::fixtures::*;

fn text(t: &str) -> Vec<ContentBlock> {
    vec![ContentBlock::text(t)]
}

fn from() -> Sender {
    Sender::Principal("test".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inputs_to_a_dormant_log_wake_one_actor() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let session = start(&host, "counter", "c").await;
    let id = session.id();
    say(&session, "inc").await;
    settle(&session).await;
    host.hibernate(id);
    drop(session);

    // Every input races to activate the log; a second actor would have its
    // appends refused (stale seq), so every input succeeding and the count
    // reaching 1 + 32 in steps of one shows there was one.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let host = host.clone();
        tasks.spawn(async move { host.input(id, from(), text("inc")).await });
    }
    let mut seqs = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        let seq = guard(async { done.expect("task") }).await.expect("input");
        assert!(seqs.insert(seq), "seq {seq} acknowledged twice");
    }
    assert_eq!(
        guard(host.wait_idle(id, Default::default())).await.unwrap(),
        Activity::Idle
    );
    let counts: BTreeSet<String> = outputs(&events(&host, id).await).into_iter().collect();
    let expected: BTreeSet<String> = (1..=33).map(|n| format!("count = {n}")).collect();
    assert_eq!(counts, expected);
    assert_chain_holds(&host, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_dormant_logs_wake_at_once_and_each_keeps_its_state() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let mut ids = Vec::new();
    for n in 0..16 {
        let session = start(&host, "counter", &format!("c{n}")).await;
        for _ in 0..=n {
            say(&session, "inc").await;
        }
        settle(&session).await;
        ids.push(session.id());
        host.hibernate(session.id());
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (n, id) in ids.iter().copied().enumerate() {
        let host = host.clone();
        tasks.spawn(async move {
            host.input(id, from(), text("get")).await?;
            host.wait_idle(id, Default::default()).await?;
            Ok::<_, SessionError>((n, id))
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (n, id) = guard(async { done.expect("task") }).await.expect("wake");
        let last = outputs(&events(&host, id).await).pop();
        assert_eq!(last, Some(format!("count = {}", n + 1)), "log c{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dormant_finished_log_refuses_input_without_waking() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let session = start(&host, "counter", "c").await;
    let id = session.id();
    say(&session, "inc").await;
    say(&session, "done").await;
    assert_eq!(settle(&session).await, Activity::Finished);
    host.hibernate(id);
    drop(session);
    let before = host.journal().info(id).await.unwrap().unwrap().next_seq;

    match guard(host.input(id, from(), text("inc"))).await {
        Err(SessionError::Finished(result)) => assert_eq!(result, "count = 1"),
        other => panic!("expected Finished, got {other:?}"),
    }
    assert!(host.resident(id).is_none(), "the refusal woke the session");
    assert_eq!(
        host.journal().info(id).await.unwrap().unwrap().next_seq,
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dormant_parked_log_refuses_input_without_waking() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let session = start(&host, "fixture_panic", "p").await;
    let id = session.id();
    say(&session, "panic").await;
    assert_eq!(settle(&session).await, Activity::Failed);
    host.hibernate(id);
    drop(session);

    match guard(host.input(id, from(), text("hello"))).await {
        Err(SessionError::Parked(message)) => {
            assert!(message.contains("asked to panic"), "{message}")
        }
        other => panic!("expected Parked, got {other:?}"),
    }
    assert!(host.resident(id).is_none(), "the refusal woke the session");
}

/// An actor's appends carry its lease: once another writer takes the log's
/// lease, the actor's next append is refused and it stops, having written
/// nothing; the host's next call wakes a fresh actor under a new lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_whose_lease_was_taken_writes_nothing_more() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let session = start(&host, "counter", "c").await;
    let id = session.id();
    say(&session, "inc").await;
    settle(&session).await;
    let before = events(&host, id).await.len();

    let taken = host
        .journal()
        .acquire_lease(id)
        .await
        .expect("take the lease");
    let refused = session.input(from(), text("inc")).await;
    assert!(
        matches!(
            refused,
            Err(SessionError::Journal(logbook::JournalError::Fenced { .. }))
        ),
        "{refused:?}"
    );
    assert_eq!(
        events(&host, id).await.len(),
        before,
        "the stale actor wrote"
    );

    // The host wakes a fresh actor, which takes the lease from the taker.
    guard(host.input(id, from(), text("inc")))
        .await
        .expect("input");
    guard(host.wait_idle(id, Default::default())).await.unwrap();
    let stale = host
        .journal()
        .commit(
            logbook::journal::Commit::append(
                id,
                events(&host, id).await.len() as u64,
                vec![(
                    1,
                    logbook::journal::EventBody::Cancelled { key: "x".into() },
                )],
            )
            .fenced(taken.epoch),
        )
        .await;
    assert!(
        matches!(stale, Err(logbook::JournalError::Fenced { .. })),
        "{stale:?}"
    );
    assert_eq!(
        outputs(&events(&host, id).await).last().map(String::as_str),
        Some("count = 2")
    );
    assert_chain_holds(&host, id).await;
}
