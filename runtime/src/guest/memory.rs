//! Memory budgets: the linear memory that live guest instances hold, counted
//! against a host-wide budget and a per-tenant one.
//!
//! Invariants:
//! - every store made with a [`MemoryCharge`] counts its linear memories, in
//!   bytes as wasmtime sizes them, in its tenant's and the host's account:
//!   from their creation (wasmtime asks the store's limiter for the initial
//!   size too), at every growth, and until the store is dropped, which gives
//!   all of it back. Each update is O(1): two atomic additions;
//! - a growth that would take an account past its limit is refused with
//!   [`BudgetExceeded`] (the call fails, the instance must be dropped) unless
//!   the charge may overdraw: then it goes through, and the embedder makes
//!   room after the call (session::memory). So the accounts pass their
//!   limits by at most what overdrawing instances grew by, each at most its
//!   own `memory_per_instance`;
//! - a refused growth takes nothing from either account.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Which budget a growth would have passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BudgetScope {
    /// The host's `[limits] memory_budget_bytes`.
    Host,
    /// A tenant's `[tenants.NAME.limits] memory_budget_bytes`.
    Tenant(String),
}

impl std::fmt::Display for BudgetScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BudgetScope::Host => {
                write!(f, "the host's memory budget ([limits] memory_budget_bytes")
            }
            BudgetScope::Tenant(t) => write!(
                f,
                "tenant {t:?}'s memory budget ([tenants.{t}.limits] memory_budget_bytes"
            ),
        }
    }
}

/// A guest's memory would pass a budget: nothing was taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{scope} = {limit}) is spent: {used} bytes are held, and {wanted} more were asked for")]
pub struct BudgetExceeded {
    /// The budget that would be passed.
    pub scope: BudgetScope,
    /// Its limit, in bytes.
    pub limit: usize,
    /// What the account held when the growth was refused.
    pub used: usize,
    /// What the growth asked for.
    pub wanted: usize,
    /// What the instance that asked held before (0 for an activation's
    /// check): it needs room for this and `wanted` to go again.
    pub instance: usize,
}

impl BudgetExceeded {
    /// How many bytes must be given back before the growth fits.
    pub fn short(&self) -> usize {
        self.used
            .saturating_add(self.wanted)
            .saturating_sub(self.limit)
    }
}

/// One account: bytes held against a limit (0: none).
#[derive(Debug)]
struct Account {
    used: AtomicUsize,
    limit: usize,
}

impl Account {
    fn new(limit: usize) -> Account {
        Account {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Take `bytes`; past the limit only when `overdraw`. `Err(used)` when refused.
    fn take(&self, bytes: usize, overdraw: bool) -> Result<(), usize> {
        if self.limit == 0 || overdraw {
            self.used.fetch_add(bytes, Ordering::AcqRel);
            return Ok(());
        }
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let after = used.checked_add(bytes)?;
                (after <= self.limit).then_some(after)
            })
            .map(|_| ())
    }

    fn give(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Bytes over the limit (0 when under, or when there is no limit).
    fn over(&self) -> usize {
        if self.limit == 0 {
            0
        } else {
            self.used().saturating_sub(self.limit)
        }
    }
}

/// The host's memory budget and its tenants' accounts.
#[derive(Debug)]
pub struct MemoryBudget {
    host: Account,
    tenants: Mutex<HashMap<String, Arc<Account>>>,
    /// Signalled whenever memory is given back: what a caller making room waits on.
    released: tokio::sync::Notify,
}

impl MemoryBudget {
    /// A budget of `host_limit` bytes for all instances together (0: none).
    pub fn new(host_limit: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            host: Account::new(host_limit),
            tenants: Mutex::new(HashMap::new()),
            released: tokio::sync::Notify::new(),
        })
    }

    fn tenant(&self, tenant: &str, limit: Option<usize>) -> Arc<Account> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        tenants
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Account::new(limit.unwrap_or(0))))
            .clone()
    }

    /// A charge for one new instance of `tenant`, whose own budget is
    /// `tenant_limit` (fixed by the first charge of the tenant: the
    /// configuration does not change while the host runs).
    pub fn charge(self: &Arc<Self>, tenant: &str, tenant_limit: Option<usize>) -> MemoryCharge {
        MemoryCharge {
            budget: self.clone(),
            tenant: self.tenant(tenant, tenant_limit),
            tenant_name: tenant.to_string(),
            held: AtomicUsize::new(0),
            overdraw: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Bytes all instances hold.
    pub fn used(&self) -> usize {
        self.host.used()
    }

    /// Bytes the instances of `tenant` hold.
    pub fn tenant_used(&self, tenant: &str) -> usize {
        let tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        tenants.get(tenant).map_or(0, |a| a.used())
    }

    /// The budget an activation of `tenant` would find spent, if any: its
    /// own first, then the host's. `wanted` is the room it asks for.
    pub fn spent(
        &self,
        tenant: &str,
        tenant_limit: Option<usize>,
        wanted: usize,
    ) -> Option<BudgetExceeded> {
        let account = self.tenant(tenant, tenant_limit);
        let checks = [
            (BudgetScope::Tenant(tenant.to_string()), &*account),
            (BudgetScope::Host, &self.host),
        ];
        checks.into_iter().find_map(|(scope, account)| {
            let used = account.used();
            (account.limit != 0 && used.saturating_add(wanted) > account.limit).then_some(
                BudgetExceeded {
                    scope,
                    limit: account.limit,
                    used,
                    wanted,
                    instance: 0,
                },
            )
        })
    }

    /// How far `tenant`'s account and the host's are over their limits.
    pub fn over(&self, tenant: &str) -> (usize, usize) {
        let tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let tenant = tenants.get(tenant).map_or(0, |a| a.over());
        (tenant, self.host.over())
    }

    /// A future that completes at the next release: made before checking
    /// the accounts, so that a release between the check and the wait is
    /// not missed.
    pub fn next_release(&self) -> tokio::sync::futures::Notified<'_> {
        self.released.notified()
    }
}

/// What one instance holds against the budgets; gives it all back on drop.
#[derive(Debug)]
pub struct MemoryCharge {
    budget: Arc<MemoryBudget>,
    tenant: Arc<Account>,
    tenant_name: String,
    held: AtomicUsize,
    overdraw: Arc<AtomicBool>,
}

impl MemoryCharge {
    /// Take `bytes` more, or refuse naming the budget it would pass.
    pub(super) fn grow(&self, bytes: usize) -> Result<(), BudgetExceeded> {
        let overdraw = self.overdraw.load(Ordering::Acquire);
        if let Err(used) = self.tenant.take(bytes, overdraw) {
            return Err(BudgetExceeded {
                scope: BudgetScope::Tenant(self.tenant_name.clone()),
                limit: self.tenant.limit,
                used,
                wanted: bytes,
                instance: self.held(),
            });
        }
        if let Err(used) = self.budget.host.take(bytes, overdraw) {
            self.tenant.give(bytes);
            return Err(BudgetExceeded {
                scope: BudgetScope::Host,
                limit: self.budget.host.limit,
                used,
                wanted: bytes,
                instance: self.held(),
            });
        }
        self.held.fetch_add(bytes, Ordering::AcqRel);
        Ok(())
    }

    /// Bytes the instance holds.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Give back `bytes` taken for a growth that then failed.
    pub(super) fn shrink(&self, bytes: usize) {
        let bytes = bytes.min(self.held.load(Ordering::Acquire));
        self.held.fetch_sub(bytes, Ordering::AcqRel);
        self.tenant.give(bytes);
        self.budget.host.give(bytes);
        self.budget.released.notify_waiters();
    }

    /// The switch that lets this instance grow past the budgets (see the
    /// module doc): for calls whose input is durable already.
    pub(super) fn overdraw_switch(&self) -> Arc<AtomicBool> {
        self.overdraw.clone()
    }
}

impl Drop for MemoryCharge {
    fn drop(&mut self) {
        let held = self.held.swap(0, Ordering::AcqRel);
        self.tenant.give(held);
        self.budget.host.give(held);
        self.budget.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_is_refused_past_either_budget_and_gives_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let a = budget.charge("a", Some(60));
        let b = budget.charge("b", None);
        a.grow(50).expect("within both");
        let refused = a.grow(20).expect_err("past the tenant's 60");
        assert_eq!(refused.scope, BudgetScope::Tenant("a".into()));
        assert_eq!(refused.short(), 10);
        b.grow(50).expect("within the host's 100");
        let refused = b.grow(1).expect_err("past the host's 100");
        assert_eq!(refused.scope, BudgetScope::Host);
        assert_eq!((budget.used(), budget.tenant_used("a")), (100, 50));
        drop(a);
        assert_eq!((budget.used(), budget.tenant_used("a")), (50, 0));
        b.overdraw_switch().store(true, Ordering::Release);
        b.grow(70).expect("overdrawn");
        assert_eq!(budget.over("b"), (0, 20));
    }
}
