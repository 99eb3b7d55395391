//! The replayer (session::replay): a session restored from a snapshot runs
//! exactly as one replayed in full, under its tenant's limits; and a snapshot
//! that fails, taken or restored, costs only speed, never a `guest-failed`.

use std::sync::Arc;

use logbook::config::{TenantConfig, TenantLimits};
use logbook::journal::{EventBody, LogId, StoredEvent};
use logbook::session::{Activity, Host};
use sha2::{Digest, Sha256};

use crate::fixtures::*;

/// The message of the first `guest-failed` of a log, if any.
fn guest_failed(events: &[StoredEvent]) -> Option<String> {
    events.iter().find_map(|e| match &e.event.body {
        EventBody::GuestFailed { message } => Some(message.clone()),
        _ => None,
    })
}

/// The seqs of a log's snapshots.
async fn snapshot_seqs(host: &Host, log: LogId) -> Vec<u64> {
    let snapshots = host.journal().snapshots(log).await.expect("snapshots");
    snapshots.into_iter().map(|(seq, _, _)| seq).collect()
}

/// Start a session of `tenant` on `guest`, say `hi`, then wake it again —
/// from a snapshot taken after `hi` when `from_snapshot`, by a full replay
/// otherwise — and say `trigger`, which must make the guest fail: the
/// message of its `guest-failed`.
async fn failure_after(
    host: &Arc<Host>,
    tenant: &str,
    guest: &logbook::journal::GuestRef,
    trigger: &str,
    from_snapshot: bool,
) -> String {
    let id = host
        .create_session(tenant, None, guest.clone(), serde_json::json!({}))
        .await
        .expect("create session");
    let session = host.session(id).await.expect("activate");
    say(&session, "hi").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    host.hibernate(id);
    if from_snapshot {
        let seq = guard(host.snapshot_now(id))
            .await
            .expect("snapshot")
            .expect("the guest keeps snapshots");
        assert_eq!(seq, 2, "after created, input, output");
        let checks = host.verify_snapshots(id).await.expect("verify");
        assert!(checks.iter().all(|c| c.problem.is_none()), "{checks:?}");
    }
    let session = host.session(id).await.expect("wake");
    say(&session, trigger).await;
    assert_eq!(settle(&session).await, Activity::Failed);
    guest_failed(&events(host, id).await).expect("a guest-failed event")
}

/// A guest call that fits the host's limits but not its tenant's fails the
/// same way whether the session woke from a snapshot or by a full replay:
/// both instances run under the tenant's fuel and memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_restored_from_a_snapshot_keeps_its_tenants_limits() {
    let data = data_dir();
    let mut config = config();
    let lean = |limits: TenantLimits| TenantConfig {
        limits,
        ..TenantConfig::default()
    };
    // The host gives 5M fuel per event and 5M per call, and 16 MiB.
    config.tenants.insert(
        "lean-fuel".into(),
        lean(TenantLimits {
            fuel_per_event: Some(1_000_000),
            ..TenantLimits::default()
        }),
    );
    config.tenants.insert(
        "lean-memory".into(),
        lean(TenantLimits {
            // Fuel enough to fill memory first: each of the hog's allocations is written.
            fuel_per_event: Some(1_000_000_000),
            memory_per_instance: Some(8 << 20),
            ..TenantLimits::default()
        }),
    );
    let host = open_host_with(data.path(), config);
    for (tenant, stem, trigger, expected) in [
        // One event's fuel: 1M for the event, 5M for the call, and 160 a
        // byte for its 8 bytes of text (`loop` and its sender, `test`).
        ("lean-fuel", "fixture_looper", "loop", "(6001280 units"),
        ("lean-memory", "fixture_hog", "hog", "(limit 8388608 bytes)"),
    ] {
        let guest = host
            .add_guest(tenant, stem, &guest_bytes(stem))
            .await
            .expect("add guest");
        let replayed = failure_after(&host, tenant, &guest, trigger, false).await;
        assert!(replayed.contains(expected), "{tenant}: {replayed}");
        let restored = failure_after(&host, tenant, &guest, trigger, true).await;
        assert_eq!(
            restored, replayed,
            "{tenant}: a session woken from a snapshot fails as one replayed in full"
        );
    }
}

/// A guest whose state grew too large to snapshot within a call's fuel keeps
/// working: each failed snapshot drops its instance, the next input folds the
/// log again (from the last good snapshot), and no `guest-failed` is written,
/// before or after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_fails_to_snapshot_keeps_answering_across_a_restart() {
    let data = data_dir();
    let mut config = config();
    config.limits.snapshot_every = 2;
    let host = open_host_with(data.path(), config.clone());
    let session = start(&host, "fixture_hoard", "h").await;
    let log = session.id();
    say(&session, "hi").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    assert_eq!(
        snapshot_seqs(&host, log).await,
        [2],
        "a small state is snapshotted"
    );
    // Each of these goes idle 2 events past the last try: a snapshot is
    // tried, and runs out of fuel on a state of one or two MiB.
    for text in ["grow", "grow", "hi"] {
        say(&session, text).await;
        assert_eq!(settle(&session).await, Activity::Idle, "after {text}");
    }
    let mib = 1 << 20;
    let expected = [
        "ok: hi (0 bytes)".to_owned(),
        format!("ok: grow ({mib} bytes)"),
        format!("ok: grow ({} bytes)", 2 * mib),
        format!("ok: hi ({} bytes)", 2 * mib),
    ];
    let all = events(&host, log).await;
    assert_eq!(guest_failed(&all), None);
    assert_eq!(outputs(&all), expected);
    assert_eq!(
        snapshot_seqs(&host, log).await,
        [2],
        "no snapshot of the large state was stored"
    );

    host.close().await;
    drop((session, host));
    let host = reopen_host(data.path(), config).await;
    let session = host.session(log).await.expect("wake after the restart");
    say(&session, "hi").await;
    say(&session, "grow").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let all = events(&host, log).await;
    assert_eq!(guest_failed(&all), None);
    let outs = outputs(&all);
    assert_eq!(outs[..expected.len()], expected);
    assert_eq!(
        outs[expected.len()..],
        [
            format!("ok: hi ({} bytes)", 2 * mib),
            format!("ok: grow ({} bytes)", 3 * mib),
        ]
    );
    assert_chain_holds(&host, log).await;
}

/// A snapshot record whose guest state makes `restore` run out of fuel is
/// passed over for a full replay, on activation and by `snapshot_now` alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_the_guest_fails_to_restore_costs_only_a_full_replay() {
    let data = data_dir();
    // `restore` gets fuel for each byte of its snapshot: none here, so the
    // heavy state below runs it out of fuel.
    let mut config = config();
    config.limits.fuel_per_byte = 0;
    let host = open_host_with(data.path(), config);
    let session = start(&host, "fixture_hoard", "h").await;
    let log = session.id();
    say(&session, "hi").await;
    settle(&session).await;
    host.hibernate(log);
    let seq = guard(host.snapshot_now(log))
        .await
        .expect("snapshot")
        .expect("taken");
    let (_, digest, record) = host
        .journal()
        .snapshots(log)
        .await
        .expect("snapshots")
        .pop()
        .expect("one");
    // Same ledger, but a state of a million bytes, each a JSON number to parse.
    let rest = &record[32..];
    let ledger_len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    let mut heavy = rest[..4 + ledger_len].to_vec();
    heavy.extend_from_slice(b"{\"agent\":{\"hoard\":[7");
    heavy.extend_from_slice(&b",7".repeat((1 << 20) - 1));
    heavy.extend_from_slice(b"]},\"wanted\":{}}");
    let mut bad = Sha256::digest(&heavy).to_vec();
    bad.extend_from_slice(&heavy);
    host.journal()
        .put_snapshot(log, seq, &digest, &bad)
        .await
        .expect("put");

    let session = host.session(log).await.expect("wake");
    say(&session, "hi").await;
    assert_eq!(settle(&session).await, Activity::Idle);
    let all = events(&host, log).await;
    assert_eq!(guest_failed(&all), None);
    assert_eq!(outputs(&all), ["ok: hi (0 bytes)", "ok: hi (0 bytes)"]);

    host.hibernate(log);
    let again = guard(host.snapshot_now(log))
        .await
        .expect("a snapshot from a full replay")
        .expect("taken");
    assert_eq!(again, 4);
}
