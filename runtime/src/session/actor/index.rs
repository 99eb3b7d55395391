//! Moving a session's closed keys to the journal's key index, so that what
//! it holds of its keys stays bounded however long its log (session::keys).
//!
//! Once [`INDEX_BATCH`] closed keys are held, they are written to the index
//! by a task of their own, off the session's path; the session lets go of
//! them (and moves its mark) only once that write is durable, at the first
//! commit after. A failed write costs only memory: the keys stay, and the
//! next batch takes them again.

use tokio::sync::oneshot;

use super::Actor;
use crate::journal::JournalError;
use crate::session::keys::INDEX_BATCH;

/// A write to the key index in flight.
pub(super) struct Indexing {
    /// The mark it moves the index to.
    through: u64,
    done: oneshot::Receiver<Result<(), JournalError>>,
}

impl Actor {
    /// Called after the ledger noted new events: takes in a finished write,
    /// and starts the next one when a batch of closed keys is held.
    pub(super) fn index_keys(&mut self) {
        if let Some(indexing) = &mut self.indexing {
            match indexing.done.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => return,
                Ok(Ok(())) => self.ledger.keys.indexed(indexing.through),
                Ok(Err(e)) => {
                    tracing::warn!(log = %self.log, "cannot write the key index ({e}): the keys stay in memory");
                }
                Err(oneshot::error::TryRecvError::Closed) => {}
            }
            self.indexing = None;
        }
        if self.ledger.keys.unindexed() < INDEX_BATCH {
            return;
        }
        let through = self.ledger.next_seq;
        let keys = self.ledger.keys.to_index();
        let (journal, log) = (self.host.journal.clone(), self.log);
        let (tx, done) = oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(journal.index_keys(log, through, &keys).await);
        });
        self.indexing = Some(Indexing { through, done });
    }
}
