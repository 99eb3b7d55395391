//! Activation: replay the log into a fresh guest (session::replay has the
//! rules), then resume what the log left open.

use std::collections::{HashMap, HashSet};

use super::{Actor, Perform, denied, off_runtime};
use crate::effects::{Effect, EffectBody};
use crate::guest::GuestError;
use crate::journal::{ErrorKind, EventBody, LogInfo, RequestedEffect};
use crate::session::SessionError;
use crate::session::keys::{Approval, OpenEffect};
use crate::session::replay::Replayer;

impl Actor {
    /// Fold the log into a fresh guest through the replayer (from the newest
    /// snapshot when snapshots are on), and take its ledger. A guest fault
    /// during replay is returned (for `resume` to log); anything else is an
    /// error.
    pub(super) fn replay(&mut self, info: &LogInfo) -> Result<Option<GuestError>, SessionError> {
        let from_snapshot = self.host.config.limits.snapshot_every != 0;
        let replayed = Replayer::new(&self.host, info)
            .use_snapshots(from_snapshot)
            .charged()
            .run()?;
        self.guest = replayed.guest;
        // Replayed: what it folds from here is durable or refusable as the
        // actor decides (session::memory).
        self.settle_memory();
        self.ledger = replayed.ledger;
        // Never earlier than before: after a failed snapshot, the next try
        // waits for another `snapshot_every` events.
        self.snapshot_seq = self.snapshot_seq.max(replayed.restored.unwrap_or(0));
        Ok(replayed.fault)
    }

    /// Fold the log again into a fresh instance: a failed snapshot dropped
    /// the last one (actor/snapshot.rs). A guest fault now parks the session
    /// as it would on activation.
    pub(super) async fn refold(&mut self) -> Result<(), SessionError> {
        let info = self
            .host
            .journal
            .info(self.log)
            .await?
            .ok_or_else(|| SessionError::UnknownSession(self.log.to_string()))?;
        let fault = off_runtime(|| self.replay(&info))?;
        if let Some(e) = fault {
            let message = format!("during replay: {e}");
            self.advance(vec![EventBody::GuestFailed { message }], Vec::new())
                .await?;
        }
        Ok(())
    }

    /// After activation: pick up what the log left open (DESIGN §4, reconcile).
    pub(super) async fn resume(
        &mut self,
        replay_error: Option<GuestError>,
    ) -> Result<(), SessionError> {
        if let Some(e) = replay_error {
            let message = format!("during replay: {e}");
            self.advance(vec![EventBody::GuestFailed { message }], Vec::new())
                .await?;
            self.answer_waiters();
            return Ok(());
        }
        if self.ledger.stopped.is_some() {
            // Stopped: nothing is started or fired until `resumed`.
            self.answer_waiters();
            return Ok(());
        }
        let wanted: HashMap<String, Effect> = match &mut self.guest {
            Some(guest) => match off_runtime(|| guest.effects()) {
                Ok(wanted) => wanted.into_iter().map(|e| (e.key.clone(), e)).collect(),
                Err(e) => {
                    self.guest = None;
                    let message = e.to_string();
                    self.advance(vec![EventBody::GuestFailed { message }], Vec::new())
                        .await?;
                    return Ok(());
                }
            },
            None => HashMap::new(),
        };
        let unstarted = self.unstarted().await?;
        let mut events = Vec::new();
        let mut performs = Vec::new();
        for (key, open) in self.ledger.keys.open() {
            // Running still (a resume after a stop, session::stop).
            if self.running.contains_key(key) {
                continue;
            }
            let key = key.clone();
            let (effect, approval) = (&open.effect, &open.approval);
            match effect {
                OpenEffect::Question => {}
                OpenEffect::Requested(RequestedEffect::Model { .. }) => match wanted.get(&key) {
                    Some(Effect {
                        body: EffectBody::Model(request),
                        ..
                    }) => performs.push(Perform::Model(key, request.clone())),
                    _ if self.guest.is_some() => events.push(EventBody::Cancelled { key }),
                    _ => {}
                },
                OpenEffect::Requested(RequestedEffect::Sleep { until }) => {
                    if wanted.contains_key(&key) || self.guest.is_none() {
                        performs.push(Perform::Timer(key, *until));
                    } else {
                        events.push(EventBody::Cancelled { key });
                    }
                }
                OpenEffect::Requested(RequestedEffect::Tool(call)) => match approval {
                    Approval::Pending => {}
                    Approval::Decided {
                        allow: false,
                        by,
                        reason,
                    } => {
                        events.push(denied(key, by, reason.as_deref()));
                    }
                    Approval::Decided { allow: true, .. } | Approval::NotNeeded => {
                        if self.idempotent(&call.name) {
                            performs.push(Perform::Tool(key, call.clone()));
                        } else if unstarted.contains(&key) {
                            // Approved by a worker without the lease, and
                            // never claimed: it has not run. Claimed first.
                            self.claims.push(key.clone());
                            performs.push(Perform::Tool(key, call.clone()));
                        } else {
                            events.push(EventBody::Failed {
                                key,
                                error: ErrorKind::Interrupted,
                                message: format!(
                                    "the host stopped while {} ran; it is not safe to run it again",
                                    call.name
                                ),
                                retryable: false,
                                attempt: 1,
                            });
                        }
                    }
                },
                OpenEffect::Requested(RequestedEffect::Ask(_)) => {}
            }
        }
        self.advance(events, performs).await?;
        self.answer_waiters();
        Ok(())
    }
}

impl Actor {
    /// The approved tools that no lease holder has claimed (journal::Claim),
    /// read from the journal after this actor took the lease, so no other
    /// writer can claim one since. Read only when a decided tool that is not
    /// idempotent is open: a wake pays nothing for it otherwise.
    async fn unstarted(&mut self) -> Result<HashSet<String>, SessionError> {
        let any = self.ledger.keys.open().any(|(_, open)| {
            matches!(open.approval, Approval::Decided { allow: true, .. })
                && matches!(&open.effect, OpenEffect::Requested(RequestedEffect::Tool(call))
                    if !self.idempotent(&call.name))
        });
        if !any {
            return Ok(HashSet::new());
        }
        Ok(match self.host.journal.info(self.log).await? {
            Some(info) => info
                .open
                .into_iter()
                .filter(|o| o.unstarted)
                .map(|o| o.key)
                .collect(),
            None => HashSet::new(),
        })
    }

    /// Whether the tool of that name may run again after a crash.
    pub(super) fn idempotent(&self, tool: &str) -> bool {
        self.host.tools.get(tool).is_some_and(|t| t.idempotent())
    }
}
