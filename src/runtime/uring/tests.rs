//! End-to-end tests of the io_uring loop with a small echo core.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::{probe, run, UringOptions};
use crate::runtime::core::{SendBuf, ShardCore, Token};
use crate::runtime::eventfd::EventFd;

/// Shared counters the test thread watches.
#[derive(Default)]
struct Stats {
    accepted: AtomicUsize,
    closed: AtomicUsize,
    eofs: AtomicUsize,
    timers: AtomicUsize,
    bytes_in: AtomicUsize,
}

struct EchoConn {
    token: Token,
    out: Vec<u8>,
    eof: bool,
}

/// Echoes bytes back; closes after EOF once everything is flushed; on shutdown closes
/// every connection. Panics when the backend passes a stale token (fails the test).
struct EchoCore {
    slots: Vec<Option<EchoConn>>,
    gens: Vec<u32>,
    free: Vec<u32>,
    ready: Vec<Token>,
    open: usize,
    shutdown: Arc<AtomicBool>,
    shutting_down: bool,
    deadline: Instant,
    stats: Arc<Stats>,
}

impl EchoCore {
    fn new(shutdown: Arc<AtomicBool>, stats: Arc<Stats>) -> EchoCore {
        EchoCore {
            slots: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            ready: Vec::new(),
            open: 0,
            shutdown,
            shutting_down: false,
            deadline: Instant::now() + Duration::from_millis(20),
            stats,
        }
    }

    fn conn(&mut self, token: Token) -> &mut EchoConn {
        match self.slots.get_mut(token.index()).and_then(Option::as_mut) {
            Some(c) if c.token == token => c,
            _ => panic!("backend used a stale or unknown token {token:?}"),
        }
    }

    fn conn_ref(&self, token: Token) -> &EchoConn {
        match self.slots.get(token.index()).and_then(Option::as_ref) {
            Some(c) if c.token == token => c,
            _ => panic!("backend used a stale or unknown token {token:?}"),
        }
    }
}

impl ShardCore for EchoCore {
    fn on_accept(&mut self, _listener: usize, _peer: Option<SocketAddr>, _now: Instant) -> Token {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.gens.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        let token = Token::new(index, self.gens[index as usize]);
        self.slots[index as usize] = Some(EchoConn {
            token,
            out: Vec::new(),
            eof: false,
        });
        self.open += 1;
        self.stats.accepted.fetch_add(1, Ordering::SeqCst);
        if self.shutting_down {
            self.ready.push(token);
        }
        token
    }

    fn on_recv(&mut self, token: Token, data: &mut [u8], _now: Instant) {
        self.stats.bytes_in.fetch_add(data.len(), Ordering::Relaxed);
        self.conn(token).out.extend_from_slice(data);
        self.ready.push(token);
    }

    fn on_eof(&mut self, token: Token, _now: Instant) {
        self.stats.eofs.fetch_add(1, Ordering::SeqCst);
        self.conn(token).eof = true;
        self.ready.push(token);
    }

    fn take_send(&mut self, token: Token) -> Option<SendBuf> {
        let c = self.conn(token);
        if c.out.is_empty() {
            None
        } else {
            Some(SendBuf::Owned(std::mem::take(&mut c.out)))
        }
    }

    fn on_sent(&mut self, token: Token, buf: SendBuf, written: std::io::Result<usize>) {
        let c = self.conn(token);
        match written {
            Ok(n) if n < buf.len() => {
                let mut rest = buf[n..].to_vec();
                rest.extend_from_slice(&c.out);
                c.out = rest;
            }
            Ok(_) => {}
            Err(_) => {
                c.out.clear();
                c.eof = true;
            }
        }
        self.ready.push(token);
    }

    fn wants_close(&self, token: Token) -> bool {
        let c = self.conn_ref(token);
        (c.eof || self.shutting_down) && c.out.is_empty()
    }

    fn on_closed(&mut self, token: Token) {
        self.conn(token);
        let i = token.index();
        self.slots[i] = None;
        self.gens[i] = self.gens[i].wrapping_add(1);
        self.free.push(i as u32);
        self.open -= 1;
        self.stats.closed.fetch_add(1, Ordering::SeqCst);
    }

    fn on_wake(&mut self, _now: Instant) {
        if self.shutdown.load(Ordering::SeqCst) && !self.shutting_down {
            self.shutting_down = true;
            let tokens: Vec<Token> = self.slots.iter().flatten().map(|c| c.token).collect();
            self.ready.extend(tokens);
        }
    }

    fn on_timer(&mut self, now: Instant) {
        self.stats.timers.fetch_add(1, Ordering::Relaxed);
        self.deadline = now + Duration::from_millis(20);
    }

    fn next_deadline(&self) -> Option<Instant> {
        Some(self.deadline)
    }

    fn drain_ready(&mut self, out: &mut Vec<Token>) {
        out.append(&mut self.ready);
    }

    fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    fn is_finished(&self) -> bool {
        self.shutting_down && self.open == 0
    }
}

struct Server {
    addr: SocketAddr,
    wake: Arc<EventFd>,
    shutdown: Arc<AtomicBool>,
    stats: Arc<Stats>,
    thread: thread::JoinHandle<std::io::Result<()>>,
}

impl Server {
    fn start(opts: UringOptions) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let wake = Arc::new(EventFd::new().expect("eventfd"));
        let shutdown = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let (w, s, st) = (wake.clone(), shutdown.clone(), stats.clone());
        let thread = thread::spawn(move || {
            let mut core = EchoCore::new(s, st);
            run(&mut core, vec![listener], &w, &opts)
        });
        Server {
            addr,
            wake,
            shutdown,
            stats,
            thread,
        }
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&Stats) -> bool) {
        let limit = Instant::now() + Duration::from_secs(20);
        while !cond(&self.stats) {
            assert!(Instant::now() < limit, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn stop(self) -> Arc<Stats> {
        self.shutdown.store(true, Ordering::SeqCst);
        self.wake.signal();
        let limit = Instant::now() + Duration::from_secs(20);
        while !self.thread.is_finished() {
            assert!(
                Instant::now() < limit,
                "shard loop did not finish after shutdown"
            );
            thread::sleep(Duration::from_millis(5));
        }
        self.thread
            .join()
            .expect("loop thread panicked")
            .expect("loop returned an error");
        self.stats
    }
}

/// True (after saying why, or failing under `RINGWS_TEST_STRICT=1`) when this machine
/// refuses io_uring and the calling test cannot run.
fn skip() -> bool {
    match probe() {
        Ok(_) => false,
        Err(why) => {
            crate::test_support::skip(format_args!("io_uring unavailable: {why}"));
            true
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed * 7) % 251) as u8)
        .collect()
}

fn echo_clients(opts: UringOptions, clients: usize) {
    let server = Server::start(opts);
    let addr = server.addr;
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            thread::spawn(move || {
                let mut s = connect(addr);
                let messages = [
                    pattern(5, c),
                    pattern(1000, c),
                    pattern(1 << 20, c),
                    pattern(70_000, c),
                ];
                for m in &messages {
                    s.write_all(m).expect("write");
                    let mut back = vec![0u8; m.len()];
                    s.read_exact(&mut back).expect("read echo");
                    assert!(back == *m, "client {c}: echo differs");
                }
                s.shutdown(Shutdown::Write).expect("shutdown");
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).expect("read to eof");
                assert!(rest.is_empty(), "unexpected bytes after echo");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client panicked");
    }
    server.wait_for("all connections closed", |s| {
        s.closed.load(Ordering::SeqCst) == clients
    });
    let stats = server.stop();
    assert_eq!(stats.accepted.load(Ordering::SeqCst), clients);
    assert_eq!(stats.closed.load(Ordering::SeqCst), clients);
    assert_eq!(stats.eofs.load(Ordering::SeqCst), clients);
    assert!(
        stats.timers.load(Ordering::Relaxed) > 0,
        "timer never fired"
    );
}

#[test]
fn probe_reports_io_uring() {
    let result = probe();
    match &result {
        Ok(desc) => eprintln!("probe: {desc}"),
        Err(why) => eprintln!("probe refused io_uring: {why}"),
    }
    // No false negatives: where a ring can be created on a 6.x kernel, the probe says Ok
    // (the development machines are such; a seccomp'd container is not).
    let ring_ok = io_uring::IoUring::new(8).is_ok();
    let modern = super::parse_version(&super::kernel_release()).is_some_and(|v| v >= (6, 0));
    if ring_ok && modern {
        let desc = result.expect("io_uring works here, the probe must say so");
        assert!(desc.contains("multishot"), "{desc}");
    } else {
        assert!(
            result.is_err(),
            "probe said Ok where io_uring cannot be used"
        );
    }
}

#[test]
fn parses_kernel_versions() {
    assert_eq!(super::parse_version("6.18.44-fc-v445"), Some((6, 18)));
    assert_eq!(super::parse_version("5.15.0-91-generic"), Some((5, 15)));
    assert_eq!(super::parse_version("garbage"), None);
}

#[test]
fn echo_small_buffer_ring_exercises_enobufs() {
    if skip() {
        return;
    }
    let before = super::driver::ENOBUFS_SEEN.load(Ordering::Relaxed);
    echo_clients(
        UringOptions {
            entries: 64,
            buffer_count: 8,
            buffer_size: 4096,
        },
        20,
    );
    let seen = super::driver::ENOBUFS_SEEN.load(Ordering::Relaxed) - before;
    eprintln!("ENOBUFS re-arms: {seen}");
    assert!(seen > 0, "the 32 KiB ring never ran dry");
}

/// A 4-entry SQ (8-entry CQ) for 20 connections: SQEs overflow into the pending queue
/// and completions into the kernel's overflow list.
#[test]
fn echo_tiny_queues() {
    if skip() {
        return;
    }
    let before = super::driver::SQ_OVERFLOWS.load(Ordering::Relaxed);
    let opts = UringOptions {
        entries: 4,
        buffer_count: 16,
        buffer_size: 4096,
    };
    echo_clients(opts, 20);
    let seen = super::driver::SQ_OVERFLOWS.load(Ordering::Relaxed) - before;
    eprintln!("SQEs queued while the SQ was full: {seen}");
    assert!(seen > 0, "the 4-entry SQ never filled up");
}

#[test]
fn echo_default_options() {
    if skip() {
        return;
    }
    echo_clients(UringOptions::default(), 20);
}

#[test]
fn shutdown_closes_idle_connections() {
    if skip() {
        return;
    }
    let server = Server::start(UringOptions {
        entries: 32,
        buffer_count: 16,
        buffer_size: 4096,
    });
    let mut clients: Vec<TcpStream> = (0..10).map(|_| connect(server.addr)).collect();
    for s in clients.iter_mut() {
        s.write_all(b"ping").expect("write");
        let mut b = [0u8; 4];
        s.read_exact(&mut b).expect("read");
        assert_eq!(&b, b"ping");
    }
    server.wait_for("accepts", |s| s.accepted.load(Ordering::SeqCst) == 10);
    let stats = server.stop();
    assert_eq!(stats.closed.load(Ordering::SeqCst), 10);
    // The sockets were really closed: each client sees EOF.
    for mut s in clients {
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("eof after shutdown");
        assert!(rest.is_empty());
    }
}

#[test]
fn shutdown_with_no_connections() {
    if skip() {
        return;
    }
    let server = Server::start(UringOptions::default());
    let addr = server.addr;
    server.stop();
    // The listener is closed once the loop returned.
    assert!(
        TcpStream::connect(addr).is_err(),
        "listener still accepting"
    );
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[path = "../../../tests/common/seccomp.rs"]
mod seccomp;

/// Under a seccomp filter like Docker's default one, the probe reports the refusal and
/// `run` returns an error instead of panicking. The test binary re-executes itself
/// (this one test) under the filter.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn probe_and_run_under_seccomp_refusal() {
    use std::os::unix::process::CommandExt;
    const CHILD_ENV: &str = "RINGWS_URING_SECCOMP_CHILD";
    if std::env::var_os(CHILD_ENV).is_some() {
        let why = probe().expect_err("probe must fail under the filter");
        assert!(why.starts_with("io_uring_setup refused"), "{why}");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let wake = EventFd::new().expect("eventfd");
        let mut core = EchoCore::new(Arc::default(), Arc::default());
        let err = run(&mut core, vec![listener], &wake, &UringOptions::default())
            .expect_err("run must fail under the filter");
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        println!("child: {why}");
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--exact",
        "runtime::uring::tests::probe_and_run_under_seccomp_refusal",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, "1");
    // SAFETY: the hook only calls prctl and seccomp (async-signal-safe, no allocation).
    unsafe { cmd.pre_exec(seccomp::deny_io_uring_setup) };
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => {
            crate::test_support::skip(format_args!("cannot install a seccomp filter here: {e}"));
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some(at) = stdout.find("child: ") {
        eprintln!("{}", stdout[at..].lines().next().unwrap_or_default());
    }
    assert!(
        out.status.success() && stdout.contains("child: io_uring_setup refused"),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Under a small RLIMIT_MEMLOCK (and without CAP_IPC_LOCK, which root would otherwise
/// keep), registering the buffer ring halves the count until it fits instead of failing.
/// The test binary re-executes itself (this one test) with the limit lowered.
#[test]
fn buffer_ring_shrinks_under_memlock_limit() {
    use std::os::unix::process::CommandExt;
    const CHILD_ENV: &str = "RINGWS_URING_MEMLOCK_CHILD";
    if std::env::var_os(CHILD_ENV).is_some() {
        let ring = io_uring::IoUring::new(8).expect("ring");
        let bufs = super::bufring::BufRing::register(&ring.submitter(), 4096, 4096, 0)
            .expect("registration must shrink, not fail");
        println!(
            "child: buffer ring registered with {} of 4096 entries",
            bufs.count()
        );
        if bufs.count() == 4096 {
            // Older kernels do not account user-provided buffer rings to the limit.
            println!("child: (this kernel does not count buffer rings against memlock)");
        }
        return;
    }
    if skip() {
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--exact",
        "runtime::uring::tests::buffer_ring_shrinks_under_memlock_limit",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, "1");
    // SAFETY: the hook only makes prctl and setrlimit calls (async-signal-safe). Dropping
    // CAP_IPC_LOCK from the bounding set keeps a root test run from regaining it at exec.
    unsafe {
        cmd.pre_exec(|| {
            const CAP_IPC_LOCK: libc::c_ulong = 14;
            libc::prctl(libc::PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0); // EPERM when not root: fine
            let lim = libc::rlimit {
                rlim_cur: 16 * 1024,
                rlim_max: 16 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let out = cmd.output().expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some(at) = stdout.find("child: ") {
        eprintln!("{}", stdout[at..].lines().next().unwrap_or_default());
    }
    assert!(
        out.status.success(),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Clients that send and vanish without reading (some with an RST through SO_LINGER 0):
/// recv and send errors reach the core as EOF / `on_sent(Err)` and every socket closes.
#[test]
fn abrupt_clients_are_closed() {
    if skip() {
        return;
    }
    let server = Server::start(UringOptions {
        entries: 64,
        buffer_count: 16,
        buffer_size: 4096,
    });
    let clients = 12;
    for c in 0..clients {
        let mut s = connect(server.addr);
        s.write_all(&pattern(300_000, c)).expect("write");
        if c % 2 == 0 {
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .expect("linger");
        }
        drop(s);
    }
    server.wait_for("all abrupt connections closed", |s| {
        s.closed.load(Ordering::SeqCst) == clients
    });
    let stats = server.stop();
    assert_eq!(stats.accepted.load(Ordering::SeqCst), clients);
}
