//! `shanhai::kv_*`: the module's key-value namespace and the shared stores
//! it is granted, backed by the gateway's [`KvStore`] (embedded redb or
//! Redis, behind an LRU+TTL cache).
//!
//! The store argument names a namespace: empty is the module's own
//! (`m:NAME`), anything else a shared store (`s:NAME`); both need a grant.
//! The namespaces are separate inside [`KvStore`], so no key a module
//! chooses can reach another module's keys.

use std::sync::Arc;
use std::time::Duration;

use shanhai_abi::wire::KeyPage;
use shanhai_abi::{HostStatus, IMPORT_MODULE, import};
use shanhai_state::{KvError, KvStore};
use wasmtime::{Caller, Linker};

use super::{HostState, denied, fail, guest_bytes, guest_str, stage};

/// Default and largest page of `kv_list`.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// What a `kv_*` call needs before it can await the store: the store, the
/// namespace and the key, or the status it already failed with.
struct Target {
    store: Arc<KvStore>,
    namespace: String,
    key: String,
}

/// Reads the store and key arguments and checks the grant.
fn target(
    caller: &mut Caller<'_, HostState>,
    (store_ptr, store_len): (i32, i32),
    (key_ptr, key_len): (i32, i32),
    capability: &'static str,
) -> Result<Target, i32> {
    caller.data_mut().event.staged = None;
    let store_name = guest_str(caller, store_ptr, store_len).map_err(|s| s as i32)?;
    let key = guest_str(caller, key_ptr, key_len).map_err(|s| s as i32)?;
    let state = caller.data_mut();
    if !state.module.grants.allows_kv(&store_name) {
        let detail = if store_name.is_empty() {
            "the module's own KV namespace is not granted (grants.kv = true)".to_owned()
        } else {
            format!("the KV store `{store_name}` is not granted (grants.kv_stores)")
        };
        return Err(denied(state, capability, detail));
    }
    let Some(store) = state.module.services.kv.get().cloned() else {
        return Err(fail(
            state,
            HostStatus::Unavailable,
            "no KV store in this process",
        ));
    };
    let namespace = if store_name.is_empty() {
        format!("m:{}", state.module.name)
    } else {
        format!("s:{store_name}")
    };
    Ok(Target {
        store,
        namespace,
        key,
    })
}

/// The status (with its message staged) for a store failure.
fn store_error(state: &mut HostState, err: KvError) -> i32 {
    let status = match &err {
        KvError::TooLarge(_) => HostStatus::TooLarge,
        KvError::InvalidKey(_) | KvError::NotANumber => HostStatus::InvalidArgument,
        KvError::Unavailable(_) => HostStatus::Unavailable,
        KvError::Internal(_) => {
            tracing::error!(module = &*state.module.name, request_id = &*state.event.request_id, error = %err, "KV store failure");
            HostStatus::Internal
        }
    };
    fail(state, status, err.to_string())
}

/// A TTL argument: 0 none, negative refused.
fn ttl(ttl_ms: i64) -> Result<Option<Duration>, i32> {
    match ttl_ms {
        0 => Ok(None),
        ms if ms > 0 => Ok(Some(Duration::from_millis(ms as u64))),
        _ => Err(HostStatus::InvalidArgument as i32),
    }
}

/// Copies `len` guest bytes at `ptr`.
fn guest_vec(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Result<Vec<u8>, i32> {
    guest_bytes(caller, ptr, len)
        .map(|(bytes, _)| bytes.to_vec())
        .map_err(|s| s as i32)
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        IMPORT_MODULE,
        import::KV_GET,
        |mut caller: Caller<'_, HostState>, (sp, sl, kp, kl): (i32, i32, i32, i32)| {
            Box::new(async move {
                let t = match target(&mut caller, (sp, sl), (kp, kl), "kv") {
                    Ok(t) => t,
                    Err(status) => return status,
                };
                let result = t.store.get(&t.namespace, &t.key).await;
                let state = caller.data_mut();
                match result {
                    Ok(Some(value)) => stage(state, value.to_vec()),
                    Ok(None) => HostStatus::NotFound as i32,
                    Err(err) => store_error(state, err),
                }
            })
        },
    )?;
    linker.func_wrap_async(
        IMPORT_MODULE,
        import::KV_SET,
        |mut caller: Caller<'_, HostState>,
         (sp, sl, kp, kl, vp, vl, ttl_ms): (i32, i32, i32, i32, i32, i32, i64)| {
            Box::new(async move {
                let t = match target(&mut caller, (sp, sl), (kp, kl), "kv") {
                    Ok(t) => t,
                    Err(status) => return status,
                };
                let (value, ttl) = match (guest_vec(&mut caller, vp, vl), ttl(ttl_ms)) {
                    (Ok(value), Ok(ttl)) => (value, ttl),
                    (Err(status), _) | (_, Err(status)) => return status,
                };
                match t.store.set(&t.namespace, &t.key, &value, ttl).await {
                    Ok(()) => 0,
                    Err(err) => store_error(caller.data_mut(), err),
                }
            })
        },
    )?;
    linker.func_wrap_async(
        IMPORT_MODULE,
        import::KV_DELETE,
        |mut caller: Caller<'_, HostState>, (sp, sl, kp, kl): (i32, i32, i32, i32)| {
            Box::new(async move {
                let t = match target(&mut caller, (sp, sl), (kp, kl), "kv") {
                    Ok(t) => t,
                    Err(status) => return status,
                };
                match t.store.delete(&t.namespace, &t.key).await {
                    Ok(true) => 0,
                    Ok(false) => HostStatus::NotFound as i32,
                    Err(err) => store_error(caller.data_mut(), err),
                }
            })
        },
    )?;
    linker.func_wrap_async(
        IMPORT_MODULE,
        import::KV_LIST,
        |mut caller: Caller<'_, HostState>,
         (sp, sl, pp, pl, cp, cl, limit): (i32, i32, i32, i32, i32, i32, i32)| {
            Box::new(async move {
                // The prefix travels as the "key" of the target.
                let t = match target(&mut caller, (sp, sl), (pp, pl), "kv") {
                    Ok(t) => t,
                    Err(status) => return status,
                };
                let cursor = match guest_vec(&mut caller, cp, cl) {
                    Ok(cursor) => cursor,
                    Err(status) => return status,
                };
                let limit = match limit {
                    0 => DEFAULT_PAGE,
                    n if n > 0 && n as usize <= MAX_PAGE => n as usize,
                    _ => {
                        let state = caller.data_mut();
                        return fail(
                            state,
                            HostStatus::InvalidArgument,
                            "limit must be 1 to 1000 (0: 100)",
                        );
                    }
                };
                let cursor = (!cursor.is_empty()).then_some(cursor.as_slice());
                let result = t.store.list(&t.namespace, &t.key, cursor, limit).await;
                let state = caller.data_mut();
                match result {
                    Ok(page) => {
                        let encoded = KeyPage {
                            keys: page.keys.iter().map(|k| k.as_bytes()).collect(),
                            next: page.next.as_deref().unwrap_or_default(),
                        }
                        .encode();
                        stage(state, encoded)
                    }
                    Err(err) => store_error(state, err),
                }
            })
        },
    )?;
    linker.func_wrap_async(
        IMPORT_MODULE,
        import::KV_CAS,
        |mut caller: Caller<'_, HostState>,
         (sp, sl, kp, kl, ep, el, np, nl, ttl_ms): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i64,
        )| {
            Box::new(async move {
                let t = match target(&mut caller, (sp, sl), (kp, kl), "kv") {
                    Ok(t) => t,
                    Err(status) => return status,
                };
                let expected = match el {
                    -1 => Ok(None),
                    _ => guest_vec(&mut caller, ep, el).map(Some),
                };
                let (expected, new, ttl) =
                    match (expected, guest_vec(&mut caller, np, nl), ttl(ttl_ms)) {
                        (Ok(e), Ok(n), Ok(t)) => (e, n, t),
                        (Err(s), _, _) | (_, Err(s), _) | (_, _, Err(s)) => return s,
                    };
                let result = t
                    .store
                    .compare_and_swap(&t.namespace, &t.key, expected.as_deref(), &new, ttl)
                    .await;
                match result {
                    Ok(true) => 0,
                    Ok(false) => HostStatus::Conflict as i32,
                    Err(err) => store_error(caller.data_mut(), err),
                }
            })
        },
    )?;
    linker.func_wrap_async(
        IMPORT_MODULE,
        import::KV_INCR,
        |mut caller: Caller<'_, HostState>,
         (sp, sl, kp, kl, delta, out): (i32, i32, i32, i32, i64, i32)| {
            Box::new(async move {
                // Check the result pointer before changing anything.
                if let Err(status) = guest_bytes(&mut caller, out, 8) {
                    return status as i32;
                }
                let t = match target(&mut caller, (sp, sl), (kp, kl), "kv") {
                    Ok(t) => t,
                    Err(status) => return status,
                };
                match t.store.increment(&t.namespace, &t.key, delta).await {
                    Ok(value) => match guest_bytes(&mut caller, out, 8) {
                        Ok((bytes, _)) => {
                            bytes.copy_from_slice(&value.to_le_bytes());
                            0
                        }
                        Err(status) => status as i32,
                    },
                    Err(err) => store_error(caller.data_mut(), err),
                }
            })
        },
    )?;
    Ok(())
}
