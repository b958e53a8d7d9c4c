//! Reading the module's config variables.

use crate::{HostError, host};

/// The value of the module's config variable `key` (its `[config]` table
/// on the gateway), or `None` when the variable is not set.
///
/// The host stores config as text; invalid UTF-8, which it never produces,
/// would be replaced with U+FFFD.
///
/// ```
/// # fn f() -> Result<(), shanhai_sdk::HostError> {
/// let greeting = shanhai_sdk::config("greeting")?.unwrap_or_else(|| "Hello".to_owned());
/// # Ok(()) }
/// ```
///
/// # Errors
/// A [`HostError`] when the host refuses the call (for example
/// [`HostError::InvalidArgument`] for a key it cannot read).
pub fn config(key: &str) -> Result<Option<String>, HostError> {
    match host::config_get(key) {
        Ok(len) => {
            let bytes = host::read_staged(len)?;
            Ok(Some(match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
            }))
        }
        Err(HostError::NotFound) => Ok(None),
        Err(error) => Err(error),
    }
}
