//! `shanhai::output_write` and `shanhai::staged_read`: the two directions of
//! variable-length data during an event.

use shanhai_abi::{HostStatus, IMPORT_MODULE, import};
use wasmtime::{Caller, Linker};

use super::{HostState, guest_bytes};

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        import::OUTPUT_WRITE,
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> i32 {
            let (bytes, state) = match guest_bytes(&mut caller, ptr, len) {
                Ok(found) => found,
                Err(status) => return status as i32,
            };
            let event = &mut state.event;
            if event.output.len() + bytes.len() > event.output_limit {
                event.output_overflow = true;
                return HostStatus::TooLarge as i32;
            }
            event.output.extend_from_slice(bytes);
            0
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        import::STAGED_READ,
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> i32 {
            let (dest, state) = match guest_bytes(&mut caller, ptr, len) {
                Ok(found) => found,
                Err(status) => return status as i32,
            };
            let Some(staged) = &state.event.staged else {
                return HostStatus::NothingStaged as i32;
            };
            let n = dest.len().min(staged.len());
            dest[..n].copy_from_slice(&staged[..n]);
            n as i32
        },
    )?;
    Ok(())
}
