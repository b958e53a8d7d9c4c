//! The process-wide wasmtime engine: configuration, the epoch ticker that
//! drives deadlines, the linker with every host function, and the compile
//! cache.
//!
//! Code runs natively (Cranelift) where Cranelift has a backend for the
//! host (x86-64, aarch64, riscv64, s390x), and on wasmtime's Pulley
//! interpreter elsewhere, such as 32-bit ARM ([`Compiler`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::{Config, Enabled, Engine, Linker, Module, PoolingAllocationConfig};

use crate::cache::CompileCache;
use crate::compile_worker::{CompileWorker, WorkerError, compile_in_worker};
use crate::error::LoadError;
use crate::host::ws::WebSocketHost;
use crate::host::{self, HostServices, HostState};
use crate::limits::ModuleSettings;
use crate::memory_plan::{AddressSpace, MemoryPlan, MemoryStrategy, PlanInput};
use crate::module::LoadedModule;
use crate::ticker::EpochTicker;

/// Engine-wide settings, fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled code is cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// The key that authenticates cache entries; `None` means `DIR.key`
    /// beside the cache folder. Created (mode 0600) if missing.
    pub cache_key_file: Option<PathBuf>,
    /// Meter fuel (enables the per-module `fuel` limit; costs some speed).
    pub consume_fuel: bool,
    /// Instance slots in the pooling allocator, shared by all modules.
    pub total_instances: u32,
    /// Interval of the epoch ticker: the granularity of deadlines and how
    /// often a long-running guest yields to other tasks.
    pub epoch_tick: Duration,
    /// Bytes of each linear memory kept resident (and zeroed with `memset`
    /// rather than `madvise`) when a pool slot is reused.
    pub memory_keep_resident: usize,
    /// How linear memories are laid out (`Auto`: from the address space).
    pub memory_strategy: MemoryStrategy,
    /// The largest memory cap of any module: the reservation of a
    /// bounds-checked memory.
    pub largest_memory_cap: usize,
    /// How long instantiating and initialising one instance may take,
    /// time blocked in host calls and WASI sleeps included.
    pub init_deadline: Duration,
    /// Modules compiled at once (each compile uses every core already);
    /// loads from the compile cache do not wait for a turn.
    pub compile_concurrency: usize,
    /// What turns modules into code this process runs (`Auto`: Cranelift
    /// where it has a backend for the host, Pulley elsewhere).
    pub compiler: Compiler,
    /// Page a module's compiled code out of memory while it is dormant: no
    /// instance, no event for `idle_timeout`, or none yet since its load.
    pub release_idle_code: bool,
    /// Compile in a child process started this way, when there is a
    /// compile cache to hand the code over in (see [`CompileWorker`]);
    /// `None` compiles in this process.
    pub compile_worker: Option<CompileWorker>,
    /// Code generation settings beyond the defaults. The gateway sets none:
    /// they exist so that `benches/codegen.rs` can measure each against the
    /// defaults (docs/benchmarks.md, "Go guests").
    pub codegen: Vec<CodegenSetting>,
}

/// A code generation setting that [`RuntimeConfig::codegen`] can change
/// from its default, for measuring what it is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodegenSetting {
    /// Cranelift's `speed_and_size` optimisation level instead of `speed`.
    OptimizeForSize,
    /// No Spectre mitigation on table accesses (`call_indirect`): a
    /// hardening Shanhai keeps, measured to know its price.
    NoTableSpectreMitigation,
    /// No Spectre mitigation on bounds-checked memory accesses (the
    /// bounded and on-demand layouts): likewise kept, and measured.
    NoHeapSpectreMitigation,
    /// Compiled code assumes a memory's base never moves, which holds in
    /// the pooled layouts (a memory grows within its slot); ignored in the
    /// on-demand layout, where a growing memory may move.
    FixedMemoryBase,
}

impl CodegenSetting {
    /// Every setting, in the order the benchmark reports them.
    pub const ALL: [Self; 4] = [
        Self::OptimizeForSize,
        Self::NoTableSpectreMitigation,
        Self::NoHeapSpectreMitigation,
        Self::FixedMemoryBase,
    ];

    /// The setting's name, as the compile worker's arguments spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptimizeForSize => "optimize-for-size",
            Self::NoTableSpectreMitigation => "no-table-spectre-mitigation",
            Self::NoHeapSpectreMitigation => "no-heap-spectre-mitigation",
            Self::FixedMemoryBase => "fixed-memory-base",
        }
    }

    /// The setting called `name` by [`CodegenSetting::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|setting| setting.as_str() == name)
    }

    fn apply(self, wasm: &mut Config, plan: &MemoryPlan) {
        let flag = match self {
            Self::OptimizeForSize => {
                wasm.cranelift_opt_level(wasmtime::OptLevel::SpeedAndSize);
                return;
            }
            Self::FixedMemoryBase => {
                if plan.pool_slots > 0 {
                    wasm.memory_may_move(false);
                }
                return;
            }
            Self::NoTableSpectreMitigation => "enable_table_access_spectre_mitigation",
            Self::NoHeapSpectreMitigation => "enable_heap_access_spectre_mitigation",
        };
        // SAFETY: both flags only remove a speculative-execution hardening
        // from the code Cranelift emits; the code still checks every table
        // index and memory bound architecturally, so wasm stays confined to
        // its sandbox for the code's defined behaviour.
        #[allow(unsafe_code)]
        unsafe {
            wasm.cranelift_flag_set(flag, "false");
        }
    }
}

/// What a module does right after it has loaded and been validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterLoad {
    /// Keep the instance that validated it: traffic is expected at once (a
    /// hot swap, an upload, a canary, a request waiting for it).
    Serve,
    /// Keep only `min_instances` and page its code out until its first
    /// event: a module loaded at start that nothing has asked for yet.
    Rest,
}

/// What runs a module's code (`runtime.compiler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compiler {
    /// Cranelift where it has a backend for this architecture, Pulley
    /// elsewhere (32-bit ARM).
    #[default]
    Auto,
    /// Native code from Cranelift: fast, but only on x86-64, aarch64,
    /// riscv64 and s390x.
    Cranelift,
    /// Cranelift's Pulley bytecode run by wasmtime's interpreter: portable
    /// and always bounds-checked, several times slower than native code.
    Pulley,
}

impl Compiler {
    /// The names the config uses.
    pub const NAMES: [&'static str; 3] = ["auto", "cranelift", "pulley"];

    /// Whether Cranelift can generate native code for the architecture
    /// this binary was built for (the list in wasmtime's build script).
    pub const NATIVE_AVAILABLE: bool = cfg!(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "s390x"
    ));

    /// Parses a config name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "auto" => Self::Auto,
            "cranelift" => Self::Cranelift,
            "pulley" => Self::Pulley,
            _ => return None,
        })
    }

    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Cranelift => "cranelift",
            Self::Pulley => "pulley",
        }
    }

    /// The compiler this process uses: never `Auto`. Fails, naming the
    /// key, when Cranelift is asked for where it has no backend.
    pub fn resolve(self) -> anyhow::Result<Self> {
        match self {
            Self::Auto if Self::NATIVE_AVAILABLE => Ok(Self::Cranelift),
            Self::Auto | Self::Pulley => Ok(Self::Pulley),
            Self::Cranelift if Self::NATIVE_AVAILABLE => Ok(Self::Cranelift),
            Self::Cranelift => anyhow::bail!(
                "runtime.compiler = \"cranelift\": Cranelift has no backend for {}; \
                 set runtime.compiler = \"auto\" or \"pulley\"",
                std::env::consts::ARCH
            ),
        }
    }

    /// The Pulley target of this host's pointer width and byte order.
    pub(crate) fn pulley_target() -> &'static str {
        match (usize::BITS, cfg!(target_endian = "big")) {
            (32, false) => "pulley32",
            (32, true) => "pulley32be",
            (_, false) => "pulley64",
            (_, true) => "pulley64be",
        }
    }

    /// How the start log and `/admin/config` describe a resolved compiler.
    pub fn describe(self) -> String {
        match self {
            Self::Pulley if Self::NATIVE_AVAILABLE => format!(
                "Pulley interpreter ({}), as runtime.compiler asks",
                Self::pulley_target()
            ),
            Self::Pulley => format!(
                "Pulley interpreter ({}): Cranelift has no backend for {}",
                Self::pulley_target(),
                std::env::consts::ARCH
            ),
            _ => format!("Cranelift, native {} code", std::env::consts::ARCH),
        }
    }
}

impl RuntimeConfig {
    /// What the memory plan needs from these settings, for code run by
    /// `compiler` (resolved).
    pub(crate) fn plan_input(&self, compiler: Compiler) -> PlanInput {
        PlanInput {
            strategy: self.memory_strategy,
            total_instances: self.total_instances,
            largest_memory_cap: self.largest_memory_cap as u64,
            compiler,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            cache_key_file: None,
            consume_fuel: false,
            total_instances: 1000,
            epoch_tick: Duration::from_millis(5),
            // Measured (docs/benchmarks.md, "In-process costs"): keeping
            // nothing resident makes fresh instances fault their pages back
            // in and stops them scaling across threads; 1 MiB restores it.
            // Larger windows help guests that touch more memory (4 MiB was
            // 11% faster with 64 KiB bodies) but every warm pool slot keeps
            // that much resident, which an edge box pays in RSS.
            memory_keep_resident: 1 << 20,
            memory_strategy: MemoryStrategy::Auto,
            largest_memory_cap: crate::ModuleLimits::default().max_memory_bytes,
            init_deadline: Duration::from_secs(10),
            // One compile at a time: Cranelift already spreads a module's
            // functions over every core, and each compile of a Go module
            // holds a few hundred MB at its peak (docs/benchmarks.md,
            // "Footprint"), so more at once only raises the peak.
            compile_concurrency: 1,
            compiler: Compiler::Auto,
            // An edge box's RSS is mostly mapped module code: a Go module
            // keeps 8–10 MB of it resident after its `_initialize`
            // (docs/benchmarks.md, "Footprint").
            release_idle_code: true,
            compile_worker: None,
            codegen: Vec::new(),
        }
    }
}

/// The module runtime: one per process, shared by every trigger.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) cache: Option<CompileCache>,
    pub(crate) config: RuntimeConfig,
    pub(crate) services: Arc<HostServices>,
    pub(crate) memory_plan: MemoryPlan,
    /// Turns to compile: Cranelift already spreads one module over every
    /// core, and each compile holds hundreds of MB at its peak.
    compile_turns: tokio::sync::Semaphore,
    /// Set once a compile worker could not be started: later compiles run
    /// in this process without trying again.
    compile_worker_unavailable: AtomicBool,
    /// Advances the epoch while guest code runs; stops with the runtime.
    pub(crate) ticker: EpochTicker,
}

impl Runtime {
    /// Builds the engine and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        map_large_allocations();
        let compiler = config.compiler.resolve()?;
        let memory_plan = MemoryPlan::new(config.plan_input(compiler), AddressSpace::detect())?;
        tracing::info!(
            strategy = memory_plan.strategy.as_str(),
            pool_slots = memory_plan.pool_slots,
            bounds_checks = memory_plan.bounds_checks,
            compiler = compiler.as_str(),
            "memory layout: {}",
            memory_plan.summary()
        );
        let engine = Engine::new(&engine_config(&config, &memory_plan)?)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut HostState| {
            &mut state.wasi
        })?;
        host::add_to_linker(&mut linker)?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(CompileCache::open(
                dir,
                config.cache_key_file.as_deref(),
                &engine,
            )?),
            None => None,
        };
        let compile_turns = tokio::sync::Semaphore::new(config.compile_concurrency.max(1));
        let ticker = EpochTicker::spawn(engine.weak(), config.epoch_tick);
        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache,
                config,
                services: Arc::default(),
                compile_turns,
                compile_worker_unavailable: AtomicBool::new(false),
                memory_plan,
                ticker,
            }),
        })
    }

    /// The epoch ticker, for tests of its sleeping and waking.
    #[cfg(test)]
    pub(crate) fn ticker(&self) -> &EpochTicker {
        &self.inner.ticker
    }

    /// Installs the connection hub behind the `ws_*` host functions. Only
    /// the first call takes effect: a process has one hub.
    pub fn set_websocket_host(&self, host: Arc<dyn WebSocketHost>) {
        let _ = self.inner.services.websocket.set(host);
    }

    /// Installs the MQTT client behind `mqtt_publish`. Only the first call
    /// takes effect.
    pub fn set_mqtt_host(&self, host: Arc<dyn crate::MqttHost>) {
        let _ = self.inner.services.mqtt.set(host);
    }

    /// Installs the key-value store behind `kv_*`. Only the first call
    /// takes effect; without one, `kv_*` answer `unavailable`.
    pub fn set_kv_store(&self, store: Arc<shanhai_state::KvStore>) {
        let _ = self.inner.services.kv.set(store);
    }

    /// Installs the SQLite databases behind `sql_exec`. Only the first call
    /// takes effect; without them, `sql_exec` answers `unavailable`.
    pub fn set_sql_databases(&self, databases: crate::SqlServices) {
        let _ = self.inner.services.sql.set(databases);
    }

    /// Sets the limits of `http_fetch`, before the first module uses it
    /// (the defaults apply otherwise). Only the first call takes effect.
    pub fn set_outbound_http(&self, settings: crate::OutboundHttpSettings) {
        let _ = self
            .inner
            .services
            .http
            .set(crate::host::http::OutboundHttp::new(settings));
    }

    /// Sets the sysfs GPIO folder of `gpio_*` (default `/sys/class/gpio`).
    /// Only the first call takes effect.
    pub fn set_gpio_root(&self, root: std::path::PathBuf) {
        let _ = self.inner.services.gpio_root.set(root);
    }

    /// The engine settings this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// How linear memories are laid out in this process's address space.
    pub fn memory_plan(&self) -> &MemoryPlan {
        &self.inner.memory_plan
    }

    /// Compiles (or loads from the cache), validates and initialises a
    /// module, ready to serve: the instance that validated it stays in the
    /// pool for the traffic expected at once. `name` is how logs and errors
    /// refer to it.
    pub async fn load(
        &self,
        name: &str,
        wasm: Vec<u8>,
        settings: ModuleSettings,
    ) -> Result<Arc<LoadedModule>, LoadError> {
        self.load_then(name, wasm, settings, AfterLoad::Serve).await
    }

    /// Like [`load`](Self::load); `after` says whether the module keeps its
    /// validation instance or rests until its first event.
    pub async fn load_then(
        &self,
        name: &str,
        wasm: Vec<u8>,
        settings: ModuleSettings,
        after: AfterLoad,
    ) -> Result<Arc<LoadedModule>, LoadError> {
        let started = Instant::now();
        let sha256 = hex(&Sha256::digest(&wasm));
        let (module, from_cache) = self.compile(name, wasm, &sha256).await?;
        let loaded =
            LoadedModule::new(self.inner.clone(), name, &sha256, module, settings, after).await?;
        tracing::info!(
            module = name,
            version = loaded.version(),
            kind = loaded.kind().as_str(),
            from_cache,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "module loaded"
        );
        Ok(loaded)
    }

    /// The instruction set of the code this runtime runs: `x86_64`,
    /// `aarch64`, `pulley32` or `pulley64` (see [`crate::code_isa`]).
    pub fn code_isa(&self) -> &'static str {
        crate::target::code_isa(self.inner.memory_plan.compiler)
    }

    /// Puts code compiled elsewhere (`shanhai compile --target`) into the
    /// compile cache as the code of the module whose SHA-256 is
    /// `module_sha256`, after wasmtime has checked that it fits this
    /// engine. The next load of that module then skips compiling.
    ///
    /// The caller must have authenticated `code`: wasmtime runs compiled
    /// code without verifying it (the gateway requires a signature from a
    /// trusted key).
    pub async fn import_compiled(
        &self,
        module_sha256: &str,
        code: Vec<u8>,
    ) -> Result<(), crate::ImportError> {
        let inner = self.inner.clone();
        let sha256 = module_sha256.to_owned();
        tokio::task::spawn_blocking(move || {
            let cache = inner.cache.as_ref().ok_or(crate::ImportError::NoCache)?;
            cache.import(&inner.engine, &sha256, &code)
        })
        .await
        .map_err(|err| crate::ImportError::Io(format!("import task failed: {err}")))?
    }

    /// Compiles a module into the cache without loading it (used to warm
    /// the cache ahead of a deploy). Returns whether it was already cached.
    pub async fn precompile(&self, name: &str, wasm: Vec<u8>) -> Result<bool, LoadError> {
        let sha256 = hex(&Sha256::digest(&wasm));
        Ok(self.compile(name, wasm, &sha256).await?.1)
    }

    async fn compile(
        &self,
        name: &str,
        wasm: Vec<u8>,
        sha256: &str,
    ) -> Result<(Module, bool), LoadError> {
        if let Some(reason) = not_a_binary(&wasm) {
            return Err(LoadError::Compile(reason));
        }
        let from_cache = |inner: &RuntimeInner, sha256: &str| {
            inner
                .cache
                .as_ref()
                .and_then(|cache| cache.load(&inner.engine, sha256))
        };
        let inner = self.inner.clone();
        let key = sha256.to_owned();
        let cached = tokio::task::spawn_blocking(move || from_cache(&inner, &key))
            .await
            .map_err(|err| LoadError::Compile(format!("cache task failed: {err}")))?;
        if let Some(module) = cached {
            return Ok((module, true));
        }
        let _turn = self
            .inner
            .compile_turns
            .acquire()
            .await
            .map_err(|_| LoadError::Compile("the runtime is shutting down".into()))?;
        let inner = self.inner.clone();
        let name = name.to_owned();
        let sha256 = sha256.to_owned();
        // Cranelift compilation takes seconds for a Go module: keep it off
        // the async workers that serve requests.
        tokio::task::spawn_blocking(move || {
            // Another load of the same bytes may have compiled it while
            // this one waited for its turn.
            if let Some(module) = from_cache(&inner, &sha256) {
                return Ok((module, true));
            }
            let started = Instant::now();
            let worker = inner
                .config
                .compile_worker
                .as_ref()
                .zip(inner.cache.as_ref())
                .filter(|_| !inner.compile_worker_unavailable.load(Ordering::Relaxed));
            tracing::info!(
                module = %name,
                bytes = wasm.len(),
                in_worker = worker.is_some(),
                "compiling module"
            );
            let log_compiled = || {
                tracing::info!(
                    module = %name,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "module compiled"
                )
            };
            if let Some((worker, cache)) = worker
                && let Some(module) =
                    compile_with_worker(&inner, worker, cache, &name, &wasm, &sha256)?
            {
                log_compiled();
                return Ok((module, false));
            }
            let module = Module::new(&inner.engine, &wasm)
                .map_err(|err| LoadError::Compile(format!("{err:#}")));
            release_freed_heap();
            let module = module?;
            log_compiled();
            let Some(cache) = &inner.cache else {
                return Ok((module, false));
            };
            // Serve from the cache file rather than from the fresh compile:
            // its code is then a clean file mapping the kernel can page out
            // and share, not anonymous memory, so a cold start ends with
            // the same footprint as a warm one.
            cache.store(&module, &sha256);
            let served = from_cache(&inner, &sha256).unwrap_or(module);
            // The serialized copy and the fresh compile are gone now.
            release_freed_heap();
            Ok((served, false))
        })
        .await
        .map_err(|err| LoadError::Compile(format!("compiler task failed: {err}")))?
    }
}

pub(crate) fn engine_config(config: &RuntimeConfig, plan: &MemoryPlan) -> anyhow::Result<Config> {
    let mut wasm = Config::new();
    wasm.epoch_interruption(true)
        .consume_fuel(config.consume_fuel)
        .memory_init_cow(true);
    // Where Cranelift has no backend, wasmtime already defaults to Pulley
    // and tunes itself for a host without native signal handling; naming
    // the target there would skip that tuning. So the target is named only
    // to force Pulley where native code is possible.
    if plan.compiler == Compiler::Pulley && Compiler::NATIVE_AVAILABLE {
        wasm.target(Compiler::pulley_target())?;
    }
    for setting in &config.codegen {
        setting.apply(&mut wasm, plan);
    }
    plan.configure(&mut wasm, |slots| {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .total_stacks(slots)
            .max_memories_per_module(1)
            .max_tables_per_module(4)
            .linear_memory_keep_resident(config.memory_keep_resident)
            .table_keep_resident(64 << 10)
            // Freed slots stay "warm" (mapped for their last module, with
            // `memory_keep_resident` bytes resident) up to this many; past
            // it, new instances reuse warm slots instead of touching fresh
            // ones, so the resident memory of unused slots stays bounded
            // after a burst of traffic.
            .max_unused_warm_slots(WARM_SLOTS)
            // Resetting a reused slot by scanning which pages were touched
            // (Linux 6.7+) keeps reuse cheap when several threads
            // instantiate; without it, parallel instantiation serialises
            // on madvise.
            .pagemap_scan(Enabled::Auto);
        pool
    });
    Ok(wasm)
}

/// Compiles in a worker and loads its code from the cache. `None` when no
/// worker could be started, which is then remembered and logged once: the
/// caller compiles in this process.
fn compile_with_worker(
    inner: &RuntimeInner,
    worker: &CompileWorker,
    cache: &CompileCache,
    name: &str,
    wasm: &[u8],
    sha256: &str,
) -> Result<Option<Module>, LoadError> {
    let staged = cache.staging_path(sha256);
    match compile_in_worker(worker, &inner.config, &inner.memory_plan, wasm, &staged) {
        Ok(()) => {}
        Err(WorkerError::Failed(message)) => return Err(LoadError::Compile(message)),
        Err(WorkerError::Unavailable(why)) => {
            inner
                .compile_worker_unavailable
                .store(true, Ordering::Relaxed);
            tracing::warn!(
                module = %name,
                error = %why,
                "no compile worker: compiling in the gateway's process from now on"
            );
            return Ok(None);
        }
    }
    cache.adopt(&staged, sha256).map_err(|err| {
        LoadError::Compile(format!(
            "storing the compile worker's code in {}: {err}",
            cache.dir().display()
        ))
    })?;
    // wasmtime checks the code against this engine's settings; the warning
    // the cache logs says why it did not fit.
    cache.load(&inner.engine, sha256).map(Some).ok_or_else(|| {
        LoadError::Compile("the compile worker's code does not fit this engine".into())
    })
}

/// Gives the heap memory a compile freed back to the system. Cranelift
/// allocates hundreds of MB while compiling a Go module and frees it, but
/// glibc keeps freed memory in its arenas: without this, a cold start left
/// the process hundreds of MB larger than a warm one.
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free heap pages to the kernel; it
    // touches no memory that is in use and is safe to call from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes glibc serve every allocation of 1 MiB or more from a mapping of
/// its own, unmapped when freed. By default glibc raises that threshold
/// each time such a block is freed (up to 32 MiB); after that, module files
/// read at load (6–7 MB each) and compile buffers land in per-thread arenas
/// and stay resident once freed: 25 MB after a warm start of the examples,
/// over 100 MB after a cold one (docs/benchmarks.md, "Footprint").
pub(crate) fn map_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes an allocator setting; a fixed
    // threshold also stops glibc from adjusting it.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Unused pool slots kept warm (see `max_unused_warm_slots`).
const WARM_SLOTS: u32 = 8;

/// The version string of a module: the first 12 hex digits of its SHA-256,
/// as [`LoadedModule::version`] reports it.
pub fn module_version(wasm: &[u8]) -> String {
    hex(&Sha256::digest(wasm)[..VERSION_BYTES])
}

/// Bytes of the SHA-256 that make up a module version.
pub(crate) const VERSION_BYTES: usize = 6;

/// Why `bytes` are not a WebAssembly binary, or `None` when they start as
/// one (`\0asm`). wasmparser would say it too, as two arrays of bytes on
/// nine lines; this names the likely mistake in one line.
pub(crate) fn not_a_binary(bytes: &[u8]) -> Option<String> {
    if bytes.starts_with(b"\0asm") {
        return None;
    }
    let text = bytes.trim_ascii_start();
    let what = if bytes.is_empty() {
        "the file is empty"
    } else if text.starts_with(b"(") || text.starts_with(b";;") {
        "it looks like WebAssembly text (WAT), which the gateway does not \
         compile: convert it first, e.g. `wasm-tools parse FILE.wat -o FILE.wasm`"
    } else if bytes.starts_with(b"\x7fELF") {
        "it is an ELF file, such as compiled code from `shanhai compile`, \
         which goes to a gateway with `shanhai deploy --precompiled`"
    } else {
        "it does not start with WebAssembly's magic number, \\0asm"
    };
    Some(format!("not a WebAssembly binary: {what}"))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
