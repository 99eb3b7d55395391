//! Issue #10, item 6: effect loops stop. A guest that sleeps 0 ms after
//! every timer, or calls the model after every answer, is stopped by the
//! rate limits with the reason in its log, and stays stopped across a
//! restart; an operator stops and resumes any session (library, HTTP, CLI);
//! a stopped session takes input and performs nothing until resumed.

use std::time::Duration;

use logbook::config::Config;
use logbook::journal::{EventBody, LogStatus, RequestedEffect, StoredEvent};
use logbook::session::{Activity, ForkOptions, Host, HostOptions, SessionError};
use reqwest::StatusCode;
use serde_json::json;

use crate::fixtures::*;
use crate::server::{Server, assert_error, tenants_config};

const SPINNER: &str = "fixture_spinner";

/// The `stopped` events of a log: `(seq, by, reason)`.
fn stops(events: &[StoredEvent]) -> Vec<(u64, String, String)> {
    events
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Stopped { by, reason } => Some((e.event.seq, by.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

fn model_requests(events: &[StoredEvent]) -> usize {
    events
        .iter()
        .filter(|e| {
            matches!(
                e.event.body,
                EventBody::Requested {
                    effect: RequestedEffect::Model { .. },
                    ..
                }
            )
        })
        .count()
}

fn limited(effects_per_minute: u64, model_calls_per_minute: u64) -> Config {
    let mut config = config();
    config.limits.session_effects_per_minute = effects_per_minute;
    config.limits.session_model_calls_per_minute = model_calls_per_minute;
    config
}

/// Rates count effects started, not events: a client that floods a counter
/// with inputs (each answered by an output, no effect) is never stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_inputs_that_start_no_effect_is_never_stopped() {
    let data = data_dir();
    let host = open_host_with(data.path(), limited(5, 5));
    let session = start(&host, "counter", "flood").await;
    for _ in 0..50 {
        say(&session, "inc").await;
    }
    assert_eq!(settle(&session).await, Activity::Idle);
    let all = events(&host, session.id()).await;
    assert!(stops(&all).is_empty());
    assert_eq!(outputs(&all).last().map(String::as_str), Some("count = 50"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_is_stopped_by_its_effect_rate_and_stays_stopped_after_a_restart() {
    let data = data_dir();
    let config = limited(40, 0);
    let host = open_host_with(data.path(), config.clone());
    let session = start(&host, SPINNER, "s").await;
    let log = session.id();
    say(&session, "spin").await;
    assert_eq!(settle(&session).await, Activity::Stopped);
    let all = events(&host, log).await;
    let found = stops(&all);
    assert_eq!(found.len(), 1, "{found:?}");
    let (seq, by, reason) = &found[0];
    assert_eq!(by, "logbook");
    assert!(
        reason.starts_with("limit session_effects_per_minute = 40: "),
        "{reason}"
    );
    assert_eq!(*seq + 1, all.len() as u64, "nothing after the stop");
    // The limit counts the timers this host started, each logged with its
    // request and its result; past it, the timer result that came in and
    // the stop are logged still.
    assert!(all.len() <= 1 + 1 + 2 * 40 + 2, "{} events", all.len());
    let info = host.resolve(TENANT, "s").await.expect("info");
    assert_eq!(info.status, LogStatus::Stopped);

    // A new host over the same file: still stopped, its timer never fires.
    host.close().await;
    drop((session, host));
    let host = reopen_host(data.path(), config).await;
    let info = host.resolve(TENANT, "s").await.expect("info");
    assert_eq!(info.status, LogStatus::Stopped);
    let session = host.session(log).await.expect("wake");
    assert_eq!(settle(&session).await, Activity::Stopped);
    let hello = say(&session, "hello").await;
    assert_eq!(settle(&session).await, Activity::Stopped);
    let after = events(&host, log).await;
    assert_eq!(after.len(), all.len() + 1, "the input, and nothing else");
    assert_eq!(after[hello as usize].event.body.kind(), "input");

    // Resumed: the output it wanted is performed, the loop goes on and is
    // stopped again (a fresh window).
    let resumed = host.resume(TENANT, "s", "ops").await.expect("resume");
    assert_eq!(resumed, hello + 1);
    assert_eq!(settle(&session).await, Activity::Stopped);
    let last = events(&host, log).await;
    let outs = outputs(&last);
    assert_eq!(outs.len(), 1, "{outs:?}");
    assert!(outs[0].starts_with("ok: hello after "), "{outs:?}");
    assert_eq!(stops(&last).len(), 2);
    assert_chain_holds(&host, log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatting_guest_is_stopped_by_its_model_call_rate() {
    let data = data_dir();
    let host = open_host_with(data.path(), limited(0, 5));
    let session = start(&host, SPINNER, "c").await;
    say(&session, "chat").await;
    let activity = settle(&session).await;
    let all = events(&host, session.id()).await;
    let kinds: Vec<_> = all.iter().map(|e| format!("{:?}", e.event.body)).collect();
    assert_eq!(activity, Activity::Stopped, "{kinds:#?}");
    assert_eq!(model_requests(&all), 5);
    let found = stops(&all);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .2
            .starts_with("limit session_model_calls_per_minute = 5: 5 model calls"),
        "{found:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifetime_budget_of_model_calls_holds_until_a_resume() {
    let data = data_dir();
    let mut config = limited(0, 0);
    config.limits.session_model_calls = 3;
    let host = open_host_with(data.path(), config);
    let session = start(&host, SPINNER, "c").await;
    say(&session, "chat").await;
    assert_eq!(settle(&session).await, Activity::Stopped);
    let all = events(&host, session.id()).await;
    assert_eq!(model_requests(&all), 3);
    assert!(
        stops(&all)[0]
            .2
            .starts_with("limit session_model_calls = 3: 4 model calls asked"),
        "{:?}",
        stops(&all)
    );
    host.resume(TENANT, "c", "ops").await.expect("resume");
    assert_eq!(settle(&session).await, Activity::Stopped);
    let all = events(&host, session.id()).await;
    assert_eq!(model_requests(&all), 6, "a resume grants a fresh budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_stops_and_resumes_a_session_and_the_refusals() {
    let data = data_dir();
    let host = open_host_with(data.path(), config());
    let session = start(&host, "counter", "c").await;
    say(&session, "inc").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let refused = host.resume(TENANT, "c", "ops").await;
    assert!(
        matches!(refused, Err(SessionError::NotStopped(_))),
        "{refused:?}"
    );
    let refused = host.stop(TENANT, "c", "ops", " ").await;
    assert!(
        matches!(refused, Err(SessionError::NoStopReason)),
        "{refused:?}"
    );
    let refused = host.stop("another", "c", "ops", "why").await;
    assert!(
        matches!(refused, Err(SessionError::UnknownSession(_))),
        "{refused:?}"
    );

    host.stop(TENANT, "c", "ops", "look first")
        .await
        .expect("stop");
    let refused = host.stop(TENANT, "c", "ops", "again").await;
    assert!(
        matches!(refused, Err(SessionError::AlreadyStopped(_))),
        "{refused:?}"
    );
    let seq = say(&session, "inc").await;
    assert_eq!(settle(&session).await, Activity::Stopped);
    let all = events(&host, session.id()).await;
    assert_eq!(all.len() as u64, seq + 1, "taken, not answered");
    assert_eq!(outputs(&all), ["count = 1"]);

    // A fork of the stopped session starts unstopped, from the same state.
    let fork = host
        .fork(TENANT, "c", ForkOptions::default())
        .await
        .expect("fork");
    let forked = host.resolve(TENANT, &fork.to_string()).await.expect("info");
    assert_eq!(forked.status, LogStatus::Idle);
    let branch = host.session(fork).await.expect("fork session");
    say(&branch, "inc").await;
    assert_eq!(settle(&branch).await, Activity::Idle);
    let outs = outputs(&events(&host, fork).await);
    assert_eq!(
        outs.last().map(String::as_str),
        Some("count = 3"),
        "{outs:?}"
    );

    host.resume(TENANT, "c", "ops").await.expect("resume");
    assert_eq!(settle(&session).await, Activity::Idle);
    let all = events(&host, session.id()).await;
    assert_eq!(outputs(&all), ["count = 1", "count = 2"]);
    let kinds: Vec<&str> = all.iter().map(|e| e.event.body.kind()).collect();
    assert!(
        kinds.contains(&"stopped") && kinds.contains(&"resumed"),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_resume_over_http_and_through_the_cli_with_url() {
    let (config, token_a, token_b) = tenants_config();
    let server = Server::start(config).await;
    let a = server.api(Some(token_a));
    let b = server.api(Some(token_b));
    a.add_guest("counter").await;
    a.session("counter", "c").await;
    a.send_and_wait("c", "inc").await;

    assert_error(
        &a.post("/v1/sessions/c/resume", json!(null)).await,
        409,
        "not_stopped",
    );
    assert_error(
        &b.post("/v1/sessions/c/stop", json!({"reason": "not mine"}))
            .await,
        404,
        "not_found",
    );
    let (status, body) = a
        .post("/v1/sessions/c/stop", json!({"reason": "look first"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seq = body["seq"].as_u64().expect("a seq");
    assert_error(
        &a.post("/v1/sessions/c/stop", json!({"reason": "again"}))
            .await,
        409,
        "already_stopped",
    );
    let (_, info) = a.get("/v1/sessions/c").await;
    assert_eq!(info["status"], "stopped", "{info}");
    let answer = a.send_and_wait("c", "inc").await;
    assert_eq!(answer["status"], "stopped", "{answer}");
    let all = a.all_events("c").await;
    assert!(matches!(
        &all[seq as usize].event.body,
        EventBody::Stopped { by, reason } if by == "a" && reason == "look first"
    ));
    assert_eq!(outputs(&all), ["count = 1"]);
    assert_error(
        &b.post("/v1/sessions/c/resume", json!(null)).await,
        404,
        "not_found",
    );

    // Resume with the CLI against the server; stop it again the same way.
    let scratch = bare_data_dir();
    let with_url = |args: &[&str]| {
        let mut cmd = logbook(scratch.path());
        cmd.env("LOGBOOK_TOKEN", token_a)
            .arg("--url")
            .arg(&a.base)
            .args(args);
        run_ok(&mut cmd)
    };
    let ran = with_url(&["resume", "c"]);
    assert!(ran.stderr.contains("resumed at seq"), "{}", ran.stderr);
    a.wait_status("c", "idle").await;
    assert_eq!(
        outputs(&a.all_events("c").await),
        ["count = 1", "count = 2"]
    );
    let ran = with_url(&["stop", "c", "--reason", "from the cli"]);
    assert!(ran.stderr.contains("stopped at seq"), "{}", ran.stderr);
    a.wait_status("c", "stopped").await;
    server.stop().await;
}

#[test]
fn stop_and_resume_through_the_cli_on_a_data_directory() {
    let data = data_dir();
    run_ok(logbook(data.path()).args(["run", "counter", "--session", "c", "-i", "inc"]));
    let ran = run_ok(logbook(data.path()).args(["stop", "c", "--reason", "quiet please"]));
    assert!(ran.stderr.contains("stopped at seq 3"), "{}", ran.stderr);
    let listed = run_ok(logbook(data.path()).args(["sessions"]));
    assert!(listed.stdout.contains("stopped"), "{}", listed.stdout);
    let again = run(logbook(data.path()).args(["stop", "c", "--reason", "again"]));
    assert!(!again.status.success(), "{}", again.stderr);
    assert!(again.stderr.contains("stopped already"), "{}", again.stderr);
    run_ok(logbook(data.path()).args(["send", "c", "inc"]));
    let (_, events) = log_json(data.path(), "c");
    let last = events.last().expect("events");
    assert_eq!(last["kind"], "input", "{last}");
    let ran = run_ok(logbook(data.path()).args(["resume", "c"]));
    assert!(ran.stderr.contains("resumed at seq"), "{}", ran.stderr);
    assert!(ran.stdout.contains("count = 2"), "{}", ran.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_session_round_trips_through_export_and_import_stopped() {
    let data = data_dir();
    let host = open_host_with(data.path(), limited(30, 0));
    let session = start(&host, SPINNER, "s").await;
    say(&session, "spin").await;
    assert_eq!(settle(&session).await, Activity::Stopped);
    let mut jsonl = Vec::new();
    let exported = host.export(session.id(), &mut jsonl).await.expect("export");
    let text = String::from_utf8(jsonl.clone()).expect("utf-8");
    assert!(
        text.contains(r#""kind":"stopped","by":"logbook""#),
        "{text}"
    );

    let other = data_dir();
    let copy_host = open_host_with(other.path(), limited(30, 0));
    // The guest must be stored there first.
    start(&copy_host, SPINNER, "other").await;
    let copy = copy_host
        .import(TENANT, &mut jsonl.as_slice(), Some("copy"))
        .await
        .expect("import");
    let info = copy_host.resolve(TENANT, "copy").await.expect("info");
    assert_eq!(info.status, LogStatus::Stopped);
    assert_eq!(info.next_seq, exported);
    // Woken, it stays as it was: no timer fires.
    let woken = copy_host.session(copy).await.expect("wake");
    assert_eq!(settle(&woken).await, Activity::Stopped);
    assert_eq!(events(&copy_host, copy).await.len() as u64, exported);
    assert_chain_holds(&copy_host, copy).await;
}

/// Two workers on one PostgreSQL: the one that does not hold the session's
/// lease stops it, takes its input and resumes it through the journal; the
/// holder's actor absorbs each, and performs nothing while it is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_made_on_one_worker_holds_on_the_one_that_runs_the_session() {
    let Some(db) = crate::postgres::PgDb::create().await else {
        return;
    };
    let mut config = config();
    config.journal.url = Some(db.url.clone());
    let (one, two) = (data_dir(), data_dir());
    let holder = Host::open_configured(one.path(), config.clone(), HostOptions::default())
        .await
        .expect("worker one");
    let other = Host::open_configured(two.path(), config, HostOptions::default())
        .await
        .expect("worker two");
    let session = start(&holder, "counter", "c").await;
    let log = session.id();
    say(&session, "inc").await;
    assert_eq!(settle(&session).await, Activity::Idle);

    other
        .stop(TENANT, "c", "ops", "from the other worker")
        .await
        .expect("stop");
    assert_eq!(
        holder.resolve(TENANT, "c").await.expect("info").status,
        LogStatus::Stopped
    );
    let seq = other
        .input(
            log,
            logbook::journal::Sender::Principal("ops".into()),
            vec![logbook::journal::ContentBlock::text("inc")],
        )
        .await
        .expect("input");
    let waited = other
        .wait_idle_after(log, seq, Duration::ZERO)
        .await
        .expect("wait");
    assert_eq!(waited, Activity::Stopped);
    // The holder absorbed it, and answered nothing.
    let until_absorbed = guard(async {
        loop {
            if holder.resident(log).is_some() && settle(&session).await == Activity::Stopped {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    until_absorbed.await;
    assert_eq!(outputs(&events(&holder, log).await), ["count = 1"]);
    let refused = other.stop(TENANT, "c", "ops", "again").await;
    assert!(
        matches!(refused, Err(SessionError::AlreadyStopped(_))),
        "{refused:?}"
    );

    other.resume(TENANT, "c", "ops").await.expect("resume");
    guard(async {
        loop {
            let all = events(&holder, log).await;
            if outputs(&all) == ["count = 1", "count = 2"] {
                return;
            }
            holder
                .journal()
                .wait_events(log, all.len() as u64)
                .await
                .expect("wait");
        }
    })
    .await;
    assert_chain_holds(&holder, log).await;
}
