//! The wasm boundary: the raw `shanhai` imports, their safe wrappers and
//! the guest exports (`shanhai_abi_version`, `shanhai_alloc`,
//! `shanhai_event`). This is the only module with `unsafe` code.

#![allow(unsafe_code)]

use std::cell::RefCell;

use shanhai_abi::{ABI_VERSION, EventStatus, LogLevel};

use crate::error::check;
use crate::input::InputBuffer;
use crate::{HostError, dispatch, registry};

pub(crate) mod state;

mod raw {
    #[link(wasm_import_module = "shanhai")]
    unsafe extern "C" {
        pub(super) fn log(level: i32, ptr: *const u8, len: i32);
        pub(super) fn output_write(ptr: *const u8, len: i32) -> i32;
        pub(super) fn config_get(key_ptr: *const u8, key_len: i32) -> i32;
        pub(super) fn staged_read(ptr: *mut u8, len: i32) -> i32;
        pub(super) fn ws_send(conn: u64, kind: i32, ptr: *const u8, len: i32) -> i32;
        pub(super) fn ws_close(conn: u64, code: i32, reason_ptr: *const u8, reason_len: i32)
        -> i32;
        pub(super) fn ws_join(conn: u64, room_ptr: *const u8, room_len: i32) -> i32;
        pub(super) fn ws_leave(conn: u64, room_ptr: *const u8, room_len: i32) -> i32;
        pub(super) fn ws_broadcast(
            room_ptr: *const u8,
            room_len: i32,
            kind: i32,
            ptr: *const u8,
            len: i32,
            except: u64,
        ) -> i32;
        pub(super) fn mqtt_publish(
            topic_ptr: *const u8,
            topic_len: i32,
            payload_ptr: *const u8,
            payload_len: i32,
            qos: i32,
            retain: i32,
        ) -> i32;
    }

    // SAFETY: `shanhai_sdk::export!` defines this symbol with exactly this
    // signature, and it only calls the SDK's safe `install`. A module that
    // forgot `export!` fails to load (the host names the unresolved
    // `env.__shanhai_sdk_register_v1` import) instead of calling garbage.
    unsafe extern "Rust" {
        pub(super) safe fn __shanhai_sdk_register_v1();
    }
}

/// A slice length as the ABI's `i32`, or `TooLarge` past `i32::MAX`.
fn abi_len(len: usize) -> Result<i32, HostError> {
    i32::try_from(len).map_err(|_| HostError::TooLarge)
}

pub(crate) fn log(level: LogLevel, message: &str) {
    // A line longer than 2 GiB cannot be passed; cut it rather than fail.
    let len = abi_len(message.len()).unwrap_or(i32::MAX);
    // SAFETY: `message.as_ptr()..+len` lies inside `message`, which outlives
    // the call; the host only reads the range and keeps no reference.
    unsafe { raw::log(level as i32, message.as_ptr(), len) }
}

pub(crate) fn output_write(bytes: &[u8]) -> Result<(), HostError> {
    let len = abi_len(bytes.len())?;
    // SAFETY: the range lies inside `bytes`, borrowed for the whole call;
    // the host copies it and keeps no reference.
    check(unsafe { raw::output_write(bytes.as_ptr(), len) }).map(drop)
}

pub(crate) fn config_get(key: &str) -> Result<usize, HostError> {
    let len = abi_len(key.len())?;
    // SAFETY: the range lies inside `key`, borrowed for the whole call; the
    // host only reads it.
    check(unsafe { raw::config_get(key.as_ptr(), len) })
}

pub(crate) fn staged_read(buf: &mut [u8]) -> Result<usize, HostError> {
    let len = abi_len(buf.len())?;
    // SAFETY: the host writes at most `len` bytes at `buf.as_mut_ptr()`, all
    // inside `buf`, which we borrow exclusively for the call; any byte
    // pattern is a valid `u8`.
    let copied = check(unsafe { raw::staged_read(buf.as_mut_ptr(), len) })?;
    Ok(copied.min(buf.len()))
}

pub(crate) fn ws_send(conn: u64, kind: i32, data: &[u8]) -> Result<(), HostError> {
    let len = abi_len(data.len())?;
    // SAFETY: the range lies inside `data`, borrowed for the whole call; the
    // host copies it and keeps no reference.
    check(unsafe { raw::ws_send(conn, kind, data.as_ptr(), len) }).map(drop)
}

pub(crate) fn ws_close(conn: u64, code: u16, reason: &str) -> Result<(), HostError> {
    let len = abi_len(reason.len())?;
    // SAFETY: the range lies inside `reason`, borrowed for the whole call;
    // the host only reads it.
    check(unsafe { raw::ws_close(conn, i32::from(code), reason.as_ptr(), len) }).map(drop)
}

pub(crate) fn ws_join(conn: u64, room: &str) -> Result<(), HostError> {
    let len = abi_len(room.len())?;
    // SAFETY: the range lies inside `room`, borrowed for the whole call; the
    // host only reads it.
    check(unsafe { raw::ws_join(conn, room.as_ptr(), len) }).map(drop)
}

pub(crate) fn ws_leave(conn: u64, room: &str) -> Result<(), HostError> {
    let len = abi_len(room.len())?;
    // SAFETY: the range lies inside `room`, borrowed for the whole call; the
    // host only reads it.
    check(unsafe { raw::ws_leave(conn, room.as_ptr(), len) }).map(drop)
}

pub(crate) fn ws_broadcast(
    room: &str,
    kind: i32,
    data: &[u8],
    except: u64,
) -> Result<usize, HostError> {
    let room_len = abi_len(room.len())?;
    let len = abi_len(data.len())?;
    // SAFETY: both ranges lie inside `room` and `data`, borrowed for the
    // whole call; the host copies them and keeps no reference.
    check(unsafe { raw::ws_broadcast(room.as_ptr(), room_len, kind, data.as_ptr(), len, except) })
}

pub(crate) fn mqtt_publish(
    topic: &str,
    payload: &[u8],
    qos: i32,
    retain: bool,
) -> Result<(), HostError> {
    let topic_len = abi_len(topic.len())?;
    let payload_len = abi_len(payload.len())?;
    // SAFETY: both ranges lie inside `topic` and `payload`, borrowed for the
    // whole call; the host copies them and keeps no reference.
    check(unsafe {
        raw::mqtt_publish(
            topic.as_ptr(),
            topic_len,
            payload.as_ptr(),
            payload_len,
            qos,
            i32::from(retain),
        )
    })
    .map(drop)
}

thread_local! {
    // wasm32-wasip1 has one thread, and the host never re-enters the guest,
    // so these are never borrowed twice.
    static INPUT: RefCell<InputBuffer> = const { RefCell::new(InputBuffer::new()) };
}

#[unsafe(no_mangle)]
extern "C" fn shanhai_abi_version() -> i32 {
    // The host calls this once per instance, right after `_initialize`:
    // building the handler table here keeps that work out of the first
    // request.
    raw::__shanhai_sdk_register_v1();
    ABI_VERSION
}

#[unsafe(no_mangle)]
extern "C" fn shanhai_alloc(len: i32) -> *mut u8 {
    INPUT
        .with_borrow_mut(|input| input.alloc(len))
        .unwrap_or(std::ptr::null_mut())
}

#[unsafe(no_mangle)]
extern "C" fn shanhai_event(kind: i32, ptr: *const u8, len: i32) -> i32 {
    raw::__shanhai_sdk_register_v1();
    let Some(envelope) = INPUT.with_borrow_mut(|input| input.take(ptr, len)) else {
        let _ = output_write(b"the envelope is not where shanhai_alloc put it");
        return EventStatus::Error as i32;
    };
    let status = registry::with_handlers(|handlers| dispatch::dispatch(handlers, kind, &envelope));
    INPUT.with_borrow_mut(|input| input.recycle(envelope));
    status as i32
}
