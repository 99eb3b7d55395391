//! The `send` effect between sessions of one tenant, on a real redb file
//! with real guests: `delegate` asks an `assistant` (EchoModel) and gets its
//! answer back; a refused send is a `failed` with a kind and a reason that
//! leaks nothing of other tenants; two `pingpong` fixtures that answer
//! each other stop at `[limits] max_send_hops`; and the logs of both sides
//! pass the replay check; and the CLI runs `delegate` by name.

use std::sync::Arc;
use std::time::Duration;

use logbook::config::Config;
use logbook::journal::{ErrorKind, EventBody, LogId, Sender, StoredEvent, plain_text};
use logbook::session::Host;
use serde_json::Value;

use crate::fixtures::*;

/// Every `sent` of a log: (key, target).
pub(crate) fn sents(events: &[StoredEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Sent { key, target } => Some((key.clone(), target.clone())),
            _ => None,
        })
        .collect()
}

/// Every input another session sent: (from log, key, hops, text).
pub(crate) fn inputs_from_logs(events: &[StoredEvent]) -> Vec<(String, String, u32, String)> {
    events
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Input {
                from: Sender::Log { log, key, hops },
                content,
            } => Some((log.clone(), key.clone(), *hops, plain_text(content))),
            _ => None,
        })
        .collect()
}

/// Every `failed` of a log: (key, kind, message).
fn failures(events: &[StoredEvent]) -> Vec<(String, ErrorKind, String)> {
    events
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Failed {
                key,
                error,
                message,
                ..
            } => Some((key.clone(), *error, message.clone())),
            _ => None,
        })
        .collect()
}

/// Wait until `log` has an output that `done` accepts; its outputs then.
async fn outputs_until(host: &Host, log: LogId, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    guard(async {
        loop {
            let outs = outputs(&events(host, log).await);
            if done(&outs) {
                return outs;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The replay check of session `name` on guest `stem` finds no difference.
async fn replays_clean(host: &Arc<Host>, name: &str, stem: &str) {
    let guest = host.guest(TENANT, stem).await.expect("guest");
    let report = guard(host.replay_check(TENANT, name, guest))
        .await
        .expect("replay check");
    assert_eq!(report.difference, None, "replay check of {name}");
    assert!(report.events > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegate_asks_an_assistant_and_outputs_its_answer() {
    let data = data_dir();
    let host = open_host(data.path());
    let helper = start(&host, "assistant", "helper").await;
    let boss = start(&host, "delegate", "boss").await;
    // The helper is dormant when it is asked: the send wakes it.
    host.hibernate(helper.id());
    say(&boss, "ask helper what is a log?").await;
    let outs = outputs_until(&host, boss.id(), |o| !o.is_empty()).await;
    assert_eq!(outs, ["helper: echo: what is a log?"]);
    settle(&boss).await;
    settle(&host.session(helper.id()).await.expect("helper")).await;

    let (boss_events, helper_events) = (
        events(&host, boss.id()).await,
        events(&host, helper.id()).await,
    );
    // One `sent` on each side, each delivered as exactly one input.
    let asked = sents(&boss_events);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].1, helper.id().to_string());
    let got = inputs_from_logs(&helper_events);
    assert_eq!(
        got,
        [(
            boss.id().to_string(),
            asked[0].0.clone(),
            0,
            "what is a log?".to_string()
        )]
    );
    let answered = sents(&helper_events);
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert_eq!(answered[0].1, boss.id().to_string());
    let back = inputs_from_logs(&boss_events);
    assert_eq!(
        back,
        [(
            helper.id().to_string(),
            answered[0].0.clone(),
            1,
            "echo: what is a log?".to_string()
        )]
    );
    // The helper also says its answer to its own participants.
    assert_eq!(outputs(&helper_events), ["echo: what is a log?"]);
    assert_chain_holds(&host, boss.id()).await;
    assert_chain_holds(&host, helper.id()).await;
    replays_clean(&host, "boss", "delegate").await;
    replays_clean(&host, "helper", "assistant").await;
    host.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_nobody_can_take_fails_and_another_tenants_session_is_nobody() {
    let data = data_dir();
    let host = open_host(data.path());
    let boss = start(&host, "delegate", "boss").await;
    // A session of another tenant, by name and by id.
    let guest = host
        .add_guest("other", "assistant", &guest_bytes("assistant"))
        .await
        .expect("guest");
    let secret = host
        .create_session("other", Some("secret"), guest, serde_json::json!({}))
        .await
        .expect("create");
    // A session of this tenant that has finished.
    let done = start(&host, "counter", "done").await;
    say(&done, "done").await;
    settle(&done).await;

    for text in [
        "ask nobody hi".to_string(),
        "ask secret hi".to_string(),
        format!("ask {secret} hi"),
        "ask done hi".to_string(),
    ] {
        say(&boss, &text).await;
        settle(&boss).await;
    }
    let boss_events = events(&host, boss.id()).await;
    assert!(sents(&boss_events).is_empty());
    let failed = failures(&boss_events);
    let said: Vec<(ErrorKind, String)> = failed.into_iter().map(|(_, k, m)| (k, m)).collect();
    assert_eq!(
        said,
        [
            (
                ErrorKind::UnknownTarget,
                r#"send refused: no session "nobody""#.to_string()
            ),
            (
                ErrorKind::UnknownTarget,
                r#"send refused: no session "secret""#.to_string()
            ),
            (
                ErrorKind::UnknownTarget,
                format!(r#"send refused: no session "{secret}""#)
            ),
            (
                ErrorKind::TargetEnded,
                r#"send refused: session "done" has finished and takes no input"#.to_string()
            ),
        ]
    );
    assert_eq!(
        outputs(&boss_events)[0],
        r#"cannot ask nobody: send refused: no session "nobody""#
    );
    // Nothing reached the other tenant's session.
    assert_eq!(events(&host, secret).await.len(), 1);
    replays_clean(&host, "boss", "delegate").await;
    host.close().await;
}

/// A host whose sends between sessions may chain `hops` times.
fn with_hops(hops: u32) -> Config {
    let mut config = config();
    config.limits.max_send_hops = hops;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_that_answer_each_other_stop_at_max_send_hops() {
    let data = data_dir();
    let host = open_host_with(data.path(), with_hops(3));
    let a = start(&host, "fixture_pingpong", "a").await;
    let b = start(&host, "fixture_pingpong", "b").await;
    say(&a, "ping b").await;
    // a: ping (hop 0) → b: pong (1) → a: pong (2) → b: pong (3) → a: refused.
    let outs = outputs_until(&host, a.id(), |o| {
        o.iter().any(|line| line.starts_with("failed:"))
    })
    .await;
    settle(&a).await;
    settle(&b).await;
    let (a_events, b_events) = (events(&host, a.id()).await, events(&host, b.id()).await);
    let hops = |events: &[StoredEvent]| -> Vec<u32> {
        inputs_from_logs(events).iter().map(|i| i.2).collect()
    };
    assert_eq!(hops(&b_events), [0, 2]);
    assert_eq!(hops(&a_events), [1, 3]);
    assert_eq!(sents(&a_events).len(), 2);
    assert_eq!(sents(&b_events).len(), 2);
    let failed = failures(&a_events);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].1, ErrorKind::LimitReached);
    assert!(
        failed[0].2.contains("max_send_hops = 3"),
        "the message names the limit: {}",
        failed[0].2
    );
    assert_eq!(outs.last(), Some(&format!("failed: {}", failed[0].2)));
    assert!(failures(&b_events).is_empty());
    replays_clean(&host, "a", "fixture_pingpong").await;
    replays_clean(&host, "b", "fixture_pingpong").await;
    host.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_may_send_to_itself_within_the_same_bound() {
    let data = data_dir();
    let host = open_host_with(data.path(), with_hops(2));
    let a = start(&host, "fixture_pingpong", "a").await;
    say(&a, "ping a").await;
    settle(&a).await;
    let a_events = events(&host, a.id()).await;
    // Each input to itself follows its `sent` in the same commit.
    let hops: Vec<u32> = inputs_from_logs(&a_events).iter().map(|i| i.2).collect();
    assert_eq!(hops, [0, 1, 2]);
    for (key, target) in sents(&a_events) {
        assert_eq!(target, a.id().to_string());
        let at = a_events
            .iter()
            .position(|e| matches!(&e.event.body, EventBody::Sent { key: k, .. } if *k == key))
            .expect("its sent");
        let delivered = a_events[at..]
            .iter()
            .find(|e| {
                matches!(&e.event.body, EventBody::Input { from: Sender::Log { key: k, .. }, .. } if *k == key)
            })
            .expect("its input");
        assert_eq!(delivered.event.at, a_events[at].event.at, "one commit");
    }
    let failed = failures(&a_events);
    assert_eq!(failed.len(), 1);
    assert!(failed[0].2.contains("max_send_hops = 2"), "{failed:?}");
    assert_eq!(
        outputs(&a_events),
        [
            "received 1".to_string(),
            "received 2".to_string(),
            "received 3".to_string(),
            format!("failed: {}", failed[0].2)
        ]
    );
    replays_clean(&host, "a", "fixture_pingpong").await;
    host.close().await;
}

/// The JSON lines `logbook export` writes for session `name`.
pub(crate) fn exported(data: &std::path::Path, name: &str) -> Vec<Value> {
    let ran = run_ok(logbook(data).args(["export", name]));
    ran.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn the_cli_runs_delegate_by_name_and_prints_the_answer() {
    let dir = data_dir();
    let data = dir.path();
    run_ok(logbook(data).args(["run", "assistant", "--session", "helper"]));
    let ran = run_ok(logbook(data).args([
        "run",
        "delegate",
        "--session",
        "boss",
        "-i",
        "ask helper hello there",
        "-i",
        "ask nobody hi",
    ]));
    assert_eq!(
        ran.stdout,
        "helper: echo: hello there\ncannot ask nobody: send refused: no session \"nobody\"\n"
    );
    let helper = exported(data, "helper");
    let inputs: Vec<&Value> = helper.iter().filter(|e| e["kind"] == "input").collect();
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0]["from"]["log"]["key"], "send-1");
}

/// Poll `api` until session `name`'s events satisfy `done`; those events.
async fn events_until(
    api: &crate::server::Api,
    name: &str,
    done: impl Fn(&[StoredEvent]) -> bool,
) -> Vec<StoredEvent> {
    guard(async {
        loop {
            let all = api.all_events(name).await;
            if done(&all) {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// SIGKILL a real `logbook serve` after `delegate`'s send committed, while
/// the asked assistant's model call (held by a slow EchoModel) is in
/// flight: after a restart the send is not made again, the assistant's
/// call is made again and its answer comes back, and each side holds
/// exactly one `sent` and exactly one `input` from the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_cut_by_sigkill_is_delivered_once_and_answered_after_restart() {
    use crate::workers::Worker;
    let dir = data_dir();
    let data = dir.path();
    let worker = Worker::serve(data, &[], &[("LOGBOOK_ECHO_DELAY_MS", "5000")]);
    let api = worker.api();
    api.add_guest("assistant").await;
    api.add_guest("delegate").await;
    api.session("assistant", "helper").await;
    api.session("delegate", "boss").await;
    let (status, body) = api
        .post(
            "/v1/sessions/boss/input",
            serde_json::json!({"text": "ask helper hi"}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    // The helper has the input and has asked its model: kill now.
    let helper_before = events_until(&api, "helper", |all| {
        all.iter().any(|e| {
            matches!(
                &e.event.body,
                EventBody::Requested {
                    effect: logbook::journal::RequestedEffect::Model { .. },
                    ..
                }
            )
        })
    })
    .await;
    worker.kill();
    assert_eq!(inputs_from_logs(&helper_before).len(), 1);

    let worker = Worker::serve(data, &[], &[]);
    let api = worker.api();
    let boss = events_until(&api, "boss", |all| !outputs(all).is_empty()).await;
    assert_eq!(outputs(&boss), ["helper: echo: hi"]);
    let helper = events_until(&api, "helper", |all| !sents(all).is_empty()).await;
    drop(worker);

    assert_eq!(sents(&boss).len(), 1, "the boss sent once");
    let got = inputs_from_logs(&helper);
    assert_eq!(got.len(), 1, "the helper got one input: {got:?}");
    assert_eq!(got[0].1, sents(&boss)[0].0);
    assert_eq!(sents(&helper).len(), 1, "the helper answered once");
    assert_eq!(inputs_from_logs(&boss).len(), 1, "the boss got one answer");
    assert_eq!(
        helper[..helper_before.len()],
        helper_before[..],
        "what the killed process wrote is unchanged"
    );
    let host = reopen_host(data, config()).await;
    for name in ["boss", "helper"] {
        let info = host.resolve(TENANT, name).await.expect("the session");
        assert_chain_holds(&host, info.id).await;
    }
    replays_clean(&host, "boss", "delegate").await;
    replays_clean(&host, "helper", "assistant").await;
    host.close().await;
}

/// Two `logbook serve` workers on one PostgreSQL database: the assistant
/// runs on the first (it holds its lease), the delegate on the second. The
/// send's input, appended by the second worker, is absorbed by the first
/// on the journal's notification; the answer, appended by the first, by the
/// second. One `sent` and one `input` each way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_reaches_a_session_another_worker_runs_and_its_answer_comes_back() {
    use crate::workers::Worker;
    let Some(db) = crate::postgres::PgDb::create().await else {
        return;
    };
    let (one_dir, two_dir) = (data_dir(), data_dir());
    let one = Worker::serve(one_dir.path(), &["--journal", &db.url], &[]);
    let two = Worker::serve(two_dir.path(), &["--journal", &db.url], &[]);
    let (one, two) = ((one.api(), one), (two.api(), two));
    one.0.add_guest("assistant").await;
    one.0.add_guest("delegate").await;
    one.0.session("assistant", "helper").await;
    // The helper's actor is resident on the first worker now.
    let warmed = one.0.send_and_wait("helper", "warm up").await;
    assert_eq!(
        crate::workers::output_texts(&warmed),
        ["echo: warm up"],
        "{warmed}"
    );
    two.0.session("delegate", "boss").await;
    let (status, body) = two
        .0
        .post(
            "/v1/sessions/boss/input",
            serde_json::json!({"text": "ask helper hi"}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let boss = events_until(&two.0, "boss", |all| !outputs(all).is_empty()).await;
    assert_eq!(outputs(&boss), ["helper: echo: hi"]);
    let helper = events_until(&one.0, "helper", |all| !sents(all).is_empty()).await;
    assert_eq!(sents(&boss).len(), 1);
    assert_eq!(inputs_from_logs(&helper).len(), 1);
    assert_eq!(sents(&helper).len(), 1);
    assert_eq!(inputs_from_logs(&boss).len(), 1);
    assert_eq!(
        outputs(&helper),
        ["echo: warm up", "echo: hi"],
        "the helper answered once"
    );
}

/// A host whose commits fail or tear on demand, over a real redb file.
fn faulty_host(dir: &std::path::Path) -> (Arc<Host>, Arc<logbook::journal::FaultyJournal>) {
    use logbook::journal::{FaultyJournal, JournalConfig, RedbJournal};
    let redb = RedbJournal::open(&dir.join("journal.redb"), JournalConfig::default())
        .expect("open journal");
    let faulty = FaultyJournal::wrap(redb);
    let host = Host::with_journal(
        faulty.clone(),
        dir,
        config(),
        logbook::session::HostOptions::default(),
    )
    .expect("open host");
    (host, faulty)
}

/// The commit that holds a send fails (nothing of it is written: neither
/// the `sent` nor the target's `input`), or tears (both are written and
/// durable, but the sender hears of a failure): the sender, folded anew,
/// finds its `sent` and does not send again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_whose_commit_fails_or_tears_is_delivered_once_or_not_at_all() {
    use logbook::journal::{ContentBlock, Fault, JournalError};
    use logbook::session::SessionError;
    let dir = data_dir();
    let (host, faulty) = faulty_host(dir.path());
    let helper = start(&host, "assistant", "helper").await.id();
    let boss = start(&host, "delegate", "boss").await.id();
    let ask = |text: &'static str| {
        let host = host.clone();
        async move {
            guard(host.input(
                boss,
                Sender::Principal("test".into()),
                vec![ContentBlock::text(text)],
            ))
            .await
        }
    };

    faulty.inject(1, Fault::Fail);
    match ask("ask helper one").await {
        Err(SessionError::Journal(JournalError::Storage(_))) => {}
        other => panic!("expected the storage error, got {other:?}"),
    }
    assert!(sents(&events(&host, boss).await).is_empty());
    assert!(inputs_from_logs(&events(&host, helper).await).is_empty());

    faulty.inject(1, Fault::Tear);
    match ask("ask helper two").await {
        Err(SessionError::Journal(JournalError::Storage(_))) => {}
        other => panic!("expected the storage error, got {other:?}"),
    }
    // The next input goes to a new actor, which replays the torn commit.
    ask("ask helper three").await.expect("after the tear");
    // The helper is resident (`start` activated it): it absorbs the torn
    // commit's input from the journal, whatever its sender heard.
    // The helper answers the latest question: a question that comes while
    // it thinks about the one before replaces it (ChatAgent), and an input
    // appended while it commits makes it fold its log anew (actor.rs).
    let outs = outputs_until(&host, boss, |o| {
        o.last().map(String::as_str) == Some("helper: echo: three")
    })
    .await;
    assert!(outs.len() <= 2, "{outs:?}");
    let (boss_events, helper_events) = (events(&host, boss).await, events(&host, helper).await);
    let sent = sents(&boss_events);
    assert_eq!(sent.len(), 2, "{sent:?}");
    let got: Vec<String> = inputs_from_logs(&helper_events)
        .into_iter()
        .map(|i| i.3)
        .collect();
    assert_eq!(got, ["two", "three"], "each delivered once, in order");
    assert_chain_holds(&host, boss).await;
    assert_chain_holds(&host, helper).await;
    host.close().await;
}
