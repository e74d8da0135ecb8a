//! Test helper: a real `redis-server` on a free loopback port, in a temporary directory
//! of its own, that a test can kill (SIGKILL) and restart on the same port and
//! directory. Killed (by PID) and its directory removed when dropped.
//!
//! Where `redis-server` cannot be started (not installed, not on `PATH`) the test skips
//! by the project's rule ([`skip`](super::skip)): `SKIPPED <test>: cannot start
//! redis-server: ...` on stderr, or a failure under `RINGWS_TEST_STRICT=1`.
//!
//! ```ignore
//! let Some(mut redis) = common::redis::RedisServer::start() else { return };
//! let url = redis.url(); // redis://127.0.0.1:PORT
//! redis.kill();
//! redis.restart();
//! ```
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::skip;

/// How long a start (or restart) may take before the test fails.
const START_LIMIT: Duration = Duration::from_secs(10);

/// The arguments every server gets besides `--port`, `--bind` and `--dir`: no RDB
/// snapshots, no append-only file. Arguments passed to [`RedisServer::start_with`]
/// come after these, so they win (`--appendonly yes`).
const DEFAULT_ARGS: [&str; 4] = ["--save", "", "--appendonly", "no"];

/// A `redis-server` child process on 127.0.0.1.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server with the default arguments (no persistence); `None` (after
    /// printing why) when `redis-server` cannot be started here.
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(&[])
    }

    /// Starts a server with `extra` arguments after the defaults, e.g.
    /// `["--appendonly", "yes", "--appendfsync", "always"]` for one that keeps its data
    /// across [`RedisServer::restart`].
    pub fn start_with(extra: &[&str]) -> Option<RedisServer> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            listener.local_addr().expect("addr").port()
        };
        let dir = std::env::temp_dir().join(format!(
            "ringws-redis-{}-{}-{}",
            std::process::id(),
            port,
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the redis directory");
        let mut redis = RedisServer {
            child: None,
            port,
            dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        match redis.spawn() {
            Ok(child) => redis.child = Some(child),
            Err(error) => {
                skip::skip(format_args!("cannot start redis-server: {error}"));
                return None;
            }
        }
        redis.wait_ready();
        Some(redis)
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let log = std::fs::File::create(self.dir.join("redis.log"))?;
        Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(DEFAULT_ARGS)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
    }

    /// Waits (bounded) until the server answers PING with PONG (not while it is still
    /// loading its data).
    fn wait_ready(&mut self) {
        let limit = Instant::now() + START_LIMIT;
        loop {
            if ping(self.addr()) {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "redis-server exited at start ({status}); its log: {}",
                        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
                    );
                }
            }
            assert!(
                Instant::now() < limit,
                "redis-server did not answer PING within {START_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its working directory (`--dir`: the append-only file lives here).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The running server's process id, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the server process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server with SIGKILL (by its PID) and waits for it to end. Nothing is
    /// flushed: what survives is what `--appendfsync always` already wrote.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, in the same directory, with the same
    /// arguments (killing it first if it runs), and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let limit = Instant::now() + START_LIMIT;
        loop {
            let mut child = self.spawn().expect("restart redis-server");
            // The old listener's port may still be held for a moment: a server that
            // exits at once is retried (bounded).
            std::thread::sleep(Duration::from_millis(20));
            match child.try_wait() {
                Ok(Some(_)) if Instant::now() < limit => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    self.child = Some(child);
                    break;
                }
            }
        }
        self.wait_ready();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// True when a server at `addr` answers `PING` with `+PONG` within a second.
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    let mut got = 0;
    while got < answer.len() {
        match stream.read(&mut answer[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    &answer == b"+PONG\r\n"
}
