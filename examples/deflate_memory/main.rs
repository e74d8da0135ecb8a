//! Measures what an idle permessage-deflate connection costs the server, and checks that
//! hibernated streams wake up correctly.
//!
//! For each row, a fresh one-shard echo server runs in a **child process** (this same
//! example, started with `--serve`), so its heap (a counting global allocator) and its
//! `VmRSS` are the server's alone and N can reach 10,000 under a 20,000 open-files
//! limit. The parent is the client: N connections offering
//! `permessage-deflate; client_max_window_bits`, then
//!
//! 1. one ~1 KiB JSON-like text message on every connection (compressed by the
//!    client's own `MessageDeflater` where agreed), every echo read, inflated and
//!    checked: **live**, the server's streams alive (up to `max_live_streams`);
//! 2. a wait of 2 × `hibernate_after` + 1 s: **hibernated**;
//! 3. the same text again on every connection (it back-references the first one in
//!    both directions), the echo checked after the wake-up: **failures**; then another
//!    wait: **hibernated again**;
//! 4. with context takeover, 32 more messages per connection (over 32 KiB each way,
//!    one connection at a time), every echo checked, and another wait: hibernated with
//!    **full histories**; then `malloc_trim(0)` in the server and its RSS again.
//!
//! The client hibernates its own deflater and inflater after every message, so it
//! stays small too (it is not in the server's figures anyway). Figures are per
//! connection, from the server's baseline after `start()` and before any connection.
//!
//! `cargo run --release --example deflate_memory -- [N] [MODE] [HIBERNATE_MS]`:
//! N defaults to 10000; MODE is `off`, `no-context-takeover`, `takeover` (15-bit
//! windows), `takeover-9` (9-bit windows both ways) or `all` (the default); the two
//! takeover modes run twice, with `max_live_streams(usize::MAX)` and with the default
//! budget (256 per shard). HIBERNATE_MS (default 12000) is `hibernate_after`: long
//! enough that the first connections are still live when the last echo of step 1 is
//! read (10,000 live 15-bit stream pairs take ~20 s to set up on a 2-vCPU VM).
//! With `DEFLATE_MEMORY_MIMALLOC=1` in the environment both processes allocate with
//! mimalloc, as the `ringws` command does (glibc's malloc otherwise).
//! (BENCHMARKS.md, "permessage-deflate: memory per idle connection", quotes it.)

mod client;
mod server;

use client::*;
use server::*;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use ringws::DEFAULT_MAX_LIVE_STREAMS;

/// Counts the bytes the process holds from the allocator: glibc's (`System`), or
/// mimalloc (the `ringws` command's allocator) when `DEFLATE_MEMORY_MIMALLOC` is set in
/// the environment and the `cli` feature (default) is on.
struct Counting;

/// Whether this process allocates with mimalloc: read once, at the first allocation
/// (`getenv` does not allocate), and never changed after.
#[cfg(feature = "cli")]
fn mimalloc() -> bool {
    static CHOICE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    match CHOICE.load(Relaxed) {
        1 => false,
        2 => true,
        _ => {
            // SAFETY: a NUL-terminated name; nothing here changes the environment.
            let set = unsafe { !libc::getenv(c"DEFLATE_MEMORY_MIMALLOC".as_ptr()).is_null() };
            CHOICE.store(if set { 2 } else { 1 }, Relaxed);
            set
        }
    }
}

#[cfg(not(feature = "cli"))]
fn mimalloc() -> bool {
    false
}

/// Calls `$method` on the chosen allocator.
macro_rules! inner {
    ($method:ident($($arg:expr),*)) => {{
        #[cfg(feature = "cli")]
        if mimalloc() {
            // SAFETY: forwarded as is (see the impl).
            return unsafe { mimalloc::MiMalloc.$method($($arg),*) };
        }
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.$method($($arg),*) }
    }};
}

static HEAP: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to one allocator, the same for the whole process
// (`mimalloc()` never changes its answer), with the caller's arguments unchanged; the
// counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size() as isize, Relaxed);
        inner!(alloc(layout))
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size() as isize, Relaxed);
        inner!(alloc_zeroed(layout))
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.fetch_sub(layout.size() as isize, Relaxed);
        inner!(dealloc(ptr, layout))
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        inner!(realloc(ptr, layout, new_size))
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const USAGE: &str = "usage: deflate_memory [N] [off|no-context-takeover|takeover|takeover-9|all] \
[HIBERNATE_MS]";

/// One measured configuration: a server mode and its live-stream budget.
#[derive(Clone, Copy)]
struct Row {
    mode: &'static str,
    budget: usize,
}

impl Row {
    fn label(&self) -> String {
        match self.mode {
            "takeover" | "takeover-9" if self.budget == usize::MAX => {
                format!("{} (no budget)", self.mode)
            }
            "takeover" | "takeover-9" => format!("{} (budget {})", self.mode, self.budget),
            mode => mode.to_string(),
        }
    }
}

fn rows(mode: &str) -> Option<Vec<Row>> {
    let both = |mode| {
        [usize::MAX, DEFAULT_MAX_LIVE_STREAMS]
            .map(|budget| Row { mode, budget })
            .to_vec()
    };
    let single = |mode| {
        vec![Row {
            mode,
            budget: DEFAULT_MAX_LIVE_STREAMS,
        }]
    };
    Some(match mode {
        "off" => single("off"),
        "no-context-takeover" => single("no-context-takeover"),
        "takeover" => both("takeover"),
        "takeover-9" => both("takeover-9"),
        "all" => [
            single("off"),
            single("no-context-takeover"),
            both("takeover"),
            both("takeover-9"),
        ]
        .concat(),
        _ => return None,
    })
}

/// One row's per-connection figures, bytes.
struct Figures {
    row: Row,
    agreement: Option<Agreement>,
    open_heap: isize,
    live_heap: isize,
    live_rss: isize,
    hibernated_heap: isize,
    hibernated_rss: isize,
    woken_heap: isize,
    rehibernated_heap: isize,
    rehibernated_rss: isize,
    full_heap: isize,
    full_rss: isize,
    trimmed_rss: isize,
    echo: (f64, f64),
    sent: (f64, f64),
    client_held: usize,
    failures: (usize, usize, usize),
    round_secs: f64,
    fill_secs: f64,
}

fn measure(row: Row, n: usize, hibernate_ms: u64) -> std::io::Result<Figures> {
    let mut server = ServerProcess::spawn(row, hibernate_ms)?;
    let per = |from: (isize, isize), to: (isize, isize)| {
        let n = n.max(1) as isize;
        ((to.0 - from.0) / n, (to.1 - from.1) / n)
    };
    let takeover = row.mode.starts_with("takeover");
    // Without context takeover nothing hibernates: no need to wait.
    let hibernation = Duration::from_millis(if takeover { 2 * hibernate_ms + 1000 } else { 0 });
    let base = server.sample("sample")?;
    let mut clients = Vec::with_capacity(n);
    let mut agreement = None;
    for _ in 0..n {
        let (client, agreed) = connect(server.addr)?;
        agreement = agreed;
        clients.push(client);
    }
    let (open_heap, _) = per(base, server.sample("sample")?);
    let started = Instant::now();
    let (failures_1, sent_1, echo_1) = round(&mut clients, 1);
    let round_secs = started.elapsed().as_secs_f64();
    let (live_heap, live_rss) = per(base, server.sample("sample")?);
    std::thread::sleep(hibernation);
    let (hibernated_heap, hibernated_rss) = per(base, server.sample("sample")?);
    let (failures_2, sent_2, echo_2) = round(&mut clients, 2);
    let (woken_heap, _) = per(base, server.sample("sample")?);
    std::thread::sleep(hibernation);
    let (rehibernated_heap, rehibernated_rss) = per(base, server.sample("sample")?);
    let started = Instant::now();
    let failures_3 = if takeover { fill(&mut clients) } else { 0 };
    let fill_secs = started.elapsed().as_secs_f64();
    std::thread::sleep(hibernation);
    let (full_heap, full_rss) = per(base, server.sample("sample")?);
    let (_, trimmed_rss) = per(base, server.sample("trim")?);
    let client_held = clients.iter().map(Client::held_bytes).sum::<usize>() / n.max(1);
    drop(clients);
    server.stop()?;
    Ok(Figures {
        row,
        agreement,
        open_heap,
        live_heap,
        live_rss,
        hibernated_heap,
        hibernated_rss,
        woken_heap,
        rehibernated_heap,
        rehibernated_rss,
        full_heap,
        full_rss,
        trimmed_rss,
        echo: (echo_1, echo_2),
        sent: (sent_1, sent_2),
        client_held,
        failures: (failures_1, failures_2, failures_3),
        round_secs,
        fill_secs,
    })
}

/// Raises the soft open-files limit to the hard one.
fn raise_nofile() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nofile = raise_nofile();
    if args.first().map(String::as_str) == Some("--serve") {
        return serve(&args[1..]);
    }
    let n: usize = match args.first() {
        Some(arg) => arg.parse().map_err(|_| std::io::Error::other(USAGE))?,
        None => 10_000,
    };
    let mode = args.get(1).map_or("all", String::as_str);
    let rows = rows(mode).ok_or_else(|| std::io::Error::other(USAGE))?;
    let hibernate_ms: u64 = match args.get(2) {
        Some(arg) => arg.parse().map_err(|_| std::io::Error::other(USAGE))?,
        None => 12_000,
    };
    if n as u64 + 64 > nofile {
        return Err(std::io::Error::other(format!(
            "{n} connections need more than the {nofile} open files allowed"
        )));
    }
    println!(
        "{n} connections per row, one shard, hibernate_after {hibernate_ms} ms, a {} B text \
         message, allocator {}; bytes per connection on the server, from its baseline \
         before any connection",
        message(0).len(),
        if mimalloc() { "mimalloc" } else { "glibc" }
    );
    let mut all = Vec::new();
    for row in rows {
        let f = measure(row, n, hibernate_ms)?;
        println!(
            "{}: agreed {:?}; round 1 took {:.2} s, the fill {:.2} s; open {} B heap; live {} B \
             heap, {} B RSS; hibernated {} B heap, {} B RSS; after message 2 {} B heap; \
             re-hibernated {} B heap, {} B RSS; after {FILL} more messages, hibernated {} B \
             heap, {} B RSS ({} B after malloc_trim); client sent {:.0} → {:.0} B, echo \
             {:.0} → {:.0} B; client codec holds {} B; failures {} / {} / {}",
            row.label(),
            f.agreement,
            f.round_secs,
            f.fill_secs,
            f.open_heap,
            f.live_heap,
            f.live_rss,
            f.hibernated_heap,
            f.hibernated_rss,
            f.woken_heap,
            f.rehibernated_heap,
            f.rehibernated_rss,
            f.full_heap,
            f.full_rss,
            f.trimmed_rss,
            f.sent.0,
            f.sent.1,
            f.echo.0,
            f.echo.1,
            f.client_held,
            f.failures.0,
            f.failures.1,
            f.failures.2,
        );
        all.push(f);
    }
    println!();
    println!(
        "| mode | open, no message: heap | after message 1, live: heap / RSS | hibernated: \
         heap / RSS | after message 2, hibernated again: heap / RSS | after {} messages, \
         hibernated: heap / RSS (after malloc_trim) | echo payload, message 1 → 2 | \
         failures: message 1 / 2 (wake-up) / the {FILL} |",
        FILL + 2
    );
    println!("|---|---|---|---|---|---|---|---|");
    let kib = |bytes: isize| format!("{:.1} KiB", bytes as f64 / 1024.0);
    for f in &all {
        let full = if f.row.mode.starts_with("takeover") {
            format!(
                "{} / {} ({})",
                kib(f.full_heap),
                kib(f.full_rss),
                kib(f.trimmed_rss)
            )
        } else {
            format!("– ({})", kib(f.trimmed_rss))
        };
        println!(
            "| {} | {} | {} / {} | {} / {} | {} / {} | {} | {:.0} → {:.0} B | {} / {} / {} |",
            f.row.label(),
            kib(f.open_heap),
            kib(f.live_heap),
            kib(f.live_rss),
            kib(f.hibernated_heap),
            kib(f.hibernated_rss),
            kib(f.rehibernated_heap),
            kib(f.rehibernated_rss),
            full,
            f.echo.0,
            f.echo.1,
            f.failures.0,
            f.failures.1,
            f.failures.2,
        );
    }
    Ok(())
}
