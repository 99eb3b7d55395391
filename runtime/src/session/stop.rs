//! Stopping and resuming a session: an operator's brake, and the host's
//! when a limit is passed (session::limits; issue #10).
//!
//! Invariants:
//! - A stop is an event, `stopped {by, reason}`, and a resume is another,
//!   `resumed {by}`; the guest sees neither. Whether a session is stopped
//!   is a projection of its log (the journal's `stopped` flag, the
//!   replayer's ledger), so it holds across restarts and on every worker.
//! - While stopped, the host starts no effect for the session and fires
//!   none of its timers. Inputs and decisions are still appended and
//!   folded; effects in flight at the stop may finish, and their results
//!   are appended. An approved tool is held back, its decision logged as
//!   `unstarted` (journal::info::OpenEffect), so a resume runs it once.
//! - A resume appends `resumed`, then the host does what the guest wants
//!   and picks up what the log holds open, as an activation would.
//! - A fork starts unstopped, whatever its parent was: its own `created`
//!   clears the flag, and the limits apply to it afresh.
//! - Stop of a stopped session and resume of one that is not stopped are
//!   refused before anything is written; a finished session is refused.
//! - The append goes through the session's actor where this worker holds
//!   its lease, else straight to the journal (session::elsewhere), and the
//!   holder absorbs it.

use super::{Host, SessionError};
use crate::journal::{EventBody, JournalError, LogStatus};

impl Host {
    /// Stop a session: append `stopped {by, reason}`. Answers its seq.
    pub async fn stop(
        &self,
        tenant: &str,
        id_or_name: &str,
        by: &str,
        reason: &str,
    ) -> Result<u64, SessionError> {
        if reason.trim().is_empty() {
            return Err(SessionError::NoStopReason);
        }
        let info = self.resolve(tenant, id_or_name).await?;
        if info.stopped {
            return Err(SessionError::AlreadyStopped(id_or_name.to_string()));
        }
        let here = self
            .on_session(info.id, false, |s| async move { s.stop(by, reason).await })
            .await;
        match here {
            Err(SessionError::Journal(JournalError::Leased { .. })) => {
                let body = EventBody::Stopped {
                    by: by.to_string(),
                    reason: reason.to_string(),
                };
                self.append_elsewhere(info.id, false, |now| {
                    if now.status == LogStatus::Finished {
                        return Err(SessionError::Finished(id_or_name.to_string()));
                    }
                    if now.stopped {
                        return Err(SessionError::AlreadyStopped(id_or_name.to_string()));
                    }
                    Ok(vec![body.clone()])
                })
                .await
            }
            Err(SessionError::AlreadyStopped(_)) => {
                Err(SessionError::AlreadyStopped(id_or_name.to_string()))
            }
            other => other,
        }
    }

    /// Resume a stopped session: append `resumed {by}`, then perform what
    /// its guest wants. Answers the seq of `resumed`.
    pub async fn resume(
        &self,
        tenant: &str,
        id_or_name: &str,
        by: &str,
    ) -> Result<u64, SessionError> {
        let info = self.resolve(tenant, id_or_name).await?;
        if !info.stopped {
            return Err(SessionError::NotStopped(id_or_name.to_string()));
        }
        let here = self
            .on_session(info.id, false, |s| async move { s.resume(by).await })
            .await;
        match here {
            Err(SessionError::Journal(JournalError::Leased { .. })) => {
                let body = EventBody::Resumed { by: by.to_string() };
                self.append_elsewhere(info.id, false, |now| {
                    if !now.stopped {
                        return Err(SessionError::NotStopped(id_or_name.to_string()));
                    }
                    Ok(vec![body.clone()])
                })
                .await
            }
            Err(SessionError::NotStopped(_)) => {
                Err(SessionError::NotStopped(id_or_name.to_string()))
            }
            other => other,
        }
    }
}
