//! Shanhai patch 6: QoS 1 messages and persistent sessions survive a crash.
//!
//! Upstream rumqttd keeps everything in memory, so a QoS 1 message it has
//! acknowledged to a publisher is lost if the process dies before every
//! persistent session that wants it has acknowledged it in turn. With
//! `RouterConfig::durable_dir` set, the router writes to an append-only log
//! in that folder:
//!
//! - `S`: a persistent session (client id, subscriptions with their QoS,
//!   session expiry, when it disconnected), written when it connects,
//!   subscribes, unsubscribes or disconnects;
//! - `D`: a session that is gone (clean start, expiry, a connection that
//!   asks for none);
//! - `P`: a QoS 1 message that a persistent session with a QoS 1 or 2
//!   subscription matches, with the sessions that still owe an ack;
//! - `A`: one of those sessions acknowledged it.
//!
//! `S`, `D` and `P` are synced to disk before the router sends any
//! acknowledgement that depends on them (PUBACK, SUBACK): the router calls
//! [`Durable::sync`] once per batch of events, so one `fdatasync` covers
//! every message that arrived meanwhile (group commit). `A` records are
//! written but not synced: losing one only means the message is delivered
//! again after a crash (MQTT QoS 1 is at least once).
//!
//! At start the log is read back (a torn last record from a crash is
//! dropped: each record carries a CRC-32), expired sessions are dropped,
//! and the router restores every session and queues every message still
//! owed. The log is then rewritten with only what is live, and again
//! whenever it has grown to several times that.
//!
//! Its tests are in the gateway (`crates/gateway/src/mqtt/broker.rs`),
//! whose test suite CI runs; this vendored crate's own tests are not.
//!
//! Not covered: QoS 2 messages, retained messages and MQTT 5 properties of
//! queued messages (they are replayed without them).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::protocol::matches;

/// The log's file name inside `durable_dir`.
pub const LOG_FILE: &str = "broker.log";
/// The first bytes of the file: its format.
const MAGIC: &[u8; 8] = b"SHMQTT1\n";
/// A record longer than this is corruption, not data.
const MAX_RECORD: u32 = 64 << 20;
/// The log is rewritten when it holds more than this many bytes beyond
/// what is live...
pub const COMPACT_SLACK: u64 = 8 << 20;
/// ...and more than this many times what is live.
const COMPACT_RATIO: u64 = 4;

/// A persistent session as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableSession {
    /// Subscription filters and their QoS.
    pub filters: BTreeMap<String, u8>,
    /// How long the session outlives its connection; `None`: forever.
    pub expiry: Option<Duration>,
    /// When its connection ended (milliseconds since the Unix epoch);
    /// `None` while connected.
    pub disconnected_at_ms: Option<u64>,
}

impl DurableSession {
    /// When a session restored now expires, if it ever does: a session
    /// that was connected when the process died is taken as disconnected
    /// at the restart.
    pub fn expires_at(&self, now_ms: u64) -> Option<Instant> {
        let expiry = self.expiry?;
        let since = Duration::from_millis(now_ms.saturating_sub(self.disconnected_at_ms.unwrap_or(now_ms)));
        Some(Instant::now() + expiry.saturating_sub(since))
    }

    fn expired(&self, now_ms: u64) -> bool {
        match (self.expiry, self.disconnected_at_ms) {
            (Some(expiry), Some(at)) => now_ms.saturating_sub(at) >= expiry.as_millis() as u64,
            _ => false,
        }
    }
}

/// A QoS 1 message some persistent sessions still owe an ack for.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    pub topic: Bytes,
    pub payload: Bytes,
    /// The sessions that have not acknowledged it yet.
    pub clients: HashSet<String>,
}

/// The log and the live state it describes.
pub struct Durable {
    path: PathBuf,
    file: File,
    /// Records not yet written to the file.
    buffer: Vec<u8>,
    /// Whether the buffer holds records that must be on disk before the
    /// next acknowledgement.
    needs_sync: bool,
    next_seq: u64,
    sessions: HashMap<String, DurableSession>,
    pending: BTreeMap<u64, PendingMessage>,
    /// Bytes in the file.
    written: u64,
    /// `written` at which to weigh compacting next: measuring what is
    /// live walks every session and message, so not at every sync.
    next_compact_check: u64,
    /// Topic and payload bytes of the messages owed.
    pending_bytes: usize,
    /// At most this many bytes are owed: a persistent session that never
    /// comes back must not fill the disk. The oldest go first, as they
    /// would from the router's in-memory log.
    max_pending_bytes: usize,
    /// Messages dropped over `max_pending_bytes` since the last warning.
    dropped: u64,
}

impl Durable {
    /// Opens (creating it if needed) the log in `dir`, reads it back and
    /// rewrites it with what is live. At most `max_pending_bytes` of
    /// messages are kept owed (topics and payloads).
    pub fn open(dir: &Path, max_pending_bytes: usize) -> io::Result<Durable> {
        // The log holds message payloads: this user's only.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let path = dir.join(LOG_FILE);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut file) => {
                file.read_to_end(&mut bytes)?;
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let mut durable = Durable {
            file: private_file(&dir.join(format!("{LOG_FILE}.new")))?,
            path,
            buffer: Vec::new(),
            needs_sync: false,
            next_seq: 1,
            sessions: HashMap::new(),
            pending: BTreeMap::new(),
            written: 0,
            next_compact_check: 0,
            pending_bytes: 0,
            max_pending_bytes,
            dropped: 0,
        };
        durable.replay(&bytes)?;
        let now = now_ms();
        let expired: Vec<String> = durable
            .sessions
            .iter()
            .filter(|(_, session)| session.expired(now))
            .map(|(client, _)| client.clone())
            .collect();
        for client in expired {
            durable.forget(&client);
        }
        durable.compact()?;
        Ok(durable)
    }

    fn replay(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if !bytes.starts_with(MAGIC) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a Shanhai broker log", self.path.display()),
            ));
        }
        let mut rest = &bytes[MAGIC.len()..];
        let mut records = 0usize;
        while !rest.is_empty() {
            let Some((body, next)) = split_record(rest) else {
                tracing::warn!(
                    path = %self.path.display(),
                    records,
                    dropped_bytes = rest.len(),
                    "broker log ends in a torn or corrupt record (a crash while writing); dropping it"
                );
                break;
            };
            self.apply(body).map_err(|reason| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: record {records}: {reason}", self.path.display()),
                )
            })?;
            rest = next;
            records += 1;
        }
        Ok(())
    }

    /// Applies one record's body to the live state.
    fn apply(&mut self, body: &[u8]) -> Result<(), String> {
        let mut reader = Reader(body);
        match reader.u8()? {
            b'S' => {
                let client = reader.string()?;
                let expiry = match reader.u64()? {
                    u64::MAX => None,
                    ms => Some(Duration::from_millis(ms)),
                };
                let disconnected_at_ms = match reader.u64()? {
                    0 => None,
                    ms => Some(ms),
                };
                let mut filters = BTreeMap::new();
                for _ in 0..reader.u16()? {
                    let filter = reader.string()?;
                    filters.insert(filter, reader.u8()?);
                }
                self.sessions.insert(
                    client,
                    DurableSession {
                        filters,
                        expiry,
                        disconnected_at_ms,
                    },
                );
            }
            b'D' => {
                let client = reader.string()?;
                self.forget(&client);
            }
            b'P' => {
                let seq = reader.u64()?;
                let topic = Bytes::from(reader.bytes()?.to_vec());
                let payload = Bytes::from(reader.bytes()?.to_vec());
                let mut clients = HashSet::new();
                for _ in 0..reader.u16()? {
                    clients.insert(reader.string()?);
                }
                self.next_seq = self.next_seq.max(seq + 1);
                self.insert_pending(
                    seq,
                    PendingMessage {
                        topic,
                        payload,
                        clients,
                    },
                );
            }
            b'A' => {
                let seq = reader.u64()?;
                let client = reader.string()?;
                self.remove_owed(seq, &client);
            }
            kind => return Err(format!("unknown record kind {kind}")),
        }
        Ok(())
    }

    /// The sessions to restore, by client id.
    pub fn sessions(&self) -> &HashMap<String, DurableSession> {
        &self.sessions
    }

    /// The messages still owed, in the order they arrived.
    pub fn pending(&self) -> impl Iterator<Item = (u64, &PendingMessage)> {
        self.pending.iter().map(|(seq, message)| (*seq, message))
    }

    /// A client connected. `keep`: its session outlives the connection;
    /// `restored`: it resumed the session it had.
    pub fn connected(&mut self, client: &str, keep: bool, expiry: Option<Duration>, restored: bool) {
        if !restored || !keep {
            // Whatever was kept for this client id is gone.
            self.forget_logged(client);
        }
        if keep {
            let session = self
                .sessions
                .entry(client.to_owned())
                .or_insert_with(|| DurableSession {
                    filters: BTreeMap::new(),
                    expiry,
                    disconnected_at_ms: None,
                });
            session.expiry = expiry;
            session.disconnected_at_ms = None;
            self.log_session(client);
        }
    }

    /// A client's connection ended; `keep` and `expiry` as it left them
    /// (an MQTT 5 DISCONNECT may change the expiry).
    pub fn disconnected(&mut self, client: &str, keep: bool, expiry: Option<Duration>) {
        match self.sessions.get_mut(client) {
            Some(session) if keep => {
                session.expiry = expiry;
                session.disconnected_at_ms = Some(now_ms());
                self.log_session(client);
            }
            Some(_) => self.forget_logged(client),
            None => {}
        }
    }

    /// A persistent session subscribed (shared subscriptions are not
    /// tracked).
    pub fn subscribed(&mut self, client: &str, filter: &str, qos: u8) {
        if let Some(session) = self.sessions.get_mut(client) {
            session.filters.insert(filter.to_owned(), qos);
            self.log_session(client);
        }
    }

    /// A persistent session unsubscribed.
    pub fn unsubscribed(&mut self, client: &str, filter: &str) {
        if let Some(session) = self.sessions.get_mut(client) {
            if session.filters.remove(filter).is_some() {
                self.log_session(client);
            }
        }
    }

    /// A QoS 1 message arrived on `topic`. Returns its sequence number when
    /// some persistent session owes an ack for it (a QoS 1 or 2
    /// subscription matches), after logging it; `None` when nothing needs
    /// to survive a crash.
    pub fn published(&mut self, topic: &Bytes, payload: &Bytes) -> Option<u64> {
        let topic_text = std::str::from_utf8(topic).ok()?;
        let clients: HashSet<String> = self
            .sessions
            .iter()
            .filter(|(_, session)| {
                session
                    .filters
                    .iter()
                    .any(|(filter, qos)| *qos >= 1 && matches(topic_text, filter))
            })
            .map(|(client, _)| client.clone())
            .collect();
        if clients.is_empty() {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let message = PendingMessage {
            topic: topic.clone(),
            payload: payload.clone(),
            clients,
        };
        self.buffer_record(&message_record(seq, &message));
        self.insert_pending(seq, message);
        self.needs_sync = true;
        Some(seq)
    }

    /// `client` acknowledged message `seq`.
    pub fn acked(&mut self, client: &str, seq: u64) {
        if self.remove_owed(seq, client) {
            let mut body = vec![b'A'];
            put_u64(&mut body, seq);
            put_str(&mut body, client);
            self.buffer_record(&body);
        }
    }

    /// Writes what is buffered, and syncs it when an acknowledgement
    /// depends on it. Called by the router once per batch of events,
    /// before it sends the batch's acknowledgements.
    pub fn sync(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            self.file.write_all(&self.buffer)?;
            self.written += self.buffer.len() as u64;
            self.buffer.clear();
        }
        if self.needs_sync {
            self.file.sync_data()?;
            self.needs_sync = false;
        }
        if self.written >= self.next_compact_check {
            let live = self.live_bytes();
            if self.written > live.saturating_mul(COMPACT_RATIO)
                && self.written - live > COMPACT_SLACK
            {
                self.compact()?;
            }
            self.next_compact_check = self.written + COMPACT_SLACK / 4;
        }
        Ok(())
    }

    /// Rewrites the log with only the live state, atomically.
    fn compact(&mut self) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!("{LOG_FILE}.new"));
        let mut bytes = MAGIC.to_vec();
        for (client, session) in &self.sessions {
            push_record(&mut bytes, &session_record(client, session));
        }
        for (seq, message) in &self.pending {
            push_record(&mut bytes, &message_record(*seq, message));
        }
        let mut file = private_file(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        File::open(dir)?.sync_all()?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.written = bytes.len() as u64;
        self.buffer.clear();
        self.needs_sync = false;
        Ok(())
    }

    fn live_bytes(&self) -> u64 {
        let sessions: u64 = self
            .sessions
            .iter()
            .map(|(client, session)| session_record(client, session).len() as u64 + 8)
            .sum();
        let messages: u64 = self
            .pending
            .values()
            .map(|m| (m.topic.len() + m.payload.len() + 40) as u64)
            .sum();
        MAGIC.len() as u64 + sessions + messages
    }

    fn log_session(&mut self, client: &str) {
        if let Some(session) = self.sessions.get(client) {
            let record = session_record(client, session);
            self.buffer_record(&record);
            self.needs_sync = true;
        }
    }

    fn forget_logged(&mut self, client: &str) {
        let owed = self.pending.values().any(|m| m.clients.contains(client));
        if self.sessions.contains_key(client) || owed {
            self.forget(client);
            let mut body = vec![b'D'];
            put_str(&mut body, client);
            self.buffer_record(&body);
            self.needs_sync = true;
        }
    }

    /// Drops a session and everything it was owed.
    fn forget(&mut self, client: &str) {
        self.sessions.remove(client);
        let mut freed = 0;
        self.pending.retain(|_, message| {
            message.clients.remove(client);
            let keep = !message.clients.is_empty();
            if !keep {
                freed += message.topic.len() + message.payload.len();
            }
            keep
        });
        self.pending_bytes -= freed;
    }

    /// Adds a message owed, dropping the oldest ones past
    /// `max_pending_bytes` (warned about once per thousand).
    fn insert_pending(&mut self, seq: u64, message: PendingMessage) {
        self.pending_bytes += message.topic.len() + message.payload.len();
        self.pending.insert(seq, message);
        while self.pending_bytes > self.max_pending_bytes && self.pending.len() > 1 {
            let Some((_, oldest)) = self.pending.pop_first() else {
                break;
            };
            self.pending_bytes -= oldest.topic.len() + oldest.payload.len();
            if self.dropped % 1000 == 0 {
                tracing::warn!(
                    max_pending_bytes = self.max_pending_bytes,
                    dropped = self.dropped + 1,
                    "persistent sessions are owed more QoS 1 messages than the durable log keeps; dropping the oldest (a session that is away for good?)"
                );
            }
            self.dropped += 1;
        }
    }

    /// Whether `client` owed an ack for `seq` (and no longer does).
    fn remove_owed(&mut self, seq: u64, client: &str) -> bool {
        let Some(message) = self.pending.get_mut(&seq) else {
            return false;
        };
        let owed = message.clients.remove(client);
        if message.clients.is_empty() {
            self.pending_bytes -= message.topic.len() + message.payload.len();
            self.pending.remove(&seq);
        }
        owed
    }

    fn buffer_record(&mut self, body: &[u8]) {
        push_record(&mut self.buffer, body);
    }
}

/// Creates (or truncates) a file only this user can read.
fn private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn session_record(client: &str, session: &DurableSession) -> Vec<u8> {
    let mut body = vec![b'S'];
    put_str(&mut body, client);
    put_u64(
        &mut body,
        session.expiry.map_or(u64::MAX, |e| e.as_millis() as u64),
    );
    put_u64(&mut body, session.disconnected_at_ms.unwrap_or(0));
    put_u16(&mut body, session.filters.len() as u16);
    for (filter, qos) in &session.filters {
        put_str(&mut body, filter);
        body.push(*qos);
    }
    body
}

fn message_record(seq: u64, message: &PendingMessage) -> Vec<u8> {
    let mut body = vec![b'P'];
    put_u64(&mut body, seq);
    put_bytes(&mut body, &message.topic);
    put_bytes(&mut body, &message.payload);
    put_u16(&mut body, message.clients.len() as u16);
    for client in &message.clients {
        put_str(&mut body, client);
    }
    body
}

/// Frames a record: length, CRC-32 of the body, body.
fn push_record(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(body).to_le_bytes());
    out.extend_from_slice(body);
}

/// The first record's body and what follows it; `None` when the record is
/// torn or fails its CRC.
fn split_record(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let body = bytes.get(8..8 + len as usize)?;
    (crc32(body) == crc).then(|| (body, &bytes[8 + len as usize..]))
}

fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_u16(out, text.len() as u16);
    out.extend_from_slice(text.as_bytes());
}

/// Reads a record's fields.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("record too short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().unwrap());
        self.take(len as usize)
    }

    fn string(&mut self) -> Result<String, String> {
        let len = self.u16()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| "client id or filter is not UTF-8".into())
    }
}

/// CRC-32 (IEEE), bitwise: records are small and written once.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
