//! Key-value stores of the host (`kv_get`, `kv_set`, `kv_delete`,
//! `kv_list`, `kv_cas`, `kv_incr`): the module's own namespace, or stores
//! shared between modules.
//!
//! A store is a capability: the module's own needs `kv = true` in its
//! `[modules.NAME.grants]`, a shared one its name in `kv_stores`:
//!
//! ```toml
//! [modules.counter.grants]
//! kv = true
//! kv_stores = ["sessions"]
//! ```
//!
//! Without the grant every call fails with [`HostError::Denied`], and the
//! [`Error`]'s message says which grant is missing. Keys are 1 to 512
//! bytes, values up to the gateway's `kv.max_value_bytes` (1 MiB by
//! default).
//!
//! ```
//! use std::time::Duration;
//! use shanhai_sdk::kv::Store;
//!
//! # fn f() -> Result<(), shanhai_sdk::Error> {
//! let visits = Store::own().increment("visits", 1)?;
//! let sessions = Store::shared("sessions");
//! sessions.set("s-42", b"alice", Some(Duration::from_secs(1800)))?;
//! if let Some(user) = sessions.get("s-42")? {
//!     shanhai_sdk::info!("{} ({visits} visits)", String::from_utf8_lossy(&user));
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use shanhai_abi::import;
use shanhai_abi::wire;

use crate::{Error, HostError, host};

/// A KV store of the host, by name: [`Store::own`] is the module's own
/// namespace, [`Store::shared`] a store shared between modules. It only
/// names the store, so make one wherever it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Store {
    name: String,
}

/// A page of keys from [`Store::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyPage {
    /// The keys, in byte-wise order.
    pub keys: Vec<Vec<u8>>,
    /// The cursor for the next page; `None` on the last page.
    pub next: Option<Vec<u8>>,
}

impl Store {
    /// The module's own namespace (grant `kv = true`): no other module
    /// sees its keys.
    pub fn own() -> Self {
        Self::shared("")
    }

    /// The shared store `name` (grant `kv_stores = ["name"]`); the empty
    /// name is the module's own.
    pub fn shared(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// The store's name, empty for the module's own.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of `key`, or `None` when it is absent or has expired.
    ///
    /// # Errors
    /// [`HostError::Denied`] without a grant for the store,
    /// [`HostError::InvalidArgument`] for a key out of range,
    /// [`HostError::Unavailable`] when the store is down.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, Error> {
        match host::kv_get(&self.name, key.as_ref()) {
            Ok(len) => host::read_staged(len)
                .map(Some)
                .map_err(|kind| Error::new(import::KV_GET, kind, None)),
            Err(HostError::NotFound) => Ok(None),
            Err(kind) => Err(host::explain(import::KV_GET, kind)),
        }
    }

    /// Sets `key` to `value`, expiring after `ttl` (rounded up to a whole
    /// millisecond), or never for `None`.
    ///
    /// # Errors
    /// As [`get`](Self::get), and [`HostError::TooLarge`] for a value
    /// beyond the gateway's `kv.max_value_bytes`.
    pub fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        host::kv_set(&self.name, key.as_ref(), value.as_ref(), ttl_ms(ttl))
            .map_err(|kind| host::explain(import::KV_SET, kind))
    }

    /// Deletes `key`; `false` when it did not exist.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        match host::kv_delete(&self.name, key.as_ref()) {
            Ok(()) => Ok(true),
            Err(HostError::NotFound) => Ok(false),
            Err(kind) => Err(host::explain(import::KV_DELETE, kind)),
        }
    }

    /// One page of at most `limit` keys (1 to 1000; 0 means 100) that
    /// start with `prefix`, resuming after `cursor`: empty for the first
    /// page, then each page's [`next`](KeyPage::next). [`keys`](Self::keys)
    /// does the paging.
    ///
    /// ```
    /// # fn f() -> Result<(), shanhai_sdk::Error> {
    /// let store = shanhai_sdk::kv::Store::own();
    /// let mut cursor = Vec::new();
    /// loop {
    ///     let page = store.list("user:", &cursor, 100)?;
    ///     for key in &page.keys {
    ///         shanhai_sdk::info!("{}", String::from_utf8_lossy(key));
    ///     }
    ///     match page.next {
    ///         Some(next) => cursor = next,
    ///         None => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`get`](Self::get), and [`HostError::InvalidArgument`] for a
    /// limit above 1000.
    pub fn list(
        &self,
        prefix: impl AsRef<[u8]>,
        cursor: impl AsRef<[u8]>,
        limit: u32,
    ) -> Result<KeyPage, Error> {
        let len = host::kv_list(&self.name, prefix.as_ref(), cursor.as_ref(), limit)
            .map_err(|kind| host::explain(import::KV_LIST, kind))?;
        let bytes =
            host::read_staged(len).map_err(|kind| Error::new(import::KV_LIST, kind, None))?;
        let page = wire::KeyPage::decode(&bytes).map_err(|e| {
            Error::new(
                import::KV_LIST,
                HostError::Internal,
                Some(format!("malformed key page: {e}")),
            )
        })?;
        Ok(KeyPage {
            keys: page.keys.iter().map(|k| k.to_vec()).collect(),
            next: (!page.next.is_empty()).then(|| page.next.to_vec()),
        })
    }

    /// Every key that starts with `prefix`, in byte-wise order, fetched a
    /// page of 100 at a time. After an error the iterator ends.
    ///
    /// ```
    /// # fn f() -> Result<(), shanhai_sdk::Error> {
    /// for key in shanhai_sdk::kv::Store::own().keys("user:") {
    ///     let key = key?;
    ///     # let _ = key;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn keys(&self, prefix: impl AsRef<[u8]>) -> Keys<'_> {
        Keys {
            store: self,
            prefix: prefix.as_ref().to_vec(),
            cursor: Some(Vec::new()),
            page: Vec::new().into_iter(),
        }
    }

    /// Sets `key` to `new` (with `ttl` as in [`set`](Self::set)) only if
    /// its current value is `expected`, or, for `None`, only if it is
    /// absent; `false` when the value was another one. The check and the
    /// write are one atomic step on the host, so instances can update a
    /// key concurrently without losing writes:
    ///
    /// ```
    /// # fn f() -> Result<(), shanhai_sdk::Error> {
    /// let store = shanhai_sdk::kv::Store::own();
    /// loop {
    ///     let old = store.get("stock")?;
    ///     let n: u64 = old.as_deref().map_or(0, |v| String::from_utf8_lossy(v).parse().unwrap_or(0));
    ///     if store.compare_and_swap("stock", old.as_deref(), (n + 10).to_string(), None)? {
    ///         break;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new: impl AsRef<[u8]>,
        ttl: Option<Duration>,
    ) -> Result<bool, Error> {
        match host::kv_cas(
            &self.name,
            key.as_ref(),
            expected,
            new.as_ref(),
            ttl_ms(ttl),
        ) {
            Ok(()) => Ok(true),
            Err(HostError::Conflict) => Ok(false),
            Err(kind) => Err(host::explain(import::KV_CAS, kind)),
        }
    }

    /// Adds `delta` (which may be negative) to the integer stored at `key`
    /// as decimal text, an absent key counting as 0, atomically, and
    /// returns the new value.
    ///
    /// # Errors
    /// As [`get`](Self::get), and [`HostError::InvalidArgument`] when the
    /// value is not a decimal `i64` or the sum overflows.
    pub fn increment(&self, key: impl AsRef<[u8]>, delta: i64) -> Result<i64, Error> {
        host::kv_incr(&self.name, key.as_ref(), delta)
            .map_err(|kind| host::explain(import::KV_INCR, kind))
    }
}

/// The keys of a store with a prefix, from [`Store::keys`].
#[derive(Debug)]
pub struct Keys<'a> {
    store: &'a Store,
    prefix: Vec<u8>,
    /// Where the next page starts; `None` once the last page is fetched.
    cursor: Option<Vec<u8>>,
    page: std::vec::IntoIter<Vec<u8>>,
}

impl Iterator for Keys<'_> {
    type Item = Result<Vec<u8>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(key) = self.page.next() {
                return Some(Ok(key));
            }
            let cursor = self.cursor.take()?;
            match self.store.list(&self.prefix, &cursor, 0) {
                Ok(page) => {
                    self.cursor = page.next;
                    self.page = page.keys.into_iter();
                }
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

/// A TTL in the ABI's milliseconds: 0 is no expiry, so a TTL rounds up to
/// at least 1.
fn ttl_ms(ttl: Option<Duration>) -> i64 {
    ttl.map_or(0, |ttl| {
        let ms = ttl.as_nanos().div_ceil(1_000_000).max(1);
        i64::try_from(ms).unwrap_or(i64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_a_millisecond() {
        assert_eq!(ttl_ms(None), 0);
        assert_eq!(ttl_ms(Some(Duration::ZERO)), 1);
        assert_eq!(ttl_ms(Some(Duration::from_nanos(1))), 1);
        assert_eq!(ttl_ms(Some(Duration::from_micros(1500))), 2);
        assert_eq!(ttl_ms(Some(Duration::from_secs(2))), 2000);
        assert_eq!(ttl_ms(Some(Duration::MAX)), i64::MAX);
    }
}
