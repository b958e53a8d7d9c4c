//! The elastic instance pool, driven through the public runtime API with
//! real wasmtime instances of small WAT modules.

use std::sync::Arc;
use std::time::Duration;

use shanhai_runtime::{
    InvokeError, LoadedModule, ModuleLimits, ModuleSettings, NumValue, Runtime, RuntimeConfig,
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
        .load("m", wat.as_bytes().to_vec(), settings)
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
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let module = module.clone();
            tokio::spawn(async move { sleep(&module, 300).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let busy = module.pool_stats();
    assert_eq!((busy.live, busy.idle), (4, 0), "{busy:?}");
    assert!(busy.scale_ups >= 1, "{busy:?}");
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), [NumValue::I32(0)]);
    }
    assert_eq!(module.pool_stats().idle, 4);
    // Idle past the timeout: back down to min_instances.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let quiet = module.pool_stats();
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
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stats = module.pool_stats();
    assert_eq!((stats.live, stats.idle), (3, 3), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_refuses_and_a_slow_one_times_out() {
    let limits = ModuleLimits {
        max_instances: 1,
        max_queue: 1,
        queue_timeout: Duration::from_millis(100),
        ..ModuleLimits::default()
    };
    let module = load(SLEEPER, limits).await;
    let holder = {
        let module = module.clone();
        tokio::spawn(async move { sleep(&module, 500).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let queued = {
        let module = module.clone();
        tokio::spawn(async move { sleep(&module, 1).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(module.pool_stats().waiting, 1);
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
