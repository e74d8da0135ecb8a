//! Plain HTTP beside WebSockets on one port: keep-alive, pipelining, request bodies and
//! their limits, and an upgrade on a kept-alive connection.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

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

/// The exact head `/body` answers with for a body of `length` bytes.
fn body_head(length: usize, close: bool) -> String {
    let close = if close { "Connection: close\r\n" } else { "" };
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {length}\r\n{close}\r\n"
    )
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
    assert_eq!(head, body_head(13, false));
    assert_eq!(body, b"GET 0 bytes: ");
    let (head, body) = read_response(&mut stream);
    assert_eq!(head, body_head(19, false));
    assert_eq!(body, b"POST 5 bytes: hello");
    let (head, body) = read_response(&mut stream);
    assert_eq!(
        head,
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 22\r\n\r\n"
    );
    assert_eq!(body, b"no route for /nowhere\n");
    // Still open: one more request on the same connection, which then closes.
    stream
        .write_all(b"GET /body HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    assert_eq!(
        read_to_close(&mut stream),
        format!("{}GET 0 bytes: ", body_head(13, true))
    );
}

#[test]
fn a_body_split_across_writes_is_assembled() {
    let server = server();
    let mut stream = raw_connect(server.local_addr());
    let body: Vec<u8> = (0..40_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let head = format!(
        "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write");
    for chunk in body.chunks(7_000) {
        stream.write_all(chunk).expect("write");
        // Pacing, not synchronisation: the pieces tend to arrive in separate reads.
        std::thread::sleep(Duration::from_millis(5));
    }
    let (head, answer) = read_response(&mut stream);
    let mut expected = b"POST 40000 bytes: ".to_vec();
    expected.extend_from_slice(&body);
    assert_eq!(head, body_head(expected.len(), false));
    assert!(answer == expected, "the body came back changed");
}

#[test]
fn oversized_and_chunked_bodies_are_refused() {
    let server = server();
    let cases = [
        (
            "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
            "413 Content Too Large",
            "request body too large",
        ),
        (
            "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "501 Not Implemented",
            "chunked request bodies are not supported",
        ),
        (
            "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 12x\r\n\r\n",
            "400 Bad Request",
            "invalid Content-Length",
        ),
    ];
    for (request, status, reason) in cases {
        let mut stream = raw_connect(server.local_addr());
        stream.write_all(request.as_bytes()).expect("write");
        assert_eq!(
            read_to_close(&mut stream),
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{reason}\n",
                reason.len() + 1
            ),
            "{request:?}"
        );
    }
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let server = server();
    let mut stream = raw_connect(server.local_addr());
    stream
        .write_all(b"GET /body HTTP/1.0\r\n\r\n")
        .expect("write");
    assert_eq!(
        read_to_close(&mut stream),
        format!("{}GET 0 bytes: ", body_head(13, true))
    );
    let mut stream = raw_connect(server.local_addr());
    stream
        .write_all(b"GET /body HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .expect("write");
    let (head, body) = read_response(&mut stream);
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: 13\r\n\r\n"
    );
    assert_eq!(body, b"GET 0 bytes: ");
    // Kept open: a second request (without keep-alive) is answered, then the close.
    stream
        .write_all(b"GET /body HTTP/1.0\r\n\r\n")
        .expect("write");
    assert_eq!(
        read_to_close(&mut stream),
        format!("{}GET 0 bytes: ", body_head(13, true))
    );
}

#[test]
fn a_kept_alive_connection_can_upgrade() {
    let server = server();
    let mut stream = raw_connect(server.local_addr());
    stream
        .write_all(b"GET /body HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let (head, body) = read_response(&mut stream);
    assert_eq!(head, body_head(13, false));
    assert_eq!(body, b"GET 0 bytes: ");
    let upgrade = "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    stream.write_all(upgrade.as_bytes()).expect("write");
    assert_eq!(
        read_head(&mut stream),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
    common::send_frame(&mut stream, OpCode::Text, true, b"after keep-alive");
    assert_eq!(
        FrameReader::default().next(&mut stream),
        Received::Text("after keep-alive".into())
    );
}

#[test]
fn an_idle_kept_alive_connection_is_closed_quietly() {
    let server = common::builder()
        .handshake_timeout(Duration::from_millis(300))
        .http("/", |_| HttpResponse::text(200, "hi"))
        .build()
        .expect("build")
        .start()
        .expect("start");
    let mut stream = raw_connect(server.local_addr());
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let (head, body) = read_response(&mut stream);
    let answered = Instant::now();
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\n"
    );
    assert_eq!(body, b"hi");
    // No 408 for a connection that is merely idle between requests: just the close,
    // and only once the idle timeout has run (not right after the answer).
    assert_eq!(read_to_close(&mut stream), "");
    let idle = answered.elapsed();
    assert!(idle >= Duration::from_millis(150), "closed after {idle:?}");
}
