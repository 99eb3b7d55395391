//! Absorbing events that another writer appended to this actor's log.
//!
//! The actor holds the log's lease, but writers without one may append to
//! it: a worker that received an input or a human decision for a session
//! this worker advances appends it straight to the journal (ordered by the
//! seq check alone), and the journal's notification wakes this actor. The
//! actor then folds those events into its guest and its ledger, starts an
//! approved tool the decision was for, and reconciles what the guest wants
//! now, exactly as if the command had come to it. Effects in flight go on.
//! A tool that is not idempotent is claimed (journal::Claim) in a commit
//! before it starts: until then the journal knows it has not run, so a
//! worker that takes the session over after this one dies runs it.
//!
//! Invariant: events are absorbed in seq order and each exactly once: the
//! ledger's head is where the next read starts, and every event read is
//! noted before the next commit, whose expected seq is that head.

use super::{Actor, Perform, off_runtime};
use crate::journal::{Event, EventBody, RequestedEffect};
use crate::session::SessionError;
use crate::session::keys::{Approval, OpenEffect};

/// Events read from the journal at a time when absorbing.
const ABSORB_PAGE: usize = 256;

impl Actor {
    /// Fold what other writers appended after this actor's head, then
    /// reconcile. A guest that faults on them parks the session, as on any
    /// event. A `guest-changed` (an upgrade) or an `unparked` stops the
    /// actor: `Stopped`.
    pub(super) async fn absorb(&mut self) -> Result<(), SessionError> {
        loop {
            let page = self
                .host
                .journal
                .read(self.log, self.ledger.next_seq, ABSORB_PAGE)
                .await?;
            if page.is_empty() {
                return Ok(());
            }
            if self.guest.is_none() && !self.ledger.ended() {
                // A failed snapshot dropped the instance: folding the log
                // anew reads these events too.
                self.refold().await?;
                continue;
            }
            if page.iter().any(|s| {
                matches!(
                    s.event.body,
                    EventBody::GuestChanged { .. } | EventBody::Unparked { .. }
                )
            }) {
                // An upgrade or an unpark: the log is folded anew (into the
                // new guest, without the skipped input) by the next activation.
                return Err(SessionError::Stopped);
            }
            let was_stopped = self.ledger.stopped.is_some();
            let mut performs = Vec::new();
            let mut events: Vec<Event> = Vec::with_capacity(page.len());
            for stored in page {
                self.take_note(&stored.event.body, &mut performs);
                self.ledger.note(&stored.event);
                events.push(stored.event);
            }
            self.index_keys();
            tracing::debug!(log = %self.log, events = events.len(), "absorbed events of another writer");
            self.host.feeds.advanced(self.log, self.ledger.next_seq);
            let fault = match &mut self.guest {
                Some(guest) if !events.is_empty() => off_runtime(|| guest.apply(&events)).err(),
                _ => None,
            };
            if let Some(e) = fault {
                self.guest = None;
                let message = e.to_string();
                self.advance(vec![EventBody::GuestFailed { message }], Vec::new())
                    .await?;
                return Ok(());
            }
            if !self.ledger.ended() {
                self.advance(Vec::new(), performs).await?;
                if was_stopped && self.ledger.stopped.is_none() {
                    // Resumed elsewhere: pick up what the log holds open.
                    self.rates = crate::session::limits::Rates::default();
                    self.resume(None).await?;
                }
            }
        }
    }

    /// What an absorbed event asks of this actor besides folding it, judged
    /// against the ledger before the event is noted: an approved tool that
    /// the host held is started; an effect that ended elsewhere stops running.
    fn take_note(&mut self, body: &EventBody, performs: &mut Vec<Perform>) {
        match body {
            EventBody::ApprovalDecided {
                key, allow: true, ..
            } => {
                if let Some(open) = self.ledger.keys.get(key)
                    && matches!(open.approval, Approval::Pending)
                    && let OpenEffect::Requested(RequestedEffect::Tool(call)) = &open.effect
                {
                    // Written without the lease, the decision left the tool
                    // `unstarted`: claimed before it runs, so that a crash
                    // from here on ends it `interrupted`, never runs it twice.
                    if !self.idempotent(&call.name) {
                        self.claims.push(key.clone());
                    }
                    performs.push(Perform::Tool(key.clone(), call.clone()));
                }
            }
            EventBody::Completed { key, .. } | EventBody::Cancelled { key } => {
                if let Some(running) = self.running.remove(key) {
                    running.handle.abort();
                }
            }
            _ => {}
        }
    }
}
