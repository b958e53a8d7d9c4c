//! Start-up as an edge box sees it: the listeners answer at once while
//! modules load in the background, a module stuck in its initialisation is
//! refused within the init deadline without holding anything else back, the
//! engine fits the address space it is given, idle instances go away, and
//! an idle gateway leaves the cores alone.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{
    Gateway, Http, Launch, modules_with, version_module, version_module_with, write_wat,
};

/// Polls `check` every 20 ms until it returns `Some`, for up to `secs`.
async fn eventually<T, F: Future<Output = Option<T>>>(
    gw: &Gateway,
    secs: u64,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {secs} s; logs:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The version fixture whose initialisation sleeps `init_ms`.
fn slow_module(version: &str, init_ms: u64) -> std::path::PathBuf {
    version_module_with(version, &[("initDelayMs", &init_ms.to_string())])
}

#[tokio::test(flavor = "multi_thread")]
async fn listeners_answer_while_modules_compile_and_load() {
    // A cold cache: both Go modules compile (seconds), and `slow` also
    // sleeps 1.5 s in its initialisation.
    let modules = modules_with(&["hello"]);
    std::fs::copy(
        slow_module("slow-start", 1500),
        modules.path().join("slow.wasm"),
    )
    .unwrap();
    let cold_cache = tempfile::tempdir().unwrap();
    let config = "[server]\nloading_wait_ms = 100\n";
    let started = Instant::now();
    let gw = Gateway::launch(Launch {
        cache: cold_cache.path(),
        ready: false,
        ..Launch::new(modules.path(), Some(config))
    });
    let http = Http::new();

    // Everything below happens while the modules are still loading.
    let health = http.get(&gw.url("/healthz")).await;
    assert_eq!(health.status, 200, "{}", health.text());
    let ready = http.get(&gw.url("/readyz")).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    let loading = ready.json()["loading"].clone();
    assert!(
        loading.as_array().unwrap().contains(&Value::from("slow")),
        "{}",
        ready.text()
    );
    let listed = http.get(&gw.admin_url("/admin/modules")).await.json();
    assert!(
        listed["loading"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["name"] == "slow"),
        "{listed}"
    );
    let unknown = http.get(&gw.url("/nobody-configured-this")).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert_eq!(unknown.error_kind(), "not_found");
    let waiting = http.get(&gw.url("/slow")).await;
    assert_eq!(waiting.status, 503, "{}", waiting.text());
    assert_eq!(waiting.error_kind(), "loading");
    assert_eq!(waiting.header("retry-after"), Some("1"));
    assert_eq!(waiting.json()["module"], "slow");
    let exec = http.post(&gw.url("/api/exec/slow/anything"), "").await;
    assert_eq!(exec.error_kind(), "loading", "{}", exec.text());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the checks above took {:?}: they raced the module load",
        started.elapsed()
    );

    // Then each module serves once it is ready, and the gateway is ready.
    eventually(&gw, 120, "/slow serving", || async {
        let reply = http.get(&gw.url("/slow")).await;
        (reply.status == 200).then_some(())
    })
    .await;
    // Compiles take turns: hello may still be compiling.
    eventually(&gw, 120, "/hello serving", || async {
        let reply = http.get(&gw.url("/hello?name=edge")).await;
        (reply.status == 200).then(|| assert_eq!(reply.text(), "Hello, edge"))
    })
    .await;
    eventually(&gw, 30, "/readyz 200", || async {
        (http.get(&gw.url("/readyz")).await.status == 200).then_some(())
    })
    .await;
    assert!(
        gw.logs().contains("loading modules in the background"),
        "{}",
        gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_waits_for_a_module_that_is_nearly_ready() {
    // The default loading wait (5 s) covers a module that initialises in
    // 1 s: the first request is answered, not refused.
    let modules = tempfile::tempdir().unwrap();
    std::fs::copy(
        slow_module("slow-1s", 1000),
        modules.path().join("slow.wasm"),
    )
    .unwrap();
    let gw = Gateway::launch(Launch {
        ready: false,
        ..Launch::new(modules.path(), None)
    });
    let http = Http::new();
    let asked = Instant::now();
    let reply = http.get(&gw.url("/slow")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-version"), Some("slow-1s"));
    assert!(
        asked.elapsed() >= Duration::from_millis(500),
        "answered in {:?}: the module was not loading yet, so the test proves nothing",
        asked.elapsed()
    );
}

/// Sends a PUT of `body` to the admin listener, for the caller to close
/// without reading the answer.
fn upload(admin: std::net::SocketAddr, name: &str, body: &[u8]) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    write!(
        stream,
        "PUT /admin/modules/{name} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    stream.flush().unwrap();
    stream
}

fn failure<'a>(ready: &'a Value, module: &str) -> Option<&'a str> {
    ready["failed"][module].as_str()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_stuck_in_initialisation_holds_nothing_back() {
    let stuck = slow_module("stuck-start", 3_600_000);
    let modules = modules_with(&["hello"]);
    std::fs::copy(&stuck, modules.path().join("stuck.wasm")).unwrap();
    let config = "[runtime]\ninit_deadline_ms = 1500\n";
    let started = Instant::now();
    let gw = Gateway::launch(Launch {
        ready: false,
        ..Launch::new(modules.path(), Some(config))
    });
    let http = Http::new();

    // At start: hello serves while stuck is still initialising.
    eventually(&gw, 30, "/hello serving", || async {
        (http.get(&gw.url("/hello")).await.status == 200).then_some(())
    })
    .await;
    let ready = http.get(&gw.url("/readyz")).await;
    if started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(ready.status, 503, "{}", ready.text());
        assert_eq!(ready.json()["loading"], serde_json::json!(["stuck"]));
    }
    let ready = eventually(&gw, 60, "/readyz 200", || async {
        let reply = http.get(&gw.admin_url("/readyz")).await;
        (reply.status == 200).then(|| reply.json())
    })
    .await;
    let message = failure(&ready, "stuck").unwrap_or_else(|| panic!("{ready}"));
    assert!(message.contains("init deadline"), "{message}");
    assert_eq!(http.get(&gw.url("/stuck")).await.error_kind(), "not_found");

    // Through the watcher: a stuck module dropped in, then a good one; the
    // good one serves and the stuck one is refused.
    std::fs::copy(
        slow_module("stuck-watched", 3_600_000),
        modules.path().join("stuck2.wasm"),
    )
    .unwrap();
    std::fs::copy(version_module("A"), modules.path().join("after.wasm")).unwrap();
    eventually(&gw, 60, "/after serving", || async {
        let reply = http.get(&gw.url("/after")).await;
        (reply.header("x-version") == Some("A")).then_some(())
    })
    .await;
    let ready = eventually(&gw, 60, "stuck2 refused", || async {
        let ready = http.get(&gw.admin_url("/readyz")).await.json();
        failure(&ready, "stuck2").is_some().then_some(ready)
    })
    .await;
    assert!(
        failure(&ready, "stuck2").unwrap().contains("init deadline"),
        "{ready}"
    );

    // Through an upload whose client hangs up: the previous file is put
    // back and keeps serving.
    let hello_path = modules.path().join("hello.wasm");
    let original = std::fs::read(&hello_path).unwrap();
    let client = upload(gw.admin.unwrap(), "hello", &std::fs::read(&stuck).unwrap());
    // The client gives up while the module initialises.
    eventually(&gw, 60, "the upload installed", || async {
        gw.logs()
            .contains("module uploaded through the admin API")
            .then_some(())
    })
    .await;
    drop(client);
    // The refused file lands first, then the original comes back.
    eventually(&gw, 60, "the refused upload restored", || async {
        (gw.logs()
            .contains("upload refused; restoring the previous files")
            && std::fs::read(&hello_path).is_ok_and(|bytes| bytes == original))
        .then_some(())
    })
    .await;
    assert_eq!(
        http.get(&gw.url("/hello?name=box")).await.text(),
        "Hello, box"
    );
    // And the admin API still takes changes: nothing is left hanging.
    let reload = http
        .post(&gw.admin_url("/admin/modules/hello/reload"), "")
        .await;
    assert_eq!(reload.status, 200, "{}", reload.text());
}

/// Checks that `hello` and the `add` export of a gateway serving both
/// answer as on any other engine, and returns its `/admin/config`
/// memory plan.
async fn hello_and_add_serve(gw: &Gateway) -> serde_json::Value {
    let http = Http::new();
    assert_eq!(
        http.get(&gw.url("/hello?name=edge")).await.text(),
        "Hello, edge"
    );
    let sum = http.post(&gw.url("/api/exec/add/add"), "[2.5, 3.7]").await;
    assert_eq!(sum.status, 200, "{}", sum.text());
    assert_eq!(sum.json(), serde_json::json!(6.2));
    let config = http.get(&gw.admin_url("/admin/config")).await.json();
    config["runtime"]["memory_plan"].clone()
}

/// Starts the gateway with hello and add under `ulimit -v` and checks
/// that it serves and reports `strategy`.
async fn serves_within(limit: u64, strategy: &str) {
    let modules = modules_with(&["hello", "add"]);
    let gw = Gateway::launch(Launch {
        ulimit_v: Some(limit),
        ..Launch::new(modules.path(), None)
    });
    let plan = hello_and_add_serve(&gw).await;
    assert_eq!(plan["strategy"], strategy, "{plan}");
    assert!(
        gw.logs().contains("memory layout:"),
        "the layout is not logged at start: {}",
        gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_in_a_39_bit_address_space() {
    serves_within(512 << 30, "bounded").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_in_a_32_bit_sized_address_space() {
    serves_within(3 << 30, "on-demand").await;
}

/// What armv7 runs on (the Pulley interpreter), forced on this machine:
/// the same Go modules serve the same answers, and the start log and
/// `/admin/config` say which code runs.
#[tokio::test(flavor = "multi_thread")]
async fn serves_on_the_pulley_interpreter_when_asked() {
    let modules = modules_with(&["hello", "add"]);
    let gw = Gateway::start(modules.path(), Some("[runtime]\ncompiler = \"pulley\"\n"));
    let plan = hello_and_add_serve(&gw).await;
    assert!(
        plan["summary"]
            .as_str()
            .unwrap()
            .contains("code: Pulley interpreter (pulley64)"),
        "{plan}"
    );
    assert_eq!(plan["bounds_checks"], true, "{plan}");
    assert!(
        gw.logs().contains("code: Pulley interpreter (pulley64)"),
        "the compiler is not logged at start: {}",
        gw.logs()
    );
}

/// Threads of `pid` named as the async runtime names its threads: its
/// workers, and its blocking pool's threads while they live.
fn runtime_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == "tokio-rt-worker")
        })
        .count()
}

/// Context switches (voluntary and not) of each of `pid`'s threads, by
/// thread id.
fn thread_switches(pid: u32) -> std::collections::HashMap<String, u64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| {
            let status = std::fs::read_to_string(task.path().join("status")).ok()?;
            let switches = status
                .lines()
                .filter(|line| line.contains("ctxt_switches:"))
                .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            Some((task.file_name().to_string_lossy().into_owned(), switches))
        })
        .collect()
}

/// An idle gateway leaves the cores and the disk alone. The epoch ticker (a
/// thread that wakes every 5 ms while a guest runs, to enforce deadlines)
/// sleeps once the gateway has been idle for 20 ms; the modules folder's
/// watcher wakes only for a file event; the WebSocket heartbeat sweep
/// sleeps while no connection is open, the KV store's expiry sweep while
/// no key expires (it committed, and synced, an empty transaction every
/// 5 s), and the dashboard's sampler reads the metrics every 10 s while
/// fewer than one event a second come. The process then switches about
/// once a second, where the ticker alone made 200 a second. The next
/// request wakes the ticker: a guest that computes for ever is still
/// stopped at its deadline, and the gateway goes back to sleep.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_gateway_sleeps_and_still_enforces_deadlines() {
    let modules = modules_with(&["hello", "add"]);
    write_wat(
        modules.path(),
        "spin",
        r#"(module (func (export "spin") (result i32) (loop (br 0)) (i32.const 0)))"#,
    );
    // A KV grant opens the embedded store, and its sweeper with it.
    let gw = Gateway::start(
        modules.path(),
        Some("[modules.spin]\ndeadline_ms = 300\n[modules.hello.grants]\nkv = true\n"),
    );
    hello_and_add_serve(&gw).await;
    let pid = gw.pid();
    let window = Duration::from_secs(5);
    let asleep = || async move {
        let before = thread_switches(pid);
        tokio::time::sleep(window).await;
        // Threads that ended meanwhile (the blocking pool's) count nothing;
        // new ones count from zero.
        let switches: u64 = thread_switches(pid)
            .iter()
            .map(|(tid, after)| after.saturating_sub(before.get(tid).copied().unwrap_or(0)))
            .sum();
        (switches < 8).then_some(())
    };
    eventually(
        &gw,
        60,
        "the idle gateway sleeping (under 8 switches in 5 s)",
        asleep,
    )
    .await;
    // Past the KV sweep's old period: nothing reaches the disk.
    let written = || {
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
        io.lines()
            .find_map(|line| line.strip_prefix("write_bytes:"))
            .and_then(|bytes| bytes.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no write_bytes in /proc/{pid}/io:\n{io}"))
    };
    let before = written();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        written() - before,
        0,
        "the idle gateway wrote to the disk; logs:\n{}",
        gw.logs()
    );
    let http = Http::new();
    let started = Instant::now();
    let reply = http.post(&gw.url("/api/exec/spin/spin"), "[]").await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(reply.error_kind(), "timeout", "{}", reply.text());
    assert!(started.elapsed() >= Duration::from_millis(300));
    hello_and_add_serve(&gw).await;
    eventually(&gw, 60, "the gateway sleeping again", asleep).await;
}

/// `runtime.worker_threads` sets how many threads run the gateway (3:
/// neither this machine's core count nor CI's), they serve as the default
/// does, the start log says how many the runtime has, and a count past the
/// bound is refused at start.
#[tokio::test(flavor = "multi_thread")]
async fn the_worker_thread_count_is_the_configs() {
    let modules = modules_with(&["hello", "add"]);
    let gw = Gateway::start(modules.path(), Some("[runtime]\nworker_threads = 3\n"));
    hello_and_add_serve(&gw).await;
    // The count the runtime itself reports (its metrics), logged at start.
    assert!(
        gw.logs().contains("async runtime: 3 worker threads"),
        "the thread count is not logged at start: {}",
        gw.logs()
    );
    let threads = runtime_threads(gw.pid());
    assert!(
        threads >= 3,
        "{threads} runtime threads; logs:\n{}",
        gw.logs()
    );
    let refused = crate::util::serve_refused(modules.path(), "[runtime]\nworker_threads = 5000\n");
    assert!(
        refused.contains("runtime.worker_threads: 5000 is more than 1024"),
        "{refused}"
    );
}

#[test]
fn a_layout_that_cannot_fit_fails_at_start_naming_the_keys() {
    let modules = tempfile::tempdir().unwrap();
    let config = modules.path().join("shanhai.toml");
    std::fs::write(&config, "[runtime]\nmemory_strategy = \"guarded\"\n").unwrap();
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -v {} && exec \"$0\" \"$@\"",
            (64u64 << 30) / 1024
        ))
        .arg(crate::util::shanhai_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--modules")
        .arg(modules.path())
        .arg("--no-cache")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in ["runtime.memory_strategy", "runtime.total_instances"] {
        assert!(stderr.contains(key), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_instances_are_dropped_and_the_next_request_is_served() {
    let modules = modules_with(&["hello"]);
    let gw = Gateway::start(modules.path(), Some("[defaults]\nidle_timeout_ms = 300\n"));
    let http = Http::new();
    let pool =
        || async { http.get(&gw.admin_url("/admin/modules/hello")).await.json()["pool"].clone() };
    assert_eq!(http.get(&gw.url("/hello")).await.status, 200);
    let idle = eventually(&gw, 30, "the idle instance reaped", || async {
        let pool = pool().await;
        (pool["live"] == 0).then_some(pool)
    })
    .await;
    assert!(idle["reaped"].as_u64().unwrap() >= 1, "{idle}");
    assert_eq!(idle["min_instances"], 0, "{idle}");
    assert_eq!(
        http.get(&gw.url("/hello?name=again")).await.text(),
        "Hello, again"
    );
    let after = pool().await;
    assert!(after["created"].as_u64().unwrap() >= 2, "{after}");
}

/// KiB of compiled module code resident in process `pid`, and KiB mapped:
/// the executable mappings of compile-cache entries, from smaps.
fn resident_code_kib(pid: u32) -> (u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let (mut resident, mut mapped) = (0, 0);
    let mut in_code = false;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            let perms = fields.next().unwrap_or_default();
            in_code = perms.contains('x') && line.ends_with(".cwasm");
        } else if in_code {
            let mut kib = || fields.next().unwrap().parse::<u64>().unwrap();
            match first {
                "Size:" => mapped += kib(),
                "Rss:" => resident += kib(),
                _ => {}
            }
        }
    }
    (resident, mapped)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dormant_modules_code_leaves_memory_and_comes_back_for_its_next_event() {
    let modules = modules_with(&["hello"]);
    let config = "[defaults]\nidle_timeout_ms = 2000\n";
    // A cache of its own: the kernel pages out only pages no other process
    // maps, and the other tests' gateways map the shared cache's entries.
    let cache = tempfile::tempdir().unwrap();
    let gw = Gateway::start_with(modules.path(), Some(config), cache.path());
    let http = Http::new();
    let pool =
        || async { http.get(&gw.admin_url("/admin/modules/hello")).await.json()["pool"].clone() };
    // Validated at load, then dormant: no instance, code paged out.
    let (_, mapped) = resident_code_kib(gw.pid());
    assert!(mapped > 1024, "no compiled code mapped: {mapped} KiB");
    eventually(&gw, 10, "the loaded module's code paged out", || async {
        let (resident, _) = resident_code_kib(gw.pid());
        (resident < mapped / 4).then_some(())
    })
    .await;
    assert_eq!(pool().await["live"], 0);

    // The next event reads the code back and is served.
    assert_eq!(
        http.get(&gw.url("/hello?name=again")).await.text(),
        "Hello, again"
    );
    let (serving, _) = resident_code_kib(gw.pid());
    assert!(
        serving > mapped / 2,
        "{serving} of {mapped} KiB resident while serving"
    );

    // Idle past idle_timeout_ms: the instance is reaped and the code goes.
    eventually(&gw, 30, "the idle module's code paged out", || async {
        let (resident, _) = resident_code_kib(gw.pid());
        (resident < mapped / 4).then_some(())
    })
    .await;
    let idle = pool().await;
    assert_eq!(idle["live"], 0, "{idle}");
    assert!(idle["reaped"].as_u64().unwrap() >= 1, "{idle}");

    // With release_idle_code off the code stays after the instance goes.
    let kept = Gateway::start_with(
        modules.path(),
        Some(&format!("{config}[runtime]\nrelease_idle_code = false\n")),
        cache.path(),
    );
    assert_eq!(http.get(&kept.url("/hello")).await.status, 200);
    eventually(&kept, 30, "the idle instance reaped", || async {
        let pool = http
            .get(&kept.admin_url("/admin/modules/hello"))
            .await
            .json()["pool"]
            .clone();
        (pool["live"] == 0 && pool["reaped"] == 1).then_some(())
    })
    .await;
    let (resident, mapped) = resident_code_kib(kept.pid());
    assert!(
        resident > mapped / 2,
        "release_idle_code = false, yet only {resident} of {mapped} KiB resident"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_moves_its_module_ahead_of_the_start_up_queue() {
    // Twenty copies of a Go module load before `zz` in name order, a few
    // at a time; a request for `zz` made as soon as the listener answers
    // must not wait for them.
    let modules = modules_with(&[]);
    for i in 0..20 {
        std::fs::copy(
            crate::util::examples().join("hello.wasm"),
            modules.path().join(format!("m{i:02}.wasm")),
        )
        .unwrap();
    }
    // json2k answers on any path, so also on its mount /zz.
    std::fs::copy(
        crate::util::examples().join("json2k.wasm"),
        modules.path().join("zz.wasm"),
    )
    .unwrap();
    // Once with every module, so that the cache holds both.
    drop(Gateway::start(modules.path(), None));

    let gw = Gateway::launch(Launch {
        ready: false,
        ..Launch::new(modules.path(), None)
    });
    let http = Http::new();
    let reply = http.get(&gw.url("/zz")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    gw.wait_ready();
    let logs = gw.logs();
    let loaded: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "module loaded")
        .map(|line| line["module"].clone())
        .collect();
    assert_eq!(loaded.len(), 21, "{logs}");
    let position = loaded
        .iter()
        .position(|module| module == "zz")
        .unwrap_or_else(|| panic!("zz never loaded:\n{logs}"));
    assert!(
        position < 10,
        "zz loaded {}th of 21 although a request waited for it:\n{logs}",
        position + 1
    );
}

/// The gateway's compile workers: its children running `compile-worker`.
fn compile_workers(gateway: u32) -> Vec<u32> {
    let mut workers = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // The parent's pid is the field after the parenthesised name.
        let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let fields = stat.rsplit_once(')')?.1.to_owned();
                fields.split_whitespace().nth(1)?.parse::<u32>().ok()
            });
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if parent == Some(gateway) && String::from_utf8_lossy(&cmdline).contains("compile-worker") {
            workers.push(pid);
        }
    }
    workers
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compile_worker_that_dies_fails_its_module_alone() {
    // A cold cache, so both modules compile, each in a worker of its own.
    let modules = modules_with(&["hello", "json2k"]);
    let cold_cache = tempfile::tempdir().unwrap();
    let gw = Gateway::launch(Launch {
        cache: cold_cache.path(),
        ready: false,
        ..Launch::new(modules.path(), None)
    });
    let http = Http::new();
    // What the kernel's OOM killer would do to a compile on a full box. The
    // worker raises its own score as the first thing it does, so one found
    // just after its exec still reads 0: wait for one that has done it.
    let worker = eventually(
        &gw,
        60,
        "a compile worker first in the OOM killer's line (oom_score_adj 500)",
        || async {
            compile_workers(gw.pid()).into_iter().find(|worker| {
                std::fs::read_to_string(format!("/proc/{worker}/oom_score_adj"))
                    .is_ok_and(|adj| adj.trim() == "500")
            })
        },
    )
    .await;
    // SAFETY: kill only sends a signal to the gateway's own child.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(worker as i32, libc::SIGKILL);
    }

    // That module alone fails, saying why; the other one serves.
    let ready = eventually(&gw, 120, "/readyz 200", || async {
        let reply = http.get(&gw.admin_url("/readyz")).await;
        (reply.status == 200).then(|| reply.json())
    })
    .await;
    let failed = ready["failed"].as_object().unwrap();
    assert_eq!(failed.len(), 1, "{ready}");
    let (name, message) = failed.iter().next().unwrap();
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("compile worker was killed by signal 9"),
        "{ready}"
    );
    let other = if name == "hello" { "json2k" } else { "hello" };
    assert_eq!(http.get(&gw.url(&format!("/{other}"))).await.status, 200);
    assert!(
        gw.logs().contains("\"in_worker\":true"),
        "compiled in the gateway's own process:\n{}",
        gw.logs()
    );

    // The same file, written again, compiles and serves; the killed
    // worker's half-written code is gone and never served.
    let path = modules.path().join(format!("{name}.wasm"));
    std::fs::write(&path, std::fs::read(&path).unwrap()).unwrap();
    eventually(&gw, 120, "the failed module serving", || async {
        (http.get(&gw.url(&format!("/{name}"))).await.status == 200).then_some(())
    })
    .await;
    let left: Vec<String> = std::fs::read_dir(cold_cache.path())
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !left.iter().any(|file| file.starts_with(".staging-")),
        "{left:?}"
    );
    assert_eq!(
        left.iter().filter(|file| file.ends_with(".cwasm")).count(),
        2,
        "{left:?}"
    );
    assert!(compile_workers(gw.pid()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn after_an_upgrade_replaces_the_executable_the_worker_is_still_this_gateway() {
    // A copy of the binary, so that it can be replaced as a package
    // upgrade does: a new file renamed over the old one.
    let install = tempfile::tempdir().unwrap();
    let binary = install.path().join("shanhai");
    std::fs::copy(crate::util::shanhai_bin(), &binary).unwrap();
    let modules = modules_with(&[]);
    let cold_cache = tempfile::tempdir().unwrap();
    let gw = Gateway::launch(Launch {
        cache: cold_cache.path(),
        binary: Some(&binary),
        ..Launch::new(modules.path(), None)
    });
    let upgrade = install.path().join("shanhai.new");
    std::fs::write(
        &upgrade,
        "#!/bin/sh\necho 'not the gateway that started' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &upgrade,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::rename(&upgrade, &binary).unwrap();

    // A module dropped in now compiles in a worker of the running binary.
    std::fs::copy(
        crate::util::examples().join("hello.wasm"),
        modules.path().join("hello.wasm"),
    )
    .unwrap();
    let http = Http::new();
    eventually(&gw, 120, "/hello serving", || async {
        let reply = http.get(&gw.url("/hello?name=upgraded")).await;
        (reply.status == 200).then(|| assert_eq!(reply.text(), "Hello, upgraded"))
    })
    .await;
    let logs = gw.logs();
    assert!(logs.contains("\"in_worker\":true"), "{logs}");
    assert!(!logs.contains("not the gateway that started"), "{logs}");
    assert!(!logs.contains("no compile worker"), "{logs}");
}
