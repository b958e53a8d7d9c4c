//! Module signing: Ed25519 signatures over a module's name, a sequence
//! number, an optional expiry and the file's SHA-256.
//!
//! `shanhai keygen` makes a key pair, `shanhai sign FILE --key NAME.key`
//! writes `FILE.sig`, and the gateway checks that signature against
//! `[signing] trusted_keys` before it loads `FILE` (see [`verify_module`]).
//! Keys are one line of lowercase hex behind a tag; a signature is one line
//! of fields:
//!
//! ```text
//! NAME.pub   ed25519:<public key, 32 bytes>
//! NAME.key   ed25519-secret:<secret seed, 32 bytes>
//! FILE.sig   shanhai-signature-v2 module=<name> sequence=<n> expires=<unix seconds|never> key=ed25519:<public key> signature=<64 bytes>
//! ```
//!
//! The signed message is the text [`signed_message`] builds from the
//! module's name, the sequence number, the expiry and the file's SHA-256.
//! Binding the name means a module signed as `hello` cannot be installed as
//! `billing` and inherit that name's grants and secrets. The sequence
//! number (by default the signing time in seconds) lets the gateway refuse
//! an older signed version of a module than one it has already loaded: the
//! highest sequence loaded per name is kept in `signing.sequence_file`
//! (see [`SequenceBook`]). Version 1 signatures (`ed25519:<key>:<sig>`,
//! over the digest alone) are refused with a message saying to re-sign.
//!
//! A signature names the key that made it, so a refusal can say which went
//! wrong: the file changed after signing, or the signer is not trusted.
//!
//! ```
//! use shanhai_gateway::signing::{SecretKey, SignedFields, SigningConfig, verify_bytes};
//! use std::path::Path;
//!
//! let key = SecretKey::generate().unwrap();
//! let wasm = b"\0asm\x01\0\0\0";
//! let fields = SignedFields { module: "hello".into(), sequence: 1, expires: None };
//! let signature = key.sign_module(wasm, fields).to_string();
//! let config = SigningConfig {
//!     require_signed: true,
//!     trusted_keys: vec![key.public_key().to_string()],
//!     ..SigningConfig::default()
//! };
//! let file = Path::new("hello.wasm");
//! assert!(verify_bytes(&config, "hello", file, wasm, Some(&signature)).is_ok());
//! // Another module's name, other bytes, or no signature: refused.
//! assert!(verify_bytes(&config, "billing", file, wasm, Some(&signature)).is_err());
//! assert!(verify_bytes(&config, "hello", file, b"\0asm\x01\0\0\0\0", Some(&signature)).is_err());
//! assert!(verify_bytes(&config, "hello", file, wasm, None).is_err());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shanhai_runtime::LoadError;

/// `[signing]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// Refuse modules without a valid `FILE.sig` from a trusted key.
    pub require_signed: bool,
    /// Trusted Ed25519 public keys (as written by `shanhai keygen`).
    pub trusted_keys: Vec<String>,
    /// Where the highest signature sequence loaded per module is kept, so
    /// an older signed version is refused after a restart too; empty keeps
    /// it in memory only.
    pub sequence_file: PathBuf,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            require_signed: false,
            trusted_keys: Vec::new(),
            sequence_file: PathBuf::from(".shanhai/signing.sequences"),
        }
    }
}

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
        "{}: bad signature: {} is not a Shanhai signature: {reason} (expected one line `shanhai-signature-v2 module=... sequence=... expires=... key=ed25519:... signature=...`, as written by `shanhai sign`)",
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
    /// A version 1 signature: over the digest alone, bound to no module.
    #[error(
        "{}: old signature: {} is a version 1 signature (`ed25519:KEY:SIGNATURE`), which does not name its module; re-sign it with `shanhai sign {} --key KEY`",
        file.display(), signature.display(), file.display()
    )]
    Outdated {
        /// The module file.
        file: PathBuf,
        /// The signature file.
        signature: PathBuf,
    },
    /// A valid signature made for another module's name.
    #[error(
        "{}: signed for another module: {} was signed for module `{signed_for}`, not `{module}` (sign it with `shanhai sign FILE --key KEY --module {module}`)",
        file.display(), signature.display()
    )]
    WrongModule {
        /// The module file.
        file: PathBuf,
        /// The signature file.
        signature: PathBuf,
        /// The name it was signed for.
        signed_for: String,
        /// The name it would be installed as.
        module: String,
    },
    /// A valid signature past its expiry.
    #[error(
        "{}: expired signature: {} expired at {expires} (unix seconds; now {now}); re-sign the module",
        file.display(), signature.display()
    )]
    Expired {
        /// The module file.
        file: PathBuf,
        /// The signature file.
        signature: PathBuf,
        /// When it expired, in seconds since the Unix epoch.
        expires: u64,
        /// The time of the check, in the same unit.
        now: u64,
    },
    /// A valid signature older than one already loaded for this module.
    #[error(
        "{}: rollback refused: {} has sequence {sequence}, but module `{module}` has already loaded sequence {highest}; sign the version you want to serve again with a higher --sequence",
        file.display(), signature.display()
    )]
    Rollback {
        /// The module file.
        file: PathBuf,
        /// The signature file.
        signature: PathBuf,
        /// The module's name.
        module: String,
        /// The signature's sequence number.
        sequence: u64,
        /// The highest sequence loaded for the module so far.
        highest: u64,
    },
    /// The sequence file could not be read or is not in its format.
    #[error(
        "signing.sequence_file {}: {reason} (one `MODULE SEQUENCE` per line; written by the gateway)",
        path.display()
    )]
    Sequences {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
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

impl PublicKey {
    /// Whether `signature` is this key's over `message` (strict
    /// verification: no malleable signatures).
    pub(crate) fn verifies(&self, message: &[u8], signature: &Signature) -> bool {
        self.0.verify_strict(message, signature).is_ok()
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

    /// Signs any message (compiled code's, see [`crate::compiled`]).
    pub(crate) fn sign_message(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer;
        self.0.sign(message)
    }

    /// Signs a module file's contents for the module named in `fields`.
    pub fn sign_module(&self, wasm: &[u8], fields: SignedFields) -> ModuleSignature {
        use ed25519_dalek::Signer;
        let signature = self.0.sign(&signed_message(&fields, wasm));
        ModuleSignature {
            fields,
            key: self.public_key(),
            signature,
        }
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public_key())
    }
}

/// The tag that starts a signature file's line.
const SIGNATURE_TAG: &str = "shanhai-signature-v2";

/// What a signature binds besides the file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFields {
    /// The module name the file may be installed as.
    pub module: String,
    /// Orders the signed versions of one module: the gateway refuses a
    /// lower sequence than one it has loaded (`shanhai sign` uses the
    /// signing time in seconds unless told otherwise).
    pub sequence: u64,
    /// When the signature stops being accepted, in seconds since the Unix
    /// epoch; `None` for never.
    pub expires: Option<u64>,
}

/// A module's signature, what it binds, and the key that made it; its text
/// form (the `.sig` file) is one line,
/// `shanhai-signature-v2 module=NAME sequence=N expires=T|never key=ed25519:HEX signature=HEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSignature {
    /// What is signed besides the bytes.
    pub fields: SignedFields,
    /// The key that signed.
    pub key: PublicKey,
    /// The signature over [`signed_message`].
    pub signature: Signature,
}

impl fmt::Display for ModuleSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expires = self
            .fields
            .expires
            .map_or_else(|| "never".to_owned(), |t| t.to_string());
        write!(
            f,
            "{SIGNATURE_TAG} module={} sequence={} expires={expires} key={} signature={}",
            self.fields.module,
            self.fields.sequence,
            self.key,
            hex(&self.signature.to_bytes())
        )
    }
}

/// Why a signature's text was refused before any check.
enum ParseFailure {
    /// A version 1 signature.
    Outdated,
    /// Not a signature at all.
    Malformed(String),
}

impl ModuleSignature {
    fn parse(text: &str) -> Result<Self, ParseFailure> {
        let text = text.trim();
        if text.starts_with(PUBLIC_TAG) && text.matches(':').count() == 2 {
            return Err(ParseFailure::Outdated);
        }
        let malformed = |reason: String| ParseFailure::Malformed(reason);
        let mut words = text.split_ascii_whitespace();
        if words.next() != Some(SIGNATURE_TAG) {
            return Err(malformed(format!(
                "it does not start with `{SIGNATURE_TAG}`"
            )));
        }
        let fields = signature_fields(
            words,
            &["module", "sequence", "expires", "key", "signature"],
        )
        .map_err(malformed)?;
        let field = |name: &str| {
            fields
                .get(name)
                .copied()
                .ok_or_else(|| malformed(format!("field `{name}` is missing")))
        };
        let module = field("module")?;
        if !crate::names::is_module_name(module) {
            return Err(malformed(format!("`{module}` is not a module name")));
        }
        let sequence = field("sequence")?
            .parse::<u64>()
            .map_err(|_| malformed("sequence is not a whole number".into()))?;
        let expires =
            match field("expires")? {
                "never" => None,
                value => Some(value.parse::<u64>().map_err(|_| {
                    malformed("expires is neither `never` nor unix seconds".into())
                })?),
            };
        let key = field("key")?
            .parse::<PublicKey>()
            .map_err(|err| match err {
                SigningError::Format { reason, .. } => malformed(format!("key: {reason}")),
                other => malformed(other.to_string()),
            })?;
        let signature = unhex::<64>(field("signature")?)
            .map_err(|reason| malformed(format!("signature: {reason}")))?;
        Ok(Self {
            fields: SignedFields {
                module: module.to_owned(),
                sequence,
                expires,
            },
            key,
            signature: Signature::from_bytes(&signature),
        })
    }
}

impl FromStr for ModuleSignature {
    type Err = SigningError;

    fn from_str(text: &str) -> Result<Self, SigningError> {
        Self::parse(text).map_err(|failure| match failure {
            ParseFailure::Outdated => format_error(
                "a version 2 module signature",
                "a version 1 signature, which does not name its module: re-sign it",
            ),
            ParseFailure::Malformed(reason) => format_error("a module signature", reason),
        })
    }
}

/// The `FIELD=VALUE` words of a signature line after its tag, each one of
/// `allowed` and given once; the error says which word is wrong. Shared by
/// module signatures and compiled-code signatures (`crate::compiled`).
pub(crate) fn signature_fields<'a>(
    words: impl Iterator<Item = &'a str>,
    allowed: &[&str],
) -> Result<BTreeMap<&'a str, &'a str>, String> {
    let mut fields = BTreeMap::new();
    for word in words {
        let (name, value) = word
            .split_once('=')
            .ok_or_else(|| format!("`{word}` is not `FIELD=VALUE`"))?;
        if !allowed.contains(&name) {
            return Err(format!("unknown field `{name}`"));
        }
        if fields.insert(name, value).is_some() {
            return Err(format!("field `{name}` appears twice"));
        }
    }
    Ok(fields)
}

/// The message a signature covers: a fixed first line, then the fields and
/// the file's SHA-256, one per line. Text, so that `docs` can state it and
/// other tools can build it; the module name cannot hold a newline.
pub fn signed_message(fields: &SignedFields, wasm: &[u8]) -> Vec<u8> {
    let expires = fields
        .expires
        .map_or_else(|| "never".to_owned(), |t| t.to_string());
    format!(
        "shanhai module signature v2\nmodule={}\nsequence={}\nexpires={expires}\nsha256={}\n",
        fields.module,
        fields.sequence,
        hex(&module_digest(wasm))
    )
    .into_bytes()
}

/// The SHA-256 of a module file, part of what is signed.
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

/// Checks module file `file`, whose contents are `wasm`, to be installed
/// as module `module`, against its signature file (`FILE.sig`, see
/// [`signature_path`]) under the policy of `config` (see [`verify_bytes`]).
/// Reads the signature file only when signing is in use.
pub fn verify_module(
    config: &SigningConfig,
    module: &str,
    file: &Path,
    wasm: &[u8],
) -> Result<Option<ModuleSignature>, SigningError> {
    if !signing_in_use(config) {
        return Ok(None);
    }
    let path = signature_path(file);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == ErrorKind::NotFound => None,
        Err(source) => return Err(SigningError::Read { path, source }),
    };
    verify_bytes(config, module, file, wasm, text.as_deref())
}

/// Checks a module to be installed as `module` against the text of its
/// signature file (`None`: there is none), for uploads that carry both.
/// `file` names the module in errors. Returns the verified signature, or
/// `None` when the module loads unsigned.
///
/// | `require_signed` | `trusted_keys` | signature           | result  |
/// |------------------|----------------|---------------------|---------|
/// | false            | empty          | any                 | loads (signing off) |
/// | false            | set            | none                | loads   |
/// | any              | set            | valid, trusted key, this module's name, not expired | loads   |
/// | any              | set            | malformed, version 1, untrusted key, not matching, another name, expired | refused |
/// | true             | set            | none                | refused: unsigned |
/// | true             | empty          | any                 | refused: no trusted keys |
///
/// A signature that is present is always checked once keys are trusted: a
/// wrong one is a warning worth stopping for. A `trusted_keys` entry that
/// does not parse refuses every module while signing is in use. The
/// sequence number is checked by [`SequenceBook::check`], which knows the
/// module's history.
pub fn verify_bytes(
    config: &SigningConfig,
    module: &str,
    file: &Path,
    wasm: &[u8],
    signature: Option<&str>,
) -> Result<Option<ModuleSignature>, SigningError> {
    if !signing_in_use(config) {
        return Ok(None);
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
            Ok(None)
        };
    };
    let signature = ModuleSignature::parse(text).map_err(|failure| match failure {
        ParseFailure::Outdated => SigningError::Outdated {
            file: file.to_path_buf(),
            signature: signature_file.clone(),
        },
        ParseFailure::Malformed(reason) => SigningError::Malformed {
            file: file.to_path_buf(),
            signature: signature_file.clone(),
            reason,
        },
    })?;
    if !trusted.contains(&signature.key) {
        return Err(SigningError::Untrusted {
            file: file.to_path_buf(),
            signature: signature_file,
            key: signature.key.to_string(),
        });
    }
    // The fields are checked only once the signature proves them, so a
    // refusal never reports a name or date nobody signed.
    if signature
        .key
        .0
        .verify_strict(
            &signed_message(&signature.fields, wasm),
            &signature.signature,
        )
        .is_err()
    {
        return Err(SigningError::Mismatch {
            file: file.to_path_buf(),
            signature: signature_file,
        });
    }
    if signature.fields.module != module {
        return Err(SigningError::WrongModule {
            file: file.to_path_buf(),
            signature: signature_file,
            signed_for: signature.fields.module,
            module: module.to_owned(),
        });
    }
    if let Some(expires) = signature.fields.expires {
        let now = unix_now();
        if now >= expires {
            return Err(SigningError::Expired {
                file: file.to_path_buf(),
                signature: signature_file,
                expires,
                now,
            });
        }
    }
    Ok(Some(signature))
}

/// Seconds since the Unix epoch (0 for a clock set before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The highest signature sequence loaded per module, kept in
/// `signing.sequence_file` so that an older signed version stays refused
/// after a restart. A canary is checked against it but recorded only when
/// promoted, so a rolled-back canary does not lock out the stable version.
/// Deleting a module keeps its entry: deleting and re-uploading an old
/// version is a rollback too.
#[derive(Debug)]
pub struct SequenceBook {
    /// Where the entries persist; `None` keeps them in memory.
    path: Option<PathBuf>,
    highest: Mutex<BTreeMap<String, u64>>,
}

impl SequenceBook {
    /// Reads `path` (a missing file is an empty book; an empty path keeps
    /// the book in memory). A file that is not in the book's format fails
    /// the start rather than forgetting every module's history.
    pub fn open(path: &Path) -> Result<Self, SigningError> {
        if path.as_os_str().is_empty() {
            return Ok(Self {
                path: None,
                highest: Mutex::default(),
            });
        }
        let failed = |reason: String| SigningError::Sequences {
            path: path.to_path_buf(),
            reason,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == ErrorKind::NotFound => String::new(),
            Err(err) => return Err(failed(err.to_string())),
        };
        let mut highest = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let entry = line
                .split_once(' ')
                .filter(|(name, _)| crate::names::is_module_name(name))
                .and_then(|(name, sequence)| Some((name, sequence.parse::<u64>().ok()?)));
            let Some((name, sequence)) = entry else {
                return Err(failed(format!("line {}: `{line}`", number + 1)));
            };
            highest.insert(name.to_owned(), sequence);
        }
        Ok(Self {
            path: Some(path.to_path_buf()),
            highest: Mutex::new(highest),
        })
    }

    /// Refuses `signature` for module `module` (file `file`) if that module
    /// has loaded a higher sequence. The same sequence passes: a restart or
    /// a reload loads the same signed file again.
    pub fn check(
        &self,
        module: &str,
        file: &Path,
        signature: &ModuleSignature,
    ) -> Result<(), SigningError> {
        let highest = self.highest(module);
        match highest {
            Some(highest) if signature.fields.sequence < highest => Err(SigningError::Rollback {
                file: file.to_path_buf(),
                signature: signature_path(file),
                module: module.to_owned(),
                sequence: signature.fields.sequence,
                highest,
            }),
            _ => Ok(()),
        }
    }

    /// The highest sequence loaded for `module`.
    pub fn highest(&self, module: &str) -> Option<u64> {
        self.highest.lock().unwrap().get(module).copied()
    }

    /// Notes that `module` now serves sequence `sequence`, and writes the
    /// book when that raised its entry. A write that fails is logged: the
    /// entry still holds until the gateway restarts.
    pub fn record(&self, module: &str, sequence: u64) {
        let mut highest = self.highest.lock().unwrap();
        if highest.get(module).is_some_and(|&known| known >= sequence) {
            return;
        }
        highest.insert(module.to_owned(), sequence);
        let Some(path) = &self.path else { return };
        let text: String = highest
            .iter()
            .map(|(name, sequence)| format!("{name} {sequence}\n"))
            .collect();
        // Written while the lock is held, so two loads cannot write their
        // books in the wrong order.
        if let Err(err) = write_durably(path, text.as_bytes()) {
            tracing::error!(
                module,
                sequence,
                file = %path.display(),
                error = %err,
                "could not save the signature sequence; an older signed version would load after a restart"
            );
        }
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames
/// it over `path`, so a crash leaves the old book or the new one.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
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

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

pub(crate) fn unhex<const N: usize>(text: &str) -> Result<[u8; N], String> {
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
            sequence_file: PathBuf::new(),
        }
    }

    const WASM: &[u8] = b"\0asm\x01\0\0\0 a module";

    fn fields(module: &str, sequence: u64, expires: Option<u64>) -> SignedFields {
        SignedFields {
            module: module.into(),
            sequence,
            expires,
        }
    }

    /// `key`'s signature of `wasm` for module `hello`, sequence 1.
    fn sign(key: &SecretKey, wasm: &[u8]) -> ModuleSignature {
        key.sign_module(wasm, fields("hello", 1, None))
    }

    fn check(config: &SigningConfig, wasm: &[u8], signature: Option<&str>) -> Result<(), String> {
        verify_bytes(config, "hello", Path::new("m/hello.wasm"), wasm, signature)
            .map(|_| ())
            .map_err(|e| e.to_string())
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
        let signature = secret.sign_module(WASM, fields("hello", 42, Some(1_900_000_000)));
        let text = signature.to_string();
        assert_eq!(
            text,
            format!(
                "shanhai-signature-v2 module=hello sequence=42 expires=1900000000 key={public} signature={}",
                hex(&signature.signature.to_bytes())
            )
        );
        assert_eq!(text.parse::<ModuleSignature>().unwrap(), signature);
        // Upper-case hex and a trailing newline are accepted.
        let upper = format!(
            "{}\n",
            text.replace(
                &hex(&signature.signature.to_bytes()),
                &hex(&signature.signature.to_bytes()).to_uppercase()
            )
        );
        assert_eq!(upper.parse::<ModuleSignature>().unwrap(), signature);
        let never = secret
            .sign_module(WASM, fields("hello", 1, None))
            .to_string();
        assert!(never.contains(" expires=never "), "{never}");
        assert_eq!(
            never.parse::<ModuleSignature>().unwrap().fields.expires,
            None
        );
    }

    #[test]
    fn the_signed_message_is_the_documented_text() {
        let message = signed_message(&fields("hello", 7, None), b"");
        assert_eq!(
            String::from_utf8(message).unwrap(),
            "shanhai module signature v2\nmodule=hello\nsequence=7\nexpires=never\n\
             sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        );
    }

    #[test]
    fn generated_keys_differ_and_sign() {
        let (a, b) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        assert_ne!(a.public_key(), b.public_key());
        let signature = sign(&a, WASM).to_string();
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
        let signature = sign(&a, WASM);
        for require in [true, false] {
            let verified = verify_bytes(
                &config(require, &[&b, &a]),
                "hello",
                Path::new("m/hello.wasm"),
                WASM,
                Some(&signature.to_string()),
            );
            assert_eq!(verified.unwrap(), Some(signature.clone()));
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
        let signature = sign(&a, WASM).to_string();
        let mut tampered = WASM.to_vec();
        tampered.push(0);
        for require in [true, false] {
            let err = check(&config(require, &[&a]), &tampered, Some(&signature)).unwrap_err();
            assert!(err.contains("does not match the module"), "{err}");
            assert!(err.starts_with("m/hello.wasm: bad signature"), "{err}");
        }
    }

    #[test]
    fn edited_fields_break_the_signature() {
        let a = key(1);
        let signature = a
            .sign_module(WASM, fields("billing", 5, Some(2_000_000_000)))
            .to_string();
        for edited in [
            signature.replace("module=billing", "module=hello"),
            signature.replace("sequence=5", "sequence=9"),
            signature.replace("expires=2000000000", "expires=never"),
        ] {
            let err = verify_bytes(
                &config(true, &[&a]),
                "hello",
                Path::new("m/hello.wasm"),
                WASM,
                Some(&edited),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("does not match the module"), "{edited}: {err}");
        }
    }

    #[test]
    fn a_signature_for_another_module_is_refused() {
        let a = key(1);
        let signature = a.sign_module(WASM, fields("hello", 1, None)).to_string();
        let err = verify_bytes(
            &config(true, &[&a]),
            "billing",
            Path::new("m/billing.wasm"),
            WASM,
            Some(&signature),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("m/billing.wasm: signed for another module:")
                && err.contains("for module `hello`, not `billing`")
                && err.contains("--module billing"),
            "{err}"
        );
    }

    #[test]
    fn expired_signatures_are_refused() {
        let a = key(1);
        let now = unix_now();
        let past = a
            .sign_module(WASM, fields("hello", 1, Some(now - 1)))
            .to_string();
        let err = check(&config(true, &[&a]), WASM, Some(&past)).unwrap_err();
        assert!(err.contains("expired signature"), "{err}");
        assert!(err.contains(&format!("expired at {}", now - 1)), "{err}");
        let future = a
            .sign_module(WASM, fields("hello", 1, Some(now + 3600)))
            .to_string();
        assert_eq!(check(&config(true, &[&a]), WASM, Some(&future)), Ok(()));
    }

    #[test]
    fn version_1_signatures_are_refused_with_a_way_out() {
        let a = key(1);
        use ed25519_dalek::Signer;
        let v1 = format!(
            "{}:{}",
            a.public_key(),
            hex(&a.0.sign(&module_digest(WASM)).to_bytes())
        );
        let err = check(&config(false, &[&a]), WASM, Some(&v1)).unwrap_err();
        assert!(
            err.starts_with("m/hello.wasm: old signature:")
                && err.contains("version 1")
                && err.contains("shanhai sign m/hello.wasm --key KEY"),
            "{err}"
        );
    }

    #[test]
    fn untrusted_keys_are_refused() {
        let (a, b) = (key(1), key(2));
        let signature = sign(&b, WASM).to_string();
        for require in [true, false] {
            let err = check(&config(require, &[&a]), WASM, Some(&signature)).unwrap_err();
            assert!(err.contains("not signed by a trusted key"), "{err}");
            assert!(err.contains(&b.public_key().to_string()), "{err}");
        }
        // Claiming a trusted key does not help: the signature must verify.
        let forged = signature.replace(&b.public_key().to_string(), &a.public_key().to_string());
        let err = check(&config(true, &[&a]), WASM, Some(&forged)).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let a = key(1);
        let good = sign(&a, WASM).to_string();
        for (text, reason) in [
            ("", "does not start with `shanhai-signature-v2`"),
            ("garbage", "does not start with"),
            (&a.public_key().to_string(), "does not start with"),
            (
                "shanhai-signature-v2 module=hello",
                "field `sequence` is missing",
            ),
            (&format!("{good} module=x"), "field `module` appears twice"),
            (&format!("{good} colour=blue"), "unknown field `colour`"),
            (
                &good.replace("module=hello", "module=../x"),
                "not a module name",
            ),
            (
                &good.replace("sequence=1", "sequence=-1"),
                "sequence is not a whole number",
            ),
            (
                &good.replace("expires=never", "expires=soon"),
                "expires is neither",
            ),
        ] {
            let err = check(&config(false, &[&a]), WASM, Some(text)).unwrap_err();
            assert!(err.contains("is not a Shanhai signature"), "{text}: {err}");
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn requiring_signatures_without_trusted_keys_refuses_everything() {
        let a = key(1);
        let signature = sign(&a, WASM).to_string();
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
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hello.wasm");
        let a = key(1);
        let config = config(true, &[&a]);
        let err = verify_module(&config, "hello", &file, WASM).unwrap_err();
        assert!(matches!(err, SigningError::Unsigned { .. }), "{err}");
        std::fs::write(
            dir.path().join("hello.wasm.sig"),
            sign(&a, WASM).to_string(),
        )
        .unwrap();
        let verified = verify_module(&config, "hello", &file, WASM).unwrap();
        assert_eq!(verified.map(|s| s.fields.sequence), Some(1));
    }

    #[test]
    fn the_sequence_book_refuses_older_versions_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/signing.sequences");
        let a = key(1);
        let file = Path::new("m/hello.wasm");
        let at = |sequence| a.sign_module(WASM, fields("hello", sequence, None));
        let book = SequenceBook::open(&path).unwrap();
        book.check("hello", file, &at(5)).unwrap();
        book.record("hello", 5);
        book.record("other", 9);
        // The same sequence loads again (a restart, a reload); a lower one
        // does not; a higher one does.
        book.check("hello", file, &at(5)).unwrap();
        let err = book.check("hello", file, &at(4)).unwrap_err().to_string();
        assert_eq!(
            err,
            "m/hello.wasm: rollback refused: m/hello.wasm.sig has sequence 4, but module `hello` has already loaded sequence 5; sign the version you want to serve again with a higher --sequence"
        );
        // Recording a lower sequence never lowers the entry.
        book.record("hello", 3);
        assert_eq!(book.highest("hello"), Some(5));
        let reopened = SequenceBook::open(&path).unwrap();
        assert_eq!(reopened.highest("hello"), Some(5));
        assert_eq!(reopened.highest("other"), Some(9));
        assert!(reopened.check("hello", file, &at(4)).is_err());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "hello 5\nother 9\n"
        );
    }

    #[test]
    fn a_damaged_sequence_book_fails_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.sequences");
        std::fs::write(&path, "hello 5\nhello five\n").unwrap();
        let err = SequenceBook::open(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "signing.sequence_file {}: line 2: `hello five`",
                path.display()
            )),
            "{err}"
        );
        // An empty path keeps the book in memory, and writes nothing.
        let memory = SequenceBook::open(Path::new("")).unwrap();
        memory.record("hello", 1);
        assert_eq!(memory.highest("hello"), Some(1));
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
