//! The connection hub: every open WebSocket connection, its send queue and
//! its rooms. Modules reach it through the `ws_*` host functions (the hub is
//! the runtime's [`WebSocketHost`]); connection tasks drain the queues.
//!
//! Memory is what decides how many connections a box holds, so an idle
//! connection owns only a [`Connection`] (its queue empty, no buffers) and
//! its task; heartbeats come from one sweeper for all connections instead of
//! a timer per connection.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use shanhai_abi::HostStatus;
use shanhai_runtime::{WebSocketHost, WsMessage};
use tokio::sync::Notify;

use super::WsSettings;

/// Connection shards: spreads the lock of the connection map.
const SHARDS: usize = 32;

/// Longest room name.
const MAX_ROOM_BYTES: usize = 256;

/// Something to write to a connection.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// A data message.
    Message(WsMessage),
    /// A heartbeat ping.
    Ping,
    /// The answer to a ping.
    Pong(Bytes),
}

/// Why the gateway closes a connection, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseCause {
    /// The module asked (`ws_close`).
    Module,
    /// No pong or data within the peer timeout.
    Heartbeat,
    /// No data message within the idle timeout.
    Idle,
    /// The send queue overflowed: the client is not reading.
    SlowConsumer,
    /// The gateway is shutting down.
    Shutdown,
    /// The module is no longer loaded.
    Unloaded,
}

impl CloseCause {
    /// A label for `shanhai_ws_closed_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Module => "module",
            Self::Heartbeat => "heartbeat",
            Self::Idle => "idle",
            Self::SlowConsumer => "slow_consumer",
            Self::Shutdown => "shutdown",
            Self::Unloaded => "unloaded",
        }
    }
}

/// The queue of one connection and what it is doing.
#[derive(Default)]
pub(crate) struct Outbox {
    pub(crate) queue: VecDeque<Outgoing>,
    /// Bytes of the data messages in `queue`.
    bytes: usize,
    /// Set once the connection is closing: the close frame to send (the
    /// first reason wins) and why. Nothing more is queued after it. Boxed:
    /// rare, and every idle connection would carry its 32 bytes inline.
    pub(crate) closing: Option<Box<(u16, String, CloseCause)>>,
    /// The rooms the connection is in, for cleanup when it ends. Boxed:
    /// most connections join none, and an empty `Vec` inline is 24 bytes
    /// on every one of them.
    #[allow(clippy::box_collection)] // 8 bytes inline instead of 24, on purpose
    rooms: Option<Box<Vec<Box<str>>>>,
}

/// What every event of a connection carries, from its upgrade request.
pub(crate) struct ConnInfo {
    /// The upgrade request's id (message ids extend it), its path and
    /// query, then the peer's address: one allocation where three would
    /// each round up, on every idle connection.
    text: Box<str>,
    request_id_len: u32,
    uri_end: u32,
}

impl ConnInfo {
    pub(crate) fn new(request_id: &str, uri: &str, remote: &str) -> Self {
        // Request ids are short and the URI is bounded by hyper's header
        // limits, far below 4 GiB.
        let len = |part: &str| u32::try_from(part.len()).expect("request line fits u32");
        let request_id_len = len(request_id);
        Self {
            text: [request_id, uri, remote].concat().into(),
            request_id_len,
            uri_end: request_id_len + len(uri),
        }
    }

    /// The upgrade request's id.
    pub(crate) fn request_id(&self) -> &str {
        &self.text[..self.request_id_len as usize]
    }

    /// The upgrade request's path and query.
    pub(crate) fn uri(&self) -> &str {
        &self.text[self.request_id_len as usize..self.uri_end as usize]
    }

    /// The peer's address, as `ip:port`.
    pub(crate) fn remote(&self) -> &str {
        &self.text[self.uri_end as usize..]
    }
}

/// One open (or opening) connection.
pub(crate) struct Connection {
    pub(crate) id: u64,
    pub(crate) module: Arc<str>,
    /// Kept here rather than beside it: one allocation fewer per connection.
    pub(crate) info: ConnInfo,
    pub(crate) outbox: Mutex<Outbox>,
    /// Woken when something was queued or the connection should close.
    pub(crate) wake: Notify,
    /// Milliseconds since the hub started: any frame from the peer.
    last_seen: AtomicU64,
    /// A data message in either direction, for the idle timeout.
    last_data: AtomicU64,
    last_ping: AtomicU64,
}

impl Connection {
    /// Queues `item`, unless the connection is closing. Returns `false`
    /// when the queue is full: the caller closes the connection.
    fn push(&self, item: Outgoing, limits: &WsSettings) -> Result<(), HostStatus> {
        let mut outbox = self.outbox.lock().unwrap();
        if outbox.closing.is_some() {
            return Err(HostStatus::NotFound);
        }
        if let Outgoing::Message(message) = &item {
            if outbox.bytes + message.data.len() > limits.send_queue_bytes
                || outbox.queue.len() >= limits.send_queue_messages
            {
                return Err(HostStatus::Unavailable);
            }
            outbox.bytes += message.data.len();
        }
        outbox.queue.push_back(item);
        drop(outbox);
        self.wake.notify_one();
        Ok(())
    }

    /// Whether anything is queued or the connection should close.
    pub(crate) fn has_pending(&self) -> bool {
        let outbox = self.outbox.lock().unwrap();
        !outbox.queue.is_empty() || outbox.closing.is_some()
    }

    /// Takes everything queued; the connection task writes it.
    pub(crate) fn take(&self) -> (VecDeque<Outgoing>, Option<(u16, String, CloseCause)>) {
        let mut outbox = self.outbox.lock().unwrap();
        outbox.bytes = 0;
        (
            std::mem::take(&mut outbox.queue),
            outbox.closing.as_deref().cloned(),
        )
    }

    /// Starts closing with `code` and `reason` (the first caller wins).
    pub(crate) fn close(&self, code: u16, reason: &str, cause: CloseCause) {
        let mut outbox = self.outbox.lock().unwrap();
        if outbox.closing.is_none() {
            outbox.closing = Some(Box::new((code, reason.to_owned(), cause)));
        }
        drop(outbox);
        self.wake.notify_one();
    }
}

/// `(module, room)` → the ids of the connections in it.
type Rooms = HashMap<(Arc<str>, Box<str>), HashSet<u64>>;

/// Every connection, by id, and the rooms of every module.
pub(crate) struct Hub {
    pub(crate) settings: WsSettings,
    origin: Instant,
    next_id: AtomicU64,
    shards: Vec<Mutex<HashMap<u64, Arc<Connection>>>>,
    rooms: RwLock<Rooms>,
    total: AtomicUsize,
    per_module: Mutex<HashMap<Arc<str>, usize>>,
    /// Woken when the last connection goes.
    empty: Notify,
    /// Woken when the first connection comes (and when the hub is
    /// dropped): the heartbeat sweeper sleeps on it while none is open.
    occupied: Arc<Notify>,
}

impl Drop for Hub {
    /// Wakes a parked sweeper, which finds the hub gone and ends.
    fn drop(&mut self) {
        self.occupied.notify_one();
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The process holds `max_connections`.
    Process(usize),
    /// The module holds its `max_connections`.
    Module(usize),
}

impl Hub {
    pub(crate) fn new(settings: WsSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            origin: Instant::now(),
            next_id: AtomicU64::new(1),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            rooms: RwLock::default(),
            total: AtomicUsize::new(0),
            per_module: Mutex::default(),
            empty: Notify::new(),
            occupied: Arc::default(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn shard(&self, id: u64) -> &Mutex<HashMap<u64, Arc<Connection>>> {
        &self.shards[(id % SHARDS as u64) as usize]
    }

    /// Registers a new connection of `module`, within the limits.
    pub(crate) fn admit(
        &self,
        module: &Arc<str>,
        module_limit: usize,
        info: ConnInfo,
    ) -> Result<Arc<Connection>, Refusal> {
        let limit = self.settings.max_connections;
        let Ok(before) = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
        else {
            return Err(Refusal::Process(limit));
        };
        if before == 0 {
            self.occupied.notify_one();
        }
        {
            let mut per_module = self.per_module.lock().unwrap();
            let count = per_module.entry(module.clone()).or_default();
            if *count >= module_limit {
                drop(per_module);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::Module(module_limit));
            }
            *count += 1;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let connection = Arc::new(Connection {
            id,
            module: module.clone(),
            info,
            outbox: Mutex::default(),
            wake: Notify::new(),
            last_seen: AtomicU64::new(now),
            last_data: AtomicU64::new(now),
            last_ping: AtomicU64::new(now),
        });
        self.shard(id)
            .lock()
            .unwrap()
            .insert(id, connection.clone());
        metrics::gauge!("shanhai_ws_connections", "module" => module.to_string()).increment(1.0);
        Ok(connection)
    }

    /// Forgets a connection that ended: its rooms and counts.
    pub(crate) fn remove(&self, connection: &Connection) {
        if self
            .shard(connection.id)
            .lock()
            .unwrap()
            .remove(&connection.id)
            .is_none()
        {
            return;
        }
        let rooms = connection.outbox.lock().unwrap().rooms.take();
        if let Some(rooms) = rooms {
            let mut all = self.rooms.write().unwrap();
            for room in *rooms {
                let key = (connection.module.clone(), room);
                if let Entry::Occupied(mut members) = all.entry(key) {
                    members.get_mut().remove(&connection.id);
                    if members.get().is_empty() {
                        members.remove();
                    }
                }
            }
        }
        if let Some(count) = self.per_module.lock().unwrap().get_mut(&connection.module) {
            *count = count.saturating_sub(1);
        }
        metrics::gauge!("shanhai_ws_connections", "module" => connection.module.to_string())
            .decrement(1.0);
        if self.total.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.empty.notify_waiters();
        }
    }

    /// Open connections.
    pub(crate) fn len(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// What the heartbeat sweeper waits on while no connection is open.
    pub(crate) fn occupied(&self) -> Arc<Notify> {
        Arc::clone(&self.occupied)
    }

    fn get(&self, module: &str, id: u64) -> Result<Arc<Connection>, HostStatus> {
        let connection = self
            .shard(id)
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or(HostStatus::NotFound)?;
        // Another module's connection is as good as absent.
        if &*connection.module == module {
            Ok(connection)
        } else {
            Err(HostStatus::NotFound)
        }
    }

    /// Queues `item` for `connection`; a full queue closes it.
    pub(crate) fn push(&self, connection: &Connection, item: Outgoing) -> Result<(), HostStatus> {
        let is_data = matches!(item, Outgoing::Message(_));
        let pushed = connection.push(item, &self.settings);
        if pushed == Err(HostStatus::Unavailable) {
            tracing::warn!(
                module = &*connection.module,
                connection = connection.id,
                queue_bytes = self.settings.send_queue_bytes,
                "closing a WebSocket connection whose client is not reading (send queue full)"
            );
            connection.close(1008, "send queue full", CloseCause::SlowConsumer);
        } else if pushed.is_ok() && is_data {
            connection.last_data.store(self.now_ms(), Ordering::Relaxed);
        }
        pushed
    }

    /// Notes a frame from the peer (`data`: a data message).
    pub(crate) fn seen(&self, connection: &Connection, data: bool) {
        let now = self.now_ms();
        connection.last_seen.store(now, Ordering::Relaxed);
        if data {
            connection.last_data.store(now, Ordering::Relaxed);
        }
    }

    fn check_message(&self, message: &WsMessage) -> Result<(), HostStatus> {
        if message.data.len() > self.settings.max_message_bytes {
            Err(HostStatus::TooLarge)
        } else {
            Ok(())
        }
    }

    /// Closes every connection (shutdown) and waits until they are gone or
    /// `timeout` passes. Returns whether all ended.
    pub(crate) async fn close_all(&self, code: u16, reason: &str, timeout: Duration) -> bool {
        for shard in &self.shards {
            for connection in shard.lock().unwrap().values() {
                connection.close(code, reason, CloseCause::Shutdown);
            }
        }
        let wait = async {
            loop {
                let empty = self.empty.notified();
                if self.len() == 0 {
                    return;
                }
                empty.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// One heartbeat round: pings connections due for one, evicts peers
    /// silent for longer than the peer timeout, closes idle ones.
    pub(crate) fn sweep(&self) {
        let now = self.now_ms();
        let settings = &self.settings;
        let ping_every = settings.ping_interval.as_millis() as u64;
        let peer_timeout = settings.peer_timeout.as_millis() as u64;
        let idle_timeout = settings.idle_timeout.map(|d| d.as_millis() as u64);
        let mut evicted: Vec<Arc<Connection>> = Vec::new();
        for shard in &self.shards {
            let connections: Vec<Arc<Connection>> =
                shard.lock().unwrap().values().cloned().collect();
            for connection in connections {
                let silent = now.saturating_sub(connection.last_seen.load(Ordering::Relaxed));
                if silent > peer_timeout {
                    evicted.push(connection);
                    continue;
                }
                if idle_timeout.is_some_and(|idle| {
                    now.saturating_sub(connection.last_data.load(Ordering::Relaxed)) > idle
                }) {
                    connection.close(1000, "idle timeout", CloseCause::Idle);
                    continue;
                }
                if now.saturating_sub(connection.last_ping.load(Ordering::Relaxed)) >= ping_every {
                    connection.last_ping.store(now, Ordering::Relaxed);
                    let _ = connection.push(Outgoing::Ping, settings);
                }
            }
        }
        for connection in evicted {
            if connection.outbox.lock().unwrap().closing.is_none() {
                tracing::info!(
                    module = &*connection.module,
                    connection = connection.id,
                    "evicting a silent WebSocket peer (no pong or data within the peer timeout)"
                );
                metrics::counter!("shanhai_ws_evictions_total", "module" => connection.module.to_string())
                    .increment(1);
            }
            connection.close(1001, "heartbeat timeout", CloseCause::Heartbeat);
        }
    }
}

impl WebSocketHost for Hub {
    fn send(&self, module: &str, connection: u64, message: WsMessage) -> Result<(), HostStatus> {
        self.check_message(&message)?;
        let connection = self.get(module, connection)?;
        self.push(&connection, Outgoing::Message(message))
    }

    fn close(
        &self,
        module: &str,
        connection: u64,
        code: u16,
        reason: &str,
    ) -> Result<(), HostStatus> {
        let sendable = matches!(code, 1000 | 1001 | 1008 | 1011 | 3000..=4999);
        if !sendable || reason.len() > 123 {
            return Err(HostStatus::InvalidArgument);
        }
        self.get(module, connection)?
            .close(code, reason, CloseCause::Module);
        Ok(())
    }

    fn join(&self, module: &str, connection: u64, room: &str) -> Result<(), HostStatus> {
        if room.is_empty() || room.len() > MAX_ROOM_BYTES {
            return Err(HostStatus::InvalidArgument);
        }
        let connection = self.get(module, connection)?;
        let mut outbox = connection.outbox.lock().unwrap();
        if outbox.closing.is_some() {
            return Err(HostStatus::NotFound);
        }
        let joined = outbox.rooms.get_or_insert_default();
        if !joined.iter().any(|r| &**r == room) {
            joined.push(room.into());
        }
        // Under the outbox lock: `remove` takes the room list under it too,
        // so a connection ending now cannot leave itself behind in a room.
        self.rooms
            .write()
            .unwrap()
            .entry((connection.module.clone(), room.into()))
            .or_default()
            .insert(connection.id);
        Ok(())
    }

    fn leave(&self, module: &str, connection: u64, room: &str) -> Result<(), HostStatus> {
        let connection = self.get(module, connection)?;
        let mut outbox = connection.outbox.lock().unwrap();
        let Some(joined) = outbox.rooms.as_mut() else {
            return Err(HostStatus::NotFound);
        };
        let Some(at) = joined.iter().position(|r| &**r == room) else {
            return Err(HostStatus::NotFound);
        };
        joined.swap_remove(at);
        let mut rooms = self.rooms.write().unwrap();
        if let Entry::Occupied(mut members) = rooms.entry((connection.module.clone(), room.into()))
        {
            members.get_mut().remove(&connection.id);
            if members.get().is_empty() {
                members.remove();
            }
        }
        Ok(())
    }

    fn broadcast(
        &self,
        module: &str,
        room: &str,
        message: WsMessage,
        except: Option<u64>,
    ) -> Result<usize, HostStatus> {
        self.check_message(&message)?;
        let members: Vec<u64> = {
            let rooms = self.rooms.read().unwrap();
            let key = (Arc::<str>::from(module), Box::<str>::from(room));
            match rooms.get(&key) {
                Some(members) => members.iter().copied().collect(),
                None => return Ok(0),
            }
        };
        let mut queued = 0;
        for id in members.into_iter().filter(|id| Some(*id) != except) {
            let Ok(connection) = self.get(module, id) else {
                continue;
            };
            if self
                .push(&connection, Outgoing::Message(message.clone()))
                .is_ok()
            {
                queued += 1;
            }
        }
        Ok(queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(max_connections: usize) -> Arc<Hub> {
        Hub::new(WsSettings {
            max_connections,
            send_queue_messages: 4,
            ..WsSettings::default()
        })
    }

    fn info() -> ConnInfo {
        ConnInfo::new("req-1", "/chat/ws?room=a", "127.0.0.1:40000")
    }

    /// glibc serves an allocation of up to 184 bytes from a 192-byte
    /// chunk; an `Arc<Connection>` is the connection and 16 bytes of
    /// counts, one on every open connection. A few bytes more take a
    /// 208-byte chunk (docs/benchmarks.md, "An idle WebSocket connection").
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_connection_fits_a_192_byte_allocation() {
        let size = std::mem::size_of::<Connection>();
        assert!(
            size + 16 <= 184,
            "Connection is {size} bytes: its Arc no longer fits glibc's 192-byte chunk"
        );
    }

    #[test]
    fn conn_info_keeps_uri_and_remote_apart() {
        let info = info();
        assert_eq!(info.uri(), "/chat/ws?room=a");
        assert_eq!(info.remote(), "127.0.0.1:40000");
        assert_eq!(info.request_id(), "req-1");
    }

    fn text(s: &str) -> WsMessage {
        WsMessage {
            text: true,
            data: Bytes::copy_from_slice(s.as_bytes()),
        }
    }

    #[test]
    fn modules_see_only_their_own_connections_and_rooms() {
        let hub = hub(10);
        let chat: Arc<str> = Arc::from("chat");
        let other: Arc<str> = Arc::from("other");
        let a = hub.admit(&chat, 10, info()).unwrap();
        let b = hub.admit(&other, 10, info()).unwrap();
        assert_eq!(
            hub.send("other", a.id, text("x")),
            Err(HostStatus::NotFound)
        );
        assert_eq!(hub.join("other", a.id, "r"), Err(HostStatus::NotFound));
        hub.join("chat", a.id, "r").unwrap();
        hub.join("other", b.id, "r").unwrap();
        assert_eq!(hub.broadcast("chat", "r", text("hi"), None), Ok(1));
        assert_eq!(hub.broadcast("chat", "r", text("hi"), Some(a.id)), Ok(0));
        assert_eq!(hub.broadcast("chat", "nowhere", text("hi"), None), Ok(0));
        hub.remove(&a);
        assert_eq!(hub.broadcast("chat", "r", text("hi"), None), Ok(0));
        assert_eq!(hub.send("chat", a.id, text("x")), Err(HostStatus::NotFound));
        assert_eq!(hub.len(), 1);
    }

    #[test]
    fn limits_refuse_and_release() {
        let hub = hub(2);
        let m: Arc<str> = Arc::from("m");
        let first = hub.admit(&m, 1, info()).unwrap();
        assert_eq!(hub.admit(&m, 1, info()).err(), Some(Refusal::Module(1)));
        let other = hub.admit(&Arc::from("n"), 5, info()).unwrap();
        assert_eq!(
            hub.admit(&Arc::from("k"), 5, info()).err(),
            Some(Refusal::Process(2))
        );
        hub.remove(&first);
        hub.remove(&other);
        assert_eq!(hub.len(), 0);
        assert!(hub.admit(&m, 1, info()).is_ok());
    }

    #[test]
    fn a_full_queue_closes_the_connection() {
        let hub = hub(10);
        let m: Arc<str> = Arc::from("m");
        let c = hub.admit(&m, 10, info()).unwrap();
        for _ in 0..4 {
            hub.send("m", c.id, text("x")).unwrap();
        }
        assert_eq!(hub.send("m", c.id, text("x")), Err(HostStatus::Unavailable));
        let (queued, closing) = c.take();
        assert_eq!(queued.len(), 4);
        let (code, _, cause) = closing.unwrap();
        assert_eq!((code, cause), (1008, CloseCause::SlowConsumer));
        // Nothing is queued once closing.
        assert_eq!(hub.send("m", c.id, text("x")), Err(HostStatus::NotFound));
    }

    #[test]
    fn bad_arguments_are_refused() {
        let hub = hub(10);
        let c = hub.admit(&Arc::from("m"), 10, info()).unwrap();
        assert_eq!(
            hub.close("m", c.id, 1005, ""),
            Err(HostStatus::InvalidArgument)
        );
        assert_eq!(
            hub.close("m", c.id, 1000, &"x".repeat(124)),
            Err(HostStatus::InvalidArgument)
        );
        assert_eq!(hub.join("m", c.id, ""), Err(HostStatus::InvalidArgument));
        assert_eq!(hub.leave("m", c.id, "never"), Err(HostStatus::NotFound));
        let big = WsMessage {
            text: false,
            data: Bytes::from(vec![0; hub.settings.max_message_bytes + 1]),
        };
        assert_eq!(hub.send("m", c.id, big), Err(HostStatus::TooLarge));
    }
}
