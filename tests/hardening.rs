//! Server hardening: the idle timeout with automatic pings, the connection limit and
//! graceful shutdown with a deadline. Every wait is bounded by socket read timeouts.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    echo_server_with, raw_connect, raw_upgrade, read_to_close, send_frame, FrameReader,
    Received as Got,
};
use ringws::proto::OpCode;

const IDLE: Duration = Duration::from_millis(300);

#[test]
fn idle_client_that_answers_pings_stays_open() {
    let server = echo_server_with(|b| b.shards(1).idle_timeout(IDLE));
    let mut client = raw_upgrade(server.local_addr(), "/echo");
    let mut reader = FrameReader::with_pings();
    let started = Instant::now();
    let mut pings = 0;
    // Several idle timeouts pass; every ping is answered, so the connection lives on.
    while started.elapsed() < IDLE * 5 {
        match reader.next(&mut client) {
            Got::Ping(_) => {
                pings += 1;
                send_frame(&mut client, OpCode::Pong, true, b"");
            }
            other => panic!("expected only pings, got {other:?}"),
        }
    }
    assert!(pings >= 3, "only {pings} pings");
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
    let server = echo_server_with(|b| b.shards(1).idle_timeout(IDLE));
    let mut client = raw_upgrade(server.local_addr(), "/echo");
    let mut reader = FrameReader::with_pings();
    assert_eq!(reader.next(&mut client), Got::Ping(Vec::new()));
    assert_eq!(
        reader.next(&mut client),
        Got::Close(Some(1001), "idle timeout".into())
    );
    assert_eq!(reader.next(&mut client), Got::Eof);
}

#[test]
fn zero_idle_timeout_disables_pings() {
    let server = echo_server_with(|b| b.shards(1).idle_timeout(Duration::ZERO));
    let mut client = raw_upgrade(server.local_addr(), "/echo");
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    let read = client.read(&mut byte);
    assert!(read.is_err(), "the server sent something: {read:?}");
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

#[test]
fn connections_over_the_limit_get_503() {
    let server = echo_server_with(|b| b.shards(1).max_connections(2));
    let addr = server.local_addr();
    let mut first = raw_upgrade(addr, "/echo");
    let _second = raw_upgrade(addr, "/echo");
    let refused = try_upgrade(addr).expect_err("the third connection was upgraded");
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
    assert!(refused.contains("too many connections"), "{refused}");
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
            Err(answer) => assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}"),
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
            Err(answer) => assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}"),
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

#[test]
fn plain_shutdown_does_not_wait_for_close_replies() {
    let server = echo_server_with(|b| b.shards(1).close_timeout(Duration::from_secs(30)));
    let mut client = raw_upgrade(server.local_addr(), "/echo");
    server.shutdown().expect("shutdown");
    let mut reader = FrameReader::with_pings();
    assert_eq!(
        reader.next(&mut client),
        Got::Close(Some(1001), "server shutting down".into())
    );
    assert_eq!(reader.next(&mut client), Got::Eof);
}

#[test]
fn a_second_shutdown_without_grace_closes_at_once() {
    let server = echo_server_with(|b| b.shards(1));
    let handle = server.handle();
    let mut client = raw_upgrade(server.local_addr(), "/echo");
    let shutdown = std::thread::spawn(move || server.shutdown_within(Duration::from_secs(60)));
    let mut reader = FrameReader::with_pings();
    assert_eq!(
        reader.next(&mut client),
        Got::Close(Some(1001), "server shutting down".into())
    );
    // The peer stays silent; the operator insists.
    handle.shutdown();
    assert_eq!(reader.next(&mut client), Got::Eof);
    shutdown.join().expect("shutdown thread").expect("shutdown");
}
