//! The PostgreSQL journal against a real PostgreSQL (15 or later).
//!
//! `LOGBOOK_TEST_POSTGRES` names a role that may create databases, e.g.
//! `postgres://logbook:logbook@127.0.0.1:5432/postgres` (`scripts/test.sh`
//! starts Debian's PostgreSQL and sets it). Each test creates a database of
//! its own with a random name and drops it at the end. Without the variable
//! these tests fail, saying how to set it, unless `LOGBOOK_SKIP_POSTGRES=1`.
//!
//! What every journal must do is checked by the contract suite
//! (`journal_contract.rs`); here is what is PostgreSQL's own: several
//! workers on one database, leases across them, the group-commit writer's
//! savepoints, migrations, notifications.

use std::sync::Arc;

use logbook::journal::*;
use tokio_postgres::NoTls;

use crate::journal::{T0, input, new_log};

mod migrate;
mod tls;
mod workers;

/// A database of one test, dropped (with its connections) when this is.
pub(crate) struct PgDb {
    admin: String,
    name: String,
    /// The URL of the database.
    pub(crate) url: String,
}

impl PgDb {
    /// A new empty database, or `None` when PostgreSQL tests are skipped.
    pub(crate) async fn create() -> Option<PgDb> {
        if std::env::var("LOGBOOK_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("skipped: LOGBOOK_SKIP_POSTGRES=1 (this test needs PostgreSQL)");
            return None;
        }
        let Ok(admin) = std::env::var("LOGBOOK_TEST_POSTGRES") else {
            panic!(
                "LOGBOOK_TEST_POSTGRES is not set: run scripts/test.sh, which starts PostgreSQL \
                 and sets it, or set it to a role that may create databases \
                 (e.g. postgres://logbook:logbook@127.0.0.1:5432/postgres), \
                 or set LOGBOOK_SKIP_POSTGRES=1 to skip the PostgreSQL tests"
            );
        };
        let name = format!("logbook_test_{}", uuid::Uuid::now_v7().simple());
        let (client, conn) = tokio_postgres::connect(&admin, NoTls)
            .await
            .expect("connect to LOGBOOK_TEST_POSTGRES");
        let driver = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        drop(client);
        let _ = driver.await;
        let (base, _) = admin
            .rsplit_once('/')
            .expect("LOGBOOK_TEST_POSTGRES is a URL with a database");
        let url = format!("{base}/{name}");
        Some(PgDb { admin, name, url })
    }

    /// A new worker on this database.
    pub(crate) async fn journal(&self, config: PgConfig) -> Arc<PgJournal> {
        PgJournal::connect(&self.url, config)
            .await
            .expect("connect the journal")
    }

    /// A plain connection to this database.
    pub(crate) async fn sql(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // A thread of its own: this may run inside a runtime, or after a panic.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin, NoTls).await?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// A fresh database and one worker on it.
pub(crate) async fn fresh() -> Option<(PgDb, Arc<PgJournal>)> {
    let db = PgDb::create().await?;
    let journal = db.journal(PgConfig::default()).await;
    Some((db, journal))
}

async fn create(journal: &PgJournal, tenant: &str, name: Option<&str>) -> LogId {
    let nl = new_log(tenant, name);
    let id = nl.id;
    journal
        .commit(Commit::new_log(nl))
        .await
        .expect("create log");
    id
}

fn sleep_until(key: &str, until: u64) -> EventBody {
    EventBody::Requested {
        key: key.into(),
        effect: RequestedEffect::Sleep { until },
    }
}

#[tokio::test]
async fn commits_read_back_with_their_hashes_and_projections() {
    let Some((_db, journal)) = fresh().await else {
        return;
    };
    let id = create(&journal, DEFAULT_TENANT, Some("bot")).await;
    let committed = journal
        .commit(Commit::append(
            id,
            1,
            vec![(T0 + 1, input("hi")), (T0 + 2, sleep_until("nap", T0 + 50))],
        ))
        .await
        .expect("append");
    let events = journal.read(id, 0, 100).await.expect("read");
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[1..],
        committed
            .events
            .iter()
            .map(|(_, e)| e.clone())
            .collect::<Vec<_>>()[..]
    );
    assert!(verify_events(&events).is_ok());
    assert!(journal.verify(id).await.expect("verify").is_ok());

    let info = journal.info(id).await.expect("info").expect("exists");
    assert_eq!(info.next_seq, 3);
    assert_eq!(info.last_hash, events[2].hash);
    assert_eq!(info.name.as_deref(), Some("bot"));
    assert_eq!(info.status, LogStatus::Sleeping);
    assert_eq!(
        journal.resolve(DEFAULT_TENANT, "bot").await.unwrap(),
        Some(id)
    );
    assert_eq!(
        journal.count(DEFAULT_TENANT).await.unwrap(),
        TenantCount {
            logs: 1,
            sessions: 1
        }
    );
    assert_eq!(journal.open_logs(None, 10).await.unwrap(), vec![id]);

    // A stale expected seq is refused with the actual one, and writes nothing.
    let stale = journal
        .commit(Commit::append(id, 1, vec![(T0 + 3, input("late"))]))
        .await;
    assert!(
        matches!(
            stale,
            Err(JournalError::Conflict {
                expected: 1,
                actual: 3,
                ..
            })
        ),
        "{stale:?}"
    );
    assert_eq!(journal.read(id, 0, 100).await.unwrap().len(), 3);
}

#[tokio::test]
async fn one_batch_commits_many_and_refuses_one_alone() {
    let Some((_db, journal)) = fresh().await else {
        return;
    };
    let logs: Vec<LogId> = {
        let mut v = Vec::new();
        for _ in 0..8 {
            v.push(create(&journal, DEFAULT_TENANT, None).await);
        }
        v
    };
    let before = journal.stats();
    // Sent together, so the writer takes them into few transactions: 8 good
    // appends, one stale among them, and one name that is taken.
    let mut tickets = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        tickets.push(journal.commit(Commit::append(
            *log,
            1,
            vec![(T0 + 1, input(&format!("n{i}")))],
        )));
        if i == 3 {
            tickets.push(journal.commit(Commit::append(
                logs[0],
                1,
                vec![(T0 + 1, input("stale"))],
            )));
            let mut taken = new_log(DEFAULT_TENANT, Some("twice"));
            tickets.push(journal.commit(Commit::new_log(taken.clone())));
            taken.id = LogId::now_v7();
            tickets.push(journal.commit(Commit::new_log(taken)));
        }
    }
    let mut answers = Vec::new();
    for t in tickets {
        answers.push(t.await);
    }
    let refused: Vec<_> = answers.iter().filter(|a| a.is_err()).collect();
    assert_eq!(refused.len(), 2, "{answers:?}");
    assert!(
        matches!(
            answers[4],
            Err(JournalError::Conflict {
                expected: 1,
                actual: 2,
                ..
            })
        ),
        "{:?}",
        answers[4]
    );
    assert!(
        matches!(answers[6], Err(JournalError::NameTaken { .. })),
        "{:?}",
        answers[6]
    );
    for log in &logs {
        let events = journal.read(*log, 0, 10).await.unwrap();
        assert_eq!(events.len(), 2, "every good append is in");
        assert!(journal.verify(*log).await.unwrap().is_ok());
    }
    let stats = journal.stats();
    assert_eq!(stats.requests - before.requests, 11);
    assert_eq!(stats.events - before.events, 9);
    // Queued before the writer ran (one thread, no await between): one transaction.
    assert_eq!(stats.commits - before.commits, 1);
}

/// A batch goes grouped (one statement per kind of row) when nothing in it
/// is refused. Refusals only the database can see (a head another worker
/// moved while this writer's cache says otherwise, a lease taken over) make
/// the grouped form fail; the batch is then sent again with a savepoint per
/// commit, and only those commits are refused: the others are answered with
/// what they wrote, in one transaction.
#[tokio::test]
async fn a_grouped_batch_refused_in_the_middle_answers_the_others() {
    let Some((db, journal)) = fresh().await else {
        return;
    };
    let other = db.journal(PgConfig::default()).await;
    let mut logs = Vec::new();
    for _ in 0..8 {
        logs.push(create(&journal, DEFAULT_TENANT, None).await);
    }
    let leases = {
        let mut v = Vec::new();
        for log in &logs {
            v.push(journal.acquire_lease(*log).await.expect("lease"));
        }
        v
    };
    // A clean batch: every append fenced by its lease, a timer opened in
    // each, one ended in the same commit that opened it.
    let (grouped, commits) = (journal.grouped_batches(), journal.stats().commits);
    let tickets: Vec<_> = logs
        .iter()
        .zip(&leases)
        .enumerate()
        .map(|(i, (log, lease))| {
            let mut events = vec![(T0 + 1, input("one")), (T0 + 2, sleep_until("nap", T0 + 9))];
            if i == 0 {
                events.push((T0 + 3, sleep_until("blink", T0 + 5)));
                events.push((
                    T0 + 4,
                    EventBody::Completed {
                        key: "blink".into(),
                        outcome: Outcome::TimerFired,
                    },
                ));
            }
            journal.commit(Commit::append(*log, 1, events).fenced(lease.epoch))
        })
        .collect();
    for t in tickets {
        t.await.expect("a clean batch commits");
    }
    assert_eq!(journal.stats().commits - commits, 1);
    assert_eq!(
        journal.grouped_batches() - grouped,
        1,
        "the clean batch went grouped"
    );
    let mut next = Vec::new();
    for log in &logs {
        let info = journal.info(*log).await.unwrap().unwrap();
        let keys: Vec<_> = info.open.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["nap"], "the timer of {log} is open, `blink` ended");
        next.push(info.next_seq);
    }

    // Log 2's head moves through another worker: this writer's cache still
    // says 3, so only the database sees the append below is stale. Log 5's
    // lease is taken again: the epoch its append carries is an old one.
    other
        .commit(Commit::append(
            logs[2],
            next[2],
            vec![(T0 + 5, input("elsewhere"))],
        ))
        .await
        .expect("another worker appends");
    let newer = journal.acquire_lease(logs[5]).await.expect("lease again");
    assert!(newer.epoch > leases[5].epoch);
    let (grouped, commits) = (journal.grouped_batches(), journal.stats().commits);
    let tickets: Vec<_> = logs
        .iter()
        .zip(&leases)
        .zip(&next)
        .map(|((log, lease), next)| {
            journal.commit(
                Commit::append(*log, *next, vec![(T0 + 6, input(&format!("{log}")))])
                    .fenced(lease.epoch),
            )
        })
        .collect();
    let mut answers = Vec::new();
    for t in tickets {
        answers.push(t.await);
    }
    assert_eq!(journal.stats().commits - commits, 1, "one transaction");
    assert_eq!(
        journal.grouped_batches(),
        grouped,
        "sent again with savepoints"
    );
    for (i, (log, answer)) in logs.iter().zip(&answers).enumerate() {
        let events = journal.read(*log, 0, 10).await.unwrap();
        assert!(journal.verify(*log).await.unwrap().is_ok());
        match i {
            2 => {
                assert!(
                    matches!(
                        answer,
                        Err(JournalError::Conflict {
                            expected: 3,
                            actual: 4,
                            ..
                        })
                    ),
                    "{answer:?}"
                );
                assert_eq!(events.len(), 4, "only the other worker's append is in");
            }
            5 => {
                assert!(
                    matches!(answer, Err(JournalError::Fenced { epoch, .. }) if *epoch == leases[5].epoch),
                    "{answer:?}"
                );
                assert_eq!(events.len(), 3, "nothing of the fenced append is in");
            }
            _ => {
                let committed = answer.as_ref().expect("the others commit");
                let written: Vec<_> = committed.events.iter().map(|(_, e)| e.clone()).collect();
                let from = usize::try_from(next[i]).unwrap();
                assert_eq!(
                    events[from..],
                    written[..],
                    "{log} holds what its answer says"
                );
            }
        }
    }
}

#[tokio::test]
async fn concurrent_committers_share_transactions() {
    let Some((_db, journal)) = fresh().await else {
        return;
    };
    const LOGS: usize = 32;
    const APPENDS: u64 = 20;
    let mut ids = Vec::new();
    for _ in 0..LOGS {
        ids.push(create(&journal, DEFAULT_TENANT, None).await);
    }
    let before = journal.stats();
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 1..=APPENDS {
                journal
                    .commit(Commit::append(id, seq, vec![(T0 + seq, input("x"))]))
                    .await
                    .expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("committer");
    }
    let stats = journal.stats();
    let requests = stats.requests - before.requests;
    assert_eq!(requests, LOGS as u64 * APPENDS);
    assert_eq!(stats.events - before.events, LOGS as u64 * APPENDS);
    assert!(
        stats.commits - before.commits < requests,
        "commits share transactions: {stats:?}"
    );
    for id in ids {
        assert_eq!(
            journal.info(id).await.unwrap().unwrap().next_seq,
            APPENDS + 1
        );
        assert!(journal.verify(id).await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn forks_read_through_their_parents_and_take_their_open_effects() {
    let Some((_db, journal)) = fresh().await else {
        return;
    };
    let root = create(&journal, DEFAULT_TENANT, None).await;
    journal
        .commit(Commit::append(
            root,
            1,
            vec![(T0 + 1, input("a")), (T0 + 2, sleep_until("nap", T0 + 9))],
        ))
        .await
        .unwrap();
    let fork_at = |seq: u64| {
        let mut nl = new_log(DEFAULT_TENANT, None);
        nl.created.parent = Some(LogPos {
            log: root.to_string(),
            seq,
        });
        nl
    };
    // At the head: the fork starts with the parent's open sleep.
    let head = fork_at(2);
    let head_id = head.id;
    journal.commit(Commit::new_log(head)).await.unwrap();
    // Earlier: no open effects; and a fork of a fork.
    let early = fork_at(0);
    let early_id = early.id;
    journal.commit(Commit::new_log(early)).await.unwrap();
    journal
        .commit(Commit::append(early_id, 2, vec![(T0 + 5, input("b"))]))
        .await
        .unwrap();
    let mut deeper = new_log(DEFAULT_TENANT, None);
    deeper.created.parent = Some(LogPos {
        log: early_id.to_string(),
        seq: 2,
    });
    let deeper_id = deeper.id;
    journal.commit(Commit::new_log(deeper)).await.unwrap();

    let head_info = journal.info(head_id).await.unwrap().unwrap();
    assert_eq!(head_info.open.len(), 1);
    assert_eq!(head_info.next_seq, 4);
    assert!(
        journal
            .info(early_id)
            .await
            .unwrap()
            .unwrap()
            .open
            .is_empty()
    );

    let events = journal.read(deeper_id, 0, 100).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.event.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3]);
    assert!(verify_events(&events).is_ok());
    assert!(journal.verify(deeper_id).await.unwrap().is_ok());
    assert_eq!(journal.read(deeper_id, 2, 1).await.unwrap()[0].event.seq, 2);
    assert_eq!(
        journal.parent(deeper_id).await.unwrap(),
        Some(LogPos {
            log: early_id.to_string(),
            seq: 2
        })
    );
    // A fork past the parent's head is refused.
    let bad = journal.commit(Commit::new_log(fork_at(7))).await;
    assert!(matches!(bad, Err(JournalError::NoSeq { .. })), "{bad:?}");
}

#[tokio::test]
async fn snapshots_guests_and_imports() {
    let Some((_db, journal)) = fresh().await else {
        return;
    };
    let g = journal.put_guest("t", "counter", b"wasm").await.unwrap();
    assert_eq!(
        journal.guest_bytes(&g.digest).await.unwrap().as_deref(),
        Some(&b"wasm"[..])
    );
    assert_eq!(
        journal.guest_by_name("t", "counter").await.unwrap(),
        Some(g.clone())
    );
    assert_eq!(journal.guests("t").await.unwrap(), vec![g.clone()]);

    let id = create(&journal, "t", None).await;
    journal.put_snapshot(id, 3, "d1", b"old").await.unwrap();
    journal.put_snapshot(id, 5, "d1", b"new").await.unwrap();
    journal.put_snapshot(id, 4, "d2", b"other").await.unwrap();
    assert_eq!(
        journal.latest_snapshot(id, "d1", 10).await.unwrap(),
        Some((5, b"new".to_vec()))
    );
    assert_eq!(journal.latest_snapshot(id, "d1", 5).await.unwrap(), None);
    assert_eq!(journal.snapshots(id).await.unwrap().len(), 2);

    // An import keeps every byte and hash; a broken chain is refused.
    let mut events = vec![StoredEvent {
        event: Event {
            seq: 0,
            at: T0,
            body: EventBody::Created(Created {
                guest: g.clone(),
                ..crate::journal::created()
            }),
        },
        hash: [0; 32],
    }];
    events = chain_events(
        GENESIS_HASH,
        0,
        events
            .into_iter()
            .map(|e| (e.event.at, e.event.body))
            .chain([(T0 + 1, input("x"))]),
    );
    let imported = journal
        .import("t", Some("copy"), &events, None)
        .await
        .unwrap();
    assert_eq!(journal.read(imported, 0, 10).await.unwrap(), events);
    assert!(journal.verify(imported).await.unwrap().is_ok());
    assert_eq!(journal.resolve("t", "copy").await.unwrap(), Some(imported));
    let mut broken = events.clone();
    broken[1].hash[0] ^= 1;
    assert!(matches!(
        journal.import("t", None, &broken, None).await,
        Err(JournalError::BadLog { seq: Some(1), .. })
    ));
    assert!(matches!(
        journal.import("t", Some("copy"), &events, None).await,
        Err(JournalError::NameTaken { .. })
    ));
    assert!(matches!(
        journal.import("t", None, &events, Some(2)).await,
        Err(JournalError::LimitReached { limit: 2, .. })
    ));
    assert_eq!(journal.count("t").await.unwrap().sessions, 2);
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    // Connecting twice migrates once.
    drop(db.journal(PgConfig::default()).await);
    drop(db.journal(PgConfig::default()).await);
    let sql = db.sql().await;
    let versions: Vec<i64> = sql
        .query(
            "SELECT version FROM logbook_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);
    sql.execute(
        "INSERT INTO logbook_migrations (version, name) VALUES (999, 'future')",
        &[],
    )
    .await
    .unwrap();
    let refused = PgJournal::connect(&db.url, PgConfig::default()).await;
    assert!(
        matches!(
            refused,
            Err(JournalError::SchemaTooNew {
                found: 999,
                known: 5
            })
        ),
        "{refused:?}"
    );
}

/// Group-commit throughput against the local PostgreSQL: `COMMITTERS` tasks,
/// each appending `EVENTS_EACH` events one commit at a time to a log of its
/// own. Prints the figures; asserts only that every event is there.
/// `cargo test --release -p logbook --test all -- --ignored postgres::group_commit_throughput --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand with --release"]
async fn group_commit_throughput() {
    let Some((_db, journal)) = fresh().await else {
        return;
    };
    for committers in [1usize, 16, 64, 256] {
        const EVENTS_EACH: u64 = 200;
        let mut ids = Vec::new();
        for _ in 0..committers {
            ids.push(create(&journal, DEFAULT_TENANT, None).await);
        }
        let before = journal.stats();
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for id in ids.clone() {
            let journal = journal.clone();
            tasks.push(tokio::spawn(async move {
                for seq in 1..=EVENTS_EACH {
                    journal
                        .commit(Commit::append(id, seq, vec![(T0 + seq, input("x"))]))
                        .await
                        .expect("append");
                }
            }));
        }
        for t in tasks {
            t.await.expect("committer");
        }
        let elapsed = started.elapsed();
        let stats = journal.stats();
        let events = stats.events - before.events;
        let txns = stats.commits - before.commits;
        println!(
            "{committers:>4} committers: {events} events in {:.2} s = {:.0} events/s, \
             {txns} transactions ({:.1} commits each)",
            elapsed.as_secs_f64(),
            events as f64 / elapsed.as_secs_f64(),
            (stats.requests - before.requests) as f64 / txns as f64
        );
        assert_eq!(events, committers as u64 * EVENTS_EACH);
        for id in ids {
            assert_eq!(
                journal.info(id).await.unwrap().unwrap().next_seq,
                EVENTS_EACH + 1
            );
        }
    }
}

/// The host runs on PostgreSQL as on any journal: a counter session through
/// inputs, snapshots, hibernation and waking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_session_runs_hibernates_and_wakes_on_postgres() {
    use crate::fixtures::*;
    use logbook::session::{Activity, Host, HostOptions};

    let Some((_db, pg)) = fresh().await else {
        return;
    };
    let journal: Arc<dyn Journal> = pg;
    let dir = data_dir();
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
    assert!(!journal.snapshots(id).await.unwrap().is_empty());

    let before = journal.info(id).await.unwrap().unwrap().next_seq;
    host.hibernate(id);
    drop(session);
    let woken = host.session(id).await.expect("wake");
    assert_eq!(settle(&woken).await, Activity::Idle);
    assert_eq!(journal.info(id).await.unwrap().unwrap().next_seq, before);
    say(&woken, "inc").await;
    assert_eq!(settle(&woken).await, Activity::Idle);
    let seen = outputs(&events(&host, id).await);
    assert_eq!(seen.last().map(String::as_str), Some("count = 4"));
    assert_chain_holds(&host, id).await;
    host.close().await;
}

/// Two workers on one database: the second's cached head of a log goes
/// stale when the first appends to it. An append at the head (a send's
/// input) planned on that stale head is not refused: the writer reads the
/// log again and plans the commit again, and it lands after the first
/// worker's events, chained to them.
#[tokio::test]
async fn an_append_at_the_head_lands_after_another_workers_events() {
    let Some((db, one)) = fresh().await else {
        return;
    };
    let two = db.journal(PgConfig::default()).await;
    let sender = create(&one, DEFAULT_TENANT, None).await;
    let target = create(&one, DEFAULT_TENANT, None).await;
    // The second worker appends to the target once: it caches its head.
    let mut first = Commit::append(sender, 1, vec![(T0 + 1, input("sent 1"))]);
    first
        .appends
        .push(Append::to_head(target, vec![(T0 + 1, input("one"))]));
    two.commit(first).await.expect("the first send");
    // The first worker moves the target on, behind the second's back.
    one.commit(Commit::append(
        target,
        2,
        vec![(T0 + 2, input("two")), (T0 + 3, input("three"))],
    ))
    .await
    .expect("the target's own writer");
    let mut second = Commit::append(sender, 2, vec![(T0 + 4, input("sent 2"))]);
    second
        .appends
        .push(Append::to_head(target, vec![(T0 + 4, input("four"))]));
    let committed = two
        .commit(second)
        .await
        .expect("planned again, not refused");
    assert!(
        committed
            .events
            .iter()
            .any(|(log, e)| *log == target && e.event.seq == 4),
        "{committed:?}"
    );
    let texts: Vec<String> = one
        .read(target, 0, 10)
        .await
        .expect("read")
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Input { content, .. } => Some(plain_text(content)),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["one", "two", "three", "four"]);
    assert_eq!(
        one.verify(target).await.expect("verify"),
        Verified {
            events: 5,
            first_bad: None
        }
    );
    // The sender's own append is still checked against its head.
    let mut stale = Commit::append(sender, 2, vec![(T0 + 5, input("stale"))]);
    stale
        .appends
        .push(Append::to_head(target, vec![(T0 + 5, input("never"))]));
    assert!(matches!(
        two.commit(stale).await,
        Err(JournalError::Conflict { .. })
    ));
    assert_eq!(one.info(target).await.unwrap().unwrap().next_seq, 5);
}
