//! Restarts that drop nobody (issue 16, part 2): `ringws serve --handover PATH`
//! replaced by a new process started with the same flags while clients keep connecting
//! (no attempt refused or reset, every old WebSocket closed 1001 "server restarting",
//! the new process on the same port, the old one exiting 0); systemd socket activation
//! (`LISTEN_FDS`/`LISTEN_PID`, the socket at descriptor 3, a connection queued before
//! the server starts); and, in process, the library's pieces: a restart stops accepting
//! without losing what waits in the listening socket's queue, and successors with other
//! shard counts serve every handed-over socket. The backend follows `RINGWS_BACKEND`
//! (children inherit it), so `.ci/run` runs these on both.
//!
//! Loopback only; every wait is bounded; only the processes a test started are stopped,
//! by their own handle.

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ringws::handover::{self, Handover};
use ringws::proto::{encode_frame, OpCode};
use ringws::sockjs::SockJsOptions;
use ringws::{Conn, Handler, Message, Server};

/// How long a process has to come up, hand over, or go.
const PATIENCE: Duration = Duration::from_secs(30);

/// The restart grace the binary tests give (`--shutdown-timeout`).
const GRACE: &str = "1s";

// ---------------------------------------------------------------------------------
// A tiny blocking WebSocket client that reports failures instead of panicking, so the
// client loops can count them.

/// Connects and upgrades `path`; any failure (refused, reset, a non-101 answer) is an
/// error naming the stage.
fn ws_connect(addr: SocketAddr, path: &str) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e} ({:?})", e.kind()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("request: {e} ({:?})", e.kind()))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => return Err(format!("EOF in the answer head after {} bytes", head.len())),
            Err(e) => return Err(format!("answer head: {e} ({:?})", e.kind())),
        }
    }
    if !head.starts_with(b"HTTP/1.1 101 ") {
        return Err(format!(
            "upgrade refused: {:?}",
            String::from_utf8_lossy(&head)
        ));
    }
    Ok(stream)
}

fn send(stream: &mut TcpStream, opcode: OpCode, payload: &[u8]) -> io::Result<()> {
    let mut out = Vec::new();
    encode_frame(&mut out, opcode, true, payload, Some([1, 2, 3, 4]));
    stream.write_all(&out)
}

/// Reads one (unfragmented, unmasked) server frame: opcode and payload.
fn read_frame(stream: &mut TcpStream) -> io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            stream.read_exact(&mut n)?;
            u16::from_be_bytes(n) as usize
        }
        127 => {
            let mut n = [0u8; 8];
            stream.read_exact(&mut n)?;
            u64::from_be_bytes(n) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    Ok((head[0] & 0x0f, payload))
}

/// The next text message, skipping pings.
fn read_text(stream: &mut TcpStream) -> Result<String, String> {
    loop {
        match read_frame(stream) {
            Ok((0x1, payload)) => return String::from_utf8(payload).map_err(|e| e.to_string()),
            Ok((0x9, _)) => continue,
            Ok((0x8, payload)) => return Err(format!("closed: {}", describe_close(&payload))),
            Ok((op, _)) => return Err(format!("unexpected opcode {op:#x}")),
            Err(e) => return Err(format!("read: {e} ({:?})", e.kind())),
        }
    }
}

fn describe_close(payload: &[u8]) -> String {
    match payload {
        [a, b, reason @ ..] => format!(
            "{} {:?}",
            u16::from_be_bytes([*a, *b]),
            String::from_utf8_lossy(reason)
        ),
        _ => "no code".into(),
    }
}

/// Echoes `text` and checks the answer.
fn echo(stream: &mut TcpStream, text: &str) -> Result<(), String> {
    send(stream, OpCode::Text, text.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let answer = read_text(stream)?;
    if answer == text {
        Ok(())
    } else {
        Err(format!("echoed {answer:?} for {text:?}"))
    }
}

/// Closes with 1000 and waits for the server's close frame.
fn close(mut stream: TcpStream) -> Result<(), String> {
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    send(&mut stream, OpCode::Close, &payload).map_err(|e| format!("close: {e}"))?;
    loop {
        match read_frame(&mut stream) {
            Ok((0x8, _)) => return Ok(()),
            Ok(_) => continue,
            Err(e) => return Err(format!("close reply: {e} ({:?})", e.kind())),
        }
    }
}

/// Reads until the server's close frame; returns its code and reason. Answers it.
fn await_close(stream: &mut TcpStream, within: Duration) -> Result<(u16, String), String> {
    stream
        .set_read_timeout(Some(within))
        .map_err(|e| e.to_string())?;
    loop {
        match read_frame(stream) {
            Ok((0x8, payload)) => {
                let _ = send(stream, OpCode::Close, &payload[..payload.len().min(2)]);
                return match payload.as_slice() {
                    [a, b, reason @ ..] => Ok((
                        u16::from_be_bytes([*a, *b]),
                        String::from_utf8_lossy(reason).into_owned(),
                    )),
                    _ => Err("a close frame without a code".into()),
                };
            }
            Ok(_) => continue,
            Err(e) => return Err(format!("no close frame: {e} ({:?})", e.kind())),
        }
    }
}

// ---------------------------------------------------------------------------------
// Clients that keep connecting and echoing while a restart happens.

struct Churn {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Churn {
    /// `clients` threads, each connecting, upgrading, echoing and closing in a loop
    /// (with a short pause, so that the count stays bounded) until stopped.
    fn start(addr: SocketAddr, clients: usize) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|client| {
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                thread::spawn(move || {
                    let mut round = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        round += 1;
                        let text = format!("client {client} round {round}");
                        let outcome = ws_connect(addr, "/echo").and_then(|mut stream| {
                            echo(&mut stream, &text)?;
                            close(stream)
                        });
                        match outcome {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(error) => failures.lock().unwrap().push(format!("{text}: {error}")),
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Churn {
            stop,
            ok,
            failures,
            threads,
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `more` further attempts succeeded (bounded).
    fn wait_for(&self, more: usize) {
        let target = self.ok() + more;
        let deadline = Instant::now() + PATIENCE;
        while self.ok() < target {
            assert!(Instant::now() < deadline, "the clients stopped succeeding");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the clients; returns the successes and the failures.
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("client thread");
        }
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

// ---------------------------------------------------------------------------------
// `ringws serve` children.

/// A `ringws serve` child, killed if still running when dropped (a failed test).
struct Serve {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Serve {
    fn spawn(mut command: Command) -> Serve {
        command.stderr(Stdio::piped()).stdout(Stdio::null());
        let mut child = command.spawn().expect("spawn ringws");
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let log = Arc::new(Mutex::new(String::new()));
        let kept = log.clone();
        // Keeps the pipe drained for the life of the child.
        thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut log = kept.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Serve { child, log }
    }

    /// `ringws serve ARGS` (the binary under test).
    fn start(args: &[&str]) -> Serve {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringws"));
        command.arg("serve").args(args).env("RUST_LOG", "info");
        Serve::spawn(command)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits for a log line holding `marker` (logged at any time since the start);
    /// returns it.
    fn line(&self, marker: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self.log().lines().find(|line| line.contains(marker)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no {marker:?} from ringws (pid {}):\n{}",
                self.pid(),
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The address the child serves (its "serving ws://ADDR/echo" line).
    fn addr(&self) -> SocketAddr {
        let line = self.line("serving ws://");
        let rest = line.split("serving ws://").nth(1).expect("marker");
        rest.split("/echo")
            .next()
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the child to exit by itself.
    fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ringws (pid {}) did not exit:\n{}",
                self.pid(),
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit.
    fn terminate(&mut self) -> ExitStatus {
        // SAFETY: kill with a live child's pid (not yet reaped) and a valid signal.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.exit()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[track_caller]
fn assert_exited_0(status: ExitStatus, serve: &Serve) {
    assert!(
        status.success(),
        "ringws exited with {status:?} (signal {:?}):\n{}",
        status.signal(),
        serve.log()
    );
}

/// A fresh directory for a test's Unix socket.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringws-restart-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Opens `n` WebSocket connections that stay open, each echoing once.
fn old_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut stream = ws_connect(addr, "/echo").expect("old connection");
            echo(&mut stream, &format!("old {i}")).expect("old connection echoes");
            stream
        })
        .collect()
}

/// Every old connection gets close 1001 "server restarting" (and answers it).
#[track_caller]
fn expect_restart_closes(old: &mut [TcpStream]) {
    for (i, stream) in old.iter_mut().enumerate() {
        let close = await_close(stream, PATIENCE).unwrap_or_else(|e| panic!("old {i}: {e}"));
        assert_eq!(close, (1001, "server restarting".to_owned()), "old {i}");
    }
}

#[test]
fn handover_replaces_serve_without_refusing_or_resetting_anyone() {
    let dir = scratch("cli");
    let path = dir.join("handover.sock");
    let path_arg = path.to_str().expect("utf-8 path").to_owned();
    let args = [
        "--bind",
        "127.0.0.1:0",
        "--shards",
        "2",
        "--shutdown-timeout",
        GRACE,
        "--handover",
        &path_arg,
    ];
    let mut first = Serve::start(&args);
    let addr = first.addr();
    first.line("waiting for a successor");
    let mut old = old_connections(addr, 12);
    let churn = Churn::start(addr, 4);
    churn.wait_for(20);

    // The second generation, same flags: it takes the sockets, the first drains.
    let mut second = Serve::start(&args);
    assert_eq!(second.addr(), addr, "the successor serves the same port");
    second.line(&format!("took over from process {}", first.pid()));
    expect_restart_closes(&mut old);
    assert_exited_0(first.exit(), &first);
    churn.wait_for(20);

    // The third generation takes over from the second the same way (its own PATH).
    second.line("waiting for a successor");
    let mut old = old_connections(addr, 4);
    let mut third = Serve::start(&args);
    assert_eq!(third.addr(), addr);
    third.line(&format!("took over from process {}", second.pid()));
    expect_restart_closes(&mut old);
    assert_exited_0(second.exit(), &second);
    churn.wait_for(20);

    let (ok, failures) = churn.finish();
    eprintln!(
        "{ok} connect-echo-close rounds across two restarts, {} failed; {}",
        failures.len(),
        third.line("backend)")
    );
    assert!(
        failures.is_empty(),
        "{} of {} attempts failed during the restarts, first: {:?}\nold:\n{}\nnew:\n{}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)],
        first.log(),
        third.log()
    );
    // The last generation serves, then stops on SIGTERM and removes its socket file.
    let mut stream = ws_connect(addr, "/echo").expect("the last generation serves");
    echo(&mut stream, "still here").expect("echo");
    drop(stream);
    third.line("waiting for a successor");
    assert_exited_0(third.terminate(), &third);
    assert!(
        !path.exists(),
        "the last generation's socket file is left behind"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ringws serve` through `sh -c 'LISTEN_PID=$$ exec ringws serve ...'`, with
/// `socket` as descriptor 3 and `LISTEN_FDS=1`: systemd's side of socket activation.
fn activated(socket: &TcpListener, args: &[&str]) -> Serve {
    let fd = socket.as_raw_fd();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" serve "$@""#)
        .arg(env!("CARGO_BIN_EXE_ringws"))
        .args(args)
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "ringws")
        .env("RUST_LOG", "info");
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (dup2, fcntl) on descriptors it names.
    unsafe {
        command.pre_exec(move || {
            if fd == 3 {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) != 3 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Serve::spawn(command)
}

#[test]
fn socket_activation_serves_the_passed_socket_and_hands_it_over() {
    let socket = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    let bind = addr.to_string();
    // A client that connects before any server runs waits in the socket's queue.
    let mut early = TcpStream::connect(addr).expect("queued connect");
    early
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    let request = format!(
        "GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    early.write_all(request.as_bytes()).expect("request");

    let dir = scratch("activation");
    let path = dir.join("handover.sock");
    let path_arg = path.to_str().expect("utf-8 path").to_owned();
    // --bind names the socket's own address: a server that bound instead of taking the
    // socket would fail (the test's socket holds the port without SO_REUSEPORT).
    let args = [
        "--bind",
        &bind,
        "--shards",
        "2",
        "--shutdown-timeout",
        GRACE,
        "--handover",
        &path_arg,
    ];
    let mut first = activated(&socket, &args);
    assert_eq!(first.addr(), addr, "serves the activated socket");
    // The queued connection is served, not reset.
    let mut head = [0u8; 12];
    early
        .read_exact(&mut head)
        .expect("the queued request is answered");
    assert_eq!(&head, b"HTTP/1.1 101");
    drop(early);
    let mut stream = ws_connect(addr, "/echo").expect("connect");
    echo(&mut stream, "activated").expect("echo");
    let mut old = vec![stream];

    // A successor started without LISTEN_FDS takes the socket over from it.
    first.line("waiting for a successor");
    let churn = Churn::start(addr, 2);
    churn.wait_for(10);
    let mut second = Serve::start(&args);
    assert_eq!(second.addr(), addr);
    second.line(&format!("took over from process {}", first.pid()));
    expect_restart_closes(&mut old);
    assert_exited_0(first.exit(), &first);
    churn.wait_for(10);
    let (ok, failures) = churn.finish();
    assert!(
        failures.is_empty(),
        "{} of {} attempts failed: {:?}\n{}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)],
        second.log()
    );
    second.line("waiting for a successor");
    assert_exited_0(second.terminate(), &second);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn listen_fds_ignores_another_process_s_descriptors() {
    // LISTEN_PID names another process (here: a parent's variables inherited), so
    // nothing is taken and descriptor 3 is left alone; the variables are removed.
    std::env::set_var("LISTEN_PID", "1");
    std::env::set_var("LISTEN_FDS", "1");
    assert!(handover::listen_fds().expect("no error").is_empty());
    assert!(std::env::var_os("LISTEN_PID").is_none());
    assert!(std::env::var_os("LISTEN_FDS").is_none());
}

// ---------------------------------------------------------------------------------
// The library's pieces, in process.

/// Greets with its generation's name on open, then echoes.
struct Greeter(&'static str);

impl Handler for Greeter {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        conn.send_text(self.0);
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        if let Message::Text(text) = message {
            conn.send_text(text);
        }
    }
}

fn generation(name: &'static str, shards: usize, listeners: Vec<TcpListener>) -> Server {
    let builder = Server::builder()
        .shards(shards)
        .handshake_timeout(Duration::from_secs(60))
        .websocket("/echo", move || Greeter(name))
        .sockjs("/sj", move || Greeter(name), SockJsOptions::default());
    let builder = if listeners.is_empty() {
        builder.bind("127.0.0.1:0")
    } else {
        builder.listeners(listeners)
    };
    builder.build().expect("build")
}

/// Reads until what arrived holds `marker` (within the stream's read timeout).
#[track_caller]
fn read_until(stream: &mut TcpStream, marker: &str) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(marker) {
        match stream.read(&mut chunk) {
            Ok(0) => panic!(
                "closed before {marker:?}: {:?}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("no {marker:?} ({e}): {:?}", String::from_utf8_lossy(&seen)),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Connects `n` times; every connection must be greeted by `name`.
#[track_caller]
fn all_served_by(addr: SocketAddr, n: usize, name: &str) {
    for i in 0..n {
        let mut stream = ws_connect(addr, "/echo").unwrap_or_else(|e| panic!("#{i}: {e}"));
        assert_eq!(read_text(&mut stream).as_deref(), Ok(name), "#{i}");
        echo(&mut stream, "hi").unwrap_or_else(|e| panic!("#{i}: {e}"));
    }
}

#[test]
fn a_restart_stops_accepting_but_leaves_the_queue_to_the_successor() {
    let socket = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    // The successor's copy of the socket, held while the first server runs.
    let spare = socket.try_clone().expect("dup");
    let first = generation("first", 2, vec![socket]).start().expect("start");
    let mut open = ws_connect(addr, "/echo").expect("connect");
    assert_eq!(read_text(&mut open).as_deref(), Ok("first"));
    // A SockJS session (xhr polling, on a kept-alive connection) is closed the same way.
    let mut session = TcpStream::connect(addr).expect("connect");
    session.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let poll = b"POST /sj/000/restart/xhr HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n";
    session.write_all(poll).expect("open");
    read_until(&mut session, "o\n");
    session.write_all(poll).expect("poll");
    read_until(&mut session, r#"a["first"]"#);

    let grace = Duration::from_secs(3);
    let restarting = Instant::now();
    first.handle().restart_within(grace);
    // The stop takes a loop turn; then nothing more is accepted by the first server.
    thread::sleep(Duration::from_millis(300));
    let mut waiting: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).expect("connect: the socket listens");
            stream
                .set_read_timeout(Some(Duration::from_millis(300)))
                .expect("timeout");
            let request = format!(
                "GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).expect("request");
            stream
        })
        .collect();
    // Queued, not answered (nobody accepts), not reset.
    let mut byte = [0u8; 1];
    let silent = waiting[0].read(&mut byte);
    assert!(
        matches!(&silent, Err(e) if common::is_timeout(e)),
        "a connection made after the stop was answered: {silent:?}"
    );
    // The open connection is still served during the grace.
    echo(&mut open, "during the grace").expect("served during the grace");
    // A poll waits on the first server's session.
    session.write_all(poll).expect("poll");

    // The successor starts on the same socket and takes the queue.
    let second = generation("second", 1, vec![spare]).start().expect("start");
    for (i, stream) in waiting.iter_mut().enumerate() {
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            stream
                .read_exact(&mut byte)
                .unwrap_or_else(|e| panic!("#{i}: {e}"));
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101 "), "#{i}");
        assert_eq!(read_text(stream).as_deref(), Ok("second"), "queued #{i}");
    }
    all_served_by(addr, 10, "second");

    // After the grace, the first server's connection gets its 1001, then it stops.
    let close = await_close(&mut open, PATIENCE).expect("close");
    assert_eq!(close, (1001, "server restarting".to_owned()));
    assert!(restarting.elapsed() >= grace, "closed before the grace");
    read_until(&mut session, r#"c[1001,"Server restarting"]"#);
    first.join().expect("the first server stops cleanly");
    all_served_by(addr, 5, "second");
    second.handle().shutdown();
    second.join().expect("stop");
}

#[test]
fn successors_with_other_shard_counts_serve_every_socket() {
    let dir = scratch("shards");
    let path = dir.join("handover.sock");
    // Three shards bound here: three SO_REUSEPORT sockets the kernel spreads over.
    let first = generation("first", 3, Vec::new());
    let addr = first.local_addr();
    let successors = Handover::bind(&path, &first).expect("bind the hand-over socket");
    let first = first.start().expect("start");
    successors
        .spawn(first.handle(), Duration::from_millis(200))
        .expect("spawn");
    all_served_by(addr, 30, "first");
    let mut open = ws_connect(addr, "/echo").expect("connect");
    assert_eq!(read_text(&mut open).as_deref(), Ok("first"));

    // Two shards for three sockets: one shard serves two of them.
    let mut predecessor = handover::take_listeners(&path)
        .expect("hand-over")
        .expect("a predecessor answers");
    assert_eq!(predecessor.pid(), std::process::id());
    let sockets = predecessor.take_listeners();
    assert_eq!(sockets.len(), 3, "every socket is handed over");
    let second = generation("second", 2, sockets);
    assert_eq!(second.local_addr().port(), addr.port());
    let successors = Handover::bind(&path, &second).expect("bind after the first");
    let second = second.start().expect("start");
    successors
        .spawn(second.handle(), Duration::from_millis(200))
        .expect("spawn");
    predecessor.release().expect("the first confirms");
    let close = await_close(&mut open, PATIENCE).expect("close");
    assert_eq!(close, (1001, "server restarting".to_owned()));
    first.join().expect("the first stops");
    // Every one of the three sockets is served: a socket nobody accepted from would
    // leave about a third of these hanging.
    all_served_by(addr, 30, "second");

    // Four shards for three sockets: one socket is served by two shards.
    let mut predecessor = handover::take_listeners(&path)
        .expect("hand-over")
        .expect("the second answers");
    let third = generation("third", 4, predecessor.take_listeners());
    let third = third.start().expect("start");
    predecessor.release().expect("the second confirms");
    second.join().expect("the second stops");
    all_served_by(addr, 30, "third");
    third.handle().shutdown();
    third.join().expect("stop");
    // The second removed its socket file when it handed over (the third bound none
    // to replace it): nobody answers there now.
    assert!(!path.exists());
    assert!(handover::take_listeners(&path).expect("no error").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
