//! Small secrets kept in files only this user can read: the compile
//! cache's authentication key and the admin API's generated token.
//!
//! A secret is 32 random bytes written as 64 lowercase hex digits, in a
//! file created with mode 0600. A file that group or others can read or
//! write is refused rather than used or silently tightened: someone may
//! already have read it, so the operator should decide.

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a secret file can't be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// Reading or creating it failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Group or others may read or write it.
    #[error("{} is accessible to group or others (mode {mode:03o}): `chmod 600 {}`", path.display(), path.display())]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It does not hold 64 hex digits.
    #[error("{} does not hold 64 hex digits: delete it to make a new one", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
    },
}

/// Reads the secret in `path`, creating it (and its folder, mode 0700) if
/// missing. Two processes starting at once agree on one secret: each
/// writes its own candidate and hard-links it into place, which fails if
/// one is there already.
pub fn load_or_create(path: &Path) -> Result<[u8; 32], SecretFileError> {
    let io_err = |source| SecretFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io_err)?;
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|err| io_err(io::Error::other(err.to_string())))?;
        let mut candidate = path.as_os_str().to_os_string();
        candidate.push(format!(".tmp{}", std::process::id()));
        let candidate = PathBuf::from(candidate);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&candidate)
            .and_then(|mut file| file.write_all(hex(&secret).as_bytes()));
        let linked = written.and_then(|()| match std::fs::hard_link(&candidate, path) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => Err(err),
            _ => Ok(()),
        });
        let _ = std::fs::remove_file(&candidate);
        linked.map_err(io_err)?;
        tracing::info!(path = %path.display(), "created a secret file (mode 0600)");
    }
    let mode = std::fs::metadata(path)
        .map_err(io_err)?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io_err)?;
    parse(text.trim()).ok_or_else(|| SecretFileError::Malformed {
        path: path.to_path_buf(),
    })
}

fn parse(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut secret = [0u8; 32];
    for (byte, pair) in secret.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(secret)
}

/// Lowercase hex, as secrets are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/cache.key");
        let first = load_or_create(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(load_or_create(&path).unwrap(), first);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), hex(&first));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(
            err.contains("mode 644") && err.contains("chmod 600"),
            "{err}"
        );

        std::fs::write(&path, "not hex").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
    }
}
