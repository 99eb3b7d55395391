//! Guests in the sandbox: forbidden imports and invalid bytes are refused at
//! upload; a guest that opens a file or a socket gets an error and goes on; a guest that loops, hogs memory or panics parks its own session and
//! nobody else's; compiled guests are cached for the next process.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use logbook::guest::GuestError;
use logbook::journal::{EventBody, LogStatus, StoredEvent, digest_of};
use logbook::session::{Activity, Host, Session, SessionError};

use crate::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_imports_http_is_refused_and_not_stored() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let bytes = guest_bytes("fixture_http");
    let err = host
        .add_guest(TENANT, "snoop", &bytes)
        .await
        .expect_err("an http import is refused");
    assert!(
        matches!(&err, SessionError::Guest(GuestError::ForbiddenImport { import }) if import == "wasi:http/outgoing-handler@0.3.0"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("`wasi:http/outgoing-handler@0.3.0`"),
        "{text}"
    );
    assert!(
        matches!(
            host.guest(TENANT, "snoop").await,
            Err(SessionError::UnknownGuest(_))
        ),
        "the name is not bound"
    );
    assert!(
        host.guest(TENANT, &digest_of(&bytes)).await.is_err(),
        "the bytes are not stored"
    );
    assert!(
        host.journal()
            .guest_bytes(&digest_of(&bytes))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_opens_a_file_or_a_socket_gets_an_error_and_goes_on() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let snoop = start(&host, "fixture_fs", "snoop").await;
    for input in ["read", "dial", "still here"] {
        say(&snoop, input).await;
        assert_eq!(settle(&snoop).await, Activity::Idle);
    }
    let log = events(&host, snoop.id()).await;
    let said = outputs(&log);
    assert_eq!(said.len(), 3, "{said:?}");
    // No preopened directory: the path resolves to nothing.
    assert!(said[0].starts_with("read failed: "), "{said:?}");
    // No network: the connection is refused before it is tried.
    assert!(said[1].starts_with("dial failed: "), "{said:?}");
    assert_eq!(said[2], "echo: still here");
    assert_chain_holds(&host, snoop.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_wasm_are_refused() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let err = host
        .add_guest(TENANT, "junk", b"not wasm")
        .await
        .expect_err("junk is refused");
    assert!(
        matches!(&err, SessionError::Guest(GuestError::NotAComponent(_))),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("not a valid WebAssembly component"),
        "{err}"
    );
    assert!(host.guest(TENANT, "junk").await.is_err());
    assert!(
        host.journal()
            .guest_bytes(&digest_of(b"not wasm"))
            .await
            .unwrap()
            .is_none()
    );
}

/// The one `guest-failed` message of a log, checking it follows `input`.
fn failure_after(log: &[StoredEvent], input: &str) -> String {
    let failures: Vec<_> = log
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::GuestFailed { message } => Some((e.event.seq, message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let (seq, message) = failures.into_iter().next().unwrap();
    let before = &log[seq as usize - 1].event.body;
    assert!(
        matches!(before, EventBody::Input { content, .. } if logbook::journal::plain_text(content) == input),
        "guest-failed follows the input that made it fail: {before:?}"
    );
    assert_eq!(seq as usize, log.len() - 1, "nothing after the failure");
    message
}

/// Check that `input`, sent already, parked the session for good; the
/// `guest-failed` message.
async fn assert_parked(host: &Arc<Host>, session: &Session, input: &str) -> String {
    assert_eq!(settle(session).await, Activity::Failed);
    let id = session.id();
    let message = failure_after(&events(host, id).await, input);
    assert_eq!(
        host.journal().info(id).await.unwrap().unwrap().status,
        LogStatus::Failed
    );
    let refused = guard(session.input(
        logbook::journal::Sender::Principal("test".into()),
        vec![logbook::journal::ContentBlock::text("hello?")],
    ))
    .await;
    assert!(
        matches!(&refused, Err(SessionError::Parked(m)) if *m == message),
        "{refused:?}"
    );
    let len = events(host, id).await.len();
    // Still parked after waking: replay does not run the guest into the fault again.
    host.hibernate(id);
    let woken = host.session(id).await.expect("wake a parked session");
    assert_eq!(settle(&woken).await, Activity::Failed);
    assert_eq!(events(host, id).await.len(), len, "waking logs nothing");
    assert_chain_holds(host, id).await;
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_guest_runs_out_of_fuel_while_other_sessions_keep_working() {
    let dir = data_dir();
    // Enough fuel that the loop burns for a good while (about a second here),
    // so that the counter's inputs below overlap it.
    let mut config = config();
    config.limits.fuel_per_event = 20_000_000_000;
    let host = open_host_with(dir.path(), config);
    let looper = start(&host, "fixture_looper", "looper").await;
    let counter = start(&host, "counter", "counter").await;
    say(&looper, "hi").await;

    let looping = {
        let looper = looper.clone();
        tokio::spawn(async move { say(&looper, "loop").await })
    };
    // Count the inputs the counter takes while the looper's guest runs. If the
    // looping guest held up the host, none would complete before it failed.
    let mut during = 0u64;
    let mut total = 0u64;
    while !looping.is_finished() && total < 100_000 {
        say(&counter, "inc").await;
        total += 1;
        if !looping.is_finished() {
            during += 1;
        }
    }
    guard(looping).await.expect("the looper's input task");
    // A few inputs could slip in before the guest starts looping; many more
    // than a few mean the counter kept going while it looped.
    assert!(
        during >= 20,
        "the counter got only {during} inputs through while the guest looped"
    );
    let message = assert_parked(&host, &looper, "loop").await;
    assert!(message.contains("fuel"), "{message}");

    say(&counter, "inc").await;
    let outs = outputs(&events(&host, counter.id()).await);
    assert_eq!(outs.len() as u64, total + 1);
    assert_eq!(outs.last().unwrap(), &format!("count = {}", total + 1));
    assert_chain_holds(&host, counter.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_hogs_memory_parks_only_its_own_session() {
    let dir = data_dir();
    // Fuel enough to fill memory first: each of its allocations is written.
    let mut config = config();
    config.limits.fuel_per_event = 1_000_000_000;
    let host = open_host_with(dir.path(), config);
    let hog = start(&host, "fixture_hog", "hog").await;
    let counter = start(&host, "counter", "counter").await;
    say(&hog, "hi").await;
    say(&counter, "inc").await;
    say(&hog, "hog").await;
    let message = assert_parked(&host, &hog, "hog").await;
    assert!(message.contains("memory"), "{message}");
    say(&counter, "inc").await;
    assert_eq!(
        outputs(&events(&host, counter.id()).await),
        ["count = 1", "count = 2"]
    );
    assert_eq!(outputs(&events(&host, hog.id()).await), ["ok: hi"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_guest_parks_its_session_with_the_panic_message() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let panicky = start(&host, "fixture_panic", "panicky").await;
    let counter = start(&host, "counter", "counter").await;
    say(&panicky, "hi").await;
    say(&panicky, "panic").await;
    let message = assert_parked(&host, &panicky, "panic").await;
    assert!(message.contains("asked to panic"), "{message}");
    say(&counter, "inc").await;
    assert_eq!(outputs(&events(&host, counter.id()).await), ["count = 1"]);
}

/// Regression: replay reads the log a page (`limits.replay_batch`) at a
/// time. When the input that made a guest fail is the last event of a page
/// and its `guest-failed` starts the next, waking the parked session must not
/// fold that input again (the log says it is parked), must read the whole log
/// so that its head is right, and must append nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_session_whose_failure_starts_a_replay_page_wakes_parked() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let looper = start(&host, "fixture_looper", "looper").await;
    let id = looper.id();
    let page = config().limits.replay_batch as u64;
    // `created`, then an input and its output per "hi": the "loop" input lands
    // on the last seq of the first page.
    for _ in 0..(page - 1) / 2 {
        say(&looper, "hi").await;
    }
    assert_eq!(say(&looper, "loop").await, page - 1);
    assert_eq!(settle(&looper).await, Activity::Failed);
    let before = events(&host, id).await;
    assert_eq!(before.len() as u64, page + 1);

    host.hibernate(id);
    let woken = host.session(id).await.expect("wake");
    let activity = guard(woken.wait_idle(Duration::from_secs(3600))).await;
    assert!(
        matches!(activity, Ok(Activity::Failed)),
        "the woken parked session answers {activity:?}"
    );
    let after = events(&host, id).await;
    assert_eq!(
        after.len(),
        before.len(),
        "waking a parked session appended {:?}",
        after[before.len()..]
            .iter()
            .map(|e| &e.event.body)
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_second_process_does_not_recompile_a_guest() {
    let dir = bare_data_dir();
    let data = dir.path();
    let first = run_ok(logbook(data).args(["run", "counter", "--session", "c", "-i", "inc"]));
    assert_eq!(first.stdout, "count = 1\n");
    let cached: Vec<_> = std::fs::read_dir(data.join("cache"))
        .expect("the first process made a cache")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let file = &cached[0];
    assert_eq!(file.extension().and_then(|x| x.to_str()), Some("cwasm"));
    let digest = digest_of(&guest_bytes("counter"));
    assert!(
        file.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(digest.trim_start_matches("sha256:")),
        "{file:?} is named by the guest's digest"
    );
    let meta = std::fs::metadata(file).unwrap();

    let second = run_ok(logbook(data).args(["run", "--session", "c", "-i", "inc"]));
    assert_eq!(second.stdout, "count = 2\n");
    let again: Vec<_> = std::fs::read_dir(data.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(&again, &cached, "no new compiled file");
    let meta2 = std::fs::metadata(file).unwrap();
    // Compiling again would write a new file and rename it over this one.
    assert_eq!(
        meta2.ino(),
        meta.ino(),
        "the compiled guest was not rewritten"
    );
    assert_eq!(meta2.mtime_nsec(), meta.mtime_nsec());
    assert_eq!(meta2.mtime(), meta.mtime());
}
