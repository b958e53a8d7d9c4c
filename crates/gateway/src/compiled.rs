//! Compiled code from a build machine: `shanhai compile --target` writes
//! and signs it, `shanhai deploy --precompiled` sends it, and the gateway
//! imports it into its compile cache so that the module loads without
//! compiling (see `PUT /admin/compiled/{sha256}`).
//!
//! Compiled code is machine code (or Pulley bytecode) that wasmtime maps
//! and runs without verifying it: whoever can make a gateway take it runs
//! code outside the sandbox. The compile cache protects its own entries
//! with an HMAC under a key that never leaves the box; a build machine
//! cannot hold every box's key, and sharing one would let any box forge
//! entries for all. So code from elsewhere must carry an Ed25519 signature
//! by a key in `[signing] trusted_keys`, the keys that already decide which
//! modules may load. Without trusted keys the gateway takes no compiled
//! code at all and compiles modules itself.
//!
//! Files, beside each other in the output folder of `shanhai compile`:
//!
//! ```text
//! STEM.ISA.cwasm       wasmtime's compiled code (ISA: x86_64, aarch64, pulley32, pulley64)
//! STEM.ISA.cwasm.sig   shanhai-compiled-v1 module-sha256=<hex> isa=<ISA> code-sha256=<hex> key=ed25519:<hex> signature=<hex>
//! ```
//!
//! The signature covers the text [`signed_message`] builds: the SHA-256 of
//! the module the code was compiled from, the instruction set and the
//! SHA-256 of the code. Binding the module's hash means signed code for one
//! module cannot be installed as another's; binding the instruction set
//! lets the gateway refuse code for another machine with a clear message
//! before wasmtime looks at it. wasmtime then checks the rest (its version,
//! CPU features, memory layout and settings).
//!
//! ```
//! use shanhai_gateway::compiled::{CompiledSignature, sign, verify};
//! use shanhai_gateway::signing::{SecretKey, SigningConfig};
//!
//! let key = SecretKey::generate().unwrap();
//! let (wasm, code) = (b"\0asm\x01\0\0\0", b"compiled code");
//! let signature = sign(&key, wasm, "aarch64", code).to_string();
//! let config = SigningConfig {
//!     trusted_keys: vec![key.public_key().to_string()],
//!     ..SigningConfig::default()
//! };
//! let module_sha256 = shanhai_gateway::compiled::sha256_hex(wasm);
//! assert!(verify(&config, &module_sha256, "aarch64", code, Some(&signature)).is_ok());
//! // Other code, another machine's gateway, or no signature: refused.
//! assert!(verify(&config, &module_sha256, "aarch64", b"other code", Some(&signature)).is_err());
//! assert!(verify(&config, &module_sha256, "x86_64", code, Some(&signature)).is_err());
//! assert!(verify(&config, &module_sha256, "aarch64", code, None).is_err());
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::Signature;
use sha2::{Digest, Sha256};

use crate::signing::{
    PublicKey, SecretKey, SigningConfig, SigningError, hex, signature_fields, unhex,
};

/// The tag that starts a compiled-code signature.
const TAG: &str = "shanhai-compiled-v1";

/// The fields of a compiled-code signature, in their order.
const FIELDS: [&str; 5] = ["module-sha256", "isa", "code-sha256", "key", "signature"];

/// What a compiled-code signature binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledFields {
    /// The SHA-256 (hex) of the module the code was compiled from.
    pub module_sha256: String,
    /// The instruction set of the code: `x86_64`, `aarch64`, `pulley32`
    /// or `pulley64`.
    pub isa: String,
    /// The SHA-256 (hex) of the code.
    pub code_sha256: String,
}

/// A compiled-code signature; its text form (the `.cwasm.sig` file) is one
/// line, `shanhai-compiled-v1 module-sha256=HEX isa=ISA code-sha256=HEX key=ed25519:HEX signature=HEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledSignature {
    /// What is signed.
    pub fields: CompiledFields,
    /// The key that signed.
    pub key: PublicKey,
    /// The signature over [`signed_message`].
    pub signature: Signature,
}

impl fmt::Display for CompiledSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TAG} module-sha256={} isa={} code-sha256={} key={} signature={}",
            self.fields.module_sha256,
            self.fields.isa,
            self.fields.code_sha256,
            self.key,
            hex(&self.signature.to_bytes())
        )
    }
}

impl FromStr for CompiledSignature {
    type Err = CompiledError;

    fn from_str(text: &str) -> Result<Self, CompiledError> {
        let malformed = |reason: String| CompiledError::Malformed(reason);
        let mut words = text.split_ascii_whitespace();
        if words.next() != Some(TAG) {
            return Err(malformed(format!("it does not start with `{TAG}`")));
        }
        let fields = signature_fields(words, &FIELDS).map_err(malformed)?;
        let field = |name: &str| {
            fields
                .get(name)
                .copied()
                .ok_or_else(|| malformed(format!("field `{name}` is missing")))
        };
        let digest = |name: &str| {
            let value = field(name)?;
            unhex::<32>(value).map_err(|reason| malformed(format!("{name}: {reason}")))?;
            Ok::<_, CompiledError>(value.to_owned())
        };
        let isa = field("isa")?;
        if isa.is_empty() || !isa.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(malformed(format!("`{isa}` is not an instruction set")));
        }
        let key = field("key")?
            .parse::<PublicKey>()
            .map_err(|err| malformed(format!("key: {err}")))?;
        let signature = unhex::<64>(field("signature")?)
            .map_err(|reason| malformed(format!("signature: {reason}")))?;
        Ok(Self {
            fields: CompiledFields {
                module_sha256: digest("module-sha256")?,
                isa: isa.to_owned(),
                code_sha256: digest("code-sha256")?,
            },
            key,
            signature: Signature::from_bytes(&signature),
        })
    }
}

/// Why compiled code was refused. The gateway then compiles the module
/// itself; nothing else changes.
#[derive(Debug, thiserror::Error)]
pub enum CompiledError {
    /// No key is trusted, so no compiled code can be.
    #[error(
        "compiled code runs outside the sandbox's checks, so the gateway takes it only signed by a key in signing.trusted_keys, and none is configured; deploy the module alone and the gateway compiles it"
    )]
    NoTrustedKeys,
    /// A `signing.trusted_keys` entry does not parse.
    #[error("{0}")]
    TrustedKeys(#[from] SigningError),
    /// The upload carries no signature.
    #[error(
        "unsigned compiled code: send its signature (the .cwasm.sig written by `shanhai compile --key`) in X-Shanhai-Signature"
    )]
    Unsigned,
    /// The signature is not one.
    #[error(
        "bad signature: not a compiled-code signature: {0} (expected one line `{TAG} module-sha256=... isa=... code-sha256=... key=ed25519:... signature=...`, as written by `shanhai compile --key`)"
    )]
    Malformed(String),
    /// Signed by a key that is not trusted.
    #[error("untrusted key: the code was signed by {0}, which is not in signing.trusted_keys")]
    Untrusted(String),
    /// The signature does not cover these bytes: changed after signing.
    #[error(
        "bad signature: the signature does not match the code (was it changed after `shanhai compile`?)"
    )]
    Mismatch,
    /// Signed code of another module.
    #[error(
        "the code was compiled from module {signed_for}, not from module {module} (by SHA-256)"
    )]
    OtherModule {
        /// The module hash the signature names.
        signed_for: String,
        /// The module hash it was sent for.
        module: String,
    },
    /// Code for another machine.
    #[error(
        "the code is for {compiled_for}, but this gateway runs {runs} code: compile with `shanhai compile --target` for this machine"
    )]
    OtherIsa {
        /// The instruction set of the code.
        compiled_for: String,
        /// The instruction set this gateway runs.
        runs: String,
    },
}

/// The message a compiled-code signature covers: a fixed first line, then
/// one field per line.
pub fn signed_message(fields: &CompiledFields) -> Vec<u8> {
    format!(
        "shanhai compiled code v1\nmodule-sha256={}\nisa={}\ncode-sha256={}\n",
        fields.module_sha256, fields.isa, fields.code_sha256
    )
    .into_bytes()
}

/// The SHA-256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Signs `code`, compiled from module `wasm` for instruction set `isa`.
pub fn sign(key: &SecretKey, wasm: &[u8], isa: &str, code: &[u8]) -> CompiledSignature {
    let fields = CompiledFields {
        module_sha256: sha256_hex(wasm),
        isa: isa.to_owned(),
        code_sha256: sha256_hex(code),
    };
    CompiledSignature {
        signature: key.sign_message(&signed_message(&fields)),
        key: key.public_key(),
        fields,
    }
}

/// Checks `code`, sent as the compiled form of the module whose SHA-256 is
/// `module_sha256` to a gateway running `isa` code, against the text of
/// its signature under `config`'s trusted keys. The fields are compared
/// only once the signature proves them, so a refusal never reports a value
/// nobody signed.
pub fn verify(
    config: &SigningConfig,
    module_sha256: &str,
    isa: &str,
    code: &[u8],
    signature: Option<&str>,
) -> Result<CompiledSignature, CompiledError> {
    let trusted = crate::signing::parse_trusted_keys(config)?;
    if trusted.is_empty() {
        return Err(CompiledError::NoTrustedKeys);
    }
    let signature: CompiledSignature = signature.ok_or(CompiledError::Unsigned)?.parse()?;
    if !trusted.contains(&signature.key) {
        return Err(CompiledError::Untrusted(signature.key.to_string()));
    }
    let code_sha256 = sha256_hex(code);
    let proven = signature.fields.code_sha256 == code_sha256
        && signature
            .key
            .verifies(&signed_message(&signature.fields), &signature.signature);
    if !proven {
        return Err(CompiledError::Mismatch);
    }
    if signature.fields.module_sha256 != module_sha256 {
        return Err(CompiledError::OtherModule {
            signed_for: signature.fields.module_sha256,
            module: module_sha256.to_owned(),
        });
    }
    if signature.fields.isa != isa {
        return Err(CompiledError::OtherIsa {
            compiled_for: signature.fields.isa,
            runs: isa.to_owned(),
        });
    }
    Ok(signature)
}

/// Where `shanhai compile` puts, in `folder`, the code of module file
/// `module` for instruction set `isa` (`STEM.ISA.cwasm`), and where
/// `shanhai deploy --precompiled` looks for it; its signature is beside it
/// ([`crate::signing::signature_path`]).
pub fn code_path(folder: &Path, module: &Path, isa: &str) -> PathBuf {
    let stem = module
        .file_stem()
        .map_or_else(|| "module".into(), |s| s.to_string_lossy());
    folder.join(format!("{stem}.{isa}.cwasm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusting(key: &SecretKey) -> SigningConfig {
        SigningConfig {
            trusted_keys: vec![key.public_key().to_string()],
            ..SigningConfig::default()
        }
    }

    #[test]
    fn a_signature_round_trips_through_its_text() {
        let key = SecretKey::generate().unwrap();
        let signature = sign(&key, b"wasm", "pulley32", b"code");
        let text = signature.to_string();
        assert!(
            text.starts_with("shanhai-compiled-v1 module-sha256="),
            "{text}"
        );
        assert_eq!(text.parse::<CompiledSignature>().unwrap(), signature);
    }

    #[test]
    fn each_refusal_says_what_is_wrong() {
        let key = SecretKey::generate().unwrap();
        let other = SecretKey::generate().unwrap();
        let wasm = b"module bytes";
        let module = sha256_hex(wasm);
        let signature = sign(&key, wasm, "aarch64", b"code").to_string();
        let refusal = |config: &SigningConfig, module: &str, isa: &str, code: &[u8], text| {
            verify(config, module, isa, code, text)
                .unwrap_err()
                .to_string()
        };
        let config = trusting(&key);
        let no_keys = SigningConfig::default();
        for (message, expected) in [
            (
                refusal(&no_keys, &module, "aarch64", b"code", Some(&signature)),
                "none is configured",
            ),
            (
                refusal(&config, &module, "aarch64", b"code", None),
                "unsigned",
            ),
            (
                refusal(&config, &module, "aarch64", b"code", Some("ed25519:00")),
                "does not start with `shanhai-compiled-v1`",
            ),
            (
                refusal(
                    &trusting(&other),
                    &module,
                    "aarch64",
                    b"code",
                    Some(&signature),
                ),
                "untrusted key",
            ),
            (
                refusal(&config, &module, "aarch64", b"c0de", Some(&signature)),
                "does not match the code",
            ),
            (
                refusal(
                    &config,
                    &sha256_hex(b"other"),
                    "aarch64",
                    b"code",
                    Some(&signature),
                ),
                "not from module",
            ),
            (
                refusal(&config, &module, "x86_64", b"code", Some(&signature)),
                "the code is for aarch64, but this gateway runs x86_64 code",
            ),
        ] {
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
        // A forged field (another instruction set) breaks the signature.
        let forged = signature.replace("isa=aarch64", "isa=x86_64");
        assert!(
            refusal(&config, &module, "x86_64", b"code", Some(&forged))
                .contains("does not match the code")
        );
    }

    #[test]
    fn malformed_signatures_are_refused_before_any_check() {
        let key = SecretKey::generate().unwrap();
        let good = sign(&key, b"w", "aarch64", b"c").to_string();
        for (text, expected) in [
            (good.replace(" isa=aarch64", ""), "field `isa` is missing"),
            (format!("{good} isa=x86_64"), "appears twice"),
            (format!("{good} extra=1"), "unknown field `extra`"),
            (
                good.replace("isa=aarch64", "isa=../x"),
                "not an instruction set",
            ),
            (
                good.replace("module-sha256=", "module-sha256=zz"),
                "module-sha256",
            ),
        ] {
            let err = text.parse::<CompiledSignature>().unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
    }
}
