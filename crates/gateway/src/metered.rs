//! Running one event on a module and counting it, the same way for every
//! trigger that is not HTTP (the HTTP trigger labels its requests with the
//! response status instead).

use std::sync::Arc;
use std::time::{Duration, Instant};

use shanhai_abi::EventKind;
use shanhai_runtime::{InvokeError, LoadedModule};

/// Delivers an event to `module` and records it in
/// `shanhai_requests_total{module,trigger,status}` (status `ok` or the
/// failure's kind) and `shanhai_request_duration_seconds{module,trigger}`.
/// Returns the result and how long it took.
pub(crate) async fn invoke(
    module: &LoadedModule,
    trigger: &'static str,
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
    let name = module.name().to_owned();
    metrics::counter!("shanhai_requests_total", "module" => name.clone(), "trigger" => trigger, "status" => status)
        .increment(1);
    metrics::histogram!("shanhai_request_duration_seconds", "module" => name, "trigger" => trigger)
        .record(elapsed.as_secs_f64());
    (result, elapsed)
}
