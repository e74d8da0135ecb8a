//! One byte-stream `Protocol` (an upper-casing line echo that buffers partial lines)
//! served unchanged over raw TCP, WebSocket and SockJS (xhr_send + xhr polling).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ringws::sockjs::SockJsOptions;
use ringws::{Protocol, RunningServer, Server, Transport};
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

#[test]
fn raw_tcp() {
    let server = server();
    let addr = server.tcp_addrs()[0];
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    for piece in PIECES {
        s.write_all(piece.as_bytes()).expect("write");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut got = vec![0; EXPECTED.len()];
    s.read_exact(&mut got).expect("read");
    assert_eq!(String::from_utf8_lossy(&got), EXPECTED);
    // The protocol closes on QUIT; the rest of a line before it is flushed first.
    s.write_all(b"last\nquit\n").expect("write");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("read to the end");
    assert_eq!(rest, b"LAST\n");
    // Many connections on both shards.
    for i in 0..20 {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(format!("n{i}\n").as_bytes()).expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut all = String::new();
        s.read_to_string(&mut all).expect("read");
        assert_eq!(all, format!("READY\nN{i}\n"));
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
    let mut got = Vec::new();
    while got.len() < EXPECTED.len() {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timely")
            .expect("open")
            .expect("message");
        match message {
            WsMessage::Binary(bytes) => got.extend_from_slice(&bytes),
            other => panic!("expected binary messages, got {other:?}"),
        }
    }
    assert_eq!(String::from_utf8_lossy(&got), EXPECTED);
    ws.send(WsMessage::text("quit\n")).await.expect("send");
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(WsMessage::Close(Some(frame))))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected a close frame, got {other:?}"),
    }
    drop(server);
}

/// One HTTP/1.0 request on its own connection: (status, body).
fn http(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
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
    let (status, _) = http(addr, &format!("{session}/xhr_send"), &body);
    assert_eq!(status, 204);
    let mut got = String::new();
    let limit = Instant::now() + Duration::from_secs(10);
    while got.len() < EXPECTED.len() && Instant::now() < limit {
        let (status, frame) = http(addr, &format!("{session}/xhr"), "");
        assert_eq!(status, 200);
        if frame.starts_with('a') {
            got.push_str(&messages(&frame));
        }
    }
    assert_eq!(got, EXPECTED);
    let (status, _) = http(addr, &format!("{session}/xhr_send"), "[\"quit\\n\"]");
    assert_eq!(status, 204);
    let (_, frame) = http(addr, &format!("{session}/xhr"), "");
    assert_eq!(frame, "c[1000,\"\"]\n");
}

/// Panics on a line that says so.
struct Fragile;

impl Protocol for Fragile {
    fn data_received(&mut self, transport: &mut Transport<'_>, data: &[u8]) {
        assert!(!data.starts_with(b"panic"), "asked to panic");
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
    let mut calm = TcpStream::connect(addr).expect("connect");
    calm.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut boom = TcpStream::connect(addr).expect("connect");
    boom.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    boom.write_all(b"panic").expect("write");
    let mut rest = Vec::new();
    boom.read_to_end(&mut rest).expect("closed, not reset");
    assert!(rest.is_empty());
    calm.write_all(b"still here").expect("write");
    let mut got = [0; 10];
    calm.read_exact(&mut got).expect("read");
    assert_eq!(&got, b"still here");
    // The second door serves its own protocol.
    let mut shout = TcpStream::connect(server.tcp_addrs()[1]).expect("connect");
    shout.write_all(b"hi\n").expect("write");
    shout.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut all = String::new();
    shout.read_to_string(&mut all).expect("read");
    assert_eq!(all, "READY\nHI\n");
}

#[test]
fn shutdown_closes_raw_tcp_connections() {
    let server = server();
    let mut s = TcpStream::connect(server.tcp_addrs()[0]).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut ready = [0; 6];
    s.read_exact(&mut ready).expect("READY");
    s.write_all(b"half a line").expect("write");
    let started = Instant::now();
    server.shutdown().expect("shutdown");
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
}
