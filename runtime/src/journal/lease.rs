//! Writer leases and the waiting for new events, as journals in one process
//! keep them.
//!
//! A [`Lease`] is a worker's claim to be the only writer of one log. Every
//! append an actor makes carries its lease's epoch
//! ([`Append::lease`](super::Append::lease)), and the journal refuses it with
//! [`JournalError::Fenced`] unless the epoch is the log's current one, so an
//! actor that lost its lease can never interleave with its successor. A
//! journal shared by many processes (PostgreSQL) keeps leases in the
//! database with an expiry; a journal that one process owns (redb, which
//! locks its file, and memory) keeps them here, in memory, where a lease
//! never expires and acquiring one only fences the previous holder in the
//! same process.
//!
//! Invariants:
//! - Every acquisition returns an epoch higher than any this process gave
//!   before, for any log.
//! - [`LocalLeases::check`] and [`LocalLeases::acquire`] take the same lock,
//!   so an append checked after an acquisition sees the new epoch.
//! - [`Heads::advanced`] is called only after the commit that moved the
//!   head is durable; a waiter registers before it reads the stored head, so
//!   no commit falls between the two unseen.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;

use super::{JournalError, LogId};

/// A worker's claim to be the only writer of a log, at an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The log.
    pub log: LogId,
    /// Its epoch: higher than that of every earlier lease of the log.
    pub epoch: u64,
}

/// A `sleep` effect that is open in a log: a durable timer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timer {
    /// The log.
    pub log: LogId,
    /// The effect's key.
    pub key: String,
    /// When it is due, unix ms.
    pub until: u64,
}

/// Leases of the logs of a journal that one process owns.
#[derive(Debug, Default)]
pub(crate) struct LocalLeases {
    state: Mutex<LeaseState>,
}

#[derive(Debug, Default)]
struct LeaseState {
    last_epoch: u64,
    held: HashMap<LogId, u64>,
}

impl LocalLeases {
    fn state(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        // Each change is one insert or remove: a panic cannot leave it half done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new lease of `log`, fencing whoever held it.
    pub(crate) fn acquire(&self, log: LogId) -> Lease {
        let mut state = self.state();
        state.last_epoch += 1;
        let epoch = state.last_epoch;
        state.held.insert(log, epoch);
        Lease { log, epoch }
    }

    /// Drops the lease if it is still the current one.
    pub(crate) fn release(&self, lease: Lease) {
        let mut state = self.state();
        if state.held.get(&lease.log) == Some(&lease.epoch) {
            state.held.remove(&lease.log);
        }
    }

    /// Whether anyone holds a lease of `log`.
    pub(crate) fn is_held(&self, log: LogId) -> bool {
        self.state().held.contains_key(&log)
    }

    /// Whether an append carrying `epoch` may write to `log`: an append
    /// without one always may (writers that hold no lease: creates, imports,
    /// operators' tools); one with an epoch only while it is the current one.
    pub(crate) fn check(&self, log: LogId, epoch: Option<u64>) -> Result<(), JournalError> {
        let Some(epoch) = epoch else {
            return Ok(());
        };
        match self.state().held.get(&log) {
            Some(current) if *current == epoch => Ok(()),
            _ => Err(JournalError::Fenced { log, epoch }),
        }
    }
}

/// Callers waiting for logs to grow, woken by the writer after each commit.
#[derive(Debug, Default)]
pub(crate) struct Heads {
    waiting: Mutex<HashMap<LogId, watch::Sender<u64>>>,
}

impl Heads {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<LogId, watch::Sender<u64>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `log`'s next seq is now `next_seq`, durably.
    pub(crate) fn advanced(&self, log: LogId, next_seq: u64) {
        let mut waiting = self.waiting();
        if let Some(tx) = waiting.get(&log) {
            if tx.receiver_count() == 0 {
                waiting.remove(&log);
            } else {
                tx.send_if_modified(|seen| {
                    let newer = next_seq > *seen;
                    if newer {
                        *seen = next_seq;
                    }
                    newer
                });
            }
        }
    }

    /// The logs someone waits on now: what a journal whose heads come from
    /// elsewhere (PostgreSQL's notifications) reads again after it may have
    /// missed some.
    pub(crate) fn waited(&self) -> Vec<LogId> {
        self.waiting().keys().copied().collect()
    }

    /// Tells the waiters of every log a committed batch grew its new head,
    /// once per log, so none sees a commit half applied.
    pub(crate) fn committed<'e>(
        &self,
        events: impl IntoIterator<Item = &'e (LogId, super::StoredEvent)>,
    ) {
        let mut heads: HashMap<LogId, u64> = HashMap::new();
        for (log, e) in events {
            let next = heads.entry(*log).or_default();
            *next = (*next).max(e.event.seq + 1);
        }
        for (log, next) in heads {
            self.advanced(log, next);
        }
    }

    /// A watch of `log`'s next seq as commits announce it, kept while the
    /// receiver lives.
    pub(crate) fn subscribe(&self, log: LogId) -> watch::Receiver<u64> {
        self.waiting()
            .entry(log)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Resolves once `log` holds an event at `from_seq` or later, with its
    /// next seq. `stored` reads the log's next seq from the journal.
    pub(crate) async fn wait(
        &self,
        log: LogId,
        from_seq: u64,
        stored: impl Future<Output = Result<u64, JournalError>>,
    ) -> Result<u64, JournalError> {
        let mut rx = self
            .waiting()
            .entry(log)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        // Whenever this returns or is dropped, the entry goes if it was the
        // last waiter, so logs nobody waits on cost nothing here.
        let _leave = Leave { heads: self, log };
        let now = stored.await?;
        if now > from_seq {
            return Ok(now);
        }
        loop {
            let next = *rx.borrow_and_update();
            if next > from_seq {
                return Ok(next);
            }
            if rx.changed().await.is_err() {
                return Err(JournalError::Closed);
            }
        }
    }
}

struct Leave<'h> {
    heads: &'h Heads,
    log: LogId,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut waiting = self.heads.waiting();
        // The receiver of the waiter leaving is still alive here.
        if waiting
            .get(&self.log)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            waiting.remove(&self.log);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_lease_fences_the_old_one() {
        let leases = LocalLeases::default();
        let log = LogId::now_v7();
        let first = leases.acquire(log);
        assert!(leases.check(log, Some(first.epoch)).is_ok());
        let second = leases.acquire(log);
        assert!(second.epoch > first.epoch);
        assert!(matches!(
            leases.check(log, Some(first.epoch)),
            Err(JournalError::Fenced { .. })
        ));
        leases.release(first);
        assert!(leases.check(log, Some(second.epoch)).is_ok());
        leases.release(second);
        assert!(leases.check(log, Some(second.epoch)).is_err());
        assert!(leases.check(log, None).is_ok());
    }

    #[tokio::test]
    async fn a_waiter_sees_a_head_that_moves_after_it_registered() {
        let heads = std::sync::Arc::new(Heads::default());
        let log = LogId::now_v7();
        let waiter = {
            let heads = heads.clone();
            tokio::spawn(async move { heads.wait(log, 3, async { Ok(3) }).await })
        };
        tokio::task::yield_now().await;
        while heads
            .waiting()
            .get(&log)
            .is_none_or(|tx| tx.receiver_count() == 0)
        {
            tokio::task::yield_now().await;
        }
        heads.advanced(log, 5);
        assert_eq!(waiter.await.expect("joins").expect("waits"), 5);
        assert_eq!(heads.wait(log, 2, async { Ok(5) }).await.expect("now"), 5);
    }
}
