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

mod host;
mod model;

/// A journal under test, with whatever must outlive it (a temp dir).
pub(crate) struct Backend {
    pub(crate) journal: Arc<dyn Journal>,
    _dir: Option<TempDir>,
}

/// A [`RedbJournal`] in a fresh temp file.
pub(crate) fn redb() -> Backend {
    let dir = TempDir::new().expect("temp dir");
    let journal = RedbJournal::open(&dir.path().join("journal.redb"), JournalConfig::default())
        .expect("open journal");
    Backend {
        journal,
        _dir: Some(dir),
    }
}

/// An empty [`MemoryJournal`].
pub(crate) fn memory() -> Backend {
    Backend {
        journal: MemoryJournal::new(),
        _dir: None,
    }
}

/// Runs the named checks as `#[tokio::test]`s against the backend `$open` makes.
macro_rules! contract {
    ($open:path => $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let backend = $open();
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
            forks_read_through_their_ancestry,
            snapshots_keep_the_newest_per_guest,
            the_limit_holds_for_forks_and_imports_not_compactions,
            pages_walk_each_tenants_logs_once_and_never_mix_them,
            import_checks_the_chain_and_stands_alone,
            checked_reads_page_through_a_sound_log_as_plain_ones,
        );
    };
}

mod redb_backend {
    every_check!(super::redb);
}

mod memory_backend {
    every_check!(super::memory);
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
        let page = journal.read_checked(id, &mut pos, 4).expect("a sound log");
        if page.is_empty() {
            break;
        }
        checked.extend(page);
    }
    assert_eq!(checked, journal.read(id, 0, 100).unwrap());
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

    let events = journal.read(id, 0, 100).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].event.body, EventBody::Created(created()));
    assert_eq!(events[2].event.body, input("two"));
    assert_eq!(events[2].event.at, T0 + 2);
    let written: Vec<StoredEvent> = committed.events.into_iter().map(|(_, e)| e).collect();
    assert_eq!(events[1..], written[..]);
    assert!(verify_events(&events).is_ok());
    assert_eq!(journal.read(id, 2, 100).unwrap().len(), 1);
    assert_eq!(journal.read(id, 0, 2).unwrap().len(), 2);
    assert!(journal.read(id, 0, 0).unwrap().is_empty());
    assert!(journal.read(id, 3, 100).unwrap().is_empty());
    assert!(journal.read(LogId::now_v7(), 0, 100).unwrap().is_empty());

    let info = journal.info(id).unwrap().expect("exists");
    assert_eq!(info.next_seq, 3);
    assert_eq!(info.last_hash, events[2].hash);
    assert_eq!(info.tenant, DEFAULT_TENANT);
    assert_eq!(info.name.as_deref(), Some("bot"));
    assert_eq!(info.guest, guest("counter"));
    assert_eq!(info.created_at, T0);
    assert_eq!(info.status, LogStatus::Idle);
    assert_eq!(journal.resolve(DEFAULT_TENANT, "bot").unwrap(), Some(id));
    assert!(journal.info(LogId::now_v7()).unwrap().is_none());
    assert_eq!(journal.count_logs().unwrap(), 1);
    assert_eq!(journal.parent(id).unwrap(), None);
    assert!(matches!(
        journal.parent(LogId::now_v7()),
        Err(JournalError::UnknownLog(_))
    ));
    assert_eq!(
        journal.verify(id).unwrap(),
        Verified {
            events: 3,
            first_bad: None
        }
    );
    assert!(matches!(
        journal.verify(LogId::now_v7()),
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
        new_logs: vec![extra],
        appends: vec![
            Append {
                log: other,
                expected_seq: 1,
                events: vec![(T0, input("fine"))],
            },
            Append {
                log: id,
                expected_seq: 5,
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
    assert_eq!(journal.read(id, 0, 10).unwrap().len(), 1);
    assert_eq!(journal.read(other, 0, 10).unwrap().len(), 1);
    assert!(journal.info(extra_id).unwrap().is_none());
    assert_eq!(journal.resolve(DEFAULT_TENANT, "never").unwrap(), None);
    assert_eq!(journal.count(DEFAULT_TENANT).unwrap().logs, 2);

    // The head did not move: the right seq still works.
    journal
        .commit(Commit::append(id, 1, vec![(T0, input("ok"))]))
        .await
        .unwrap();
    assert_eq!(journal.info(id).unwrap().unwrap().next_seq, 2);
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
    assert_eq!(journal.resolve("t", "twin").unwrap(), None);
    // Names are per tenant.
    create(&*journal, "u", Some("taken")).await;

    let id = journal.resolve("t", "taken").unwrap().unwrap();
    assert!(matches!(
        journal
            .commit(Commit::append(
                id,
                1,
                vec![(T0, EventBody::Created(created()))]
            ))
            .await,
        Err(JournalError::Invalid(_))
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
    assert_eq!(journal.resolve("u", "stolen").unwrap(), None);
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
        .unwrap()
        .into_iter()
        .map(|e| e.event.body)
        .collect();
    assert_eq!(bodies, [input("a"), input("c")]);
    assert!(journal.verify(id).unwrap().is_ok());
}

async fn a_commit_can_create_append_and_name_at_once(journal: Arc<dyn Journal>) {
    let sender = create(&*journal, DEFAULT_TENANT, None).await;
    let target = new_log(DEFAULT_TENANT, None);
    let target_id = target.id;
    let commit = Commit {
        new_logs: vec![target],
        appends: vec![
            Append {
                log: sender,
                expected_seq: 1,
                events: vec![(
                    T0,
                    EventBody::Sent {
                        key: "send-1".into(),
                        target: target_id.to_string(),
                    },
                )],
            },
            Append {
                log: target_id,
                expected_seq: 1,
                events: vec![(
                    T0,
                    EventBody::Input {
                        from: Sender::Log {
                            log: sender.to_string(),
                            key: "send-1".into(),
                        },
                        content: vec![ContentBlock::text("hello")],
                    },
                )],
            },
            Append {
                log: target_id,
                expected_seq: 2,
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
    assert_eq!(journal.read(target_id, 0, 10).unwrap().len(), 3);
    assert_eq!(
        journal.resolve(DEFAULT_TENANT, "inbox").unwrap(),
        Some(target_id)
    );
    assert!(journal.verify(target_id).unwrap().is_ok());
}

async fn names_bind_and_move(journal: Arc<dyn Journal>) {
    let old = create(&*journal, DEFAULT_TENANT, Some("support")).await;
    let new = create(&*journal, DEFAULT_TENANT, None).await;
    assert_eq!(
        journal.resolve(DEFAULT_TENANT, "support").unwrap(),
        Some(old)
    );

    // Compaction: `continued` on the old log and the name moves, atomically.
    let commit = Commit {
        appends: vec![Append {
            log: old,
            expected_seq: 1,
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
        journal.resolve(DEFAULT_TENANT, "support").unwrap(),
        Some(new)
    );
    assert_eq!(
        journal.info(new).unwrap().unwrap().name.as_deref(),
        Some("support")
    );
    let old_info = journal.info(old).unwrap().unwrap();
    assert_eq!(old_info.name, None);
    assert_eq!(old_info.status, LogStatus::Finished, "`continued` ends it");
    assert_eq!(journal.resolve("elsewhere", "support").unwrap(), None);

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
        log,
        expected_seq: 1,
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

    let status = |id| journal.info(id).unwrap().unwrap().status;
    assert_eq!(status(running), LogStatus::Running);
    assert_eq!(status(asking), LogStatus::WaitingApproval);
    assert_eq!(status(sleeping), LogStatus::Sleeping);
    assert_eq!(status(done), LogStatus::Finished);
    assert_eq!(status(broken), LogStatus::Failed);
    let open = journal.info(running).unwrap().unwrap().open;
    let keys: Vec<&str> = open.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["call-1", "nap"], "ordered by key");
    assert_eq!(open[0].effect, RequestedEffect::Tool(tool_call("call-1")));
    assert!(!open[0].awaiting_approval);
    assert_eq!(
        journal.info(asking).unwrap().unwrap().open,
        [OpenEffect {
            key: "ask-1".into(),
            effect: RequestedEffect::Ask(Question { text: "Go?".into() }),
            awaiting_approval: true,
        }]
    );
    let mut resumable = vec![running, asking, sleeping];
    resumable.sort();
    assert_eq!(journal.logs_with_open_effects().unwrap(), resumable);

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
    assert_eq!(status(running), LogStatus::WaitingApproval);
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
    assert_eq!(status(running), LogStatus::Running);

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
                outcome: Outcome::Tool {
                    content: "milk".into(),
                    is_error: false,
                },
            },
        ),
    ];
    journal
        .commit(Commit::append(running, 5, events))
        .await
        .unwrap();
    assert_eq!(status(running), LogStatus::Sleeping);
    journal
        .commit(Commit::append(running, 7, vec![(T0, failed(false))]))
        .await
        .unwrap();
    assert_eq!(status(running), LogStatus::Idle);

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
    assert_eq!(status(asking), LogStatus::Idle, "an answered ask ends");
    let changed = EventBody::GuestChanged {
        from: guest("counter"),
        to: guest("counter-2"),
    };
    journal
        .commit(Commit::append(broken, 2, vec![(T0, changed)]))
        .await
        .unwrap();
    let fixed = journal.info(broken).unwrap().unwrap();
    assert_eq!(fixed.status, LogStatus::Idle);
    assert_eq!(fixed.guest, guest("counter-2"));
    assert_eq!(journal.logs_with_open_effects().unwrap(), [sleeping]);
    for id in [running, asking, sleeping, done, broken] {
        assert!(journal.verify(id).unwrap().is_ok());
    }
}

async fn guests_are_stored_once_by_digest(journal: Arc<dyn Journal>) {
    let bytes = b"\0asm fake component";
    let a = journal.put_guest("t", "counter", bytes).unwrap();
    assert_eq!(a.name, "counter");
    assert_eq!(a.digest, digest_of(bytes));
    let b = journal.put_guest("u", "other-name", bytes).unwrap();
    assert_eq!(a.digest, b.digest);
    assert_eq!(
        journal.guest_bytes(&a.digest).unwrap().as_deref(),
        Some(&bytes[..])
    );
    assert_eq!(
        journal.guest_by_name("t", "counter").unwrap(),
        Some(a.clone())
    );
    assert_eq!(journal.guest_by_name("u", "counter").unwrap(), None);
    assert_eq!(journal.guest_bytes("sha256:00").unwrap(), None);

    // Rebinding a name moves it to the new bytes; the old bytes stay.
    let v2 = journal.put_guest("t", "counter", b"\0asm v2").unwrap();
    assert_ne!(v2.digest, a.digest);
    assert_eq!(
        journal.guest_by_name("t", "counter").unwrap(),
        Some(v2.clone())
    );
    assert!(journal.guest_bytes(&a.digest).unwrap().is_some());
    let alpha = journal.put_guest("t", "alpha", b"\0asm a").unwrap();
    assert_eq!(journal.guests("t").unwrap(), [alpha, v2], "by name");
    assert_eq!(journal.guests("u").unwrap(), [b]);
    assert!(journal.guests("nobody").unwrap().is_empty());
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
    let seen = journal.read(early_id, 0, 100).unwrap();
    let root_events = journal.read(root, 0, 100).unwrap();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[..2], root_events[..2], "the shared prefix");
    assert!(matches!(seen[2].event.body, EventBody::Created(_)));
    assert_eq!(seen[3].event.body, input("mine"));
    assert!(verify_events(&seen).is_ok());
    assert_eq!(journal.verify(early_id).unwrap().events, 4);
    assert_eq!(journal.read(early_id, 1, 2).unwrap(), seen[1..3]);
    assert_eq!(
        journal.parent(early_id).unwrap(),
        Some(LogPos {
            log: root.to_string(),
            seq: 1
        })
    );
    let info = journal.info(early_id).unwrap().unwrap();
    assert_eq!((info.next_seq, info.last_hash), (4, seen[3].hash));

    // A fork of a fork, inside the grandparent's prefix.
    let deep = fork_of("t", early_id, 0);
    let deep_id = deep.id;
    journal.commit(Commit::new_log(deep)).await.unwrap();
    let deep_events = journal.read(deep_id, 0, 100).unwrap();
    assert_eq!(deep_events[0], root_events[0]);
    assert_eq!(deep_events.len(), 2);
    assert!(journal.verify(deep_id).unwrap().is_ok());

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
    assert_eq!(journal.info(head_id).unwrap().unwrap().open.len(), 1);
    assert_eq!(
        journal.info(head_id).unwrap().unwrap().status,
        LogStatus::Running
    );
    assert!(journal.info(before_id).unwrap().unwrap().open.is_empty());

    // Refusals: past the head, another tenant's log, not a log id.
    assert!(matches!(
        journal.commit(Commit::new_log(fork_of("t", root, 5))).await,
        Err(JournalError::Invalid(_))
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
        Err(JournalError::Invalid(_))
    ));
    assert_eq!(journal.count("t").unwrap().logs, 5);
}

async fn snapshots_keep_the_newest_per_guest(journal: Arc<dyn Journal>) {
    let log = create(&*journal, "t", None).await;
    let (a, b) = ("sha256:aa", "sha256:bb");
    journal.put_snapshot(log, 3, a, b"a3").unwrap();
    journal.put_snapshot(log, 5, b, b"b5").unwrap();
    assert_eq!(
        journal.latest_snapshot(log, a, 10).unwrap(),
        Some((3, b"a3".to_vec()))
    );
    assert_eq!(journal.latest_snapshot(log, a, 3).unwrap(), None, "below");
    assert_eq!(journal.latest_snapshot(log, a, 0).unwrap(), None);
    assert_eq!(journal.latest_snapshot(log, "sha256:cc", 10).unwrap(), None);
    // A newer record of a guest replaces its older ones, not another guest's.
    journal.put_snapshot(log, 7, a, b"a7").unwrap();
    assert_eq!(
        journal.snapshots(log).unwrap(),
        [
            (5, b.to_owned(), b"b5".to_vec()),
            (7, a.to_owned(), b"a7".to_vec())
        ]
    );
    assert_eq!(journal.latest_snapshot(log, a, 7).unwrap(), None);
    assert_eq!(
        journal.latest_snapshot(log, a, 8).unwrap(),
        Some((7, b"a7".to_vec()))
    );
    assert!(journal.snapshots(LogId::now_v7()).unwrap().is_empty());
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
        new_logs: vec![nl],
        appends: vec![Append {
            log: old,
            expected_seq,
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

pub(crate) fn count(journal: &dyn Journal, tenant: &str) -> (u64, u64) {
    let c = journal.count(tenant).expect("count");
    (c.logs, c.sessions)
}

/// Every log of a tenant, walking the pages `page` at a time.
pub(crate) fn walk(journal: &dyn Journal, tenant: &str, page: usize) -> Vec<LogId> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let got = journal.list_page(tenant, after, page).expect("page");
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
    assert_eq!(count(&*journal, "t"), (3, 2));

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
    assert_eq!(count(&*journal, "t"), (3, 2));

    journal
        .put_guest("t", "counter", b"counter")
        .expect("guest");
    let events = journal.read(next, 0, 100).expect("read");
    let refused = journal.import("t", None, &events, Some(2));
    assert!(
        matches!(refused, Err(JournalError::LimitReached { limit: 2, .. })),
        "{refused:?}"
    );
    journal
        .import("t", None, &events, Some(3))
        .expect("under 3");
    assert_eq!(count(&*journal, "t"), (4, 3));
    assert_eq!(count(&*journal, "u"), (1, 1));
    assert_eq!(count(&*journal, "nobody"), (0, 0));
    assert_eq!(journal.count_logs().unwrap(), 5);
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
        assert_eq!(count(&*journal, tenant), (N as u64, N as u64));
        for page in [1, 2, 7, N - 1, N, N + 1, 1000] {
            assert_eq!(
                walk(&*journal, tenant, page),
                expected[tenant],
                "{tenant} by {page}"
            );
        }
    }
    // A full last page says so: no `next` to an empty page.
    let whole = journal.list_page("a", None, N).expect("page");
    assert_eq!((whole.logs.len(), whole.next), (N, None));
    // `after` another tenant's id still shows only this tenant's logs: those
    // created after it.
    let b5 = expected["b"][5];
    let page = journal.list_page("a", Some(b5), 1000).expect("page");
    let ids: Vec<LogId> = page.logs.iter().map(|i| i.id).collect();
    assert_eq!(ids, expected["a"][6..]);
    // A limit of 0 is taken as 1.
    assert_eq!(journal.list_page("c", None, 0).expect("page").logs.len(), 1);
    assert_eq!(
        journal.list_page("nobody", None, 10).unwrap(),
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
    let events = journal.read(fork_id, 0, 100).unwrap();

    // The guest must be stored first.
    assert!(matches!(
        journal.import("u", Some("copy"), &events, None),
        Err(JournalError::Invalid(_))
    ));
    journal.put_guest("u", "counter", b"counter").unwrap();
    assert!(matches!(
        journal.import("u", None, &[], None),
        Err(JournalError::Invalid(_))
    ));
    // A changed event is named by its seq; nothing is written.
    let mut tampered = events.clone();
    tampered[2].event.body = input("SECOND");
    match journal.import("u", None, &tampered, None) {
        Err(JournalError::Invalid(why)) => assert!(why.starts_with("seq 2:"), "{why}"),
        other => panic!("expected the chain to be refused, got {other:?}"),
    }
    let mut gap = events.clone();
    gap.remove(1);
    assert!(matches!(
        journal.import("u", None, &gap, None),
        Err(JournalError::Invalid(_))
    ));
    assert_eq!(count(&*journal, "u"), (0, 0));

    let copy = journal.import("u", Some("copy"), &events, None).unwrap();
    assert_ne!(copy, fork_id);
    assert_eq!(journal.read(copy, 0, 100).unwrap(), events, "byte for byte");
    assert_eq!(journal.parent(copy).unwrap(), None, "it stands alone");
    assert_eq!(journal.resolve("u", "copy").unwrap(), Some(copy));
    let info = journal.info(copy).unwrap().unwrap();
    assert_eq!(info.tenant, "u");
    assert_eq!(info.name.as_deref(), Some("copy"));
    assert_eq!(info.next_seq, events.len() as u64);
    assert_eq!(info.status, LogStatus::WaitingApproval);
    assert!(journal.verify(copy).unwrap().is_ok());
    assert!(matches!(
        journal.import("u", Some("copy"), &events, None),
        Err(JournalError::NameTaken { .. })
    ));
    assert_eq!(count(&*journal, "u"), (1, 1));
}
