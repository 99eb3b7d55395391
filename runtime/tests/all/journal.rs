//! The journal against a real redb file: group commit, persistence across a
//! reopen, tamper detection, export lines and the golden log format. What
//! every backend must do is in `journal_contract.rs`; the helpers here are
//! shared with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use logbook::journal::tables::{self, EVENTS};
use logbook::journal::*;
use redb::ReadableTable;
use tempfile::TempDir;

mod tenants;

pub(crate) const T0: u64 = 1_700_000_000_000;

pub(crate) fn guest(name: &str) -> GuestRef {
    GuestRef {
        name: name.into(),
        digest: digest_of(name.as_bytes()),
    }
}

pub(crate) fn created() -> Created {
    Created {
        guest: guest("counter"),
        config: serde_json::json!({"step": 1}),
        seed: 7,
        parent: None,
        compacted_from: None,
        summary: None,
        tools: vec![],
    }
}

pub(crate) fn new_log(tenant: &str, name: Option<&str>) -> NewLog {
    NewLog {
        id: LogId::now_v7(),
        tenant: tenant.into(),
        name: name.map(Into::into),
        at: T0,
        created: created(),
        session_limit: None,
    }
}

pub(crate) fn input(text: &str) -> EventBody {
    EventBody::Input {
        from: Sender::Principal("cli".into()),
        content: vec![ContentBlock::text(text)],
    }
}

fn open_journal(dir: &TempDir) -> (PathBuf, Arc<RedbJournal>) {
    let path = dir.path().join("journal.redb");
    let journal = RedbJournal::open(&path, JournalConfig::default()).expect("open journal");
    (path, journal)
}

async fn create(journal: &RedbJournal, tenant: &str, name: Option<&str>) -> LogId {
    let nl = new_log(tenant, name);
    let id = nl.id;
    journal
        .commit(Commit::new_log(nl))
        .await
        .expect("create log");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_are_group_committed() {
    const LOGS: usize = 16;
    const APPENDS: u64 = 25;
    let dir = TempDir::new().unwrap();
    let (_, journal) = open_journal(&dir);
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
                let committed = journal
                    .commit(Commit::append(
                        id,
                        seq,
                        vec![(T0 + seq, input(&format!("{seq}")))],
                    ))
                    .await
                    .expect("append");
                assert_eq!(committed.events[0].1.event.seq, seq);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let after = journal.stats();
    let requests = after.requests - before.requests;
    let commits = after.commits - before.commits;
    assert_eq!(requests, LOGS as u64 * APPENDS);
    assert_eq!(after.events - before.events, LOGS as u64 * APPENDS);
    assert!(
        commits < requests,
        "no group commit: {commits} transactions for {requests} requests"
    );
    for id in ids {
        let events = journal.read(id, 0, 1000).await.unwrap();
        assert_eq!(events.len() as u64, APPENDS + 1);
        assert!(journal.verify(id).await.unwrap().is_ok());
    }
}

pub(crate) fn tool_call(id: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: "read_file".into(),
        arguments: r#"{"path":"notes.txt"}"#.into(),
    }
}

#[tokio::test]
async fn heads_status_and_open_effects_survive_a_reopen() {
    let dir = TempDir::new().unwrap();
    let (path, journal) = open_journal(&dir);
    let running = create(&journal, DEFAULT_TENANT, Some("running")).await;
    let asking = create(&journal, DEFAULT_TENANT, None).await;
    let sleeping = create(&journal, DEFAULT_TENANT, None).await;
    let done = create(&journal, DEFAULT_TENANT, None).await;
    let broken = create(&journal, DEFAULT_TENANT, None).await;

    let commit = Commit {
        appends: vec![
            Append {
                lease: None,
                log: running,
                expected_seq: 1,
                at_head: false,
                events: vec![
                    (
                        T0,
                        EventBody::Requested {
                            key: "call-1".into(),
                            effect: RequestedEffect::Tool(tool_call("call-1")),
                        },
                    ),
                    (
                        T0,
                        EventBody::Requested {
                            key: "nap".into(),
                            effect: RequestedEffect::Sleep { until: T0 + 60_000 },
                        },
                    ),
                ],
            },
            Append {
                lease: None,
                log: asking,
                expected_seq: 1,
                at_head: false,
                events: vec![(
                    T0,
                    EventBody::ApprovalRequested {
                        key: "ask-1".into(),
                        tool: None,
                        question: Some(Question { text: "Go?".into() }),
                    },
                )],
            },
            Append {
                lease: None,
                log: sleeping,
                expected_seq: 1,
                at_head: false,
                events: vec![(
                    T0,
                    EventBody::Requested {
                        key: "nap".into(),
                        effect: RequestedEffect::Sleep { until: T0 + 60_000 },
                    },
                )],
            },
            Append {
                lease: None,
                log: done,
                expected_seq: 1,
                at_head: false,
                events: vec![(
                    T0,
                    EventBody::Finished {
                        key: "finish".into(),
                        result: "42".into(),
                    },
                )],
            },
            Append {
                lease: None,
                log: broken,
                expected_seq: 1,
                at_head: false,
                events: vec![(
                    T0,
                    EventBody::GuestFailed {
                        message: "out of fuel".into(),
                    },
                )],
            },
        ],
        ..Commit::default()
    };
    journal.commit(commit).await.unwrap();

    let status = async |j: &RedbJournal, id| j.info(id).await.unwrap().unwrap().status;
    assert_eq!(status(&journal, running).await, LogStatus::Running);
    assert_eq!(status(&journal, asking).await, LogStatus::WaitingApproval);
    assert_eq!(status(&journal, sleeping).await, LogStatus::Sleeping);
    assert_eq!(status(&journal, done).await, LogStatus::Finished);
    assert_eq!(status(&journal, broken).await, LogStatus::Failed);
    let mut before: Vec<LogInfo> = Vec::new();
    for id in [running, asking, sleeping, done, broken] {
        before.push(journal.info(id).await.unwrap().unwrap());
    }

    drop(journal);
    let journal = RedbJournal::open(&path, JournalConfig::default()).expect("reopen");
    let mut after: Vec<LogInfo> = Vec::new();
    for id in [running, asking, sleeping, done, broken] {
        after.push(journal.info(id).await.unwrap().unwrap());
    }
    assert_eq!(before, after);
    let open = &after[0].open;
    assert_eq!(open.len(), 2);
    assert_eq!(open[0].key, "call-1");
    assert_eq!(open[0].effect, RequestedEffect::Tool(tool_call("call-1")));
    assert!(!open[0].awaiting_approval);
    assert_eq!(
        after[1].open,
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

    // The head survived: the next seq is accepted, a stale one refused.
    assert!(matches!(
        journal
            .commit(Commit::append(running, 1, vec![(T0, input("x"))]))
            .await,
        Err(JournalError::Conflict { actual: 3, .. })
    ));
    let events = vec![
        (
            T0,
            EventBody::Completed {
                key: "call-1".into(),
                outcome: Outcome::tool_text("milk", false),
            },
        ),
        (
            T0,
            EventBody::Failed {
                key: "nap".into(),
                error: ErrorKind::Interrupted,
                message: "host stopped".into(),
                retryable: false,
                attempt: 1,
            },
        ),
    ];
    journal
        .commit(Commit::append(running, 3, events))
        .await
        .unwrap();
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
    let changed = EventBody::GuestChanged {
        from: guest("counter"),
        to: guest("counter-2"),
    };
    journal
        .commit(Commit::append(broken, 2, vec![(T0, changed)]))
        .await
        .unwrap();

    assert_eq!(status(&journal, running).await, LogStatus::Idle);
    assert_eq!(status(&journal, asking).await, LogStatus::Idle);
    let fixed = journal.info(broken).await.unwrap().unwrap();
    assert_eq!(fixed.status, LogStatus::Idle);
    assert_eq!(fixed.guest, guest("counter-2"));
    assert_eq!(journal.open_logs(None, 1000).await.unwrap(), [sleeping]);
    for id in [running, asking, sleeping, done, broken] {
        assert!(journal.verify(id).await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn a_closed_journal_refuses_commits_but_reads() {
    let dir = TempDir::new().unwrap();
    let (_, journal) = open_journal(&dir);
    let id = create(&journal, DEFAULT_TENANT, None).await;
    journal.close();
    assert!(matches!(
        journal
            .commit(Commit::append(id, 1, vec![(T0, input("x"))]))
            .await,
        Err(JournalError::Closed)
    ));
    assert_eq!(journal.read(id, 0, 10).await.unwrap().len(), 1);
}

#[test]
fn tickets_can_be_waited_on_without_a_runtime() {
    // redb answers reads at the first poll: no runtime is needed for them either.
    let now_or_never =
        |f| futures_util::FutureExt::now_or_never(f).expect("redb reads are ready at once");
    let dir = TempDir::new().unwrap();
    let (_, journal) = open_journal(&dir);
    let nl = new_log(DEFAULT_TENANT, None);
    let id = nl.id;
    journal.commit(Commit::new_log(nl)).wait().unwrap();
    assert_eq!(now_or_never(journal.info(id)).unwrap().unwrap().next_seq, 1);
}

/// Flips one byte of a stored body with plain redb, as an attacker or a bad
/// disk would.
fn tamper(path: &Path, log: LogId, seq: u64) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut events = txn.open_table(EVENTS).unwrap();
        let mut value = events
            .get((log.as_u128(), seq))
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        let body = &mut value[tables::EVENT_HEADER_LEN..];
        let at = body
            .windows(6)
            .position(|w| w == b"second")
            .expect("the body holds the text");
        body[at] = b'S';
        events
            .insert((log.as_u128(), seq), value.as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
}

#[tokio::test]
async fn verify_names_the_tampered_seq() {
    let dir = TempDir::new().unwrap();
    let (path, journal) = open_journal(&dir);
    let id = create(&journal, DEFAULT_TENANT, None).await;
    let events = ["first", "second", "third"]
        .iter()
        .map(|t| (T0, input(t)))
        .collect();
    journal.commit(Commit::append(id, 1, events)).await.unwrap();
    assert_eq!(
        journal.verify(id).await.unwrap(),
        Verified {
            events: 4,
            first_bad: None
        }
    );
    drop(journal);

    tamper(&path, id, 2);
    let journal = RedbJournal::open(&path, JournalConfig::default()).unwrap();
    let v = journal.verify(id).await.unwrap();
    assert_eq!(v.events, 4);
    let (seq, why) = v.first_bad.expect("tampering is found");
    assert_eq!(seq, 2);
    assert!(why.contains("hash mismatch"), "{why}");
    assert!(matches!(
        journal.verify(LogId::now_v7()).await,
        Err(JournalError::UnknownLog(_))
    ));
}

#[tokio::test]
async fn jsonl_round_trips_and_reimports_under_a_new_id() {
    let dir = TempDir::new().unwrap();
    let (_, journal) = open_journal(&dir);
    let id = create(&journal, DEFAULT_TENANT, None).await;
    let bodies = golden_events().into_iter().skip(1).collect();
    journal.commit(Commit::append(id, 1, bodies)).await.unwrap();
    let events = journal.read(id, 0, 1000).await.unwrap();
    let lines: Vec<String> = events.iter().map(to_jsonl).collect();
    let parsed: Vec<StoredEvent> = lines.iter().map(|l| from_jsonl(l).unwrap()).collect();
    assert_eq!(parsed, events);
    assert!(verify_events(&parsed).is_ok());

    // Import: a new log with the same events hashes the same.
    let copy = NewLog {
        id: LogId::now_v7(),
        tenant: DEFAULT_TENANT.into(),
        name: None,
        at: parsed[0].event.at,
        created: match &parsed[0].event.body {
            EventBody::Created(c) => c.clone(),
            other => panic!("seq 0 is {other:?}"),
        },
        session_limit: None,
    };
    let copy_id = copy.id;
    let rest = parsed[1..]
        .iter()
        .map(|e| (e.event.at, e.event.body.clone()))
        .collect();
    journal
        .commit(Commit {
            claims: Vec::new(),
            new_logs: vec![copy],
            appends: vec![Append {
                lease: None,
                log: copy_id,
                expected_seq: 1,
                at_head: false,
                events: rest,
            }],
            names: vec![],
        })
        .await
        .unwrap();
    assert_eq!(journal.read(copy_id, 0, 1000).await.unwrap(), parsed);
}

/// One event of every kind (and every effect, outcome, sender and content
/// block), as `(at, body)`, seq 0 first. The golden file pins their JSON.
fn golden_events() -> Vec<(u64, EventBody)> {
    let other_log = "0190f5a2-7c3e-7a11-9e4b-5d2c8f3a6b10".to_string();
    let call = tool_call("call-1");
    let bodies = vec![
        EventBody::Created(Created {
            guest: guest("assistant"),
            config: serde_json::json!({"model": "echo", "max_turns": 3}),
            seed: 42,
            parent: None,
            compacted_from: Some(LogPos {
                log: other_log.clone(),
                seq: 17,
            }),
            summary: Some("The user keeps a shopping list in notes.txt.".into()),
            tools: vec![ToolSpec {
                name: "read_file".into(),
                description: "Read a file of the workspace.".into(),
                parameters: serde_json::json!({
                    "type": "object",
                    "properties": {"path": {"type": "string"}},
                    "required": ["path"],
                }),
            }],
        }),
        EventBody::Input {
            from: Sender::Principal("cli".into()),
            content: vec![ContentBlock::text("What is on my list?")],
        },
        EventBody::Requested {
            key: "model-1".into(),
            effect: RequestedEffect::Model {
                model: "echo".into(),
                digest: digest_of(b"model request 1"),
                summary: "1 message, 1 tool".into(),
            },
        },
        EventBody::Completed {
            key: "model-1".into(),
            outcome: Outcome::Model(ModelResponse {
                content: vec![
                    ContentBlock::Reasoning {
                        text: Some("The list is in notes.txt.".into()),
                        signature: Some("c2lnbmF0dXJl".into()),
                        opaque: None,
                        provider: "anthropic".into(),
                    },
                    ContentBlock::text("Let me look."),
                    ContentBlock::ToolCall(call.clone()),
                ],
                stop_reason: StopReason::ToolUse,
                usage: Some(Usage {
                    input_tokens: 120,
                    output_tokens: 31,
                }),
                provider: "anthropic".into(),
                model: "claude-sonnet".into(),
            }),
        },
        EventBody::Requested {
            key: "call-1".into(),
            effect: RequestedEffect::Tool(call.clone()),
        },
        EventBody::ApprovalRequested {
            key: "call-1".into(),
            tool: Some(call),
            question: None,
        },
        EventBody::ApprovalDecided {
            key: "call-1".into(),
            allow: true,
            by: "cli".into(),
            reason: Some("reading is fine".into()),
        },
        EventBody::Completed {
            key: "call-1".into(),
            outcome: Outcome::tool_text("milk\neggs", false),
        },
        EventBody::ApprovalRequested {
            key: "ask-1".into(),
            tool: None,
            question: Some(Question {
                text: "Shall I order them?".into(),
            }),
        },
        EventBody::ApprovalDecided {
            key: "ask-1".into(),
            allow: false,
            by: "cli".into(),
            reason: None,
        },
        EventBody::Requested {
            key: "nap-1".into(),
            effect: RequestedEffect::Sleep { until: T0 + 60_000 },
        },
        EventBody::Completed {
            key: "nap-1".into(),
            outcome: Outcome::TimerFired,
        },
        EventBody::Requested {
            key: "ask-2".into(),
            effect: RequestedEffect::Ask(Question {
                text: "Anything else?".into(),
            }),
        },
        EventBody::Cancelled {
            key: "ask-2".into(),
        },
        EventBody::Requested {
            key: "model-2".into(),
            effect: RequestedEffect::Model {
                model: "echo".into(),
                digest: digest_of(b"model request 2"),
                summary: "5 messages, 1 tool".into(),
            },
        },
        EventBody::Failed {
            key: "model-2".into(),
            error: ErrorKind::RateLimited,
            message: "429 Too Many Requests".into(),
            retryable: true,
            attempt: 1,
        },
        EventBody::Completed {
            key: "model-2".into(),
            outcome: Outcome::Model(ModelResponse {
                content: vec![
                    ContentBlock::Reasoning {
                        text: None,
                        signature: None,
                        opaque: Some("ZW5jcnlwdGVk".into()),
                        provider: "openai".into(),
                    },
                    ContentBlock::text("You need milk and eggs."),
                ],
                stop_reason: StopReason::EndTurn,
                usage: Some(Usage {
                    input_tokens: 180,
                    output_tokens: 9,
                }),
                provider: "openai".into(),
                model: "gpt".into(),
            }),
        },
        EventBody::Output {
            key: "out-1".into(),
            content: vec![
                ContentBlock::text("You need milk and eggs."),
                ContentBlock::ToolResult {
                    call_id: "call-1".into(),
                    content: "milk\neggs".into(),
                    is_error: false,
                    parts: Vec::new(),
                },
            ],
        },
        EventBody::Sent {
            key: "send-1".into(),
            target: other_log.clone(),
        },
        EventBody::Input {
            from: Sender::Log {
                log: other_log.clone(),
                key: "send-7".into(),
                hops: 0,
            },
            content: vec![ContentBlock::text("Noted.")],
        },
        EventBody::GuestFailed {
            message: "wasm trap: all fuel consumed".into(),
        },
        EventBody::Unparked {
            skip: Some(19),
            by: "ops".into(),
            reason: "the note is too long for this guest".into(),
        },
        EventBody::Stopped {
            by: "logbook".into(),
            reason: "limit session_model_calls_per_minute = 120: 120 model calls in the last minute, and 1 more asked".into(),
        },
        EventBody::Resumed { by: "ops".into() },
        EventBody::GuestChanged {
            from: guest("assistant"),
            to: guest("assistant-v2"),
        },
        // A stream that ended without its usage chunk: usage unknown, and
        // left out of the JSON.
        EventBody::Completed {
            key: "model-3".into(),
            outcome: Outcome::Model(ModelResponse {
                content: vec![ContentBlock::text("Done.")],
                stop_reason: StopReason::EndTurn,
                usage: None,
                provider: "openai".into(),
                model: "qwen2.5:7b".into(),
            }),
        },
        EventBody::Finished {
            key: "finish-1".into(),
            result: "milk, eggs".into(),
        },
        EventBody::Continued { log: other_log },
    ];
    bodies
        .into_iter()
        .zip(0..)
        .map(|(body, i)| (T0 + i * 1000, body))
        .collect()
}

const ALL_KINDS: [&str; 17] = [
    "created",
    "input",
    "requested",
    "completed",
    "failed",
    "cancelled",
    "approval-requested",
    "approval-decided",
    "output",
    "sent",
    "guest-changed",
    "guest-failed",
    "unparked",
    "stopped",
    "resumed",
    "finished",
    "continued",
];

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../log/tests/golden/events.jsonl")
}

/// The log format is pinned by `golden/events.jsonl`; `LOGBOOK_BLESS=1`
/// rewrites it after a deliberate format change.
#[tokio::test]
async fn golden_events_match_the_file() {
    let events = chain_events(GENESIS_HASH, 0, golden_events());
    let kinds: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.event.body.kind()).collect();
    assert_eq!(kinds, ALL_KINDS.into_iter().collect());
    let text: String = events.iter().map(|e| to_jsonl(e) + "\n").collect();

    let path = golden_path();
    if std::env::var_os("LOGBOOK_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &text).unwrap();
    }
    let file = std::fs::read_to_string(&path).expect("golden file (LOGBOOK_BLESS=1 writes it)");
    for (i, (want, got)) in file.lines().zip(text.lines()).enumerate() {
        assert_eq!(want, got, "line {} of {} differs", i + 1, path.display());
    }
    assert_eq!(file.lines().count(), text.lines().count());

    // The file parses back, and its chain holds.
    let parsed: Vec<StoredEvent> = file.lines().map(|l| from_jsonl(l).unwrap()).collect();
    assert_eq!(parsed, events);
    assert!(verify_events(&parsed).is_ok());

    // A journal writing the same events under any id stores the same hashes.
    let dir = TempDir::new().unwrap();
    let (_, journal) = open_journal(&dir);
    let mut bodies = golden_events().into_iter();
    let (at, EventBody::Created(created)) = bodies.next().unwrap() else {
        panic!("seq 0 is created")
    };
    let id = LogId::now_v7();
    let commit = Commit {
        claims: Vec::new(),
        new_logs: vec![NewLog {
            id,
            tenant: DEFAULT_TENANT.into(),
            name: None,
            at,
            created,
            session_limit: None,
        }],
        appends: vec![Append {
            lease: None,
            log: id,
            expected_seq: 1,
            at_head: false,
            events: bodies.collect(),
        }],
        names: vec![],
    };
    journal.commit(commit).await.unwrap();
    assert_eq!(journal.read(id, 0, 1000).await.unwrap(), events);
    assert!(journal.verify(id).await.unwrap().is_ok());
    assert_eq!(
        journal.info(id).await.unwrap().unwrap().status,
        LogStatus::Finished
    );
}

#[test]
fn the_format_doc_quotes_the_golden_file() {
    let golden = std::fs::read_to_string(golden_path()).unwrap();
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/log-format.md");
    let doc = std::fs::read_to_string(doc).unwrap();
    let quoted: Vec<&str> = doc
        .lines()
        .filter(|l| l.starts_with(r#"{"seq":"#))
        .collect();
    assert!(quoted.len() >= ALL_KINDS.len());
    for line in quoted {
        assert!(
            golden.lines().any(|g| g == line),
            "not in the golden file: {line}"
        );
    }
}

/// Replay speed: how long `read` takes per event for a 10,000-event log.
/// Run with `cargo test --release -p logbook --test all -- --ignored decode_speed --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn decode_speed() {
    const N: u64 = 10_000;
    let dir = TempDir::new().unwrap();
    let (_, journal) = open_journal(&dir);
    let id = create(&journal, DEFAULT_TENANT, None).await;
    let sample: Vec<EventBody> = golden_events()
        .into_iter()
        .skip(1)
        .map(|(_, b)| b)
        .collect();
    let mut seq = 1;
    while seq < N {
        let events: Vec<(u64, EventBody)> = (seq..(seq + 1000).min(N))
            .map(|s| (T0 + s, sample[(s as usize) % sample.len()].clone()))
            .collect();
        let n = events.len() as u64;
        journal
            .commit(Commit::append(id, seq, events))
            .await
            .unwrap();
        seq += n;
    }
    let mut best = std::time::Duration::MAX;
    for _ in 0..20 {
        let start = std::time::Instant::now();
        let events = journal.read(id, 0, N as usize).await.unwrap();
        best = best.min(start.elapsed());
        assert_eq!(events.len() as u64, N);
    }
    println!(
        "read {N} events: {:?} ({} ns/event)",
        best,
        best.as_nanos() / u128::from(N)
    );
}

/// Group commit: many sessions appending one event at a time, durably.
/// Run with `cargo test --release -p logbook --test all -- --ignored group_commit_throughput --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn group_commit_throughput() {
    const LOGS: usize = 64;
    const APPENDS: u64 = 50;
    let dir = TempDir::new().unwrap();
    let (_, journal) = open_journal(&dir);
    let mut ids = Vec::new();
    for _ in 0..LOGS {
        ids.push(create(&journal, DEFAULT_TENANT, None).await);
    }

    // One writer alone: the latency of a durable append.
    let start = std::time::Instant::now();
    for seq in 1..=100 {
        journal
            .commit(Commit::append(ids[0], seq, vec![(T0, input("x"))]))
            .await
            .unwrap();
    }
    println!("sequential: {:?} per durable append", start.elapsed() / 100);

    let before = journal.stats();
    let start = std::time::Instant::now();
    let tasks: Vec<_> = ids
        .iter()
        .skip(1)
        .map(|id| {
            let (journal, id) = (journal.clone(), *id);
            tokio::spawn(async move {
                for seq in 1..=APPENDS {
                    journal
                        .commit(Commit::append(id, seq, vec![(T0, input("x"))]))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let after = journal.stats();
    let events = after.events - before.events;
    println!(
        "concurrent: {} logs, {events} appends in {elapsed:?} ({:.0} appends/s), {} transactions ({:.1} appends each)",
        LOGS - 1,
        events as f64 / elapsed.as_secs_f64(),
        after.commits - before.commits,
        events as f64 / (after.commits - before.commits) as f64
    );
}
