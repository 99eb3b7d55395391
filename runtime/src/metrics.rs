//! The host's metrics, in Prometheus (OpenMetrics) text form at `/metrics`.
//!
//! Counters of the journal are read from its writer when scraped; latencies
//! are recorded where they happen (activation in the host, effects, turns
//! and inputs in the actor, model calls where they are performed). Counters
//! only go up (`_total` in the exposition). Nothing here carries a session's
//! data: labels are kinds and tenant names (which the operator configures),
//! never session names or content.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the effect latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct EffectLabels {
    /// `model`, `tool` or `timer`.
    pub kind: &'static str,
}

/// Labels of a per-tenant series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct TenantLabels {
    /// The tenant.
    pub tenant: String,
}

/// Labels of the per-tenant effect counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct TenantEffectLabels {
    /// The tenant.
    pub tenant: String,
    /// `model`, `tool` or `timer`.
    pub kind: &'static str,
}

/// The kinds of effect an actor performs, as the effect series label them.
const EFFECT_KINDS: [&str; 3] = ["model", "tool", "timer"];

/// One tenant's series ([`Metrics::tenant`]): handles on the same counters
/// and histogram that the exposition reads.
#[derive(Clone, Debug)]
pub struct TenantSeries {
    inputs: Counter,
    turn_seconds: Histogram,
    /// By [`EFFECT_KINDS`].
    effects: [Counter; 3],
}

impl TenantSeries {
    /// Count an input appended to one of the tenant's sessions.
    pub fn input(&self) {
        self.inputs.inc();
    }

    /// Record how long a turn of one of the tenant's sessions took.
    pub fn turn_done(&self, seconds: f64) {
        self.turn_seconds.observe(seconds);
    }
}

/// The host's metrics.
pub struct Metrics {
    registry: Registry,
    activation_seconds: Histogram,
    effect_seconds: Family<EffectLabels, Histogram>,
    turn_seconds: Family<TenantLabels, Histogram>,
    model_call_seconds: Histogram,
    inputs: Family<TenantLabels, Counter>,
    effects: Family<TenantEffectLabels, Counter>,
    resident: Gauge,
    guest_memory: Gauge,
    sessions: Gauge,
    appended_events: Counter,
    append_requests: Counter,
    fsync_batches: Counter,
    fed_events: Counter,
    encode: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set of metrics.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("logbook");
        let activation_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "activation_seconds",
            "Time to activate a dormant session (replay into a fresh guest)",
            activation_seconds.clone(),
        );
        let effect_seconds = Family::<EffectLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 20))
        });
        registry.register(
            "effect_seconds",
            "Time from an effect's request to its result, by kind",
            effect_seconds.clone(),
        );
        let turn_seconds = Family::<TenantLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 20))
        });
        registry.register(
            "turn_seconds",
            "Time from an input's commit until the session has no model call or tool call in flight (waiting on a human or a timer ends a turn), by tenant",
            turn_seconds.clone(),
        );
        let model_call_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 18));
        registry.register(
            "model_call_seconds",
            "Time of one attempt at a model call (a provider's answer, whole), retries counted apart",
            model_call_seconds.clone(),
        );
        let inputs = Family::<TenantLabels, Counter>::default();
        registry.register(
            "inputs",
            "Inputs appended by this host's sessions, by tenant",
            inputs.clone(),
        );
        let effects = Family::<TenantEffectLabels, Counter>::default();
        registry.register(
            "effects",
            "Effects completed (or failed for good) by this host's sessions, by tenant and kind",
            effects.clone(),
        );
        let resident = Gauge::default();
        registry.register(
            "resident_sessions",
            "Sessions with a live actor and guest instance",
            resident.clone(),
        );
        let guest_memory = Gauge::default();
        registry.register(
            "guest_memory_bytes",
            "Linear memory held by resident guest instances, as counted against [limits] memory_budget_bytes",
            guest_memory.clone(),
        );
        let sessions = Gauge::default();
        registry.register(
            "sessions",
            "Sessions (logs) in the journal",
            sessions.clone(),
        );
        let appended_events = Counter::default();
        registry.register(
            "appended_events",
            "Events appended to the journal since start",
            appended_events.clone(),
        );
        let append_requests = Counter::default();
        registry.register(
            "append_requests",
            "Commit requests answered by the journal writer since start",
            append_requests.clone(),
        );
        let fsync_batches = Counter::default();
        registry.register(
            "fsync_batches",
            "Group commits (one transaction and one fsync each) since start; appended_events / fsync_batches is the mean batch size",
            fsync_batches.clone(),
        );
        let fed_events = Counter::default();
        registry.register(
            "fed_events",
            "Events read from the journal and encoded for live observers; each is read once per host, however many observe its log",
            fed_events.clone(),
        );
        Metrics {
            registry,
            activation_seconds,
            effect_seconds,
            turn_seconds,
            model_call_seconds,
            inputs,
            effects,
            resident,
            guest_memory,
            sessions,
            appended_events,
            append_requests,
            fsync_batches,
            fed_events,
            encode: Mutex::new(()),
        }
    }

    /// Record how long an activation took.
    pub fn activated(&self, seconds: f64) {
        self.activation_seconds.observe(seconds);
    }

    /// Count events read and encoded for live observers.
    pub fn fed(&self, events: usize) {
        self.fed_events.inc_by(events as u64);
    }

    /// The per-tenant series of `tenant`, as handles an actor keeps: taken
    /// once when it starts, so its inputs, effects and turns are counted
    /// without looking the tenant's labels up (and copying its name) each time.
    pub fn tenant(&self, tenant: &str) -> TenantSeries {
        let labels = TenantLabels {
            tenant: tenant.to_string(),
        };
        let effects = EFFECT_KINDS.map(|kind| {
            self.effects
                .get_or_create(&TenantEffectLabels {
                    tenant: tenant.to_string(),
                    kind,
                })
                .clone()
        });
        TenantSeries {
            inputs: self.inputs.get_or_create(&labels).clone(),
            turn_seconds: self.turn_seconds.get_or_create(&labels).clone(),
            effects,
        }
    }

    /// Record how long an effect of a tenant's session took, from request to
    /// result, and count it in the tenant's `series`.
    pub fn effect_done(&self, series: &TenantSeries, kind: &'static str, seconds: f64) {
        self.effect_seconds
            .get_or_create(&EffectLabels { kind })
            .observe(seconds);
        if let Some(i) = EFFECT_KINDS.iter().position(|k| *k == kind) {
            series.effects[i].inc();
        }
    }

    /// Record how long one attempt at a model call took.
    pub fn model_call(&self, seconds: f64) {
        self.model_call_seconds.observe(seconds);
    }

    /// The text exposition, with the gauges set and the journal's counters
    /// brought up to the given readings.
    pub fn render(&self, readings: Readings) -> String {
        let _one_at_a_time = self.encode.lock().unwrap_or_else(|p| p.into_inner());
        self.resident.set(readings.resident as i64);
        self.guest_memory
            .set(i64::try_from(readings.guest_memory_bytes).unwrap_or(i64::MAX));
        self.sessions.set(readings.sessions as i64);
        // The writer counts since the journal opened; a counter only goes up.
        for (counter, reading) in [
            (&self.appended_events, readings.appended_events),
            (&self.append_requests, readings.append_requests),
            (&self.fsync_batches, readings.fsync_batches),
        ] {
            counter.inc_by(reading.saturating_sub(counter.get()));
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Values read at scrape time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Readings {
    /// Resident sessions.
    pub resident: usize,
    /// Bytes of linear memory their guest instances hold.
    pub guest_memory_bytes: usize,
    /// Logs in the journal.
    pub sessions: usize,
    /// Events appended since start.
    pub appended_events: u64,
    /// Commit requests since start.
    pub append_requests: u64,
    /// Group commits since start.
    pub fsync_batches: u64,
}
