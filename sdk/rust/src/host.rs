//! Safe wrappers of the `shanhai` host imports, as the rest of the SDK
//! calls them: the real imports on wasm32, the thread-local mock host
//! elsewhere.

#[cfg(target_arch = "wasm32")]
pub(crate) use crate::ffi::state::{
    gpio_read, gpio_write, http_fetch, kv_cas, kv_delete, kv_get, kv_incr, kv_list, kv_set,
    sql_exec,
};
#[cfg(target_arch = "wasm32")]
pub(crate) use crate::ffi::{
    config_get, log, mqtt_publish, output_write, staged_read, ws_broadcast, ws_close, ws_join,
    ws_leave, ws_send,
};
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use crate::mock::imports::{
    config_get, log, mqtt_publish, output_write, staged_read, ws_broadcast, ws_close, ws_join,
    ws_leave, ws_send,
};
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use crate::mock::state::imports::{
    gpio_read, gpio_write, http_fetch, kv_cas, kv_delete, kv_get, kv_incr, kv_list, kv_set,
    sql_exec,
};

use crate::{Error, HostError};

/// The longest explanation [`explain`] reads: `staged_read` cannot say how
/// long the staged value is, so a longer one is cut.
const MAX_EXPLANATION: usize = 1024;

/// Turns the failure of `function`, one of the host functions that clear
/// the stage and may stage an explanation when they fail (those marked †
/// in `docs/abi.md`), into an [`Error`] with that explanation; nothing
/// staged means none.
pub(crate) fn explain(function: &'static str, kind: HostError) -> Error {
    let mut buf = vec![0; MAX_EXPLANATION];
    let message = match staged_read(&mut buf) {
        Ok(n) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    };
    Error::new(function, kind, message)
}

/// Copies a staged value of `len` bytes (as a staging call reported it)
/// into a new buffer.
pub(crate) fn read_staged(len: usize) -> Result<Vec<u8>, HostError> {
    let mut buf = vec![0; len];
    if len > 0 {
        let copied = staged_read(&mut buf)?;
        buf.truncate(copied);
    }
    Ok(buf)
}
