//! `shanhai::log`: guest log lines, tagged with module, version and request id.

use shanhai_abi::{IMPORT_MODULE, LogLevel, import};
use wasmtime::{Caller, Linker};

use super::{HostState, guest_bytes};

/// Longest guest log line kept; the rest is cut so that a guest cannot
/// flood the host's log pipeline with one call.
const MAX_LINE_BYTES: usize = 16 * 1024;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        import::LOG,
        |mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| {
            let Ok((bytes, state)) = guest_bytes(&mut caller, ptr, len) else {
                return;
            };
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_LINE_BYTES)]);
            let module = &*state.module.name;
            let version = &*state.module.version;
            let request_id = &*state.event.request_id;
            match LogLevel::from_raw(level) {
                LogLevel::Debug => {
                    tracing::debug!(target: "shanhai::guest", module, version, request_id, "{text}")
                }
                LogLevel::Info => {
                    tracing::info!(target: "shanhai::guest", module, version, request_id, "{text}")
                }
                LogLevel::Warn => {
                    tracing::warn!(target: "shanhai::guest", module, version, request_id, "{text}")
                }
                LogLevel::Error => {
                    tracing::error!(target: "shanhai::guest", module, version, request_id, "{text}")
                }
            }
        },
    )?;
    Ok(())
}
