//! `shanhai keygen`: make a key pair for signing modules.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use shanhai_gateway::signing::SecretKey;

/// Make an Ed25519 key pair for `shanhai sign`.
///
/// Writes NAME.key (the secret key, readable by you only) and NAME.pub (the
/// public key), and prints the public key line to add to
/// `[signing] trusted_keys`. Never overwrites existing files.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Path of the key pair without extension: writes OUT.key and OUT.pub.
    #[arg(long, default_value = "shanhai")]
    out: PathBuf,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let secret_path = with_suffix(&args.out, ".key");
    let public_path = with_suffix(&args.out, ".pub");
    for path in [&secret_path, &public_path] {
        if path.exists() {
            bail!("{} already exists; not overwriting a key", path.display());
        }
    }
    let key = SecretKey::generate()?;
    let public = key.public_key().to_string();
    write_new(&secret_path, &key.to_text(), 0o600)?;
    write_new(&public_path, &format!("{public}\n"), 0o644)?;
    println!(
        "wrote {} (secret: keep it safe) and {}\n\ntrust it in the gateway's config:\n\n[signing]\nrequire_signed = true\ntrusted_keys = [\"{public}\"]",
        secret_path.display(),
        public_path.display()
    );
    Ok(())
}

fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut path = base.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

/// Creates `path` with permissions `mode` from the start (so the secret is
/// never readable by others, not even briefly); fails if it exists.
fn write_new(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
