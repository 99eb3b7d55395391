//! The actor's side of snapshots: store one when the session goes idle
//! `snapshot_every` events after the last (session::snapshot has the record
//! and its invariants; session::replay restores them).
//!
//! Invariant: a snapshot that fails costs only speed. A guest that fails in
//! `snapshot()` (out of fuel on a large state, say) leaves its instance in an
//! undefined state, so the instance is dropped, with a warning in the trace,
//! and the next command that needs the guest folds the log again; no
//! `guest-failed` is ever written for it.

use super::{Actor, off_runtime};
use crate::journal::blocking;
use crate::session::SessionError;
use crate::session::snapshot;

impl Actor {
    /// Store a snapshot if the session is idle, healthy, and `snapshot_every`
    /// events past the last one (or the last try).
    pub(super) fn maybe_snapshot(&mut self) {
        let every = self.host.config.limits.snapshot_every;
        let Some(last) = self.ledger.next_seq.checked_sub(1) else {
            return;
        };
        if every == 0
            || last < self.snapshot_seq.saturating_add(every)
            || self.ledger.ended()
            || self.ledger.stopped.is_some()
            || self.is_busy()
        {
            return;
        }
        let Some(guest) = self.guest.as_mut() else {
            return;
        };
        // Whatever happens, do not try again before another `every` events.
        self.snapshot_seq = last;
        let log = self.log;
        let bytes = match off_runtime(|| guest.snapshot()) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(
                    %log,
                    seq = last,
                    "the guest failed to take a snapshot ({e}): its instance is dropped, the log will be folded again"
                );
                self.guest = None;
                return;
            }
        };
        let (host, keys) = (&self.host, &self.ledger.keys);
        let stored = off_runtime(|| -> Result<bool, SessionError> {
            // The guest running now is the log's current one (a `guest-changed`
            // re-activates the session).
            let Some(info) = blocking(host.journal.info(log))? else {
                return Ok(false);
            };
            let record = snapshot::encode(keys, &bytes)?;
            blocking(
                host.journal
                    .put_snapshot(log, last, &info.guest.digest, &record),
            )?;
            Ok(true)
        });
        match stored {
            Ok(true) => tracing::debug!(%log, seq = last, "snapshot stored"),
            Ok(false) => {}
            Err(e) => tracing::warn!(%log, seq = last, "cannot store a snapshot: {e}"),
        }
    }
}
