//! The churn scenario: concurrent workers each loop on TCP connect → upgrade → N echo
//! round trips (each echo checked) → closing handshake → drop. With a server pid it
//! samples the server's RSS and open file descriptors before the run, right after it
//! and after a settle time, to tell whether both return to their baseline (a leak of
//! per-connection state shows up as growth that does not go away).

use crate::client::{ConnError, Incoming, Protocol, Pumped, WsConn, XorShift};
use crate::report::{self, Errors, Latency, Live, Stats};
use crate::target::Target;
use crate::{live, read_rss, Spread, Workers, HARD_CAP_GRACE};
use ringws::proto::OpCode;
use serde::Serialize;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connect + handshake timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for one echo.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the server's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Options of the churn scenario.
#[derive(Clone, Debug)]
pub struct ChurnOptions {
    /// Where to connect.
    pub target: Target,
    /// The wire protocol.
    pub protocol: Protocol,
    /// Concurrent workers, each with one connection at a time.
    pub concurrency: usize,
    /// Messages sent (one at a time, each echo awaited and checked) per connection.
    pub messages_per_conn: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Send text messages (always so over hixie-76) instead of binary.
    pub text: bool,
    /// Stop starting cycles after this long.
    pub duration: Duration,
    /// Stop after this many cycles in total (or at `duration`, first).
    pub count: Option<u64>,
    /// The server's pid, for RSS and fd samples.
    pub server_pid: Option<u32>,
    /// Time to wait after the run before the last sample.
    pub settle: Duration,
    /// Worker threads.
    pub threads: usize,
}

/// The server's RSS and open file descriptors at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServerSample {
    /// VmRSS in bytes.
    pub rss_bytes: Option<u64>,
    /// Entries in `/proc/PID/fd`.
    pub fds: Option<u64>,
}

/// The server samples of a churn run.
#[derive(Clone, Debug, Serialize)]
pub struct ServerUsage {
    /// The server's pid.
    pub pid: u32,
    /// Before the first connection.
    pub before: ServerSample,
    /// Right after the last cycle ended.
    pub after: ServerSample,
    /// After the settle time.
    pub settled: ServerSample,
    /// Settled fds equal the baseline.
    pub fds_back_to_baseline: Option<bool>,
    /// Settled RSS minus the baseline, in bytes (negative: below it).
    pub rss_growth_settled_bytes: Option<i64>,
}

/// What the churn scenario measured.
#[derive(Clone, Debug, Serialize)]
pub struct ChurnResults {
    /// Cycles completed: connect, upgrade, all echoes checked, closing handshake done.
    pub cycles: u64,
    /// Cycles started (each attempt, whether it completed or failed).
    pub attempts: u64,
    /// Echoed messages checked.
    pub messages: u64,
    /// Wall time of the run in seconds.
    pub elapsed_s: f64,
    /// Completed cycles per second.
    pub cycles_per_sec: f64,
    /// Duration of a whole completed cycle.
    pub cycle_latency: Latency,
    /// Errors by kind.
    pub errors: Errors,
    /// A few error messages.
    pub error_samples: Vec<String>,
    /// RSS / fd samples, with `server_pid`.
    pub server: Option<ServerUsage>,
    /// A worker hit the hard cap.
    pub hard_cap_hit: bool,
}

impl ChurnOptions {
    /// The settings as JSON.
    pub fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "protocol": self.protocol.name(),
            "concurrency": self.concurrency,
            "messages_per_conn": self.messages_per_conn,
            "size": self.size,
            "text": self.text,
            "duration_s": report::secs(self.duration),
            "count": self.count,
            "server_pid": self.server_pid,
            "settle_s": report::secs(self.settle),
            "threads": self.threads,
        })
    }

    /// The latest the run may take before the process is stopped.
    pub fn hard_cap(&self) -> Duration {
        self.duration + self.settle + HARD_CAP_GRACE
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn sample_line(name: &str, s: &ServerSample) -> String {
    let rss = s
        .rss_bytes
        .map_or("?".to_string(), |b| format!("{:.1} MiB", mib(b)));
    let fds = s.fds.map_or("?".to_string(), |n| n.to_string());
    format!("  {name:<8} rss {rss:>10}  fds {fds}")
}

impl ChurnResults {
    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "cycles: {} of {} attempted in {:.2} s = {:.0} cycles/s ({} echoes checked)\n\
             cycle time: {}\n{}",
            self.cycles,
            self.attempts,
            self.elapsed_s,
            self.cycles_per_sec,
            self.messages,
            self.cycle_latency.line(),
            report::errors_block(&self.errors, &self.error_samples)
        );
        if let Some(u) = &self.server {
            s.push_str(&format!("\nserver pid {}:", u.pid));
            s.push_str(&format!("\n{}", sample_line("before", &u.before)));
            s.push_str(&format!("\n{}", sample_line("after", &u.after)));
            s.push_str(&format!("\n{}", sample_line("settled", &u.settled)));
            match u.fds_back_to_baseline {
                Some(true) => s.push_str("\n  fds: back to baseline"),
                Some(false) => s.push_str("\n  fds: NOT back to baseline"),
                None => {}
            }
            if let Some(g) = u.rss_growth_settled_bytes {
                s.push_str(&format!(
                    "\n  rss: settled {:+.1} MiB vs baseline",
                    g as f64 / (1024.0 * 1024.0)
                ));
            }
        }
        if self.hard_cap_hit {
            s.push_str("\nwarning: a worker was stopped by the hard cap");
        }
        s
    }
}

/// Number of open file descriptors of `pid` (entries in `/proc/PID/fd`).
pub fn count_fds(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/fd");
    let dir = std::fs::read_dir(&path).map_err(|e| format!("{path}: {e}"))?;
    Ok(dir.count() as u64)
}

/// RSS and fds of `pid` now; unreadable values are `None` and their errors pushed on
/// `samples` (at most 5 kept).
pub fn sample_server(pid: u32, samples: &mut Vec<String>) -> ServerSample {
    let mut keep = |e: String| {
        if samples.len() < 5 {
            samples.push(e);
        }
    };
    let rss_bytes = read_rss(pid).map_err(&mut keep).ok();
    let fds = count_fds(pid).map_err(&mut keep).ok();
    ServerSample { rss_bytes, fds }
}

struct Shared {
    target: Target,
    protocol: Protocol,
    payload: Vec<u8>,
    opcode: OpCode,
    messages_per_conn: usize,
    deadline: Instant,
    count: Option<u64>,
    taken: AtomicU64,
    live: Arc<Live>,
}

/// Runs the churn scenario; `bar` shows progress.
pub fn run(opts: &ChurnOptions, bar: &indicatif::ProgressBar) -> ChurnResults {
    let mut samples = Vec::new();
    let before = opts.server_pid.map(|pid| sample_server(pid, &mut samples));
    let live = live();
    let start = Instant::now();
    let text = opts.text || opts.protocol == Protocol::Hixie76;
    let shared = Arc::new(Shared {
        target: opts.target.clone(),
        protocol: opts.protocol,
        payload: (0..opts.size).map(|i| b'a' + (i % 26) as u8).collect(),
        opcode: if text { OpCode::Text } else { OpCode::Binary },
        messages_per_conn: opts.messages_per_conn,
        deadline: start + opts.duration,
        count: opts.count,
        taken: AtomicU64::new(0),
        live: Arc::clone(&live),
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
            "cycles {}  errors {}",
            live.handshakes.load(Relaxed),
            live.errors.load(Relaxed)
        ))
    });
    // Cycles in flight at the deadline finish (the run ends when all workers are idle),
    // so the measured time is the whole wall time.
    let elapsed = start.elapsed();
    let after = opts.server_pid.map(|pid| sample_server(pid, &mut samples));
    let settled = opts.server_pid.map(|pid| {
        bar.set_message(format!("settling {:?}", opts.settle));
        std::thread::sleep(opts.settle);
        sample_server(pid, &mut samples)
    });
    bar.finish_and_clear();
    let server = match (opts.server_pid, before, after, settled) {
        (Some(pid), Some(before), Some(after), Some(settled)) => Some(ServerUsage {
            pid,
            before,
            after,
            settled,
            fds_back_to_baseline: before.fds.zip(settled.fds).map(|(b, s)| b == s),
            rss_growth_settled_bytes: before
                .rss_bytes
                .zip(settled.rss_bytes)
                .map(|(b, s)| s as i64 - b as i64),
        }),
        _ => None,
    };
    let mut error_samples = stats.samples;
    for s in samples {
        if error_samples.len() < 5 {
            error_samples.push(s);
        }
    }
    let secs = elapsed.as_secs_f64();
    ChurnResults {
        cycles: stats.handshakes,
        attempts: shared.taken.load(Relaxed),
        messages: stats.messages,
        elapsed_s: secs,
        cycles_per_sec: if secs > 0.0 {
            stats.handshakes as f64 / secs
        } else {
            0.0
        },
        cycle_latency: Latency::of(&stats.hist),
        errors: stats.errors,
        error_samples,
        server,
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
        let ticket = shared.taken.fetch_add(1, Relaxed);
        if shared.count.is_some_and(|n| ticket >= n) {
            shared.taken.fetch_sub(1, Relaxed);
            return;
        }
        match cycle(&shared, &stats, XorShift::new(rng.next_u64())).await {
            Ok(()) => {
                let mut s = stats.borrow_mut();
                report::record(&mut s.hist, t0.elapsed());
                s.handshakes += 1;
                live.handshakes.fetch_add(1, Relaxed);
            }
            Err(e) => {
                let refused = matches!(e, ConnError::Connect(_));
                stats.borrow_mut().error(&e, live);
                if refused {
                    // Do not spin on a refused port.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

/// One cycle: connect, upgrade, `messages_per_conn` checked echoes, closing handshake.
async fn cycle(shared: &Shared, stats: &RefCell<Stats>, rng: XorShift) -> Result<(), ConnError> {
    let mut conn = WsConn::connect(&shared.target, shared.protocol, rng, CONNECT_TIMEOUT).await?;
    let payload = &shared.payload[..];
    for _ in 0..shared.messages_per_conn {
        conn.send(shared.opcode, payload)?;
        tokio::time::timeout(ECHO_TIMEOUT, one_echo(&mut conn, payload))
            .await
            .map_err(|_| ConnError::Timeout("echo"))??;
        stats.borrow_mut().messages += 1;
        shared.live.messages.fetch_add(1, Relaxed);
    }
    if conn.close(CLOSE_TIMEOUT).await {
        Ok(())
    } else {
        Err(ConnError::Timeout("close not answered"))
    }
}

/// Waits for the echo of `payload` and checks it.
async fn one_echo(conn: &mut WsConn, payload: &[u8]) -> Result<(), ConnError> {
    loop {
        let mut got = 0usize;
        let mut wrong: Option<&'static str> = None;
        let pumped = conn
            .pump(&mut |inc| {
                let data = match inc {
                    Incoming::Text(t) => t.as_bytes(),
                    Incoming::Binary(b) => b,
                    Incoming::Pong(_) => return,
                };
                got += 1;
                if data != payload {
                    wrong = Some("the echo differs from the message sent");
                }
            })
            .await?;
        if let Some(why) = wrong {
            return Err(ConnError::Protocol(why.into()));
        }
        if got > 1 {
            return Err(ConnError::Protocol(
                "a message nobody sent was echoed".into(),
            ));
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
        if got == 1 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_fds_and_sample() {
        let me = std::process::id();
        assert!(count_fds(me).unwrap() > 0);
        assert!(count_fds(u32::MAX).is_err());
        let mut errs = Vec::new();
        let s = sample_server(me, &mut errs);
        assert!(s.rss_bytes.is_some() && s.fds.is_some() && errs.is_empty());
        let s = sample_server(u32::MAX, &mut errs);
        assert_eq!(s, ServerSample::default());
        assert_eq!(errs.len(), 2);
    }
}
