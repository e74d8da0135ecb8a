//! The echo scenario: each connection keeps `inflight` messages in flight and records
//! the round-trip time of each (send → echo received; FIFO, since echo keeps order).
//!
//! Per connection, the messages that may go out now (all `inflight` at the start, then
//! as many as one read brought back) are encoded into one buffer and written with one
//! `write`; they share that batch's send time. Each read (up to 16 KiB) is decoded
//! whole, and its echoes share the clock reading taken at the first of them.

use crate::client::{ConnError, DeflateRequest, Incoming, Protocol, Pumped, WsConn, XorShift};
use crate::deflate::{DeflateAnswer, DeflateCounts};
use crate::report::{self, Errors, Latency, Live, Stats};
use crate::target::Target;
use crate::{live, Spread, Task, Workers, HARD_CAP_GRACE};
use ringws::proto::OpCode;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Handshakes in progress at once per thread while connections open.
const OPEN_CONCURRENCY_PER_THREAD: usize = 64;
/// Connect + handshake timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of the echo scenario.
#[derive(Clone, Debug)]
pub struct EchoOptions {
    /// Where to connect.
    pub target: Target,
    /// The wire protocol (hixie-76 carries text only: with binary messages every
    /// connection fails with a protocol error).
    pub protocol: Protocol,
    /// Connections, all open at once.
    pub connections: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Text messages (ASCII payload) instead of binary.
    pub text: bool,
    /// Messages in flight per connection (1: send, wait for the echo, repeat).
    pub inflight: usize,
    /// Measured time, after the warmup.
    pub duration: Duration,
    /// Stop after this many measured messages in total (or at `duration`, first).
    pub messages: Option<u64>,
    /// Time before measuring starts (messages sent during it are not counted).
    pub warmup: Duration,
    /// Worker threads.
    pub threads: usize,
    /// Offer permessage-deflate and compress every message (the server must agree).
    pub deflate: Option<DeflateRequest>,
    /// What the payloads look like.
    pub payload: PayloadKind,
    /// Distinct payloads, sent in turn on each connection (each echo is checked
    /// against the one sent in its place).
    pub variants: usize,
}

/// The content of the messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PayloadKind {
    /// `abc…z` repeated for text, random bytes for binary (the default).
    #[default]
    Alpha,
    /// JSON-like text: an array of small records with varying numbers, cut at the size.
    Json,
}

impl PayloadKind {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PayloadKind::Alpha => "alpha",
            PayloadKind::Json => "json",
        }
    }
}

impl std::str::FromStr for PayloadKind {
    type Err = String;

    fn from_str(s: &str) -> Result<PayloadKind, String> {
        match s {
            "alpha" => Ok(PayloadKind::Alpha),
            "json" => Ok(PayloadKind::Json),
            _ => Err(format!("{s:?}: expected alpha or json")),
        }
    }
}

/// Payload number `variant` of `size` bytes for `kind` (text or binary).
pub fn make_payload(kind: PayloadKind, text: bool, size: usize, variant: usize) -> Vec<u8> {
    let mut rng = XorShift::new((size as u64) ^ ((variant as u64) << 32));
    match kind {
        PayloadKind::Alpha if text => (0..size)
            .map(|i| b'a' + ((i + variant) % 26) as u8)
            .collect(),
        PayloadKind::Alpha => (0..size).map(|_| rng.next_u64() as u8).collect(),
        PayloadKind::Json => {
            const EVENTS: [&str; 4] = ["trade", "quote", "cancel", "update"];
            const SYMBOLS: [&str; 6] = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "TSLA"];
            let mut out = String::with_capacity(size + 160);
            out.push('[');
            let mut id = rng.next_u64() % 1_000_000;
            while out.len() < size {
                let r = rng.next_u64();
                if out.len() > 1 {
                    out.push(',');
                }
                id += 1 + r % 7;
                out.push_str(&format!(
                    "{{\"id\":{id},\"type\":\"{}\",\"symbol\":\"{}\",\"price\":{}.{:02},\
                     \"qty\":{},\"user\":\"user-{:04}\",\"ts\":{}}}",
                    EVENTS[(r % 4) as usize],
                    SYMBOLS[((r >> 8) % 6) as usize],
                    100 + (r >> 16) % 900,
                    (r >> 26) % 100,
                    1 + (r >> 33) % 500,
                    (r >> 42) % 10_000,
                    1_764_680_000_000u64 + (r >> 50),
                ));
            }
            out.truncate(size);
            out.into_bytes()
        }
    }
}

/// What the echo scenario measured.
#[derive(Clone, Debug, Serialize)]
pub struct EchoResults {
    /// Connections that completed the handshake.
    pub connections_established: u64,
    /// Messages echoed within the measured window.
    pub messages: u64,
    /// Payload bytes echoed within the measured window.
    pub bytes: u64,
    /// The measured window in seconds.
    pub elapsed_s: f64,
    /// Messages echoed per second.
    pub msgs_per_sec: f64,
    /// Payload megabytes (10^6 bytes) echoed per second.
    pub mb_per_sec: f64,
    /// Round-trip latency per message.
    pub latency: Latency,
    /// Errors by kind.
    pub errors: Errors,
    /// A few error messages.
    pub error_samples: Vec<String>,
    /// A worker hit the hard cap.
    pub hard_cap_hit: bool,
    /// With `--deflate`: what the server agreed to (one connection's answer) and the
    /// bytes through the codecs of all connections, warmup included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deflate: Option<DeflateReport>,
}

/// The permessage-deflate part of the echo results.
#[derive(Clone, Debug, Serialize)]
pub struct DeflateReport {
    /// The server's answer, every parameter explicit (one connection's; "none" when
    /// no connection agreed).
    pub agreed: String,
    /// Counts over the whole run, warmup included.
    #[serde(flatten)]
    pub counts: DeflateCounts,
    /// Wire bytes / payload bytes, client → server.
    pub ratio_sent: f64,
    /// Wire bytes / payload bytes, server → client.
    pub ratio_received: f64,
}

impl DeflateReport {
    /// The report for `answer` and `counts`.
    pub fn new(answer: Option<&DeflateAnswer>, counts: DeflateCounts) -> DeflateReport {
        DeflateReport {
            agreed: answer.map_or_else(|| "none".into(), DeflateAnswer::describe),
            ratio_sent: counts.ratio_sent(),
            ratio_received: counts.ratio_received(),
            counts,
        }
    }
}

impl EchoOptions {
    /// The settings as JSON.
    pub fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "protocol": self.protocol.name(),
            "connections": self.connections,
            "size": self.size,
            "text": self.text,
            "inflight": self.inflight,
            "duration_s": report::secs(self.duration),
            "messages": self.messages,
            "warmup_s": report::secs(self.warmup),
            "threads": self.threads,
            "deflate": self.deflate.is_some(),
            "deflate_level": self.deflate.map(|d| d.level),
            "payload": self.payload.name(),
            "variants": self.variants,
        })
    }
}

impl EchoResults {
    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "connections established: {}\n\
             messages: {} in {:.2} s = {:.0} msgs/s, {:.2} MB/s of payload\n\
             latency: {}\n{}",
            self.connections_established,
            self.messages,
            self.elapsed_s,
            self.msgs_per_sec,
            self.mb_per_sec,
            self.latency.line(),
            report::errors_block(&self.errors, &self.error_samples)
        );
        if let Some(d) = &self.deflate {
            s.push_str(&format!("\nagreed: {}\n{}", d.agreed, d.counts.lines()));
        }
        if self.hard_cap_hit {
            s.push_str("\nwarning: a worker was stopped by the hard cap");
        }
        s
    }
}

struct Shared {
    target: Target,
    protocol: Protocol,
    /// The payloads, sent in turn (one unless `--variants`).
    payloads: Vec<Vec<u8>>,
    opcode: OpCode,
    deflate: Option<DeflateRequest>,
    inflight: usize,
    start: Instant,
    warmup_end: Instant,
    deadline: Instant,
    /// Message budget (`--messages`) and tickets taken so far.
    budget: Option<u64>,
    taken: AtomicU64,
    /// Nanoseconds after `start` of the last counted echo.
    last_ns: AtomicU64,
    live: Arc<Live>,
}

impl Shared {
    /// How many of `want` more messages to send now (0: stop sending), and whether they
    /// will be measured.
    fn tickets(&self, now: Instant, want: usize) -> (usize, bool) {
        if now >= self.deadline || want == 0 {
            return (0, false);
        }
        if now < self.warmup_end {
            return (want, false);
        }
        match self.budget {
            Some(n) => {
                let taken = self.taken.fetch_add(want as u64, Relaxed);
                (n.saturating_sub(taken).min(want as u64) as usize, true)
            }
            None => (want, true),
        }
    }

    fn budget_spent(&self) -> bool {
        self.budget.is_some_and(|n| self.taken.load(Relaxed) >= n)
    }
}

/// Runs the echo scenario; `bar` shows progress (pass `ProgressBar::hidden()` for none).
pub fn run(opts: &EchoOptions, bar: &indicatif::ProgressBar) -> EchoResults {
    let live = live();
    let start = Instant::now();
    let warmup_end = start + opts.warmup;
    let deadline = warmup_end + opts.duration;
    let payloads: Vec<Vec<u8>> = (0..opts.variants.max(1))
        .map(|v| make_payload(opts.payload, opts.text, opts.size, v))
        .collect();
    let shared = Arc::new(Shared {
        target: opts.target.clone(),
        protocol: opts.protocol,
        payloads,
        deflate: opts.deflate,
        opcode: if opts.text {
            OpCode::Text
        } else {
            OpCode::Binary
        },
        inflight: opts.inflight.max(1),
        start,
        warmup_end,
        deadline,
        budget: opts.messages,
        taken: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
        live: Arc::clone(&live),
    });
    let spread = Spread {
        threads: opts.threads,
        tasks: opts.connections,
        hard_cap: opts.warmup + opts.duration + HARD_CAP_GRACE,
        open_per_thread: OPEN_CONCURRENCY_PER_THREAD,
    };
    let workers = Workers::start(spread, &shared, one_connection);
    let mut prev = (Instant::now(), 0u64);
    let stats = workers.join_timed(bar, start, opts.warmup + opts.duration, || {
        let now = Instant::now();
        let msgs = live.messages.load(Relaxed);
        let dt = now.duration_since(prev.0).as_secs_f64();
        if dt < 0.5 {
            return None;
        }
        let rate = (msgs - prev.1) as f64 / dt;
        prev = (now, msgs);
        let phase = if now < warmup_end { "warmup " } else { "" };
        Some(format!(
            "{phase}open {}  msgs {msgs} ({rate:.0}/s)  errors {}",
            live.open.load(Relaxed),
            live.errors.load(Relaxed)
        ))
    });
    bar.finish_and_clear();

    let end = if shared.budget_spent() {
        start + Duration::from_nanos(shared.last_ns.load(Relaxed))
    } else {
        deadline.min(Instant::now())
    };
    let elapsed = end.saturating_duration_since(warmup_end).as_secs_f64();
    let rate = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    EchoResults {
        connections_established: stats.handshakes,
        messages: stats.messages,
        bytes: stats.bytes,
        elapsed_s: elapsed,
        msgs_per_sec: rate(stats.messages),
        mb_per_sec: rate(stats.bytes) / 1e6,
        latency: Latency::of(&stats.hist),
        errors: stats.errors,
        error_samples: stats.samples,
        hard_cap_hit: stats.timed_out,
        deflate: opts
            .deflate
            .map(|_| DeflateReport::new(stats.deflate_answer.as_ref(), stats.deflate)),
    }
}

async fn one_connection(shared: Arc<Shared>, task: Task) {
    let Task {
        stats,
        rng,
        opening,
    } = task;
    let live = &shared.live;
    let permit = opening.acquire().await;
    if Instant::now() >= shared.deadline {
        return;
    }
    let connecting = WsConn::connect_with(
        &shared.target,
        shared.protocol,
        rng,
        CONNECT_TIMEOUT,
        shared.deflate,
    );
    let mut conn = match connecting.await {
        Ok(c) => c,
        Err(e) => {
            live.failed.fetch_add(1, Relaxed);
            stats.borrow_mut().error(&e, live);
            return;
        }
    };
    drop(permit);
    stats.borrow_mut().handshakes += 1;
    live.handshakes.fetch_add(1, Relaxed);
    live.open.fetch_add(1, Relaxed);
    let result = echo_loop(&shared, &stats, &mut conn).await;
    live.open.fetch_sub(1, Relaxed);
    if let Some((answer, counts)) = conn.deflate_state() {
        let mut s = stats.borrow_mut();
        s.deflate.merge(&counts);
        s.deflate_answer.get_or_insert(answer);
    }
    match result {
        Ok(()) => {
            conn.close(Duration::from_secs(1)).await;
        }
        Err(e) => stats.borrow_mut().error(&e, live),
    }
}

/// The messages in flight on one connection, oldest first, as runs of messages written
/// in one batch (one `write`): they share a send time, which is exact for each of them.
/// Echoes come back in order, so the `n` oldest are the ones an `n`-message read matched.
#[derive(Debug, Default)]
pub struct InFlight {
    runs: VecDeque<Run>,
    len: usize,
}

#[derive(Clone, Copy, Debug)]
struct Run {
    sent: Instant,
    counted: bool,
    n: usize,
}

impl InFlight {
    /// Room for `runs` batches without allocating.
    pub fn with_capacity(runs: usize) -> InFlight {
        InFlight {
            runs: VecDeque::with_capacity(runs),
            len: 0,
        }
    }

    /// Messages in flight.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `n` messages written together at `sent`; `counted`: measured.
    pub fn push(&mut self, sent: Instant, counted: bool, n: usize) {
        if n > 0 {
            self.runs.push_back(Run { sent, counted, n });
            self.len += n;
        }
    }

    /// Takes the `n` oldest messages (at most [`len`](InFlight::len)) and calls
    /// `f(sent, counted, count)` for each run of them that shares a send time, oldest
    /// first.
    pub fn pop(&mut self, mut n: usize, mut f: impl FnMut(Instant, bool, usize)) {
        while n > 0 {
            let Some(run) = self.runs.front_mut() else {
                break;
            };
            let k = run.n.min(n);
            f(run.sent, run.counted, k);
            run.n -= k;
            if run.n == 0 {
                self.runs.pop_front();
            }
            self.len -= k;
            n -= k;
        }
    }
}

/// Writes up to `want` more messages as one batch (one `write`); returns how many.
/// `next`: the index of the next payload to send (advanced past those sent).
fn send_batch(
    shared: &Shared,
    conn: &mut WsConn,
    fifo: &mut InFlight,
    want: usize,
    next: &mut usize,
) -> Result<usize, ConnError> {
    let now = Instant::now();
    let (n, counted) = shared.tickets(now, want);
    if n == 0 {
        return Ok(0);
    }
    let payloads = &shared.payloads;
    for _ in 0..n {
        conn.queue(shared.opcode, &payloads[*next])?;
        *next += 1;
        if *next == payloads.len() {
            *next = 0;
        }
    }
    fifo.push(now, counted, n);
    conn.try_flush()?;
    Ok(n)
}

async fn echo_loop(
    shared: &Shared,
    stats: &RefCell<Stats>,
    conn: &mut WsConn,
) -> Result<(), ConnError> {
    let payloads = &shared.payloads;
    let payload_len = payloads[0].len() as u64;
    // The payload index of the next message to send, and of the next echo expected.
    let mut next_send = 0usize;
    let mut next_echo = 0usize;
    // Send time of the messages in flight, and whether they are measured.
    let mut fifo = InFlight::with_capacity(shared.inflight);
    send_batch(shared, conn, &mut fifo, shared.inflight, &mut next_send)?;
    let sleep = tokio::time::sleep_until(shared.deadline.into());
    tokio::pin!(sleep);
    while !fifo.is_empty() {
        let outstanding = fifo.len();
        let mut received = 0usize;
        // Receive time of this read's echoes: they arrived together.
        let mut now: Option<Instant> = None;
        let mut wrong: Option<&'static str> = None;
        let mut on = |inc: Incoming<'_>| {
            let data = match inc {
                Incoming::Text(t) => t.as_bytes(),
                Incoming::Binary(b) => b,
                Incoming::Pong(_) => return,
            };
            now.get_or_insert_with(Instant::now);
            if received == outstanding {
                wrong = Some("a message nobody sent was echoed");
                return;
            }
            if data != payloads[next_echo] {
                wrong = Some("the echo differs from the message sent");
            }
            next_echo += 1;
            if next_echo == payloads.len() {
                next_echo = 0;
            }
            received += 1;
        };
        let pumped = tokio::select! {
            biased;
            r = conn.pump(&mut on) => r?,
            _ = &mut sleep => return Ok(()),
        };
        if let Some(now) = now {
            let mut counted_now = 0u64;
            let in_time = now <= shared.deadline;
            {
                let mut s = stats.borrow_mut();
                fifo.pop(received, |sent, counted, k| {
                    if counted && in_time {
                        report::record_n(&mut s.hist, now - sent, k as u64);
                        counted_now += k as u64;
                    }
                });
                s.messages += counted_now;
                s.bytes += counted_now * payload_len;
            }
            if counted_now > 0 {
                let ns = now.duration_since(shared.start).as_nanos() as u64;
                shared.last_ns.fetch_max(ns, Relaxed);
                shared.live.messages.fetch_add(counted_now, Relaxed);
            }
        }
        if let Some(why) = wrong {
            return Err(ConnError::Protocol(why.into()));
        }
        match pumped {
            Pumped::Open => {}
            Pumped::PeerClosed(code) => {
                return Err(ConnError::Closed(format!("server sent close {code:?}")))
            }
            Pumped::Eof => {
                return Err(ConnError::Closed("server closed the TCP connection".into()))
            }
        }
        send_batch(shared, conn, &mut fifo, received, &mut next_send)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_pops_oldest_first_across_runs() {
        let t0 = Instant::now();
        let t = |ms| t0 + Duration::from_millis(ms);
        let mut f = InFlight::with_capacity(4);
        f.push(t(0), false, 3);
        f.push(t(1), true, 0);
        f.push(t(2), true, 2);
        f.push(t(3), true, 4);
        assert_eq!(f.len(), 9);
        let mut seen = Vec::new();
        f.pop(4, |sent, counted, k| seen.push((sent, counted, k)));
        assert_eq!(seen, [(t(0), false, 3), (t(2), true, 1)]);
        seen.clear();
        f.pop(1, |sent, counted, k| seen.push((sent, counted, k)));
        f.pop(100, |sent, counted, k| seen.push((sent, counted, k)));
        assert_eq!(seen, [(t(2), true, 1), (t(3), true, 4)]);
        assert!(f.is_empty());
    }
}
