//! The on-disk cache of compiled code.
//!
//! Compiling a 4 MB Go module with Cranelift takes seconds on a small box;
//! loading the serialized artifact takes well under a millisecond. Entries
//! are keyed by the module's SHA-256 and a hash of everything that makes
//! compiled code incompatible: the wasmtime version, the target (x86-64,
//! aarch64, or a Pulley target) and the engine's compilation settings, so
//! binaries of different architectures can share a folder. Writes go to a
//! temporary file (or a compile worker's staging file) that is renamed into
//! place, so concurrent processes sharing the folder never read half an
//! entry.
//!
//! Compiled code is machine code that wasmtime maps and runs without
//! verifying it, so an entry is only as trustworthy as whoever could write
//! it. Each entry therefore carries an HMAC-SHA256 (a `.mac` file beside
//! it) over its name and bytes, under a key kept outside the cache folder
//! with mode 0600. An entry whose code fails the check (planted, copied
//! from another module, truncated) is discarded and the module recompiled:
//! signing a module means nothing if its compiled form can be swapped.

use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

use crate::error::ImportError;
use crate::secret_file::{self, SecretFileError, hex};

/// A folder of compiled modules for one engine configuration.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
    mac_key: [u8; 32],
}

/// Why the cache folder or its key can't be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading or creating the folder or the key failed.
    #[error("compile cache {path}: {source}")]
    Io {
        /// The folder or key file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Someone other than this user could plant code in the folder.
    #[error(
        "compile cache {path} is {problem}: anyone who can write there can make the gateway run their code; \
         `chmod 700 {path}` (or choose another server.cache_dir)"
    )]
    Unsafe {
        /// The folder.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The key file can't be read, is accessible to others, or malformed.
    #[error("compile-cache key: {0}")]
    Key(#[from] SecretFileError),
}

impl CompileCache {
    /// Opens (creating it with mode 0700 if needed) the cache in `dir` for
    /// `engine`, with the authentication key in `key_file` (by default
    /// `DIR.key`, beside the folder). A folder writable by group or others,
    /// or owned by another user, is refused.
    pub fn open(dir: &Path, key_file: Option<&Path>, engine: &Engine) -> Result<Self, CacheError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        check_private_folder(dir)?;
        let key_file = key_file.map_or_else(|| default_key_file(dir), Path::to_path_buf);
        let mac_key = secret_file::load_or_create(&key_file)?;
        remove_stale_staging(dir);
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
            mac_key,
        })
    }

    /// The folder entries live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_name(&self, module_sha256: &str) -> String {
        format!("{module_sha256}-{}", self.engine_key)
    }

    fn code_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.cwasm"))
    }

    fn mac_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.mac"))
    }

    /// The authentication code of an entry: it covers the entry's name,
    /// so code copied from another module's entry fails too.
    fn mac(&self, name: &str, code: &mut impl Read) -> io::Result<[u8; 32]> {
        let mut mac = HmacSha256::new(&self.mac_key);
        mac.update(name.as_bytes());
        mac.update(b"\n");
        let mut buf = vec![0; 64 << 10];
        loop {
            match code.read(&mut buf)? {
                0 => break,
                n => mac.update(&buf[..n]),
            }
        }
        Ok(mac.finish())
    }

    /// Loads the compiled form of the module with this hash, if cached,
    /// authentic and still loadable by this engine.
    pub(crate) fn load(&self, engine: &Engine, module_sha256: &str) -> Option<Module> {
        let name = self.entry_name(module_sha256);
        let path = self.code_path(&name);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "can't read compile-cache entry; recompiling");
                return None;
            }
        };
        let expected = std::fs::read_to_string(self.mac_path(&name)).ok();
        let actual = self.mac(&name, &mut file).map(|mac| hex(&mac));
        let authentic = match (&expected, &actual) {
            (Some(expected), Ok(actual)) => {
                constant_time_eq(expected.trim().as_bytes(), actual.as_bytes())
            }
            _ => false,
        };
        if !authentic {
            tracing::warn!(
                path = %path.display(),
                reason = if expected.is_none() { "no authentication code" } else { "authentication code mismatch" },
                "compile-cache entry failed authentication: discarding it and recompiling"
            );
            self.discard(&name);
            return None;
        }
        // SAFETY: `deserialize_open_file` trusts the file to be wasmtime's
        // own output. This very file (the open handle, not the path, so it
        // can't be swapped after the check) was just authenticated with a
        // key only this user can read, over this entry's name: only `store`
        // below, from `Module::serialize` of this module's bytes, produces
        // such a pair. wasmtime still checks the header's version and
        // settings and refuses a mismatch.
        #[allow(unsafe_code)]
        match unsafe { Module::deserialize_open_file(engine, file) } {
            Ok(module) => Some(module),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "ignoring unusable compile-cache entry");
                self.discard(&name);
                None
            }
        }
    }

    fn discard(&self, name: &str) {
        let _ = std::fs::remove_file(self.code_path(name));
        let _ = std::fs::remove_file(self.mac_path(name));
    }

    /// Stores code compiled elsewhere as the entry of the module whose
    /// SHA-256 is `module_sha256`, once wasmtime has accepted it for
    /// `engine`: its architecture, CPU features, memory layout and
    /// settings. Returns wasmtime's reason when it does not fit.
    pub(crate) fn import(
        &self,
        engine: &Engine,
        module_sha256: &str,
        code: &[u8],
    ) -> Result<(), ImportError> {
        if Engine::detect_precompiled(code) != Some(wasmtime::Precompiled::Module) {
            return Err(ImportError::Incompatible(
                "not a compiled module (expected `shanhai compile --target` output)".into(),
            ));
        }
        // SAFETY: the caller authenticated `code` as the output of
        // `shanhai compile` by a trusted key (`Runtime::import_compiled`).
        // wasmtime checks its header (version, target, settings, layout)
        // against this engine before it maps anything.
        #[allow(unsafe_code)]
        let checked = unsafe { Module::deserialize(engine, code) };
        checked.map_err(|err| ImportError::Incompatible(format!("{err:#}")))?;
        let name = self.entry_name(module_sha256);
        self.mac(&name, &mut &code[..])
            .and_then(|mac| write_atomically(&self.mac_path(&name), hex(&mac).as_bytes()))
            .and_then(|()| write_atomically(&self.code_path(&name), code))
            .map_err(|err| ImportError::Io(format!("writing {}: {err}", self.dir.display())))
    }

    /// A path in the cache folder, not yet taken, for a compile worker to
    /// write the code of the module whose SHA-256 is `module_sha256` to;
    /// [`adopt`](Self::adopt) then makes it that module's entry.
    pub(crate) fn staging_path(&self, module_sha256: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let serial = NEXT.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(
            "{STAGING_PREFIX}{}-{}-{serial}.cwasm",
            self.entry_name(module_sha256),
            std::process::id()
        ))
    }

    /// Makes `staged`, the code a compile worker wrote for the module whose
    /// SHA-256 is `module_sha256`, that module's entry: authenticated and
    /// renamed into place (the worker synced it to disk). `staged` is gone
    /// afterwards either way.
    pub(crate) fn adopt(&self, staged: &Path, module_sha256: &str) -> io::Result<()> {
        let name = self.entry_name(module_sha256);
        let result = File::open(staged)
            .and_then(|mut code| self.mac(&name, &mut code))
            .and_then(|mac| write_atomically(&self.mac_path(&name), hex(&mac).as_bytes()))
            .and_then(|()| std::fs::rename(staged, self.code_path(&name)));
        if result.is_err() {
            let _ = std::fs::remove_file(staged);
        }
        result
    }

    /// Stores a compiled module; failures are logged, never fatal.
    pub(crate) fn store(&self, module: &Module, module_sha256: &str) {
        let name = self.entry_name(module_sha256);
        let result = module
            .serialize()
            .map_err(io::Error::other)
            .and_then(|bytes| {
                let mac = self.mac(&name, &mut bytes.as_slice())?;
                // The code goes in last: a reader that finds the code finds
                // its code's authentication already in place.
                write_atomically(&self.mac_path(&name), hex(&mac).as_bytes())?;
                write_atomically(&self.code_path(&name), &bytes)
            });
        if let Err(err) = result {
            tracing::warn!(dir = %self.dir.display(), error = %err, "could not write compile-cache entry");
        }
    }
}

/// How staged code from a compile worker is named until it is adopted.
const STAGING_PREFIX: &str = ".staging-";

/// Staged code older than this was left by a gateway that died between its
/// worker's exit and the adoption; younger files may be another gateway's
/// compile in progress (the folder can be shared).
const STALE_STAGING: Duration = Duration::from_secs(3600);

/// Removes what dead gateways' compile workers left in `dir`.
fn remove_stale_staging(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age > STALE_STAGING));
        if stale
            && entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Where the key lives unless configured: beside the folder, never in it,
/// so that whoever may fill the cache (a shared volume, a deploy tool) is
/// not thereby able to forge entries.
fn default_key_file(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".key");
    dir.with_file_name(name)
}

fn check_private_folder(dir: &Path) -> Result<(), CacheError> {
    let meta = std::fs::metadata(dir).map_err(|source| CacheError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    let problem = if mode & 0o022 != 0 {
        Some(format!("writable by group or others (mode {mode:03o})"))
    } else if meta.uid() != euid {
        Some(format!(
            "owned by uid {}, not by this process's uid {euid}",
            meta.uid()
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(CacheError::Unsafe {
            path: dir.to_path_buf(),
            problem,
        }),
        None => Ok(()),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = File::create(&tmp)?;
    io::Write::write_all(&mut file, bytes)?;
    // On disk before it is served from: the kernel can page out only clean
    // file pages, so an idle module's fresh code would otherwise stay
    // resident until writeback (half a minute), and a crash could leave a
    // torn entry behind the new name.
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 (RFC 2104), streamed.
struct HmacSha256 {
    inner: Sha256,
    outer_pad: [u8; 64],
}

impl HmacSha256 {
    fn new(key: &[u8; 32]) -> Self {
        let mut inner_pad = [0x36u8; 64];
        let mut outer_pad = [0x5cu8; 64];
        for (i, byte) in key.iter().enumerate() {
            inner_pad[i] ^= byte;
            outer_pad[i] ^= byte;
        }
        let mut inner = Sha256::new();
        inner.update(inner_pad);
        Self { inner, outer_pad }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
    }

    fn finish(self) -> [u8; 32] {
        let mut outer = Sha256::new();
        outer.update(self.outer_pad);
        outer.update(self.inner.finalize());
        outer.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_a_reference_implementation() {
        // Computed with Python's hmac module:
        // hmac.new(bytes(range(32)), b"what do ya want for nothing?", sha256)
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let mut mac = HmacSha256::new(&key);
        mac.update(b"what do ya ");
        mac.update(b"want for nothing?");
        assert_eq!(
            hex(&mac.finish()),
            "099805f4ac310786968565c098db515cc50862b420ae31e20238312344bed36a"
        );
    }

    #[test]
    fn the_key_lives_beside_the_folder() {
        assert_eq!(
            default_key_file(Path::new(".shanhai/cache")),
            Path::new(".shanhai/cache.key")
        );
        assert_eq!(
            default_key_file(Path::new("/var/cache/shanhai/")),
            Path::new("/var/cache/shanhai.key")
        );
    }

    #[test]
    fn entries_of_another_target_have_other_names() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        let key = |config: &wasmtime::Config| {
            let engine = Engine::new(config).unwrap();
            CompileCache::open(&dir.path().join("cache"), Some(&key_file), &engine)
                .unwrap()
                .entry_name("m")
        };
        let native = key(&wasmtime::Config::new());
        let mut pulley = wasmtime::Config::new();
        pulley.target("pulley64").unwrap();
        // Only the host's Cranelift backend and Pulley's are built in, so
        // Pulley stands for "another target" here.
        assert_ne!(native, key(&pulley));
    }

    #[test]
    fn folders_others_can_write_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_private_folder(&cache).unwrap_err().to_string();
        assert!(
            err.contains("writable by group or others (mode 777)") && err.contains("chmod 700"),
            "{err}"
        );
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_private_folder(&cache).unwrap();
    }
}
