//! A loaded module: its compiled code, kind, numeric exports and the pool of
//! instances that serve it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shanhai_abi::{
    ABI_VERSION, EXPORT_ABI_VERSION, EXPORT_ALLOC, EXPORT_EVENT, EXPORT_INITIALIZE, EXPORT_START,
    EventKind, EventStatus, IMPORT_MODULE,
};
use smallvec::SmallVec;
use wasmtime::{
    ExternType, Func, Instance, InstancePre, Module, Store, Trap, TypedFunc, UpdateDeadline, Val,
    ValType,
};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

use crate::engine::{AfterLoad, RuntimeInner};
use crate::error::{InvokeError, LoadError};
use crate::host::{HostState, ModuleContext};
use crate::limits::{ModuleLimits, ModuleSettings};
use crate::pool::{InstancePool, PoolStats, Pooled};
use crate::stdio::LogStream;

/// How a module runs, detected from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// Exports `shanhai_event`: pooled instances handling SDK events.
    Reactor,
    /// Neither `shanhai_event` nor `_start`: pooled instances whose numeric
    /// exports are called directly.
    Exports,
    /// Exports `_start`: a fresh instance per request, CGI-style.
    Command,
}

impl ModuleKind {
    /// The name used in logs and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reactor => "reactor",
            Self::Exports => "exports",
            Self::Command => "command",
        }
    }
}

/// Value types of numeric exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumType {
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
}

/// A value passed to or returned from a numeric export.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NumValue {
    /// 32-bit integer.
    I32(i32),
    /// 64-bit integer.
    I64(i64),
    /// 32-bit float.
    F32(f32),
    /// 64-bit float.
    F64(f64),
}

/// The signature of an export whose parameters and results are all numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumericSignature {
    /// Parameter types.
    pub params: Vec<NumType>,
    /// Result types.
    pub results: Vec<NumType>,
}

/// What a command module printed and how it ended.
#[derive(Debug)]
pub struct CommandOutput {
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
}

/// A compiled, validated module with its instance pool.
pub struct LoadedModule {
    runtime: Arc<RuntimeInner>,
    context: Arc<ModuleContext>,
    kind: ModuleKind,
    pre: InstancePre<HostState>,
    numeric: BTreeMap<String, NumericExport>,
    limits: ModuleLimits,
    pool: InstancePool<PooledInstance>,
}

struct PooledInstance {
    store: Store<HostState>,
    instance: Instance,
    /// Boxed: instances move in and out of the pool on every event, and
    /// inline these functions made each move 200 bytes instead of 80.
    entry: Option<Box<EventEntry>>,
    /// The numeric exports this instance was called on, by
    /// [`NumericExport::slot`]: looked up by name once, not per call.
    numeric: Vec<Option<Func>>,
}

impl PooledInstance {
    /// The instance's function for a numeric export of its module.
    fn numeric_func(&mut self, export: &NumericExport, name: &str) -> Func {
        if self.numeric.len() <= export.slot {
            self.numeric.resize(export.slot + 1, None);
        }
        *self.numeric[export.slot].get_or_insert_with(|| {
            self.instance
                .get_func(&mut self.store, name)
                .expect("numeric exports were listed from this module")
        })
    }
}

/// A numeric export: its signature, and its place in each instance's
/// cache of functions.
struct NumericExport {
    signature: NumericSignature,
    slot: usize,
}

#[derive(Clone)]
struct EventEntry {
    alloc: TypedFunc<i32, i32>,
    event: TypedFunc<(i32, i32, i32), i32>,
}

impl LoadedModule {
    pub(crate) async fn new(
        runtime: Arc<RuntimeInner>,
        name: &str,
        sha256: &str,
        module: Module,
        settings: ModuleSettings,
        after: AfterLoad,
    ) -> Result<Arc<Self>, LoadError> {
        check_imports(&module)?;
        let kind = detect_kind(&module)?;
        let numeric = numeric_exports(&module);
        let pre = runtime
            .linker
            .instantiate_pre(&module)
            .map_err(|err| LoadError::Abi(format!("{err:#}")))?;
        let limits = settings.limits;
        let loaded = Arc::new(Self {
            context: Arc::new(ModuleContext {
                name: Arc::from(name),
                version: Arc::from(&sha256[..crate::engine::VERSION_BYTES * 2]),
                vars: settings.vars,
                grants: settings.grants,
                services: runtime.services.clone(),
                http_client: std::sync::OnceLock::new(),
                log_budget: crate::host::log::LogBudget::for_module(
                    &runtime.services,
                    &Arc::from(name),
                    limits.log_lines_per_second,
                    limits.log_burst,
                ),
            }),
            runtime,
            kind,
            pre,
            numeric,
            pool: InstancePool::new(Arc::from(name), &limits),
            limits,
        });
        if kind != ModuleKind::Command {
            // Instantiate and initialise the first instance now: a module
            // whose `_initialize` traps, or whose memory does not fit its
            // cap, is refused at load time instead of failing its first
            // request. It stays for traffic expected at once; a module
            // that rests keeps only `min_instances` (by default none, and,
            // below, no code) until its first event.
            let validated = loaded.instantiate().await.map_err(LoadError::Init)?;
            if after == AfterLoad::Serve || loaded.limits.min_instances > 0 {
                loaded.pool.put_back(loaded.pool.adopt(validated), false);
                for _ in 1..loaded.limits.min_instances {
                    let instance = loaded.instantiate().await.map_err(LoadError::Init)?;
                    loaded.pool.put_back(loaded.pool.adopt(instance), false);
                }
            }
        }
        loaded.release_code_if_dormant();
        spawn_pool_keeper(&loaded);
        Ok(loaded)
    }

    /// The name the module was loaded under.
    pub fn name(&self) -> &str {
        &self.context.name
    }

    /// A short content hash identifying this version.
    pub fn version(&self) -> &str {
        &self.context.version
    }

    /// How the module runs.
    pub fn kind(&self) -> ModuleKind {
        self.kind
    }

    /// The module's limits.
    pub fn limits(&self) -> &ModuleLimits {
        &self.limits
    }

    /// The signature of a numeric export, if `name` is one.
    pub fn numeric_export(&self, name: &str) -> Option<&NumericSignature> {
        self.numeric.get(name).map(|export| &export.signature)
    }

    /// Names of all numeric exports.
    pub fn numeric_exports(&self) -> impl Iterator<Item = &str> {
        self.numeric.keys().map(String::as_str)
    }

    /// Instances currently idle in the pool.
    pub fn idle_instances(&self) -> usize {
        self.pool.stats().idle
    }

    /// Sizes and counters of the instance pool.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Delivers one event to an SDK reactor and returns its output.
    pub async fn invoke_event(
        &self,
        kind: EventKind,
        envelope: &[u8],
        request_id: Arc<str>,
    ) -> Result<Vec<u8>, InvokeError> {
        if self.kind != ModuleKind::Reactor {
            return Err(InvokeError::NoHandler(handler_name(kind)));
        }
        let _permit = self.pool.acquire().await?;
        let mut instance = self.checkout().await?;
        let entry = instance
            .entry
            .as_deref()
            .expect("reactor instances have an event entry")
            .clone();
        let result = self
            .with_deadline(&mut instance, request_id, |store| {
                Box::pin(async move {
                    let len = i32::try_from(envelope.len())
                        .map_err(|_| InvokeError::BadArguments("event too large".into()))?;
                    let ptr = entry
                        .alloc
                        .call_async(&mut *store, len)
                        .await
                        .map_err(Fault::Wasm)?;
                    let memory = store
                        .data()
                        .memory
                        .expect("reactor instances export memory");
                    if ptr == 0
                        || memory
                            .write(&mut *store, ptr as u32 as usize, envelope)
                            .is_err()
                    {
                        return Err(InvokeError::BadOutput(format!(
                            "{EXPORT_ALLOC}({len}) returned an unusable pointer {ptr}"
                        ))
                        .into());
                    }
                    let status = entry
                        .event
                        .call_async(&mut *store, (kind as i32, ptr, len))
                        .await
                        .map_err(Fault::Wasm)?;
                    Ok(status)
                })
            })
            .await;
        let status = match result {
            Ok(status) => status,
            Err(err) => return Err(self.fail(instance, err)),
        };
        let output = std::mem::take(&mut instance.store.data_mut().event.output);
        if instance.store.data().event.output_overflow {
            return Err(self.fail(
                instance,
                InvokeError::OutputTooLarge(self.limits.max_response_bytes).into(),
            ));
        }
        self.checkin(instance);
        let message = || String::from_utf8_lossy(&output).into_owned();
        match EventStatus::from_raw(status) {
            Some(EventStatus::Ok) => Ok(output),
            Some(EventStatus::Error) => Err(InvokeError::Guest(message())),
            Some(EventStatus::NotFound) => Err(InvokeError::NotFound(message())),
            Some(EventStatus::Unsupported) => Err(InvokeError::NoHandler(handler_name(kind))),
            None => Err(InvokeError::BadOutput(format!(
                "{EXPORT_EVENT} returned unknown status {status}"
            ))),
        }
    }

    /// Calls a numeric export with already-typed arguments.
    pub async fn call_numeric(
        &self,
        function: &str,
        args: &[NumValue],
        request_id: Arc<str>,
    ) -> Result<Vec<NumValue>, InvokeError> {
        let export = self.numeric.get(function).ok_or_else(|| {
            InvokeError::NotFound(format!("module has no numeric export `{function}`"))
        })?;
        let signature = &export.signature;
        if args.len() != signature.params.len() {
            return Err(InvokeError::BadArguments(format!(
                "`{function}` takes {} arguments, got {}",
                signature.params.len(),
                args.len()
            )));
        }
        if self.kind == ModuleKind::Command {
            return Err(InvokeError::NoHandler("numeric-export"));
        }
        // On the stack: exports take and return a few numbers.
        let params: SmallVec<[Val; 4]> = args.iter().map(|a| to_val(*a)).collect();
        let mut results: SmallVec<[Val; 4]> =
            signature.results.iter().map(|_| Val::I32(0)).collect();
        let _permit = self.pool.acquire().await?;
        let mut instance = self.checkout().await?;
        let func = instance.numeric_func(export, function);
        let result = self
            .with_deadline(&mut instance, request_id, |store| {
                let results = &mut results;
                let params = &params;
                Box::pin(async move {
                    func.call_async(&mut *store, params, results)
                        .await
                        .map_err(Fault::Wasm)?;
                    Ok(())
                })
            })
            .await;
        if let Err(err) = result {
            return Err(self.fail(instance, err));
        }
        self.checkin(instance);
        Ok(results.iter().filter_map(from_val).collect())
    }

    /// Runs a command module once in a fresh instance, CGI-style: `stdin`
    /// as its standard input, `env` as its environment (after the module's
    /// config variables).
    pub async fn run_command(
        &self,
        stdin: Vec<u8>,
        env: &[(String, String)],
        request_id: Arc<str>,
    ) -> Result<CommandOutput, InvokeError> {
        if self.kind != ModuleKind::Command {
            return Err(InvokeError::NoHandler("command"));
        }
        let _permit = self.pool.acquire().await?;
        let stdout = MemoryOutputPipe::new(self.limits.max_response_bytes.saturating_add(1));
        let stderr = MemoryOutputPipe::new(16 * 1024);
        let mut wasi = wasmtime_wasi::WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(stdin))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(&[self.name()]);
        for (key, value) in &self.context.vars {
            wasi.env(key, value);
        }
        for (key, value) in env {
            wasi.env(key, value);
        }
        let mut store = self.new_store(wasi.build_p1());
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|err| InvokeError::Unavailable(format!("{err:#}")))?;
        store.data_mut().memory = instance.get_memory(&mut store, "memory");
        let start = instance
            .get_typed_func::<(), ()>(&mut store, EXPORT_START)
            .map_err(|err| InvokeError::BadOutput(format!("{err:#}")))?;
        let mut pooled = PooledInstance {
            store,
            instance,
            entry: None,
            numeric: Vec::new(),
        };
        let result = self
            .with_deadline(&mut pooled, request_id, |store| {
                Box::pin(async move {
                    start
                        .call_async(&mut *store, ())
                        .await
                        .map_err(Fault::Wasm)?;
                    Ok(())
                })
            })
            .await;
        let exit_code = match result {
            Ok(()) => 0,
            Err(Fault::Wasm(err)) if err.downcast_ref::<I32Exit>().is_some() => {
                err.downcast_ref::<I32Exit>().map_or(0, |e| e.0)
            }
            Err(fault) => {
                let err = self.classify(&mut pooled.store, fault);
                return Err(
                    if stdout.contents().len() > self.limits.max_response_bytes {
                        InvokeError::OutputTooLarge(self.limits.max_response_bytes)
                    } else {
                        err
                    },
                );
            }
        };
        let stdout = stdout.contents();
        if stdout.len() > self.limits.max_response_bytes {
            return Err(InvokeError::OutputTooLarge(self.limits.max_response_bytes));
        }
        let stderr = stderr.contents();
        let stderr = String::from_utf8_lossy(&stderr);
        let stderr = stderr.trim();
        if !stderr.is_empty() {
            tracing::warn!(target: "shanhai::guest", module = self.name(), request_id = &*pooled.store.data().event.request_id, stream = "stderr", "{stderr}");
        }
        if exit_code != 0 {
            return Err(InvokeError::Exit {
                code: exit_code,
                stderr: if stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {stderr}")
                },
            });
        }
        Ok(CommandOutput {
            stdout: stdout.to_vec(),
        })
    }

    /// An idle instance, or a new one. The caller holds a slot.
    async fn checkout(&self) -> Result<Pooled<PooledInstance>, InvokeError> {
        match self.pool.take().await {
            Some(instance) => Ok(instance),
            None => {
                // Boxed: instantiating is rare once the pool is warm, and its
                // future would otherwise make every call's future larger, a
                // size that is copied on every request.
                let instance = Box::pin(self.instantiate())
                    .await
                    .map_err(InvokeError::Unavailable)?;
                Ok(self.pool.adopt(instance))
            }
        }
    }

    /// Creates instances up to `min_instances`; `false` when one could not
    /// be made now (every slot busy, or it failed), to be tried again.
    async fn refill(&self) -> bool {
        for _ in 0..self.pool.deficit() {
            let Some(_slot) = self.pool.try_slot() else {
                return false;
            };
            match self.instantiate().await {
                Ok(instance) => {
                    let pooled = self.pool.adopt(instance);
                    self.pool.put_back(pooled, false);
                }
                Err(err) => {
                    tracing::warn!(module = self.name(), error = %err, "could not refill the instance pool");
                    return false;
                }
            }
        }
        true
    }

    /// Pages the module's compiled code out of memory when the module is
    /// dormant (see [`InstancePool::take_dormancy`]) and
    /// `runtime.release_idle_code` is on; the next event reads it back.
    fn release_code_if_dormant(&self) {
        if self.runtime.config.release_idle_code && self.pool.take_dormancy() {
            let released = crate::residency::page_out(self.pre.module().image_range());
            tracing::debug!(
                module = self.name(),
                released,
                "idle module's code paged out"
            );
        }
    }

    fn checkin(&self, instance: Pooled<PooledInstance>) {
        self.pool.put_back(instance, true);
    }

    /// Classifies a failure and drops the instance when it must not be reused.
    fn fail(&self, mut instance: Pooled<PooledInstance>, fault: Fault) -> InvokeError {
        let err = self.classify(&mut instance.store, fault);
        if err.discards_instance() {
            tracing::debug!(
                module = self.name(),
                kind = err.kind(),
                "discarding instance"
            );
            metrics::counter!("shanhai_traps_total", "module" => self.name().to_owned(), "kind" => err.kind())
                .increment(1);
            self.pool.discard(instance);
        } else {
            self.checkin(instance);
        }
        err
    }

    fn classify(&self, store: &mut Store<HostState>, fault: Fault) -> InvokeError {
        let err = match fault {
            Fault::Invoke(err) => return err,
            Fault::Wasm(err) => err,
        };
        let state = store.data();
        if state.event.timed_out {
            return InvokeError::Timeout(self.limits.deadline);
        }
        if state.limiter.hit {
            return InvokeError::MemoryLimit(self.limits.max_memory_bytes);
        }
        if let Some(exit) = err.downcast_ref::<I32Exit>() {
            return InvokeError::Exit {
                code: exit.0,
                stderr: String::new(),
            };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::StackOverflow) => InvokeError::StackOverflow,
            Some(Trap::OutOfFuel) => InvokeError::FuelExhausted,
            Some(trap) => {
                tracing::debug!(
                    module = self.name(),
                    error = format!("{err:?}"),
                    "guest trapped"
                );
                InvokeError::Trap(format!("wasm trap: {trap}"))
            }
            None => InvokeError::Trap(format!("{err:#}")),
        }
    }

    fn new_store(&self, wasi: wasmtime_wasi::p1::WasiP1Ctx) -> Store<HostState> {
        let mut store = Store::new(
            &self.runtime.engine,
            HostState::new(wasi, self.context.clone(), self.limits.max_memory_bytes),
        );
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|mut context| {
            let event = &mut context.data_mut().event;
            if Instant::now() >= event.deadline {
                event.timed_out = true;
                return Err(wasmtime::Error::msg("deadline exceeded"));
            }
            // Still within the deadline: let other tasks on this worker run,
            // then check again at the next tick.
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    /// Creates and initialises a pooled (reactor or exports) instance
    /// within the runtime's init deadline. Epoch interruption stops guest
    /// code that runs too long; the timeout around it also stops a guest
    /// blocked in a host call or a WASI sleep, where no epoch check runs.
    async fn instantiate(&self) -> Result<PooledInstance, String> {
        let deadline = self.runtime.config.init_deadline;
        let grace = self.runtime.config.epoch_tick * 2;
        let _ticking = self.runtime.ticker.running();
        match tokio::time::timeout(deadline + grace, self.instantiate_within(deadline)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(format!(
                "initialisation did not finish within the {deadline:?} init deadline (runtime.init_deadline_ms); \
                 the guest was blocked in a host call or a sleep"
            )),
        }
    }

    async fn instantiate_within(&self, deadline: Duration) -> Result<PooledInstance, String> {
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stdout(LogStream {
                module: self.context.name.clone(),
                stream: "stdout",
                budget: Arc::clone(&self.context.log_budget),
            })
            .stderr(LogStream {
                module: self.context.name.clone(),
                stream: "stderr",
                budget: Arc::clone(&self.context.log_budget),
            })
            .args(&[self.name()])
            .build_p1();
        let mut store = self.new_store(wasi);
        store
            .data_mut()
            .begin_event(Arc::from("init"), 0, Instant::now() + deadline);
        store.set_epoch_deadline(1);
        if self.runtime.config.consume_fuel {
            store
                .set_fuel(self.limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| e.to_string())?;
        }
        let describe = |store: &mut Store<HostState>, err: wasmtime::Error| {
            let state = store.data();
            if state.limiter.hit {
                format!(
                    "memory cap of {} bytes exceeded",
                    self.limits.max_memory_bytes
                )
            } else if state.event.timed_out {
                format!(
                    "initialisation exceeded the {deadline:?} init deadline (runtime.init_deadline_ms)"
                )
            } else {
                format!("{err:#}")
            }
        };
        let instance = match self.pre.instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(err) => return Err(describe(&mut store, err)),
        };
        store.data_mut().memory = instance.get_memory(&mut store, "memory");
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, EXPORT_INITIALIZE)
            && let Err(err) = init.call_async(&mut store, ()).await
        {
            return Err(format!(
                "{EXPORT_INITIALIZE} failed: {}",
                describe(&mut store, err)
            ));
        }
        let entry = if self.kind == ModuleKind::Reactor {
            let version = instance
                .get_typed_func::<(), i32>(&mut store, EXPORT_ABI_VERSION)
                .map_err(|_| format!("missing export `{EXPORT_ABI_VERSION}: () -> i32`"))?;
            let reported = version
                .call_async(&mut store, ())
                .await
                .map_err(|e| describe(&mut store, e))?;
            if reported != ABI_VERSION {
                return Err(format!(
                    "guest speaks ABI version {reported}; this host supports version {ABI_VERSION}"
                ));
            }
            if store.data().memory.is_none() {
                return Err("reactor module does not export `memory`".into());
            }
            Some(Box::new(EventEntry {
                alloc: instance
                    .get_typed_func(&mut store, EXPORT_ALLOC)
                    .map_err(|_| format!("missing export `{EXPORT_ALLOC}: (i32) -> i32`"))?,
                event: instance
                    .get_typed_func(&mut store, EXPORT_EVENT)
                    .map_err(|_| {
                        format!("export `{EXPORT_EVENT}` must be (i32, i32, i32) -> i32")
                    })?,
            }))
        } else {
            None
        };
        Ok(PooledInstance {
            store,
            instance,
            entry,
            numeric: Vec::new(),
        })
    }

    /// Runs `call` on the instance's store within the module's deadline and
    /// fuel budget.
    async fn with_deadline<'a, R>(
        &self,
        instance: &'a mut PooledInstance,
        request_id: Arc<str>,
        call: impl FnOnce(
            &'a mut Store<HostState>,
        )
            -> std::pin::Pin<Box<dyn Future<Output = Result<R, Fault>> + Send + 'a>>,
    ) -> Result<R, Fault> {
        let store = &mut instance.store;
        let started = Instant::now();
        let _ticking = self.runtime.ticker.running();
        store.data_mut().begin_event(
            request_id,
            self.limits.max_response_bytes,
            started + self.limits.deadline,
        );
        store.set_epoch_deadline(1);
        if self.runtime.config.consume_fuel {
            store
                .set_fuel(self.limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| Fault::Invoke(InvokeError::Unavailable(e.to_string())))?;
        }
        // Epoch interruption only fires while guest code runs; a guest
        // waiting in a host call (a WASI sleep, later a slow backend) is cut
        // off here instead. Dropping the call abandons it mid-flight, so a
        // timeout always discards the instance. The timer is made only when
        // the call waits: most calls finish on their first poll, and a
        // timer per call (the runtime handle, the wheel) was a measurable
        // share of a fast request. A guest computing past a tick yields
        // (the epoch callback), so it waits here too.
        let grace = self.runtime.config.epoch_tick * 2;
        let timeout_at = tokio::time::Instant::from_std(started) + self.limits.deadline + grace;
        let mut call = call(store);
        let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(result) = call.as_mut().poll(cx) {
                return std::task::Poll::Ready(result);
            }
            let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(timeout_at)));
            timer
                .as_mut()
                .poll(cx)
                .map(|()| Err(Fault::Invoke(InvokeError::Timeout(self.limits.deadline))))
        })
        .await
    }
}

/// A failure inside an invocation, classified once the store is reachable.
pub(crate) enum Fault {
    /// Already classified.
    Invoke(InvokeError),
    /// An error from wasmtime: a trap, a limit, an exit.
    Wasm(wasmtime::Error),
}

impl From<InvokeError> for Fault {
    fn from(err: InvokeError) -> Self {
        Self::Invoke(err)
    }
}

fn check_imports(module: &Module) -> Result<(), LoadError> {
    for import in module.imports() {
        let known = match import.module() {
            IMPORT_MODULE => shanhai_abi::import::ALL.contains(&import.name()),
            // The linker validates WASI names; `instantiate_pre` names any
            // function WASI preview 1 does not have.
            "wasi_snapshot_preview1" => true,
            _ => false,
        };
        if !known {
            return Err(LoadError::UnknownImport {
                module: import.module().to_owned(),
                name: import.name().to_owned(),
                hint: if import.module() == IMPORT_MODULE {
                    "this Shanhai version does not have that host function; see docs/abi.md"
                } else {
                    "modules may import only `shanhai` and `wasi_snapshot_preview1` functions"
                },
            });
        }
    }
    Ok(())
}

fn detect_kind(module: &Module) -> Result<ModuleKind, LoadError> {
    let has = |name: &str| module.get_export(name).is_some();
    match (has(EXPORT_EVENT), has(EXPORT_START)) {
        (true, true) => Err(LoadError::Abi(format!(
            "module exports both `{EXPORT_EVENT}` (reactor) and `{EXPORT_START}` (command); build a reactor with -buildmode=c-shared"
        ))),
        (true, false) => Ok(ModuleKind::Reactor),
        (false, true) => Ok(ModuleKind::Command),
        (false, false) => Ok(ModuleKind::Exports),
    }
}

/// Exports whose parameters and results are all numbers, minus the ABI's
/// own entry points and names starting with `_` (toolchain and SDK
/// internals such as `_initialize`, by the usual convention).
fn numeric_exports(module: &Module) -> BTreeMap<String, NumericExport> {
    let num = |t: &ValType| match t {
        ValType::I32 => Some(NumType::I32),
        ValType::I64 => Some(NumType::I64),
        ValType::F32 => Some(NumType::F32),
        ValType::F64 => Some(NumType::F64),
        _ => None,
    };
    module
        .exports()
        .filter(|e| {
            !e.name().starts_with('_')
                && !matches!(e.name(), EXPORT_ABI_VERSION | EXPORT_ALLOC | EXPORT_EVENT)
        })
        .filter_map(|export| {
            let ExternType::Func(func) = export.ty() else {
                return None;
            };
            let params = func.params().map(|t| num(&t)).collect::<Option<Vec<_>>>()?;
            let results = func
                .results()
                .map(|t| num(&t))
                .collect::<Option<Vec<_>>>()?;
            Some((
                export.name().to_owned(),
                NumericSignature { params, results },
            ))
        })
        .enumerate()
        .map(|(slot, (name, signature))| (name, NumericExport { signature, slot }))
        .collect()
}

/// How errors name the handler an event kind needs.
fn handler_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Http => "HTTP",
        EventKind::Call => "byte-function",
        EventKind::WebSocket => "WebSocket",
        EventKind::Timer => "timer",
        EventKind::Mqtt => "MQTT",
        EventKind::Tcp => "TCP",
    }
}

fn to_val(value: NumValue) -> Val {
    match value {
        NumValue::I32(v) => Val::I32(v),
        NumValue::I64(v) => Val::I64(v),
        NumValue::F32(v) => Val::F32(v.to_bits()),
        NumValue::F64(v) => Val::F64(v.to_bits()),
    }
}

fn from_val(value: &Val) -> Option<NumValue> {
    match value {
        Val::I32(v) => Some(NumValue::I32(*v)),
        Val::I64(v) => Some(NumValue::I64(*v)),
        Val::F32(v) => Some(NumValue::F32(f32::from_bits(*v))),
        Val::F64(v) => Some(NumValue::F64(f64::from_bits(*v))),
        _ => None,
    }
}

/// The keeper looks no more often than this, whatever its pool plans: an
/// `idle_timeout_ms` of 0 would otherwise have it spin while an instance
/// above `min_instances` is busy.
const KEEPER_MIN_GAP: Duration = Duration::from_millis(100);

/// When the keeper looks next: at its pool's plan (`None`: only when
/// woken), within `retry` when a refill could not be made, and never
/// sooner than [`KEEPER_MIN_GAP`] after `now`.
fn keeper_wake_at(
    plan: Option<Instant>,
    refilled: bool,
    retry: Duration,
    now: Instant,
) -> Option<Instant> {
    let retry_at = (!refilled).then(|| now + retry);
    let earliest = plan.into_iter().chain(retry_at).min();
    earliest.map(|at| at.max(now + KEEPER_MIN_GAP))
}

/// Reaps idle instances past their `idle_timeout`, keeps the pool at
/// `min_instances` and pages dormant code out, until the module is
/// dropped. Between chores it sleeps until the pool's next one, or until
/// the pool wakes it: a module whose pool has nothing to reap costs an
/// idle box no wake-up.
fn spawn_pool_keeper(module: &Arc<LoadedModule>) {
    let weak = Arc::downgrade(module);
    let wake = module.pool.keeper();
    let retry = module.pool.refill_retry();
    tokio::spawn(async move {
        loop {
            let next = {
                let Some(module) = weak.upgrade() else {
                    return;
                };
                let reaped = module.pool.reap();
                if reaped > 0 {
                    tracing::debug!(module = module.name(), reaped, "reaped idle instances");
                }
                module.release_code_if_dormant();
                // Commands run in a fresh instance each; none is kept.
                let refilled = module.kind == ModuleKind::Command || module.refill().await;
                let plan = module
                    .pool
                    .next_chore(module.runtime.config.release_idle_code);
                keeper_wake_at(plan, refilled, retry, Instant::now())
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = wake.notified() => {}
                    }
                }
                None => wake.notified().await,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keeper sleeps without a plan, follows its pool's plan, retries
    /// a refill it could not make, and never looks again sooner than
    /// [`KEEPER_MIN_GAP`] (a plan due already, as with an `idle_timeout`
    /// of 0, would have it spin).
    #[test]
    fn the_keeper_wakes_by_plan_retry_and_never_in_a_loop() {
        let now = Instant::now();
        let retry = Duration::from_secs(30);
        let later = now + Duration::from_secs(60);
        assert_eq!(keeper_wake_at(None, true, retry, now), None);
        assert_eq!(keeper_wake_at(Some(later), true, retry, now), Some(later));
        assert_eq!(keeper_wake_at(None, false, retry, now), Some(now + retry));
        assert_eq!(
            keeper_wake_at(Some(later), false, retry, now),
            Some(now + retry)
        );
        assert_eq!(
            keeper_wake_at(Some(now), true, retry, now),
            Some(now + KEEPER_MIN_GAP)
        );
        assert_eq!(
            keeper_wake_at(None, false, Duration::ZERO, now),
            Some(now + KEEPER_MIN_GAP)
        );
    }
}
