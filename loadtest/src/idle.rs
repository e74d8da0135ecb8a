//! The idle scenario: open many connections at a bounded rate, keep them alive with
//! pings, hold them, and (given the server's pid) measure the server's RSS growth per
//! connection.
//!
//! Hixie-76 has no ping/pong: over it the connections are held without any keepalive
//! traffic (the ping interval is ignored and pongs are reported as 0), so a server
//! with an idle timeout shorter than the hold will close them.

use crate::client::{ConnError, Incoming, Protocol, Pumped, WsConn};
use crate::report::{self, Errors, Latency, Live};
use crate::target::Target;
use crate::{live, read_rss, Spread, Task, Workers, HARD_CAP_GRACE};
use ringws::proto::OpCode;
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Connect + handshake timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time left for the server to settle after the last connection opened.
const SETTLE: Duration = Duration::from_secs(1);

/// Options of the idle scenario.
#[derive(Clone, Debug)]
pub struct IdleOptions {
    /// Where to connect.
    pub target: Target,
    /// The wire protocol (hixie-76: no pings, see the module docs).
    pub protocol: Protocol,
    /// Connections to open and hold.
    pub connections: usize,
    /// Connection attempts in progress at once (over all threads).
    pub open_concurrency: usize,
    /// A ping per connection this often (RFC 6455 only).
    pub ping_interval: Duration,
    /// How long to hold the connections once all are open.
    pub duration: Duration,
    /// Longest time allowed for opening all connections.
    pub open_timeout: Duration,
    /// The server's pid, to read its VmRSS before and after opening.
    pub server_pid: Option<u32>,
    /// Worker threads.
    pub threads: usize,
}

/// What the idle scenario measured.
#[derive(Clone, Debug, Serialize)]
pub struct IdleResults {
    /// Connections that completed the handshake.
    pub opened: u64,
    /// Connection attempts that failed.
    pub failed: u64,
    /// Connections still open when the hold ended.
    pub open_at_end: u64,
    /// Seconds from start until every attempt had finished.
    pub open_time_s: f64,
    /// Latency from TCP connect started to 101 received.
    pub connect_latency: Latency,
    /// Pongs received (always 0 over hixie-76, which has no ping).
    pub pongs: u64,
    /// Server VmRSS before opening, bytes.
    pub server_rss_before: Option<u64>,
    /// Server VmRSS after all opened and 1 s of settling, bytes.
    pub server_rss_after: Option<u64>,
    /// (after − before) / opened, bytes.
    pub server_rss_per_conn: Option<f64>,
    /// Errors by kind.
    pub errors: Errors,
    /// A few error messages (and RSS read failures).
    pub error_samples: Vec<String>,
    /// A worker hit the hard cap.
    pub hard_cap_hit: bool,
}

impl IdleOptions {
    /// The settings as JSON.
    pub fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "protocol": self.protocol.name(),
            "connections": self.connections,
            "open_concurrency": self.open_concurrency,
            "ping_interval_s": report::secs(self.ping_interval),
            "duration_s": report::secs(self.duration),
            "open_timeout_s": report::secs(self.open_timeout),
            "server_pid": self.server_pid,
            "threads": self.threads,
        })
    }

    /// The hard cap on the whole run.
    pub fn hard_cap(&self) -> Duration {
        self.open_timeout + SETTLE + self.duration + HARD_CAP_GRACE
    }
}

impl IdleResults {
    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "connections opened: {}, failed: {}, open at end: {} (opening took {:.2} s)\n\
             connect latency: {}\npongs received: {}\n",
            self.opened,
            self.failed,
            self.open_at_end,
            self.open_time_s,
            self.connect_latency.line(),
            self.pongs
        );
        if let (Some(b), Some(a)) = (self.server_rss_before, self.server_rss_after) {
            s.push_str(&format!(
                "server RSS: {:.1} MiB -> {:.1} MiB",
                b as f64 / 1048576.0,
                a as f64 / 1048576.0
            ));
            if let Some(per) = self.server_rss_per_conn {
                s.push_str(&format!(" = {per:.0} bytes per connection"));
            }
            s.push('\n');
        }
        s.push_str(&report::errors_block(&self.errors, &self.error_samples));
        if self.hard_cap_hit {
            s.push_str("\nwarning: a worker was stopped by the hard cap");
        }
        s
    }
}

struct Shared {
    target: Target,
    protocol: Protocol,
    ping_interval: Duration,
    live: Arc<Live>,
    stop: watch::Receiver<bool>,
}

/// Runs the idle scenario; `bar` shows progress.
pub fn run(opts: &IdleOptions, bar: &indicatif::ProgressBar) -> IdleResults {
    let live = live();
    let mut samples = Vec::new();
    let rss = |samples: &mut Vec<String>| {
        opts.server_pid.and_then(|pid| match read_rss(pid) {
            Ok(v) => Some(v),
            Err(e) => {
                samples.push(format!("server RSS: {e}"));
                None
            }
        })
    };
    let rss_before = rss(&mut samples);
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        target: opts.target.clone(),
        protocol: opts.protocol,
        ping_interval: opts.ping_interval.max(Duration::from_millis(1)),
        live: Arc::clone(&live),
        stop: stop_rx,
    });
    let threads = opts.threads.clamp(1, opts.connections.max(1));
    let per_thread = opts.open_concurrency.max(1).div_ceil(threads);
    let start = Instant::now();
    let spread = Spread {
        threads,
        tasks: opts.connections,
        hard_cap: opts.hard_cap(),
        open_per_thread: per_thread,
    };
    let workers = Workers::start(spread, &shared, hold);

    // Phase 1: open.
    let want = opts.connections as u64;
    bar.set_length(want.max(1));
    let tick = || {
        let opened = live.handshakes.load(Relaxed);
        let failed = live.failed.load(Relaxed);
        bar.set_position(opened + failed);
        bar.set_message(format!("open {}  failed {failed}", live.open.load(Relaxed)));
    };
    while live.handshakes.load(Relaxed) + live.failed.load(Relaxed) < want
        && start.elapsed() < opts.open_timeout
        && !workers.all_finished()
    {
        tick();
        std::thread::sleep(Duration::from_millis(50));
    }
    let open_time = start.elapsed();
    tick();
    // Phase 2: settle, measure.
    bar.set_message("settling");
    std::thread::sleep(SETTLE);
    let rss_after = rss(&mut samples);
    let opened_at_measure = live.handshakes.load(Relaxed);
    // Phase 3: hold.
    let hold_start = Instant::now();
    bar.set_length(opts.duration.as_millis().max(1) as u64);
    while hold_start.elapsed() < opts.duration && !workers.all_finished() {
        bar.set_position(hold_start.elapsed().as_millis() as u64);
        bar.set_message(format!(
            "holding {} open  errors {}",
            live.open.load(Relaxed),
            live.errors.load(Relaxed)
        ));
        std::thread::sleep(Duration::from_millis(100));
    }
    let open_at_end = live.open.load(Relaxed);
    let _ = stop_tx.send(true);
    bar.set_message("closing");
    let mut stats = workers.join(|| {});
    bar.finish_and_clear();
    stats.samples.extend(samples);

    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if opened_at_measure > 0 => {
            Some((a as f64 - b as f64) / opened_at_measure as f64)
        }
        _ => None,
    };
    IdleResults {
        opened: stats.handshakes,
        failed: live.failed.load(Relaxed),
        open_at_end,
        open_time_s: open_time.as_secs_f64(),
        connect_latency: Latency::of(&stats.hist),
        pongs: stats.pongs,
        server_rss_before: rss_before,
        server_rss_after: rss_after,
        server_rss_per_conn: per_conn,
        errors: stats.errors,
        error_samples: stats.samples,
        hard_cap_hit: stats.timed_out,
    }
}

async fn hold(shared: Arc<Shared>, task: Task) {
    let Task {
        stats,
        rng,
        opening,
    } = task;
    let live = &shared.live;
    let mut stop = shared.stop.clone();
    let permit = opening.acquire().await;
    if *stop.borrow() {
        return;
    }
    let t0 = Instant::now();
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
    {
        let mut s = stats.borrow_mut();
        report::record(&mut s.hist, t0.elapsed());
        s.handshakes += 1;
    }
    live.handshakes.fetch_add(1, Relaxed);
    live.open.fetch_add(1, Relaxed);
    // Hixie-76 has no ping: its connections are held silent.
    let pinging = shared.protocol == Protocol::Rfc6455;
    let every = shared.ping_interval;
    let mut ticker = tokio::time::interval_at((Instant::now() + every).into(), every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome: Result<(), ConnError> = loop {
        let mut pongs = 0u64;
        let mut on = |inc: Incoming<'_>| {
            if let Incoming::Pong(_) = inc {
                pongs += 1;
            }
        };
        let step = tokio::select! {
            _ = stop.changed() => break Ok(()),
            _ = ticker.tick(), if pinging => conn.send(OpCode::Ping, b"ringws-loadtest").map(|()| Pumped::Open),
            r = conn.pump(&mut on) => r,
        };
        stats.borrow_mut().pongs += pongs;
        match step {
            Ok(Pumped::Open) => {}
            Ok(Pumped::PeerClosed(code)) => {
                break Err(ConnError::Closed(format!("server sent close {code:?}")))
            }
            Ok(Pumped::Eof) => {
                break Err(ConnError::Closed("server closed the TCP connection".into()))
            }
            Err(e) => break Err(e),
        }
    };
    live.open.fetch_sub(1, Relaxed);
    match outcome {
        Ok(()) => {
            conn.close(Duration::from_secs(2)).await;
        }
        Err(e) => stats.borrow_mut().error(&e, live),
    }
}
