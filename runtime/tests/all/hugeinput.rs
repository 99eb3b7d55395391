//! Issue #10, item 2: an input the host accepts never parks a well-behaved
//! guest. A call's fuel grows with the bytes it hands the guest; an event
//! over `[limits] max_event_bytes` is refused (an input: 413, nothing
//! written) or recorded as `failed` `too-large` (a tool result); and a
//! session parked by its guest is recovered by an operator with `unpark`,
//! skipping the input for good or trying it again, through the library,
//! the CLI and HTTP, across a restart.

use std::sync::Arc;

use logbook::config::{Config, Limits};
use logbook::journal::{ErrorKind, EventBody, LogId, StoredEvent};
use logbook::session::{Activity, Host, SessionError};
use reqwest::StatusCode;
use serde_json::json;

use crate::fixtures::*;
use crate::server::{Server, assert_error};

const MIB: usize = 1 << 20;

/// The default limits, with room for a 16 MiB event and its echo.
fn roomy() -> Config {
    Config {
        limits: Limits {
            max_instances: 64,
            max_event_bytes: 40 * MIB,
            memory_per_instance: 256 * MIB,
            ..Limits::default()
        },
        ..Config::default()
    }
}

/// The small test limits, and no fuel per byte: a large input runs the
/// guest out of fuel, as every input did before fuel grew with bytes.
fn stingy() -> Config {
    let mut config = config();
    config.limits.fuel_per_byte = 0;
    config
}

fn guest_failures(events: &[StoredEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::GuestFailed { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn kinds(events: &[StoredEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.event.body.kind()).collect()
}

/// A word the counter does not know, `bytes` long.
fn big_word(bytes: usize) -> String {
    "x".repeat(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_six_mib_input_folds_into_the_counter_live_and_on_replay() {
    let data = data_dir();
    let host = open_host_with(data.path(), roomy());
    let session = start(&host, "counter", "c").await;
    let log = session.id();
    say(&session, "inc").await;
    say(&session, &big_word(6 * MIB)).await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let all = events(&host, log).await;
    assert_eq!(guest_failures(&all), Vec::<String>::new());
    let outs = outputs(&all);
    assert_eq!(outs.len(), 2, "{:?}", kinds(&all));
    assert!(outs[1].starts_with("unknown command: xxx"));
    assert_eq!(outs[1].len(), "unknown command: ".len() + 6 * MIB);

    // A full replay (no snapshot) folds it again within its fuel.
    host.close().await;
    drop((session, host));
    let mut config = roomy();
    config.limits.snapshot_every = 0;
    let host = reopen_host(data.path(), config).await;
    let session = host.session(log).await.expect("wake");
    say(&session, "inc").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let all = events(&host, log).await;
    assert_eq!(guest_failures(&all), Vec::<String>::new());
    assert_eq!(outputs(&all).last().map(String::as_str), Some("count = 2"));
    assert_chain_holds(&host, log).await;
}

/// What a byte of input costs the example guests, in fuel: each guest folds
/// a 6 MiB and a 16 MiB input under generous limits, and the fuel each call
/// used is read from the trace (`logbook::guest::fuel`). How the default
/// `FUEL_PER_BYTE` was chosen; run alone with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: prints the fuel a byte costs"]
async fn measure_the_fuel_a_byte_costs() {
    let trace = Capture::default();
    let writer = trace.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "logbook::guest::fuel=trace",
        ))
        .with_ansi(false)
        .without_time()
        .with_writer(move || writer.clone())
        .init();
    for stem in ["counter", "assistant"] {
        for mib in [6, 16] {
            trace.0.lock().expect("trace").clear();
            let data = data_dir();
            let mut config = roomy();
            config.limits.fuel_per_call = 100_000_000_000;
            let host = open_host_with(data.path(), config);
            let session = start(&host, stem, "m").await;
            say(&session, &big_word(mib * MIB)).await;
            settle(&session).await;
            let all = events(&host, session.id()).await;
            host.close().await;
            assert_eq!(guest_failures(&all), Vec::<String>::new());
            let text = String::from_utf8(trace.0.lock().expect("trace").clone()).expect("utf-8");
            let bytes = (mib * MIB) as f64;
            for call in ["apply", "effect", "snapshot"] {
                let most = text
                    .lines()
                    .filter(|l| l.contains(&format!("call=\"{call}\"")))
                    .filter_map(|l| {
                        l.rsplit_once("used=")
                            .and_then(|(_, n)| n.trim().parse::<u64>().ok())
                    })
                    .max()
                    .unwrap_or(0);
                println!(
                    "{stem}, {mib} MiB input: the largest {call} used {most} fuel, {:.2} a byte",
                    most as f64 / bytes
                );
            }
        }
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("trace").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_over_the_event_limit_is_refused_before_anything_is_written() {
    let mut config = config();
    config.limits.max_event_bytes = 64 << 10;
    let server = Server::start(config).await;
    let api = &server.api;
    api.add_guest("counter").await;
    let id = api.session("counter", "c").await;
    api.send_and_wait("c", "inc").await;
    let before = api.all_events("c").await.len();

    let answer = api
        .post("/v1/sessions/c/input", json!({"text": big_word(100 << 10)}))
        .await;
    assert_error(&answer, 413, "event_too_large");
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("max_event_bytes = 65536"), "{message}");
    assert_eq!(api.all_events("c").await.len(), before, "nothing appended");

    // The library refuses it the same way, and just under the limit is fine.
    let log: LogId = id.parse().expect("an id");
    let session = server.host.session(log).await.expect("session");
    let refused = session
        .input(
            logbook::journal::Sender::Principal("t".into()),
            vec![logbook::journal::ContentBlock::text(big_word(100 << 10))],
        )
        .await;
    assert!(
        matches!(refused, Err(SessionError::TooLarge { limit: 65536, .. })),
        "{refused:?}"
    );
    api.send_and_wait("c", &big_word(60 << 10)).await;
    assert_eq!(api.all_events("c").await.len(), before + 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_result_over_the_event_limit_is_recorded_as_failed_too_large() {
    let data = data_dir();
    let mut config = config();
    config.limits.max_event_bytes = 64 << 10;
    config.limits.fuel_per_event = 100_000_000;
    config.tools.max_read_bytes = Some(1 << 20);
    let host = open_host_with(data.path(), config);
    let session = start(&host, "assistant", "a").await;
    let log = session.id();
    // A file an operator put in the workspace; fs.read is allowed.
    let dir = host.workspace_dir(log);
    std::fs::create_dir_all(&dir).expect("workspace");
    std::fs::write(dir.join("big.txt"), big_word(200 << 10)).expect("write");
    say(&session, r#"/tool fs.read {"path":"big.txt"}"#).await;
    settle(&session).await;
    let all = events(&host, log).await;
    let failed = all.iter().find_map(|e| match &e.event.body {
        EventBody::Failed {
            error,
            message,
            retryable,
            ..
        } => Some((*error, message.clone(), *retryable)),
        _ => None,
    });
    let (error, message, retryable) = failed.expect("a failed event");
    assert_eq!(error, ErrorKind::TooLarge);
    assert!(!retryable);
    assert!(message.contains("max_event_bytes = 65536"), "{message}");
    let largest = all
        .iter()
        .map(|e| e.event.body.canonical_len())
        .max()
        .unwrap_or(0);
    assert!(largest <= 64 << 10, "a stored event of {largest} bytes");
    assert_eq!(guest_failures(&all), Vec::<String>::new());
}

/// Park the counter on a large input (no fuel per byte); the input's seq.
async fn park_counter(host: &Arc<Host>) -> (logbook::session::Session, u64) {
    let session = start(host, "counter", "c").await;
    say(&session, "inc").await;
    let big = say(&session, &big_word(2 * MIB)).await;
    assert_eq!(settle(&session).await, Activity::Failed);
    (session, big)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpark_skips_the_input_for_good_across_a_restart() {
    let data = data_dir();
    let host = open_host_with(data.path(), stingy());
    let (session, big) = park_counter(&host).await;
    let log = session.id();
    let refused = session
        .input(
            logbook::journal::Sender::Principal("t".into()),
            vec![logbook::journal::ContentBlock::text("inc")],
        )
        .await;
    assert!(
        matches!(refused, Err(SessionError::Parked(_))),
        "{refused:?}"
    );

    let seq = host
        .unpark(TENANT, "c", Some(big), "ops", "too large for this guest")
        .await
        .expect("unpark");
    let session = host.session(log).await.expect("wake");
    say(&session, "inc").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let all = events(&host, log).await;
    assert_eq!(
        all[seq as usize].event.body,
        EventBody::Unparked {
            skip: Some(big),
            by: "ops".into(),
            reason: "too large for this guest".into(),
        }
    );
    // Nothing deleted: the input and the failure stay before the decision.
    assert!(matches!(
        all[big as usize].event.body,
        EventBody::Input { .. }
    ));
    assert_eq!(guest_failures(&all).len(), 1);
    assert_eq!(outputs(&all), ["count = 1", "count = 2"]);

    // A restart replays the whole log (no snapshot): the input stays skipped.
    host.close().await;
    drop((session, host));
    let mut config = stingy();
    config.limits.snapshot_every = 0;
    let host = reopen_host(data.path(), config).await;
    let session = host.session(log).await.expect("wake after restart");
    say(&session, "inc").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let all = events(&host, log).await;
    assert_eq!(guest_failures(&all).len(), 1, "{:?}", kinds(&all));
    assert_eq!(outputs(&all), ["count = 1", "count = 2", "count = 3"]);
    assert_chain_holds(&host, log).await;

    // The replay check of the same guest agrees with the log.
    let guest = host.guest(TENANT, "counter").await.expect("guest");
    let report = host.replay_check(TENANT, "c", guest).await.expect("check");
    assert_eq!(report.difference, None);
}

/// Snapshots taken before the unpark hold the state of a skipped input
/// folded long ago: a replay that meets the skip starts again below it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skip_of_an_input_older_than_a_snapshot_is_honoured() {
    let data = data_dir();
    let mut config = config();
    config.limits.snapshot_every = 2;
    let host = open_host_with(data.path(), config.clone());
    let session = start(&host, "counter", "c").await;
    let log = session.id();
    let first = say(&session, "inc").await;
    settle(&session).await;
    for _ in 0..3 {
        say(&session, "inc").await;
        settle(&session).await;
    }
    // Park it with an input that loops its fuel away: a guest-failed
    // written by hand stands for any failure.
    host.hibernate(log);
    let info = host.journal().info(log).await.expect("info").expect("log");
    host.journal()
        .commit(logbook::journal::Commit::append(
            log,
            info.next_seq,
            vec![(
                now_ms(),
                EventBody::GuestFailed {
                    message: "test".into(),
                },
            )],
        ))
        .await
        .expect("park");
    assert!(
        !host
            .journal()
            .snapshots(log)
            .await
            .expect("snapshots")
            .is_empty()
    );
    host.unpark(
        TENANT,
        "c",
        Some(first),
        "ops",
        "the first inc was a mistake",
    )
    .await
    .expect("unpark");
    let session = host.session(log).await.expect("wake");
    say(&session, "get").await;
    settle(&session).await;
    let outs = outputs(&events(&host, log).await);
    assert_eq!(
        outs.last().map(String::as_str),
        Some("count = 3"),
        "{outs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpark_without_skip_tries_again_under_raised_limits() {
    let data = data_dir();
    let host = open_host_with(data.path(), stingy());
    let (session, _) = park_counter(&host).await;
    let log = session.id();
    host.close().await;
    drop((session, host));
    // The operator raises the limits (fuel per byte back to its default).
    let host = reopen_host(data.path(), config()).await;
    host.unpark(TENANT, "c", None, "ops", "fuel per byte raised")
        .await
        .expect("unpark");
    let session = host.session(log).await.expect("wake");
    assert_eq!(settle(&session).await, Activity::Idle);
    let all = events(&host, log).await;
    let outs = outputs(&all);
    assert_eq!(outs.len(), 2, "{:?}", kinds(&all));
    assert!(outs[1].starts_with("unknown command: xxx"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpark_refuses_what_it_cannot_do() {
    let data = data_dir();
    let host = open_host_with(data.path(), stingy());
    let session = start(&host, "counter", "c").await;
    say(&session, "inc").await;
    settle(&session).await;
    let not_parked = host.unpark(TENANT, "c", None, "ops", "why").await;
    assert!(
        matches!(not_parked, Err(SessionError::NotParked(_))),
        "{not_parked:?}"
    );
    say(&session, &big_word(2 * MIB)).await;
    assert_eq!(settle(&session).await, Activity::Failed);
    let len = events(&host, session.id()).await.len() as u64;
    for (skip, why) in [
        (0, "`created`, not an input"),
        (2, "`output`, not an input"),
        (len, "not in the log"),
    ] {
        let refused = host.unpark(TENANT, "c", Some(skip), "ops", "why").await;
        match refused {
            Err(e @ SessionError::BadSkip { .. }) => {
                assert!(e.to_string().contains(why), "{e}")
            }
            other => panic!("skip {skip}: {other:?}"),
        }
    }
    let no_reason = host.unpark(TENANT, "c", None, "ops", " ").await;
    assert!(
        matches!(no_reason, Err(SessionError::NoReason)),
        "{no_reason:?}"
    );
    let elsewhere = host.unpark("another", "c", None, "ops", "why").await;
    assert!(
        matches!(elsewhere, Err(SessionError::UnknownSession(_))),
        "{elsewhere:?}"
    );
    assert_eq!(
        events(&host, session.id()).await.len() as u64,
        len,
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpark_over_http_and_through_the_cli_with_url() {
    let server = Server::start(config()).await;
    let api = &server.api;
    api.add_guest("fixture_looper").await;
    api.session("fixture_looper", "l").await;
    api.send_and_wait("l", "hi").await;
    let parked = api.send_and_wait("l", "loop").await;
    assert_eq!(parked["status"], "failed", "{parked}");
    let looped = parked["seq"].as_u64().expect("a seq");

    assert_error(
        &api.post("/v1/sessions/l/unpark", json!({"skip": 0, "reason": "x"}))
            .await,
        400,
        "bad_seq",
    );
    assert_error(
        &api.post("/v1/sessions/l/unpark", json!({"skip": looped}))
            .await,
        400,
        "bad_request",
    );
    let (status, body) = api
        .post(
            "/v1/sessions/l/unpark",
            json!({"skip": looped, "reason": "it loops"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seq = body["seq"].as_u64().expect("a seq");
    assert_error(
        &api.post("/v1/sessions/l/unpark", json!({"reason": "again"}))
            .await,
        409,
        "not_parked",
    );
    let answer = api.send_and_wait("l", "there").await;
    assert_eq!(answer["status"], "idle", "{answer}");
    let all = api.all_events("l").await;
    assert!(matches!(
        &all[seq as usize].event.body,
        EventBody::Unparked { skip: Some(s), by, .. } if *s == looped && by == "default"
    ));
    assert_eq!(outputs(&all), ["ok: hi", "ok: there"]);

    // Park it again, and unpark it with the CLI against the server.
    let again = api.send_and_wait("l", "loop").await;
    assert_eq!(again["status"], "failed", "{again}");
    let looped = again["seq"].as_u64().expect("a seq");
    let scratch = bare_data_dir();
    let ran = run_ok(logbook(scratch.path()).args([
        "--url",
        &api.base,
        "unpark",
        "l",
        "--skip",
        &looped.to_string(),
        "--reason",
        "loops again",
    ]));
    assert!(ran.stderr.contains("unparked at seq"), "{}", ran.stderr);
    let answer = api.send_and_wait("l", "back").await;
    assert_eq!(answer["status"], "idle", "{answer}");
    server.stop().await;
}

#[test]
fn unpark_through_the_cli_on_a_data_directory() {
    let data = data_dir();
    let looper = guest_file("fixture_looper");
    let looper = looper.to_str().expect("a path");
    std::fs::write(
        data.path().join("logbook.toml"),
        "[limits]\nfuel_per_event = 5000000\nfuel_per_call = 5000000\nmax_instances = 16\n",
    )
    .expect("config");
    let ran =
        run(logbook(data.path()).args(["run", looper, "--session", "l", "-i", "hi", "-i", "loop"]));
    assert!(
        !ran.status.success(),
        "a parked session exits 1: {}",
        ran.stderr
    );
    assert!(ran.stderr.contains("parked"), "{}", ran.stderr);
    let refused = run(logbook(data.path()).args(["unpark", "l", "--skip", "0", "--reason", "x"]));
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("not an input"),
        "{}",
        refused.stderr
    );
    let ran =
        run_ok(logbook(data.path()).args(["unpark", "l", "--skip", "3", "--reason", "loops"]));
    assert!(ran.stderr.contains("seq 3 is skipped"), "{}", ran.stderr);
    let ran = run_ok(logbook(data.path()).args(["run", "--session", "l", "-i", "again"]));
    assert_eq!(ran.stdout, "ok: again\n");
    let (_, values) = log_json(data.path(), "l");
    let kinds: Vec<&str> = values
        .iter()
        .map(|v| v["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "input",
            "output",
            "input",
            "guest-failed",
            "unparked",
            "input",
            "output"
        ]
    );
    assert_eq!(values[5]["skip"], 3);
    assert_eq!(values[5]["by"], "cli");
    let ran = run_ok(logbook(data.path()).args(["log", "l"]));
    assert!(ran.stdout.contains("skipping seq 3"), "{}", ran.stdout);
}
