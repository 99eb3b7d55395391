//! The deterministic WASI subset a guest may use, and the state of its store.
//!
//! Invariants: a guest reads no environment, no arguments and an empty stdin;
//! its clocks read the `at` of the first event of the call (an event's own
//! time is in the event: the SDK's `Effects::now_ms`); its randomness is seeded
//! from the log's seed and that event's seq; its stdout and stderr go to the
//! host's trace (and into a failure message), never to the log. The
//! filesystem and sockets, which the toolchains of other languages import
//! whether or not the guest uses them (componentize-js, componentize-py),
//! are served empty: there are no preopened directories, so no path can be
//! opened, and every socket is refused (no TCP, no UDP, no name lookup, and
//! an address check that allows nothing), so a guest that tries gets an
//! error, never data. Everything else of WASI (http, and any interface not
//! listed in [`ALLOWED_IMPORTS`]) is refused when the component is loaded
//! (see `engine.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::memory::MemoryCharge;

/// Interfaces a guest may import, by prefix of the import name.
pub(crate) const ALLOWED_IMPORTS: &[&str] = &[
    "logbook:agent/",
    "wasi:cli/environment@",
    "wasi:cli/exit@",
    "wasi:cli/stdin@",
    "wasi:cli/stdout@",
    "wasi:cli/stderr@",
    "wasi:cli/terminal-",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    // Served empty: no preopens, so every open fails (see `Sandbox::new`).
    "wasi:filesystem/",
    // Served refusing: every socket operation fails (see `Sandbox::new`).
    "wasi:sockets/",
];

/// The store's data: WASI state served deterministically, and limits.
pub(crate) struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: Meter,
    clock: Arc<AtomicU64>,
    rng: SharedRng,
    output: GuestOutput,
}

impl Sandbox {
    pub(crate) fn new(
        memory_limit: usize,
        output_bytes: usize,
        charge: Option<MemoryCharge>,
    ) -> Sandbox {
        let clock = Arc::new(AtomicU64::new(0));
        let rng = SharedRng(Arc::new(Mutex::new(StdRng::seed_from_u64(0))));
        let output = GuestOutput::new(output_bytes);
        let wasi = WasiCtx::builder()
            .wall_clock(LogClock(clock.clone()))
            .monotonic_clock(LogClock(clock.clone()))
            .secure_random(rng.clone())
            .insecure_random(rng.clone())
            .insecure_random_seed(0)
            .stdout(output.clone())
            .stderr(output.clone())
            // No network, ever: these are wasmtime-wasi's defaults too, said
            // here so that a change of defaults cannot open one.
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        Sandbox {
            wasi,
            table: ResourceTable::new(),
            limits: Meter {
                limits: StoreLimitsBuilder::new()
                    .memory_size(memory_limit)
                    .trap_on_grow_failure(true)
                    .build(),
                charge,
                pending: 0,
            },
            clock,
            rng,
            output,
        }
    }

    /// Set what the guest's clock and randomness read for the next call.
    pub(crate) fn set_moment(&self, seed: u64, seq: u64, at_ms: u64) {
        self.clock.store(at_ms, Ordering::Relaxed);
        let mut rng = self.rng.0.lock().unwrap_or_else(|p| p.into_inner());
        *rng = StdRng::seed_from_u64(seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }

    /// What the guest printed since the last call.
    pub(crate) fn take_output(&self) -> String {
        self.output.take()
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The store's limiter: the instance's own memory and table limits, then
/// the budgets its [`MemoryCharge`] counts against (guest::memory).
pub(crate) struct Meter {
    limits: StoreLimits,
    charge: Option<MemoryCharge>,
    /// Bytes taken for the growth under way, given back if it fails.
    pending: usize,
}

impl Meter {
    pub(crate) fn charge(&self) -> Option<&MemoryCharge> {
        self.charge.as_ref()
    }
}

impl ResourceLimiter for Meter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if !self.limits.memory_growing(current, desired, maximum)? {
            return Ok(false);
        }
        self.pending = 0;
        if let Some(charge) = &self.charge {
            let bytes = desired.saturating_sub(current);
            charge.grow(bytes).map_err(wasmtime::Error::new)?;
            self.pending = bytes;
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        if let Some(charge) = &self.charge {
            charge.shrink(std::mem::take(&mut self.pending));
        }
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Both WASI clocks, reading the `at` of the event being folded.
struct LogClock(Arc<AtomicU64>);

impl HostWallClock for LogClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

impl HostMonotonicClock for LogClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed).saturating_mul(1_000_000)
    }
}

/// Randomness reseeded from (log seed, seq) before every call.
#[derive(Clone)]
struct SharedRng(Arc<Mutex<StdRng>>);

impl rand::TryRng for SharedRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut rng = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(rand::Rng::next_u32(&mut *rng))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut rng = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(rand::Rng::next_u64(&mut *rng))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        let mut rng = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rand::Rng::fill_bytes(&mut *rng, dst);
        Ok(())
    }
}

/// The guest's stdout and stderr: the newest `capacity` bytes, taken after each
/// call. Writes never fail, so a chatty guest cannot trap itself.
#[derive(Clone)]
struct GuestOutput {
    buffer: Arc<Mutex<VecDeque<u8>>>,
    capacity: usize,
}

impl GuestOutput {
    fn new(capacity: usize) -> GuestOutput {
        GuestOutput {
            buffer: Arc::new(Mutex::new(VecDeque::new())),
            capacity,
        }
    }

    fn take(&self) -> String {
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let bytes: Vec<u8> = buffer.drain(..).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

#[async_trait::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        buffer.extend(bytes.iter());
        let excess = buffer.len().saturating_sub(self.capacity);
        buffer.drain(..excess);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(self.capacity.max(1))
    }
}
