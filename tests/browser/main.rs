//! Real browsers (issue 16, part 3): headless Chromium driven through chromedriver
//! (WebDriver, the `fantoccini` client) against ringws servers started here.
//!
//! - `chat`: the `ringws serve` chat page in two browsers: welcome, `/join`, `/nick`,
//!   a message each way, HTML shown as text, and the page reconnecting after the server
//!   process is replaced on the same port.
//! - `websocket`: native WebSocket echo from the page's JavaScript (text with
//!   non-ASCII, ArrayBuffers of 0 B … 1 MiB compared byte for byte), `close(4000,
//!   reason)` seen by the server's handler and a server close seen by the page;
//!   permessage-deflate agreed with the browser (`ws.extensions`, the offer the
//!   server saw, and the bytes on the wire counted by a proxy); wss with a self-signed
//!   certificate.
//! - `sockjs`: sockjs-client 1.6.1 (from the npm registry, served by the test server,
//!   `sockjs_url` pointing at that copy) on every transport, each echoing; the `xdr-*`
//!   transports, which need IE's `XDomainRequest`, must be reported unavailable.
//! - `h2`: `examples/h2_tls.rs` (hyper over rustls, ALPN h2) as a child process: the page
//!   comes over HTTP/2 and its WebSocket goes over that connection (RFC 8441), shown by
//!   Chromium's net log.
//!
//! One chromedriver serves every test of this binary (started on a free port on first
//! use); each test opens its own browser session(s) and always closes them. A test skips
//! (saying why) only when Chromium or chromedriver is not installed; with
//! `RINGWS_TEST_STRICT=1` it fails instead (`tests/common/skip.rs`). Every step waits
//! with a deadline; none sleeps to assert anything.

#[path = "../common/mod.rs"]
mod common;

mod chat;
mod h2;
mod sockjs;
mod websocket;

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// How long chromedriver may take to answer its status as ready.
const DRIVER_STARTUP: Duration = Duration::from_secs(20);
/// How long a new browser session may take to start.
const SESSION_STARTUP: Duration = Duration::from_secs(30);
/// The most one page script (`execute_async`) may run (WebDriver's script timeout).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where this binary keeps what it writes (logs, net logs): under the target directory.
pub fn work_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).expect("create the browser work directory");
    dir
}

/// The first of `names` found as an executable in `PATH` (or given as a path).
fn find_executable(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        let candidate = Path::new(name);
        if candidate.is_absolute() {
            if candidate.is_file() {
                return Some(candidate.to_path_buf());
            }
            continue;
        }
        for dir in std::env::split_paths(&path) {
            let full = dir.join(name);
            if full.is_file() {
                return Some(full);
            }
        }
    }
    None
}

/// A running chromedriver shared by the tests, and the browser it starts.
pub struct Driver {
    /// `http://127.0.0.1:PORT`.
    url: String,
    /// The Chromium executable given to every session.
    chromium: PathBuf,
}

/// Why there is no chromedriver: the programs are not installed (a skip), or they are
/// and did not work (a failure).
#[derive(Clone, Debug)]
enum DriverError {
    Missing(String),
    Failed(String),
}

/// The shared chromedriver, started on first use; `None` when the calling test must
/// return because Chromium or chromedriver is not installed (after saying so, or
/// failing under `RINGWS_TEST_STRICT=1`). A chromedriver that is installed but does not
/// start fails the test.
pub fn driver() -> Option<&'static Driver> {
    static DRIVER: OnceLock<Result<Driver, DriverError>> = OnceLock::new();
    match DRIVER.get_or_init(start_driver) {
        Ok(driver) => Some(driver),
        Err(DriverError::Missing(why)) => {
            // Said once per test (each runs on its own thread), however often asked.
            thread_local!(static SAID: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
            if !SAID.replace(true) {
                common::skip::skip(why);
            }
            None
        }
        Err(DriverError::Failed(why)) => panic!("{why}"),
    }
}

fn start_driver() -> Result<Driver, DriverError> {
    // `CHROMEDRIVER` and `CHROME_BIN` name other installs; Debian's packages put
    // `chromedriver` and `chromium` on PATH.
    let env_or = |var: &str, names: &[&str]| match std::env::var(var) {
        Ok(path) if !path.is_empty() => find_executable(&[&path]),
        _ => find_executable(names),
    };
    let chromedriver = env_or(
        "CHROMEDRIVER",
        &["chromedriver", "/usr/lib/chromium/chromedriver"],
    )
    .ok_or_else(|| {
        DriverError::Missing(
            "chromedriver is not installed (Debian: apt-get install chromium-driver; or set \
             CHROMEDRIVER)"
                .to_owned(),
        )
    })?;
    let chromium = env_or(
        "CHROME_BIN",
        &[
            "chromium",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
        ],
    )
    .ok_or_else(|| {
        DriverError::Missing(
            "Chromium is not installed (Debian: apt-get install chromium; or set CHROME_BIN)"
                .to_owned(),
        )
    })?;
    let mut last = String::new();
    // The port is picked free and then handed over, so another process may take it in
    // between: try a few.
    for _ in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| DriverError::Failed(format!("no free port: {e}")))?
            .port();
        let log = work_dir().join(format!("chromedriver-{}.log", std::process::id()));
        let mut command = Command::new(&chromedriver);
        command
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let pid = spawn_for_life(command).map_err(|e| {
            DriverError::Failed(format!("{} cannot run: {e}", chromedriver.display()))
        })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + DRIVER_STARTUP;
        loop {
            match http_get(addr, "/status") {
                Ok(body) if body.contains("\"ready\":true") => {
                    return Ok(Driver {
                        url: format!("http://{addr}"),
                        chromium,
                    });
                }
                Ok(body) => last = format!("not ready: {body}"),
                Err(error) => last = error.to_string(),
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: a plain kill(2) of the chromedriver started above, which did not work.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        last = format!(
            "{} did not get ready on port {port} within {DRIVER_STARTUP:?} ({last}); log: {}",
            chromedriver.display(),
            log.display()
        );
    }
    Err(DriverError::Failed(last))
}

/// Starts `command` so that it dies with this test process: the child is spawned from a
/// thread that lives as long as the process, with `PR_SET_PDEATHSIG` (which fires when
/// the spawning *thread* ends, so not from a test's own thread).
fn spawn_for_life(mut command: Command) -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt;
    // SAFETY: `prctl` is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Keep>>> = OnceLock::new();
    type Keep = (Command, mpsc::Sender<std::io::Result<u32>>);
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Keep>();
        std::thread::Builder::new()
            .name("browser-process-keeper".to_owned())
            .spawn(move || {
                let mut children: Vec<Child> = Vec::new();
                for (mut command, answer) in rx {
                    let spawned = command.spawn().map(|child| {
                        let id = child.id();
                        children.push(child);
                        id
                    });
                    let _ = answer.send(spawned);
                }
                // Never reached while the process lives: the test harness holds the sender.
            })
            .expect("spawn the keeper thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    keeper
        .lock()
        .unwrap()
        .send((command, tx))
        .expect("keeper thread alive");
    rx.recv().expect("keeper answered")
}

/// A blocking `GET path`: the response head and the body of its `Content-Length` (or
/// what came until the peer closed), bounded by 2 s timeouts.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|n| n.trim().parse::<usize>().ok());
            if length.is_some_and(|length| answer.len() >= end + 4 + length) {
                break;
            }
        }
        match stream.read(&mut chunk)? {
            0 => break,
            n => answer.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The Chromium flags of every session: headless, and fit for a container (no
/// sandbox as root, /tmp instead of a small /dev/shm).
const CHROMIUM_ARGS: [&str; 9] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--window-size=1024,768",
];

/// A new browser session with the common flags and `extra` ones.
async fn new_session(driver: &Driver, extra: &[String]) -> Client {
    let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|&a| a.to_owned()).collect();
    args.extend(extra.iter().cloned());
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": driver.chromium.to_string_lossy(),
            "args": args,
        },
        "timeouts": {
            "script": SCRIPT_TIMEOUT.as_millis() as u64,
            "pageLoad": 30_000,
        },
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let capabilities: Capabilities = capabilities;
    let mut builder = ClientBuilder::new(HttpConnector::new());
    builder.capabilities(capabilities);
    match tokio::time::timeout(SESSION_STARTUP, builder.connect(&driver.url)).await {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => panic!("no browser session from chromedriver: {error}"),
        Err(_) => panic!("no browser session within {SESSION_STARTUP:?}"),
    }
}

/// Runs `body` with `count` browser sessions (each with the common flags and `extra`),
/// all of it within `limit`; the sessions are closed whatever happens (a panic in
/// `body` is raised again after that). Returns `false` when the test must return
/// because no browser is installed (see [`driver`]).
pub async fn with_browsers<F, Fut>(count: usize, extra: &[String], limit: Duration, body: F) -> bool
where
    F: FnOnce(Vec<Client>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(driver) = driver() else {
        return false;
    };
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..count {
        let session = tokio::spawn({
            let extra = extra.to_vec();
            async move { new_session(driver, &extra).await }
        });
        match session.await {
            Ok(client) => clients.push(client),
            Err(error) => {
                close_all(clients).await;
                std::panic::resume_unwind(error.into_panic());
            }
        }
    }
    let task = tokio::spawn(body(clients.clone()));
    let abort = task.abort_handle();
    let outcome = tokio::time::timeout(limit, task).await;
    close_all(clients).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Ok(Err(error)) => panic!("the browser task failed: {error}"),
        Err(_) => {
            abort.abort();
            panic!(
                "the browser part did not finish within {limit:?} (started {:?} ago)",
                started.elapsed()
            );
        }
    }
    true
}

/// Ends browser sessions (their Chromium exits), each within 15 s.
async fn close_all(clients: Vec<Client>) {
    for client in clients {
        if tokio::time::timeout(Duration::from_secs(15), client.close())
            .await
            .is_err()
        {
            eprintln!("a browser session did not close within 15 s");
        }
    }
}

/// A multi-threaded tokio runtime for one test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Opens `url` in the browser.
#[track_caller]
pub fn goto<'a>(client: &'a Client, url: &'a str) -> impl Future<Output = ()> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        if let Err(error) = client.goto(url).await {
            panic!("{caller}: cannot open {url}: {error}");
        }
    }
}

/// Runs `body`, the body of an `async` JavaScript function, in the page and returns
/// what it returns (JSON). A rejection (a thrown error) fails the test with its message.
pub async fn run_js(client: &Client, body: &str) -> Value {
    let script = format!(
        "const done = arguments[arguments.length - 1];\n\
         (async () => {{\n{body}\n}})().then(\
           (value) => done({{ ok: value === undefined ? null : value }}),\
           (error) => done({{ error: String(error && error.stack || error) }}));"
    );
    match client.execute_async(&script, Vec::new()).await {
        Ok(Value::Object(mut answer)) => {
            if let Some(error) = answer.remove("error") {
                panic!("the page script failed: {}", error.as_str().unwrap_or("?"));
            }
            answer.remove("ok").unwrap_or(Value::Null)
        }
        Ok(other) => panic!("unexpected answer from the page script: {other}"),
        Err(error) => panic!("the page script did not complete: {error}"),
    }
}

/// The value of the JavaScript expression `expression` in the page.
pub async fn eval(client: &Client, expression: &str) -> Value {
    match client
        .execute(&format!("return ({expression});"), Vec::new())
        .await
    {
        Ok(value) => value,
        Err(error) => panic!("cannot evaluate {expression}: {error}"),
    }
}

/// Polls the JavaScript expression `condition` until it is truthy, for at most
/// `limit`; on timeout fails with `what` and the value of `context` (an expression that
/// shows what the page holds).
pub async fn wait_until(
    client: &Client,
    condition: &str,
    limit: Duration,
    what: &str,
    context: &str,
) {
    let deadline = Instant::now() + limit;
    let check = format!("return !!({condition});");
    loop {
        match client.execute(&check, Vec::new()).await {
            Ok(Value::Bool(true)) => return,
            Ok(_) => {}
            Err(error) => panic!("{what}: cannot evaluate {condition}: {error}"),
        }
        if Instant::now() >= deadline {
            let shown = eval(client, context).await;
            panic!("{what}: not within {limit:?} ({condition}); the page shows: {shown}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A JavaScript string literal of `text`.
pub fn js_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// A small HTML page for the script-driven tests (the scripts come through WebDriver).
pub const BLANK_PAGE: &str =
    "<!doctype html><meta charset=\"utf-8\"><title>ringws browser test</title><p>ringws\n";

#[test]
fn chromedriver_reports_ready() {
    // The shared driver starts (or the whole binary skips, saying why).
    if let Some(driver) = driver() {
        let addr: SocketAddr = driver.url["http://".len()..]
            .parse()
            .expect("driver address");
        let status = http_get(addr, "/status").expect("chromedriver answers");
        assert!(status.contains("\"ready\":true"), "{status}");
    }
}
