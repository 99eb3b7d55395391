//! [`FaultyJournal`]: a journal that fails on purpose, for crash tests.
//!
//! It wraps any [`Journal`] and, for the commits it is told to, either
//! **fails** them (nothing is written; the caller gets a storage error, as
//! when the disk refuses a write) or **tears** them (the commit is written
//! and durable, but the caller gets a storage error, as when the process or
//! the connection dies between the fsync and the acknowledgement). Every
//! other call goes to the inner journal unchanged. A
//! [`copy_log`](Journal::copy_log) counts as a commit.
//!
//! Invariant: a failed commit leaves the inner journal exactly as it was; a
//! torn one leaves it exactly as an acknowledged one would.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::commit::{Commit, CommitTicket};
use super::copy::CopiedLog;
use super::event::{BlobRef, GuestRef, LogPos, StoredEvent};
use super::info::LogInfo;
use super::{
    IndexedKey, IndexedKeys, Journal, JournalError, Lease, LogId, LogPage, TenantCount, Timer,
    Verified, WriterStats,
};

/// What happens to one commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Not written; the caller gets an error.
    Fail,
    /// Written and durable; the caller gets an error all the same.
    Tear,
}

/// A journal that fails or tears the commits it is told to.
pub struct FaultyJournal {
    inner: Arc<dyn Journal>,
    plan: Mutex<Plan>,
}

#[derive(Default)]
struct Plan {
    /// Commits submitted so far.
    seen: u64,
    /// Faults by the number of the commit (1 is the first after wrapping).
    faults: BTreeMap<u64, Fault>,
}

impl FaultyJournal {
    /// Wrap `inner`; no commit fails until told to.
    pub fn wrap(inner: Arc<dyn Journal>) -> Arc<FaultyJournal> {
        Arc::new(FaultyJournal {
            inner,
            plan: Mutex::new(Plan::default()),
        })
    }

    /// Make the `nth` commit from now (1: the next one) meet `fault`.
    pub fn inject(&self, nth: u64, fault: Fault) {
        let mut plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        let at = plan.seen + nth.max(1);
        plan.faults.insert(at, fault);
    }

    /// Counts one commit, and answers the fault planned for it.
    fn next_fault(&self) -> Option<Fault> {
        let mut plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        plan.seen += 1;
        let seen = plan.seen;
        plan.faults.remove(&seen)
    }

    /// How many commits have been submitted since wrapping.
    pub fn commits_seen(&self) -> u64 {
        self.plan.lock().unwrap_or_else(|p| p.into_inner()).seen
    }
}

fn injected(what: &str) -> JournalError {
    JournalError::Storage(Arc::new(redb::Error::Io(std::io::Error::other(format!(
        "injected fault: {what}"
    )))))
}

#[async_trait::async_trait]
impl Journal for FaultyJournal {
    fn commit(&self, commit: Commit) -> CommitTicket {
        match self.next_fault() {
            None => self.inner.commit(commit),
            Some(Fault::Fail) => {
                let (answer, ticket) = CommitTicket::new();
                let _ = answer.send(Err(injected("the commit was refused")));
                ticket
            }
            Some(Fault::Tear) => {
                let written = self.inner.commit(commit);
                let (answer, ticket) = CommitTicket::new();
                // Answer only once the inner commit is durable, so that the
                // caller's next look at the log sees it.
                std::thread::spawn(move || {
                    let outcome = written.wait();
                    let _ = answer.send(Err(match outcome {
                        Ok(_) => injected("the acknowledgement was lost"),
                        Err(e) => e,
                    }));
                });
                ticket
            }
        }
    }

    async fn read(
        &self,
        log: LogId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        self.inner.read(log, from_seq, limit).await
    }

    async fn read_checked(
        &self,
        log: LogId,
        pos: &mut super::ChainPos,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        self.inner.read_checked(log, pos, limit).await
    }

    async fn info(&self, log: LogId) -> Result<Option<LogInfo>, JournalError> {
        self.inner.info(log).await
    }

    async fn resolve(&self, tenant: &str, name: &str) -> Result<Option<LogId>, JournalError> {
        self.inner.resolve(tenant, name).await
    }

    async fn list_page(
        &self,
        tenant: &str,
        after: Option<LogId>,
        limit: usize,
    ) -> Result<LogPage, JournalError> {
        self.inner.list_page(tenant, after, limit).await
    }

    async fn count(&self, tenant: &str) -> Result<TenantCount, JournalError> {
        self.inner.count(tenant).await
    }

    async fn open_logs(
        &self,
        after: Option<LogId>,
        limit: usize,
    ) -> Result<Vec<LogId>, JournalError> {
        self.inner.open_logs(after, limit).await
    }

    async fn put_guest(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<GuestRef, JournalError> {
        self.inner.put_guest(tenant, name, bytes).await
    }

    async fn guest_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, JournalError> {
        self.inner.guest_bytes(digest).await
    }

    async fn put_blob(&self, tenant: &str, bytes: &[u8]) -> Result<BlobRef, JournalError> {
        self.inner.put_blob(tenant, bytes).await
    }

    async fn blob(&self, tenant: &str, digest: &str) -> Result<Option<Vec<u8>>, JournalError> {
        self.inner.blob(tenant, digest).await
    }

    async fn guest_by_name(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<GuestRef>, JournalError> {
        self.inner.guest_by_name(tenant, name).await
    }

    async fn guests(&self, tenant: &str) -> Result<Vec<GuestRef>, JournalError> {
        self.inner.guests(tenant).await
    }

    async fn count_logs(&self) -> Result<usize, JournalError> {
        self.inner.count_logs().await
    }

    async fn verify(&self, log: LogId) -> Result<Verified, JournalError> {
        self.inner.verify(log).await
    }

    async fn put_snapshot(
        &self,
        log: LogId,
        seq: u64,
        digest: &str,
        record: &[u8],
    ) -> Result<(), JournalError> {
        self.inner.put_snapshot(log, seq, digest, record).await
    }

    async fn latest_snapshot(
        &self,
        log: LogId,
        digest: &str,
        before: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, JournalError> {
        self.inner.latest_snapshot(log, digest, before).await
    }

    async fn snapshots(&self, log: LogId) -> Result<Vec<(u64, String, Vec<u8>)>, JournalError> {
        self.inner.snapshots(log).await
    }

    async fn indexed_keys(&self, log: LogId, keys: &[&str]) -> Result<IndexedKeys, JournalError> {
        self.inner.indexed_keys(log, keys).await
    }

    async fn index_keys(
        &self,
        log: LogId,
        mark: u64,
        keys: &[IndexedKey],
    ) -> Result<(), JournalError> {
        self.inner.index_keys(log, mark, keys).await
    }

    async fn parent(&self, log: LogId) -> Result<Option<LogPos>, JournalError> {
        self.inner.parent(log).await
    }

    async fn import(
        &self,
        tenant: &str,
        name: Option<&str>,
        events: &[StoredEvent],
        session_limit: Option<u64>,
    ) -> Result<LogId, JournalError> {
        self.inner.import(tenant, name, events, session_limit).await
    }

    async fn copy_log(&self, log: &CopiedLog) -> Result<(), JournalError> {
        match self.next_fault() {
            None => self.inner.copy_log(log).await,
            Some(Fault::Fail) => Err(injected("the copy was refused")),
            Some(Fault::Tear) => {
                self.inner.copy_log(log).await?;
                Err(injected("the acknowledgement was lost"))
            }
        }
    }

    fn stats(&self) -> WriterStats {
        self.inner.stats()
    }

    async fn acquire_lease(&self, log: LogId) -> Result<Lease, JournalError> {
        self.inner.acquire_lease(log).await
    }

    async fn release_lease(&self, lease: Lease) -> Result<(), JournalError> {
        self.inner.release_lease(lease).await
    }

    async fn timers(&self, due_by: u64, limit: usize) -> Result<Vec<Timer>, JournalError> {
        self.inner.timers(due_by, limit).await
    }

    async fn orphans(&self, limit: usize) -> Result<Vec<LogId>, JournalError> {
        self.inner.orphans(limit).await
    }

    fn watch_head(&self, log: LogId) -> tokio::sync::watch::Receiver<u64> {
        self.inner.watch_head(log)
    }

    fn lease_ttl_ms(&self) -> Option<u64> {
        self.inner.lease_ttl_ms()
    }

    async fn wait_events(&self, log: LogId, from_seq: u64) -> Result<u64, JournalError> {
        self.inner.wait_events(log, from_seq).await
    }
}
