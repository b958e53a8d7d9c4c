//! Test helpers: a real `redis-server` on a free loopback port.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process, killed on drop.
pub(crate) struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` (or `$REDIS_SERVER`) without persistence and
    /// waits until it answers on its port. Panics, failing the test, when
    /// the binary is missing: these tests must not pass without a server.
    pub(crate) fn start() -> Self {
        let binary =
            std::env::var_os("REDIS_SERVER").unwrap_or_else(|| OsString::from("redis-server"));
        // A port found free can be taken before the server binds it (by
        // another test's server, say): ours then exits, and another port is
        // tried. Until it does, the other server may answer on the port, so
        // only an answer from our own process counts.
        for _ in 0..5 {
            let port = free_port();
            let dir = tempfile::tempdir().unwrap();
            let mut child = Command::new(&binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|error| {
                    panic!(
                        "cannot run {binary:?}: {error}. These tests need a real Redis server: \
                         install it (apt-get install redis-server) or point REDIS_SERVER at it"
                    )
                });
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if served_by(port, child.id()) {
                    return Self {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("{binary:?} did not start answering on 127.0.0.1 in five tries");
    }

    /// The URL to connect to.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether the Redis server answering on `port` is process `pid`.
fn served_by(port: u16, pid: u32) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reader = BufReader::new(stream);
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
