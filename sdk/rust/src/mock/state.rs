//! The mock host's state capabilities: KV stores with TTLs on a virtual
//! clock, SQL and outbound HTTP through handlers the test installs (the
//! mock cannot run SQLite or reach the network), and GPIO pins. Each
//! checks the module's grants as the gateway does, everything denied
//! until granted, and stages an explanation when it fails.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use http::{Request, Response};
use shanhai_abi::grant::Grants;

use super::MockHost;
use crate::HostError;
use crate::sql::Value;

/// The reply of a SQL handler ([`MockHost::with_sql_handler`]) to one
/// statement: what [`Database::execute`](crate::sql::Database::execute)
/// and [`Database::query`](crate::sql::Database::query) will see.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlReply {
    /// Rows changed by an INSERT, UPDATE or DELETE.
    pub rows_affected: u64,
    /// The rowid of the last row inserted.
    pub last_insert_rowid: i64,
    /// The column names of a query.
    pub columns: Vec<String>,
    /// The rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
}

impl SqlReply {
    /// The reply to a statement that changed `rows_affected` rows, the
    /// last one inserted with rowid `last_insert_rowid`.
    pub fn changed(rows_affected: u64, last_insert_rowid: i64) -> Self {
        Self {
            rows_affected,
            last_insert_rowid,
            ..Self::default()
        }
    }

    /// The reply to a query.
    pub fn rows<C: Into<String>>(
        columns: impl IntoIterator<Item = C>,
        rows: Vec<Vec<Value>>,
    ) -> Self {
        Self {
            columns: columns.into_iter().map(Into::into).collect(),
            rows,
            ..Self::default()
        }
    }
}

/// A failure a handler answers with: the status and the explanation the
/// host stages (empty: none).
pub type HostFailure = (HostError, String);

type SqlHandler = Box<dyn FnMut(&str, &str, &[Value]) -> Result<SqlReply, HostFailure>>;
type FetchHandler = Box<dyn FnMut(Request<Vec<u8>>) -> Result<Response<Vec<u8>>, HostFailure>>;

/// The ABI's limits and the gateway's defaults (`docs/abi.md`, the `kv_*`
/// imports).
const MAX_KEY_BYTES: usize = 512;
const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;
const DEFAULT_LIST_LIMIT: usize = 100;
const MAX_LIST_LIMIT: usize = 1000;

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    /// When it expires on the virtual clock; `None`: never.
    expires: Option<Duration>,
}

/// The state the state imports see.
pub(super) struct StateHost {
    grants: Grants,
    stores: BTreeMap<String, BTreeMap<Vec<u8>, Entry>>,
    max_value_bytes: usize,
    /// The virtual clock: how far the test has advanced it.
    now: Duration,
    sql: Option<SqlHandler>,
    fetch: Option<FetchHandler>,
    gpio: BTreeMap<u32, bool>,
    gpio_writes: Vec<(u32, bool)>,
}

impl Default for StateHost {
    fn default() -> Self {
        Self {
            grants: Grants::default(),
            stores: BTreeMap::new(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            now: Duration::ZERO,
            sql: None,
            fetch: None,
            gpio: BTreeMap::new(),
            gpio_writes: Vec::new(),
        }
    }
}

impl fmt::Debug for StateHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateHost")
            .field("grants", &self.grants)
            .field("stores", &self.stores)
            .field("now", &self.now)
            .field("sql", &self.sql.is_some())
            .field("fetch", &self.fetch.is_some())
            .field("gpio", &self.gpio)
            .finish_non_exhaustive()
    }
}

impl StateHost {
    fn live(&self, store: &str, key: &[u8]) -> Option<&Entry> {
        self.stores
            .get(store)?
            .get(key)
            .filter(|e| e.expires.is_none_or(|at| self.now < at))
    }

    fn entry(&self, value: &[u8], ttl_ms: i64) -> Entry {
        let ttl = u64::try_from(ttl_ms).unwrap_or(0);
        Entry {
            value: value.to_vec(),
            expires: (ttl > 0).then(|| self.now + Duration::from_millis(ttl)),
        }
    }
}

/// The state capabilities: grants, the KV stores and their clock, the SQL
/// and HTTP handlers, GPIO pins.
impl MockHost {
    /// Grants the KV store `store`: `""` is the module's own (`kv =
    /// true`), any other name a shared store (`kv_stores = ["name"]`).
    /// Without a grant, every [`kv`](crate::kv) call on the store is
    /// denied, as on the gateway.
    pub fn with_kv_grant(mut self, store: impl Into<String>) -> Self {
        let store = store.into();
        if store.is_empty() {
            self.state.stores.grants.kv = true;
        } else {
            self.state.stores.grants.kv_stores.push(store);
        }
        self
    }

    /// Grants the SQLite database `database`: `""` is the module's own
    /// (`sqlite = true`), any other name a shared one (`sqlite_databases`).
    pub fn with_sqlite_grant(mut self, database: impl Into<String>) -> Self {
        let database = database.into();
        if database.is_empty() {
            self.state.stores.grants.sqlite = true;
        } else {
            self.state.stores.grants.sqlite_databases.push(database);
        }
        self
    }

    /// Adds an entry to the module's `http` grant: `"host"` (ports 80 and
    /// 443), `"host:port"`, `"host:*"` (any port), or `"*.domain"` (any
    /// subdomain) with those port forms.
    pub fn with_http_grant(mut self, entry: impl Into<String>) -> Self {
        self.state.stores.grants.http.push(entry.into());
        self
    }

    /// Grants reading GPIO `pin` (`gpio_in`).
    pub fn with_gpio_in_grant(mut self, pin: u32) -> Self {
        self.state.stores.grants.gpio_in.push(pin);
        self
    }

    /// Grants driving (and reading) GPIO `pin` (`gpio_out`).
    pub fn with_gpio_out_grant(mut self, pin: u32) -> Self {
        self.state.stores.grants.gpio_out.push(pin);
        self
    }

    /// Limits KV values to `limit` bytes, like the gateway's
    /// `kv.max_value_bytes` (1 MiB by default); a larger one fails with
    /// [`HostError::TooLarge`].
    pub fn with_max_kv_value_bytes(mut self, limit: usize) -> Self {
        self.state.stores.max_value_bytes = limit;
        self
    }

    /// Sets `key` in `store` (`""`: the module's own) directly, as if it
    /// had been set before, or by another module sharing the store;
    /// `ttl` as in [`Store::set`](crate::kv::Store::set). It needs no
    /// grant.
    pub fn kv_put(
        &mut self,
        store: &str,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Option<Duration>,
    ) {
        let stores = &mut self.state.stores;
        let entry = Entry {
            value: value.as_ref().to_vec(),
            expires: ttl.map(|ttl| stores.now + ttl),
        };
        stores
            .stores
            .entry(store.to_owned())
            .or_default()
            .insert(key.as_ref().to_vec(), entry);
    }

    /// The value of `key` in `store` (`""`: the module's own), unless it
    /// is absent or expired.
    pub fn kv_value(&self, store: &str, key: impl AsRef<[u8]>) -> Option<&[u8]> {
        self.state
            .stores
            .live(store, key.as_ref())
            .map(|e| e.value.as_slice())
    }

    /// The keys of `store` (`""`: the module's own) that have not
    /// expired, in byte-wise order.
    pub fn kv_keys(&self, store: &str) -> Vec<&[u8]> {
        let stores = &self.state.stores;
        stores.stores.get(store).map_or_else(Vec::new, |entries| {
            entries
                .keys()
                .filter(|k| stores.live(store, k).is_some())
                .map(Vec::as_slice)
                .collect()
        })
    }

    /// Moves the virtual clock by which KV entries expire forward by `by`.
    pub fn advance_clock(&mut self, by: Duration) {
        self.state.stores.now += by;
    }

    /// Answers the module's SQL statements with `handler`, in place of
    /// SQLite: it gets the database (`""`: the module's own), the
    /// statement and its parameters, once the host has checked the grant
    /// and decoded them; its reply is encoded as the gateway's would be.
    /// An `Err` fails the call with that status and explanation (the host
    /// reports bad SQL as [`HostError::InvalidArgument`] with SQLite's
    /// message). Without a handler, statements fail with
    /// [`HostError::Unavailable`].
    pub fn with_sql_handler(
        mut self,
        handler: impl FnMut(&str, &str, &[Value]) -> Result<SqlReply, HostFailure> + 'static,
    ) -> Self {
        self.state.stores.sql = Some(Box::new(handler));
        self
    }

    /// Answers the module's outbound HTTP requests
    /// ([`fetch`](crate::fetch())) with `handler`, in place of the
    /// network, once the host has checked the URL against the `http`
    /// grant. The request has the absolute URI and the headers the module
    /// sent. An `Err` fails the call with that status and explanation
    /// (for example [`HostError::Unavailable`] for a refused connection).
    /// Without a handler, requests fail with [`HostError::Unavailable`].
    pub fn with_fetch_handler(
        mut self,
        handler: impl FnMut(Request<Vec<u8>>) -> Result<Response<Vec<u8>>, HostFailure> + 'static,
    ) -> Self {
        self.state.stores.fetch = Some(Box::new(handler));
        self
    }

    /// Gives the board GPIO `pin`, at level `high`: pins exist only once
    /// set, and a module reads or drives one only when its grants allow.
    pub fn with_gpio_pin(mut self, pin: u32, high: bool) -> Self {
        self.set_gpio(pin, high);
        self
    }

    /// Sets the level of GPIO `pin`, giving the board the pin if it had
    /// none (an input changing, for example).
    pub fn set_gpio(&mut self, pin: u32, high: bool) {
        self.state.stores.gpio.insert(pin, high);
    }

    /// The level of GPIO `pin`, as last set or written; `None` when the
    /// board has no such pin.
    pub fn gpio(&self, pin: u32) -> Option<bool> {
        self.state.stores.gpio.get(&pin).copied()
    }

    /// Every write the module made to a GPIO pin, oldest first: the pin
    /// and whether it drove it high.
    pub fn gpio_writes(&self) -> &[(u32, bool)] {
        &self.state.stores.gpio_writes
    }
}

/// The mock's state imports, called through [`crate::host`]. Like every
/// call marked † in the ABI, each first clears what is staged.
pub(crate) mod imports {
    use http::header::{HeaderName, HeaderValue};
    use http::{Request, Uri};
    use shanhai_abi::wire::{
        Header, HttpRequest, HttpResponse, KeyPage, SqlResult, SqlValue, decode_sql_params,
    };

    use super::super::{HostState, STATE};
    use super::{DEFAULT_LIST_LIMIT, MAX_KEY_BYTES, MAX_LIST_LIMIT};
    use crate::HostError;
    use crate::sql::Value;

    /// Stages `message` (when not empty) as the explanation of a failure
    /// and returns `error`.
    fn fail(state: &mut HostState, error: HostError, message: &str) -> HostError {
        if !message.is_empty() {
            state.staged = Some(message.as_bytes().to_vec());
        }
        error
    }

    fn stage(state: &mut HostState, bytes: Vec<u8>) -> usize {
        let len = bytes.len();
        state.staged = Some(bytes);
        len
    }

    /// Clears the stage and checks the grant for `store` and the key.
    fn begin_kv(state: &mut HostState, store: &str, key: Option<&[u8]>) -> Result<(), HostError> {
        state.staged = None;
        if !state.stores.grants.allows_kv(store) {
            let why = if store.is_empty() {
                "the module's own KV namespace is not granted (grants.kv = true)".to_owned()
            } else {
                format!("the KV store `{store}` is not granted (grants.kv_stores)")
            };
            return Err(fail(state, HostError::Denied, &why));
        }
        match key {
            Some(key) if key.is_empty() || key.len() > MAX_KEY_BYTES => {
                let why = format!("a key must be 1 to 512 bytes, not {}", key.len());
                Err(fail(state, HostError::InvalidArgument, &why))
            }
            _ => Ok(()),
        }
    }

    fn check_value(state: &mut HostState, value: &[u8], ttl_ms: i64) -> Result<(), HostError> {
        if ttl_ms < 0 {
            return Err(fail(state, HostError::InvalidArgument, "a negative TTL"));
        }
        let max = state.stores.max_value_bytes;
        if value.len() > max {
            let why = format!("the value is larger than kv.max_value_bytes ({max})");
            return Err(fail(state, HostError::TooLarge, &why));
        }
        Ok(())
    }

    pub(crate) fn kv_get(store: &str, key: &[u8]) -> Result<usize, HostError> {
        STATE.with_borrow_mut(|state| {
            begin_kv(state, store, Some(key))?;
            let value = state
                .stores
                .live(store, key)
                .ok_or(HostError::NotFound)?
                .value
                .clone();
            Ok(stage(state, value))
        })
    }

    pub(crate) fn kv_set(
        store: &str,
        key: &[u8],
        value: &[u8],
        ttl_ms: i64,
    ) -> Result<(), HostError> {
        STATE.with_borrow_mut(|state| {
            begin_kv(state, store, Some(key))?;
            check_value(state, value, ttl_ms)?;
            let entry = state.stores.entry(value, ttl_ms);
            state
                .stores
                .stores
                .entry(store.to_owned())
                .or_default()
                .insert(key.to_vec(), entry);
            Ok(())
        })
    }

    pub(crate) fn kv_delete(store: &str, key: &[u8]) -> Result<(), HostError> {
        STATE.with_borrow_mut(|state| {
            begin_kv(state, store, Some(key))?;
            state.stores.live(store, key).ok_or(HostError::NotFound)?;
            if let Some(entries) = state.stores.stores.get_mut(store) {
                entries.remove(key);
            }
            Ok(())
        })
    }

    /// The cursor of a page is its last key.
    pub(crate) fn kv_list(
        store: &str,
        prefix: &[u8],
        cursor: &[u8],
        limit: u32,
    ) -> Result<usize, HostError> {
        STATE.with_borrow_mut(|state| {
            begin_kv(state, store, None)?;
            let limit = match usize::try_from(limit).unwrap_or(usize::MAX) {
                0 => DEFAULT_LIST_LIMIT,
                n if n <= MAX_LIST_LIMIT => n,
                n => {
                    let why = format!("the limit must be 1 to 1000 (0: 100), not {n}");
                    return Err(fail(state, HostError::InvalidArgument, &why));
                }
            };
            let stores = &state.stores;
            let mut matching = stores
                .stores
                .get(store)
                .into_iter()
                .flat_map(|entries| entries.keys())
                .filter(|k| k.starts_with(prefix) && (cursor.is_empty() || k.as_slice() > cursor))
                .filter(|k| stores.live(store, k).is_some());
            let keys: Vec<&[u8]> = matching.by_ref().take(limit).map(Vec::as_slice).collect();
            let next = match (matching.next(), keys.last()) {
                (Some(_), Some(last)) => last,
                _ => &[][..],
            };
            let page = KeyPage { keys, next }.encode();
            Ok(stage(state, page))
        })
    }

    pub(crate) fn kv_cas(
        store: &str,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
        ttl_ms: i64,
    ) -> Result<(), HostError> {
        STATE.with_borrow_mut(|state| {
            begin_kv(state, store, Some(key))?;
            check_value(state, new, ttl_ms)?;
            let current = state.stores.live(store, key).map(|e| e.value.as_slice());
            if current != expected {
                return Err(HostError::Conflict);
            }
            let entry = state.stores.entry(new, ttl_ms);
            state
                .stores
                .stores
                .entry(store.to_owned())
                .or_default()
                .insert(key.to_vec(), entry);
            Ok(())
        })
    }

    /// The entry keeps its expiry.
    pub(crate) fn kv_incr(store: &str, key: &[u8], delta: i64) -> Result<i64, HostError> {
        STATE.with_borrow_mut(|state| {
            begin_kv(state, store, Some(key))?;
            let current = match state.stores.live(store, key) {
                None => 0,
                Some(entry) => match std::str::from_utf8(&entry.value).map(str::parse::<i64>) {
                    Ok(Ok(n)) => n,
                    _ => {
                        let why = format!(
                            "the value of `{}` is not a decimal i64",
                            String::from_utf8_lossy(key)
                        );
                        return Err(fail(state, HostError::InvalidArgument, &why));
                    }
                },
            };
            let Some(sum) = current.checked_add(delta) else {
                return Err(fail(
                    state,
                    HostError::InvalidArgument,
                    "the sum overflows i64",
                ));
            };
            let expires = state.stores.live(store, key).and_then(|e| e.expires);
            state
                .stores
                .stores
                .entry(store.to_owned())
                .or_default()
                .insert(
                    key.to_vec(),
                    super::Entry {
                        value: sum.to_string().into_bytes(),
                        expires,
                    },
                );
            Ok(sum)
        })
    }

    pub(crate) fn sql_exec(db: &str, sql: &str, params: &[u8]) -> Result<usize, HostError> {
        let (mut handler, values) = STATE.with_borrow_mut(|state| {
            state.staged = None;
            if !state.stores.grants.allows_sqlite(db) {
                let why = if db.is_empty() {
                    "the module's own SQLite database is not granted (grants.sqlite = true)"
                        .to_owned()
                } else {
                    format!("the SQLite database `{db}` is not granted (grants.sqlite_databases)")
                };
                return Err(fail(state, HostError::Denied, &why));
            }
            let values: Vec<Value> = match decode_sql_params(params) {
                Ok(values) => values.iter().map(Value::from_wire).collect(),
                Err(e) => {
                    let why = format!("bad SQL parameters: {e}");
                    return Err(fail(state, HostError::InvalidArgument, &why));
                }
            };
            match state.stores.sql.take() {
                Some(handler) => Ok((handler, values)),
                None => Err(fail(
                    state,
                    HostError::Unavailable,
                    "the mock host has no SQL handler",
                )),
            }
        })?;
        // The handler runs outside the borrow, so it may be anything.
        let reply = handler(db, sql, &values);
        STATE.with_borrow_mut(|state| {
            state.stores.sql = Some(handler);
            let reply = reply.map_err(|(error, why)| fail(state, error, &why))?;
            if let Some(row) = reply.rows.iter().find(|r| r.len() != reply.columns.len()) {
                let why = format!(
                    "the SQL handler's row has {} values for {} columns",
                    row.len(),
                    reply.columns.len()
                );
                return Err(fail(state, HostError::Internal, &why));
            }
            let result = SqlResult {
                rows_affected: reply.rows_affected,
                last_insert_rowid: reply.last_insert_rowid,
                columns: reply.columns.iter().map(String::as_str).collect(),
                rows: reply
                    .rows
                    .iter()
                    .map(|row| {
                        row.iter()
                            .map(Value::to_wire)
                            .collect::<Vec<SqlValue<'_>>>()
                    })
                    .collect(),
            }
            .encode();
            Ok(stage(state, result))
        })
    }

    pub(crate) fn http_fetch(request: &[u8]) -> Result<usize, HostError> {
        let (mut handler, request) = STATE.with_borrow_mut(|state| {
            state.staged = None;
            let wire = match HttpRequest::decode(request) {
                Ok(wire) => wire,
                Err(e) => {
                    let why = format!("bad request envelope: {e}");
                    return Err(fail(state, HostError::InvalidArgument, &why));
                }
            };
            let uri = match Uri::try_from(wire.uri) {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.host().is_some() =>
                {
                    uri
                }
                _ => {
                    let why = format!("`{}` is not an absolute http:// or https:// URL", wire.uri);
                    return Err(fail(state, HostError::InvalidArgument, &why));
                }
            };
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                });
            if !state.stores.grants.allows_http(host, port) {
                let why = format!("outbound HTTP to {host}:{port} is not granted (grants.http)");
                return Err(fail(state, HostError::Denied, &why));
            }
            let Some(request) = server_request(&wire, uri) else {
                return Err(fail(
                    state,
                    HostError::InvalidArgument,
                    "bad method or header",
                ));
            };
            match state.stores.fetch.take() {
                Some(handler) => Ok((handler, request)),
                None => Err(fail(
                    state,
                    HostError::Unavailable,
                    "the mock host has no HTTP handler",
                )),
            }
        })?;
        let reply = handler(request);
        STATE.with_borrow_mut(|state| {
            state.stores.fetch = Some(handler);
            let response = reply.map_err(|(error, why)| fail(state, error, &why))?;
            let envelope = HttpResponse {
                status: response.status().as_u16(),
                headers: response
                    .headers()
                    .iter()
                    .map(|(name, value)| Header {
                        name: name.as_str().as_bytes(),
                        value: value.as_bytes(),
                    })
                    .collect(),
                body: response.body(),
            }
            .encode();
            Ok(stage(state, envelope))
        })
    }

    fn server_request(wire: &HttpRequest<'_>, uri: Uri) -> Option<Request<Vec<u8>>> {
        let mut request = Request::builder().method(wire.method).uri(uri);
        for header in &wire.headers {
            request = request.header(
                HeaderName::from_bytes(header.name).ok()?,
                HeaderValue::from_bytes(header.value).ok()?,
            );
        }
        request.body(wire.body.to_vec()).ok()
    }

    pub(crate) fn gpio_read(pin: i32) -> Result<bool, HostError> {
        STATE.with_borrow_mut(|state| {
            state.staged = None;
            let granted = u32::try_from(pin)
                .ok()
                .filter(|&p| state.stores.grants.allows_gpio_read(p));
            let Some(pin) = granted else {
                let why = format!("GPIO {pin} is not granted (grants.gpio_in or gpio_out)");
                return Err(fail(state, HostError::Denied, &why));
            };
            match state.stores.gpio.get(&pin) {
                Some(&high) => Ok(high),
                None => {
                    let why = format!("the GPIO interface has no pin {pin}");
                    Err(fail(state, HostError::NotFound, &why))
                }
            }
        })
    }

    pub(crate) fn gpio_write(pin: i32, high: bool) -> Result<(), HostError> {
        STATE.with_borrow_mut(|state| {
            state.staged = None;
            let granted = u32::try_from(pin)
                .ok()
                .filter(|&p| state.stores.grants.allows_gpio_write(p));
            let Some(pin) = granted else {
                let why = format!("GPIO {pin} is not granted as an output (grants.gpio_out)");
                return Err(fail(state, HostError::Denied, &why));
            };
            let Some(level) = state.stores.gpio.get_mut(&pin) else {
                let why = format!("the GPIO interface has no pin {pin}");
                return Err(fail(state, HostError::NotFound, &why));
            };
            *level = high;
            state.stores.gpio_writes.push((pin, high));
            Ok(())
        })
    }
}
