//! One byte-stream `Protocol` (an upper-casing line echo that buffers partial lines)
//! served unchanged over raw TCP, WebSocket and SockJS (xhr_send + xhr polling).

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{expect_silence, raw_connect, read_bytes_to_close, read_to_close};

use futures_util::{SinkExt, StreamExt};
use ringws::sockjs::SockJsOptions;
use ringws::{Protocol, RunningServer, Server, Transport};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Echoes each complete line upper-cased; a partial line waits for its end.
#[derive(Default)]
struct Shout {
    line: Vec<u8>,
}

impl Protocol for Shout {
    fn connection_made(&mut self, transport: &mut Transport<'_>) {
        transport.write(b"READY\n");
    }

    fn data_received(&mut self, transport: &mut Transport<'_>, data: &[u8]) {
        for &byte in data {
            self.line.push(byte.to_ascii_uppercase());
            if byte == b'\n' {
                if self.line == b"QUIT\n" {
                    transport.close();
                    return;
                }
                transport.write(&self.line);
                self.line.clear();
            }
        }
    }
}

fn server() -> RunningServer {
    Server::builder()
        .bind("127.0.0.1:0")
        .shards(2)
        .tcp("127.0.0.1:0", Shout::default)
        .websocket_protocol("/shout", Shout::default)
        .sockjs_protocol("/sj", Shout::default, SockJsOptions::default())
        .build()
        .expect("build")
        .start()
        .expect("start")
}

const PIECES: [&str; 3] = ["hel", "lo\nwor", "ld\n"];
const EXPECTED: &str = "READY\nHELLO\nWORLD\n";
/// What each piece of `PIECES` gets back, after the greeting.
const ANSWERS: [&str; 3] = ["", "HELLO\n", "WORLD\n"];

/// Reads exactly `want` (and fails on anything else, or on silence).
#[track_caller]
fn expect_bytes(s: &mut std::net::TcpStream, want: &str) {
    let mut got = vec![0; want.len()];
    s.read_exact(&mut got).expect("read");
    assert_eq!(String::from_utf8_lossy(&got), want);
}

#[test]
fn raw_tcp() {
    let server = server();
    let addr = server.tcp_addrs()[0];
    let mut s = raw_connect(addr);
    expect_bytes(&mut s, "READY\n");
    // Each piece is answered (or, for a partial line, not) before the next is sent, so
    // the protocol sees them apart.
    for (piece, answer) in PIECES.into_iter().zip(ANSWERS) {
        s.write_all(piece.as_bytes()).expect("write");
        if answer.is_empty() {
            expect_silence(&mut s, Duration::from_millis(200));
        } else {
            expect_bytes(&mut s, answer);
        }
    }
    // The protocol closes on QUIT; the rest of a line before it is flushed first.
    s.write_all(b"last\nquit\n").expect("write");
    assert_eq!(read_bytes_to_close(&mut s), b"LAST\n");
    // Many connections on both shards.
    for i in 0..20 {
        let mut s = raw_connect(addr);
        s.write_all(format!("n{i}\n").as_bytes()).expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        assert_eq!(read_to_close(&mut s), format!("READY\nN{i}\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn websocket() {
    let server = server();
    let url = format!("ws://{}/shout", server.local_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("handshake");
    ws.send(WsMessage::binary(PIECES[0].as_bytes().to_vec()))
        .await
        .expect("send");
    ws.send(WsMessage::text(PIECES[1])).await.expect("send");
    ws.send(WsMessage::binary(PIECES[2].as_bytes().to_vec()))
        .await
        .expect("send");
    // One binary message per write: the greeting and each complete line.
    for line in EXPECTED.split_inclusive('\n') {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timely")
            .expect("open")
            .expect("message");
        assert_eq!(message, WsMessage::binary(line.as_bytes().to_vec()));
    }
    ws.send(WsMessage::text("quit\n")).await.expect("send");
    let close = WsMessage::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }));
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(message))) => assert_eq!(message, close),
        other => panic!("expected a close frame, got {other:?}"),
    }
    // tungstenite answers it; then the server drops the socket.
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(None) => {}
        other => panic!("expected the end of the stream, got {other:?}"),
    }
    drop(server);
}

/// One HTTP/1.0 request on its own connection: (status, body).
fn http(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut s = raw_connect(addr);
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).expect("write");
    let response = read_to_close(&mut s);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_owned())
}

/// The messages of an `a[...]` frame (only what this test sends: no quotes inside).
fn messages(frame: &str) -> String {
    let inner = frame
        .trim_end()
        .strip_prefix("a[\"")
        .and_then(|f| f.strip_suffix("\"]"))
        .unwrap_or_else(|| panic!("not a message frame: {frame:?}"));
    inner
        .split("\",\"")
        .collect::<String>()
        .replace("\\n", "\n")
}

#[test]
fn sockjs_xhr() {
    let server = server();
    let addr = server.local_addr();
    let session = "/sj/000/protocol-session";
    assert_eq!(
        http(addr, &format!("{session}/xhr"), ""),
        (200, "o\n".into())
    );
    let body = format!(
        "[{}]",
        PIECES
            .iter()
            .map(|p| format!("\"{}\"", p.replace('\n', "\\n")))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(
        http(addr, &format!("{session}/xhr_send"), &body),
        (204, String::new())
    );
    // Each poll waits for messages; only a heartbeat may come instead.
    let mut got = String::new();
    let limit = Instant::now() + Duration::from_secs(20);
    while got.len() < EXPECTED.len() {
        assert!(Instant::now() < limit, "only {got:?} arrived in 20 s");
        let (status, frame) = http(addr, &format!("{session}/xhr"), "");
        assert_eq!(status, 200, "{frame}");
        if frame != "h\n" {
            got.push_str(&messages(&frame));
        }
    }
    assert_eq!(got, EXPECTED);
    assert_eq!(
        http(addr, &format!("{session}/xhr_send"), "[\"quit\\n\"]"),
        (204, String::new())
    );
    assert_eq!(
        http(addr, &format!("{session}/xhr"), ""),
        (200, "c[1000,\"\"]\n".into())
    );
}

/// Panics (on purpose) on data that asks for it; echoes anything else.
struct Fragile;

impl Protocol for Fragile {
    fn data_received(&mut self, transport: &mut Transport<'_>, data: &[u8]) {
        if data.starts_with(b"panic") {
            panic!("asked to panic");
        }
        transport.write(data);
    }
}

#[test]
fn a_panicking_protocol_closes_only_its_connection() {
    let server = Server::builder()
        .shards(1)
        .tcp("127.0.0.1:0", || Fragile)
        .tcp("127.0.0.1:0", Shout::default)
        .build()
        .expect("build")
        .start()
        .expect("start");
    let addr = server.tcp_addrs()[0];
    let mut calm = raw_connect(addr);
    let mut boom = raw_connect(addr);
    boom.write_all(b"panic").expect("write");
    // Everything it sent was read, so the close is a FIN, not a reset; nothing precedes it.
    let mut rest = Vec::new();
    boom.read_to_end(&mut rest).expect("closed, not reset");
    assert_eq!(rest, b"");
    calm.write_all(b"still here").expect("write");
    expect_bytes(&mut calm, "still here");
    // The second door serves its own protocol.
    let mut shout = raw_connect(server.tcp_addrs()[1]);
    shout.write_all(b"hi\n").expect("write");
    shout.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert_eq!(read_to_close(&mut shout), "READY\nHI\n");
}

#[test]
fn shutdown_closes_raw_tcp_connections() {
    let server = server();
    let mut s = raw_connect(server.tcp_addrs()[0]);
    expect_bytes(&mut s, "READY\n");
    s.write_all(b"half a line").expect("write");
    let started = Instant::now();
    server.shutdown().expect("shutdown");
    // Not held up by the open connection until the 5 s close timeout.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    // The connection was closed, with nothing sent for the half line.
    assert_eq!(read_bytes_to_close(&mut s), b"");
}
