//! [`HostError`]: a failed host function call.

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
        for raw in -7..=-1 {
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
    fn check_splits_counts_from_errors() {
        assert_eq!(check(0), Ok(0));
        assert_eq!(check(17), Ok(17));
        assert_eq!(check(-2), Err(HostError::Denied));
        assert_eq!(HostError::Denied.to_string(), "host call failed: denied");
    }
}
