//! The runtime contract on both backends, with small test cores: several listeners
//! per shard, outgoing connections (refused and accepted) and `wants_read` pauses; and
//! file reads (`take_file_reads` / `on_file_read`: in order, short at the end, errors).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::core::{SendBuf, ShardCore, Token, TokenKind};
use super::eventfd::EventFd;
use crate::server::Backend;

/// What the test thread watches.
#[derive(Default)]
struct Seen {
    /// Connect results: `Ok` or the error text, by target.
    connects: Mutex<Vec<(SocketAddr, Result<(), String>)>>,
    /// Bytes received on outgoing connections.
    link_bytes: AtomicUsize,
    /// Let the outgoing connections read.
    gate_open: AtomicBool,
    stop: AtomicBool,
}

struct Sock {
    out: Vec<u8>,
    eof: bool,
    /// Listener index, or `None` for an outgoing connection.
    listener: Option<usize>,
}

/// Listener 0 echoes; listener 1 echoes upper-cased. Outgoing connections (to
/// `targets`, asked for at the first turn) send `hello` and count what they receive,
/// reading only while the gate is open. A timer lists every socket every 10 ms so that
/// a gate change is seen.
struct DoorsCore {
    socks: HashMap<Token, Sock>,
    next: u32,
    targets: Vec<SocketAddr>,
    pending: HashMap<Token, SocketAddr>,
    ready: Vec<Token>,
    seen: Arc<Seen>,
    stopping: bool,
    tick: Instant,
}

impl DoorsCore {
    fn token(&mut self, stream: bool) -> Token {
        self.next += 1;
        let kind = if stream {
            TokenKind::Stream
        } else {
            TokenKind::Conn
        };
        Token::of_kind(kind, self.next as usize, 7)
    }
}

impl ShardCore for DoorsCore {
    fn on_accept(&mut self, listener: usize, _peer: Option<SocketAddr>, _now: Instant) -> Token {
        let token = self.token(false);
        let sock = Sock {
            out: Vec::new(),
            eof: false,
            listener: Some(listener),
        };
        self.socks.insert(token, sock);
        token
    }

    fn take_connects(&mut self, out: &mut Vec<(Token, SocketAddr)>) {
        for addr in std::mem::take(&mut self.targets) {
            let token = self.token(true);
            self.pending.insert(token, addr);
            out.push((token, addr));
        }
    }

    fn on_connected(&mut self, token: Token, result: std::io::Result<()>, _now: Instant) {
        let addr = self
            .pending
            .remove(&token)
            .expect("connect for an unknown token");
        let result = result.map_err(|e| e.to_string());
        if result.is_ok() {
            let sock = Sock {
                out: b"hello".to_vec(),
                eof: false,
                listener: None,
            };
            self.socks.insert(token, sock);
            self.ready.push(token);
        }
        self.seen
            .connects
            .lock()
            .expect("lock")
            .push((addr, result));
    }

    fn wants_read(&self, token: Token) -> bool {
        match self.socks.get(&token) {
            Some(sock) if sock.listener.is_none() => self.seen.gate_open.load(Ordering::SeqCst),
            _ => true,
        }
    }

    fn on_recv(&mut self, token: Token, data: &mut [u8], _now: Instant) {
        let sock = self
            .socks
            .get_mut(&token)
            .expect("recv for an unknown token");
        match sock.listener {
            Some(0) => sock.out.extend_from_slice(data),
            Some(_) => sock.out.extend(data.iter().map(u8::to_ascii_uppercase)),
            None => {
                self.seen.link_bytes.fetch_add(data.len(), Ordering::SeqCst);
            }
        }
        self.ready.push(token);
    }

    fn on_eof(&mut self, token: Token, _now: Instant) {
        if let Some(sock) = self.socks.get_mut(&token) {
            sock.eof = true;
        }
        self.ready.push(token);
    }

    fn take_send(&mut self, token: Token) -> Option<SendBuf> {
        let sock = self.socks.get_mut(&token)?;
        (!sock.out.is_empty()).then(|| SendBuf::Owned(std::mem::take(&mut sock.out)))
    }

    fn on_sent(&mut self, token: Token, buf: SendBuf, written: std::io::Result<usize>) {
        if let Some(sock) = self.socks.get_mut(&token) {
            match written {
                Ok(n) => {
                    let mut rest = buf[n..].to_vec();
                    rest.append(&mut sock.out);
                    sock.out = rest;
                }
                Err(_) => sock.eof = true,
            }
        }
        self.ready.push(token);
    }

    fn wants_close(&self, token: Token) -> bool {
        self.socks
            .get(&token)
            .is_none_or(|s| (s.eof || self.stopping) && s.out.is_empty())
    }

    fn on_closed(&mut self, token: Token) {
        assert!(
            self.socks.remove(&token).is_some(),
            "close of an unknown token"
        );
    }

    fn on_wake(&mut self, _now: Instant) {}

    fn on_timer(&mut self, now: Instant) {
        self.tick = now + Duration::from_millis(10);
        self.stopping |= self.seen.stop.load(Ordering::SeqCst);
        self.ready.extend(self.socks.keys().copied());
        if self.stopping {
            // Still connecting (the black hole): abandoned, since `wants_close` is true.
            self.ready.extend(self.pending.keys().copied());
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        Some(self.tick)
    }

    fn drain_ready(&mut self, out: &mut Vec<Token>) {
        out.append(&mut self.ready);
    }

    fn is_shutting_down(&self) -> bool {
        self.stopping
    }

    fn is_finished(&self) -> bool {
        self.stopping && self.socks.is_empty() && self.pending.is_empty()
    }
}

fn backends() -> Vec<Backend> {
    let mut list = vec![Backend::Epoll];
    match super::uring::probe() {
        Ok(_) => list.push(Backend::Uring),
        Err(why) => crate::test_support::skip(format_args!(
            "the io_uring leg: io_uring unavailable: {why}"
        )),
    }
    list
}

fn roundtrip(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(data).expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut back = Vec::new();
    s.read_to_end(&mut back).expect("read");
    back
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let limit = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn listeners_connects_and_read_pauses() {
    for backend in backends() {
        // A backend the core connects to: reads `hello`, then writes 1 MiB.
        let far = TcpListener::bind("127.0.0.1:0").expect("bind");
        let far_addr = far.local_addr().expect("addr");
        let refused = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let seen = Arc::new(Seen::default());
        let listeners = vec![
            TcpListener::bind("127.0.0.1:0").expect("bind"),
            TcpListener::bind("127.0.0.1:0").expect("bind"),
        ];
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.local_addr().expect("addr"))
            .collect();
        let core = DoorsCore {
            socks: HashMap::new(),
            next: 0,
            // 192.0.2.0/24 is TEST-NET-1: the connect hangs (or fails at once where
            // there is no route); either way shutdown must not wait for it.
            targets: vec![refused, far_addr, SocketAddr::from(([192, 0, 2, 1], 9))],
            pending: HashMap::new(),
            ready: Vec::new(),
            seen: Arc::clone(&seen),
            stopping: false,
            tick: Instant::now(),
        };
        let wake = Arc::new(EventFd::new().expect("eventfd"));
        let w = Arc::clone(&wake);
        let shard = thread::spawn(move || {
            super::run_core(core, backend, listeners, &w, &Default::default())
        });

        assert_eq!(roundtrip(addrs[0], b"abc"), b"abc", "{backend:?}");
        assert_eq!(roundtrip(addrs[1], b"abc"), b"ABC", "{backend:?}");

        let (mut far_conn, _) = far.accept().expect("accept");
        let mut hello = [0; 5];
        far_conn.read_exact(&mut hello).expect("hello");
        assert_eq!(&hello, b"hello");
        let connects = seen.connects.lock().expect("lock").clone();
        assert!(
            connects.iter().any(|(a, r)| *a == refused && r.is_err()),
            "{connects:?}"
        );
        assert!(
            connects.iter().any(|(a, r)| *a == far_addr && r.is_ok()),
            "{connects:?}"
        );

        const TOTAL: usize = 1 << 20;
        let writer = thread::spawn(move || {
            far_conn.write_all(&vec![b'x'; TOTAL]).expect("write");
            far_conn
        });
        thread::sleep(Duration::from_millis(300));
        let paused_at = seen.link_bytes.load(Ordering::SeqCst);
        thread::sleep(Duration::from_millis(200));
        assert_eq!(
            seen.link_bytes.load(Ordering::SeqCst),
            paused_at,
            "{backend:?}: read while paused"
        );
        assert!(paused_at < TOTAL, "{backend:?}: nothing was paused");
        seen.gate_open.store(true, Ordering::SeqCst);
        wait_until("all bytes", || {
            seen.link_bytes.load(Ordering::SeqCst) == TOTAL
        });
        drop(writer.join().expect("writer"));

        seen.stop.store(true, Ordering::SeqCst);
        wake.signal();
        let stopping = Instant::now();
        shard.join().expect("shard panicked").expect("shard failed");
        assert!(
            stopping.elapsed() < Duration::from_secs(5),
            "{backend:?}: stop waited for a connect"
        );
    }
}

/// Serves `file` to every accepted connection through the backend's file reads, in
/// chunks of `CHUNK`, asking for the next only when the last came back; then closes.
/// A read of `unreadable` (opened write-only) for a token that is no socket checks the
/// error path and that a read for an unknown token is still answered.
struct FileCore {
    socks: HashMap<Token, (Vec<u8>, u64, bool)>,
    reads: Vec<super::core::FileRead>,
    file: Arc<std::fs::File>,
    unreadable: Option<Arc<std::fs::File>>,
    next: u32,
    ready: Vec<Token>,
    seen: Arc<FileSeen>,
    stopping: bool,
    tick: Instant,
}

#[derive(Default)]
struct FileSeen {
    stop: AtomicBool,
    /// The error text of the unreadable file's read.
    error: Mutex<Option<String>>,
    reads: AtomicUsize,
}

const CHUNK: usize = 64 * 1024;
const GHOST: u32 = 999;

impl ShardCore for FileCore {
    fn on_accept(&mut self, _listener: usize, _peer: Option<SocketAddr>, _now: Instant) -> Token {
        self.next += 1;
        let token = Token::new(self.next, 3);
        self.socks.insert(token, (Vec::new(), 0, false));
        self.reads.push(super::core::FileRead {
            token,
            file: Arc::clone(&self.file),
            offset: 0,
            len: CHUNK,
        });
        if let Some(file) = self.unreadable.take() {
            self.reads.push(super::core::FileRead {
                token: Token::new(GHOST, 3),
                file,
                offset: 0,
                len: 16,
            });
        }
        token
    }

    fn take_file_reads(&mut self, out: &mut Vec<super::core::FileRead>) {
        out.append(&mut self.reads);
    }

    fn on_file_read(&mut self, token: Token, result: std::io::Result<Vec<u8>>, _now: Instant) {
        self.seen.reads.fetch_add(1, Ordering::SeqCst);
        if token.index() == GHOST as usize {
            let text = match result {
                Ok(bytes) => format!("read {} bytes", bytes.len()),
                Err(error) => error.to_string(),
            };
            *self.seen.error.lock().expect("lock") = Some(text);
            return;
        }
        let Some((out, offset, done)) = self.socks.get_mut(&token) else {
            return;
        };
        match result {
            Ok(bytes) if bytes.is_empty() => *done = true,
            Ok(bytes) => {
                *offset += bytes.len() as u64;
                out.extend_from_slice(&bytes);
                self.reads.push(super::core::FileRead {
                    token,
                    file: Arc::clone(&self.file),
                    offset: *offset,
                    len: CHUNK,
                });
            }
            Err(error) => panic!("file read failed: {error}"),
        }
        self.ready.push(token);
    }

    fn on_recv(&mut self, _token: Token, _data: &mut [u8], _now: Instant) {}

    fn on_eof(&mut self, _token: Token, _now: Instant) {}

    fn take_send(&mut self, token: Token) -> Option<SendBuf> {
        let (out, _, _) = self.socks.get_mut(&token)?;
        (!out.is_empty()).then(|| SendBuf::Owned(std::mem::take(out)))
    }

    fn on_sent(&mut self, token: Token, buf: SendBuf, written: std::io::Result<usize>) {
        if let Some((out, _, done)) = self.socks.get_mut(&token) {
            match written {
                Ok(n) => {
                    let mut rest = buf[n..].to_vec();
                    rest.append(out);
                    *out = rest;
                }
                Err(_) => *done = true,
            }
        }
        self.ready.push(token);
    }

    fn wants_close(&self, token: Token) -> bool {
        self.socks
            .get(&token)
            .is_none_or(|(out, _, done)| (*done || self.stopping) && out.is_empty())
    }

    fn on_closed(&mut self, token: Token) {
        assert!(
            self.socks.remove(&token).is_some(),
            "close of an unknown token"
        );
    }

    fn on_wake(&mut self, _now: Instant) {}

    fn on_timer(&mut self, now: Instant) {
        self.tick = now + Duration::from_millis(10);
        self.stopping |= self.seen.stop.load(Ordering::SeqCst);
        self.ready.extend(self.socks.keys().copied());
    }

    fn next_deadline(&self) -> Option<Instant> {
        Some(self.tick)
    }

    fn drain_ready(&mut self, out: &mut Vec<Token>) {
        out.append(&mut self.ready);
    }

    fn is_shutting_down(&self) -> bool {
        self.stopping
    }

    fn is_finished(&self) -> bool {
        self.stopping && self.socks.is_empty()
    }
}

#[test]
fn file_reads_come_back_in_order_and_errors_are_reported() {
    let dir = std::env::temp_dir().join(format!("ringws-contract-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("file.bin");
    // Not a multiple of the chunk: the last read comes back short, the next empty.
    let contents: Vec<u8> = (0..5 * CHUNK + 1234).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &contents).expect("write");
    for backend in backends() {
        let file = Arc::new(std::fs::File::open(&path).expect("open"));
        let unreadable = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open write-only");
        let seen = Arc::new(FileSeen::default());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let core = FileCore {
            socks: HashMap::new(),
            reads: Vec::new(),
            file,
            unreadable: Some(Arc::new(unreadable)),
            next: 0,
            ready: Vec::new(),
            seen: Arc::clone(&seen),
            stopping: false,
            tick: Instant::now(),
        };
        let wake = Arc::new(EventFd::new().expect("eventfd"));
        let w = Arc::clone(&wake);
        let shard = thread::spawn(move || {
            super::run_core(core, backend, vec![listener], &w, &Default::default())
        });
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut back = Vec::new();
            s.read_to_end(&mut back).expect("read");
            assert_eq!(back.len(), contents.len(), "{backend:?}");
            assert!(back == contents, "{backend:?}: bytes differ");
        }
        wait_until("the unreadable file's answer", || {
            seen.error.lock().expect("lock").is_some()
        });
        let error = seen.error.lock().expect("lock").clone();
        assert_eq!(
            error.as_deref(),
            Some(
                std::io::Error::from_raw_os_error(libc::EBADF)
                    .to_string()
                    .as_str()
            ),
            "{backend:?}"
        );
        // Two connections of 6 reads and the last, empty one each, plus the error.
        assert_eq!(seen.reads.load(Ordering::SeqCst), 2 * 7 + 1, "{backend:?}");
        seen.stop.store(true, Ordering::SeqCst);
        wake.signal();
        shard.join().expect("shard panicked").expect("shard failed");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
