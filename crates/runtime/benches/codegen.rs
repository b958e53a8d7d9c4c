//! What wasmtime's code generation settings are worth to a Go guest, in
//! process, without sockets: the json2k example's three handlers
//! (`encoding/json` out, a JSON body in, a short text) on a warm pooled
//! instance, compiled under each setting of [`CodegenSetting`] and in both
//! pooled memory layouts (guarded: an x86-64 server; bounded: what an
//! aarch64 box with a 39-bit address space gets).
//!
//! Every variant is its own engine with the module compiled for it. The
//! variants take turns every 20 calls, so a machine that speeds up or
//! slows down during the run moves them alike, and each variant is
//! compared with its layout's defaults round by round.
//! It prints a Markdown table: µs per call, the median of the rounds with
//! the lowest and highest round in brackets, and the median ratio to the
//! layout's defaults with the lowest and highest round's ratio.
//!
//! ```sh
//! bash scripts/build-examples.sh /tmp/bench-modules
//! SHANHAI_BENCH_MODULES=/tmp/bench-modules cargo bench --workspace --bench codegen
//! ```
//!
//! `CODEGEN_ROUNDS` (default 21) and `CODEGEN_CALLS` (calls per variant
//! and request in a round, default 1000) size the run. Figures and conclusions: docs/benchmarks.md,
//! "Go guests".

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{check_http, http_request, load};
use shanhai_abi::EventKind;
use shanhai_runtime::{CodegenSetting, LoadedModule, MemoryStrategy, Runtime, RuntimeConfig};

mod common;

/// Calls each variant makes before the next takes its turn.
const BATCH: usize = 20;

/// One engine configuration under test.
struct Variant {
    label: &'static str,
    strategy: MemoryStrategy,
    codegen: Vec<CodegenSetting>,
}

/// One request sent to every variant.
struct Workload {
    label: &'static str,
    envelope: Vec<u8>,
    min_body: usize,
}

fn main() {
    let Some(modules) = common::modules_dir(&["json2k"]) else {
        return;
    };
    let rounds = env_count("CODEGEN_ROUNDS", 21);
    let calls = env_count("CODEGEN_CALLS", 1000);
    // One thread: the calls are measured one after another, as a single
    // instance serves them.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let variants = variants();
    let workloads = [
        Workload {
            label: "GET /json2k (2 KB from encoding/json)",
            envelope: http_request("GET", "/json2k", b""),
            min_body: 2000,
        },
        Workload {
            label: "POST /json2k/readings (JSON body decoded)",
            envelope: http_request(
                "POST",
                "/json2k/readings",
                br#"{"device":"pump-7","readings":[20.5,19.5,21,23,22.5,20,19,21.5]}"#,
            ),
            min_body: 20,
        },
        Workload {
            label: "GET /json2k/text (\"ok\\n\")",
            envelope: http_request("GET", "/json2k/text", b""),
            min_body: 3,
        },
    ];

    let mut loaded = Vec::new();
    for variant in &variants {
        eprintln!("compiling json2k for: {}", variant.label);
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(common::cache_dir()),
            memory_strategy: variant.strategy,
            codegen: variant.codegen.clone(),
            // Each variant is an engine with its own pool: a few slots are
            // enough for one instance at a time.
            total_instances: 8,
            ..RuntimeConfig::default()
        })
        .expect("building the module runtime");
        let module = load(&tokio, &runtime, &modules, "json2k");
        for workload in &workloads {
            check_http(&tokio, &module, &workload.envelope, workload.min_body);
        }
        loaded.push((runtime, module));
    }

    // micros[workload][variant][round]
    let mut micros = vec![vec![Vec::with_capacity(rounds); variants.len()]; workloads.len()];
    let request_id: Arc<str> = "bench".into();
    let started = Instant::now();
    for round in 0..=rounds {
        for (w, workload) in workloads.iter().enumerate() {
            let mut spent = vec![Duration::ZERO; variants.len()];
            // Small batches in turn: the machine's speed drifts over
            // milliseconds here, and this way every variant sees the same
            // drift.
            for _ in 0..calls.div_ceil(BATCH) {
                for (v, (_, module)) in loaded.iter().enumerate() {
                    spent[v] +=
                        tokio.block_on(time_calls(module, &workload.envelope, &request_id, BATCH));
                }
            }
            // Round 0 warms every instance and is not counted.
            if round > 0 {
                let made = (calls.div_ceil(BATCH) * BATCH) as f64;
                for (v, spent) in spent.iter().enumerate() {
                    micros[w][v].push(spent.as_secs_f64() * 1e6 / made);
                }
            }
        }
    }

    println!(
        "{rounds} rounds of {calls} calls per variant and request, after one round of warm-up; {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("| request | layout and setting | µs per call | ÷ the layout's defaults (by round) |");
    println!("| --- | --- | ---: | ---: |");
    for (w, workload) in workloads.iter().enumerate() {
        for (v, variant) in variants.iter().enumerate() {
            let base = variants
                .iter()
                .position(|other| other.strategy == variant.strategy)
                .expect("every layout has a defaults variant first");
            let ratio = if base == v {
                "–".to_owned()
            } else {
                let ratios: Vec<f64> = micros[w][v]
                    .iter()
                    .zip(&micros[w][base])
                    .map(|(this, defaults)| this / defaults)
                    .collect();
                summary(&ratios, 2, "×")
            };
            println!(
                "| {} | {} | {} | {ratio} |",
                workload.label,
                variant.label,
                summary(&micros[w][v], 1, "")
            );
        }
    }
}

/// The variants, each layout's defaults first.
fn variants() -> Vec<Variant> {
    let variant = |label, strategy, codegen| Variant {
        label,
        strategy,
        codegen,
    };
    vec![
        variant("guarded: defaults", MemoryStrategy::Guarded, vec![]),
        variant(
            "guarded: optimize for size",
            MemoryStrategy::Guarded,
            vec![CodegenSetting::OptimizeForSize],
        ),
        variant(
            "guarded: no table Spectre mitigation",
            MemoryStrategy::Guarded,
            vec![CodegenSetting::NoTableSpectreMitigation],
        ),
        variant("bounded: defaults", MemoryStrategy::Bounded, vec![]),
        variant(
            "bounded: fixed memory base",
            MemoryStrategy::Bounded,
            vec![CodegenSetting::FixedMemoryBase],
        ),
        variant(
            "bounded: no heap Spectre mitigation",
            MemoryStrategy::Bounded,
            vec![CodegenSetting::NoHeapSpectreMitigation],
        ),
    ]
}

/// The time `calls` calls of one request take.
async fn time_calls(
    module: &LoadedModule,
    envelope: &[u8],
    request_id: &Arc<str>,
    calls: usize,
) -> Duration {
    let started = Instant::now();
    for _ in 0..calls {
        let output = module
            .invoke_event(EventKind::Http, envelope, request_id.clone())
            .await
            .expect("the request is answered");
        std::hint::black_box(output);
    }
    started.elapsed()
}

/// `median (lowest–highest)` with `decimals` digits and `unit` after each.
fn summary(values: &[f64], decimals: usize, unit: &str) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    format!(
        "{median:.decimals$}{unit} ({:.decimals$}–{:.decimals$})",
        sorted[0],
        sorted[sorted.len() - 1]
    )
}

fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?}: not a count")),
        Err(_) => default,
    }
}
