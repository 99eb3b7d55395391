//! The [`Journal`] contract, checked the same way against every backend.
//!
//! Each check is a function of an `Arc<dyn Journal>`; [`every_check!`] runs
//! them all as tests against one backend, and each backend is one line at the
//! bottom (a new backend, such as PostgreSQL, adds its line). What is about
//! redb itself (reopening a file, tampering with rows, group commit, the
//! golden format) stays in `journal.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use logbook::journal::*;
use tempfile::TempDir;

use crate::journal::{T0, created, guest, input, new_log, tool_call};

mod copy;
mod host;
mod model;
mod stop;

use self::copy::copies_keep_ids_forks_hashes_and_projections;
use self::stop::a_stopped_log_is_stopped_until_resumed;

/// A journal under test, with whatever must outlive it (a temp dir, a database).
pub(crate) struct Backend {
    pub(crate) journal: Arc<dyn Journal>,
    _dir: Option<TempDir>,
    _db: Option<crate::postgres::PgDb>,
}

/// A [`RedbJournal`] in a fresh temp file.
pub(crate) async fn redb() -> Option<Backend> {
    let dir = TempDir::new().expect("temp dir");
    let journal = RedbJournal::open(&dir.path().join("journal.redb"), JournalConfig::default())
        .expect("open journal");
    Some(Backend {
        journal,
        _dir: Some(dir),
        _db: None,
    })
}

/// An empty [`MemoryJournal`].
pub(crate) async fn memory() -> Option<Backend> {
    Some(Backend {
        journal: MemoryJournal::new(),
        _dir: None,
        _db: None,
    })
}

/// A [`PgJournal`] on a fresh database; `None` when PostgreSQL tests are
/// skipped (see `postgres.rs`).
pub(crate) async fn postgres() -> Option<Backend> {
    let (db, journal) = crate::postgres::fresh().await?;
    Some(Backend {
        journal,
        _dir: None,
        _db: Some(db),
    })
}

/// Runs the named checks as `#[tokio::test]`s against the backend `$open` makes.
macro_rules! contract {
    ($open:path => $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let Some(backend) = $open().await else {
                    return;
                };
                super::$check(backend.journal.clone()).await;
            }
        )*
    };
}

/// Every check of the contract, against the backend `$open` makes.
macro_rules! every_check {
    ($open:path) => {
        contract!($open =>
            create_append_and_read_back,
            a_wrong_expected_seq_is_refused_and_writes_nothing,
            refusals_name_their_reason,
            a_refused_commit_leaves_its_neighbours_alone,
            a_commit_can_create_append_and_name_at_once,
            names_bind_and_move,
            status_and_open_effects_follow_the_events,
            guests_are_stored_once_by_digest,
            blobs_are_stored_by_digest_per_tenant,
            forks_read_through_their_ancestry,
            snapshots_keep_the_newest_per_guest,
            the_key_index_keeps_keys_decisions_and_its_highest_mark,
            the_limit_holds_for_forks_and_imports_not_compactions,
            pages_walk_each_tenants_logs_once_and_never_mix_them,
            import_checks_the_chain_and_stands_alone,
            checked_reads_page_through_a_sound_log_as_plain_ones,
            a_new_lease_fences_the_appends_of_the_old_one,
            timers_are_the_open_sleeps_by_deadline,
            a_waiter_wakes_when_the_log_grows,
            open_logs_page_in_id_order,
            orphans_are_running_logs_that_nobody_holds,
            copies_keep_ids_forks_hashes_and_projections,
            a_tool_approved_without_the_lease_stays_unstarted_until_claimed,
            a_stopped_log_is_stopped_until_resumed,
            an_append_at_the_head_chains_after_whatever_is_there,
        );
    };
}

mod redb_backend {
    every_check!(super::redb);
}

mod memory_backend {
    every_check!(super::memory);
}

mod postgres_backend {
    every_check!(super::postgres);
}

async fn a_new_lease_fences_the_appends_of_the_old_one(journal: Arc<dyn Journal>) {
    let id = create(&*journal, DEFAULT_TENANT, None).await;
    assert!(matches!(
        journal.acquire_lease(LogId::now_v7()).await,
        Err(JournalError::UnknownLog(_))
    ));
    let first = journal.acquire_lease(id).await.expect("lease");
    assert_eq!(first.log, id);
    journal
        .commit(Commit::append(id, 1, vec![(T0 + 1, input("a"))]).fenced(first.epoch))
        .await
        .expect("the holder appends");
    let second = journal.acquire_lease(id).await.expect("taken over");
    assert!(second.epoch > first.epoch, "{first:?} then {second:?}");
    let stale = journal
        .commit(Commit::append(id, 2, vec![(T0 + 2, input("b"))]).fenced(first.epoch))
        .await;
    assert!(
        matches!(stale, Err(JournalError::Fenced { epoch, .. }) if epoch == first.epoch),
        "{stale:?}"
    );
    assert_eq!(journal.info(id).await.unwrap().unwrap().next_seq, 2);
    journal
        .commit(Commit::append(id, 2, vec![(T0 + 2, input("b"))]).fenced(second.epoch))
        .await
        .expect("the new holder appends");
    // Releasing a lease that was taken over changes nothing.
    journal.release_lease(first).await.expect("release");
    journal
        .commit(Commit::append(id, 3, vec![(T0 + 3, input("c"))]).fenced(second.epoch))
        .await
        .expect("still the holder");
    journal.release_lease(second).await.expect("release");
    // Writers without a lease (creates, imports, operators) are ordered by
    // the seq alone.
    journal
        .commit(Commit::append(id, 4, vec![(T0 + 4, input("d"))]))
        .await
        .expect("an unfenced append");
}

/// A tool approved by a writer without the lease has certainly not run until
/// the holder claims it; one approved by the holder may have run at once.
async fn a_tool_approved_without_the_lease_stays_unstarted_until_claimed(
    journal: Arc<dyn Journal>,
) {
    let unstarted = async |log: LogId, key: &str| {
        let info = journal.info(log).await.expect("info").expect("a log");
        info.open
            .iter()
            .find(|o| o.key == key)
            .map(|o| (o.awaiting_approval, o.unstarted))
    };
    let held = |key: &str| {
        vec![
            (
                T0,
                EventBody::Requested {
                    key: key.into(),
                    effect: RequestedEffect::Tool(tool_call(key)),
                },
            ),
            (
                T0,
                EventBody::ApprovalRequested {
                    key: key.into(),
                    tool: Some(tool_call(key)),
                    question: None,
                },
            ),
        ]
    };
    let decided = |key: &str, allow: bool| EventBody::ApprovalDecided {
        key: key.into(),
        allow,
        by: "ann".into(),
        reason: None,
    };
    let id = create(&*journal, DEFAULT_TENANT, None).await;
    let lease = journal.acquire_lease(id).await.expect("lease");
    let mut events = held("a");
    events.extend(held("b"));
    events.extend(held("c"));
    journal
        .commit(Commit::append(id, 1, events).fenced(lease.epoch))
        .await
        .expect("requested");
    assert_eq!(unstarted(id, "a").await, Some((true, false)));
    // Approved through another worker (no lease), and by the holder.
    journal
        .commit(Commit::append(id, 7, vec![(T0, decided("a", true))]))
        .await
        .expect("decided elsewhere");
    journal
        .commit(Commit::append(id, 8, vec![(T0, decided("b", true))]).fenced(lease.epoch))
        .await
        .expect("decided by the holder");
    journal
        .commit(Commit::append(id, 9, vec![(T0, decided("c", false))]))
        .await
        .expect("denied elsewhere");
    assert_eq!(unstarted(id, "a").await, Some((false, true)));
    assert_eq!(unstarted(id, "b").await, Some((false, false)));
    assert_eq!(unstarted(id, "c").await, Some((false, false)));

    // A fork at the head must assume the parent's holder may run it.
    let mut nl = new_log(DEFAULT_TENANT, None);
    let fork = nl.id;
    nl.created.parent = Some(LogPos {
        log: id.to_string(),
        seq: 9,
    });
    journal.commit(Commit::new_log(nl)).await.expect("fork");
    assert_eq!(unstarted(fork, "a").await, Some((false, false)));

    // Only the holder may claim: a stale epoch is fenced and changes nothing.
    let next = journal.acquire_lease(id).await.expect("taken over");
    let claim = |epoch: u64| Commit {
        claims: vec![Claim {
            log: id,
            key: "a".into(),
            lease: epoch,
        }],
        ..Commit::default()
    };
    let stale = journal.commit(claim(lease.epoch)).await;
    assert!(
        matches!(stale, Err(JournalError::Fenced { .. })),
        "{stale:?}"
    );
    assert_eq!(unstarted(id, "a").await, Some((false, true)));
    journal.commit(claim(next.epoch)).await.expect("claimed");
    assert_eq!(unstarted(id, "a").await, Some((false, false)));
    // Claiming what is not unstarted (or not open) changes nothing.
    journal
        .commit(claim(next.epoch))
        .await
        .expect("claimed again");
    assert_eq!(journal.info(id).await.unwrap().unwrap().next_seq, 10);
}

async fn timers_are_the_open_sleeps_by_deadline(journal: Arc<dyn Journal>) {
    let sleep = |key: &str, until: u64| EventBody::Requested {
        key: key.into(),
        effect: RequestedEffect::Sleep { until },
    };
    let a = create(&*journal, DEFAULT_TENANT, None).await;
    let b = create(&*journal, "other", None).await;
    assert!(journal.timers(u64::MAX, 10).await.unwrap().is_empty());
    journal
        .commit(Commit::append(
            a,
            1,
            vec![
                (T0, sleep("late", T0 + 300)),
                (T0, sleep("early", T0 + 100)),
            ],
        ))
        .await
        .unwrap();
    journal
        .commit(Commit::append(
            b,
            1,
            vec![(T0, sleep("mid", T0 + 200)), (T0, tool_request("t"))],
        ))
        .await
        .unwrap();
    let due = |t: &Timer| (t.log, t.key.clone(), t.until);
    let all: Vec<_> = journal.timers(u64::MAX, 10).await.unwrap();
    assert_eq!(
        all.iter().map(due).collect::<Vec<_>>(),
        vec![
            (a, "early".to_string(), T0 + 100),
            (b, "mid".to_string(), T0 + 200),
            (a, "late".to_string(), T0 + 300),
        ]
    );
    let next = journal.timers(u64::MAX, 1).await.unwrap();
    assert_eq!(next.iter().map(due).collect::<Vec<_>>(), vec![due(&all[0])]);
    let by_mid = journal.timers(T0 + 200, 10).await.unwrap();
    assert_eq!(by_mid.len(), 2);
    // A completed sleep is no timer any more.
    journal
        .commit(Commit::append(
            a,
            3,
            vec![(
                T0 + 100,
                EventBody::Completed {
                    key: "early".into(),
                    outcome: Outcome::TimerFired,
                },
            )],
        ))
        .await
        .unwrap();
    let left: Vec<_> = journal.timers(u64::MAX, 10).await.unwrap();
    assert_eq!(
        left.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
        ["mid", "late"]
    );
}

async fn a_waiter_wakes_when_the_log_grows(journal: Arc<dyn Journal>) {
    let id = create(&*journal, DEFAULT_TENANT, None).await;
    // A log that already holds the seq answers at once.
    assert_eq!(journal.wait_events(id, 0).await.unwrap(), 1);
    let waiter = {
        let journal = journal.clone();
        tokio::spawn(async move { journal.wait_events(id, 1).await })
    };
    // Other logs growing do not wake it.
    let other = create(&*journal, DEFAULT_TENANT, None).await;
    journal
        .commit(Commit::append(other, 1, vec![(T0, input("x"))]))
        .await
        .unwrap();
    tokio::task::yield_now().await;
    if waiter.is_finished() {
        panic!("woke early: {:?}", waiter.await);
    }
    journal
        .commit(Commit::append(
            id,
            1,
            vec![(T0, input("a")), (T0, input("b"))],
        ))
        .await
        .unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(30), waiter)
        .await
        .expect("the waiter wakes")
        .expect("joins")
        .expect("waits");
    assert_eq!(next, 3);
    // A dropped waiter leaves nothing that blocks the next one.
    let dropped = journal.wait_events(id, 3);
    drop(dropped);
    journal
        .commit(Commit::append(id, 3, vec![(T0, input("c"))]))
        .await
        .unwrap();
    assert_eq!(journal.wait_events(id, 3).await.unwrap(), 4);
}

async fn open_logs_page_in_id_order(journal: Arc<dyn Journal>) {
    let mut open = Vec::new();
    for i in 0..5 {
        let id = create(&*journal, DEFAULT_TENANT, None).await;
        if i != 2 {
            journal
                .commit(Commit::append(id, 1, vec![(T0, tool_request("t"))]))
                .await
                .unwrap();
            open.push(id);
        }
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = journal.open_logs(after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(*last);
        seen.extend(page);
    }
    assert_eq!(seen, open);
}

async fn orphans_are_running_logs_that_nobody_holds(journal: Arc<dyn Journal>) {
    let running = create(&*journal, DEFAULT_TENANT, None).await;
    journal
        .commit(Commit::append(running, 1, vec![(T0, tool_request("t"))]))
        .await
        .unwrap();
    let sleeping = create(&*journal, "other", None).await;
    journal
        .commit(Commit::append(
            sleeping,
            1,
            vec![(
                T0,
                EventBody::Requested {
                    key: "nap".into(),
                    effect: RequestedEffect::Sleep { until: T0 },
                },
            )],
        ))
        .await
        .unwrap();
    let asking = create(&*journal, DEFAULT_TENANT, None).await;
    journal
        .commit(Commit::append(
            asking,
            1,
            vec![
                (T0, tool_request("t")),
                (
                    T0,
                    EventBody::ApprovalRequested {
                        key: "t".into(),
                        tool: Some(tool_call("t")),
                        question: None,
                    },
                ),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(journal.orphans(10).await.unwrap(), [running]);
    let lease = journal.acquire_lease(running).await.unwrap();
    assert!(journal.orphans(10).await.unwrap().is_empty());
    journal.release_lease(lease).await.unwrap();
    assert_eq!(journal.orphans(10).await.unwrap(), [running]);
}

/// A requested tool call under `key`: an open effect that is not a timer.
fn tool_request(key: &str) -> EventBody {
    EventBody::Requested {
        key: key.into(),
        effect: RequestedEffect::Tool(tool_call(key)),
    }
}

pub(crate) async fn create(journal: &dyn Journal, tenant: &str, name: Option<&str>) -> LogId {
    let nl = new_log(tenant, name);
    let id = nl.id;
    journal
        .commit(Commit::new_log(nl))
        .await
        .expect("create log");
    id
}

async fn checked_reads_page_through_a_sound_log_as_plain_ones(journal: Arc<dyn Journal>) {
    let id = create(&*journal, DEFAULT_TENANT, None).await;
    let inputs: Vec<_> = (1..=9).map(|i| (T0 + i, input(&format!("n{i}")))).collect();
    journal
        .commit(Commit::append(id, 1, inputs))
        .await
        .expect("append");
    let mut pos = logbook::journal::ChainPos::START;
    let mut checked = Vec::new();
    loop {
        let page = journal
            .read_checked(id, &mut pos, 4)
            .await
            .expect("a sound log");
        if page.is_empty() {
            break;
        }
        checked.extend(page);
    }
    assert_eq!(checked, journal.read(id, 0, 100).await.unwrap());
    assert_eq!(pos.next_seq, 10);
}

async fn create_append_and_read_back(journal: Arc<dyn Journal>) {
    let nl = new_log(DEFAULT_TENANT, Some("bot"));
    let id = nl.id;
    let committed = journal.commit(Commit::new_log(nl)).await.unwrap();
    assert_eq!(committed.events.len(), 1);
    assert_eq!(committed.events[0].0, id);
    assert_eq!(committed.events[0].1.event.seq, 0);

    let committed = journal
        .commit(Commit::append(
            id,
            1,
            vec![(T0 + 1, input("one")), (T0 + 2, input("two"))],
        ))
        .await
        .unwrap();
    let seqs: Vec<u64> = committed.events.iter().map(|(_, e)| e.event.seq).collect();
    assert_eq!(seqs, [1, 2]);

    let events = journal.read(id, 0, 100).await.unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].event.body, EventBody::Created(created()));
    assert_eq!(events[2].event.body, input("two"));
    assert_eq!(events[2].event.at, T0 + 2);
    let written: Vec<StoredEvent> = committed.events.into_iter().map(|(_, e)| e).collect();
    assert_eq!(events[1..], written[..]);
    assert!(verify_events(&events).is_ok());
    assert_eq!(journal.read(id, 2, 100).await.unwrap().len(), 1);
    assert_eq!(journal.read(id, 0, 2).await.unwrap().len(), 2);
    assert!(journal.read(id, 0, 0).await.unwrap().is_empty());
    assert!(journal.read(id, 3, 100).await.unwrap().is_empty());
    assert!(
        journal
            .read(LogId::now_v7(), 0, 100)
            .await
            .unwrap()
            .is_empty()
    );

    let info = journal.info(id).await.unwrap().expect("exists");
    assert_eq!(info.next_seq, 3);
    assert_eq!(info.last_hash, events[2].hash);
    assert_eq!(info.tenant, DEFAULT_TENANT);
    assert_eq!(info.name.as_deref(), Some("bot"));
    assert_eq!(info.guest, guest("counter"));
    assert_eq!(info.created_at, T0);
    assert_eq!(info.status, LogStatus::Idle);
    assert_eq!(
        journal.resolve(DEFAULT_TENANT, "bot").await.unwrap(),
        Some(id)
    );
    assert!(journal.info(LogId::now_v7()).await.unwrap().is_none());
    assert_eq!(journal.count_logs().await.unwrap(), 1);
    assert_eq!(journal.parent(id).await.unwrap(), None);
    assert!(matches!(
        journal.parent(LogId::now_v7()).await,
        Err(JournalError::UnknownLog(_))
    ));
    assert_eq!(
        journal.verify(id).await.unwrap(),
        Verified {
            events: 3,
            first_bad: None
        }
    );
    assert!(matches!(
        journal.verify(LogId::now_v7()).await,
        Err(JournalError::UnknownLog(_))
    ));
}

async fn a_wrong_expected_seq_is_refused_and_writes_nothing(journal: Arc<dyn Journal>) {
    let id = create(&*journal, DEFAULT_TENANT, None).await;
    let other = create(&*journal, DEFAULT_TENANT, None).await;

    // The conflicting append comes with a valid one and a new log in the same
    // commit: none of them may be written.
    let extra = new_log(DEFAULT_TENANT, Some("never"));
    let extra_id = extra.id;
    let commit = Commit {
        claims: Vec::new(),
        new_logs: vec![extra],
        appends: vec![
            Append {
                lease: None,
                log: other,
                expected_seq: 1,
                at_head: false,
                events: vec![(T0, input("fine"))],
            },
            Append {
                lease: None,
                log: id,
                expected_seq: 5,
                at_head: false,
                events: vec![(T0, input("late"))],
            },
        ],
        names: vec![],
    };
    match journal.commit(commit).await {
        Err(JournalError::Conflict {
            log,
            expected,
            actual,
        }) => assert_eq!((log, expected, actual), (id, 5, 1)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(journal.read(id, 0, 10).await.unwrap().len(), 1);
    assert_eq!(journal.read(other, 0, 10).await.unwrap().len(), 1);
    assert!(journal.info(extra_id).await.unwrap().is_none());
    assert_eq!(
        journal.resolve(DEFAULT_TENANT, "never").await.unwrap(),
        None
    );
    assert_eq!(journal.count(DEFAULT_TENANT).await.unwrap().logs, 2);

    // The head did not move: the right seq still works.
    journal
        .commit(Commit::append(id, 1, vec![(T0, input("ok"))]))
        .await
        .unwrap();
    assert_eq!(journal.info(id).await.unwrap().unwrap().next_seq, 2);
}

async fn refusals_name_their_reason(journal: Arc<dyn Journal>) {
    let ghost = LogId::now_v7();
    assert!(matches!(
        journal.commit(Commit::append(ghost, 0, vec![(T0, input("x"))])).await,
        Err(JournalError::UnknownLog(l)) if l == ghost
    ));

    let nl = new_log("t", Some("taken"));
    let again = nl.clone();
    journal.commit(Commit::new_log(nl)).await.unwrap();
    assert!(matches!(
        journal.commit(Commit::new_log(again)).await,
        Err(JournalError::LogExists(_))
    ));
    assert!(matches!(
        journal.commit(Commit::new_log(new_log("t", Some("taken")))).await,
        Err(JournalError::NameTaken { tenant, name }) if tenant == "t" && name == "taken"
    ));
    // Two new logs of one commit cannot share a name either.
    let twins = Commit {
        new_logs: vec![new_log("t", Some("twin")), new_log("t", Some("twin"))],
        ..Commit::default()
    };
    assert!(matches!(
        journal.commit(twins).await,
        Err(JournalError::NameTaken { name, .. }) if name == "twin"
    ));
    assert_eq!(journal.resolve("t", "twin").await.unwrap(), None);
    // Names are per tenant.
    create(&*journal, "u", Some("taken")).await;

    let id = journal.resolve("t", "taken").await.unwrap().unwrap();
    assert!(matches!(
        journal
            .commit(Commit::append(
                id,
                1,
                vec![(T0, EventBody::Created(created()))]
            ))
            .await,
        Err(JournalError::CreatedNotFirst { log }) if log == id
    ));
    // A name cannot point into another tenant.
    let cross = Commit {
        names: vec![NameUpdate {
            tenant: "u".into(),
            name: "stolen".into(),
            log: id,
        }],
        ..Commit::default()
    };
    assert!(matches!(
        journal.commit(cross).await,
        Err(JournalError::UnknownLog(_))
    ));
    assert_eq!(journal.resolve("u", "stolen").await.unwrap(), None);
}

async fn a_refused_commit_leaves_its_neighbours_alone(journal: Arc<dyn Journal>) {
    let id = create(&*journal, DEFAULT_TENANT, None).await;
    // Sent back to back (a group-committing backend usually batches them);
    // they must get the same answers either way.
    let good = journal.commit(Commit::append(id, 1, vec![(T0, input("a"))]));
    let stale = journal.commit(Commit::append(id, 1, vec![(T0, input("b"))]));
    let next = journal.commit(Commit::append(id, 2, vec![(T0, input("c"))]));
    assert!(good.await.is_ok());
    assert!(matches!(
        stale.await,
        Err(JournalError::Conflict { actual: 2, .. })
    ));
    assert_eq!(next.await.unwrap().events[0].1.event.seq, 2);
    let bodies: Vec<EventBody> = journal
        .read(id, 1, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.body)
        .collect();
    assert_eq!(bodies, [input("a"), input("c")]);
    assert!(journal.verify(id).await.unwrap().is_ok());
}

async fn a_commit_can_create_append_and_name_at_once(journal: Arc<dyn Journal>) {
    let sender = create(&*journal, DEFAULT_TENANT, None).await;
    let target = new_log(DEFAULT_TENANT, None);
    let target_id = target.id;
    let commit = Commit {
        claims: Vec::new(),
        new_logs: vec![target],
        appends: vec![
            Append {
                lease: None,
                log: sender,
                expected_seq: 1,
                at_head: false,
                events: vec![(
                    T0,
                    EventBody::Sent {
                        key: "send-1".into(),
                        target: target_id.to_string(),
                    },
                )],
            },
            Append {
                lease: None,
                log: target_id,
                expected_seq: 1,
                at_head: false,
                events: vec![(
                    T0,
                    EventBody::Input {
                        from: Sender::Log {
                            log: sender.to_string(),
                            key: "send-1".into(),
                            hops: 0,
                        },
                        content: vec![ContentBlock::text("hello")],
                    },
                )],
            },
            Append {
                lease: None,
                log: target_id,
                expected_seq: 2,
                at_head: false,
                events: vec![(T0, input("again"))],
            },
        ],
        names: vec![NameUpdate {
            tenant: DEFAULT_TENANT.into(),
            name: "inbox".into(),
            log: target_id,
        }],
    };
    let committed = journal.commit(commit).await.unwrap();
    let written: Vec<(LogId, u64)> = committed
        .events
        .iter()
        .map(|(l, e)| (*l, e.event.seq))
        .collect();
    assert_eq!(
        written,
        [(target_id, 0), (sender, 1), (target_id, 1), (target_id, 2)]
    );
    assert_eq!(journal.read(target_id, 0, 10).await.unwrap().len(), 3);
    assert_eq!(
        journal.resolve(DEFAULT_TENANT, "inbox").await.unwrap(),
        Some(target_id)
    );
    assert!(journal.verify(target_id).await.unwrap().is_ok());
}

async fn names_bind_and_move(journal: Arc<dyn Journal>) {
    let old = create(&*journal, DEFAULT_TENANT, Some("support")).await;
    let new = create(&*journal, DEFAULT_TENANT, None).await;
    assert_eq!(
        journal.resolve(DEFAULT_TENANT, "support").await.unwrap(),
        Some(old)
    );

    // Compaction: `continued` on the old log and the name moves, atomically.
    let commit = Commit {
        appends: vec![Append {
            lease: None,
            log: old,
            expected_seq: 1,
            at_head: false,
            events: vec![(
                T0,
                EventBody::Continued {
                    log: new.to_string(),
                },
            )],
        }],
        names: vec![NameUpdate {
            tenant: DEFAULT_TENANT.into(),
            name: "support".into(),
            log: new,
        }],
        ..Commit::default()
    };
    journal.commit(commit).await.unwrap();
    assert_eq!(
        journal.resolve(DEFAULT_TENANT, "support").await.unwrap(),
        Some(new)
    );
    assert_eq!(
        journal.info(new).await.unwrap().unwrap().name.as_deref(),
        Some("support")
    );
    let old_info = journal.info(old).await.unwrap().unwrap();
    assert_eq!(old_info.name, None);
    assert_eq!(old_info.status, LogStatus::Finished, "`continued` ends it");
    assert_eq!(journal.resolve("elsewhere", "support").await.unwrap(), None);

    // The name is taken by the new log now.
    assert!(matches!(
        journal
            .commit(Commit::new_log(new_log(DEFAULT_TENANT, Some("support"))))
            .await,
        Err(JournalError::NameTaken { .. })
    ));
}

async fn status_and_open_effects_follow_the_events(journal: Arc<dyn Journal>) {
    let running = create(&*journal, DEFAULT_TENANT, Some("running")).await;
    let asking = create(&*journal, DEFAULT_TENANT, None).await;
    let sleeping = create(&*journal, DEFAULT_TENANT, None).await;
    let done = create(&*journal, DEFAULT_TENANT, None).await;
    let broken = create(&*journal, DEFAULT_TENANT, None).await;
    let nap = || EventBody::Requested {
        key: "nap".into(),
        effect: RequestedEffect::Sleep { until: T0 + 60_000 },
    };
    let append = |log, events| Append {
        lease: None,
        log,
        expected_seq: 1,
        at_head: false,
        events,
    };
    let commit = Commit {
        appends: vec![
            append(
                running,
                vec![
                    (
                        T0,
                        EventBody::Requested {
                            key: "call-1".into(),
                            effect: RequestedEffect::Tool(tool_call("call-1")),
                        },
                    ),
                    (T0, nap()),
                ],
            ),
            append(
                asking,
                vec![(
                    T0,
                    EventBody::ApprovalRequested {
                        key: "ask-1".into(),
                        tool: None,
                        question: Some(Question { text: "Go?".into() }),
                    },
                )],
            ),
            append(sleeping, vec![(T0, nap())]),
            append(
                done,
                vec![(
                    T0,
                    EventBody::Finished {
                        key: "finish".into(),
                        result: "42".into(),
                    },
                )],
            ),
            append(
                broken,
                vec![(
                    T0,
                    EventBody::GuestFailed {
                        message: "out of fuel".into(),
                    },
                )],
            ),
        ],
        ..Commit::default()
    };
    journal.commit(commit).await.unwrap();

    let status = async |id| journal.info(id).await.unwrap().unwrap().status;
    assert_eq!(status(running).await, LogStatus::Running);
    assert_eq!(status(asking).await, LogStatus::WaitingApproval);
    assert_eq!(status(sleeping).await, LogStatus::Sleeping);
    assert_eq!(status(done).await, LogStatus::Finished);
    assert_eq!(status(broken).await, LogStatus::Failed);
    let open = journal.info(running).await.unwrap().unwrap().open;
    let keys: Vec<&str> = open.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["call-1", "nap"], "ordered by key");
    assert_eq!(open[0].effect, RequestedEffect::Tool(tool_call("call-1")));
    assert!(!open[0].awaiting_approval);
    assert_eq!(
        journal.info(asking).await.unwrap().unwrap().open,
        [OpenEffect {
            unstarted: false,
            key: "ask-1".into(),
            effect: RequestedEffect::Ask(Question { text: "Go?".into() }),
            awaiting_approval: true,
        }]
    );
    let mut resumable = vec![running, asking, sleeping];
    resumable.sort();
    assert_eq!(journal.open_logs(None, 1000).await.unwrap(), resumable);

    // The tool call held for approval, then allowed: open again, running.
    let held = EventBody::ApprovalRequested {
        key: "call-1".into(),
        tool: Some(tool_call("call-1")),
        question: None,
    };
    journal
        .commit(Commit::append(running, 3, vec![(T0, held)]))
        .await
        .unwrap();
    assert_eq!(status(running).await, LogStatus::WaitingApproval);
    let allowed = EventBody::ApprovalDecided {
        key: "call-1".into(),
        allow: true,
        by: "cli".into(),
        reason: None,
    };
    journal
        .commit(Commit::append(running, 4, vec![(T0, allowed)]))
        .await
        .unwrap();
    assert_eq!(status(running).await, LogStatus::Running);

    // A retryable failure leaves the effect open; completion and a final
    // failure end it.
    let failed = |retryable| EventBody::Failed {
        key: "nap".into(),
        error: ErrorKind::Interrupted,
        message: "host stopped".into(),
        retryable,
        attempt: 1,
    };
    let events = vec![
        (T0, failed(true)),
        (
            T0,
            EventBody::Completed {
                key: "call-1".into(),
                outcome: Outcome::tool_text("milk", false),
            },
        ),
    ];
    journal
        .commit(Commit::append(running, 5, events))
        .await
        .unwrap();
    assert_eq!(status(running).await, LogStatus::Sleeping);
    journal
        .commit(Commit::append(running, 7, vec![(T0, failed(false))]))
        .await
        .unwrap();
    assert_eq!(status(running).await, LogStatus::Idle);

    let decided = EventBody::ApprovalDecided {
        key: "ask-1".into(),
        allow: true,
        by: "cli".into(),
        reason: Some("yes".into()),
    };
    journal
        .commit(Commit::append(asking, 2, vec![(T0, decided)]))
        .await
        .unwrap();
    assert_eq!(
        status(asking).await,
        LogStatus::Idle,
        "an answered ask ends"
    );
    let changed = EventBody::GuestChanged {
        from: guest("counter"),
        to: guest("counter-2"),
    };
    journal
        .commit(Commit::append(broken, 2, vec![(T0, changed)]))
        .await
        .unwrap();
    let fixed = journal.info(broken).await.unwrap().unwrap();
    assert_eq!(fixed.status, LogStatus::Idle);
    assert_eq!(fixed.guest, guest("counter-2"));
    assert_eq!(journal.open_logs(None, 1000).await.unwrap(), [sleeping]);
    for id in [running, asking, sleeping, done, broken] {
        assert!(journal.verify(id).await.unwrap().is_ok());
    }
}

async fn blobs_are_stored_by_digest_per_tenant(journal: Arc<dyn Journal>) {
    let bytes = vec![9u8; 40_000];
    let a = journal.put_blob("t", &bytes).await.unwrap();
    assert_eq!(a.digest, digest_of(&bytes));
    assert_eq!(a.size, 40_000);
    // Storing it again changes nothing.
    assert_eq!(journal.put_blob("t", &bytes).await.unwrap(), a);
    assert_eq!(
        journal.blob("t", &a.digest).await.unwrap().as_deref(),
        Some(&bytes[..])
    );
    // Another tenant does not see it, until it stores the same bytes itself.
    assert_eq!(journal.blob("u", &a.digest).await.unwrap(), None);
    assert_eq!(journal.put_blob("u", &bytes).await.unwrap(), a);
    assert!(journal.blob("u", &a.digest).await.unwrap().is_some());
    assert_eq!(journal.blob("t", "sha256:00").await.unwrap(), None);
}

async fn guests_are_stored_once_by_digest(journal: Arc<dyn Journal>) {
    let bytes = b"\0asm fake component";
    let a = journal.put_guest("t", "counter", bytes).await.unwrap();
    assert_eq!(a.name, "counter");
    assert_eq!(a.digest, digest_of(bytes));
    let b = journal.put_guest("u", "other-name", bytes).await.unwrap();
    assert_eq!(a.digest, b.digest);
    assert_eq!(
        journal.guest_bytes(&a.digest).await.unwrap().as_deref(),
        Some(&bytes[..])
    );
    assert_eq!(
        journal.guest_by_name("t", "counter").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(journal.guest_by_name("u", "counter").await.unwrap(), None);
    assert_eq!(journal.guest_bytes("sha256:00").await.unwrap(), None);

    // Rebinding a name moves it to the new bytes; the old bytes stay.
    let v2 = journal
        .put_guest("t", "counter", b"\0asm v2")
        .await
        .unwrap();
    assert_ne!(v2.digest, a.digest);
    assert_eq!(
        journal.guest_by_name("t", "counter").await.unwrap(),
        Some(v2.clone())
    );
    assert!(journal.guest_bytes(&a.digest).await.unwrap().is_some());
    let alpha = journal.put_guest("t", "alpha", b"\0asm a").await.unwrap();
    assert_eq!(journal.guests("t").await.unwrap(), [alpha, v2], "by name");
    assert_eq!(journal.guests("u").await.unwrap(), [b]);
    assert!(journal.guests("nobody").await.unwrap().is_empty());
}

/// A fork of `parent` at `seq`, in `tenant`.
pub(crate) fn fork_of(tenant: &str, parent: LogId, seq: u64) -> NewLog {
    let mut nl = new_log(tenant, None);
    nl.created.parent = Some(LogPos {
        log: parent.to_string(),
        seq,
    });
    nl
}

async fn forks_read_through_their_ancestry(journal: Arc<dyn Journal>) {
    let root = create(&*journal, "t", None).await;
    let texts = ["a", "b", "c"].map(|t| (T0, input(t))).to_vec();
    journal
        .commit(Commit::append(root, 1, texts))
        .await
        .unwrap();
    // At seq 1: the fork's own events start at seq 2.
    let early = fork_of("t", root, 1);
    let early_id = early.id;
    let written = journal.commit(Commit::new_log(early)).await.unwrap();
    assert_eq!(written.events[0].1.event.seq, 2);
    journal
        .commit(Commit::append(early_id, 3, vec![(T0, input("mine"))]))
        .await
        .unwrap();
    let seen = journal.read(early_id, 0, 100).await.unwrap();
    let root_events = journal.read(root, 0, 100).await.unwrap();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[..2], root_events[..2], "the shared prefix");
    assert!(matches!(seen[2].event.body, EventBody::Created(_)));
    assert_eq!(seen[3].event.body, input("mine"));
    assert!(verify_events(&seen).is_ok());
    assert_eq!(journal.verify(early_id).await.unwrap().events, 4);
    assert_eq!(journal.read(early_id, 1, 2).await.unwrap(), seen[1..3]);
    assert_eq!(
        journal.parent(early_id).await.unwrap(),
        Some(LogPos {
            log: root.to_string(),
            seq: 1
        })
    );
    let info = journal.info(early_id).await.unwrap().unwrap();
    assert_eq!((info.next_seq, info.last_hash), (4, seen[3].hash));

    // A fork of a fork, inside the grandparent's prefix.
    let deep = fork_of("t", early_id, 0);
    let deep_id = deep.id;
    journal.commit(Commit::new_log(deep)).await.unwrap();
    let deep_events = journal.read(deep_id, 0, 100).await.unwrap();
    assert_eq!(deep_events[0], root_events[0]);
    assert_eq!(deep_events.len(), 2);
    assert!(journal.verify(deep_id).await.unwrap().is_ok());

    // A fork at the head takes over the open effects; an earlier one does not.
    let req = EventBody::Requested {
        key: "call-1".into(),
        effect: RequestedEffect::Tool(tool_call("call-1")),
    };
    journal
        .commit(Commit::append(root, 4, vec![(T0, req)]))
        .await
        .unwrap();
    let at_head = fork_of("t", root, 4);
    let before = fork_of("t", root, 3);
    let (head_id, before_id) = (at_head.id, before.id);
    journal.commit(Commit::new_log(at_head)).await.unwrap();
    journal.commit(Commit::new_log(before)).await.unwrap();
    assert_eq!(journal.info(head_id).await.unwrap().unwrap().open.len(), 1);
    assert_eq!(
        journal.info(head_id).await.unwrap().unwrap().status,
        LogStatus::Running
    );
    assert!(
        journal
            .info(before_id)
            .await
            .unwrap()
            .unwrap()
            .open
            .is_empty()
    );

    // Refusals: past the head, another tenant's log, not a log id.
    assert!(matches!(
        journal.commit(Commit::new_log(fork_of("t", root, 5))).await,
        Err(JournalError::NoSeq { log, seq: 5, .. }) if log == root
    ));
    assert!(matches!(
        journal.commit(Commit::new_log(fork_of("u", root, 0))).await,
        Err(JournalError::UnknownLog(l)) if l == root
    ));
    let mut bad = new_log("t", None);
    bad.created.parent = Some(LogPos {
        log: "not-a-log".into(),
        seq: 0,
    });
    assert!(matches!(
        journal.commit(Commit::new_log(bad)).await,
        Err(JournalError::BadParent { parent }) if parent == "not-a-log"
    ));
    assert_eq!(journal.count("t").await.unwrap().logs, 5);
}

async fn the_key_index_keeps_keys_decisions_and_its_highest_mark(journal: Arc<dyn Journal>) {
    let (log, other) = (
        create(&*journal, "t", None).await,
        create(&*journal, "t", None).await,
    );
    let key = |k: &str, decided| IndexedKey {
        key: k.into(),
        decided,
    };
    // Never indexed: mark 0, nothing found.
    assert_eq!(
        journal.indexed_keys(log, &["a"]).await.unwrap(),
        IndexedKeys::default()
    );
    journal
        .index_keys(log, 5, &[key("a", false), key("q", true)])
        .await
        .unwrap();
    let found = journal.indexed_keys(log, &["a", "q", "zz"]).await.unwrap();
    assert_eq!(found.mark, 5);
    let mut keys = found.found;
    keys.sort_by(|x, y| x.key.cmp(&y.key));
    assert_eq!(keys, vec![key("a", false), key("q", true)]);
    // The mark never goes back; a decision once indexed stays; keys are the
    // log's own.
    journal
        .index_keys(log, 3, &[key("a", true), key("q", false), key("b", false)])
        .await
        .unwrap();
    let found = journal.indexed_keys(log, &["a", "b", "q"]).await.unwrap();
    assert_eq!(found.mark, 5);
    assert_eq!(found.found.iter().filter(|k| k.decided).count(), 2);
    assert_eq!(found.found.len(), 3);
    assert_eq!(
        journal.indexed_keys(other, &["a"]).await.unwrap(),
        IndexedKeys::default()
    );
    // Asking about no key answers the mark.
    journal.index_keys(log, 9, &[]).await.unwrap();
    assert_eq!(journal.indexed_keys(log, &[]).await.unwrap().mark, 9);
}

async fn snapshots_keep_the_newest_per_guest(journal: Arc<dyn Journal>) {
    let log = create(&*journal, "t", None).await;
    let (a, b) = ("sha256:aa", "sha256:bb");
    journal.put_snapshot(log, 3, a, b"a3").await.unwrap();
    journal.put_snapshot(log, 5, b, b"b5").await.unwrap();
    assert_eq!(
        journal.latest_snapshot(log, a, 10).await.unwrap(),
        Some((3, b"a3".to_vec()))
    );
    assert_eq!(
        journal.latest_snapshot(log, a, 3).await.unwrap(),
        None,
        "below"
    );
    assert_eq!(journal.latest_snapshot(log, a, 0).await.unwrap(), None);
    assert_eq!(
        journal.latest_snapshot(log, "sha256:cc", 10).await.unwrap(),
        None
    );
    // A newer record of a guest replaces its older ones, not another guest's.
    journal.put_snapshot(log, 7, a, b"a7").await.unwrap();
    assert_eq!(
        journal.snapshots(log).await.unwrap(),
        [
            (5, b.to_owned(), b"b5".to_vec()),
            (7, a.to_owned(), b"a7".to_vec())
        ]
    );
    assert_eq!(journal.latest_snapshot(log, a, 7).await.unwrap(), None);
    assert_eq!(
        journal.latest_snapshot(log, a, 8).await.unwrap(),
        Some((7, b"a7".to_vec()))
    );
    assert!(journal.snapshots(LogId::now_v7()).await.unwrap().is_empty());
}

/// A compaction as the host writes it: `old` gains `continued` at
/// `expected_seq`, and the new log's `created` points back at it.
pub(crate) fn compaction(old: LogId, expected_seq: u64, tenant: &str) -> (LogId, Commit) {
    let mut nl = new_log(tenant, None);
    nl.created.compacted_from = Some(LogPos {
        log: old.to_string(),
        seq: expected_seq,
    });
    nl.created.summary = Some("so far".into());
    let id = nl.id;
    let commit = Commit {
        claims: Vec::new(),
        new_logs: vec![nl],
        appends: vec![Append {
            lease: None,
            log: old,
            expected_seq,
            at_head: false,
            events: vec![(
                T0,
                EventBody::Continued {
                    log: id.to_string(),
                },
            )],
        }],
        names: vec![],
    };
    (id, commit)
}

pub(crate) async fn count(journal: &dyn Journal, tenant: &str) -> (u64, u64) {
    let c = journal.count(tenant).await.expect("count");
    (c.logs, c.sessions)
}

/// Every log of a tenant, walking the pages `page` at a time.
pub(crate) async fn walk(journal: &dyn Journal, tenant: &str, page: usize) -> Vec<LogId> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let got = journal.list_page(tenant, after, page).await.expect("page");
        assert!(got.logs.len() <= page.max(1), "{} > {page}", got.logs.len());
        assert!(
            got.logs.iter().all(|i| i.tenant == tenant),
            "a page of {tenant} shows another tenant's log"
        );
        out.extend(got.logs.iter().map(|i| i.id));
        match got.next {
            Some(next) => {
                assert_eq!(Some(next), out.last().copied(), "next is the page's last");
                after = Some(next);
            }
            None => return out,
        }
    }
}

async fn the_limit_holds_for_forks_and_imports_not_compactions(journal: Arc<dyn Journal>) {
    let limited = |tenant: &str| NewLog {
        session_limit: Some(2),
        ..new_log(tenant, None)
    };
    let first = limited("t");
    let first_id = first.id;
    journal.commit(Commit::new_log(first)).await.expect("first");
    let fork = NewLog {
        session_limit: Some(2),
        ..fork_of("t", first_id, 0)
    };
    journal
        .commit(Commit::new_log(fork))
        .await
        .expect("a fork, the second");
    let refused = journal.commit(Commit::new_log(limited("t"))).await;
    assert!(
        matches!(refused, Err(JournalError::LimitReached { ref tenant, limit: 2 }) if tenant == "t"),
        "{refused:?}"
    );
    // Another tenant has its own count.
    journal.commit(Commit::new_log(limited("u"))).await.unwrap();
    let (next, commit) = compaction(first_id, 1, "t");
    journal
        .commit(commit)
        .await
        .expect("a compaction is never refused");
    assert_eq!(count(&*journal, "t").await, (3, 2));

    // Two new sessions of one commit count together: neither is written.
    let pair = Commit {
        new_logs: vec![
            NewLog {
                session_limit: Some(3),
                ..new_log("t", None)
            },
            NewLog {
                session_limit: Some(3),
                ..new_log("t", None)
            },
        ],
        ..Commit::default()
    };
    assert!(matches!(
        journal.commit(pair).await,
        Err(JournalError::LimitReached { limit: 3, .. })
    ));
    assert_eq!(count(&*journal, "t").await, (3, 2));

    journal
        .put_guest("t", "counter", b"counter")
        .await
        .expect("guest");
    let events = journal.read(next, 0, 100).await.expect("read");
    let refused = journal.import("t", None, &events, Some(2)).await;
    assert!(
        matches!(refused, Err(JournalError::LimitReached { limit: 2, .. })),
        "{refused:?}"
    );
    journal
        .import("t", None, &events, Some(3))
        .await
        .expect("under 3");
    assert_eq!(count(&*journal, "t").await, (4, 3));
    assert_eq!(count(&*journal, "u").await, (1, 1));
    assert_eq!(count(&*journal, "nobody").await, (0, 0));
    assert_eq!(journal.count_logs().await.unwrap(), 5);
}

async fn pages_walk_each_tenants_logs_once_and_never_mix_them(journal: Arc<dyn Journal>) {
    const N: usize = 23;
    let tenants = ["a", "b", "c"];
    let mut expected: BTreeMap<&str, Vec<LogId>> = BTreeMap::new();
    // Interleaved, so that each tenant's logs are spread among the others'.
    for _ in 0..N {
        for tenant in tenants {
            expected
                .entry(tenant)
                .or_default()
                .push(create(&*journal, tenant, None).await);
        }
    }
    for tenant in tenants {
        assert_eq!(count(&*journal, tenant).await, (N as u64, N as u64));
        for page in [1, 2, 7, N - 1, N, N + 1, 1000] {
            assert_eq!(
                walk(&*journal, tenant, page).await,
                expected[tenant],
                "{tenant} by {page}"
            );
        }
    }
    // A full last page says so: no `next` to an empty page.
    let whole = journal.list_page("a", None, N).await.expect("page");
    assert_eq!((whole.logs.len(), whole.next), (N, None));
    // `after` another tenant's id still shows only this tenant's logs: those
    // created after it.
    let b5 = expected["b"][5];
    let page = journal.list_page("a", Some(b5), 1000).await.expect("page");
    let ids: Vec<LogId> = page.logs.iter().map(|i| i.id).collect();
    assert_eq!(ids, expected["a"][6..]);
    // A limit of 0 is taken as 1.
    assert_eq!(
        journal
            .list_page("c", None, 0)
            .await
            .expect("page")
            .logs
            .len(),
        1
    );
    assert_eq!(
        journal.list_page("nobody", None, 10).await.unwrap(),
        LogPage::default()
    );
}

async fn import_checks_the_chain_and_stands_alone(journal: Arc<dyn Journal>) {
    let root = create(&*journal, "t", None).await;
    let texts = ["first", "second", "third"]
        .map(|t| (T0, input(t)))
        .to_vec();
    journal
        .commit(Commit::append(root, 1, texts))
        .await
        .unwrap();
    let fork = fork_of("t", root, 2);
    let fork_id = fork.id;
    journal.commit(Commit::new_log(fork)).await.unwrap();
    let ask = EventBody::ApprovalRequested {
        key: "ask".into(),
        tool: None,
        question: Some(Question { text: "?".into() }),
    };
    journal
        .commit(Commit::append(fork_id, 4, vec![(T0, ask)]))
        .await
        .unwrap();
    let events = journal.read(fork_id, 0, 100).await.unwrap();

    // The guest must be stored first.
    assert!(matches!(
        journal.import("u", Some("copy"), &events, None).await,
        Err(JournalError::GuestNotStored { .. })
    ));
    journal.put_guest("u", "counter", b"counter").await.unwrap();
    assert!(matches!(
        journal.import("u", None, &[], None).await,
        Err(JournalError::BadLog { seq: None, .. })
    ));
    // A changed event is named by its seq; nothing is written.
    let mut tampered = events.clone();
    tampered[2].event.body = input("SECOND");
    match journal.import("u", None, &tampered, None).await {
        Err(e @ JournalError::BadLog { seq: Some(2), .. }) => {
            assert!(e.to_string().starts_with("seq 2:"), "{e}")
        }
        other => panic!("expected the chain to be refused, got {other:?}"),
    }
    let mut gap = events.clone();
    gap.remove(1);
    assert!(matches!(
        journal.import("u", None, &gap, None).await,
        Err(JournalError::BadLog { seq: Some(_), .. })
    ));
    assert_eq!(count(&*journal, "u").await, (0, 0));

    let copy = journal
        .import("u", Some("copy"), &events, None)
        .await
        .unwrap();
    assert_ne!(copy, fork_id);
    assert_eq!(
        journal.read(copy, 0, 100).await.unwrap(),
        events,
        "byte for byte"
    );
    assert_eq!(journal.parent(copy).await.unwrap(), None, "it stands alone");
    assert_eq!(journal.resolve("u", "copy").await.unwrap(), Some(copy));
    let info = journal.info(copy).await.unwrap().unwrap();
    assert_eq!(info.tenant, "u");
    assert_eq!(info.name.as_deref(), Some("copy"));
    assert_eq!(info.next_seq, events.len() as u64);
    assert_eq!(info.status, LogStatus::WaitingApproval);
    assert!(journal.verify(copy).await.unwrap().is_ok());
    assert!(matches!(
        journal.import("u", Some("copy"), &events, None).await,
        Err(JournalError::NameTaken { .. })
    ));
    assert_eq!(count(&*journal, "u").await, (1, 1));
}

/// What a `send` writes: the sender's events at its expected seq and the
/// target's input at the target's head, whatever it is, in one commit.
async fn an_append_at_the_head_chains_after_whatever_is_there(journal: Arc<dyn Journal>) {
    let sender = create(&*journal, DEFAULT_TENANT, None).await;
    let target = create(&*journal, DEFAULT_TENANT, None).await;
    // The target moves on, unknown to the sender.
    journal
        .commit(Commit::append(
            target,
            1,
            vec![(T0 + 1, input("a")), (T0 + 2, input("b"))],
        ))
        .await
        .expect("the target's own writer");
    let mut commit = Commit::append(sender, 1, vec![(T0 + 3, input("sent"))]);
    commit
        .appends
        .push(Append::to_head(target, vec![(T0 + 3, input("delivered"))]));
    // A second one to the same log in the same commit chains after the first.
    commit
        .appends
        .push(Append::to_head(target, vec![(T0 + 3, input("again"))]));
    let committed = journal.commit(commit).await.expect("one commit");
    let seqs: Vec<(LogId, u64)> = committed
        .events
        .iter()
        .map(|(log, e)| (*log, e.event.seq))
        .collect();
    assert_eq!(seqs, vec![(sender, 1), (target, 3), (target, 4)]);
    let events = journal.read(target, 0, 10).await.expect("read");
    let texts: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Input { content, .. } => Some(plain_text(content)),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["a", "b", "delivered", "again"]);
    assert_eq!(
        journal.verify(target).await.expect("verify"),
        Verified {
            events: 5,
            first_bad: None
        }
    );
    assert_eq!(journal.info(target).await.unwrap().unwrap().next_seq, 5);

    // The sender's own append is still checked: a stale one refuses the
    // whole commit, and the target gets nothing.
    let mut stale = Commit::append(sender, 1, vec![(T0 + 4, input("stale"))]);
    stale
        .appends
        .push(Append::to_head(target, vec![(T0 + 4, input("never"))]));
    assert!(matches!(
        journal.commit(stale).await,
        Err(JournalError::Conflict { .. })
    ));
    assert_eq!(journal.info(target).await.unwrap().unwrap().next_seq, 5);
    // An unknown log is refused, at its head or not.
    assert!(matches!(
        journal
            .commit(Commit {
                appends: vec![Append::to_head(LogId::now_v7(), vec![(T0, input("x"))])],
                ..Commit::default()
            })
            .await,
        Err(JournalError::UnknownLog(_))
    ));
}
