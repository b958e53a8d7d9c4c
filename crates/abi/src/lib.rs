//! Shanhai's guest<->host ABI, shared by the runtime and the Rust SDK.
//!
//! This crate has no dependencies and knows nothing about wasmtime: it holds
//! the names of the `shanhai` host imports and guest exports, the status
//! codes that cross the boundary, and the compact binary envelopes
//! ([`wire`]) in which events and their results travel. `docs/abi.md` is the
//! prose specification; this crate is its executable form, and both must
//! change together.
//!
//! ```
//! use shanhai_abi::wire::{HttpRequest, Header};
//!
//! let request = HttpRequest {
//!     method: "GET",
//!     uri: "/hello?name=edge",
//!     request_id: "r-1",
//!     remote_addr: "127.0.0.1:5000",
//!     headers: vec![Header { name: b"accept", value: b"*/*" }],
//!     body: b"",
//! };
//! let bytes = request.encode();
//! assert_eq!(HttpRequest::decode(&bytes).unwrap(), request);
//! ```

#[doc(hidden)]
pub mod fuzzing;
pub mod grant;
pub mod wire;

/// The ABI version this crate describes; a guest reports its own through
/// the [`EXPORT_ABI_VERSION`] export.
pub const ABI_VERSION: i32 = 1;

/// The import module under which every Shanhai host function lives.
pub const IMPORT_MODULE: &str = "shanhai";

/// Guest export: `() -> i32`, the ABI version the guest speaks.
pub const EXPORT_ABI_VERSION: &str = "shanhai_abi_version";
/// Guest export: `(len: i32) -> i32`, a pointer to `len` writable bytes
/// (valid until the next call into the guest), or 0 when it cannot allocate.
pub const EXPORT_ALLOC: &str = "shanhai_alloc";
/// Guest export: `(kind: i32, ptr: i32, len: i32) -> i32`, handles one
/// event and returns an [`EventStatus`].
pub const EXPORT_EVENT: &str = "shanhai_event";
/// WASI reactor initialiser (`-buildmode=c-shared` Go, Rust cdylib).
pub const EXPORT_INITIALIZE: &str = "_initialize";
/// WASI command entry point (a plain `main`).
pub const EXPORT_START: &str = "_start";

/// Names of the host functions in the [`IMPORT_MODULE`] namespace.
pub mod import {
    /// `(level: i32, ptr: i32, len: i32)`: one log line from the guest.
    pub const LOG: &str = "log";
    /// `(ptr: i32, len: i32) -> i32`: append bytes to the current event's
    /// output; returns 0 or a negative [`HostStatus`](crate::HostStatus).
    pub const OUTPUT_WRITE: &str = "output_write";
    /// `(key_ptr: i32, key_len: i32) -> i32`: stage the value of a config
    /// variable; returns its length or a negative status.
    pub const CONFIG_GET: &str = "config_get";
    /// `(ptr: i32, len: i32) -> i32`: copy the staged value into guest
    /// memory; returns the number of bytes copied or a negative status.
    pub const STAGED_READ: &str = "staged_read";

    /// `(conn: i64, type: i32, ptr: i32, len: i32) -> i32`: send a message
    /// (type 2 text, 3 binary) to one of the module's WebSocket connections.
    pub const WS_SEND: &str = "ws_send";
    /// `(conn: i64, code: i32, reason_ptr: i32, reason_len: i32) -> i32`:
    /// close one of the module's connections.
    pub const WS_CLOSE: &str = "ws_close";
    /// `(conn: i64, room_ptr: i32, room_len: i32) -> i32`: add a connection
    /// to a room of the module.
    pub const WS_JOIN: &str = "ws_join";
    /// `(conn: i64, room_ptr: i32, room_len: i32) -> i32`: remove a
    /// connection from a room.
    pub const WS_LEAVE: &str = "ws_leave";
    /// `(room_ptr: i32, room_len: i32, type: i32, ptr: i32, len: i32,
    /// except: i64) -> i32`: send a message to every connection in a room
    /// but `except` (0 for none); returns how many it was queued for.
    pub const WS_BROADCAST: &str = "ws_broadcast";

    /// `(topic_ptr: i32, topic_len: i32, payload_ptr: i32, payload_len:
    /// i32, qos: i32, retain: i32) -> i32`: publish an MQTT message to a
    /// topic the module is granted.
    pub const MQTT_PUBLISH: &str = "mqtt_publish";

    /// `(store_ptr, store_len, key_ptr, key_len: i32) -> i32`: stage a
    /// value of a KV store (an empty store name is the module's own);
    /// returns its length or a negative status.
    pub const KV_GET: &str = "kv_get";
    /// `(store_ptr, store_len, key_ptr, key_len, value_ptr, value_len: i32,
    /// ttl_ms: i64) -> i32`: set a value (ttl 0: no expiry).
    pub const KV_SET: &str = "kv_set";
    /// `(store_ptr, store_len, key_ptr, key_len: i32) -> i32`: delete a key;
    /// `not_found` when it did not exist.
    pub const KV_DELETE: &str = "kv_delete";
    /// `(store_ptr, store_len, prefix_ptr, prefix_len, cursor_ptr,
    /// cursor_len, limit: i32) -> i32`: stage a
    /// [`KeyPage`](crate::wire::KeyPage) of keys with a prefix.
    pub const KV_LIST: &str = "kv_list";
    /// `(store_ptr, store_len, key_ptr, key_len, expected_ptr, expected_len,
    /// new_ptr, new_len: i32, ttl_ms: i64) -> i32`: compare-and-swap
    /// (`expected_len` −1: the key must be absent); 0 or `conflict`.
    pub const KV_CAS: &str = "kv_cas";
    /// `(store_ptr, store_len, key_ptr, key_len: i32, delta: i64,
    /// result_ptr: i32) -> i32`: atomic increment; the new value is written
    /// at `result_ptr` as an `i64`.
    pub const KV_INCR: &str = "kv_incr";

    /// `(db_ptr, db_len, sql_ptr, sql_len, params_ptr, params_len: i32) ->
    /// i32`: run one SQL statement; stages a
    /// [`SqlResult`](crate::wire::SqlResult) and returns its length.
    pub const SQL_EXEC: &str = "sql_exec";

    /// `(request_ptr: i32, request_len: i32) -> i32`: an outbound HTTP
    /// request ([`HttpRequest`](crate::wire::HttpRequest) with an absolute
    /// URL); stages the [`HttpResponse`](crate::wire::HttpResponse).
    pub const HTTP_FETCH: &str = "http_fetch";

    /// `(pin: i32) -> i32`: read a GPIO pin; 0 or 1.
    pub const GPIO_READ: &str = "gpio_read";
    /// `(pin: i32, value: i32) -> i32`: drive a GPIO output pin.
    pub const GPIO_WRITE: &str = "gpio_write";

    /// Every host function of this ABI version, for load-time validation.
    pub const ALL: &[&str] = &[
        LOG,
        OUTPUT_WRITE,
        CONFIG_GET,
        STAGED_READ,
        WS_SEND,
        WS_CLOSE,
        WS_JOIN,
        WS_LEAVE,
        WS_BROADCAST,
        MQTT_PUBLISH,
        KV_GET,
        KV_SET,
        KV_DELETE,
        KV_LIST,
        KV_CAS,
        KV_INCR,
        SQL_EXEC,
        HTTP_FETCH,
        GPIO_READ,
        GPIO_WRITE,
    ];
}

/// The kind of event passed to [`EXPORT_EVENT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum EventKind {
    /// An HTTP request ([`wire::HttpRequest`] in, [`wire::HttpResponse`] out).
    Http = 1,
    /// A call of a named byte function ([`wire::Call`] in, raw bytes out).
    Call = 2,
    /// A WebSocket event ([`wire::WsEvent`] in; a message for the
    /// connection, or nothing, out).
    WebSocket = 3,
    /// A timer fired ([`wire::TimerEvent`] in; the output is ignored).
    Timer = 4,
    /// An MQTT message ([`wire::MqttMessage`] in; [`wire::MqttOutput`], the
    /// messages to publish, out).
    Mqtt = 5,
    /// A TCP stream event ([`wire::TcpEvent`] in; bytes to write back out).
    Tcp = 6,
}

impl EventKind {
    /// Decodes a raw kind, `None` for kinds this ABI version does not know.
    pub fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            1 => Some(Self::Http),
            2 => Some(Self::Call),
            3 => Some(Self::WebSocket),
            4 => Some(Self::Timer),
            5 => Some(Self::Mqtt),
            6 => Some(Self::Tcp),
            _ => None,
        }
    }
}

/// What [`EXPORT_EVENT`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum EventStatus {
    /// Handled; the output is the event's result.
    Ok = 0,
    /// The guest failed; the output is a UTF-8 error message.
    Error = 1,
    /// The event names something the guest does not have (for example an
    /// unknown byte function).
    NotFound = 2,
    /// The guest has no handler for this kind of event.
    Unsupported = 3,
}

impl EventStatus {
    /// Decodes a raw status, `None` for values outside the ABI.
    pub fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            0 => Some(Self::Ok),
            1 => Some(Self::Error),
            2 => Some(Self::NotFound),
            3 => Some(Self::Unsupported),
            _ => None,
        }
    }
}

/// Negative results of host functions. Guest-visible failures are statuses,
/// never traps: the SDKs turn them into error values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum HostStatus {
    /// The key, variable or resource does not exist.
    NotFound = -1,
    /// The module has no grant for this capability.
    Denied = -2,
    /// An argument was malformed (bad UTF-8, out-of-bounds pointer, ...).
    InvalidArgument = -3,
    /// A size limit was exceeded.
    TooLarge = -4,
    /// The backing service is unavailable or timed out.
    Unavailable = -5,
    /// A failure inside the host; the host logs the details.
    Internal = -6,
    /// Nothing is staged for [`import::STAGED_READ`].
    NothingStaged = -7,
    /// A compare-and-swap found another value than the expected one.
    Conflict = -8,
}

impl HostStatus {
    /// Decodes a negative result, `None` for values outside the ABI.
    pub fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            -1 => Some(Self::NotFound),
            -2 => Some(Self::Denied),
            -3 => Some(Self::InvalidArgument),
            -4 => Some(Self::TooLarge),
            -5 => Some(Self::Unavailable),
            -6 => Some(Self::Internal),
            -7 => Some(Self::NothingStaged),
            -8 => Some(Self::Conflict),
            _ => None,
        }
    }

    /// A short lower-case name, as SDK error messages print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotFound => "not found",
            Self::Denied => "denied",
            Self::InvalidArgument => "invalid argument",
            Self::TooLarge => "too large",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal error",
            Self::NothingStaged => "nothing staged",
            Self::Conflict => "conflict",
        }
    }
}

/// Levels of [`import::LOG`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(i32)]
pub enum LogLevel {
    /// Verbose diagnostics.
    Debug = 1,
    /// Normal operation.
    Info = 2,
    /// Something unexpected that the guest handled.
    Warn = 3,
    /// A failure.
    Error = 4,
}

impl LogLevel {
    /// Decodes a raw level; out-of-range values clamp to the nearest level.
    pub fn from_raw(raw: i32) -> Self {
        match raw {
            i32::MIN..=1 => Self::Debug,
            2 => Self::Info,
            3 => Self::Warn,
            _ => Self::Error,
        }
    }
}
