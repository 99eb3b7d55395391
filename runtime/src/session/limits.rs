//! Rate and budget limits: what stops a guest that loops (issue #10).
//!
//! A guest that sleeps 0 ms after every timer, or calls the model after
//! every answer, would append events for ever. Before an advance performs
//! anything the guest asked for, the actor checks the limits of its tenant
//! (`[limits]`, overridden per tenant); past one, it appends
//! `stopped {by: "logbook", reason}` instead, and the session stays stopped
//! until an operator resumes it (session::stop).
//!
//! Invariants:
//! - Counting is O(1) per commit: a sliding window of one minute in
//!   one-second buckets ([`Window`]) per session (in its actor) and per
//!   tenant (on this host, in [`Shared`](super::Shared)).
//! - The windows are memory only: after a restart they start empty, which
//!   is honest for a rate (a loop is stopped within a minute again), and a
//!   stopped session stays stopped because the stop is in its log.
//! - The lifetime budgets ([`Spent`]) are a projection of the log: model
//!   calls are its model `requested` events, tokens the `usage` of its model
//!   `completed` events, both since its last `resumed` (an operator's resume
//!   grants a fresh budget) or its `created` (a fork starts afresh). They
//!   are kept with the keys, in snapshots too, so every replay counts alike.
//! - A limit of 0 is no limit.

use serde::{Deserialize, Serialize};

use crate::config::Limits;
use crate::journal::{EventBody, Outcome, RequestedEffect};

/// Seconds in a window.
const WINDOW_SECONDS: usize = 60;

/// Events counted over the last minute, in one-second buckets.
#[derive(Debug)]
pub(crate) struct Window {
    buckets: [u64; WINDOW_SECONDS],
    /// The second (unix) of the newest bucket.
    newest: u64,
    total: u64,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            buckets: [0; WINDOW_SECONDS],
            newest: 0,
            total: 0,
        }
    }
}

impl Window {
    /// Forget the buckets older than a minute before `second`: at most a
    /// minute's worth of buckets, however long since the last call.
    fn slide(&mut self, second: u64) {
        if second <= self.newest {
            return;
        }
        let gap = (second - self.newest).min(WINDOW_SECONDS as u64);
        for s in 1..=gap {
            let slot = ((self.newest + s) % WINDOW_SECONDS as u64) as usize;
            self.total -= self.buckets[slot];
            self.buckets[slot] = 0;
        }
        self.newest = second;
    }

    /// What was counted in the minute up to `second`.
    pub(crate) fn count(&mut self, second: u64) -> u64 {
        self.slide(second);
        self.total
    }

    /// Count `n` at `second`.
    pub(crate) fn add(&mut self, second: u64, n: u64) {
        self.slide(second);
        let slot = (self.newest % WINDOW_SECONDS as u64) as usize;
        self.buckets[slot] += n;
        self.total += n;
    }
}

/// What a log spent on models since its last `resumed` or its `created`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Spent {
    /// Model calls requested.
    pub(crate) model_calls: u64,
    /// Tokens read and written, from the responses' `usage`.
    pub(crate) tokens: u64,
}

impl Spent {
    /// The rule, event after event.
    pub(crate) fn note(&mut self, body: &EventBody) {
        match body {
            EventBody::Requested {
                effect: RequestedEffect::Model { .. },
                ..
            } => self.model_calls += 1,
            EventBody::Completed {
                outcome: Outcome::Model(r),
                ..
            } => {
                // Unknown usage counts nothing: the limit sees only what
                // providers report.
                let usage = r.usage.unwrap_or_default();
                self.tokens = self
                    .tokens
                    .saturating_add(usage.input_tokens)
                    .saturating_add(usage.output_tokens);
            }
            EventBody::Resumed { .. } | EventBody::Created(_) => *self = Spent::default(),
            _ => {}
        }
    }
}

/// One session's windows, in its actor.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    pub(crate) effects: Window,
    pub(crate) model_calls: Window,
}

/// What a commit is about to add, for [`over`].
pub(crate) struct Ask {
    /// Effects the commit starts (model calls, tool calls, timers).
    pub(crate) effects: u64,
    /// Model calls it starts.
    pub(crate) model_calls: u64,
}

/// The first limit the commit would go past, as the reason of a `stopped`:
/// the limit, its value and what was counted. `tenant_effects` is the
/// tenant's window, counted before this commit; `spent` what the log spent
/// with this commit's events (a `resumed` among them starts afresh).
pub(crate) fn over(
    limits: &Limits,
    rates: &mut Rates,
    tenant_effects: u64,
    spent: Spent,
    ask: &Ask,
    second: u64,
) -> Option<String> {
    let session_effects = rates.effects.count(second);
    let limit = limits.session_effects_per_minute;
    if limit != 0 && session_effects + ask.effects > limit {
        return Some(format!(
            "limit session_effects_per_minute = {limit}: {session_effects} effects started in the last minute, and {} more asked",
            ask.effects
        ));
    }
    let limit = limits.tenant_effects_per_minute;
    if limit != 0 && tenant_effects + ask.effects > limit {
        return Some(format!(
            "limit tenant_effects_per_minute = {limit}: {tenant_effects} effects started by the tenant's sessions on this host in the last minute, and {} more asked",
            ask.effects
        ));
    }
    if ask.model_calls == 0 {
        return None;
    }
    let calls = rates.model_calls.count(second);
    let limit = limits.session_model_calls_per_minute;
    if limit != 0 && calls + ask.model_calls > limit {
        return Some(format!(
            "limit session_model_calls_per_minute = {limit}: {calls} model calls in the last minute, and {} more asked",
            ask.model_calls
        ));
    }
    let limit = limits.session_model_calls;
    if limit != 0 && spent.model_calls > limit {
        return Some(format!(
            "limit session_model_calls = {limit}: {} model calls asked since the session began or was last resumed",
            spent.model_calls
        ));
    }
    let limit = limits.session_tokens;
    if limit != 0 && spent.tokens >= limit {
        return Some(format!(
            "limit session_tokens = {limit}: {} tokens used since the session began or was last resumed",
            spent.tokens
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_forgets_what_is_older_than_a_minute() {
        let mut w = Window::default();
        w.add(1_000, 5);
        w.add(1_030, 7);
        assert_eq!(w.count(1_030), 12);
        assert_eq!(w.count(1_059), 12);
        assert_eq!(w.count(1_060), 7);
        assert_eq!(w.count(1_089), 7);
        assert_eq!(w.count(1_090), 0);
        w.add(5_000, 1);
        assert_eq!(w.count(5_000), 1);
    }

    #[test]
    fn the_first_limit_passed_is_named() {
        let limits = Limits {
            session_effects_per_minute: 10,
            session_model_calls_per_minute: 2,
            ..Limits::default()
        };
        let mut rates = Rates::default();
        rates.effects.add(100, 9);
        let ask = Ask {
            effects: 2,
            model_calls: 0,
        };
        let reason = over(&limits, &mut rates, 0, Spent::default(), &ask, 100);
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.starts_with("limit session_effects_per_minute = 10: 9 effects")),
            "{reason:?}"
        );
        rates.model_calls.add(100, 2);
        let ask = Ask {
            effects: 1,
            model_calls: 1,
        };
        let reason = over(&limits, &mut rates, 0, Spent::default(), &ask, 100);
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.starts_with("limit session_model_calls_per_minute = 2")),
            "{reason:?}"
        );
    }
}
