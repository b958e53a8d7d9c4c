//! State and host capabilities against a real gateway: the `stateprobe`
//! fixture drives KV (embedded redb and a real `redis-server`), SQLite,
//! outbound HTTP (to a local server), GPIO (a temporary sysfs tree),
//! variables and secrets through the real Go SDK; every capability is
//! also tried without its grant.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{Gateway, Http, Reply, fixture};

fn stateprobe() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| fixture("stateprobe", "stateprobe", ""))
}

/// A modules folder holding the probe under each of `names`.
fn probes(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::copy(stateprobe(), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    dir
}

/// A real `redis-server` on a free port, killed on drop.
pub struct Redis {
    child: Child,
    pub url: String,
}

impl Redis {
    pub fn start() -> Self {
        // A port found free can be taken before the server binds it (by
        // another test's server, say): ours then exits, and another port is
        // tried. Until it does, the other server may answer on the port, so
        // only an answer from our own process counts.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server is not installed (apt-get install redis-server); the Redis tests need it");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                if redis_served_by(port, child.id()) {
                    return Self {
                        child,
                        url: format!("redis://127.0.0.1:{port}/0"),
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start answering on 127.0.0.1 in five tries");
    }
}

/// Whether the Redis server answering on `port` is process `pid`.
fn redis_served_by(port: u16, pid: u32) -> bool {
    use std::io::{BufRead, Read, Write};
    let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reader = std::io::BufReader::new(stream);
    if reader.get_mut().write_all(b"INFO server\r\n").is_err() {
        return false;
    }
    // A bulk string: `$LEN\r\n`, then LEN bytes of `key:value` lines.
    let mut header = String::new();
    let len = match reader.read_line(&mut header) {
        Ok(_) => header
            .trim_end()
            .strip_prefix('$')
            .and_then(|n| n.parse().ok()),
        Err(_) => None,
    };
    let mut info = vec![0; len.unwrap_or(0)];
    len.is_some()
        && reader.read_exact(&mut info).is_ok()
        && String::from_utf8_lossy(&info)
            .lines()
            .any(|line| line == format!("process_id:{pid}"))
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Config text: the data folder, the KV backend, and per-module grants.
fn config(data: &Path, kv: &str, modules: &str) -> String {
    format!(
        "[state]\ndata_dir = {:?}\n{kv}\n{modules}\n",
        data.display().to_string()
    )
}

const REDIS_CACHE: &str = "redis_cache_ttl_ms = 200";

fn redis_kv(redis: &Redis) -> String {
    format!(
        "[kv]\nbackend = \"redis\"\nredis_url = {:?}\n{REDIS_CACHE}\n",
        redis.url
    )
}

struct Probe<'a> {
    http: Http,
    gw: &'a Gateway,
    module: &'a str,
}

impl Probe<'_> {
    fn url(&self, path: &str) -> String {
        self.gw.url(&format!("/{}{path}", self.module))
    }

    async fn get(&self, path: &str) -> Reply {
        self.http.get(&self.url(path)).await
    }

    async fn post(&self, path: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.http.post(&self.url(path), body).await
    }

    async fn set(&self, store: &str, key: &str, value: &str, ttl_ms: u64) {
        let reply = self
            .post(
                &format!("/kv/set?store={store}&key={key}&ttl_ms={ttl_ms}"),
                value,
            )
            .await;
        assert_eq!(reply.status, 204, "set {key}: {}", reply.text());
    }

    async fn value(&self, store: &str, key: &str) -> Option<String> {
        let reply = self.get(&format!("/kv/get?store={store}&key={key}")).await;
        match reply.status {
            200 => Some(reply.text()),
            404 => None,
            other => panic!("get {key}: {other} {}", reply.text()),
        }
    }

    async fn sql(&self, db: &str, sql: &str, args: Value, query: bool) -> Reply {
        let body = json!({"sql": sql, "args": args, "query": query}).to_string();
        self.post(&format!("/sql?db={db}"), body).await
    }
}

/// Every KV operation, as a module sees it, on whatever backend `gw` has.
async fn kv_suite(gw: &Gateway) {
    let p = Probe {
        http: Http::new(),
        gw,
        module: "probe",
    };
    assert_eq!(p.value("", "missing").await, None);
    p.set("", "greeting", "nǐ hǎo", 0).await;
    assert_eq!(p.value("", "greeting").await.as_deref(), Some("nǐ hǎo"));
    p.set("", "greeting", "hello", 0).await;
    assert_eq!(p.value("", "greeting").await.as_deref(), Some("hello"));

    // Delete: existed, then not.
    assert_eq!(p.post("/kv/delete?key=greeting", "").await.status, 204);
    assert_eq!(p.post("/kv/delete?key=greeting", "").await.status, 404);
    assert_eq!(p.value("", "greeting").await, None);

    // TTL: gone after it, present before.
    p.set("", "short", "x", 300).await;
    assert_eq!(p.value("", "short").await.as_deref(), Some("x"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.value("", "short").await.is_some() {
        assert!(Instant::now() < deadline, "a 300 ms TTL never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // List: 250 keys in pages of 100, each exactly once; other prefixes out.
    for i in 0..250 {
        p.set("", &format!("item-{i:03}"), "v", 0).await;
    }
    p.set("", "other", "v", 0).await;
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let reply = p
            .get(&format!("/kv/list?prefix=item-&limit=100&cursor={cursor}"))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let page = reply.json();
        let keys = page["keys"].as_array().unwrap();
        assert!(keys.len() <= 100);
        for key in keys {
            assert!(seen.insert(key.as_str().unwrap().to_owned()), "{key} twice");
        }
        pages += 1;
        cursor = urlencode(page["next"].as_str().unwrap());
        if cursor.is_empty() {
            break;
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen.len(), 250);
    assert!(seen.iter().all(|k| k.starts_with("item-")));

    // Compare-and-swap: absent → set; wrong expectation refused.
    let cas = |expect: Option<&str>, value: &str| {
        let query = match expect {
            Some(e) => format!("/kv/cas?key=lock&expect={e}"),
            None => "/kv/cas?key=lock".to_owned(),
        };
        let value = value.to_owned();
        let p = &p;
        async move {
            let reply = p.post(&query, value).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            reply.json()["swapped"].as_bool().unwrap()
        }
    };
    assert!(cas(None, "a").await);
    assert!(!cas(None, "b").await);
    assert!(!cas(Some("b"), "c").await);
    assert!(cas(Some("a"), "c").await);
    assert_eq!(p.value("", "lock").await.as_deref(), Some("c"));

    // Increment: from absent, by a delta, and a non-number refused.
    let incr = |delta: i64| {
        let p = &p;
        async move { p.post(&format!("/kv/incr?key=n&delta={delta}"), "").await }
    };
    assert_eq!(incr(5).await.json()["value"], 5);
    assert_eq!(incr(-2).await.json()["value"], 3);
    p.set("", "word", "abc", 0).await;
    let reply = p.post("/kv/incr?key=word&delta=1", "").await;
    assert_eq!(reply.status, 400, "{}", reply.text());

    // Hostile keys stay keys: separators cannot reach another namespace.
    p.set("", "s%3Ashared%3Ax", "mine", 0).await;
    assert_eq!(p.value("shared", "x").await, None);
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const PROBE_GRANTS: &str = "[modules.probe.grants]\nkv = true\nkv_stores = [\"shared\"]\n";

#[tokio::test(flavor = "multi_thread")]
async fn kv_operations_on_the_embedded_store() {
    let modules = probes(&["probe"]);
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(modules.path(), Some(&config(data.path(), "", PROBE_GRANTS)));
    kv_suite(&gw).await;
    assert!(data.path().join("kv.redb").exists());

    // The suite's writes went through group commits, and the metrics say
    // how many commits took how many writes.
    let text = gw.metrics().await;
    let scrape = crate::admin::scrape(&text);
    let sample = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v) => v,
                ref other => panic!("{name}: {other:?}"),
            })
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    let commits = sample("shanhai_kv_commit_writes_count");
    let writes = sample("shanhai_kv_commit_writes_sum");
    assert!(commits >= 5.0, "{commits} commits:\n{text}");
    assert!(writes >= commits, "{writes} writes in {commits} commits");
    assert_eq!(sample("shanhai_kv_commit_seconds_count"), commits);
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_operations_on_redis() {
    let redis = Redis::start();
    let modules = probes(&["probe"]);
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        modules.path(),
        Some(&config(data.path(), &redis_kv(&redis), PROBE_GRANTS)),
    );
    kv_suite(&gw).await;
    assert!(
        !data.path().join("kv.redb").exists(),
        "Redis mode opened redb"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_are_isolated_and_shared_stores_need_a_grant() {
    let modules = probes(&["alpha", "beta", "gamma"]);
    let data = tempfile::tempdir().unwrap();
    let grants = "[modules.alpha.grants]\nkv = true\nkv_stores = [\"shared\"]\n\
                  [modules.beta.grants]\nkv = true\nkv_stores = [\"shared\"]\n";
    let gw = Gateway::start(modules.path(), Some(&config(data.path(), "", grants)));
    let probe = |module| Probe {
        http: Http::new(),
        gw: &gw,
        module,
    };
    let (alpha, beta, gamma) = (probe("alpha"), probe("beta"), probe("gamma"));
    alpha.set("", "k", "alpha's", 0).await;
    beta.set("", "k", "beta's", 0).await;
    assert_eq!(alpha.value("", "k").await.as_deref(), Some("alpha's"));
    assert_eq!(beta.value("", "k").await.as_deref(), Some("beta's"));
    let listed = beta.get("/kv/list?prefix=").await.json();
    assert_eq!(listed["keys"], json!(["k"]));

    // The shared store is one namespace for both grantees.
    alpha.set("shared", "config", "v1", 0).await;
    assert_eq!(beta.value("shared", "config").await.as_deref(), Some("v1"));

    // gamma has no grant at all: denied, with the SDK's error and a log line.
    for path in ["/kv/get?key=k", "/kv/get?store=shared&key=config"] {
        let reply = gamma.get(path).await;
        assert_eq!(reply.status, 403, "{path}: {}", reply.text());
        assert!(reply.json()["error"].as_str().unwrap().contains("denied"));
    }
    // A store alpha is not granted.
    let reply = alpha.get("/kv/get?store=secret&key=x").await;
    assert_eq!(reply.status, 403);
    assert!(reply.text().contains("kv_stores"), "{}", reply.text());
    wait_for_log(&gw, |line| {
        line.contains("capability denied") && line.contains("\"gamma\"")
    })
    .await;
}

async fn wait_for_log(gw: &Gateway, found: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.logs().lines().any(&found) {
        assert!(
            Instant::now() < deadline,
            "log line never written:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `count` increments of key `n` to `gw`, `parallel` at a time.
async fn increments(gw: &Gateway, count: usize, parallel: usize) {
    let http = Http::new();
    let url = gw.url("/probe/kv/incr?key=n&delta=1");
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..parallel {
        let (http, url) = (http.clone(), url.clone());
        let share = count / parallel + usize::from(worker < count % parallel);
        tasks.spawn(async move {
            for _ in 0..share {
                let reply = http.post(&url, "").await;
                assert_eq!(reply.status, 200, "{}", reply.text());
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

async fn counter(gw: &Gateway) -> String {
    Http::new().get(&gw.url("/probe/kv/get?key=n")).await.text()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_increments_are_exact_on_both_backends() {
    let modules = probes(&["probe"]);
    let grants = "[modules.probe]\nmax_instances = 8\n[modules.probe.grants]\nkv = true\n";
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(modules.path(), Some(&config(data.path(), "", grants)));
    increments(&gw, 400, 16).await;
    assert_eq!(counter(&gw).await, "400");

    // Two gateway processes sharing one Redis.
    let redis = Redis::start();
    let kv = redis_kv(&redis);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = Gateway::start(modules.path(), Some(&config(d1.path(), &kv, grants)));
    let two = Gateway::start(modules.path(), Some(&config(d2.path(), &kv, grants)));
    tokio::join!(increments(&one, 300, 8), increments(&two, 300, 8));
    // Each gateway may serve a cached value for redis_cache_ttl_ms after
    // reading it; past that bound (and a margin for a slow machine), both
    // must read every increment.
    let done = Instant::now();
    for gw in [&one, &two] {
        loop {
            let value = counter(gw).await;
            if value == "600" {
                break;
            }
            assert!(
                done.elapsed() < Duration::from_millis(200 + 500),
                "a gateway still reads {value} past the cache bound"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_cache_serves_another_gateways_write_within_its_bound() {
    let redis = Redis::start();
    let modules = probes(&["probe"]);
    let kv = redis_kv(&redis);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = Gateway::start(modules.path(), Some(&config(d1.path(), &kv, PROBE_GRANTS)));
    let two = Gateway::start(modules.path(), Some(&config(d2.path(), &kv, PROBE_GRANTS)));
    let p1 = Probe {
        http: Http::new(),
        gw: &one,
        module: "probe",
    };
    let p2 = Probe {
        http: Http::new(),
        gw: &two,
        module: "probe",
    };
    p1.set("", "colour", "red", 0).await;
    assert_eq!(p2.value("", "colour").await.as_deref(), Some("red"));
    p1.set("", "colour", "blue", 0).await;
    let written = Instant::now();
    while p2.value("", "colour").await.as_deref() != Some("blue") {
        assert!(
            written.elapsed() < Duration::from_millis(200 + 500),
            "gateway two served a stale value past the 200 ms bound"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_kv_writes_survive_kill_9() {
    let modules = probes(&["probe"]);
    let data = tempfile::tempdir().unwrap();
    let text = config(data.path(), "", PROBE_GRANTS);
    let gw = Gateway::start(modules.path(), Some(&text));
    let http = Http::new();
    // Sixteen writers at once, so that writes share group commits, and the
    // gateway killed while they are still writing: every write answered
    // 204 must be there afterwards. Each writer also overwrites one key of
    // its own after each write, so that the order of commits shows: that
    // key must hold the last value acknowledged, or the one in flight at
    // the kill, never an older one.
    let writers = 16;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let last_acked = std::sync::Arc::new(std::sync::Mutex::new(vec![None; writers]));
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let (http, acked, last_acked) = (http.clone(), acked.clone(), last_acked.clone());
            let url = gw.url("/probe/kv/set");
            tokio::spawn(async move {
                for i in 0..200 {
                    let key = format!("durable-{writer}-{i}");
                    match http
                        .try_post(&format!("{url}?key={key}"), format!("v{i}"))
                        .await
                    {
                        Ok(reply) if reply.status == 204 => acked.lock().unwrap().push(key),
                        // Killed mid-write: nothing promised.
                        _ => return,
                    }
                    match http
                        .try_post(&format!("{url}?key=last-{writer}"), format!("{i}"))
                        .await
                    {
                        Ok(reply) if reply.status == 204 => {
                            last_acked.lock().unwrap()[writer] = Some(i)
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 400 {
        assert!(
            Instant::now() < deadline,
            "400 writes not acknowledged in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(gw); // SIGKILL while writes are in flight: no shutdown, no flush
    for task in tasks {
        task.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() < writers * 200,
        "every write finished before the kill"
    );
    let gw = Gateway::start(modules.path(), Some(&text));
    let p = Probe {
        http,
        gw: &gw,
        module: "probe",
    };
    for key in acked {
        let i = key.rsplit('-').next().unwrap();
        assert_eq!(
            p.value("", &key).await,
            Some(format!("v{i}")),
            "acknowledged write {key} lost"
        );
    }
    let last_acked = std::mem::take(&mut *last_acked.lock().unwrap());
    for (writer, acked) in last_acked.into_iter().enumerate() {
        let Some(acked) = acked else { continue };
        let value = p.value("", &format!("last-{writer}")).await;
        let stored: u32 = value
            .as_deref()
            .unwrap_or("none")
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "last-{writer} holds {value:?} after the kill, where {acked} was acknowledged"
                )
            });
        assert!(
            stored == acked || stored == acked + 1,
            "last-{writer} holds {stored} after the kill, where {acked} was the last acknowledged"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_queries_errors_and_isolation() {
    let modules = probes(&["probe", "other"]);
    let data = tempfile::tempdir().unwrap();
    let grants = "[modules.probe.grants]\nsqlite = true\nsqlite_databases = [\"common\"]\n\
                  [modules.other.grants]\nsqlite = true\nsqlite_databases = [\"common\"]\n\
                  [sqlite]\ntimeout_ms = 300\nmax_rows = 50\n";
    let gw = Gateway::start(modules.path(), Some(&config(data.path(), "", grants)));
    let probe = Probe {
        http: Http::new(),
        gw: &gw,
        module: "probe",
    };
    let other = Probe {
        http: Http::new(),
        gw: &gw,
        module: "other",
    };
    let reply = probe
        .sql(
            "",
            "CREATE TABLE readings (id INTEGER PRIMARY KEY, device TEXT, value REAL, raw BLOB)",
            json!([]),
            false,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    for i in 0..3 {
        let reply = probe
            .sql(
                "",
                "INSERT INTO readings (device, value) VALUES (?1, ?2)",
                json!([format!("d{i}"), 20.5 + i as f64]),
                false,
            )
            .await;
        assert_eq!(reply.json()["rows_affected"], 1);
        assert_eq!(reply.json()["last_insert_id"], i + 1);
    }
    let rows = probe
        .sql(
            "",
            "SELECT device, value, raw FROM readings WHERE value > ?1 ORDER BY id",
            json!([21]),
            true,
        )
        .await
        .json();
    assert_eq!(rows["columns"], json!(["device", "value", "raw"]));
    assert_eq!(
        rows["rows"],
        json!([["d1", 21.5, null], ["d2", 22.5, null]])
    );

    // Bad SQL: invalid_argument with SQLite's own message.
    let reply = probe.sql("", "SELEC nonsense", json!([]), true).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("syntax error"), "{}", reply.text());
    // A runaway query hits the timeout; too many rows hit max_rows.
    let reply = probe
        .sql("", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", json!([]), true)
        .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    let reply = probe
        .sql("", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 51) SELECT x FROM c", json!([]), true)
        .await;
    assert_eq!(reply.status, 413, "{}", reply.text());

    // The other module has its own database; the shared one is common.
    let reply = other
        .sql("", "SELECT * FROM readings", json!([]), true)
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.text().contains("no such table"), "{}", reply.text());
    probe
        .sql("common", "CREATE TABLE notes (text TEXT)", json!([]), false)
        .await;
    probe
        .sql(
            "common",
            "INSERT INTO notes VALUES (?1)",
            json!(["shared row"]),
            false,
        )
        .await;
    let rows = other
        .sql("common", "SELECT text FROM notes", json!([]), true)
        .await
        .json();
    assert_eq!(rows["rows"], json!([["shared row"]]));
    let reply = other.sql("private", "SELECT 1", json!([]), true).await;
    assert_eq!(reply.status, 403);
}

/// A local HTTP server: `/hello` answers with the X-Probe header it got,
/// `/big` with 64 KiB, `/slow` after 2 s.
async fn test_server() -> SocketAddr {
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
                        let probe = request
                            .headers()
                            .get("x-probe")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        let body = match request.uri().path() {
                            "/big" => vec![b'x'; 64 << 10],
                            "/slow" => {
                                tokio::time::sleep(Duration::from_secs(2)).await;
                                b"late".to_vec()
                            }
                            _ => format!("hello {probe} via {}", request.method()).into_bytes(),
                        };
                        let response = http::Response::builder()
                            .header("content-type", "text/plain")
                            .body(Full::new(bytes::Bytes::from(body)))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(response)
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
async fn outbound_http_follows_the_allow_list_and_limits() {
    let server = test_server().await;
    let modules = probes(&["probe"]);
    let data = tempfile::tempdir().unwrap();
    let grants = format!(
        "[modules.probe.grants]\nhttp = [\"127.0.0.1:{}\"]\n\
         [outbound_http]\ntimeout_ms = 500\nmax_response_bytes = 16384\n",
        server.port()
    );
    let gw = Gateway::start(modules.path(), Some(&config(data.path(), "", &grants)));
    let p = Probe {
        http: Http::new(),
        gw: &gw,
        module: "probe",
    };
    let fetch = |url: String, method: &'static str| {
        let p = &p;
        async move {
            p.post(
                &format!("/fetch?method={method}&url={}", urlencode(&url)),
                "payload",
            )
            .await
        }
    };
    let reply = fetch(format!("http://{server}/hello"), "POST").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let json = reply.json();
    assert_eq!(json["status"], 200);
    assert_eq!(json["body"], "hello stateprobe via POST");
    assert_eq!(json["content_type"], "text/plain");

    // Another port of the same host, and another host: denied.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for url in [
        format!("http://{}/hello", closed.local_addr().unwrap()),
        "http://localhost:1/".to_owned(),
    ] {
        let reply = fetch(url.clone(), "GET").await;
        assert_eq!(reply.status, 403, "{url}: {}", reply.text());
        assert!(reply.text().contains("not granted"), "{}", reply.text());
    }
    // Too large, and too slow.
    let reply = fetch(format!("http://{server}/big"), "GET").await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    let started = Instant::now();
    let reply = fetch(format!("http://{server}/slow"), "GET").await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_millis(1800));
    // Not an http(s) URL: the module asked for something the host never
    // does, so `http_fetch` answers invalid_argument (the probe's 400), not
    // a failure of the host (500).
    let reply = fetch("file:///etc/passwd".to_owned(), "GET").await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply
            .text()
            .contains("invalid argument: `file:///etc/passwd` is not an http:// or https:// URL"),
        "{}",
        reply.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gpio_reads_and_drives_a_sysfs_tree() {
    let sysfs = tempfile::tempdir().unwrap();
    let root = sysfs.path();
    std::fs::write(root.join("export"), "").unwrap();
    for (pin, direction, value) in [(17, "out", "1"), (18, "in", "0")] {
        let dir = root.join(format!("gpio{pin}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("direction"), direction).unwrap();
        std::fs::write(dir.join("value"), value).unwrap();
    }
    let modules = probes(&["probe"]);
    let data = tempfile::tempdir().unwrap();
    let grants = format!(
        "[modules.probe.grants]\ngpio_in = [17, 20]\ngpio_out = [18]\n[gpio]\nsysfs_root = {:?}\n",
        root.display().to_string()
    );
    let gw = Gateway::start(modules.path(), Some(&config(data.path(), "", &grants)));
    let p = Probe {
        http: Http::new(),
        gw: &gw,
        module: "probe",
    };
    // An input pin is read (and made an input).
    let reply = p.get("/gpio?pin=17").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["high"], true);
    assert_eq!(
        std::fs::read_to_string(root.join("gpio17/direction")).unwrap(),
        "in"
    );
    // An output pin is driven (and made an output).
    assert_eq!(p.post("/gpio?pin=18&high=1", "").await.status, 204);
    assert_eq!(
        std::fs::read_to_string(root.join("gpio18/value")).unwrap(),
        "1"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("gpio18/direction")).unwrap(),
        "out"
    );
    assert_eq!(p.get("/gpio?pin=18").await.json()["high"], true);
    // Writing an input, or touching an ungranted pin: denied.
    assert_eq!(p.post("/gpio?pin=17&high=0", "").await.status, 403);
    assert_eq!(p.get("/gpio?pin=5").await.status, 403);
    // A granted pin the tree does not have: exported, never appears.
    let reply = p.get("/gpio?pin=20").await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(std::fs::read_to_string(root.join("export")).unwrap(), "20");
}

#[tokio::test(flavor = "multi_thread")]
async fn variables_and_secrets_reach_the_module_but_not_the_admin_api() {
    let modules = probes(&["probe"]);
    let data = tempfile::tempdir().unwrap();
    let text = config(
        data.path(),
        "",
        "[modules.probe.vars]\nregion = \"cn-east\"\n\
         [modules.probe.secrets]\ntoken = \"Bearer ${PROBE_TOKEN}\"\n",
    );
    let gw = Gateway::start_env(
        modules.path(),
        Some(&text),
        &[("PROBE_TOKEN", "s3cr3t-value")],
    );
    let p = Probe {
        http: Http::new(),
        gw: &gw,
        module: "probe",
    };
    assert_eq!(p.get("/config?key=region").await.text(), "cn-east");
    assert_eq!(
        p.get("/config?key=token").await.text(),
        "Bearer s3cr3t-value"
    );
    assert_eq!(p.get("/config?key=nope").await.status, 404);
    let admin = p.http.get(&gw.admin_url("/admin/config")).await;
    assert_eq!(admin.status, 200);
    assert!(!admin.text().contains("s3cr3t"), "{}", admin.text());
    assert_eq!(admin.json()["modules"]["probe"]["secrets"]["token"], "***");
    assert!(!gw.logs().contains("s3cr3t"));

    // A secret whose variable is unset fails the start, naming it.
    let (ok, _, stderr) = crate::util::shanhai(
        &[
            "serve",
            "--config",
            &write_config(data.path(), &text),
            "--listen",
            "127.0.0.1:0",
        ],
        data.path(),
    );
    assert!(!ok);
    assert!(stderr.contains("PROBE_TOKEN"), "{stderr}");
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("unset.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_capability_is_denied_without_a_grant() {
    let modules = probes(&["probe"]);
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(modules.path(), Some(&config(data.path(), "", "")));
    let p = Probe {
        http: Http::new(),
        gw: &gw,
        module: "probe",
    };
    let denied = [
        p.get("/kv/get?key=a").await,
        p.post("/kv/set?key=a", "v").await,
        p.get("/kv/list?prefix=").await,
        p.post("/kv/incr?key=a", "").await,
        p.post("/kv/cas?key=a", "v").await,
        p.post("/kv/delete?key=a", "").await,
        p.sql("", "SELECT 1", json!([]), true).await,
        p.post("/fetch?url=http%3A%2F%2F127.0.0.1%3A9%2F", "").await,
        p.get("/gpio?pin=1").await,
        p.post("/gpio?pin=1&high=1", "").await,
    ];
    for reply in &denied {
        assert_eq!(reply.status, 403, "{}", reply.text());
        assert!(reply.text().contains("not granted"), "{}", reply.text());
    }
    // The module and gateway carry on, and the denial is logged.
    assert_eq!(p.get("/config?key=x").await.status, 404);
    wait_for_log(&gw, |line| {
        line.contains("capability denied") && line.contains("probe")
    })
    .await;
    assert!(
        !data.path().join("kv.redb").exists(),
        "KV opened without any grant"
    );
}
