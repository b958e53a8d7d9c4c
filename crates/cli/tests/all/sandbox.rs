//! What a module must not be able to do to its host, against a real gateway
//! and real Go guests: reach loopback or private addresses through an
//! `http` grant on a name (the gateway's own admin API among them), make
//! the host allocate far past its memory cap or fill the disk through
//! SQLite, change process-wide SQLite settings, flood the log, and stall
//! every other request with a GPIO call that blocks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{Gateway, Http, Launch, Reply, fixture, modules_with};

fn stateprobe() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| fixture("stateprobe", "stateprobe", ""))
}

fn logflood() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| fixture("logflood", "logflood", ""))
}

/// A modules folder holding `module` under each of `names`.
fn modules(module: &Path, names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::copy(module, dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    dir
}

/// Config text with the data folder and `rest`.
fn config(data: &Path, rest: &str) -> String {
    format!(
        "[state]\ndata_dir = {:?}\n{rest}\n",
        data.display().to_string()
    )
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asks stateprobe module `module` to fetch `url`.
async fn fetch(http: &Http, gw: &Gateway, module: &str, url: &str) -> Reply {
    http.post(
        &gw.url(&format!("/{module}/fetch?url={}", urlencode(url))),
        "",
    )
    .await
}

/// Asks stateprobe module `module` to run `sql` on its own database.
async fn sql(http: &Http, gw: &Gateway, module: &str, sql: &str, args: Value) -> Reply {
    let body = json!({"sql": sql, "args": args, "query": true}).to_string();
    http.post(&gw.url(&format!("/{module}/sql")), body).await
}

/// The gateway's log lines, parsed (`--log-format json`).
fn log_lines(gw: &Gateway) -> Vec<Value> {
    gw.logs()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn message(line: &Value) -> &str {
    line["message"].as_str().unwrap_or_default()
}

/// Polls the log until `found` holds for some line, for up to 30 s.
async fn wait_for_log(gw: &Gateway, found: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(line) = log_lines(gw).into_iter().find(|line| found(line)) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no such log line; logs:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port nothing listens on now, for a listener the test configures
/// before the gateway starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A local HTTP server answering every request with `hello from PATH`.
async fn local_server() -> SocketAddr {
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service =
                    service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                        let body = format!("hello from {}", request.uri().path());
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            bytes::Bytes::from(body),
                        )))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_grant_cannot_reach_the_gateways_own_admin_api() {
    let admin_port = free_port();
    let dir = modules(stateprobe(), &["anyport", "adminport"]);
    let data = tempfile::tempdir().unwrap();
    // `localhost` stands for any name whose DNS a module's author controls.
    let text = config(
        data.path(),
        &format!(
            "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\nsocket = {:?}\ntoken_file = \"\"\n\
             [modules.anyport.grants]\nhttp = [\"localhost\"]\n\
             [modules.adminport.grants]\nhttp = [\"localhost:{admin_port}\"]\n",
            data.path().join("admin.sock").display().to_string()
        ),
    );
    let gw = Gateway::start(dir.path(), Some(&text));
    let http = Http::new();
    let admin = format!("http://localhost:{admin_port}/admin/modules");
    assert_eq!(
        http.get(&gw.admin_url("/admin/modules")).await.status,
        200,
        "the admin API is up"
    );

    // A name without a port is granted ports 80 and 443 only.
    let reply = fetch(&http, &gw, "anyport", &admin).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(
        reply
            .text()
            .contains(&format!("localhost:{admin_port} is not granted")),
        "{}",
        reply.text()
    );

    // With the port granted, the name still cannot reach a loopback address.
    let reply = fetch(&http, &gw, "adminport", &admin).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    let error = reply.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("loopback"), "{error}");
    assert!(
        error.contains("127.0.0.1") || error.contains("::1"),
        "{error}"
    );
    // Nor through the address itself, which is not granted.
    let reply = fetch(
        &http,
        &gw,
        "adminport",
        &format!("http://127.0.0.1:{admin_port}/admin/modules"),
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.text());

    // The refusal is logged with the module and the address.
    let line = wait_for_log(&gw, |line| {
        line["module"] == "adminport" && message(line).contains("loopback")
    })
    .await;
    let text = line.to_string();
    assert!(text.contains("127.0.0.1") || text.contains("::1"), "{text}");
    // And the gateway carries on.
    assert_eq!(http.get(&gw.url("/anyport/config?key=x")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_grant_reaches_a_local_server_a_name_grant_does_not() {
    let server = local_server().await;
    let port = server.port();
    let dir = modules(
        stateprobe(),
        &["byaddress", "byname", "bynameandaddress", "noport"],
    );
    let data = tempfile::tempdir().unwrap();
    let text = config(
        data.path(),
        &format!(
            "[modules.byaddress.grants]\nhttp = [\"127.0.0.1:{port}\"]\n\
             [modules.byname.grants]\nhttp = [\"localhost:*\"]\n\
             [modules.bynameandaddress.grants]\nhttp = [\"localhost:{port}\", \"127.0.0.1:{port}\"]\n\
             [modules.noport.grants]\nhttp = [\"127.0.0.1\"]\n"
        ),
    );
    let gw = Gateway::start(dir.path(), Some(&text));
    let http = Http::new();

    // The address named in the grant, as docs/state.md shows it.
    let reply = fetch(
        &http,
        &gw,
        "byaddress",
        &format!("http://127.0.0.1:{port}/x"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["body"], "hello from /x");

    // `host:*` grants every port of a name, but not its loopback address.
    let reply = fetch(&http, &gw, "byname", &format!("http://localhost:{port}/x")).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("loopback"), "{}", reply.text());

    // A name may reach an address its grant also names literally (the
    // server listens on 127.0.0.1 only; ::1, if localhost has it, is not
    // granted and not tried).
    let reply = fetch(
        &http,
        &gw,
        "bynameandaddress",
        &format!("http://localhost:{port}/y"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["body"], "hello from /y");

    // An address without a port is granted ports 80 and 443 only.
    let reply = fetch(&http, &gw, "noport", &format!("http://127.0.0.1:{port}/x")).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("not granted"), "{}", reply.text());
}

/// The pid of the gateway started with `SANDBOX_MARKER=marker` in its
/// environment.
fn gateway_pid(marker: &str) -> u32 {
    let wanted = format!("SANDBOX_MARKER={marker}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let is_gateway = environ
            .split(|&b| b == 0)
            .any(|var| var == wanted.as_bytes());
        let is_shanhai = std::fs::read_link(entry.path().join("exe"))
            .is_ok_and(|exe| exe.file_name() == Path::new(crate::util::shanhai_bin()).file_name());
        if is_gateway && is_shanhai {
            return pid;
        }
    }
    panic!("no gateway process with {wanted}");
}

/// The peak resident memory of process `pid`, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    crate::util::proc_status_bytes(pid, "VmHWM")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_sql_value_fails_before_the_host_allocates_it() {
    let dir = modules(stateprobe(), &["probe"]);
    let data = tempfile::tempdir().unwrap();
    let text = config(
        data.path(),
        "[modules.probe]\nmax_memory_mb = 64\n[modules.probe.grants]\nsqlite = true\n",
    );
    let marker = format!("{}-{:?}", std::process::id(), Instant::now());
    let gw = Gateway::launch(Launch {
        env: &[("SANDBOX_MARKER", &marker)],
        ..Launch::new(dir.path(), Some(&text))
    });
    let pid = gateway_pid(&marker);
    let http = Http::new();
    let before = peak_rss(pid);

    for query in ["SELECT zeroblob(?1)", "SELECT length(randomblob(?1))"] {
        let reply = sql(&http, &gw, "probe", query, json!([900_000_000])).await;
        assert_eq!(reply.status, 413, "{query}: {}", reply.text());
        let error = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains("too big"), "{error}");
        assert!(error.contains("sqlite.max_value_bytes"), "{error}");
    }
    let peak = peak_rss(pid);
    assert!(
        peak < 400 << 20,
        "the gateway's peak RSS went from {} MiB to {} MiB",
        before >> 20,
        peak >> 20
    );
    // The database and the gateway carry on.
    let reply = sql(
        &http,
        &gw,
        "probe",
        "SELECT length(zeroblob(?1))",
        json!([1000]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["rows"], json!([[1000]]));
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_pragmas_outside_the_allowlist_are_refused() {
    let dir = modules(stateprobe(), &["probe"]);
    let data = tempfile::tempdir().unwrap();
    let text = config(data.path(), "[modules.probe.grants]\nsqlite = true\n");
    let gw = Gateway::start(dir.path(), Some(&text));
    let http = Http::new();
    let reply = sql(&http, &gw, "probe", "CREATE TABLE t (x)", json!([])).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let outside = data.path().join("elsewhere");
    std::fs::create_dir(&outside).unwrap();
    for pragma in [
        format!("PRAGMA temp_store_directory = '{}'", outside.display()),
        format!("PRAGMA data_store_directory = '{}'", outside.display()),
        "PRAGMA journal_mode = OFF".to_owned(),
        "PRAGMA synchronous = OFF".to_owned(),
        "PRAGMA writable_schema = ON".to_owned(),
        "PRAGMA max_page_count = 2147483647".to_owned(),
        "PRAGMA mmap_size = 1073741824".to_owned(),
        "PRAGMA cache_size = -1000000".to_owned(),
        "PRAGMA hard_heap_limit = 0".to_owned(),
        "PRAGMA locking_mode = EXCLUSIVE".to_owned(),
        "PRAGMA database_list".to_owned(),
    ] {
        let reply = sql(&http, &gw, "probe", &pragma, json!([])).await;
        assert_eq!(reply.status, 400, "{pragma}: {}", reply.text());
        let error = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(
            error.contains("PRAGMA") && error.contains("not allowed"),
            "{pragma}: {error}"
        );
    }
    // Nothing changed: still WAL, still within the size limit.
    let reply = sql(&http, &gw, "probe", "PRAGMA journal_mode", json!([])).await;
    assert_eq!(reply.json()["rows"], json!([["wal"]]), "{}", reply.text());
    let reply = sql(&http, &gw, "probe", "PRAGMA max_page_count", json!([])).await;
    assert_eq!(reply.json()["rows"], json!([[16384]]), "{}", reply.text());
    // The PRAGMAs a module needs still work.
    let reply = sql(&http, &gw, "probe", "PRAGMA user_version = 7", json!([])).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    for (pragma, rows) in [
        ("PRAGMA user_version", json!([[7]])),
        ("SELECT name FROM pragma_table_info('t')", json!([["x"]])),
        ("PRAGMA integrity_check", json!([["ok"]])),
    ] {
        let reply = sql(&http, &gw, "probe", pragma, json!([])).await;
        assert_eq!(reply.status, 200, "{pragma}: {}", reply.text());
        assert_eq!(reply.json()["rows"], rows, "{pragma}");
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_cannot_grow_past_its_size_limit() {
    let dir = modules(stateprobe(), &["probe"]);
    let data = tempfile::tempdir().unwrap();
    let text = config(data.path(), "[modules.probe.grants]\nsqlite = true\n");
    let gw = Gateway::start(dir.path(), Some(&text));
    let http = Http::new();
    let reply = sql(
        &http,
        &gw,
        "probe",
        "CREATE TABLE blobs (b BLOB)",
        json!([]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // 4 MB at a time against the default limit of 64 MiB.
    let mut inserted = 0;
    let refused = loop {
        let reply = sql(
            &http,
            &gw,
            "probe",
            "INSERT INTO blobs VALUES (zeroblob(4000000))",
            json!([]),
        )
        .await;
        if reply.status != 200 {
            break reply;
        }
        inserted += 1;
        assert!(inserted < 40, "160 MB went into a 64 MiB database");
    };
    assert!(inserted >= 14, "refused after {inserted} inserts");
    assert_eq!(refused.status, 413, "{}", refused.text());
    let error = refused.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("sqlite.max_database_bytes"), "{error}");

    let file = data.path().join("sqlite/modules/probe.sqlite3");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size <= 64 << 20, "{} is {size} bytes", file.display());
    // What fits still works, and so does the gateway.
    let reply = sql(&http, &gw, "probe", "SELECT count(*) FROM blobs", json!([])).await;
    assert_eq!(
        reply.json()["rows"],
        json!([[inserted]]),
        "{}",
        reply.text()
    );
    let reply = sql(
        &http,
        &gw,
        "probe",
        "DELETE FROM blobs WHERE rowid = 1",
        json!([]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = sql(
        &http,
        &gw,
        "probe",
        "INSERT INTO blobs VALUES (zeroblob(1000))",
        json!([]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// The lines module `module` logged whose message contains `text`.
fn guest_lines(lines: &[Value], module: &str, text: &str) -> usize {
    lines
        .iter()
        .filter(|line| line["module"] == module && message(line).contains(text))
        .count()
}

/// The dropped counts of the summary lines about `module`.
fn dropped_in_summaries(lines: &[Value], module: &str) -> u64 {
    let prefix = format!("module {module}: dropped ");
    lines
        .iter()
        .filter_map(|line| message(line).strip_prefix(prefix.as_str()))
        .map(|rest| {
            rest.split(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("a summary without a count: {rest}"))
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_log_lines_are_rate_limited_per_module() {
    let dir = modules(logflood(), &["flood"]);
    let gw = Gateway::start(dir.path(), None);
    let http = Http::new();
    const LINES: u64 = 100_000;
    // The defaults: 100 lines a second, bursts of 200.
    let (rate, burst) = (100.0, 200.0);

    let mut logged = 0;
    for via in ["log", "stdout"] {
        let started = Instant::now();
        let reply = http
            .get(&gw.url(&format!("/flood?n={LINES}&via={via}&tag={via}")))
            .await;
        let took = started.elapsed().as_secs_f64();
        assert_eq!(reply.status, 200, "{}", reply.text());
        let lines = guest_lines(&log_lines(&gw), "flood", &format!("flood {via} line "));
        let most = burst + rate * (took + 1.0);
        assert!(
            (lines as f64) <= most,
            "{lines} lines through {via} in {took:.1} s; at most {most} expected"
        );
        // The bucket starts full, so the first flood gets the whole burst
        // through; the second shares the bucket and gets what refilled.
        let least = if via == "log" { burst as usize } else { 1 };
        assert!(lines >= least, "only {lines} lines through {via}");
        logged += lines as u64;
    }
    // Every dropped line is counted in a summary line and in the metrics.
    let dropped = 2 * LINES - logged;
    let deadline = Instant::now() + Duration::from_secs(30);
    while dropped_in_summaries(&log_lines(&gw), "flood") < dropped {
        assert!(
            Instant::now() < deadline,
            "summaries count {} of {dropped} dropped lines",
            dropped_in_summaries(&log_lines(&gw), "flood")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dropped_in_summaries(&log_lines(&gw), "flood"), dropped);
    let metrics = gw.metrics().await;
    let scrape = crate::admin::scrape(&metrics);
    let counted: f64 = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "shanhai_log_lines_dropped_total" && s.labels.get("module") == Some("flood")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(counted as u64, dropped, "{metrics}");
    // The module still serves.
    let reply = http.get(&gw.url("/flood?n=1&tag=after")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// A sysfs GPIO tree whose pin 17 is an input whose `value` is a FIFO: a
/// read blocks until the test writes to it.
fn fifo_gpio_tree() -> tempfile::TempDir {
    let sysfs = tempfile::tempdir().unwrap();
    let root = sysfs.path();
    std::fs::write(root.join("export"), "").unwrap();
    let pin = root.join("gpio17");
    std::fs::create_dir(&pin).unwrap();
    std::fs::write(pin.join("direction"), "in").unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(pin.join("value"))
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo failed");
    sysfs
}

/// Opens the FIFO's write end once a reader holds it open, for up to 30 s.
async fn fifo_writer(fifo: &Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Non-blocking, an open for writing fails (ENXIO) until there is a
        // reader: the gateway is then blocked reading the pin.
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
        {
            Ok(file) => return file,
            Err(err) if err.raw_os_error() == Some(libc::ENXIO) => {}
            Err(err) => panic!("opening {}: {err}", fifo.display()),
        }
        assert!(Instant::now() < deadline, "the gateway never read the pin");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_gpio_call_does_not_stall_other_requests() {
    let sysfs = fifo_gpio_tree();
    let dir = modules(stateprobe(), &["probe"]);
    let data = tempfile::tempdir().unwrap();
    let text = config(
        data.path(),
        &format!(
            "[modules.probe]\ndeadline_ms = 60000\n[modules.probe.grants]\ngpio_in = [17]\n\
             [gpio]\nsysfs_root = {:?}\n",
            sysfs.path().display().to_string()
        ),
    );
    // One worker thread: a host call that blocks it stalls everything.
    let gw = Gateway::launch(Launch {
        env: &[("TOKIO_WORKER_THREADS", "1")],
        ..Launch::new(dir.path(), Some(&text))
    });
    let http = Http::new();
    let read = tokio::spawn({
        let (http, url) = (http.clone(), gw.url("/probe/gpio?pin=17"));
        async move { http.get(&url).await }
    });
    let mut writer = fifo_writer(&sysfs.path().join("gpio17/value")).await;

    // The read is blocked in the host; another request is served meanwhile.
    let other = tokio::time::timeout(
        Duration::from_secs(20),
        http.get(&gw.url("/probe/config?key=x")),
    )
    .await
    .expect("a request stalled behind a blocked GPIO read");
    assert_eq!(other.status, 404, "{}", other.text());
    assert!(!read.is_finished());

    std::io::Write::write_all(&mut writer, b"1\n").unwrap();
    drop(writer);
    let reply = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the GPIO read never finished")
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["high"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gpio_call_that_never_returns_ends_with_the_deadline() {
    let sysfs = fifo_gpio_tree();
    let dir = modules(stateprobe(), &["probe"]);
    let data = tempfile::tempdir().unwrap();
    let text = config(
        data.path(),
        &format!(
            "[modules.probe]\ndeadline_ms = 1000\n[modules.probe.grants]\ngpio_in = [17]\n\
             [gpio]\nsysfs_root = {:?}\n",
            sysfs.path().display().to_string()
        ),
    );
    let gw = Gateway::launch(Launch {
        env: &[("TOKIO_WORKER_THREADS", "1")],
        ..Launch::new(dir.path(), Some(&text))
    });
    let http = Http::new();
    // Nothing ever writes the pin.
    let reply = tokio::time::timeout(
        Duration::from_secs(20),
        http.get(&gw.url("/probe/gpio?pin=17")),
    )
    .await
    .expect("a GPIO read outlived its deadline by far");
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(reply.error_kind(), "timeout");
    let other = http.get(&gw.url("/probe/config?key=x")).await;
    assert_eq!(other.status, 404, "{}", other.text());
    // The abandoned read still blocks a thread; it does not keep the
    // gateway from exiting.
    let mut gw = gw;
    gw.terminate();
    let exit = gw.wait_exit(Duration::from_secs(30));
    assert!(exit.is_some_and(|status| status.success()), "{exit:?}");
}

/// `[modules.NAME] hosts`: a module served on a host of its own answers
/// every path there, is not reachable on the shared origin, and nothing
/// else is served on its host, so its pages and another module's never
/// share a browser origin.
#[tokio::test(flavor = "multi_thread")]
async fn a_module_with_hosts_has_an_origin_of_its_own() {
    let modules = modules_with(&["hello", "add"]);
    let gw = Gateway::start(
        modules.path(),
        Some("[modules.hello]\nhosts = [\"hello.example\", \"greet.example\"]\n"),
    );
    let http = Http::new();
    let send = |method: &'static str, path: &str, host: &str, body: &str| {
        let (http, url, host, body) =
            (http.clone(), gw.url(path), host.to_owned(), body.to_owned());
        async move {
            http.send(method, &url, &[("host", &host)], body.into())
                .await
        }
    };
    let get = |path: &str, host: &str| send("GET", path, host, "");

    // On its hosts, whatever the port, case or trailing dot: hello.
    for host in ["hello.example", "Hello.Example:8080", "greet.example."] {
        let reply = get("/hello?name=edge", host).await;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "Hello, edge"),
            "{host}"
        );
    }
    // Every path there goes to hello: /add is hello's own 404 (Go's
    // net/http text), not the add module and not the gateway's JSON.
    let reply = get("/add", "hello.example").await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(reply.text(), "404 page not found\n");

    // On the shared origin hello is not served; add is.
    let shared = gw.addr.to_string();
    let reply = get("/hello?name=edge", &shared).await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(reply.error_kind(), "not_found");
    let reply = http.post(&gw.url("/api/exec/add/add"), "[2, 3]").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "5.0"));

    // Exports follow the same origins.
    let exec = |function: &str, host: &str, body: &str| {
        send("POST", &format!("/api/exec/{function}"), host, body)
    };
    let reply = exec("hello/upper", "hello.example", "edge").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "EDGE"));
    let reply = exec("hello/upper", &shared, "edge").await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert!(
        reply
            .text()
            .contains("served only on its own hosts (modules.hello.hosts)"),
        "{}",
        reply.text()
    );
    let reply = exec("add/add", "hello.example", "[2, 3]").await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert!(
        reply
            .text()
            .contains("hello.example serves only module `hello`"),
        "{}",
        reply.text()
    );

    // The admin API lists where it is served.
    let modules = http.get(&gw.admin_url("/admin/modules")).await.json();
    let hello = modules["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "hello")
        .unwrap_or_else(|| panic!("{modules}"));
    assert_eq!(
        hello["routes"],
        serde_json::json!(["hello.example/*", "greet.example/*"])
    );
}

#[test]
fn hosts_are_checked_at_start() {
    let modules = modules_with(&[]);
    for (config, expected) in [
        (
            "[modules.a]\nhosts = [\"app.example\"]\n[modules.b]\nhosts = [\"app.example\"]\n",
            "modules.b.hosts: `app.example` is already served by module `a`",
        ),
        (
            "[modules.a]\nhosts = [\"App.example:8080\"]\n",
            "modules.a.hosts: `App.example:8080` is not a host name",
        ),
    ] {
        let stderr = crate::util::serve_refused(modules.path(), config);
        assert!(stderr.contains(expected), "{stderr}");
    }
}
