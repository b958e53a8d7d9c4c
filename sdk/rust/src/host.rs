//! Safe wrappers of the `shanhai` host imports, as the rest of the SDK
//! calls them: the real imports on wasm32, the thread-local mock host
//! elsewhere.

#[cfg(target_arch = "wasm32")]
pub(crate) use crate::ffi::{
    config_get, log, output_write, staged_read, ws_broadcast, ws_close, ws_join, ws_leave, ws_send,
};
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use crate::mock::imports::{
    config_get, log, output_write, staged_read, ws_broadcast, ws_close, ws_join, ws_leave, ws_send,
};

use crate::HostError;

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
