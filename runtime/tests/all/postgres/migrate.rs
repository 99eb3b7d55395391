//! `logbook migrate --from DATA_DIR --to postgres://…`: a data directory made
//! by real sessions (forks, a compaction, an upgrade, a parked session,
//! snapshots, two tenants) moves to PostgreSQL with its ids and hashes,
//! verifies there through the CLI, reads back event for event, a second run
//! changes nothing, and a log that differs in the destination is refused.

use std::path::Path;
use std::sync::Arc;

use logbook::journal::{
    Commit, EventBody, Journal, LogId, LogInfo, LogStatus, PgConfig, RedbJournal, Sender,
    StoredEvent,
};
use logbook::session::ForkOptions;

use super::PgDb;
use crate::fixtures::*;

const OTHER: &str = "acme";

/// Every log of `tenant` in `journal`, in id order.
async fn logs(journal: &dyn Journal, tenant: &str) -> Vec<LogInfo> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = journal.list_page(tenant, after, 7).await.expect("page");
        out.extend(page.logs);
        match page.next {
            Some(next) => after = Some(next),
            None => return out,
        }
    }
}

async fn all_events(journal: &dyn Journal, log: LogId) -> Vec<StoredEvent> {
    let mut out: Vec<StoredEvent> = Vec::new();
    loop {
        let page = journal
            .read(log, out.len() as u64, 100)
            .await
            .expect("read");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Makes the source: returns the ids that must have come through as they were.
async fn make_source(data: &Path) -> Vec<LogId> {
    let mut config = config();
    // Small, so that sessions going idle store snapshots.
    config.limits.snapshot_every = 2;
    let host = open_host_with(data, config);
    let c = start(&host, "counter", "c").await;
    for _ in 0..3 {
        say(&c, "inc").await;
    }
    settle(&c).await;
    let early = guard(host.fork(
        TENANT,
        "c",
        ForkOptions {
            at: Some(2),
            name: Some("early".into()),
            ..ForkOptions::default()
        },
    ))
    .await
    .expect("fork");
    let at_head = guard(host.fork(TENANT, "c", ForkOptions::default()))
        .await
        .expect("fork at the head");
    let fork = host.session(at_head).await.expect("fork runs");
    say(&fork, "inc").await;
    settle(&fork).await;
    // A fork of the fork, then the root is compacted: its name moves.
    guard(host.fork(
        TENANT,
        &at_head.to_string(),
        ForkOptions {
            name: Some("deep".into()),
            ..ForkOptions::default()
        },
    ))
    .await
    .expect("fork of a fork");
    say(&c, "compact").await;
    settle(&c).await;
    let moved = host.resolve(TENANT, "c").await.expect("c").id;
    assert_ne!(moved, c.id(), "the compaction moved the name");
    // An upgrade: the log runs on another guest than it was created on.
    let v2 = host
        .add_guest(TENANT, "counter_v2", &guest_bytes("counter_v2"))
        .await
        .expect("v2");
    host.upgrade(TENANT, "early", v2).await.expect("upgrade");
    // A parked session.
    let p = start(&host, "fixture_panic", "p").await;
    say(&p, "panic").await;
    settle(&p).await;
    // Another tenant, with a name the first one uses too.
    let g = host
        .add_guest(OTHER, "counter", &guest_bytes("counter"))
        .await
        .expect("guest");
    let other = host
        .create_session(OTHER, Some("c"), g, serde_json::json!({}))
        .await
        .expect("session");
    let o = host.session(other).await.expect("activate");
    for _ in 0..2 {
        say(&o, "inc").await;
    }
    settle(&o).await;

    let j = host.journal();
    assert_eq!(
        j.info(p.id()).await.unwrap().unwrap().status,
        LogStatus::Failed
    );
    assert!(!j.snapshots(c.id()).await.unwrap().is_empty(), "a snapshot");
    let ids = vec![c.id(), early, at_head, moved, p.id(), other];
    drop((c, fork, p, o));
    host.close().await;
    drop(host);
    ids
}

fn migrate(data: &Path, url: &str, extra: &[&str]) -> Ran {
    run(logbook(data)
        .args(["migrate", "--from"])
        .arg(data)
        .args(["--to", url])
        .args(extra))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_moves_to_postgres_with_its_ids_and_hashes() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let data = data_dir();
    let ids = make_source(data.path()).await;
    let file = data.path().join("journal.redb");
    let before = std::fs::read(&file).expect("the journal file");

    // A dry run writes nothing anywhere.
    let dry = migrate(data.path(), &db.url, &["--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    assert!(dry.stdout.contains("would copy"), "{}", dry.stdout);
    let dest: Arc<dyn Journal> = db.journal(PgConfig::default()).await;
    assert_eq!(dest.count_logs().await.unwrap(), 0);

    let ran = migrate(data.path(), &db.url, &[]);
    assert!(ran.status.success(), "{ran:?}");
    assert!(
        ran.stdout.contains("session limits were not checked"),
        "{}",
        ran.stdout
    );
    assert_eq!(
        std::fs::read(&file).expect("file"),
        before,
        "the source is only read"
    );

    // Through the CLI: every session of the CLI's tenant verifies there.
    let elsewhere = bare_data_dir();
    let verified =
        run_ok(logbook(elsewhere.path()).args(["verify", "--all", "--journal", &db.url]));
    let source: Arc<dyn Journal> = RedbJournal::open_read_only(&file).expect("read-only");
    assert!(matches!(
        source.put_guest(TENANT, "x", b"x").await,
        Err(logbook::journal::JournalError::ReadOnly)
    ));
    let mine = logs(&*source, TENANT).await;
    assert_eq!(
        verified.stdout.matches(": ok,").count(),
        mine.len(),
        "{}",
        verified.stdout
    );

    // Event for event, info for info, in both tenants; names, guests, snapshots.
    let mut seen = 0;
    for tenant in [TENANT, OTHER] {
        let here = logs(&*source, tenant).await;
        assert_eq!(
            here,
            logs(&*dest, tenant).await,
            "{tenant}'s logs and their info"
        );
        for info in &here {
            let id = info.id;
            assert_eq!(
                all_events(&*source, id).await,
                all_events(&*dest, id).await,
                "the events of {id}"
            );
            assert_eq!(
                source.parent(id).await.unwrap(),
                dest.parent(id).await.unwrap()
            );
            assert_eq!(
                source.snapshots(id).await.unwrap(),
                dest.snapshots(id).await.unwrap()
            );
            assert!(dest.verify(id).await.unwrap().is_ok());
        }
        assert_eq!(
            source.count(tenant).await.unwrap(),
            dest.count(tenant).await.unwrap()
        );
        assert_eq!(
            source.guests(tenant).await.unwrap(),
            dest.guests(tenant).await.unwrap()
        );
        for name in ["c", "early", "deep", "p"] {
            assert_eq!(
                source.resolve(tenant, name).await.unwrap(),
                dest.resolve(tenant, name).await.unwrap(),
                "{tenant}/{name}"
            );
        }
        seen += here.len();
    }
    for id in &ids[..5] {
        assert!(mine.iter().any(|i| i.id == *id), "{id} is the CLI tenant's");
    }
    assert_eq!(dest.count_logs().await.unwrap(), seen);
    assert!(!dest.snapshots(ids[0]).await.unwrap().is_empty());
    let upgraded = dest.info(ids[1]).await.unwrap().unwrap();
    let EventBody::Created(created) = &all_events(&*dest, ids[1]).await[0].event.body else {
        panic!("seq 0 is `created`");
    };
    assert_ne!(created.guest.digest, upgraded.guest.digest, "upgraded");
    assert!(
        dest.guest_bytes(&created.guest.digest)
            .await
            .unwrap()
            .is_some()
    );

    // A second run copies nothing and changes nothing.
    let again = migrate(data.path(), &db.url, &[]);
    assert!(again.status.success(), "{again:?}");
    assert!(
        again.stdout.contains(&format!(
            "copied 0 logs (0 events, {seen} already there), 0 guests, 0 guest names, 0 snapshots"
        )),
        "{}",
        again.stdout
    );
    assert_eq!(dest.count_logs().await.unwrap(), seen);

    // A worker goes on with a log in the destination: it differs from the
    // source now, and the migration refuses it, naming it.
    let other = ids[5];
    let next = dest.info(other).await.unwrap().unwrap().next_seq;
    dest.commit(Commit::append(
        other,
        next,
        vec![(
            now_ms(),
            EventBody::Input {
                from: Sender::Principal("worker".into()),
                content: vec![logbook::journal::ContentBlock::text("later")],
            },
        )],
    ))
    .await
    .expect("a worker appends");
    let refused = migrate(data.path(), &db.url, &[]);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        refused.stderr.contains(&other.to_string()) && refused.stderr.contains("differs"),
        "{}",
        refused.stderr
    );
}
