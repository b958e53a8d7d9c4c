//! The gateway's own log records, kept for the dashboard's live tail.
//!
//! [`LogTailLayer`] is a `tracing` layer the CLI installs beside the log
//! formatter: every record that passes the log filter is also pushed, as a
//! [`LogLine`] with a sequence number, into one bounded ring per process.
//! Pushing takes a short lock and never waits for a reader; when the ring is
//! full the oldest line goes. A browser polls `GET /admin/logs?after=SEQ`
//! (long polling: the request waits for the next line, up to a timeout), so
//! a slow browser only misses lines, which its answer counts in `dropped`;
//! it never holds the gateway up.
//!
//! Long polling rather than server-sent events: `EventSource` cannot send
//! the `Authorization` header, and the token must never travel in a URL.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Lines kept until [`configure`] says otherwise.
const DEFAULT_CAPACITY: usize = 2000;

/// Most lines one poll answers with; a client further behind polls again.
const MAX_LINES_PER_POLL: usize = 500;

/// A message longer than this is cut (a module may log a whole body).
const MAX_MESSAGE_BYTES: usize = 2048;

/// One log record as the dashboard shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LogLine {
    /// Position in the process's log, from 1.
    seq: u64,
    /// Milliseconds since the Unix epoch.
    unix_ms: u64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    level: &'static str,
    /// The record's target (`shanhai::guest` for a module's own lines).
    target: String,
    /// The `module` field, when the record has one.
    module: Option<String>,
    /// The `request_id` field, when the record has one.
    request_id: Option<String>,
    /// The message, then the other fields as `key=value`.
    message: String,
    #[serde(skip)]
    severity: u8,
}

/// The ring of recent lines, shared by the layer and the admin API.
struct LogRing {
    lines: Mutex<VecDeque<LogLine>>,
    capacity: AtomicUsize,
    next_seq: AtomicU64,
    /// Lines a poller asked for after they had left the ring.
    dropped: AtomicU64,
    /// Wakes the polls waiting for a new line.
    arrived: tokio::sync::Notify,
}

fn ring() -> &'static LogRing {
    static RING: OnceLock<LogRing> = OnceLock::new();
    RING.get_or_init(|| LogRing {
        lines: Mutex::new(VecDeque::new()),
        capacity: AtomicUsize::new(DEFAULT_CAPACITY),
        next_seq: AtomicU64::new(1),
        dropped: AtomicU64::new(0),
        arrived: tokio::sync::Notify::new(),
    })
}

/// Sets how many lines the ring keeps (`admin.dashboard.log_buffer_lines`).
pub(crate) fn configure(capacity: usize) {
    let ring = ring();
    ring.capacity.store(capacity.max(1), Ordering::Relaxed);
    let mut lines = ring.lines.lock().unwrap_or_else(|e| e.into_inner());
    while lines.len() > capacity.max(1) {
        lines.pop_front();
    }
}

/// Lines a poller missed since the process started.
pub(crate) fn dropped_total() -> u64 {
    ring().dropped.load(Ordering::Relaxed)
}

/// The `tracing` layer that feeds the dashboard's live tail. Install it
/// beside the formatter, after the filter, so the tail shows what the log
/// shows.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogTailLayer;

impl<S: Subscriber> Layer<S> for LogTailLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut message = fields.message;
        if !fields.rest.is_empty() {
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(fields.rest.trim_start());
        }
        if message.len() > MAX_MESSAGE_BYTES {
            let mut cut = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let level = *meta.level();
        let ring = ring();
        let capacity = ring.capacity.load(Ordering::Relaxed);
        {
            let mut lines = ring.lines.lock().unwrap_or_else(|e| e.into_inner());
            // Numbered under the lock, so the ring stays in order.
            let seq = ring.next_seq.fetch_add(1, Ordering::Relaxed);
            while lines.len() >= capacity {
                lines.pop_front();
            }
            lines.push_back(LogLine {
                seq,
                unix_ms: unix_ms(),
                level: level.as_str(),
                target: meta.target().to_owned(),
                module: fields.module,
                request_id: fields.request_id,
                message,
                severity: severity(level),
            });
        }
        ring.arrived.notify_waiters();
    }
}

/// The message, `module`, `request_id` and the other fields of a record.
#[derive(Default)]
struct Fields {
    message: String,
    module: Option<String>,
    request_id: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "module" => self.module = Some(value.to_owned()),
            "request_id" => self.request_id = Some(value.to_owned()),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "module" => self.module = Some(format!("{value:?}")),
            "request_id" => self.request_id = Some(format!("{value:?}")),
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

fn severity(level: Level) -> u8 {
    match level {
        Level::ERROR => 5,
        Level::WARN => 4,
        Level::INFO => 3,
        Level::DEBUG => 2,
        Level::TRACE => 1,
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a poll asks for.
#[derive(Debug, Default)]
pub(crate) struct LogQuery {
    /// Lines after this sequence number; `None` for the most recent ones.
    pub(crate) after: Option<u64>,
    /// Only this module's lines.
    pub(crate) module: Option<String>,
    /// Only lines at this level or more severe.
    pub(crate) min_severity: u8,
    /// Only this request's lines.
    pub(crate) request_id: Option<String>,
    /// How long to wait for a line when there is none yet.
    pub(crate) wait: Duration,
}

impl LogQuery {
    /// Parses `after`, `module`, `level`, `request_id` and `wait_ms` from a
    /// query string; `max_wait` bounds the wait.
    pub(crate) fn parse(query: Option<&str>, max_wait: Duration) -> Result<Self, String> {
        let mut parsed = Self {
            wait: max_wait,
            ..Self::default()
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value)
                .ok_or_else(|| format!("{key}: `{value}` is not valid percent-encoded UTF-8"))?;
            match key {
                "after" => {
                    parsed.after = Some(
                        value
                            .parse()
                            .map_err(|_| format!("after: `{value}` is not a line number"))?,
                    )
                }
                "module" if !value.is_empty() => parsed.module = Some(value),
                "request_id" if !value.is_empty() => parsed.request_id = Some(value),
                "level" if !value.is_empty() => {
                    let level: Level = value.parse().map_err(|_| {
                        format!("level: `{value}` is not one of error, warn, info, debug, trace")
                    })?;
                    parsed.min_severity = severity(level);
                }
                "wait_ms" => {
                    let ms: u64 = value
                        .parse()
                        .map_err(|_| format!("wait_ms: `{value}` is not a number"))?;
                    parsed.wait = Duration::from_millis(ms).min(max_wait);
                }
                "module" | "request_id" | "level" => {}
                other => {
                    return Err(format!(
                        "unknown parameter `{other}`: use after, module, level, request_id, wait_ms"
                    ));
                }
            }
        }
        Ok(parsed)
    }

    fn matches(&self, line: &LogLine) -> bool {
        line.severity >= self.min_severity
            && self
                .module
                .as_ref()
                .is_none_or(|m| line.module.as_ref() == Some(m))
            && self
                .request_id
                .as_ref()
                .is_none_or(|r| line.request_id.as_ref() == Some(r))
    }
}

/// A poll's answer.
#[derive(Debug, Serialize)]
pub(crate) struct LogBatch {
    /// The matching lines, oldest first.
    lines: Vec<LogLine>,
    /// Ask with `after=next` to continue.
    next: u64,
    /// Lines that left the ring before this poller read them.
    dropped: u64,
}

/// The lines `query` asks for, waiting up to `query.wait` for one when
/// there is none yet.
pub(crate) async fn poll(query: &LogQuery) -> LogBatch {
    let ring = ring();
    let deadline = tokio::time::Instant::now() + query.wait;
    loop {
        // Registered before looking, so a line pushed in between wakes us.
        let arrived = ring.arrived.notified();
        let batch = collect(ring, query);
        if !batch.lines.is_empty() || batch.dropped > 0 {
            return batch;
        }
        if tokio::time::timeout_at(deadline, arrived).await.is_err() {
            return batch;
        }
    }
}

fn collect(ring: &LogRing, query: &LogQuery) -> LogBatch {
    let lines = ring.lines.lock().unwrap_or_else(|e| e.into_inner());
    let newest = ring.next_seq.load(Ordering::Relaxed).saturating_sub(1);
    let oldest = lines.front().map_or(newest + 1, |line| line.seq);
    let Some(after) = query.after else {
        // A first poll: the recent lines that match, no gap to report.
        let mut recent: Vec<LogLine> = lines
            .iter()
            .rev()
            .filter(|line| query.matches(line))
            .take(MAX_LINES_PER_POLL)
            .cloned()
            .collect();
        recent.reverse();
        return LogBatch {
            lines: recent,
            next: newest,
            dropped: 0,
        };
    };
    let after = after.min(newest);
    let dropped = oldest.saturating_sub(after + 1);
    let mut next = after.max(oldest.saturating_sub(1));
    let mut found = Vec::new();
    for line in lines.iter().filter(|line| line.seq > after) {
        if found.len() == MAX_LINES_PER_POLL {
            break;
        }
        next = line.seq;
        if query.matches(line) {
            found.push(line.clone());
        }
    }
    if dropped > 0 {
        ring.dropped.fetch_add(dropped, Ordering::Relaxed);
        metrics::counter!("shanhai_log_tail_dropped_total").increment(dropped);
    }
    LogBatch {
        lines: found,
        next,
        dropped,
    }
}

/// Decodes `%XX` escapes and `+` (a space, as forms send it).
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(byte) = input.next() {
        match byte {
            b'%' => {
                let hex = [input.next()?, input.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
            }
            b'+' => bytes.push(b' '),
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_refuse_nonsense() {
        let max = Duration::from_secs(20);
        let q = LogQuery::parse(
            Some("after=7&module=hello&level=warn&request_id=a%2Db&wait_ms=50"),
            max,
        )
        .unwrap();
        assert_eq!(q.after, Some(7));
        assert_eq!(q.module.as_deref(), Some("hello"));
        assert_eq!(q.request_id.as_deref(), Some("a-b"));
        assert_eq!(q.min_severity, 4);
        assert_eq!(q.wait, Duration::from_millis(50));
        assert_eq!(
            LogQuery::parse(Some("wait_ms=999999"), max).unwrap().wait,
            max
        );
        for bad in [
            "after=x",
            "level=loud",
            "wait_ms=-1",
            "colour=red",
            "module=%zz",
        ] {
            assert!(LogQuery::parse(Some(bad), max).is_err(), "{bad}");
        }
    }
}
