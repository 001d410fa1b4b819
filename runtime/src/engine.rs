//! The runtime's settings (`RuntimeConfig`, with the `Precompiler` that may
//! compile elsewhere), the engines configured for serving (one without
//! component-model concurrency for WASIp2, one with it for WASIp3), the
//! linkers with every WASI import, and the epoch ticker that drives
//! deadlines and fair scheduling.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::cache::CompileCache;
use crate::deadline::Deadlines;
use crate::error::{LoadError, RuntimeError};
use crate::instance::StoreData;

/// Host-wide settings of the engine. The totals are explicit so the pooling
/// allocator reserves what the host will use, not wasmtime's terabytes.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Instances alive at once across all apps (pool slots).
    pub max_instances: u32,
    /// Instances one app may have alive at once, whatever its limits ask:
    /// `None` is three quarters of `max_instances`, so that one app cannot
    /// take every slot of the host.
    pub max_concurrency_per_app: Option<u32>,
    /// The largest linear memory any app may be given, in bytes; each pool
    /// slot reserves this much address space.
    pub max_memory_per_instance: u64,
    /// How often guests are interrupted to yield and check their deadline.
    pub epoch_tick: Duration,
    /// Where compiled code is cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Who compiles components: `None` compiles in this process, `Some`
    /// hands the bytes to another compiler (the host's is a child process,
    /// so the compiler's memory never stays resident in a server).
    pub precompiler: Option<Arc<dyn Precompiler>>,
}

/// Which of a runtime's two engines a component runs on.
///
/// Component-model concurrency (what WASIp3 needs) costs every host call
/// and every instantiation bookkeeping of its own, even for components that
/// never use it. So WASIp2 components run on a plain engine, and only
/// components that need concurrency on the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineFlavor {
    /// No component-model concurrency: WASIp2 components, served by the
    /// runtime's own driver.
    Plain,
    /// With component-model concurrency (`component-model-async`): WASIp3
    /// components, and any other that needs it, served through
    /// wasmtime-wasi-http's `ProxyHandler`.
    Concurrent,
}

impl EngineFlavor {
    /// `"plain"` or `"concurrent"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineFlavor::Plain => "plain",
            EngineFlavor::Concurrent => "concurrent",
        }
    }
}

/// Compiles component bytes somewhere else, into what
/// `shoal_runtime::precompile` returns for the same [`RuntimeConfig`] and
/// flavor.
pub trait Precompiler: std::fmt::Debug + Send + Sync + 'static {
    /// The serialized code of `bytes` for an engine of `flavor`.
    /// [`LoadError::Invalid`] when the component does not validate or
    /// compile; any other error is the precompiler's own failure.
    fn precompile(&self, bytes: &[u8], flavor: EngineFlavor) -> Result<Vec<u8>, LoadError>;
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_instances: 256,
            max_concurrency_per_app: None,
            max_memory_per_instance: 1 << 30,
            epoch_tick: Duration::from_millis(10),
            cache_dir: None,
            precompiler: None,
        }
    }
}

impl RuntimeConfig {
    /// Instances one app may have alive at once: `max_concurrency_per_app`,
    /// else three quarters of `max_instances`; at least one, at most
    /// `max_instances`.
    pub fn app_concurrency_cap(&self) -> u32 {
        let instances = self.max_instances.max(1);
        self.max_concurrency_per_app
            .unwrap_or(instances / 4 * 3 + instances % 4 * 3 / 4)
            .clamp(1, instances)
    }
}

/// The sandbox: an engine per flavor (the concurrent one made when a
/// component first needs it), one epoch ticker, one admission bound.
pub struct Runtime {
    pub(crate) engines: Arc<Engines>,
    /// Host-wide admission: one permit per pool slot, so a request waits
    /// for a slot instead of failing to allocate one.
    pub(crate) instance_slots: Arc<Semaphore>,
    /// Request deadlines, fired by the ticker.
    pub(crate) deadlines: Arc<Deadlines>,
    _ticker: EpochTicker,
}

/// The engines of a runtime, shared with its epoch ticker.
pub(crate) struct Engines {
    plain: Sandbox,
    concurrent: OnceLock<Result<Sandbox, String>>,
    /// What the runtime was built with (the concurrent engine is made from it).
    pub(crate) config: RuntimeConfig,
}

/// One engine with its linker and compile cache.
pub(crate) struct Sandbox {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StoreData>,
    pub(crate) cache: Option<CompileCache>,
}

impl Sandbox {
    fn new(config: &RuntimeConfig, flavor: EngineFlavor) -> Result<Sandbox, RuntimeError> {
        let engine = Engine::new(&engine_config(config, flavor))
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        link_wasi(&mut linker, flavor).map_err(|e| RuntimeError::Link(format!("{e:#}")))?;
        let cache = config
            .cache_dir
            .as_ref()
            .map(|dir| CompileCache::new(dir.clone(), &engine));
        Ok(Sandbox {
            engine,
            linker,
            cache,
        })
    }
}

impl Engines {
    /// The engine of `flavor`, made on first use.
    pub(crate) fn get(&self, flavor: EngineFlavor) -> Result<&Sandbox, LoadError> {
        match flavor {
            EngineFlavor::Plain => Ok(&self.plain),
            EngineFlavor::Concurrent => self
                .concurrent
                .get_or_init(|| {
                    Sandbox::new(&self.config, EngineFlavor::Concurrent).map_err(|e| e.to_string())
                })
                .as_ref()
                .map_err(|e| LoadError::Compiler(e.clone())),
        }
    }

    /// The engines made so far.
    pub(crate) fn made(&self) -> impl Iterator<Item = &Sandbox> {
        std::iter::once(&self.plain).chain(self.concurrent.get().and_then(|r| r.as_ref().ok()))
    }
}

/// Core instances, memories and tables one component may hold. Components
/// from jco and componentize-py hold a dozen or more core instances.
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;
const MEMORIES_PER_COMPONENT: u32 = 4;
const TABLES_PER_COMPONENT: u32 = 32;

/// Memory slots reserved per instance slot: most components have one
/// memory, a few (adapters, JS/Python runtimes) two. Every memory slot
/// reserves `max_memory_per_instance` of address space.
const MEMORIES_PER_INSTANCE_ON_AVERAGE: u32 = 2;

/// Bytes of a memory or table slot kept resident between uses.
const KEEP_RESIDENT: usize = 1 << 20;

impl Runtime {
    /// Builds the plain engine and links the WASI imports; the concurrent
    /// engine follows when a component needs it.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let epoch_tick = config.epoch_tick;
        let instance_slots = Arc::new(Semaphore::new(config.max_instances as usize));
        let engines = Arc::new(Engines {
            plain: Sandbox::new(&config, EngineFlavor::Plain)?,
            concurrent: OnceLock::new(),
            config,
        });
        let deadlines = Deadlines::new(deadline_shards());
        Ok(Runtime {
            _ticker: EpochTicker::spawn(engines.clone(), epoch_tick, deadlines.clone()),
            deadlines,
            instance_slots,
            engines,
        })
    }

    /// The settings the runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.engines.config
    }
}

/// The wasmtime configuration of an engine of `flavor` built from `rc`.
pub(crate) fn engine_config(rc: &RuntimeConfig, flavor: EngineFlavor) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    let instances = rc.max_instances.max(1);
    let memory = usize::try_from(rc.max_memory_per_instance).unwrap_or(usize::MAX);
    pool.total_component_instances(instances)
        .total_core_instances(
            instances
                .saturating_mul(CORE_INSTANCES_PER_COMPONENT)
                .min(100_000),
        )
        .total_memories(instances.saturating_mul(MEMORIES_PER_INSTANCE_ON_AVERAGE))
        .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT).min(100_000))
        .total_stacks(instances)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_memories_per_module(2)
        .max_tables_per_module(8)
        .table_elements(200_000)
        .max_core_instance_size(8 << 20)
        .max_component_instance_size(8 << 20)
        .max_memory_size(memory);
    // Reset a used slot by rewriting the pages the guest dirtied (found with
    // the PAGEMAP_SCAN ioctl where the kernel has it, Linux 6.7+) instead of
    // `madvise`, whose TLB shootdowns interrupt every core at every reset
    // (see bench/RESULTS.md).
    pool.linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(wasmtime::Enabled::Auto);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .wasm_component_model_async(flavor == EngineFlavor::Concurrent)
        .concurrency_support(flavor == EngineFlavor::Concurrent)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        // Each slot reserves exactly the largest memory an app may have, so
        // the totals stay small; bounds checks are explicit.
        .memory_reservation(rc.max_memory_per_instance)
        .memory_reservation_for_growth(0)
        // Since bounds checks are explicit anyway, nothing relies on guard
        // pages or on signals: without them, a slot whose guest grew its
        // memory is reused without two `mprotect` calls per request and the
        // TLB shootdowns they cost on every core.
        .memory_guard_size(0)
        .signals_based_traps(false)
        .memory_may_move(false)
        .parallel_compilation(true);
    config
}

fn link_wasi(linker: &mut Linker<StoreData>, flavor: EngineFlavor) -> wasmtime::Result<()> {
    // Every Rust std guest imports `wasi:cli/*`, so the whole WASI 0.2 set is
    // linked, not only the proxy world; what a guest may use is decided by
    // its context (nothing granted by default), not by what is linked.
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    // Key-value and config: a guest reaches only the stores and values its
    // app was granted (`state::StateGrant`).
    crate::state::add_to_linker(linker, StoreData::state)?;
    if flavor == EngineFlavor::Concurrent {
        wasmtime_wasi::p3::add_to_linker(linker)?;
        wasmtime_wasi_http::p3::add_to_linker(linker)?;
        crate::state::add_concurrent_to_linker(linker, StoreData::state)?;
    }
    Ok(())
}

/// Shards of the deadline registry: twice the threads likely to poll
/// requests, so that each shard is almost always locked by one thread.
fn deadline_shards() -> usize {
    std::thread::available_parallelism().map_or(8, |n| (2 * n.get()).clamp(4, 256))
}

/// Increments the engine's epoch at a fixed interval on its own thread, and
/// fires the request deadlines that have passed. Every store yields at each
/// tick.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    fn spawn(engines: Arc<Engines>, tick: Duration, deadlines: Arc<Deadlines>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("shoal-epoch".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engines.made().for_each(|s| s.engine.increment_epoch());
                        deadlines.fire(Instant::now());
                    }
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_app_gets_three_quarters_of_the_host_unless_told_otherwise() {
        let config = |max_instances, per_app| RuntimeConfig {
            max_instances,
            max_concurrency_per_app: per_app,
            ..RuntimeConfig::default()
        };
        assert_eq!(config(256, None).app_concurrency_cap(), 192);
        assert_eq!(config(8, None).app_concurrency_cap(), 6);
        assert_eq!(config(1, None).app_concurrency_cap(), 1);
        assert_eq!(config(8, Some(8)).app_concurrency_cap(), 8);
        assert_eq!(config(8, Some(100)).app_concurrency_cap(), 8);
        assert_eq!(
            config(u32::MAX, None).app_concurrency_cap(),
            u32::MAX / 4 * 3 + 2
        );
    }
}
