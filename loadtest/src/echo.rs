//! The echo scenario: each connection keeps `inflight` messages in flight and records
//! the round-trip time of each (send → echo received; FIFO, since echo keeps order).

use crate::client::{ConnError, Incoming, Protocol, Pumped, WsConn, XorShift};
use crate::report::{self, Errors, Latency, Live, Stats};
use crate::target::Target;
use crate::{join_workers, live, run_local, spawn_workers, WorkerFn, HARD_CAP_GRACE};
use ringws::proto::OpCode;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

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
            report::errors_line(&self.errors)
        );
        for e in &self.error_samples {
            s.push_str(&format!("\n  e.g. {e}"));
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
    payload: Vec<u8>,
    opcode: OpCode,
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
    /// Whether to send another message now, and whether it will be measured.
    fn ticket(&self, now: Instant) -> Option<bool> {
        if now >= self.deadline {
            return None;
        }
        if now < self.warmup_end {
            return Some(false);
        }
        match self.budget {
            Some(n) if self.taken.fetch_add(1, Relaxed) >= n => None,
            _ => Some(true),
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
    let payload: Vec<u8> = if opts.text {
        (0..opts.size).map(|i| b'a' + (i % 26) as u8).collect()
    } else {
        let mut rng = XorShift::new(opts.size as u64);
        (0..opts.size).map(|_| rng.next_u64() as u8).collect()
    };
    let shared = Arc::new(Shared {
        target: opts.target.clone(),
        protocol: opts.protocol,
        payload,
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
    let body_shared = Arc::clone(&shared);
    let body: Arc<WorkerFn> = Arc::new(move |w, stats| {
        let shared = Arc::clone(&body_shared);
        Box::pin(async move {
            let sem = Rc::new(Semaphore::new(OPEN_CONCURRENCY_PER_THREAD));
            run_local(w.connections, |i| {
                let rng = XorShift::new(w.seed ^ (i as u64).wrapping_mul(0x1000_0001));
                one_connection(Arc::clone(&shared), Rc::clone(&stats), Rc::clone(&sem), rng)
            })
            .await;
        })
    });
    let hard_cap = opts.warmup + opts.duration + HARD_CAP_GRACE;
    let handles = spawn_workers(opts.threads, opts.connections, hard_cap, body);

    let total_ms = (opts.warmup + opts.duration).as_millis() as u64;
    bar.set_length(total_ms.max(1));
    let mut prev = (Instant::now(), 0u64);
    let stats = join_workers(handles, || {
        let now = Instant::now();
        let msgs = live.messages.load(Relaxed);
        let dt = now.duration_since(prev.0).as_secs_f64();
        if dt >= 0.5 {
            let rate = (msgs - prev.1) as f64 / dt;
            let phase = if now < warmup_end { "warmup " } else { "" };
            bar.set_message(format!(
                "{phase}open {}  msgs {msgs} ({rate:.0}/s)  errors {}",
                live.open.load(Relaxed),
                live.errors.load(Relaxed)
            ));
            prev = (now, msgs);
        }
        bar.set_position((now.duration_since(start).as_millis() as u64).min(total_ms));
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
    }
}

async fn one_connection(
    shared: Arc<Shared>,
    stats: Rc<RefCell<Stats>>,
    sem: Rc<Semaphore>,
    rng: XorShift,
) {
    let live = &shared.live;
    let permit = sem.acquire().await;
    if Instant::now() >= shared.deadline {
        return;
    }
    let mut conn =
        match WsConn::connect(&shared.target, shared.protocol, rng, CONNECT_TIMEOUT).await {
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
    match result {
        Ok(()) => {
            conn.close(Duration::from_secs(1)).await;
        }
        Err(e) => stats.borrow_mut().error(&e, live),
    }
}

async fn echo_loop(
    shared: &Shared,
    stats: &RefCell<Stats>,
    conn: &mut WsConn,
) -> Result<(), ConnError> {
    let payload = &shared.payload[..];
    // Send time of each message in flight, and whether it is measured.
    let mut fifo: VecDeque<(Instant, bool)> = VecDeque::with_capacity(shared.inflight);
    for _ in 0..shared.inflight {
        let now = Instant::now();
        let Some(counted) = shared.ticket(now) else {
            break;
        };
        fifo.push_back((now, counted));
        conn.send(shared.opcode, payload)?;
    }
    let sleep = tokio::time::sleep_until(shared.deadline.into());
    tokio::pin!(sleep);
    while !fifo.is_empty() {
        let mut received = 0usize;
        let mut counted_now = 0u64;
        let mut wrong: Option<&'static str> = None;
        let mut on = |inc: Incoming<'_>| {
            let data = match inc {
                Incoming::Text(t) => t.as_bytes(),
                Incoming::Binary(b) => b,
                Incoming::Pong(_) => return,
            };
            let now = Instant::now();
            let Some((sent, counted)) = fifo.pop_front() else {
                wrong = Some("a message nobody sent was echoed");
                return;
            };
            if data != payload {
                wrong = Some("the echo differs from the message sent");
            }
            received += 1;
            if counted && now <= shared.deadline {
                let mut s = stats.borrow_mut();
                report::record(&mut s.hist, now - sent);
                s.messages += 1;
                s.bytes += data.len() as u64;
                counted_now += 1;
                let ns = now.duration_since(shared.start).as_nanos() as u64;
                shared.last_ns.fetch_max(ns, Relaxed);
            }
        };
        let pumped = tokio::select! {
            biased;
            r = conn.pump(&mut on) => r?,
            _ = &mut sleep => return Ok(()),
        };
        if counted_now > 0 {
            shared.live.messages.fetch_add(counted_now, Relaxed);
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
        for _ in 0..received {
            let now = Instant::now();
            let Some(counted) = shared.ticket(now) else {
                break;
            };
            fifo.push_back((now, counted));
            conn.send(shared.opcode, payload)?;
        }
    }
    Ok(())
}
