//! Model-based test: random sequences of operations applied to a real
//! journal ([`RedbJournal`], and [`PgJournal`] in [`postgres`]) and to the
//! [`MemoryJournal`] model; after every step each answer (accepted, or
//! refused and why; reads, info, pages, counts, snapshots, verify, the
//! writer's counters) must be the same.
//!
//! `PROPTEST_CASES` sets the number of cases on redb (64 by default, of up to
//! 40 operations each). Ids are the test's, so both journals see the same
//! ones; only an import picks its own id, so the memory journal's imported
//! ids are mapped to the real journal's before answers are compared.

use std::fmt::Debug;
use std::sync::{Arc, OnceLock};

use logbook::journal::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tempfile::TempDir;

use crate::journal::{T0, guest, input, new_log, tool_call};

mod postgres;

/// The runtime a journal over the network runs on (its connections' tasks),
/// and that the model blocks on for its answers.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the model test")
    })
}

/// The model runs synchronously: redb and the memory journal answer reads at
/// the first poll; PostgreSQL's answers are waited for on [`runtime`]
/// (commits wait for the writer either way).
trait Now: std::future::Future + Sized {
    fn now(self) -> Self::Output {
        // In the runtime's context even for the first poll: a PostgreSQL
        // read may open a pool connection there.
        let _context = runtime().enter();
        let mut future = std::pin::pin!(self);
        let waker = std::task::Waker::noop();
        match future
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
        {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => runtime().block_on(future),
        }
    }
}

impl<F: std::future::Future> Now for F {}

const TENANTS: [&str; 2] = ["t0", "t1"];
const NAMES: [&str; 3] = ["n0", "n1", "n2"];
const DIGESTS: [&str; 2] = ["sha256:aa", "sha256:bb"];

#[derive(Clone, Debug)]
enum Ev {
    Input,
    Tool(u8),
    Sleep(u8),
    Ask(u8),
    HoldTool(u8),
    Decide(u8),
    Complete(u8),
    Cancel(u8),
    Fail(u8, bool),
    GuestFailed,
    GuestChanged,
    /// An operator's `unparked`, skipping seq 1 or nothing.
    Unparked(bool),
    Finish,
    /// Refused: `created` after seq 0.
    Created,
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        tenant: u8,
        name: Option<u8>,
        limit: Option<u8>,
    },
    /// Two new logs in one commit, maybe with the same name.
    CreateTwo {
        tenant: u8,
        names: (Option<u8>, Option<u8>),
        limit: Option<u8>,
    },
    Append {
        log: u8,
        skew: i8,
        events: Vec<Ev>,
    },
    Fork {
        log: u8,
        at: u8,
        other_tenant: bool,
        limit: Option<u8>,
    },
    Compact {
        log: u8,
        limit: Option<u8>,
    },
    Rename {
        log: u8,
        tenant: u8,
        name: u8,
    },
    Snapshot {
        log: u8,
        seq: u8,
        guest: u8,
    },
    Import {
        log: u8,
        tenant: u8,
        name: Option<u8>,
        limit: Option<u8>,
    },
    Read {
        log: u8,
        from: u8,
        limit: u8,
    },
    Page {
        tenant: u8,
        after: Option<u8>,
        limit: u8,
    },
}

fn ev() -> impl Strategy<Value = Ev> {
    let key = 0u8..3;
    prop_oneof![
        3 => Just(Ev::Input),
        2 => key.clone().prop_map(Ev::Tool),
        1 => key.clone().prop_map(Ev::Sleep),
        1 => key.clone().prop_map(Ev::Ask),
        1 => key.clone().prop_map(Ev::HoldTool),
        1 => key.clone().prop_map(Ev::Decide),
        1 => key.clone().prop_map(Ev::Complete),
        1 => key.clone().prop_map(Ev::Cancel),
        1 => (key, any::<bool>()).prop_map(|(k, r)| Ev::Fail(k, r)),
        1 => Just(Ev::GuestFailed),
        1 => Just(Ev::GuestChanged),
        1 => any::<bool>().prop_map(Ev::Unparked),
        1 => Just(Ev::Finish),
        1 => Just(Ev::Created),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let tenant = 0u8..2;
    let name = proptest::option::of(0u8..3);
    let limit = proptest::option::weighted(0.4, 1u8..5);
    prop_oneof![
        4 => (tenant.clone(), name.clone(), limit.clone())
            .prop_map(|(tenant, name, limit)| Op::Create { tenant, name, limit }),
        1 => (tenant.clone(), (name.clone(), name.clone()), limit.clone())
            .prop_map(|(tenant, names, limit)| Op::CreateTwo { tenant, names, limit }),
        8 => (any::<u8>(), prop_oneof![6 => Just(0i8), 1 => Just(-1i8), 1 => Just(1i8)],
              proptest::collection::vec(ev(), 0..4))
            .prop_map(|(log, skew, events)| Op::Append { log, skew, events }),
        2 => (any::<u8>(), any::<u8>(), proptest::bool::weighted(0.1), limit.clone())
            .prop_map(|(log, at, other_tenant, limit)| Op::Fork { log, at, other_tenant, limit }),
        1 => (any::<u8>(), limit.clone()).prop_map(|(log, limit)| Op::Compact { log, limit }),
        1 => (any::<u8>(), tenant.clone(), 0u8..3)
            .prop_map(|(log, tenant, name)| Op::Rename { log, tenant, name }),
        2 => (any::<u8>(), 0u8..12, 0u8..2)
            .prop_map(|(log, seq, guest)| Op::Snapshot { log, seq, guest }),
        1 => (any::<u8>(), tenant.clone(), name, limit)
            .prop_map(|(log, tenant, name, limit)| Op::Import { log, tenant, name, limit }),
        2 => (any::<u8>(), 0u8..12, 0u8..6)
            .prop_map(|(log, from, limit)| Op::Read { log, from, limit }),
        1 => (tenant, proptest::option::of(any::<u8>()), 0u8..4)
            .prop_map(|(tenant, after, limit)| Op::Page { tenant, after, limit }),
    ]
}

/// Which journal an operation is built for: ids of imported logs differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Real,
    Memory,
}

/// The id of a log on one side.
fn on(pair: (LogId, LogId), side: Side) -> LogId {
    match side {
        Side::Real => pair.0,
        Side::Memory => pair.1,
    }
}

/// Both journals and the logs they hold: `(real id, memory id)`.
struct Pair {
    /// The journal under test, and its name in messages.
    real: Arc<dyn Journal>,
    name: &'static str,
    memory: Arc<MemoryJournal>,
    logs: Vec<(LogId, LogId)>,
    ghost: LogId,
    /// What the real journal lives in (a temporary directory, a database),
    /// dropped after it.
    _home: Box<dyn std::any::Any>,
}

/// A refusal as compared: its kind and fields, but not the wording of a
/// free-text reason.
fn refusal(e: &JournalError) -> String {
    match e {
        JournalError::BadLog { copy, seq, .. } => format!("BadLog({copy:?}, {seq:?})"),
        JournalError::Corrupt(_) => "Corrupt".to_owned(),
        other => format!("{other:?}"),
    }
}

fn answer<T: Debug>(r: &Result<T, JournalError>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({})", refusal(e)),
    }
}

impl Pair {
    /// A new redb file beside the model.
    fn redb() -> Option<Pair> {
        let dir = TempDir::new().expect("temp dir");
        let redb = RedbJournal::open(&dir.path().join("journal.redb"), JournalConfig::default())
            .expect("open");
        Some(Pair::new(redb, "redb", Box::new(dir)))
    }

    fn new(real: Arc<dyn Journal>, name: &'static str, home: Box<dyn std::any::Any>) -> Pair {
        let memory = MemoryJournal::new();
        for tenant in TENANTS {
            let j: [&dyn Journal; 2] = [&*real, &*memory];
            for j in j {
                j.put_guest(tenant, "counter", b"counter")
                    .now()
                    .expect("guest");
            }
        }
        Pair {
            real,
            name,
            memory,
            logs: Vec::new(),
            ghost: LogId::now_v7(),
            _home: home,
        }
    }

    /// The log an index picks (one past the end: a log that does not exist).
    fn pick(&self, i: u8) -> (LogId, LogId) {
        let i = usize::from(i) % (self.logs.len() + 1);
        self.logs
            .get(i)
            .copied()
            .unwrap_or((self.ghost, self.ghost))
    }

    /// Debug text with the memory journal's ids replaced by the real one's.
    fn same<T: Debug>(&self, what: &str, r: T, m: T) -> Result<(), TestCaseError> {
        let r = format!("{r:?}");
        let mut m = format!("{m:?}");
        for (rid, mid) in &self.logs {
            if rid != mid {
                m = m.replace(&mid.to_string(), &rid.to_string());
            }
        }
        if r == m {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "{what}: {} and memory disagree\n {:<7} {r}\n memory: {m}",
                self.name,
                format!("{}:", self.name)
            )))
        }
    }

    /// Commits what `make` builds for each side; both must answer alike.
    fn commit(&mut self, make: impl Fn(Side) -> Commit) -> Result<(), TestCaseError> {
        let r = self.real.commit(make(Side::Real)).wait();
        let m = self.memory.commit(make(Side::Memory)).wait();
        self.same("commit", answer(&r), answer(&m))?;
        if let Ok(c) = r {
            for (id, e) in &c.events {
                if matches!(e.event.body, EventBody::Created(_)) {
                    self.logs.push((*id, *id));
                }
            }
        }
        Ok(())
    }

    /// Like [`Pair::pick`], among the logs with the same id on both sides:
    /// a fork or compaction writes its parent's id into a hashed body, so
    /// the two sides would hash differently for an imported parent.
    fn pick_shared(&self, i: u8) -> (LogId, LogId) {
        let shared: Vec<_> = self.logs.iter().filter(|(r, m)| r == m).collect();
        let i = usize::from(i) % (shared.len() + 1);
        shared
            .get(i)
            .map_or((self.ghost, self.ghost), |pair| **pair)
    }

    fn next_seq(&self, log: LogId) -> u64 {
        self.real
            .info(log)
            .now()
            .expect("info")
            .map_or(0, |i| i.next_seq)
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op.clone() {
            Op::Create {
                tenant,
                name,
                limit,
            } => {
                let mut nl = new_log(
                    TENANTS[usize::from(tenant)],
                    name.map(|n| NAMES[usize::from(n)]),
                );
                nl.session_limit = limit.map(u64::from);
                self.commit(|_| Commit::new_log(nl.clone()))
            }
            Op::CreateTwo {
                tenant,
                names,
                limit,
            } => {
                let t = TENANTS[usize::from(tenant)];
                let name = |n: Option<u8>| n.map(|n| NAMES[usize::from(n)]);
                let mut a = new_log(t, name(names.0));
                let mut b = new_log(t, name(names.1));
                a.session_limit = limit.map(u64::from);
                b.session_limit = limit.map(u64::from);
                self.commit(|_| Commit {
                    new_logs: vec![a.clone(), b.clone()],
                    ..Commit::default()
                })
            }
            Op::Append { log, skew, events } => {
                let pair = self.pick(log);
                let next = self.next_seq(pair.0);
                let expected = next.saturating_add_signed(i64::from(skew));
                let events: Vec<(u64, EventBody)> = events.iter().map(body).collect();
                self.commit(|side| Commit::append(on(pair, side), expected, events.clone()))
            }
            Op::Fork {
                log,
                at,
                other_tenant,
                limit,
            } => {
                let pair = self.pick_shared(log);
                let next = self.next_seq(pair.0);
                let at = u64::from(at) % (next + 2);
                let tenant = match self.real.info(pair.0).now().expect("info") {
                    Some(info) if !other_tenant => info.tenant,
                    _ => "elsewhere".to_owned(),
                };
                let mut nl = new_log(&tenant, None);
                nl.session_limit = limit.map(u64::from);
                self.commit(|side| {
                    let mut nl = nl.clone();
                    nl.created.parent = Some(LogPos {
                        log: on(pair, side).to_string(),
                        seq: at,
                    });
                    Commit::new_log(nl)
                })
            }
            Op::Compact { log, limit } => {
                let pair = self.pick_shared(log);
                let Some(info) = self.real.info(pair.0).now().expect("info") else {
                    return Ok(());
                };
                let mut nl = new_log(&info.tenant, None);
                nl.session_limit = limit.map(u64::from);
                nl.created.summary = Some("so far".into());
                let seq = info.next_seq;
                self.commit(|side| {
                    let old = on(pair, side);
                    let mut nl = nl.clone();
                    nl.created.compacted_from = Some(LogPos {
                        log: old.to_string(),
                        seq,
                    });
                    let continued = EventBody::Continued {
                        log: nl.id.to_string(),
                    };
                    let names = info
                        .name
                        .iter()
                        .map(|name| NameUpdate {
                            tenant: info.tenant.clone(),
                            name: name.clone(),
                            log: nl.id,
                        })
                        .collect();
                    Commit {
                        claims: Vec::new(),
                        new_logs: vec![nl],
                        appends: vec![Append {
                            lease: None,
                            log: old,
                            expected_seq: seq,
                            at_head: false,
                            events: vec![(T0, continued)],
                        }],
                        names,
                    }
                })
            }
            Op::Rename { log, tenant, name } => {
                let pair = self.pick(log);
                self.commit(|side| Commit {
                    names: vec![NameUpdate {
                        tenant: TENANTS[usize::from(tenant)].into(),
                        name: NAMES[usize::from(name)].into(),
                        log: on(pair, side),
                    }],
                    ..Commit::default()
                })
            }
            Op::Snapshot { log, seq, guest } => {
                let pair = self.pick(log);
                let digest = DIGESTS[usize::from(guest)];
                let record = format!("{seq}:{digest}").into_bytes();
                let r = self
                    .real
                    .put_snapshot(pair.0, u64::from(seq), digest, &record)
                    .now();
                let m = self
                    .memory
                    .put_snapshot(pair.1, u64::from(seq), digest, &record)
                    .now();
                self.same("put_snapshot", answer(&r), answer(&m))
            }
            Op::Import {
                log,
                tenant,
                name,
                limit,
            } => {
                let pair = self.pick(log);
                let tenant = TENANTS[usize::from(tenant)];
                let name = name.map(|n| NAMES[usize::from(n)]);
                let limit = limit.map(u64::from);
                let r_events = self.real.read(pair.0, 0, 10_000).now().expect("read");
                let m_events = self.memory.read(pair.1, 0, 10_000).now().expect("read");
                let r = self.real.import(tenant, name, &r_events, limit).now();
                let m = self.memory.import(tenant, name, &m_events, limit).now();
                if let (Ok(r), Ok(m)) = (&r, &m) {
                    self.logs.push((*r, *m));
                }
                self.same("import", answer(&r.map(|_| ())), answer(&m.map(|_| ())))
            }
            Op::Read { log, from, limit } => {
                let pair = self.pick(log);
                let (from, limit) = (u64::from(from), usize::from(limit));
                self.same(
                    "read",
                    answer(&self.real.read(pair.0, from, limit).now()),
                    answer(&self.memory.read(pair.1, from, limit).now()),
                )
            }
            Op::Page {
                tenant,
                after,
                limit,
            } => {
                let tenant = TENANTS[usize::from(tenant)];
                let after = after.map(|a| self.pick(a));
                let (ra, ma) = (after.map(|a| a.0), after.map(|a| a.1));
                let limit = usize::from(limit);
                self.same(
                    "list_page",
                    answer(&self.real.list_page(tenant, ra, limit).now()),
                    answer(&self.memory.list_page(tenant, ma, limit).now()),
                )
            }
        }
    }

    /// Every read of the whole state, on both sides.
    fn check(&self) -> Result<(), TestCaseError> {
        let (r, m): (&dyn Journal, &dyn Journal) = (&*self.real, &*self.memory);
        for &(rid, mid) in &self.logs {
            self.same(
                "info",
                answer(&r.info(rid).now()),
                answer(&m.info(mid).now()),
            )?;
            self.same(
                "read all",
                answer(&r.read(rid, 0, 10_000).now()),
                answer(&m.read(mid, 0, 10_000).now()),
            )?;
            self.same(
                "verify",
                answer(&r.verify(rid).now()),
                answer(&m.verify(mid).now()),
            )?;
            self.same(
                "parent",
                answer(&r.parent(rid).now()),
                answer(&m.parent(mid).now()),
            )?;
            self.same(
                "snapshots",
                answer(&r.snapshots(rid).now()),
                answer(&m.snapshots(mid).now()),
            )?;
            for digest in DIGESTS {
                for before in [0, 3, 100] {
                    self.same(
                        "latest_snapshot",
                        answer(&r.latest_snapshot(rid, digest, before).now()),
                        answer(&m.latest_snapshot(mid, digest, before).now()),
                    )?;
                }
            }
        }
        for tenant in TENANTS {
            self.same(
                "count",
                answer(&r.count(tenant).now()),
                answer(&m.count(tenant).now()),
            )?;
            self.same(
                "walk",
                super::walk(r, tenant, 2).now(),
                super::walk(m, tenant, 2).now(),
            )?;
            self.same(
                "guests",
                answer(&r.guests(tenant).now()),
                answer(&m.guests(tenant).now()),
            )?;
            for name in NAMES {
                self.same(
                    "resolve",
                    answer(&r.resolve(tenant, name).now()),
                    answer(&m.resolve(tenant, name).now()),
                )?;
            }
        }
        self.same(
            "count_logs",
            answer(&r.count_logs().now()),
            answer(&m.count_logs().now()),
        )?;
        self.same(
            "open_logs",
            answer(&r.open_logs(None, 100_000).now()),
            answer(&m.open_logs(None, 100_000).now()),
        )?;
        self.same("stats", r.stats(), m.stats())
    }
}

fn body(ev: &Ev) -> (u64, EventBody) {
    let key = |k: &u8| format!("k{k}");
    let body = match ev {
        Ev::Input => input("hi"),
        Ev::Tool(k) => EventBody::Requested {
            key: key(k),
            effect: RequestedEffect::Tool(tool_call(&key(k))),
        },
        Ev::Sleep(k) => EventBody::Requested {
            key: key(k),
            effect: RequestedEffect::Sleep { until: T0 + 1000 },
        },
        Ev::Ask(k) => EventBody::ApprovalRequested {
            key: key(k),
            tool: None,
            question: Some(Question { text: "?".into() }),
        },
        Ev::HoldTool(k) => EventBody::ApprovalRequested {
            key: key(k),
            tool: Some(tool_call(&key(k))),
            question: None,
        },
        Ev::Decide(k) => EventBody::ApprovalDecided {
            key: key(k),
            allow: true,
            by: "me".into(),
            reason: None,
        },
        Ev::Complete(k) => EventBody::Completed {
            key: key(k),
            outcome: Outcome::TimerFired,
        },
        Ev::Cancel(k) => EventBody::Cancelled { key: key(k) },
        Ev::Fail(k, retryable) => EventBody::Failed {
            key: key(k),
            error: ErrorKind::Timeout,
            message: "slow".into(),
            retryable: *retryable,
            attempt: 1,
        },
        Ev::GuestFailed => EventBody::GuestFailed {
            message: "trap".into(),
        },
        Ev::GuestChanged => EventBody::GuestChanged {
            from: guest("counter"),
            to: guest("counter-2"),
        },
        Ev::Unparked(skip) => EventBody::Unparked {
            skip: skip.then_some(1),
            by: "ops".into(),
            reason: "try again".into(),
        },
        Ev::Finish => EventBody::Finished {
            key: "finish".into(),
            result: "done".into(),
        },
        Ev::Created => EventBody::Created(crate::journal::created()),
    };
    (T0, body)
}

/// Applies `ops` to a fresh pair, checking everything after each step
/// (nothing when `make` has no journal to test: PostgreSQL skipped).
fn run(make: fn() -> Option<Pair>, ops: &[Op]) -> Result<(), TestCaseError> {
    let Some(mut pair) = make() else {
        return Ok(());
    };
    for (i, op) in ops.iter().enumerate() {
        pair.apply(op)
            .and_then(|()| pair.check())
            .map_err(|e| TestCaseError::fail(format!("step {i} ({op:?}): {e}")))?;
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn redb_answers_as_the_memory_model_does(ops in proptest::collection::vec(op(), 1..40)) {
        run(Pair::redb, &ops)?;
    }
}

/// Found by the contract tests, kept here in the model's terms: a fork of a
/// fork, made before its parent's own fork point, read (and verified) the
/// grandparent's events past that point on redb.
#[test]
fn a_fork_of_a_fork_before_its_parents_fork_point() {
    let ops = [
        Op::Create {
            tenant: 0,
            name: None,
            limit: None,
        },
        Op::Append {
            log: 0,
            skew: 0,
            events: vec![Ev::Input, Ev::Input],
        },
        Op::Fork {
            log: 0,
            at: 1,
            other_tenant: false,
            limit: None,
        },
        Op::Fork {
            log: 1,
            at: 0,
            other_tenant: false,
            limit: None,
        },
    ];
    if let Err(e) = run(Pair::redb, &ops) {
        panic!("{e}");
    }
}
