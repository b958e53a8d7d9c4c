//! Hostile and broken modules, written in WAT: each gets the right error
//! and status while well-behaved requests keep being served correctly at
//! the same time, and the process never crashes.

use crate::util::{Gateway, Http, modules_with, wait_for_busy_instance, write_wat};

const SPIN: &str = r#"(module
  (func (export "spin") (result i32) (loop (br 0)) (i32.const 0))
  (func (export "ok") (result i32) (i32.const 7)))"#;

const GROW: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "grow") (result i32)
    (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    (i32.const 0)))"#;

/// Sleeps 10 s inside a WASI call, where epoch interruption cannot reach.
const SLEEP: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "sleep") (result i32)
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 10000000000))
    (call $poll (i32.const 0) (i32.const 128) (i32.const 1) (i32.const 200))))"#;

const BOOM: &str = r#"(module (func (export "boom") (result i32) unreachable))"#;

const RECURSE: &str = r#"(module
  (func $r (export "recurse") (param i64) (result i64)
    (call $r (i64.add (local.get 0) (i64.const 1)))))"#;

/// Speaks the Shanhai ABI but writes 64 KiB of output again and again.
const BIG: &str = r#"(module
  (import "shanhai" "output_write" (func $out (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "shanhai_abi_version") (result i32) (i32.const 1))
  (func (export "shanhai_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "shanhai_event") (param i32 i32 i32) (result i32)
    (loop (br_if 0 (i32.eqz (call $out (i32.const 0) (i32.const 65536)))))
    (i32.const 0)))"#;

/// Speaks the ABI but answers an HTTP event with bytes that are no
/// HttpResponse envelope.
const BAD_OUTPUT: &str = r#"(module
  (import "shanhai" "output_write" (func $out (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\07")
  (func (export "shanhai_abi_version") (result i32) (i32.const 1))
  (func (export "shanhai_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "shanhai_event") (param i32 i32 i32) (result i32)
    (drop (call $out (i32.const 0) (i32.const 1)))
    (i32.const 0)))"#;

/// Hands the host a pointer far outside its memory.
const BAD_ALLOC: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "shanhai_abi_version") (result i32) (i32.const 1))
  (func (export "shanhai_alloc") (param i32) (result i32) (i32.const 0x7ffffff0))
  (func (export "shanhai_event") (param i32 i32 i32) (result i32) (i32.const 0)))"#;

const MISSING_IMPORT: &str = r#"(module
  (import "env" "secret_sauce" (func (result i32)))
  (func (export "f") (result i32) (i32.const 1)))"#;

const UNKNOWN_HOST_FN: &str = r#"(module
  (import "shanhai" "launch_missiles" (func))
  (func (export "f") (result i32) (i32.const 1)))"#;

const INIT_TRAPS: &str = r#"(module
  (func (export "_initialize") unreachable)
  (func (export "f") (result i32) (i32.const 1)))"#;

const WRONG_ABI: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "shanhai_abi_version") (result i32) (i32.const 99))
  (func (export "shanhai_alloc") (param i32) (result i32) (i32.const 0))
  (func (export "shanhai_event") (param i32 i32 i32) (result i32) (i32.const 0)))"#;

const CONFIG: &str = r#"
[defaults]
deadline_ms = 300

[modules.grow]
max_memory_mb = 16

[modules.big]
max_response_bytes = 100000

[modules.slow]
file = "spin.wasm"
deadline_ms = 1500
max_instances = 1
max_queue = 0

[modules.hello]
deadline_ms = 5000
"#;

fn hostile_gateway() -> (tempfile::TempDir, Gateway) {
    let modules = modules_with(&["hello"]);
    let dir = modules.path();
    write_wat(dir, "spin", SPIN);
    write_wat(dir, "grow", GROW);
    write_wat(dir, "boom", BOOM);
    write_wat(dir, "sleep", SLEEP);
    write_wat(dir, "recurse", RECURSE);
    write_wat(dir, "big", BIG);
    write_wat(dir, "badout", BAD_OUTPUT);
    write_wat(dir, "badalloc", BAD_ALLOC);
    write_wat(dir, "needs", MISSING_IMPORT);
    write_wat(dir, "launch", UNKNOWN_HOST_FN);
    write_wat(dir, "initfail", INIT_TRAPS);
    write_wat(dir, "future", WRONG_ABI);
    std::fs::write(
        dir.join("garbage.wasm"),
        b"\0asm\x01\0\0\0this is not a module at all",
    )
    .unwrap();
    let gw = Gateway::start(dir, Some(CONFIG));
    (modules, gw)
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_modules_fail_alone() {
    let (_modules, mut gw) = hostile_gateway();
    let http = Http::new();

    // Well-behaved traffic runs throughout and must always be right.
    let good = {
        let http = http.clone();
        let url = gw.url("/hello?name=steady");
        tokio::spawn(async move {
            let mut served = 0;
            for _ in 0..150 {
                let reply = http.get(&url).await;
                assert_eq!(
                    (reply.status, reply.text().as_str()),
                    (200, "Hello, steady")
                );
                served += 1;
            }
            served
        })
    };

    let cases: &[(&str, &str, u16, &str)] = &[
        ("/api/exec/spin/spin", "[]", 504, "timeout"),
        ("/api/exec/sleep/sleep", "[]", 504, "timeout"),
        ("/api/exec/grow/grow", "[]", 500, "memory_limit"),
        ("/api/exec/boom/boom", "[]", 500, "trap"),
        ("/api/exec/recurse/recurse", "[0]", 500, "stack_overflow"),
        ("/big", "", 500, "response_too_large"),
        ("/badout", "", 500, "bad_output"),
        ("/badalloc", "", 500, "bad_output"),
    ];
    let hostile: Vec<_> = cases
        .iter()
        .flat_map(|case| std::iter::repeat_n(*case, 3))
        .map(|(path, body, status, kind)| {
            let http = http.clone();
            let url = gw.url(path);
            tokio::spawn(async move {
                let reply = http.post(&url, body).await;
                assert_eq!(reply.status, status, "{path}: {}", reply.text());
                assert_eq!(reply.error_kind(), kind, "{path}");
                assert!(
                    reply.json()["module"].is_string(),
                    "{path}: {}",
                    reply.text()
                );
            })
        })
        .collect();
    for task in hostile {
        task.await.unwrap();
    }
    assert_eq!(good.await.unwrap(), 150);

    // Discarded instances are replaced: the same module still serves.
    let reply = http.post(&gw.url("/api/exec/spin/ok"), "[]").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "7"));
    assert!(gw.is_alive(), "gateway crashed:\n{}", gw.logs());

    // Every failure was logged with its module and request id.
    let logs = gw.logs();
    assert!(
        logs.lines().any(|l| l.contains("\"kind\":\"timeout\"")
            && l.contains("\"module\":\"spin\"")
            && l.contains("request_id")),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_modules_are_refused_at_load_with_reasons() {
    let (_modules, gw) = hostile_gateway();
    let http = Http::new();
    let ready = http.get(&gw.admin_url("/readyz")).await;
    assert_eq!(ready.status, 200);
    let failed = &ready.json()["failed"];
    let reason = |name: &str| {
        failed[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} not refused: {failed}"))
            .to_owned()
    };
    assert!(
        reason("garbage").contains("invalid module"),
        "{}",
        reason("garbage")
    );
    assert!(
        reason("needs").contains("env::secret_sauce"),
        "{}",
        reason("needs")
    );
    assert!(
        reason("launch").contains("shanhai::launch_missiles"),
        "{}",
        reason("launch")
    );
    assert!(
        reason("initfail").contains("_initialize"),
        "{}",
        reason("initfail")
    );
    assert!(
        reason("future").contains("version 99"),
        "{}",
        reason("future")
    );
    // Refused modules are not routed; the rest serve.
    let reply = http.get(&gw.url("/garbage")).await;
    assert_eq!(reply.status, 404);
    let reply = http.get(&gw.url("/hello")).await;
    assert_eq!(reply.status, 200);
    assert!(gw.logs().contains("module refused"));
}

#[tokio::test(flavor = "multi_thread")]
async fn full_queue_answers_503_with_retry_after() {
    let (_modules, gw) = hostile_gateway();
    let http = Http::new();
    let busy = {
        let http = http.clone();
        let url = gw.url("/api/exec/slow/spin");
        tokio::spawn(async move { http.post(&url, "[]").await })
    };
    // Wait until the only instance is busy, then ask again.
    wait_for_busy_instance(&http, &gw, "slow").await;
    let reply = http.post(&gw.url("/api/exec/slow/ok"), "[]").await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.error_kind(), "queue_full");
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(busy.await.unwrap().status, 504);
    // Once the slot is free the module serves again.
    let reply = http.post(&gw.url("/api/exec/slow/ok"), "[]").await;
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn fuel_limits_cpu_when_enabled() {
    let modules = tempfile::tempdir().unwrap();
    write_wat(modules.path(), "spin", SPIN);
    let config = "[runtime]\nfuel = true\n[modules.spin]\nfuel = 1000000\ndeadline_ms = 10000\n";
    let gw = Gateway::start(modules.path(), Some(config));
    let http = Http::new();
    let reply = http.post(&gw.url("/api/exec/spin/spin"), "[]").await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(reply.error_kind(), "fuel_exhausted");
    // Fuel is per event: the next call starts with a full tank.
    let reply = http.post(&gw.url("/api/exec/spin/ok"), "[]").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "7"));
}

/// Calls the state host functions with pointers outside memory, garbage
/// envelopes and no grants: each answers a status, never a trap.
const STATE_ABUSE: &str = r#"(module
  (import "shanhai" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))
  (import "shanhai" "kv_incr" (func $kv_incr (param i32 i32 i32 i32 i64 i32) (result i32)))
  (import "shanhai" "kv_set" (func $kv_set (param i32 i32 i32 i32 i32 i32 i64) (result i32)))
  (import "shanhai" "sql_exec" (func $sql (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "shanhai" "http_fetch" (func $fetch (param i32 i32) (result i32)))
  (import "shanhai" "gpio_read" (func $gpio (param i32) (result i32)))
  (import "shanhai" "mqtt_publish" (func $pub (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "key")
  (data (i32.const 16) "\ff\ff\ff\ff\09")
  (data (i32.const 32) "SELECT 1")
  (data (i32.const 48) "a/b")
  (func (export "kv_oob") (result i32)
    (call $kv_get (i32.const 0x7ffffff0) (i32.const 64) (i32.const 0) (i32.const 3)))
  (func (export "kv_denied") (result i32)
    (call $kv_get (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 3)))
  (func (export "kv_bad_ttl") (result i32)
    (call $kv_set (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 0) (i32.const 3) (i64.const -5)))
  (func (export "incr_oob") (result i32)
    (call $kv_incr (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 3) (i64.const 1) (i32.const 0xfffffff0)))
  (func (export "sql_garbage") (result i32)
    (call $sql (i32.const 0) (i32.const 0) (i32.const 32) (i32.const 8) (i32.const 16) (i32.const 5)))
  (func (export "fetch_garbage") (result i32)
    (call $fetch (i32.const 16) (i32.const 5)))
  (func (export "gpio_negative") (result i32)
    (call $gpio (i32.const -1)))
  (func (export "publish_qos9") (result i32)
    (call $pub (i32.const 48) (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 9) (i32.const 0))))"#;

#[tokio::test(flavor = "multi_thread")]
async fn state_host_functions_answer_statuses_not_traps() {
    let modules = tempfile::tempdir().unwrap();
    write_wat(modules.path(), "abuse", STATE_ABUSE);
    let data = tempfile::tempdir().unwrap();
    let config = format!(
        "[state]\ndata_dir = {:?}\n[modules.abuse.grants]\nsqlite = true\n",
        data.path().display().to_string()
    );
    let gw = Gateway::start(modules.path(), Some(&config));
    let http = Http::new();
    for (function, status) in [
        ("kv_oob", -3),
        ("kv_denied", -2),
        ("kv_bad_ttl", -2),
        ("incr_oob", -3),
        ("sql_garbage", -3),
        ("fetch_garbage", -3),
        ("gpio_negative", -3),
        ("publish_qos9", -3),
    ] {
        let reply = http
            .post(&gw.url(&format!("/api/exec/abuse/{function}")), "[]")
            .await;
        assert_eq!(reply.status, 200, "{function}: {}", reply.text());
        assert_eq!(reply.json(), serde_json::json!(status), "{function}");
    }
}
