//! Log lines sent to the host, which tags each with the module, its
//! version and the request id.
//!
//! ```
//! shanhai_sdk::log::info("cache warmed");
//! let n = 3;
//! shanhai_sdk::warn!("retrying, {n} attempts left");
//! ```

use std::fmt;

use shanhai_abi::LogLevel;

use crate::host;

/// Logs `message` at `level`.
pub fn log(level: LogLevel, message: &str) {
    host::log(level, message);
}

/// Logs `message` at [`LogLevel::Debug`].
pub fn debug(message: &str) {
    log(LogLevel::Debug, message);
}

/// Logs `message` at [`LogLevel::Info`].
pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

/// Logs `message` at [`LogLevel::Warn`].
pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// Logs `message` at [`LogLevel::Error`].
pub fn error(message: &str) {
    log(LogLevel::Error, message);
}

/// Logs formatted arguments, without allocating when they are a plain
/// string literal. Used by the logging macros.
pub fn log_args(level: LogLevel, args: fmt::Arguments<'_>) {
    match args.as_str() {
        Some(message) => log(level, message),
        None => log(level, &fmt::format(args)),
    }
}

/// Logs a `format!`-style message at [`LogLevel::Debug`]:
/// `shanhai_sdk::debug!("x = {x}")`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::log_args($crate::LogLevel::Debug, ::std::format_args!($($arg)+))
    };
}

/// Logs a `format!`-style message at [`LogLevel::Info`]:
/// `shanhai_sdk::info!("served {n} bytes")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::log_args($crate::LogLevel::Info, ::std::format_args!($($arg)+))
    };
}

/// Logs a `format!`-style message at [`LogLevel::Warn`].
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::log_args($crate::LogLevel::Warn, ::std::format_args!($($arg)+))
    };
}

/// Logs a `format!`-style message at [`LogLevel::Error`].
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::log_args($crate::LogLevel::Error, ::std::format_args!($($arg)+))
    };
}
