//! Restarts that drop nobody: listening sockets from systemd socket activation, and
//! their hand-over from a running server to its successor.
//!
//! A successor process takes the running server's listening sockets over a Unix socket
//! at an agreed path (`SCM_RIGHTS`: its descriptors name the very same kernel sockets,
//! so it accepts from the same queues), starts accepting, and tells the old process,
//! which then stops accepting without closing anything a client waits in, serves its
//! open connections for a grace period, closes them with 1001 "server restarting" and
//! exits. No connection attempt is refused or reset on the way: the sockets never stop
//! listening, and whatever the old process has not accepted, the new one does.
//!
//! ```no_run
//! use std::time::Duration;
//! use ringws::handover::{self, Handover};
//! # struct Echo;
//! # impl ringws::Handler for Echo {
//! #     fn on_message(&mut self, _: &mut ringws::Conn<'_>, _: ringws::Message<'_>) {}
//! # }
//!
//! fn main() -> std::io::Result<()> {
//!     let path = "/run/myapp/handover.sock";
//!     let mut builder = ringws::Server::builder().bind("0.0.0.0:8080").websocket("/", || Echo);
//!     // systemd's sockets, if it passed any; then a running predecessor's, if one answers.
//!     let activated = handover::listen_fds()?;
//!     let mut predecessor = handover::take_listeners(path)?;
//!     if let Some(old) = predecessor.as_mut() {
//!         builder = builder.listeners(old.take_listeners());
//!     } else if !activated.is_empty() {
//!         builder = builder.listeners(activated);
//!     }
//!     let server = builder.build()?;
//!     let successors = Handover::bind(path, &server)?; // for the next one
//!     let running = server.start()?;
//!     successors.spawn(running.handle(), Duration::from_secs(5))?;
//!     if let Some(old) = predecessor {
//!         old.release()?; // it stops accepting, drains and exits
//!     }
//!     running.join()
//! }
//! ```
//!
//! The exchange, one line each way (version `1`): the successor sends
//! `ringws-handover/1 hello PID`; the running server answers
//! `ringws-handover/1 listeners N PID` with its N listening sockets attached; once
//! serving them, the successor sends `ringws-handover/1 accepting`, and the old server
//! answers `ringws-handover/1 draining` and calls
//! [`ServerHandle::restart_within`](crate::ServerHandle::restart_within). A successor that
//! goes away before `accepting` leaves the old server serving as before. Only a
//! process of the same user (or root) is answered, and the socket file is mode 0600.
//!
//! Raw TCP doors ([`Builder::tcp`](crate::Builder::tcp)) are not handed over: the
//! successor binds them beside the old server's (`SO_REUSEPORT`).

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Server, ServerHandle};
use crate::runtime::listen;

/// The protocol's name and version, first on every line.
const VERSION: &str = "ringws-handover/1";
/// How long either side waits for an answer that should come at once.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a running server waits for its successor to start serving the sockets.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest line of the exchange.
const MAX_LINE: usize = 128;
/// How often the hand-over thread looks whether its server has stopped.
const WATCH_INTERVAL_MS: i32 = 200;

/// Takes the listening sockets systemd passed this process (socket activation,
/// sd_listen_fds(3)): descriptors 3, 4, … as many as `LISTEN_FDS` says, when
/// `LISTEN_PID` is this process. Each must be a listening TCP socket (an error names
/// the first that is not); each is made close-on-exec. `LISTEN_PID`, `LISTEN_FDS`
/// and `LISTEN_FDNAMES` are removed from the environment, so a child process does not
/// mistake them for its own, and a second call returns nothing. Without socket
/// activation it returns an empty list.
///
/// It changes the environment: call it early, before threads that read the
/// environment start. The sockets go to [`Builder::listeners`](crate::Builder::listeners).
pub fn listen_fds() -> io::Result<Vec<TcpListener>> {
    listen::listen_fds()
}

/// Asks the server that answers on the Unix socket `path` for its listening sockets.
/// `Ok(None)` when nobody answers there (no such file, or nobody listening on it: the
/// caller binds its own sockets); an error when a server answers but the exchange
/// fails. The sockets go to [`Builder::listeners`](crate::Builder::listeners); once the
/// new server is serving them, [`Predecessor::release`] lets the old one go.
pub fn take_listeners(path: impl AsRef<Path>) -> io::Result<Option<Predecessor>> {
    let path = path.as_ref();
    let stream = match UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(error) => return Err(at(path, error)),
    };
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    check_peer(&stream).map_err(|error| at(path, error))?;
    let hello = Line::Hello {
        pid: std::process::id(),
    };
    listen::send_with_fds(&stream, hello.encode().as_bytes(), &[])?;
    let mut fds = Vec::new();
    let line = read_line(&stream, &mut fds).map_err(|error| at(path, error))?;
    let (count, pid) = match line {
        Line::Listeners { count, pid } if count == fds.len() && count > 0 => (count, pid),
        other => {
            return Err(at(
                path,
                invalid(format!(
                    "expected listening sockets, got {other:?} with {} descriptors",
                    fds.len()
                )),
            ))
        }
    };
    let mut listeners = Vec::with_capacity(count);
    for fd in fds {
        listen::check_listener(fd.as_fd()).map_err(|error| at(path, error))?;
        listeners.push(TcpListener::from(fd));
    }
    tracing::info!(sockets = count, pid, path = %path.display(), "took the listening sockets of the running server");
    Ok(Some(Predecessor {
        stream,
        listeners,
        pid,
    }))
}

/// A running server whose listening sockets this process took
/// ([`take_listeners`]). Until [`Predecessor::release`], both accept from the same
/// sockets; dropping it without releasing leaves the old server serving as before.
#[derive(Debug)]
pub struct Predecessor {
    stream: UnixStream,
    listeners: Vec<TcpListener>,
    pid: u32,
}

impl Predecessor {
    /// The old server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The listening sockets (for [`Builder::listeners`](crate::Builder::listeners));
    /// empty after the first call.
    pub fn take_listeners(&mut self) -> Vec<TcpListener> {
        std::mem::take(&mut self.listeners)
    }

    /// Tells the old server that this process serves the sockets now: it stops
    /// accepting, drains its connections (see
    /// [`ServerHandle::restart_within`](crate::ServerHandle::restart_within)) and exits.
    /// Returns once it confirmed.
    pub fn release(self) -> io::Result<()> {
        listen::send_with_fds(&self.stream, Line::Accepting.encode().as_bytes(), &[])?;
        let mut fds = Vec::new();
        match read_line(&self.stream, &mut fds)? {
            Line::Draining => {
                tracing::info!(
                    pid = self.pid,
                    "the previous server stops accepting and drains"
                );
                Ok(())
            }
            other => Err(invalid(format!("expected draining, got {other:?}"))),
        }
    }
}

/// A running server's side: listens on a Unix socket for a successor and hands it
/// the server's listening sockets ([`Handover::bind`], then [`Handover::spawn`]).
/// The socket file is removed when the server stops, unless a successor's replaced it.
#[derive(Debug)]
pub struct Handover {
    listener: UnixListener,
    path: PathBuf,
    /// The socket file's device and inode: removed at the end only while still ours.
    identity: (u64, u64),
    /// Duplicates of the server's listening sockets, for the successor.
    sockets: Vec<TcpListener>,
}

impl Handover {
    /// Listens on the Unix socket `path` for a successor of `server` (built, not yet
    /// started): keeps a duplicate of each of its listening sockets for it. The socket
    /// file is made aside, mode 0600, and renamed over `path`, so a predecessor's file
    /// (or a stale one) is replaced in one step and `path` always answers.
    pub fn bind(path: impl AsRef<Path>, server: &Server) -> io::Result<Handover> {
        let path = path.as_ref().to_path_buf();
        let sockets = server
            .listeners
            .iter()
            .map(TcpListener::try_clone)
            .collect::<io::Result<Vec<_>>>()?;
        if sockets.len() > listen::MAX_FDS {
            return Err(invalid(format!(
                "{} listening sockets: a hand-over carries at most {}",
                sockets.len(),
                listen::MAX_FDS
            )));
        }
        let name = path
            .file_name()
            .ok_or_else(|| at(&path, invalid("not a file path".into())))?;
        let aside = path.with_file_name(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&aside);
        let listener = UnixListener::bind(&aside).map_err(|error| at(&aside, error))?;
        let placed = std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&aside, &path));
        if let Err(error) = placed {
            let _ = std::fs::remove_file(&aside);
            return Err(at(&path, error));
        }
        let metadata = std::fs::metadata(&path).map_err(|error| at(&path, error))?;
        listener.set_nonblocking(true)?;
        Ok(Handover {
            listener,
            path,
            identity: (metadata.dev(), metadata.ino()),
            sockets,
        })
    }

    /// The Unix socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers successors on a thread of its own until one takes over (then calls
    /// [`ServerHandle::restart_within`](crate::ServerHandle::restart_within)`(grace)` on
    /// `handle`) or the server stops. Call it once the server is started. The thread
    /// notices the server's stop within 200 ms and removes the socket file (unless a
    /// successor's replaced it); join it for that to be done.
    pub fn spawn(self, handle: ServerHandle, grace: Duration) -> io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("ringws-handover".into())
            .spawn(move || self.run(&handle, grace))
    }

    fn run(self, handle: &ServerHandle, grace: Duration) {
        tracing::info!(path = %self.path.display(), "waiting for a successor");
        loop {
            let registry = &handle.registry;
            if (0..registry.shards()).all(|shard| registry.mailbox(shard).is_stopped()) {
                return;
            }
            match self.listener.accept() {
                Ok((stream, _)) => match self.answer(&stream, handle, grace) {
                    Ok(true) => return,
                    Ok(false) => {
                        tracing::warn!("the successor went away before serving; still serving")
                    }
                    Err(error) => tracing::warn!(%error, "hand-over failed; still serving"),
                },
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    let mut poll = libc::pollfd {
                        fd: self.listener.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: `poll` is one live pollfd for the duration of the call.
                    unsafe { libc::poll(&mut poll, 1, WATCH_INTERVAL_MS) };
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a successor failed");
                    std::thread::sleep(Duration::from_millis(WATCH_INTERVAL_MS as u64));
                }
            }
        }
    }

    /// One successor: true once it serves the sockets and this server is draining.
    fn answer(
        &self,
        stream: &UnixStream,
        handle: &ServerHandle,
        grace: Duration,
    ) -> io::Result<bool> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        check_peer(stream)?;
        let mut fds = Vec::new();
        let successor = match read_line(stream, &mut fds)? {
            Line::Hello { pid } => pid,
            other => return Err(invalid(format!("expected hello, got {other:?}"))),
        };
        let offer = Line::Listeners {
            count: self.sockets.len(),
            pid: std::process::id(),
        };
        let attached: Vec<BorrowedFd<'_>> = self.sockets.iter().map(AsFd::as_fd).collect();
        listen::send_with_fds(stream, offer.encode().as_bytes(), &attached)?;
        tracing::info!(
            pid = successor,
            sockets = attached.len(),
            "handed the listening sockets to a successor"
        );
        stream.set_read_timeout(Some(START_TIMEOUT))?;
        match read_line(stream, &mut fds) {
            Ok(Line::Accepting) => {}
            Ok(other) => return Err(invalid(format!("expected accepting, got {other:?}"))),
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(error) => return Err(error),
        }
        tracing::info!(
            pid = successor,
            ?grace,
            "the successor is serving; stopping accepting and draining"
        );
        handle.restart_within(grace);
        listen::send_with_fds(stream, Line::Draining.encode().as_bytes(), &[])?;
        Ok(true)
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        // Still ours (no successor renamed its own over it): nobody answers there now.
        if let Ok(metadata) = std::fs::metadata(&self.path) {
            if (metadata.dev(), metadata.ino()) == self.identity {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// One line of the exchange.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// Successor → server: give me your sockets.
    Hello { pid: u32 },
    /// Server → successor, with `count` descriptors attached.
    Listeners { count: usize, pid: u32 },
    /// Successor → server: I serve them now.
    Accepting,
    /// Server → successor: stopped accepting, draining.
    Draining,
}

impl Line {
    fn encode(&self) -> String {
        match self {
            Line::Hello { pid } => format!("{VERSION} hello {pid}\n"),
            Line::Listeners { count, pid } => format!("{VERSION} listeners {count} {pid}\n"),
            Line::Accepting => format!("{VERSION} accepting\n"),
            Line::Draining => format!("{VERSION} draining\n"),
        }
    }

    fn parse(text: &str) -> Result<Line, String> {
        let text = text.strip_suffix('\n').unwrap_or(text);
        let mut words = text.split(' ');
        match words.next() {
            Some(VERSION) => {}
            Some(other) if other.starts_with("ringws-handover/") => {
                return Err(format!("the other side speaks {other}, this one {VERSION}"))
            }
            _ => return Err(format!("not a hand-over line: {text:?}")),
        }
        let number = |word: Option<&str>| -> Result<u64, String> {
            word.and_then(|w| w.parse().ok())
                .ok_or_else(|| format!("a number expected in {text:?}"))
        };
        let line = match words.next() {
            Some("hello") => Line::Hello {
                pid: number(words.next())? as u32,
            },
            Some("listeners") => Line::Listeners {
                count: number(words.next())? as usize,
                pid: number(words.next())? as u32,
            },
            Some("accepting") => Line::Accepting,
            Some("draining") => Line::Draining,
            _ => return Err(format!("unknown hand-over line: {text:?}")),
        };
        match words.next() {
            None => Ok(line),
            Some(_) => Err(format!("trailing words in {text:?}")),
        }
    }
}

/// Reads one line (a message is sent in one piece and answered before the next, so
/// nothing follows it), taking the descriptors that came with it into `fds`.
fn read_line(stream: &UnixStream, fds: &mut Vec<OwnedFd>) -> io::Result<Line> {
    let mut line = Vec::new();
    let mut buf = [0u8; MAX_LINE];
    while !line.ends_with(b"\n") {
        if line.len() >= MAX_LINE {
            return Err(invalid("hand-over line too long".into()));
        }
        let n = listen::recv_with_fds(stream, &mut buf[..MAX_LINE - line.len()], fds)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the other side closed the hand-over",
            ));
        }
        line.extend_from_slice(&buf[..n]);
    }
    let text =
        std::str::from_utf8(&line).map_err(|_| invalid("hand-over line not UTF-8".into()))?;
    Line::parse(text).map_err(invalid)
}

/// Only the same user (or root) may take the sockets, or hand us some.
fn check_peer(stream: &UnixStream) -> io::Result<()> {
    let uid = listen::peer_uid(stream)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ours = unsafe { libc::geteuid() };
    if uid == ours || uid == 0 {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the process at the other end runs as user {uid}, not {ours}"),
        ))
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// `error`, naming the path it concerns.
fn at(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for line in [
            Line::Hello { pid: 42 },
            Line::Listeners { count: 3, pid: 7 },
            Line::Accepting,
            Line::Draining,
        ] {
            assert_eq!(Line::parse(&line.encode()), Ok(line));
        }
    }

    #[test]
    fn foreign_lines_are_refused() {
        assert!(Line::parse("ringws-handover/2 hello 1\n")
            .unwrap_err()
            .contains("speaks ringws-handover/2"));
        assert!(Line::parse("GET / HTTP/1.1\r\n").is_err());
        assert!(Line::parse("ringws-handover/1 hello\n").is_err());
        assert!(Line::parse("ringws-handover/1 hello x\n").is_err());
        assert!(Line::parse("ringws-handover/1 listeners 2\n").is_err());
        assert!(Line::parse("ringws-handover/1 accepting now\n").is_err());
        assert!(Line::parse("ringws-handover/1 shutdown\n").is_err());
    }

    #[test]
    fn nobody_at_the_path_is_no_predecessor() {
        let dir = std::env::temp_dir().join(format!("ringws-handover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = dir.join("missing.sock");
        assert!(take_listeners(&missing).expect("no error").is_none());
        // A stale socket file: bound once, nobody listening any more.
        let stale = dir.join("stale.sock");
        let _ = std::fs::remove_file(&stale);
        drop(UnixListener::bind(&stale).expect("bind"));
        assert!(take_listeners(&stale).expect("no error").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_line_split_over_reads_and_its_descriptors_arrive_whole() {
        let (a, b) = UnixStream::pair().expect("pair");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let offer = Line::Listeners { count: 1, pid: 9 }.encode();
        let (head, tail) = offer.as_bytes().split_at(5);
        listen::send_with_fds(&a, head, &[listener.as_fd()]).expect("send");
        listen::send_with_fds(&a, tail, &[]).expect("send");
        let mut fds = Vec::new();
        assert_eq!(
            read_line(&b, &mut fds).expect("line"),
            Line::Listeners { count: 1, pid: 9 }
        );
        assert_eq!(fds.len(), 1);
        drop(a);
        assert_eq!(
            read_line(&b, &mut fds).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
