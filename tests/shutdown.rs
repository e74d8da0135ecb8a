//! Graceful shutdown of what is not an open WebSocket: idle kept-alive HTTP
//! connections, a request half received (answered, or refused 503 when it asks for a
//! WebSocket or SockJS), responses still being written, and SockJS polling requests
//! waiting on a session of any shard. Every wait is bounded, and every step waits for
//! an observable signal: a shard has begun its shutdown once a WebSocket it owns has
//! received its 1001 close frame.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{
    expect_eof_within, raw_connect, read_bytes_to_close, read_head, read_to_close, send_frame,
    FrameReader, Received,
};
use ringws::proto::OpCode;
use ringws::sockjs::SockJsOptions;
use ringws::{Conn, Handler, HttpResponse, Message, RunningServer};

const BIG: usize = 24 << 20;

/// The server's shards (each test watches every one of them).
const SHARDS: usize = 2;

/// The grace of the graceful shutdowns: far longer than any step should take, so a
/// shutdown that waits it out is told apart from one that finishes when its
/// connections do.
const GRACE: Duration = Duration::from_secs(30);

/// What "at once" means on a loaded two-core machine (24 MiB transfers may run in
/// other tests beside): well below [`GRACE`] and the idle timeout.
const AT_ONCE: Duration = Duration::from_secs(10);

/// A shutdown that did not wait out [`GRACE`].
const WITHIN_GRACE: Duration = Duration::from_secs(20);

/// Tells the client the shard that owns its connection, on open.
struct ShardTeller;

impl Handler for ShardTeller {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let shard = conn.id().shard();
        conn.send_text(&shard.to_string());
    }

    fn on_message(&mut self, _conn: &mut Conn<'_>, _message: Message<'_>) {}
}

fn server(configure: impl FnOnce(ringws::Builder) -> ringws::Builder) -> RunningServer {
    // Idle connections would be closed after a minute, not by the shutdown's timing.
    let builder = common::builder()
        .shards(SHARDS)
        .handshake_timeout(Duration::from_secs(60));
    configure(builder)
        .http("/hi", |_| HttpResponse::text(200, "hi\n"))
        .http("/big", |_| HttpResponse::text(200, "b".repeat(BIG)))
        .sockjs("/sj", || common::Echo, SockJsOptions::default())
        .websocket("/echo", || common::Echo)
        .websocket("/shard", || ShardTeller)
        .build()
        .expect("build")
        .start()
        .expect("start")
}

/// One open WebSocket on every shard (new connections until each shard has one), with
/// its reader. Made after other connections sent their bytes, each also shows that its
/// shard has taken those bytes in: a shard serves its connections' events in order.
fn one_websocket_per_shard(addr: SocketAddr) -> Vec<(TcpStream, FrameReader)> {
    let mut slots: Vec<Option<(TcpStream, FrameReader)>> = (0..SHARDS).map(|_| None).collect();
    for _ in 0..200 {
        if slots.iter().all(Option::is_some) {
            break;
        }
        let mut ws = common::raw_upgrade(addr, "/shard");
        let mut reader = FrameReader::default();
        let shard: usize = match reader.next(&mut ws) {
            Received::Text(shard) => shard.parse().expect("a shard number"),
            other => panic!("expected the shard number, got {other:?}"),
        };
        if slots[shard].is_none() {
            slots[shard] = Some((ws, reader));
        }
    }
    slots
        .into_iter()
        .map(|slot| slot.expect("a WebSocket on every shard within 200 connections"))
        .collect()
}

/// Waits until every shard has begun the shutdown: each watcher gets its 1001 close.
fn await_shutdown_begun(watchers: &mut [(TcpStream, FrameReader)]) {
    for (ws, reader) in watchers.iter_mut() {
        let close = Received::Close(Some(1001), "server shutting down".into());
        assert_eq!(reader.next(ws), close);
    }
}

/// Answers the watchers' close frames: nothing of theirs keeps the grace running.
fn answer_closes(watchers: &mut [(TcpStream, FrameReader)]) {
    for (ws, _) in watchers.iter_mut() {
        send_frame(ws, OpCode::Close, true, &1001u16.to_be_bytes());
    }
}

/// Shuts `server` down with `grace` on a thread; joins to how long it took.
fn shut_down(server: RunningServer, grace: Duration) -> JoinHandle<Duration> {
    std::thread::spawn(move || {
        let started = Instant::now();
        server.shutdown_within(grace).expect("shutdown");
        started.elapsed()
    })
}

/// Reads a `Content-Length` response: (head, body).
fn response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let head = read_head(stream);
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .trim()
        .parse()
        .expect("length");
    let mut body = vec![0; len];
    stream.read_exact(&mut body).expect("body");
    (head, body)
}

/// Reads a chunked response up to its last chunk: (head, body as sent).
fn chunked_response(stream: &mut TcpStream) -> (String, String) {
    let head = read_head(stream);
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    let mut body = Vec::new();
    let mut byte = [0u8; 1];
    while !body.ends_with(b"0\r\n\r\n") {
        stream.read_exact(&mut byte).expect("the rest of the body");
        body.push(byte[0]);
    }
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// The exact answer to a request for a WebSocket or SockJS completed during the grace.
const REFUSED: &str =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
                       Content-Length: 21\r\nConnection: close\r\n\r\nserver shutting down\n";

#[test]
fn idle_keep_alive_closes_at_once_and_a_half_received_request_is_answered() {
    let server = server(|b| b);
    let addr = server.local_addr();
    let mut idle = raw_connect(addr);
    idle.write_all(b"GET /hi HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let (head, body) = response(&mut idle);
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\n"
    );
    assert_eq!(body, b"hi\n");
    let mut half = raw_connect(addr);
    half.write_all(b"GET /hi HTTP/1.1\r\nHost: t\r\n")
        .expect("write");
    // Open WebSockets that do not answer the close yet keep the grace running.
    let mut watchers = one_websocket_per_shard(addr);
    let shutdown = shut_down(server, GRACE);
    await_shutdown_begun(&mut watchers);

    // Idle: closed at once, with nothing sent.
    expect_eof_within(&mut idle, AT_ONCE);
    // The half-received request is still read, answered with `Connection: close`,
    // and the connection closes after it.
    half.write_all(b"\r\n").expect("write the rest");
    assert_eq!(
        read_to_close(&mut half),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\
         Connection: close\r\n\r\nhi\n"
    );

    answer_closes(&mut watchers);
    let took = shutdown.join().expect("shutdown thread");
    assert!(took < WITHIN_GRACE, "waited out the grace: {took:?}");
}

#[test]
fn an_upgrade_or_sockjs_request_completed_during_the_grace_gets_503() {
    let server = server(|b| b);
    let addr = server.local_addr();
    // Accepted, and half sent, before the shutdown begins.
    let mut upgrade = raw_connect(addr);
    upgrade
        .write_all(
            b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        )
        .expect("write");
    let mut sockjs = raw_connect(addr);
    sockjs
        .write_all(b"POST /sj/000/late/xhr HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n")
        .expect("write");
    let mut watchers = one_websocket_per_shard(addr);
    let shutdown = shut_down(server, GRACE);
    await_shutdown_begun(&mut watchers);

    for stream in [&mut upgrade, &mut sockjs] {
        stream.write_all(b"\r\n").expect("write the rest");
        assert_eq!(read_to_close(stream), REFUSED);
    }

    answer_closes(&mut watchers);
    let took = shutdown.join().expect("shutdown thread");
    assert!(took < WITHIN_GRACE, "waited out the grace: {took:?}");
}

#[test]
fn responses_being_written_finish_before_the_close() {
    let dir = std::env::temp_dir().join(format!("ringws-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("big.bin"), vec![b's'; BIG]).expect("file");
    let server = server(|b| b.static_files("/files/", &dir));
    let addr = server.local_addr();
    let mut handler = raw_connect(addr);
    handler
        .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let mut file = raw_connect(addr);
    file.write_all(b"GET /files/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    // Both answers are queued, and far larger than what the sockets hold: they are
    // only partly taken when the shutdown begins.
    let handler_head = read_head(&mut handler);
    let file_head = read_head(&mut file);
    let mut watchers = one_websocket_per_shard(addr);
    let shutdown = shut_down(server, GRACE);
    await_shutdown_begun(&mut watchers);
    answer_closes(&mut watchers);
    let length = format!("\r\nContent-Length: {BIG}\r\n");
    for (mut stream, head, byte) in [(handler, handler_head, b'b'), (file, file_head, b's')] {
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&length), "{head}");
        // The whole body, then the close (a read timeout fails).
        let body = read_bytes_to_close(&mut stream);
        assert_eq!(body.len(), BIG);
        assert!(body.iter().all(|&b| b == byte));
    }
    let took = shutdown.join().expect("shutdown thread");
    assert!(took < WITHIN_GRACE, "waited out the grace: {took:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sockjs_polls_on_every_shard_get_their_close_frame() {
    sockjs_polls_get_their_close_frame(Some(GRACE));
}

#[test]
fn sockjs_polls_get_their_close_frame_without_a_grace_too() {
    sockjs_polls_get_their_close_frame(None);
}

/// Polls wait on sessions of both shards; a shutdown (with `grace`, or the plain one)
/// ends each with `c[1001,...]` at once.
fn sockjs_polls_get_their_close_frame(grace: Option<Duration>) {
    // Without a grace, a poll the shutdown forgot would wait for the close timeout.
    let server = server(|b| b.close_timeout(Duration::from_secs(60)));
    let addr = server.local_addr();
    let before = server.sockjs_handoffs();
    let polls: Vec<TcpStream> = (0..16)
        .map(|i| {
            let path = format!("/sj/000/shut{i}-{}/xhr", std::process::id());
            let request = format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
            // Opened on one connection, polled on another (either shard).
            let mut open = raw_connect(addr);
            open.write_all(request.as_bytes()).expect("write");
            // The whole `o` response: the session exists on its owner.
            let (open_head, body) = chunked_response(&mut open);
            assert!(open_head.starts_with("HTTP/1.1 200 OK\r\n"), "{open_head}");
            assert_eq!(body, "2\r\no\n\r\n0\r\n\r\n");
            let mut poll = raw_connect(addr);
            poll.write_all(request.as_bytes()).expect("write");
            // The poll's shard writes the head once it has handed the poll to the
            // session's owner (its own work queue, or the owner's mailbox, which the
            // shutdown command reaches only after): the poll is on its way to attach.
            assert_eq!(read_head(&mut poll), open_head);
            poll
        })
        .collect();
    assert!(server.sockjs_handoffs() > before, "no poll crossed shards");
    let shutdown = match grace {
        Some(grace) => shut_down(server, grace),
        None => std::thread::spawn(move || {
            let started = Instant::now();
            server.shutdown().expect("shutdown");
            started.elapsed()
        }),
    };
    for mut poll in polls {
        // The close frame, the last chunk, then the close.
        assert_eq!(
            read_to_close(&mut poll),
            "1f\r\nc[1001,\"Server shutting down\"]\n\r\n0\r\n\r\n"
        );
    }
    let took = shutdown.join().expect("shutdown thread");
    assert!(took < WITHIN_GRACE, "waited for the grace: {took:?}");
}

#[test]
fn a_file_body_still_streaming_when_the_grace_runs_out_is_cut_off() {
    const HUGE: u64 = 80 << 20;
    let dir = std::env::temp_dir().join(format!("ringws-shutdown-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Sparse: 80 MiB of zeros without writing them.
    std::fs::File::create(dir.join("huge.bin"))
        .expect("file")
        .set_len(HUGE)
        .expect("set_len");
    // One shard: the file's connection and the shutdown's only wait are on the same
    // shard, so the cut-off is that shard's drain rule and nothing else. The close
    // timeout is small so the drain's bound (grace, at least the close timeout) is short.
    let server = server(|b| {
        b.shards(1)
            .close_timeout(Duration::from_secs(1))
            .static_files("/files/", &dir)
    });
    let addr = server.local_addr();
    let mut file = raw_connect(addr);
    file.write_all(b"GET /files/huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let head = read_head(&mut file);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nContent-Length: {HUGE}\r\n")),
        "{head}"
    );
    // The client reads nothing more: the body cannot finish within the grace.
    let shutdown = shut_down(server, Duration::from_secs(1));
    let took = shutdown.join().expect("shutdown thread");
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
    // What the socket held, then the end (a read timeout fails).
    file.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let body = read_bytes_to_close(&mut file);
    assert!(
        (body.len() as u64) < HUGE,
        "the whole body arrived: {}",
        body.len()
    );
    assert!(body.iter().all(|&b| b == 0));
    let _ = std::fs::remove_dir_all(&dir);
}
