//! The state host functions (KV, SQL, outbound HTTP, GPIO) end to end
//! through the mock host, using only the public API. Each test's guest
//! code runs inside an event, as a module's would.

#![cfg(not(target_arch = "wasm32"))]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use shanhai_sdk::http::{Request, Response, StatusCode};
use shanhai_sdk::kv::{KeyPage, Store};
use shanhai_sdk::mock::{MockHost, SqlReply};
use shanhai_sdk::sql::{Database, ExecResult, Rows, Value};
use shanhai_sdk::{Error, Handlers, HostError, fetch, gpio};

/// A host whose byte function `t` runs `guest`; [`run`] calls it.
fn module(guest: impl Fn() + 'static) -> MockHost {
    MockHost::new(Handlers::new().function("t", move |_: &[u8]| {
        guest();
        Vec::new()
    }))
}

/// Runs the guest code of `host` in one event.
fn run(host: &mut MockHost) {
    host.call("t", b"").unwrap();
}

fn message(error: &Error) -> String {
    error.to_string()
}

#[test]
fn kv_values_are_set_read_and_deleted() {
    let mut host = module(|| {
        let kv = Store::own();
        assert_eq!(kv.get("missing").unwrap(), None);
        for value in [&b"v1"[..], b"", b"\x00\xff"] {
            kv.set("k", value, None).unwrap();
            assert_eq!(kv.get("k").unwrap().as_deref(), Some(value));
        }
        kv.set("kept", "yes", None).unwrap();
        assert!(kv.delete("k").unwrap());
        assert!(!kv.delete("k").unwrap());
    })
    .with_kv_grant("");
    run(&mut host);
    assert_eq!(host.kv_value("", "kept"), Some(&b"yes"[..]));
    assert_eq!(host.kv_keys(""), [&b"kept"[..]]);
}

#[test]
fn kv_entries_expire_on_the_mock_clock() {
    let phase = Rc::new(RefCell::new(0));
    let seen = Rc::clone(&phase);
    let mut host = module(move || {
        let kv = Store::own();
        match *seen.borrow() {
            0 => {
                kv.set("session", "s", Some(Duration::from_secs(60)))
                    .unwrap();
                kv.set("brief", "b", Some(Duration::from_nanos(1))).unwrap();
                kv.set("forever", "f", None).unwrap();
            }
            1 => {
                assert!(kv.get("session").unwrap().is_some());
                assert_eq!(
                    kv.get("brief").unwrap(),
                    None,
                    "a 1 ns TTL is 1 ms, not never"
                );
            }
            _ => {
                assert_eq!(kv.get("session").unwrap(), None);
                assert!(!kv.delete("session").unwrap());
                assert!(kv.get("forever").unwrap().is_some());
            }
        }
    })
    .with_kv_grant("");
    run(&mut host);
    host.advance_clock(Duration::from_secs(59));
    *phase.borrow_mut() = 1;
    run(&mut host);
    host.advance_clock(Duration::from_secs(1));
    *phase.borrow_mut() = 2;
    run(&mut host);
    assert_eq!(host.kv_keys(""), [&b"forever"[..]]);
}

#[test]
fn kv_keys_come_in_pages() {
    let mut host = module(|| {
        let kv = Store::own();
        let want: Vec<Vec<u8>> = (0..25)
            .map(|i| format!("user:{i:02}").into_bytes())
            .collect();
        for key in &want {
            kv.set(key, "", None).unwrap();
        }
        kv.set("other", "", None).unwrap();

        let mut cursor = Vec::new();
        let mut got = Vec::new();
        let mut pages = 0;
        loop {
            let page = kv.list("user:", &cursor, 10).unwrap();
            got.extend(page.keys);
            pages += 1;
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        assert_eq!((got.as_slice(), pages), (want.as_slice(), 3));

        // A page that ends at the last key is the last page.
        let page = kv.list("user:", "", 25).unwrap();
        assert_eq!((page.keys.len(), page.next), (25, None));
        assert_eq!(kv.list("none", "", 0).unwrap(), KeyPage::default());
        let all: Result<Vec<_>, _> = kv.keys("").collect();
        assert_eq!(all.unwrap().len(), 26);
        let error = kv.list("", "", 1001).unwrap_err();
        assert_eq!(error.kind(), HostError::InvalidArgument);
    })
    .with_kv_grant("");
    run(&mut host);
}

#[test]
fn kv_keys_iterates_past_a_page() {
    let mut host = module(|| {
        let kv = Store::shared("big");
        for i in 0..250 {
            kv.set(format!("k{i:03}"), "", None).unwrap();
        }
        let keys: Vec<Vec<u8>> = kv.keys("k").map(Result::unwrap).collect();
        assert_eq!(keys.len(), 250);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    })
    .with_kv_grant("big");
    run(&mut host);
}

#[test]
fn compare_and_swap_checks_the_current_value() {
    let mut host = module(|| {
        let kv = Store::own();
        assert!(kv.compare_and_swap("k", None, "1", None).unwrap());
        assert!(!kv.compare_and_swap("k", None, "x", None).unwrap());
        assert!(!kv.compare_and_swap("k", Some(b"2"), "x", None).unwrap());
        assert!(kv.compare_and_swap("k", Some(b"1"), "", None).unwrap());
        // Empty is a value, not absence.
        assert!(kv.compare_and_swap("k", Some(b""), "3", None).unwrap());
        assert!(!kv.compare_and_swap("absent", Some(b""), "x", None).unwrap());
        assert_eq!(kv.get("k").unwrap().as_deref(), Some(&b"3"[..]));
        let error = kv.compare_and_swap("", None, "", None).unwrap_err();
        assert_eq!(error.kind(), HostError::InvalidArgument);
    })
    .with_kv_grant("");
    run(&mut host);
}

#[test]
fn increments_are_decimal_text() {
    let mut host = module(|| {
        let kv = Store::own();
        assert_eq!(kv.increment("n", 1).unwrap(), 1);
        assert_eq!(kv.increment("n", 41).unwrap(), 42);
        assert_eq!(kv.increment("n", -50).unwrap(), -8);
        assert_eq!(kv.get("n").unwrap().as_deref(), Some(&b"-8"[..]));
        let error = kv.increment("big", 1).unwrap_err();
        assert_eq!(
            message(&error),
            "kv_incr failed: invalid argument: the sum overflows i64"
        );
        let error = kv.increment("text", 1).unwrap_err();
        assert_eq!(
            message(&error),
            "kv_incr failed: invalid argument: the value of `text` is not a decimal i64"
        );
    })
    .with_kv_grant("");
    host.kv_put("", "big", i64::MAX.to_string(), None);
    host.kv_put("", "text", "abc", None);
    run(&mut host);
}

#[test]
fn kv_stores_need_grants() {
    let mut host = module(|| {
        let error = Store::own().get("k").unwrap_err();
        assert_eq!(error, HostError::Denied);
        assert_eq!(
            message(&error),
            "kv_get failed: denied: the module's own KV namespace is not granted (grants.kv = true)"
        );
        Store::shared("shared").set("k", "v", None).unwrap();
        let other = Store::shared("other");
        let errors = [
            other.get("k").unwrap_err(),
            other.set("k", "", None).unwrap_err(),
            other.delete("k").unwrap_err(),
            other.list("", "", 0).unwrap_err(),
            other.compare_and_swap("k", None, "", None).unwrap_err(),
            other.increment("k", 1).unwrap_err(),
        ];
        for error in errors {
            assert_eq!(error.kind(), HostError::Denied, "{error}");
            assert_eq!(
                error.message(),
                Some("the KV store `other` is not granted (grants.kv_stores)")
            );
        }
        assert_eq!(other.name(), "other");
    })
    .with_kv_grant("shared");
    run(&mut host);
    // A shared store is not the module's own namespace.
    assert_eq!(host.kv_value("shared", "k"), Some(&b"v"[..]));
    assert_eq!(host.kv_value("", "k"), None);
}

#[test]
fn kv_limits() {
    let mut host = module(|| {
        let kv = Store::own();
        assert_eq!(kv.set("k", "12345", None).unwrap_err(), HostError::TooLarge);
        assert_eq!(
            kv.set("k".repeat(513), "", None).unwrap_err(),
            HostError::InvalidArgument
        );
        kv.set("k".repeat(512), "1234", None).unwrap();
    })
    .with_kv_grant("")
    .with_max_kv_value_bytes(4);
    run(&mut host);
}

type Statements = Rc<RefCell<Vec<(String, String, Vec<Value>)>>>;

/// A host whose SQL handler records each statement and answers `reply`.
fn sql_host(
    guest: impl Fn() + 'static,
    reply: impl Fn() -> Result<SqlReply, (HostError, String)> + 'static,
) -> (MockHost, Statements) {
    let seen = Statements::default();
    let record = Rc::clone(&seen);
    let host = module(guest).with_sql_handler(move |db: &str, sql: &str, params: &[Value]| {
        record
            .borrow_mut()
            .push((db.to_owned(), sql.to_owned(), params.to_vec()));
        reply()
    });
    (host, seen)
}

#[test]
fn sql_parameters_reach_the_host() {
    let (host, seen) = sql_host(
        || {
            let result = Database::own()
                .execute(
                    "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    &[
                        Value::Null,
                        7.into(),
                        i64::MIN.into(),
                        2.5.into(),
                        "héllo".into(),
                        b"\x00\xff".into(),
                        true.into(),
                    ],
                )
                .unwrap();
            assert_eq!(
                result,
                ExecResult {
                    rows_affected: 1,
                    last_insert_rowid: 42
                }
            );
            Database::own().execute("DELETE FROM t", &[]).unwrap();
        },
        || Ok(SqlReply::changed(1, 42)),
    );
    let mut host = host.with_sqlite_grant("");
    run(&mut host);
    let seen = seen.borrow();
    assert_eq!(
        seen[0],
        (
            String::new(),
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)".to_owned(),
            vec![
                Value::Null,
                Value::Integer(7),
                Value::Integer(i64::MIN),
                Value::Real(2.5),
                Value::Text("héllo".into()),
                Value::Blob(vec![0, 255]),
                Value::Integer(1),
            ]
        )
    );
    assert_eq!(seen[1].2, []);
}

#[test]
fn sql_queries_return_rows() {
    let (host, seen) = sql_host(
        || {
            let rows = Database::shared("catalog")
                .query("SELECT * FROM products WHERE price < ?1", &[10.into()])
                .unwrap();
            assert_eq!(
                rows,
                Rows {
                    columns: vec!["id".into(), "name".into(), "price".into(), "image".into()],
                    rows: vec![
                        vec![1.into(), "tea".into(), 3.5.into(), b"\x89P".into()],
                        vec![2.into(), "".into(), Value::Null, Value::Blob(Vec::new())],
                    ],
                }
            );
            assert_eq!(rows.column("price"), Some(2));
            assert_eq!(rows.rows[0][1].as_str(), Some("tea"));
            assert_eq!(rows.rows[1][2].as_f64(), None);
        },
        || {
            Ok(SqlReply::rows(
                ["id", "name", "price", "image"],
                vec![
                    vec![1.into(), "tea".into(), 3.5.into(), b"\x89P".into()],
                    vec![2.into(), "".into(), Value::Null, Value::Blob(Vec::new())],
                ],
            ))
        },
    );
    let mut host = host.with_sqlite_grant("catalog");
    run(&mut host);
    assert_eq!(seen.borrow()[0].0, "catalog");
}

#[test]
fn sql_errors_carry_the_host_message() {
    let (host, _) = sql_host(
        || {
            let error = Database::own().execute("SELEC 1", &[]).unwrap_err();
            assert_eq!(
                message(&error),
                r#"sql_exec failed: invalid argument: near "SELEC": syntax error"#
            );
            let error = Database::shared("other")
                .query("SELECT 1", &[])
                .unwrap_err();
            assert_eq!(
                message(&error),
                "sql_exec failed: denied: the SQLite database `other` is not granted (grants.sqlite_databases)"
            );
        },
        || {
            Err((
                HostError::InvalidArgument,
                r#"near "SELEC": syntax error"#.into(),
            ))
        },
    );
    let mut host = host.with_sqlite_grant("");
    run(&mut host);

    let mut host = module(|| {
        assert_eq!(
            Database::own().execute("SELECT 1", &[]).unwrap_err(),
            HostError::Denied
        );
    });
    run(&mut host);
    let mut host = module(|| {
        let error = Database::own().execute("SELECT 1", &[]).unwrap_err();
        assert_eq!(error.kind(), HostError::Unavailable);
    })
    .with_sqlite_grant("");
    run(&mut host);

    // A row narrower than the columns is a broken host.
    let (host, _) = sql_host(
        || {
            let error = Database::own().query("SELECT a, b", &[]).unwrap_err();
            assert_eq!(error.kind(), HostError::Internal);
        },
        || Ok(SqlReply::rows(["a", "b"], vec![vec![1.into()]])),
    );
    let mut host = host.with_sqlite_grant("");
    run(&mut host);
}

#[test]
fn fetch_sends_the_request_and_returns_the_response() {
    let seen = Rc::new(RefCell::new(None));
    let record = Rc::clone(&seen);
    let mut host = module(|| {
        let request = Request::post("https://api.example.com/v1/items?x=1")
            .header("x-token", "t")
            .header("x-multi", "a")
            .header("x-multi", "b")
            .body("payload")
            .unwrap();
        let response = fetch(request).unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.body(), br#"{"ok":true}"#);
        assert_eq!(response.headers()["content-type"], "application/json");
        let multi: Vec<_> = response.headers().get_all("x-b").iter().collect();
        assert_eq!(multi, ["1", "2"]);
    })
    .with_http_grant("api.example.com")
    .with_fetch_handler(move |request: Request<Vec<u8>>| {
        *record.borrow_mut() = Some(request);
        Ok(Response::builder()
            .status(201)
            .header("content-type", "application/json")
            .header("x-b", "1")
            .header("x-b", "2")
            .body(br#"{"ok":true}"#.to_vec())
            .unwrap())
    });
    run(&mut host);
    let request = seen.borrow_mut().take().unwrap();
    assert_eq!(request.method(), "POST");
    assert_eq!(request.uri(), "https://api.example.com/v1/items?x=1");
    assert_eq!(request.headers()["x-token"], "t");
    let multi: Vec<_> = request.headers().get_all("x-multi").iter().collect();
    assert_eq!(multi, ["a", "b"]);
    assert_eq!(request.body(), b"payload");
}

#[test]
fn fetch_checks_the_http_grant() {
    let mut host = module(|| {
        for (uri, allowed) in [
            ("https://api.example.com/", true),
            ("http://API.example.com/", true),
            ("http://api.example.com:9999/", false),
            ("http://any.example:9999/", true),
            ("http://127.0.0.1:8081/", true),
            ("http://127.0.0.1:8082/", false),
            ("http://127.0.0.1/", false),
            ("https://a.b.trusted.org/", true),
            ("https://trusted.org/", false),
            ("https://eviltrusted.org/", false),
            ("https://api.example.com.evil/", false),
        ] {
            let result = fetch(Request::get(uri).body("").unwrap());
            match allowed {
                true => assert!(result.is_ok(), "{uri}: {result:?}"),
                false => assert_eq!(result.unwrap_err().kind(), HostError::Denied, "{uri}"),
            }
        }
        let error = fetch(Request::get("http://127.0.0.1:8082/x").body("").unwrap()).unwrap_err();
        assert_eq!(
            message(&error),
            "http_fetch failed: denied: outbound HTTP to 127.0.0.1:8082 is not granted (grants.http)"
        );
        let error = fetch(Request::get("/relative").body("").unwrap()).unwrap_err();
        assert_eq!(error.kind(), HostError::InvalidArgument);
    })
    .with_http_grant("api.example.com")
    .with_http_grant("127.0.0.1:8081")
    .with_http_grant("*.trusted.org")
    .with_http_grant("any.example:*")
    .with_fetch_handler(|_: Request<Vec<u8>>| Ok(Response::new(Vec::new())));
    run(&mut host);
}

#[test]
fn fetch_failures() {
    let mut host = module(|| {
        let error = fetch(Request::get("http://down.example/").body("").unwrap()).unwrap_err();
        assert_eq!(error.kind(), HostError::Unavailable);
    })
    .with_http_grant("down.example");
    run(&mut host);
    let mut host = module(|| {
        let error = fetch(Request::get("http://down.example/").body("").unwrap()).unwrap_err();
        assert_eq!(
            message(&error),
            "http_fetch failed: unavailable: connection refused"
        );
    })
    .with_http_grant("down.example")
    .with_fetch_handler(|_: Request<Vec<u8>>| {
        Err((HostError::Unavailable, "connection refused".into()))
    });
    run(&mut host);
}

#[test]
fn gpio_pins() {
    let mut host = module(|| {
        assert!(gpio::read(17).unwrap());
        for high in [true, false, true] {
            gpio::write(18, high).unwrap();
        }
        // An output pin reads back.
        assert!(gpio::read(18).unwrap());
        let error = gpio::write(17, true).unwrap_err();
        assert_eq!(
            message(&error),
            "gpio_write failed: denied: GPIO 17 is not granted as an output (grants.gpio_out)"
        );
        assert_eq!(gpio::read(4).unwrap_err(), HostError::Denied);
        assert_eq!(gpio::write(19, true).unwrap_err(), HostError::NotFound);
        assert_eq!(
            gpio::read(u32::MAX).unwrap_err(),
            HostError::InvalidArgument
        );
    })
    .with_gpio_in_grant(17)
    .with_gpio_out_grant(18)
    .with_gpio_out_grant(19)
    .with_gpio_pin(4, true)
    .with_gpio_pin(17, true)
    .with_gpio_pin(18, false);
    run(&mut host);
    assert_eq!(host.gpio(18), Some(true));
    assert_eq!(host.gpio(19), None);
    assert_eq!(host.gpio_writes(), [(18, true), (18, false), (18, true)]);
    host.set_gpio(17, false);
    assert_eq!(host.gpio(17), Some(false));
}

/// A host error converts into the `HostError` that `?` needs in handlers
/// returning one, and an `Error` displays with its message in an event's
/// failure.
#[test]
fn errors_fail_events_with_the_host_message() {
    let mut host = MockHost::new(Handlers::new().function("t", |_: &[u8]| {
        Store::own().get("k").map(Option::unwrap_or_default)
    }));
    let failure = host.call("t", b"").unwrap_err();
    assert_eq!(
        failure.message,
        "kv_get failed: denied: the module's own KV namespace is not granted (grants.kv = true)"
    );
}
