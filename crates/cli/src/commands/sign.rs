//! `shanhai sign`: sign a module file.

use std::path::PathBuf;

use anyhow::{Context, bail};
use shanhai_gateway::config::is_module_name;
use shanhai_gateway::signing::{SecretKey, SignedFields, signature_path, unix_now};

/// Sign a module with a key from `shanhai keygen`.
///
/// Writes FILE.sig next to FILE: an Ed25519 signature over the module's
/// name, a sequence number, an optional expiry and the file's SHA-256, with
/// the public key that made it. Copy both files into the modules folder (or
/// deploy both); a gateway with `require_signed = true` loads FILE only as
/// the module it was signed for, only if FILE.sig verifies with one of its
/// trusted keys, and never with a lower sequence than it has already
/// loaded for that module. Re-signing replaces FILE.sig.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The module file.
    file: PathBuf,
    /// The secret key file (NAME.key).
    #[arg(long)]
    key: PathBuf,
    /// The module name the file may be installed as [default: the file's
    /// name without `.wasm`].
    #[arg(long)]
    module: Option<String>,
    /// Orders this module's signed versions: a gateway refuses a lower one
    /// than it has loaded [default: the current time in seconds].
    #[arg(long)]
    sequence: Option<u64>,
    /// Makes the signature expire after this long: a number and a unit,
    /// `s`, `m`, `h` or `d` (e.g. `90d`) [default: never].
    #[arg(long, value_parser = parse_lifetime)]
    expires_in: Option<u64>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let key_text = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let key = SecretKey::parse(&key_text).with_context(|| format!("{}", args.key.display()))?;
    let module = super::module_name_for(&args.file, args.module).unwrap_or_default();
    if !is_module_name(&module) {
        bail!(
            "`{module}` is not a module name (1 to 64 letters, digits, '-' and '_'): name the module with --module NAME"
        );
    }
    let wasm =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let now = unix_now();
    let fields = SignedFields {
        module,
        sequence: args.sequence.unwrap_or(now),
        expires: args.expires_in.map(|lifetime| now.saturating_add(lifetime)),
    };
    let signature = key.sign_module(&wasm, fields);
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
    let fields = &signature.fields;
    let expires = fields
        .expires
        .map_or_else(|| "never".to_owned(), |t| format!("at {t} (unix seconds)"));
    println!(
        "wrote {} for module `{}`, sequence {}, expires {expires} (key {})",
        path.display(),
        fields.module,
        fields.sequence,
        signature.key
    );
    Ok(())
}

/// `90d`, `12h`, `30m`, `45s`: a lifetime in seconds.
fn parse_lifetime(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "`{text}`: expected a number and a unit (s, m, h or d), e.g. 90d"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .and_then(|n| n.checked_mul(unit_seconds))
        .ok_or_else(|| format!("`{text}`: expected a positive number before the unit, e.g. 90d"))
}

#[cfg(test)]
mod tests {
    use super::parse_lifetime;

    #[test]
    fn lifetimes_parse_with_their_unit() {
        assert_eq!(parse_lifetime("90d"), Ok(90 * 86_400));
        assert_eq!(parse_lifetime("12h"), Ok(43_200));
        assert_eq!(parse_lifetime("30m"), Ok(1_800));
        assert_eq!(parse_lifetime("45s"), Ok(45));
        for bad in ["", "d", "90", "0d", "-1d", "1w", "1.5d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }
}
