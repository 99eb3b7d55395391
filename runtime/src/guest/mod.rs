//! The guest host: wasmtime components in a deterministic sandbox.
//!
//! A [`GuestEngine`] compiles components once (and caches the machine code on
//! disk, so a second process does not recompile), refuses any component that
//! imports more than the deterministic WASI subset, and makes
//! [`GuestInstance`]s from the pooling allocator. Each call into a guest runs
//! under a fuel budget and a memory limit; a trap, running out of fuel or of
//! memory is a [`GuestError`], never a host crash, and the instance is dropped.

mod bindings;
mod convert;
mod engine;
mod instance;
mod memory;
mod sandbox;

pub use engine::{GuestEngine, LoadedGuest};
pub use instance::{GuestBatch, GuestInstance};
pub use memory::{BudgetExceeded, BudgetScope, MemoryBudget, MemoryCharge};

/// Errors of loading or running a guest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    /// The bytes are not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0}")]
    NotAComponent(String),
    /// The engine could not load machine code it had just compiled from a
    /// valid component: a fault of the host, not of the guest.
    #[error("cannot load the compiled guest: {0}")]
    Compiled(String),
    /// The component imports something the sandbox does not provide.
    #[error(
        "the guest imports `{import}`, which Logbook does not provide: guests may import only logbook:agent/*, wasi:cli (environment, exit, stdin, stdout, stderr), wasi:io, wasi:clocks, wasi:random, and wasi:filesystem and wasi:sockets, which are served empty (no files, no network)"
    )]
    ForbiddenImport {
        /// The import's full name.
        import: String,
    },
    /// The component does not implement the `logbook:agent/agent` world.
    #[error("the component does not implement logbook:agent/agent@0.4.0: {0}")]
    WrongWorld(String),
    /// The guest trapped (a panic, an unreachable, a bad memory access...).
    #[error("guest trapped: {0}")]
    Trap(String),
    /// The guest used up its fuel for one call.
    #[error("guest ran out of fuel ({fuel} units for this call)")]
    OutOfFuel {
        /// The budget it had.
        fuel: u64,
    },
    /// The guest tried to grow its memory past its limit.
    #[error("guest ran out of memory (limit {limit} bytes): {detail}")]
    OutOfMemory {
        /// The limit.
        limit: usize,
        /// What wasmtime said.
        detail: String,
    },
    /// The instance would take the host's or its tenant's guest memory past
    /// its budget: the call (or the instantiation) failed and the instance
    /// must be dropped. Not the guest's fault: nothing is logged of it.
    #[error(transparent)]
    MemoryBudget(BudgetExceeded),
    /// The instance pool is full or instantiation failed.
    #[error("cannot instantiate guest: {0}")]
    Instantiate(String),
}

impl GuestError {
    /// Whether the guest itself is at fault (its session should park as
    /// `guest-failed`), rather than the host or the component's loading.
    pub fn is_guest_fault(&self) -> bool {
        matches!(
            self,
            GuestError::Trap(_) | GuestError::OutOfFuel { .. } | GuestError::OutOfMemory { .. }
        )
    }
}
