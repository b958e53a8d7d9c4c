//! WebSocket connections as the module's events see them, and the host
//! functions that act on them (`ws_send`, `ws_close`, `ws_join`,
//! `ws_leave`, `ws_broadcast`).
//!
//! The gateway holds the connections; a module only names them by id. Any
//! event may act on any of the module's connections, so a connection id
//! remembered from one event can be sent to from another with
//! [`ws_send`].

use std::fmt;

use http::HeaderMap;
use shanhai_abi::wire::WsEventType;

use crate::{HostError, host};

/// A WebSocket message. Borrowed: an event's message is a view of its
/// envelope, and a message to send is a view of the caller's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WsMessage<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> WsMessage<'a> {
    /// The payload.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(data) => data,
        }
    }

    /// Whether it is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// The message type of `ws_send` and `ws_broadcast`: the WsEvent type
    /// of the same name.
    fn abi_type(&self) -> i32 {
        match self {
            Self::Text(_) => WsEventType::Text as i32,
            Self::Binary(_) => WsEventType::Binary as i32,
        }
    }
}

/// One WebSocket connection as an event sees it: its id and the upgrade
/// request it came from. It only names the connection, which the gateway
/// holds; its methods work during any event.
#[derive(Clone, PartialEq, Eq)]
pub struct WsConn {
    id: u64,
    uri: String,
    remote_addr: String,
    request_id: String,
    headers: HeaderMap,
}

impl WsConn {
    pub(crate) fn new(
        id: u64,
        uri: String,
        remote_addr: String,
        request_id: String,
        headers: HeaderMap,
    ) -> Self {
        Self {
            id,
            uri,
            remote_addr,
            request_id,
            headers,
        }
    }

    /// The connection id: unique in the gateway process, never 0 and never
    /// reused. Remember it to reach the connection from a later event
    /// ([`ws_send`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The path and query of the upgrade request.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The client's address, `ip:port`.
    pub fn remote_addr(&self) -> &str {
        &self.remote_addr
    }

    /// The gateway's id of this event (the upgrade request's, for open).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The upgrade request's headers during the open event; empty in the
    /// others.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Queues `message` for this connection; see [`ws_send`].
    ///
    /// # Errors
    /// As for [`ws_send`].
    pub fn send(&self, message: WsMessage<'_>) -> Result<(), HostError> {
        ws_send(self.id, message)
    }

    /// Queues a text message for this connection.
    ///
    /// # Errors
    /// As for [`ws_send`].
    pub fn send_text(&self, text: &str) -> Result<(), HostError> {
        self.send(WsMessage::Text(text))
    }

    /// Queues a binary message for this connection.
    ///
    /// # Errors
    /// As for [`ws_send`].
    pub fn send_binary(&self, data: &[u8]) -> Result<(), HostError> {
        self.send(WsMessage::Binary(data))
    }

    /// Starts the close handshake with `code` (1000, 1001, 1008, 1011, or
    /// 3000–4999) and `reason` (at most 123 bytes). The module still gets
    /// the connection's close event when the handshake ends.
    ///
    /// # Errors
    /// [`HostError::InvalidArgument`] for another code or a longer reason;
    /// [`HostError::NotFound`] for a connection that is gone.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), HostError> {
        host::ws_close(self.id, code, reason)
    }

    /// Adds the connection to the module's room `room` (1 to 256 bytes).
    /// Rooms belong to the module; a connection leaves its rooms when it
    /// closes.
    ///
    /// # Errors
    /// [`HostError::InvalidArgument`] for a bad room name;
    /// [`HostError::NotFound`] for a connection that is gone.
    pub fn join(&self, room: &str) -> Result<(), HostError> {
        host::ws_join(self.id, room)
    }

    /// Removes the connection from `room`.
    ///
    /// # Errors
    /// [`HostError::NotFound`] when it is not in that room (or is gone).
    pub fn leave(&self, room: &str) -> Result<(), HostError> {
        host::ws_leave(self.id, room)
    }
}

impl fmt::Debug for WsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsConn")
            .field("id", &self.id)
            .field("uri", &self.uri)
            .field("remote_addr", &self.remote_addr)
            .field("request_id", &self.request_id)
            .field("headers", &self.headers.len())
            .finish()
    }
}

/// Queues `message` for `connection`, any of the module's connections (for
/// example one remembered from an earlier event). Messages queued during an
/// event go out before the event's own reply.
///
/// ```
/// use shanhai_sdk::{WsMessage, ws_send};
/// # fn f(remembered: u64) -> Result<(), shanhai_sdk::HostError> {
/// ws_send(remembered, WsMessage::Text("your job is done"))?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`HostError::NotFound`] for a connection that is gone or not the
/// module's; [`HostError::TooLarge`] beyond the gateway's
/// `max_message_bytes`; [`HostError::Unavailable`] when the connection's
/// send queue is full (the gateway then closes it with 1008: the client is
/// not reading) or the gateway runs no WebSocket trigger.
pub fn ws_send(connection: u64, message: WsMessage<'_>) -> Result<(), HostError> {
    host::ws_send(connection, message.abi_type(), message.as_bytes())
}

/// Queues `message` for every connection in the module's room `room` but
/// `except`, and returns how many it was queued for (0 for a room nobody
/// is in). Slow consumers among them are closed as for [`ws_send`].
///
/// ```
/// use shanhai_sdk::{WsConn, WsMessage, broadcast};
/// fn relay(from: &WsConn, message: WsMessage<'_>) -> Result<String, shanhai_sdk::HostError> {
///     let n = broadcast("lobby", message, Some(from.id()))?;
///     Ok(format!("delivered to {n}"))
/// }
/// ```
///
/// # Errors
/// [`HostError::TooLarge`] beyond the gateway's `max_message_bytes`.
pub fn broadcast(
    room: &str,
    message: WsMessage<'_>,
    except: Option<u64>,
) -> Result<usize, HostError> {
    host::ws_broadcast(
        room,
        message.abi_type(),
        message.as_bytes(),
        except.unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_know_their_type_and_bytes() {
        let text = WsMessage::Text("hé");
        assert!(text.is_text());
        assert_eq!(text.as_bytes(), "hé".as_bytes());
        assert_eq!(text.abi_type(), 2);
        let binary = WsMessage::Binary(b"\x00");
        assert!(!binary.is_text());
        assert_eq!(binary.abi_type(), 3);
    }
}
