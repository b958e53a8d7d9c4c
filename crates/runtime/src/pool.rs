//! The elastic pool of initialised instances behind one module.
//!
//! - A semaphore bounds the instances in use to `max_instances`; events
//!   beyond it wait in a bounded queue (`max_queue`, `queue_timeout`) and
//!   are refused when it is full.
//! - An event takes an idle instance. When none is idle it waits up to
//!   `scale_up_wait` for one to come back, then scales up by creating a new
//!   one: short bursts reuse the instances there are, sustained load grows
//!   the pool.
//! - Instances are recycled after `max_requests_per_instance` events, idle
//!   ones above `min_instances` are reaped after `idle_timeout`, and a
//!   failed instance is discarded.
//! - The module's keeper task does the reaping, the refilling and the
//!   paging out of dormant code. It sleeps until [`InstancePool::next_chore`]
//!   and is woken ([`InstancePool::keeper`]) only by what that plan could
//!   not foresee: a new instance, one lost, code read back in. A pool with
//!   nothing to reap leaves its keeper asleep, so an idle box is not woken
//!   for it.
//!
//! The pool does not know how to create instances; the module does, and
//! hands them to [`InstancePool::adopt`].

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use crate::error::InvokeError;
use crate::limits::ModuleLimits;

/// Counters and sizes of a pool, for the admin API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Instances alive (idle + busy).
    pub live: usize,
    /// Instances waiting for work.
    pub idle: usize,
    /// Events waiting for an instance slot.
    pub waiting: usize,
    /// The most instances allowed.
    pub max_instances: usize,
    /// Instances created since load.
    pub created: u64,
    /// Instances retired after `max_requests_per_instance` events.
    pub recycled: u64,
    /// Idle instances dropped after `idle_timeout`.
    pub reaped: u64,
    /// Instances discarded after a trap or a limit.
    pub discarded: u64,
    /// Times the pool grew because no instance came back in time.
    pub scale_ups: u64,
}

/// An instance with its bookkeeping.
pub(crate) struct Pooled<I> {
    instance: I,
    uses: u64,
    idle_since: Instant,
}

impl<I> Deref for Pooled<I> {
    type Target = I;
    fn deref(&self) -> &I {
        &self.instance
    }
}

impl<I> DerefMut for Pooled<I> {
    fn deref_mut(&mut self) -> &mut I {
        &mut self.instance
    }
}

pub(crate) struct InstancePool<I> {
    max_instances: usize,
    max_queue: usize,
    queue_timeout: Duration,
    min_instances: usize,
    max_uses: Option<u64>,
    idle_timeout: Duration,
    scale_up_wait: Duration,
    idle: Mutex<Vec<Pooled<I>>>,
    permits: Arc<Semaphore>,
    returned: Notify,
    waiting: AtomicUsize,
    live: AtomicUsize,
    created: AtomicU64,
    recycled: AtomicU64,
    reaped: AtomicU64,
    discarded: AtomicU64,
    scale_ups: AtomicU64,
    /// When the pool was made: the origin of `last_event`.
    born: Instant,
    /// Milliseconds from `born` to the start of the latest event, plus one;
    /// 0 while no event has come.
    last_event: AtomicU64,
    /// Cleared when the module's code is paged out, set by the next event.
    code_resident: AtomicBool,
    /// Wakes the keeper for work [`Self::next_chore`] did not plan.
    keeper: Arc<Notify>,
    /// Metric handles, resolved once: looking them up by name and labels on
    /// every event would cost more than a small guest call.
    idle_gauge: metrics::Gauge,
    busy_gauge: metrics::Gauge,
    queue_wait: metrics::Histogram,
}

impl<I> InstancePool<I> {
    pub(crate) fn new(module: Arc<str>, limits: &ModuleLimits) -> Self {
        let max_instances = limits.max_instances.max(1);
        let label = module.to_string();
        Self {
            idle_gauge: metrics::gauge!("shanhai_instances", "module" => label.clone(), "state" => "idle"),
            busy_gauge: metrics::gauge!("shanhai_instances", "module" => label.clone(), "state" => "busy"),
            queue_wait: metrics::histogram!("shanhai_queue_wait_seconds", "module" => label),
            max_instances,
            max_queue: limits.max_queue,
            queue_timeout: limits.queue_timeout,
            min_instances: limits.min_instances.min(max_instances),
            max_uses: limits.max_requests_per_instance,
            idle_timeout: limits.idle_timeout,
            scale_up_wait: limits.scale_up_wait,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max_instances)),
            returned: Notify::new(),
            waiting: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            created: AtomicU64::new(0),
            recycled: AtomicU64::new(0),
            reaped: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            scale_ups: AtomicU64::new(0),
            born: Instant::now(),
            last_event: AtomicU64::new(0),
            code_resident: AtomicBool::new(true),
            keeper: Arc::new(Notify::new()),
        }
    }

    /// What wakes the keeper: a new instance (it may outlive
    /// `idle_timeout`), one retired or discarded (below `min_instances`),
    /// code read back in (it may go dormant again), the pool dropped.
    pub(crate) fn keeper(&self) -> Arc<Notify> {
        Arc::clone(&self.keeper)
    }

    /// When the keeper has work next, as far as the pool can tell now: the
    /// oldest idle instance above `min_instances` reaching `idle_timeout`,
    /// or, with `plan_dormancy` (`runtime.release_idle_code`), the code
    /// going dormant. `None`: nothing until something wakes the keeper.
    /// With the instances above `min_instances` all busy, `idle_timeout`
    /// from now: none can expire sooner, and a look then plans anew; the
    /// same for dormancy that is due but was declined (an event still
    /// runs).
    pub(crate) fn next_chore(&self, plan_dormancy: bool) -> Option<Instant> {
        let now = Instant::now();
        let live = self.live.load(Ordering::Acquire);
        let expiry = (live > self.min_instances).then(|| {
            let oldest = self.idle.lock().unwrap().first().map(|i| i.idle_since);
            oldest.unwrap_or(now) + self.idle_timeout
        });
        let resident = self.code_resident.load(Ordering::Relaxed);
        let dormancy = (plan_dormancy && live == 0 && resident).then(|| {
            // `last_event` is whole milliseconds plus one: never before the
            // event. A module never called is due at once (`take_dormancy`).
            let due = match self.last_event.load(Ordering::Relaxed) {
                0 => now,
                at => self.born + Duration::from_millis(at) + self.idle_timeout,
            };
            if due > now {
                due
            } else {
                now + self.idle_timeout
            }
        });
        expiry.into_iter().chain(dormancy).min()
    }

    /// A slot for one event, waiting in the bounded queue when every slot
    /// is taken.
    pub(crate) async fn acquire(&self) -> Result<SemaphorePermit<'_>, InvokeError> {
        let since_born = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_event.store(since_born + 1, Ordering::Relaxed);
        // Read first: a store on every event would move the cache line
        // between the workers even when nothing changes.
        if !self.code_resident.load(Ordering::Relaxed) {
            self.code_resident.store(true, Ordering::Relaxed);
            self.keeper.notify_one();
        }
        // A borrowed permit: an owned one clones the semaphore's `Arc` on
        // every event.
        if let Ok(permit) = self.permits.try_acquire() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(InvokeError::QueueFull(self.max_instances));
        }
        let started = Instant::now();
        let permit = tokio::time::timeout(self.queue_timeout, self.permits.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        self.queue_wait.record(started.elapsed().as_secs_f64());
        match permit {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(InvokeError::Unavailable("module is unloading".into())),
            Err(_elapsed) => Err(InvokeError::QueueTimeout(self.queue_timeout)),
        }
    }

    /// With a slot held: an idle instance, or `None` when the caller should
    /// create one (the pool is empty, or none came back within
    /// `scale_up_wait`).
    pub(crate) async fn take(&self) -> Option<Pooled<I>> {
        // Most events find an idle instance: they read no clock.
        if let Some(instance) = self.pop_idle() {
            return Some(instance);
        }
        let deadline = tokio::time::Instant::now() + self.scale_up_wait;
        loop {
            if self.live.load(Ordering::Acquire) == 0 || self.scale_up_wait.is_zero() {
                return None;
            }
            if tokio::time::timeout_at(deadline, self.returned.notified())
                .await
                .is_err()
            {
                self.scale_ups.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            if let Some(instance) = self.pop_idle() {
                return Some(instance);
            }
        }
    }

    fn pop_idle(&self) -> Option<Pooled<I>> {
        let mut idle = self.idle.lock().unwrap();
        let instance = idle.pop();
        let idle_now = idle.len();
        drop(idle);
        if instance.is_some() {
            self.publish_with(idle_now);
        }
        instance
    }

    /// Takes ownership of a newly created instance (counted as busy).
    pub(crate) fn adopt(&self, instance: I) -> Pooled<I> {
        self.live.fetch_add(1, Ordering::AcqRel);
        self.created.fetch_add(1, Ordering::Relaxed);
        self.publish();
        self.keeper.notify_one();
        Pooled {
            instance,
            uses: 0,
            idle_since: Instant::now(),
        }
    }

    /// Returns an instance after a successful event; retires it when it has
    /// served `max_requests_per_instance` events.
    pub(crate) fn put_back(&self, mut instance: Pooled<I>, served_event: bool) {
        if served_event {
            instance.uses += 1;
        }
        if self.max_uses.is_some_and(|max| instance.uses >= max) {
            self.live.fetch_sub(1, Ordering::AcqRel);
            self.recycled.fetch_add(1, Ordering::Relaxed);
            self.publish();
            self.keeper.notify_one();
        } else {
            instance.idle_since = Instant::now();
            let mut idle = self.idle.lock().unwrap();
            idle.push(instance);
            let idle_now = idle.len();
            drop(idle);
            self.returned.notify_one();
            self.publish_with(idle_now);
        }
    }

    /// Drops an instance that must not be reused.
    pub(crate) fn discard(&self, instance: Pooled<I>) {
        drop(instance);
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.discarded.fetch_add(1, Ordering::Relaxed);
        self.publish();
        self.keeper.notify_one();
    }

    /// Drops idle instances above `min_instances` that have been idle longer
    /// than `idle_timeout`. Returns how many were dropped.
    pub(crate) fn reap(&self) -> usize {
        let mut idle = self.idle.lock().unwrap();
        let live = self.live.load(Ordering::Acquire);
        let spare = live.saturating_sub(self.min_instances);
        // The oldest idle instances sit at the front (the pool is a stack).
        let expired = idle
            .iter()
            .take_while(|i| i.idle_since.elapsed() >= self.idle_timeout)
            .count()
            .min(spare);
        idle.drain(..expired);
        drop(idle);
        if expired > 0 {
            self.live.fetch_sub(expired, Ordering::AcqRel);
            self.reaped.fetch_add(expired as u64, Ordering::Relaxed);
            self.publish();
        }
        expired
    }

    /// Whether the module's code should leave memory now: no instance is
    /// alive, no event runs or waits, none started within `idle_timeout`
    /// (or ever), and the code has not been paged out since the last event.
    /// Returns `true` once per such quiet spell.
    pub(crate) fn take_dormancy(&self) -> bool {
        let quiet = match self.last_event.load(Ordering::Relaxed) {
            0 => true,
            at => self.born.elapsed() >= Duration::from_millis(at - 1) + self.idle_timeout,
        };
        quiet
            && self.live.load(Ordering::Acquire) == 0
            && self.waiting.load(Ordering::Acquire) == 0
            && self.permits.available_permits() == self.max_instances
            && self.code_resident.swap(false, Ordering::Relaxed)
    }

    /// A slot for background work (refilling the pool), if one is free now.
    pub(crate) fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// How many instances are missing to reach `min_instances`.
    pub(crate) fn deficit(&self) -> usize {
        self.min_instances
            .saturating_sub(self.live.load(Ordering::Acquire))
    }

    /// How long the keeper waits to try again after a refill it could not
    /// make (every slot busy, or the instance failed).
    pub(crate) fn refill_retry(&self) -> Duration {
        (self.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(30))
    }

    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            live: self.live.load(Ordering::Acquire),
            idle: self.idle.lock().unwrap().len(),
            waiting: self.waiting.load(Ordering::Acquire),
            max_instances: self.max_instances,
            created: self.created.load(Ordering::Relaxed),
            recycled: self.recycled.load(Ordering::Relaxed),
            reaped: self.reaped.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
            scale_ups: self.scale_ups.load(Ordering::Relaxed),
        }
    }

    /// Publishes the pool's size as `shanhai_instances{module,state}`.
    fn publish(&self) {
        let idle = self.idle.lock().unwrap().len();
        self.publish_with(idle);
    }

    /// [`publish`](Self::publish) with the idle count a caller read under
    /// the lock it already held: a request takes the lock once each way,
    /// not twice.
    fn publish_with(&self, idle: usize) {
        let live = self.live.load(Ordering::Acquire);
        self.idle_gauge.set(idle as f64);
        self.busy_gauge.set(live.saturating_sub(idle) as f64);
    }
}

impl<I> Drop for InstancePool<I> {
    /// Wakes the keeper, which then finds the module gone and ends.
    fn drop(&mut self) {
        self.keeper.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(min_instances: usize, idle_timeout_ms: u64) -> InstancePool<u32> {
        InstancePool::new(
            Arc::from("keeper-test"),
            &ModuleLimits {
                min_instances,
                max_instances: 4,
                idle_timeout: Duration::from_millis(idle_timeout_ms),
                ..ModuleLimits::default()
            },
        )
    }

    /// The keeper's plan: an idle instance above `min_instances` is looked
    /// at when it reaches `idle_timeout`; a pool at `min_instances` whose
    /// code stays (or has gone) plans nothing, so its keeper sleeps until
    /// woken.
    #[tokio::test]
    async fn the_keeper_plans_only_what_can_expire() {
        let timeout = Duration::from_secs(60);
        let kept = pool(1, 60_000);
        let instance = kept.adopt(1);
        kept.put_back(instance, false);
        assert_eq!(kept.next_chore(true), None, "the one kept instance expires");

        let spare = pool(0, 60_000);
        let instance = spare.adopt(1);
        let put_back = Instant::now();
        spare.put_back(instance, false);
        let at = spare.next_chore(false).expect("an idle instance to reap");
        assert!(at >= put_back + timeout && at <= Instant::now() + timeout);

        // All busy: none can expire before a full idle_timeout from now.
        let busy = spare.pop_idle().unwrap();
        let from = Instant::now();
        let at = spare.next_chore(false).unwrap();
        assert!(at >= from + timeout, "{:?}", at - from);
        spare.discard(busy);

        // No instance left: dormancy planned only when the code may go.
        assert_eq!(spare.next_chore(false), None);
        assert!(spare.next_chore(true).is_some());
        // Never called: dormant at once; once paged out, nothing planned.
        assert!(spare.take_dormancy());
        assert_eq!(spare.next_chore(true), None);
        // An event brings the code back: dormant idle_timeout after it.
        let event = Instant::now();
        drop(spare.acquire().await.unwrap());
        let due = spare.next_chore(true).expect("the code's dormancy");
        // (`last_event` counts whole milliseconds, rounded up here.)
        let latest = Instant::now() + timeout + Duration::from_millis(1);
        assert!(due >= event + timeout && due <= latest);
        assert!(!spare.take_dormancy(), "dormant right after an event");
    }

    /// Due dormancy that `take_dormancy` declines (an event holds a slot)
    /// is looked at again a full `idle_timeout` later, not at once: the
    /// keeper must not spin.
    #[test]
    fn declined_dormancy_is_not_planned_in_the_past() {
        let pool = pool(0, 20);
        let slot = pool.try_slot().unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert!(!pool.take_dormancy(), "dormant while a slot is held");
        let from = Instant::now();
        let at = pool.next_chore(true).unwrap();
        assert!(at >= from + Duration::from_millis(20), "{:?}", at - from);
        drop(slot);
        assert!(pool.take_dormancy());
        assert_eq!(pool.next_chore(true), None, "paged out: nothing planned");
    }

    /// What the plan cannot foresee wakes the keeper: a new instance, one
    /// discarded, code read back in by an event.
    #[tokio::test]
    async fn surprises_wake_the_keeper() {
        let pool = pool(0, 20);
        let wake = pool.keeper();
        let woken = || {
            let wake = Arc::clone(&wake);
            async move {
                tokio::time::timeout(Duration::from_secs(5), wake.notified())
                    .await
                    .is_ok()
            }
        };
        let instance = pool.adopt(1);
        assert!(woken().await, "adopt");
        pool.discard(instance);
        assert!(woken().await, "discard");
        std::thread::sleep(Duration::from_millis(40));
        assert!(pool.take_dormancy());
        drop(pool.acquire().await.unwrap());
        assert!(woken().await, "code read back in");
    }
}
