//! The `http.fetch` built-in: allowed hosts only, bodies cut at the limit.

use logbook::journal::{EventBody, Outcome};
use logbook::session::Activity;

use crate::fixtures::*;
use crate::loopback::{Loopback, Reply};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_fetch_reaches_allowed_hosts_only_and_cuts_long_bodies() {
    let server = Loopback::start(vec![Reply::status(200, &"x".repeat(100))]).await;
    let dir = data_dir();
    let mut config = config();
    config.http_fetch.allow_hosts = vec!["127.0.0.1".into()];
    config.http_fetch.max_bytes = 10;
    let host = open_host_with(dir.path(), config);
    let session = start(&host, "assistant", "fetch").await;
    let EventBody::Created(created) = &events(&host, session.id()).await[0].event.body else {
        panic!("seq 0 is created")
    };
    assert!(created.tools.iter().any(|t| t.name == "http.fetch"));

    let allowed = format!("{}/page", server.base_url);
    say(
        &session,
        &format!("/tool http.fetch {{\"url\": \"{allowed}\"}}"),
    )
    .await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let other = allowed.replace("127.0.0.1", "localhost");
    say(
        &session,
        &format!("/tool http.fetch {{\"url\": \"{other}\"}}"),
    )
    .await;
    assert_eq!(settle(&session).await, Activity::Idle);

    let log = events(&host, session.id()).await;
    let results: Vec<(String, bool)> = log
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Completed {
                outcome: Outcome::Tool {
                    content, is_error, ..
                },
                ..
            } => Some((content.clone(), *is_error)),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 2);
    assert!(!results[0].1);
    assert!(results[0].0.starts_with("HTTP 200 OK"), "{}", results[0].0);
    assert!(
        results[0].0.contains("xxxxxxxxxx\n[cut at 10 bytes]"),
        "{}",
        results[0].0
    );
    assert!(!results[0].0.contains("xxxxxxxxxxx"));
    assert!(results[1].1, "localhost is not on the list");
    assert!(
        results[1].0.contains("not on the allowlist"),
        "{}",
        results[1].0
    );
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.requests()[0].path, "/v1/page");
}
