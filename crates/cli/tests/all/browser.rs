//! A small Chrome DevTools Protocol (CDP) driver for end-to-end tests in a
//! real browser: it starts headless Chromium, speaks CDP over the raw
//! WebSocket client of `wsclient.rs`, opens pages and evaluates JavaScript
//! in them.
//!
//! Only what the tests need: one command at a time, its answer matched by
//! id, and the events Chromium sends in between skipped. Pages are attached
//! in flat mode, so their commands go over the browser's one connection
//! with a session id.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::wsclient::{TEXT, WsClient};

/// A headless Chromium and a CDP connection to it. Dropping it kills
/// Chromium and its helper processes, also when a test panics.
pub struct Browser {
    cdp: WsClient,
    next_id: u64,
    stderr: Arc<Mutex<String>>,
    // Declared after `cdp` and before `_profile`: fields drop in order, so
    // the connection closes, then Chromium dies, then its profile goes.
    _process: Process,
    _profile: tempfile::TempDir,
}

/// A page (tab) attached in flat mode.
pub struct Page {
    target_id: String,
    session_id: String,
}

impl Browser {
    /// Starts headless Chromium with a fresh profile and connects to its
    /// DevTools endpoint. Panics, asking for it to be installed, when there
    /// is no Chromium.
    pub async fn launch() -> Self {
        let binary = chromium();
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(&binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group, so that Drop can kill the renderers
            // and other helpers along with the browser.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let stderr = child.stderr.take().unwrap();
        let process = Process(child);

        // Chromium prints `DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID`
        // on stderr. The reader keeps draining (and recording) stderr after
        // that, so Chromium never blocks on a full pipe.
        let log = Arc::new(Mutex::new(String::new()));
        let (found, endpoint) = tokio::sync::oneshot::channel();
        std::thread::spawn({
            let log = log.clone();
            move || {
                let mut found = Some(found);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(url) = line.strip_prefix("DevTools listening on ws://")
                        && let Some(found) = found.take()
                    {
                        let _ = found.send(url.to_owned());
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let endpoint = match tokio::time::timeout(Duration::from_secs(30), endpoint).await {
            Ok(Ok(endpoint)) => endpoint,
            _ => panic!(
                "Chromium did not announce its DevTools endpoint; stderr:\n{}",
                log.lock().unwrap()
            ),
        };
        let (addr, path) = endpoint.split_once('/').expect("ws://ADDR/PATH");
        let addr: SocketAddr = addr.parse().expect("an ip:port DevTools address");
        let cdp = WsClient::connect(addr, &format!("/{path}")).await;
        Self {
            cdp,
            next_id: 0,
            stderr: log,
            _process: process,
            _profile: profile,
        }
    }

    /// Sends one CDP command (to the browser, or to a page's session) and
    /// returns its result, or the protocol error as a string.
    pub async fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = session.into();
        }
        self.cdp.send_text(&command.to_string()).await;
        loop {
            let frame = self.cdp.recv().await;
            assert_eq!(
                frame.opcode,
                TEXT,
                "Chromium sent {frame:?}; stderr:\n{}",
                self.stderr.lock().unwrap()
            );
            let mut message: Value = serde_json::from_slice(&frame.payload).unwrap();
            // Anything without our id is an event or an older answer.
            if message["id"] != id {
                continue;
            }
            return match message.get("error") {
                Some(error) => Err(format!("{method}: {error}")),
                None => Ok(message["result"].take()),
            };
        }
    }

    /// Opens a new page at `url` and attaches to it. The page loads in the
    /// background: wait for what it should show.
    pub async fn open(&mut self, url: &str) -> Page {
        let created = self
            .call(None, "Target.createTarget", json!({ "url": url }))
            .await
            .unwrap();
        let target_id = created["targetId"].as_str().unwrap().to_owned();
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await
            .unwrap();
        let session_id = attached["sessionId"].as_str().unwrap().to_owned();
        Page {
            target_id,
            session_id,
        }
    }

    /// Evaluates `expression` in `page` and returns its value as JSON
    /// (`null` for undefined). A thrown exception, or a page between two
    /// documents, is an error, so callers that poll can try again.
    pub async fn eval(&mut self, page: &Page, expression: &str) -> Result<Value, String> {
        let mut reply = self
            .call(
                Some(&page.session_id),
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(exception) = reply.get("exceptionDetails") {
            return Err(format!("{expression}: {exception}"));
        }
        Ok(reply["result"]["value"].take())
    }

    /// Saves a PNG of what `page` shows now to `path` (its folder is
    /// created).
    pub async fn screenshot(&mut self, page: &Page, path: &std::path::Path) {
        use base64::Engine;
        let shot = self
            .call(
                Some(&page.session_id),
                "Page.captureScreenshot",
                json!({ "format": "png" }),
            )
            .await
            .unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    /// Makes `page` `width`×`height` CSS pixels, as a phone (`mobile`) or a
    /// desktop window.
    pub async fn viewport(&mut self, page: &Page, width: u32, height: u32, mobile: bool) {
        self.call(
            Some(&page.session_id),
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        )
        .await
        .unwrap();
    }

    /// Emulates the system's colour scheme (`light` or `dark`) for `page`.
    pub async fn color_scheme(&mut self, page: &Page, scheme: &str) {
        self.call(
            Some(&page.session_id),
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
        )
        .await
        .unwrap();
    }

    /// Puts `files` into the `<input type=file>` that `selector` finds, as
    /// choosing them in the file picker does, and fires its `change` event.
    pub async fn set_files(&mut self, page: &Page, selector: &str, files: &[&std::path::Path]) {
        let found = self
            .call(
                Some(&page.session_id),
                "Runtime.evaluate",
                json!({ "expression": format!("document.querySelector({})", Value::from(selector)) }),
            )
            .await
            .unwrap();
        let object_id = found["result"]["objectId"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {selector}: {found}"))
            .to_owned();
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        self.call(
            Some(&page.session_id),
            "DOM.setFileInputFiles",
            json!({ "files": files, "objectId": object_id }),
        )
        .await
        .unwrap();
    }

    /// Closes `page`, as closing its tab does: its scripts end and its
    /// WebSocket connections close.
    pub async fn close(&mut self, page: Page) {
        self.call(
            None,
            "Target.closeTarget",
            json!({ "targetId": page.target_id }),
        )
        .await
        .unwrap();
    }
}

/// The Chromium process group, killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        // The negative id addresses the whole group `launch` created.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's `/usr/bin/chromium`, or `chromium` on PATH.
fn chromium() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("chromium"));
    std::iter::once(PathBuf::from("/usr/bin/chromium"))
        .chain(on_path)
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "this test drives a headless Chromium, and none is installed \
                 (no /usr/bin/chromium, no `chromium` on PATH): \
                 `apt-get install chromium` (CI installs it)"
            )
        })
}
