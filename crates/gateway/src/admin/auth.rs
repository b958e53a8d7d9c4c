//! Bearer-token authentication of the admin HTTP listener.
//!
//! The token comes from `admin.token`, else from the environment variable
//! named by `admin.token_env`. Without one the listener must be on a
//! loopback address, where only local processes can reach it.

use http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use crate::config::AdminConfig;

/// Checks the `Authorization` header of admin requests.
pub(crate) struct AdminAuth {
    /// SHA-256 of the token. Comparing digests keeps the comparison's time
    /// independent of both the token's content and its length.
    token: Option<[u8; 32]>,
}

impl AdminAuth {
    /// Resolves the token, and refuses a non-loopback listener without one.
    pub(crate) fn from_config(admin: &AdminConfig) -> anyhow::Result<Self> {
        let from_env = || {
            (!admin.token_env.is_empty())
                .then(|| std::env::var(&admin.token_env).ok())
                .flatten()
        };
        // An empty token would let `Bearer ` in: it counts as no token.
        let token = admin
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(from_env)
            .filter(|t| !t.is_empty());
        match &token {
            Some(_) => {}
            None if admin.listen.ip().is_loopback() => tracing::warn!(
                listen = %admin.listen,
                "admin API without a token: anyone on this machine can change modules; set admin.token or ${}",
                admin.token_env
            ),
            None => anyhow::bail!(
                "admin.listen = {} is not a loopback address, and no admin token is set: \
                 set admin.token (or the environment variable named by admin.token_env, {}), \
                 or listen on 127.0.0.1",
                admin.listen,
                admin.token_env
            ),
        }
        Ok(Self {
            token: token.map(|t| digest(t.as_bytes())),
        })
    }

    /// Whether requests must carry the token.
    pub(crate) fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `headers` carry the right bearer token (always, without one).
    pub(crate) fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| bearer(value.as_bytes()))
        else {
            return false;
        };
        constant_time_eq(&digest(given), expected)
    }
}

/// The credentials of `Bearer CREDENTIALS` (the scheme is case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(token: Option<&str>, listen: &str) -> anyhow::Result<AdminAuth> {
        AdminAuth::from_config(&AdminConfig {
            listen: listen.parse().unwrap(),
            token: token.map(str::to_owned),
            token_env: String::new(),
            ..AdminConfig::default()
        })
    }

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let auth = auth(Some("s3cret"), "0.0.0.0:9090").unwrap();
        assert!(auth.required());
        assert!(auth.allows(&headers("Bearer s3cret")));
        assert!(auth.allows(&headers("bearer s3cret")));
        assert!(!auth.allows(&headers("Bearer s3cre")));
        assert!(!auth.allows(&headers("Bearer s3cret2")));
        assert!(!auth.allows(&headers("Basic s3cret")));
        assert!(!auth.allows(&headers("Bearer ")));
        assert!(!auth.allows(&HeaderMap::new()));
    }

    #[test]
    fn no_token_means_loopback_only() {
        let err = auth(None, "0.0.0.0:9090").err().unwrap().to_string();
        assert!(err.contains("admin.listen"), "{err}");
        assert!(auth(Some(""), "[::]:9090").is_err());
        let open = auth(None, "[::1]:9090").unwrap();
        assert!(!open.required());
        assert!(open.allows(&HeaderMap::new()));
    }
}
