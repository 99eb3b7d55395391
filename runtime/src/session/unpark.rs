//! Unparking: an operator lets a session whose guest failed go on, without
//! an upgrade (issue #10).
//!
//! A guest fault parks a session (`guest-failed`): no guest runs for it
//! until something lifts it. `guest-changed` (an upgrade) is one way; an
//! `unparked` event is the other, for when the guest is right and the log
//! is not: an input it cannot fold (skip it), or a failure that was
//! transient (limits raised since: try again). Invariants:
//!
//! - Nothing is deleted: `guest-failed` and the skipped input stay in the
//!   log; `unparked {skip?, by, reason}` records the decision after them.
//! - Only a parked log is unparked, and only an input of its log is skipped;
//!   anything else is refused before anything is written.
//! - The replayer (session::replay) never hands the guest the skipped input
//!   nor the `unparked` event, on every replay, on every worker: the guest
//!   folds the log as if the input had never come.
//! - The write is made by whoever holds the session's tenant, like every
//!   other write; the actor here is stopped first, and the session is
//!   activated again after it, so the log is folded anew at once.

use super::{Host, SessionError, now_ms};
use crate::journal::{Commit, EventBody, JournalError, LogStatus};

/// Appends refused because another writer got to the head first.
const CONFLICT_RETRIES: usize = 10;

impl Host {
    /// Lift the park of a session whose guest failed: append `unparked`
    /// (skipping the input at `skip` for every future replay, when given),
    /// then activate the session, which folds its log again. Answers the
    /// seq of `unparked`. Refused with [`SessionError::NotParked`] when the
    /// session is not parked, and with [`SessionError::Invalid`] when `skip`
    /// is not the seq of an input in the log, or no reason is given.
    pub async fn unpark(
        &self,
        tenant: &str,
        id_or_name: &str,
        skip: Option<u64>,
        by: &str,
        reason: &str,
    ) -> Result<u64, SessionError> {
        if reason.trim().is_empty() {
            return Err(SessionError::NoReason);
        }
        let mut tries = 0;
        loop {
            let info = self.resolve(tenant, id_or_name).await?;
            if info.status != LogStatus::Failed {
                return Err(SessionError::NotParked(id_or_name.to_string()));
            }
            if let Some(seq) = skip {
                self.check_skip(&info, seq).await?;
            }
            self.hibernate(info.id);
            let body = EventBody::Unparked {
                skip,
                by: by.to_string(),
                reason: reason.to_string(),
            };
            let commit = Commit::append(info.id, info.next_seq, vec![(now_ms(), body)]);
            match self.shared.journal.commit(commit).await {
                Ok(_) => {
                    // Folded anew now, rather than at the next request. A
                    // worker that still holds the lease does it instead.
                    if let Err(e) = self.shared.activate(info.id).await {
                        tracing::debug!(log = %info.id, "not activated after unpark: {e}");
                    }
                    return Ok(info.next_seq);
                }
                // The stopping actor wrote one last commit: read the head again.
                Err(JournalError::Conflict { .. }) if tries < CONFLICT_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Refuse a skip of anything but an input of the log.
    async fn check_skip(
        &self,
        info: &crate::journal::LogInfo,
        seq: u64,
    ) -> Result<(), SessionError> {
        if seq >= info.next_seq {
            return Err(SessionError::BadSkip {
                seq,
                why: format!(
                    "it is not in the log, whose last seq is {}",
                    info.next_seq.saturating_sub(1)
                ),
            });
        }
        let event = self.shared.journal.read(info.id, seq, 1).await?.pop();
        match event.map(|e| e.event.body) {
            Some(EventBody::Input { .. }) => Ok(()),
            Some(other) => Err(SessionError::BadSkip {
                seq,
                why: format!(
                    "it is `{}`, not an input: only an input can be skipped",
                    other.kind()
                ),
            }),
            None => Err(SessionError::BadSkip {
                seq,
                why: "it is not in the log".into(),
            }),
        }
    }
}
