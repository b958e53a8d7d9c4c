//! What counting one event costs the triggers, with a Prometheus recorder
//! installed as the gateway installs one: the metric handles resolved once
//! per module (`TriggerMetrics`, what every trigger does) against looking
//! the counter and the histogram up by their labels on every event (what
//! the WebSocket, MQTT, TCP and timer triggers did before it).
//!
//! Run: `cargo bench --workspace --bench metrics`.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use metrics_exporter_prometheus::PrometheusBuilder;
use shanhai_gateway::metered::TriggerMetrics;

const MODULE: &str = "mqtt-transform";

fn record(c: &mut Criterion) {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .expect("the bench's recorder is the process's first");
    let elapsed = Duration::from_micros(30);
    let mut group = c.benchmark_group("record_event");
    group.bench_function("handles_resolved_once", |b| {
        let metrics = TriggerMetrics::new("mqtt");
        b.iter(|| metrics.record(black_box(MODULE), black_box("ok"), elapsed));
    });
    group.bench_function("labels_looked_up_per_event", |b| {
        b.iter(|| {
            let name = black_box(MODULE).to_owned();
            metrics::counter!("shanhai_requests_total", "module" => name.clone(), "trigger" => "mqtt", "status" => black_box("ok"))
                .increment(1);
            metrics::histogram!("shanhai_request_duration_seconds", "module" => name, "trigger" => "mqtt")
                .record(elapsed.as_secs_f64());
        });
    });
    group.finish();
    // Both counted into the same series.
    let exposition = handle.render();
    assert!(
        exposition.contains(
            "shanhai_requests_total{module=\"mqtt-transform\",trigger=\"mqtt\",status=\"ok\"}"
        ),
        "{exposition}"
    );
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    record(&mut criterion);
    criterion.final_summary();
}
