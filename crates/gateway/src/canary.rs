//! Canary releases: a second version of a module takes a share of its
//! traffic while the gateway compares it with the stable version over a
//! sliding window, and rolls it back by itself when it does worse.
//!
//! - **Split.** A request carrying the sticky header (`canary.sticky_header`)
//!   is hashed into one of 10,000 buckets; buckets below the weight go to the
//!   canary, so one key always meets one version, and raising the weight
//!   only moves keys from stable to canary. Requests without the header are
//!   split at random.
//! - **Watch.** Both versions record, per slot of a sliding window, their
//!   requests, server errors (any 5xx: a trap, a timeout, an overloaded pool
//!   or a 5xx the guest chose) and a log-scale latency histogram.
//! - **Verdict.** Once the canary has served `min_requests` in the window,
//!   it is rolled back when its error rate exceeds `max_error_rate`, or when
//!   its p95 latency exceeds `latency_factor` times the stable one's (the
//!   stable p95 taken as at least `latency_floor_ms`, below which
//!   differences are scheduling noise; the stable version needs
//!   `min_requests` too).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::HeaderName;
use serde::Serialize;
use shanhai_runtime::LoadedModule;

/// Weights are in basis points: 10,000 is all traffic.
pub const FULL_WEIGHT: u32 = 10_000;

/// Slots per window: the window slides by a tenth of its length.
const SLOTS: usize = 10;

/// Latency histogram: four buckets per power of two of microseconds, up to
/// 2^28 µs (about 4.5 minutes, beyond any deadline).
const BUCKETS_PER_OCTAVE: f64 = 4.0;
const BUCKETS: usize = 112;

/// How canaries are judged, from `[canary]`.
#[derive(Debug, Clone)]
pub struct CanaryPolicy {
    /// Length of the sliding window.
    pub window: Duration,
    /// Highest tolerated share of server errors (0.005 = 0.5%).
    pub max_error_rate: f64,
    /// Requests a version must serve in the window before it is judged.
    pub min_requests: u64,
    /// Highest tolerated ratio of canary p95 to stable p95.
    pub latency_factor: f64,
    /// The stable p95 is taken as at least this.
    pub latency_floor: Duration,
    /// The request header whose value pins a client to one version.
    pub sticky_header: HeaderName,
}

impl Default for CanaryPolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            max_error_rate: 0.005,
            min_requests: 100,
            latency_factor: 1.5,
            latency_floor: Duration::from_millis(1),
            sticky_header: HeaderName::from_static("x-shanhai-key"),
        }
    }
}

/// Which version a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The version serving before the canary.
    Stable,
    /// The canary.
    Canary,
}

/// Why a canary was rolled back.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RollbackReason {
    /// Too many server errors.
    ErrorRate {
        /// Server errors in the window.
        errors: u64,
        /// Requests in the window.
        requests: u64,
        /// The threshold.
        max_error_rate: f64,
    },
    /// Too slow next to the stable version.
    Latency {
        /// Canary p95, milliseconds.
        canary_p95_ms: f64,
        /// Stable p95, milliseconds.
        stable_p95_ms: f64,
        /// The threshold factor.
        latency_factor: f64,
    },
    /// An operator asked for it.
    Manual,
}

impl RollbackReason {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ErrorRate { .. } => "error_rate",
            Self::Latency { .. } => "latency",
            Self::Manual => "manual",
        }
    }
}

impl std::fmt::Display for RollbackReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ErrorRate {
                errors,
                requests,
                max_error_rate,
            } => write!(
                f,
                "error rate {errors}/{requests} ({:.2}%) above {:.2}%",
                *errors as f64 * 100.0 / *requests as f64,
                max_error_rate * 100.0
            ),
            Self::Latency {
                canary_p95_ms,
                stable_p95_ms,
                latency_factor,
            } => write!(
                f,
                "p95 latency {canary_p95_ms:.2} ms above {latency_factor}x the stable {stable_p95_ms:.2} ms"
            ),
            Self::Manual => f.write_str("rolled back by an operator"),
        }
    }
}

/// A canary: a new version of a module taking part of its traffic.
pub struct Canary {
    module: Arc<LoadedModule>,
    weight: AtomicU32,
    /// The module file and its signature, written as the stable file on
    /// promotion.
    wasm: Vec<u8>,
    signature: Option<String>,
    policy: CanaryPolicy,
    started: SystemTime,
    origin: Instant,
    health: Mutex<Health>,
    /// Set once a rollback was decided, so it is decided once.
    judged: AtomicBool,
    /// Splits requests without a sticky key.
    next: AtomicU64,
}

struct Health {
    stable: Window,
    canary: Window,
}

impl Canary {
    /// A canary of `module` taking `weight` basis points of its traffic.
    pub fn new(
        module: Arc<LoadedModule>,
        weight: u32,
        wasm: Vec<u8>,
        signature: Option<String>,
        policy: CanaryPolicy,
    ) -> Self {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            module,
            weight: AtomicU32::new(weight.min(FULL_WEIGHT)),
            wasm,
            signature,
            policy,
            started: SystemTime::now(),
            origin: Instant::now(),
            health: Mutex::new(Health {
                stable: Window::default(),
                canary: Window::default(),
            }),
            judged: AtomicBool::new(false),
            next: AtomicU64::new(seed),
        }
    }

    /// The canary's module.
    pub fn module(&self) -> &Arc<LoadedModule> {
        &self.module
    }

    /// The module file's bytes.
    pub fn wasm(&self) -> &[u8] {
        &self.wasm
    }

    /// The text of the module's signature file, when it came with one.
    pub fn signature(&self) -> Option<&str> {
        self.signature.as_deref()
    }

    /// The share of traffic, in basis points.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Changes the share of traffic; the window's figures are kept.
    pub fn set_weight(&self, weight: u32) {
        self.weight
            .store(weight.min(FULL_WEIGHT), Ordering::Relaxed);
    }

    /// The header pinning a client to one version.
    pub fn sticky_header(&self) -> &HeaderName {
        &self.policy.sticky_header
    }

    /// Picks the version for a request with sticky key `key`.
    pub fn choose(&self, key: Option<&[u8]>) -> Release {
        let bucket = match key {
            Some(key) => mix(fnv1a(key)),
            None => mix(self.next.fetch_add(1, Ordering::Relaxed)),
        } % u64::from(FULL_WEIGHT);
        if bucket < u64::from(self.weight()) {
            Release::Canary
        } else {
            Release::Stable
        }
    }

    /// Records one finished request. Returns a reason when this request
    /// tipped the canary over a threshold: the caller rolls it back.
    pub fn record(
        &self,
        release: Release,
        server_error: bool,
        latency: Duration,
    ) -> Option<RollbackReason> {
        let slot = self.slot_index(Instant::now());
        let mut health = self.health.lock().unwrap();
        let window = match release {
            Release::Stable => &mut health.stable,
            Release::Canary => &mut health.canary,
        };
        window.record(slot, server_error, latency);
        // Only a canary request can make the canary worse.
        if release == Release::Stable || self.judged.load(Ordering::Relaxed) {
            return None;
        }
        let reason = judge(
            &self.policy,
            &health.stable.totals(slot),
            &health.canary.totals(slot),
        )?;
        drop(health);
        (!self.judged.swap(true, Ordering::Relaxed)).then_some(reason)
    }

    /// The canary's state for the admin API.
    pub fn report(&self) -> CanaryReport {
        let slot = self.slot_index(Instant::now());
        let health = self.health.lock().unwrap();
        CanaryReport {
            version: self.module.version().to_owned(),
            weight_percent: f64::from(self.weight()) / 100.0,
            started_unix_ms: unix_ms(self.started),
            window_s: self.policy.window.as_secs_f64(),
            stable: health.stable.totals(slot).report(),
            canary: health.canary.totals(slot).report(),
        }
    }

    fn slot_index(&self, now: Instant) -> u64 {
        let slot_len = (self.policy.window / SLOTS as u32).max(Duration::from_millis(1));
        (now.duration_since(self.origin).as_nanos() / slot_len.as_nanos()) as u64
    }
}

/// The verdict on a canary given both versions' figures: `Some` to roll
/// it back.
fn judge(policy: &CanaryPolicy, stable: &Totals, canary: &Totals) -> Option<RollbackReason> {
    if canary.requests < policy.min_requests.max(1) {
        return None;
    }
    if canary.errors as f64 > policy.max_error_rate * canary.requests as f64 {
        return Some(RollbackReason::ErrorRate {
            errors: canary.errors,
            requests: canary.requests,
            max_error_rate: policy.max_error_rate,
        });
    }
    if stable.requests < policy.min_requests.max(1) {
        return None;
    }
    let canary_p95 = canary.p95();
    let stable_p95 = stable.p95();
    let baseline = stable_p95.max(policy.latency_floor);
    if canary_p95.as_secs_f64() > policy.latency_factor * baseline.as_secs_f64() {
        return Some(RollbackReason::Latency {
            canary_p95_ms: canary_p95.as_secs_f64() * 1e3,
            stable_p95_ms: stable_p95.as_secs_f64() * 1e3,
            latency_factor: policy.latency_factor,
        });
    }
    None
}

/// A canary as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryReport {
    /// The canary's version.
    pub version: String,
    /// Its share of traffic.
    pub weight_percent: f64,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// The window the figures cover.
    pub window_s: f64,
    /// The stable version's figures over the window.
    pub stable: WindowReport,
    /// The canary's figures over the window.
    pub canary: WindowReport,
}

/// One version's figures over the window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    /// Requests served.
    pub requests: u64,
    /// Of which server errors.
    pub errors: u64,
    /// 95th percentile latency (log-bucketed: within 19%), when any.
    pub p95_ms: Option<f64>,
}

/// A canary's end, kept for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryOutcome {
    /// `promoted` or `rolled_back`.
    pub action: &'static str,
    /// The canary's version.
    pub version: String,
    /// Why it was rolled back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackReason>,
    /// A sentence for people.
    pub message: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The figures at that moment.
    pub figures: CanaryReport,
}

impl CanaryOutcome {
    /// A record of `canary` ending with `action`.
    pub fn new(canary: &Canary, action: &'static str, rollback: Option<RollbackReason>) -> Self {
        let message = match &rollback {
            Some(reason) => reason.to_string(),
            None => "promoted to stable".to_owned(),
        };
        Self {
            action,
            version: canary.module.version().to_owned(),
            rollback,
            message,
            at_unix_ms: unix_ms(SystemTime::now()),
            figures: canary.report(),
        }
    }
}

/// A sliding window of [`SLOTS`] slots; each slot knows which absolute slot
/// number it holds, so stale ones are recognised and reused.
#[derive(Default)]
struct Window {
    slots: [Slot; SLOTS],
}

struct Slot {
    index: u64,
    requests: u64,
    errors: u64,
    latency: [u32; BUCKETS],
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            index: u64::MAX,
            requests: 0,
            errors: 0,
            latency: [0; BUCKETS],
        }
    }
}

impl Window {
    fn record(&mut self, index: u64, error: bool, latency: Duration) {
        let slot = &mut self.slots[(index % SLOTS as u64) as usize];
        if slot.index != index {
            *slot = Slot {
                index,
                ..Slot::default()
            };
        }
        slot.requests += 1;
        slot.errors += u64::from(error);
        let bucket = &mut slot.latency[bucket_of(latency)];
        *bucket = bucket.saturating_add(1);
    }

    fn totals(&self, now: u64) -> Totals {
        let oldest = now.saturating_sub(SLOTS as u64 - 1);
        let mut totals = Totals {
            requests: 0,
            errors: 0,
            latency: [0; BUCKETS],
        };
        for slot in self
            .slots
            .iter()
            .filter(|s| s.index != u64::MAX && (oldest..=now).contains(&s.index))
        {
            totals.requests += slot.requests;
            totals.errors += slot.errors;
            for (sum, count) in totals.latency.iter_mut().zip(slot.latency) {
                *sum += u64::from(count);
            }
        }
        totals
    }
}

struct Totals {
    requests: u64,
    errors: u64,
    latency: [u64; BUCKETS],
}

impl Totals {
    /// The 95th percentile: the upper edge of the bucket holding it.
    fn p95(&self) -> Duration {
        let count: u64 = self.latency.iter().sum();
        let rank = (count as f64 * 0.95).ceil() as u64;
        let mut seen = 0;
        for (bucket, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank.max(1) {
                return bucket_upper(bucket);
            }
        }
        Duration::ZERO
    }

    fn report(&self) -> WindowReport {
        WindowReport {
            requests: self.requests,
            errors: self.errors,
            p95_ms: (self.requests > 0).then(|| self.p95().as_secs_f64() * 1e3),
        }
    }
}

fn bucket_of(latency: Duration) -> usize {
    let micros = latency.as_micros().max(1) as f64;
    ((micros.log2() * BUCKETS_PER_OCTAVE) as usize).min(BUCKETS - 1)
}

fn bucket_upper(bucket: usize) -> Duration {
    Duration::from_secs_f64((2f64).powf((bucket + 1) as f64 / BUCKETS_PER_OCTAVE) / 1e6)
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// FNV-1a: stable across processes and releases, so every gateway of a
/// fleet sends one key to the same version.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The splitmix64 finaliser: spreads nearby inputs over the whole range.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals_of(latencies_us: &[u64], errors: u64) -> Totals {
        let mut window = Window::default();
        for (i, &us) in latencies_us.iter().enumerate() {
            window.record(0, (i as u64) < errors, Duration::from_micros(us));
        }
        window.totals(0)
    }

    #[test]
    fn p95_is_within_a_bucket_of_the_truth() {
        let latencies: Vec<u64> = (1..=1000).collect();
        let p95 = totals_of(&latencies, 0).p95().as_micros() as f64;
        assert!((950.0..=950.0 * 1.19).contains(&p95), "p95 {p95} µs");
    }

    #[test]
    fn old_slots_leave_the_window() {
        let mut window = Window::default();
        window.record(0, true, Duration::from_millis(1));
        window.record(SLOTS as u64 - 1, false, Duration::from_millis(1));
        assert_eq!(window.totals(SLOTS as u64 - 1).requests, 2);
        assert_eq!(window.totals(SLOTS as u64).requests, 1);
        assert_eq!(window.totals(SLOTS as u64).errors, 0);
        // A slot reused for a later index forgets what it held.
        window.record(SLOTS as u64, false, Duration::from_millis(1));
        assert_eq!(window.totals(SLOTS as u64).requests, 2);
    }

    #[test]
    fn verdicts_follow_the_policy() {
        let policy = CanaryPolicy {
            min_requests: 100,
            ..CanaryPolicy::default()
        };
        let judge = |stable: &Totals, canary: &Totals| judge(&policy, stable, canary);
        let fast = totals_of(&[300; 200], 0);
        // Too few requests to judge, however bad.
        assert!(judge(&fast, &totals_of(&[300; 99], 99)).is_none());
        // 0.5% of 200 is one error: allowed; two are not.
        assert!(judge(&fast, &totals_of(&[300; 200], 1)).is_none());
        assert!(matches!(
            judge(&fast, &totals_of(&[300; 200], 2)),
            Some(RollbackReason::ErrorRate { errors: 2, .. })
        ));
        // Sub-millisecond differences are under the floor.
        assert!(judge(&fast, &totals_of(&[900; 200], 0)).is_none());
        // 5 ms against a 1 ms floor is a regression.
        assert!(matches!(
            judge(&fast, &totals_of(&[5000; 200], 0)),
            Some(RollbackReason::Latency { .. })
        ));
        // Against a slow stable version, a slightly slower canary passes.
        let slow = totals_of(&[10_000; 200], 0);
        assert!(judge(&slow, &totals_of(&[12_000; 200], 0)).is_none());
        assert!(judge(&slow, &totals_of(&[20_000; 200], 0)).is_some());
    }

    /// A canary of an empty module, taking `weight` basis points.
    async fn canary(weight: u32) -> Canary {
        let runtime = shanhai_runtime::Runtime::new(shanhai_runtime::RuntimeConfig::default())
            .expect("a runtime");
        let module = runtime
            .load(
                "m",
                wat::parse_str(r#"(module (func (export "noop")))"#).unwrap(),
                shanhai_runtime::ModuleSettings::default(),
            )
            .await
            .expect("an empty module loads");
        Canary::new(module, weight, Vec::new(), None, CanaryPolicy::default())
    }

    /// Sticky keys and the bucket (0 to 9,999) `Canary::choose` puts each
    /// in. Every gateway of a fleet, in this release and the next, must
    /// send a key to the same version: changing the hash moves users
    /// between versions mid-rollout, so these values are fixed.
    const GOLDEN_BUCKETS: [(&str, u32); 8] = [
        ("user-7", 7532),
        ("", 9008),
        ("alice", 1941),
        ("bob", 8156),
        ("42", 1172),
        ("session:9f2c", 891),
        ("device/258", 4840),
        ("用户-1", 5744),
    ];

    #[tokio::test]
    async fn sticky_keys_fall_in_their_golden_buckets() {
        let canary = canary(0).await;
        for (key, bucket) in GOLDEN_BUCKETS {
            // A key goes to the canary exactly when its bucket is below the
            // weight: at `bucket` it stays, one basis point more moves it.
            canary.set_weight(bucket);
            assert_eq!(
                canary.choose(Some(key.as_bytes())),
                Release::Stable,
                "{key:?} at weight {bucket}"
            );
            canary.set_weight(bucket + 1);
            assert_eq!(
                canary.choose(Some(key.as_bytes())),
                Release::Canary,
                "{key:?} at weight {}",
                bucket + 1
            );
        }
    }

    #[tokio::test]
    async fn weights_are_honoured_and_raising_one_only_moves_keys_to_the_canary() {
        let canary = canary(2_500).await;
        let keys: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
        let at = |weight: u32| -> Vec<bool> {
            canary.set_weight(weight);
            keys.iter()
                .map(|k| canary.choose(Some(k.as_bytes())) == Release::Canary)
                .collect()
        };
        let quarter = at(2_500);
        let share = quarter.iter().filter(|&&c| c).count();
        assert!((2_200..2_800).contains(&share), "{share} of 10000");
        let half = at(5_000);
        assert!(
            quarter.iter().zip(&half).all(|(&q, &h)| !q || h),
            "a key on the canary at 25% went back to stable at 50%"
        );
        assert_eq!(at(0).iter().filter(|&&c| c).count(), 0);
        assert_eq!(at(FULL_WEIGHT).iter().filter(|&&c| c).count(), 10_000);

        // Without a key, requests are split at random, by the same weight.
        canary.set_weight(2_500);
        let random = (0..10_000)
            .filter(|_| canary.choose(None) == Release::Canary)
            .count();
        assert!((2_200..2_800).contains(&random), "{random} of 10000");
    }
}
