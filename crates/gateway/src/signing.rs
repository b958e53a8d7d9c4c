//! Module signing: Ed25519 signatures over a module file's SHA-256.
//!
//! `shanhai keygen` makes a key pair, `shanhai sign FILE --key NAME.key`
//! writes `FILE.sig`, and the gateway checks that signature against
//! `[signing] trusted_keys` before it loads `FILE` (see [`verify_module`]).
//! All three texts are one line of lowercase hex behind a tag:
//!
//! ```text
//! NAME.pub   ed25519:<public key, 32 bytes>
//! NAME.key   ed25519-secret:<secret seed, 32 bytes>
//! FILE.sig   ed25519:<public key, 32 bytes>:<signature, 64 bytes>
//! ```
//!
//! The signed message is the 32-byte SHA-256 digest of the file. A signature
//! names the key that made it, so a refusal can say which went wrong: the
//! file changed after signing, or the signer is not trusted.
//!
//! ```
//! use shanhai_gateway::config::SigningConfig;
//! use shanhai_gateway::signing::{SecretKey, verify_bytes};
//! use std::path::Path;
//!
//! let key = SecretKey::generate().unwrap();
//! let wasm = b"\0asm\x01\0\0\0";
//! let signature = key.sign_module(wasm).to_string();
//! let config = SigningConfig {
//!     require_signed: true,
//!     trusted_keys: vec![key.public_key().to_string()],
//! };
//! let file = Path::new("hello.wasm");
//! assert!(verify_bytes(&config, file, wasm, Some(&signature)).is_ok());
//! assert!(verify_bytes(&config, file, b"\0asm\x01\0\0\0\0", Some(&signature)).is_err());
//! assert!(verify_bytes(&config, file, wasm, None).is_err());
//! ```

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use shanhai_runtime::LoadError;

use crate::config::SigningConfig;

/// The tag of public keys and signatures.
const PUBLIC_TAG: &str = "ed25519:";
/// The tag of secret keys; different, so that one is never taken for the other.
const SECRET_TAG: &str = "ed25519-secret:";

/// Why a key or signature could not be used, or a module was refused.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// A trusted key in the configuration is not an Ed25519 public key.
    #[error(
        "signing.trusted_keys[{index}]: `{value}` is not an Ed25519 public key: {reason} (expected `ed25519:` and 64 hex digits, as printed by `shanhai keygen`)"
    )]
    TrustedKey {
        /// Position in `trusted_keys`.
        index: usize,
        /// The configured text.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `require_signed = true` but no key is trusted, so nothing can load.
    #[error(
        "{}: refused: signing.require_signed = true but signing.trusted_keys is empty; add the public key printed by `shanhai keygen`",
        file.display()
    )]
    NoTrustedKeys {
        /// The module file.
        file: PathBuf,
    },
    /// `require_signed = true` and the module has no signature file.
    #[error(
        "{}: unsigned: there is no signature file {} and signing.require_signed = true (sign it with `shanhai sign {} --key KEY`)",
        file.display(), signature.display(), file.display()
    )]
    Unsigned {
        /// The module file.
        file: PathBuf,
        /// Where its signature was looked for.
        signature: PathBuf,
    },
    /// The signature file is not a signature.
    #[error(
        "{}: bad signature: {} is not a Shanhai signature: {reason} (expected one line `ed25519:<public key hex>:<signature hex>`, as written by `shanhai sign`)",
        file.display(), signature.display()
    )]
    Malformed {
        /// The module file.
        file: PathBuf,
        /// The signature file.
        signature: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The signature was made by a trusted key, but not over these bytes.
    #[error(
        "{}: bad signature: the signature in {} does not match the module (was the file changed after signing?)",
        file.display(), signature.display()
    )]
    Mismatch {
        /// The module file.
        file: PathBuf,
        /// The signature file.
        signature: PathBuf,
    },
    /// The signature was made by a key that is not trusted.
    #[error(
        "{}: untrusted key: not signed by a trusted key ({} was signed by {key}, which is not in signing.trusted_keys)",
        file.display(), signature.display()
    )]
    Untrusted {
        /// The module file.
        file: PathBuf,
        /// The signature file.
        signature: PathBuf,
        /// The key that signed it, as text (`ed25519:...`).
        key: String,
    },
    /// A key file or signature file is not in its format.
    #[error("not {expected}: {reason}")]
    Format {
        /// What the text should have been.
        expected: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The signature file exists but could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The signature file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("generating a key: the system random number generator failed: {0}")]
    Random(String),
}

/// A refused module is a load failure whose message is the refusal: the
/// registry records it, logs it and keeps the old version serving.
impl From<SigningError> for LoadError {
    fn from(err: SigningError) -> Self {
        let kind = match &err {
            SigningError::Read { source, .. } => source.kind(),
            _ => ErrorKind::PermissionDenied,
        };
        LoadError::Io(std::io::Error::new(kind, err.to_string()))
    }
}

/// An Ed25519 public key; its text form is `ed25519:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_TAG}{}", hex(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PublicKey {
    type Err = SigningError;

    fn from_str(text: &str) -> Result<Self, SigningError> {
        const EXPECTED: &str = "an Ed25519 public key";
        let text = text.trim();
        if text.starts_with(SECRET_TAG) {
            return Err(format_error(EXPECTED, "this is a secret key"));
        }
        let hex_part = text
            .strip_prefix(PUBLIC_TAG)
            .ok_or_else(|| format_error(EXPECTED, "it does not start with `ed25519:`"))?;
        let bytes = unhex::<32>(hex_part).map_err(|reason| format_error(EXPECTED, reason))?;
        public_key(&bytes).map_err(|reason| format_error(EXPECTED, reason))
    }
}

fn public_key(bytes: &[u8; 32]) -> Result<PublicKey, String> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| "not a point on the curve".to_owned())?;
    // A small-order key "verifies" signatures that prove nothing.
    if key.is_weak() {
        return Err("a weak (small-order) key".into());
    }
    Ok(PublicKey(key))
}

/// An Ed25519 secret key; its text form (the `.key` file) is
/// `ed25519-secret:<64 hex digits>`.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, SigningError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|err| SigningError::Random(err.to_string()))?;
        let key = Self(SigningKey::from_bytes(&seed));
        seed.fill(0);
        Ok(key)
    }

    /// Parses the text of a `.key` file.
    pub fn parse(text: &str) -> Result<Self, SigningError> {
        const EXPECTED: &str = "a Shanhai secret key";
        let text = text.trim();
        if text.starts_with(PUBLIC_TAG) {
            return Err(format_error(
                EXPECTED,
                "this is a public key (`ed25519:...`); pass the `.key` file written by `shanhai keygen`",
            ));
        }
        let hex_part = text
            .strip_prefix(SECRET_TAG)
            .ok_or_else(|| format_error(EXPECTED, "it does not start with `ed25519-secret:`"))?;
        let seed = unhex::<32>(hex_part).map_err(|reason| format_error(EXPECTED, reason))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// The text of the `.key` file, with a final newline.
    pub fn to_text(&self) -> String {
        format!("{SECRET_TAG}{}\n", hex(self.0.as_bytes()))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs a module file's contents.
    pub fn sign_module(&self, wasm: &[u8]) -> ModuleSignature {
        use ed25519_dalek::Signer;
        ModuleSignature {
            key: self.public_key(),
            signature: self.0.sign(&module_digest(wasm)),
        }
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public_key())
    }
}

/// A module's signature and the key that made it; its text form (the
/// `.sig` file) is `ed25519:<public key hex>:<signature hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSignature {
    /// The key that signed.
    pub key: PublicKey,
    /// The signature over the module's SHA-256.
    pub signature: Signature,
}

impl fmt::Display for ModuleSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.key, hex(&self.signature.to_bytes()))
    }
}

impl FromStr for ModuleSignature {
    type Err = SigningError;

    fn from_str(text: &str) -> Result<Self, SigningError> {
        const EXPECTED: &str = "a module signature";
        let text = text.trim();
        let (key, signature) = text
            .rsplit_once(':')
            .ok_or_else(|| format_error(EXPECTED, "no `:` between key and signature"))?;
        let key = key.parse::<PublicKey>().map_err(|err| match err {
            SigningError::Format { reason, .. } => format_error(EXPECTED, reason),
            other => other,
        })?;
        let signature = unhex::<64>(signature).map_err(|reason| format_error(EXPECTED, reason))?;
        Ok(Self {
            key,
            signature: Signature::from_bytes(&signature),
        })
    }
}

/// What is signed: the SHA-256 of the module file.
pub fn module_digest(wasm: &[u8]) -> [u8; 32] {
    Sha256::digest(wasm).into()
}

/// Where the signature of `module` lives: `FILE.sig` next to `FILE`.
pub fn signature_path(module: &Path) -> PathBuf {
    let mut path = module.as_os_str().to_owned();
    path.push(".sig");
    PathBuf::from(path)
}

/// The configured trusted keys, parsed. An error names the entry of
/// `signing.trusted_keys` that is wrong; call this when the gateway starts so
/// a typo fails there rather than at each module load.
pub fn parse_trusted_keys(config: &SigningConfig) -> Result<Vec<PublicKey>, SigningError> {
    config
        .trusted_keys
        .iter()
        .enumerate()
        .map(|(index, value)| {
            value.parse().map_err(|err| SigningError::TrustedKey {
                index,
                value: value.clone(),
                reason: match err {
                    SigningError::Format { reason, .. } => reason,
                    other => other.to_string(),
                },
            })
        })
        .collect()
}

/// Checks module file `file`, whose contents are `wasm`, against its
/// signature file (`FILE.sig`, see [`signature_path`]) under the policy of
/// `config` (see [`verify_bytes`]). Reads the signature file only when
/// signing is in use.
pub fn verify_module(config: &SigningConfig, file: &Path, wasm: &[u8]) -> Result<(), SigningError> {
    if !signing_in_use(config) {
        return Ok(());
    }
    let path = signature_path(file);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == ErrorKind::NotFound => None,
        Err(source) => return Err(SigningError::Read { path, source }),
    };
    verify_bytes(config, file, wasm, text.as_deref())
}

/// Checks a module against the text of its signature file (`None`: there is
/// none), for uploads that carry both. `file` names the module in errors.
///
/// | `require_signed` | `trusted_keys` | signature           | result  |
/// |------------------|----------------|---------------------|---------|
/// | false            | empty          | any                 | loads (signing off) |
/// | false            | set            | none                | loads   |
/// | any              | set            | valid, trusted key  | loads   |
/// | any              | set            | malformed, untrusted key, or not matching | refused |
/// | true             | set            | none                | refused: unsigned |
/// | true             | empty          | any                 | refused: no trusted keys |
///
/// A signature that is present is always checked once keys are trusted: a
/// wrong one is a warning worth stopping for. A `trusted_keys` entry that
/// does not parse refuses every module while signing is in use.
pub fn verify_bytes(
    config: &SigningConfig,
    file: &Path,
    wasm: &[u8],
    signature: Option<&str>,
) -> Result<(), SigningError> {
    if !signing_in_use(config) {
        return Ok(());
    }
    let trusted = parse_trusted_keys(config)?;
    if trusted.is_empty() {
        return Err(SigningError::NoTrustedKeys {
            file: file.to_path_buf(),
        });
    }
    let signature_file = signature_path(file);
    let Some(text) = signature else {
        return if config.require_signed {
            Err(SigningError::Unsigned {
                file: file.to_path_buf(),
                signature: signature_file,
            })
        } else {
            Ok(())
        };
    };
    let signature: ModuleSignature = text.parse().map_err(|err| SigningError::Malformed {
        file: file.to_path_buf(),
        signature: signature_file.clone(),
        reason: match err {
            SigningError::Format { reason, .. } => reason,
            other => other.to_string(),
        },
    })?;
    if !trusted.contains(&signature.key) {
        return Err(SigningError::Untrusted {
            file: file.to_path_buf(),
            signature: signature_file,
            key: signature.key.to_string(),
        });
    }
    signature
        .key
        .0
        .verify_strict(&module_digest(wasm), &signature.signature)
        .map_err(|_| SigningError::Mismatch {
            file: file.to_path_buf(),
            signature: signature_file,
        })
}

fn signing_in_use(config: &SigningConfig) -> bool {
    config.require_signed || !config.trusted_keys.is_empty()
}

fn format_error(expected: &'static str, reason: impl Into<String>) -> SigningError {
    SigningError::Format {
        expected,
        reason: reason.into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn unhex<const N: usize>(text: &str) -> Result<[u8; N], String> {
    if text.len() != 2 * N {
        return Err(format!(
            "expected {} hex digits, found {}",
            2 * N,
            text.len()
        ));
    }
    let digit = |c: u8| {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| format!("`{}` is not a hex digit", c as char))
    };
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&[seed; 32]))
    }

    fn config(require_signed: bool, keys: &[&SecretKey]) -> SigningConfig {
        SigningConfig {
            require_signed,
            trusted_keys: keys.iter().map(|k| k.public_key().to_string()).collect(),
        }
    }

    const WASM: &[u8] = b"\0asm\x01\0\0\0 a module";

    fn check(config: &SigningConfig, wasm: &[u8], signature: Option<&str>) -> Result<(), String> {
        verify_bytes(config, Path::new("m/hello.wasm"), wasm, signature).map_err(|e| e.to_string())
    }

    #[test]
    fn texts_round_trip() {
        let secret = key(7);
        let parsed = SecretKey::parse(&secret.to_text()).unwrap();
        assert_eq!(parsed.public_key(), secret.public_key());
        let public = secret.public_key().to_string();
        assert!(
            public.starts_with("ed25519:") && public.len() == 8 + 64,
            "{public}"
        );
        assert_eq!(public.parse::<PublicKey>().unwrap(), secret.public_key());
        let signature = secret.sign_module(WASM);
        let text = signature.to_string();
        assert_eq!(text.len(), 8 + 64 + 1 + 128, "{text}");
        assert!(text.starts_with(&public));
        assert_eq!(text.parse::<ModuleSignature>().unwrap(), signature);
        // Upper-case hex and a trailing newline are accepted.
        let upper = format!(
            "{}\n",
            text.to_uppercase().replacen("ED25519", "ed25519", 1)
        );
        assert_eq!(upper.parse::<ModuleSignature>().unwrap(), signature);
    }

    #[test]
    fn generated_keys_differ_and_sign() {
        let (a, b) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        assert_ne!(a.public_key(), b.public_key());
        let signature = a.sign_module(WASM).to_string();
        assert!(check(&config(true, &[&a]), WASM, Some(&signature)).is_ok());
    }

    #[test]
    fn keys_are_not_confused() {
        let secret = key(1);
        let err = SecretKey::parse(&secret.public_key().to_string()).unwrap_err();
        assert!(err.to_string().contains("public key"), "{err}");
        let err = secret.to_text().parse::<PublicKey>().unwrap_err();
        assert!(err.to_string().contains("secret key"), "{err}");
        assert!(SecretKey::parse("ed25519-secret:abcd").is_err());
        assert!(SecretKey::parse(&format!("ed25519-secret:{}", "zz".repeat(32))).is_err());
    }

    #[test]
    fn a_correct_signature_loads() {
        let (a, b) = (key(1), key(2));
        let signature = a.sign_module(WASM).to_string();
        for require in [true, false] {
            assert_eq!(
                check(&config(require, &[&b, &a]), WASM, Some(&signature)),
                Ok(())
            );
        }
    }

    #[test]
    fn unsigned_modules_load_only_when_not_required() {
        let a = key(1);
        let err = check(&config(true, &[&a]), WASM, None).unwrap_err();
        assert!(err.contains("m/hello.wasm: unsigned"), "{err}");
        assert!(err.contains("m/hello.wasm.sig"), "{err}");
        assert_eq!(check(&config(false, &[&a]), WASM, None), Ok(()));
        assert_eq!(check(&config(false, &[]), WASM, None), Ok(()));
    }

    #[test]
    fn tampered_modules_are_refused() {
        let a = key(1);
        let signature = a.sign_module(WASM).to_string();
        let mut tampered = WASM.to_vec();
        tampered.push(0);
        for require in [true, false] {
            let err = check(&config(require, &[&a]), &tampered, Some(&signature)).unwrap_err();
            assert!(err.contains("does not match the module"), "{err}");
            assert!(err.starts_with("m/hello.wasm: bad signature"), "{err}");
        }
    }

    #[test]
    fn untrusted_keys_are_refused() {
        let (a, b) = (key(1), key(2));
        let signature = b.sign_module(WASM).to_string();
        for require in [true, false] {
            let err = check(&config(require, &[&a]), WASM, Some(&signature)).unwrap_err();
            assert!(err.contains("not signed by a trusted key"), "{err}");
            assert!(err.contains(&b.public_key().to_string()), "{err}");
        }
        // Claiming a trusted key does not help: the signature must verify.
        let forged = format!(
            "{}:{}",
            a.public_key(),
            hex(&b.sign_module(WASM).signature.to_bytes())
        );
        let err = check(&config(true, &[&a]), WASM, Some(&forged)).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let a = key(1);
        for text in ["", "garbage", "ed25519:00:00", &a.public_key().to_string()] {
            let err = check(&config(false, &[&a]), WASM, Some(text)).unwrap_err();
            assert!(err.contains("is not a Shanhai signature"), "{text}: {err}");
        }
    }

    #[test]
    fn requiring_signatures_without_trusted_keys_refuses_everything() {
        let a = key(1);
        let signature = a.sign_module(WASM).to_string();
        let err = check(&config(true, &[]), WASM, Some(&signature)).unwrap_err();
        assert!(err.contains("signing.trusted_keys is empty"), "{err}");
    }

    #[test]
    fn signing_off_ignores_signatures() {
        assert_eq!(check(&config(false, &[]), WASM, Some("garbage")), Ok(()));
    }

    #[test]
    fn bad_trusted_keys_are_named() {
        let a = key(1);
        let mut config = config(false, &[&a]);
        config.trusted_keys.push("ed25519:1234".into());
        let err = parse_trusted_keys(&config).unwrap_err().to_string();
        assert!(
            err.starts_with("signing.trusted_keys[1]: `ed25519:1234`"),
            "{err}"
        );
        assert!(err.contains("64 hex digits"), "{err}");
        let err = check(&config, WASM, None).unwrap_err();
        assert!(err.contains("signing.trusted_keys[1]"), "{err}");
        // The identity point is a valid encoding but a weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        config.trusted_keys = vec![format!("ed25519:{}", hex(&identity))];
        let err = parse_trusted_keys(&config).unwrap_err().to_string();
        assert!(err.contains("weak"), "{err}");
    }

    #[test]
    fn verify_module_reads_the_signature_file() {
        let dir = std::env::temp_dir().join(format!("shanhai-signing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hello.wasm");
        let a = key(1);
        let config = config(true, &[&a]);
        let err = verify_module(&config, &file, WASM).unwrap_err();
        assert!(matches!(err, SigningError::Unsigned { .. }), "{err}");
        std::fs::write(dir.join("hello.wasm.sig"), a.sign_module(WASM).to_string()).unwrap();
        let result = verify_module(&config, &file, WASM);
        std::fs::remove_dir_all(&dir).unwrap();
        result.unwrap();
    }

    #[test]
    fn refusals_become_load_errors_with_the_same_message() {
        let err = SigningError::NoTrustedKeys {
            file: PathBuf::from("x.wasm"),
        };
        let message = err.to_string();
        let load: LoadError = err.into();
        assert_eq!(load.to_string(), message);
    }

    #[test]
    fn signature_path_appends_sig() {
        assert_eq!(
            signature_path(Path::new("m/hello.wasm")),
            Path::new("m/hello.wasm.sig")
        );
    }
}
