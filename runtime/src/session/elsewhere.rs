//! Inputs, decisions and waits for a session that another worker advances.
//!
//! With a shared journal, one worker at a time holds a log's lease and runs
//! its actor. A worker that gets a request for a log leased elsewhere does
//! not forward it: it appends the input or decision straight to the journal,
//! with the expected seq as its only order (retrying when the holder
//! appended first), and the journal's notification wakes the holder's actor,
//! which absorbs it (session::actor::absorb). The caller's answer is the
//! same as through the actor: the event's seq once it is durable.
//!
//! What is checked here is what the journal says: a finished or parked log
//! refuses input, a decision needs an approval that is pending. A waiter
//! here follows the log in the journal (it sees any writer's events) until
//! the log is quiescent past the event it waits after.

use std::time::Duration;

use super::actor::denied;
use super::{Activity, Host, SessionError, now_ms};
use crate::journal::{
    Commit, ContentBlock, EventBody, JournalError, LogId, LogInfo, LogStatus, RequestedEffect,
    Sender,
};

/// Appends refused because the holder appended first, before giving up.
const CONFLICT_RETRIES: usize = 64;

impl Host {
    /// Append an input to a log that another worker advances.
    pub(super) async fn input_elsewhere(
        &self,
        log: LogId,
        from: Sender,
        content: Vec<ContentBlock>,
    ) -> Result<u64, SessionError> {
        let body = EventBody::Input { from, content };
        self.append_elsewhere(log, true, |info| {
            self.shared.check_size(&info.tenant, "input", &body)?;
            Ok(vec![body.clone()])
        })
        .await
    }

    /// Decide a pending approval of a log that another worker advances.
    pub(super) async fn decide_elsewhere(
        &self,
        log: LogId,
        key: &str,
        allow: bool,
        by: &str,
        reason: Option<String>,
    ) -> Result<u64, SessionError> {
        self.append_elsewhere(log, false, |info| {
            let Some(open) = info.open.iter().find(|o| o.key == key) else {
                return Err(SessionError::NoPendingApproval(key.to_string()));
            };
            if !open.awaiting_approval {
                return Err(SessionError::AlreadyDecided(key.to_string()));
            }
            let mut events = vec![EventBody::ApprovalDecided {
                key: key.to_string(),
                allow,
                by: by.to_string(),
                reason: reason.clone(),
            }];
            // A tool the host held: its refusal ends it here; its approval
            // is performed by the holder, which absorbs the decision.
            if !allow && matches!(open.effect, RequestedEffect::Tool(_)) {
                events.push(denied(key.to_string(), by, reason.as_deref()));
            }
            Ok(events)
        })
        .await
    }

    /// Append what `events` makes of the log as the journal has it now, at
    /// its head; again from a fresh look when another writer got there first.
    /// With `input`, a log that has finished or parked is refused.
    pub(super) async fn append_elsewhere(
        &self,
        log: LogId,
        input: bool,
        events: impl Fn(&LogInfo) -> Result<Vec<EventBody>, SessionError>,
    ) -> Result<u64, SessionError> {
        let journal = &self.shared.journal;
        for _ in 0..CONFLICT_RETRIES {
            let info = journal
                .info(log)
                .await?
                .ok_or_else(|| SessionError::UnknownSession(log.to_string()))?;
            if input {
                self.shared.refuse_ended(&info).await?;
            }
            let at = now_ms();
            let bodies = events(&info)?.into_iter().map(|b| (at, b)).collect();
            match journal
                .commit(Commit::append(log, info.next_seq, bodies))
                .await
            {
                Ok(_) => return Ok(info.next_seq),
                Err(JournalError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(SessionError::Busy(format!(
            "log {log} kept moving: {CONFLICT_RETRIES} appends in a row found a newer head"
        )))
    }

    /// Wait, through the journal, until the log has an event after `after`
    /// and nothing in flight but human decisions and timers further away
    /// than `horizon`.
    pub(super) async fn wait_idle_elsewhere(
        &self,
        log: LogId,
        after: Option<u64>,
        horizon: Duration,
    ) -> Result<Activity, SessionError> {
        let journal = &self.shared.journal;
        loop {
            let info = journal
                .info(log)
                .await?
                .ok_or_else(|| SessionError::UnknownSession(log.to_string()))?;
            // A stopped log answers nothing: no event follows the one waited after.
            if info.status == LogStatus::Stopped {
                return Ok(Activity::Stopped);
            }
            if after.is_none_or(|after| info.next_seq > after.saturating_add(1))
                && let Some(activity) = quiescent(&info, horizon)
            {
                return Ok(activity);
            }
            journal.wait_events(log, info.next_seq).await?;
        }
    }
}

/// Where a log stands by its stored status, if nothing is in flight.
fn quiescent(info: &LogInfo, horizon: Duration) -> Option<Activity> {
    match info.status {
        LogStatus::Idle => Some(Activity::Idle),
        LogStatus::WaitingApproval => Some(Activity::WaitingApproval),
        LogStatus::Finished => Some(Activity::Finished),
        LogStatus::Failed => Some(Activity::Failed),
        LogStatus::Stopped => Some(Activity::Stopped),
        LogStatus::Running => None,
        LogStatus::Sleeping => {
            let soonest = info
                .open
                .iter()
                .filter_map(|o| match o.effect {
                    RequestedEffect::Sleep { until } => Some(until),
                    _ => None,
                })
                .min()?;
            let horizon = u64::try_from(horizon.as_millis()).unwrap_or(u64::MAX);
            (soonest > now_ms().saturating_add(horizon)).then_some(Activity::Sleeping)
        }
    }
}
