//! Hostile clients over loopback: slowloris heads, ping floods, peers that never read,
//! random garbage, half-closed sockets and SockJS session floods. Each test asserts
//! behaviour (answers, close codes, other clients unaffected), never timings, and every
//! wait is bounded by socket read timeouts or a deadline.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    raw_connect, raw_upgrade, read_bytes_to_close, read_head, read_to_close, refusal, send_frame,
    FrameReader, Received,
};
use ringws::proto::{encode_frame, OpCode};
use ringws::sockjs::SockJsOptions;
use ringws::{CloseInitiator, CloseReason, Conn, Handler, Message, SendStatus};

/// Read timeouts for every socket here: a server bug fails a test instead of hanging it.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = raw_connect(addr);
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("timeout");
    stream
}

fn upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let stream = raw_upgrade(addr, path);
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("timeout");
    stream
}

/// Sends `text` and expects it back (pongs to the automatic pings are not expected:
/// the servers here keep the default idle timeout, far longer than a test).
fn assert_echo(stream: &mut TcpStream, reader: &mut FrameReader, text: &str) {
    send_frame(stream, OpCode::Text, true, text.as_bytes());
    assert_eq!(reader.next(stream), Received::Text(text.to_owned()));
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

// 1. Slowloris.

const SLOWLORIS: usize = 500;

fn half_heads(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|i| {
            let mut stream = connect(addr);
            let half = format!("GET /echo HTTP/1.1\r\nHost: {addr}\r\nX-Stall-{i}: ");
            stream.write_all(half.as_bytes()).expect("write");
            stream
        })
        .collect()
}

#[test]
fn slowloris_heads_do_not_starve_a_websocket_client() {
    let server = common::echo_server();
    let addr = server.local_addr();
    let stalled = half_heads(addr, SLOWLORIS);
    let mut client = upgrade(addr, "/echo");
    let mut reader = FrameReader::default();
    for i in 0..20 {
        assert_echo(&mut client, &mut reader, &format!("through the stall {i}"));
    }
    // None of the stalled connections got an answer (nor was dropped) meanwhile.
    let mut probe = [0u8; 1];
    for mut stream in stalled.into_iter().take(10) {
        stream.set_nonblocking(true).expect("nonblocking");
        let read = stream.read(&mut probe);
        assert!(
            read.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
            "a stalled head was answered: {read:?}"
        );
    }
    assert_echo(&mut client, &mut reader, "after");
}

#[test]
fn slowloris_heads_are_answered_408_at_the_handshake_timeout() {
    let server = common::echo_server_with(|b| b.handshake_timeout(Duration::from_millis(300)));
    let addr = server.local_addr();
    let stalled = half_heads(addr, SLOWLORIS);
    let mut client = upgrade(addr, "/echo");
    let mut reader = FrameReader::default();
    assert_echo(&mut client, &mut reader, "while they stall");
    let timed_out = refusal(
        "408 Request Timeout",
        &[],
        "request head not received in time",
    );
    for (i, mut stream) in stalled.into_iter().enumerate() {
        // The whole answer, then the close (a read timeout fails the test).
        let answer = read_to_close(&mut stream);
        assert_eq!(answer, timed_out, "stalled connection {i}");
    }
    // The upgraded client is past its handshake: the timeout does not touch it.
    assert_echo(&mut client, &mut reader, "after they were timed out");
}

// 2. Ping flood.

#[test]
fn ten_thousand_pings_in_one_write_each_get_a_pong() {
    const PINGS: u32 = 10_000;
    let server = common::echo_server();
    let mut stream = upgrade(server.local_addr(), "/echo");
    let mut flood = Vec::new();
    for i in 0..PINGS {
        encode_frame(
            &mut flood,
            OpCode::Ping,
            true,
            &i.to_be_bytes(),
            Some([1, 2, 3, 4]),
        );
    }
    encode_frame(
        &mut flood,
        OpCode::Text,
        true,
        b"after the flood",
        Some([5, 6, 7, 8]),
    );
    // Written from another thread, so the pongs coming back can never block it.
    let mut writer = stream.try_clone().expect("clone");
    let write = std::thread::spawn(move || writer.write_all(&flood));
    let mut reader = FrameReader::default();
    let mut pongs = 0u32;
    loop {
        match reader.next(&mut stream) {
            Received::Pong(payload) => {
                assert_eq!(payload, pongs.to_be_bytes(), "pong {pongs} out of order");
                pongs += 1;
            }
            Received::Text(text) => {
                assert_eq!(text, "after the flood");
                break;
            }
            other => panic!("after {pongs} pongs: {other:?}"),
        }
    }
    assert_eq!(pongs, PINGS);
    write.join().expect("writer").expect("write the flood");
    let mut reader2 = FrameReader::default();
    let mut other = upgrade(server.local_addr(), "/echo");
    assert_echo(&mut other, &mut reader2, "other client");
}

// 3. A peer that never reads.

const MIB: usize = 1 << 20;

/// Answers every message with 1 MiB, recording each send's status and the bytes left
/// buffered after it.
struct Firehose {
    log: Arc<Mutex<Vec<(SendStatus, usize)>>>,
}

impl Handler for Firehose {
    fn on_message(&mut self, conn: &mut Conn<'_>, _message: Message<'_>) {
        let status = conn.send_binary(&vec![0x5a; MIB]);
        let buffered = conn.buffered_amount();
        self.log.lock().unwrap().push((status, buffered));
    }
}

#[test]
fn a_peer_that_never_reads_hits_backpressure_then_dropped() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let handler_log = log.clone();
    // The hard limit is what this test is about: keep reading the peer past the
    // threshold (tests/pause.rs covers the pause that is on by default).
    let server = common::builder()
        .max_buffered(4 * MIB)
        .pause_reading_on_backpressure(false)
        .websocket("/firehose", move || Firehose {
            log: handler_log.clone(),
        })
        .websocket("/echo", || common::Echo)
        .build()
        .expect("build")
        .start()
        .expect("start");
    let addr = server.local_addr();
    let mut other = upgrade(addr, "/echo");
    let mut other_reader = FrameReader::default();
    let mut slow = upgrade(addr, "/firehose");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut asked = 0;
    // Ask for 1 MiB at a time, never reading, until the server drops one (kernel
    // socket buffers take some MiB before the server's own queue fills).
    while !log
        .lock()
        .unwrap()
        .iter()
        .any(|(status, _)| *status == SendStatus::Dropped)
    {
        assert!(
            Instant::now() < deadline,
            "no Dropped after {asked} MiB asked: {:?}",
            log.lock().unwrap()
        );
        if asked < 64 {
            send_frame(&mut slow, OpCode::Text, true, b"more");
            asked += 1;
        }
        assert_echo(&mut other, &mut other_reader, "ok");
        std::thread::sleep(Duration::from_millis(5));
    }
    let log = log.lock().unwrap().clone();
    let first_backpressure = log
        .iter()
        .position(|(status, _)| *status == SendStatus::Backpressure)
        .expect("no Backpressure before Dropped");
    let first_dropped = log
        .iter()
        .position(|(status, _)| *status == SendStatus::Dropped)
        .expect("dropped");
    assert!(first_backpressure < first_dropped, "{log:?}");
    // The queue never grows past the hard limit.
    for (status, buffered) in &log {
        assert!(*buffered <= 4 * MIB, "{status:?} left {buffered} buffered");
        assert_ne!(*status, SendStatus::Unsupported);
    }
    // Other clients are unaffected.
    let mut fresh = upgrade(addr, "/echo");
    assert_echo(&mut fresh, &mut FrameReader::default(), "fresh");
    assert_echo(&mut other, &mut other_reader, "still fine");
    drop(slow);
}

/// Answers every message with 1 MiB and records how the connection ended.
struct ClosingFirehose {
    closes: Arc<Mutex<Vec<CloseReason>>>,
}

impl Handler for ClosingFirehose {
    fn on_message(&mut self, conn: &mut Conn<'_>, _message: Message<'_>) {
        conn.send_binary(&vec![0x5a; MIB]);
    }
    fn on_close(&mut self, _conn: &mut Conn<'_>, reason: CloseReason) {
        self.closes.lock().unwrap().push(reason);
    }
}

#[test]
fn the_idle_timeout_ends_a_peer_that_never_reads() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let handler_closes = closes.clone();
    let server = common::builder()
        .max_buffered(4 * MIB)
        .idle_timeout(Duration::from_millis(400))
        .close_timeout(Duration::from_millis(300))
        .websocket("/firehose", move || ClosingFirehose {
            closes: handler_closes.clone(),
        })
        .build()
        .expect("build")
        .start()
        .expect("start");
    let mut slow = upgrade(server.local_addr(), "/firehose");
    // Fill the kernel buffers and the server's queue, then go silent.
    for _ in 0..20 {
        send_frame(&mut slow, OpCode::Text, true, b"more");
    }
    let seen = wait_for_closes(&closes, 1);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].code.0, seen[0].reason.as_str(), seen[0].initiator),
        (1001, "idle timeout", CloseInitiator::Local)
    );
    // The socket is really ended: draining what was queued reaches the close (a read
    // timeout fails here).
    let drained = read_bytes_to_close(&mut slow);
    assert!(drained.len() >= MIB, "only {} bytes came", drained.len());
    let mut byte = [0u8; 1];
    assert_eq!(slow.read(&mut byte).expect("EOF, not a timeout"), 0);
}

// 4. Random garbage.

#[test]
fn random_garbage_gets_a_400_with_its_reason() {
    let server = common::echo_server_with(|b| b.handshake_timeout(Duration::from_millis(500)));
    let addr = server.local_addr();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // (the bytes, the reason of the 400 they must get). The generator is seeded, so
    // every case is the same on every run; what httparse rejects first follows from
    // where the random bytes start.
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    for i in 0..24 {
        let len = 1 + (rng.next() % 3000) as usize;
        let (mut case, reason) = match i % 4 {
            // A random method, or a random request target: not a token.
            0 => (Vec::new(), "malformed request: invalid token"),
            1 => (b"GET ".to_vec(), "malformed request: invalid token"),
            // A valid request line (and headers), then a random header line.
            2 => (
                b"GET /echo HTTP/1.1\r\n".to_vec(),
                "malformed request: invalid header name",
            ),
            _ => (
                b"GET /echo HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n".to_vec(),
                "malformed request: invalid header name",
            ),
        };
        case.extend(rng.bytes(len));
        if i % 2 == 1 {
            case.extend_from_slice(b"\r\n\r\n");
        }
        cases.push((case, reason));
    }
    let streams: Vec<TcpStream> = cases
        .iter()
        .map(|(case, _)| {
            let mut stream = connect(addr);
            // The server may answer and close before reading it all.
            let _ = stream.write_all(case);
            stream
        })
        .collect();
    for (i, mut stream) in streams.into_iter().enumerate() {
        let (case, reason) = &cases[i];
        // Answered at once (not at the 500 ms handshake timeout, which would say 408),
        // then closed: a read timeout fails the test, and so does a close without the
        // answer.
        let answer = read_to_close(&mut stream);
        assert_eq!(
            answer,
            refusal("400 Bad Request", &[], reason),
            "case {i} ({:?}...)",
            String::from_utf8_lossy(&case[..case.len().min(40)]),
        );
    }
    let mut client = upgrade(addr, "/echo");
    assert_echo(&mut client, &mut FrameReader::default(), "still serving");
}

// 5. Half-closed sockets.

/// Echoes and records how each connection ended.
struct Recorder {
    closes: Arc<Mutex<Vec<CloseReason>>>,
}

impl Handler for Recorder {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        if let Message::Text(text) = message {
            conn.send_text(text);
        }
    }
    fn on_close(&mut self, _conn: &mut Conn<'_>, reason: CloseReason) {
        self.closes.lock().unwrap().push(reason);
    }
}

fn recorder_server(closes: &Arc<Mutex<Vec<CloseReason>>>) -> ringws::RunningServer {
    let closes = closes.clone();
    common::builder()
        .websocket("/rec", move || Recorder {
            closes: closes.clone(),
        })
        .build()
        .expect("build")
        .start()
        .expect("start")
}

fn wait_for_closes(closes: &Arc<Mutex<Vec<CloseReason>>>, n: usize) -> Vec<CloseReason> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let seen = closes.lock().unwrap().clone();
        if seen.len() >= n {
            return seen;
        }
        assert!(Instant::now() < deadline, "on_close not called: {seen:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_half_closed_client_is_ended_with_1006() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let server = recorder_server(&closes);
    let mut stream = upgrade(server.local_addr(), "/rec");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    // The server ends the connection: nothing more comes, then EOF.
    assert_eq!(FrameReader::default().next(&mut stream), Received::Eof);
    let seen = wait_for_closes(&closes, 1);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].code.0, 1006, "{seen:?}");
    assert_eq!(seen[0].initiator, CloseInitiator::Transport, "{seen:?}");
}

#[test]
fn a_client_half_closing_after_a_message_still_gets_its_echo() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let server = recorder_server(&closes);
    let mut stream = upgrade(server.local_addr(), "/rec");
    send_frame(&mut stream, OpCode::Text, true, b"last words");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let mut reader = FrameReader::default();
    // The message read before the EOF is handled and its answer written, then the
    // connection ends without a close frame.
    assert_eq!(
        reader.next(&mut stream),
        Received::Text("last words".into())
    );
    assert_eq!(reader.next(&mut stream), Received::Eof);
    let seen = wait_for_closes(&closes, 1);
    assert_eq!(seen[0].code.0, 1006, "{seen:?}");
}

// 6. SockJS session flood.

/// A minimal kept-alive HTTP/1.1 client: one request, one whole response.
fn http_call(stream: &mut TcpStream, method: &str, path: &str, body: &str) -> (u16, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let head = read_head(stream);
    let status: u16 = head[9..12].parse().expect("status");
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let body = if header("Transfer-Encoding").as_deref() == Some("chunked") {
        let mut body = Vec::new();
        loop {
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while !line.ends_with(b"\r\n") {
                stream.read_exact(&mut byte).expect("chunk size");
                line.push(byte[0]);
            }
            let size =
                usize::from_str_radix(std::str::from_utf8(&line[..line.len() - 2]).unwrap(), 16)
                    .expect("chunk size");
            let mut data = vec![0; size + 2];
            stream.read_exact(&mut data).expect("chunk");
            data.truncate(size);
            body.extend(data);
            if size == 0 {
                break body;
            }
        }
    } else if let Some(len) = header("Content-Length") {
        let mut body = vec![0; len.parse().expect("length")];
        stream.read_exact(&mut body).expect("body");
        body
    } else {
        Vec::new()
    };
    (status, String::from_utf8(body).expect("utf-8"))
}

#[test]
fn a_sockjs_session_flood_expires_and_the_service_keeps_serving() {
    const CONNECTIONS: usize = 4;
    const PER_CONNECTION: usize = 500;
    let server = common::builder()
        .sockjs(
            "/flood",
            || common::Echo,
            SockJsOptions::default().disconnect_delay(Duration::from_millis(200)),
        )
        .websocket("/echo", || common::Echo)
        .build()
        .expect("build")
        .start()
        .expect("start");
    let addr = server.local_addr();
    let flooders: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut stream = connect(addr);
                for i in 0..PER_CONNECTION {
                    let (status, body) =
                        http_call(&mut stream, "POST", &format!("/flood/0/f{c}x{i}/xhr"), "");
                    assert_eq!((status, body.as_str()), (200, "o\n"), "session f{c}x{i}");
                }
            })
        })
        .collect();
    // A WebSocket client is served while the sessions pile up.
    let mut ws = upgrade(addr, "/echo");
    let mut reader = FrameReader::default();
    assert_echo(&mut ws, &mut reader, "during the flood");
    for flooder in flooders {
        flooder.join().expect("flooder");
    }
    assert_echo(&mut ws, &mut reader, "after the flood");
    // A new session works end to end.
    let mut c = connect(addr);
    assert_eq!(
        http_call(&mut c, "POST", "/flood/0/fresh/xhr", ""),
        (200, "o\n".to_owned())
    );
    assert_eq!(
        http_call(&mut c, "POST", "/flood/0/fresh/xhr_send", r#"["hi"]"#).0,
        204
    );
    assert_eq!(
        http_call(&mut c, "POST", "/flood/0/fresh/xhr", ""),
        (200, "a[\"hi\"]\n".to_owned())
    );
    // The flood's sessions expire after the disconnect delay: a send finds nothing.
    let deadline = Instant::now() + Duration::from_secs(3);
    for c_index in 0..CONNECTIONS {
        for i in [0, PER_CONNECTION - 1] {
            loop {
                let (status, _) = http_call(
                    &mut c,
                    "POST",
                    &format!("/flood/0/f{c_index}x{i}/xhr_send"),
                    r#"["x"]"#,
                );
                if status == 404 {
                    break;
                }
                assert_eq!(status, 204, "session f{c_index}x{i}");
                assert!(Instant::now() < deadline, "f{c_index}x{i} never expired");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn shutdown_finishes_while_a_peer_never_reads_its_queued_output() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let handler_log = log.clone();
    let server = common::builder()
        .max_buffered(4 * MIB)
        .close_timeout(Duration::from_millis(300))
        .websocket("/firehose", move || Firehose {
            log: handler_log.clone(),
        })
        .build()
        .expect("build")
        .start()
        .expect("start");
    let mut stream = upgrade(server.local_addr(), "/firehose");
    // Fill the socket buffers and the server's queue; never read.
    for _ in 0..30 {
        send_frame(&mut stream, OpCode::Text, true, b"more");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(server.shutdown());
    });
    // The server gives the peer the close timeout to take its output, then abandons
    // the send in flight and closes: shutdown returns while the peer still never reads.
    let outcome = finished
        .recv_timeout(Duration::from_secs(20))
        .expect("shutdown must not wait for a peer that never reads");
    outcome.expect("clean shutdown");
    drop(stream);
}
