//! The admin API against a real gateway: HTTP with a real client, JSON-RPC
//! over the real Unix socket, `/metrics` through a Prometheus text-format
//! parser, and the `deploy` and `status` commands.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use serde_json::{Value, json};

use crate::util::{Gateway, Http, Reply, examples, modules_with, shanhai_bin};

const CORRUPT: &[u8] = b"\0asm\x01\0\0\0garbage";

fn example(name: &str) -> Vec<u8> {
    std::fs::read(examples().join(format!("{name}.wasm"))).unwrap()
}

fn module<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {list}"))
}

/// Files in `dir`, sorted: no temporary upload files may be left behind.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn modules_are_listed_uploaded_reloaded_and_deleted() {
    let modules = modules_with(&["hello", "add"]);
    let gw = Gateway::start(
        modules.path(),
        Some("[modules.hello]\nroutes = [\"/greet\"]\n"),
    );
    let http = Http::new();
    // The instance that validated hello at load is gone (min_instances 0);
    // a request makes the one the pool then holds.
    assert_eq!(http.get(&gw.url("/hello")).await.status, 200);

    let list = http.get(&gw.admin_url("/admin/modules")).await;
    assert_eq!(list.status, 200, "{}", list.text());
    assert_eq!(list.header("content-type"), Some("application/json"));
    let list = list.json();
    let hello = module(&list, "hello");
    assert_eq!(hello["state"], "serving");
    assert_eq!(hello["kind"], "reactor");
    let version = hello["version"].as_str().unwrap().to_owned();
    assert!(
        version.len() == 12 && version.bytes().all(|b| b.is_ascii_hexdigit()),
        "{version}"
    );
    assert_eq!(hello["routes"], json!(["/hello", "/hello/*", "/greet"]));
    assert!(hello["pool"]["idle"].as_u64().unwrap() >= 1, "{hello}");
    let pool = &hello["pool"];
    assert!(
        pool["live"].as_u64().unwrap() >= pool["idle"].as_u64().unwrap(),
        "{hello}"
    );
    assert!(pool["created"].as_u64().unwrap() >= 1, "{hello}");
    assert_eq!(hello["last_error"], Value::Null);
    assert_eq!(module(&list, "add")["kind"], "exports");

    let one = http.get(&gw.admin_url("/admin/modules/hello")).await;
    assert_eq!(one.json()["version"], version.as_str());
    let missing = http.get(&gw.admin_url("/admin/modules/nope")).await;
    assert_eq!(
        (missing.status, missing.error_kind()),
        (404, "unknown_module".into())
    );
    let bad = http.get(&gw.admin_url("/admin/modules/bad.name")).await;
    assert_eq!((bad.status, bad.error_kind()), (400, "bad_request".into()));
    let wrong = http.post(&gw.admin_url("/admin/modules"), "").await;
    assert_eq!(wrong.status, 405);

    // Upload a new module: it serves at once.
    let put = |name: &str, body: Vec<u8>| {
        let (http, url) = (
            http.clone(),
            gw.admin_url(&format!("/admin/modules/{name}")),
        );
        async move { http.send("PUT", &url, &[], body).await }
    };
    let added = put("hello-rs", example("hello-rs")).await;
    assert_eq!(added.status, 200, "{}", added.text());
    let added = added.json();
    assert_eq!(added["outcome"], "added");
    assert!(added["version"].as_str().is_some_and(|v| v.len() == 12));
    let reply = http.get(&gw.url("/hello-rs?name=admin")).await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "Hello, admin from Rust")
    );
    assert_eq!(
        files(modules.path()),
        ["add.wasm", "hello-rs.wasm", "hello.wasm"]
    );

    // A corrupt upload is refused with the load error; the old version
    // keeps answering, and the failure shows.
    let refused = put("hello", CORRUPT.to_vec()).await;
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert_eq!(refused.error_kind(), "load_failed");
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .contains("invalid module"),
        "{}",
        refused.text()
    );
    assert_eq!(http.get(&gw.url("/hello?name=x")).await.status, 200);
    let hello = http.get(&gw.admin_url("/admin/modules/hello")).await.json();
    assert_eq!(
        (&hello["state"], &hello["version"]),
        (&json!("serving"), &json!(version))
    );
    // The refused file is not left on disk for the next restart to load:
    // the previous file is back.
    assert_eq!(
        std::fs::read(modules.path().join("hello.wasm")).unwrap(),
        example("hello")
    );
    let reload = http
        .post(&gw.admin_url("/admin/modules/hello/reload"), "")
        .await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert_eq!(reload.json()["outcome"], "unchanged");
    let restored = put("hello", example("hello")).await;
    assert_eq!(restored.status, 200, "{}", restored.text());
    assert_eq!(restored.json()["version"], version.as_str());
    let hello = http.get(&gw.admin_url("/admin/modules/hello")).await.json();
    assert_eq!(hello["last_error"], Value::Null, "{hello}");
    let reload = http
        .post(&gw.admin_url("/admin/modules/add/reload"), "")
        .await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert_eq!(reload.json()["outcome"], "unchanged");
    let reload = http
        .post(&gw.admin_url("/admin/modules/nope/reload"), "")
        .await;
    assert_eq!(reload.status, 404);

    // Delete: unmounted, the file gone, and unknown afterwards.
    let url = gw.admin_url("/admin/modules/hello-rs");
    let deleted = http.send("DELETE", &url, &[], Vec::new()).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(http.get(&gw.url("/hello-rs")).await.status, 404);
    assert_eq!(http.get(&url).await.status, 404);
    assert_eq!(http.send("DELETE", &url, &[], Vec::new()).await.status, 404);
    assert_eq!(files(modules.path()), ["add.wasm", "hello.wasm"]);
    let list = http.get(&gw.admin_url("/admin/modules")).await.json();
    assert_eq!(list["modules"].as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_is_shown_with_secrets_redacted() {
    let modules = modules_with(&["hello"]);
    let gw = Gateway::start(
        modules.path(),
        Some(
            "[modules.hello]\ndeadline_ms = 1234\n[modules.hello.vars]\napi_key = \"sk-live-4242\"\ngreeting = \"Hi\"\n",
        ),
    );
    let reply = Http::new().get(&gw.admin_url("/admin/config")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(!reply.text().contains("sk-live-4242"), "{}", reply.text());
    let config = reply.json();
    let hello = &config["modules"]["hello"];
    assert_eq!(hello["vars"], json!({"api_key": "***", "greeting": "***"}));
    assert_eq!(hello["deadline_ms"], 1234);
    assert_eq!(
        config["server"]["modules_dir"],
        modules.path().display().to_string()
    );
    assert_eq!(config["admin"]["listen"], "127.0.0.1:0");
    assert_eq!(config["admin"]["token"], Value::Null);
}

const TOKEN: &str = "t0k3n-for-tests";

fn token_config(extra: &str) -> String {
    format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\nsocket = \"\"\n{extra}")
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_token_nothing_changes() {
    let modules = modules_with(&["hello"]);
    let gw = Gateway::start(modules.path(), Some(&token_config("")));
    let http = Http::new();
    let good = format!("Bearer {TOKEN}");
    let send = |method: &'static str, path: &str, token: Option<&str>, body: Vec<u8>| {
        let (http, url) = (http.clone(), gw.admin_url(path));
        let token = token.map(str::to_owned);
        async move {
            let headers: Vec<(&str, &str)> = token
                .as_deref()
                .map(|t| ("authorization", t))
                .into_iter()
                .collect();
            http.send(method, &url, &headers, body).await
        }
    };
    let unauthorized = |reply: &Reply| {
        assert_eq!(reply.status, 401, "{}", reply.text());
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{:?}",
            reply.headers
        );
        assert_eq!(reply.error_kind(), "unauthorized");
    };

    let before = send("GET", "/admin/modules", Some(&good), vec![]).await;
    assert_eq!(before.status, 200, "{}", before.text());
    for token in [
        None,
        Some("Bearer wrong"),
        Some("Bearer t0k3n-for-test"),
        Some(TOKEN),
    ] {
        for (method, path, body) in [
            ("GET", "/admin/modules", vec![]),
            ("GET", "/admin/config", vec![]),
            ("GET", "/metrics", vec![]),
            ("PUT", "/admin/modules/intruder", example("hello-rs")),
            ("PUT", "/admin/modules/hello", CORRUPT.to_vec()),
            ("DELETE", "/admin/modules/hello", vec![]),
            ("POST", "/admin/modules/hello/reload", vec![]),
            ("GET", "/admin/nothing-here", vec![]),
        ] {
            unauthorized(&send(method, path, token, body).await);
        }
    }
    // Nothing changed: the same list, no new file, hello still serving.
    let after = send("GET", "/admin/modules", Some(&good), vec![]).await;
    assert_eq!(before.json(), after.json());
    assert_eq!(files(modules.path()), ["hello.wasm"]);
    assert_eq!(http.get(&gw.url("/hello")).await.status, 200);
    assert_eq!(http.get(&gw.url("/intruder")).await.status, 404);

    // Health needs no token; everything else takes the right one.
    let health = http.get(&gw.admin_url("/healthz")).await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    let ready = http.get(&gw.admin_url("/readyz")).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["ready"], true);
    assert_eq!(ready.json()["modules"], json!(["hello"]));
    let metrics = send("GET", "/metrics", Some(&good), vec![]).await;
    assert_eq!(metrics.status, 200);
    let lower = send(
        "GET",
        "/admin/config",
        Some(&format!("bearer {TOKEN}")),
        vec![],
    )
    .await;
    assert_eq!(lower.status, 200);
    assert!(!lower.text().contains(TOKEN), "{}", lower.text());
    assert_eq!(lower.json()["admin"]["token"], "***");
    let put = send(
        "PUT",
        "/admin/modules/greeter",
        Some(&good),
        example("hello-rs"),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_can_come_from_the_environment() {
    let modules = modules_with(&["hello"]);
    let config =
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"ITEST_ADMIN_TOKEN\"\nsocket = \"\"\n";
    let gw = Gateway::start_env(
        modules.path(),
        Some(config),
        &[("ITEST_ADMIN_TOKEN", "from-env")],
    );
    let http = Http::new();
    let url = gw.admin_url("/admin/modules");
    assert_eq!(http.get(&url).await.status, 401);
    let reply = http
        .send("GET", &url, &[("authorization", "Bearer from-env")], vec![])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[test]
fn a_public_admin_listener_needs_a_token() {
    let modules = modules_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shanhai.toml");
    let serve = |text: &str| {
        std::fs::write(&config, text).unwrap();
        let mut cmd = Command::new(shanhai_bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--modules"])
            .arg(modules.path())
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .env_remove("SHANHAI_ADMIN_TOKEN");
        cmd
    };
    let output = serve("[admin]\nlisten = \"0.0.0.0:0\"\nsocket = \"\"\n")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started anyway: {stderr}");
    assert!(
        stderr.contains("admin.listen")
            && stderr.contains("loopback")
            && stderr.contains("admin.token"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening on"));

    // With a token it starts (and is stopped right away).
    let mut child = serve(&format!(
        "[admin]\nlisten = \"0.0.0.0:0\"\nsocket = \"\"\ntoken = \"{TOKEN}\"\n"
    ))
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("admin listening on http://0.0.0.0:"),
        "{line:?}"
    );
}

/// A JSON-RPC client over the admin socket, one line per message.
pub(crate) struct Rpc {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Rpc {
    pub(crate) fn connect(path: &Path) -> Self {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        Self {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
            next_id: 1,
        }
    }

    fn send_line(&mut self, line: &str) -> Value {
        writeln!(self.writer, "{line}").unwrap();
        let mut answer = String::new();
        self.reader.read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
    }

    /// Calls `method` and returns the whole response, checking its id.
    pub(crate) fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({"jsonrpc": "2.0", "method": method, "id": id});
        if !params.is_null() {
            request["params"] = params;
        }
        let response = self.send_line(&request.to_string());
        assert_eq!(response["jsonrpc"], "2.0", "{response}");
        assert_eq!(response["id"], id, "{response}");
        response
    }

    pub(crate) fn result(&mut self, method: &str, params: Value) -> Value {
        let response = self.call(method, params);
        assert!(response.get("error").is_none(), "{method}: {response}");
        response["result"].clone()
    }

    pub(crate) fn error_code(&mut self, method: &str, params: Value) -> (i64, String) {
        let response = self.call(method, params);
        let error = &response["error"];
        (
            error["code"]
                .as_i64()
                .unwrap_or_else(|| panic!("{response}")),
            error["message"].as_str().unwrap().to_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_rpc_over_the_unix_socket() {
    let modules = modules_with(&["hello"]);
    let gw = Gateway::start(
        modules.path(),
        Some("[modules.hello.vars]\nsecret = \"hunter2\"\n"),
    );
    let socket = gw.admin_socket.clone().unwrap();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let http = Http::new();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);

    let mut rpc = tokio::task::block_in_place(|| Rpc::connect(&socket));
    let (list, uploaded, reloaded, get) = tokio::task::block_in_place(|| {
        let list = rpc.result("modules.list", json!({}));
        let uploaded = rpc.result(
            "modules.upload",
            json!({"name": "hello-rs", "wasm_base64": b64(&example("hello-rs"))}),
        );
        let reloaded = rpc.result("modules.reload", json!({"name": "hello"}));
        let get = rpc.result("modules.get", json!({"name": "hello-rs"}));
        (list, uploaded, reloaded, get)
    });
    assert_eq!(module(&list, "hello")["kind"], "reactor");
    assert_eq!(list["modules"].as_array().unwrap().len(), 1, "{list}");
    let now = tokio::task::block_in_place(|| rpc.result("modules.list", Value::Null));
    assert_eq!(now, http.get(&gw.admin_url("/admin/modules")).await.json());
    assert_eq!(uploaded["outcome"], "added", "{uploaded}");
    assert_eq!(get["version"], uploaded["version"]);
    assert_eq!(reloaded["outcome"], "unchanged", "{reloaded}");
    let reply = http.get(&gw.url("/hello-rs?name=rpc")).await;
    assert_eq!(reply.text(), "Hello, rpc from Rust");

    tokio::task::block_in_place(|| {
        // A refused module: an application error with the load error.
        let (code, message) = rpc.error_code(
            "modules.upload",
            json!({"name": "hello-rs", "wasm_base64": b64(CORRUPT)}),
        );
        assert_eq!(code, -32000);
        assert!(message.contains("invalid module"), "{message}");
        assert_eq!(
            rpc.error_code("modules.get", json!({"name": "nope"})).0,
            -32001
        );
        assert_eq!(rpc.error_code("modules.get", json!({})).0, -32602);
        assert_eq!(
            rpc.error_code("modules.get", json!({"name": "a/b"})).0,
            -32602
        );
        assert_eq!(
            rpc.error_code("modules.upload", json!({"name": "x", "wasm_base64": "%%%"}))
                .0,
            -32602
        );
        assert_eq!(rpc.error_code("modules.frobnicate", json!({})).0, -32601);

        // Not JSON, not a request, a notification, a batch.
        let parse = rpc.send_line("{\"jsonrpc\": \"2.0\", \"method\": ");
        assert_eq!(
            (parse["error"]["code"].as_i64(), &parse["id"]),
            (Some(-32700), &Value::Null)
        );
        let invalid =
            rpc.send_line("{\"jsonrpc\": \"1.0\", \"method\": \"modules.list\", \"id\": 7}");
        assert_eq!(
            (invalid["error"]["code"].as_i64(), &invalid["id"]),
            (Some(-32600), &json!(7))
        );
        writeln!(
            rpc.writer,
            "{{\"jsonrpc\": \"2.0\", \"method\": \"modules.list\"}}"
        )
        .unwrap();
        let batch = rpc.send_line(
            &json!([
                {"jsonrpc": "2.0", "method": "config.get", "id": "a"},
                {"jsonrpc": "2.0", "method": "modules.get", "params": {"name": "hello"}, "id": "b"},
            ])
            .to_string(),
        );
        let batch = batch.as_array().unwrap();
        assert_eq!(batch.len(), 2, "{batch:?}");
        assert_eq!(batch[0]["id"], "a");
        assert_eq!(
            batch[0]["result"]["modules"]["hello"]["vars"]["secret"],
            "***"
        );
        assert!(!batch[0].to_string().contains("hunter2"));
        assert_eq!(batch[1]["result"]["name"], "hello");

        let deleted = rpc.result("modules.delete", json!({"name": "hello-rs"}));
        assert_eq!(deleted["outcome"], "removed");
    });
    assert_eq!(http.get(&gw.url("/hello-rs")).await.status, 404);
    assert_eq!(http.get(&gw.url("/hello")).await.status, 200);
}

/// Checks that every line of an exposition is a comment, a sample or blank
/// as the parser reads it (it skips what it cannot read), then parses it.
pub(crate) fn scrape(text: &str) -> prometheus_parse::Scrape {
    for line in text.lines() {
        let info = prometheus_parse::LineInfo::parse(line);
        assert!(
            !matches!(info, prometheus_parse::LineInfo::Ignored),
            "unreadable exposition line {line:?} in:\n{text}"
        );
    }
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The sum of a counter's samples whose labels include `labels`.
pub(crate) fn counter(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape(text)
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{metric} is not a counter: {other:?}"),
        })
        .sum()
}

fn requests_total(scrape: &prometheus_parse::Scrape, module: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "shanhai_requests_total" && s.labels.get("module") == Some(module))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("shanhai_requests_total is not a counter: {other:?}"),
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_count_requests() {
    let modules = modules_with(&["hello"]);
    let gw = Gateway::start(modules.path(), None);
    let http = Http::new();
    let metrics = gw.admin_url("/metrics");

    let first = http.get(&metrics).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(
        first
            .header("content-type")
            .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        first.headers
    );
    let before = scrape(&first.text());
    let loads: f64 = before
        .samples
        .iter()
        .filter(|s| {
            s.metric == "shanhai_module_reloads_total" && s.labels.get("result") == Some("added")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum();
    assert!(
        loads >= 1.0,
        "the initial load is not counted:\n{}",
        first.text()
    );

    for _ in 0..5 {
        assert_eq!(http.get(&gw.url("/hello?name=m")).await.status, 200);
    }
    let second = http.get(&metrics).await.text();
    let after = scrape(&second);
    let counted = requests_total(&after, "hello") - requests_total(&before, "hello");
    assert!(counted >= 5.0, "5 requests counted as {counted}:\n{second}");
    // A module's failures are counted under their own status; names no
    // module has get no label, however many a scan makes up.
    assert_eq!(
        http.get(&gw.url("/api/exec/hello/f")).await.status,
        405,
        "GET on an export"
    );
    for n in 0..20 {
        let made_up = http.get(&gw.url(&format!("/api/exec/scan{n}/f"))).await;
        assert_eq!(made_up.status, 405);
    }
    let third = http.get(&metrics).await.text();
    let by_status = scrape(&third);
    let refused: f64 = by_status
        .samples
        .iter()
        .filter(|s| {
            s.metric == "shanhai_requests_total"
                && s.labels.get("module") == Some("hello")
                && s.labels.get("status") == Some("405")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(refused, 1.0, "{third}");
    assert!(!third.contains("scan"), "made-up names labelled:\n{third}");
    assert!(
        second.contains("# TYPE shanhai_request_duration_seconds histogram")
            && second.contains("shanhai_request_duration_seconds_bucket{"),
        "request durations are not a histogram:\n{second}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_and_status_from_the_command_line() {
    let modules = modules_with(&["hello"]);
    let gw = Gateway::start(modules.path(), Some(&token_config("")));
    let admin = format!("http://{}", gw.admin.unwrap());
    let work = tempfile::tempdir().unwrap();
    let module = work.path().join("hello-rs.wasm");
    std::fs::write(&module, example("hello-rs")).unwrap();
    let broken = work.path().join("broken.wasm");
    std::fs::write(&broken, CORRUPT).unwrap();
    let run = |args: &[&str], token: Option<&str>| {
        let mut cmd = Command::new(shanhai_bin());
        cmd.args(args)
            .current_dir(work.path())
            .env_remove("SHANHAI_ADMIN_TOKEN");
        if let Some(token) = token {
            cmd.env("SHANHAI_ADMIN_TOKEN", token);
        }
        let output = cmd.output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let module_path = module.to_str().unwrap();

    // Without the token: refused, nothing deployed.
    let (ok, _, err) = run(&["deploy", module_path, "--to", &admin], None);
    assert!(!ok);
    assert!(err.contains("401") && err.contains("token"), "{err}");
    assert!(!modules.path().join("hello-rs.wasm").exists());

    // With it (from the environment): deployed and served; the signature
    // next to the file travels with it.
    std::fs::write(work.path().join("hello-rs.wasm.sig"), "ed25519:00:00\n").unwrap();
    let (ok, out, err) = run(&["deploy", module_path, "--to", &admin], Some(TOKEN));
    assert!(ok, "{err}");
    let version = out
        .trim()
        .strip_prefix("deployed hello-rs: version ")
        .and_then(|rest| rest.strip_suffix(" (added)"))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    assert_eq!(
        std::fs::read_to_string(modules.path().join("hello-rs.wasm.sig")).unwrap(),
        "ed25519:00:00\n"
    );
    let http = Http::new();
    let reply = http.get(&gw.url("/hello-rs?name=cli")).await;
    assert_eq!(reply.text(), "Hello, cli from Rust");

    // --name and --token; a refused module fails with the server's reason.
    let (ok, out, err) = run(
        &[
            "deploy",
            module_path,
            "--to",
            &admin,
            "--name",
            "other",
            "--token",
            TOKEN,
        ],
        None,
    );
    assert!(ok && out.contains(&version), "{out}{err}");
    let reply = http.post(&gw.url("/api/exec/other/reverse"), "abc").await;
    assert_eq!(reply.text(), "cba");
    let (ok, _, err) = run(
        &[
            "deploy",
            broken.to_str().unwrap(),
            "--to",
            &admin,
            "--name",
            "hello",
            "--token",
            TOKEN,
        ],
        None,
    );
    assert!(!ok);
    assert!(
        err.contains("422") && err.contains("invalid module"),
        "{err}"
    );

    let (ok, out, err) = run(&["status", "--admin", &admin], Some(TOKEN));
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("LAST ERROR"),
        "{out}"
    );
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("hello-rs")[1..3], [version.as_str(), "reactor"]);
    assert_eq!(row("other")[1], version);
    let hello = row("hello");
    assert_eq!(hello[2], "reactor");
    assert!(hello[4..].join(" ").contains("invalid module"), "{out}");

    let (ok, _, err) = run(&["status", "--admin", &admin], None);
    assert!(!ok && err.contains("401"), "{err}");
    for command in ["deploy", "status"] {
        let (ok, out, _) = run(&[command, "--help"], None);
        assert!(ok && out.contains("Usage: shanhai"), "{command}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_deploys_when_signatures_are_required() {
    let work = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let output = Command::new(shanhai_bin())
            .args(args)
            .current_dir(work.path())
            .env_remove("SHANHAI_ADMIN_TOKEN")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, _, err) = cli(&["keygen", "--out", "ops"]);
    assert!(ok, "{err}");
    let public = std::fs::read_to_string(work.path().join("ops.pub")).unwrap();
    let modules = modules_with(&[]);
    let gw = Gateway::start(
        modules.path(),
        Some(&format!(
            "[signing]\nrequire_signed = true\ntrusted_keys = [\"{}\"]\n",
            public.trim()
        )),
    );
    let admin = format!("http://{}", gw.admin.unwrap());
    std::fs::write(work.path().join("hello-rs.wasm"), example("hello-rs")).unwrap();
    std::fs::write(work.path().join("add.wasm"), example("add")).unwrap();
    let http = Http::new();

    let (ok, _, err) = cli(&["deploy", "hello-rs.wasm", "--to", &admin]);
    assert!(
        !ok && err.contains("422") && err.contains("unsigned"),
        "{err}"
    );
    assert_eq!(http.get(&gw.url("/hello-rs")).await.status, 404);

    let (ok, _, err) = cli(&["sign", "hello-rs.wasm", "--key", "ops.key"]);
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&["deploy", "hello-rs.wasm", "--to", &admin]);
    assert!(ok, "{out}{err}");
    let reply = http.get(&gw.url("/hello-rs?name=signed")).await;
    assert_eq!(reply.text(), "Hello, signed from Rust");

    // The signature names hello-rs: the same files deployed as another
    // module (which would get that module's grants) are refused.
    let (ok, _, err) = cli(&[
        "deploy",
        "hello-rs.wasm",
        "--to",
        &admin,
        "--name",
        "billing",
    ]);
    assert!(
        !ok && err.contains("422") && err.contains("for module `hello-rs`, not `billing`"),
        "{err}"
    );
    assert!(!modules.path().join("billing.wasm").exists());

    // Another module's signature does not fit these bytes: refused, and the
    // signed version keeps serving.
    let (ok, _, err) = cli(&["sign", "add.wasm", "--key", "ops.key"]);
    assert!(ok, "{err}");
    std::fs::copy(
        work.path().join("add.wasm.sig"),
        work.path().join("hello-rs.wasm.sig"),
    )
    .unwrap();
    let (ok, _, err) = cli(&["deploy", "hello-rs.wasm", "--to", &admin]);
    assert!(!ok && err.contains("bad signature"), "{err}");
    let reply = http.get(&gw.url("/hello-rs?name=still")).await;
    assert_eq!(reply.text(), "Hello, still from Rust");
}

#[test]
fn the_socket_is_removed_on_shutdown_and_a_stale_one_replaced() {
    let modules = modules_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/admin.sock");
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nsocket = {:?}\ntoken_file = \"\"\n",
        socket.display().to_string()
    );
    // A socket file nobody listens on, left by a killed gateway.
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());

    let mut gw = Gateway::start(modules.path(), Some(&config));
    let mut rpc = Rpc::connect(&socket);
    assert_eq!(
        rpc.result("modules.list", Value::Null),
        json!({"modules": [], "loading": []})
    );
    // A second gateway cannot take a socket that is in use.
    let output = Command::new(shanhai_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--modules"])
        .arg(modules.path())
        .arg("--config")
        .arg({
            let path = dir.path().join("second.toml");
            std::fs::write(&path, &config).unwrap();
            path
        })
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("admin.socket"),
        "{stderr}"
    );
    drop(rpc);

    gw.terminate();
    let status = gw
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("gateway did not exit");
    assert!(status.success());
    assert!(!socket.exists(), "socket left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_generated_at_first_start_and_the_cli_reads_it() {
    let work = tempfile::tempdir().unwrap();
    let token_file = work.path().join(".shanhai/admin.token");
    let modules = modules_with(&["hello"]);
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nsocket = \"\"\ntoken_file = {:?}\n",
        token_file.display().to_string()
    );
    let gw = Gateway::start(modules.path(), Some(&config));
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(token.len(), 64, "{token}");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let http = Http::new();
    let url = gw.admin_url("/admin/modules");
    let reply = http.get(&url).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    let bearer = format!("Bearer {token}");
    let reply = http
        .send("GET", &url, &[("authorization", &bearer)], vec![])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // The CLI, run where the gateway keeps its state, finds the token.
    let admin = format!("http://{}", gw.admin.unwrap());
    let status = |dir: &Path| {
        Command::new(shanhai_bin())
            .args(["status", "--admin", &admin])
            .current_dir(dir)
            .env_remove("SHANHAI_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    let output = status(work.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("hello"), "{stdout}");
    // Elsewhere it has none, and says where it looked.
    let elsewhere = tempfile::tempdir().unwrap();
    let output = status(elsewhere.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("401") && stderr.contains("--token-file"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rebound_hosts_and_foreign_origins_are_refused() {
    let modules = modules_with(&["hello"]);
    let gw = Gateway::start(
        modules.path(),
        Some(&token_config("allowed_hosts = [\"gw.lan\"]\n")),
    );
    let http = Http::new();
    let bearer = format!("Bearer {TOKEN}");
    let port = gw.admin.unwrap().port();
    let url = gw.admin_url("/admin/modules");
    let send = |headers: Vec<(&'static str, String)>| {
        let http = &http;
        let url = url.clone();
        let bearer = bearer.clone();
        async move {
            let mut all: Vec<(&str, &str)> = vec![("authorization", bearer.as_str())];
            all.extend(headers.iter().map(|(n, v)| (*n, v.as_str())));
            http.send(
                "DELETE",
                &url.replace("/admin/modules", "/admin/modules/hello"),
                &all,
                vec![],
            )
            .await
        }
    };
    // A page on evil.example that rebinds its name to 127.0.0.1: the
    // browser sends its own name as Host, and even the right token (a page
    // can't know it, but a proxy might add it) does not help.
    for (headers, kind) in [
        (
            vec![("host", format!("evil.example:{port}"))],
            "forbidden_host",
        ),
        (
            vec![
                ("host", format!("127.0.0.1:{port}")),
                ("origin", "http://evil.example".to_owned()),
            ],
            "forbidden_origin",
        ),
        (
            vec![
                ("host", format!("127.0.0.1:{port}")),
                ("sec-fetch-site", "cross-site".to_owned()),
            ],
            "forbidden_origin",
        ),
    ] {
        let reply = send(headers.clone()).await;
        assert_eq!(reply.status, 403, "{headers:?}: {}", reply.text());
        assert_eq!(reply.error_kind(), kind, "{}", reply.text());
    }
    let listed = http
        .send("GET", &url, &[("authorization", &bearer)], vec![])
        .await
        .json();
    assert!(listed.to_string().contains("\"hello\""), "{listed}");
    assert!(gw.logs().contains("admin request refused"));

    // The listener's own address, localhost, configured names and a
    // same-origin page (the dashboard) pass.
    for headers in [
        vec![("host", format!("localhost:{port}"))],
        vec![("host", format!("gw.lan:{port}"))],
        vec![
            ("host", format!("127.0.0.1:{port}")),
            ("origin", format!("http://127.0.0.1:{port}")),
        ],
    ] {
        let mut all: Vec<(&str, &str)> = vec![("authorization", bearer.as_str())];
        all.extend(headers.iter().map(|(n, v)| (*n, v.as_str())));
        let reply = http.send("GET", &url, &all, vec![]).await;
        assert_eq!(reply.status, 200, "{headers:?}: {}", reply.text());
    }
}

/// Found by schemathesis (scripts/schemathesis.sh): a 405 without the
/// `Allow` header RFC 9110 requires.
#[tokio::test(flavor = "multi_thread")]
async fn a_method_a_resource_does_not_take_is_refused_with_allow() {
    let modules = modules_with(&["hello"]);
    let gw = Gateway::start(modules.path(), None);
    let http = Http::new();
    for (method, path, allow) in [
        ("TRACE", "/healthz", "GET"),
        ("POST", "/metrics", "GET"),
        ("POST", "/admin/modules/hello", "GET, PUT, DELETE"),
        ("PATCH", "/admin/modules/hello/canary", "GET, PUT, DELETE"),
        ("GET", "/admin/modules/hello/reload", "POST"),
        ("DELETE", "/admin/modules/hello/canary/promote", "POST"),
    ] {
        let reply = http
            .send(method, &gw.admin_url(path), &[], Vec::new())
            .await;
        assert_eq!(
            (reply.status, reply.error_kind()),
            (405, "method_not_allowed".into()),
            "{method} {path}"
        );
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
    }
    // Nothing was changed by the refused requests.
    let hello = http.get(&gw.url("/hello")).await;
    assert_eq!(hello.status, 200, "{}", hello.text());
}
