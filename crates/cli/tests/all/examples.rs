//! The example modules served by a real gateway.

use std::time::{Duration, Instant};

use crate::util::{Gateway, Http, modules_with};

const CONFIG: &str = r#"
[modules.hello.vars]
greeting = "Nǐ hǎo"

[modules.hello-rs]
routes = ["/rs-alias"]

[modules.cgi-echo]
max_request_bytes = 1024
"#;

#[tokio::test(flavor = "multi_thread")]
async fn go_reactor_serves_net_http_handlers() {
    let modules = modules_with(&["hello"]);
    let gw = Gateway::start(modules.path(), Some(CONFIG));
    let http = Http::new();

    let reply = http.get(&gw.url("/hello?name=edge")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.text(),
        "Nǐ hǎo, edge",
        "config variable reaches the guest"
    );
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(
        reply
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty())
    );

    let reply = http
        .send(
            "PUT",
            &gw.url("/hello/echo?x=1"),
            &[("user-agent", "itest/1"), ("x-request-id", "given-id-42")],
            b"payload".to_vec(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/hello/echo");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["user_agent"], "itest/1");
    assert_eq!(echo["body"], "payload");
    assert_eq!(
        echo["request_id"], "given-id-42",
        "the client's request id is kept"
    );
    assert_eq!(reply.header("x-request-id"), Some("given-id-42"));

    // The guest's own 404 (from its ServeMux) passes through unchanged.
    let reply = http.get(&gw.url("/hello/nope")).await;
    assert_eq!(reply.status, 404);

    // Byte function through /api/exec.
    let reply = http.post(&gw.url("/api/exec/hello/upper"), "shanhai").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "SHANHAI"));
    let reply = http.post(&gw.url("/api/exec/hello/missing"), "x").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error_kind(), "unknown_function");

    // Guest log lines are tagged with module, version and request id.
    let logs = gw.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("\"shanhai::guest\"") && l.contains("greeting"))
        .unwrap_or_else(|| panic!("no guest log line in:\n{logs}"));
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["module"], "hello");
    assert!(
        line["version"].as_str().is_some_and(|v| v.len() == 12),
        "{line}"
    );
    assert!(
        line["request_id"].as_str().is_some_and(|v| !v.is_empty()),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn numeric_exports_take_json_numbers() {
    let modules = modules_with(&["add"]);
    let gw = Gateway::start(modules.path(), None);
    let http = Http::new();

    let reply = http.post(&gw.url("/api/exec/add/add"), "[2.5, 3.7]").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "6.2"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    // Every export, twice over, on the same pooled instance: each instance
    // keeps the functions it was called on, and none may answer for another.
    for _ in 0..2 {
        for (function, body, expected) in [
            ("mul", "[6, 7]", "42"),
            ("sub32", "[2, 5]", "-3"),
            ("half", "[5]", "2.5"),
            ("add", "[1, 2]", "3.0"),
        ] {
            let reply = http
                .post(&gw.url(&format!("/api/exec/add/{function}")), body)
                .await;
            assert_eq!(
                (reply.status, reply.text().as_str()),
                (200, expected),
                "{function}"
            );
        }
    }

    for (body, why) in [
        ("[1]", "arity"),
        ("[\"a\", 1]", "type"),
        ("{", "syntax"),
        ("[1,2,3]", "arity"),
    ] {
        let reply = http.post(&gw.url("/api/exec/add/add"), body).await;
        assert_eq!(reply.status, 400, "{why}: {}", reply.text());
        assert_eq!(reply.error_kind(), "bad_arguments");
    }
    let reply = http.post(&gw.url("/api/exec/add/nope"), "[]").await;
    assert_eq!(
        (reply.status, reply.error_kind().as_str()),
        (404, "unknown_function")
    );
    let reply = http.post(&gw.url("/api/exec/ghost/add"), "[]").await;
    assert_eq!(
        (reply.status, reply.error_kind().as_str()),
        (404, "unknown_module")
    );
    let reply = http.get(&gw.url("/api/exec/add/add")).await;
    assert_eq!(reply.status, 405);
    // A module with only exports has no HTTP handler.
    let reply = http.get(&gw.url("/add")).await;
    assert_eq!(
        (reply.status, reply.error_kind().as_str()),
        (404, "no_handler")
    );
    let reply = http.get(&gw.url("/nowhere")).await;
    assert_eq!(
        (reply.status, reply.error_kind().as_str()),
        (404, "not_found")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_guest_and_configured_routes() {
    let modules = modules_with(&["hello-rs"]);
    let gw = Gateway::start(modules.path(), Some(CONFIG));
    let http = Http::new();
    let reply = http.get(&gw.url("/hello-rs?name=ferris")).await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "Hello, ferris from Rust")
    );
    let reply = http.post(&gw.url("/hello-rs/echo"), "1234").await;
    assert_eq!(reply.json()["body_length"], 4);
    let reply = http
        .post(&gw.url("/api/exec/hello-rs/reverse"), "abc")
        .await;
    assert_eq!(reply.text(), "cba");
    // The alias route reaches the same module (it answers 404 itself for a
    // path outside its mount, proving the request got there).
    let reply = http.get(&gw.url("/rs-alias")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.text(), "not found");
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_guest_counts_visits_in_its_own_kv_namespace() {
    let modules = modules_with(&["hello-rs"]);
    let data = tempfile::tempdir().unwrap();
    let state = format!(
        "[state]\ndata_dir = {:?}\n",
        data.path().display().to_string()
    );
    let config = format!("{state}[modules.hello-rs.grants]\nkv = true\n");
    let gw = Gateway::start(modules.path(), Some(&config));
    let http = Http::new();
    for expected in ["1", "2", "3"] {
        let reply = http.get(&gw.url("/hello-rs/visits/ada")).await;
        assert_eq!((reply.status, reply.text().as_str()), (200, expected));
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
    let reply = http.get(&gw.url("/hello-rs/visits/grace")).await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "1"));
    drop(gw);

    // Without the grant the host denies the call and the guest says so.
    let other = tempfile::tempdir().unwrap();
    let state = format!(
        "[state]\ndata_dir = {:?}\n",
        other.path().display().to_string()
    );
    let gw = Gateway::start(modules.path(), Some(&state));
    let reply = http.get(&gw.url("/hello-rs/visits/ada")).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("denied"), "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn command_module_runs_cgi_style() {
    let modules = modules_with(&["cgi-echo"]);
    let gw = Gateway::start(modules.path(), Some(CONFIG));
    let http = Http::new();

    let reply = http
        .send(
            "POST",
            &gw.url("/cgi-echo/a/b?q=1"),
            &[("x-test", "yes"), ("content-type", "text/plain")],
            b"body!".to_vec(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let echo = reply.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path_info"], "/a/b");
    assert_eq!(echo["query"], "q=1");
    assert_eq!(echo["content_type"], "text/plain");
    assert_eq!(echo["body"], "body!");
    assert_eq!(echo["x_test"], "yes");

    let reply = http.get(&gw.url("/cgi-echo?status=404")).await;
    assert_eq!(reply.status, 404, "the CGI Status header sets the status");

    let reply = http.get(&gw.url("/cgi-echo?exit=3")).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.error_kind(), "guest_error");
    assert!(
        reply.json()["message"].as_str().unwrap().contains("code 3"),
        "{}",
        reply.text()
    );

    let reply = http.post(&gw.url("/cgi-echo"), vec![b'x'; 2000]).await;
    assert_eq!(
        (reply.status, reply.error_kind().as_str()),
        (413, "body_too_large")
    );
    // Chunked bodies (no content-length) are cut at the limit too.
    let reply = http
        .send(
            "POST",
            &gw.url("/cgi-echo"),
            &[("transfer-encoding", "chunked")],
            vec![b'x'; 2000],
        )
        .await;
    assert_eq!(reply.status, 413);
}

#[tokio::test(flavor = "multi_thread")]
async fn cgi_environment_has_no_proxy_and_no_shadowed_headers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let modules = modules_with(&["cgi-echo"]);
    let gw = Gateway::start(modules.path(), Some(CONFIG));
    // Raw bytes, so that the underscore spelling comes first: a guest that
    // saw both would take the first.
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(
            b"GET /cgi-echo?env=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
              Proxy: http://evil:8080\r\n\
              X_Forwarded_For: 6.6.6.6\r\n\
              X-Forwarded-For: 10.0.0.1\r\n\
              X-Test: kept\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
        .await
        .expect("no answer in 30 s")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    let echo: serde_json::Value = serde_json::from_str(body).unwrap();
    let mut headers: Vec<&str> = echo["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("no headers: {echo}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    headers.sort_unstable();
    assert_eq!(
        headers,
        [
            "HTTP_CONNECTION=close",
            "HTTP_HOST=x",
            "HTTP_X_FORWARDED_FOR=10.0.0.1",
            "HTTP_X_TEST=kept",
        ],
        "{echo}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json2k_serves_a_2k_document_concurrently() {
    let modules = modules_with(&["json2k"]);
    let gw = Gateway::start(modules.path(), None);
    let http = Http::new();
    let first = http.get(&gw.url("/json2k")).await;
    assert_eq!(first.status, 200);
    let doc = first.json();
    assert_eq!(
        doc["items"].as_array().unwrap().len(),
        doc["count"].as_u64().unwrap() as usize
    );
    assert!(
        (1800..2600).contains(&first.body.len()),
        "document is {} bytes",
        first.body.len()
    );
    // Many requests in parallel share the instance pool and all get the
    // identical document.
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let http = http.clone();
            let url = gw.url("/json2k");
            tokio::spawn(async move { http.get(&url).await })
        })
        .collect();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, first.body);
    }
    // The benchmark's small handlers: a line of text and a POSTed batch.
    let text = http.get(&gw.url("/json2k/text")).await;
    assert_eq!((text.status, text.text().as_str()), (200, "ok\n"));
    let summary = http
        .post(
            &gw.url("/json2k/readings"),
            r#"{"device":"pump-7","readings":[20.5,19.5,21,23]}"#,
        )
        .await;
    assert_eq!(summary.status, 200);
    assert_eq!(
        summary.text(),
        "{\"device\":\"pump-7\",\"count\":4,\"min\":19.5,\"max\":23,\"mean\":21}\n"
    );
    let refused = http.post(&gw.url("/json2k/readings"), "{").await;
    assert_eq!(refused.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_cache_restart_does_not_recompile() {
    let modules = modules_with(&["hello", "hello-rs"]);
    let cache = tempfile::tempdir().unwrap();
    let cold = Gateway::start_with(modules.path(), None, cache.path());
    assert!(
        cold.logs().contains("compiling module"),
        "a cold cache compiles"
    );
    drop(cold);

    let started = Instant::now();
    let warm = Gateway::start_with(modules.path(), None, cache.path());
    let reply = Http::new().get(&warm.url("/hello")).await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 200);
    let logs = warm.logs();
    assert!(
        !logs.contains("compiling module"),
        "warm start recompiled:\n{logs}"
    );
    assert_eq!(logs.matches("\"from_cache\":true").count(), 2, "{logs}");
    // Generous bound for a loaded CI box; docs/benchmarks.md has the figure.
    assert!(
        elapsed < Duration::from_secs(5),
        "warm start took {elapsed:?}"
    );
}
