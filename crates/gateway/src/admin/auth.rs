//! Who may use the admin HTTP listener: a bearer token, and a check that
//! the request was meant for this listener and not sent by a web page.
//!
//! The token comes from `admin.token`, else from the environment variable
//! named by `admin.token_env`, else (on a loopback listener) from
//! `admin.token_file`, which is generated at first start with mode 0600 and
//! which the CLI reads. A non-loopback listener needs a token set on
//! purpose; a loopback one may run without (`token_file = ""`).
//!
//! A token alone does not stop a browser: a page the operator opens can
//! send requests to `127.0.0.1:9090`, and by DNS rebinding
//! (`evil.example` resolving to 127.0.0.1) even read the answers. So every
//! request must name this listener in `Host` (an IP address, `localhost`,
//! or a name in `admin.allowed_hosts`: a rebinding page's `Host` is its own
//! name), and a request a browser marks as coming from another origin
//! (`Origin`, `Sec-Fetch-Site: cross-site`) is refused.

use std::net::IpAddr;
use std::path::Path;

use http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use crate::config::AdminConfig;

/// Checks the `Authorization`, `Host` and `Origin` headers of admin
/// requests.
pub(crate) struct AdminAuth {
    /// SHA-256 of the token. Comparing digests keeps the comparison's time
    /// independent of both the token's content and its length.
    token: Option<[u8; 32]>,
    /// Where the token was generated, if it was.
    token_file: Option<std::path::PathBuf>,
    /// Host names (lowercase) besides IP addresses and `localhost`.
    allowed_hosts: Vec<String>,
}

/// Why a request was refused before authentication.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The error kind of the JSON body.
    pub(crate) kind: &'static str,
    /// What went wrong, and what to do.
    pub(crate) message: String,
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
        let mut token = admin
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(from_env)
            .filter(|t| !t.is_empty());
        let mut token_file = None;
        match &token {
            Some(_) => {}
            None if admin.listen.ip().is_loopback() && !admin.token_file.as_os_str().is_empty() => {
                token = Some(generated_token(&admin.token_file)?);
                token_file = Some(admin.token_file.clone());
            }
            None if admin.listen.ip().is_loopback() => tracing::warn!(
                listen = %admin.listen,
                "admin API without a token (admin.token_file = \"\"): anyone on this machine can change modules"
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
            token_file,
            allowed_hosts: admin
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        })
    }

    /// Whether requests must carry the token.
    pub(crate) fn required(&self) -> bool {
        self.token.is_some()
    }

    /// The file the token was generated into, when it was.
    pub(crate) fn token_file(&self) -> Option<&Path> {
        self.token_file.as_deref()
    }

    /// Refuses a request meant for another host (DNS rebinding) or sent by
    /// a page of another origin. Applies to every request, public ones too.
    pub(crate) fn check_origin(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers
            .get(header::HOST)
            .map(|value| value.to_str().unwrap_or("\u{fffd}"));
        if let Some(host) = host
            && !self.host_allowed(host)
        {
            return Err(Refusal {
                kind: "forbidden_host",
                message: format!(
                    "Host `{host}` is not this admin listener: use its IP address or localhost, \
                     or add the name to admin.allowed_hosts"
                ),
            });
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let same = host.is_some_and(|host| {
                let origin = origin.as_bytes();
                [b"http://".as_slice(), b"https://"].iter().any(|scheme| {
                    origin.len() == scheme.len() + host.len()
                        && origin.starts_with(scheme)
                        && origin[scheme.len()..].eq_ignore_ascii_case(host.as_bytes())
                })
            });
            if !same {
                return Err(Refusal {
                    kind: "forbidden_origin",
                    message: format!(
                        "cross-origin request refused: Origin `{}` is not this admin listener",
                        String::from_utf8_lossy(origin.as_bytes())
                    ),
                });
            }
        }
        if headers
            .get("sec-fetch-site")
            .is_some_and(|site| site.as_bytes().eq_ignore_ascii_case(b"cross-site"))
        {
            return Err(Refusal {
                kind: "forbidden_origin",
                message: "cross-site request refused (Sec-Fetch-Site: cross-site)".into(),
            });
        }
        Ok(())
    }

    /// An IP literal can't be rebound, `localhost` resolves only here, and
    /// the operator vouches for configured names.
    fn host_allowed(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((ip, port))
                    if port.is_empty() || port.strip_prefix(':').is_some_and(is_port) =>
                {
                    return ip.parse::<std::net::Ipv6Addr>().is_ok();
                }
                _ => return false,
            },
            None => match host.rsplit_once(':') {
                Some((name, port)) if is_port(port) => name,
                Some(_) => return false,
                None => host,
            },
        };
        name.parse::<IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self
                .allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(name))
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

/// The port of a `Host` header (after the colon).
fn is_port(port: &str) -> bool {
    (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit())
}

/// The token in `path`, generated (mode 0600) at first start.
fn generated_token(path: &Path) -> anyhow::Result<String> {
    let secret = shanhai_runtime::secret_file::load_or_create(path)
        .map_err(|err| anyhow::anyhow!("admin.token_file: {err}"))?;
    Ok(shanhai_runtime::secret_file::hex(&secret))
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
            token_file: Default::default(),
            allowed_hosts: vec!["gw.lan".into()],
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

    fn with(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        headers
    }

    #[test]
    fn hosts_must_name_this_listener() {
        let auth = auth(Some("t"), "127.0.0.1:9090").unwrap();
        for host in [
            "127.0.0.1:9090",
            "127.0.0.1",
            "[::1]:9090",
            "[::1]",
            "192.168.1.20:9090",
            "LOCALHOST:9090",
            "gw.lan",
            "GW.LAN:9090",
        ] {
            assert_eq!(
                auth.check_origin(&with(&[("host", host)])),
                Ok(()),
                "{host}"
            );
        }
        for host in [
            "evil.example:9090",
            "evil.example",
            "127.0.0.1.nip.io:9090",
            "localhost.evil.example",
            "[::1]x",
            "gw.lan:90x",
            "[evil]:9090",
        ] {
            let refusal = auth.check_origin(&with(&[("host", host)])).unwrap_err();
            assert_eq!(refusal.kind, "forbidden_host", "{host}");
            assert!(
                refusal.message.contains("admin.allowed_hosts"),
                "{}",
                refusal.message
            );
        }
        // HTTP/1.0 clients may send no Host: nothing to rebind.
        assert_eq!(auth.check_origin(&HeaderMap::new()), Ok(()));
    }

    #[test]
    fn foreign_origins_are_refused() {
        let auth = auth(None, "127.0.0.1:9090").unwrap();
        let host = ("host", "127.0.0.1:9090");
        assert_eq!(
            auth.check_origin(&with(&[host, ("origin", "http://127.0.0.1:9090")])),
            Ok(())
        );
        assert_eq!(
            auth.check_origin(&with(&[host, ("origin", "https://127.0.0.1:9090")])),
            Ok(())
        );
        assert_eq!(
            auth.check_origin(&with(&[host, ("sec-fetch-site", "same-origin")])),
            Ok(())
        );
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:9091",
            "http://127.0.0.1:90900",
            "null",
            "",
        ] {
            let refusal = auth
                .check_origin(&with(&[host, ("origin", origin)]))
                .unwrap_err();
            assert_eq!(refusal.kind, "forbidden_origin", "{origin}");
        }
        let refusal = auth
            .check_origin(&with(&[host, ("sec-fetch-site", "cross-site")]))
            .unwrap_err();
        assert_eq!(refusal.kind, "forbidden_origin");
    }

    #[test]
    fn a_loopback_listener_generates_its_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".shanhai/admin.token");
        let config = AdminConfig {
            listen: "127.0.0.1:9090".parse().unwrap(),
            token_env: String::new(),
            token_file: file.clone(),
            ..AdminConfig::default()
        };
        let auth = AdminAuth::from_config(&config).unwrap();
        assert!(auth.required());
        assert_eq!(auth.token_file(), Some(file.as_path()));
        let token = std::fs::read_to_string(&file).unwrap();
        assert!(auth.allows(&headers(&format!("Bearer {token}"))));
        assert!(!auth.allows(&HeaderMap::new()));
        // The same token at the next start.
        let again = AdminAuth::from_config(&config).unwrap();
        assert!(again.allows(&headers(&format!("Bearer {token}"))));
    }
}
