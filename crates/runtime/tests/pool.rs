//! The elastic instance pool, driven through the public runtime API with
//! real wasmtime instances of small WAT modules.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shanhai_runtime::{
    InvokeError, LoadedModule, ModuleLimits, ModuleSettings, NumValue, PoolStats, Runtime,
    RuntimeConfig,
};

/// Counts the calls this instance has served.
const COUNTER: &str = r#"(module
  (global $n (mut i32) (i32.const 0))
  (func (export "count") (result i32)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (global.get $n)))"#;

/// Sleeps `ms` milliseconds in a WASI call.
const SLEEPER: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "sleep") (param $ms i64) (result i32)
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.mul (local.get $ms) (i64.const 1000000)))
    (call $poll (i32.const 0) (i32.const 128) (i32.const 1) (i32.const 200))))"#;

async fn load(wat: &str, limits: ModuleLimits) -> Arc<LoadedModule> {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let settings = ModuleSettings {
        limits,
        ..ModuleSettings::default()
    };
    runtime
        .load("m", wat::parse_str(wat).unwrap(), settings)
        .await
        .unwrap()
}

async fn count(module: &LoadedModule) -> i32 {
    match module
        .call_numeric("count", &[], Arc::from("t"))
        .await
        .unwrap()[..]
    {
        [NumValue::I32(n)] => n,
        ref other => panic!("unexpected result {other:?}"),
    }
}

/// Polls `module`'s pool until `done` holds (at most 20 s, for a slow
/// machine) and returns the stats that satisfied it.
async fn wait_for_pool(
    module: &LoadedModule,
    what: &str,
    done: impl Fn(&PoolStats) -> bool,
) -> PoolStats {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = module.pool_stats();
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "{what}: {stats:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn sleep(module: &Arc<LoadedModule>, ms: i64) -> Result<Vec<NumValue>, InvokeError> {
    module
        .call_numeric("sleep", &[NumValue::I64(ms)], Arc::from("t"))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_are_reused_and_recycled_after_max_requests() {
    let limits = ModuleLimits {
        max_requests_per_instance: Some(3),
        ..ModuleLimits::default()
    };
    let module = load(COUNTER, limits).await;
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(count(&module).await);
    }
    // The same instance serves three events, then a fresh one takes over.
    assert_eq!(seen, [1, 2, 3, 1, 2, 3, 1]);
    let stats = module.pool_stats();
    assert_eq!(stats.recycled, 2);
    assert_eq!(stats.live, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sequential_load_never_grows_the_pool() {
    let module = load(COUNTER, ModuleLimits::default()).await;
    for expected in 1..=50 {
        assert_eq!(count(&module).await, expected);
    }
    let stats = module.pool_stats();
    assert_eq!((stats.created, stats.live, stats.scale_ups), (1, 1, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn scales_up_under_concurrency_then_reaps_idle_instances() {
    let limits = ModuleLimits {
        max_instances: 4,
        min_instances: 1,
        idle_timeout: Duration::from_millis(300),
        scale_up_wait: Duration::from_millis(2),
        ..ModuleLimits::default()
    };
    let module = load(SLEEPER, limits).await;
    // Calls long enough to overlap however slowly they start.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let module = module.clone();
            tokio::spawn(async move { sleep(&module, 2000).await })
        })
        .collect();
    let busy = wait_for_pool(&module, "four instances busy at once", |s| {
        s.live == 4 && s.idle == 0
    })
    .await;
    assert!(busy.scale_ups >= 1, "{busy:?}");
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), [NumValue::I32(0)]);
    }
    // All four are back, idle (or already reaped if the calls ended far
    // apart on a slow machine).
    let back = module.pool_stats();
    assert_eq!(back.idle, back.live, "{back:?}");
    assert_eq!(back.idle + back.reaped as usize, 4, "{back:?}");
    // Idle past the timeout: back down to min_instances.
    let quiet = wait_for_pool(&module, "idle instances reaped", |s| s.live == 1).await;
    assert_eq!(
        (quiet.live, quiet.idle, quiet.reaped),
        (1, 1, 3),
        "{quiet:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn min_instances_are_kept_warm_and_refilled() {
    let limits = ModuleLimits {
        min_instances: 3,
        max_instances: 4,
        idle_timeout: Duration::from_millis(200),
        deadline: Duration::from_millis(100),
        ..ModuleLimits::default()
    };
    let module = load(SLEEPER, limits).await;
    assert_eq!(
        module.pool_stats().live,
        3,
        "min_instances are created at load"
    );
    // A timeout discards its instance; the keeper refills the pool.
    assert!(matches!(
        sleep(&module, 1000).await,
        Err(InvokeError::Timeout(_))
    ));
    assert_eq!(module.pool_stats().discarded, 1);
    wait_for_pool(&module, "the pool refilled to min_instances", |s| {
        s.live == 3 && s.idle == 3
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_refuses_and_a_slow_one_times_out() {
    // The holder outlasts the queued call's timeout, which leaves a second
    // for the refused call to arrive while the queue is full.
    let limits = ModuleLimits {
        max_instances: 1,
        max_queue: 1,
        queue_timeout: Duration::from_millis(1000),
        ..ModuleLimits::default()
    };
    let module = load(SLEEPER, limits).await;
    let holder = {
        let module = module.clone();
        tokio::spawn(async move { sleep(&module, 3000).await })
    };
    wait_for_pool(&module, "the only instance busy", |s| {
        s.live == 1 && s.idle == 0
    })
    .await;
    let queued = {
        let module = module.clone();
        tokio::spawn(async move { sleep(&module, 1).await })
    };
    wait_for_pool(&module, "one call queued", |s| s.waiting == 1).await;
    assert!(matches!(
        sleep(&module, 1).await,
        Err(InvokeError::QueueFull(1))
    ));
    assert!(matches!(
        queued.await.unwrap(),
        Err(InvokeError::QueueTimeout(_))
    ));
    assert!(holder.await.unwrap().is_ok());
}
