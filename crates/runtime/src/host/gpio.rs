//! `shanhai::gpio_*`: GPIO pins through the Linux sysfs interface
//! (`/sys/class/gpio`: `export`, `gpioN/direction`, `gpioN/value`).
//!
//! The root folder is configurable ([`Runtime::set_gpio_root`](crate::Runtime::set_gpio_root)),
//! so tests run against a temporary tree. A pin is exported on first use
//! and its direction set from the grant: `in` for a pin granted for
//! reading, `out` before the first write to a pin granted for writing.
//! The file I/O (and the wait for an exported pin to appear) runs on
//! tokio's blocking pool, never on a worker thread.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shanhai_abi::{HostStatus, IMPORT_MODULE, import};
use wasmtime::{Caller, Linker};

use super::{HostState, denied, fail};

/// How long an export may take to make `gpioN` appear (udev may need to
/// fix its permissions first).
const EXPORT_WAIT: Duration = Duration::from_millis(200);

/// The folder of pin `pin`, exporting it when it is not there yet.
fn pin_dir(root: &Path, pin: u32) -> Result<PathBuf, (HostStatus, String)> {
    let dir = root.join(format!("gpio{pin}"));
    if dir.is_dir() {
        return Ok(dir);
    }
    let export = root.join("export");
    std::fs::write(&export, pin.to_string()).map_err(|err| {
        let status = if err.kind() == std::io::ErrorKind::NotFound {
            HostStatus::NotFound
        } else {
            HostStatus::Unavailable
        };
        (
            status,
            format!("exporting GPIO {pin} through {}: {err}", export.display()),
        )
    })?;
    let started = Instant::now();
    while !dir.is_dir() {
        if started.elapsed() > EXPORT_WAIT {
            return Err((
                HostStatus::NotFound,
                format!("GPIO {pin} did not appear after export"),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(dir)
}

/// Sets the pin's direction unless it already is `direction`.
fn ensure_direction(dir: &Path, direction: &str) -> Result<(), (HostStatus, String)> {
    let path = dir.join("direction");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current.trim() == direction {
        return Ok(());
    }
    std::fs::write(&path, direction).map_err(|err| {
        (
            HostStatus::Unavailable,
            format!("setting {}: {err}", path.display()),
        )
    })
}

fn read(root: &Path, pin: u32, output: bool) -> Result<i32, (HostStatus, String)> {
    let dir = pin_dir(root, pin)?;
    // An output pin is read back as it is; only input-only pins are turned
    // into inputs.
    if !output {
        ensure_direction(&dir, "in")?;
    }
    let path = dir.join("value");
    let value = std::fs::read_to_string(&path).map_err(|err| {
        (
            HostStatus::Unavailable,
            format!("reading {}: {err}", path.display()),
        )
    })?;
    match value.trim() {
        "0" => Ok(0),
        "1" => Ok(1),
        other => Err((
            HostStatus::Internal,
            format!("{} holds `{other}`, not 0 or 1", path.display()),
        )),
    }
}

fn write(root: &Path, pin: u32, high: bool) -> Result<i32, (HostStatus, String)> {
    let dir = pin_dir(root, pin)?;
    ensure_direction(&dir, "out")?;
    let path = dir.join("value");
    std::fs::write(&path, if high { "1" } else { "0" }).map_err(|err| {
        (
            HostStatus::Unavailable,
            format!("writing {}: {err}", path.display()),
        )
    })?;
    Ok(0)
}

fn finish(state: &mut HostState, result: Result<i32, (HostStatus, String)>) -> i32 {
    match result {
        Ok(value) => value,
        Err((status, message)) => fail(state, status, message),
    }
}

fn root(state: &HostState) -> PathBuf {
    state
        .module
        .services
        .gpio_root
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/sys/class/gpio"))
}

/// Runs a pin operation on tokio's blocking pool: sysfs reads and writes
/// are blocking file I/O, and an export may wait up to [`EXPORT_WAIT`], so
/// on a worker thread they would stall every other request it serves. The
/// guest's fiber waits instead; the event's deadline still bounds the wait
/// (an operation that never returns is abandoned with its event).
async fn off_the_workers(
    operation: impl FnOnce() -> Result<i32, (HostStatus, String)> + Send + 'static,
) -> Result<i32, (HostStatus, String)> {
    tokio::task::spawn_blocking(operation)
        .await
        .unwrap_or_else(|err| Err((HostStatus::Internal, format!("the GPIO task failed: {err}"))))
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        IMPORT_MODULE,
        import::GPIO_READ,
        |mut caller: Caller<'_, HostState>, (pin,): (i32,)| {
            Box::new(async move {
                let state = caller.data_mut();
                state.event.staged = None;
                let Ok(pin) = u32::try_from(pin) else {
                    return HostStatus::InvalidArgument as i32;
                };
                if !state.module.grants.allows_gpio_read(pin) {
                    let detail = format!("GPIO {pin} is not granted (grants.gpio_in or gpio_out)");
                    return denied(state, "gpio", detail);
                }
                let output = state.module.grants.allows_gpio_write(pin);
                let root = root(state);
                let result = off_the_workers(move || read(&root, pin, output)).await;
                finish(caller.data_mut(), result)
            })
        },
    )?;
    linker.func_wrap_async(
        IMPORT_MODULE,
        import::GPIO_WRITE,
        |mut caller: Caller<'_, HostState>, (pin, value): (i32, i32)| {
            Box::new(async move {
                let state = caller.data_mut();
                state.event.staged = None;
                let Ok(pin) = u32::try_from(pin) else {
                    return HostStatus::InvalidArgument as i32;
                };
                if !state.module.grants.allows_gpio_write(pin) {
                    let detail =
                        format!("GPIO {pin} is not granted as an output (grants.gpio_out)");
                    return denied(state, "gpio", detail);
                }
                let root = root(state);
                let result = off_the_workers(move || write(&root, pin, value != 0)).await;
                finish(caller.data_mut(), result)
            })
        },
    )?;
    Ok(())
}
