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
