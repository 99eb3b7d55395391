//! Chaos: one `logbook serve` on a redb data directory, SIGKILLed at random
//! moments while several clients load it, [`KILLS`] times, and started again
//! on the same directory each time.
//!
//! What must hold at the end: every input the server acknowledged is in its
//! session's log at the seq it was acknowledged with, and no seq was
//! acknowledged twice; besides those, a log holds only inputs whose answer a
//! kill swallowed; every chain verifies, through the API and through
//! `logbook verify --all` on the directory; every counter counts every input
//! it logged; and every model call the assistant asked for ended exactly once.
//!
//! The moments are random, from a seed printed at the start
//! (`LOGBOOK_CHAOS_SEED=N` repeats a run): after each start the test waits for
//! the clients to be acknowledged again, so that every kill lands under load,
//! then waits a random 0–250 ms.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use logbook::journal::{EventBody, StoredEvent, verify_events};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::fixtures::*;
use crate::server::Api;
use crate::workers::{Worker, input_text, output_texts};

/// How many times the server is killed.
const KILLS: usize = 24;
/// Counter sessions, each with its own client sending `inc`.
const COUNTERS: usize = 3;

/// Where the clients send: the live server, or none while it restarts.
type Target = Arc<RwLock<Option<Api>>>;

/// What one client knows at the end: the seqs it was acknowledged with, and
/// how many requests it never got an answer to.
struct Sent {
    acked: Vec<u64>,
    unknown: usize,
}

/// Send `text` to `session` until told to stop: each answer's seq, and the
/// requests whose fate the client cannot know.
async fn client(
    target: Target,
    session: String,
    text: &'static str,
    wait: bool,
    acks: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Sent {
    let mut sent = Sent {
        acked: Vec::new(),
        unknown: 0,
    };
    let path = format!(
        "/v1/sessions/{session}/input{}",
        if wait { "?wait=idle" } else { "" }
    );
    while !stop.load(Ordering::Relaxed) {
        let api = target.read().expect("the target").clone();
        let Some(api) = api else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let body = json!({ "text": text }).to_string().into_bytes();
        match api.try_call(Method::POST, &path, Some(body)).await {
            Ok((status, body)) if status.is_success() => {
                sent.acked.push(body["seq"].as_u64().expect("a seq"));
                acks.fetch_add(1, Ordering::Relaxed);
            }
            // Shutting down, or the journal could not say: either way the
            // input may or may not be in the log.
            Ok((StatusCode::SERVICE_UNAVAILABLE, _)) => {
                sent.unknown += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok((status, body)) => panic!("{session}: {status} {body}"),
            // The server died with the request in hand.
            Err(_) => {
                sent.unknown += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    sent
}

/// Checks what every client was told against its session's log; the number
/// of inputs the log holds.
fn check_inputs(name: &str, log: &[StoredEvent], sent: &Sent, text: &str) -> usize {
    let verified = verify_events(log);
    assert_eq!(verified.first_bad, None, "{name}: the chain holds");
    let mut seqs = BTreeSet::new();
    for seq in &sent.acked {
        assert_eq!(
            log.get(*seq as usize).and_then(input_text).as_deref(),
            Some(text),
            "{name}: the acknowledged input at seq {seq}"
        );
        assert!(seqs.insert(*seq), "{name}: seq {seq} acknowledged twice");
    }
    let inputs = log.iter().filter(|e| input_text(e).is_some()).count();
    assert!(
        (sent.acked.len()..=sent.acked.len() + sent.unknown).contains(&inputs),
        "{name}: {inputs} inputs logged, {} acknowledged, {} unknown",
        sent.acked.len(),
        sent.unknown
    );
    inputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_under_load_again_and_again_it_loses_nothing_it_acknowledged() {
    let seed = std::env::var("LOGBOOK_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("chaos seed {seed} (LOGBOOK_CHAOS_SEED={seed} repeats this run)");
    let mut rng = StdRng::seed_from_u64(seed);

    let data = data_dir();
    // EchoModel answers after a few ms, so kills find model calls in flight.
    let env = [("LOGBOOK_ECHO_DELAY_MS", "5")];
    let mut server = Worker::serve(data.path(), &[], &env);
    let api = server.api();
    api.add_guest("counter").await;
    api.add_guest("assistant").await;
    for c in 0..COUNTERS {
        api.session("counter", &format!("c{c}")).await;
    }
    api.session("assistant", "a").await;

    let target: Target = Arc::new(RwLock::new(Some(api)));
    let acks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..COUNTERS {
        clients.push((
            format!("c{c}"),
            "inc",
            tokio::spawn(client(
                target.clone(),
                format!("c{c}"),
                "inc",
                c == 0,
                acks.clone(),
                stop.clone(),
            )),
        ));
    }
    clients.push((
        "a".to_string(),
        "hello",
        tokio::spawn(client(
            target.clone(),
            "a".into(),
            "hello",
            true,
            acks.clone(),
            stop.clone(),
        )),
    ));

    let deadline = Instant::now() + GUARD * 4;
    for kill in 0..KILLS {
        // Under load: the clients are acknowledged by this server first.
        let before = acks.load(Ordering::Relaxed);
        while acks.load(Ordering::Relaxed) < before + 3 {
            assert!(
                Instant::now() < deadline,
                "deadlock guard: no acks after start {kill}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..250))).await;
        *target.write().expect("the target") = None;
        server.kill();
        server = Worker::serve(data.path(), &[], &env);
        *target.write().expect("the target") = Some(server.api());
    }
    let before = acks.load(Ordering::Relaxed);
    while acks.load(Ordering::Relaxed) < before + 3 {
        assert!(
            Instant::now() < deadline,
            "deadlock guard: no acks at the end"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let api = server.api();
    let mut acknowledged = 0;
    for (name, text, handle) in clients {
        let sent = guard(handle).await.expect("a client");
        acknowledged += sent.acked.len();
        let log = api.all_events(&name).await;
        let inputs = check_inputs(&name, &log, &sent, text);
        if text == "inc" {
            // The session goes on, and counts every input it logged.
            let answer = api.send_and_wait(&name, "get").await;
            assert_eq!(
                output_texts(&answer).last().map(String::as_str),
                Some(format!("count = {inputs}").as_str()),
                "{name}: {answer}"
            );
        } else {
            // Every model call asked for ended once (an answer, a failure, or
            // `cancelled` when the guest stopped wanting it, as when an input
            // came while a call cut by a kill was made again): recorded once.
            api.send_and_wait(&name, "hello").await;
            let log = api.all_events(&name).await;
            let mut ends: BTreeMap<&str, usize> = BTreeMap::new();
            for e in &log {
                match &e.event.body {
                    EventBody::Requested { key, .. } => {
                        ends.entry(key).or_default();
                    }
                    EventBody::Completed { key, .. }
                    | EventBody::Failed { key, .. }
                    | EventBody::Cancelled { key } => {
                        *ends.entry(key).or_default() += 1;
                    }
                    _ => {}
                }
            }
            assert!(!ends.is_empty(), "{name}: the assistant asked the model");
            for (key, n) in ends {
                assert_eq!(n, 1, "{name}: {key} ended {n} times");
            }
        }
    }
    eprintln!("{KILLS} kills survived; {acknowledged} inputs acknowledged");

    server.kill();
    let ran = run_ok(logbook(data.path()).args(["verify", "--all"]));
    assert!(ran.stdout.contains("ok"), "{}", ran.stdout);
}
