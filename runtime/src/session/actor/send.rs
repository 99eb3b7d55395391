//! The `send` effect: a message from this session to another of its tenant.
//!
//! A send is immediate. Reconcile judges it while the guest folds: the
//! target (an id or a name) must be a session of the sender's tenant that
//! has neither finished nor parked, the chain of sends that led to it must
//! be within `[limits] max_send_hops`, and the input must be within
//! `max_event_bytes`. A send that passes is recorded as `sent` in this log
//! and delivered as an `input` (from `{log, key, hops}`) at the target's
//! head, in the same journal commit ([`Append::to_head`]); one that does
//! not is recorded as `failed`, with a kind that says why and a message
//! that names the limit or the target.
//!
//! Invariants:
//! - exactly once: the `sent` and the target's `input` commit together or
//!   not at all, and a key the log records is never performed again, so a
//!   sender resumed after a crash either finds its `sent` (and sends
//!   nothing) or finds nothing of it anywhere (and sends it then);
//! - no leak between tenants: a session of another tenant is refused with
//!   the very kind and message of one that does not exist;
//! - a send to the sender itself is an input to its own log, staged after
//!   its `sent` and folded in the same advance; it counts hops like any;
//! - after the commit the target is woken as an HTTP input would wake it:
//!   a resident actor absorbs the input (actor::absorb), a dormant log is
//!   activated, and one that another worker leases is absorbed there on
//!   the journal's notification.
//!
//! Known limits: a target that the host judged open may finish before the
//! commit lands: its input is then in its log after its end, and folded by
//! nobody. And a dormant target whose process dies between the commit and
//! its wake holds the input, durable, but is not woken by the restart (it
//! has nothing open that `resume_all` looks for): it acts on it at its next
//! activation (its next input, timer or command).

use super::{Actor, Perform};
use crate::journal::{
    Append, ContentBlock, ErrorKind, EventBody, JournalError, LogId, LogInfo, LogStatus, Sender,
    blocking,
};
use crate::session::SessionError;

/// A send that passed: its input goes at the head of `target`.
pub(super) struct Delivery {
    pub(super) target: LogId,
    pub(super) input: EventBody,
}

impl Delivery {
    /// The append that delivers it, in the sender's commit.
    pub(super) fn append(self, at: u64) -> Append {
        Append::to_head(self.target, vec![(at, self.input)])
    }
}

impl Actor {
    /// Judge the send under `key`, whose chain has taken `hops` sends
    /// before it; push the events that record it, and the delivery to carry
    /// to the commit, or, for a send to this very log, its input to `own`
    /// (which goes after everything else the guest wanted in the round, as
    /// an input from outside would). Fails only when the journal cannot be
    /// read.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send(
        &self,
        key: String,
        target: String,
        content: Vec<ContentBlock>,
        hops: u32,
        events: &mut Vec<EventBody>,
        own: &mut Vec<EventBody>,
        performs: &mut Vec<Perform>,
    ) -> Result<(), JournalError> {
        let failed = |error: ErrorKind, message: String| EventBody::Failed {
            key: key.clone(),
            error,
            message,
            retryable: false,
            attempt: 1,
        };
        let limits = self.host.limits_for(&self.tenant);
        if hops > limits.max_send_hops {
            events.push(failed(
                ErrorKind::LimitReached,
                format!(
                    "send to {target:?} refused: it would be send {} of a chain of sends between sessions, over the limit max_send_hops = {}",
                    u64::from(hops) + 1,
                    limits.max_send_hops
                ),
            ));
            return Ok(());
        }
        let info = match self.target(&target)? {
            Some(info) => info,
            None => {
                events.push(failed(
                    ErrorKind::UnknownTarget,
                    format!("send refused: no session {target:?}"),
                ));
                return Ok(());
            }
        };
        let ended = match info.status {
            LogStatus::Finished => Some("has finished"),
            LogStatus::Failed => Some("is parked (its guest failed)"),
            _ => None,
        };
        if let Some(why) = ended {
            events.push(failed(
                ErrorKind::TargetEnded,
                format!("send refused: session {target:?} {why} and takes no input"),
            ));
            return Ok(());
        }
        let input = EventBody::Input {
            from: Sender::Log {
                log: self.log.to_string(),
                key: key.clone(),
                hops,
            },
            content,
        };
        if let Err(SessionError::TooLarge { bytes, limit, .. }) =
            self.host.check_size(&self.tenant, "input", &input)
        {
            events.push(failed(
                ErrorKind::LimitReached,
                format!(
                    "send refused: the input is {bytes} bytes, over the limit max_event_bytes = {limit}"
                ),
            ));
            return Ok(());
        }
        events.push(EventBody::Sent {
            key,
            target: info.id.to_string(),
        });
        if info.id == self.log {
            own.push(input);
        } else {
            performs.push(Perform::Send(Delivery {
                target: info.id,
                input,
            }));
        }
        Ok(())
    }

    /// The session `target` names (an id or a name) in this actor's
    /// tenant; `None` when there is none, or it is another tenant's.
    fn target(&self, target: &str) -> Result<Option<LogInfo>, JournalError> {
        let journal = &self.host.journal;
        let id = match uuid::Uuid::parse_str(target) {
            Ok(id) => Some(id),
            Err(_) => blocking(journal.resolve(&self.tenant, target))?,
        };
        let Some(id) = id else { return Ok(None) };
        Ok(blocking(journal.info(id))?.filter(|info| info.tenant == self.tenant))
    }
}
