//! Helpers that keep the integration tests short: building the example
//! modules once, starting a real `shanhai serve` process on a free port, and
//! a real HTTP client.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn shanhai_bin() -> &'static str {
    env!("CARGO_BIN_EXE_shanhai")
}

/// The example modules, built once per test run with the real Go toolchain
/// and the Rust wasm target, and compiled once into the shared cache.
pub fn examples() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = repo_root().join("target/test-modules");
        let status = Command::new("bash")
            .arg(repo_root().join("scripts/build-examples.sh"))
            .arg(&out)
            .status()
            .expect("running scripts/build-examples.sh");
        assert!(status.success(), "building the example modules failed");
        let files: Vec<PathBuf> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .collect();
        let status = Command::new(shanhai_bin())
            .arg("compile")
            .arg("--cache-dir")
            .arg(cache_dir())
            .args(&files)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "warming the compile cache failed");
        out
    })
}

/// The `version` fixture (tests/fixtures/version) built with
/// `main.version` set to `version`, compiled into the shared cache.
pub fn version_module(version: &str) -> PathBuf {
    version_module_with(version, &[])
}

/// The `version` fixture with more of its settings (`status`, `delayMs`,
/// `initDelayMs`). Tests that ask for the same version and settings share
/// one build, so a test needs its own name only where two of its builds
/// must differ.
pub fn version_module_with(version: &str, settings: &[(&str, &str)]) -> PathBuf {
    let mut ldflags = format!("-X=main.version={version}");
    let mut out = format!("version-{version}");
    for (name, value) in settings {
        ldflags.push_str(&format!(" -X=main.{name}={value}"));
        out.push_str(&format!("-{name}{value}"));
    }
    fixture("version", &out, &ldflags)
}

/// Builds the Go program in tests/fixtures/`dir` into
/// target/test-fixtures/`out`.wasm with `ldflags`, and compiles it into the
/// shared cache, once per test run: a test asking for an output that
/// another is building waits for it, so no two write the same file, and
/// each Go module is compiled once (seconds of CPU each).
pub fn fixture(dir: &str, out: &str, ldflags: &str) -> PathBuf {
    type Builds = BTreeMap<String, (String, Arc<OnceLock<PathBuf>>)>;
    static BUILDS: Mutex<Builds> = Mutex::new(BTreeMap::new());
    let recipe = format!("{dir} {ldflags}");
    let build = {
        let mut builds = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
        let (built_from, build) = builds
            .entry(out.to_owned())
            .or_insert_with(|| (recipe.clone(), Arc::default()));
        assert_eq!(
            *built_from, recipe,
            "two fixtures named {out} with different builds"
        );
        Arc::clone(build)
    };
    build
        .get_or_init(|| build_fixture(dir, out, ldflags))
        .clone()
}

fn build_fixture(dir: &str, out: &str, ldflags: &str) -> PathBuf {
    let out = repo_root().join(format!("target/test-fixtures/{out}.wasm"));
    let status = Command::new("go")
        .args(["build", "-buildmode=c-shared"])
        .arg(format!("-ldflags={ldflags}"))
        .arg("-o")
        .arg(&out)
        .arg(".")
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .current_dir(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(dir),
        )
        .status()
        .expect("running go build");
    assert!(status.success(), "building the {dir} fixture failed");
    let status = Command::new(shanhai_bin())
        .arg("compile")
        .arg("--cache-dir")
        .arg(cache_dir())
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    out
}

/// The compile cache shared by every gateway the tests start.
pub fn cache_dir() -> PathBuf {
    repo_root().join("target/test-cache")
}

/// A folder holding copies of the named example modules, plus any extra
/// files the test writes into it.
pub fn modules_with(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::copy(
            examples().join(format!("{name}.wasm")),
            dir.path().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    dir
}

/// Writes a WAT module, assembled to binary, as `dir/NAME.wasm`.
pub fn write_wat(dir: &Path, name: &str, wat: &str) {
    let wasm = wat::parse_str(wat).unwrap_or_else(|e| panic!("{name}: {e}"));
    std::fs::write(dir.join(format!("{name}.wasm")), wasm).unwrap();
}

/// How to start a gateway.
#[derive(Clone, Copy)]
pub struct Launch<'a> {
    pub modules: &'a Path,
    pub config: Option<&'a str>,
    pub cache: &'a Path,
    pub env: &'a [(&'a str, &'a str)],
    /// Wait for `/readyz` before returning.
    pub ready: bool,
    /// Run under `ulimit -v` of this many bytes.
    pub ulimit_v: Option<u64>,
    /// Run under `ulimit -n` of this many file descriptors (soft and hard).
    pub ulimit_n: Option<u64>,
    /// Another copy of the `shanhai` executable to run.
    pub binary: Option<&'a Path>,
}

impl<'a> Launch<'a> {
    pub fn new(modules: &'a Path, config: Option<&'a str>) -> Self {
        static CACHE: OnceLock<PathBuf> = OnceLock::new();
        Self {
            modules,
            config,
            cache: CACHE.get_or_init(cache_dir),
            env: &[],
            ready: true,
            ulimit_v: None,
            ulimit_n: None,
            binary: None,
        }
    }
}

/// A `shanhai serve` process, killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    /// The admin listener, unless the config disables it.
    pub admin: Option<SocketAddr>,
    /// The TCP listeners, by name.
    pub tcp: std::collections::BTreeMap<String, SocketAddr>,
    /// The embedded MQTT broker's MQTT 3.1.1 and MQTT 5 listeners, when it
    /// runs.
    pub mqtt: Option<(SocketAddr, SocketAddr)>,
    /// The admin JSON-RPC socket, when this helper chose it (the test's
    /// config had no `[admin]` section).
    pub admin_socket: Option<PathBuf>,
    stderr: PathBuf,
    _stderr_dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts a gateway on `modules`, with an optional config file text.
    pub fn start(modules: &Path, config: Option<&str>) -> Self {
        Self::launch(Launch::new(modules, config))
    }

    pub fn start_with(modules: &Path, config: Option<&str>, cache: &Path) -> Self {
        Self::launch(Launch {
            cache,
            ..Launch::new(modules, config)
        })
    }

    /// Starts a gateway with extra environment variables.
    pub fn start_env(modules: &Path, config: Option<&str>, env: &[(&str, &str)]) -> Self {
        Self::launch(Launch {
            env,
            ..Launch::new(modules, config)
        })
    }

    /// Starts a gateway as `launch` says. Unless `launch.ready` is false,
    /// returns once `/readyz` answers 200: every module has loaded or
    /// failed, as tests that do not look at start-up expect.
    pub fn launch(launch: Launch<'_>) -> Self {
        let gateway = Self::spawn(&launch);
        if launch.ready {
            gateway.wait_ready();
        }
        gateway
    }

    /// Polls `/readyz` until it answers 200, for up to 120 s (a cold
    /// compile of several Go modules on a busy 2-core machine).
    pub fn wait_ready(&self) {
        use std::io::{Read, Write};
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let status = std::net::TcpStream::connect(self.addr)
                .ok()
                .and_then(|mut stream| {
                    stream
                        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .ok()?;
                    let mut head = [0u8; 12];
                    stream.read_exact(&mut head).ok()?;
                    Some(head)
                });
            if status.is_some_and(|head| head.ends_with(b"200")) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the gateway never became ready; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn(launch: &Launch<'_>) -> Self {
        let Launch {
            modules,
            config,
            cache,
            env,
            ulimit_v,
            ulimit_n,
            binary,
            ..
        } = *launch;
        let binary = binary.unwrap_or(Path::new(shanhai_bin()));
        let log_dir = tempfile::tempdir().unwrap();
        let stderr = log_dir.path().join("stderr.log");
        let mut limits = Vec::new();
        if let Some(bytes) = ulimit_v {
            limits.push(format!("ulimit -v {}", bytes / 1024));
        }
        if let Some(files) = ulimit_n {
            limits.push(format!("ulimit -n {files}"));
        }
        let mut cmd = if limits.is_empty() {
            Command::new(binary)
        } else {
            // Through the shell, whose limits the gateway inherits.
            let mut cmd = Command::new("bash");
            cmd.arg("-c")
                .arg(format!("{} && exec \"$0\" \"$@\"", limits.join(" && ")))
                .arg(binary);
            cmd
        };
        cmd.args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--modules",
        ])
        .arg(modules)
        .arg("--cache-dir")
        .arg(cache)
        .env("SHANHAI_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap());
        // The default admin listener (127.0.0.1:9090, ./.shanhai/admin.sock)
        // would collide between gateways running in parallel: each gets a
        // free port and its own socket unless the test configures `[admin]`;
        // and no generated token, which tests of the token turn on.
        let mut text = config.unwrap_or_default().to_owned();
        let mut admin_socket = None;
        if !text.lines().any(|line| line.trim() == "[admin]") {
            let socket = log_dir.path().join("admin.sock");
            text.push_str(&format!(
                "\n[admin]\nlisten = \"127.0.0.1:0\"\nsocket = {:?}\ntoken_file = \"\"\n",
                socket.display().to_string()
            ));
            admin_socket = Some(socket);
        }
        let path = log_dir.path().join("shanhai.toml");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(path);
        // Relative defaults (`.shanhai/...`) land in this gateway's own
        // folder, never in the source tree.
        cmd.current_dir(log_dir.path());
        // A token in the environment would turn on authentication.
        cmd.env_remove("SHANHAI_ADMIN_TOKEN");
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().expect("starting shanhai serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        // `admin listening on ...` (when enabled), then `listening on ...`.
        let mut admin = None;
        let mut tcp = std::collections::BTreeMap::new();
        let mut mqtt_v4 = None;
        let mut mqtt = None;
        let addr = loop {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            if let Some(addr) = line.trim().strip_prefix("admin listening on http://") {
                admin = Some(addr.parse().unwrap());
                continue;
            }
            if let Some((name, addr)) = line
                .trim()
                .strip_prefix("tcp ")
                .and_then(|rest| rest.split_once(" listening on "))
            {
                tcp.insert(name.to_owned(), addr.parse().unwrap());
                continue;
            }
            if let Some(addr) = line.trim().strip_prefix("mqtt listening on ") {
                mqtt_v4 = Some(addr.parse().unwrap());
                continue;
            }
            if let Some(addr) = line.trim().strip_prefix("mqtt v5 listening on ") {
                mqtt = mqtt_v4.map(|v4| (v4, addr.parse().unwrap()));
                continue;
            }
            let Some(addr) = line.trim().strip_prefix("listening on http://") else {
                let _ = child.kill();
                panic!(
                    "gateway did not start; stdout {line:?}; stderr:\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            };
            break addr.parse().unwrap();
        };
        Self {
            addr,
            admin,
            tcp,
            mqtt,
            admin_socket: admin_socket.filter(|_| admin.is_some()),
            child,
            stderr,
            _stderr_dir: log_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin.expect("the admin API is off"))
    }

    /// The Prometheus exposition the admin listener serves at `/metrics`.
    pub async fn metrics(&self) -> String {
        Http::new().get(&self.admin_url("/metrics")).await.text()
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the gateway logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the gateway's error shape and returns the `error` kind.
    pub fn error_kind(&self) -> String {
        let json = self.json();
        assert!(json["message"].is_string(), "no message: {json}");
        assert_eq!(
            json["request_id"].as_str(),
            self.header("x-request-id"),
            "{json}"
        );
        json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error kind: {json}"))
            .to_owned()
    }
}

/// A real HTTP/1.1 client over 127.0.0.1.
#[derive(Clone)]
pub struct Http(Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>);

impl Http {
    pub fn new() -> Self {
        Self(Client::builder(TokioExecutor::new()).build_http())
    }

    pub async fn get(&self, url: &str) -> Reply {
        self.send("GET", url, &[], Vec::new()).await
    }

    pub async fn post(&self, url: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.send("POST", url, &[], body.into()).await
    }

    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        self.try_send(method, url, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    }

    /// POSTs `body`; an error instead of a panic when the connection
    /// fails, as it does to requests in flight when a gateway is killed.
    pub async fn try_post(&self, url: &str, body: impl Into<Vec<u8>>) -> Result<Reply, String> {
        self.try_send("POST", url, &[], body.into()).await
    }

    async fn try_send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        let mut request = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(60), self.0.request(request))
            .await
            .unwrap_or_else(|_| panic!("{method} {url} timed out"))
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.collect().await.map_err(|e| e.to_string())?.to_bytes(),
        })
    }
}

/// Runs `shanhai serve` on `modules` with `config` (written into a folder
/// of its own, which is also its working folder), expects it to refuse to
/// start, and returns what it printed on stderr.
pub fn serve_refused(modules: &Path, config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shanhai.toml");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(shanhai_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--modules"])
        .arg(modules)
        .arg("--config")
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{config} was accepted: {stderr}");
    stderr
}

/// Runs `shanhai` with arguments and returns (success, stdout, stderr).
pub fn shanhai(args: &[&str], dir: &Path) -> (bool, String, String) {
    let output = Command::new(shanhai_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Polls until `/version` (the `version` fixture) answers with `version`.
pub async fn wait_for_version(http: &Http, gw: &Gateway, version: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while http.get(&gw.url("/version")).await.header("x-version") != Some(version) {
        assert!(
            std::time::Instant::now() < deadline,
            "version {version} never served; logs:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls the admin API until module `name` has an instance handling an
/// event (live but not idle): a request sent before is now running.
pub async fn wait_for_busy_instance(http: &Http, gw: &Gateway, name: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let info = http
            .get(&gw.admin_url(&format!("/admin/modules/{name}")))
            .await
            .json();
        let pool = &info["pool"];
        if pool["live"].as_u64() > pool["idle"].as_u64() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no instance of {name} became busy: {info}\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `shanhai keygen --out DIR/NAME`; returns the key file and the
/// public key line (which keygen printed).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let out = dir.join(name);
    let (ok, stdout, stderr) = shanhai(&["keygen", "--out", out.to_str().unwrap()], dir);
    assert!(ok, "keygen failed: {stderr}");
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap();
    let public = public.trim().to_owned();
    assert!(stdout.contains(&public), "{stdout}");
    (dir.join(format!("{name}.key")), public)
}

/// A compile cache's entries (code and authentication codes), sorted;
/// none when the folder does not exist yet.
pub fn cache_entries(cache: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(cache)
        .map(|dir| {
            dir.map(|entry| entry.unwrap().path())
                .filter(|path| path.extension().is_some_and(|e| e == "cwasm" || e == "mac"))
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

/// The SHA-256 of `bytes`, in lowercase hex.
/// A memory figure of process `pid` from `/proc/PID/status` (`field` is
/// e.g. `VmHWM` or `RssAnon`), in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    kib << 10
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
