//! The WebSocket-to-TCP bridge: large transfers both ways checked byte for byte, a
//! refused backend, a closing backend, the base64 subprotocol, and a real
//! `redis-server` when one is installed.

#[path = "common/redis.rs"]
mod redis;
#[path = "common/skip.rs"]
mod skip;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use ringws::{RunningServer, Server};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A plain TCP echo server on a thread per connection.
fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut buf = vec![0; 32 * 1024];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn bridge(to: SocketAddr) -> RunningServer {
    Server::builder()
        .bind("127.0.0.1:0")
        .shards(2)
        .bridge("/", to)
        .build()
        .expect("build")
        .start()
        .expect("start")
}

async fn connect(server: &RunningServer, protocol: Option<&str>) -> (Ws, Option<String>) {
    connect_with(server, protocol, None).await
}

/// Connects with small socket buffers when `buffers` is given, so that the kernel does
/// not absorb what the bridge's backpressure should hold back.
async fn connect_with(
    server: &RunningServer,
    protocol: Option<&str>,
    buffers: Option<u32>,
) -> (Ws, Option<String>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(size) = buffers {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        socket.set_send_buffer_size(size).expect("SO_SNDBUF");
    }
    let tcp = socket.connect(server.local_addr()).await.expect("connect");
    let mut request = format!("ws://{}/", server.local_addr())
        .into_client_request()
        .expect("request");
    if let Some(protocol) = protocol {
        let value = protocol.parse().expect("header value");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", value);
    }
    let (ws, response) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp))
        .await
        .expect("handshake");
    let chosen = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (ws, chosen)
}

async fn next(ws: &mut Ws) -> WsMessage {
    tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .expect("timely")
        .expect("open")
        .expect("message")
}

/// The stream ends (after the close handshake) within 20 s, with nothing more.
async fn expect_end(ws: &mut Ws) {
    match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
        Ok(None) => {}
        Ok(Some(other)) => panic!("expected the end of the stream, got {other:?}"),
        Err(_) => panic!("the stream did not end within 20 s"),
    }
}

/// The close frame a bridge sends.
fn close(code: u16, reason: &str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + i / 251) % 256) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transfers_both_ways_through_an_echo_backend() {
    const TOTAL: usize = 8 << 20;
    let server = bridge(echo_backend());
    let (ws, chosen) = connect(&server, Some("binary")).await;
    assert_eq!(chosen.as_deref(), Some("binary"));
    let (mut sink, mut stream) = ws.split();
    let data = pattern(TOTAL);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        // Uneven message sizes, so that messages and TCP reads never line up.
        let mut offset = 0;
        let mut size = 1000;
        while offset < sent.len() {
            let end = (offset + size).min(sent.len());
            sink.send(WsMessage::binary(sent[offset..end].to_vec()))
                .await
                .expect("send");
            offset = end;
            size = size * 3 % 200_000 + 1;
        }
        sink
    });
    let mut got = Vec::with_capacity(TOTAL);
    let mut reads = 0;
    while got.len() < TOTAL {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("timely")
            .expect("open")
            .expect("message");
        match message {
            WsMessage::Binary(bytes) => got.extend_from_slice(&bytes),
            other => panic!("unexpected {other:?}"),
        }
        reads += 1;
        if reads % 64 == 0 && got.len() < TOTAL / 2 {
            // A slow reader for a while: the bridge must pause the backend, not drop.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(got.len(), TOTAL);
    let first_bad = got.iter().zip(&data).position(|(a, b)| a != b);
    assert_eq!(first_bad, None, "echoed bytes differ");
    let mut sink = writer.await.expect("writer");
    sink.send(WsMessage::Close(None)).await.expect("close");
    // The close (without a code) is answered in kind, then the socket ends.
    let mut ws = sink.reunite(stream).expect("one socket");
    assert_eq!(next(&mut ws).await, WsMessage::Close(None));
    expect_end(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_backend_closes_with_1011() {
    let closed_port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    // What this machine says to a connection there, in the bridge's words.
    let refused = TcpStream::connect(closed_port).expect_err("nothing listens there");
    let server = bridge(closed_port);
    let (mut ws, _) = connect(&server, None).await;
    assert_eq!(
        next(&mut ws).await,
        close(1011, &format!("backend unavailable: {refused}"))
    );
    expect_end(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_backend_closes_with_1000_after_its_data() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.write_all(&pattern(300_000));
        }
    });
    let server = bridge(addr);
    let (mut ws, chosen) = connect(&server, None).await;
    assert_eq!(chosen, None);
    let mut got = Vec::new();
    loop {
        match next(&mut ws).await {
            WsMessage::Binary(bytes) => got.extend_from_slice(&bytes),
            other => {
                assert_eq!(other, close(1000, "backend closed"));
                break;
            }
        }
    }
    assert_eq!(got, pattern(300_000));
    expect_end(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base64_subprotocol() {
    let server = bridge(echo_backend());
    let (mut ws, chosen) = connect(&server, Some("base64, binary")).await;
    assert_eq!(chosen.as_deref(), Some("base64"));
    let data = pattern(100_000);
    ws.send(WsMessage::text(B64.encode(&data)))
        .await
        .expect("send");
    let mut got = Vec::new();
    while got.len() < data.len() {
        match next(&mut ws).await {
            WsMessage::Text(text) => got.extend(B64.decode(text.as_str()).expect("base64")),
            other => panic!("expected text, got {other:?}"),
        }
    }
    assert_eq!(got, data);
    ws.send(WsMessage::text("not base64!")).await.expect("send");
    assert_eq!(next(&mut ws).await, close(1007, "invalid base64"));
    expect_end(&mut ws).await;
}

/// Reads binary messages until `want` bytes arrived.
async fn read_exact(ws: &mut Ws, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < want {
        match next(ws).await {
            WsMessage::Binary(bytes) => got.extend_from_slice(&bytes),
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

/// Strict mode really fails where redis-server is missing: this test re-executes
/// `redis_through_the_bridge` with an empty PATH, once strict (it must fail, naming the
/// missing part) and once plain (it must pass and say on stderr that it skipped).
#[test]
fn strict_mode_fails_the_redis_test_without_redis_server() {
    let exe = std::env::current_exe().expect("current_exe");
    for strict in [true, false] {
        let mut cmd = Command::new(&exe);
        cmd.args(["--exact", "redis_through_the_bridge", "--test-threads=1"])
            .env("PATH", "")
            .env_remove(skip::STRICT_ENV);
        if strict {
            cmd.env(skip::STRICT_ENV, "1");
        }
        let out = cmd.output().expect("run the test binary");
        let all = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if strict {
            assert!(!out.status.success(), "strict run passed:\n{all}");
            assert!(all.contains("cannot start redis-server"), "{all}");
        } else {
            assert!(out.status.success(), "plain run failed:\n{all}");
            assert!(
                all.contains("SKIPPED redis_through_the_bridge: cannot start redis-server"),
                "{all}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_through_the_bridge() {
    let Some(redis) = redis::RedisServer::start() else {
        return;
    };
    let server = bridge(redis.addr());
    let (mut ws, _) = connect(&server, Some("binary")).await;
    ws.send(WsMessage::binary(b"PING\r\n".to_vec()))
        .await
        .expect("send");
    assert_eq!(read_exact(&mut ws, 7).await, b"+PONG\r\n");
    // A 1 MiB value, written in pieces, read back whole.
    let value: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let mut command = format!("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n${}\r\n", value.len()).into_bytes();
    command.extend_from_slice(&value);
    command.extend_from_slice(b"\r\n*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n");
    for piece in command.chunks(60_000) {
        ws.send(WsMessage::binary(piece.to_vec()))
            .await
            .expect("send");
    }
    let mut expected = format!("+OK\r\n${}\r\n", value.len()).into_bytes();
    expected.extend_from_slice(&value);
    expected.extend_from_slice(b"\r\n");
    let got = read_exact(&mut ws, expected.len()).await;
    assert!(got == expected, "redis answered something else");
    // QUIT: redis answers and closes; the bridge closes the WebSocket with 1000.
    ws.send(WsMessage::binary(b"QUIT\r\n".to_vec()))
        .await
        .expect("send");
    assert_eq!(read_exact(&mut ws, 5).await, b"+OK\r\n");
    assert_eq!(next(&mut ws).await, close(1000, "backend closed"));
    expect_end(&mut ws).await;
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_websocket_reader_pauses_the_backend_and_loses_nothing() {
    // The backend writes 40 MiB at once (more than the socket buffers on the way hold); the client waits before reading. With a 2 MiB
    // cap on the WebSocket's queue, only pausing the backend keeps every byte.
    const TOTAL: usize = 40 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.write_all(&pattern(TOTAL));
        }
    });
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .shards(1)
        .max_buffered(2 << 20)
        .bridge("/", addr)
        .build()
        .expect("build")
        .start()
        .expect("start");
    let (mut ws, _) = connect_with(&server, None, Some(64 * 1024)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = read_exact(&mut ws, TOTAL).await;
    assert!(got == pattern(TOTAL), "bytes lost or reordered");
    assert_eq!(next(&mut ws).await, close(1000, "backend closed"));
    expect_end(&mut ws).await;
}

#[test]
fn a_slow_backend_pauses_the_websocket() {
    // The backend reads nothing until the client says it is stuck (or done); the client
    // writes 128 MiB (more than the socket buffers on the way hold, even autotuned) as
    // pre-encoded frames with a zero mask. Only if the bridge stops reading the
    // WebSocket does the client get stuck (no progress for 300 ms); every byte must
    // then arrive in order once the backend reads.
    const TOTAL: usize = 128 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stuck_tx, stuck_rx) = std::sync::mpsc::channel::<bool>();
    let backend = thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        socket2::SockRef::from(&s)
            .set_recv_buffer_size(64 * 1024)
            .expect("SO_RCVBUF");
        let stuck = stuck_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the client reports");
        let mut got = Vec::with_capacity(TOTAL);
        s.read_to_end(&mut got).expect("read");
        (stuck, got)
    });
    let server = bridge(addr);
    let mut client = TcpStream::connect(server.local_addr()).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    client
        .write_all(
            b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .expect("handshake");
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        client.read_exact(&mut byte).expect("101");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let data = pattern(TOTAL);
    let mut wire = Vec::with_capacity(TOTAL + 1024);
    for piece in data.chunks(1 << 20) {
        wire.extend_from_slice(&[0x82, 0x80 | 127]);
        wire.extend_from_slice(&(piece.len() as u64).to_be_bytes());
        wire.extend_from_slice(&[0; 4]);
        wire.extend_from_slice(piece);
    }
    wire.extend_from_slice(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);
    client.set_nonblocking(true).expect("nonblocking");
    let mut offset = 0;
    let mut progress = Instant::now();
    let mut reported = false;
    while offset < wire.len() {
        match client.write(&wire[offset..]) {
            Ok(n) => {
                offset += n;
                progress = Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !reported && progress.elapsed() > Duration::from_millis(300) {
                    reported = true;
                    stuck_tx.send(true).expect("report");
                }
                assert!(
                    progress.elapsed() < Duration::from_secs(20),
                    "stuck for good"
                );
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    if !reported {
        stuck_tx.send(false).expect("report");
    }
    client.set_nonblocking(false).expect("blocking");
    // The bridge answers the client's close 1000 with its own, then closes (a read
    // timeout is no close: it fails here).
    let mut rest = Vec::new();
    match client.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("no close from the bridge ({e}) after {rest:?}"),
    }
    assert_eq!(rest, [0x88, 0x02, 0x03, 0xe8], "the close reply");
    let (stuck, got) = backend.join().expect("backend");
    assert!(got == data, "bytes lost or reordered");
    assert!(
        stuck,
        "the bridge read the whole WebSocket while the backend was not reading"
    );
}
