//! The wasmtime engine, its component cache and import validation.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use super::GuestError;
use super::bindings::AgentPre;
use super::instance::GuestInstance;
use super::sandbox::{ALLOWED_IMPORTS, Sandbox};
use crate::config::Limits;

/// A compiled, validated, pre-linked guest, ready to instantiate.
#[derive(Clone)]
pub struct LoadedGuest {
    pre: AgentPre<Sandbox>,
    digest: String,
}

impl LoadedGuest {
    /// The component's digest (`sha256:...`).
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

/// The shared wasmtime engine: one per process.
pub struct GuestEngine {
    engine: Engine,
    linker: Linker<Sandbox>,
    limits: Limits,
    cache_dir: Option<PathBuf>,
    compat: String,
    loaded: Mutex<HashMap<String, LoadedGuest>>,
    /// One lock per digest being compiled: activations of many sessions of
    /// one guest that is not loaded yet wait for one compilation instead of
    /// each running their own (a debug build under load takes seconds each).
    compiling: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Components compiled (or read from the cache) by this engine.
    compilations: std::sync::atomic::AtomicUsize,
}

impl GuestEngine {
    /// An engine with the given limits; compiled components are cached in
    /// `cache_dir` when given.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Arc<GuestEngine>, GuestError> {
        let mut pool = PoolingAllocationConfig::default();
        let n = limits.max_instances.max(1);
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(4))
            .total_memories(n)
            .total_tables(n.saturating_mul(3))
            .max_memory_size(limits.memory_per_instance)
            .table_elements(limits.table_elements);
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            // Measured here: on, every export call is ~3x slower (DESIGN §8).
            .concurrency_support(false)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| GuestError::Instantiate(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| GuestError::Instantiate(e.to_string()))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = format!("{:016x}", hasher.finish());
        Ok(Arc::new(GuestEngine {
            engine,
            linker,
            limits,
            cache_dir,
            compat,
            loaded: Mutex::new(HashMap::new()),
            compiling: Mutex::new(HashMap::new()),
            compilations: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// The limits every instance runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compile (or take from cache), validate and pre-link a component.
    pub fn load(&self, digest: &str, bytes: &[u8]) -> Result<LoadedGuest, GuestError> {
        if let Some(loaded) = self.lock().get(digest) {
            return Ok(loaded.clone());
        }
        let turn = self
            .compiling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(digest.to_string())
            .or_default()
            .clone();
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
        // Whoever held the turn before may have loaded it.
        if let Some(loaded) = self.lock().get(digest) {
            return Ok(loaded.clone());
        }
        let loaded = self.load_now(digest, bytes);
        self.compiling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
        loaded
    }

    /// [`GuestEngine::load`] for the one caller whose turn it is.
    fn load_now(&self, digest: &str, bytes: &[u8]) -> Result<LoadedGuest, GuestError> {
        self.compilations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let component = self.compile(digest, bytes)?;
        check_imports(&self.engine, &component)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| GuestError::WrongWorld(format!("{e:#}")))?;
        let pre =
            AgentPre::new(instance_pre).map_err(|e| GuestError::WrongWorld(format!("{e:#}")))?;
        let loaded = LoadedGuest {
            pre,
            digest: digest.to_string(),
        };
        self.lock().insert(digest.to_string(), loaded.clone());
        Ok(loaded)
    }

    /// A component loaded earlier in this process, by digest.
    pub fn loaded(&self, digest: &str) -> Option<LoadedGuest> {
        self.lock().get(digest).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LoadedGuest>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn compile(&self, digest: &str, bytes: &[u8]) -> Result<Component, GuestError> {
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, bytes)
                .map_err(|e| GuestError::NotAComponent(format!("{e:#}")));
        };
        let name = digest.trim_start_matches("sha256:");
        let path = dir.join(format!("{name}-{}.cwasm", self.compat));
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` of an engine
            // with the same compatibility hash (it is in the file name), into the
            // host's own data directory, which guests cannot reach.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable compiled guest: {e:#}")
                }
            }
        }
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| GuestError::NotAComponent(format!("{e:#}")))?;
        // A name of its own: another process sharing the directory may be
        // writing the same guest (a rename is atomic, a shared file is not).
        let tmp = path.with_extension(format!("{}.tmp", uuid::Uuid::now_v7().simple()));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, &compiled))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), "cannot cache compiled guest: {e}");
        }
        // SAFETY: `compiled` was just produced by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }
            .map_err(|e| GuestError::Compiled(format!("{e:#}")))
    }

    /// A fresh instance of a loaded guest, for a log with this seed.
    pub fn instantiate(&self, guest: &LoadedGuest, seed: u64) -> Result<GuestInstance, GuestError> {
        self.instantiate_with(guest, seed, &self.limits, None)
    }

    /// A fresh instance under `limits` (a tenant's own, say). Its memory is
    /// capped at the smaller of its limit and the engine's, which sized the
    /// pool, and counted against the budgets of `charge` when given (it
    /// starts refusing growth past them: see [`GuestInstance::overdraw`]).
    pub fn instantiate_with(
        &self,
        guest: &LoadedGuest,
        seed: u64,
        limits: &Limits,
        charge: Option<super::MemoryCharge>,
    ) -> Result<GuestInstance, GuestError> {
        let mut limits = limits.clone();
        limits.memory_per_instance = limits
            .memory_per_instance
            .min(self.limits.memory_per_instance);
        let sandbox = Sandbox::new(
            limits.memory_per_instance,
            limits.guest_output_bytes,
            charge,
        );
        let mut store = Store::new(&self.engine, sandbox);
        store.limiter(|s| &mut s.limits);
        store
            .set_fuel(limits.fuel_for(0, 0))
            .map_err(|e| GuestError::Instantiate(format!("{e:#}")))?;
        let agent = guest.pre.instantiate(&mut store).map_err(|e| {
            match e.downcast_ref::<super::BudgetExceeded>() {
                Some(spent) => GuestError::MemoryBudget(spent.clone()),
                None => GuestError::Instantiate(format!("{e:#}")),
            }
        })?;
        Ok(GuestInstance::new(store, agent, seed, limits))
    }
}

/// Refuse any import outside the deterministic subset, naming it.
fn check_imports(engine: &Engine, component: &Component) -> Result<(), GuestError> {
    for (name, _) in component.component_type().imports(engine) {
        if !ALLOWED_IMPORTS
            .iter()
            .any(|allowed| name.starts_with(allowed))
        {
            return Err(GuestError::ForbiddenImport {
                import: name.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_of_one_guest_woken_at_once_compile_it_once() {
        let engine = GuestEngine::new(Limits::default(), None).expect("an engine");
        let bytes = crate::examples::get("counter").expect("examples are built in");
        let digest = "sha256:counter-under-test";
        std::thread::scope(|scope| {
            let loads: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| engine.load(digest, bytes).map(|l| l.digest)))
                .collect();
            for load in loads {
                let loaded = load.join().expect("a loader");
                assert_eq!(loaded.expect("loaded").as_str(), digest);
            }
        });
        let compilations = engine
            .compilations
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(compilations, 1, "four loads at once compile once");
    }
}
