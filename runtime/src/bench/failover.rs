//! The `failover` bench (PostgreSQL only): how long a session whose worker
//! died waits before another worker advances it.
//!
//! Two real `logbook serve --journal URL` processes (this binary, each with
//! its own data directory and `[journal] lease_ttl_ms`) share a fresh
//! database. Each round starts a worker A whose EchoModel never answers in
//! time (`LOGBOOK_ECHO_DELAY_MS`), so that a session's model call is open
//! on A; then SIGKILLs A and times, from the kill, the first event worker B
//! appends to that session (B's sweeper finds it once A's lease expires,
//! runs the model call again and logs its answer). B lives through all
//! rounds; every round has its own A and its own session.
//!
//! Invariants: the children die with the bench (SIGKILL on drop, also on
//! error), before the database is dropped; the event count that starts the
//! wait is read after the kill, so no event of A's is taken for B's.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::postgres::BenchDb;
use super::{BenchResult, percentile, tempdir};

/// How long a worker may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long A may take to log its model call's `requested`.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// B must have taken over within this much more than the lease TTL, or the
/// bench fails (ten times the target: a failure, not a slow figure).
const TAKEOVER_SLACK: Duration = Duration::from_secs(10);

/// How often B's view of the session is polled: the figure's resolution.
const POLL: Duration = Duration::from_millis(5);

/// A's EchoModel answers after this: never, within a round.
const A_ECHO_DELAY_MS: &str = "600000";

/// Events of a session whose first model call is open: `created`, `input`,
/// `requested`.
const EVENTS_WITH_MODEL_CALL_OPEN: u64 = 3;

/// Why `failover` does not run on redb (and nothing else is skipped there).
pub(super) fn skipped_on_redb(bench: &str) -> Option<&'static str> {
    (bench == "failover")
        .then_some("needs a journal that several workers share: run it with --journal postgres://…")
}

fn fail(what: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("failover bench: {what}: {e}")
}

/// One `logbook serve` child process, SIGKILLed when dropped.
struct ServeWorker {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    base: String,
    _data: tempfile::TempDir,
}

impl ServeWorker {
    /// Start a worker on `db_url` with `lease_ttl_ms`, its compiled guests
    /// in `cache` (shared, so that no round compiles), and, when given, an
    /// EchoModel that takes `echo_delay_ms` to answer.
    async fn start(
        db_url: &str,
        cache: &Path,
        lease_ttl_ms: u64,
        echo_delay_ms: Option<&str>,
    ) -> BenchResult<ServeWorker> {
        let data = tempdir()?;
        let config = data.path().join("logbook.toml");
        std::fs::write(
            &config,
            format!("[journal]\nlease_ttl_ms = {lease_ttl_ms}\n"),
        )
        .and_then(|()| std::os::unix::fs::symlink(cache, data.path().join("cache")))
        .map_err(|e| fail("cannot prepare a worker's data directory", e))?;
        let exe = std::env::current_exe().map_err(|e| fail("cannot find this binary", e))?;
        let mut cmd = Command::new(exe);
        cmd.arg("--data")
            .arg(data.path())
            .arg("--config")
            .arg(&config)
            .args(["serve", "--listen", "127.0.0.1:0", "--journal", db_url])
            // What would send the child elsewhere, or slow B's model.
            .env_remove("LOGBOOK_URL")
            .env_remove("LOGBOOK_ECHO_DELAY_MS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(ms) = echo_delay_ms {
            cmd.env("LOGBOOK_ECHO_DELAY_MS", ms);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| fail("cannot start logbook serve", e))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Reads the child's stderr to its end, so that it never blocks on a
        // full pipe; the line that says where it serves is passed on.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some((_, at)) = line.split_once(" on http://") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Ok(format!("http://{at}")));
                    }
                } else if tx.is_some() {
                    seen.push(line);
                }
            }
            if let Some(tx) = tx.take() {
                let _ = tx.send(Err(seen.join("\n")));
            }
        });
        let mut worker = ServeWorker {
            child,
            base: String::new(),
            _data: data,
        };
        worker.base = match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(Ok(base))) => base,
            Ok(Ok(Err(said))) => return Err(fail("logbook serve ended before it served", said)),
            Ok(Err(e)) => return Err(fail("logbook serve ended before it served", e)),
            Err(_) => {
                return Err(fail(
                    "logbook serve did not start",
                    format!("not serving after {START_TIMEOUT:?}"),
                ));
            }
        };
        Ok(worker)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1{path}", self.base)
    }

    /// SIGKILL, and reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeWorker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A JSON request to a worker; its answer, which must be a success.
async fn call(request: reqwest::RequestBuilder, what: &str) -> BenchResult<Value> {
    let answer = request.send().await.map_err(|e| fail(what, e))?;
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(fail(what, format!("{status} {body}")));
    }
    Ok(body)
}

/// The number of events of `session` as `worker` sees it.
async fn events(client: &reqwest::Client, worker: &ServeWorker, session: &str) -> BenchResult<u64> {
    let info = call(
        client.get(worker.url(&format!("/sessions/{session}"))),
        "read a session",
    )
    .await?;
    info["events"]
        .as_u64()
        .ok_or_else(|| fail("read a session", format!("no event count in {info}")))
}

/// `rounds` failovers on a fresh database on the server of `admin`: the
/// time from SIGKILL of the worker with a model call open to the first
/// event another worker appends to that session.
pub(super) async fn failover(
    admin: &str,
    cache: &Path,
    rounds: usize,
    lease_ttl_ms: u64,
) -> BenchResult<Value> {
    // Declared first, dropped last: after the workers are dead.
    let db = BenchDb::create(admin).await?;
    crate::effects::install_crypto_provider();
    let client = reqwest::Client::new();
    let b = ServeWorker::start(&db.url, cache, lease_ttl_ms, None).await?;
    let assistant = crate::examples::get("assistant").expect("examples are built in");
    call(
        client
            .post(b.url("/guests?name=assistant"))
            .header("content-type", "application/wasm")
            .body(assistant.to_vec()),
        "add the assistant guest",
    )
    .await?;
    let limit = Duration::from_millis(lease_ttl_ms) + TAKEOVER_SLACK;
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let mut a = ServeWorker::start(&db.url, cache, lease_ttl_ms, Some(A_ECHO_DELAY_MS)).await?;
        let session = format!("failover-{round}");
        call(
            client
                .put(a.url(&format!("/sessions/by-name/{session}")))
                .json(&json!({ "guest": "assistant" })),
            "create a session",
        )
        .await?;
        call(
            client
                .post(a.url(&format!("/sessions/{session}/input")))
                .json(&json!({ "text": "hello" })),
            "send an input",
        )
        .await?;
        let opened = Instant::now();
        while events(&client, &a, &session).await? < EVENTS_WITH_MODEL_CALL_OPEN {
            if opened.elapsed() > OPEN_TIMEOUT {
                return Err(fail("worker A never opened its model call", &session));
            }
            tokio::time::sleep(POLL).await;
        }
        let killed = Instant::now();
        a.kill();
        let before = events(&client, &b, &session).await?;
        loop {
            if events(&client, &b, &session).await? > before {
                samples.push(killed.elapsed());
                break;
            }
            if killed.elapsed() > limit {
                return Err(fail(
                    "worker B never took the session over",
                    format!("{session}, {limit:?} after the kill"),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    drop(b);
    drop(db);
    let max = samples.iter().max().map_or(0, |d| d.as_micros() as u64);
    Ok(json!({
        "bench": "failover",
        "rounds": rounds,
        "lease_ttl_ms": lease_ttl_ms,
        "p50_us": percentile(&mut samples, 0.5),
        "max_us": max,
    }))
}
