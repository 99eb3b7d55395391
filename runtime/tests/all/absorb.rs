//! A live actor absorbs what other writers append to its log: an input or
//! a decision taken by a worker that does not hold the lease is appended
//! straight to the journal, and the holder's actor folds it in and acts on
//! it, with its effects in flight untouched.

use logbook::journal::{Commit, ContentBlock, EventBody, Sender};
use logbook::{Host, LogId};

use crate::fixtures::*;

const WRITE_A: &str = r#"/tool fs.write {"path":"a.txt","content":"x"}"#;

/// Append as another worker would: at the head, ordered by the seq alone.
async fn append_elsewhere(host: &Host, log: LogId, bodies: Vec<EventBody>) -> u64 {
    loop {
        let head = host.journal().info(log).await.unwrap().unwrap().next_seq;
        let events = bodies.iter().cloned().map(|b| (now_ms(), b)).collect();
        match host
            .journal()
            .commit(Commit::append(log, head, events))
            .await
        {
            Ok(_) => return head,
            Err(logbook::JournalError::Conflict { .. }) => continue,
            Err(e) => panic!("append: {e}"),
        }
    }
}

/// Wait, through the journal, until the log's outputs include `text`.
async fn until_output(host: &Host, log: LogId, text: &str) -> Vec<logbook::StoredEvent> {
    guard(async {
        loop {
            let log_events = events(host, log).await;
            if outputs(&log_events).iter().any(|o| o == text) {
                return log_events;
            }
            host.journal()
                .wait_events(log, log_events.len() as u64)
                .await
                .expect("wait");
        }
    })
    .await
}

fn input(text: &str) -> EventBody {
    EventBody::Input {
        from: Sender::Principal("elsewhere".into()),
        content: vec![ContentBlock::text(text)],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_another_writer_appended_is_folded_by_the_live_actor() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let session = start(&host, "counter", "c").await;
    let id = session.id();
    say(&session, "inc").await;
    settle(&session).await;

    let seq = append_elsewhere(&host, id, vec![input("inc")]).await;
    let log = until_output(&host, id, "count = 2").await;
    assert!(host.resident(id).is_some(), "the same actor absorbed it");
    assert!(matches!(
        &log[seq as usize].event.body,
        EventBody::Input { .. }
    ));
    // The actor goes on from the absorbed head: its next append lands.
    say(&session, "inc").await;
    until_output(&host, id, "count = 3").await;
    assert_chain_holds(&host, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_another_writer_appended_runs_the_held_tool() {
    let dir = data_dir();
    let host = open_host(dir.path());
    let session = start(&host, "assistant", "a").await;
    let id = session.id();
    say(&session, WRITE_A).await;
    assert_eq!(settle(&session).await, logbook::Activity::WaitingApproval);
    let info = host.journal().info(id).await.unwrap().unwrap();
    let key = info
        .open
        .iter()
        .find(|o| o.awaiting_approval)
        .expect("a pending approval")
        .key
        .clone();
    let file = host.workspace_dir(id).join("a.txt");
    assert!(!file.exists());

    append_elsewhere(
        &host,
        id,
        vec![EventBody::ApprovalDecided {
            key: key.clone(),
            allow: true,
            by: "carol".into(),
            reason: None,
        }],
    )
    .await;
    let log = until_output(&host, id, "tool fs.write returned: wrote 1 bytes to a.txt").await;
    assert_eq!(std::fs::read_to_string(&file).expect("written"), "x");
    assert_eq!(
        kinds_of_key(&log, &key),
        [
            "requested",
            "approval-requested",
            "approval-decided",
            "completed"
        ]
    );
    assert_chain_holds(&host, id).await;
}
