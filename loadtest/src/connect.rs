//! The connect scenario: concurrent workers each loop on TCP connect → upgrade →
//! close frame → the server's close → drop, measuring connect latency (TCP connect
//! started → 101 received).

use crate::client::{DeflateRequest, Protocol, WsConn, XorShift};
use crate::report::{self, Errors, Latency, Live, Stats};
use crate::target::Target;
use crate::{live, Spread, Workers, HARD_CAP_GRACE};
use serde::Serialize;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connect + handshake timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the server's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Options of the connect scenario.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Where to connect.
    pub target: Target,
    /// The wire protocol.
    pub protocol: Protocol,
    /// Concurrent workers, each with one connection at a time.
    pub concurrency: usize,
    /// Stop after this long.
    pub duration: Duration,
    /// Stop after this many handshakes in total (or at `duration`, first).
    pub count: Option<u64>,
    /// Worker threads.
    pub threads: usize,
    /// Offer permessage-deflate; a handshake the server does not agree to counts as a
    /// handshake error.
    pub deflate: Option<DeflateRequest>,
}

/// What the connect scenario measured.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectResults {
    /// Handshakes completed (101 received).
    pub handshakes: u64,
    /// Wall time of the run in seconds.
    pub elapsed_s: f64,
    /// Handshakes per second.
    pub handshakes_per_sec: f64,
    /// Latency from TCP connect started to 101 received.
    pub connect_latency: Latency,
    /// Errors by kind (a close not answered within 2 s counts as a timeout).
    pub errors: Errors,
    /// A few error messages.
    pub error_samples: Vec<String>,
    /// A worker hit the hard cap.
    pub hard_cap_hit: bool,
}

impl ConnectOptions {
    /// The settings as JSON.
    pub fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "protocol": self.protocol.name(),
            "concurrency": self.concurrency,
            "duration_s": report::secs(self.duration),
            "count": self.count,
            "threads": self.threads,
            "deflate": self.deflate.is_some(),
        })
    }
}

impl ConnectResults {
    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "handshakes: {} in {:.2} s = {:.0} handshakes/s\nconnect latency: {}\n{}",
            self.handshakes,
            self.elapsed_s,
            self.handshakes_per_sec,
            self.connect_latency.line(),
            report::errors_block(&self.errors, &self.error_samples)
        );
        if self.hard_cap_hit {
            s.push_str("\nwarning: a worker was stopped by the hard cap");
        }
        s
    }
}

struct Shared {
    target: Target,
    protocol: Protocol,
    deadline: Instant,
    count: Option<u64>,
    taken: AtomicU64,
    live: Arc<Live>,
    deflate: Option<DeflateRequest>,
}

/// Runs the connect scenario; `bar` shows progress.
pub fn run(opts: &ConnectOptions, bar: &indicatif::ProgressBar) -> ConnectResults {
    let live = live();
    let start = Instant::now();
    let shared = Arc::new(Shared {
        target: opts.target.clone(),
        protocol: opts.protocol,
        deadline: start + opts.duration,
        count: opts.count,
        taken: AtomicU64::new(0),
        live: Arc::clone(&live),
        deflate: opts.deflate,
    });
    let spread = Spread {
        threads: opts.threads,
        tasks: opts.concurrency,
        hard_cap: opts.duration + HARD_CAP_GRACE,
        open_per_thread: usize::MAX,
    };
    let workers = Workers::start(spread, &shared, |shared, t| worker(shared, t.stats, t.rng));
    let stats = workers.join_timed(bar, start, opts.duration, || {
        Some(format!(
            "handshakes {}  errors {}",
            live.handshakes.load(Relaxed),
            live.errors.load(Relaxed)
        ))
    });
    bar.finish_and_clear();
    // In-flight closes after the deadline are not part of the measured time.
    let elapsed = start.elapsed().min(opts.duration);
    let secs = elapsed.as_secs_f64();
    ConnectResults {
        handshakes: stats.handshakes,
        elapsed_s: secs,
        handshakes_per_sec: if secs > 0.0 {
            stats.handshakes as f64 / secs
        } else {
            0.0
        },
        connect_latency: Latency::of(&stats.hist),
        errors: stats.errors,
        error_samples: stats.samples,
        hard_cap_hit: stats.timed_out,
    }
}

async fn worker(shared: Arc<Shared>, stats: Rc<RefCell<Stats>>, mut rng: XorShift) {
    let live = &shared.live;
    loop {
        let t0 = Instant::now();
        if t0 >= shared.deadline {
            return;
        }
        if let Some(n) = shared.count {
            if shared.taken.fetch_add(1, Relaxed) >= n {
                return;
            }
        }
        let conn_rng = XorShift::new(rng.next_u64());
        let remaining = shared.deadline - t0;
        let conn = match WsConn::connect_with(
            &shared.target,
            shared.protocol,
            conn_rng,
            CONNECT_TIMEOUT.min(remaining + Duration::from_secs(1)),
            shared.deflate,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                stats.borrow_mut().error(&e, live);
                // Do not spin on a refused port.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let took = t0.elapsed();
        {
            let mut s = stats.borrow_mut();
            report::record(&mut s.hist, took);
            s.handshakes += 1;
        }
        live.handshakes.fetch_add(1, Relaxed);
        if !conn.close(CLOSE_TIMEOUT).await {
            stats.borrow_mut().error(
                &crate::client::ConnError::Timeout("close not answered"),
                live,
            );
        }
    }
}
