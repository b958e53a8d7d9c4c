//! What a module name may be: shared by the config, the registry, the admin
//! API and signatures, so it lives below all of them.

/// Whether `name` can be a module name (and so a URL segment).
pub fn is_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `host` can be listed in `[modules.NAME] hosts`: a DNS name or an
/// IPv4 address in lower case, without a port, scheme or trailing dot, as
/// the HTTP trigger normalises a request's `Host`.
pub fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}
