//! Per-module limits and settings, with the defaults the gateway applies
//! when the config says nothing.

use std::collections::BTreeMap;
use std::time::Duration;

/// Resource limits for one module. Every field has a default sized for an
/// edge box running standard-Go modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleLimits {
    /// Wall-clock budget of one event, enforced by epoch interruption.
    pub deadline: Duration,
    /// Cap on an instance's linear memory. Go 1.26 `c-shared` modules start
    /// at about 34 MiB (a large BSS), so the default leaves room to grow.
    pub max_memory_bytes: usize,
    /// Fuel per event when the runtime was built with fuel metering.
    pub fuel: Option<u64>,
    /// Largest request body the triggers accept for this module.
    pub max_request_bytes: usize,
    /// Largest output an event may produce.
    pub max_response_bytes: usize,
    /// Most instances of this module alive at once.
    pub max_instances: usize,
    /// Most events waiting for an instance; beyond this they are refused.
    pub max_queue: usize,
    /// Longest an event waits for an instance before it is refused.
    pub queue_timeout: Duration,
    /// Initialised instances kept even when idle. One is created at load
    /// time regardless, to validate the module; with 0 it is dropped after
    /// `idle_timeout` like any idle instance.
    pub min_instances: usize,
    /// Events an instance serves before it is recycled; `None`: no limit.
    pub max_requests_per_instance: Option<u64>,
    /// Idle instances above `min_instances` are dropped after this long.
    pub idle_timeout: Duration,
    /// How long an event waits for a busy instance to come back before the
    /// pool creates a new one (scale-up).
    pub scale_up_wait: Duration,
    /// Log lines a second the module may write (log import, stdout and
    /// stderr together), on average; past it lines are dropped, counted and
    /// summed up in one log line. 0: no limit.
    pub log_lines_per_second: u32,
    /// Log lines the module may write at once, above the rate.
    pub log_burst: u32,
}

impl Default for ModuleLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(5),
            max_memory_bytes: 256 << 20,
            fuel: None,
            max_request_bytes: 4 << 20,
            max_response_bytes: 8 << 20,
            max_instances: 16,
            max_queue: 1024,
            queue_timeout: Duration::from_secs(5),
            // An idle module need not hold an instance: recreating one
            // after an idle period costs milliseconds, once. (The freed
            // pool slot stays warm in wasmtime 48; docs/benchmarks.md,
            // "Footprint", measures what that leaves resident.)
            min_instances: 0,
            max_requests_per_instance: None,
            idle_timeout: Duration::from_secs(60),
            scale_up_wait: Duration::from_millis(2),
            // Plenty for a module that logs what it does; a tight loop
            // writes hundreds of thousands of lines a second, which no log
            // pipeline or disk of an edge box should have to take.
            log_lines_per_second: 100,
            log_burst: 200,
        }
    }
}

/// What the runtime needs to know about a module besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleSettings {
    /// Resource limits.
    pub limits: ModuleLimits,
    /// Config variables and secrets readable by the guest (`config_get`;
    /// environment variables for command modules).
    pub vars: BTreeMap<String, String>,
    /// What the module's host calls may touch.
    pub grants: crate::Grants,
}
