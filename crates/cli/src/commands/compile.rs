//! `shanhai compile`: compile modules ahead of time, for this machine's
//! compile cache or, with `--target`, for a box of another architecture.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use shanhai_gateway::Config;
use shanhai_gateway::compiled;
use shanhai_gateway::signing::{SecretKey, signature_path};
use shanhai_runtime::{AddressSpace, CodeTarget, CrossCompiler, Runtime, RuntimeConfig};

/// Compile modules without serving them.
///
/// Without --target, the code goes into this machine's compile cache, so
/// the gateway's next start here loads the modules in milliseconds.
///
/// With --target, the code is for a box (a Cortex-A55 takes far longer
/// than a build machine to compile a Go module): FILE.ISA.cwasm and its
/// signature FILE.ISA.cwasm.sig are written to the output folder, and
/// `shanhai deploy --precompiled FOLDER` sends them with the module. The
/// box takes them only when it trusts the signing key
/// (`[signing] trusted_keys`), and only if they fit its engine; otherwise
/// it compiles the module itself.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Module files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The compile cache; with --target, the output folder (default
    /// .shanhai/compiled).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Compile for a box of this architecture: x86_64, aarch64 or armv7
    /// (Pulley bytecode).
    #[arg(long, value_parser = parse_target)]
    target: Option<CodeTarget>,
    /// With --target: the secret key (from `shanhai keygen`) that signs the
    /// code; the box must list its public key in `[signing] trusted_keys`.
    #[arg(long, value_name = "FILE", requires = "target")]
    key: Option<PathBuf>,
    /// With --target: the box's config file. Its `[runtime]` section and
    /// the modules' `max_memory_mb` decide the memory layout the code is
    /// compiled for.
    #[arg(long, value_name = "FILE", requires = "target")]
    config: Option<PathBuf>,
    /// With --target: bits of virtual address the box's kernel gives a
    /// process (default: x86_64 47, aarch64 39, armv7 32). `/admin/config`
    /// on the box shows them in `runtime.memory_plan.address_space`.
    #[arg(long, requires = "target")]
    va_bits: Option<u32>,
}

fn parse_target(name: &str) -> Result<CodeTarget, String> {
    CodeTarget::parse(name).ok_or_else(|| {
        format!(
            "`{name}` is not a target: use one of {}",
            CodeTarget::NAMES.join(", ")
        )
    })
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    match args.target {
        Some(target) => compile_for(target, &args),
        None => compile_here(args).await,
    }
}

/// Fills this machine's compile cache.
async fn compile_here(args: Args) -> anyhow::Result<()> {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(
            args.cache_dir
                .unwrap_or_else(|| PathBuf::from(".shanhai/cache")),
        ),
        ..RuntimeConfig::default()
    })?;
    for file in &args.files {
        let wasm = read(file)?;
        let started = Instant::now();
        let cached = runtime
            .precompile(&stem(file), wasm)
            .await
            .with_context(|| format!("compiling {}", file.display()))?;
        println!(
            "{}: {} in {:.1} ms",
            file.display(),
            if cached { "already cached" } else { "compiled" },
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// Writes signed code for a box of `target`.
fn compile_for(target: CodeTarget, args: &Args) -> anyhow::Result<()> {
    let key_file = args.key.as_ref().with_context(|| {
        format!(
            "--target {target} needs --key: a gateway takes compiled code only signed by a key it trusts (make one with `shanhai keygen`)"
        )
    })?;
    let key_text = std::fs::read_to_string(key_file)
        .with_context(|| format!("reading {}", key_file.display()))?;
    let key = SecretKey::parse(&key_text).with_context(|| key_file.display().to_string())?;
    let box_config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let space = AddressSpace {
        rlimit: None,
        va_bits: args.va_bits.unwrap_or(target.usual_va_bits()),
    };
    let compiler = CrossCompiler::new(&box_config.runtime_config(), target, space)
        .with_context(|| format!("planning the engine of a {target} box ({space})"))?;
    let out = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".shanhai/compiled"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    println!(
        "compiling {} code for {target}: {}",
        compiler.isa(),
        compiler.plan().layout()
    );
    for file in &args.files {
        let wasm = read(file)?;
        let started = Instant::now();
        let code = compiler
            .compile(&wasm)
            .with_context(|| format!("compiling {} for {target}", file.display()))?;
        let signature = compiled::sign(&key, &wasm, compiler.isa(), &code);
        let path = compiled::code_path(&out, file, compiler.isa());
        let sig_path = signature_path(&path);
        // The signature goes last: code without one is refused, never
        // taken with a stale signature.
        std::fs::write(&path, &code).with_context(|| format!("writing {}", path.display()))?;
        std::fs::write(&sig_path, format!("{signature}\n"))
            .with_context(|| format!("writing {}", sig_path.display()))?;
        println!(
            "{}: {} ({:.1} MB) in {:.1} s, signed by {}",
            file.display(),
            path.display(),
            code.len() as f64 / 1e6,
            started.elapsed().as_secs_f64(),
            signature.key
        );
    }
    Ok(())
}

fn read(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}

/// The module's name in the log: the file's name without `.wasm`.
fn stem(file: &Path) -> String {
    file.file_stem()
        .map_or_else(|| "module".into(), |s| s.to_string_lossy().into_owned())
}
