//! One live guest instance: a store, the agent's exports, and the budget of
//! each call.
//!
//! Invariant: every call's fuel is [`Limits::fuel_for`] of what the call
//! hands the guest (events, and bytes of text: event text, a key, a
//! snapshot), so a large input gets the fuel to fold it and the same log
//! gets the same fuel on every host with the same limits.

use wasmtime::Store;

use super::GuestError;
use super::bindings::Agent;
use super::convert;
use super::sandbox::Sandbox;
use crate::config::Limits;
use crate::effects::{Effect, EffectBody};
use crate::journal::{Created, Event, EventBody};

/// Events in the guest's own types, ready to fold. Converting is apart from
/// folding so that a replay can convert the next page while the guest folds
/// this one.
pub struct GuestBatch {
    events: Vec<super::bindings::wit::Event>,
    /// The bytes of text the events hand the guest (`EventBody::text_bytes`).
    bytes: u64,
}

impl GuestBatch {
    /// Convert events for a guest, leaving out those no guest is handed
    /// (`EventBody::for_guest`).
    pub fn new(events: &[Event]) -> GuestBatch {
        GuestBatch::of(events.iter())
    }

    /// [`GuestBatch::new`] of the events an iterator gives.
    pub fn of<'e>(events: impl Iterator<Item = &'e Event>) -> GuestBatch {
        let mut bytes = 0u64;
        let events = events
            .filter_map(|e| {
                let converted = convert::event(e)?;
                bytes = bytes.saturating_add(e.body.text_bytes());
                Some(converted)
            })
            .collect();
        GuestBatch { events, bytes }
    }

    /// How many events the batch holds.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// A live guest. After any error it must be dropped: its state is undefined.
pub struct GuestInstance {
    store: Store<Sandbox>,
    agent: Agent,
    seed: u64,
    limits: Limits,
}

impl GuestInstance {
    pub(super) fn new(store: Store<Sandbox>, agent: Agent, seed: u64, limits: Limits) -> Self {
        GuestInstance {
            store,
            agent,
            seed,
            limits,
        }
    }

    fn prepare(&mut self, seq: u64, at: u64, fuel: u64) -> Result<(), GuestError> {
        self.store.data().set_moment(self.seed, seq, at);
        self.store
            .set_fuel(fuel)
            .map_err(|e| GuestError::Instantiate(format!("{e:#}")))
    }

    /// After a call of export `call` with budget `fuel`: the guest's
    /// output to the trace, the fuel it used to the trace
    /// (`logbook::guest::fuel`, how `fuel_per_byte` is measured), and its
    /// error classified.
    fn finish<T>(
        &mut self,
        call: &'static str,
        fuel: u64,
        result: wasmtime::Result<T>,
    ) -> Result<T, GuestError> {
        let used = fuel.saturating_sub(self.store.get_fuel().unwrap_or(0));
        tracing::trace!(target: "logbook::guest::fuel", call, fuel, used, "guest call");
        let printed = self.store.data().take_output();
        if !printed.is_empty() {
            tracing::debug!(target: "logbook::guest", "{}", printed.trim_end());
        }
        result.map_err(|e| classify(e, fuel, self.limits.memory_per_instance, &printed))
    }

    /// Whether this instance's calls may grow its memory past the budgets it
    /// is charged to (guest::memory): for calls that fold what is durable
    /// already, which a refusal would lose. Off, a growth past a budget fails
    /// the call with [`GuestError::MemoryBudget`]. No effect without a charge.
    pub fn overdraw(&mut self, allowed: bool) {
        if let Some(charge) = self.store.data().limits.charge() {
            charge
                .overdraw_switch()
                .store(allowed, std::sync::atomic::Ordering::Release);
        }
    }

    /// Bytes of linear memory the instance holds, as its charge counts them
    /// (0 without a charge).
    pub fn memory_bytes(&self) -> usize {
        self.store
            .data()
            .limits
            .charge()
            .map_or(0, super::MemoryCharge::held)
    }

    /// Start from a new log's `created` event.
    pub fn init(&mut self, created: &Created, at: u64) -> Result<(), GuestError> {
        let bytes = EventBody::Created(created.clone()).text_bytes();
        let fuel = self.limits.fuel_for(0, bytes);
        self.prepare(0, at, fuel)?;
        let created = convert::created(created);
        let result = self.agent.call_init(&mut self.store, &created);
        self.finish("init", fuel, result)
    }

    /// Start from a snapshot; `false` when the guest cannot use it.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<bool, GuestError> {
        let fuel = self.limits.fuel_for(0, snapshot.len() as u64);
        self.prepare(0, 0, fuel)?;
        let result = self.agent.call_restore(&mut self.store, snapshot);
        self.finish("restore", fuel, result)
    }

    /// Fold events, in order. The budget scales with the number of events
    /// and their bytes.
    pub fn apply(&mut self, events: &[Event]) -> Result<(), GuestError> {
        self.apply_batch(&GuestBatch::new(events))
    }

    /// Fold events converted beforehand (perhaps on another thread).
    pub fn apply_batch(&mut self, batch: &GuestBatch) -> Result<(), GuestError> {
        let Some(first) = batch.events.first() else {
            return Ok(());
        };
        let fuel = self.limits.fuel_for(batch.events.len() as u64, batch.bytes);
        self.prepare(first.seq, first.at, fuel)?;
        let result = self.agent.call_apply(&mut self.store, &batch.events);
        self.finish("apply", fuel, result)
    }

    /// The keys of the effects the guest wants outstanding now.
    pub fn wanted_keys(&mut self) -> Result<Vec<String>, GuestError> {
        let fuel = self.limits.fuel_for(0, 0);
        self.store
            .set_fuel(fuel)
            .map_err(|e| GuestError::Instantiate(format!("{e:#}")))?;
        let result = self.agent.call_wanted_keys(&mut self.store);
        self.finish("wanted_keys", fuel, result)
    }

    /// The effect the guest wants under `key`; `None` when it wants none.
    /// `base`: the key of a model call whose whole request the caller holds,
    /// which a model request may extend (`model-request.extends`); a request
    /// that extends anything else breaks the contract, and is a trap.
    pub fn effect(&mut self, key: &str, base: Option<&str>) -> Result<Option<Effect>, GuestError> {
        let fuel = self.limits.fuel_for(0, key.len() as u64);
        self.store
            .set_fuel(fuel)
            .map_err(|e| GuestError::Instantiate(format!("{e:#}")))?;
        let result = self.agent.call_effect(&mut self.store, key, base);
        let body = self.finish("effect", fuel, result)?;
        let effect = body.map(|body| convert::from_effect(key.to_string(), body));
        if let Some(Effect {
            body: EffectBody::Model(request),
            ..
        }) = &effect
            && let Some(extends) = &request.extends
            && Some(extends.as_str()) != base
        {
            return Err(GuestError::Trap(format!(
                "model request {key:?} extends model call {extends:?}, which the host did not offer as its base"
            )));
        }
        Ok(effect)
    }

    /// Every effect the guest wants outstanding now, with its body: for the
    /// checks that compare a guest with a log, not for the hot path (which
    /// asks only for the bodies of keys its log has not recorded).
    pub fn effects(&mut self) -> Result<Vec<Effect>, GuestError> {
        let mut effects = Vec::new();
        for key in self.wanted_keys()? {
            if let Some(effect) = self.effect(&key, None)? {
                effects.push(effect);
            }
        }
        Ok(effects)
    }

    /// The guest's state, if it can give one.
    pub fn snapshot(&mut self) -> Result<Option<Vec<u8>>, GuestError> {
        let fuel = self.limits.fuel_for(0, 0);
        self.store
            .set_fuel(fuel)
            .map_err(|e| GuestError::Instantiate(format!("{e:#}")))?;
        let result = self.agent.call_snapshot(&mut self.store);
        self.finish("snapshot", fuel, result)
    }
}

fn classify(error: wasmtime::Error, fuel: u64, limit: usize, printed: &str) -> GuestError {
    if let Some(spent) = error.downcast_ref::<super::BudgetExceeded>() {
        return GuestError::MemoryBudget(spent.clone());
    }
    let trap = error.downcast_ref::<wasmtime::Trap>().copied();
    if trap == Some(wasmtime::Trap::OutOfFuel) {
        return GuestError::OutOfFuel { fuel };
    }
    // The outermost message is a wasm backtrace; the cause is on the last line.
    let full = format!("{error:#}");
    let cause = full.lines().last().unwrap_or_default().trim();
    let cause = cause
        .rsplit_once(": ")
        .map_or(cause, |(_, c)| c)
        .to_string();
    if full.contains("growing memory") {
        return GuestError::OutOfMemory {
            limit,
            detail: cause,
        };
    }
    let reason = trap.map_or(cause, |t| t.to_string());
    let printed = printed.trim();
    if printed.is_empty() {
        GuestError::Trap(reason)
    } else {
        GuestError::Trap(format!("{reason}; the guest printed: {printed}"))
    }
}
