//! In-process costs of the module runtime, measured with criterion:
//!
//! - `reused_instance/*`: one event on a warm pooled instance (Go reactor,
//!   Rust reactor, numeric export);
//! - `fresh_instance/cgi_echo`: one CGI run of a Go command, i.e. a fresh
//!   instance from the pooling allocator, Go runtime start-up and `_start`;
//! - `fresh_instance_scaling/keep{0,1m,4m,16m}/{1,2}threads`: CGI runs
//!   split across 1 or 2 concurrent tasks on a 2-worker runtime, for four
//!   values of `RuntimeConfig::memory_keep_resident`. Per-op time is total
//!   elapsed over runs, so perfect scaling halves it from 1 to 2 tasks;
//! - `fresh_instance_body64k/keep{0,1m,4m,16m}`: one CGI run echoing a
//!   64 KiB body, a guest that dirties more memory than the 1 MiB default.
//!
//! Before the scaling groups it prints the minor page faults per CGI run
//! for each setting, which is what `memory_keep_resident` saves.
//!
//! The guest modules are built by `scripts/build-examples.sh [DIR]` and
//! found in `$SHANHAI_BENCH_MODULES` (default `target/modules`); without
//! them the benchmarks are skipped. Run with
//! `cargo bench -p shanhai-runtime --bench runtime`; figures and their
//! conclusions are in docs/benchmarks.md.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{check_http, http_request, load};
use criterion::{BenchmarkId, Criterion, Throughput};
use shanhai_abi::EventKind;
use shanhai_runtime::{LoadedModule, NumValue, Runtime, RuntimeConfig};

mod common;

const MODULES: [&str; 4] = ["json2k", "hello-rs", "add", "cgi-echo"];

/// Concurrent tasks of the scaling group; also the runtime's worker count.
const MAX_TASKS: usize = 2;

fn main() {
    let Some(modules) = common::modules_dir(&MODULES) else {
        return;
    };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(MAX_TASKS)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    println!(
        "kernel {}, PAGEMAP_SCAN available: {}",
        kernel_release(),
        wasmtime::PoolingAllocationConfig::is_pagemap_scan_available()
    );
    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    reused_instance(&mut criterion, &tokio, &modules);
    fresh_instance(&mut criterion, &tokio, &modules);
    fresh_instance_scaling(&mut criterion, &tokio, &modules);
    criterion.final_summary();
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// A runtime with the production defaults except `memory_keep_resident`,
/// sharing one compile cache across runs so that only the first compiles.
fn new_runtime(memory_keep_resident: usize) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(common::cache_dir()),
        memory_keep_resident,
        ..RuntimeConfig::default()
    })
    .expect("building the module runtime")
}

fn reused_instance(c: &mut Criterion, tokio: &tokio::runtime::Runtime, modules: &Path) {
    let runtime = new_runtime(RuntimeConfig::default().memory_keep_resident);
    let json2k = load(tokio, &runtime, modules, "json2k");
    let hello_rs = load(tokio, &runtime, modules, "hello-rs");
    let add = load(tokio, &runtime, modules, "add");
    let request_id: Arc<str> = "bench".into();

    let mut group = c.benchmark_group("reused_instance");
    for (label, module, uri, min_body) in [
        ("json2k_http", &json2k, "/json2k", 2000),
        ("hello_rs_http", &hello_rs, "/hello-rs", 1),
    ] {
        let envelope = http_request("GET", uri, b"");
        check_http(tokio, module, &envelope, min_body);
        group.bench_function(label, |b| {
            b.to_async(tokio).iter(|| async {
                let output = module
                    .invoke_event(EventKind::Http, &envelope, request_id.clone())
                    .await
                    .unwrap();
                black_box(output)
            });
        });
    }

    let args = [NumValue::F64(2.5), NumValue::F64(3.7)];
    let sum = tokio
        .block_on(add.call_numeric("add", &args, "check".into()))
        .expect("calling add");
    assert_eq!(sum, [NumValue::F64(2.5 + 3.7)]);
    group.bench_function("add_numeric", |b| {
        b.to_async(tokio).iter(|| async {
            let sum = add
                .call_numeric("add", black_box(&args), request_id.clone())
                .await
                .unwrap();
            black_box(sum)
        });
    });
    group.finish();
}

/// A CGI request to cgi-echo: the environment the gateway would set for
/// `POST /cgi-echo/bench?a=1` (`GET` without a body) and the body as stdin.
struct CgiRequest {
    env: Vec<(String, String)>,
    body: Vec<u8>,
}

impl CgiRequest {
    fn new(body_len: usize) -> Self {
        let method = if body_len == 0 { "GET" } else { "POST" };
        let content_length = body_len.to_string();
        let env = [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("REQUEST_METHOD", method),
            ("SCRIPT_NAME", "/cgi-echo"),
            ("PATH_INFO", "/bench"),
            ("QUERY_STRING", "a=1"),
            ("REQUEST_URI", "/cgi-echo/bench?a=1"),
            ("REMOTE_ADDR", "127.0.0.1:1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SHANHAI_REQUEST_ID", "bench"),
            ("CONTENT_LENGTH", &content_length),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Self {
            env,
            body: vec![b'x'; body_len],
        }
    }

    /// One CGI run, its output checked only for success.
    async fn run(&self, module: &LoadedModule, request_id: Arc<str>) {
        let output = module
            .run_command(self.body.clone(), &self.env, request_id)
            .await
            .unwrap();
        black_box(output);
    }
}

fn fresh_instance(c: &mut Criterion, tokio: &tokio::runtime::Runtime, modules: &Path) {
    let runtime = new_runtime(RuntimeConfig::default().memory_keep_resident);
    let cgi_echo = load(tokio, &runtime, modules, "cgi-echo");
    let request = CgiRequest::new(0);
    let output = tokio
        .block_on(cgi_echo.run_command(Vec::new(), &request.env, "check".into()))
        .expect("running cgi-echo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(r#""path_info":"/bench""#), "{stdout}");

    let request_id: Arc<str> = "bench".into();
    let mut group = c.benchmark_group("fresh_instance");
    group.bench_function("cgi_echo", |b| {
        b.to_async(tokio)
            .iter(|| request.run(&cgi_echo, request_id.clone()));
    });
    group.finish();
}

/// The `memory_keep_resident` settings compared, by benchmark name.
const KEEP_RESIDENT: [(&str, usize); 4] = [
    ("keep0", 0),
    ("keep1m", 1 << 20),
    ("keep4m", 4 << 20),
    ("keep16m", 16 << 20),
];

fn fresh_instance_scaling(c: &mut Criterion, tokio: &tokio::runtime::Runtime, modules: &Path) {
    let empty = Arc::new(CgiRequest::new(0));
    let body64k = Arc::new(CgiRequest::new(64 << 10));
    // One runtime per setting (it is engine-wide), all kept alive so that
    // each group below can run through them in turn.
    let setups: Vec<(&str, Runtime, Arc<LoadedModule>)> = KEEP_RESIDENT
        .into_iter()
        .map(|(label, keep_resident)| {
            let runtime = new_runtime(keep_resident);
            let cgi_echo = load(tokio, &runtime, modules, "cgi-echo");
            (label, runtime, cgi_echo)
        })
        .collect();
    for (label, _, cgi_echo) in &setups {
        print_page_faults(tokio, label, cgi_echo, &[&empty, &body64k]);
    }

    let mut group = c.benchmark_group("fresh_instance_scaling");
    // One element per CGI run, so criterion also reports runs per second.
    group.throughput(Throughput::Elements(1));
    for (label, _, cgi_echo) in &setups {
        for tasks in 1..=MAX_TASKS {
            let id = BenchmarkId::new(*label, format!("{tasks}threads"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| tokio.block_on(run_split(cgi_echo, &empty, iters, tasks)));
            });
        }
    }
    group.finish();

    // A guest that touches more memory: reading and echoing a 64 KiB body.
    let request_id: Arc<str> = "bench".into();
    let mut group = c.benchmark_group("fresh_instance_body64k");
    group.throughput(Throughput::Elements(1));
    for (label, _, cgi_echo) in &setups {
        group.bench_function(*label, |b| {
            b.to_async(tokio)
                .iter(|| body64k.run(cgi_echo, request_id.clone()));
        });
    }
    group.finish();
}

/// Prints the process's minor page faults per CGI run: with a non-zero
/// `memory_keep_resident` and `PAGEMAP_SCAN`, a reused pool slot whose
/// dirty pages fit in the setting is reset by `memset` and faults no more.
fn print_page_faults(
    tokio: &tokio::runtime::Runtime,
    label: &str,
    module: &LoadedModule,
    requests: &[&CgiRequest],
) {
    const RUNS: u64 = 50;
    let counts: Option<Vec<String>> = requests
        .iter()
        .map(|request| {
            let runs = |n| {
                tokio.block_on(async {
                    for _ in 0..n {
                        request.run(module, "faults".into()).await;
                    }
                })
            };
            // Warm the slot first: the first run in a slot always faults.
            runs(5);
            let before = minor_faults()?;
            runs(RUNS);
            let per_run = (minor_faults()? - before) / RUNS;
            Some(format!("{per_run} ({} B body)", request.body.len()))
        })
        .collect();
    if let Some(counts) = counts {
        println!(
            "cgi-echo, {label}: minor page faults per run: {}",
            counts.join(", ")
        );
    }
}

/// The process's minor page faults so far (Linux), from `/proc/self/stat`.
fn minor_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state, ppid, pgrp,
    // session, tty_nr, tpgid, flags, minflt.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(7)?
        .parse()
        .ok()
}

/// Runs `iters` CGI runs split across `tasks` spawned tasks and returns the
/// wall time until the last one finished.
async fn run_split(
    module: &Arc<LoadedModule>,
    request: &Arc<CgiRequest>,
    iters: u64,
    tasks: usize,
) -> Duration {
    let tasks = tasks as u64;
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let module = module.clone();
            let request = request.clone();
            // The first `iters % tasks` tasks take one extra run.
            let runs = iters / tasks + u64::from(task < iters % tasks);
            tokio::spawn(async move {
                let request_id: Arc<str> = "bench".into();
                for _ in 0..runs {
                    request.run(&module, request_id.clone()).await;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("benchmark task panicked");
    }
    started.elapsed()
}
