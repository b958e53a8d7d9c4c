//! The dashboard's figures: a sampler that reads the process's metrics into
//! a bounded ring of one sample a second ([`SAMPLES`] seconds, 15 minutes),
//! behind `GET /admin/stats`.
//!
//! The sampler reads what `/metrics` exports (the one recorder the gateway
//! and the runtime record into), so the dashboard and Prometheus never
//! disagree, and no trigger needs a second counter on its hot path.
//!
//! It reads once a second while events come or a dashboard watches. A
//! gateway that handled fewer than one event a second over the last
//! [`WINDOW`] seconds (idle, or a timer every few seconds) is read every
//! [`QUIET_PERIOD`] instead, so an idle box is not woken each second to
//! render its metrics; the seconds between two readings get the events of
//! the gap spread evenly over them, and a dashboard that asks for the
//! figures brings the sampler back to once a second at once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::sync::{Notify, watch};

/// Samples kept: one a second for 15 minutes.
pub(crate) const SAMPLES: usize = 900;

/// How often a quiet gateway's metrics are read.
const QUIET_PERIOD: Duration = Duration::from_secs(10);

/// How long a request for the figures keeps the sampler at once a second.
const WATCHED_FOR: Duration = Duration::from_secs(60);

/// The window, in samples (seconds), of the error rates and p95s.
const WINDOW: usize = 10;

/// Upper bounds, in seconds, of the latency histogram's buckets (as
/// `prometheus.rs` configures them), then +Inf.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One second of the whole gateway.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sample {
    /// Milliseconds since the Unix epoch.
    t: u64,
    /// Events handled in the last second, all triggers.
    rps: f64,
    /// Share of failed events over the last [`WINDOW`] seconds (0 to 1).
    error_rate: f64,
    /// 95th percentile latency over the last [`WINDOW`] seconds, in
    /// milliseconds (a bucket's upper bound).
    p95_ms: Option<f64>,
    /// Open WebSocket connections.
    ws_connections: f64,
    /// MQTT messages handled in the last second.
    mqtt_rps: f64,
    /// Resident memory of the process, in bytes.
    rss_bytes: u64,
}

/// Cumulative counters read from the metrics at one instant.
#[derive(Debug, Clone)]
struct Totals {
    requests: f64,
    errors: f64,
    mqtt: f64,
    /// Cumulative latency bucket counts, as [`BUCKETS`] then +Inf.
    buckets: Vec<f64>,
}

impl Default for Totals {
    /// Nothing counted yet, in every bucket.
    fn default() -> Self {
        Self {
            requests: 0.0,
            errors: 0.0,
            mqtt: 0.0,
            buckets: vec![0.0; BUCKETS.len() + 1],
        }
    }
}

/// The figures of one module at one instant (cumulative).
type ModuleTotals = BTreeMap<String, Totals>;

/// One module's figures over the last [`WINDOW`] seconds.
#[derive(Debug, Serialize)]
pub(crate) struct ModuleFigures {
    /// Events handled since the process started.
    requests: f64,
    /// Events a second over the window.
    rps: f64,
    /// Share of failed events over the window (0 to 1).
    error_rate: f64,
    /// 95th percentile latency over the window, in milliseconds.
    p95_ms: Option<f64>,
}

/// Trigger figures from the metrics (gauges and counters since start).
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct TriggerFigures {
    /// Open WebSocket connections, by module.
    websocket: BTreeMap<String, f64>,
    /// Open TCP connections and closed ones, by listener.
    tcp: BTreeMap<String, TcpFigures>,
    /// Per MQTT trigger: retries, dead letters, dropped messages.
    mqtt: BTreeMap<String, MqttFigures>,
    /// MQTT connection errors, by connection.
    mqtt_connection_errors: BTreeMap<String, f64>,
    /// Per timer: runs skipped because the previous one still ran.
    timers: BTreeMap<String, TimerFigures>,
    /// Events handled by module and trigger (`http`, `ws`, `mqtt`, ...).
    events: BTreeMap<String, BTreeMap<String, f64>>,
}

/// One TCP listener's figures.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct TcpFigures {
    connections: f64,
    closed: f64,
    refused: f64,
}

/// One MQTT trigger's figures.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct MqttFigures {
    retries: f64,
    dead_letters: f64,
    dropped: f64,
}

/// One timer's figures.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct TimerFigures {
    skipped: f64,
}

/// What `GET /admin/stats` answers, less what [`super::Admin`] adds.
#[derive(Debug, Serialize)]
pub(crate) struct StatsView {
    /// Samples newer than `since`, oldest first.
    pub(crate) series: Vec<Sample>,
    /// The newest sample.
    pub(crate) now: Option<Sample>,
    /// By module.
    pub(crate) modules: BTreeMap<String, ModuleFigures>,
    pub(crate) triggers: TriggerFigures,
}

impl Totals {
    /// The totals `share` (0 to 1) of the way from these to `to`.
    fn toward(&self, to: &Totals, share: f64) -> Totals {
        let between = |from: f64, to: f64| from + (to - from) * share;
        Totals {
            requests: between(self.requests, to.requests),
            errors: between(self.errors, to.errors),
            mqtt: between(self.mqtt, to.mqtt),
            buckets: to
                .buckets
                .iter()
                .enumerate()
                .map(|(i, &to)| between(self.buckets.get(i).copied().unwrap_or(0.0), to))
                .collect(),
        }
    }
}

impl History {
    /// Whether the last [`WINDOW`] seconds held fewer events than seconds.
    fn quiet(&self) -> bool {
        match (self.totals.front(), self.totals.back()) {
            (Some(oldest), Some(newest)) if self.totals.len() > WINDOW => {
                newest.requests - oldest.requests < WINDOW as f64
            }
            _ => false,
        }
    }

    /// Appends one second ending at `t`, with the totals at its end.
    fn push_second(
        &mut self,
        t: u64,
        total: Totals,
        modules: ModuleTotals,
        ws_connections: f64,
        rss_bytes: u64,
    ) {
        let previous = self.totals.back().cloned().unwrap_or_default();
        let oldest = self.totals.front().cloned().unwrap_or_default();
        let sample = Sample {
            t,
            rps: (total.requests - previous.requests).max(0.0),
            error_rate: rate(
                total.errors - oldest.errors,
                total.requests - oldest.requests,
            ),
            p95_ms: p95_ms(&total.buckets, &oldest.buckets),
            ws_connections,
            mqtt_rps: (total.mqtt - previous.mqtt).max(0.0),
            rss_bytes,
        };
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        if self.totals.len() > WINDOW {
            self.totals.pop_front();
            self.modules.pop_front();
        }
        self.totals.push_back(total);
        self.modules.push_back(modules);
    }
}

#[derive(Default)]
struct History {
    samples: VecDeque<Sample>,
    /// Whole-gateway totals of the last [`WINDOW`] + 1 seconds.
    totals: VecDeque<Totals>,
    /// Per-module totals of the last [`WINDOW`] + 1 seconds.
    modules: VecDeque<ModuleTotals>,
    triggers: TriggerFigures,
}

/// The ring of samples, filled by [`Stats::run`].
#[derive(Clone)]
pub(crate) struct Stats {
    history: Arc<Mutex<History>>,
    watchers: Arc<Watchers>,
}

/// Whether a dashboard watches, for the sampler to read once a second.
#[derive(Default)]
struct Watchers {
    /// When the figures were last asked for.
    last_view: Mutex<Option<Instant>>,
    /// Wakes a quiet sampler.
    wake: Notify,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Self {
            history: Arc::new(Mutex::new(History::default())),
            watchers: Arc::default(),
        }
    }

    /// Samples `metrics` until `stop` turns true: once a second, or every
    /// [`QUIET_PERIOD`] while nothing happens and no dashboard watches.
    pub(crate) async fn run(self, metrics: PrometheusHandle, mut stop: watch::Receiver<bool>) {
        let mut last_reading: Option<Instant> = None;
        loop {
            // Only the sampler changes the history, so a view after this
            // check finds it quiet too and wakes the sampler.
            let quiet = self.quiet() && !self.watched();
            let period = if quiet {
                QUIET_PERIOD
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = self.watchers.wake.notified(), if quiet => {}
                _ = stop.changed() => return,
            }
            let started = Instant::now();
            // Counted on the monotonic clock: a wall clock stepped at boot
            // (a box without a battery-backed clock, after NTP) only moves
            // the samples' labels.
            let seconds = last_reading.map_or(1, |at| {
                let ms = started.duration_since(at).as_millis().saturating_add(500);
                u64::try_from(ms / 1000).unwrap_or(u64::MAX)
            });
            last_reading = Some(started);
            let text = metrics.render();
            self.record(&text, unix_ms(), seconds, rss_bytes());
            tracing::trace!(
                elapsed_us = started.elapsed().as_micros() as u64,
                "dashboard sample"
            );
        }
    }

    /// Whether the last [`WINDOW`] seconds held fewer events than seconds.
    fn quiet(&self) -> bool {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .quiet()
    }

    /// Whether the figures were asked for within [`WATCHED_FOR`].
    fn watched(&self) -> bool {
        let last_view = self
            .watchers
            .last_view
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        last_view.is_some_and(|at| at.elapsed() < WATCHED_FOR)
    }

    /// Adds the reading `exposition`, taken at `t` (Unix milliseconds)
    /// `seconds` after the last one, as one sample a second (ending at `t`),
    /// the events between the two readings spread evenly.
    fn record(&self, exposition: &str, t: u64, seconds: u64, rss_bytes: u64) {
        let parsed = parse(exposition);
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let before = history.totals.back().cloned().unwrap_or_default();
        let modules_before = history.modules.back().cloned().unwrap_or_default();
        let seconds = seconds.clamp(1, SAMPLES as u64);
        let ws_connections = parsed.triggers.websocket.values().sum();
        for second in 1..=seconds {
            let share = second as f64 / seconds as f64;
            let total = before.toward(&parsed.total, share);
            let modules = parsed
                .modules
                .iter()
                .map(|(name, now)| {
                    let then = modules_before.get(name).cloned().unwrap_or_default();
                    (name.clone(), then.toward(now, share))
                })
                .collect();
            let at = t.saturating_sub((seconds - second) * 1000);
            history.push_second(at, total, modules, ws_connections, rss_bytes);
        }
        history.triggers = parsed.triggers;
    }

    /// The samples newer than `since` (Unix milliseconds), the figures by
    /// module and by trigger. A quiet sampler goes back to once a second.
    pub(crate) fn view(&self, since: u64) -> StatsView {
        *self
            .watchers
            .last_view
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        // A watched sampler keeps the wake-up for when it goes quiet,
        // which costs one early reading.
        if history.quiet() {
            self.watchers.wake.notify_one();
        }
        let seconds = history.modules.len().saturating_sub(1).max(1) as f64;
        let empty = ModuleTotals::new();
        let oldest = history.modules.front().unwrap_or(&empty);
        let modules = history
            .modules
            .back()
            .unwrap_or(&empty)
            .iter()
            .map(|(name, now)| {
                let then = oldest.get(name).cloned().unwrap_or_default();
                let requests = now.requests - then.requests;
                let figures = ModuleFigures {
                    requests: now.requests,
                    rps: (requests / seconds).max(0.0),
                    error_rate: rate(now.errors - then.errors, requests),
                    p95_ms: p95_ms(&now.buckets, &then.buckets),
                };
                (name.clone(), figures)
            })
            .collect();
        StatsView {
            series: history
                .samples
                .iter()
                .filter(|s| s.t > since)
                .cloned()
                .collect(),
            now: history.samples.back().cloned(),
            modules,
            triggers: history.triggers.clone(),
        }
    }
}

fn rate(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        (part / whole).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The 95th percentile, in milliseconds, of the events between two
/// cumulative bucket readings: the upper bound of the bucket it falls in.
fn p95_ms(now: &[f64], then: &[f64]) -> Option<f64> {
    let at = |buckets: &[f64], i: usize| buckets.get(i).copied().unwrap_or(0.0);
    let count = at(now, BUCKETS.len()) - at(then, BUCKETS.len());
    if count <= 0.0 {
        return None;
    }
    let rank = count * 0.95;
    BUCKETS
        .iter()
        .enumerate()
        .find(|&(i, _)| at(now, i) - at(then, i) >= rank)
        .map(|(_, bound)| bound * 1000.0)
        // Past the last bound: say the last bound ("10 s or more").
        .or(Some(BUCKETS[BUCKETS.len() - 1] * 1000.0))
}

/// What one exposition says.
#[derive(Default)]
struct Parsed {
    total: Totals,
    modules: ModuleTotals,
    triggers: TriggerFigures,
}

/// Whether an event's `status` label is a failure: an HTTP status of 500 or
/// more, or anything but `ok` from the other triggers.
fn failed(status: &str) -> bool {
    match status.parse::<u16>() {
        Ok(code) => code >= 500,
        Err(_) => status != "ok",
    }
}

fn parse(exposition: &str) -> Parsed {
    let mut parsed = Parsed::default();
    for line in exposition.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((name, labels, value)) = split_sample(line) else {
            continue;
        };
        let label = |key: &str| {
            labels
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let triggers = &mut parsed.triggers;
        match name {
            "shanhai_requests_total" => {
                let module = parsed
                    .modules
                    .entry(label("module").to_owned())
                    .or_default();
                module.requests += value;
                parsed.total.requests += value;
                if failed(label("status")) {
                    module.errors += value;
                    parsed.total.errors += value;
                }
                if label("trigger") == "mqtt" {
                    parsed.total.mqtt += value;
                }
                *triggers
                    .events
                    .entry(label("module").to_owned())
                    .or_default()
                    .entry(label("trigger").to_owned())
                    .or_default() += value;
            }
            "shanhai_request_duration_seconds_bucket" => {
                let le = label("le");
                let index = if le == "+Inf" {
                    Some(BUCKETS.len())
                } else {
                    le.parse::<f64>()
                        .ok()
                        .and_then(|le| BUCKETS.iter().position(|b| (b - le).abs() < 1e-9))
                };
                if let Some(index) = index {
                    let module = parsed
                        .modules
                        .entry(label("module").to_owned())
                        .or_default();
                    module.buckets[index] += value;
                    parsed.total.buckets[index] += value;
                }
            }
            "shanhai_ws_connections" => {
                *triggers
                    .websocket
                    .entry(label("module").to_owned())
                    .or_default() += value;
            }
            "shanhai_tcp_connections" => {
                triggers
                    .tcp
                    .entry(label("listener").to_owned())
                    .or_default()
                    .connections += value;
            }
            "shanhai_tcp_closed_total" => {
                triggers
                    .tcp
                    .entry(label("listener").to_owned())
                    .or_default()
                    .closed += value;
            }
            "shanhai_tcp_refused_total" => {
                triggers
                    .tcp
                    .entry(label("listener").to_owned())
                    .or_default()
                    .refused += value;
            }
            "shanhai_mqtt_retries_total" => {
                triggers
                    .mqtt
                    .entry(label("trigger").to_owned())
                    .or_default()
                    .retries += value;
            }
            "shanhai_mqtt_dead_letters_total" => {
                triggers
                    .mqtt
                    .entry(label("trigger").to_owned())
                    .or_default()
                    .dead_letters += value;
            }
            "shanhai_mqtt_dropped_total" => {
                triggers
                    .mqtt
                    .entry(label("trigger").to_owned())
                    .or_default()
                    .dropped += value;
            }
            "shanhai_mqtt_connection_errors_total" => {
                *triggers
                    .mqtt_connection_errors
                    .entry(label("connection").to_owned())
                    .or_default() += value;
            }
            "shanhai_timer_skipped_total" => {
                triggers
                    .timers
                    .entry(label("timer").to_owned())
                    .or_default()
                    .skipped += value;
            }
            _ => {}
        }
    }
    parsed
}

/// A sample line's metric name, labels and value.
type SampleLine<'a> = (&'a str, Vec<(&'a str, String)>, f64);

/// `name{key="value",...} number` as its parts.
fn split_sample(line: &str) -> Option<SampleLine<'_>> {
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let Some((name, rest)) = head.split_once('{') else {
        return Some((head, Vec::new(), value));
    };
    let mut labels = Vec::new();
    let mut rest = rest.strip_suffix('}')?;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut text = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => text.push('\n'),
                    other => text.push(other),
                },
                (_, c) => text.push(c),
            }
        };
        labels.push((key, text));
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some((name, labels, value))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The process's resident memory, from `/proc/self/status` (0 where there
/// is none).
pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = r#"# TYPE shanhai_requests_total counter
shanhai_requests_total{module="a",trigger="http",status="200"} 90
shanhai_requests_total{module="a",trigger="http",status="500"} 10
shanhai_requests_total{module="b",trigger="mqtt",status="ok"} 5
shanhai_request_duration_seconds_bucket{module="a",trigger="http",le="0.001"} 50
shanhai_request_duration_seconds_bucket{module="a",trigger="http",le="0.005"} 96
shanhai_request_duration_seconds_bucket{module="a",trigger="http",le="+Inf"} 100
shanhai_ws_connections{module="chat"} 3
shanhai_timer_skipped_total{timer="t\"x"} 2
"#;

    #[test]
    fn an_exposition_becomes_figures() {
        let parsed = parse(EXPOSITION);
        assert_eq!(parsed.total.requests, 105.0);
        assert_eq!(parsed.total.errors, 10.0);
        assert_eq!(parsed.total.mqtt, 5.0);
        assert_eq!(parsed.modules["a"].buckets[1], 50.0);
        assert_eq!(parsed.triggers.websocket["chat"], 3.0);
        assert_eq!(parsed.triggers.timers["t\"x"].skipped, 2.0);
        let zero = vec![0.0; BUCKETS.len() + 1];
        assert_eq!(p95_ms(&parsed.modules["a"].buckets, &zero), Some(5.0));
    }

    #[test]
    fn the_ring_keeps_fifteen_minutes_and_rates_follow_deltas() {
        let stats = Stats::new();
        for second in 0..(SAMPLES as u64 + 5) {
            let text = format!(
                "shanhai_requests_total{{module=\"a\",trigger=\"http\",status=\"200\"}} {}\n",
                second * 4
            );
            stats.record(&text, second * 1000, 1, 1);
        }
        let view = stats.view(0);
        assert_eq!(view.series.len(), SAMPLES);
        assert_eq!(view.now.as_ref().unwrap().rps, 4.0);
        assert_eq!(view.modules["a"].rps, 4.0);
        assert_eq!(stats.view((SAMPLES as u64 + 2) * 1000).series.len(), 2);
    }

    #[test]
    fn a_quiet_gap_becomes_one_sample_a_second_with_its_events_spread() {
        let stats = Stats::new();
        let reading = |requests: u64, slow: u64| {
            format!(
                "shanhai_requests_total{{module=\"a\",trigger=\"http\",status=\"200\"}} {requests}\n\
                 shanhai_request_duration_seconds_bucket{{module=\"a\",trigger=\"http\",le=\"0.001\"}} {}\n\
                 shanhai_request_duration_seconds_bucket{{module=\"a\",trigger=\"http\",le=\"+Inf\"}} {requests}\n",
                requests - slow
            )
        };
        stats.record(&reading(5, 0), 1_000, 1, 1);
        stats.record(&reading(5, 0), 2_000, 1, 1);
        assert!(!stats.quiet(), "quiet before a window of readings");
        // Ten seconds later, 20 events, 10 of them slow: ten samples.
        stats.record(&reading(25, 10), 12_000, 10, 1);
        let view = stats.view(2_000);
        let times: Vec<u64> = view.series.iter().map(|sample| sample.t).collect();
        assert_eq!(times, (3..=12).map(|s| s * 1000).collect::<Vec<_>>());
        for sample in &view.series {
            assert!((sample.rps - 2.0).abs() < 1e-9, "{sample:?}");
        }
        assert!((view.modules["a"].rps - 2.0).abs() < 1e-9);
        // Half the window's events took more than 1 ms: the p95 is past it.
        assert_eq!(view.now.unwrap().p95_ms, Some(10_000.0));
        // Two events a second: not quiet.
        assert!(!stats.quiet());
        // A reading a second later, with no event, is one more sample.
        stats.record(&reading(25, 10), 13_000, 1, 1);
        assert_eq!(stats.view(12_000).series.len(), 1);
        // Five events in ten seconds are fewer than one a second: quiet.
        stats.record(&reading(30, 10), 23_000, 10, 1);
        assert!(stats.quiet());
        // Twenty in the next ten are more.
        stats.record(&reading(50, 10), 33_000, 10, 1);
        assert!(!stats.quiet());
        // A wall clock stepped a day ahead (NTP on a box without a
        // battery-backed clock) labels the next second; it adds no more.
        let day = 86_400_000;
        stats.record(&reading(50, 10), 34_000 + day, 1, 1);
        let series = stats.view(33_000).series;
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].t, 34_000 + day);
    }

    /// A dashboard's request wakes a sampler asleep for its quiet period:
    /// the next reading comes at once, not 10 s later (time is paused, so
    /// the sampler's sleep cannot end while the test runs).
    #[tokio::test(start_paused = true)]
    async fn a_view_wakes_a_quiet_sampler() {
        let stats = Stats::new();
        let idle = "shanhai_requests_total{module=\"a\",trigger=\"http\",status=\"200\"} 0\n";
        for second in 0..=WINDOW as u64 {
            stats.record(idle, second * 1000, 1, 1);
        }
        assert!(stats.quiet());
        let samples = || stats.history.lock().unwrap().samples.len();
        let before = samples();
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        let (_stop, stop) = watch::channel(false);
        let started = tokio::time::Instant::now();
        tokio::spawn(stats.clone().run(metrics, stop));
        // The sampler runs to its sleep on this thread while the test yields.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(samples(), before, "the sampler read before its period");
        let _ = stats.view(0);
        for _ in 0..100 {
            if samples() > before {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(samples() > before, "the view did not wake the sampler");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
