//! ringws-loadtest: a WebSocket load generator built on ringws's sans-I/O client role.
//!
//! Five scenarios, each a library function so tests can drive them in-process:
//! [`echo::run`] (message round trips), [`connect::run`] (handshake rate),
//! [`idle::run`] (many held connections, server memory per connection) and
//! [`churn::run`] (connect → echoes → close cycles; whether the server's RSS and fds
//! return to baseline), and [`fanout::run`] (pub/sub fan-out: subscribers, publishers at
//! a set rate, publish → deliver latency, loss and order). [`Workers`] spreads a scenario's connections over OS threads,
//! each with its own tokio current-thread runtime; each thread keeps its own counters
//! and histogram, merged at the end.

pub mod churn;
pub mod client;
pub mod connect;
pub mod deflate;
pub mod echo;
pub mod fanout;
pub mod idle;
pub mod report;
pub mod target;

use client::XorShift;
use indicatif::ProgressBar;
use report::{Live, Stats};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

/// Extra time past a scenario's planned end after which every worker is stopped.
pub const HARD_CAP_GRACE: Duration = Duration::from_secs(30);

/// What one worker thread is given.
#[derive(Clone, Copy, Debug)]
struct Worker {
    /// Tasks (connections or concurrent worker loops) this thread runs.
    tasks: usize,
    /// Seed for this thread's mask keys and nonces.
    seed: u64,
}

/// The body of one worker thread: runs on a current-thread runtime inside a `LocalSet`
/// (so it may `spawn_local`), adding what it measures to the shared `Stats`.
type WorkerFn =
    dyn Fn(Worker, Rc<RefCell<Stats>>) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync;

/// What each task of a scenario (one connection, or one connect/churn loop) is given.
pub struct Task {
    /// Its thread's counters and histogram (borrow briefly: never across an `.await`).
    pub stats: Rc<RefCell<Stats>>,
    /// Its own mask keys and nonces.
    pub rng: XorShift,
    /// Bounds the handshakes in progress at once on its thread (see
    /// [`Spread::open_per_thread`]); hold a permit while opening.
    pub opening: Rc<Semaphore>,
}

/// How a scenario spreads its tasks over worker threads.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    /// Worker threads (clamped to 1 ..= tasks).
    pub threads: usize,
    /// Tasks in all, spread evenly.
    pub tasks: usize,
    /// Each thread is stopped after this.
    pub hard_cap: Duration,
    /// Permits of each thread's [`Task::opening`] semaphore.
    pub open_per_thread: usize,
}

/// The worker threads of a running scenario: each runs its own current-thread tokio
/// runtime with its share of the tasks and keeps its own [`Stats`], merged at the end.
pub struct Workers {
    handles: Vec<JoinHandle<Stats>>,
}

impl Workers {
    /// Starts the threads; each runs `task(shared, Task)` for each of its tasks, all at
    /// once, and ends when they have all ended (or at the hard cap).
    pub fn start<S, F, Fut>(spread: Spread, shared: &Arc<S>, task: F) -> Workers
    where
        S: Send + Sync + 'static,
        F: Fn(Arc<S>, Task) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let shared = Arc::clone(shared);
        let task = Arc::new(task);
        let permits = spread.open_per_thread.clamp(1, Semaphore::MAX_PERMITS);
        let body: Arc<WorkerFn> = Arc::new(move |w, stats| {
            let (shared, task) = (Arc::clone(&shared), Arc::clone(&task));
            Box::pin(async move {
                let opening = Rc::new(Semaphore::new(permits));
                let tasks: Vec<_> = (0..w.tasks)
                    .map(|i| {
                        tokio::task::spawn_local(task(
                            Arc::clone(&shared),
                            Task {
                                stats: Rc::clone(&stats),
                                rng: XorShift::new(w.seed ^ (i as u64).wrapping_mul(0x1000_0001)),
                                opening: Rc::clone(&opening),
                            },
                        ))
                    })
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
            })
        });
        Workers {
            handles: spawn_workers(spread.threads, spread.tasks, spread.hard_cap, body),
        }
    }

    /// True when every thread has ended.
    pub fn all_finished(&self) -> bool {
        self.handles.iter().all(|h| h.is_finished())
    }

    /// Waits for the threads, calling `tick` about every 100 ms meanwhile, and merges
    /// what they measured.
    pub fn join(self, mut tick: impl FnMut()) -> Stats {
        while !self.all_finished() {
            tick();
            std::thread::sleep(Duration::from_millis(100));
        }
        tick();
        let mut total = Stats::default();
        for h in self.handles {
            match h.join() {
                Ok(s) => total.merge(&s),
                Err(_) => total.samples.push("a worker thread panicked".into()),
            }
        }
        total
    }

    /// [`join`](Workers::join) showing the time since `start` out of `total` on `bar`,
    /// with `message()` as its message when that gives one (the bar is not finished).
    pub fn join_timed(
        self,
        bar: &ProgressBar,
        start: Instant,
        total: Duration,
        mut message: impl FnMut() -> Option<String>,
    ) -> Stats {
        let total_ms = total.as_millis() as u64;
        bar.set_length(total_ms.max(1));
        self.join(|| {
            if let Some(m) = message() {
                bar.set_message(m);
            }
            bar.set_position((start.elapsed().as_millis() as u64).min(total_ms));
        })
    }
}

/// The default thread count: half the available cores, at least 1.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}

/// Spreads `tasks` over `threads` worker threads running `body`; each is stopped after
/// `hard_cap`.
fn spawn_workers(
    threads: usize,
    tasks: usize,
    hard_cap: Duration,
    body: Arc<WorkerFn>,
) -> Vec<JoinHandle<Stats>> {
    let threads = threads.clamp(1, tasks.max(1));
    let seed0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x1234_5678)
        ^ u64::from(std::process::id()) << 32;
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let worker = Worker {
            tasks: tasks / threads + usize::from(index < tasks % threads),
            seed: seed0.wrapping_add(index as u64 * 0x9E37_79B9),
        };
        let body = Arc::clone(&body);
        let spawned = std::thread::Builder::new()
            .name(format!("loadtest-{index}"))
            .spawn(move || run_worker(worker, hard_cap, &*body));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                let msg = format!("cannot start worker thread {index}: {e}");
                handles.push(std::thread::spawn(move || {
                    let mut s = Stats::default();
                    s.samples.push(msg);
                    s.timed_out = true;
                    s
                }));
            }
        }
    }
    handles
}

fn run_worker(worker: Worker, hard_cap: Duration, body: &WorkerFn) -> Stats {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let mut s = Stats::default();
            s.samples.push(format!("cannot start a runtime: {e}"));
            s.timed_out = true;
            return s;
        }
    };
    let local = tokio::task::LocalSet::new();
    let fut = body(worker, Rc::clone(&stats));
    let finished = local.block_on(&rt, async {
        tokio::time::timeout(hard_cap, fut).await.is_ok()
    });
    drop(local);
    let mut s = std::mem::take(&mut *stats.borrow_mut());
    s.timed_out |= !finished;
    s
}

/// Shared live counters.
pub fn live() -> Arc<Live> {
    Arc::new(Live::default())
}

/// Parses `10s`, `500ms`, `2m`, `1.5s`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 10s, 500ms or 2m"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        u => return Err(format!("{s:?}: unknown unit {u:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(n * scale).map_err(|e| format!("{s:?}: {e}"))
}

/// Makes sure this process may open `needed` file descriptors: raises the soft
/// `RLIMIT_NOFILE` toward the hard limit when it is lower. Returns a note for the user
/// (the limit was raised, or is still too low), or `None` when all is well.
// `rlim_t` is u64 on 64-bit Linux but not on every target.
#[allow(clippy::unnecessary_cast)]
pub fn ensure_nofile(needed: u64) -> Option<String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Some("cannot read the open-file limit (ulimit -n)".into());
    }
    let cur = lim.rlim_cur as u64;
    if cur >= needed {
        return None;
    }
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we pass.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0;
    let now = if ok { lim.rlim_max as u64 } else { cur };
    if now >= needed {
        Some(format!(
            "warning: ulimit -n was {cur}, below the {needed} needed; raised the soft limit to {now}"
        ))
    } else {
        Some(format!(
            "warning: ulimit -n is {now} (hard limit {}), below the {needed} needed \
             (connections + 100): expect connect errors; raise it (ulimit -n / limits.conf)",
            lim.rlim_max as u64
        ))
    }
}

/// VmRSS of process `pid` in bytes, from `/proc/PID/status`.
pub fn read_rss(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| format!("{path}: no VmRSS line"))?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{path}: bad VmRSS line {line:?}"))?;
    Ok(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn own_rss_and_nofile() {
        assert!(read_rss(std::process::id()).unwrap() > 0);
        assert!(read_rss(u32::MAX).is_err());
        assert_eq!(ensure_nofile(10), None);
    }
}
