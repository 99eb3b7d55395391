//! Several `logbook serve` workers on one PostgreSQL database: any worker
//! takes any request, a session is advanced by one worker at a time under a
//! fenced lease, a dead worker's sessions and timers move to the others,
//! and followers on any worker see every worker's events.
//!
//! Each worker is a real process with its own data directory (its compiled
//! guests and tool workspaces) and `[journal] lease_ttl_ms = 1000`, so that
//! takeovers happen within seconds. The database is a fresh one per test
//! (`postgres.rs`, `PgDb`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use logbook::journal::{EventBody, StoredEvent, verify_events};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::fixtures::*;
use crate::postgres::PgDb;
use crate::server::{Api, SseStream};

/// The lease TTL the workers run with.
const LEASE_TTL_MS: u64 = 1000;

/// One `logbook serve` process: on PostgreSQL here, on a redb data directory
/// in the chaos test.
pub(crate) struct Worker {
    child: Child,
    pub(crate) url: String,
    /// Its stderr, line by line: shown when a test fails.
    lines: mpsc::Receiver<String>,
    _data: Option<TempDir>,
}

impl Worker {
    fn start(db: &PgDb, env: &[(&str, &str)]) -> Worker {
        let data = TempDir::new().expect("a data directory");
        std::fs::write(
            data.path().join("logbook.toml"),
            format!("[journal]\nlease_ttl_ms = {LEASE_TTL_MS}\n"),
        )
        .expect("write the configuration");
        let mut worker = Worker::serve(data.path(), &["--journal", &db.url], env);
        worker._data = Some(data);
        worker
    }

    /// `logbook serve` over `data` on a port of its own, with `args` and
    /// `env`; returns once it says where it serves.
    pub(crate) fn serve(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Worker {
        let mut cmd = logbook(data);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // The workers' trace, shown when a test fails: LOGBOOK_TEST_WORKER_LOG=logbook=debug.
        if let Ok(filter) = std::env::var("LOGBOOK_TEST_WORKER_LOG") {
            cmd.env("LOGBOOK_LOG", filter);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn logbook serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + GUARD;
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).unwrap_or_else(|e| {
                let _ = child.kill();
                panic!("logbook serve never said where it serves: {e}")
            });
            assert!(
                !line.contains(":logbook@"),
                "a worker printed the database password: {line}"
            );
            if let Some((_, url)) = line.split_once(" on http://") {
                break format!("http://{url}");
            }
        };
        Worker {
            child,
            url,
            lines,
            _data: None,
        }
    }

    pub(crate) fn api(&self) -> Api {
        Api::new(&self.url, None)
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal}");
    }

    /// SIGKILL, and reap.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- the trace of worker {} ---", self.url);
            while let Ok(line) = self.lines.try_recv() {
                eprintln!("{line}");
            }
        }
        // A stopped worker must go on to die.
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn input_text(e: &StoredEvent) -> Option<String> {
    match &e.event.body {
        EventBody::Input { content, .. } => Some(logbook::journal::plain_text(content)),
        _ => None,
    }
}

pub(crate) fn output_texts(answer: &Value) -> Vec<String> {
    answer["outputs"]
        .as_array()
        .map(|o| {
            o.iter()
                .map(|x| x["text"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Send `text` through `api`, retrying while the session moves between
/// workers (503) — what a load balancer's client does.
async fn send(api: &Api, session: &str, text: &str, wait: bool) -> Value {
    let path = format!(
        "/v1/sessions/{session}/input{}",
        if wait { "?wait=idle" } else { "" }
    );
    let deadline = Instant::now() + GUARD;
    loop {
        let body = json!({ "text": text }).to_string().into_bytes();
        let (status, answer) = api.call(Method::POST, &path, Some(body)).await;
        if status.is_success() {
            return answer;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
        assert!(Instant::now() < deadline, "still unavailable: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_one_database_and_survive_a_sigkill_under_load() {
    const SESSIONS: usize = 6;
    const KILL_AFTER_ACKS: usize = 60;
    let Some(db) = PgDb::create().await else {
        return;
    };
    let workers: Vec<Worker> = (0..3).map(|_| Worker::start(&db, &[])).collect();
    let apis: Vec<Api> = workers.iter().map(Worker::api).collect();
    apis[0].add_guest("counter").await;
    for s in 0..SESSIONS {
        // Sessions are made through different workers.
        apis[s % 3].session("counter", &format!("s{s}")).await;
    }

    // Each client talks to every worker in turn, and stops talking to the
    // one that dies when its connection fails.
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for s in 0..SESSIONS {
        let (apis, acked, stop) = (apis.clone(), acked.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut mine: Vec<(u64, String)> = Vec::new();
            // Requests whose outcome the client cannot know: the worker died
            // with them in hand, or could not say whether it wrote them.
            let mut unknown = 0usize;
            let mut dead = BTreeSet::new();
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let w = (s + i) % 3;
                if dead.contains(&w) {
                    continue;
                }
                let text = format!("inc {s}-{i}");
                let body = json!({ "text": "inc" }).to_string().into_bytes();
                let path = format!("/v1/sessions/s{s}/input");
                match apis[w].try_call(Method::POST, &path, Some(body)).await {
                    Ok((status, body)) if status.is_success() => {
                        mine.push((body["seq"].as_u64().expect("a seq"), text));
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((StatusCode::SERVICE_UNAVAILABLE, body)) => {
                        if body["error"]["code"] == "journal_unavailable" {
                            unknown += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Ok((status, body)) => panic!("session s{s} via worker {w}: {status} {body}"),
                    Err(_) => {
                        unknown += 1;
                        dead.insert(w);
                    }
                }
            }
            (mine, unknown)
        }));
    }
    let deadline = Instant::now() + GUARD;
    while acked.load(Ordering::Relaxed) < KILL_AFTER_ACKS {
        assert!(Instant::now() < deadline, "deadlock guard: too few acks");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut workers = workers;
    workers.remove(1).kill();
    // Load goes on through the other two.
    let after_kill = acked.load(Ordering::Relaxed);
    while acked.load(Ordering::Relaxed) < after_kill + KILL_AFTER_ACKS {
        assert!(
            Instant::now() < deadline,
            "deadlock guard: too few acks after the kill"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for client in clients {
        acknowledged.push(guard(client).await.expect("a client"));
    }

    let survivor = &apis[0];
    for (s, (mine, unknown)) in acknowledged.iter().enumerate() {
        let name = format!("s{s}");
        let log = survivor.all_events(&name).await;
        let verified = verify_events(&log);
        assert_eq!(verified.first_bad, None, "{name}: the chain holds");
        // Every acknowledged input is at its seq, and none is there twice.
        let mut seqs = BTreeSet::new();
        for (seq, _) in mine {
            assert!(
                matches!(
                    log.get(*seq as usize).and_then(input_text).as_deref(),
                    Some("inc")
                ),
                "{name}: the acknowledged input at seq {seq}"
            );
            assert!(seqs.insert(*seq), "{name}: seq {seq} acknowledged twice");
        }
        // Besides those, only inputs whose answer the kill swallowed.
        let inputs = log.iter().filter_map(input_text).count();
        assert!(
            (mine.len()..=mine.len() + unknown).contains(&inputs),
            "{name}: {inputs} inputs logged, {} acknowledged, {unknown} unknown",
            mine.len()
        );
        // The session goes on, through either survivor, with every input counted.
        for api in [&apis[0], &apis[2]] {
            let answer = send(api, &name, "get", true).await;
            assert_eq!(
                output_texts(&answer).last().map(String::as_str),
                Some(format!("count = {inputs}").as_str()),
                "{name}: {answer}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_on_one_worker_sees_what_the_others_append() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let workers: Vec<Worker> = (0..3).map(|_| Worker::start(&db, &[])).collect();
    let apis: Vec<Api> = workers.iter().map(Worker::api).collect();
    apis[0].add_guest("counter").await;
    apis[0].session("counter", "c").await;
    let mut stream = SseStream::open(&apis[2], "c", None).await;
    for i in 0..10 {
        send(&apis[i % 2], "c", "inc", true).await;
    }
    let head = apis[1].all_events("c").await.len() as u64 - 1;
    let mut seen = Vec::new();
    let mut resumed = false;
    while seen.last().is_none_or(|&last| last < head) {
        let event = guard(stream.next()).await.expect("the stream goes on");
        if event.kind == "delta" {
            continue;
        }
        seen.push(event.id);
        if !resumed && seen.len() == 5 {
            // Reconnect to another worker, resuming after the last seen.
            resumed = true;
            stream = SseStream::open(&apis[1], "c", Some(event.id)).await;
        }
    }
    assert_eq!(
        seen,
        (0..=head).collect::<Vec<_>>(),
        "every seq once, in order"
    );
}

/// The ends (`completed`, `failed`) logged for one effect key.
fn ends_of(log: &[StoredEvent], key: &str) -> Vec<&'static str> {
    log.iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Completed { key: k, .. } if k == key => Some("completed"),
            EventBody::Failed { key: k, .. } if k == key => Some("failed"),
            _ => None,
        })
        .collect()
}

/// Ask the assistant on `api` to write a file; answers the approval's key.
async fn pending_write(api: &Api, session: &str) -> String {
    let answer = send(api, session, crate::server::WRITE_A, true).await;
    assert_eq!(answer["status"], "waiting-approval", "{answer}");
    let (_, info) = api.get(&format!("/v1/sessions/{session}")).await;
    info["pending_approvals"][0]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("a pending approval: {info}"))
        .to_string()
}

async fn approve(api: &Api, session: &str, key: &str) {
    let path = format!("/v1/sessions/{session}/approvals/{key}");
    let deadline = Instant::now() + GUARD;
    loop {
        let (status, body) = api.post(&path, json!({ "allow": true })).await;
        if status.is_success() {
            return;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_pending_on_a_killed_worker_is_decided_through_another() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let a = Worker::start(&db, &[]);
    let b = Worker::start(&db, &[]);
    let (api_a, api_b) = (a.api(), b.api());
    api_a.add_guest("assistant").await;
    api_a.session("assistant", "a").await;
    let key = pending_write(&api_a, "a").await;
    a.kill();
    // Once a's lease has expired, b takes the session over with the
    // decision: it runs the approved tool, once, and the model reads it.
    tokio::time::sleep(Duration::from_millis(2 * LEASE_TTL_MS)).await;
    approve(&api_b, "a", &key).await;
    let done = api_b.wait_status("a", "idle").await;
    let log = api_b.all_events("a").await;
    assert_eq!(
        ends_of(&log, &key),
        ["completed"],
        "the tool ran once: {done}"
    );
    assert_eq!(verify_events(&log).first_bad, None);
}

/// Decided before the dead holder's lease expires, the decision goes into
/// the log through the journal, written without the lease: the journal keeps
/// the tool `unstarted` until a lease holder claims it. The dead holder never
/// did, so the worker that takes the session over knows that the tool has
/// not run, and runs it: once, not `failed{interrupted}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_decided_while_the_dead_holders_lease_lasts_runs_once_after_failover() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let a = Worker::start(&db, &[]);
    let b = Worker::start(&db, &[]);
    let (api_a, api_b) = (a.api(), b.api());
    api_a.add_guest("assistant").await;
    api_a.session("assistant", "a").await;
    let key = pending_write(&api_a, "a").await;
    a.kill();
    approve(&api_b, "a", &key).await;
    // b's sweeper takes the session over when a's lease expires.
    let deadline = Instant::now() + GUARD;
    let log = loop {
        let log = api_b.all_events("a").await;
        if !ends_of(&log, &key).is_empty() {
            break log;
        }
        assert!(Instant::now() < deadline, "the approved tool never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ends_of(&log, &key), ["completed"], "the tool ran, once");
    assert_eq!(verify_events(&log).first_bad, None);
    let answer = send(&api_b, "a", "hello", true).await;
    assert_eq!(answer["status"], "idle", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_fire_exactly_once_across_three_workers_even_when_their_worker_dies() {
    const SESSIONS: usize = 6;
    let Some(db) = PgDb::create().await else {
        return;
    };
    let mut workers: Vec<Worker> = (0..3).map(|_| Worker::start(&db, &[])).collect();
    let apis: Vec<Api> = workers.iter().map(Worker::api).collect();
    apis[0].add_guest("counter").await;
    for s in 0..SESSIONS {
        let name = format!("t{s}");
        apis[s % 3].session("counter", &name).await;
        // Set through worker 0, which holds every session's lease after.
        send(&apis[0], &name, "inc", true).await;
        send(&apis[0], &name, "remind 1500", false).await;
    }
    // The worker that set the timers dies before they are due.
    workers.remove(0).kill();
    for s in 0..SESSIONS {
        let name = format!("t{s}");
        let deadline = Instant::now() + GUARD;
        loop {
            let log = apis[1 + s % 2].all_events(&name).await;
            let reminders = log
                .iter()
                .filter(|e| {
                    matches!(&e.event.body, EventBody::Output { content, .. }
                    if logbook::journal::plain_text(content).starts_with("reminder"))
                })
                .count();
            if reminders > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{name}: the timer never fired");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Give every worker time to (wrongly) fire again, then count.
    tokio::time::sleep(Duration::from_millis(3 * LEASE_TTL_MS)).await;
    for s in 0..SESSIONS {
        let log = apis[1].all_events(&format!("t{s}")).await;
        let mut ends: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        for e in &log {
            match &e.event.body {
                EventBody::Requested {
                    key,
                    effect: logbook::journal::RequestedEffect::Sleep { .. },
                } => {
                    ends.entry(key.clone()).or_default().push("requested");
                }
                EventBody::Completed { key, .. } if ends.contains_key(key) => {
                    ends.entry(key.clone()).or_default().push("completed");
                }
                _ => {}
            }
        }
        assert_eq!(ends.len(), 1, "t{s}: one timer: {ends:?}");
        for kinds in ends.values() {
            assert_eq!(kinds, &["requested", "completed"], "t{s}: fired once");
        }
        let reminders = log
            .iter()
            .filter(|e| {
                matches!(&e.event.body, EventBody::Output { content, .. }
                if logbook::journal::plain_text(content).starts_with("reminder"))
            })
            .count();
        assert_eq!(reminders, 1, "t{s}");
        assert_eq!(verify_events(&log).first_bad, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_is_fenced_when_it_wakes_and_nothing_runs_twice() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    // Model calls take 1.5 s on worker a, so one is in flight when it stops.
    let a = Worker::start(&db, &[("LOGBOOK_ECHO_DELAY_MS", "1500")]);
    let b = Worker::start(&db, &[]);
    let (api_a, api_b) = (a.api(), b.api());
    api_a.add_guest("assistant").await;
    api_a.session("assistant", "s").await;
    send(&api_a, "s", "hello", false).await;
    // a holds the lease and its model call is in flight: stop it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.signal("-STOP");
    // b takes over once a's lease expires: the model call is re-run there.
    let answer = send(&api_b, "s", "again", true).await;
    assert_eq!(answer["status"], "idle", "{answer}");
    a.signal("-CONT");
    // a's model call ends now; its append must be refused.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    send(&api_b, "s", "last", true).await;
    let log = api_b.all_events("s").await;
    assert_eq!(verify_events(&log).first_bad, None);
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    for e in &log {
        if let EventBody::Completed { key, .. } | EventBody::Failed { key, .. } = &e.event.body {
            *ends.entry(key.clone()).or_default() += 1;
        }
    }
    assert!(
        ends.values().all(|n| *n == 1),
        "an effect ended twice: {ends:?}"
    );
    let inputs: Vec<String> = log.iter().filter_map(input_text).collect();
    assert_eq!(inputs, ["hello", "again", "last"]);
    // a still serves, through the journal, and its view is the log's.
    let answer = send(&api_a, "s", "from a", true).await;
    assert_eq!(answer["status"], "idle", "{answer}");
    let log = api_a.all_events("s").await;
    assert_eq!(verify_events(&log).first_bad, None);
}
