//! The session actor: activate, advance, resume, and answer waiters.
//!
//! Invariants:
//! - events are folded into the guest as they are staged, but nothing is
//!   performed, broadcast or acknowledged before the commit that holds them
//!   is durable;
//! - if a commit fails the actor stops; the next activation rebuilds from the log;
//! - a guest fault appends `guest-failed` after the events that caused it and
//!   parks the session: no guest runs for it until it is upgraded.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::AbortHandle;

use super::keys::{Approval, Keys, OpenEffect};
use super::perform;
use super::{Activity, Command, Session, SessionError, Shared, now_ms};
use crate::config::Policy;
use crate::effects::{Effect, EffectBody, ModelRequest};
use crate::guest::{GuestBatch, GuestError, GuestInstance};
use crate::journal::{
    Append, Commit, ErrorKind, Event, EventBody, LogId, LogInfo, LogStatus, Outcome,
    RequestedEffect, StoredEvent, ToolCall,
};

/// Rounds of fold-and-reconcile one advance may take before the guest is
/// judged to be looping (each round it wanted something new and immediate).
const MAX_ROUNDS: usize = 256;

/// Durable events kept for live observers. One that falls further behind gets
/// `Lagged` and reads the rest from the journal.
const LIVE_EVENTS: usize = 64;

/// Something to start once the events that record it are durable.
enum Perform {
    Model(String, ModelRequest),
    Tool(String, ToolCall),
    Timer(String, u64),
}

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
fn note_end(parked: &mut Option<String>, finished: &mut Option<String>, body: &EventBody) {
    match body {
        EventBody::Finished { result, .. } => *finished = Some(result.clone()),
        EventBody::GuestFailed { message } => *parked = Some(message.clone()),
        EventBody::GuestChanged { .. } => *parked = None,
        _ => {}
    }
}

/// What one round of folding staged.
struct Folded {
    staged: Vec<Event>,
    cancels: Vec<String>,
    failure: Option<GuestError>,
}

/// Run guest code off the async executor. A guest's WASI calls (a flush of
/// its stderr, say) block on tokio internally, which must not happen on a
/// worker thread that is driving tasks.
pub(super) fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

struct Running {
    handle: AbortHandle,
    /// For timers: when they fire.
    until: Option<u64>,
}

struct Actor {
    host: Arc<Shared>,
    log: LogId,
    guest: Option<GuestInstance>,
    parked: Option<String>,
    finished: Option<String>,
    next_seq: u64,
    keys: Keys,
    running: HashMap<String, Running>,
    tx: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<Arc<StoredEvent>>,
    waiters: Vec<(Duration, oneshot::Sender<Activity>)>,
}

/// Activate a log: replay it into a fresh guest and start its actor.
pub(super) fn spawn(
    host: Arc<Shared>,
    log: LogId,
) -> Result<(Session, tokio::task::JoinHandle<()>), SessionError> {
    let info = host
        .journal
        .info(log)?
        .ok_or_else(|| SessionError::UnknownSession(log.to_string()))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let (events, _) = broadcast::channel(LIVE_EVENTS);
    let mut actor = Actor {
        host: host.clone(),
        log,
        guest: None,
        parked: None,
        finished: None,
        next_seq: 0,
        keys: Keys::default(),
        running: HashMap::new(),
        tx: tx.clone(),
        events: events.clone(),
        waiters: Vec::new(),
    };
    let replay_error = off_runtime(|| actor.replay(&info))?;
    let task = tokio::spawn(actor.run(rx, replay_error));
    let session = Session {
        log,
        commands: tx,
        events,
    };
    Ok((session, task))
}

impl Actor {
    /// Read the whole log, noting its keys, and fold it into a fresh guest
    /// unless the log says it is parked or finished. A guest fault during
    /// replay is returned (for `resume` to log); anything else is an error.
    fn replay(&mut self, info: &LogInfo) -> Result<Option<GuestError>, SessionError> {
        let journal = self.host.journal.clone();
        let batch = self.host.config.limits.replay_batch.max(1);
        let log = self.log;
        let mut fold = !matches!(info.status, LogStatus::Failed | LogStatus::Finished);
        let mut fault = None;
        // A reader thread decodes pages, notes their keys and converts them
        // for the guest while the guest folds the page before: a wake is on
        // the path of a waiting caller, and the two take about as long.
        let (pages, incoming) = std::sync::mpsc::sync_channel::<Page>(2);
        // Folded batches go back to the reader to be freed, off the fold's path.
        let (spent, folded) = std::sync::mpsc::channel::<GuestBatch>();
        let ledger = std::thread::scope(|scope| {
            let reader = scope.spawn(move || -> Result<Ledger, SessionError> {
                let mut ledger = Ledger::default();
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
                    let created = match events.first() {
                        Some(Event {
                            body: EventBody::Created(created),
                            at,
                            ..
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
        self.next_seq = ledger.next_seq;
        self.keys = ledger.keys;
        self.parked = ledger.parked;
        self.finished = ledger.finished;
        if !fold || self.parked.is_some() || self.finished.is_some() {
            self.guest = None;
        }
        Ok(fault)
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
            let mut guest = self.host.engine.instantiate(&loaded, created.seed)?;
            guest.init(created, *at)?;
            self.guest = Some(guest);
        }
        match &mut self.guest {
            Some(guest) => guest.apply_batch(&page.batch),
            None => Ok(()),
        }
    }

    /// Track what the committed log says: keys, and whether it ended.
    fn note(&mut self, body: &EventBody) {
        self.keys.note(body);
        note_end(&mut self.parked, &mut self.finished, body);
    }

    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Command>,
        replay_error: Option<GuestError>,
    ) {
        if let Err(e) = self.resume(replay_error).await {
            tracing::error!(log = %self.log, "cannot resume session: {e}");
            return;
        }
        while let Some(command) = rx.recv().await {
            match self.handle(command).await {
                ControlFlow::Continue(()) => {}
                ControlFlow::Break(SessionError::Stopped) => break,
                ControlFlow::Break(e) => {
                    tracing::error!(log = %self.log, "session stopped: {e}");
                    break;
                }
            }
            self.answer_waiters();
        }
        for running in self.running.values() {
            running.handle.abort();
        }
    }

    /// After activation: pick up what the log left open (DESIGN §4, reconcile).
    async fn resume(&mut self, replay_error: Option<GuestError>) -> Result<(), SessionError> {
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

    /// Handle one command; `Break` when the actor must stop (a commit failed,
    /// so the log may hold events this actor has not seen).
    async fn handle(&mut self, command: Command) -> ControlFlow<SessionError> {
        match command {
            Command::Input {
                from,
                content,
                reply,
            } => {
                if let Some(result) = &self.finished {
                    let _ = reply.send(Err(SessionError::Finished(result.clone())));
                } else if let Some(message) = &self.parked {
                    let _ = reply.send(Err(SessionError::Parked(message.clone())));
                } else {
                    let seq = self.next_seq;
                    let input = vec![EventBody::Input { from, content }];
                    return answer(reply, self.advance(input, Vec::new()).await.map(|_| seq));
                }
            }
            Command::Decide {
                key,
                allow,
                by,
                reason,
                reply,
            } => match self.decision(&key, allow, &by, reason) {
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
                Ok((events, performs)) => {
                    let seq = self.next_seq;
                    return answer(reply, self.advance(events, performs).await.map(|_| seq));
                }
            },
            Command::Done { key, result } => {
                if self.running.remove(&key).is_some()
                    && let Err(e) = self.advance(vec![result.into_event(key)], Vec::new()).await
                {
                    return ControlFlow::Break(e);
                }
            }
            Command::WaitIdle { horizon, reply } => self.waiters.push((horizon, reply)),
            Command::Hibernate => return ControlFlow::Break(SessionError::Stopped),
        }
        ControlFlow::Continue(())
    }

    fn decision(
        &self,
        key: &str,
        allow: bool,
        by: &str,
        reason: Option<String>,
    ) -> Result<(Vec<EventBody>, Vec<Perform>), SessionError> {
        let Some(open) = self.keys.get(key) else {
            return Err(if self.keys.was_decided(key) {
                SessionError::AlreadyDecided(key.to_string())
            } else {
                SessionError::NoPendingApproval(key.to_string())
            });
        };
        match &open.approval {
            Approval::Pending => {}
            Approval::Decided { .. } => return Err(SessionError::AlreadyDecided(key.to_string())),
            Approval::NotNeeded => return Err(SessionError::NoPendingApproval(key.to_string())),
        }
        let mut events = vec![EventBody::ApprovalDecided {
            key: key.to_string(),
            allow,
            by: by.to_string(),
            reason: reason.clone(),
        }];
        let mut performs = Vec::new();
        if let OpenEffect::Requested(RequestedEffect::Tool(call)) = &open.effect {
            if allow {
                performs.push(Perform::Tool(key.to_string(), call.clone()));
            } else {
                events.push(denied(key.to_string(), by, reason.as_deref()));
            }
        }
        Ok((events, performs))
    }

    /// Stage `external` events, fold them and whatever the guest wants in
    /// turn, commit it all in one durable append, then perform.
    async fn advance(
        &mut self,
        external: Vec<EventBody>,
        mut performs: Vec<Perform>,
    ) -> Result<Vec<StoredEvent>, SessionError> {
        let base = self.next_seq;
        let at = now_ms();
        let external_len = external.len();
        let Folded {
            mut staged,
            cancels: mut cancels_,
            failure,
        } = off_runtime(|| self.fold_and_reconcile(base, at, external, &mut performs));
        let cancels = &mut cancels_;
        if let Some(error) = failure {
            if !error.is_guest_fault() {
                return Err(error.into());
            }
            // What the guest said after the events that made it fail is not trusted.
            staged.truncate(external_len);
            staged.push(Event {
                seq: base + external_len as u64,
                at,
                body: EventBody::GuestFailed {
                    message: error.to_string(),
                },
            });
            performs.clear();
            cancels.clear();
            self.guest = None;
        }
        if staged.is_empty() {
            self.start(performs);
            return Ok(Vec::new());
        }
        let append = Append {
            log: self.log,
            expected_seq: base,
            events: staged.into_iter().map(|e| (e.at, e.body)).collect(),
        };
        let committed = self
            .host
            .journal
            .commit(Commit {
                appends: vec![append],
                ..Commit::default()
            })
            .await?;
        let stored: Vec<StoredEvent> = committed.events.into_iter().map(|(_, e)| e).collect();
        for event in &stored {
            self.note(&event.event.body);
            if self.events.receiver_count() > 0 {
                let _ = self.events.send(Arc::new(event.clone()));
            }
        }
        self.next_seq = base + stored.len() as u64;
        for key in cancels.drain(..) {
            if let Some(running) = self.running.remove(&key) {
                running.handle.abort();
            }
        }
        if self.parked.is_some() || self.finished.is_some() {
            for (_, running) in self.running.drain() {
                running.handle.abort();
            }
            self.guest = None;
        }
        self.start(performs);
        Ok(stored)
    }

    /// Stage events and fold them into the guest, round after round, until it
    /// wants nothing new that is immediate. Synchronous: it runs the guest.
    fn fold_and_reconcile(
        &mut self,
        base: u64,
        at: u64,
        external: Vec<EventBody>,
        performs: &mut Vec<Perform>,
    ) -> Folded {
        let mut staged: Vec<Event> = Vec::new();
        let mut fresh = Keys::default();
        let mut cancels: Vec<String> = Vec::new();
        let mut pending = external;
        for round in 0.. {
            let first_new = staged.len();
            for body in pending.drain(..) {
                fresh.note(&body);
                let seq = base + staged.len() as u64;
                staged.push(Event { seq, at, body });
            }
            let Some(guest) = &mut self.guest else { break };
            if round >= MAX_ROUNDS {
                let failure = GuestError::Trap(format!(
                    "the guest wanted new immediate effects {MAX_ROUNDS} rounds in a row"
                ));
                return Folded {
                    staged,
                    cancels,
                    failure: Some(failure),
                };
            }
            let wanted = match guest
                .apply(&staged[first_new..])
                .and_then(|()| guest.effects())
            {
                Ok(wanted) => wanted,
                Err(e) => {
                    return Folded {
                        staged,
                        cancels,
                        failure: Some(e),
                    };
                }
            };
            pending = self.reconcile(wanted, &fresh, performs, &mut cancels);
            if pending.is_empty() {
                break;
            }
        }
        Folded {
            staged,
            cancels,
            failure: None,
        }
    }

    /// Diff what the guest wants against the log; return the events that
    /// record the new effects, and note what to perform once they are durable.
    fn reconcile(
        &self,
        wanted: Vec<Effect>,
        fresh: &Keys,
        performs: &mut Vec<Perform>,
        cancels: &mut Vec<String>,
    ) -> Vec<EventBody> {
        let mut events = Vec::new();
        let mut wanted_keys = HashSet::new();
        for Effect { key, body } in wanted {
            wanted_keys.insert(key.clone());
            if self.keys.is_recorded(&key) || fresh.is_recorded(&key) {
                continue;
            }
            match body {
                EffectBody::Output(content) => events.push(EventBody::Output { key, content }),
                EffectBody::Finish(result) => events.push(EventBody::Finished { key, result }),
                EffectBody::Send { .. } | EffectBody::Compact(_) => {
                    events.push(EventBody::Failed {
                        key,
                        error: ErrorKind::Unsupported,
                        message: "this host does not perform send or compact yet".into(),
                        retryable: false,
                        attempt: 1,
                    })
                }
                EffectBody::Model(request) => {
                    events.push(EventBody::Requested {
                        key: key.clone(),
                        effect: RequestedEffect::Model {
                            model: request.model.clone(),
                            digest: request.digest(),
                            summary: request.summary(),
                        },
                    });
                    performs.push(Perform::Model(key, request));
                }
                EffectBody::Sleep(until) => {
                    events.push(EventBody::Requested {
                        key: key.clone(),
                        effect: RequestedEffect::Sleep { until },
                    });
                    performs.push(Perform::Timer(key, until));
                }
                EffectBody::Ask(question) => events.push(EventBody::ApprovalRequested {
                    key,
                    tool: None,
                    question: Some(question),
                }),
                EffectBody::Tool(call) => {
                    events.push(EventBody::Requested {
                        key: key.clone(),
                        effect: RequestedEffect::Tool(call.clone()),
                    });
                    match self.host.tools.policy(&call.name) {
                        Policy::Allow => performs.push(Perform::Tool(key, call)),
                        Policy::Ask => events.push(EventBody::ApprovalRequested {
                            key,
                            tool: Some(call),
                            question: None,
                        }),
                        Policy::Deny => events.push(EventBody::Completed {
                            key,
                            outcome: Outcome::Tool {
                                content: format!(
                                    "tool {} is denied by the host's policy",
                                    call.name
                                ),
                                is_error: true,
                            },
                        }),
                    }
                }
            }
        }
        // Whatever is open in the log but no longer wanted is cancelled.
        for (key, _) in self.keys.open() {
            if !wanted_keys.contains(key) && !fresh.is_recorded(key) {
                events.push(EventBody::Cancelled { key: key.clone() });
                cancels.push(key.clone());
            }
        }
        events
    }

    fn start(&mut self, performs: Vec<Perform>) {
        for perform in performs {
            let (key, running) = match perform {
                Perform::Model(key, request) => {
                    let handle = perform::model(&self.host, &self.tx, key.clone(), request);
                    (
                        key,
                        Running {
                            handle,
                            until: None,
                        },
                    )
                }
                Perform::Tool(key, call) => {
                    let call = ToolCall {
                        id: key.clone(),
                        ..call
                    };
                    let handle = perform::tool(&self.host, &self.tx, self.log, call);
                    (
                        key,
                        Running {
                            handle,
                            until: None,
                        },
                    )
                }
                Perform::Timer(key, until) => {
                    let handle = perform::timer(&self.tx, key.clone(), until);
                    (
                        key,
                        Running {
                            handle,
                            until: Some(until),
                        },
                    )
                }
            };
            if let Some(old) = self.running.insert(key, running) {
                old.handle.abort();
            }
        }
    }

    /// Answer every waiter whose idea of idle holds now.
    fn answer_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let now = now_ms();
        let waiters = std::mem::take(&mut self.waiters);
        for (horizon, reply) in waiters {
            match self.activity(now, horizon) {
                Some(activity) => {
                    let _ = reply.send(activity);
                }
                None => self.waiters.push((horizon, reply)),
            }
        }
    }

    /// `None` while something is in flight within the horizon.
    fn activity(&self, now: u64, horizon: Duration) -> Option<Activity> {
        if self.parked.is_some() {
            return Some(Activity::Failed);
        }
        if self.finished.is_some() {
            return Some(Activity::Finished);
        }
        let horizon = now.saturating_add(horizon.as_millis() as u64);
        let mut sleeping = false;
        for running in self.running.values() {
            match running.until {
                Some(until) if until > horizon => sleeping = true,
                _ => return None,
            }
        }
        Some(if self.keys.awaiting_human() {
            Activity::WaitingApproval
        } else if sleeping {
            Activity::Sleeping
        } else {
            Activity::Idle
        })
    }
}

/// The tool result a denied call completes with: the model can read it.
fn denied(key: String, by: &str, reason: Option<&str>) -> EventBody {
    let reason = reason.map(|r| format!(": {r}")).unwrap_or_default();
    EventBody::Completed {
        key,
        outcome: Outcome::Tool {
            content: format!("denied by {by}{reason}"),
            is_error: true,
        },
    }
}

/// Answer a caller; a failed commit also stops the actor.
fn answer(
    reply: oneshot::Sender<Result<u64, SessionError>>,
    result: Result<u64, SessionError>,
) -> ControlFlow<SessionError> {
    match result {
        Ok(seq) => {
            let _ = reply.send(Ok(seq));
            ControlFlow::Continue(())
        }
        Err(e) => {
            let _ = reply.send(Err(SessionError::Stopped));
            ControlFlow::Break(e)
        }
    }
}
