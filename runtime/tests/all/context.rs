//! A model call's request crosses from the guest as the messages since the
//! call before it (`model-request.extends`): the host holds the whole
//! request of the latest call and puts the next one together, so a turn
//! never copies the conversation across, and what it records is what the
//! whole request would have been.

use logbook::config::Limits;
use logbook::effects::EffectBody;
use logbook::guest::GuestEngine;
use logbook::journal::{EventBody, RequestedEffect};

use crate::fixtures::*;

/// The keys of the log's model calls, in order.
fn model_keys(events: &[logbook::journal::StoredEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Requested {
                key,
                effect: RequestedEffect::Model { .. },
            } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_carries_only_its_new_messages_and_records_the_whole_requests_digest() {
    let data = data_dir();
    let host = open_host(data.path());
    let session = start(&host, "assistant", "a").await;
    let log = session.id();
    for turn in 0..4 {
        say(&session, "/tool fs.read {\"path\":\"x\"}").await;
        settle(&session).await;
        say(&session, &format!("plain turn {turn}")).await;
        settle(&session).await;
    }
    let guest = host.guest(TENANT, "assistant").await.expect("guest");
    // The replay check asks the guest for every request whole and compares
    // its digest with the one recorded from the request put together.
    let report = guard(host.replay_check(TENANT, "a", guest.clone()))
        .await
        .expect("replay");
    assert_eq!(
        report.difference, None,
        "the log agrees with whole requests"
    );
    let before = events(&host, log).await;
    // EchoModel names its call by the length of the context it was given:
    // the last tool call saw every message of the conversation (six a round:
    // the input, the call, its result, the answer, a plain input, its answer).
    let calls: Vec<String> = before
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::Requested {
                effect: RequestedEffect::Tool(call),
                ..
            } => Some(call.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        calls.last().map(String::as_str),
        Some("call-19"),
        "{calls:?}"
    );

    // After a restart the host holds nothing: the first request crosses
    // whole, the next extend it again, and the log still checks out.
    drop(session);
    host.close().await;
    drop(host);
    let host = reopen_host(data.path(), config()).await;
    let session = host.session(log).await.expect("session");
    for turn in 0..2 {
        say(&session, &format!("after the restart {turn}")).await;
        settle(&session).await;
    }
    let report = guard(host.replay_check(TENANT, "a", guest.clone()))
        .await
        .expect("replay");
    assert_eq!(report.difference, None);
    let all = events(&host, log).await;
    assert_eq!(model_keys(&all).len(), model_keys(&before).len() + 2);
    host.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_says_a_request_as_the_messages_since_the_base_it_is_offered() {
    let data = data_dir();
    let host = open_host(data.path());
    let session = start(&host, "assistant", "a").await;
    let log = session.id();
    for text in ["one", "two", "three"] {
        say(&session, text).await;
        settle(&session).await;
    }
    let log_events = events(&host, log).await;
    drop(session);
    host.close().await;

    // The guest, folded up to the last input: it wants the call that input
    // asked for, over the whole conversation so far.
    let last_input = log_events
        .iter()
        .rposition(|e| matches!(e.event.body, EventBody::Input { .. }))
        .expect("an input");
    let keys = model_keys(&log_events);
    let (previous, wanted) = (&keys[keys.len() - 2], &keys[keys.len() - 1]);
    let EventBody::Created(created) = &log_events[0].event.body else {
        panic!("a log starts with created");
    };
    let engine = GuestEngine::new(Limits::default(), None).expect("engine");
    let bytes = logbook::examples::get("assistant").expect("built in");
    let loaded = engine
        .load(&created.guest.digest, bytes)
        .expect("load the assistant");
    let mut guest = engine
        .instantiate(&loaded, created.seed)
        .expect("instantiate");
    guest.init(created, log_events[0].event.at).expect("init");
    let folded: Vec<_> = log_events[1..=last_input]
        .iter()
        .map(|e| e.event.clone())
        .collect();
    guest.apply(&folded).expect("apply");

    let request = |body: Option<logbook::effects::Effect>| match body.map(|e| e.body) {
        Some(EffectBody::Model(request)) => request,
        other => panic!("a model request, not {other:?}"),
    };
    let whole = request(guest.effect(wanted, None).expect("effect"));
    assert_eq!(whole.extends, None);
    assert_eq!(whole.messages.len(), 5, "three inputs, two answers");
    // Offered the call before it: the answer to it and the new input.
    let after = request(guest.effect(wanted, Some(previous)).expect("effect"));
    assert_eq!(after.extends.as_deref(), Some(previous.as_str()));
    assert_eq!(after.messages.len(), 2);
    assert_eq!(after.messages[..], whole.messages[3..]);
    assert_eq!((&after.model, &after.system), (&whole.model, &whole.system));
    // Offered a call it does not know: the whole request.
    let unknown = request(guest.effect(wanted, Some("model-404")).expect("effect"));
    assert_eq!(unknown, whole);
}
