//! The session actor: activate, advance, resume, and answer waiters.
//!
//! Invariants:
//! - events are folded into the guest as they are staged, but nothing is
//!   performed, broadcast or acknowledged before the commit that holds them
//!   is durable;
//! - if a commit fails the actor stops; the next activation rebuilds from the log
//!   (one the actor wakes itself when another writer took the head first);
//! - a guest fault appends `guest-failed` after the events that caused it and
//!   parks the session: no guest runs for it until it is upgraded.

mod absorb;
mod activate;
mod compact;
mod context;
mod held;
mod index;
mod reconcile;
mod send;
mod snapshot;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::Instrument;

pub(super) use self::context::ModelBase;
pub(super) use self::reconcile::{model_requested, off_runtime, wanted};
use super::keys::{Approval, OpenEffect};
use super::perform;
use super::replay::Ledger;
use super::residency::ActorState;
use super::workspace::Workspace;
use super::{Activity, Command, Session, SessionError, Shared, now_ms};
use crate::effects::ModelRequest;
use crate::guest::{GuestError, GuestInstance};
use crate::journal::{
    EventBody, JournalError, Lease, LogId, LogInfo, Outcome, RequestedEffect, ToolCall,
};

/// Rounds of fold-and-reconcile one advance may take before the guest is
/// judged to be looping (each round it wanted something new and immediate).
const MAX_ROUNDS: usize = 256;

/// Streamed model deltas and tool progress kept for live observers; a slow
/// one misses some.
const LIVE_DELTAS: usize = 256;

/// Something to start once the events that record it are durable.
enum Perform {
    Model(String, ModelRequest),
    Tool(String, ToolCall),
    Timer(String, u64),
    /// Not performed: carried from reconcile to the commit, which creates
    /// the new log (its id) starting from the summary (actor/compact.rs).
    Compact(LogId, String),
    /// Not performed either: carried from reconcile to the commit, which
    /// appends the input at the target's head with this log's `sent`
    /// (actor/send.rs).
    Send(send::Delivery),
}

struct Running {
    handle: AbortHandle,
    /// For timers: when they fire.
    until: Option<u64>,
    /// `model`, `tool` or `timer`, for the effect latency metric.
    kind: &'static str,
    started: std::time::Instant,
}

struct Actor {
    host: Arc<Shared>,
    log: LogId,
    /// The tenant the log belongs to: its models, policies and limits apply.
    tenant: String,
    /// Tells this actor apart from an earlier or later one for the same log.
    generation: u64,
    /// What the residency table reads: whether this actor may be evicted.
    state: Arc<ActorState>,
    /// `None` while the log has ended (parked or finished), and after a
    /// failed snapshot dropped it: then the next command that may need the
    /// guest folds the log again first (`refold`).
    guest: Option<GuestInstance>,
    /// What the committed log says: its head, keys, and whether it ended
    /// (noted by the replayer's rule, session::replay).
    ledger: Ledger,
    /// The seq of the last snapshot this actor restored or stored, or tried
    /// to store (0: none).
    snapshot_seq: u64,
    running: HashMap<String, Running>,
    tx: mpsc::UnboundedSender<Command>,
    /// Streamed model output for live observers; never logged.
    deltas: broadcast::Sender<crate::effects::Live>,
    waiters: Vec<(Duration, oneshot::Sender<Activity>)>,
    /// The log's writer lease, taken before the replay: every append of
    /// this actor carries its epoch, so once another writer takes the lease
    /// this actor's appends are refused and it stops.
    lease: Option<Lease>,
    /// The log's `fs.*` workspace on this worker, rebuilt from the log before
    /// the first tool call that uses it (session::workspace).
    workspace: Arc<Workspace>,
    /// Keys of tools that a writer without the lease approved, which this
    /// actor is about to run: claimed in the next commit, before they start
    /// (journal::Claim).
    claims: Vec<String>,
    /// This session's rate windows (session::limits); empty at activation.
    rates: super::limits::Rates,
    /// The whole request of the latest model call, which the next one may
    /// extend (actor::context); none at activation.
    model_base: Option<context::ModelBase>,
    /// When the current turn's first input was committed, until no model
    /// or tool call is in flight (the turn latency metric).
    turn: Option<std::time::Instant>,
    /// The tenant's metric series, looked up once.
    series: crate::metrics::TenantSeries,
    /// Closed keys on their way to the journal's key index (actor::index).
    indexing: Option<index::Indexing>,
}

/// Activate a log: start its actor, which replays the log into a fresh
/// guest on the blocking pool and then handles commands. Returns at once:
/// commands sent meanwhile wait in the actor's channel, so the caller (and
/// whatever lock it holds) never waits for a replay, and wakes of different
/// logs replay in parallel.
pub(super) fn spawn(
    host: Arc<Shared>,
    info: LogInfo,
    generation: u64,
    state: Arc<ActorState>,
) -> (Session, tokio::task::JoinHandle<()>) {
    let log = info.id;
    let (tx, rx) = mpsc::unbounded_channel();
    let (deltas, _) = broadcast::channel(LIVE_DELTAS);
    let mut actor = Actor {
        host: host.clone(),
        log,
        tenant: info.tenant.clone(),
        generation,
        state,
        guest: None,
        ledger: Ledger::default(),
        snapshot_seq: 0,
        running: HashMap::new(),
        tx: tx.clone(),
        deltas: deltas.clone(),
        waiters: Vec::new(),
        lease: None,
        workspace: Arc::default(),
        claims: Vec::new(),
        rates: super::limits::Rates::default(),
        model_base: None,
        indexing: None,
        turn: None,
        series: host.metrics.tenant(&info.tenant),
    };
    // Everything the actor does, and the effects it starts, is inside this.
    let span = tracing::info_span!("session", log = %log, tenant = %info.tenant);
    let task = tokio::spawn(
        async move {
            let started = std::time::Instant::now();
            match host.journal.acquire_lease(log).await {
                Ok(lease) => actor.lease = Some(lease),
                Err(e) => return actor.refuse(rx, e.into()),
            }
            // Watched from before the replay: whatever another writer appends
            // after it is absorbed.
            let head = host.journal.watch_head(log);
            let replayed = tokio::task::spawn_blocking(move || {
                let result = actor.replay(&info);
                (actor, result)
            })
            .await;
            let (actor, result) = match replayed {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(%log, "the replay stopped: {e}");
                    host.residents.remove(log, generation);
                    return;
                }
            };
            let lease = actor.lease;
            host.metrics.activated(started.elapsed().as_secs_f64());
            match result {
                Ok(replay_error) => actor.run(rx, head, replay_error).await,
                Err(e) => actor.refuse(rx, e),
            }
            if let Some(lease) = lease
                && let Err(e) = host.journal.release_lease(lease).await
            {
                tracing::warn!(%log, "cannot release the lease: {e}");
            }
        }
        .instrument(span),
    );
    let session = Session {
        log,
        commands: tx,
        deltas,
    };
    (session, task)
}

impl Actor {
    /// The log could not be replayed (the journal failed, or the guest
    /// cannot be loaded): answer the callers that queued meanwhile with the
    /// reason, and stop. The next activation tries again.
    fn refuse(self, mut rx: mpsc::UnboundedReceiver<Command>, error: SessionError) {
        if matches!(error, SessionError::Journal(JournalError::Leased { .. })) {
            tracing::debug!(log = %self.log, "another worker advances this session");
        } else {
            tracing::error!(log = %self.log, "cannot activate session: {error}");
        }
        rx.close();
        let message = error.to_string();
        while let Ok(command) = rx.try_recv() {
            match command {
                Command::Input { reply, .. }
                | Command::Decide { reply, .. }
                | Command::Stop { reply, .. }
                | Command::Resume { reply, .. } => {
                    let _ = reply.send(Err(match &error {
                        // Another worker advances the log: the caller
                        // appends through the journal instead.
                        SessionError::Journal(JournalError::Leased { log }) => {
                            SessionError::Journal(JournalError::Leased { log: *log })
                        }
                        // No room for the replay: nothing was written, and
                        // the caller makes room and goes again.
                        SessionError::Guest(GuestError::MemoryBudget(spent)) => {
                            SessionError::Guest(GuestError::MemoryBudget(spent.clone()))
                        }
                        _ => SessionError::Unavailable(message.clone()),
                    }));
                }
                // The rest answer `Stopped` as their senders drop.
                _ => {}
            }
        }
        self.host.residents.remove(self.log, self.generation);
    }

    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Command>,
        mut head: tokio::sync::watch::Receiver<u64>,
        replay_error: Option<GuestError>,
    ) {
        if let Err(e) = self.resume(replay_error).await {
            tracing::error!(log = %self.log, "cannot resume session: {e}");
            self.host.residents.remove(self.log, self.generation);
            return;
        }
        let idle_after = Duration::from_millis(self.host.config.limits.idle_timeout_ms);
        // Why the loop ended, when it was an error.
        let mut stopped_by: Option<SessionError> = None;
        loop {
            self.state.set_busy(self.is_busy());
            let command = tokio::select! {
                command = rx.recv() => command,
                () = tokio::time::sleep(idle_after) => Some(Command::Evict),
                // The log's head moved: by this actor's own commit (nothing
                // to do), or by another writer (an input or decision taken
                // by a worker that does not hold the lease): fold it in.
                moved = head.changed() => {
                    if moved.is_err() {
                        // The journal is gone: the host is closing.
                        break;
                    }
                    if *head.borrow_and_update() <= self.ledger.next_seq {
                        continue;
                    }
                    match self.absorb().await {
                        Ok(()) => {}
                        Err(SessionError::Stopped) => break,
                        Err(e) => {
                            tracing::error!(log = %self.log, "session stopped: {e}");
                            stopped_by = Some(e);
                            break;
                        }
                    }
                    self.answer_waiters();
                    continue;
                }
            };
            let Some(command) = command else { break };
            match self.handle(command).await {
                ControlFlow::Continue(()) => {}
                ControlFlow::Break(SessionError::Stopped) => break,
                ControlFlow::Break(e) => {
                    tracing::error!(log = %self.log, "session stopped: {e}");
                    stopped_by = Some(e);
                    break;
                }
            }
            self.answer_waiters();
            self.end_turn();
            self.maybe_snapshot();
            if !self.after_call_memory() {
                break;
            }
        }
        // No more commands: a caller that still holds this session gets
        // `Stopped` at once, and activates a new actor.
        drop(rx);
        // Dormant now: pending timers wake the session when they are due.
        for running in self.running.values() {
            running.handle.abort();
            if let Some(until) = running.until {
                self.host.wake_at(until, self.log);
            }
        }
        // The instance's memory is given back before the actor leaves the
        // table: one making room counts it as on its way back until then.
        self.guest = None;
        self.host.residents.remove(self.log, self.generation);
        // Another writer appended first (a send's input at this log's head,
        // an input taken by a worker without the lease): nothing of this
        // actor's commit was written, and nobody may ask for the session
        // again soon. A fresh actor replays the log, theirs included, and
        // resumes what is open.
        if let Some(SessionError::Journal(JournalError::Conflict { .. })) = stopped_by {
            self.host.wake(self.log);
        }
    }

    /// After a replay: calls from here may overdraw the memory budgets,
    /// except where the actor says otherwise (session::memory); note what
    /// the instance holds.
    fn settle_memory(&mut self) {
        if let Some(guest) = &mut self.guest {
            guest.overdraw(true);
        }
        self.note_memory();
    }

    fn note_memory(&self) {
        let held = self.guest.as_ref().map_or(0, GuestInstance::memory_bytes);
        self.state.set_memory(held);
    }

    /// After a command: note the instance's memory, and if a budget is
    /// overdrawn, ask idle instances to go. `false` when none could and this
    /// one is idle: it goes itself.
    fn after_call_memory(&mut self) -> bool {
        self.note_memory();
        self.host.relieve(&self.tenant) || self.is_busy()
    }

    /// Advance for a request that may still be refused: its fold is refused
    /// any growth past the memory budgets (session::memory).
    async fn advance_refusable(
        &mut self,
        external: Vec<EventBody>,
        performs: Vec<Perform>,
    ) -> Result<Vec<crate::journal::StoredEvent>, SessionError> {
        if let Some(guest) = &mut self.guest {
            guest.overdraw(false);
        }
        let advanced = self.advance(external, performs).await;
        if let Some(guest) = &mut self.guest {
            guest.overdraw(true);
        }
        advanced
    }

    /// Whether an effect other than a timer is in flight, or a caller waits.
    fn is_busy(&self) -> bool {
        !self.waiters.is_empty() || self.running.values().any(|r| r.until.is_none())
    }

    /// Handle one command; `Break` when the actor must stop (a commit failed,
    /// so the log may hold events this actor has not seen).
    async fn handle(&mut self, command: Command) -> ControlFlow<SessionError> {
        let needs_guest = !matches!(
            command,
            Command::WaitIdle { .. } | Command::Hibernate | Command::Evict
        );
        if needs_guest
            && self.guest.is_none()
            && !self.ledger.ended()
            && let Err(e) = self.refold().await
        {
            return ControlFlow::Break(e);
        }
        match command {
            Command::Input {
                from,
                content,
                reply,
            } => {
                if let Some(result) = &self.ledger.finished {
                    let _ = reply.send(Err(SessionError::Finished(result.clone())));
                } else if let Some(message) = &self.ledger.parked {
                    let _ = reply.send(Err(SessionError::Parked(message.clone())));
                } else {
                    let seq = self.ledger.next_seq;
                    let started = std::time::Instant::now();
                    let input = EventBody::Input { from, content };
                    if let Err(e) = self.host.check_size(&self.tenant, "input", &input) {
                        let _ = reply.send(Err(e));
                        return ControlFlow::Continue(());
                    }
                    let advanced = self.advance_refusable(vec![input], Vec::new()).await;
                    if advanced.is_ok() {
                        self.series.input();
                        self.turn.get_or_insert(started);
                    }
                    return answer(reply, advanced.map(|_| seq));
                }
            }
            Command::Decide {
                key,
                allow,
                by,
                reason,
                reply,
            } => match self.decide(&key, allow, &by, reason).await {
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
                Ok((events, performs)) => {
                    let seq = self.ledger.next_seq;
                    return answer(
                        reply,
                        self.advance_refusable(events, performs).await.map(|_| seq),
                    );
                }
            },
            Command::Done { key, result } => {
                // A result for an effect no longer running (cancelled) is dropped.
                let Some(running) = self.running.remove(&key) else {
                    return ControlFlow::Continue(());
                };
                let seconds = running.started.elapsed().as_secs_f64();
                self.host
                    .metrics
                    .effect_done(&self.series, running.kind, seconds);
                let limit = self.host.limits_for(&self.tenant).max_event_bytes;
                let event = result.into_event(key, limit);
                if let Err(e) = self.advance(vec![event], Vec::new()).await {
                    return ControlFlow::Break(e);
                }
            }
            Command::Stop { by, reason, reply } => {
                let result = self.stop(by, reason).await;
                return answer_refusal(reply, result);
            }
            Command::Resume { by, reply } => {
                let result = self.resume_stopped(by).await;
                return answer_refusal(reply, result);
            }
            Command::WaitIdle { horizon, reply } => self.waiters.push((horizon, reply)),
            Command::Hibernate => return ControlFlow::Break(SessionError::Stopped),
            Command::Evict if !self.is_busy() => {
                return ControlFlow::Break(SessionError::Stopped);
            }
            Command::Evict => self.state.stays(),
            Command::Retrying { key, event, ack } => {
                // Logged before the retry goes ahead: nothing is performed
                // before the event that records it is durable.
                if !self.running.contains_key(&key) {
                    let _ = ack.send(false);
                } else if let Err(e) = self.advance(vec![event], Vec::new()).await {
                    let _ = ack.send(false);
                    return ControlFlow::Break(e);
                } else {
                    let _ = ack.send(self.running.contains_key(&key));
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// [`Actor::decision`], with the journal's key index asked first when
    /// only it knows whether `key` was decided (an old key: session::keys).
    async fn decide(
        &mut self,
        key: &str,
        allow: bool,
        by: &str,
        reason: Option<String>,
    ) -> Result<(Vec<EventBody>, Vec<Perform>), SessionError> {
        let indexed =
            if self.ledger.keys.get(key).is_none() && self.ledger.keys.was_decided(key).is_none() {
                let (journal, log) = (self.host.journal.clone(), self.log);
                let found = journal.indexed_keys(log, &[key]).await?.found;
                Some(found.iter().any(|k| k.decided))
            } else {
                None
            };
        self.decision(key, allow, by, reason, indexed)
    }

    fn decision(
        &self,
        key: &str,
        allow: bool,
        by: &str,
        reason: Option<String>,
        indexed: Option<bool>,
    ) -> Result<(Vec<EventBody>, Vec<Perform>), SessionError> {
        let Some(open) = self.ledger.keys.get(key) else {
            let decided = self.ledger.keys.was_decided(key).or(indexed) == Some(true);
            return Err(if decided {
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

    fn start(&mut self, performs: Vec<Perform>) {
        for perform in performs {
            let (key, running) = match perform {
                Perform::Model(key, request) => {
                    let handle = perform::model(
                        &self.host,
                        &self.tx,
                        &self.deltas,
                        (self.log, &self.tenant),
                        key.clone(),
                        request,
                    );
                    (
                        key,
                        Running {
                            handle,
                            until: None,
                            kind: "model",
                            started: std::time::Instant::now(),
                        },
                    )
                }
                Perform::Tool(key, call) => {
                    let call = ToolCall {
                        id: key.clone(),
                        ..call
                    };
                    let handle = perform::tool(
                        &self.host,
                        &self.tx,
                        (self.log, &self.tenant),
                        call,
                        &self.deltas,
                        &self.workspace,
                        self.ledger.next_seq,
                    );
                    (
                        key,
                        Running {
                            handle,
                            until: None,
                            kind: "tool",
                            started: std::time::Instant::now(),
                        },
                    )
                }
                Perform::Compact(..) | Perform::Send(..) => continue,
                Perform::Timer(key, until) => {
                    let handle = perform::timer(&self.tx, self.log, key.clone(), until);
                    (
                        key,
                        Running {
                            handle,
                            until: Some(until),
                            kind: "timer",
                            started: std::time::Instant::now(),
                        },
                    )
                }
            };
            if let Some(old) = self.running.insert(key, running) {
                old.handle.abort();
            }
        }
    }

    /// A turn ends when no model or tool call is in flight: what is left
    /// waits on a human or a timer.
    fn end_turn(&mut self) {
        if let Some(started) = self.turn
            && !self.running.values().any(|r| r.until.is_none())
        {
            self.turn = None;
            self.series.turn_done(started.elapsed().as_secs_f64());
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
        if self.ledger.parked.is_some() {
            return Some(Activity::Failed);
        }
        if self.ledger.finished.is_some() {
            return Some(Activity::Finished);
        }
        if self.ledger.stopped.is_some() {
            return Some(Activity::Stopped);
        }
        // Another writer appended what this actor has yet to absorb (a
        // send's input, say): it is not idle before it has reacted.
        if *self.host.journal.watch_head(self.log).borrow() > self.ledger.next_seq {
            return None;
        }
        let horizon = now.saturating_add(horizon.as_millis() as u64);
        let mut sleeping = false;
        for running in self.running.values() {
            match running.until {
                Some(until) if until > horizon => sleeping = true,
                _ => return None,
            }
        }
        Some(if self.ledger.keys.awaiting_human() {
            Activity::WaitingApproval
        } else if sleeping {
            Activity::Sleeping
        } else {
            Activity::Idle
        })
    }
}

/// The tool result a denied call completes with: the model can read it.
pub(super) fn denied(key: String, by: &str, reason: Option<&str>) -> EventBody {
    let reason = reason.map(|r| format!(": {r}")).unwrap_or_default();
    EventBody::Completed {
        key,
        outcome: Outcome::tool_text(format!("denied by {by}{reason}"), true),
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
            // Not `Stopped`, which tells callers that nothing was done and
            // the request may go again: a commit that failed may have been
            // written all the same (its acknowledgement lost), and a retry
            // would log the input twice.
            let _ = reply.send(Err(failed_commit(&e)));
            ControlFlow::Break(e)
        }
    }
}

/// Answer a caller whose request may be refused before anything is written
/// (a stop of a stopped session, ...): a refusal leaves the actor running.
fn answer_refusal(
    reply: oneshot::Sender<Result<u64, SessionError>>,
    result: Result<u64, SessionError>,
) -> ControlFlow<SessionError> {
    match result {
        Err(
            e @ (SessionError::AlreadyStopped(_)
            | SessionError::NotStopped(_)
            | SessionError::Finished(_)),
        ) => {
            let _ = reply.send(Err(e));
            ControlFlow::Continue(())
        }
        other => answer(reply, other),
    }
}

/// What a caller whose request the failed commit held is told.
fn failed_commit(e: &SessionError) -> SessionError {
    match e {
        SessionError::Journal(e) => SessionError::Journal(e.clone()),
        // Refused memory before the commit: nothing was written.
        SessionError::Guest(GuestError::MemoryBudget(spent)) => {
            SessionError::Guest(GuestError::MemoryBudget(spent.clone()))
        }
        other => SessionError::Unavailable(other.to_string()),
    }
}
