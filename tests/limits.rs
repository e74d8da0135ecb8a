//! Production limits: the SockJS request body limit and the cap on connections that
//! have not finished their first request. Every wait is bounded by socket timeouts.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    expect_eof_within, expect_silence, raw_connect, read_head, read_to_close, refusal, send_frame,
    FrameReader, Received,
};
use ringws::proto::OpCode;
use ringws::sockjs::SockJsOptions;

/// Reads one response (a `Content-Length` or chunked body): (head, body).
fn response(stream: &mut TcpStream) -> (String, String) {
    let head = read_head(stream);
    if head.contains("Transfer-Encoding: chunked") {
        let mut body = String::new();
        loop {
            let size_line = read_line(stream);
            let size = usize::from_str_radix(size_line.trim(), 16).expect("chunk size");
            let mut data = vec![0; size + 2];
            stream.read_exact(&mut data).expect("chunk");
            data.truncate(size);
            body.push_str(std::str::from_utf8(&data).expect("utf-8"));
            if size == 0 {
                return (head, body);
            }
        }
    }
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.trim().parse().expect("length"));
    let mut body = vec![0; len];
    stream.read_exact(&mut body).expect("body");
    (head, String::from_utf8(body).expect("utf-8"))
}

fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).expect("line");
        line.push(byte[0]);
    }
    String::from_utf8(line).expect("utf-8")
}

fn post(stream: &mut TcpStream, path: &str, extra: &str, body: &str) -> (String, String) {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    response(stream)
}

#[test]
fn sockjs_send_over_the_body_limit_is_413_and_the_session_carries_on() {
    let server = common::builder()
        // The service's own limit replaces the server's for its requests.
        .max_body_bytes(16)
        .sockjs(
            "/small",
            || common::Echo,
            SockJsOptions::default().max_body_bytes(64),
        )
        .build()
        .expect("build")
        .start()
        .expect("start");
    let addr = server.local_addr();
    let mut c = raw_connect(addr);
    let base = "/small/000/limit";
    let (head, body) = post(&mut c, &format!("{base}/xhr"), "", "");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, "o\n");
    // Over the server's 16 bytes, within the service's 64.
    let (head, _) = post(
        &mut c,
        &format!("{base}/xhr_send"),
        "",
        r#"["a twenty-byte"]"#,
    );
    assert!(head.starts_with("HTTP/1.1 204 No Content\r\n"), "{head}");

    // Only the head of a 100 kB send: the 413 comes before the body is sent.
    let big = 100_000;
    let request = format!(
        "POST {base}/xhr_send HTTP/1.1\r\nHost: t\r\nOrigin: http://o\r\nContent-Length: {big}\r\n\r\n"
    );
    c.write_all(request.as_bytes()).expect("write");
    let (head, body) = response(&mut c);
    assert!(
        head.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{head}"
    );
    assert!(
        head.contains("Access-Control-Allow-Origin: http://o\r\n"),
        "{head}"
    );
    assert!(!head.contains("Connection: close"), "{head}");
    assert_eq!(
        body,
        format!("Payload too large: {big} bytes, the limit is 64 bytes")
    );
    // The body is read and dropped; the connection and the session carry on.
    c.write_all(&vec![b'x'; big]).expect("body");
    let (head, _) = post(&mut c, &format!("{base}/xhr_send"), "", r#"["b"]"#);
    assert!(head.starts_with("HTTP/1.1 204 No Content\r\n"), "{head}");
    let (head, body) = post(&mut c, &format!("{base}/jsonp_send"), "", &"d=".repeat(40));
    assert!(
        head.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{head}"
    );
    assert!(!head.contains("Connection: close"), "{head}");
    assert_eq!(body, "Payload too large: 80 bytes, the limit is 64 bytes");
    let (head, body) = post(&mut c, &format!("{base}/xhr"), "", "");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, "a[\"a twenty-byte\",\"b\"]\n");

    // A body too large to be worth reading: 413, then the connection closes.
    let mut d = raw_connect(addr);
    let request = format!(
        "POST {base}/xhr_send HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        64 << 20
    );
    d.write_all(request.as_bytes()).expect("write");
    let (head, body) = response(&mut d);
    assert!(
        head.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{head}"
    );
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert_eq!(
        body,
        format!(
            "Payload too large: {} bytes, the limit is 64 bytes",
            64 << 20
        )
    );
    // Then the close, with nothing more (a read timeout fails here).
    expect_eof_within(&mut d, Duration::from_secs(5));
}

#[test]
fn silent_connections_over_the_pending_cap_evict_the_oldest() {
    let server = common::echo_server_with(|b| b.shards(1).max_pending_handshakes(4));
    let addr = server.local_addr();
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..8).map(|_| raw_connect(addr)).collect();
    let evicted = refusal("408 Request Timeout", &[], "request not received in time");
    // The four oldest made room for the four newest: 408, then closed, at once (the
    // 10 s handshake timeout would say "request head not received in time").
    for (i, stream) in silent.iter_mut().take(4).enumerate() {
        assert_eq!(read_to_close(stream), evicted, "silent connection {i}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "evicted only after {:?}",
        started.elapsed()
    );
    for stream in &mut silent[4..] {
        assert_still_open(stream);
    }
    // A real client still gets in (and the oldest silent one makes room for it); once
    // upgraded it no longer counts, so four more silent ones leave it alone.
    let mut ws = common::raw_upgrade(addr, "/echo");
    assert_eq!(read_to_close(&mut silent[4]), evicted);
    let mut more: Vec<TcpStream> = (0..4).map(|_| raw_connect(addr)).collect();
    for stream in &mut silent[5..] {
        assert_eq!(read_to_close(stream), evicted);
    }
    // The four new ones are the four pending now: none is evicted.
    for stream in &mut more {
        assert_still_open(stream);
    }
    send_frame(&mut ws, OpCode::Text, true, b"still here");
    let mut reader = FrameReader::default();
    assert_eq!(reader.next(&mut ws), Received::Text("still here".into()));
}

/// Nothing arrives within 200 ms and the connection is not closed.
fn assert_still_open(stream: &mut TcpStream) {
    expect_silence(stream, Duration::from_millis(200));
}

#[test]
fn a_tiny_receive_ring_still_delivers_every_message_in_order() {
    // Two 1 KiB provided buffers for the whole shard: 16 clients sending 20 KiB
    // messages run the ring dry over and over (ENOBUFS, re-armed receives); nothing may
    // be lost or reordered. The epoll backend ignores the option and must pass as well.
    let server = common::echo_server_with(|b| b.shards(1).recv_buffers(2, 1024));
    let addr = server.local_addr();
    let clients: Vec<_> = (0..16u8)
        .map(|client| {
            std::thread::spawn(move || {
                let mut stream = common::raw_upgrade(addr, "/echo");
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                let mut reader = FrameReader::default();
                for round in 0..8u8 {
                    let payload = vec![client ^ round; 20 * 1024];
                    send_frame(&mut stream, OpCode::Binary, true, &payload);
                    match reader.next(&mut stream) {
                        Received::Binary(echo) => {
                            assert!(echo == payload, "client {client} round {round}")
                        }
                        other => panic!("client {client} round {round}: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client");
    }
    server.shutdown().expect("shutdown");
}
