//! `logbook bench`: the figures the design is held to, measured on real parts
//! (a redb file with fsync, the real example guests, EchoModel without delay).
//!
//! Each benchmark runs in its own temporary data directory and prints one
//! line: human-readable, or one JSON object with `--json`. Every line names
//! the journal it ran on (`"journal": "redb"` or `"postgres"`).
//!
//! With `--journal postgres://…` the benches that make a host make it on a
//! fresh database of their own ([`postgres`]); those that make no sense
//! there print why they are skipped. `failover` runs only there.

mod failover;
mod logops;
mod postgres;
mod turn;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::Config;
use crate::journal::{ContentBlock, LogId, Sender};
use crate::session::{Host, HostOptions};

use self::turn::{TurnShape, latency_at_histories};

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Only these benchmarks; all when empty.
    pub only: Vec<String>,
    /// Smaller sizes, for a quick look (CI uses this as a smoke test).
    pub quick: bool,
    /// The lease TTL of the workers the `failover` bench starts, in ms.
    pub lease_ttl_ms: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            only: Vec::new(),
            quick: false,
            lease_ttl_ms: DEFAULT_FAILOVER_LEASE_TTL_MS,
        }
    }
}

/// The `failover` bench's lease TTL unless told otherwise: short, so that a
/// round takes about a second (the journal's own default is 5 s).
pub const DEFAULT_FAILOVER_LEASE_TTL_MS: u64 = 1000;

type BenchResult<T> = anyhow::Result<T>;

/// Run the benchmarks and print their figures. Interrupted (Ctrl-C,
/// SIGTERM), it stops with an error after dropping what the running bench
/// made: its databases and its worker processes.
pub async fn run(mut config: Config, options: BenchOptions, json: bool) -> BenchResult<()> {
    // The benches drive sessions far faster than any agent, on purpose: the
    // rate limits that stop a looping guest (session::limits) would stop them.
    config.limits.session_effects_per_minute = 0;
    config.limits.session_model_calls_per_minute = 0;
    config.limits.tenant_effects_per_minute = 0;
    tokio::select! {
        done = run_all(config, options, json) => done,
        () = interrupted() => Err(anyhow::anyhow!("the benchmarks were interrupted")),
    }
}

/// Ctrl-C or SIGTERM (never, where neither can be listened for).
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = terminate => {}
        () = interrupt => {}
    }
}

async fn run_all(config: Config, options: BenchOptions, json: bool) -> BenchResult<()> {
    // One compile cache for every bench's data directory: compiling is not
    // what is measured.
    let cache = tempdir()?;
    let cache = cache.path().to_path_buf();
    let on_postgres = config.journal.url.is_some();
    let print = |mut value: serde_json::Value| {
        value["journal"] = json!(if on_postgres { "postgres" } else { "redb" });
        if json {
            println!("{value}");
        } else {
            println!("{}", human(&value));
        }
    };
    // Asked for, and it makes sense on this journal (else say why not).
    let wanted = |name: &str| {
        if !(options.only.is_empty() || options.only.iter().any(|o| o == name)) {
            return false;
        }
        let skip = if on_postgres {
            postgres::skipped(name)
        } else {
            failover::skipped_on_redb(name)
        };
        if let Some(reason) = skip {
            print(postgres::skipped_line(name, reason));
            return false;
        }
        true
    };
    let quick = options.quick;
    if wanted("wake") {
        for events in if quick {
            vec![1_000]
        } else {
            vec![1_000, 10_000]
        } {
            print(wake(&config, &cache, events, if quick { 5 } else { 30 }).await?);
        }
    }
    if wanted("wake-concurrent") {
        let (sessions, events, rounds) = if quick {
            (8, 1_000, 2)
        } else {
            (64, 10_000, 5)
        };
        print(wake_concurrent(&config, &cache, sessions, events, rounds).await?);
    }
    if wanted("fork") {
        for events in if quick {
            vec![1_000]
        } else {
            vec![1_000, 100_000]
        } {
            print(logops::fork(&config, &cache, events, if quick { 5 } else { 30 }).await?);
        }
    }
    if wanted("wake-snapshot") {
        let rounds = if quick { 5 } else { 30 };
        print(logops::wake_snapshot(&config, &cache, 10_000, rounds).await?);
    }
    if wanted("export") {
        let events = if quick { 10_000 } else { 100_000 };
        print(logops::export(&config, &cache, events).await?);
    }
    if wanted("read") {
        let (events, rounds) = if quick { (10_000, 2) } else { (100_000, 5) };
        print(logops::read(&config, &cache, events, rounds).await?);
    }
    if wanted("step") {
        print(step(&config, &cache, if quick { 50 } else { 1_000 }).await?);
    }
    if wanted("throughput") {
        let (sessions, secs) = if quick { (16, 0.5) } else { (256, 3.0) };
        print(throughput(&config, &cache, sessions, Duration::from_secs_f64(secs)).await?);
    }
    if wanted("memory") {
        print(memory(&config, &cache, if quick { 100 } else { 1_000 }).await?);
    }
    if wanted("turn") {
        let shape = if quick {
            TurnShape {
                histories: vec![10, 30],
                measured: 5,
                sessions: 8,
                turns_each: 5,
            }
        } else {
            TurnShape {
                histories: vec![10, 200],
                measured: 30,
                sessions: 64,
                turns_each: 20,
            }
        };
        for line in turn::turn(&config, &cache, &shape).await? {
            print(line);
        }
    }
    if wanted("http-turn") {
        let (histories, measured) = if quick {
            (vec![10, 30], 5)
        } else {
            (vec![10, 200], 30)
        };
        for line in http_turn(&config, &cache, &histories, measured).await? {
            print(line);
        }
    }
    if wanted("http") {
        let (clients, secs) = if quick { (8, 0.5) } else { (64, 3.0) };
        print(http(&config, &cache, clients, Duration::from_secs_f64(secs)).await?);
    }
    // `wanted` says why not on redb, where there is no URL.
    if wanted("failover")
        && let Some(url) = config.journal.url.as_deref()
    {
        let rounds = if quick { 1 } else { 5 };
        print(failover::failover(url, &cache, rounds, options.lease_ttl_ms).await?);
    }
    Ok(())
}

fn human(value: &serde_json::Value) -> String {
    let mut line = format!("{:<11}", value["bench"].as_str().unwrap_or("?"));
    if let Some(object) = value.as_object() {
        for (k, v) in object.iter().filter(|(k, _)| *k != "bench") {
            line.push_str(&format!("  {k}={v}"));
        }
    }
    line
}

/// Where one bench keeps its logs, for every host it opens on them, one
/// after another or side by side: a temporary data directory (the redb file
/// is there), and on PostgreSQL a fresh database of its own. The fields drop
/// in order: the database before the directory.
struct Store {
    /// The bench's configuration, its journal URL naming the database.
    config: Config,
    db: Option<postgres::BenchDb>,
    dir: tempfile::TempDir,
}

impl Store {
    /// A new store for `config`'s journal: a redb file, or a new database
    /// on the PostgreSQL server of its URL.
    async fn new(config: &Config) -> BenchResult<Store> {
        let dir = tempdir()?;
        let Some(admin) = &config.journal.url else {
            return Ok(Store {
                config: config.clone(),
                db: None,
                dir,
            });
        };
        let db = postgres::BenchDb::create(admin).await?;
        Ok(Store {
            config: on_database(config, &db.url),
            db: Some(db),
            dir,
        })
    }

    /// A host on this store (on PostgreSQL, where every commit is durable,
    /// `no_fsync` changes nothing).
    async fn host(&self, cache: &Path, no_fsync: bool) -> BenchResult<Arc<Host>> {
        Ok(Host::open_configured(
            self.dir.path(),
            self.config.clone(),
            options(cache, no_fsync),
        )
        .await?)
    }
}

/// A host for one bench, on a store of its own. The fields drop in order:
/// the host before its store.
struct Bed {
    host: Arc<Host>,
    store: Store,
}

impl Bed {
    /// Another worker on this bed's PostgreSQL database, with its own data
    /// directory (its tool workspaces), returned with it.
    async fn worker(
        &self,
        config: &Config,
        cache: &Path,
    ) -> BenchResult<(Arc<Host>, tempfile::TempDir)> {
        let db = self
            .store
            .db
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("a second worker needs a PostgreSQL journal"))?;
        let dir = tempdir()?;
        let config = on_database(config, &db.url);
        let host = Host::open_configured(dir.path(), config, options(cache, false)).await?;
        Ok((host, dir))
    }

    /// Stop the host's actors; the database (if any) is dropped after.
    async fn close(self) {
        self.host.close().await;
    }
}

/// `config` with its journal in the database at `url`.
fn on_database(config: &Config, url: &str) -> Config {
    let mut config = config.clone();
    config.journal.url = Some(url.to_string());
    config
}

/// A temporary directory, its error in the benchmarks' terms.
fn tempdir() -> BenchResult<tempfile::TempDir> {
    Ok(tempfile::tempdir()?)
}

fn options(cache: &Path, no_fsync: bool) -> HostOptions {
    HostOptions {
        echo_delay: None,
        no_fsync,
        cache_dir: Some(cache.to_path_buf()),
    }
}

/// A bed on the journal `config` names: a redb file in a new temporary
/// directory, or a new database on the PostgreSQL server of its URL
/// (where `no_fsync` changes nothing: every commit is durable there).
async fn bed(config: &Config, cache: &Path, no_fsync: bool) -> BenchResult<Bed> {
    let store = Store::new(config).await?;
    let host = store.host(cache, no_fsync).await?;
    Ok(Bed { host, store })
}

async fn new_session(host: &Arc<Host>, example: &str) -> BenchResult<LogId> {
    let bytes = crate::examples::get(example).expect("examples are built in");
    let guest = host.add_guest("bench", example, bytes).await?;
    Ok(host.create_session("bench", None, guest, json!({})).await?)
}

fn text(t: &str) -> Vec<ContentBlock> {
    vec![ContentBlock::text(t)]
}

fn from() -> Sender {
    Sender::Principal("bench".into())
}

fn percentile(samples: &mut [Duration], p: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i].as_micros() as u64
}

/// A counter session of at least `events` events, driven through its actor
/// without fsync (it is setup), on a host that is closed again: dormant.
async fn counter_log(store: &Store, cache: &Path, events: u64) -> BenchResult<LogId> {
    let host = store.host(cache, true).await?;
    let id = new_session(&host, "counter").await?;
    let session = host.session(id).await?;
    while host.journal().info(id).await?.map_or(0, |i| i.next_seq) < events {
        session.input(from(), text("inc")).await?;
    }
    host.close().await;
    Ok(id)
}

/// `config` with snapshots off: a full replay is what the wake benches
/// measure (wake-snapshot has them).
fn without_snapshots(config: &Config) -> Config {
    Config {
        limits: crate::config::Limits {
            snapshot_every: 0,
            ..config.limits.clone()
        },
        ..config.clone()
    }
}

/// A dormant counter session with `events` events wakes and answers one input.
async fn wake(
    config: &Config,
    cache: &Path,
    events: u64,
    rounds: usize,
) -> BenchResult<serde_json::Value> {
    let store = Store::new(&without_snapshots(config)).await?;
    let id = counter_log(&store, cache, events).await?;
    let host = store.host(cache, false).await?;
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..=rounds {
        host.hibernate(id);
        // Let the old actor go before timing the new one.
        tokio::task::yield_now().await;
        let start = Instant::now();
        let session = host.session(id).await?;
        session.input(from(), text("get")).await?;
        // The first round also compiles or loads the component: not a wake.
        if round > 0 {
            samples.push(start.elapsed());
        }
    }
    Ok(json!({
        "bench": "wake",
        "events": events,
        "p50_us": percentile(&mut samples, 0.5),
        "p99_us": percentile(&mut samples, 0.99),
    }))
}

/// `sessions` dormant counter logs of `events` events each (no snapshots)
/// woken at once, each answering one input: the wall time of the whole wake,
/// beside the p50 of waking one of them alone, on the same host.
async fn wake_concurrent(
    config: &Config,
    cache: &Path,
    sessions: usize,
    events: u64,
    rounds: usize,
) -> BenchResult<serde_json::Value> {
    let store = Store::new(&without_snapshots(config)).await?;
    let first = counter_log(&store, cache, events).await?;
    // The other logs are imported copies: their own rows, the same history.
    let mut ids = vec![first];
    {
        let host = store.host(cache, true).await?;
        let mut log = Vec::new();
        loop {
            let page = host.journal().read(first, log.len() as u64, 4096).await?;
            if page.is_empty() {
                break;
            }
            log.extend(page);
        }
        for _ in 1..sessions {
            ids.push(host.journal().import("bench", None, &log, None).await?);
        }
        host.close().await;
    }
    let host = store.host(cache, false).await?;
    let wake_one = |id: LogId| {
        let host = host.clone();
        async move {
            host.hibernate(id);
            tokio::task::yield_now().await;
            let start = Instant::now();
            host.input(id, from(), text("get")).await?;
            Ok::<_, anyhow::Error>(start.elapsed())
        }
    };
    // The first wake also loads the component: not measured.
    wake_one(first).await?;
    let mut single = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        single.push(wake_one(first).await?);
    }
    let mut walls = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        for id in &ids {
            host.hibernate(*id);
        }
        tokio::task::yield_now().await;
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for id in ids.iter().copied() {
            let host = host.clone();
            tasks.spawn(async move { host.input(id, from(), text("get")).await });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        walls.push(start.elapsed());
    }
    let single_p50 = percentile(&mut single, 0.5);
    let wall = percentile(&mut walls, 0.5);
    let serial = (single_p50 as f64 * sessions as f64).max(1.0);
    Ok(json!({
        "bench": "wake-concurrent",
        "sessions": sessions,
        "events": events,
        "wall_us": wall,
        "single_p50_us": single_p50,
        "wall_over_serial": (wall as f64 / serial * 1000.0).round() / 1000.0,
    }))
}

/// One session, input to output, durable.
async fn step(config: &Config, cache: &Path, rounds: usize) -> BenchResult<serde_json::Value> {
    let bed = bed(config, cache, false).await?;
    let id = new_session(&bed.host, "counter").await?;
    let session = bed.host.session(id).await?;
    session.input(from(), text("inc")).await?;
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        session.input(from(), text("inc")).await?;
        samples.push(start.elapsed());
    }
    drop(session);
    bed.close().await;
    Ok(json!({
        "bench": "step",
        "p50_us": percentile(&mut samples, 0.5),
        "p99_us": percentile(&mut samples, 0.99),
    }))
}

/// Many sessions driven at once: durable events per second.
async fn throughput(
    config: &Config,
    cache: &Path,
    sessions: usize,
    run_for: Duration,
) -> BenchResult<serde_json::Value> {
    let bed = bed(config, cache, false).await?;
    let mut handles = Vec::new();
    for _ in 0..sessions {
        let id = new_session(&bed.host, "counter").await?;
        handles.push(bed.host.session(id).await?);
    }
    let before = bed.host.journal().stats();
    let start = Instant::now();
    let deadline = start + run_for;
    let mut tasks = tokio::task::JoinSet::new();
    for session in handles {
        tasks.spawn(async move {
            let mut steps = 0u64;
            while Instant::now() < deadline {
                session.input(from(), text("inc")).await?;
                steps += 1;
            }
            Ok::<u64, anyhow::Error>(steps)
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = bed.host.journal().stats();
    let events = after.events - before.events;
    let commits = (after.commits - before.commits).max(1);
    // A redb commit is one fsync; a PostgreSQL one is one transaction.
    let per_commit = if bed.store.db.is_some() {
        "events_per_transaction"
    } else {
        "events_per_fsync"
    };
    bed.close().await;
    let mut line = json!({
        "bench": "throughput",
        "sessions": sessions,
        "events_per_s": (events as f64 / elapsed).round() as u64,
    });
    line[per_commit] = json!(((events as f64 / commits as f64) * 10.0).round() / 10.0);
    Ok(line)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Resident memory per active counter session (instance, store, actor).
async fn memory(config: &Config, cache: &Path, sessions: usize) -> BenchResult<serde_json::Value> {
    let bed = bed(config, cache, true).await?;
    let mut ids = Vec::new();
    for _ in 0..sessions {
        ids.push(new_session(&bed.host, "counter").await?);
    }
    // Warm: the component is loaded once, shared by every instance.
    let warm = new_session(&bed.host, "counter").await?;
    bed.host
        .session(warm)
        .await?
        .input(from(), text("inc"))
        .await?;
    let before = rss_kib();
    let mut live = Vec::new();
    for id in ids {
        let session = bed.host.session(id).await?;
        session.input(from(), text("inc")).await?;
        live.push(session);
    }
    let after = rss_kib();
    let live = live.len();
    bed.close().await;
    Ok(json!({
        "bench": "memory",
        "sessions": live,
        "kib_per_active_session": ((after.saturating_sub(before)) as f64 / sessions as f64 * 10.0).round() / 10.0,
    }))
}

/// HTTP clients, each driving its own counter session: an input with
/// `?wait=idle` per request, durable before it is answered. The server runs in
/// this process on 127.0.0.1:0 and shares its two cores with the clients.
async fn http(
    config: &Config,
    cache: &Path,
    clients: usize,
    run_for: Duration,
) -> BenchResult<serde_json::Value> {
    let bed = bed(config, cache, false).await?;
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("{e}");
    let (base, server) = serve(&bed).await?;
    let client = reqwest::Client::new();
    let counter = crate::examples::get("counter").expect("examples are built in");
    bed.host
        .add_guest(crate::journal::DEFAULT_TENANT, "counter", counter)
        .await?;
    let mut sessions = Vec::new();
    for i in 0..clients {
        let created: serde_json::Value = client
            .put(format!("{base}/sessions/by-name/bench-{i}"))
            .json(&json!({"guest": "counter"}))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| fail(&e))?
            .json()
            .await
            .map_err(|e| fail(&e))?;
        sessions.push(created["id"].as_str().unwrap_or_default().to_string());
    }
    let start = Instant::now();
    let deadline = start + run_for;
    let mut tasks = tokio::task::JoinSet::new();
    for id in sessions {
        let client = client.clone();
        let url = format!("{base}/sessions/{id}/input?wait=idle");
        tasks.spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let answer: serde_json::Value = client
                    .post(&url)
                    .json(&json!({"text": "inc"}))
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                if answer["outputs"].as_array().is_none_or(|o| o.is_empty()) {
                    return Err(format!(
                        "an input was answered without its output: {answer}"
                    ));
                }
                samples.push(sent.elapsed());
            }
            Ok::<Vec<Duration>, String>(samples)
        });
    }
    let mut samples = Vec::new();
    while let Some(done) = tasks.join_next().await {
        samples.extend(done.map_err(|e| fail(&e))?.map_err(|e| fail(&e))?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    server.abort();
    bed.close().await;
    Ok(json!({
        "bench": "http",
        "clients": clients,
        "requests_per_s": (samples.len() as f64 / elapsed).round() as u64,
        "p50_us": percentile(&mut samples, 0.5),
        "p99_us": percentile(&mut samples, 0.99),
    }))
}

/// The API of `bed`'s host on 127.0.0.1:0, in this process: its `/v1` URL.
async fn serve(bed: &Bed) -> BenchResult<(String, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("{e}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| fail(&e))?;
    let addr = listener.local_addr().map_err(|e| fail(&e))?;
    let tenants = crate::server::Tenants::from_config(&Config::default()).map_err(|e| fail(&e))?;
    let app = crate::server::router(bed.host.clone(), tenants, Default::default());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    crate::effects::install_crypto_provider();
    Ok((format!("http://{addr}/v1"), server))
}

/// The `turn` bench's turn over HTTP: `POST …/input?wait=idle` from one
/// client, answered with the turn's output once it is durable.
async fn http_turn(
    config: &Config,
    cache: &Path,
    histories: &[usize],
    measured: usize,
) -> BenchResult<Vec<serde_json::Value>> {
    let bed = bed(config, cache, false).await?;
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("{e}");
    let (base, server) = serve(&bed).await?;
    let client = reqwest::Client::new();
    let assistant = crate::examples::get("assistant").expect("examples are built in");
    bed.host
        .add_guest(crate::journal::DEFAULT_TENANT, "assistant", assistant)
        .await?;
    let created: serde_json::Value = client
        .post(format!("{base}/sessions"))
        .json(&json!({"guest": "assistant", "config": {"context_budget": u64::MAX / 2}}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| fail(&e))?
        .json()
        .await
        .map_err(|e| fail(&e))?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    let log = id.parse::<LogId>().map_err(|e| fail(&e))?;
    let workspace = bed.host.workspace_dir(log);
    std::fs::create_dir_all(&workspace)
        .and_then(|()| std::fs::write(workspace.join("x"), "hello"))
        .map_err(|e| fail(&e))?;
    let url = format!("{base}/sessions/{id}/input?wait=idle");
    let body = json!({"text": "/tool fs.read {\"path\":\"x\"}"});
    let turn = || async {
        let answer: serde_json::Value = client
            .post(&url)
            .json(&body)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| fail(&e))?
            .json()
            .await
            .map_err(|e| fail(&e))?;
        if answer["outputs"].as_array().is_none_or(|o| o.is_empty()) {
            return Err(fail(&format!(
                "a turn was answered without its output: {answer}"
            )));
        }
        Ok::<(), anyhow::Error>(())
    };
    let lines = latency_at_histories("http-turn", histories, measured, turn).await?;
    server.abort();
    bed.close().await;
    Ok(lines)
}
