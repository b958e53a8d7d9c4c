//! [`HostError`]: a failed host function call; [`Error`]: one with the
//! host's explanation.

use std::fmt;

use shanhai_abi::HostStatus;

/// Why a host function failed: one variant per negative
/// [`HostStatus`] of the ABI, plus [`Unknown`](Self::Unknown) for statuses
/// a newer host may add.
///
/// Every host function wrapper in this crate returns it, so callers can
/// `match` on the reason (for example to treat [`Denied`](Self::Denied)
/// differently from [`Unavailable`](Self::Unavailable)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostError {
    /// The key, variable or resource does not exist.
    NotFound,
    /// The module has no grant for this capability.
    Denied,
    /// The host rejected an argument (bad pointer, length or encoding).
    InvalidArgument,
    /// A size limit was exceeded (for example the module's
    /// `max_response_bytes`).
    TooLarge,
    /// A backing service is down or timed out.
    Unavailable,
    /// A failure inside the host; the host logs the details.
    Internal,
    /// `staged_read` was called with nothing staged.
    NothingStaged,
    /// A compare-and-swap found another value than the expected one.
    Conflict,
    /// A negative status this SDK does not know.
    Unknown(i32),
}

impl HostError {
    /// Maps a host function's negative result to an error; values outside
    /// the ABI become [`Unknown`](Self::Unknown).
    pub fn from_raw(raw: i32) -> Self {
        HostStatus::from_raw(raw).map_or(Self::Unknown(raw), Self::from)
    }

    /// The ABI status, `None` for [`Unknown`](Self::Unknown).
    pub fn status(self) -> Option<HostStatus> {
        match self {
            Self::NotFound => Some(HostStatus::NotFound),
            Self::Denied => Some(HostStatus::Denied),
            Self::InvalidArgument => Some(HostStatus::InvalidArgument),
            Self::TooLarge => Some(HostStatus::TooLarge),
            Self::Unavailable => Some(HostStatus::Unavailable),
            Self::Internal => Some(HostStatus::Internal),
            Self::NothingStaged => Some(HostStatus::NothingStaged),
            Self::Conflict => Some(HostStatus::Conflict),
            Self::Unknown(_) => None,
        }
    }

    /// The raw status value as the host returned it.
    pub fn raw(self) -> i32 {
        match self {
            Self::Unknown(raw) => raw,
            known => known.status().map_or(0, |s| s as i32),
        }
    }
}

impl From<HostStatus> for HostError {
    fn from(status: HostStatus) -> Self {
        match status {
            HostStatus::NotFound => Self::NotFound,
            HostStatus::Denied => Self::Denied,
            HostStatus::InvalidArgument => Self::InvalidArgument,
            HostStatus::TooLarge => Self::TooLarge,
            HostStatus::Unavailable => Self::Unavailable,
            HostStatus::Internal => Self::Internal,
            HostStatus::NothingStaged => Self::NothingStaged,
            HostStatus::Conflict => Self::Conflict,
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status() {
            Some(status) => write!(f, "host call failed: {}", status.name()),
            None => write!(f, "host call failed with unknown status {}", self.raw()),
        }
    }
}

impl std::error::Error for HostError {}

/// A failed host call with the host's explanation, when it gave one: what
/// the wrappers of the host functions that may explain their failures
/// (those marked † in `docs/abi.md`, such as
/// [`mqtt::publish`](crate::mqtt::publish)) return.
///
/// Match on [`kind`](Self::kind); the message is for people (it says, for
/// example, which grant is missing).
///
/// ```
/// use shanhai_sdk::{Error, HostError};
///
/// let error = Error::new("mqtt_publish", HostError::Denied, Some("no grant".into()));
/// assert_eq!(error.kind(), HostError::Denied);
/// assert_eq!(error.to_string(), "mqtt_publish failed: denied: no grant");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Error {
    function: &'static str,
    kind: HostError,
    message: Option<String>,
}

impl Error {
    /// The failure of host function `function` with `kind`, and the host's
    /// `message`.
    pub fn new(function: &'static str, kind: HostError, message: Option<String>) -> Self {
        Self {
            function,
            kind,
            message,
        }
    }

    /// Why it failed: the host status.
    pub fn kind(&self) -> HostError {
        self.kind
    }

    /// The host function that failed, e.g. `mqtt_publish`.
    pub fn function(&self) -> &'static str {
        self.function
    }

    /// The host's explanation, if it gave one.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind.status() {
            Some(status) => write!(f, "{} failed: {}", self.function, status.name())?,
            None => write!(
                f,
                "{} failed with unknown status {}",
                self.function,
                self.kind.raw()
            )?,
        }
        match &self.message {
            Some(message) => write!(f, ": {message}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

impl From<Error> for HostError {
    fn from(error: Error) -> Self {
        error.kind
    }
}

impl PartialEq<HostError> for Error {
    fn eq(&self, other: &HostError) -> bool {
        self.kind == *other
    }
}

/// Splits a host function's result into a non-negative count and an error.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) fn check(raw: i32) -> Result<usize, HostError> {
    usize::try_from(raw).map_err(|_| HostError::from_raw(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_abi_status_round_trips() {
        for raw in -8..=-1 {
            let error = HostError::from_raw(raw);
            assert!(!matches!(error, HostError::Unknown(_)), "{raw}");
            assert_eq!(error.raw(), raw);
            assert_eq!(error.status().map(|s| s as i32), Some(raw));
        }
    }

    #[test]
    fn unknown_statuses_are_kept() {
        let error = HostError::from_raw(-42);
        assert_eq!(error, HostError::Unknown(-42));
        assert_eq!(error.raw(), -42);
        assert_eq!(error.status(), None);
        assert_eq!(
            error.to_string(),
            "host call failed with unknown status -42"
        );
    }

    #[test]
    fn errors_carry_the_host_message() {
        let error = Error::new("mqtt_publish", HostError::Unavailable, None);
        assert_eq!(error.to_string(), "mqtt_publish failed: unavailable");
        assert_eq!(error, HostError::Unavailable);
        assert_eq!(HostError::from(error.clone()), HostError::Unavailable);
        assert_eq!((error.function(), error.message()), ("mqtt_publish", None));
        let error = Error::new("kv_cas", HostError::from_raw(-99), Some("why".into()));
        assert_eq!(
            error.to_string(),
            "kv_cas failed with unknown status -99: why"
        );
        assert_eq!(
            HostError::Conflict.to_string(),
            "host call failed: conflict"
        );
    }

    #[test]
    fn check_splits_counts_from_errors() {
        assert_eq!(check(0), Ok(0));
        assert_eq!(check(17), Ok(17));
        assert_eq!(check(-2), Err(HostError::Denied));
        assert_eq!(HostError::Denied.to_string(), "host call failed: denied");
    }
}
