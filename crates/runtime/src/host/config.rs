//! `shanhai::config_get`: the module's config variables.

use shanhai_abi::{HostStatus, IMPORT_MODULE, import};
use wasmtime::{Caller, Linker};

use super::{HostState, guest_bytes, stage};

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        import::CONFIG_GET,
        |mut caller: Caller<'_, HostState>, key_ptr: i32, key_len: i32| -> i32 {
            let (key, state) = match guest_bytes(&mut caller, key_ptr, key_len) {
                Ok(found) => found,
                Err(status) => return status as i32,
            };
            let Ok(key) = std::str::from_utf8(key) else {
                return HostStatus::InvalidArgument as i32;
            };
            match state.module.vars.get(key) {
                Some(value) => {
                    let value = value.as_bytes().to_vec();
                    stage(state, value)
                }
                None => HostStatus::NotFound as i32,
            }
        },
    )?;
    Ok(())
}
