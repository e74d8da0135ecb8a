//! Plain HTTP beside WebSockets on one port: keep-alive, pipelining, request bodies and
//! their limits, and an upgrade on a kept-alive connection.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{raw_connect, read_head, read_to_close, FrameReader, Received};
use ringws::proto::OpCode;
use ringws::{HttpResponse, RunningServer};

/// `/echo` (WebSocket) plus `/body`, an HTTP route that answers with what it was sent.
fn server() -> RunningServer {
    common::builder()
        .max_body_bytes(64 * 1024)
        .websocket("/echo", || common::Echo)
        .http("/body", |request| {
            let answer = format!("{} {} bytes: ", request.method(), request.body().len());
            let mut body = answer.into_bytes();
            body.extend_from_slice(request.body());
            HttpResponse::new(200, "application/octet-stream", body)
        })
        .build()
        .expect("build")
        .start()
        .expect("start")
}

/// Reads one response with a Content-Length body.
fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let head = read_head(stream);
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("Content-Length");
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("body");
    (head, body)
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let server = server();
    let mut stream = raw_connect(server.local_addr());
    let requests = "GET /body HTTP/1.1\r\nHost: x\r\n\r\n\
                    POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
                    GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(requests.as_bytes()).expect("write");
    let (head, body) = read_response(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(!head.contains("Connection: close"), "{head}");
    assert_eq!(body, b"GET 0 bytes: ");
    let (_, body) = read_response(&mut stream);
    assert_eq!(body, b"POST 5 bytes: hello");
    let (head, _) = read_response(&mut stream);
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    // Still open: one more request on the same connection.
    stream
        .write_all(b"GET /body HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let rest = read_to_close(&mut stream);
    assert!(
        rest.starts_with("HTTP/1.1 200 ") && rest.contains("Connection: close"),
        "{rest}"
    );
}

#[test]
fn a_body_split_across_writes_is_assembled() {
    let server = server();
    let mut stream = raw_connect(server.local_addr());
    let body = vec![b'z'; 40_000];
    let head = format!(
        "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write");
    for chunk in body.chunks(7_000) {
        stream.write_all(chunk).expect("write");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (_, answer) = read_response(&mut stream);
    assert!(answer.starts_with(b"POST 40000 bytes: zzz"));
    assert_eq!(answer.len(), "POST 40000 bytes: ".len() + 40_000);
}

#[test]
fn oversized_and_chunked_bodies_are_refused() {
    let server = server();
    let cases = [
        (
            "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
            "413",
            "too large",
        ),
        (
            "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "501",
            "chunked",
        ),
        (
            "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 12x\r\n\r\n",
            "400",
            "Content-Length",
        ),
    ];
    for (request, status, reason) in cases {
        let mut stream = raw_connect(server.local_addr());
        stream.write_all(request.as_bytes()).expect("write");
        let response = read_to_close(&mut stream);
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{response}"
        );
        assert!(response.contains(reason), "{response}");
    }
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let server = server();
    let mut stream = raw_connect(server.local_addr());
    stream
        .write_all(b"GET /body HTTP/1.0\r\n\r\n")
        .expect("write");
    let response = read_to_close(&mut stream);
    assert!(response.contains("Connection: close"), "{response}");
    let mut stream = raw_connect(server.local_addr());
    stream
        .write_all(b"GET /body HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .expect("write");
    let (head, _) = read_response(&mut stream);
    assert!(head.contains("Connection: keep-alive"), "{head}");
    stream
        .write_all(b"GET /body HTTP/1.0\r\n\r\n")
        .expect("write");
    assert!(read_to_close(&mut stream).starts_with("HTTP/1.1 200 "));
}

#[test]
fn a_kept_alive_connection_can_upgrade() {
    let server = server();
    let mut stream = raw_connect(server.local_addr());
    stream
        .write_all(b"GET /body HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    read_response(&mut stream);
    let upgrade = "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    stream.write_all(upgrade.as_bytes()).expect("write");
    assert!(read_head(&mut stream).starts_with("HTTP/1.1 101 "));
    common::send_frame(&mut stream, OpCode::Text, true, b"after keep-alive");
    assert_eq!(
        FrameReader::default().next(&mut stream),
        Received::Text("after keep-alive".into())
    );
}

#[test]
fn an_idle_kept_alive_connection_is_closed_quietly() {
    let server = common::builder()
        .handshake_timeout(Duration::from_millis(200))
        .http("/", |_| HttpResponse::text(200, "hi"))
        .build()
        .expect("build")
        .start()
        .expect("start");
    let mut stream = raw_connect(server.local_addr());
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let (_, body) = read_response(&mut stream);
    assert_eq!(body, b"hi");
    // No 408 for a connection that is merely idle between requests: just the close.
    assert_eq!(read_to_close(&mut stream), "");
}
