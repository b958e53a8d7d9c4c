//! One task per WebSocket connection: reads frames, runs the module on each
//! message, writes what the hub queued, and closes properly.
//!
//! While idle the task holds no buffers: reads go through a scratch buffer
//! on the stack and only the bytes of an incomplete frame are kept; the
//! write buffer exists only while writing.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto::upgrade;
use shanhai_abi::EventKind;
use shanhai_abi::wire::{WsEvent, WsEventType};
use shanhai_runtime::{InvokeError, WsMessage};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use super::WsTrigger;
use super::codec::{self, Decoder, Incoming};
use super::hub::{CloseCause, Connection, Outgoing};
use crate::listener::CountedStream;
use crate::metered;

/// Largest batch of queued frames written with one call.
const WRITE_BATCH: usize = 64 << 10;

/// Messages handled from one read before the replies are written: a client
/// pipelining many small messages must not overflow its own send queue.
const FLUSH_EVERY: u32 = 64;

type Io = CountedStream;

/// How the connection ended, for the module's close event.
struct Ended {
    code: u16,
    reason: String,
}

/// Runs a connection until it closes, then tells the module and leaves
/// the hub. This is the connection's whole task: what it holds across its
/// awaits is what every idle connection costs (docs/benchmarks.md).
///
/// A plain function around an `async move` block rather than an `async fn`:
/// an `async fn` keeps its arguments in the future beside the locals it
/// moves them into, while the block uses the session it captured in place.
pub(crate) fn run(
    on_upgrade: OnUpgrade,
    connection: Arc<Connection>,
    trigger: Arc<WsTrigger>,
) -> impl Future<Output = ()> + Send {
    let mut session = Session {
        connection,
        trigger,
        events: 0,
        handled: 0,
        close_sent: false,
    };
    async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(
                    module = &**session.module(),
                    request_id = session.connection.info.request_id(),
                    error = %err,
                    "WebSocket upgrade did not complete"
                );
                session.trigger.hub.remove(&session.connection);
                return;
            }
        };
        // The socket comes back out of hyper's box: held inline in this
        // task it costs no allocation of its own, and the listener's idle
        // tracking can go (docs/benchmarks.md, "An idle WebSocket
        // connection").
        let (mut io, received) = match upgrade::downcast::<TokioIo<CountedStream>>(upgraded) {
            Ok(parts) => {
                let mut io = parts.io.into_inner();
                io.leave_http();
                (io, parts.read_buf)
            }
            Err(_) => {
                // Every HTTP listener serves a `CountedStream`; another
                // stream here is a bug in the gateway, not the peer's doing.
                tracing::error!(
                    module = &**session.module(),
                    request_id = session.connection.info.request_id(),
                    "WebSocket upgrade on a stream the gateway did not accept; closing it"
                );
                session.trigger.hub.remove(&session.connection);
                return;
            }
        };
        tracing::debug!(
            module = &**session.module(),
            connection = session.connection.id,
            request_id = session.connection.info.request_id(),
            remote = session.connection.info.remote(),
            "WebSocket connection open"
        );
        // What the client sent right behind its upgrade request comes first.
        let mut input = BytesMut::from(received);
        let ended = session.serve(&mut io, &mut input).await;
        tracing::debug!(
            module = &**session.module(),
            connection = session.connection.id,
            code = ended.code,
            "WebSocket connection closed"
        );
        // The close event is delivered once, after the connection is done.
        // Leave the hub first: the module's close event must not find the
        // connection still there to send to.
        session.trigger.hub.remove(&session.connection);
        Box::pin(session.deliver(WsEventType::Close, ended.code, ended.reason.as_bytes())).await;
        metrics::counter!("shanhai_ws_closed_total", "module" => session.module().to_string(), "code" => ended.code.to_string())
            .increment(1);
    }
}

struct Session {
    connection: Arc<Connection>,
    trigger: Arc<WsTrigger>,
    /// Events delivered so far: numbers the request ids.
    events: u64,
    /// Frames handled from the current read: a field, not a local of
    /// `serve`, so that it costs the idle task nothing (it fits beside
    /// `close_sent`).
    handled: u32,
    /// Whether our close frame went out.
    close_sent: bool,
}

impl Session {
    /// The module the connection was opened for.
    fn module(&self) -> &Arc<str> {
        &self.connection.module
    }

    /// Serves the connection; `input` starts with what the client sent
    /// right behind its upgrade request. (A block, not an `async fn`, for
    /// the reason `run` gives: its three references are stored once.)
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would store its arguments twice in every idle connection's task"
    )]
    fn serve<'a>(
        &'a mut self,
        io: &'a mut Io,
        input: &'a mut BytesMut,
    ) -> impl Future<Output = Ended> + 'a {
        async move {
            let mut decoder = Decoder::new(self.trigger.hub.settings.max_message_bytes);
            loop {
                // Everything already received, message by message.
                self.handled = 0;
                loop {
                    match decoder.decode(input) {
                        Ok(Some(incoming)) => {
                            // Boxed like every busy path: the idle task stays small.
                            if let Some(ended) = Box::pin(self.on_frame(io, incoming)).await {
                                return ended;
                            }
                            self.handled += 1;
                            if self.handled.is_multiple_of(FLUSH_EVERY)
                                && let Some(ended) = Box::pin(self.flush(io)).await
                            {
                                return ended;
                            }
                        }
                        Ok(None) => break,
                        Err(err) => return Box::pin(self.refuse_frame(io, err)).await,
                    }
                }
                if input.is_empty() && input.capacity() > 0 {
                    // Idle connections keep no read buffer.
                    *input = BytesMut::new();
                }
                // Then whatever the module and the sweeper queued.
                if self.connection.has_pending()
                    && let Some(ended) = Box::pin(self.flush(io)).await
                {
                    return ended;
                }
                tokio::select! {
                    read = read_some(io, input) => match read {
                        Ok(0) | Err(_) => return Ended { code: 1006, reason: String::new() },
                        Ok(_) => {}
                    },
                    () = self.connection.wake.notified() => {}
                }
            }
        }
    }

    /// Closes the connection for a protocol error in what the peer sent.
    /// The messages before the bad frame were handled: their replies go
    /// out before the close frame. (One call, boxed, rather than inline in
    /// `serve`: a value held across two awaits there would be part of
    /// every idle connection's task.)
    async fn refuse_frame(&mut self, io: &mut Io, err: codec::ProtocolError) -> Ended {
        let code = err.close_code();
        let reason = err.to_string();
        tracing::debug!(module = &**self.module(), connection = self.connection.id, error = %reason, "closing a WebSocket connection for a protocol error");
        let (queued, _) = self.connection.take();
        if self.write_queued(io, queued).await.is_err() {
            return dropped();
        }
        let _ = self.write_close(io, code, &reason).await;
        Ended { code, reason }
    }

    /// Handles one message or control frame; `Some` when the connection
    /// ended.
    async fn on_frame(&mut self, io: &mut Io, incoming: Incoming) -> Option<Ended> {
        let hub = &self.trigger.hub;
        match incoming {
            Incoming::Text(data) => {
                hub.seen(&self.connection, true);
                self.on_message(WsEventType::Text, data).await
            }
            Incoming::Binary(data) => {
                hub.seen(&self.connection, true);
                self.on_message(WsEventType::Binary, data).await
            }
            Incoming::Ping(data) => {
                hub.seen(&self.connection, false);
                let _ = hub.push(&self.connection, Outgoing::Pong(data));
                None
            }
            Incoming::Pong(_) => {
                hub.seen(&self.connection, false);
                None
            }
            Incoming::Close(close) => {
                // Echo the peer's code (RFC 6455 §5.5.1), unless we already
                // sent our own close frame.
                let (code, reason) = close.unwrap_or((1005, String::new()));
                if !self.close_sent {
                    // Replies to the messages before the close frame first
                    // (RFC 6455 §5.5.1 lets data precede our close).
                    let (queued, _) = self.connection.take();
                    if self.write_queued(io, queued).await.is_err() {
                        return Some(dropped());
                    }
                    let echo = if code == 1005 { 1000 } else { code };
                    let _ = self.write_close(io, echo, "").await;
                }
                let _ = io.shutdown().await;
                Some(Ended { code, reason })
            }
        }
    }

    async fn on_message(&mut self, kind: WsEventType, data: Bytes) -> Option<Ended> {
        // Boxed: the invocation's state is large and lives only while the
        // module runs, so it must not be part of every idle connection's
        // task.
        if let Some(reply) = Box::pin(self.deliver(kind, 0, &data)).await {
            let message = WsMessage {
                text: kind == WsEventType::Text,
                data: Bytes::from(reply),
            };
            if message.text && std::str::from_utf8(&message.data).is_err() {
                self.send_error(
                    "bad_output",
                    "the module replied to a text message with bytes that are not UTF-8",
                );
            } else if message.data.len() > self.trigger.hub.settings.max_message_bytes {
                self.send_error(
                    "response_too_large",
                    "the module's reply exceeds websocket.max_message_bytes",
                );
            } else {
                let _ = self
                    .trigger
                    .hub
                    .push(&self.connection, Outgoing::Message(message));
            }
        }
        None
    }

    /// Runs the module on one event; returns its output for a message that
    /// succeeded. A failure is logged and, for a message, reported to the
    /// client as an error message; the connection stays open.
    async fn deliver(
        &mut self,
        kind: WsEventType,
        close_code: u16,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        self.events += 1;
        let request_id: Arc<str> = Arc::from(format!(
            "{}.{}",
            self.connection.info.request_id(),
            self.events
        ));
        let key = self.connection.id.to_le_bytes();
        let Some(selected) = self
            .trigger
            .registry
            .select_keyed(self.module(), Some(&key))
        else {
            self.connection
                .close(1001, "module unloaded", CloseCause::Unloaded);
            return None;
        };
        let envelope = WsEvent {
            event: kind,
            connection: self.connection.id,
            close_code,
            uri: self.connection.info.uri(),
            remote_addr: self.connection.info.remote(),
            request_id: &request_id,
            headers: Vec::new(),
            data,
        }
        .encode();
        let (result, _) = metered::invoke(
            &self.trigger.metrics,
            &selected.module,
            EventKind::WebSocket,
            &envelope,
            request_id.clone(),
        )
        .await;
        match result {
            Ok(output) => (!output.is_empty()).then_some(output),
            // The module handles messages but not this event type.
            Err(InvokeError::NoHandler(_)) if kind == WsEventType::Close => None,
            Err(err) => {
                tracing::warn!(
                    module = &**self.module(),
                    connection = self.connection.id,
                    request_id = &*request_id,
                    kind = err.kind(),
                    "WebSocket event failed: {err}"
                );
                if kind != WsEventType::Close {
                    self.send_error_with_id(err.kind(), &err.to_string(), &request_id);
                }
                None
            }
        }
    }

    fn send_error(&self, kind: &str, message: &str) {
        let request_id = format!("{}.{}", self.connection.info.request_id(), self.events);
        self.send_error_with_id(kind, message, &request_id);
    }

    /// The error message a client gets when its message failed.
    fn send_error_with_id(&self, kind: &str, message: &str, request_id: &str) {
        let body = serde_json::json!({
            "error": kind,
            "message": message,
            "module": &**self.module(),
            "request_id": request_id,
        });
        let _ = self.trigger.hub.push(
            &self.connection,
            Outgoing::Message(WsMessage {
                text: true,
                data: Bytes::from(body.to_string()),
            }),
        );
    }

    /// Writes everything queued. When the connection is closing, writes
    /// the close frame and waits for the peer's answer; returns how it
    /// ended.
    async fn flush(&mut self, io: &mut Io) -> Option<Ended> {
        let (queued, closing) = self.connection.take();
        if self.write_queued(io, queued).await.is_err() {
            return Some(dropped());
        }
        let (code, reason, cause) = closing?;
        if cause != CloseCause::Module {
            metrics::counter!("shanhai_ws_closed_by_gateway_total", "module" => self.module().to_string(), "reason" => cause.label())
                .increment(1);
        }
        if self.write_close(io, code, &reason).await.is_err() {
            return Some(Ended { code, reason });
        }
        Box::pin(self.await_close(io)).await;
        Some(Ended { code, reason })
    }

    /// Writes queued frames, in batches of up to [`WRITE_BATCH`] bytes.
    async fn write_queued(&self, io: &mut Io, queued: VecDeque<Outgoing>) -> std::io::Result<()> {
        let mut batch = Vec::new();
        for item in queued {
            match item {
                Outgoing::Message(message) if message.text => {
                    codec::encode_text(&message.data, &mut batch)
                }
                Outgoing::Message(message) => codec::encode_binary(&message.data, &mut batch),
                Outgoing::Ping => codec::encode_ping(b"", &mut batch),
                Outgoing::Pong(data) => codec::encode_pong(&data, &mut batch),
            }
            if batch.len() >= WRITE_BATCH {
                self.write(io, &batch).await?;
                batch.clear();
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.write(io, &batch).await
    }

    /// Writes with a deadline: a peer that stopped reading must not hold
    /// the task forever.
    async fn write(&self, io: &mut Io, bytes: &[u8]) -> std::io::Result<()> {
        let timeout = self.trigger.hub.settings.peer_timeout;
        match tokio::time::timeout(timeout, io.write_all(bytes)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    async fn write_close(&mut self, io: &mut Io, code: u16, reason: &str) -> std::io::Result<()> {
        self.close_sent = true;
        let mut frame = Vec::new();
        codec::encode_close(code, reason, &mut frame);
        let timeout = self.trigger.hub.settings.close_timeout;
        match tokio::time::timeout(timeout, io.write_all(&frame)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// After our close frame: reads (and drops) until the peer's close
    /// frame or the close timeout, then closes the socket.
    async fn await_close(&self, io: &mut Io) {
        let settings = &self.trigger.hub.settings;
        let mut decoder = Decoder::new(settings.max_message_bytes);
        let mut input = BytesMut::new();
        let wait = async {
            loop {
                match decoder.decode(&mut input) {
                    Ok(Some(Incoming::Close(_))) | Err(_) => return,
                    Ok(Some(_)) => continue,
                    Ok(None) => {}
                }
                match read_some(io, &mut input).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(settings.close_timeout, wait).await;
        let _ = tokio::time::timeout(Duration::from_millis(100), io.shutdown()).await;
    }
}

fn dropped() -> Ended {
    Ended {
        code: 1006,
        reason: String::new(),
    }
}

/// Reads what is available into `buf` through a scratch buffer on the
/// stack, so a connection waiting for data owns no read buffer. A plain
/// `poll_fn` rather than an `async fn`: the future is its two references
/// and nothing else, part of every idle connection's task.
fn read_some<'a>(
    io: &'a mut Io,
    buf: &'a mut BytesMut,
) -> impl Future<Output = std::io::Result<usize>> + 'a {
    poll_fn(move |cx| {
        let mut scratch = [0u8; 8192];
        let mut read = ReadBuf::new(&mut scratch);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut read))?;
        buf.extend_from_slice(read.filled());
        Poll::Ready(Ok(read.filled().len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::future_size;

    /// tokio allocates each task as one cell, its future beside 104 bytes
    /// of header and trailer, padded to a multiple of 128 bytes on 64-bit
    /// x86 and ARM. A connection task of at most 408 bytes takes a 512-byte
    /// cell; 8 bytes more take 640 on every idle connection
    /// (docs/benchmarks.md, "An idle WebSocket connection"). Checked in
    /// optimised builds (the test suite's): unoptimised ones lay the
    /// future out with more room.
    #[test]
    #[cfg(all(
        not(debug_assertions),
        target_pointer_width = "64",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    fn the_connection_task_fits_a_512_byte_task_cell() {
        let size = future_size(&run);
        assert!(
            size <= 408,
            "the connection task's future is {size} bytes: over 408, tokio pads its task to 640 bytes"
        );
    }
}
