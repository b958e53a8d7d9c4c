//! `shanhai::log`: guest log lines, tagged with module, version and request
//! id, and the per-module [`LogBudget`] that keeps a module from flooding
//! the host's log (and its disk) through them or through stdout/stderr.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use shanhai_abi::{IMPORT_MODULE, LogLevel, import};
use wasmtime::{Caller, Linker};

use super::{HostServices, HostState, guest_bytes};

/// Longest guest log line kept; the rest is cut so that a guest cannot
/// flood the host's log pipeline with one call.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;

/// How often, at most, a module's dropped lines are summed up in one log
/// line; also how long after the first drop that line comes at the latest.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// A token bucket of log lines for one module, shared by its versions
/// (stable and canary) and by the log import and guest stdout/stderr.
///
/// A line takes a token; tokens come back at `lines_per_second` up to
/// `burst`. A line without a token is dropped and counted, and the drops
/// are reported in one line ("module M: dropped N log lines in the last
/// T s") and in `shanhai_log_lines_dropped_total{module}` once
/// [`SUMMARY_INTERVAL`] has passed since the first of them: when the
/// module logs again, or from a timer when it does not.
pub(crate) struct LogBudget {
    module: Arc<str>,
    bucket: Mutex<Bucket>,
}

impl std::fmt::Debug for LogBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bucket = self.lock();
        f.debug_struct("LogBudget")
            .field("module", &self.module)
            .field("lines_per_second", &bucket.rate)
            .field("burst", &bucket.burst)
            .field("dropped", &bucket.dropped)
            .finish()
    }
}

struct Bucket {
    /// Lines a second; 0 means no limit.
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    /// Lines dropped since the last summary, and when the first of them was.
    dropped: u64,
    dropping_since: Option<Instant>,
    /// Whether a timer will sum up the drops even if the module goes quiet.
    summary_scheduled: bool,
}

/// Dropped lines to report.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    dropped: u64,
    over: Duration,
}

/// What [`LogBudget::take`] decided.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Verdict {
    admitted: bool,
    summary: Option<Summary>,
    /// The first drop of a window: a timer should report it.
    schedule_summary: bool,
}

impl LogBudget {
    fn new(module: Arc<str>, lines_per_second: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            module,
            bucket: Mutex::new(Bucket {
                rate: f64::from(lines_per_second),
                burst,
                tokens: burst,
                refilled: now,
                dropped: 0,
                dropping_since: None,
                summary_scheduled: false,
            }),
        }
    }

    /// The budget of module `module`, made or (when a module of that name
    /// is loaded again) reconfigured.
    pub(crate) fn for_module(
        services: &HostServices,
        module: &Arc<str>,
        lines_per_second: u32,
        burst: u32,
    ) -> Arc<Self> {
        let mut budgets = services
            .log_budgets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        budgets.retain(|_, budget| budget.strong_count() > 0);
        if let Some(budget) = budgets.get(module).and_then(Weak::upgrade) {
            let mut bucket = budget.lock();
            bucket.rate = f64::from(lines_per_second);
            bucket.burst = f64::from(burst.max(1));
            bucket.tokens = bucket.tokens.min(bucket.burst);
            drop(bucket);
            return budget;
        }
        let budget = Arc::new(Self::new(
            Arc::clone(module),
            lines_per_second,
            burst,
            Instant::now(),
        ));
        budgets.insert(Arc::clone(module), Arc::downgrade(&budget));
        budget
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the module may log a line now. Reports the lines dropped so
    /// far when that is due.
    pub(crate) fn admit(self: &Arc<Self>) -> bool {
        let verdict = self.take(Instant::now());
        if let Some(summary) = verdict.summary {
            self.report(summary);
        }
        if verdict.schedule_summary {
            self.schedule_summary();
        }
        verdict.admitted
    }

    fn take(&self, now: Instant) -> Verdict {
        let mut bucket = self.lock();
        if bucket.rate <= 0.0 {
            return Verdict {
                admitted: true,
                summary: None,
                schedule_summary: false,
            };
        }
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * bucket.rate).min(bucket.burst);
        bucket.refilled = now;
        let admitted = bucket.tokens >= 1.0;
        let mut schedule_summary = false;
        if admitted {
            bucket.tokens -= 1.0;
        } else {
            bucket.dropped += 1;
            if bucket.dropping_since.is_none() {
                bucket.dropping_since = Some(now);
                schedule_summary = !bucket.summary_scheduled;
                bucket.summary_scheduled = true;
            }
        }
        let summary = Self::due(&mut bucket, now);
        Verdict {
            admitted,
            summary,
            schedule_summary,
        }
    }

    /// The drops to report, when [`SUMMARY_INTERVAL`] has passed since the
    /// first of them; they are then forgotten.
    fn due(bucket: &mut Bucket, now: Instant) -> Option<Summary> {
        let since = bucket.dropping_since?;
        let over = now.saturating_duration_since(since);
        if over < SUMMARY_INTERVAL {
            return None;
        }
        let summary = Summary {
            dropped: bucket.dropped,
            over,
        };
        bucket.dropped = 0;
        bucket.dropping_since = None;
        Some(summary)
    }

    /// The timer's side of [`Self::admit`]: the drops due now (`None`
    /// when there are none), or how long until they are.
    fn flush(&self, now: Instant) -> Result<Option<Summary>, Duration> {
        let mut bucket = self.lock();
        let Some(since) = bucket.dropping_since else {
            bucket.summary_scheduled = false;
            return Ok(None);
        };
        match Self::due(&mut bucket, now) {
            Some(summary) => {
                bucket.summary_scheduled = false;
                Ok(Some(summary))
            }
            None => Err(SUMMARY_INTERVAL.saturating_sub(now.saturating_duration_since(since))),
        }
    }

    /// Sums up the drops once [`SUMMARY_INTERVAL`] has passed, even if the
    /// module never logs again. Without a tokio runtime (never while a
    /// guest runs) the next line reports them instead.
    fn schedule_summary(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.lock().summary_scheduled = false;
            return;
        };
        let budget = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut wait = SUMMARY_INTERVAL;
            loop {
                tokio::time::sleep(wait).await;
                // Gone with its module: nothing left to report to.
                let Some(budget) = budget.upgrade() else {
                    return;
                };
                // The module's own lines may have reported the drops and
                // started a new window meanwhile: wait for that one.
                match budget.flush(Instant::now()) {
                    Ok(Some(summary)) => return budget.report(summary),
                    Ok(None) => return,
                    Err(remaining) => wait = remaining,
                }
            }
        });
    }

    fn report(&self, summary: Summary) {
        let module = &*self.module;
        let Summary { dropped, over } = summary;
        tracing::warn!(
            target: "shanhai::guest",
            module,
            dropped,
            "module {module}: dropped {dropped} log lines in the last {:.1} s (rate limit)",
            over.as_secs_f64()
        );
        metrics::counter!("shanhai_log_lines_dropped_total", "module" => module.to_owned())
            .increment(dropped);
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        import::LOG,
        |mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| {
            let Ok((bytes, state)) = guest_bytes(&mut caller, ptr, len) else {
                return;
            };
            if !state.module.log_budget.admit() {
                return;
            }
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_LINE_BYTES)]);
            let module = &*state.module.name;
            let version = &*state.module.version;
            let request_id = &*state.event.request_id;
            match LogLevel::from_raw(level) {
                LogLevel::Debug => {
                    tracing::debug!(target: "shanhai::guest", module, version, request_id, "{text}")
                }
                LogLevel::Info => {
                    tracing::info!(target: "shanhai::guest", module, version, request_id, "{text}")
                }
                LogLevel::Warn => {
                    tracing::warn!(target: "shanhai::guest", module, version, request_id, "{text}")
                }
                LogLevel::Error => {
                    tracing::error!(target: "shanhai::guest", module, version, request_id, "{text}")
                }
            }
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(rate: u32, burst: u32, start: Instant) -> LogBudget {
        LogBudget::new(Arc::from("m"), rate, burst, start)
    }

    fn admitted(budget: &LogBudget, count: usize, now: Instant) -> usize {
        (0..count).filter(|_| budget.take(now).admitted).count()
    }

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let budget = budget(100, 200, start);
        assert_eq!(admitted(&budget, 1000, start), 200);
        // Half a second later: 50 more, not 51.
        let later = start + Duration::from_millis(500);
        assert_eq!(admitted(&budget, 1000, later), 50);
        // Ten idle seconds refill the burst, not more.
        let idle = later + Duration::from_secs(10);
        assert_eq!(admitted(&budget, 1000, idle), 200);
    }

    #[test]
    fn drops_are_summed_up_once_an_interval() {
        let start = Instant::now();
        let budget = budget(10, 5, start);
        let first = (0..100).map(|_| budget.take(start)).collect::<Vec<_>>();
        assert_eq!(first.iter().filter(|v| v.admitted).count(), 5);
        // The first drop asks for a timer, once; nothing is due yet.
        assert_eq!(first.iter().filter(|v| v.schedule_summary).count(), 1);
        assert!(first.iter().all(|v| v.summary.is_none()));
        // A second on, the next line (admitted: the bucket refilled)
        // reports the 95 drops.
        let later = start + Duration::from_secs(1);
        let verdict = budget.take(later);
        assert!(verdict.admitted);
        assert_eq!(
            verdict.summary,
            Some(Summary {
                dropped: 95,
                over: Duration::from_secs(1)
            })
        );
        assert_eq!(budget.take(later).summary, None);
    }

    #[test]
    fn the_timer_reports_drops_of_a_module_gone_quiet() {
        let start = Instant::now();
        let budget = budget(1, 1, start);
        assert!(budget.take(start).admitted);
        assert!(!budget.take(start).admitted);
        assert!(!budget.take(start).admitted);
        assert_eq!(
            budget.flush(start + Duration::from_millis(200)),
            Err(Duration::from_millis(800))
        );
        assert_eq!(
            budget.flush(start + Duration::from_secs(2)),
            Ok(Some(Summary {
                dropped: 2,
                over: Duration::from_secs(2)
            }))
        );
        assert_eq!(budget.flush(start + Duration::from_secs(3)), Ok(None));
    }

    #[test]
    fn a_rate_of_zero_means_no_limit() {
        let start = Instant::now();
        let budget = budget(0, 1, start);
        assert_eq!(admitted(&budget, 10_000, start), 10_000);
    }

    #[test]
    fn a_module_loaded_again_keeps_its_budget_with_the_new_limits() {
        let services = HostServices::default();
        let name: Arc<str> = Arc::from("m");
        let first = LogBudget::for_module(&services, &name, 100, 3);
        assert_eq!(admitted(&first, 10, Instant::now()), 3);
        let second = LogBudget::for_module(&services, &name, 100, 50);
        assert!(Arc::ptr_eq(&first, &second));
        assert!(!second.take(Instant::now()).admitted);
        drop((first, second));
        // Once no version holds it, the next load starts afresh.
        let third = LogBudget::for_module(&services, &name, 100, 3);
        assert_eq!(admitted(&third, 10, Instant::now()), 3);
    }
}
