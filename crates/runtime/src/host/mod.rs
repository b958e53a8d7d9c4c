//! Host functions in the `shanhai` import namespace, and the per-store state
//! they work on.
//!
//! Each capability lives in its own file with an `add_to_linker`. Host
//! functions know nothing about triggers: they see the module's context and
//! the current event's [`EventState`]. They never call back into the guest
//! (standard Go cannot take re-entrant calls): variable-length results are
//! staged in [`EventState::staged`] and copied by `staged_read`.

pub(crate) mod config;
pub(crate) mod gpio;
pub(crate) mod http;
pub(crate) mod kv;
pub(crate) mod log;
pub(crate) mod mqtt;
pub(crate) mod output;
pub(crate) mod sql;
pub(crate) mod ws;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use shanhai_abi::HostStatus;
use wasmtime::{Caller, Linker, Memory, ResourceLimiter};
use wasmtime_wasi::p1::WasiP1Ctx;

/// What host functions know about the module an instance belongs to.
#[derive(Debug)]
pub(crate) struct ModuleContext {
    pub(crate) name: Arc<str>,
    pub(crate) version: Arc<str>,
    pub(crate) vars: BTreeMap<String, String>,
    pub(crate) grants: crate::Grants,
    pub(crate) services: Arc<HostServices>,
    /// This module's outbound HTTP client, made on its first `http_fetch`.
    pub(crate) http_client: OnceLock<http::ModuleHttpClient>,
    /// The module's log lines (log import, stdout, stderr) left to it.
    pub(crate) log_budget: Arc<log::LogBudget>,
}

/// The services host functions forward to, installed by the process that
/// owns the triggers (the gateway) once, before serving.
#[derive(Default)]
pub(crate) struct HostServices {
    pub(crate) websocket: OnceLock<Arc<dyn ws::WebSocketHost>>,
    pub(crate) mqtt: OnceLock<Arc<dyn mqtt::MqttHost>>,
    pub(crate) kv: OnceLock<Arc<shanhai_state::KvStore>>,
    pub(crate) sql: OnceLock<sql::SqlServices>,
    pub(crate) http: OnceLock<http::OutboundHttp>,
    pub(crate) gpio_root: OnceLock<std::path::PathBuf>,
    /// When each (module, kind of refusal) was last logged, so that a
    /// guest calling in a loop cannot flood the log ([`log_limited`]).
    pub(crate) denied_logged:
        std::sync::Mutex<std::collections::HashMap<(Arc<str>, &'static str), Instant>>,
    /// Each module's log budget, by module name, while a version of it is
    /// loaded.
    pub(crate) log_budgets:
        std::sync::Mutex<std::collections::HashMap<Arc<str>, std::sync::Weak<log::LogBudget>>>,
}

impl std::fmt::Debug for HostServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostServices")
            .field("websocket", &self.websocket.get().is_some())
            .field("mqtt", &self.mqtt.get().is_some())
            .field("kv", &self.kv.get().map(|kv| kv.backend_name()))
            .field("sql", &self.sql.get().is_some())
            .field("gpio_root", &self.gpio_root.get())
            .finish()
    }
}

/// State of the event an instance is handling right now; reset before each.
#[derive(Debug)]
pub(crate) struct EventState {
    pub(crate) request_id: Arc<str>,
    pub(crate) output: Vec<u8>,
    pub(crate) output_limit: usize,
    pub(crate) output_overflow: bool,
    pub(crate) staged: Option<Vec<u8>>,
    pub(crate) deadline: Instant,
    pub(crate) timed_out: bool,
}

impl EventState {
    fn idle() -> Self {
        Self {
            request_id: Arc::from(""),
            output: Vec::new(),
            output_limit: 0,
            output_overflow: false,
            staged: None,
            deadline: Instant::now(),
            timed_out: false,
        }
    }
}

/// The data of every store: WASI, the memory cap, the module and the event.
pub(crate) struct HostState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) module: Arc<ModuleContext>,
    /// The guest's exported memory, cached after instantiation so host
    /// functions need not look it up on every call.
    pub(crate) memory: Option<Memory>,
    pub(crate) event: EventState,
}

impl HostState {
    pub(crate) fn new(wasi: WasiP1Ctx, module: Arc<ModuleContext>, max_memory: usize) -> Self {
        Self {
            wasi,
            limiter: MemoryLimiter::new(max_memory),
            module,
            memory: None,
            event: EventState::idle(),
        }
    }

    /// Prepares for a new event.
    pub(crate) fn begin_event(
        &mut self,
        request_id: Arc<str>,
        output_limit: usize,
        deadline: Instant,
    ) {
        self.event = EventState {
            request_id,
            output: Vec::new(),
            output_limit,
            output_overflow: false,
            staged: None,
            deadline,
            timed_out: false,
        };
    }
}

/// Enforces the module's memory cap. Growing past it traps at once, and the
/// flag lets the invoker report `memory_limit` rather than a generic trap
/// (a Go guest would otherwise turn the failed grow into its own crash).
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    pub(crate) max_bytes: usize,
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            hit: false,
        }
    }
}

/// The error a store raises when the memory cap is hit.
#[derive(Debug, thiserror::Error)]
#[error("memory cap of {max} bytes exceeded (wanted {desired})")]
pub(crate) struct MemoryCapExceeded {
    pub(crate) desired: usize,
    pub(crate) max: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Err(MemoryCapExceeded {
                desired,
                max: self.max_bytes,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real
        // guest and keeps a hostile one from exhausting host memory.
        Ok(desired <= 1_000_000)
    }
}

/// Registers every `shanhai` host function.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    log::add_to_linker(linker)?;
    output::add_to_linker(linker)?;
    config::add_to_linker(linker)?;
    ws::add_to_linker(linker)?;
    mqtt::add_to_linker(linker)?;
    kv::add_to_linker(linker)?;
    sql::add_to_linker(linker)?;
    http::add_to_linker(linker)?;
    gpio::add_to_linker(linker)?;
    Ok(())
}

/// Borrows `len` bytes at `ptr` of the guest's memory together with the
/// host state, or `InvalidArgument` when the range is outside memory.
pub(crate) fn guest_bytes<'a>(
    caller: &'a mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> Result<(&'a mut [u8], &'a mut HostState), HostStatus> {
    let memory = caller.data().memory.ok_or(HostStatus::Internal)?;
    let (data, state) = memory.data_and_store_mut(caller);
    let start = usize::try_from(ptr as u32).map_err(|_| HostStatus::InvalidArgument)?;
    let len = usize::try_from(len).map_err(|_| HostStatus::InvalidArgument)?;
    let end = start.checked_add(len).ok_or(HostStatus::InvalidArgument)?;
    let bytes = data
        .get_mut(start..end)
        .ok_or(HostStatus::InvalidArgument)?;
    Ok((bytes, state))
}

/// A call the module has no grant for: logs it (at most once a minute per
/// module and capability), stages `detail` for the SDK's error message and
/// returns `denied`.
pub(crate) fn denied(state: &mut HostState, capability: &'static str, detail: String) -> i32 {
    if log_limited(state, capability) {
        let module = &state.module;
        tracing::warn!(
            module = &*module.name,
            request_id = &*state.event.request_id,
            capability,
            "capability denied: {detail}"
        );
    }
    fail(state, HostStatus::Denied, detail)
}

/// Whether a refusal of kind `what` by the module may be logged now: once
/// a minute per module and kind, so that a guest calling in a loop cannot
/// flood the log.
pub(crate) fn log_limited(state: &HostState, what: &'static str) -> bool {
    let module = &state.module;
    let now = Instant::now();
    let mut logged = module
        .services
        .denied_logged
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let key = (module.name.clone(), what);
    match logged.get(&key) {
        Some(last) if now.duration_since(*last) < std::time::Duration::from_secs(60) => false,
        _ => {
            logged.insert(key, now);
            true
        }
    }
}

/// A failed call of a † host function: stages `message` for the SDK's error
/// and returns `status`.
pub(crate) fn fail(state: &mut HostState, status: HostStatus, message: impl Into<String>) -> i32 {
    state.event.staged = Some(message.into().into_bytes());
    status as i32
}

/// Reads a UTF-8 string argument.
pub(crate) fn guest_str(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> Result<String, HostStatus> {
    let (bytes, _) = guest_bytes(caller, ptr, len)?;
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| HostStatus::InvalidArgument)
}

/// Stages a value for `staged_read` and returns its length as the ABI's
/// non-negative result.
pub(crate) fn stage(state: &mut HostState, value: Vec<u8>) -> i32 {
    let Ok(len) = i32::try_from(value.len()) else {
        return HostStatus::TooLarge as i32;
    };
    state.event.staged = Some(value);
    len
}
