//! The actor's side of snapshots: restore the newest one on activation, and
//! store one when the session goes idle `snapshot_every` events after the
//! last (session::snapshot has the record and its invariants).

use super::{Actor, off_runtime};
use crate::journal::LogInfo;
use crate::session::keys::Keys;
use crate::session::snapshot;

impl Actor {
    /// Start the guest from the newest snapshot of the current guest below the
    /// head: the seq to replay from and the keys as of the snapshot. `None`
    /// (after a warning in the trace if a snapshot was there but unusable)
    /// means a full replay.
    pub(super) fn restore_snapshot(&mut self, info: &LogInfo) -> Option<(u64, Keys)> {
        if self.host.config.limits.snapshot_every == 0 {
            return None;
        }
        let digest = &info.guest.digest;
        let started = std::time::Instant::now();
        let (seq, record) = match self
            .host
            .journal
            .latest_snapshot(self.log, digest, info.next_seq)
        {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(log = %self.log, "cannot read snapshots ({e}): full replay");
                return None;
            }
        };
        let (keys, bytes) = match snapshot::decode(&record) {
            Ok(decoded) => decoded,
            Err(why) => {
                tracing::warn!(log = %self.log, seq, "snapshot is corrupt ({why}): full replay");
                return None;
            }
        };
        let restored = snapshot::instantiate(&self.host, self.log, digest)
            .and_then(|(mut guest, _, _)| Ok((guest.restore(bytes)?, guest)));
        match restored {
            Ok((true, guest)) => {
                tracing::debug!(
                    log = %self.log,
                    seq,
                    bytes = record.len(),
                    us = started.elapsed().as_micros() as u64,
                    "restored a snapshot"
                );
                self.guest = Some(guest);
                self.snapshot_seq = seq;
                Some((seq + 1, keys))
            }
            Ok((false, _)) => {
                tracing::warn!(log = %self.log, seq, "the guest refused its snapshot: full replay");
                None
            }
            Err(e) => {
                tracing::warn!(log = %self.log, seq, "cannot restore the snapshot ({e}): full replay");
                None
            }
        }
    }

    /// Store a snapshot if the session is idle, healthy, and `snapshot_every`
    /// events past the last one. A failure costs only speed: it is traced.
    pub(super) fn maybe_snapshot(&mut self) {
        let every = self.host.config.limits.snapshot_every;
        let Some(last) = self.next_seq.checked_sub(1) else {
            return;
        };
        if every == 0
            || last < self.snapshot_seq.saturating_add(every)
            || self.parked.is_some()
            || self.finished.is_some()
            || self.is_busy()
        {
            return;
        }
        let Some(guest) = self.guest.as_mut() else {
            return;
        };
        // Whatever happens, do not try again before another `every` events.
        self.snapshot_seq = last;
        let (host, log, keys) = (&self.host, self.log, &self.keys);
        let stored = off_runtime(|| -> Result<bool, crate::session::SessionError> {
            // The guest running now is the log's current one (a `guest-changed`
            // re-activates the session).
            let Some(info) = host.journal.info(log)? else {
                return Ok(false);
            };
            let digest = info.guest.digest;
            let Some(bytes) = guest.snapshot()? else {
                return Ok(false);
            };
            let record = snapshot::encode(keys, &bytes)?;
            host.journal.put_snapshot(log, last, &digest, &record)?;
            Ok(true)
        });
        match stored {
            Ok(true) => tracing::debug!(%log, seq = last, "snapshot stored"),
            Ok(false) => {}
            Err(e) => tracing::warn!(%log, seq = last, "cannot store a snapshot: {e}"),
        }
    }
}
