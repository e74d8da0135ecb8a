//! Graceful shutdown of what is not an open WebSocket: idle kept-alive HTTP
//! connections, a request half received, responses still being written, and SockJS
//! polling requests waiting on a session of any shard. Every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{raw_connect, read_head, send_frame, FrameReader, Received};
use ringws::proto::OpCode;
use ringws::sockjs::SockJsOptions;
use ringws::{HttpResponse, RunningServer};

const BIG: usize = 24 << 20;

fn server(configure: impl FnOnce(ringws::Builder) -> ringws::Builder) -> RunningServer {
    configure(common::builder())
        .http("/hi", |_| HttpResponse::text(200, "hi\n"))
        .http("/big", |_| HttpResponse::text(200, "b".repeat(BIG)))
        .sockjs("/sj", || common::Echo, SockJsOptions::default())
        .websocket("/echo", || common::Echo)
        .build()
        .expect("build")
        .start()
        .expect("start")
}

/// Shuts `server` down with `grace` on a thread; joins to how long it took.
fn shut_down(server: RunningServer, grace: Duration) -> JoinHandle<Duration> {
    std::thread::spawn(move || {
        let started = Instant::now();
        server.shutdown_within(grace).expect("shutdown");
        started.elapsed()
    })
}

/// Reads a `Content-Length` response: (head, body length, body starts with).
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

fn assert_eof_within(stream: &mut TcpStream, limit: Duration) {
    let started = Instant::now();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("read to the close");
    assert!(
        rest.is_empty(),
        "unexpected bytes: {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(
        started.elapsed() < limit,
        "closed after {:?}",
        started.elapsed()
    );
}

#[test]
fn idle_keep_alive_closes_at_once_and_a_half_received_request_is_answered() {
    let server = server(|b| b);
    let addr = server.local_addr();
    let mut idle = raw_connect(addr);
    idle.write_all(b"GET /hi HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let (head, _) = response(&mut idle);
    assert!(!head.contains("Connection: close"), "{head}");
    let mut half = raw_connect(addr);
    half.write_all(b"GET /hi HTTP/1.1\r\nHost: t\r\n")
        .expect("write");
    // An open WebSocket that never answers the close keeps the grace running.
    let mut ws = common::raw_upgrade(addr, "/echo");
    std::thread::sleep(Duration::from_millis(100));
    let shutdown = shut_down(server, Duration::from_secs(3));

    assert_eof_within(&mut idle, Duration::from_secs(1));
    // The half-received request is still read, answered with `Connection: close`,
    // and the connection closes after it.
    std::thread::sleep(Duration::from_millis(100));
    half.write_all(b"\r\n").expect("write the rest");
    let (head, body) = response(&mut half);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert_eq!(body, b"hi\n");
    assert_eof_within(&mut half, Duration::from_secs(1));

    let mut reader = FrameReader::default();
    let close = Received::Close(Some(1001), "server shutting down".into());
    assert_eq!(reader.next(&mut ws), close);
    send_frame(&mut ws, OpCode::Close, true, &1001u16.to_be_bytes());
    let took = shutdown.join().expect("shutdown thread");
    assert!(
        took < Duration::from_secs(3),
        "waited out the grace: {took:?}"
    );
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
    // Both answers are queued and only partly taken when the shutdown begins.
    let handler_head = read_head(&mut handler);
    let file_head = read_head(&mut file);
    let shutdown = shut_down(server, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    for (mut stream, head, byte) in [(handler, handler_head, b'b'), (file, file_head, b's')] {
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut body = Vec::new();
        stream
            .read_to_end(&mut body)
            .expect("the whole body, then the close");
        assert_eq!(body.len(), BIG);
        assert!(body.iter().all(|&b| b == byte));
    }
    let took = shutdown.join().expect("shutdown thread");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sockjs_polls_on_every_shard_get_their_close_frame() {
    sockjs_polls_get_their_close_frame(Some(Duration::from_secs(10)));
}

#[test]
fn sockjs_polls_get_their_close_frame_without_a_grace_too() {
    sockjs_polls_get_their_close_frame(None);
}

/// Polls wait on sessions of both shards; a shutdown (with `grace`, or the plain one)
/// ends each with `c[1001,...]` at once.
fn sockjs_polls_get_their_close_frame(grace: Option<Duration>) {
    let server = server(|b| b);
    let addr = server.local_addr();
    let before = server.sockjs_handoffs();
    let polls: Vec<TcpStream> = (0..16)
        .map(|i| {
            let path = format!("/sj/000/shut{i}-{}/xhr", std::process::id());
            let request = format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
            // Opened on one connection, polled on another (either shard).
            let mut open = raw_connect(addr);
            open.write_all(request.as_bytes()).expect("write");
            let head = read_head(&mut open);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            // The whole `o` response: the session exists on its owner.
            let mut body = Vec::new();
            let mut byte = [0u8; 1];
            while !body.ends_with(b"0\r\n\r\n") {
                open.read_exact(&mut byte).expect("the o frame");
                body.push(byte[0]);
            }
            let mut poll = raw_connect(addr);
            poll.write_all(request.as_bytes()).expect("write");
            poll
        })
        .collect();
    // The polls reach their owners through the mailboxes: give them time, and wait
    // (bounded) for at least one on a busy machine.
    std::thread::sleep(Duration::from_millis(100));
    let limit = Instant::now() + Duration::from_secs(10);
    while server.sockjs_handoffs() <= before && Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(10));
    }
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
        let head = read_head(&mut poll);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut body = Vec::new();
        poll.read_to_end(&mut body)
            .expect("the close frame, then the close");
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("c[1001,\"Server shutting down\"]\n"),
            "{body:?}"
        );
    }
    let took = shutdown.join().expect("shutdown thread");
    assert!(took < Duration::from_secs(3), "{took:?}");
}
