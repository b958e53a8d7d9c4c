//! `shanhai sign`: sign a module file.

use std::path::PathBuf;

use anyhow::Context;
use shanhai_gateway::signing::{SecretKey, signature_path};

/// Sign a module with a key from `shanhai keygen`.
///
/// Writes FILE.sig next to FILE: an Ed25519 signature over the file's
/// SHA-256, with the public key that made it. Copy both files into the
/// modules folder (or deploy both); a gateway with `require_signed = true`
/// loads FILE only if FILE.sig verifies with one of its trusted keys.
/// Re-signing replaces FILE.sig.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The module file.
    file: PathBuf,
    /// The secret key file (NAME.key).
    #[arg(long)]
    key: PathBuf,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let key_text = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let key = SecretKey::parse(&key_text).with_context(|| format!("{}", args.key.display()))?;
    let wasm =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let signature = key.sign_module(&wasm);
    let path = signature_path(&args.file);
    // Write, then rename: a watching gateway never reads half a signature.
    let tmp = {
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        PathBuf::from(tmp)
    };
    std::fs::write(&tmp, format!("{signature}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {} (key {})", path.display(), signature.key);
    Ok(())
}
