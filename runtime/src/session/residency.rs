//! Which sessions are resident (have a live actor and guest instance), and
//! which go first when there are too many.
//!
//! Invariants:
//! - at most one actor per log in a process: an entry is replaced only after
//!   its actor has stopped (its command channel is closed);
//! - eviction is a request: an actor with an effect in flight (other than a
//!   timer) or a caller waiting on it refuses it, so the bound on resident
//!   instances can be exceeded while every resident is busy, never by
//!   abandoning work;
//! - eviction for memory (session::memory) picks the least recently used
//!   idle actors until what they hold, as they last reported it, covers
//!   what is short; memory of actors asked to leave is counted as on its
//!   way back;
//! - a dormant session with a pending timer is woken by the `TimerWaker` when
//!   the timer is due: sleeping costs no memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Command, Session};
use crate::journal::LogId;

/// What an actor tells the residency table about itself.
#[derive(Debug, Default)]
pub(crate) struct ActorState {
    /// An effect other than a timer is in flight, or a caller is waiting.
    busy: AtomicBool,
    /// The host asked it to go and it has not refused: it no longer counts
    /// toward the bound, and is not asked again.
    leaving: AtomicBool,
    /// Bytes of linear memory its guest instance held after its last call.
    memory: AtomicUsize,
}

impl ActorState {
    pub(crate) fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Relaxed);
    }

    /// Note what the actor's guest instance holds now.
    pub(crate) fn set_memory(&self, bytes: usize) {
        self.memory.store(bytes, Ordering::Relaxed);
    }

    fn memory(&self) -> usize {
        self.memory.load(Ordering::Relaxed)
    }

    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
    }

    /// The actor refused to go (it had work in flight): count it again.
    pub(crate) fn stays(&self) {
        self.leaving.store(false, Ordering::Relaxed);
    }

    fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Relaxed)
    }
}

pub(crate) struct Resident {
    pub(crate) session: Session,
    pub(crate) task: tokio::task::JoinHandle<()>,
    pub(crate) state: Arc<ActorState>,
    pub(crate) tenant: String,
    pub(crate) generation: u64,
    stamp: u64,
}

#[derive(Default)]
struct Table {
    by_log: HashMap<LogId, Resident>,
    /// Least recently used first: (stamp, log).
    lru: BTreeSet<(u64, LogId)>,
    per_tenant: HashMap<String, usize>,
    clock: u64,
    /// The last actor generation handed out: tells an actor apart from an
    /// earlier or later one for the same log.
    generations: u64,
}

/// The resident actors of a host.
#[derive(Default)]
pub(crate) struct Residents {
    table: Mutex<Table>,
    /// Actors taken out of the table and told to stop, until they have:
    /// `Host::close` waits for them.
    stopping: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Residents {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live session of a log, marked as just used.
    pub(crate) fn touch(&self, log: LogId) -> Option<Session> {
        let mut table = self.lock();
        let table = &mut *table;
        let resident = table.by_log.get_mut(&log)?;
        if resident.session.commands.is_closed() {
            return None;
        }
        table.clock += 1;
        table.lru.remove(&(resident.stamp, log));
        resident.stamp = table.clock;
        table.lru.insert((resident.stamp, log));
        Some(resident.session.clone())
    }

    /// The live session of a log, or a new actor for it started by `start`
    /// (given the actor's generation), recorded in place of a stopped one.
    /// Check and start happen under one lock, so two callers never start
    /// two actors for one log; `start` must only spawn, never wait.
    pub(crate) fn get_or_start(
        &self,
        log: LogId,
        tenant: &str,
        start: impl FnOnce(u64, Arc<ActorState>) -> (Session, tokio::task::JoinHandle<()>),
    ) -> Session {
        let mut table = self.lock();
        let table = &mut *table;
        table.clock += 1;
        let stamp = table.clock;
        if let Some(resident) = table.by_log.get_mut(&log)
            && !resident.session.commands.is_closed()
        {
            table.lru.remove(&(resident.stamp, log));
            resident.stamp = stamp;
            table.lru.insert((stamp, log));
            return resident.session.clone();
        }
        if let Some(old) = table.by_log.remove(&log) {
            table.lru.remove(&(old.stamp, log));
            decrement(&mut table.per_tenant, &old.tenant);
        }
        table.generations += 1;
        let generation = table.generations;
        let state = Arc::new(ActorState::default());
        let (session, task) = start(generation, state.clone());
        *table.per_tenant.entry(tenant.to_string()).or_default() += 1;
        table.lru.insert((stamp, log));
        table.by_log.insert(
            log,
            Resident {
                session: session.clone(),
                task,
                state,
                tenant: tenant.to_string(),
                generation,
                stamp,
            },
        );
        session
    }

    /// Take an actor out of the table, to stop it: the next activation of
    /// its log starts a new one.
    pub(crate) fn take(&self, log: LogId) -> Option<Resident> {
        let mut table = self.lock();
        let old = table.by_log.remove(&log)?;
        table.lru.remove(&(old.stamp, log));
        decrement(&mut table.per_tenant, &old.tenant);
        Some(old)
    }

    /// Forget an actor that stopped, unless a newer one took its place.
    pub(crate) fn remove(&self, log: LogId, generation: u64) {
        let mut table = self.lock();
        if table
            .by_log
            .get(&log)
            .is_some_and(|r| r.generation == generation)
            && let Some(old) = table.by_log.remove(&log)
        {
            table.lru.remove(&(old.stamp, log));
            decrement(&mut table.per_tenant, &old.tenant);
        }
    }

    /// Ask the least recently used idle actors to go until at most `keep`
    /// remain (of `tenant` only, when given). Returns how many were asked.
    pub(crate) fn evict_down_to(&self, keep: usize, tenant: Option<&str>) -> usize {
        let table = self.lock();
        let staying = |r: &Resident| staying(r, tenant);
        let count = table.by_log.values().filter(|r| staying(r)).count();
        let mut excess = count.saturating_sub(keep);
        let mut asked = 0;
        for (_, log) in &table.lru {
            if excess == 0 {
                break;
            }
            let Some(resident) = table.by_log.get(log) else {
                continue;
            };
            if !staying(resident) || resident.state.is_busy() {
                continue;
            }
            // The actor removes itself once it has stopped.
            resident.state.leaving.store(true, Ordering::Relaxed);
            let _ = resident.session.commands.send(Command::Evict);
            excess -= 1;
            asked += 1;
        }
        asked
    }

    /// Ask the least recently used idle actors (of `tenant` only, when
    /// given) to go until the memory of those leaving covers `short` bytes.
    /// Returns the bytes on their way back: those of actors asked now and
    /// of those asked before; 0 when none is leaving nor can be asked.
    pub(crate) fn evict_memory(&self, short: usize, tenant: Option<&str>) -> usize {
        let table = self.lock();
        let in_scope = |r: &Resident| tenant.is_none_or(|t| t == r.tenant);
        let mut coming = table
            .by_log
            .values()
            .filter(|r| in_scope(r) && r.state.is_leaving())
            .map(|r| r.state.memory())
            .sum::<usize>();
        for (_, log) in &table.lru {
            if coming >= short {
                break;
            }
            let Some(resident) = table.by_log.get(log) else {
                continue;
            };
            let memory = resident.state.memory();
            if !staying(resident, tenant) || resident.state.is_busy() || memory == 0 {
                continue;
            }
            resident.state.leaving.store(true, Ordering::Relaxed);
            let _ = resident.session.commands.send(Command::Evict);
            coming = coming.saturating_add(memory);
        }
        coming
    }

    /// The live session of a log, without marking it used.
    pub(crate) fn peek(&self, log: LogId) -> Option<Session> {
        let table = self.lock();
        let resident = table.by_log.get(&log)?;
        (!resident.session.commands.is_closed()).then(|| resident.session.clone())
    }

    /// How many resident actors are staying (not asked to leave), of
    /// `tenant` when given: what the bounds are checked against.
    pub(crate) fn staying(&self, tenant: Option<&str>) -> usize {
        let table = self.lock();
        table.by_log.values().filter(|r| staying(r, tenant)).count()
    }

    /// The tenant of a resident log.
    pub(crate) fn tenant_of(&self, log: LogId) -> Option<String> {
        self.lock().by_log.get(&log).map(|r| r.tenant.clone())
    }

    /// How many actors are resident (of `tenant`, when given).
    pub(crate) fn count(&self, tenant: Option<&str>) -> usize {
        let table = self.lock();
        match tenant {
            Some(t) => table.per_tenant.get(t).copied().unwrap_or(0),
            None => table.by_log.len(),
        }
    }

    /// Keep the task of an actor told to stop, so that closing the host
    /// can wait for it.
    pub(crate) fn stopping(&self, task: tokio::task::JoinHandle<()>) {
        let mut stopping = self.stopping.lock().unwrap_or_else(|p| p.into_inner());
        stopping.retain(|t| !t.is_finished());
        stopping.push(task);
    }

    /// The actors told to stop that may still be running.
    pub(crate) fn take_stopping(&self) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(&mut *self.stopping.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Take every resident out, to stop them.
    pub(crate) fn drain(&self) -> Vec<Resident> {
        let mut table = self.lock();
        table.lru.clear();
        table.per_tenant.clear();
        table.by_log.drain().map(|(_, r)| r).collect()
    }
}

fn staying(resident: &Resident, tenant: Option<&str>) -> bool {
    !resident.state.is_leaving() && tenant.is_none_or(|t| t == resident.tenant)
}

fn decrement(counts: &mut HashMap<String, usize>, tenant: &str) {
    if let Some(n) = counts.get_mut(tenant) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(tenant);
        }
    }
}

/// Wakes dormant sessions when their timers are due.
pub(crate) struct TimerWaker {
    register: mpsc::UnboundedSender<(u64, LogId)>,
}

impl TimerWaker {
    /// Start the waker; `wake` activates a log (it holds the host weakly, so
    /// the waker stops when the host goes).
    pub(crate) fn start<F>(wake: F) -> TimerWaker
    where
        F: Fn(LogId) -> bool + Send + 'static,
    {
        let (register, mut incoming) = mpsc::unbounded_channel::<(u64, LogId)>();
        tokio::spawn(async move {
            let mut due: BTreeMap<(u64, LogId), ()> = BTreeMap::new();
            loop {
                let next = due.keys().next().copied();
                let wait = match next {
                    Some((until, _)) => {
                        Duration::from_millis(until.saturating_sub(super::now_ms()))
                    }
                    None => Duration::from_secs(3600),
                };
                tokio::select! {
                    registered = incoming.recv() => match registered {
                        Some(entry) => { due.insert(entry, ()); }
                        None => break,
                    },
                    () = tokio::time::sleep(wait), if next.is_some() => {
                        let now = super::now_ms();
                        let fired: Vec<_> = due.range(..=(now, LogId::max())).map(|(k, ())| *k).collect();
                        for key in fired {
                            due.remove(&key);
                            if !wake(key.1) {
                                return;
                            }
                        }
                    }
                }
            }
        });
        TimerWaker { register }
    }

    /// Wake `log` at `until_ms` (unix ms), if it is dormant then.
    pub(crate) fn wake_at(&self, until_ms: u64, log: LogId) {
        let _ = self.register.send((until_ms, log));
    }
}
