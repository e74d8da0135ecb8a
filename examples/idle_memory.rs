//! Measures what an idle WebSocket connection costs the server: opens N connections to
//! an in-process echo server (one shard), then prints the heap held (a counting global
//! allocator) and the resident memory (`VmRSS`) per connection, overall and between
//! N/2 and N (the marginal cost, without the fixed part: provided buffers, tables).
//! Client and server share the process, so N is at most half the open-files limit.
//!
//! `cargo run --release --example idle_memory -- 9000 [RECV_BUFFERS]` (the second
//! argument sets `Builder::recv_buffers(n, 16 KiB)`: the fixed part of the figures)
//! (BENCHMARKS.md, idle connections, quotes its output.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Duration;

use ringws::{Conn, Handler, Message, Server};

/// Counts the bytes the process holds from the allocator.
struct Counting;

static HEAP: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` with the caller's arguments unchanged;
// the counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }
}

const UPGRADE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn rss() -> std::io::Result<isize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<isize>().ok())
        .unwrap_or(0);
    Ok(kib * 1024)
}

/// Both counters after the server has settled.
fn sample() -> std::io::Result<(isize, isize)> {
    std::thread::sleep(Duration::from_millis(300));
    Ok((HEAP.load(Relaxed), rss()?))
}

fn main() -> std::io::Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| std::io::Error::other("usage: idle_memory [N] [RECV_BUFFERS]"))?,
        None => 2000,
    };
    let mut builder = Server::builder();
    if let Some(arg) = std::env::args().nth(2) {
        let count = arg
            .parse()
            .map_err(|_| std::io::Error::other("usage: idle_memory [N] [RECV_BUFFERS]"))?;
        builder = builder.recv_buffers(count, 16 * 1024);
    }
    let server = builder
        .bind("127.0.0.1:0")
        .shards(1)
        .websocket("/echo", || Echo)
        .build()?
        .start()?;
    let addr = server.local_addr();
    let mut clients = Vec::with_capacity(n);
    let start = sample()?;
    let mut half = start;
    for i in 0..n {
        let mut stream = TcpStream::connect(addr)?;
        stream.write_all(UPGRADE)?;
        let mut answer = [0u8; 512];
        let read = stream.read(&mut answer)?;
        if !answer[..read].starts_with(b"HTTP/1.1 101") {
            return Err(std::io::Error::other("the upgrade was refused"));
        }
        clients.push(stream);
        if i + 1 == n / 2 {
            half = sample()?;
        }
    }
    let end = sample()?;
    let per = |from: (isize, isize), count: usize| {
        let count = count.max(1) as isize;
        ((end.0 - from.0) / count, (end.1 - from.1) / count)
    };
    let (heap, resident) = per(start, n);
    let (heap_marginal, resident_marginal) = per(half, n - n / 2);
    println!("{n} idle connections, per connection: heap {heap} B, RSS {resident} B");
    println!(
        "marginal (from {} to {n}): heap {heap_marginal} B, RSS {resident_marginal} B",
        n / 2
    );
    drop(clients);
    server.shutdown()
}
