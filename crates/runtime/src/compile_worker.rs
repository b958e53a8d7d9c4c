//! Compiling modules in a child process (`runtime.compile_in_child`).
//!
//! Cranelift holds about 110 MB while it compiles one Go module, and glibc
//! keeps some of what it freed: a gateway that compiled the 16 examples in
//! its own process peaked at 203 MB and stayed 25 MB larger than one that
//! found them cached. A worker process returns all of it to the system when
//! it exits, so the gateway's own footprint is the same after a cold start
//! as after a warm one. On a box that runs short of memory, the kernel's
//! OOM killer picks the worker (its `oom_score_adj` is raised) and one
//! module fails to compile, instead of the gateway dying; and the worker
//! runs at a lower CPU priority, so requests keep being served on two
//! cores while it compiles.
//!
//! The worker is this same executable: [`CompileWorker`] says how to start
//! it, and its entry point is [`run_compile_worker`]. It builds an engine
//! with the gateway's code-generation settings and memory layout, reads the
//! module from stdin, and writes wasmtime's serialized code to the staging
//! file it is given. The gateway authenticates that file into its compile
//! cache and loads it from there; wasmtime checks again that the code fits
//! the gateway's engine, so a worker built with other settings is refused,
//! never run.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use wasmtime::{Engine, InstanceAllocationStrategy};

use crate::engine::{
    CodegenSetting, Compiler, RuntimeConfig, engine_config, map_large_allocations,
};
use crate::memory_plan::{AddressSpace, MemoryPlan, MemoryStrategy};

/// How to start a compile worker: a program that calls
/// [`run_compile_worker`] with the arguments that follow `args`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileWorker {
    /// The executable (`shanhai` itself).
    pub program: PathBuf,
    /// Arguments that select the worker mode, before the settings.
    pub args: Vec<OsString>,
}

/// The worker's nice value: below serving, so compiles yield the CPU.
const WORKER_NICE: libc::c_int = 10;

/// How much more likely than the gateway the worker is to be picked by the
/// kernel's OOM killer (the range is -1000 to 1000).
const WORKER_OOM_SCORE_ADJ: &str = "500";

/// The exit status of a child whose exec failed after the spawn returned.
const EXEC_FAILED: i32 = 127;

/// The most of the worker's stderr kept for the error message.
const STDERR_LIMIT: usize = 16 << 10;

/// What a worker needs to compile code that `config`'s engine loads: the
/// settings that shape code generation, and the address space the memory
/// layout was planned for, so that both plan the same layout.
fn settings_args(config: &RuntimeConfig, plan: &MemoryPlan) -> Vec<String> {
    let codegen: Vec<&str> = config.codegen.iter().map(|s| s.as_str()).collect();
    vec![
        format!("compiler={}", plan.compiler.as_str()),
        format!("consume-fuel={}", config.consume_fuel),
        format!("memory-strategy={}", config.memory_strategy.as_str()),
        format!("total-instances={}", config.total_instances),
        format!("largest-memory-cap={}", config.largest_memory_cap),
        format!("va-bits={}", plan.space.va_bits),
        format!(
            "rlimit-as={}",
            plan.space
                .rlimit
                .map_or_else(|| "none".to_owned(), |limit| limit.to_string())
        ),
        format!("codegen={}", codegen.join(",")),
    ]
}

/// Parses [`settings_args`] plus `output=PATH` back.
fn parse_settings(args: &[String]) -> anyhow::Result<(RuntimeConfig, AddressSpace, PathBuf)> {
    let mut config = RuntimeConfig::default();
    let mut space = AddressSpace {
        rlimit: None,
        va_bits: 0,
    };
    let mut output = None;
    for arg in args {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("compile worker: expected KEY=VALUE, got {arg:?}"))?;
        let bad = || anyhow::anyhow!("compile worker: bad value for {key}: {value:?}");
        match key {
            "compiler" => config.compiler = Compiler::parse(value).ok_or_else(bad)?,
            "consume-fuel" => config.consume_fuel = value.parse().map_err(|_| bad())?,
            "memory-strategy" => {
                config.memory_strategy = MemoryStrategy::parse(value).ok_or_else(bad)?
            }
            "total-instances" => config.total_instances = value.parse().map_err(|_| bad())?,
            "largest-memory-cap" => config.largest_memory_cap = value.parse().map_err(|_| bad())?,
            "va-bits" => space.va_bits = value.parse().map_err(|_| bad())?,
            "rlimit-as" => {
                space.rlimit = match value {
                    "none" => None,
                    limit => Some(limit.parse().map_err(|_| bad())?),
                }
            }
            "codegen" => {
                config.codegen = value
                    .split(',')
                    .filter(|name| !name.is_empty())
                    .map(|name| CodegenSetting::parse(name).ok_or_else(bad))
                    .collect::<anyhow::Result<_>>()?
            }
            "output" => output = Some(PathBuf::from(value)),
            _ => anyhow::bail!("compile worker: unknown setting {key}"),
        }
    }
    anyhow::ensure!(space.va_bits > 0, "compile worker: va-bits missing");
    let output = output.ok_or_else(|| anyhow::anyhow!("compile worker: output missing"))?;
    Ok((config, space, output))
}

/// The worker's side: compiles the module on stdin with the settings in
/// `args` (as the gateway passes them) and writes the serialized code to
/// the `output=` file, which must not exist yet. Errors are the compile
/// error, for the gateway to report.
pub fn run_compile_worker(args: &[String]) -> anyhow::Result<()> {
    lower_priority();
    // As in the gateway: buffers of 1 MiB and more are unmapped when freed
    // (8 MB less at the peak of a Go module's compile).
    map_large_allocations();
    let (config, space, output) = parse_settings(args)?;
    let plan = MemoryPlan::new(config.plan_input(config.compiler), space)?;
    let mut wasm_config = engine_config(&config, &plan)?;
    // Compiling needs no instance slots; the allocator is not part of what
    // compiled code must match.
    wasm_config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    let engine = Engine::new(&wasm_config)?;
    let mut wasm = Vec::new();
    std::io::stdin().read_to_end(&mut wasm)?;
    let code = engine.precompile_module(&wasm)?;
    drop(wasm);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&output)?;
    file.write_all(&code)?;
    file.sync_all()?;
    Ok(())
}

/// Makes this process the one to go: lower CPU priority, first in line for
/// the OOM killer, and killed with its parent so a gateway that dies leaves
/// no compile running.
fn lower_priority() {
    // SAFETY: these calls only change this process's own attributes.
    #[allow(unsafe_code)]
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, WORKER_NICE);
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    // Best effort: the worker works the same without it.
    let _ = std::fs::write("/proc/self/oom_score_adj", WORKER_OOM_SCORE_ADJ);
}

/// Why a worker produced no code.
#[derive(Debug)]
pub(crate) enum WorkerError {
    /// It could not be started at all (the executable was replaced by an
    /// upgrade, or this is an emulator that can't start another guest
    /// binary): compiling in the gateway's process still works.
    Unavailable(String),
    /// It ran and failed: the module's compile error, or how it died.
    Failed(String),
}

/// The gateway's side: compiles `wasm` in a worker into `staged`, which
/// must not exist yet.
pub(crate) fn compile_in_worker(
    worker: &CompileWorker,
    config: &RuntimeConfig,
    plan: &MemoryPlan,
    wasm: &[u8],
    staged: &Path,
) -> Result<(), WorkerError> {
    let mut output = OsString::from("output=");
    output.push(staged);
    let mut child = Command::new(&worker.program)
        .args(&worker.args)
        .args(settings_args(config, plan))
        .arg(output)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| {
            WorkerError::Unavailable(format!(
                "starting the compile worker {}: {err}",
                worker.program.display()
            ))
        })?;
    // A worker that failed early stops reading: its status and stderr say
    // why, so a broken pipe here is not the error to report.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(wasm);
    }
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = (&mut pipe)
            .take(STDERR_LIMIT as u64)
            .read_to_end(&mut stderr);
        // Read the rest too, unkept: a worker blocked on a full pipe would
        // never exit.
        let _ = std::io::copy(&mut pipe, &mut std::io::sink());
    }
    let status = child
        .wait()
        .map_err(|err| WorkerError::Failed(format!("waiting for the compile worker: {err}")))?;
    if status.success() {
        return Ok(());
    }
    let _ = std::fs::remove_file(staged);
    // posix_spawn reports a failed exec as exit status 127 where it cannot
    // report it to the caller (qemu-user, which emulates the spawn with a
    // fork): the worker itself never exits with 127.
    if status.code() == Some(EXEC_FAILED) && stderr.is_empty() {
        return Err(WorkerError::Unavailable(format!(
            "the compile worker {} could not be executed (exit status 127)",
            worker.program.display()
        )));
    }
    Err(WorkerError::Failed(worker_failure(status, &stderr)))
}

/// Why a worker failed, from its exit status and stderr.
fn worker_failure(status: std::process::ExitStatus, stderr: &[u8]) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        let hint = if signal == libc::SIGKILL {
            " (out of memory? the kernel's OOM killer picks the compile worker first)"
        } else {
            ""
        };
        return format!("the compile worker was killed by signal {signal}{hint}");
    }
    let text = String::from_utf8_lossy(stderr);
    let message = text.trim().strip_prefix("error: ").unwrap_or(text.trim());
    if message.is_empty() {
        format!("the compile worker failed ({status}) without saying why")
    } else {
        message.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_the_trip_to_the_worker() {
        let config = RuntimeConfig {
            consume_fuel: true,
            memory_strategy: MemoryStrategy::Bounded,
            total_instances: 37,
            largest_memory_cap: 96 << 20,
            codegen: vec![
                CodegenSetting::FixedMemoryBase,
                CodegenSetting::NoHeapSpectreMitigation,
            ],
            ..RuntimeConfig::default()
        };
        let space = AddressSpace {
            rlimit: Some(64 << 30),
            va_bits: 39,
        };
        let compiler = config.compiler.resolve().unwrap();
        let plan = MemoryPlan::new(config.plan_input(compiler), space).unwrap();
        let mut args = settings_args(&config, &plan);
        args.push("output=/tmp/x.cwasm".into());
        let (parsed, parsed_space, output) = parse_settings(&args).unwrap();
        assert_eq!(parsed_space, space);
        assert_eq!(output, Path::new("/tmp/x.cwasm"));
        assert!(parsed.consume_fuel);
        assert_eq!(parsed.memory_strategy, MemoryStrategy::Bounded);
        assert_eq!(parsed.total_instances, 37);
        assert_eq!(parsed.largest_memory_cap, 96 << 20);
        assert_eq!(parsed.compiler, compiler);
        assert_eq!(parsed.codegen, config.codegen);
        let replanned = MemoryPlan::new(parsed.plan_input(parsed.compiler), parsed_space).unwrap();
        assert_eq!(replanned.summary(), plan.summary());
    }

    #[test]
    fn the_worker_refuses_a_codegen_setting_it_does_not_know() {
        let err = parse_settings(&[
            "va-bits=47".into(),
            "output=/tmp/x.cwasm".into(),
            "codegen=fixed-memory-base,no-such-thing".into(),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("bad value for codegen"), "{err}");
        let defaults = parse_settings(&[
            "va-bits=47".into(),
            "output=/tmp/x".into(),
            "codegen=".into(),
        ])
        .unwrap()
        .0;
        assert!(defaults.codegen.is_empty());
    }

    #[test]
    fn a_worker_that_cannot_start_is_unavailable_not_a_compile_error() {
        let config = RuntimeConfig::default();
        let compiler = config.compiler.resolve().unwrap();
        let space = AddressSpace::detect();
        let plan = MemoryPlan::new(config.plan_input(compiler), space).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let worker = CompileWorker {
            program: dir.path().join("replaced-by-an-upgrade"),
            args: vec!["compile-worker".into()],
        };
        let staged = dir.path().join("staged.cwasm");
        match compile_in_worker(&worker, &config, &plan, b"\0asm\x01\0\0\0", &staged) {
            Err(WorkerError::Unavailable(why)) => {
                assert!(why.contains("replaced-by-an-upgrade"), "{why}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    /// What a worker that is the shell running `script` reports.
    fn shell_worker(script: &str) -> Result<(), WorkerError> {
        let config = RuntimeConfig::default();
        let compiler = config.compiler.resolve().unwrap();
        let plan = MemoryPlan::new(config.plan_input(compiler), AddressSpace::detect()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let worker = CompileWorker {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
        };
        compile_in_worker(&worker, &config, &plan, b"", &dir.path().join("staged"))
    }

    #[test]
    fn a_worker_that_fails_reports_its_error_and_one_that_never_ran_is_unavailable() {
        match shell_worker("echo 'error: unknown import: `env::f`' >&2; exit 1") {
            Err(WorkerError::Failed(message)) => {
                assert_eq!(message, "unknown import: `env::f`")
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        match shell_worker("kill -9 $$") {
            Err(WorkerError::Failed(message)) => {
                assert!(message.contains("killed by signal 9"), "{message}")
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        // A worker that says more than is kept still ends, with the start.
        match shell_worker("{ echo 'error: first'; yes padding | head -c 200000; } >&2; exit 2") {
            Err(WorkerError::Failed(message)) => {
                assert!(message.starts_with("first"), "{}", &message[..40]);
                assert!(message.len() <= STDERR_LIMIT, "{}", message.len());
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        // How a failed exec looks where the spawn could not report it.
        assert!(matches!(
            shell_worker("exit 127"),
            Err(WorkerError::Unavailable(_))
        ));
    }

    #[test]
    fn unknown_or_malformed_settings_are_refused() {
        let err = parse_settings(&["colour=blue".into()]).unwrap_err();
        assert!(err.to_string().contains("unknown setting colour"), "{err}");
        let err = parse_settings(&["va-bits=many".into()]).unwrap_err();
        assert!(err.to_string().contains("bad value for va-bits"), "{err}");
        let err = parse_settings(&["va-bits=47".into()]).unwrap_err();
        assert!(err.to_string().contains("output missing"), "{err}");
    }
}
