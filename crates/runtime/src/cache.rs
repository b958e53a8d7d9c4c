//! The on-disk cache of compiled code.
//!
//! Compiling a 4 MB Go module with Cranelift takes seconds on a small box;
//! loading the serialized artifact takes well under a millisecond. Entries
//! are keyed by the module's SHA-256 and a hash of everything that makes
//! compiled code incompatible: the wasmtime version and the engine's
//! compilation settings. Writes go to a temporary file that is renamed into
//! place, so concurrent processes sharing the folder never read half an
//! entry.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use wasmtime::{Engine, Module};

/// A folder of compiled modules for one engine configuration.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    /// Opens (creating it if needed) the cache in `dir` for `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    /// The folder entries live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, module_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{module_sha256}-{}.cwasm", self.engine_key))
    }

    /// Loads the compiled form of the module with this hash, if cached and
    /// still loadable by this engine.
    pub(crate) fn load(&self, engine: &Engine, module_sha256: &str) -> Option<Module> {
        let path = self.entry_path(module_sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: `deserialize_file` trusts the file to be wasmtime's own
        // output. Entries are written only by `store` below from
        // `Module::serialize`, into a folder the operator gives this process,
        // and named by an engine-compatibility hash; wasmtime still checks
        // the header's version and settings and refuses a mismatch.
        #[allow(unsafe_code)]
        match unsafe { Module::deserialize_file(engine, &path) } {
            Ok(module) => Some(module),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "ignoring unusable compile-cache entry");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a compiled module; failures are logged, never fatal.
    pub(crate) fn store(&self, module: &Module, module_sha256: &str) {
        let result = module
            .serialize()
            .map_err(io::Error::other)
            .and_then(|bytes| {
                let path = self.entry_path(module_sha256);
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, &path)
            });
        if let Err(err) = result {
            tracing::warn!(dir = %self.dir.display(), error = %err, "could not write compile-cache entry");
        }
    }
}
