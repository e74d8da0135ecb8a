//! The per-shard memory budget (`Builder::memory_budget`) against its two floods, on
//! the backend RINGWS_BACKEND picks (CI runs both): peers that send most of a big
//! message and never its last fragment, and peers that never read while the handler
//! keeps sending to them. The server is in-process, on one shard; every wait is
//! bounded (socket timeouts, polling deadlines); nothing asserts on timing.
//!
//! The tests run one at a time (`SERIAL`): the first one measures the process's RSS.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{read_head, send_frame, Echo, FrameReader, Received as Got};
use ringws::proto::{encode_frame, OpCode};
use ringws::{
    CloseInitiator, CloseReason, Conn, ConnHandle, Handler, Message, RunningServer, Server,
    ServerHandle,
};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// The tests measure the whole process: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The close a peer gets when the budget drops its incomplete message.
const INCOMING_CLOSE: (u16, &str) = (1009, "message too big for the server's memory");
/// The close a peer gets when the budget drops its queued output.
const OUTPUT_CLOSE: (u16, &str) = (1008, "output over the server's memory budget");

/// Waits until `done` is true, failing the test after `limit`.
fn wait_for(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// The process's resident set (VmRSS), in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kib * KIB
}

/// glibc serves an allocation from its heap rather than `mmap` once a freed mapping
/// raised its dynamic threshold (up to 32 MiB), and a heap keeps freed blocks that are
/// not at its top: the RSS then counts assembly buffers long freed. A fixed threshold
/// (which turns the dynamic one off) maps every big buffer on its own and unmaps it when
/// freed, so the RSS shows what the server holds. (The `ringws` binary uses mimalloc;
/// BENCHMARKS.md measures it.)
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets an allocator parameter; 256 KiB is a valid
        // M_MMAP_THRESHOLD (at most HEAP_MAX_SIZE / 2).
        let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024) };
        assert_eq!(set, 1, "mallopt(M_MMAP_THRESHOLD)");
    }
}

/// Samples `memory_held` (and the RSS) until stopped; gives the largest of each.
struct Monitor {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<(usize, usize)>,
}

impl Monitor {
    fn start(handle: ServerHandle) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let (mut held, mut resident) = (0, 0);
            let mut turn = 0u32;
            while !flag.load(Ordering::Relaxed) {
                held = held.max(handle.memory_held());
                if turn.is_multiple_of(8) {
                    resident = resident.max(rss());
                }
                turn = turn.wrapping_add(1);
                thread::sleep(Duration::from_millis(1));
            }
            (held, resident.max(rss()))
        });
        Monitor { stop, thread }
    }

    /// The largest `memory_held` and RSS seen.
    fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("monitor")
    }
}

/// One round trip of a small text message on the honest client's connection.
fn round_trip(stream: &mut TcpStream, reader: &mut FrameReader, n: usize) {
    let text = format!("honest {n}");
    send_frame(stream, OpCode::Text, true, text.as_bytes());
    assert_eq!(reader.next(stream), Got::Text(text));
}

/// A WebSocket upgrade on an already connected stream.
fn upgrade(mut stream: TcpStream, addr: SocketAddr, path: &str) -> TcpStream {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "upgrade refused: {head}");
    stream
}

/// Flooders each send [`FRAGMENTS`] fragments of [`FRAGMENT`] bytes of one binary
/// message (56 MiB, under the 64 MiB message limit: the flood), never the
/// last one.
const FLOODERS: usize = 16;
const FRAGMENTS: usize = 7;
const FRAGMENT: usize = 8 * MIB;
const FLOOD_BUDGET: usize = 64 * MIB;
/// Past the budget: the budget's scan step (1/64 of it) plus what a paused
/// connection's reads already on their way bring (a receive buffer or two each).
const HELD_SLACK: usize = FLOOD_BUDGET / 64 + FLOODERS * 64 * KIB;
/// RSS past the baseline, beyond the budget: the allocator's slack for the big
/// assembly buffers (freed ones not yet returned, a buffer being grown while its
/// successor exists): one fragment.
const RSS_SLACK: usize = FRAGMENT;

/// The first fragment, masked (its header says binary, not final); a continuation is
/// the same bytes with a first byte of 0x00 (continuation, not final). Built once and
/// shared by every flooder, so the clients add one fragment to the RSS, not 16.
fn flood_frame() -> (Arc<Vec<u8>>, usize) {
    let mut frame = Vec::with_capacity(FRAGMENT + 14);
    encode_frame(
        &mut frame,
        OpCode::Binary,
        false,
        &vec![0x5a; FRAGMENT],
        Some([0x11, 0x22, 0x33, 0x44]),
    );
    let header = frame.len() - FRAGMENT;
    (Arc::new(frame), header)
}

/// Sends the fragments (stopping when the server closes the socket) while a second
/// thread reads what the server sends; returns what that was.
fn flooder(addr: SocketAddr, frame: Arc<Vec<u8>>, header: usize) -> Got {
    let mut stream = upgrade(TcpStream::connect(addr).expect("connect"), addr, "/echo");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut reading = stream.try_clone().expect("clone");
    let reader = thread::spawn(move || FrameReader::default().next(&mut reading));
    let mut continuation = frame[..header].to_vec();
    continuation[0] = 0x00;
    for i in 0..FRAGMENTS {
        let written = match i {
            0 => stream.write_all(&frame),
            _ => stream
                .write_all(&continuation)
                .and_then(|()| stream.write_all(&frame[header..])),
        };
        if let Err(error) = written {
            // The server closed the connection; a write timeout is not that.
            assert!(
                !common::is_timeout(&error),
                "fragment {i}: the server neither read nor closed: {error}"
            );
            break;
        }
    }
    reader.join().expect("reader")
}

#[test]
fn a_flood_of_incomplete_messages_is_held_to_the_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    fixed_mmap_threshold();
    let server: RunningServer = Server::builder()
        .bind("127.0.0.1:0")
        .shards(1)
        .memory_budget(FLOOD_BUDGET)
        // How long a connection paused by the budget may wait for the shard to get
        // back under its low-water mark before it is closed.
        .close_timeout(Duration::from_secs(1))
        // io_uring's receive ring is the shard's fixed memory, outside the budget (and
        // touched page by page as a flood cycles through it): kept small here.
        .recv_buffers(64, 32 * 1024)
        .websocket("/echo", || Echo)
        .build()
        .expect("build")
        .start()
        .expect("start");
    let addr = server.local_addr();
    let mut honest = common::raw_upgrade(addr, "/echo");
    let mut honest_reader = FrameReader::default();
    round_trip(&mut honest, &mut honest_reader, 0);
    let (frame, header) = flood_frame();
    let baseline = rss();
    let monitor = Monitor::start(server.handle());

    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| {
            let frame = Arc::clone(&frame);
            thread::spawn(move || flooder(addr, frame, header))
        })
        .collect();
    // The flood is on: the honest client still gets its echoes.
    let handle = server.handle();
    wait_for(
        "the flood to reach the server",
        Duration::from_secs(60),
        || handle.memory_held() >= FLOOD_BUDGET / 2,
    );
    for n in 1..=10 {
        round_trip(&mut honest, &mut honest_reader, n);
    }
    let ends: Vec<Got> = flooders
        .into_iter()
        .map(|flooder| flooder.join().expect("flooder"))
        .collect();
    // Every flooder ends the same way: paused while the shard was over its high-water
    // mark, then, still paused after the close timeout, closed with 1009.
    let expected = Got::Close(Some(INCOMING_CLOSE.0), INCOMING_CLOSE.1.to_owned());
    assert!(ends.iter().all(|end| *end == expected), "{ends:?}");
    for n in 11..=20 {
        round_trip(&mut honest, &mut honest_reader, n);
    }
    wait_for(
        "the flood's memory to be freed",
        Duration::from_secs(10),
        || handle.memory_held() < 64 * KIB,
    );
    let (held, resident) = monitor.finish();
    println!(
        "held at most {} KiB of a {} KiB budget; RSS {} KiB over the baseline",
        held / KIB,
        FLOOD_BUDGET / KIB,
        resident.saturating_sub(baseline) / KIB
    );
    assert!(
        held <= FLOOD_BUDGET + HELD_SLACK,
        "held {held} bytes, budget {FLOOD_BUDGET} + {HELD_SLACK}"
    );
    assert!(
        resident.saturating_sub(baseline) <= FLOOD_BUDGET + RSS_SLACK,
        "RSS grew by {} bytes",
        resident - baseline
    );
    round_trip(&mut honest, &mut honest_reader, 21);
    drop(honest);
    server.shutdown().expect("shutdown");
}

/// Slow readers on `/push`: each hands its handle to the test's sender on open and
/// reports its close.
struct Pushed {
    opened: Sender<ConnHandle>,
    closed: Sender<CloseReason>,
}

impl Handler for Pushed {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let _ = self.opened.send(conn.handle());
    }

    fn on_message(&mut self, _conn: &mut Conn<'_>, _message: Message<'_>) {}

    fn on_close(&mut self, _conn: &mut Conn<'_>, reason: CloseReason) {
        let _ = self.closed.send(reason);
    }
}

const READERS: usize = 200;
const OUTPUT_BUDGET: usize = 32 * MIB;
const PUSH: usize = 64 * KIB;
const ROUNDS: usize = 16;

/// Shrinks the send buffer of the server's listening socket on `addr` (accepted
/// sockets inherit it; setting it also turns Linux's autotuning off for them), so the
/// kernel takes little of what the server writes to a client that never reads:
/// autotuned, each socket would take up to `tcp_wmem`'s 4 MiB before the server's own
/// queue grew at all.
fn shrink_listener_send_buffer(addr: SocketAddr, bytes: usize) {
    let mut found = 0;
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let Ok(entry) = entry else {
            continue;
        };
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // SAFETY: the descriptor is one of this process's, listed just now; it is only
        // queried (and the listener's option set) during this call, while nothing in
        // the process closes descriptors (the server has just started and has no
        // connection yet; the tests run one at a time).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let listening = socket.is_listener().unwrap_or(false);
        if listening && socket.local_addr().ok().and_then(|a| a.as_socket()) == Some(addr) {
            socket.set_send_buffer_size(bytes).expect("SO_SNDBUF");
            found += 1;
        }
    }
    assert_eq!(found, 1, "the server's listener");
}

/// A client that never reads, with a small receive buffer so the kernel takes little
/// of what the server sends it.
fn slow_reader(addr: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4 * KIB).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    upgrade(socket.into(), addr, "/push")
}

fn drain(closed: &Receiver<CloseReason>) -> Vec<CloseReason> {
    closed.try_iter().collect()
}

#[test]
fn slow_readers_are_closed_with_1008_when_their_output_is_over_the_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (opened_tx, opened) = mpsc::channel();
    let (closed_tx, closed) = mpsc::channel();
    let opened_tx = Mutex::new(opened_tx);
    let closed_tx = Mutex::new(closed_tx);
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .shards(1)
        .memory_budget(OUTPUT_BUDGET)
        .websocket("/echo", || Echo)
        .websocket("/push", move || Pushed {
            opened: opened_tx.lock().expect("sender").clone(),
            closed: closed_tx.lock().expect("sender").clone(),
        })
        .build()
        .expect("build")
        .start()
        .expect("start");
    let addr = server.local_addr();
    shrink_listener_send_buffer(addr, 16 * KIB);
    let handle = server.handle();
    let mut honest = common::raw_upgrade(addr, "/echo");
    let mut honest_reader = FrameReader::default();
    round_trip(&mut honest, &mut honest_reader, 0);

    let readers: Vec<TcpStream> = (0..READERS).map(|_| slow_reader(addr)).collect();
    let handles: Vec<ConnHandle> = (0..READERS)
        .map(|_| {
            opened
                .recv_timeout(Duration::from_secs(10))
                .expect("opened")
        })
        .collect();
    let monitor = Monitor::start(server.handle());
    let payload = vec![0xa5u8; PUSH];
    let mut reasons = Vec::new();
    for round in 0..ROUNDS {
        for handle in &handles {
            // A handle of a connection closed meanwhile: the shard drops the message.
            let _ = handle.send_binary(&payload);
        }
        // The honest client still gets its echoes while the output piles up.
        round_trip(&mut honest, &mut honest_reader, round + 1);
        reasons.extend(drain(&closed));
    }
    round_trip(&mut honest, &mut honest_reader, ROUNDS + 1);
    // The last closes: until none came for a while (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(reason) = closed.recv_timeout(Duration::from_millis(300)) {
        reasons.push(reason);
        assert!(Instant::now() < deadline, "closes kept coming");
    }
    let (held, _) = monitor.finish();
    println!(
        "held at most {} KiB of a {} KiB budget; {} of {READERS} slow readers closed",
        held / KIB,
        OUTPUT_BUDGET / KIB,
        reasons.len()
    );
    // The shard goes over the budget only by what one scan step lets through, and the
    // message a handle sends that crosses it.
    let slack = OUTPUT_BUDGET / 64 + PUSH + 64;
    assert!(
        held <= OUTPUT_BUDGET + slack,
        "held {held} bytes, budget {OUTPUT_BUDGET} + {slack}"
    );
    let expected = CloseReason {
        code: ringws::proto::CloseCode(OUTPUT_CLOSE.0),
        reason: OUTPUT_CLOSE.1.to_owned(),
        initiator: CloseInitiator::Local,
    };
    assert!(
        reasons.iter().all(|reason| *reason == expected),
        "{reasons:?}"
    );
    // 200 × 16 × 64 KiB = 200 MiB pushed against a 32 MiB budget: most are closed.
    assert!(
        reasons.len() >= READERS / 2,
        "only {} slow readers closed",
        reasons.len()
    );
    drop(readers);
    wait_for(
        "the slow readers' memory to be freed",
        Duration::from_secs(10),
        || handle.memory_held() < 64 * KIB,
    );
    round_trip(&mut honest, &mut honest_reader, ROUNDS + 2);
    drop(honest);
    server.shutdown().expect("shutdown");
}
