//! Taking over from workers that died.
//!
//! With a journal several workers share, a worker that dies leaves logs
//! with effects in flight and timers that nobody will fire. Its leases
//! expire one TTL after its last heartbeat; every worker looks about twice
//! per TTL for such logs ([`Journal::orphans`](crate::journal::Journal::orphans))
//! and for due timers of logs nobody holds
//! ([`Journal::timers`](crate::journal::Journal::timers)), and activates
//! them. An activation takes the lease first, so of several workers that
//! try, one wins and the others' actors stop before they replay; the winner
//! resumes the log as after a restart (idempotent effects run again, others
//! end `interrupted`) and fires its due timers, each once, since firing is
//! an append that only the lease holder can make.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Host, SessionError, now_ms};

/// Logs taken up per kind per pass; the rest wait for the next pass.
const SWEEP_BATCH: usize = 256;

impl Host {
    /// One pass: activate the orphaned logs and the logs with a due timer
    /// that no actor here runs. Answers how many were activated (each then
    /// takes its lease, or stops if another worker got it first).
    pub async fn sweep(&self) -> Result<usize, SessionError> {
        let journal = &self.shared.journal;
        let mut logs = journal.orphans(SWEEP_BATCH).await?;
        logs.extend(
            journal
                .timers(now_ms(), SWEEP_BATCH)
                .await?
                .into_iter()
                .map(|t| t.log),
        );
        let mut seen = HashSet::new();
        let mut woken = 0;
        for log in logs {
            if seen.insert(log) && self.shared.residents.peek(log).is_none() {
                self.shared.activate(log).await?;
                woken += 1;
            }
        }
        Ok(woken)
    }

    /// Sweep every half lease TTL while the host lives, when the journal is
    /// shared by several workers (it has a lease TTL); otherwise nothing.
    pub fn start_sweeper(self: &Arc<Self>) {
        let Some(ttl) = self.shared.journal.lease_ttl_ms() else {
            return;
        };
        let every = Duration::from_millis((ttl / 2).max(50));
        let host: Weak<Host> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(host) = host.upgrade() else { return };
                match host.sweep().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("took up {n} sessions that no live worker holds"),
                    Err(e) => tracing::warn!("cannot look for sessions to take over: {e}"),
                }
            }
        });
    }
}
