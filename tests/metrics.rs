//! The server's metrics from the public API: `ServerHandle::stats` moves as a client
//! connects, sends, is refused, meets backpressure and closes, and the `/metrics` route
//! serves the same figures as Prometheus (OpenMetrics) text that a line-format check
//! accepts.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{raw_connect, raw_upgrade, read_head, send_frame, FrameReader, Received};
use ringws::proto::OpCode;
use ringws::{Conn, Handler, Message, RunningServer, ServerHandle, ServerStats};

/// Echoes; `flood` queues 4 MiB (past the backpressure threshold); `bye` closes 4000.
struct Probe;

impl Handler for Probe {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text("flood") => {
                let chunk = vec![7u8; 64 * 1024];
                for _ in 0..64 {
                    conn.send_binary(&chunk);
                }
            }
            Message::Text("bye") => conn.close(4000, "bye"),
            Message::Text(text) => {
                conn.send_text(text);
            }
            Message::Binary(bytes) => {
                conn.send_binary(bytes);
            }
        }
    }
}

fn server() -> RunningServer {
    common::builder()
        .backpressure_threshold(64 * 1024)
        .websocket("/ws", || Probe)
        .metrics("/metrics")
        .build()
        .expect("build")
        .start()
        .expect("start")
}

/// Polls `stats` until `done` holds (the shards store their figures once per loop
/// turn), or fails after 10 s with the last figures.
#[track_caller]
fn wait_for(handle: &ServerHandle, what: &str, done: impl Fn(&ServerStats) -> bool) -> ServerStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = handle.stats();
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "{what}: {stats:#?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = raw_connect(addr);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let head = read_head(&mut stream);
    let mut body = String::new();
    stream.read_to_string(&mut body).expect("body");
    (head, body)
}

#[test]
fn counters_move_with_what_clients_do() {
    let server = server();
    let handle = server.handle();
    let addr = server.local_addr();
    let before = handle.stats();
    assert_eq!(before.websockets_open, 0);

    // A message each way, a ping, and a close the handler starts.
    let mut stream = raw_upgrade(addr, "/ws");
    let mut reader = FrameReader::default();
    send_frame(&mut stream, OpCode::Text, true, b"hello");
    assert_eq!(reader.next(&mut stream), Received::Text("hello".into()));
    send_frame(&mut stream, OpCode::Ping, true, b"p");
    assert_eq!(reader.next(&mut stream), Received::Pong(b"p".to_vec()));
    let open = wait_for(&handle, "one WebSocket open", |s| s.websockets_open == 1);
    assert_eq!(open.upgraded, 1);
    assert!(open.accepted >= 1);
    assert_eq!(open.handshake_latency.count(), 1);
    assert_eq!((open.messages_received, open.bytes_received), (1, 5));
    assert_eq!((open.messages_sent, open.bytes_sent), (1, 5));
    assert!(open.received_by_kind.contains(&("ping", 1)));

    // Backpressure: 4 MiB queued for a client that is not reading yet.
    send_frame(&mut stream, OpCode::Text, true, b"flood");
    let pressed = wait_for(&handle, "backpressure counted", |s| {
        s.backpressure_events > 0
    });
    assert!(pressed.messages_sent >= 65, "{pressed:#?}");
    for _ in 0..64 {
        assert!(matches!(reader.next(&mut stream), Received::Binary(b) if b.len() == 64 * 1024));
    }
    send_frame(&mut stream, OpCode::Text, true, b"bye");
    assert_eq!(
        reader.next(&mut stream),
        Received::Close(Some(4000), "bye".into())
    );
    send_frame(&mut stream, OpCode::Close, true, &4000u16.to_be_bytes());
    let closed = wait_for(&handle, "the close counted", |s| {
        s.closed(4000) == 0 && s.closed(0) == 1
    });
    assert_eq!(closed.websockets_open, 0);

    // Refusals: no route (404), a plain GET on the WebSocket route (426).
    let (head, _) = get(addr, "/nowhere");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = get(addr, "/ws");
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
    let refused = wait_for(&handle, "refusals", |s| {
        s.refused(404) == 1 && s.refused(426) == 1
    });
    assert_eq!(refused.refused(403), 0);
    server.shutdown().expect("shutdown");
}

#[test]
fn the_metrics_page_is_prometheus_text() {
    let server = server();
    let addr = server.local_addr();
    let mut stream = raw_upgrade(addr, "/ws");
    send_frame(&mut stream, OpCode::Text, true, b"hi");
    assert_eq!(
        FrameReader::default().next(&mut stream),
        Received::Text("hi".into())
    );
    wait_for(&server.handle(), "the message counted", |s| {
        s.messages_received == 1
    });

    let (head, body) = get(addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    // The line format: `# TYPE`/`# HELP`/`# UNIT` comments, then `name{labels} value`
    // samples whose names belong to a declared family.
    let mut families = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            families.push(name.to_owned());
        } else if line.starts_with("# HELP ") || line.starts_with("# UNIT ") || line == "# EOF" {
        } else {
            let (name, value) = line.rsplit_once(' ').expect("a sample");
            let metric = name.split('{').next().unwrap_or(name);
            assert!(
                families
                    .iter()
                    .any(|family| metric.starts_with(family.as_str())),
                "{line}: no family declared"
            );
            assert!(value.parse::<f64>().is_ok(), "{line}");
            if let Some(labels) = name.strip_prefix(metric) {
                assert!(
                    labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                    "{line}"
                );
            }
        }
    }
    assert!(body.contains("\nringws_websockets_open 1\n"), "{body}");
    assert!(
        body.contains("\nringws_messages_received_total 1\n"),
        "{body}"
    );
    assert!(
        body.contains("ringws_handshake_latency_seconds_count 1\n"),
        "{body}"
    );
    drop(stream);
    server.shutdown().expect("shutdown");
}
