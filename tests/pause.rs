//! Inbound pauses and slow readers: a handler that pauses reading and is resumed from
//! another thread, the automatic pause while the output is over the backpressure
//! threshold, and `close_on_backpressure_limit`. Every wait is bounded (socket read
//! timeouts, polling deadlines); nothing asserts on timing.

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    builder, expect_silence, raw_upgrade, read_bytes_to_close, send_frame, FrameReader,
    Received as Got,
};
use ringws::proto::{encode_frame, Decoder, Event as Frame, Limits, OpCode, Role};
use ringws::{CloseReason, Conn, ConnHandle, Handler, Message, RunningServer, SendStatus};

/// Waits until `done` is true, failing the test after 10 s.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// One masked binary frame carrying `seq` and `len - 4` filler bytes.
fn numbered_frame(seq: u32, len: usize) -> Vec<u8> {
    let mut payload = vec![(seq % 251) as u8; len.max(4)];
    payload[..4].copy_from_slice(&seq.to_be_bytes());
    let mut frame = Vec::new();
    encode_frame(
        &mut frame,
        OpCode::Binary,
        true,
        &payload,
        Some([1, 2, 3, 4]),
    );
    frame
}

/// Reads `count` binary echoes and checks they carry 0, 1, 2, … in order.
fn read_numbered(stream: &mut TcpStream, reader: &mut FrameReader, count: u32) {
    for expected in 0..count {
        match reader.next(stream) {
            Got::Binary(bytes) => {
                let seq = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
                assert_eq!(seq, expected, "echo out of order or missing");
            }
            other => panic!("expected echo {expected}, got {other:?}"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Message(u32),
    Paused(u32),
    /// Logged by the worker thread just before it resumes the connection.
    Resumed,
}

/// Echoes; after every tenth message it pauses and has a worker thread resume it
/// later through a `ConnHandle`, as a handler that hands work to a thread would.
struct Paced {
    log: Arc<Mutex<Vec<Event>>>,
}

impl Handler for Paced {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        let n: u32 = text.parse().expect("a number");
        self.log.lock().expect("log").push(Event::Message(n));
        conn.send_text(text);
        if n % 10 == 9 {
            conn.pause_reading();
            assert!(conn.is_reading_paused());
            self.log.lock().expect("log").push(Event::Paused(n));
            let (handle, log) = (conn.handle(), Arc::clone(&self.log));
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(30));
                log.lock().expect("log").push(Event::Resumed);
                handle.resume_reading().expect("shard running");
            });
        }
    }
}

/// Starts a server whose `/paced` route is served by [`Paced`] handlers sharing `log`.
fn paced_server(log: &Arc<Mutex<Vec<Event>>>) -> RunningServer {
    let log = Arc::clone(log);
    builder()
        .websocket("/paced", move || Paced {
            log: Arc::clone(&log),
        })
        .build()
        .expect("build")
        .start()
        .expect("start")
}

/// Checks that the handler saw messages 0..100 in order and nothing between each
/// pause and the worker's resume.
fn assert_paced(log: &Mutex<Vec<Event>>) {
    // The last pause's worker logs its resume after the last echo went out.
    wait_for("the last resume", || log.lock().expect("log").len() == 120);
    let log = log.lock().expect("log");
    let mut expected = Vec::new();
    for n in 0..100u32 {
        expected.push(Event::Message(n));
        if n % 10 == 9 {
            expected.push(Event::Paused(n));
            expected.push(Event::Resumed);
        }
    }
    assert_eq!(*log, expected);
}

#[test]
fn handler_paused_then_resumed_from_another_thread_loses_and_reorders_nothing() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let server = paced_server(&log);
    let mut client = raw_upgrade(server.local_addr(), "/paced");
    // All 100 messages in one write: the server reads many at once, so the ones behind
    // a pause are already received and must be kept for the resume.
    let mut batch = Vec::new();
    for n in 0..100u32 {
        let text = n.to_string();
        encode_frame(
            &mut batch,
            OpCode::Text,
            true,
            text.as_bytes(),
            Some([9, 8, 7, 6]),
        );
    }
    client.write_all(&batch).expect("write");
    let mut reader = FrameReader::default();
    for n in 0..100u32 {
        assert_eq!(reader.next(&mut client), Got::Text(n.to_string()));
    }
    assert_paced(&log);
}

#[test]
fn hixie_client_paused_and_resumed_loses_and_reorders_nothing() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let server = paced_server(&log);
    let addr = server.local_addr();
    let mut client = common::raw_connect(addr);
    // hixie-75: no challenge; the frames follow the request head in the same write.
    let mut batch = format!(
        "GET /paced HTTP/1.1\r\nHost: {addr}\r\nUpgrade: WebSocket\r\n\
         Connection: Upgrade\r\nOrigin: http://{addr}\r\n\r\n"
    )
    .into_bytes();
    let mut expected = Vec::new();
    for n in 0..100u32 {
        let frame = [&[0u8][..], n.to_string().as_bytes(), &[0xff]].concat();
        batch.extend_from_slice(&frame);
        expected.extend_from_slice(&frame);
    }
    client.write_all(&batch).expect("write");
    let head = common::read_head(&mut client);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let mut echoes = vec![0u8; expected.len()];
    std::io::Read::read_exact(&mut client, &mut echoes).expect("every echo");
    assert_eq!(
        String::from_utf8_lossy(&echoes),
        String::from_utf8_lossy(&expected)
    );
    assert_paced(&log);
}

/// Echoes; the message "stop" pauses reading and publishes the connection's handle.
struct Stopper {
    handle: Arc<Mutex<Option<ConnHandle>>>,
    seen: Arc<AtomicUsize>,
    closed: Arc<Mutex<Option<CloseReason>>>,
}

impl Handler for Stopper {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        self.seen.fetch_add(1, Ordering::SeqCst);
        if message == Message::Text("stop") {
            conn.pause_reading();
            *self.handle.lock().expect("handle") = Some(conn.handle());
        }
        match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }

    fn on_close(&mut self, _conn: &mut Conn<'_>, reason: CloseReason) {
        *self.closed.lock().expect("closed") = Some(reason);
    }
}

/// A server whose `/stop` route is served by [`Stopper`]s sharing these.
struct Stoppers {
    server: RunningServer,
    handle: Arc<Mutex<Option<ConnHandle>>>,
    seen: Arc<AtomicUsize>,
    closed: Arc<Mutex<Option<CloseReason>>>,
}

/// Makes the [`Stopper`] of each connection.
type StopperFactory = Box<dyn Fn() -> Stopper + Send + Sync>;

/// Starts a server whose routes `mount` adds, serving [`Stopper`]s.
fn stopper_server(
    mount: impl FnOnce(ringws::Builder, StopperFactory) -> ringws::Builder,
) -> Stoppers {
    let handle = Arc::new(Mutex::new(None::<ConnHandle>));
    let seen = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(Mutex::new(None));
    let factory: StopperFactory = {
        let (handle, seen, closed) = (handle.clone(), seen.clone(), closed.clone());
        Box::new(move || Stopper {
            handle: Arc::clone(&handle),
            seen: Arc::clone(&seen),
            closed: Arc::clone(&closed),
        })
    };
    let server = mount(builder(), factory)
        .build()
        .expect("build")
        .start()
        .expect("start");
    Stoppers {
        server,
        handle,
        seen,
        closed,
    }
}

#[test]
fn paused_connection_is_not_read_until_a_handle_resumes_it() {
    let Stoppers {
        server,
        handle,
        seen,
        ..
    } = stopper_server(|b, factory| b.websocket("/stop", factory));
    let mut client = raw_upgrade(server.local_addr(), "/stop");
    send_frame(&mut client, OpCode::Text, true, b"stop");
    let mut reader = FrameReader::default();
    assert_eq!(reader.next(&mut client), Got::Text("stop".into()));
    wait_for("the pause", || handle.lock().expect("handle").is_some());

    // The server reads nothing now: the client's writes fill the socket buffers (the
    // server's receive buffer, then the client's send buffer) and then would block.
    client.set_nonblocking(true).expect("nonblocking");
    let mut written = 0u32;
    let mut rest: Vec<u8> = Vec::new();
    let limit = 256 * 1024 * 1024 / 16384;
    'fill: while written < limit {
        let frame = numbered_frame(written, 16 * 1024);
        let mut offset = 0;
        while offset < frame.len() {
            match client.write(&frame[offset..]) {
                Ok(n) => offset += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if offset > 0 {
                        rest = frame[offset..].to_vec();
                        written += 1;
                    }
                    break 'fill;
                }
                Err(e) => panic!("write failed: {e}"),
            }
        }
        written += 1;
    }
    assert!(written < limit, "the paused server kept reading");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "the handler got messages while paused"
    );

    client.set_nonblocking(false).expect("blocking");
    let mut reading = client.try_clone().expect("clone");
    let reader_thread = thread::spawn(move || {
        read_numbered(&mut reading, &mut reader, written);
    });
    let handle = handle.lock().expect("handle").take().expect("a handle");
    handle.resume_reading().expect("shard running");
    client.write_all(&rest).expect("write the rest");
    reader_thread.join().expect("every echo, in order");
    assert_eq!(seen.load(Ordering::SeqCst), written as usize + 1);
}

#[test]
fn paused_connection_is_not_idle_closed_and_still_closes() {
    let idle = Duration::from_millis(500);
    let Stoppers {
        server,
        handle,
        seen,
        closed,
    } = stopper_server(|b, factory| b.shards(1).idle_timeout(idle).websocket("/stop", factory));
    let mut client = raw_upgrade(server.local_addr(), "/stop");
    send_frame(&mut client, OpCode::Text, true, b"stop");
    // (A ping the idle timer sent before the pause would come before the echo: the
    // reader skips it. After the echo nothing may come.)
    let mut reader = FrameReader::default();
    assert_eq!(reader.next(&mut client), Got::Text("stop".into()));
    wait_for("the pause", || handle.lock().expect("handle").is_some());
    // Sent during the pause: never handed to the handler (a close comes first).
    send_frame(&mut client, OpCode::Text, true, b"unread");

    // Several idle timeouts pass: the server, not the peer, stopped listening, so
    // there is no ping and no idle close.
    expect_silence(&mut client, idle * 4);

    // A close from a handle goes through, the pause notwithstanding: the server reads
    // again for the client's close reply.
    let handle = handle.lock().expect("handle").take().expect("a handle");
    handle.close(1000, "bye").expect("shard running");
    assert_eq!(
        reader.next(&mut client),
        Got::Close(Some(1000), "bye".into())
    );
    send_frame(&mut client, OpCode::Close, true, &1000u16.to_be_bytes());
    assert_eq!(reader.next(&mut client), Got::Eof);
    wait_for("on_close", || closed.lock().expect("closed").is_some());
    let reason = closed.lock().expect("closed").take().expect("reason");
    assert_eq!((reason.code.0, reason.reason.as_str()), (1000, "bye"));
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "a message reached the paused handler"
    );
}

/// What the slow-reader tests watch from inside the server.
#[derive(Default)]
struct Watch {
    /// Messages handled.
    calls: AtomicUsize,
    max_buffered: AtomicUsize,
    backpressure: AtomicBool,
    dropped: AtomicUsize,
    closed: Mutex<Option<CloseReason>>,
}

/// Echoes binary messages and records the queue's high-water mark and what sends said.
struct WatchedEcho(Arc<Watch>);

impl Handler for WatchedEcho {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match conn.send_binary(message.as_bytes()) {
            SendStatus::Backpressure => self.0.backpressure.store(true, Ordering::SeqCst),
            SendStatus::Dropped => {
                self.0.dropped.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        self.0
            .max_buffered
            .fetch_max(conn.buffered_amount(), Ordering::SeqCst);
    }

    fn on_close(&mut self, _conn: &mut Conn<'_>, reason: CloseReason) {
        *self.0.closed.lock().expect("closed") = Some(reason);
    }
}

const THRESHOLD: usize = 64 * 1024;
const MAX_BUFFERED: usize = 1024 * 1024;

/// The requests of [`flood`]: 4 KiB payloads.
const REQUEST: usize = 4096;
/// The echo of one request: a 4-byte header (2 bytes and a 16-bit length) and the payload.
const ECHO_FRAME: usize = 4 + REQUEST;
/// The README's "about the threshold plus the answer to one message", made precise
/// from the code: the shard checks `buffered > threshold` after every message it hands
/// the handler (`Connection::receive_frames`, which the held bytes go through too) and
/// holds the rest, so the last message handled found at most THRESHOLD queued and
/// added one echo. No slack is needed: nothing else is queued on the connection (the
/// client sends no pings, so there are no pongs; the idle ping is 60 s away), and
/// bytes only leave the count once written.
const PAUSED_BOUND: usize = THRESHOLD + ECHO_FRAME;

fn watched_server(close_on_limit: bool) -> (RunningServer, Arc<Watch>) {
    let watch = Arc::new(Watch::default());
    let server = {
        let watch = Arc::clone(&watch);
        builder()
            .shards(1)
            .backpressure_threshold(THRESHOLD)
            .max_buffered(MAX_BUFFERED)
            .close_on_backpressure_limit(close_on_limit)
            .websocket("/watched", move || WatchedEcho(Arc::clone(&watch)))
            .build()
            .expect("build")
            .start()
            .expect("start")
    };
    (server, watch)
}

/// Writes `count` numbered [`REQUEST`]-byte frames on a thread (it blocks while the server does
/// not read); the thread ends once all are written or the socket fails.
fn flood(client: &TcpStream, count: u32) -> thread::JoinHandle<u32> {
    let mut writing = client.try_clone().expect("clone");
    writing
        .set_write_timeout(Some(Duration::from_secs(20)))
        .expect("write timeout");
    thread::spawn(move || {
        for seq in 0..count {
            if writing.write_all(&numbered_frame(seq, REQUEST)).is_err() {
                return seq;
            }
        }
        count
    })
}

#[test]
fn client_that_floods_without_reading_is_paused_and_loses_nothing() {
    let (server, watch) = watched_server(false);
    let mut client = raw_upgrade(server.local_addr(), "/watched");
    // 24 MiB of requests whose echoes nobody reads for a while: far more than the
    // socket buffers and `max_buffered` together, so without the pause the server
    // would read on and drop echoes.
    let count = 6 * 1024;
    let writer = flood(&client, count);
    wait_for("backpressure", || watch.backpressure.load(Ordering::SeqCst));
    // An observation window: the flood runs into the pause (and, were the pause
    // broken, on towards max_buffered) before anything is read.
    thread::sleep(Duration::from_millis(300));
    let high = watch.max_buffered.load(Ordering::SeqCst);
    assert!(
        high <= PAUSED_BOUND,
        "{high} bytes queued while paused (threshold {THRESHOLD} + one echo {ECHO_FRAME})"
    );

    let mut reader = FrameReader::default();
    read_numbered(&mut client, &mut reader, count);
    assert_eq!(writer.join().expect("writer"), count);
    assert_eq!(
        watch.dropped.load(Ordering::SeqCst),
        0,
        "echoes were dropped"
    );
    // The bound held all along, the drain and the resumes included.
    let high = watch.max_buffered.load(Ordering::SeqCst);
    assert!(
        high <= PAUSED_BOUND,
        "{high} bytes queued (threshold {THRESHOLD} + one echo {ECHO_FRAME})"
    );
    assert!(high > THRESHOLD, "the threshold was never reached: {high}");
}

/// On "flood N", sends N binary messages of 64 KiB at once.
struct Flooder(Arc<Watch>);

impl Handler for Flooder {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        let count: usize = text
            .strip_prefix("flood ")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        let chunk = vec![3u8; 64 * 1024];
        for _ in 0..count {
            if conn.send_binary(&chunk) == SendStatus::Dropped {
                self.0.dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
        conn.send_text(text);
        self.0
            .max_buffered
            .fetch_max(conn.buffered_amount(), Ordering::SeqCst);
    }

    fn on_close(&mut self, _conn: &mut Conn<'_>, reason: CloseReason) {
        *self.0.closed.lock().expect("closed") = Some(reason);
    }
}

fn flooder_server(pause: bool) -> (RunningServer, Arc<Watch>) {
    let watch = Arc::new(Watch::default());
    let server = {
        let watch = Arc::clone(&watch);
        builder()
            .shards(1)
            .backpressure_threshold(THRESHOLD)
            .max_buffered(MAX_BUFFERED)
            .close_on_backpressure_limit(true)
            .pause_reading_on_backpressure(pause)
            .websocket("/flood", move || Flooder(Arc::clone(&watch)))
            .build()
            .expect("build")
            .start()
            .expect("start")
    };
    (server, watch)
}

fn assert_closed_for_backpressure(watch: &Watch) {
    wait_for("the slow reader's close", || {
        watch.closed.lock().expect("closed").is_some()
    });
    let reason = watch.closed.lock().expect("closed").take().expect("reason");
    assert_eq!(reason.code.0, 1008, "{reason}");
    assert_eq!(reason.reason, "backpressure limit");
    // The send over the limit, and any after it in the same callback.
    assert!(watch.dropped.load(Ordering::SeqCst) >= 1);
}

/// The other connection is unaffected.
fn assert_still_served(fine: &mut TcpStream) {
    let mut reader = FrameReader::default();
    send_frame(fine, OpCode::Text, true, b"flood 2");
    assert_eq!(reader.next(fine), Got::Binary(vec![3u8; 64 * 1024]));
    assert_eq!(reader.next(fine), Got::Binary(vec![3u8; 64 * 1024]));
    assert_eq!(reader.next(fine), Got::Text("flood 2".into()));
}

#[test]
fn close_on_backpressure_limit_sends_1008_when_nothing_was_half_written() {
    let (server, watch) = flooder_server(true);
    let mut slow = raw_upgrade(server.local_addr(), "/flood");
    let mut fine = raw_upgrade(server.local_addr(), "/flood");
    // 2 MiB in one callback: the 17th message finds the 1 MiB queue full. Nothing
    // was handed to the socket yet, so the queued messages give way to the close.
    send_frame(&mut slow, OpCode::Text, true, b"flood 32");
    assert_closed_for_backpressure(&watch);
    let mut reader = FrameReader::default();
    assert_eq!(
        reader.next(&mut slow),
        Got::Close(Some(1008), "backpressure limit".into())
    );
    assert_eq!(reader.next(&mut slow), Got::Eof);
    assert_still_served(&mut fine);
}

/// The flood each request of the test below asks for: 7 × 64 KiB, so that the answers
/// to two requests (about 900 KiB) still fit the 1 MiB queue.
const STEP: usize = 7;

#[test]
fn close_on_backpressure_limit_abandons_the_output_of_a_reader_that_never_reads() {
    // Without the pause the handler keeps being asked for more.
    let (server, watch) = flooder_server(false);
    let mut slow = raw_upgrade(server.local_addr(), "/flood");
    let mut fine = raw_upgrade(server.local_addr(), "/flood");
    // One request at a time, each sent once the one before was handled. The shard
    // hands a callback's output to the socket once the callback's turn ends, so the
    // queue at a callback's start holds at most one earlier answer that the socket has
    // not been offered yet; two answers fit the limit. The limit is hence reached only
    // once the socket buffers are full and part of the output is in flight or
    // half-written: then no close frame can follow it, and the output is abandoned.
    // (With everything handed in one callback, tests above, the close frame is sent.)
    let request = format!("flood {STEP}");
    for sent in 1..=400 {
        send_frame(&mut slow, OpCode::Text, true, request.as_bytes());
        // (The close comes after the callback that went over the limit returned: a
        // request sent meanwhile is never handled.)
        let closed = || watch.closed.lock().expect("closed").is_some();
        wait_for("the request to be handled", || {
            watch.calls.load(Ordering::SeqCst) == sent || closed()
        });
        if closed() {
            break;
        }
    }
    assert_closed_for_backpressure(&watch);
    // Without the pause only the hard limit bounds the queue (the send over it was
    // dropped, not queued).
    let high = watch.max_buffered.load(Ordering::SeqCst);
    assert!(high <= MAX_BUFFERED, "{high} bytes queued");
    // The socket ends: whatever was in the socket buffers, then EOF or a reset (a
    // read timeout fails here).
    let rest = read_bytes_to_close(&mut slow);
    assert_abandoned_output(&rest, &request);
    assert_still_served(&mut fine);
}

/// `bytes` are whole answers of [`Flooder`] to `request` ([`STEP`] 64 KiB binary
/// messages, then the request's text) and at most one message cut short at the end:
/// no close frame.
fn assert_abandoned_output(bytes: &[u8], request: &str) {
    let mut decoder = Decoder::new(Role::Client, Limits::default());
    let mut data = bytes.to_vec();
    let mut pos = 0;
    let mut messages = 0usize;
    loop {
        let (consumed, event) = decoder
            .decode(&mut data[pos..])
            .expect("the server's frames are valid");
        pos += consumed;
        let place = messages % (STEP + 1);
        match event {
            Some(Frame::Binary(payload)) => assert!(
                place < STEP && payload.len() == 64 * 1024 && payload.iter().all(|&b| b == 3),
                "message {messages}: an unexpected binary message"
            ),
            Some(Frame::Text(text)) => {
                assert!(
                    place == STEP && text == request,
                    "message {messages}: {text:?}"
                )
            }
            Some(other) => panic!("after {messages} messages: {other:?}"),
            None if consumed == 0 => break,
            None => continue,
        }
        messages += 1;
    }
    // What the socket buffers held before the cut came through.
    assert!(messages > 0, "nothing of the output came");
}

#[test]
fn sockjs_websocket_session_pauses_and_resumes_in_order() {
    let Stoppers {
        server,
        handle,
        seen,
        ..
    } = stopper_server(|b, factory| {
        b.sockjs("/sj", factory, ringws::sockjs::SockJsOptions::default())
    });
    let mut ws = raw_upgrade(server.local_addr(), "/sj/000/pausing/websocket");
    let mut reader = FrameReader::default();
    assert_eq!(reader.next(&mut ws), Got::Text("o".into()));
    // "x" comes in the same frame as "stop", "y" in the next one: both wait.
    send_frame(&mut ws, OpCode::Text, true, br#"["stop","x"]"#);
    send_frame(&mut ws, OpCode::Text, true, br#"["y"]"#);
    assert_eq!(reader.next(&mut ws), Got::Text(r#"a["stop"]"#.into()));
    wait_for("the pause", || handle.lock().expect("handle").is_some());
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "messages reached the paused handler"
    );

    let handle = handle.lock().expect("handle").take().expect("a handle");
    handle.resume_reading().expect("shard running");
    assert_eq!(reader.next(&mut ws), Got::Text(r#"a["x"]"#.into()));
    assert_eq!(reader.next(&mut ws), Got::Text(r#"a["y"]"#.into()));
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

/// One HTTP/1.1 POST on a fresh connection (closed after the answer): the whole answer.
fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> String {
    let mut stream = common::raw_connect(addr);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    common::read_to_close(&mut stream)
}

#[test]
fn sockjs_http_session_keeps_its_messages_until_a_handle_resumes_it() {
    let Stoppers {
        server,
        handle,
        seen,
        ..
    } = stopper_server(|b, factory| {
        b.sockjs("/sj", factory, ringws::sockjs::SockJsOptions::default())
    });
    let addr = server.local_addr();
    assert!(post(addr, "/sj/000/held/xhr", "").contains("o\n"));
    let send = thread::spawn(move || post(addr, "/sj/000/held/xhr_send", r#"["stop","x"]"#));
    wait_for("the pause", || handle.lock().expect("handle").is_some());
    // "x" was delivered with "stop": it waits in the session, not in the handler, and
    // the send is not answered meanwhile (the client's next send waits behind it).
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert!(
        !send.is_finished(),
        "the send was answered during the pause"
    );

    let handle = handle.lock().expect("handle").take().expect("a handle");
    handle.resume_reading().expect("shard running");
    let sent = send.join().expect("send");
    assert!(sent.starts_with("HTTP/1.1 204 "), "{sent}");
    wait_for("the kept message", || seen.load(Ordering::SeqCst) == 2);
    let polled = post(addr, "/sj/000/held/xhr", "");
    assert!(polled.contains(r#"a["stop","x"]"#), "{polled}");
}
