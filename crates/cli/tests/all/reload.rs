//! Hot plug and graceful drain, against a real gateway watching a real
//! folder.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::util::{
    Gateway, Http, version_module, wait_for_busy_instance, wait_for_version, write_wat,
};

/// Replaces `dest` atomically, as a deploy tool would (write, then rename).
fn install(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("tmp");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

fn body_of(version: &str) -> String {
    format!("{version};").repeat(256)
}

#[tokio::test(flavor = "multi_thread")]
async fn swapping_under_load_loses_nothing_and_never_mixes() {
    let builds = [version_module("A"), version_module("B")];
    let modules = tempfile::tempdir().unwrap();
    let target = modules.path().join("version.wasm");
    install(&builds[0], &target);
    let gw = Gateway::start(modules.path(), None);
    let http = Http::new();

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (http, url, stop, served) = (
                http.clone(),
                gw.url("/version"),
                stop.clone(),
                served.clone(),
            );
            tokio::spawn(async move {
                let (a, b) = (body_of("A"), body_of("B"));
                // Bounded: stops when told, or after a generous cap.
                for _ in 0..200_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let reply = http.get(&url).await;
                    assert_eq!(
                        reply.status,
                        200,
                        "a request failed during a swap: {}",
                        reply.text()
                    );
                    let text = reply.text();
                    assert!(
                        text == a || text == b,
                        "mixed or corrupt response: {text:.80}"
                    );
                    assert_eq!(
                        reply.header("x-version").map(|v| body_of(v) == text),
                        Some(true)
                    );
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    for swap in 0..50 {
        let next = ["B", "A"][swap % 2];
        install(&builds[(swap + 1) % 2], &target);
        wait_for_version(&http, &gw, next).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert!(
        served.load(Ordering::Relaxed) > 200,
        "too little load to mean anything"
    );
    let logs = gw.logs();
    assert_eq!(logs.matches("module swapped").count(), 50, "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_files_never_replace_a_working_version() {
    let good = version_module("A");
    let modules = tempfile::tempdir().unwrap();
    let target = modules.path().join("version.wasm");
    install(&good, &target);
    let gw = Gateway::start(modules.path(), None);
    let http = Http::new();
    wait_for_version(&http, &gw, "A").await;

    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(
        scratch.path().join("corrupt.wasm"),
        b"\0asm\x01\0\0\0garbage",
    )
    .unwrap();
    write_wat(
        scratch.path(),
        "import",
        r#"(module (import "env" "nope" (func)))"#,
    );
    write_wat(
        scratch.path(),
        "inittrap",
        r#"(module (func (export "_initialize") unreachable))"#,
    );
    for (file, reason) in [
        ("corrupt", "invalid module"),
        ("import", "env::nope"),
        ("inittrap", "_initialize"),
    ] {
        install(&scratch.path().join(format!("{file}.wasm")), &target);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(&gw.admin_url("/readyz")).await.json();
            if ready["failed"]["version"]
                .as_str()
                .is_some_and(|r| r.contains(reason))
            {
                break;
            }
            assert!(Instant::now() < deadline, "{file} was not refused: {ready}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let reply = http.get(&gw.url("/version")).await;
        assert_eq!(
            reply.header("x-version"),
            Some("A"),
            "{file} replaced the working version"
        );
    }
    assert!(gw.logs().contains("still_serving"));

    // A good file clears the failure; a new file is mounted; a removed one
    // is unmounted.
    install(&version_module("B"), &target);
    wait_for_version(&http, &gw, "B").await;
    assert!(
        http.get(&gw.admin_url("/readyz")).await.json()["failed"]
            .get("version")
            .is_none()
    );
    install(&good, &modules.path().join("other.wasm"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(&gw.url("/other")).await.status != 200 {
        assert!(Instant::now() < deadline, "new module never mounted");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    std::fs::remove_file(modules.path().join("other.wasm")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(&gw.url("/other")).await.status != 404 {
        assert!(Instant::now() < deadline, "removed module still mounted");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slowly_copied_file_is_loaded_whole() {
    let modules = tempfile::tempdir().unwrap();
    let target = modules.path().join("version.wasm");
    install(&version_module("A"), &target);
    let gw = Gateway::start(modules.path(), None);
    let http = Http::new();
    wait_for_version(&http, &gw, "A").await;

    // Write B in place, in slices, with pauses shorter than the settle time:
    // what a slow `cp` over a network looks like.
    let bytes = std::fs::read(version_module("B")).unwrap();
    let mut file = std::fs::File::create(&target).unwrap();
    for chunk in bytes.chunks(bytes.len() / 8 + 1) {
        std::io::Write::write_all(&mut file, chunk).unwrap();
        std::io::Write::flush(&mut file).unwrap();
        // Meanwhile the old version keeps answering.
        let reply = http.get(&gw.url("/version")).await;
        assert_eq!(reply.header("x-version"), Some("A"));
        // The pause is the scenario (a copy that stalls), not a wait for
        // the gateway: nothing is expected to happen during it.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(file);
    wait_for_version(&http, &gw, "B").await;
    assert!(
        !gw.logs().contains("module refused"),
        "a half-written file was loaded:\n{}",
        gw.logs()
    );
}

/// Sleeps `ms` milliseconds in a WASI call, then returns 0.
const SLEEPER: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "sleep") (param $ms i64) (result i32)
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.mul (local.get $ms) (i64.const 1000000)))
    (call $poll (i32.const 0) (i32.const 128) (i32.const 1) (i32.const 200))))"#;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_requests_in_flight() {
    let modules = tempfile::tempdir().unwrap();
    write_wat(modules.path(), "sleeper", SLEEPER);
    let mut gw = Gateway::start(modules.path(), None);
    let http = Http::new();
    let url = gw.url("/api/exec/sleeper/sleep");
    let slow = {
        let http = http.clone();
        tokio::spawn(async move { http.post(&url, "[1500]").await })
    };
    wait_for_busy_instance(&http, &gw, "sleeper").await;
    gw.terminate();
    // New connections are refused once the listener is closed.
    let addr = gw.addr;
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting connections after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The request that was running completes normally.
    let reply = slow.await.unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "0"));
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("gateway did not exit after draining");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        gw.logs().contains("all connections drained"),
        "{}",
        gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compile_progress_is_visible_in_the_admin_api() {
    // A fresh cache: the Go module really compiles (seconds on a small box).
    let cache = tempfile::tempdir().unwrap();
    let modules = tempfile::tempdir().unwrap();
    let gw = Gateway::start_with(modules.path(), None, cache.path());
    let http = Http::new();
    install(&version_module("P"), &modules.path().join("version.wasm"));

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen_loading = None;
    loop {
        let list = http.get(&gw.admin_url("/admin/modules")).await.json();
        if let Some(entry) = list["loading"].as_array().and_then(|l| l.first()) {
            seen_loading = Some(entry.clone());
        }
        if list["modules"].as_array().is_some_and(|m| !m.is_empty()) {
            assert!(list["loading"].as_array().unwrap().is_empty(), "{list}");
            break;
        }
        assert!(Instant::now() < deadline, "never loaded: {}", gw.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let entry = seen_loading.expect("the compile was never listed as loading");
    assert_eq!(entry["name"], "version", "{entry}");
    assert_eq!(entry["phase"], "compiling", "{entry}");
    assert_eq!(entry["canary"], false, "{entry}");
    assert!(entry["bytes"].as_u64().unwrap() > 1 << 20, "{entry}");
    let logs = gw.logs();
    assert!(logs.contains("compiling module"), "{logs}");
}
