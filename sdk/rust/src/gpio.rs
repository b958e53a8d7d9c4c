//! GPIO pins of the board (`gpio_read`, `gpio_write`), by the numbers of
//! its sysfs GPIO interface.
//!
//! Pins are capabilities: a module reads the pins of its `gpio_in` grant
//! (and of `gpio_out`) and drives those of `gpio_out`:
//!
//! ```toml
//! [modules.relay.grants]
//! gpio_in = [17]
//! gpio_out = [18]
//! ```
//!
//! ```
//! # fn f() -> Result<(), shanhai_sdk::Error> {
//! let pressed = shanhai_sdk::gpio::read(17)?;
//! shanhai_sdk::gpio::write(18, pressed)?;
//! # Ok(()) }
//! ```

use shanhai_abi::import;

use crate::{Error, HostError, host};

/// Whether `pin` is high.
///
/// # Errors
/// [`HostError::Denied`] unless the pin is in the module's `gpio_in` or
/// `gpio_out` grant; [`HostError::NotFound`] when the board has no such
/// pin; [`HostError::Unavailable`] on an I/O error.
pub fn read(pin: u32) -> Result<bool, Error> {
    let pin = abi_pin(import::GPIO_READ, pin)?;
    host::gpio_read(pin).map_err(|kind| host::explain(import::GPIO_READ, kind))
}

/// Drives output `pin` high or low.
///
/// # Errors
/// [`HostError::Denied`] unless the pin is in the module's `gpio_out`
/// grant; otherwise as [`read`].
pub fn write(pin: u32, high: bool) -> Result<(), Error> {
    let pin = abi_pin(import::GPIO_WRITE, pin)?;
    host::gpio_write(pin, high).map_err(|kind| host::explain(import::GPIO_WRITE, kind))
}

/// The pin as the ABI's `i32`; larger numbers are no pin's.
fn abi_pin(function: &'static str, pin: u32) -> Result<i32, Error> {
    i32::try_from(pin).map_err(|_| {
        Error::new(
            function,
            HostError::InvalidArgument,
            Some(format!("pin {pin} is out of range")),
        )
    })
}
