//! WebSocket handlers end to end through the mock host, using only the
//! public API.

#![cfg(not(target_arch = "wasm32"))]

use std::cell::RefCell;
use std::rc::Rc;

use shanhai_sdk::http::Request;
use shanhai_sdk::mock::{Broadcast, Failure, MockHost, SentMessage};
use shanhai_sdk::{
    EventKind, EventStatus, Handlers, HostError, RemoteAddr, RequestId, WebSocketHandler, WsConn,
    WsMessage, broadcast, ws_send,
};

fn upgrade(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

fn text(s: &str) -> SentMessage {
    SentMessage::Text(s.into())
}

fn binary(b: &[u8]) -> SentMessage {
    SentMessage::Binary(b.to_vec())
}

fn error(message: &str) -> Failure {
    Failure {
        status: EventStatus::Error,
        message: message.into(),
    }
}

/// The room a connection names in its query, `?room=NAME`.
fn room(conn: &WsConn) -> &str {
    conn.uri().split_once("room=").map_or("lobby", |(_, r)| r)
}

/// A chat: rooms from the query, messages relayed to the room, and a few
/// commands.
fn chat() -> Handlers {
    Handlers::new().websocket(
        WebSocketHandler::new()
            .on_open(|conn: &WsConn| {
                if conn.headers().contains_key("x-banned") {
                    return Err("banned".to_owned());
                }
                conn.join(room(conn)).map_err(|e| e.to_string())?;
                Ok(format!("welcome to {}", room(conn)))
            })
            .on_message(|conn: &WsConn, message: WsMessage<'_>| {
                match message {
                    WsMessage::Text(command) if command.starts_with("leave ") => {
                        conn.leave(&command[6..])?;
                        return Ok("left".to_owned());
                    }
                    WsMessage::Text(command) if command.starts_with("kick ") => {
                        conn.close(4000, &command[5..])?;
                        return Ok("kicked".to_owned());
                    }
                    WsMessage::Text("whisper") => {
                        conn.send_text("psst")?;
                    }
                    _ => {}
                }
                let n = broadcast(room(conn), message, Some(conn.id()))?;
                Ok::<_, HostError>(format!("sent to {n}"))
            }),
    )
}

#[test]
fn open_sees_the_upgrade_request_and_replies() {
    let seen = Rc::new(RefCell::new(None));
    let record = Rc::clone(&seen);
    let mut host = MockHost::new(Handlers::new().websocket(WebSocketHandler::new().on_open(
        move |conn: &WsConn| {
            record.replace(Some(conn.clone()));
            "hello"
        },
    )));
    let mut request = Request::get("http://ignored.example/chat?room=a")
        .header("sec-websocket-protocol", "chat")
        .body(())
        .unwrap();
    request.extensions_mut().insert(RequestId("r-9".into()));
    request
        .extensions_mut()
        .insert(RemoteAddr("10.0.0.1:7".into()));
    let id = host.ws_open(request).unwrap();
    let conn = seen.take().unwrap();
    assert_eq!(conn.id(), id);
    assert_ne!(id, 0);
    assert_eq!(conn.uri(), "/chat?room=a");
    assert_eq!(conn.remote_addr(), "10.0.0.1:7");
    assert_eq!(conn.request_id(), "r-9");
    assert_eq!(conn.headers()["sec-websocket-protocol"], "chat");
    assert_eq!(host.ws_received(id), [text("hello")]);
}

#[test]
fn open_without_a_handler_is_unsupported_and_without_on_open_accepts() {
    let mut host = MockHost::new(Handlers::new().function("f", |_: &[u8]| Vec::new()));
    assert_eq!(
        host.ws_open(upgrade("/")).unwrap_err().status,
        EventStatus::Unsupported
    );

    let mut host = MockHost::new(Handlers::new().websocket(WebSocketHandler::new()));
    let id = host.ws_open(upgrade("/")).unwrap();
    assert_eq!(host.ws_text(id, "anyone?").unwrap(), b"");
    host.ws_close(id, 1000, "").unwrap();
    assert!(host.ws_received(id).is_empty());
}

#[test]
fn refused_opens_leave_no_connection() {
    let mut host = MockHost::new(chat());
    let request = Request::get("/?room=vip")
        .header("x-banned", "1")
        .body(())
        .unwrap();
    assert_eq!(host.ws_open(request).unwrap_err(), error("banned"));
    assert!(host.room_members("vip").is_empty());
}

#[test]
fn messages_are_relayed_to_the_room() {
    let mut host = MockHost::new(chat());
    let alice = host.ws_open(upgrade("/chat?room=lobby")).unwrap();
    let bob = host.ws_open(upgrade("/chat?room=lobby")).unwrap();
    let carol = host.ws_open(upgrade("/chat?room=attic")).unwrap();
    assert_eq!(host.room_members("lobby"), [alice, bob]);
    assert_eq!(host.ws_rooms(carol), ["attic"]);

    assert_eq!(host.ws_text(alice, "hi all").unwrap(), b"sent to 1");
    assert_eq!(host.ws_binary(bob, b"\x07").unwrap(), b"sent to 1");
    // Messages sent during an event go out before its reply.
    assert_eq!(host.ws_text(bob, "whisper").unwrap(), b"sent to 1");

    assert_eq!(
        host.ws_received(alice),
        [
            text("welcome to lobby"),
            text("sent to 1"),
            binary(b"\x07"),
            text("whisper"),
        ]
    );
    assert_eq!(
        host.ws_received(bob),
        [
            text("welcome to lobby"),
            text("hi all"),
            binary(b"sent to 1"),
            text("psst"),
            text("sent to 1"),
        ]
    );
    assert_eq!(host.ws_received(carol), [text("welcome to attic")]);
    assert_eq!(
        host.broadcasts()[0],
        Broadcast {
            room: "lobby".into(),
            message: text("hi all"),
            except: Some(alice),
            recipients: 1,
        }
    );
    assert_eq!(host.broadcasts().len(), 3);
}

#[test]
fn leaving_and_closing() {
    let mut host = MockHost::new(chat());
    let alice = host.ws_open(upgrade("/?room=lobby")).unwrap();
    let bob = host.ws_open(upgrade("/?room=lobby")).unwrap();

    host.ws_text(bob, "leave lobby").unwrap();
    assert_eq!(host.room_members("lobby"), [alice]);
    assert_eq!(
        host.ws_text(bob, "leave lobby").unwrap_err(),
        error("host call failed: not found")
    );

    // The guest closes alice: the event's reply is dropped, and nothing
    // more reaches her.
    assert_eq!(host.ws_text(alice, "kick spam").unwrap(), b"kicked");
    assert_eq!(host.ws_closed_by_guest(alice), Some((4000, "spam")));
    assert_eq!(host.ws_closed_by_guest(bob), None);
    assert_eq!(host.ws_received(alice), [text("welcome to lobby")]);
    host.ws_close(alice, 4000, "spam").unwrap();
    assert!(host.room_members("lobby").is_empty());
}

#[test]
fn close_events_reach_on_close_after_the_connection_ended() {
    let closed = Rc::new(RefCell::new(Vec::new()));
    let record = Rc::clone(&closed);
    let mut host = MockHost::new(
        Handlers::new().websocket(
            WebSocketHandler::new()
                .on_open(|conn: &WsConn| conn.join("all"))
                .on_close(move |conn: &WsConn, code: u16, reason: &str| {
                    let late = conn.send_text("too late");
                    record
                        .borrow_mut()
                        .push((conn.id(), code, reason.to_owned(), late));
                }),
        ),
    );
    let a = host.ws_open(upgrade("/")).unwrap();
    let b = host.ws_open(upgrade("/")).unwrap();
    host.ws_close(a, 1001, "going away").unwrap();
    host.ws_close(b, 1006, "").unwrap();
    assert_eq!(
        *closed.borrow(),
        [
            (a, 1001, "going away".to_owned(), Err(HostError::NotFound)),
            (b, 1006, String::new(), Err(HostError::NotFound)),
        ]
    );
    assert!(host.room_members("all").is_empty());
}

#[test]
#[should_panic(expected = "WebSocket connection 1 is not open")]
fn messages_on_closed_connections_panic() {
    let mut host = MockHost::new(Handlers::new().websocket(WebSocketHandler::new()));
    let id = host.ws_open(upgrade("/")).unwrap();
    host.ws_close(id, 1000, "").unwrap();
    let _ = host.ws_text(id, "x");
}

#[test]
fn message_errors_are_error_events_and_the_connection_stays() {
    let mut host = MockHost::new(
        Handlers::new().websocket(WebSocketHandler::new().on_message(
            |_: &WsConn, message: WsMessage<'_>| match message {
                WsMessage::Text("fail") => Err("cannot do that"),
                WsMessage::Text("bad reply") => Ok(Some(vec![0xff])),
                WsMessage::Text("empty") => Ok(Some(Vec::new())),
                WsMessage::Text("none") => Ok(None),
                other => Ok(Some(other.as_bytes().to_ascii_uppercase())),
            },
        )),
    );
    let id = host.ws_open(upgrade("/")).unwrap();
    assert_eq!(
        host.ws_text(id, "fail").unwrap_err(),
        error("cannot do that")
    );
    assert_eq!(
        host.ws_text(id, "bad reply").unwrap_err(),
        error("a text reply is not valid UTF-8")
    );
    // Binary replies may hold any bytes.
    assert_eq!(host.ws_binary(id, b"\xffa").unwrap(), b"\xffA");
    // `None` sends nothing; an empty reply is an empty message.
    assert_eq!(host.ws_text(id, "none").unwrap(), b"");
    assert_eq!(host.ws_text(id, "empty").unwrap(), b"");
    assert_eq!(host.ws_text(id, "ok").unwrap(), b"OK");
    assert_eq!(
        host.ws_received(id),
        [binary(b"\xffA"), text(""), text("OK")]
    );
}

/// What each host call in [`host_errors`] returned, by name.
type Results = Vec<(&'static str, Result<usize, HostError>)>;

/// Host calls on `conn` that break the ABI's rules, then some that keep
/// them; run during a message event.
fn probe_host_calls(conn: &WsConn) -> Results {
    let unit = |r: Result<(), HostError>| r.map(|()| 0);
    let long = "r".repeat(257);
    vec![
        ("send to 0", unit(ws_send(0, WsMessage::Text("x")))),
        (
            "send to an unknown connection",
            unit(ws_send(conn.id() + 1000, WsMessage::Text("x"))),
        ),
        ("over max_message_bytes", unit(conn.send_binary(b"12345"))),
        (
            "broadcast over max_message_bytes",
            broadcast("r", WsMessage::Text("12345"), None),
        ),
        ("empty room", unit(conn.join(""))),
        ("room over 256 bytes", unit(conn.join(&long))),
        ("leave a room it is not in", unit(conn.leave("r"))),
        ("close code 1005", unit(conn.close(1005, ""))),
        ("close code 5000", unit(conn.close(5000, ""))),
        (
            "close reason over 123 bytes",
            unit(conn.close(1000, &"x".repeat(124))),
        ),
        ("send within the limits", unit(conn.send_text("1234"))),
        ("join within the limits", unit(conn.join(&long[..256]))),
        (
            "unknown room",
            broadcast("nobody", WsMessage::Text("x"), None),
        ),
        ("leave a room no room can be", unit(conn.leave(""))),
        (
            "broadcast to a room no room can be",
            broadcast(&long, WsMessage::Text("x"), None),
        ),
        ("close within the limits", unit(conn.close(3000, "bye"))),
        ("second close", unit(conn.close(1000, "again"))),
        ("send after close", unit(conn.send_text("x"))),
        ("join after close", unit(conn.join("r"))),
    ]
}

#[test]
fn host_errors() {
    let results: Rc<RefCell<Results>> = Rc::default();
    let sink = Rc::clone(&results);
    let mut host = MockHost::new(
        Handlers::new().websocket(WebSocketHandler::new().on_message(
            move |conn: &WsConn, _: WsMessage<'_>| {
                sink.replace(probe_host_calls(conn));
            },
        )),
    )
    .with_max_message_bytes(4);
    let id = host.ws_open(upgrade("/")).unwrap();
    host.ws_text(id, "go").unwrap();
    use HostError::{InvalidArgument, NotFound, TooLarge};
    assert_eq!(
        *results.borrow(),
        [
            ("send to 0", Err(NotFound)),
            ("send to an unknown connection", Err(NotFound)),
            ("over max_message_bytes", Err(TooLarge)),
            ("broadcast over max_message_bytes", Err(TooLarge)),
            ("empty room", Err(InvalidArgument)),
            ("room over 256 bytes", Err(InvalidArgument)),
            ("leave a room it is not in", Err(NotFound)),
            ("close code 1005", Err(InvalidArgument)),
            ("close code 5000", Err(InvalidArgument)),
            ("close reason over 123 bytes", Err(InvalidArgument)),
            ("send within the limits", Ok(0)),
            ("join within the limits", Ok(0)),
            ("unknown room", Ok(0)),
            ("leave a room no room can be", Err(NotFound)),
            ("broadcast to a room no room can be", Ok(0)),
            ("close within the limits", Ok(0)),
            ("second close", Ok(0)),
            ("send after close", Err(NotFound)),
            ("join after close", Err(NotFound)),
        ]
    );
    assert_eq!(host.ws_received(id), [text("1234")]);
    assert_eq!(host.ws_closed_by_guest(id), Some((3000, "bye")));
    assert_eq!(host.ws_rooms(id), ["r".repeat(256)]);
}

#[test]
fn connections_are_reachable_from_other_events() {
    let mut host = MockHost::new(Handlers::new().websocket(WebSocketHandler::new()).function(
        "notify",
        |input: &[u8]| {
            let id = u64::from_le_bytes(input.try_into().map_err(|_| "bad id")?);
            ws_send(id, WsMessage::Binary(b"from a call")).map_err(|e| e.to_string())?;
            Ok::<_, String>(Vec::new())
        },
    ));
    let id = host.ws_open(upgrade("/")).unwrap();
    host.call("notify", &id.to_le_bytes()).unwrap();
    assert_eq!(host.ws_received(id), [binary(b"from a call")]);
    assert_eq!(
        host.call("notify", &(id + 1).to_le_bytes()).unwrap_err(),
        error("host call failed: not found")
    );
}

#[test]
fn outside_an_event_there_are_no_connections() {
    assert_eq!(ws_send(1, WsMessage::Text("x")), Err(HostError::NotFound));
    assert_eq!(broadcast("r", WsMessage::Text("x"), None), Ok(0));
}

#[test]
fn malformed_ws_envelopes_are_error_events() {
    let mut host = MockHost::new(Handlers::new().websocket(WebSocketHandler::new()));
    let kind = EventKind::WebSocket as i32;
    for (envelope, message) in [
        (
            &b""[..],
            "malformed WebSocket event envelope: envelope truncated in event type",
        ),
        (
            b"\x09",
            "malformed WebSocket event envelope: event type 9 is unknown",
        ),
        (
            b"\x02garbage\xff\xff\xff!",
            "malformed WebSocket event envelope: envelope truncated in uri",
        ),
    ] {
        let outcome = host.event(kind, envelope);
        assert_eq!(outcome.status, EventStatus::Error);
        assert_eq!(String::from_utf8(outcome.output).unwrap(), message);
    }
}

#[test]
fn envelopes_with_invalid_contents() {
    use shanhai_abi::wire::{Header, WsEvent, WsEventType};

    let reasons = Rc::new(RefCell::new(Vec::new()));
    let record = Rc::clone(&reasons);
    let mut host = MockHost::new(
        Handlers::new().websocket(
            WebSocketHandler::new()
                .on_message(|_: &WsConn, m: WsMessage<'_>| m.as_bytes().to_vec())
                .on_close(move |_: &WsConn, code: u16, reason: &str| {
                    record.borrow_mut().push((code, reason.to_owned()));
                }),
        ),
    );
    let event = |event, headers, data| {
        WsEvent {
            event,
            connection: 5,
            close_code: 1000,
            uri: "/",
            remote_addr: "127.0.0.1:1",
            request_id: "r",
            headers,
            data,
        }
        .encode()
    };
    let kind = EventKind::WebSocket as i32;

    let outcome = host.event(kind, &event(WsEventType::Text, vec![], b"\xff"));
    assert_eq!(outcome.status, EventStatus::Error);
    assert_eq!(outcome.output, b"the text message is not valid UTF-8");

    let bad_name = vec![Header {
        name: b"bad name",
        value: b"v",
    }];
    let outcome = host.event(kind, &event(WsEventType::Open, bad_name, b""));
    assert_eq!(outcome.status, EventStatus::Error);
    assert_eq!(outcome.output, br#"invalid header name "bad name""#);

    // A close reason that is not UTF-8 reaches on_close lossily.
    let outcome = host.event(kind, &event(WsEventType::Close, vec![], b"bye\xff"));
    assert_eq!(outcome.status, EventStatus::Ok);
    assert_eq!(*reasons.borrow(), [(1000, "bye\u{fffd}".to_owned())]);
}
