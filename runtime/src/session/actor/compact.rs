//! Compaction, a lossy fork (DESIGN §5): the guest's `compact(summary)`
//! becomes, in one commit, `continued` as the old log's last event, a new
//! log whose `created` carries the summary and `compacted-from`, and the
//! old log's name moved to the new one.
//!
//! Invariants: the raw log is never deleted or changed (it only gains
//! `continued`, which ends it like `finished`); the new log's chain starts
//! afresh at seq 0 (it shares no events); `compacted_from.seq` is the seq of
//! the old log's `continued`, so the two point at each other.

use super::{Actor, Perform};
use crate::journal::{Created, Event, EventBody, LogPos, NameUpdate, NewLog};
use crate::session::SessionError;
use crate::session::logops::created_in_view;

impl Actor {
    /// Take the compaction reconcile staged, if any, out of `performs`: the
    /// new log and the name move that go in the same commit as `staged`.
    pub(super) async fn compaction(
        // `&mut`: the actor is `Send` but not `Sync` (its guest's streams).
        &mut self,
        base: u64,
        staged: &[Event],
        performs: &mut Vec<Perform>,
    ) -> Result<(Vec<NewLog>, Vec<NameUpdate>), SessionError> {
        let Some(i) = performs
            .iter()
            .position(|p| matches!(p, Perform::Compact(..)))
        else {
            return Ok((Vec::new(), Vec::new()));
        };
        let Perform::Compact(next, summary) = performs.remove(i) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let Some(at) = staged.iter().position(
            |e| matches!(&e.body, EventBody::Continued { log } if *log == next.to_string()),
        ) else {
            // Dropped with the guest's other words after a fault.
            return Ok((Vec::new(), Vec::new()));
        };
        let journal = self.host.journal.as_ref();
        let info = journal
            .info(self.log)
            .await?
            .ok_or_else(|| SessionError::UnknownSession(self.log.to_string()))?;
        let last = base.saturating_sub(1);
        let was = created_in_view(journal, self.log, last).await?;
        let created = Created {
            guest: info.guest,
            config: was.config,
            seed: was.seed,
            parent: None,
            compacted_from: Some(LogPos {
                log: self.log.to_string(),
                seq: base + at as u64,
            }),
            summary: Some(summary),
            tools: was.tools,
        };
        let names = match info.name {
            Some(name) => vec![NameUpdate {
                tenant: info.tenant.clone(),
                name,
                log: next,
            }],
            None => Vec::new(),
        };
        let new_log = NewLog {
            id: next,
            tenant: info.tenant,
            name: None,
            at: staged[at].at,
            created,
            // A continuation of this session, not a new one: never refused
            // for the tenant's session limit, which would stop it mid-turn.
            session_limit: None,
        };
        Ok((vec![new_log], names))
    }
}
