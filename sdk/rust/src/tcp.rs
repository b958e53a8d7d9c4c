//! TCP connections as the module's events see them.
//!
//! The gateway holds the connections and cuts each byte stream into frames
//! as the listener's framing says (`[tcp.NAME]` in its config); a module
//! sees one event per frame, plus the connection's open and close.

use shanhai_abi::wire::TcpEvent;

/// One TCP connection as an event sees it: its id, the listener it came
/// through, the client's address and the id of the event.
///
/// [`TcpConn::new`] builds one for unit tests of a handler's functions;
/// [`MockHost::tcp_open`](crate::mock::MockHost::tcp_open) drives the
/// whole handler.
///
/// ```
/// use shanhai_sdk::TcpConn;
///
/// let conn = TcpConn::new(7, "modbus", "192.0.2.7:50123", "r-1");
/// assert_eq!((conn.id(), conn.listener()), (7, "modbus"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpConn {
    id: u64,
    listener: String,
    remote_addr: String,
    request_id: String,
}

impl TcpConn {
    /// A connection with these parts, as the SDK builds it from an event.
    pub fn new(
        id: u64,
        listener: impl Into<String>,
        remote_addr: impl Into<String>,
        request_id: impl Into<String>,
    ) -> Self {
        Self {
            id,
            listener: listener.into(),
            remote_addr: remote_addr.into(),
            request_id: request_id.into(),
        }
    }

    pub(crate) fn from_wire(event: &TcpEvent<'_>) -> Self {
        Self::new(
            event.connection,
            event.listener,
            event.remote_addr,
            event.request_id,
        )
    }

    /// The connection id: unique in the gateway process, never 0 and never
    /// reused. Key per-connection state by it: one connection's events may
    /// reach different instances.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The name of the listener the client connected to, `NAME` in the
    /// gateway's `[tcp.NAME]`.
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// The client's address, `ip:port`.
    pub fn remote_addr(&self) -> &str {
        &self.remote_addr
    }

    /// The gateway's id of this event.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shanhai_abi::wire::TcpEventType;

    #[test]
    fn connections_come_from_the_envelope() {
        let event = TcpEvent {
            event: TcpEventType::Frame,
            connection: 1 << 40,
            listener: "modbus",
            remote_addr: "[::1]:502",
            request_id: "r-1",
            data: b"\x00\x01",
        };
        let conn = TcpConn::from_wire(&event);
        assert_eq!(conn, TcpConn::new(1 << 40, "modbus", "[::1]:502", "r-1"));
        assert_eq!(
            (conn.remote_addr(), conn.request_id()),
            ("[::1]:502", "r-1")
        );
    }
}
