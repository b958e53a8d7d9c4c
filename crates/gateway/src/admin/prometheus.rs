//! The process-wide Prometheus recorder behind `GET /metrics`.
//!
//! The gateway and the runtime record through the `metrics` facade; this
//! module installs the recorder that keeps those values and renders them in
//! the Prometheus text format. A process has one global recorder, so it is
//! installed once and shared by every gateway the process starts.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds, in seconds, of the latency histograms: from half a
/// millisecond (a pooled reactor's fast path) to the longest deadlines.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket bounds of `shanhai_kv_commit_writes`: writes per group commit.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Histograms need their raw samples folded into buckets now and then;
/// without an exporter task nobody else does it.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The handle that renders the recorded metrics, installing the recorder on
/// first use.
pub(crate) fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(install).clone()
}

fn install() -> PrometheusHandle {
    let builder = [
        ("shanhai_request_duration_seconds", LATENCY_BUCKETS),
        ("shanhai_queue_wait_seconds", LATENCY_BUCKETS),
        ("shanhai_kv_commit_seconds", LATENCY_BUCKETS),
        ("shanhai_kv_commit_writes", BATCH_BUCKETS),
    ]
    .into_iter()
    .fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
        builder
            .set_buckets_for_metric(Matcher::Full(name.into()), buckets)
            .expect("the bucket list is not empty")
    });
    let handle = match builder.install_recorder() {
        Ok(handle) => handle,
        Err(err) => {
            // Another recorder owns the process (an embedding program chose
            // its own): serve an empty exposition rather than fail to start.
            tracing::warn!(error = %err, "a metrics recorder is already installed; /metrics will be empty");
            PrometheusBuilder::new().build_recorder().handle()
        }
    };
    describe();
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "no metrics upkeep thread; histograms fold at scrape time only");
    }
    handle
}

/// Help text and units of the metrics the gateway and the runtime record.
fn describe() {
    metrics::describe_counter!(
        "shanhai_requests_total",
        "Events handled, by module, trigger and outcome status."
    );
    metrics::describe_histogram!(
        "shanhai_request_duration_seconds",
        Unit::Seconds,
        "Time to handle an event, queue wait included, by module and trigger."
    );
    metrics::describe_gauge!(
        "shanhai_instances",
        "Instances of a module, by state (idle, busy)."
    );
    metrics::describe_histogram!(
        "shanhai_queue_wait_seconds",
        Unit::Seconds,
        "Time an event waited for a free instance, by module."
    );
    metrics::describe_counter!(
        "shanhai_traps_total",
        "Events that ended their instance (trap, timeout, memory or fuel limit), by module and kind."
    );
    metrics::describe_counter!(
        "shanhai_log_lines_dropped_total",
        "Guest log lines dropped by the per-module rate limit, by module."
    );
    metrics::describe_counter!(
        "shanhai_module_reloads_total",
        "Module loads and reloads, by result."
    );
    metrics::describe_histogram!(
        "shanhai_kv_commit_writes",
        "Writes per group commit of the embedded KV store."
    );
    metrics::describe_histogram!(
        "shanhai_kv_commit_seconds",
        Unit::Seconds,
        "Time a group commit of the embedded KV store took, its fsync included."
    );
}
