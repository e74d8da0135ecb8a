//! Server hardening: the idle timeout with automatic pings, the connection limit and
//! graceful shutdown with a deadline. Every wait is bounded by socket read timeouts.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    echo_server_with, expect_eof_within, expect_silence, raw_connect, raw_upgrade, read_to_close,
    refusal, send_frame, FrameReader, Received as Got,
};
use ringws::proto::OpCode;
use ringws::{CloseReason, Conn, ConnHandle, Handler, Message};

/// The idle timeout of these tests: the ping comes after half of it, and a client then
/// has the other half to answer. Wide enough that a loaded 2-core machine answers in
/// time; short enough that a few of them fit in a test.
const IDLE: Duration = Duration::from_secs(1);

#[test]
fn idle_client_that_answers_pings_stays_open() {
    let server = echo_server_with(|b| b.shards(1).idle_timeout(IDLE));
    let mut client = raw_upgrade(server.local_addr(), "/echo");
    let mut reader = FrameReader::with_pings();
    let started = Instant::now();
    let mut pings = 0;
    // Several idle timeouts pass; every ping is answered, so the connection lives on
    // (a server whose timer ignored the pongs would close it after one IDLE).
    while started.elapsed() < IDLE * 4 {
        match reader.next(&mut client) {
            Got::Ping(payload) => {
                assert_eq!(payload, Vec::<u8>::new(), "the automatic ping is empty");
                pings += 1;
                send_frame(&mut client, OpCode::Pong, true, b"");
            }
            other => panic!("expected only pings, got {other:?} after {pings} pings"),
        }
    }
    assert!(pings >= 3, "only {pings} pings in {:?}", IDLE * 4);
    send_frame(&mut client, OpCode::Text, true, b"still here");
    loop {
        match reader.next(&mut client) {
            Got::Ping(_) => send_frame(&mut client, OpCode::Pong, true, b""),
            got => {
                assert_eq!(got, Got::Text("still here".into()));
                break;
            }
        }
    }
}

#[test]
fn idle_client_that_never_answers_is_closed_with_1001() {
    // A close timeout far beyond PROMPT: the idle close must not wait for a reply.
    let server = echo_server_with(|b| {
        b.shards(1)
            .idle_timeout(IDLE)
            .close_timeout(Duration::from_secs(30))
    });
    let mut client = raw_upgrade(server.local_addr(), "/echo");
    let mut reader = FrameReader::with_pings();
    assert_eq!(reader.next(&mut client), Got::Ping(Vec::new()));
    assert_eq!(
        reader.next(&mut client),
        Got::Close(Some(1001), "idle timeout".into())
    );
    // The idle close does not wait for the peer's reply.
    expect_eof_within(&mut client, PROMPT);
}

#[test]
fn zero_idle_timeout_disables_pings() {
    // Control: with IDLE set, a silent client is pinged after IDLE / 2.
    let timed = echo_server_with(|b| b.shards(1).idle_timeout(IDLE));
    let mut control = raw_upgrade(timed.local_addr(), "/echo");
    assert_eq!(
        FrameReader::with_pings().next(&mut control),
        Got::Ping(Vec::new())
    );
    // ZERO set after IDLE must switch the timer off, not leave IDLE in place (nor ping
    // at once): nothing comes over four times the control's ping delay, and the
    // connection still works. (That ZERO means "none" rather than the 120 s default
    // is pinned by the crate's `defaults_tests`.)
    let server = echo_server_with(|b| b.shards(1).idle_timeout(IDLE).idle_timeout(Duration::ZERO));
    let mut client = raw_upgrade(server.local_addr(), "/echo");
    expect_silence(&mut client, IDLE * 2);
    send_frame(&mut client, OpCode::Text, true, b"awake");
    assert_eq!(
        FrameReader::with_pings().next(&mut client),
        Got::Text("awake".into())
    );
}

/// Sends "tick" every [`TICK`] from a thread of its own through a [`ConnHandle`], from
/// the open until the close (at most [`MAX_TICKS`]), and never reads anything.
struct Ticker {
    stop: Arc<AtomicBool>,
}

const TICK: Duration = Duration::from_millis(50);
const MAX_TICKS: u32 = 400;

impl Handler for Ticker {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let (handle, stop): (ConnHandle, _) = (conn.handle(), Arc::clone(&self.stop));
        std::thread::spawn(move || {
            for _ in 0..MAX_TICKS {
                if stop.load(Ordering::SeqCst) || handle.send_text("tick").is_err() {
                    return;
                }
                std::thread::sleep(TICK);
            }
        });
    }

    fn on_message(&mut self, _conn: &mut Conn<'_>, _message: Message<'_>) {}

    fn on_close(&mut self, _conn: &mut Conn<'_>, _reason: CloseReason) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn sending_does_not_reset_the_idle_timer() {
    // README: the idle timeout counts bytes *received*; sending does not restart it.
    // The server sends every TICK; the client sends nothing, not even a pong.
    let server = common::builder()
        .shards(1)
        .idle_timeout(IDLE)
        .websocket("/tick", || Ticker {
            stop: Arc::default(),
        })
        .build()
        .expect("build")
        .start()
        .expect("start");
    let mut client = raw_upgrade(server.local_addr(), "/tick");
    let mut reader = FrameReader::with_pings();
    let started = Instant::now();
    let (mut before_ping, mut after_ping, mut pinged) = (0u32, 0u32, false);
    loop {
        match reader.next(&mut client) {
            Got::Text(text) => {
                assert_eq!(text, "tick");
                *if pinged {
                    &mut after_ping
                } else {
                    &mut before_ping
                } += 1;
            }
            Got::Ping(payload) => {
                assert!(!pinged, "a second ping");
                assert_eq!(payload, Vec::<u8>::new());
                pinged = true;
            }
            Got::Close(code, reason) => {
                assert_eq!((code, reason.as_str()), (Some(1001), "idle timeout"));
                break;
            }
            other => panic!("expected ticks, a ping, then the idle close: {other:?}"),
        }
        // The ticks go on for 20 s: a timer restarted by them would never fire.
        assert!(
            started.elapsed() < IDLE * 8,
            "no idle close after {:?} ({before_ping} ticks, ping: {pinged})",
            started.elapsed()
        );
    }
    assert!(pinged, "closed without the ping at half the timeout");
    // The server was sending while the timer ran, in both halves.
    assert!(before_ping >= 2, "only {before_ping} ticks before the ping");
    assert!(after_ping >= 1, "no tick between the ping and the close");
    assert_eq!(reader.next(&mut client), Got::Eof);
}

/// Sends an upgrade request on a fresh connection: the upgraded stream, or the whole
/// answer of a refusal.
fn try_upgrade(addr: std::net::SocketAddr) -> Result<TcpStream, String> {
    use std::io::Write;
    let mut stream = raw_connect(addr);
    let request = format!(
        "GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).expect("status line");
    if head.starts_with(b"HTTP/1.1 101") {
        common::read_head(&mut stream);
        return Ok(stream);
    }
    Err(format!(
        "{}{}",
        String::from_utf8_lossy(&head),
        read_to_close(&mut stream)
    ))
}

/// The whole answer to a connection over `max_connections`.
fn too_many() -> String {
    refusal("503 Service Unavailable", &[], "too many connections")
}

#[test]
fn connections_over_the_limit_get_503() {
    let server = echo_server_with(|b| b.shards(1).max_connections(2));
    let addr = server.local_addr();
    let mut first = raw_upgrade(addr, "/echo");
    let _second = raw_upgrade(addr, "/echo");
    let refused = try_upgrade(addr).expect_err("the third connection was upgraded");
    assert_eq!(refused, too_many());
    // Closing one frees its slot once the server has closed the socket.
    send_frame(&mut first, OpCode::Close, true, &1000u16.to_be_bytes());
    let mut reader = FrameReader::with_pings();
    assert_eq!(
        reader.next(&mut first),
        Got::Close(Some(1000), String::new())
    );
    assert_eq!(reader.next(&mut first), Got::Eof);
    let started = Instant::now();
    loop {
        match try_upgrade(addr) {
            Ok(_) => break,
            Err(answer) => assert_eq!(answer, too_many()),
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the closed connection's slot never came back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn max_connections_is_shared_among_shards() {
    // ceil(3 / 2) = 2 per shard: at least 3 connections are served in all.
    let server = echo_server_with(|b| b.shards(2).max_connections(3));
    let addr = server.local_addr();
    let mut open = Vec::new();
    let started = Instant::now();
    while open.len() < 3 {
        match try_upgrade(addr) {
            Ok(stream) => open.push(stream),
            Err(answer) => assert_eq!(answer, too_many()),
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} served",
            open.len()
        );
    }
    // Every shard is now full or one more fits: never more than 4 in all.
    for _ in 0..20 {
        if let Ok(stream) = try_upgrade(addr) {
            open.push(stream);
        }
    }
    assert!(open.len() <= 4, "{} connections served", open.len());
}

#[test]
fn graceful_shutdown_waits_for_the_close_reply() {
    let server = echo_server_with(|b| b.shards(1));
    let mut client = raw_upgrade(server.local_addr(), "/echo");
    let grace = Duration::from_secs(20);
    let shutdown = std::thread::spawn(move || {
        let started = Instant::now();
        server.shutdown_within(grace).expect("shutdown");
        started.elapsed()
    });
    let mut reader = FrameReader::with_pings();
    assert_eq!(
        reader.next(&mut client),
        Got::Close(Some(1001), "server shutting down".into())
    );
    send_frame(&mut client, OpCode::Close, true, &1001u16.to_be_bytes());
    assert_eq!(reader.next(&mut client), Got::Eof);
    let took = shutdown.join().expect("shutdown thread");
    assert!(took < grace, "shutdown waited out its deadline: {took:?}");
}

#[test]
fn graceful_shutdown_force_closes_a_silent_peer_at_the_deadline() {
    let server = echo_server_with(|b| b.shards(1));
    let mut client = raw_upgrade(server.local_addr(), "/echo");
    let mut answering = raw_upgrade(server.local_addr(), "/echo");
    let grace = Duration::from_millis(500);
    let shutdown = std::thread::spawn(move || {
        let started = Instant::now();
        server.shutdown_within(grace).expect("shutdown");
        started.elapsed()
    });
    // One peer answers at once; the silent one keeps the server waiting.
    let mut other = FrameReader::with_pings();
    assert_eq!(
        other.next(&mut answering),
        Got::Close(Some(1001), "server shutting down".into())
    );
    send_frame(&mut answering, OpCode::Close, true, &1001u16.to_be_bytes());
    assert_eq!(other.next(&mut answering), Got::Eof);
    let mut reader = FrameReader::with_pings();
    assert_eq!(
        reader.next(&mut client),
        Got::Close(Some(1001), "server shutting down".into())
    );
    // Never answered: the socket is closed at the deadline.
    assert_eq!(reader.next(&mut client), Got::Eof);
    let took = shutdown.join().expect("shutdown thread");
    assert!(took >= grace, "closed before the deadline: {took:?}");
}

/// How long a shutdown that must not wait for anyone may take on a loaded machine:
/// far below the waits the tests below would expose (30 s, 60 s).
const PROMPT: Duration = Duration::from_secs(5);

/// Runs `shutdown` on a thread: its outcome arrives on the receiver.
fn in_background(
    shutdown: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> mpsc::Receiver<std::io::Result<()>> {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(shutdown());
    });
    finished
}

#[test]
fn plain_shutdown_does_not_wait_for_close_replies() {
    // A close timeout of 30 s: a shutdown that waited for the silent peer's close reply
    // (or for the close timer) would take it all.
    let server = echo_server_with(|b| b.shards(1).close_timeout(Duration::from_secs(30)));
    let mut client = raw_upgrade(server.local_addr(), "/echo");
    let finished = in_background(move || server.shutdown());
    finished
        .recv_timeout(PROMPT)
        .expect("shutdown() waited for the peer's close reply")
        .expect("shutdown");
    client.set_read_timeout(Some(PROMPT)).expect("timeout");
    let mut reader = FrameReader::with_pings();
    assert_eq!(
        reader.next(&mut client),
        Got::Close(Some(1001), "server shutting down".into())
    );
    expect_eof_within(&mut client, PROMPT);
}

#[test]
fn a_second_shutdown_without_grace_closes_at_once() {
    let server = echo_server_with(|b| b.shards(1));
    let handle = server.handle();
    let mut client = raw_upgrade(server.local_addr(), "/echo");
    let finished = in_background(move || server.shutdown_within(Duration::from_secs(60)));
    let mut reader = FrameReader::with_pings();
    assert_eq!(
        reader.next(&mut client),
        Got::Close(Some(1001), "server shutting down".into())
    );
    // The peer stays silent; the operator insists. Ignoring it would keep the socket
    // open for the first shutdown's 60 s.
    handle.shutdown();
    expect_eof_within(&mut client, PROMPT);
    finished
        .recv_timeout(PROMPT)
        .expect("the server still waits out the first grace")
        .expect("shutdown");
}
