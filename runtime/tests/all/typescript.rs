//! TypeScript guests (scripts/build-ts-guests.sh) on the real host, under
//! the default limits: the counter counts, forks and passes the replay
//! check (and agrees with the Rust counter on the same log); a session moves
//! from the Rust counter to the TypeScript one; a guest that opens a file or
//! a socket gets an error and goes on; `logbook run counter-ts` finds it by
//! name.
//!
//! They need node and npm: `LOGBOOK_SKIP_TS=1` skips them, saying so on
//! stderr. Otherwise a missing build is made by running the script once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use logbook::config::{Config, Limits};
use logbook::guest::GuestEngine;
use logbook::journal::{EventBody, digest_of, plain_text};
use logbook::session::{Activity, ForkOptions, Host, Session};

use crate::fixtures::*;

/// The TypeScript guests the build script makes, by file stem.
const TS_GUESTS: &[&str] = &["counter_ts", "fixture_fs_ts"];

/// The directory of the built TypeScript guests; `None` when
/// `LOGBOOK_SKIP_TS=1`, after saying so where `cargo test` shows it.
fn ts_guests(test: &str) -> Option<&'static Path> {
    if std::env::var("LOGBOOK_SKIP_TS").is_ok_and(|v| v == "1") {
        // Not eprintln!: the harness captures that; a skip must show.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED typescript::{test}: LOGBOOK_SKIP_TS=1 (needs node and npm)"
        );
        return None;
    }
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    Some(DIR.get_or_init(|| {
        let dir = logbook::examples::ts_guest_dir();
        let missing = TS_GUESTS
            .iter()
            .any(|stem| !dir.join(format!("{stem}.wasm")).is_file());
        if missing {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-ts-guests.sh");
            let status = std::process::Command::new(&script)
                .status()
                .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
            assert!(
                status.success(),
                "{} failed; LOGBOOK_SKIP_TS=1 skips the TypeScript tests",
                script.display()
            );
        }
        dir
    }))
}

fn ts_bytes(dir: &Path, stem: &str) -> Vec<u8> {
    let path = dir.join(format!("{stem}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The compiled TypeScript guests, shared by the tests of this process (a
/// 12 MiB component takes a while to compile in a debug build).
fn compiled_ts_guests(dir: &Path) -> &'static Path {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compiled-ts-guests");
        let engine = GuestEngine::new(Limits::default(), Some(cache.clone())).expect("engine");
        for stem in TS_GUESTS {
            let bytes = ts_bytes(dir, stem);
            engine
                .load(&digest_of(&bytes), &bytes)
                .unwrap_or_else(|e| panic!("{stem} loads: {e}"));
        }
        cache
    })
}

/// A data directory whose cache holds the compiled guests, Rust and
/// TypeScript, and a host on it with the default limits.
fn ts_host(dir: &Path) -> (tempfile::TempDir, Arc<Host>) {
    let data = data_dir();
    let cache = data.path().join("cache");
    for entry in std::fs::read_dir(compiled_ts_guests(dir)).expect("the compiled guests") {
        let file = entry.expect("an entry").path();
        let target = cache.join(file.file_name().expect("a name"));
        if std::fs::hard_link(&file, &target).is_err() {
            std::fs::copy(&file, &target).expect("copy a compiled guest");
        }
    }
    // The default fuel and memory limits; a pool small enough that several
    // hosts fit in one test process.
    let mut config = Config::default();
    config.limits.max_instances = 64;
    let host = open_host_with(data.path(), config);
    (data, host)
}

async fn start_ts(host: &Arc<Host>, dir: &Path, stem: &str, name: &str) -> Session {
    let guest = host
        .add_guest(TENANT, stem, &ts_bytes(dir, stem))
        .await
        .expect("add the TypeScript guest");
    let id = host
        .create_session(TENANT, Some(name), guest, serde_json::json!({}))
        .await
        .expect("create session");
    host.session(id).await.expect("activate session")
}

async fn answer(session: &Session, host: &Host, text: &str) -> String {
    say(session, text).await;
    assert_eq!(settle(session).await, Activity::Idle);
    outputs(&events(host, session.id()).await)
        .pop()
        .expect("an output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_ts_counts_forks_and_passes_the_replay_check() {
    let Some(dir) = ts_guests("counter_ts_counts_forks_and_passes_the_replay_check") else {
        return;
    };
    let (_data, host) = ts_host(dir);
    let c = start_ts(&host, dir, "counter_ts", "c").await;
    for text in ["inc", "inc", "get"] {
        say(&c, text).await;
    }
    assert_eq!(settle(&c).await, Activity::Idle);
    let log = events(&host, c.id()).await;
    assert_eq!(outputs(&log), ["count = 1", "count = 2", "count = 2"]);
    // The keys are the Rust SDK's: kind-SEQ of the input.
    let first_input = log
        .iter()
        .find(|e| matches!(e.event.body, EventBody::Input { .. }))
        .expect("an input")
        .event
        .seq;
    assert_eq!(
        kinds_of_key(&log, &format!("output-{first_input}")),
        ["output"]
    );

    // A fork right after `count = 1` goes its own way.
    let at = log
        .iter()
        .find(|e| matches!(&e.event.body, EventBody::Output { content, .. } if plain_text(content) == "count = 1"))
        .expect("counted to one")
        .event
        .seq;
    let options = ForkOptions {
        at: Some(at),
        name: Some("c2".into()),
        ..ForkOptions::default()
    };
    let fork = guard(host.fork(TENANT, "c", options)).await.expect("fork");
    let fork = host.session(fork).await.expect("activate the fork");
    assert_eq!(answer(&fork, &host, "inc").await, "count = 2");
    assert_eq!(answer(&fork, &host, "inc").await, "count = 3");
    assert_eq!(
        answer(&c, &host, "get").await,
        "count = 2",
        "the parent is as it was"
    );
    assert_chain_holds(&host, fork.id()).await;

    // The replay check: counter-ts agrees with its own log, and so does the
    // Rust counter, key for key; counter-v2 knows `dec`, which this does not.
    let counter_ts = host.guest(TENANT, "counter_ts").await.expect("stored");
    let counter = host
        .add_guest(TENANT, "counter", &guest_bytes("counter"))
        .await
        .expect("counter");
    for guest in [&counter_ts, &counter] {
        let report = guard(host.replay_check(TENANT, "c", guest.clone()))
            .await
            .expect("replay");
        assert_eq!(report.difference, None, "{} agrees", guest.name);
    }
    assert_eq!(answer(&c, &host, "dec").await, "unknown command: dec");
    let v2 = host
        .add_guest(TENANT, "counter-v2", &guest_bytes("counter_v2"))
        .await
        .expect("v2");
    let report = guard(host.replay_check(TENANT, "c", v2))
        .await
        .expect("replay");
    let d = report
        .difference
        .expect("counter-v2 answers `dec` otherwise");
    assert!(d.log.contains("unknown command: dec"), "{d:?}");
    assert_chain_holds(&host, c.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_the_rust_counter_to_counter_ts_keeps_the_count() {
    let Some(dir) = ts_guests("upgrade_from_the_rust_counter_to_counter_ts_keeps_the_count") else {
        return;
    };
    let (_data, host) = ts_host(dir);
    let c = start(&host, "counter", "c").await;
    for _ in 0..3 {
        say(&c, "inc").await;
    }
    assert_eq!(settle(&c).await, Activity::Idle);
    let counter_ts = host
        .add_guest(TENANT, "counter-ts", &ts_bytes(dir, "counter_ts"))
        .await
        .expect("counter-ts");
    let seq = guard(host.upgrade(TENANT, "c", counter_ts.clone()))
        .await
        .expect("upgrade");
    let log = events(&host, c.id()).await;
    assert!(
        matches!(&log[seq as usize].event.body, EventBody::GuestChanged { to, .. } if *to == counter_ts),
        "{:?}",
        log[seq as usize]
    );
    // The TypeScript guest re-folded the Rust guest's log: the log is the agent.
    let c = host.session(c.id()).await.expect("wake on counter-ts");
    assert_eq!(answer(&c, &host, "get").await, "count = 3");
    assert_eq!(answer(&c, &host, "inc").await, "count = 4");
    let report = guard(host.replay_check(TENANT, "c", counter_ts))
        .await
        .expect("replay");
    assert_eq!(report.difference, None);
    assert_chain_holds(&host, c.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_guest_that_opens_a_file_or_a_socket_gets_an_error_and_goes_on() {
    let Some(dir) =
        ts_guests("a_typescript_guest_that_opens_a_file_or_a_socket_gets_an_error_and_goes_on")
    else {
        return;
    };
    let (_data, host) = ts_host(dir);
    let snoop = start_ts(&host, dir, "fixture_fs_ts", "snoop").await;
    assert_eq!(
        answer(&snoop, &host, "read").await,
        "read failed: no preopened directory"
    );
    let dialled = answer(&snoop, &host, "dial").await;
    assert_eq!(dialled, "dial failed: access-denied");
    assert_eq!(
        answer(&snoop, &host, "still here").await,
        "echo: still here"
    );
}

#[test]
fn the_readme_runs_counter_ts_by_name_and_upgrades_to_it() {
    let Some(dir) = ts_guests("the_readme_runs_counter_ts_by_name_and_upgrades_to_it") else {
        return;
    };
    let data = data_dir();
    std::fs::create_dir_all(data.path().join("cache")).expect("cache dir");
    for entry in std::fs::read_dir(compiled_ts_guests(dir)).expect("the compiled guests") {
        let file = entry.expect("an entry").path();
        let _ = std::fs::hard_link(
            &file,
            data.path()
                .join("cache")
                .join(file.file_name().expect("a name")),
        );
    }
    let ran = run_ok(logbook(data.path()).args([
        "run",
        "counter-ts",
        "--session",
        "c",
        "-i",
        "inc",
        "-i",
        "inc",
        "-i",
        "get",
    ]));
    assert!(ran.stdout.contains("count = 2"), "{ran:?}");
    let verified = run_ok(logbook(data.path()).args(["verify", "c"]));
    assert!(verified.status.success(), "{verified:?}");
    run_ok(logbook(data.path()).args(["replay", "c", "--guest", "counter-ts"]));

    // The README's upgrade, as it shows it.
    run_ok(logbook(data.path()).args([
        "run",
        "counter",
        "--session",
        "r",
        "-i",
        "inc",
        "-i",
        "inc",
    ]));
    run_ok(logbook(data.path()).args(["upgrade", "r", "--guest", "counter-ts"]));
    let sent = run_ok(logbook(data.path()).args(["send", "r", "get", "--wait"]));
    assert!(sent.stdout.contains("count = 2"), "{sent:?}");
}
