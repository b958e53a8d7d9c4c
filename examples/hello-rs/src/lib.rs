//! `hello-rs`: an example Shanhai module written with the Rust SDK.
//!
//! Mounted by the gateway at `/hello-rs` (it receives the full path):
//!
//! - `GET /hello-rs?name=X` answers `Hello, X from Rust` (`world` when no
//!   name is given); the greeting word comes from the config variable
//!   `greeting`, default `Hello`.
//! - `/hello-rs/echo` (any method) answers a JSON object with the request's
//!   method, path, `user-agent` header, body length and request id.
//! - `GET /hello-rs/visits/NAME` adds one to the counter `visits:NAME` in
//!   the module's own KV namespace and answers the new count. It needs
//!   `kv = true` in `[modules.hello-rs.grants]` (and a `[state]` data
//!   dir); without the grant it answers 403, on any other KV failure 500,
//!   with the SDK error as the body.
//! - Byte functions `upper` and `reverse` upper-case and reverse UTF-8
//!   text (`POST /api/exec/hello-rs/upper`).
//!
//! Build: `cargo build --release --target wasm32-wasip1 -p hello-rs`, which
//! writes `target/wasm32-wasip1/release/hello_rs.wasm`.

use std::fmt::Write as _;
use std::str::Utf8Error;

use shanhai_sdk::http::{Method, Request, Response, StatusCode, header};
use shanhai_sdk::kv::Store;
use shanhai_sdk::{Handlers, HostError, RequestId};

/// Where the gateway mounts this module.
const MOUNT: &str = "/hello-rs";

fn handlers() -> Handlers {
    Handlers::new()
        .http(handle)
        .function("upper", upper)
        .function("reverse", reverse)
}

shanhai_sdk::export!(handlers);

fn handle(request: Request<Vec<u8>>) -> Result<Response<String>, HostError> {
    let path = request.uri().path();
    shanhai_sdk::info!("hello-rs: {} {}", request.method(), path);
    match path.strip_prefix(MOUNT) {
        Some("" | "/") if request.method() == Method::GET => greet(&request),
        Some("" | "/") => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET");
            let allow = header::HeaderValue::from_static("GET");
            response.headers_mut().insert(header::ALLOW, allow);
            Ok(response)
        }
        Some("/echo") => Ok(echo(&request)),
        Some(rest) if request.method() == Method::GET => match rest.strip_prefix("/visits/") {
            Some(name) if !name.is_empty() && !name.contains('/') => Ok(visit(name)),
            _ => Ok(text(StatusCode::NOT_FOUND, "not found")),
        },
        _ => Ok(text(StatusCode::NOT_FOUND, "not found")),
    }
}

fn greet(request: &Request<Vec<u8>>) -> Result<Response<String>, HostError> {
    let greeting = shanhai_sdk::config("greeting")?.unwrap_or_else(|| "Hello".to_owned());
    let name = request
        .uri()
        .query()
        .and_then(|query| query_param(query, "name"))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "world".to_owned());
    Ok(text(
        StatusCode::OK,
        &format!("{greeting}, {name} from Rust"),
    ))
}

/// Counts a visit of `name` (percent-encoded) in the module's own KV
/// namespace and answers the new count.
fn visit(name: &str) -> Response<String> {
    let key = format!("visits:{}", percent_decode(name));
    match Store::own().increment(key, 1) {
        Ok(count) => text(StatusCode::OK, &count.to_string()),
        Err(error) => {
            let status = if error.kind() == HostError::Denied {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            text(status, &error.to_string())
        }
    }
}

fn echo(request: &Request<Vec<u8>>) -> Response<String> {
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .map(|value| String::from_utf8_lossy(value.as_bytes()));
    let request_id = request.extensions().get::<RequestId>();
    let json = format!(
        "{{\"method\":{},\"path\":{},\"user_agent\":{},\"body_length\":{},\"request_id\":{}}}",
        json_string(request.method().as_str()),
        json_string(request.uri().path()),
        user_agent.map_or_else(|| "null".to_owned(), |ua| json_string(&ua)),
        request.body().len(),
        request_id.map_or_else(|| "null".to_owned(), |id| json_string(id.as_str())),
    );
    let mut response = Response::new(json);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn text(status: StatusCode, body: &str) -> Response<String> {
    let mut response = Response::new(body.to_owned());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Upper-cases UTF-8 text.
fn upper(input: &[u8]) -> Result<String, Utf8Error> {
    Ok(std::str::from_utf8(input)?.to_uppercase())
}

/// Reverses UTF-8 text character by character.
fn reverse(input: &[u8]) -> Result<String, Utf8Error> {
    Ok(std::str::from_utf8(input)?.chars().rev().collect())
}

/// The first value of `key` in an `application/x-www-form-urlencoded`
/// query, decoded.
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// Decodes `+` and `%XX` escapes; malformed escapes stay as they are and
/// invalid UTF-8 becomes U+FFFD.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes.get(i + 1..i + 3).and_then(hex_pair) {
                Some(byte) => {
                    out.push(byte);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte two hex digits spell.
fn hex_pair(digits: &[u8]) -> Option<u8> {
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// The mock host exists only natively.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use shanhai_sdk::mock::{Failure, MockHost};
    use shanhai_sdk::{EventStatus, LogLevel};

    fn get(uri: &str) -> Request<Vec<u8>> {
        Request::get(uri).body(Vec::new()).unwrap()
    }

    fn body(response: &Response<Vec<u8>>) -> &str {
        std::str::from_utf8(response.body()).unwrap()
    }

    #[test]
    fn greets_the_world_by_default() {
        let mut host = MockHost::new(handlers());
        let response = host.http(get("/hello-rs")).unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(body(&response), "Hello, world from Rust");
        assert_eq!(host.logs().len(), 1);
        assert_eq!(host.logs()[0].level, LogLevel::Info);
        assert_eq!(host.logs()[0].message, "hello-rs: GET /hello-rs");
    }

    #[test]
    fn greets_by_name_with_the_configured_greeting() {
        let mut host = MockHost::new(handlers());
        let response = host.http(get("/hello-rs?name=Ada")).unwrap();
        assert_eq!(body(&response), "Hello, Ada from Rust");
        let response = host.http(get("/hello-rs/?x=1&name=J%C3%BCrgen+M")).unwrap();
        assert_eq!(body(&response), "Hello, J\u{fc}rgen M from Rust");

        host.set_config("greeting", "Ni hao");
        let response = host.http(get("/hello-rs?name=")).unwrap();
        assert_eq!(body(&response), "Ni hao, world from Rust");
    }

    #[test]
    fn other_methods_and_paths() {
        let mut host = MockHost::new(handlers());
        let response = host
            .http(Request::delete("/hello-rs").body("").unwrap())
            .unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET");
        let response = host.http(get("/hello-rs/missing")).unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let response = host.http(get("/hello-rsx")).unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn echo_describes_the_request_as_json() {
        let mut host = MockHost::new(handlers());
        let mut request = Request::post("/hello-rs/echo?q=1")
            .header(header::USER_AGENT, "curl/8 \"quoted\"")
            .body("hello")
            .unwrap();
        request.extensions_mut().insert(RequestId("req-7".into()));
        let response = host.http(request).unwrap();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body(&response),
            concat!(
                r#"{"method":"POST","path":"/hello-rs/echo","#,
                r#""user_agent":"curl/8 \"quoted\"","body_length":5,"request_id":"req-7"}"#
            )
        );
        let response = host.http(get("/hello-rs/echo")).unwrap();
        assert!(body(&response).contains(r#""user_agent":null,"body_length":0"#));
    }

    #[test]
    fn visits_count_per_name_in_the_own_namespace() {
        let mut host = MockHost::new(handlers()).with_kv_grant("");
        for expected in ["1", "2", "3"] {
            let response = host.http(get("/hello-rs/visits/ada")).unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(body(&response), expected);
        }
        let response = host.http(get("/hello-rs/visits/J%C3%BCrgen")).unwrap();
        assert_eq!(body(&response), "1");
        assert_eq!(host.kv_value("", "visits:ada"), Some(&b"3"[..]));
        assert_eq!(host.kv_value("", "visits:J\u{fc}rgen"), Some(&b"1"[..]));
        for path in ["/hello-rs/visits/", "/hello-rs/visits/a/b"] {
            let response = host.http(get(path)).unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[test]
    fn visits_without_the_grant_are_forbidden() {
        let mut host = MockHost::new(handlers());
        let response = host.http(get("/hello-rs/visits/ada")).unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(body(&response).contains("denied"), "{}", body(&response));
    }

    #[test]
    fn byte_functions() {
        let mut host = MockHost::new(handlers());
        assert_eq!(
            host.call("upper", "straße".as_bytes()).unwrap(),
            "STRASSE".as_bytes()
        );
        assert_eq!(
            host.call("reverse", "abc日本".as_bytes()).unwrap(),
            "本日cba".as_bytes()
        );
        let failure = host.call("upper", b"\xff").unwrap_err();
        assert_eq!(failure.status, EventStatus::Error);
        assert!(failure.message.contains("invalid utf-8"), "{failure}");
        assert_eq!(
            host.call("lower", b"X").unwrap_err(),
            Failure {
                status: EventStatus::NotFound,
                message: "no byte function named `lower`".into()
            }
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(percent_decode("%+f"), "% f");
        assert_eq!(query_param("a=1&name&b=2", "name").as_deref(), Some(""));
        assert_eq!(query_param("a=1", "name"), None);
        assert_eq!(json_string("a\u{1}\\"), r#""a\u0001\\""#);
    }
}
