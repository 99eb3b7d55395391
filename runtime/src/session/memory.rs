//! Making room under the memory budgets (guest::memory counts them).
//!
//! Invariants:
//! - an activation finds room or is refused before anything of its request
//!   is written: when the tenant's or the host's budget is spent, the least
//!   recently used idle instances hibernate first (the tenant's own for its
//!   budget, any for the host's), and only when none can go, or they do not
//!   give back enough within [`ROOM_WAIT`], is the request refused with
//!   [`GuestError::MemoryBudget`] (HTTP 429 `memory_budget`);
//! - a resident guest's calls are refused a growth past a budget only where
//!   nothing of the call is durable yet: its replay on activation, and the
//!   fold of an input or a decision (the actor stops, the request is refused,
//!   nothing is appended, and the request may go again once there is room).
//!   A call that folds what is durable already (an effect's result, events
//!   another worker appended) may overdraw, by at most one instance's
//!   `memory_per_instance`; the host then hibernates idle instances, this one
//!   last, until it is back under.

use std::time::Duration;

use super::{SessionError, Shared};
use crate::guest::{BudgetExceeded, BudgetScope, GuestError};

/// How long an activation waits for hibernating instances to give their
/// memory back before it is refused.
pub(crate) const ROOM_WAIT: Duration = Duration::from_secs(5);

/// How many times one request makes room and tries again after its
/// activation was refused memory.
pub(crate) const ROOM_TRIES: usize = 3;

impl Shared {
    /// A tenant's own memory budget, if it has one.
    pub(crate) fn tenant_memory_budget(&self, tenant: &str) -> Option<usize> {
        self.config
            .tenants
            .get(tenant)
            .and_then(|t| t.limits.memory_budget_bytes)
    }

    /// Make room for `wanted` more bytes of `tenant`'s guests: hibernate
    /// idle instances and wait until they have given back enough. Refused
    /// with the budget that stays spent.
    pub(crate) async fn make_room(&self, tenant: &str, wanted: usize) -> Result<(), SessionError> {
        let limit = self.tenant_memory_budget(tenant);
        let deadline = tokio::time::Instant::now() + ROOM_WAIT;
        loop {
            let released = self.memory.next_release();
            let Some(spent) = self.memory.spent(tenant, limit, wanted) else {
                return Ok(());
            };
            let refused = || SessionError::Guest(GuestError::MemoryBudget(spent.clone()));
            if self.evict_for(&spent) == 0 {
                return Err(refused());
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(refused());
            }
        }
    }

    /// Ask idle instances to hibernate until what they hold covers what
    /// `spent` is short of; the bytes on their way back.
    fn evict_for(&self, spent: &BudgetExceeded) -> usize {
        let tenant = match &spent.scope {
            BudgetScope::Tenant(t) => Some(t.as_str()),
            BudgetScope::Host => None,
        };
        self.residents.evict_memory(spent.short(), tenant)
    }

    /// After a call that may have overdrawn: when `tenant`'s or the host's
    /// account is over its budget, ask idle instances to hibernate. `false`
    /// when none can, and the caller (the instance that overdrew) should go
    /// itself once idle.
    pub(crate) fn relieve(&self, tenant: &str) -> bool {
        let (tenant_over, host_over) = self.memory.over(tenant);
        let mut relieved = true;
        if tenant_over > 0 {
            relieved &= self.residents.evict_memory(tenant_over, Some(tenant)) > 0;
        }
        if host_over > 0 {
            relieved &= self.residents.evict_memory(host_over, None) > 0;
        }
        relieved
    }
}

/// The budget a request was refused for, if that is why it failed.
pub(crate) fn refused_for(e: &SessionError) -> Option<&BudgetExceeded> {
    match e {
        SessionError::Guest(GuestError::MemoryBudget(spent)) => Some(spent),
        _ => None,
    }
}
