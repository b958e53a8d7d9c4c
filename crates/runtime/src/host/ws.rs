//! `shanhai::ws_*`: send to, close, and group the WebSocket connections of
//! the calling module.
//!
//! The runtime holds no connections: it forwards each call, with the name
//! of the calling module, to the [`WebSocketHost`] the gateway installed
//! ([`Runtime::set_websocket_host`](crate::Runtime::set_websocket_host)).
//! The host refuses connections and rooms of other modules with
//! `not_found`, so a module sees only its own. Without a host (`shanhai
//! run`) every call answers `unavailable`.

use bytes::Bytes;
use shanhai_abi::{HostStatus, IMPORT_MODULE, import};
use wasmtime::{Caller, Linker};

use super::{HostState, guest_bytes, guest_str};

/// A WebSocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsMessage {
    /// Text (UTF-8) or binary.
    pub text: bool,
    /// The payload.
    pub data: Bytes,
}

/// Message types on the ABI: as in [`shanhai_abi::wire::WsEventType`].
const TYPE_TEXT: i32 = 2;
const TYPE_BINARY: i32 = 3;

/// What the `ws_*` host functions act on: the gateway's connection hub.
///
/// Every method names the calling module; an implementation answers
/// [`HostStatus::NotFound`] for a connection that is not that module's (or
/// is gone), and must not block: it queues and returns.
pub trait WebSocketHost: Send + Sync + 'static {
    /// Queues `message` for `connection`.
    fn send(&self, module: &str, connection: u64, message: WsMessage) -> Result<(), HostStatus>;
    /// Starts closing `connection` with `code` and `reason`.
    fn close(
        &self,
        module: &str,
        connection: u64,
        code: u16,
        reason: &str,
    ) -> Result<(), HostStatus>;
    /// Adds `connection` to the module's room `room`.
    fn join(&self, module: &str, connection: u64, room: &str) -> Result<(), HostStatus>;
    /// Removes `connection` from the module's room `room`.
    fn leave(&self, module: &str, connection: u64, room: &str) -> Result<(), HostStatus>;
    /// Queues `message` for every connection in the module's room `room`
    /// but `except`; returns how many it was queued for.
    fn broadcast(
        &self,
        module: &str,
        room: &str,
        message: WsMessage,
        except: Option<u64>,
    ) -> Result<usize, HostStatus>;
}

/// The host result as the ABI's `i32`.
fn status(result: Result<(), HostStatus>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(status) => status as i32,
    }
}

/// Reads a message argument of ABI type `kind`.
fn guest_message(
    caller: &mut Caller<'_, HostState>,
    kind: i32,
    ptr: i32,
    len: i32,
) -> Result<WsMessage, HostStatus> {
    let text = match kind {
        TYPE_TEXT => true,
        TYPE_BINARY => false,
        _ => return Err(HostStatus::InvalidArgument),
    };
    let (bytes, _) = guest_bytes(caller, ptr, len)?;
    if text && std::str::from_utf8(bytes).is_err() {
        return Err(HostStatus::InvalidArgument);
    }
    Ok(WsMessage {
        text,
        data: Bytes::copy_from_slice(bytes),
    })
}

fn host(caller: &Caller<'_, HostState>) -> Result<std::sync::Arc<dyn WebSocketHost>, HostStatus> {
    caller
        .data()
        .module
        .services
        .websocket
        .get()
        .cloned()
        .ok_or(HostStatus::Unavailable)
}

/// A connection id from the guest: ids are never 0.
fn connection(raw: i64) -> Result<u64, HostStatus> {
    match raw as u64 {
        0 => Err(HostStatus::NotFound),
        id => Ok(id),
    }
}

/// `ws_join` and `ws_leave`: a connection and a room name in, a status out.
fn room_call(
    mut caller: Caller<'_, HostState>,
    conn: i64,
    ptr: i32,
    len: i32,
    call: impl FnOnce(&dyn WebSocketHost, &str, u64, &str) -> Result<(), HostStatus>,
) -> i32 {
    status((|| {
        let conn = connection(conn)?;
        let room = guest_str(&mut caller, ptr, len)?;
        let module = caller.data().module.name.clone();
        call(&*host(&caller)?, &module, conn, &room)
    })())
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        import::WS_SEND,
        |mut caller: Caller<'_, HostState>, conn: i64, kind: i32, ptr: i32, len: i32| -> i32 {
            status((|| {
                let conn = connection(conn)?;
                let message = guest_message(&mut caller, kind, ptr, len)?;
                let module = caller.data().module.name.clone();
                host(&caller)?.send(&module, conn, message)
            })())
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        import::WS_CLOSE,
        |mut caller: Caller<'_, HostState>, conn: i64, code: i32, ptr: i32, len: i32| -> i32 {
            status((|| {
                let conn = connection(conn)?;
                let code = u16::try_from(code).map_err(|_| HostStatus::InvalidArgument)?;
                let reason = guest_str(&mut caller, ptr, len)?;
                let module = caller.data().module.name.clone();
                host(&caller)?.close(&module, conn, code, &reason)
            })())
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        import::WS_JOIN,
        |caller: Caller<'_, HostState>, conn: i64, ptr: i32, len: i32| -> i32 {
            room_call(caller, conn, ptr, len, |host, module, conn, room| {
                host.join(module, conn, room)
            })
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        import::WS_LEAVE,
        |caller: Caller<'_, HostState>, conn: i64, ptr: i32, len: i32| -> i32 {
            room_call(caller, conn, ptr, len, |host, module, conn, room| {
                host.leave(module, conn, room)
            })
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        import::WS_BROADCAST,
        |mut caller: Caller<'_, HostState>,
         room_ptr: i32,
         room_len: i32,
         kind: i32,
         ptr: i32,
         len: i32,
         except: i64|
         -> i32 {
            let sent = (|| {
                let room = guest_str(&mut caller, room_ptr, room_len)?;
                let message = guest_message(&mut caller, kind, ptr, len)?;
                let module = caller.data().module.name.clone();
                let except = (except != 0).then_some(except as u64);
                host(&caller)?.broadcast(&module, &room, message, except)
            })();
            match sent {
                Ok(n) => i32::try_from(n).unwrap_or(i32::MAX),
                Err(status) => status as i32,
            }
        },
    )?;
    Ok(())
}
