//! Per-tenant counts and the paged list, against a real redb file: in step
//! across a reopen, and rebuilt once from a file written before they
//! existed. The limit and the pages themselves are checked against every
//! backend in `journal_contract.rs`.

use std::collections::BTreeMap;

use redb::{Database, ReadableTableMetadata};

use super::*;

use crate::journal_contract::{compaction, count};

/// Every log of a tenant, walking the pages `page` at a time.
async fn walk(journal: &RedbJournal, tenant: &str, page: usize) -> Vec<LogId> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let got = journal.list_page(tenant, after, page).await.expect("page");
        assert!(got.logs.len() <= page, "{} > {page}", got.logs.len());
        assert!(
            got.logs.iter().all(|i| i.tenant == tenant),
            "a page of {tenant} shows another tenant's log"
        );
        out.extend(got.logs.iter().map(|i| i.id));
        match got.next {
            Some(next) => {
                assert_eq!(Some(next), out.last().copied(), "next is the page's last");
                after = Some(next);
            }
            None => return out,
        }
    }
}

/// Creates, forks, a compaction and an import in tenants `a` and `b`;
/// `(logs, sessions)` each tenant must hold after.
async fn populate(journal: &RedbJournal) -> BTreeMap<&'static str, (u64, u64)> {
    let a1 = create(journal, "a", Some("one")).await;
    create(journal, "a", None).await;
    create(journal, "b", None).await;
    let mut fork = new_log("a", None);
    fork.created.parent = Some(LogPos {
        log: a1.to_string(),
        seq: 0,
    });
    journal.commit(Commit::new_log(fork)).await.expect("fork");
    let (next, commit) = compaction(a1, 1, "a");
    journal.commit(commit).await.expect("compaction");
    // The continuation, exported and imported: a session of its own.
    journal
        .put_guest("b", "counter", b"counter")
        .await
        .expect("guest");
    let events = journal.read(next, 0, 100).await.expect("read");
    journal
        .import("b", None, &events, None)
        .await
        .expect("import");
    BTreeMap::from([("a", (4, 3)), ("b", (2, 2))])
}

#[tokio::test]
async fn counts_follow_every_new_log_and_survive_a_reopen() {
    let dir = TempDir::new().unwrap();
    let (path, journal) = open_journal(&dir);
    let expected = populate(&journal).await;
    for (tenant, want) in &expected {
        assert_eq!(count(&*journal, tenant).await, *want, "{tenant}");
    }
    assert_eq!(count(&*journal, "nobody").await, (0, 0));
    let before: Vec<Vec<LogId>> = vec![walk(&journal, "a", 2).await, walk(&journal, "b", 2).await];
    drop(journal);

    let journal = RedbJournal::open(&path, JournalConfig::default()).expect("reopen");
    for (tenant, want) in &expected {
        assert_eq!(
            count(&*journal, tenant).await,
            *want,
            "{tenant} after a reopen"
        );
    }
    let after: Vec<Vec<LogId>> = vec![walk(&journal, "a", 2).await, walk(&journal, "b", 2).await];
    assert_eq!(after, before);
}

#[tokio::test]
async fn a_file_written_before_the_counts_gets_them_at_open() {
    let dir = TempDir::new().unwrap();
    let (path, journal) = open_journal(&dir);
    let expected = populate(&journal).await;
    let lists: Vec<Vec<LogId>> = vec![walk(&journal, "a", 3).await, walk(&journal, "b", 3).await];
    drop(journal);

    // Make it the file an older build wrote: no index, no counts.
    {
        let db = Database::open(&path).expect("plain redb");
        let txn = db.begin_write().expect("write");
        assert!(txn.delete_table(tables::TENANT_COUNTS).expect("delete"));
        assert!(txn.delete_table(tables::TENANT_LOGS).expect("delete"));
        txn.commit().expect("commit");
    }

    let journal = RedbJournal::open(&path, JournalConfig::default()).expect("reopen");
    for (tenant, want) in &expected {
        assert_eq!(count(&*journal, tenant).await, *want, "{tenant}");
    }
    let again: Vec<Vec<LogId>> = vec![walk(&journal, "a", 3).await, walk(&journal, "b", 3).await];
    assert_eq!(again, lists);
    // The writer goes on from the rebuilt counts, and a second open keeps
    // them rather than counting again.
    let added = create(&journal, "b", None).await;
    drop(journal);
    let journal = RedbJournal::open(&path, JournalConfig::default()).expect("reopen");
    assert_eq!(count(&*journal, "a").await, expected["a"]);
    assert_eq!(
        count(&*journal, "b").await,
        (expected["b"].0 + 1, expected["b"].1 + 1)
    );
    assert_eq!(walk(&journal, "b", 3).await.last(), Some(&added));
    drop(journal);

    // The rebuilt tables are the ones the writer keeps: one row per log.
    // A build that did not keep them then writes a log (as far as these
    // tables go: a row of `logs` they do not know) and a count drifts.
    {
        let db = Database::open(&path).expect("plain redb");
        let txn = db.begin_write().expect("write");
        {
            let logs = txn.open_table(tables::LOGS).expect("logs");
            let mut index = txn.open_table(tables::TENANT_LOGS).expect("index");
            assert_eq!(index.len().expect("len"), logs.len().expect("len"));
            assert!(
                index
                    .remove(("b", added.as_u128()))
                    .expect("remove")
                    .is_some()
            );
            let mut counts = txn.open_table(tables::TENANT_COUNTS).expect("counts");
            counts.insert("a", (99, 99)).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let journal = RedbJournal::open(&path, JournalConfig::default()).expect("reopen");
    assert_eq!(
        count(&*journal, "a").await,
        expected["a"],
        "rebuilt, not trusted"
    );
    assert_eq!(walk(&journal, "b", 3).await.last(), Some(&added));
}
