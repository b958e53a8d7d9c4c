//! Counting what the modules handle, the same way for every trigger:
//! `shanhai_requests_total{module,trigger,status}` and
//! `shanhai_request_duration_seconds{module,trigger}`.
//!
//! Each trigger resolves a module's metric handles once, on its first
//! event, and keeps them ([`TriggerMetrics`]): looking a counter and a
//! histogram up by their labels on every event cost two allocations and
//! two hashed registry lookups, a measurable share of a fast endpoint's
//! cost (docs/benchmarks.md, "The HTTP path"). Handles are made lazily
//! because the recorder may be installed after a trigger is built, and a
//! handle resolved before it would count nowhere.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};
use shanhai_abi::EventKind;
use shanhai_runtime::{InvokeError, LoadedModule};

/// One trigger's request metric handles, per module.
pub struct TriggerMetrics {
    /// The `trigger` label: `http`, `websocket`, `mqtt`, `timer`, `tcp`.
    trigger: &'static str,
    /// Keys are the names of loaded or configured modules (see
    /// [`Self::of`]), which bounds them.
    by_module: RwLock<HashMap<Box<str>, Arc<ModuleMetrics>>>,
}

impl TriggerMetrics {
    /// No handles yet; they are made on each module's first event.
    pub fn new(trigger: &'static str) -> Self {
        Self {
            trigger,
            by_module: RwLock::default(),
        }
    }

    /// The handles of `module`, created on its first event if `known`
    /// says the config names it, so that requests naming made-up modules
    /// cannot grow the label set without bound.
    pub(crate) fn of(
        &self,
        module: &str,
        known: impl FnOnce() -> bool,
    ) -> Option<Arc<ModuleMetrics>> {
        if let Some(found) = read(&self.by_module).get(module) {
            return Some(found.clone());
        }
        if !known() {
            return None;
        }
        let handles = write(&self.by_module)
            .entry(module.into())
            .or_insert_with(|| {
                Arc::new(ModuleMetrics {
                    module: module.to_owned(),
                    trigger: self.trigger,
                    duration: metrics::histogram!("shanhai_request_duration_seconds", "module" => module.to_owned(), "trigger" => self.trigger),
                    by_status: RwLock::default(),
                })
            })
            .clone();
        Some(handles)
    }

    /// Counts one event of a loaded module (whose name is bounded: it came
    /// from the modules folder, the config or the admin API).
    pub fn record(&self, module: &str, status: &str, elapsed: Duration) {
        // Under the read lock rather than through `of`, which would clone
        // the `Arc` (two atomic operations on a line every worker shares)
        // on every event.
        if let Some(handles) = read(&self.by_module).get(module) {
            handles.record(status, elapsed);
            return;
        }
        if let Some(handles) = self.of(module, || true) {
            handles.record(status, elapsed);
        }
    }

    /// Counts an event that found no module to run (`unknown_module`):
    /// a request, but with no duration to record.
    pub(crate) fn count_unloaded(&self, module: &str) {
        if let Some(handles) = self.of(module, || true) {
            handles.count("unknown_module");
        }
    }
}

/// One module's request counter per status and its latency histogram,
/// for one trigger.
pub(crate) struct ModuleMetrics {
    module: String,
    trigger: &'static str,
    duration: Histogram,
    /// The few statuses a module answers with; a linear scan beats hashing.
    by_status: RwLock<Vec<(Box<str>, Counter)>>,
}

impl ModuleMetrics {
    /// Counts one request answered with `status` that took `elapsed`.
    pub(crate) fn record(&self, status: &str, elapsed: Duration) {
        self.count(status);
        self.duration.record(elapsed.as_secs_f64());
    }

    fn count(&self, status: &str) {
        if let Some((_, counter)) = read(&self.by_status).iter().find(|(s, _)| &**s == status) {
            counter.increment(1);
            return;
        }
        // Another event may have added it since the read.
        let mut by_status = write(&self.by_status);
        let at = match by_status.iter().position(|(s, _)| &**s == status) {
            Some(at) => at,
            None => {
                let counter = metrics::counter!("shanhai_requests_total", "module" => self.module.clone(), "trigger" => self.trigger, "status" => status.to_owned());
                by_status.push((status.into(), counter));
                by_status.len() - 1
            }
        };
        by_status[at].1.increment(1);
    }
}

/// A read guard, also after a panic elsewhere: the maps only ever grow by
/// whole entries.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Delivers an event to `module` and counts it in `metrics` (status `ok`
/// or the failure's kind), for every trigger but HTTP, whose requests
/// carry the response status instead. Returns the result and how long it
/// took.
pub(crate) async fn invoke(
    metrics: &TriggerMetrics,
    module: &LoadedModule,
    kind: EventKind,
    envelope: &[u8],
    request_id: Arc<str>,
) -> (Result<Vec<u8>, InvokeError>, Duration) {
    let started = Instant::now();
    let result = module.invoke_event(kind, envelope, request_id).await;
    let elapsed = started.elapsed();
    let status = match &result {
        Ok(_) => "ok",
        Err(err) => err.kind(),
    };
    metrics.record(module.name(), status, elapsed);
    (result, elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only modules that `known` admits get handles, and a module's
    /// handles are made once.
    #[test]
    fn handles_are_made_once_and_only_for_known_modules() {
        let metrics = TriggerMetrics::new("mqtt");
        assert!(metrics.of("made-up", || false).is_none());
        assert!(read(&metrics.by_module).is_empty());
        let first = metrics.of("sensor", || true).expect("known");
        let again = metrics
            .of("sensor", || panic!("not asked again"))
            .expect("kept");
        assert!(Arc::ptr_eq(&first, &again));
        first.record("ok", Duration::from_millis(1));
        first.record("trap", Duration::from_millis(1));
        first.record("ok", Duration::from_millis(1));
        let statuses: Vec<String> = read(&first.by_status)
            .iter()
            .map(|(status, _)| status.to_string())
            .collect();
        assert_eq!(statuses, ["ok", "trap"]);
    }
}
