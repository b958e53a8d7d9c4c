//! The state imports (`kv_*`, `sql_exec`, `http_fetch`, `gpio_*`) and their
//! safe wrappers. Each clears what is staged and, when it fails, may stage
//! an explanation, which the callers read with
//! [`host::explain`](crate::host::explain).

use crate::HostError;
use crate::error::check;

use super::abi_len;

mod raw {
    #[link(wasm_import_module = "shanhai")]
    unsafe extern "C" {
        pub(super) fn kv_get(
            store_ptr: *const u8,
            store_len: i32,
            key_ptr: *const u8,
            key_len: i32,
        ) -> i32;
        pub(super) fn kv_set(
            store_ptr: *const u8,
            store_len: i32,
            key_ptr: *const u8,
            key_len: i32,
            value_ptr: *const u8,
            value_len: i32,
            ttl_ms: i64,
        ) -> i32;
        pub(super) fn kv_delete(
            store_ptr: *const u8,
            store_len: i32,
            key_ptr: *const u8,
            key_len: i32,
        ) -> i32;
        pub(super) fn kv_list(
            store_ptr: *const u8,
            store_len: i32,
            prefix_ptr: *const u8,
            prefix_len: i32,
            cursor_ptr: *const u8,
            cursor_len: i32,
            limit: i32,
        ) -> i32;
        pub(super) fn kv_cas(
            store_ptr: *const u8,
            store_len: i32,
            key_ptr: *const u8,
            key_len: i32,
            expected_ptr: *const u8,
            expected_len: i32,
            new_ptr: *const u8,
            new_len: i32,
            ttl_ms: i64,
        ) -> i32;
        pub(super) fn kv_incr(
            store_ptr: *const u8,
            store_len: i32,
            key_ptr: *const u8,
            key_len: i32,
            delta: i64,
            result_ptr: *mut i64,
        ) -> i32;
        pub(super) fn sql_exec(
            db_ptr: *const u8,
            db_len: i32,
            sql_ptr: *const u8,
            sql_len: i32,
            params_ptr: *const u8,
            params_len: i32,
        ) -> i32;
        pub(super) fn http_fetch(request_ptr: *const u8, request_len: i32) -> i32;
        pub(super) fn gpio_read(pin: i32) -> i32;
        pub(super) fn gpio_write(pin: i32, value: i32) -> i32;
    }
}

pub(crate) fn kv_get(store: &str, key: &[u8]) -> Result<usize, HostError> {
    let (store_len, key_len) = (abi_len(store.len())?, abi_len(key.len())?);
    // SAFETY: both ranges lie inside `store` and `key`, borrowed for the
    // whole call; the host only reads them.
    check(unsafe { raw::kv_get(store.as_ptr(), store_len, key.as_ptr(), key_len) })
}

pub(crate) fn kv_set(store: &str, key: &[u8], value: &[u8], ttl_ms: i64) -> Result<(), HostError> {
    let (store_len, key_len) = (abi_len(store.len())?, abi_len(key.len())?);
    let value_len = abi_len(value.len())?;
    // SAFETY: the three ranges lie inside `store`, `key` and `value`,
    // borrowed for the whole call; the host copies them and keeps no
    // reference.
    check(unsafe {
        raw::kv_set(
            store.as_ptr(),
            store_len,
            key.as_ptr(),
            key_len,
            value.as_ptr(),
            value_len,
            ttl_ms,
        )
    })
    .map(drop)
}

pub(crate) fn kv_delete(store: &str, key: &[u8]) -> Result<(), HostError> {
    let (store_len, key_len) = (abi_len(store.len())?, abi_len(key.len())?);
    // SAFETY: both ranges lie inside `store` and `key`, borrowed for the
    // whole call; the host only reads them.
    check(unsafe { raw::kv_delete(store.as_ptr(), store_len, key.as_ptr(), key_len) }).map(drop)
}

pub(crate) fn kv_list(
    store: &str,
    prefix: &[u8],
    cursor: &[u8],
    limit: u32,
) -> Result<usize, HostError> {
    let (store_len, prefix_len) = (abi_len(store.len())?, abi_len(prefix.len())?);
    let cursor_len = abi_len(cursor.len())?;
    // The host refuses limits above 1000 with an explanation; a larger u32
    // than i32 can hold gets the same answer.
    let limit = i32::try_from(limit).unwrap_or(i32::MAX);
    // SAFETY: the three ranges lie inside `store`, `prefix` and `cursor`,
    // borrowed for the whole call; the host only reads them.
    check(unsafe {
        raw::kv_list(
            store.as_ptr(),
            store_len,
            prefix.as_ptr(),
            prefix_len,
            cursor.as_ptr(),
            cursor_len,
            limit,
        )
    })
}

pub(crate) fn kv_cas(
    store: &str,
    key: &[u8],
    expected: Option<&[u8]>,
    new: &[u8],
    ttl_ms: i64,
) -> Result<(), HostError> {
    let (store_len, key_len) = (abi_len(store.len())?, abi_len(key.len())?);
    let new_len = abi_len(new.len())?;
    // `expected_len` −1 says the key must be absent; the pointer is unused.
    let (expected_ptr, expected_len) = match expected {
        Some(expected) => (expected.as_ptr(), abi_len(expected.len())?),
        None => (std::ptr::null(), -1),
    };
    // SAFETY: every range lies inside `store`, `key`, `expected` (when
    // given; otherwise its length is −1 and the host reads nothing) and
    // `new`, borrowed for the whole call; the host copies them and keeps
    // no reference.
    check(unsafe {
        raw::kv_cas(
            store.as_ptr(),
            store_len,
            key.as_ptr(),
            key_len,
            expected_ptr,
            expected_len,
            new.as_ptr(),
            new_len,
            ttl_ms,
        )
    })
    .map(drop)
}

pub(crate) fn kv_incr(store: &str, key: &[u8], delta: i64) -> Result<i64, HostError> {
    let (store_len, key_len) = (abi_len(store.len())?, abi_len(key.len())?);
    let mut result = 0_i64;
    // SAFETY: both input ranges lie inside `store` and `key`, borrowed for
    // the whole call; the host writes 8 bytes at `&mut result`, a local
    // `i64` that any bit pattern is valid for, and keeps no reference.
    check(unsafe {
        raw::kv_incr(
            store.as_ptr(),
            store_len,
            key.as_ptr(),
            key_len,
            delta,
            &mut result,
        )
    })?;
    Ok(result)
}

pub(crate) fn sql_exec(db: &str, sql: &str, params: &[u8]) -> Result<usize, HostError> {
    let (db_len, sql_len) = (abi_len(db.len())?, abi_len(sql.len())?);
    let params_len = abi_len(params.len())?;
    // SAFETY: the three ranges lie inside `db`, `sql` and `params`,
    // borrowed for the whole call; the host only reads them.
    check(unsafe {
        raw::sql_exec(
            db.as_ptr(),
            db_len,
            sql.as_ptr(),
            sql_len,
            params.as_ptr(),
            params_len,
        )
    })
}

pub(crate) fn http_fetch(request: &[u8]) -> Result<usize, HostError> {
    let len = abi_len(request.len())?;
    // SAFETY: the range lies inside `request`, borrowed for the whole call;
    // the host only reads it.
    check(unsafe { raw::http_fetch(request.as_ptr(), len) })
}

pub(crate) fn gpio_read(pin: i32) -> Result<bool, HostError> {
    // SAFETY: no pointers cross; any pin number is the host's to check.
    check(unsafe { raw::gpio_read(pin) }).map(|v| v != 0)
}

pub(crate) fn gpio_write(pin: i32, high: bool) -> Result<(), HostError> {
    // SAFETY: no pointers cross; any pin number is the host's to check.
    check(unsafe { raw::gpio_write(pin, i32::from(high)) }).map(drop)
}
