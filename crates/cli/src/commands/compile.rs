//! `shanhai compile`: fill the compile cache ahead of time.

use std::path::PathBuf;

use anyhow::Context;
use shanhai_runtime::{Runtime, RuntimeConfig};

/// Compile modules into the compile cache without serving them, so that
/// the gateway's next start (or a deploy) loads them in milliseconds.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Module files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Compile-cache folder.
    #[arg(long, default_value = ".shanhai/cache")]
    cache_dir: PathBuf,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(args.cache_dir),
        ..RuntimeConfig::default()
    })?;
    for file in &args.files {
        let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let started = std::time::Instant::now();
        let name = file
            .file_stem()
            .map_or_else(|| "module".into(), |s| s.to_string_lossy());
        let cached = runtime
            .precompile(&name, wasm)
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
