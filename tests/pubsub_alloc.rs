//! Pub/sub encodes a published message once: whatever the number of subscribers, a
//! large publish makes one large allocation (the frame every plaintext subscriber's
//! send shares), and a small one is copied into the subscribers' pooled batch buffers
//! rather than into new allocations per subscriber.
//!
//! How the server's allocations are told from the test's own: a counting global
//! allocator (this binary's own) counts allocations (and reallocations to a size) of at
//! least 1 KiB and of at least 100 KiB, except on threads that set the thread-local
//! `EXCLUDED` flag. The test thread sets it first thing (so its clients' reads, which
//! grow buffers to whole 100 KiB frames, are not counted) and clears it only around its
//! `ServerHandle::publish` calls, whose frame allocation is part of what a publish
//! costs. The server's shard threads never set it, so everything they allocate is
//! counted. Everything runs in one test function, so no other test thread of this
//! binary allocates meanwhile. Counts are taken after every subscriber has read every
//! message and answered a round trip, so the fan-out and the sends are complete.
//! The backend follows RINGWS_BACKEND, so this runs on io_uring and on epoll.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{builder, raw_upgrade, send_frame, FrameReader, Received};
use ringws::proto::OpCode;
use ringws::{Conn, Handler, Message, RunningServer, ServerHandle};

const KIB: usize = 1024;
const BIG: usize = 100 * KIB;

static AT_LEAST_1K: AtomicUsize = AtomicUsize::new(0);
static AT_LEAST_100K: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
}

struct Counting;

fn count(size: usize) {
    // `try_with`: a thread being torn down has no thread-locals; count it.
    if EXCLUDED.try_with(Cell::get).unwrap_or(false) {
        return;
    }
    if size >= KIB {
        AT_LEAST_1K.fetch_add(1, Ordering::Relaxed);
    }
    if size >= BIG {
        AT_LEAST_100K.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to the system allocator unchanged; the counting touches
// only atomics and a const-initialised thread-local without a destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: allocated by this allocator (the system's) with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as `dealloc`, with the caller's new size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// (≥ 1 KiB, ≥ 100 KiB) counted so far.
fn counts() -> (usize, usize) {
    (
        AT_LEAST_1K.load(Ordering::SeqCst),
        AT_LEAST_100K.load(Ordering::SeqCst),
    )
}

/// `sub T` subscribes and answers `ok`; `say X` answers X.
struct Sub;

impl Handler for Sub {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) if text.starts_with("sub ") => {
                conn.subscribe(&text[4..]);
                conn.send_text("ok");
            }
            Message::Text(text) if text.starts_with("say ") => {
                conn.send_text(&text[4..]);
            }
            _ => {}
        }
    }
}

struct Clients {
    server: RunningServer,
    clients: Vec<(TcpStream, FrameReader)>,
}

impl Clients {
    fn new(shards: usize, subscribers: usize) -> Clients {
        let server = builder()
            .shards(shards)
            .websocket("/ps", || Sub)
            .build()
            .expect("build")
            .start()
            .expect("start");
        let mut clients = Vec::new();
        for _ in 0..subscribers {
            let mut stream = raw_upgrade(server.local_addr(), "/ps");
            let mut reader = FrameReader::default();
            send_frame(&mut stream, OpCode::Text, true, b"sub alloc");
            assert_eq!(reader.next(&mut stream), Received::Text("ok".into()));
            clients.push((stream, reader));
        }
        assert_eq!(server.handle().subscriber_count("alloc"), subscribers);
        Clients { server, clients }
    }

    /// Publishes `message` `times` times (its allocations counted), has every
    /// subscriber read each one, then a round trip on each connection; returns the
    /// counts this made (≥ 1 KiB, ≥ 100 KiB).
    fn publish(&mut self, handle: &ServerHandle, message: &[u8], times: usize) -> (usize, usize) {
        let before = counts();
        for _ in 0..times {
            EXCLUDED.with(|excluded| excluded.set(false));
            let published = handle.publish("alloc", Message::Binary(message));
            EXCLUDED.with(|excluded| excluded.set(true));
            published.expect("publish");
            for (stream, reader) in &mut self.clients {
                match reader.next(stream) {
                    Received::Binary(bytes) => {
                        assert_eq!(bytes.len(), message.len());
                        assert!(bytes == message, "a damaged message");
                    }
                    other => panic!("expected the publication, got {other:?}"),
                }
            }
        }
        for (stream, reader) in &mut self.clients {
            send_frame(stream, OpCode::Text, true, b"say sync");
            assert_eq!(reader.next(stream), Received::Text("sync".into()));
        }
        let after = counts();
        (after.0 - before.0, after.1 - before.1)
    }
}

#[test]
fn a_publish_is_encoded_once_whatever_the_subscriber_count() {
    EXCLUDED.with(|excluded| excluded.set(true));
    const TIMES: usize = 5;
    let big: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    let small: Vec<u8> = (0..KIB).map(|i| (i % 13) as u8).collect();
    let mut report = Vec::new();
    for shards in [1, 2] {
        for subscribers in [10, 50] {
            let before = counts();
            let mut clients = Clients::new(shards, subscribers);
            let started = counts();
            // The shard threads' allocations are counted (their pools, rings, tables):
            // a check that the counter sees them at all.
            assert!(
                started.0 > before.0,
                "nothing counted while {shards} shard(s) started"
            );
            let handle = clients.server.handle();
            // Warm up: the pools, the shards' fan-out vectors, the sockets' buffers.
            for _ in 0..3 {
                clients.publish(&handle, &big, 2);
                clients.publish(&handle, &small, 2);
            }
            let (_, large) = clients.publish(&handle, &big, TIMES);
            let (kib, _) = clients.publish(&handle, &small, TIMES);
            report.push(format!(
                "{shards} shard(s), {subscribers} subscribers: {large} allocations ≥ 100 KiB \
                 for {TIMES} publishes of 100 KiB, {kib} allocations ≥ 1 KiB for {TIMES} of 1 KiB"
            ));
            // One frame per publish, whatever the number of subscribers (and the frame
            // is counted: the publishing thread's allocation is seen).
            assert!(
                large == TIMES,
                "{large} allocations of 100 KiB or more for {TIMES} publishes to \
                 {subscribers} subscribers on {shards} shard(s)"
            );
            // A 1 KiB publish: its frame, and no copy of its own per subscriber (the
            // copies go into pooled batch buffers). Allowed: the frame, plus one
            // per shard per publish for a pool buffer the shard may have to grow.
            let allowed = TIMES * (1 + shards);
            assert!(
                (TIMES..=allowed).contains(&kib),
                "{kib} allocations of 1 KiB or more for {TIMES} publishes of 1 KiB to \
                 {subscribers} subscribers on {shards} shard(s) (allowed {allowed})"
            );
            drop(clients);
        }
    }
    for line in report {
        eprintln!("{line}");
    }
}
