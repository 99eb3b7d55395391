//! Activation: replay the log into a fresh guest, then resume what the log
//! left open.
//!
//! Invariant: the whole log is read (its keys and head must be known) even
//! when folding stops early, on a guest fault or a parked or finished log.

use std::collections::HashMap;

use super::{Actor, Perform, denied, off_runtime};
use crate::effects::{Effect, EffectBody};
use crate::guest::{GuestBatch, GuestError};
use crate::journal::{ErrorKind, Event, EventBody, LogInfo, LogStatus, RequestedEffect};
use crate::session::SessionError;
use crate::session::keys::{Approval, Keys, OpenEffect};

/// A page of a replay, decoded and converted for the guest.
struct Page {
    /// The `created` event and its time, when the page starts the log.
    created: Option<(crate::journal::Created, u64)>,
    batch: GuestBatch,
}

/// What a replay learns of the log besides the guest's state.
#[derive(Default)]
struct Ledger {
    next_seq: u64,
    keys: Keys,
    parked: Option<String>,
    finished: Option<String>,
}

impl Ledger {
    fn note(&mut self, body: &EventBody) {
        self.keys.note(body);
        note_end(&mut self.parked, &mut self.finished, body);
    }
}

/// Whether the log has finished, or parked on a guest failure.
pub(super) fn note_end(
    parked: &mut Option<String>,
    finished: &mut Option<String>,
    body: &EventBody,
) {
    match body {
        EventBody::Finished { result, .. } => *finished = Some(result.clone()),
        EventBody::Continued { log } => *finished = Some(format!("continued in log {log}")),
        EventBody::GuestFailed { message } => *parked = Some(message.clone()),
        EventBody::GuestChanged { .. } => *parked = None,
        _ => {}
    }
}

impl Actor {
    /// Read the whole log, noting its keys, and fold it into a fresh guest
    /// unless the log says it is parked or finished. A guest fault during
    /// replay is returned (for `resume` to log); anything else is an error.
    pub(super) fn replay(&mut self, info: &LogInfo) -> Result<Option<GuestError>, SessionError> {
        let batch = self.host.config.limits.replay_batch.max(1);
        let mut fold = !matches!(info.status, LogStatus::Failed | LogStatus::Finished);
        let mut fault = None;
        // From the newest snapshot when there is a usable one: only the tail
        // is read and folded (session::snapshot has the invariant).
        let began = std::time::Instant::now();
        let mut start = Ledger::default();
        if fold && let Some((next_seq, keys)) = self.restore_snapshot(info) {
            start.next_seq = next_seq;
            start.keys = keys;
        }
        let ledger =
            if start.next_seq > 0 && info.next_seq.saturating_sub(start.next_seq) < batch as u64 {
                // A tail of less than a page is read here: starting a reader
                // thread would take longer than the page.
                self.fold_tail(start, &mut fold, &mut fault)?
            } else {
                self.read_and_fold(info, start, &mut fold, &mut fault)?
            };
        tracing::debug!(
            log = %self.log,
            events = ledger.next_seq,
            us = began.elapsed().as_micros() as u64,
            "replayed"
        );
        self.next_seq = ledger.next_seq;
        self.keys = ledger.keys;
        self.parked = ledger.parked;
        self.finished = ledger.finished;
        if !fold || self.parked.is_some() || self.finished.is_some() {
            self.guest = None;
        }
        Ok(fault)
    }

    /// Read one short page after a snapshot and fold it, in this thread.
    fn fold_tail(
        &mut self,
        mut ledger: Ledger,
        fold: &mut bool,
        fault: &mut Option<GuestError>,
    ) -> Result<Ledger, SessionError> {
        let batch = self.host.config.limits.replay_batch.max(1);
        let page = self.host.journal.read(self.log, ledger.next_seq, batch)?;
        let events: Vec<Event> = page.into_iter().map(|s| s.event).collect();
        for event in &events {
            ledger.next_seq = event.seq + 1;
            ledger.note(&event.body);
        }
        if *fold
            && let Some(guest) = &mut self.guest
            && let Err(e) = guest.apply(&events)
        {
            if !e.is_guest_fault() {
                return Err(SessionError::from(e));
            }
            *fold = false;
            *fault = Some(e);
        }
        Ok(ledger)
    }

    /// Read the log from `start` and fold it. A reader thread decodes pages,
    /// notes their keys and converts them for the guest while the guest
    /// folds the page before: a wake is on the path of a waiting caller, and
    /// the two take about as long.
    fn read_and_fold(
        &mut self,
        info: &LogInfo,
        start: Ledger,
        fold_: &mut bool,
        fault_: &mut Option<GuestError>,
    ) -> Result<Ledger, SessionError> {
        let journal = self.host.journal.clone();
        let batch = self.host.config.limits.replay_batch.max(1);
        let log = self.log;
        let mut fold = *fold_;
        let mut fault = None;
        let (pages, incoming) = std::sync::mpsc::sync_channel::<Page>(2);
        // Folded batches go back to the reader to be freed, off the fold's path.
        let (spent, folded) = std::sync::mpsc::channel::<GuestBatch>();
        let ledger = std::thread::scope(|scope| {
            let reader = scope.spawn(move || -> Result<Ledger, SessionError> {
                let mut ledger = start;
                loop {
                    while folded.try_recv().is_ok() {}
                    let page = journal.read(log, ledger.next_seq, batch)?;
                    let Some(last) = page.last() else { break };
                    ledger.next_seq = last.event.seq + 1;
                    let full = page.len() == batch;
                    let mut events: Vec<Event> = page.into_iter().map(|s| s.event).collect();
                    for event in &events {
                        ledger.note(&event.body);
                    }
                    // Only seq 0 starts the guest: a fork's own `created`
                    // (at its parent's seq + 1) is folded like any event.
                    let created = match events.first() {
                        Some(Event {
                            seq: 0,
                            body: EventBody::Created(created),
                            at,
                        }) => Some((created.clone(), *at)),
                        _ => None,
                    };
                    if created.is_some() {
                        events.remove(0);
                    }
                    let page = Page {
                        created,
                        batch: GuestBatch::new(&events),
                    };
                    if pages.send(page).is_err() || !full {
                        break;
                    }
                }
                Ok(ledger)
            });
            for page in incoming {
                if !fold {
                    continue;
                }
                let result = self.fold(&info.guest.digest, &page);
                let _ = spent.send(page.batch);
                if let Err(e) = result {
                    if !e.is_guest_fault() {
                        return Err(SessionError::from(e));
                    }
                    // Keep reading: the keys and the head must still be known.
                    fold = false;
                    fault = Some(e);
                }
            }
            reader
                .join()
                .map_err(|_| SessionError::Invalid("the replay reader panicked".into()))?
        })?;
        *fold_ = fold;
        *fault_ = fault;
        Ok(ledger)
    }

    /// Fold a replayed page, creating the guest on `created`.
    fn fold(&mut self, digest: &str, page: &Page) -> Result<(), GuestError> {
        if let Some((created, at)) = &page.created {
            let loaded = match self.host.engine.loaded(digest) {
                Some(loaded) => loaded,
                None => {
                    let bytes = self
                        .host
                        .journal
                        .guest_bytes(digest)
                        .map_err(|e| GuestError::Instantiate(e.to_string()))?
                        .ok_or_else(|| {
                            GuestError::Instantiate(format!("guest {digest} is not stored"))
                        })?;
                    self.host.engine.load(digest, &bytes)?
                }
            };
            let limits = self.host.limits_for(&self.tenant);
            let mut guest = self
                .host
                .engine
                .instantiate_with(&loaded, created.seed, &limits)?;
            guest.init(created, *at)?;
            self.guest = Some(guest);
        }
        match &mut self.guest {
            Some(guest) => guest.apply_batch(&page.batch),
            None => Ok(()),
        }
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
        let mut events = Vec::new();
        let mut performs = Vec::new();
        for (key, open) in self.keys.open() {
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
                        let idempotent = self
                            .host
                            .tools
                            .get(&call.name)
                            .is_some_and(|t| t.idempotent());
                        if idempotent {
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
