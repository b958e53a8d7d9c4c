//! The timer trigger: runs modules on fixed intervals or cron schedules
//! (`[timers.NAME]`).
//!
//! Each timer is one task. Interval timers keep a fixed rate (run `k` is
//! due at `start + k × every`, so a slow run does not push the schedule
//! back); cron timers follow their expression in UTC, seconds included. By
//! default a timer never overlaps itself: a tick that finds the previous run
//! still going is skipped, counted, and reported to the next run.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use shanhai_abi::EventKind;
use shanhai_abi::wire::TimerEvent;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::canary::unix_ms;
use crate::config::{Config, ConfigError, TimerConfig};
use crate::metered::{self, TriggerMetrics};
use crate::registry::ModuleRegistry;

/// When a timer is due.
#[derive(Debug, Clone)]
pub(crate) enum Schedule {
    /// Every `Duration`, at a fixed rate.
    Every(Duration),
    /// A cron expression with seconds (`sec min hour day month weekday`).
    Cron(Box<cron::Schedule>),
}

impl Schedule {
    /// The schedule of `[timers.NAME]`, or why it is invalid.
    pub(crate) fn of(name: &str, timer: &TimerConfig) -> Result<Self, ConfigError> {
        match (timer.every_ms, &timer.cron) {
            (Some(0), None) => Err(ConfigError::Invalid(format!(
                "timers.{name}.every_ms must be positive"
            ))),
            (Some(ms), None) => Ok(Self::Every(Duration::from_millis(ms))),
            (None, Some(expression)) => cron::Schedule::from_str(expression)
                .map(|schedule| Self::Cron(Box::new(schedule)))
                .map_err(|err| {
                    ConfigError::Invalid(format!(
                        "timers.{name}.cron: `{expression}` is not a cron expression with seconds (sec min hour day month weekday): {err}"
                    ))
                }),
            _ => Err(ConfigError::Invalid(format!(
                "timers.{name}: set exactly one of every_ms and cron"
            ))),
        }
    }

    /// The first due time strictly after `after` (wall clock).
    fn next_after(&self, after: SystemTime, start: SystemTime, every_start: Instant) -> Due {
        match self {
            Self::Every(every) => {
                // Fixed rate from the start: the k-th run is due at start + k·every.
                let elapsed = after.duration_since(start).unwrap_or_default();
                let k = elapsed.as_nanos() / every.as_nanos() + 1;
                // In nanoseconds: `k` outgrows u32 after 49 days of 1 ms.
                let offset = Duration::from_nanos((every.as_nanos() * k) as u64);
                Due {
                    wall: start + offset,
                    at: every_start + offset,
                }
            }
            Self::Cron(schedule) => {
                let after = chrono::DateTime::<chrono::Utc>::from(after);
                let next = schedule
                    .after(&after)
                    .next()
                    // A schedule with no future time (a past year): never.
                    .map_or(SystemTime::now() + Duration::from_secs(86_400 * 365), |t| {
                        t.into()
                    });
                let wait = next.duration_since(SystemTime::now()).unwrap_or_default();
                Due {
                    wall: next,
                    at: Instant::now() + wait,
                }
            }
        }
    }
}

struct Due {
    /// For the event's `scheduled_ms`.
    wall: SystemTime,
    /// For sleeping (monotonic).
    at: Instant,
}

/// The running timers. Dropping this aborts them; [`stop`](Self::stop)
/// stops scheduling and lets runs in progress finish.
pub(crate) struct TimerTrigger {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl TimerTrigger {
    /// Starts every timer of the config.
    pub(crate) fn start(registry: Arc<ModuleRegistry>, config: &Config) -> Self {
        let mut tasks = JoinSet::new();
        let (stop, stopped) = watch::channel(false);
        for (name, timer) in &config.timers {
            let schedule = Schedule::of(name, timer).expect("validated with the config");
            tracing::info!(timer = %name, module = %timer.module, schedule = ?describe(&schedule), "timer started");
            tasks.spawn(run_timer(
                Arc::from(name.as_str()),
                timer.clone(),
                schedule,
                registry.clone(),
                stopped.clone(),
            ));
        }
        Self { stop, tasks }
    }

    /// Stops scheduling runs; the returned future finishes when the runs in
    /// progress have.
    pub(crate) fn stop(mut self) -> impl Future<Output = ()> {
        let _ = self.stop.send(true);
        async move { while self.tasks.join_next().await.is_some() {} }
    }
}

fn describe(schedule: &Schedule) -> String {
    match schedule {
        Schedule::Every(every) => format!("every {every:?}"),
        Schedule::Cron(cron) => format!("cron {cron}"),
    }
}

async fn run_timer(
    name: Arc<str>,
    timer: TimerConfig,
    schedule: Schedule,
    registry: Arc<ModuleRegistry>,
    mut stop: watch::Receiver<bool>,
) {
    let module: Arc<str> = Arc::from(timer.module.as_str());
    let payload: Arc<[u8]> = Arc::from(timer.payload.as_bytes());
    let jitter = Duration::from_millis(timer.jitter_ms);
    let metrics = Arc::new(TriggerMetrics::new("timer"));
    // The schedule starts when the module serves (or failed to load), not
    // while it is still compiling at start.
    tokio::select! {
        () = registry.settled(&module) => {}
        _ = stop.changed() => return,
    }
    let running = Arc::new(AtomicBool::new(false));
    let skipped = Arc::new(AtomicU32::new(0));
    let start = SystemTime::now();
    let monotonic_start = Instant::now();
    let mut last = start;
    let mut run = 0u64;
    let mut runs = JoinSet::new();
    loop {
        let due = schedule.next_after(last, start, monotonic_start);
        last = due.wall;
        tokio::select! {
            () = tokio::time::sleep_until(jittered(due.at, jitter)) => {}
            _ = stop.changed() => {
                while runs.join_next().await.is_some() {}
                return;
            }
        }
        // Reap finished runs so the set does not grow.
        while runs.try_join_next().is_some() {}
        if !timer.overlap && running.swap(true, Ordering::AcqRel) {
            skipped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("shanhai_timer_skipped_total", "timer" => name.to_string())
                .increment(1);
            tracing::debug!(
                timer = &*name,
                "skipping a tick: the previous run is still going"
            );
            continue;
        }
        run += 1;
        let event = Run {
            name: name.clone(),
            module: module.clone(),
            metrics: metrics.clone(),
            payload: payload.clone(),
            scheduled_unix_ms: unix_ms(due.wall),
            run,
            skipped: skipped.swap(0, Ordering::Relaxed),
        };
        let registry = registry.clone();
        let running = running.clone();
        let overlap = timer.overlap;
        runs.spawn(async move {
            event.deliver(&registry).await;
            if !overlap {
                running.store(false, Ordering::Release);
            }
        });
    }
}

struct Run {
    name: Arc<str>,
    module: Arc<str>,
    /// The timer's request metrics, shared by its runs.
    metrics: Arc<TriggerMetrics>,
    payload: Arc<[u8]>,
    scheduled_unix_ms: u64,
    run: u64,
    skipped: u32,
}

impl Run {
    async fn deliver(&self, registry: &ModuleRegistry) {
        let request_id: Arc<str> = Arc::from(format!("timer-{}-{}", self.name, self.run));
        let Some(selected) = registry.select_keyed(&self.module, None) else {
            tracing::warn!(
                timer = &*self.name,
                module = &*self.module,
                request_id = &*request_id,
                "timer run skipped: the module is not loaded"
            );
            self.metrics.count_unloaded(&self.module);
            return;
        };
        let envelope = TimerEvent {
            timer: &self.name,
            scheduled_unix_ms: self.scheduled_unix_ms,
            run: self.run,
            skipped: self.skipped,
            payload: &self.payload,
        }
        .encode();
        let (result, elapsed) = metered::invoke(
            &self.metrics,
            &selected.module,
            EventKind::Timer,
            &envelope,
            request_id.clone(),
        )
        .await;
        match result {
            Ok(_) => tracing::debug!(
                timer = &*self.name,
                module = &*self.module,
                request_id = &*request_id,
                run = self.run,
                elapsed_ms = elapsed.as_secs_f64() * 1e3,
                "timer run"
            ),
            Err(err) => tracing::warn!(
                timer = &*self.name,
                module = &*self.module,
                request_id = &*request_id,
                run = self.run,
                kind = err.kind(),
                "timer run failed: {err}"
            ),
        }
    }
}

/// When a run due `at` starts: up to `jitter` later, uniformly at random,
/// which spreads the runs of many gateways that share a schedule.
fn jittered(at: Instant, jitter: Duration) -> Instant {
    at + random_below(jitter)
}

/// A uniformly random duration below `max` (zero for zero).
fn random_below(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let mut bytes = [0u8; 8];
    // No randomness available is not a reason to stop a timer.
    let _ = getrandom::fill(&mut bytes);
    let nanos = u64::from_le_bytes(bytes) % max.as_nanos().max(1) as u64;
    Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(every_ms: Option<u64>, cron: Option<&str>) -> TimerConfig {
        TimerConfig {
            module: "m".into(),
            every_ms,
            cron: cron.map(str::to_owned),
            jitter_ms: 0,
            payload: String::new(),
            overlap: false,
        }
    }

    #[test]
    fn schedules_are_validated() {
        assert!(Schedule::of("t", &timer(Some(10), None)).is_ok());
        assert!(Schedule::of("t", &timer(None, Some("*/5 * * * * *"))).is_ok());
        for bad in [
            timer(None, None),
            timer(Some(10), Some("* * * * * *")),
            timer(Some(0), None),
            timer(None, Some("every minute")),
        ] {
            assert!(Schedule::of("t", &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn intervals_keep_a_fixed_rate() {
        let schedule = Schedule::of("t", &timer(Some(100), None)).unwrap();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mono = Instant::now();
        // A run that ended late (250 ms in) does not shift the grid.
        let due = schedule.next_after(start + Duration::from_millis(250), start, mono);
        assert_eq!(due.wall, start + Duration::from_millis(300));
        assert_eq!(due.at, mono + Duration::from_millis(300));
        let due = schedule.next_after(start, start, mono);
        assert_eq!(due.wall, start + Duration::from_millis(100));
        // Far beyond u32::MAX intervals the grid still holds.
        let fine = Schedule::of("t", &timer(Some(1), None)).unwrap();
        let later = start + Duration::from_secs(60 * 86_400);
        let due = fine.next_after(later, start, mono);
        assert_eq!(due.wall, later + Duration::from_millis(1));
    }

    #[test]
    fn cron_follows_its_expression() {
        let schedule = Schedule::of("t", &timer(None, Some("*/2 * * * * *"))).unwrap();
        let now = SystemTime::now();
        let due = schedule.next_after(now, now, Instant::now());
        let secs = due.wall.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(secs.as_secs() % 2, 0);
        assert_eq!(secs.subsec_nanos(), 0);
        assert!(due.wall > now && due.wall <= now + Duration::from_secs(2));
    }

    #[test]
    fn jitter_spreads_runs_over_its_whole_bound() {
        let at = Instant::now();
        let max = Duration::from_millis(50);
        let delays: Vec<Duration> = (0..200).map(|_| jittered(at, max) - at).collect();
        assert!(delays.iter().all(|d| *d < max), "{delays:?}");
        // Uniform over 50 ms: 200 draws all above 10 ms, or all below 40
        // ms, happen with odds of 0.8^200 (about 1e-20) each.
        let (min, max_seen) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
        assert!(
            *min < Duration::from_millis(10) && *max_seen > Duration::from_millis(40),
            "jitter between {min:?} and {max_seen:?}"
        );
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 150, "{} distinct delays", distinct.len());
        assert_eq!(jittered(at, Duration::ZERO), at);
    }
}
