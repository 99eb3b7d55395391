//! Sessions through the library: replay gives the state live had, timers fire,
//! approvals gate tools, tools stay in their workspace, and every log's chain
//! holds. Real redb files, real guests.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logbook::config::Policy;
use logbook::journal::{EventBody, LogStatus, Outcome, RequestedEffect};
use logbook::session::{Activity, Host, HostOptions, SessionError};

use crate::fixtures::*;

const COUNT: u64 = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waking_a_hibernated_session_replays_the_state_it_had_live() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let session = start(&host, "counter", "c").await;
    let id = session.id();
    for _ in 0..COUNT {
        say(&session, "inc").await;
    }
    say(&session, "get").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let live = outputs(&events(&host, id).await);
    assert_eq!(live.last().map(String::as_str), Some("count = 7"));

    let before = host.journal().info(id).await.unwrap().unwrap().next_seq;
    host.hibernate(id);
    drop(session);
    let woken = host.session(id).await.expect("wake");
    assert_eq!(settle(&woken).await, Activity::Idle);
    assert_eq!(
        host.journal().info(id).await.unwrap().unwrap().next_seq,
        before,
        "waking a session appends nothing"
    );
    say(&woken, "get").await;
    let replayed = outputs(&events(&host, id).await);
    assert_eq!(replayed.len(), live.len() + 1);
    assert_eq!(replayed.last().map(String::as_str), Some("count = 7"));
    assert_chain_holds(&host, id).await;
}

/// Open a host on `data`, retrying for up to `within` while an earlier host
/// of this process still holds the journal.
async fn reopen(data: &Path, within: Duration) -> Result<Arc<Host>, SessionError> {
    let deadline = Instant::now() + within;
    loop {
        match Host::open(data, config(), HostOptions::default()) {
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            opened => return opened,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_host_on_the_same_data_replays_the_same_state() {
    let dir = data_dir();
    let id = {
        let host = open_host(dir.path());
        let session = start(&host, "counter", "c").await;
        for _ in 0..COUNT {
            say(&session, "inc").await;
        }
        settle(&session).await;
        host.hibernate(session.id());
        session.id()
    };
    // Hibernation stops the actor (and its hold on the host) asynchronously,
    // and nothing says when it is done: hence the retries.
    let host = reopen(dir.path(), GUARD)
        .await
        .expect("a host whose sessions all hibernated releases the journal");
    let info = host.resolve(TENANT, "c").await.expect("the name survives");
    assert_eq!(info.id, id);
    let session = host.session(id).await.expect("wake in the new host");
    say(&session, "get").await;
    let outs = outputs(&events(&host, id).await);
    assert_eq!(outs.last().map(String::as_str), Some("count = 7"));
    assert_chain_holds(&host, id).await;
}

/// Dropping every `Session` and the last `Arc<Host>` releases the journal:
/// a process embedding Logbook can close one host and open another on the
/// same data directory (regression: actors used to hold the host alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_host_releases_the_data_directory() {
    let dir = data_dir();
    {
        let host = open_host(dir.path());
        let session = start(&host, "counter", "c").await;
        say(&session, "inc").await;
        settle(&session).await;
    }
    // Give any actor that would stop on its own the time to do so.
    let host = reopen(dir.path(), Duration::from_secs(2))
        .await
        .unwrap_or_else(|e| panic!("the dropped host still holds the journal: {e}"));
    let id = host.resolve(TENANT, "c").await.unwrap().id;
    let session = host.session(id).await.unwrap();
    say(&session, "get").await;
    assert_eq!(
        outputs(&events(&host, id).await).last().map(String::as_str),
        Some("count = 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_fires_and_the_guest_hears_it() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let session = start(&host, "counter", "c").await;
    say(&session, "inc").await;
    say(&session, "inc").await;
    say(&session, "remind 200").await;
    assert_eq!(
        settle_within(&session, Duration::from_secs(5)).await,
        Activity::Idle
    );
    let log = events(&host, session.id()).await;
    let (key, until) = log
        .iter()
        .find_map(|e| match &e.event.body {
            EventBody::Requested {
                key,
                effect: RequestedEffect::Sleep { until },
            } => Some((key.clone(), *until)),
            _ => None,
        })
        .expect("the sleep was requested");
    assert_eq!(kinds_of_key(&log, &key), ["requested", "completed"]);
    let fired = log
        .iter()
        .find(|e| e.event.body.key() == Some(&key) && e.event.body.kind() == "completed")
        .unwrap();
    assert!(
        matches!(
            &fired.event.body,
            EventBody::Completed {
                outcome: Outcome::TimerFired,
                ..
            }
        ),
        "{:?}",
        fired.event.body
    );
    assert!(
        fired.event.at >= until,
        "fired at {} before its time {until}",
        fired.event.at
    );
    let reminder = log
        .iter()
        .position(|e| {
            matches!(&e.event.body, EventBody::Output { .. }) && e.event.seq > fired.event.seq
        })
        .expect("an output after the timer");
    assert_eq!(outputs(&log[reminder..]), ["reminder: count = 2"]);
    assert_eq!(
        host.journal()
            .info(session.id())
            .await
            .unwrap()
            .unwrap()
            .status,
        LogStatus::Idle
    );
    assert_chain_holds(&host, session.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_pending_at_hibernation_fires_once_after_waking() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let session = start(&host, "counter", "c").await;
    let id = session.id();
    say(&session, "inc").await;
    say(&session, "remind 300").await;
    assert_eq!(
        host.journal().info(id).await.unwrap().unwrap().status,
        LogStatus::Sleeping
    );
    host.hibernate(id);
    drop(session);
    let woken = host.session(id).await.expect("wake");
    assert_eq!(
        settle_within(&woken, Duration::from_secs(5)).await,
        Activity::Idle
    );
    let log = events(&host, id).await;
    let key = log
        .iter()
        .find_map(|e| match &e.event.body {
            EventBody::Requested {
                key,
                effect: RequestedEffect::Sleep { .. },
            } => Some(key.clone()),
            _ => None,
        })
        .expect("the sleep was requested");
    assert_eq!(kinds_of_key(&log, &key), ["requested", "completed"]);
    assert_eq!(outputs(&log), ["count = 1", "reminder: count = 1"]);
    assert_chain_holds(&host, id).await;
}

const WRITE_A: &str = r#"/tool fs.write {"path":"a.txt","content":"x"}"#;

/// The key of the one approval a session waits for.
async fn pending_key(host: &Host, id: logbook::journal::LogId) -> String {
    let info = host.journal().info(id).await.unwrap().unwrap();
    assert_eq!(info.status, LogStatus::WaitingApproval);
    let pending: Vec<_> = info.open.iter().filter(|o| o.awaiting_approval).collect();
    assert_eq!(pending.len(), 1, "{:?}", info.open);
    match &pending[0].effect {
        RequestedEffect::Tool(call) => assert_eq!(call.name, "fs.write"),
        other => panic!("expected a tool call, got {other:?}"),
    }
    pending[0].key.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_tool_call_runs_once_and_the_model_reads_its_result() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let session = start(&host, "assistant", "a").await;
    let id = session.id();
    say(&session, WRITE_A).await;
    assert_eq!(settle(&session).await, Activity::WaitingApproval);
    let key = pending_key(&host, id).await;
    let file = host.workspace_dir(id).join("a.txt");
    assert!(!file.exists(), "nothing runs before the decision");

    guard(session.decide(&key, true, "alice", None))
        .await
        .expect("decide");
    assert_eq!(settle(&session).await, Activity::Idle);
    assert_eq!(std::fs::read_to_string(&file).expect("written"), "x");
    let log = events(&host, id).await;
    assert_eq!(
        kinds_of_key(&log, &key),
        [
            "requested",
            "approval-requested",
            "approval-decided",
            "completed"
        ]
    );
    assert!(log.iter().any(|e| matches!(
        &e.event.body,
        EventBody::ApprovalDecided { key: k, allow: true, by, .. } if *k == key && by == "alice"
    )));
    assert_eq!(
        outputs(&log).last().map(String::as_str),
        Some("tool fs.write returned: wrote 1 bytes to a.txt")
    );
    let info = host.journal().info(id).await.unwrap().unwrap();
    assert_eq!(info.status, LogStatus::Idle);
    assert!(info.open.is_empty(), "{:?}", info.open);

    let again = guard(session.decide(&key, false, "bob", None)).await;
    assert!(
        matches!(&again, Err(SessionError::AlreadyDecided(k)) if *k == key),
        "{again:?}"
    );
    assert_eq!(
        events(&host, id).await.len(),
        log.len(),
        "a refused decision logs nothing"
    );
    assert_chain_holds(&host, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_tool_call_gives_the_model_an_error_result() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let session = start(&host, "assistant", "a").await;
    let id = session.id();
    say(&session, WRITE_A).await;
    assert_eq!(settle(&session).await, Activity::WaitingApproval);
    let key = pending_key(&host, id).await;
    guard(session.decide(&key, false, "bob", Some("not today".into())))
        .await
        .expect("deny");
    assert_eq!(settle(&session).await, Activity::Idle);
    assert!(!host.workspace_dir(id).join("a.txt").exists());
    let log = events(&host, id).await;
    assert_eq!(
        kinds_of_key(&log, &key),
        [
            "requested",
            "approval-requested",
            "approval-decided",
            "completed"
        ]
    );
    let result = log
        .iter()
        .find_map(|e| match &e.event.body {
            EventBody::Completed {
                key: k,
                outcome: Outcome::Tool {
                    content, is_error, ..
                },
            } if *k == key => Some((content.clone(), *is_error)),
            _ => None,
        })
        .unwrap();
    assert_eq!(result, ("denied by bob: not today".to_string(), true));
    assert_eq!(
        outputs(&log).last().map(String::as_str),
        Some("tool fs.write returned: denied by bob: not today")
    );
    let again = guard(session.decide(&key, true, "alice", None)).await;
    assert!(
        matches!(&again, Err(SessionError::AlreadyDecided(_))),
        "{again:?}"
    );
    assert_chain_holds(&host, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deciding_a_key_that_waits_for_nothing_is_refused() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let session = start(&host, "assistant", "a").await;
    let id = session.id();
    say(&session, WRITE_A).await;
    assert_eq!(settle(&session).await, Activity::WaitingApproval);
    let key = pending_key(&host, id).await;
    let before = events(&host, id).await.len();

    let unknown = guard(session.decide("call-99", true, "alice", None)).await;
    assert!(
        matches!(&unknown, Err(SessionError::NoPendingApproval(k)) if k == "call-99"),
        "{unknown:?}"
    );
    assert_eq!(events(&host, id).await.len(), before, "nothing was logged");
    assert_eq!(
        pending_key(&host, id).await,
        key,
        "the real approval still waits"
    );
}

/// Deciding the key of an effect that never asked for a decision (here a
/// completed model call) is `NoPendingApproval`, not `AlreadyDecided`: only a
/// key with an `approval-requested` in the log can have been decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deciding_a_key_that_never_needed_approval_is_no_pending_approval() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let session = start(&host, "assistant", "a").await;
    let id = session.id();
    say(&session, "hello").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let model_key = events(&host, id)
        .await
        .iter()
        .find_map(|e| match &e.event.body {
            EventBody::Requested {
                key,
                effect: RequestedEffect::Model { .. },
            } => Some(key.clone()),
            _ => None,
        })
        .expect("a model call");
    let answer = guard(session.decide(&model_key, true, "alice", None)).await;
    assert!(
        matches!(&answer, Err(SessionError::NoPendingApproval(k)) if *k == model_key),
        "a model call that never asked for approval: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_paths_outside_the_workspace_are_refused() {
    let dir = data_dir();
    let mut config = config();
    config.tools.policy.insert("fs.write".into(), Policy::Allow);
    let host = open_host_with(dir.path(), config);
    let session = start(&host, "assistant", "a").await;
    let id = session.id();
    let workspace = host.workspace_dir(id);
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&workspace).unwrap();
    std::os::unix::fs::symlink(&outside, workspace.join("link")).unwrap();
    std::fs::write(outside.join("secret.txt"), "s3cret").unwrap();

    let absolute = outside.join("abs.txt");
    let attempts = [
        r#"/tool fs.write {"path":"../escape.txt","content":"x"}"#.to_string(),
        format!(
            r#"/tool fs.write {{"path":"{}","content":"x"}}"#,
            absolute.display()
        ),
        r#"/tool fs.write {"path":"link/through.txt","content":"x"}"#.to_string(),
        r#"/tool fs.write {"path":"sub/../../up.txt","content":"x"}"#.to_string(),
        r#"/tool fs.read {"path":"link/secret.txt"}"#.to_string(),
        r#"/tool fs.read {"path":"../../journal.redb"}"#.to_string(),
    ];
    for attempt in &attempts {
        say(&session, attempt).await;
        assert_eq!(settle(&session).await, Activity::Idle, "{attempt}");
        let outs = outputs(&events(&host, id).await);
        let last = outs.last().expect("an answer");
        assert!(
            last.contains("outside the workspace"),
            "{attempt} was not refused: {last}"
        );
        assert!(!last.contains("s3cret"), "{attempt} leaked the secret");
    }
    assert!(!workspace.parent().unwrap().join("escape.txt").exists());
    assert!(!absolute.exists());
    assert!(!outside.join("through.txt").exists());
    assert!(!workspace.join("up.txt").exists());
    assert!(!workspace.parent().unwrap().join("up.txt").exists());
    let mut left: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["secret.txt"], "nothing was written outside");

    // Inside the workspace the same tool works.
    say(
        &session,
        r#"/tool fs.write {"path":"sub/ok.txt","content":"fine"}"#,
    )
    .await;
    settle(&session).await;
    assert_eq!(
        std::fs::read_to_string(workspace.join("sub/ok.txt")).unwrap(),
        "fine"
    );
    assert_chain_holds(&host, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_of_every_session_verifies() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let counter = start(&host, "counter", "c").await;
    let assistant = start(&host, "assistant", "a").await;
    for i in 0..5 {
        say(&counter, "inc").await;
        say(&assistant, &format!("hello {i}")).await;
    }
    say(&assistant, WRITE_A).await;
    settle(&counter).await;
    assert_eq!(settle(&assistant).await, Activity::WaitingApproval);
    let key = pending_key(&host, assistant.id()).await;
    guard(assistant.decide(&key, true, "alice", None))
        .await
        .unwrap();
    settle(&assistant).await;

    let page = host
        .journal()
        .list_page(TENANT, None, 10)
        .await
        .expect("list");
    assert_eq!(page.next, None);
    let logs = page.logs;
    assert_eq!(logs.len(), 2);
    for info in logs {
        let verified = host.journal().verify(info.id).await.expect("verify");
        assert!(
            verified.is_ok(),
            "{:?}: {:?}",
            info.name,
            verified.first_bad
        );
        assert_eq!(verified.events, info.next_seq);
        // And the chain recomputed from what `read` returns matches the stored hashes.
        let log = events(&host, info.id).await;
        let again = logbook::journal::verify_events(&log);
        assert!(again.is_ok(), "{:?}", again.first_bad);
        assert_eq!(log.last().map(|e| e.hash), Some(info.last_hash));
    }
}
