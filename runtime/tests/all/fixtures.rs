//! What the session, guest, crash and CLI tests share: data directories whose
//! compiled-guest cache is warm, the guests, a configuration with small limits,
//! readers of a log, and the `logbook` binary run as a child process.
//!
//! Compiling a component takes seconds in a debug build and every data
//! directory has its own cache, so the guests are compiled once into
//! `target/tmp/compiled-guests` and each test's data directory starts with
//! hard links to them. The cache file name carries the guest's digest and the
//! engine's compatibility hash, so a stale file is never used: it is only
//! ignored, and the guest compiled again.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use logbook::config::{Config, Limits};
use logbook::guest::GuestEngine;
use logbook::journal::{
    ContentBlock, DEFAULT_TENANT, EventBody, LogId, Sender, StoredEvent, digest_of, plain_text,
};
use logbook::session::{Activity, Host, HostOptions, Session};
use tempfile::TempDir;

/// The tenant every library test acts as (the CLI's too).
pub const TENANT: &str = DEFAULT_TENANT;

/// How long any one wait may take before the test calls it a deadlock. Not a
/// timing goal: only a guard, so that a hang fails instead of stalling CI.
pub const GUARD: Duration = Duration::from_secs(60);

/// The guests the build puts in `GUEST_DIR`, by file stem.
pub const GUESTS: &[&str] = &[
    "counter",
    "counter_v2",
    "assistant",
    "delegate",
    "fixture_looper",
    "fixture_hog",
    "fixture_fs",
    "fixture_http",
    "fixture_panic",
    "fixture_hoard",
    "fixture_spinner",
    "fixture_pingpong",
];

/// A guest component's path.
pub fn guest_file(stem: &str) -> PathBuf {
    Path::new(logbook::examples::GUEST_DIR).join(format!("{stem}.wasm"))
}

/// A guest component's bytes.
pub fn guest_bytes(stem: &str) -> Vec<u8> {
    let path = guest_file(stem);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn target_tmp() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// The directory of compiled guests, filled once per test process.
fn compiled_guests() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shared = target_tmp().join("compiled-guests");
        std::fs::create_dir_all(&shared).expect("create the shared guest cache");
        // Compile into a directory of this process only, then publish each file
        // with a rename: another test process may be doing the same right now.
        let scratch = TempDir::new_in(target_tmp()).expect("scratch dir");
        link_files(&shared, scratch.path());
        let engine = GuestEngine::new(Limits::default(), Some(scratch.path().to_path_buf()))
            .expect("guest engine");
        std::thread::scope(|s| {
            for stem in GUESTS {
                let engine = engine.clone();
                s.spawn(move || {
                    let bytes = guest_bytes(stem);
                    // fixture_http is refused after it is compiled; its cache file stays.
                    let _ = engine.load(&digest_of(&bytes), &bytes);
                });
            }
        });
        for file in cwasm_files(scratch.path()) {
            let name = file.file_name().expect("a file name");
            let target = shared.join(name);
            if target.exists() {
                continue;
            }
            let tmp = shared.join(format!(
                ".{}.{}.tmp",
                name.to_string_lossy(),
                std::process::id()
            ));
            std::fs::copy(&file, &tmp).expect("copy a compiled guest");
            std::fs::rename(&tmp, &target).expect("publish a compiled guest");
        }
        shared
    })
}

fn cwasm_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect()
}

fn link_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a cache dir");
    for file in cwasm_files(from) {
        let target = to.join(file.file_name().expect("a file name"));
        if std::fs::hard_link(&file, &target).is_err() {
            std::fs::copy(&file, &target).expect("copy a compiled guest");
        }
    }
}

/// Fill `data/cache/` with every compiled guest, so that a data directory a
/// command creates itself (the README's `.logbook`, `elsewhere`) starts warm.
pub fn warm_data_dir(data: &Path) {
    link_files(compiled_guests(), &data.join("cache"));
}

/// A fresh data directory whose `cache/` already holds every compiled guest.
pub fn data_dir() -> TempDir {
    let dir = bare_data_dir();
    link_files(compiled_guests(), &dir.path().join("cache"));
    dir
}

/// A fresh, empty data directory (nothing compiled yet).
pub fn bare_data_dir() -> TempDir {
    TempDir::new_in(target_tmp()).expect("temp data dir")
}

/// Limits small enough that a looping or hogging guest fails fast, and a pool
/// small enough that several hosts fit in one test process.
pub fn config() -> Config {
    Config {
        limits: Limits {
            fuel_per_event: 5_000_000,
            fuel_per_call: 5_000_000,
            memory_per_instance: 16 << 20,
            max_instances: 64,
            ..Limits::default()
        },
        ..Config::default()
    }
}

/// A host on `data` with `config`.
pub fn open_host_with(data: &Path, config: Config) -> Arc<Host> {
    Host::open(data, config, HostOptions::default()).expect("open host")
}

/// A host on `data` with the test configuration.
/// A host on `data`, retrying while a host closed before it still lets go
/// of the journal (dropping a host releases it asynchronously).
pub async fn reopen_host(data: &Path, config: Config) -> Arc<Host> {
    let deadline = Instant::now() + GUARD;
    loop {
        match Host::open(data, config.clone(), logbook::HostOptions::default()) {
            Ok(host) => return host,
            Err(e) if Instant::now() > deadline => panic!("reopen the host: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

pub fn open_host(data: &Path) -> Arc<Host> {
    open_host_with(data, config())
}

/// Store guest `stem` and start a session named `name` on it.
pub async fn start(host: &Arc<Host>, stem: &str, name: &str) -> Session {
    let guest = host
        .add_guest(TENANT, stem, &guest_bytes(stem))
        .await
        .expect("add guest");
    let id = host
        .create_session(TENANT, Some(name), guest, serde_json::json!({}))
        .await
        .expect("create session");
    host.session(id).await.expect("activate session")
}

/// Append a text input from the test's principal; its seq.
pub async fn say(session: &Session, text: &str) -> u64 {
    guard(session.input(
        Sender::Principal("test".into()),
        vec![ContentBlock::text(text)],
    ))
    .await
    .unwrap_or_else(|e| panic!("input {text:?}: {e}"))
}

/// Wait until nothing is in flight (timers count as in flight).
pub async fn settle(session: &Session) -> Activity {
    settle_within(session, Duration::from_secs(3600)).await
}

/// Wait until nothing but timers further than `horizon` is in flight.
pub async fn settle_within(session: &Session, horizon: Duration) -> Activity {
    guard(session.wait_idle(horizon))
        .await
        .expect("wait until idle")
}

/// Await `f`, failing the test if it takes longer than [`GUARD`].
pub async fn guard<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(GUARD, f)
        .await
        .expect("deadlock guard: this should have finished long ago")
}

/// Every event of a log.
pub async fn events(host: &Host, log: LogId) -> Vec<StoredEvent> {
    let mut all = Vec::new();
    loop {
        let page = host
            .journal()
            .read(log, all.len() as u64, 1024)
            .await
            .expect("read log");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// The text of every `output` event, in order.
pub fn outputs(events: &[StoredEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Output { content, .. } => Some(plain_text(content)),
            _ => None,
        })
        .collect()
}

/// The kinds of the events about `key`, in log order.
pub fn kinds_of_key(events: &[StoredEvent], key: &str) -> Vec<&'static str> {
    events
        .iter()
        .filter(|e| e.event.body.key() == Some(key))
        .map(|e| e.event.body.kind())
        .collect()
}

/// Assert that a log's hash chain holds over all of its events.
pub async fn assert_chain_holds(host: &Host, log: LogId) {
    let info = host
        .journal()
        .info(log)
        .await
        .expect("info")
        .expect("the log exists");
    let verified = host.journal().verify(log).await.expect("verify");
    assert_eq!(verified.first_bad, None, "log {log} does not verify");
    assert_eq!(verified.events, info.next_seq, "verify saw every event");
}

// ----- the `logbook` binary -----

/// A `logbook --data DATA` command, with no `LOGBOOK_*` settings inherited.
pub fn logbook(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logbook"));
    cmd.arg("--data").arg(data);
    for var in [
        "LOGBOOK_DATA",
        "LOGBOOK_CONFIG",
        "LOGBOOK_ECHO_DELAY_MS",
        "LOGBOOK_LOG",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// What a finished process said.
#[derive(Debug)]
pub struct Ran {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

/// Run a command to its end (killing it if it outlives [`GUARD`]).
pub fn run(cmd: &mut Command) -> Ran {
    run_within(cmd, GUARD)
}

/// Run a command to its end, killing it if it outlives `guard`: for a
/// command whose normal run (a bench) comes near [`GUARD`] on a busy machine.
pub fn run_within(cmd: &mut Command, guard: Duration) -> Ran {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn logbook");
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_guarded_for(&mut child, guard);
    Ran {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Run a command that must succeed; its stdout.
pub fn run_ok(cmd: &mut Command) -> Ran {
    run_ok_within(cmd, GUARD)
}

/// [`run_ok`] with a guard of its own ([`run_within`]).
pub fn run_ok_within(cmd: &mut Command, guard: Duration) -> Ran {
    let ran = run_within(cmd, guard);
    assert!(
        ran.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        ran.status,
        ran.stdout,
        ran.stderr
    );
    ran
}

fn drain(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = from.read_to_string(&mut text);
        text
    })
}

/// Wait for a child, killing it and failing the test after [`GUARD`].
pub fn wait_guarded(child: &mut Child) -> ExitStatus {
    wait_guarded_for(child, GUARD)
}

/// Wait for a child, killing it and failing the test after `guard`.
pub fn wait_guarded_for(child: &mut Child, guard: Duration) -> ExitStatus {
    let deadline = Instant::now() + guard;
    loop {
        if let Some(status) = child.try_wait().expect("wait for logbook") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("deadlock guard: logbook did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `logbook` whose stdout is read line by line as it comes.
pub struct Running {
    /// The process.
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    /// Start `cmd` with stdout piped (stderr is discarded).
    pub fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn logbook");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// Block until the process prints `line` (failing after [`GUARD`], or if
    /// its stdout closes first).
    pub fn wait_for_line(&mut self, line: &str) {
        let deadline = Instant::now() + GUARD;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(got) if got == line => return,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("deadlock guard: logbook never printed {line:?}");
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().expect("wait");
                    panic!("logbook exited ({status}) before it printed {line:?}");
                }
            }
        }
    }

    /// SIGKILL the process (what `Child::kill` sends on unix) and reap it.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL logbook");
        let status = self.child.wait().expect("reap logbook");
        assert!(!status.success(), "the process was killed, not finished");
    }
}

/// `logbook log NAME --json`, parsed line by line (the raw lines too).
pub fn log_json(data: &Path, session: &str) -> (Vec<String>, Vec<serde_json::Value>) {
    let ran = run_ok(logbook(data).args(["log", session, "--json"]));
    let lines: Vec<String> = ran.stdout.lines().map(str::to_string).collect();
    let values = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (lines, values)
}

/// The unix time in ms, as the host's clock reads it.
pub fn now_ms() -> u64 {
    logbook::session::now_ms()
}
