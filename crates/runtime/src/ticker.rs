//! The epoch ticker: advances the engine's epoch every tick while guest
//! code may run, which is what enforces deadlines, and sleeps while none
//! can.
//!
//! An edge box is idle most of the time, and a thread woken every 5 ms
//! keeps its cores out of their deep idle states (200 wake-ups a second,
//! the largest share of an idle gateway's). So the ticker counts the guest
//! calls in flight ([`EpochTicker::running`]) and parks once none has run
//! for [`TICKING_AFTER_LAST_CALL`]; the next call unparks it. Ticking on
//! for a moment after the last call keeps a steady stream of short calls
//! from paying a wake-up each; calls further apart than that are rare
//! enough for one wake-up each to cost nothing, and a short tail keeps a
//! timer that runs a module every few seconds from keeping the ticker
//! busy for long after each run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// How long the ticker goes on ticking after the last guest call ended:
/// 4 ticks of the default 5 ms. Calls closer together than this keep it
/// ticking; one further apart costs a wake-up and these ticks, fewer
/// wake-ups than ticking on through the gap would.
const TICKING_AFTER_LAST_CALL: Duration = Duration::from_millis(20);

/// The thread that advances the engine's epoch, and what it knows of the
/// calls in flight. Dropping it stops the thread.
pub(crate) struct EpochTicker {
    shared: Arc<Shared>,
    thread: std::thread::Thread,
}

struct Shared {
    /// Guest calls (and instantiations) in flight.
    running: AtomicUsize,
    /// Set by the ticker before it parks: a call that starts then unparks
    /// it.
    parked: AtomicBool,
    stop: AtomicBool,
}

/// Held while guest code may run: the ticker keeps ticking until every
/// one is dropped.
pub(crate) struct Running<'a>(&'a Shared);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochTicker {
    /// Starts the ticker thread for `engine`; it ends when the engine is
    /// dropped or this ticker is.
    pub(crate) fn spawn(engine: wasmtime::EngineWeak, tick: Duration) -> Self {
        let shared = Arc::new(Shared {
            running: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let idle_ticks_before_parking =
            (TICKING_AFTER_LAST_CALL.as_nanos() / tick.as_nanos().max(1)).max(1);
        let thread = std::thread::Builder::new()
            .name("shanhai-epoch".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || shared.tick(&engine, tick, idle_ticks_before_parking)
            })
            .expect("spawning the epoch ticker thread");
        Self {
            thread: thread.thread().clone(),
            shared,
        }
    }

    /// Marks a guest call in flight until the returned guard drops,
    /// waking the ticker if it sleeps.
    pub(crate) fn running(&self) -> Running<'_> {
        // Sequentially consistent with the ticker's own store of `parked`
        // and load of `running` (`Shared::tick`): either it sees this call
        // and does not park, or this sees it parked and wakes it.
        self.shared.running.fetch_add(1, Ordering::SeqCst);
        if self.shared.parked.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
        Running(&self.shared)
    }

    /// Whether the ticker sleeps for want of guest calls.
    #[cfg(test)]
    pub(crate) fn is_parked(&self) -> bool {
        self.shared.parked.load(Ordering::SeqCst)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

impl Shared {
    fn tick(&self, engine: &wasmtime::EngineWeak, tick: Duration, idle_ticks_before_parking: u128) {
        let mut idle_ticks = 0;
        while !self.stop.load(Ordering::SeqCst) {
            if self.running.load(Ordering::SeqCst) > 0 {
                idle_ticks = 0;
            } else if idle_ticks >= idle_ticks_before_parking {
                self.parked.store(true, Ordering::SeqCst);
                // A call that started after the load above has either been
                // seen here or has seen `parked` and will unpark (a wake-up
                // that comes before `park` makes it return at once).
                if self.running.load(Ordering::SeqCst) == 0 && !self.stop.load(Ordering::SeqCst) {
                    std::thread::park();
                }
                self.parked.store(false, Ordering::SeqCst);
                idle_ticks = 0;
                continue;
            } else {
                idle_ticks += 1;
            }
            std::thread::sleep(tick);
            match engine.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::{InvokeError, ModuleLimits, ModuleSettings, NumValue, Runtime, RuntimeConfig};

    /// Counts `n` down to zero: seconds of computing for a large `n`,
    /// stopped early only by the epoch deadline.
    const SPIN: &str = r#"(module
  (func (export "spin") (param $n i64)
    (loop (br_if 0 (i64.ne (local.tee $n (i64.sub (local.get $n) (i64.const 1))) (i64.const 0))))))"#;

    async fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_ticker_sleeps_while_idle_and_wakes_for_a_call_that_needs_its_deadline() {
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let settings = ModuleSettings {
            limits: ModuleLimits {
                deadline: Duration::from_millis(100),
                ..ModuleLimits::default()
            },
            ..ModuleSettings::default()
        };
        let module = runtime
            .load("spin", wat::parse_str(SPIN).unwrap(), settings)
            .await
            .unwrap();
        let ticker = runtime.ticker();
        wait_until("the idle ticker parks", || ticker.is_parked()).await;
        // Without a tick, nothing stops this guest before it has counted
        // down (seconds) and returned; with ticks, the 100 ms deadline does.
        let started = Instant::now();
        let result = module
            .call_numeric("spin", &[NumValue::I64(1 << 32)], Arc::from("t"))
            .await;
        assert!(
            matches!(result, Err(InvokeError::Timeout(_))),
            "expected a timeout, got {result:?} after {:?}",
            started.elapsed()
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
        wait_until("the ticker parks again", || ticker.is_parked()).await;
    }
}
