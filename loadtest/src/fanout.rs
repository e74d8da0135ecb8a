//! The fan-out scenario: pub/sub through a server's JSON pub/sub route (`ringws serve`'s
//! `/pubsub`): `subscribers` connections subscribe to `topics` topics (subscriber `i` to
//! topic `i % topics`: one topic for all, or e.g. 1,000 topics × 10 subscribers), then
//! `publishers` other connections publish at a fixed total `rate` (open loop: the route
//! has no publish acknowledgement to pace on), spreading their messages over the topics
//! round robin.
//!
//! Wire protocol (text frames): `{"subscribe":"T"}` → the server answers
//! `{"subscribed":"T"}`; `{"publish":"T","data":"D"}` → every subscriber of `T` except
//! the sender receives `D` as a text message.
//!
//! Each message's data is `"PUB SEQ T_NS "` padded with `.` to `size` bytes: the
//! publisher's index, a sequence number per publisher and topic, and the send time in ns
//! since the run's start on this process's monotonic clock, so publish → deliver latency
//! is the receive time minus the send time on one clock. Per subscriber and publisher
//! the next expected sequence number gives messages lost (a gap, or missing at the end),
//! duplicated (the same number twice in a row) and out of order (any other number below
//! the expected one).
//!
//! Phases: open and subscribe (all subscriptions acknowledged, every publisher
//! connected, or `open_timeout`), `settle`, `warmup` (published and checked, not
//! measured), `duration` (measured: deliveries received in it, and the latency of the
//! messages sent in it), then `drain`: publishers stop, subscribers read until each has
//! every message its topic got (or `drain` ends). Messages still missing then are lost.
//! With `server_pids`, the servers' CPU time (`/proc/PID/stat` utime + stime) is sampled
//! at the start and end of the measured window.
//!
//! The publishers' URL may differ from the subscribers' (`publish_target`): two server
//! processes joined by a broker (`ringws serve --redis`), one clock still.

use crate::client::{ConnError, Incoming, Protocol, Pumped, WsConn};
use crate::report::{self, Errors, Latency, Live, Stats};
use crate::target::Target;
use crate::{live, Spread, Task, Workers, HARD_CAP_GRACE};
use ringws::proto::OpCode;
use serde::Serialize;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Handshakes in progress at once per thread while connections open.
const OPEN_CONCURRENCY_PER_THREAD: usize = 64;
/// Connect + handshake timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a publisher sends what is due.
const PUBLISH_TICK: Duration = Duration::from_millis(1);
/// Most messages one publisher writes in one tick (what is due beyond it waits).
const MAX_BATCH: u64 = 4096;
/// A publisher with this many bytes unwritten sends nothing more until they leave.
const MAX_PENDING: usize = 1 << 20;
/// Smallest message data: room for the header.
pub const MIN_SIZE: usize = 40;

/// Options of the fan-out scenario.
#[derive(Clone, Debug)]
pub struct FanoutOptions {
    /// Where subscribers connect (the pub/sub route).
    pub target: Target,
    /// Where publishers connect (the same, or another node of the cluster).
    pub publish_target: Target,
    /// Subscriber connections.
    pub subscribers: usize,
    /// Publisher connections.
    pub publishers: usize,
    /// Topics; subscriber `i` subscribes to topic `i % topics`.
    pub topics: usize,
    /// Total messages published per second, over all publishers.
    pub rate: f64,
    /// Bytes of data per message (at least [`MIN_SIZE`]).
    pub size: usize,
    /// Time after everything is open and subscribed before publishing starts.
    pub settle: Duration,
    /// Published and checked, not measured.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Longest wait for the last deliveries after publishing stops.
    pub drain: Duration,
    /// Longest time for opening and subscribing everything.
    pub open_timeout: Duration,
    /// Server processes whose CPU time is sampled over the measured window.
    pub server_pids: Vec<u32>,
    /// Worker threads.
    pub threads: usize,
}

impl FanoutOptions {
    /// The settings as JSON.
    pub fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "publish_url": self.publish_target.url,
            "subscribers": self.subscribers,
            "publishers": self.publishers,
            "topics": self.topics,
            "rate": self.rate,
            "size": self.size,
            "settle_s": report::secs(self.settle),
            "warmup_s": report::secs(self.warmup),
            "duration_s": report::secs(self.duration),
            "drain_s": report::secs(self.drain),
            "open_timeout_s": report::secs(self.open_timeout),
            "server_pids": self.server_pids,
            "threads": self.threads,
        })
    }

    /// Every worker is stopped after this.
    pub fn hard_cap(&self) -> Duration {
        self.open_timeout + self.settle + self.warmup + self.duration + self.drain + HARD_CAP_GRACE
    }
}

/// One server process's CPU time over the measured window.
#[derive(Clone, Debug, Serialize)]
pub struct ServerCpu {
    /// Its process id.
    pub pid: u32,
    /// User CPU seconds.
    pub user_s: f64,
    /// System CPU seconds.
    pub sys_s: f64,
    /// (user + system) / window: cores kept busy.
    pub cores_busy: f64,
}

/// What the fan-out scenario measured.
#[derive(Clone, Debug, Serialize)]
pub struct FanoutResults {
    /// Subscriber connections that completed the handshake.
    pub subscribers_connected: u64,
    /// Subscriptions acknowledged (`{"subscribed":…}`).
    pub subscribed: u64,
    /// Publisher connections that completed the handshake.
    pub publishers_connected: u64,
    /// Seconds from start until publishing began (open, subscribe, settle).
    pub setup_s: f64,
    /// The measured window in seconds.
    pub elapsed_s: f64,
    /// Messages published in the measured window.
    pub published: u64,
    /// Published per second in the measured window (the target is `rate`).
    pub publish_rate: f64,
    /// Deliveries received in the measured window.
    pub deliveries: u64,
    /// Deliveries per second.
    pub deliveries_per_sec: f64,
    /// Publish → deliver latency of the messages published in the measured window.
    pub latency: Latency,
    /// Deliveries owed over the whole run (each message × its topic's subscribers that
    /// subscribed).
    pub expected_deliveries: u64,
    /// Deliveries received over the whole run (warmup and drain included).
    pub received_deliveries: u64,
    /// Messages never received (gaps, and what was still missing when the drain ended).
    pub lost: u64,
    /// A message received twice in a row.
    pub duplicated: u64,
    /// A message received after a later one of the same publisher and topic.
    pub out_of_order: u64,
    /// Messages that were not ours (unparsable data, unknown publisher, wrong topic).
    pub unexpected: u64,
    /// Every subscriber had heard each publisher's last message to its topic before the
    /// drain ended (nothing left to wait for; gaps before it count in `lost`).
    pub drain_complete: bool,
    /// Ticks on which a publisher skipped sending because its socket was backed up.
    pub publisher_stalls: u64,
    /// Servers' CPU over the measured window (with server pids).
    pub server_cpu: Vec<ServerCpu>,
    /// This generator's own CPU over the measured window, in cores (all its threads).
    pub generator_cores_busy: Option<f64>,
    /// All servers' CPU µs per delivery (with server pids).
    pub server_cpu_us_per_delivery: Option<f64>,
    /// Deliveries per server core-second (with server pids).
    pub deliveries_per_server_core_s: Option<f64>,
    /// Errors by kind.
    pub errors: Errors,
    /// A few error messages.
    pub error_samples: Vec<String>,
    /// A worker hit the hard cap.
    pub hard_cap_hit: bool,
}

impl FanoutResults {
    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "subscribers: {} connected, {} subscribed; publishers: {} connected; setup {:.2} s\n\
             published: {} in {:.2} s = {:.0} msgs/s\n\
             deliveries: {} = {:.0} deliveries/s\n\
             latency (publish → deliver): {}\n\
             whole run: {} deliveries owed, {} received, lost {}, duplicated {}, \
             out of order {}, unexpected {}, drain {}\n",
            self.subscribers_connected,
            self.subscribed,
            self.publishers_connected,
            self.setup_s,
            self.published,
            self.elapsed_s,
            self.publish_rate,
            self.deliveries,
            self.deliveries_per_sec,
            self.latency.line(),
            self.expected_deliveries,
            self.received_deliveries,
            self.lost,
            self.duplicated,
            self.out_of_order,
            self.unexpected,
            if self.drain_complete {
                "complete"
            } else {
                "INCOMPLETE"
            },
        );
        if self.publisher_stalls > 0 {
            s.push_str(&format!(
                "publisher stalls (socket backed up): {}\n",
                self.publisher_stalls
            ));
        }
        for c in &self.server_cpu {
            s.push_str(&format!(
                "server {}: user {:.2} s, sys {:.2} s, {:.2} cores busy\n",
                c.pid, c.user_s, c.sys_s, c.cores_busy
            ));
        }
        if let Some(g) = self.generator_cores_busy {
            s.push_str(&format!("generator: {g:.2} cores busy\n"));
        }
        if let (Some(us), Some(per)) = (
            self.server_cpu_us_per_delivery,
            self.deliveries_per_server_core_s,
        ) {
            s.push_str(&format!(
                "server CPU: {us:.3} µs per delivery = {per:.0} deliveries per core-second\n"
            ));
        }
        s.push_str(&report::errors_block(&self.errors, &self.error_samples));
        if self.hard_cap_hit {
            s.push_str("\nwarning: a worker was stopped by the hard cap");
        }
        s
    }
}

/// Per (publisher, topic) sequence tracking at one subscriber.
#[derive(Clone, Copy, Debug, Default)]
struct Track {
    /// The next sequence number expected.
    next: u64,
    /// Gaps counted so far (messages skipped over).
    gaps: u64,
}

/// What one subscriber saw, added to [`Shared`] when it ends.
#[derive(Debug, Default)]
struct SubCounts {
    received: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    unexpected: u64,
    complete: bool,
}

struct Shared {
    opts: FanoutOptions,
    start: Instant,
    /// Payload padding.
    pad: Vec<u8>,
    /// Task ids: 0..subscribers are subscribers, the rest publishers.
    next_id: AtomicUsize,
    /// Subscriber tasks done opening (subscribed, or failed).
    subs_settled: AtomicUsize,
    /// Publisher tasks done opening (connected, or failed).
    pubs_settled: AtomicUsize,
    subscribed: AtomicU64,
    subscribed_per_topic: Vec<AtomicU64>,
    pubs_connected: AtomicU64,
    /// Nanoseconds after `start` at which publishing starts; `u64::MAX` until known.
    go_ns: AtomicU64,
    /// Publishers finished (their final counts stored).
    pubs_done: AtomicUsize,
    /// Fired when the last publisher is done.
    pubs_done_notify: Notify,
    /// Per publisher, messages sent per topic over the whole run.
    final_counts: Mutex<Vec<Vec<u64>>>,
    published_total: AtomicU64,
    published_measured: AtomicU64,
    publisher_stalls: AtomicU64,
    owed: AtomicU64,
    sub_counts: Mutex<SubCounts>,
    live: Arc<Live>,
    incomplete: AtomicBool,
}

impl Shared {
    fn go(&self) -> Option<u64> {
        match self.go_ns.load(Relaxed) {
            u64::MAX => None,
            ns => Some(ns),
        }
    }

    fn warmup_end_ns(&self, go: u64) -> u64 {
        go + self.opts.warmup.as_nanos() as u64
    }

    fn deadline_ns(&self, go: u64) -> u64 {
        self.warmup_end_ns(go) + self.opts.duration.as_nanos() as u64
    }

    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_nanos() as u64
    }

    fn at(&self, ns: u64) -> Instant {
        self.start + Duration::from_nanos(ns)
    }
}

/// When, and each process's (user, system) clock ticks then.
type CpuSample = (Instant, Vec<Option<(u64, u64)>>);

/// Clock ticks per second for `/proc/PID/stat`.
fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of `pid` in clock ticks, as (user, system).
pub fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After ')': state is field 3, utime field 14, stime field 15.
    let utime = f.nth(11)?.parse().ok()?;
    let stime = f.next()?.parse().ok()?;
    Some((utime, stime))
}

/// Runs the fan-out scenario; `bar` shows progress.
pub fn run(opts: &FanoutOptions, bar: &indicatif::ProgressBar) -> FanoutResults {
    let mut opts = opts.clone();
    opts.topics = opts.topics.max(1);
    opts.publishers = opts.publishers.max(1);
    opts.size = opts.size.max(MIN_SIZE);
    let live = live();
    let start = Instant::now();
    let shared = Arc::new(Shared {
        pad: vec![b'.'; opts.size],
        next_id: AtomicUsize::new(0),
        subs_settled: AtomicUsize::new(0),
        pubs_settled: AtomicUsize::new(0),
        subscribed: AtomicU64::new(0),
        subscribed_per_topic: (0..opts.topics).map(|_| AtomicU64::new(0)).collect(),
        pubs_connected: AtomicU64::new(0),
        go_ns: AtomicU64::new(u64::MAX),
        pubs_done: AtomicUsize::new(0),
        pubs_done_notify: Notify::new(),
        final_counts: Mutex::new(vec![Vec::new(); opts.publishers]),
        published_total: AtomicU64::new(0),
        published_measured: AtomicU64::new(0),
        publisher_stalls: AtomicU64::new(0),
        owed: AtomicU64::new(0),
        sub_counts: Mutex::new(SubCounts {
            complete: true,
            ..SubCounts::default()
        }),
        live: Arc::clone(&live),
        incomplete: AtomicBool::new(false),
        start,
        opts: opts.clone(),
    });
    let spread = Spread {
        threads: opts.threads,
        tasks: opts.subscribers + opts.publishers,
        hard_cap: opts.hard_cap(),
        open_per_thread: OPEN_CONCURRENCY_PER_THREAD,
    };
    let workers = Workers::start(spread, &shared, one_task);
    let hz = clk_tck();
    // (instant, ticks per pid) at the start and at the end of the measured window.
    let mut cpu_start: Option<CpuSample> = None;
    let mut cpu_end: Option<CpuSample> = None;
    // The servers' pids, then this process's own (the generator's CPU).
    let mut pids = opts.server_pids.clone();
    pids.push(std::process::id());
    let sample = |pids: &[u32]| (Instant::now(), pids.iter().map(|&p| cpu_ticks(p)).collect());
    let mut prev = (Instant::now(), 0u64);
    let total = opts.open_timeout + opts.settle + opts.warmup + opts.duration;
    let stats = workers.join_timed(bar, start, total, || {
        let now = Instant::now();
        let sh = &shared;
        if sh.go().is_none() {
            let settled = sh.subs_settled.load(Relaxed) + sh.pubs_settled.load(Relaxed);
            if settled >= sh.opts.subscribers + sh.opts.publishers
                || now >= start + sh.opts.open_timeout
            {
                sh.go_ns
                    .store(sh.ns(now + sh.opts.settle).min(u64::MAX - 1), Relaxed);
            }
        }
        if let Some(go) = sh.go() {
            if cpu_start.is_none() && sh.ns(now) >= sh.warmup_end_ns(go) {
                cpu_start = Some(sample(&pids));
            }
            if cpu_end.is_none() && sh.ns(now) >= sh.deadline_ns(go) {
                cpu_end = Some(sample(&pids));
            }
        }
        let dt = now.duration_since(prev.0).as_secs_f64();
        if dt < 0.5 {
            return None;
        }
        let msgs = live.messages.load(Relaxed);
        let rate = (msgs - prev.1) as f64 / dt;
        prev = (now, msgs);
        Some(format!(
            "open {}  subscribed {}  deliveries {msgs} ({rate:.0}/s)  errors {}",
            live.open.load(Relaxed),
            sh.subscribed.load(Relaxed),
            live.errors.load(Relaxed)
        ))
    });
    bar.finish_and_clear();

    let go = shared.go().unwrap_or(shared.ns(Instant::now()));
    let elapsed = opts.duration.as_secs_f64();
    let rate = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    let deliveries = stats.messages;
    let mut server_cpu = Vec::new();
    let mut generator_cores_busy = None;
    if let (Some((t0, a)), Some((t1, b))) = (&cpu_start, &cpu_end) {
        let window = t1.duration_since(*t0).as_secs_f64().max(1e-3);
        if let (Some(Some(a)), Some(Some(b))) = (a.last(), b.last()) {
            generator_cores_busy = Some((b.0 + b.1 - a.0 - a.1) as f64 / hz / window);
        }
        for ((pid, a), b) in opts.server_pids.iter().zip(a).zip(b) {
            if let (Some(a), Some(b)) = (a, b) {
                let user_s = (b.0 - a.0) as f64 / hz;
                let sys_s = (b.1 - a.1) as f64 / hz;
                server_cpu.push(ServerCpu {
                    pid: *pid,
                    user_s,
                    sys_s,
                    cores_busy: (user_s + sys_s) / window,
                });
            }
        }
    }
    let cores: f64 = server_cpu.iter().map(|c| c.cores_busy).sum();
    let dps = rate(deliveries);
    let (cpu_per, per_core) = if !server_cpu.is_empty() && dps > 0.0 && cores > 0.0 {
        (Some(cores / dps * 1e6), Some(dps / cores))
    } else {
        (None, None)
    };
    let counts = shared
        .sub_counts
        .lock()
        .map(|mut c| std::mem::take(&mut *c));
    let counts = counts.unwrap_or_default();
    let published = shared.published_measured.load(Relaxed);
    FanoutResults {
        subscribers_connected: stats.handshakes
            - shared.pubs_connected.load(Relaxed).min(stats.handshakes),
        subscribed: shared.subscribed.load(Relaxed),
        publishers_connected: shared.pubs_connected.load(Relaxed),
        setup_s: go as f64 / 1e9,
        elapsed_s: elapsed,
        published,
        publish_rate: rate(published),
        deliveries,
        deliveries_per_sec: dps,
        latency: Latency::of(&stats.hist),
        expected_deliveries: shared.owed.load(Relaxed),
        received_deliveries: counts.received,
        lost: counts.lost,
        duplicated: counts.duplicated,
        out_of_order: counts.out_of_order,
        unexpected: counts.unexpected,
        drain_complete: counts.complete && !shared.incomplete.load(Relaxed),
        publisher_stalls: shared.publisher_stalls.load(Relaxed),
        server_cpu,
        generator_cores_busy,
        server_cpu_us_per_delivery: cpu_per,
        deliveries_per_server_core_s: per_core,
        errors: stats.errors,
        error_samples: stats.samples,
        hard_cap_hit: stats.timed_out,
    }
}

async fn one_task(shared: Arc<Shared>, task: Task) {
    let id = shared.next_id.fetch_add(1, Relaxed);
    if id < shared.opts.subscribers {
        subscriber(&shared, task, id).await;
    } else {
        publisher(&shared, task, id - shared.opts.subscribers).await;
    }
}

fn topic_name(t: usize) -> String {
    format!("fanout-{t}")
}

async fn connect(shared: &Shared, task: &Task, target: &Target) -> Result<WsConn, ConnError> {
    let _permit = task.opening.acquire().await;
    let r = WsConn::connect(target, Protocol::Rfc6455, task.rng.clone(), CONNECT_TIMEOUT).await;
    match &r {
        Ok(_) => {
            task.stats.borrow_mut().handshakes += 1;
            shared.live.handshakes.fetch_add(1, Relaxed);
            shared.live.open.fetch_add(1, Relaxed);
        }
        Err(_) => {
            shared.live.failed.fetch_add(1, Relaxed);
        }
    }
    r
}

/// Marks a publisher done on every path: stores its final counts, fires the notify
/// when it is the last.
struct PubDone<'a> {
    shared: &'a Shared,
    index: usize,
    counts: Vec<u64>,
}

impl Drop for PubDone<'_> {
    fn drop(&mut self) {
        let sh = self.shared;
        if let Ok(mut f) = sh.final_counts.lock() {
            f[self.index] = std::mem::take(&mut self.counts);
        }
        if sh.pubs_done.fetch_add(1, Relaxed) + 1 == sh.opts.publishers {
            sh.pubs_done_notify.notify_waiters();
        }
    }
}

/// Waits (bounded) until the publishing start is known.
async fn wait_go(shared: &Shared) -> Option<u64> {
    let give_up = shared.start + shared.opts.open_timeout + Duration::from_secs(2);
    loop {
        if let Some(go) = shared.go() {
            return Some(go);
        }
        if Instant::now() >= give_up {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn publisher(shared: &Shared, task: Task, index: usize) {
    let opts = &shared.opts;
    let mut done = PubDone {
        shared,
        index,
        counts: vec![0; opts.topics],
    };
    let conn = connect(shared, &task, &opts.publish_target).await;
    shared.pubs_settled.fetch_add(1, Relaxed);
    let mut conn = match conn {
        Ok(c) => c,
        Err(e) => {
            task.stats.borrow_mut().error(&e, &shared.live);
            return;
        }
    };
    shared.pubs_connected.fetch_add(1, Relaxed);
    let result = publish_loop(shared, &task.stats, &mut conn, index, &mut done.counts).await;
    shared.live.open.fetch_sub(1, Relaxed);
    drop(done);
    match result {
        Ok(()) => {
            conn.close(Duration::from_secs(1)).await;
        }
        Err(e) => task.stats.borrow_mut().error(&e, &shared.live),
    }
}

async fn publish_loop(
    shared: &Shared,
    stats: &RefCell<Stats>,
    conn: &mut WsConn,
    index: usize,
    counts: &mut [u64],
) -> Result<(), ConnError> {
    let opts = &shared.opts;
    let Some(go) = wait_go(shared).await else {
        return Ok(());
    };
    let go_at = shared.at(go);
    let warmup_end = shared.warmup_end_ns(go);
    let deadline = shared.at(shared.deadline_ns(go));
    let per_pub = opts.rate / opts.publishers as f64;
    // Publisher `index` starts at its own offset, so the topics are covered evenly.
    let mut topic = index * opts.topics / opts.publishers;
    let mut sent = 0u64;
    let mut frame = Vec::with_capacity(opts.size + 64);
    let mut unexpected: Option<String> = None;
    tokio::time::sleep_until(go_at.into()).await;
    let mut next_tick = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let due = ((now - go_at).as_secs_f64() * per_pub) as u64;
        let n = due.saturating_sub(sent).min(MAX_BATCH);
        if n > 0 && conn.pending() > MAX_PENDING {
            shared.publisher_stalls.fetch_add(1, Relaxed);
        } else if n > 0 {
            let t_ns = shared.ns(now);
            let measured = t_ns >= warmup_end;
            let mut owed = 0;
            for _ in 0..n {
                let seq = counts[topic];
                counts[topic] += 1;
                frame.clear();
                encode_publish(&mut frame, topic, index, seq, t_ns, &shared.pad);
                conn.queue(OpCode::Text, &frame)?;
                owed += shared.subscribed_per_topic[topic].load(Relaxed);
                topic = (topic + 1) % opts.topics;
            }
            sent += n;
            conn.try_flush()?;
            shared.published_total.fetch_add(n, Relaxed);
            shared.owed.fetch_add(owed, Relaxed);
            if measured {
                shared.published_measured.fetch_add(n, Relaxed);
            }
        }
        next_tick += PUBLISH_TICK;
        if next_tick < now {
            next_tick = now + PUBLISH_TICK;
        }
        let mut on = |inc: Incoming<'_>| {
            if let Incoming::Text(t) = inc {
                unexpected.get_or_insert_with(|| t.chars().take(200).collect());
            }
        };
        let pumped = tokio::select! {
            biased;
            r = conn.pump(&mut on) => Some(r?),
            _ = tokio::time::sleep_until(next_tick.min(deadline).into()) => None,
        };
        if let Some(what) = unexpected.take() {
            let mut s = stats.borrow_mut();
            if s.samples.len() < 5 {
                s.samples.push(format!("publisher got: {what}"));
            }
        }
        match pumped {
            None | Some(Pumped::Open) => {}
            Some(Pumped::PeerClosed(code)) => {
                return Err(ConnError::Closed(format!("server sent close {code:?}")))
            }
            Some(Pumped::Eof) => {
                return Err(ConnError::Closed("server closed the TCP connection".into()))
            }
        }
    }
    conn.flush().await
}

/// `{"publish":"fanout-T","data":"PUB SEQ T_NS ...."}`, the data padded to `pad.len()`.
fn encode_publish(
    out: &mut Vec<u8>,
    topic: usize,
    publisher: usize,
    seq: u64,
    t_ns: u64,
    pad: &[u8],
) {
    use std::io::Write;
    let _ = write!(out, "{{\"publish\":\"fanout-{topic}\",\"data\":\"");
    let data_start = out.len();
    let _ = write!(out, "{publisher} {seq} {t_ns} ");
    let used = out.len() - data_start;
    out.extend_from_slice(&pad[..pad.len().saturating_sub(used)]);
    out.extend_from_slice(b"\"}");
}

/// Parses `PUB SEQ T_NS ...` (the data of [`encode_publish`]).
fn parse_data(d: &[u8]) -> Option<(usize, u64, u64)> {
    let mut it = d.split(|&b| b == b' ');
    let mut num = || -> Option<u64> {
        let f = it.next()?;
        if f.is_empty() || f.len() > 20 {
            return None;
        }
        let mut v: u64 = 0;
        for &b in f {
            if !b.is_ascii_digit() {
                return None;
            }
            v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        Some(v)
    };
    let p = num()?;
    let seq = num()?;
    let t = num()?;
    Some((usize::try_from(p).ok()?, seq, t))
}

async fn subscriber(shared: &Shared, task: Task, index: usize) {
    let opts = &shared.opts;
    let topic = index % opts.topics;
    let mut counts = SubCounts::default();
    let result = async {
        let mut conn = connect(shared, &task, &opts.target).await;
        let subscribed = match &mut conn {
            Ok(c) => subscribe(c, topic).await,
            Err(_) => Ok(false),
        };
        shared.subs_settled.fetch_add(1, Relaxed);
        let mut conn = conn?;
        if !subscribed? {
            return Err(ConnError::Protocol(
                "no subscription acknowledgement".into(),
            ));
        }
        shared.subscribed.fetch_add(1, Relaxed);
        shared.subscribed_per_topic[topic].fetch_add(1, Relaxed);
        let r = receive_loop(shared, &task.stats, &mut conn, topic, &mut counts).await;
        shared.live.open.fetch_sub(1, Relaxed);
        r?;
        conn.close(Duration::from_secs(1)).await;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        task.stats.borrow_mut().error(&e, &shared.live);
    }
    if let Ok(mut c) = shared.sub_counts.lock() {
        c.received += counts.received;
        c.lost += counts.lost;
        c.duplicated += counts.duplicated;
        c.out_of_order += counts.out_of_order;
        c.unexpected += counts.unexpected;
        c.complete &= counts.complete;
    }
}

/// Sends `{"subscribe":"fanout-T"}` and waits for the acknowledgement; Ok(false) when
/// something else came first.
async fn subscribe(conn: &mut WsConn, topic: usize) -> Result<bool, ConnError> {
    let name = topic_name(topic);
    let req = format!("{{\"subscribe\":\"{name}\"}}");
    conn.send(OpCode::Text, req.as_bytes())?;
    let want = format!("{{\"subscribed\":\"{name}\"}}");
    let wait = async {
        loop {
            let mut got: Option<bool> = None;
            let pumped = conn
                .pump(&mut |inc| {
                    if let Incoming::Text(t) = inc {
                        if got.is_none() {
                            let ok =
                                t == want || (t.contains("\"subscribed\"") && t.contains(&name));
                            got = Some(ok);
                        }
                    }
                })
                .await?;
            if let Some(ok) = got {
                return Ok(ok);
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
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, wait).await {
        Ok(r) => r,
        Err(_) => Err(ConnError::Timeout("subscribe")),
    }
}

async fn receive_loop(
    shared: &Shared,
    stats: &RefCell<Stats>,
    conn: &mut WsConn,
    topic: usize,
    counts: &mut SubCounts,
) -> Result<(), ConnError> {
    let opts = &shared.opts;
    let mut tracks = vec![Track::default(); opts.publishers];
    let notified = shared.pubs_done_notify.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let mut draining = false;
    let mut sample: Option<String> = None;
    let hard_end = shared.start + opts.hard_cap() - HARD_CAP_GRACE;
    let result = loop {
        // Publishers done: from now on stop once everything owed has come.
        if !draining && shared.pubs_done.load(Relaxed) >= opts.publishers {
            draining = true;
        }
        if draining && complete(shared, &tracks, topic) {
            counts.complete = true;
            break Ok(());
        }
        let go = shared.go();
        let drain_end = match go {
            Some(go) if draining => shared.at(shared.deadline_ns(go)) + opts.drain,
            _ => hard_end,
        }
        .min(hard_end);
        let (warmup_end, deadline) = match go {
            Some(go) => (shared.warmup_end_ns(go), shared.deadline_ns(go)),
            None => (u64::MAX, 0),
        };
        let mut now_ns: Option<u64> = None;
        let mut in_window = 0u64;
        let mut on = |inc: Incoming<'_>| {
            let data = match inc {
                Incoming::Text(t) => t.as_bytes(),
                Incoming::Binary(b) => b,
                Incoming::Pong(_) => return,
            };
            // One clock reading per read: the messages of one read arrived together.
            let now = *now_ns.get_or_insert_with(|| shared.ns(Instant::now()));
            let Some((p, seq, t_ns)) = parse_data(data).filter(|&(p, ..)| p < tracks.len()) else {
                counts.unexpected += 1;
                sample.get_or_insert_with(|| {
                    String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned()
                });
                return;
            };
            let tr = &mut tracks[p];
            if seq == tr.next {
                tr.next += 1;
            } else if seq > tr.next {
                tr.gaps += seq - tr.next;
                tr.next = seq + 1;
            } else if seq + 1 == tr.next {
                counts.duplicated += 1;
                return;
            } else {
                // Counted as lost when the later one arrived; it is here after all.
                counts.out_of_order += 1;
                tr.gaps = tr.gaps.saturating_sub(1);
            }
            counts.received += 1;
            if t_ns >= warmup_end && t_ns < deadline {
                // Borrowed only inside this synchronous callback, never across an await.
                report::record(
                    &mut stats.borrow_mut().hist,
                    Duration::from_nanos(now.saturating_sub(t_ns)),
                );
            }
            if now >= warmup_end && now <= deadline {
                in_window += 1;
            }
        };
        let pumped = tokio::select! {
            biased;
            r = conn.pump(&mut on) => Some(r),
            _ = &mut notified, if !draining => None,
            _ = tokio::time::sleep_until(drain_end.into()) => break Ok(()),
        };
        if in_window > 0 {
            stats.borrow_mut().messages += in_window;
            shared.live.messages.fetch_add(in_window, Relaxed);
        }
        if let Some(what) = sample.take() {
            let mut s = stats.borrow_mut();
            if s.samples.len() < 5 {
                s.samples.push(format!("subscriber got: {what}"));
            }
        }
        match pumped {
            None | Some(Ok(Pumped::Open)) => {}
            Some(Ok(Pumped::PeerClosed(code))) => {
                break Err(ConnError::Closed(format!("server sent close {code:?}")))
            }
            Some(Ok(Pumped::Eof)) => {
                break Err(ConnError::Closed("server closed the TCP connection".into()))
            }
            Some(Err(e)) => break Err(e),
        }
    };
    // What never came: the gaps, and the tail of what each publisher sent this topic.
    counts.lost += tracks.iter().map(|t| t.gaps).sum::<u64>();
    if shared.pubs_done.load(Relaxed) >= opts.publishers {
        if let Ok(f) = shared.final_counts.lock() {
            for (p, tr) in tracks.iter().enumerate() {
                let sent = f[p].get(topic).copied().unwrap_or(0);
                counts.lost += sent.saturating_sub(tr.next);
            }
        }
    } else {
        shared.incomplete.store(true, Relaxed);
    }
    result
}

/// True when this subscriber has had every message sent to its topic (publishers done).
fn complete(shared: &Shared, tracks: &[Track], topic: usize) -> bool {
    let Ok(f) = shared.final_counts.lock() else {
        return false;
    };
    tracks
        .iter()
        .enumerate()
        .all(|(p, tr)| f[p].get(topic).copied().unwrap_or(0) <= tr.next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_frames_and_data_parse() {
        let pad = vec![b'.'; 64];
        let mut out = Vec::new();
        encode_publish(&mut out, 7, 3, 42, 123_456_789, &pad);
        let text = std::str::from_utf8(&out).unwrap();
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["publish"], "fanout-7");
        let data = v["data"].as_str().unwrap();
        assert_eq!(data.len(), 64);
        assert_eq!(parse_data(data.as_bytes()), Some((3, 42, 123_456_789)));
        assert_eq!(parse_data(b"{\"subscribed\":\"x\"}"), None);
        assert_eq!(parse_data(b"1 2"), None);
        assert_eq!(parse_data(b"1 2 99999999999999999999999 "), None);
    }

    /// The `/pubsub` protocol of `ringws serve`, reduced to what the scenario uses;
    /// with `drop_every` n > 0 it skips every n-th publish of each connection.
    #[derive(Default)]
    struct JsonPubSub {
        drop_every: u64,
        publishes: u64,
    }

    impl ringws::Handler for JsonPubSub {
        fn on_message(&mut self, conn: &mut ringws::Conn<'_>, message: ringws::Message<'_>) {
            let ringws::Message::Text(text) = message else {
                return;
            };
            let v: serde_json::Value = serde_json::from_str(text).expect("JSON");
            if let Some(t) = v["subscribe"].as_str() {
                conn.subscribe(t);
                conn.send_text(&serde_json::json!({ "subscribed": t }).to_string());
            } else if let (Some(t), Some(d)) = (v["publish"].as_str(), v["data"].as_str()) {
                self.publishes += 1;
                if self.drop_every == 0 || self.publishes % self.drop_every != 0 {
                    conn.publish(t, ringws::Message::Text(d));
                }
            }
        }
    }

    fn fanout_against(drop_every: u64) -> FanoutResults {
        let server = ringws::Server::builder()
            .bind("127.0.0.1:0")
            .shards(2)
            .websocket("/pubsub", move || JsonPubSub {
                drop_every,
                publishes: 0,
            })
            .build()
            .expect("build")
            .start()
            .expect("start");
        let target = Target::parse(&format!("ws://{}/pubsub", server.local_addr())).expect("url");
        let opts = FanoutOptions {
            target: target.clone(),
            publish_target: target,
            subscribers: 30,
            publishers: 3,
            topics: 4,
            rate: 600.0,
            size: 64,
            settle: Duration::ZERO,
            warmup: Duration::from_millis(200),
            duration: Duration::from_millis(600),
            drain: Duration::from_secs(3),
            open_timeout: Duration::from_secs(10),
            server_pids: vec![std::process::id()],
            threads: 2,
        };
        run(&opts, &indicatif::ProgressBar::hidden())
    }

    #[test]
    fn end_to_end_against_an_in_process_server() {
        let r = fanout_against(0);
        assert_eq!(r.errors.total(), 0, "{:?}", r.error_samples);
        assert_eq!((r.subscribed, r.publishers_connected), (30, 3));
        assert!(r.drain_complete, "{r:?}");
        assert_eq!(
            (r.lost, r.duplicated, r.out_of_order, r.unexpected),
            (0, 0, 0, 0)
        );
        // Every message reached its topic's 7 or 8 subscribers.
        assert_eq!(r.received_deliveries, r.expected_deliveries, "{r:?}");
        assert!(
            r.published > 0 && r.deliveries > 0 && r.latency.count > 0,
            "{r:?}"
        );
        assert_eq!(r.server_cpu.len(), 1);
    }

    #[test]
    fn lost_messages_are_counted() {
        let r = fanout_against(5);
        assert_eq!(r.errors.total(), 0, "{:?}", r.error_samples);
        assert_eq!((r.duplicated, r.out_of_order), (0, 0));
        // Each dropped publish is lost once per subscriber of its topic.
        assert!(r.lost > 0, "{r:?}");
        assert_eq!(
            r.received_deliveries + r.lost,
            r.expected_deliveries,
            "{r:?}"
        );
    }

    #[test]
    fn own_cpu_ticks() {
        assert!(cpu_ticks(std::process::id()).is_some());
        assert!(cpu_ticks(u32::MAX).is_none());
    }
}
