//! A stopped session in its actor: what it holds back, the limits that stop
//! it, and its stop and resume (session::stop has the rules).

use super::{Actor, Perform};
use crate::journal::{Event, EventBody};
use crate::session::limits::{self, Ask};
use crate::session::{SessionError, now_ms};

impl Actor {
    /// Hold back what a stopped session would start: every perform but a
    /// compaction's (which is never asked while stopped). Answers whether
    /// an approved tool was held back: its decision is then logged without
    /// the lease, so the journal marks it `unstarted` and a resume, here or
    /// on another worker after a restart, runs it once (claimed first).
    pub(super) fn withhold(&mut self, performs: &mut Vec<Perform>) -> bool {
        let mut tools = false;
        performs.retain(|p| match p {
            Perform::Tool(key, _) => {
                tools = true;
                self.claims.retain(|k| k != key);
                false
            }
            Perform::Compact(..) => true,
            // A send whose `sent` is not logged is not delivered either.
            Perform::Model(..) | Perform::Timer(..) | Perform::Send(..) => false,
        });
        tools
    }

    /// The reason to stop before committing `staged` and starting
    /// `performs`, if a limit would be passed; `None` when the commit starts
    /// nothing (only inputs, decisions, results and outputs: those are
    /// always logged). Rates count effects started, not events: a loop must
    /// start one each turn, while a client's inputs start none of their own.
    pub(super) fn over_limit(
        &mut self,
        staged: &[Event],
        performs: &[Perform],
        at: u64,
    ) -> Option<String> {
        if performs.is_empty() {
            return None;
        }
        let model_calls = performs
            .iter()
            .filter(|p| matches!(p, Perform::Model(..)))
            .count() as u64;
        let mut spent = self.ledger.keys.spent;
        for event in staged {
            spent.note(&event.body);
        }
        let second = at / 1_000;
        let limits = self.host.limits_for(&self.tenant);
        let tenant = self.host.tenant_effects(&self.tenant, second, 0);
        let ask = Ask {
            effects: performs.len() as u64,
            model_calls,
        };
        limits::over(&limits, &mut self.rates, tenant, spent, &ask, second)
    }

    /// Count the effects a commit starts, and its model calls.
    pub(super) fn count(&mut self, performs: &[Perform]) {
        if performs.is_empty() {
            return;
        }
        let second = now_ms() / 1_000;
        let effects = performs.len() as u64;
        self.rates.effects.add(second, effects);
        self.host.tenant_effects(&self.tenant, second, effects);
        let calls = performs
            .iter()
            .filter(|p| matches!(p, Perform::Model(..)))
            .count() as u64;
        if calls > 0 {
            self.rates.model_calls.add(second, calls);
        }
    }

    /// A stopped session fires none of its timers: those running stop here
    /// (they stay open in the log, and start again on resume).
    pub(super) fn hold_timers(&mut self) {
        if self.ledger.stopped.is_none() {
            return;
        }
        self.running.retain(|_, running| {
            if running.until.is_some() {
                running.handle.abort();
                false
            } else {
                true
            }
        });
    }

    /// `Command::Stop`: append `stopped`. Effects in flight go on, and
    /// their results are logged.
    pub(super) async fn stop(&mut self, by: String, reason: String) -> Result<u64, SessionError> {
        if let Some(result) = &self.ledger.finished {
            return Err(SessionError::Finished(result.clone()));
        }
        if self.ledger.stopped.is_some() {
            return Err(SessionError::AlreadyStopped(self.log.to_string()));
        }
        let seq = self.ledger.next_seq;
        self.advance(vec![EventBody::Stopped { by, reason }], Vec::new())
            .await?;
        Ok(seq)
    }

    /// `Command::Resume`: append `resumed`, with what the guest wants now
    /// (the advance reconciles), then pick up what the log holds open and
    /// nothing runs (timers, results that never came, held-back tools), as
    /// an activation would.
    pub(super) async fn resume_stopped(&mut self, by: String) -> Result<u64, SessionError> {
        if self.ledger.stopped.is_none() {
            return Err(SessionError::NotStopped(self.log.to_string()));
        }
        // New windows: the operator let it go on.
        self.rates = limits::Rates::default();
        let seq = self.ledger.next_seq;
        self.advance(vec![EventBody::Resumed { by }], Vec::new())
            .await?;
        if !self.ledger.ended() && self.ledger.stopped.is_none() {
            self.resume(None).await?;
        }
        Ok(seq)
    }
}
