//! The epoll backend: one tokio current-thread runtime per shard.
//!
//! Each connection is a local task that waits for socket readiness and moves bytes
//! between the socket and the shard core with non-blocking `try_read`/`try_write`, so it
//! reads and writes at the same time (a peer that writes without reading cannot wedge
//! it). All connections of a shard share one read buffer: reading and handing the bytes
//! to the core happen with no await in between, so an idle connection holds no buffer.
//! Every listener has its own accept task; an outgoing connection is a local task that
//! connects (`TcpStream::connect`) and then serves the socket like an accepted one.
//! File reads (static files' chunks) go to the runtime's blocking pool, a few threads
//! per shard, so a read that waits for the disk never stalls the shard's sockets.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::core::{FileRead, SendBuf, ShardCore, Token};
use super::eventfd::EventFd;

/// Bytes read per `try_read`; also the shard's one read buffer.
const READ_BUFFER: usize = 64 * 1024;
/// Reads per readiness event before the task yields to the others.
const READS_PER_TURN: usize = 4;
/// Threads of each shard's blocking pool (file reads).
const FILE_THREADS: usize = 2;
/// How long the end of a shard waits for file reads still on the blocking pool.
const FILE_SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A connection task's token and the wake-up the shard uses to reach it.
type TaskSlot = (Token, Rc<Notify>);

struct Shared<C> {
    core: RefCell<C>,
    /// Wake-up per connection task, by [`Token::slot`].
    tasks: RefCell<Vec<Option<TaskSlot>>>,
    read_buffer: RefCell<Vec<u8>>,
    ready: RefCell<Vec<Token>>,
    connects: RefCell<Vec<(Token, SocketAddr)>>,
    file_reads: RefCell<Vec<FileRead>>,
    /// The deadline the timer task sleeps towards.
    timer_target: Cell<Option<Instant>>,
    timer_changed: Notify,
    /// Signalled when accepting stops (a shutdown or a restart) and when the shard
    /// has finished.
    state_changed: Notify,
}

impl<C: ShardCore + 'static> Shared<C> {
    /// Starts the outgoing connections the core asks for, wakes the tasks of
    /// connections whose state changed, and the timer task if the next deadline moved.
    /// Called after every call into the core.
    fn dispatch(self: &Rc<Self>) {
        let mut ready = self.ready.borrow_mut();
        let mut connects = self.connects.borrow_mut();
        let mut file_reads = self.file_reads.borrow_mut();
        let mut adopted = Vec::new();
        let (deadline, stop_accepting) = {
            let mut core = self.core.borrow_mut();
            core.take_connects(&mut connects);
            core.take_adopted(&mut adopted);
            core.take_file_reads(&mut file_reads);
            core.drain_ready(&mut ready);
            (core.next_deadline(), !core.accepting())
        };
        for (token, addr) in connects.drain(..) {
            tokio::task::spawn_local(connect(Rc::clone(self), token, addr));
        }
        for (token, fd) in adopted {
            let stream = std::net::TcpStream::from(fd);
            match TcpStream::from_std(stream) {
                Ok(stream) => {
                    let notify = Rc::new(Notify::new());
                    self.register(token, &notify);
                    tokio::task::spawn_local(serve(Rc::clone(self), stream, token, notify));
                }
                Err(error) => {
                    tracing::warn!(%error, "an adopted socket could not be registered");
                    self.core.borrow_mut().on_closed(token);
                }
            }
        }
        for read in file_reads.drain(..) {
            tokio::task::spawn_local(read_file(Rc::clone(self), read));
        }
        let tasks = self.tasks.borrow();
        for token in ready.drain(..) {
            if let Some(Some((owner, notify))) = tasks.get(token.slot()) {
                if *owner == token {
                    notify.notify_one();
                }
            }
        }
        if deadline != self.timer_target.get() {
            self.timer_changed.notify_one();
        }
        if stop_accepting {
            self.state_changed.notify_waiters();
        }
    }

    /// Lists a connection task's wake-up under its token.
    fn register(&self, token: Token, notify: &Rc<Notify>) {
        let mut tasks = self.tasks.borrow_mut();
        if tasks.len() <= token.slot() {
            tasks.resize_with(token.slot() + 1, || None);
        }
        tasks[token.slot()] = Some((token, Rc::clone(notify)));
    }
}

/// A raw descriptor registered with tokio without taking ownership of it.
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Runs one shard on the current thread until the core has shut down and finished.
/// The core sees `listeners[i]`'s connections as accepted on listener `i`.
pub(crate) fn run<C: ShardCore + 'static>(
    core: C,
    listeners: Vec<std::net::TcpListener>,
    wake: &EventFd,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(FILE_THREADS)
        .thread_name("ringws-file")
        .build()?;
    let local = tokio::task::LocalSet::new();
    let shared = Rc::new(Shared {
        core: RefCell::new(core),
        tasks: RefCell::new(Vec::new()),
        read_buffer: RefCell::new(vec![0; READ_BUFFER]),
        ready: RefCell::new(Vec::new()),
        connects: RefCell::new(Vec::new()),
        file_reads: RefCell::new(Vec::new()),
        timer_target: Cell::new(None),
        timer_changed: Notify::new(),
        state_changed: Notify::new(),
    });
    let wake_fd = wake.as_raw_fd();
    let eventfd = wake;
    let result = local.block_on(&runtime, async move {
        let mut accepting = Vec::with_capacity(listeners.len());
        for listener in listeners {
            listener.set_nonblocking(true)?;
            accepting.push(TcpListener::from_std(listener)?);
        }
        // SAFETY: the eventfd belongs to the shard's mailbox, which the caller's `wake`
        // borrow keeps open for this whole function; the AsyncFd is dropped inside it.
        let wake = unsafe { AsyncFd::register_with_interest(Fd(wake_fd), Interest::READABLE)? };
        for (index, listener) in accepting.into_iter().enumerate() {
            tokio::task::spawn_local(accept_loop(Rc::clone(&shared), index, listener));
        }
        tokio::task::spawn_local(timer_loop(Rc::clone(&shared)));
        loop {
            if shared.core.borrow().is_finished() {
                return Ok(());
            }
            tokio::select! {
                guard = wake.readable() => {
                    let mut guard = guard?;
                    guard.clear_ready();
                    eventfd.drain();
                    shared.core.borrow_mut().on_wake(Instant::now());
                    shared.dispatch();
                }
                _ = shared.state_changed.notified() => {}
            }
        }
    });
    drop(local);
    // A file read still on the blocking pool (its connection is gone) is not waited
    // for past this.
    runtime.shutdown_timeout(FILE_SHUTDOWN_LIMIT);
    result
}

/// Reads a file chunk on the blocking pool and hands it to the core.
async fn read_file<C: ShardCore + 'static>(shared: Rc<Shared<C>>, read: FileRead) {
    let token = read.token;
    let result = match tokio::task::spawn_blocking(move || super::core::read_blocking(&read)).await
    {
        Ok(result) => result,
        Err(error) => Err(io::Error::other(format!("file read task failed: {error}"))),
    };
    if shared.core.borrow().is_finished() {
        return;
    }
    shared
        .core
        .borrow_mut()
        .on_file_read(token, result, Instant::now());
    shared.dispatch();
}

async fn accept_loop<C: ShardCore + 'static>(
    shared: Rc<Shared<C>>,
    index: usize,
    listener: TcpListener,
) {
    loop {
        // Checked before every accept(2), and the stop is polled ahead of the listener
        // (`biased`): once the core stops accepting, this task takes no connection
        // from the queue. The listener is closed when the task ends; at a restart the
        // successor holds the same socket, so its queue lives on there.
        if !shared.core.borrow().accepting() {
            return;
        }
        let accepted = tokio::select! {
            biased;
            _ = shared.state_changed.notified() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let token = shared
            .core
            .borrow_mut()
            .on_accept(index, Some(peer), Instant::now());
        let notify = Rc::new(Notify::new());
        shared.register(token, &notify);
        tokio::task::spawn_local(serve(Rc::clone(&shared), stream, token, notify));
        shared.dispatch();
    }
}

/// Connects an outgoing connection, reports it, and serves it once connected.
/// A core that no longer wants the connection while it connects has it abandoned
/// (reported as a failed connect).
async fn connect<C: ShardCore + 'static>(shared: Rc<Shared<C>>, token: Token, addr: SocketAddr) {
    let notify = Rc::new(Notify::new());
    shared.register(token, &notify);
    let connecting = TcpStream::connect(addr);
    tokio::pin!(connecting);
    let result = loop {
        tokio::select! {
            result = &mut connecting => break result,
            _ = notify.notified() => {
                if shared.core.borrow().wants_close(token) {
                    break Err(io::Error::new(io::ErrorKind::Interrupted, "connect abandoned"));
                }
            }
        }
    };
    match result {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            shared
                .core
                .borrow_mut()
                .on_connected(token, Ok(()), Instant::now());
            shared.dispatch();
            serve(shared, stream, token, notify).await;
        }
        Err(error) => {
            if let Some(slot) = shared.tasks.borrow_mut().get_mut(token.slot()) {
                if slot.as_ref().is_some_and(|(owner, _)| *owner == token) {
                    *slot = None;
                }
            }
            shared
                .core
                .borrow_mut()
                .on_connected(token, Err(error), Instant::now());
            shared.dispatch();
        }
    }
}

async fn timer_loop<C: ShardCore + 'static>(shared: Rc<Shared<C>>) {
    loop {
        let deadline = shared.core.borrow().next_deadline();
        shared.timer_target.set(deadline);
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.into()) => {
                        shared.core.borrow_mut().on_timer(Instant::now());
                        shared.dispatch();
                    }
                    _ = shared.timer_changed.notified() => {}
                }
            }
            None => shared.timer_changed.notified().await,
        }
    }
}

/// Moves bytes between one socket and the core until the core wants it closed.
async fn serve<C: ShardCore + 'static>(
    shared: Rc<Shared<C>>,
    stream: TcpStream,
    token: Token,
    notify: Rc<Notify>,
) {
    let mut sending: Option<(SendBuf, usize)> = None;
    let mut read_open = true;
    loop {
        if sending.is_some() && shared.core.borrow().abandon_output(token) {
            // A peer that never reads: give up on the rest of this send.
            if let Some((buf, _)) = sending.take() {
                let error = io::Error::new(io::ErrorKind::TimedOut, "output abandoned");
                shared.core.borrow_mut().on_sent(token, buf, Err(error));
            }
        }
        if sending.is_none() {
            sending = shared
                .core
                .borrow_mut()
                .take_send(token)
                .map(|buf| (buf, 0));
        }
        if sending.is_none() && shared.core.borrow().wants_close(token) {
            break;
        }
        let reading = read_open && shared.core.borrow().wants_read(token);
        let interest = match (reading, sending.is_some()) {
            (true, true) => Interest::READABLE | Interest::WRITABLE,
            (true, false) => Interest::READABLE,
            (false, true) => Interest::WRITABLE,
            (false, false) => {
                notify.notified().await;
                continue;
            }
        };
        let ready = tokio::select! {
            ready = stream.ready(interest) => ready,
            _ = notify.notified() => continue,
        };
        let ready = match ready {
            Ok(ready) => ready,
            Err(_) => {
                shared.core.borrow_mut().on_eof(token, Instant::now());
                read_open = false;
                shared.dispatch();
                continue;
            }
        };
        let mut more = false;
        if ready.is_readable() && reading {
            match read_some(&shared, &stream, token) {
                Read::Closed => read_open = false,
                Read::Drained => {}
                Read::More => more = true,
            }
        }
        if ready.is_writable() {
            if let Some((buf, offset)) = sending.as_mut() {
                match stream.try_write(&buf[*offset..]) {
                    Ok(n) => {
                        *offset += n;
                        if *offset == buf.len() {
                            if let Some((buf, len)) = sending.take() {
                                shared.core.borrow_mut().on_sent(token, buf, Ok(len));
                            }
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => {
                        if let Some((buf, _)) = sending.take() {
                            shared.core.borrow_mut().on_sent(token, buf, Err(error));
                        }
                    }
                }
            }
        }
        shared.dispatch();
        if more {
            // The socket had more than a turn's reads: let the shard's other
            // connections (and its timers) have theirs before reading on. (Readiness
            // stays set, so without this a peer that never pauses would keep the
            // thread to itself until tokio's cooperative budget ran out.)
            tokio::task::yield_now().await;
        }
    }
    drop(stream);
    shared.core.borrow_mut().on_closed(token);
    if let Some(slot) = shared.tasks.borrow_mut().get_mut(token.slot()) {
        if slot.as_ref().is_some_and(|(owner, _)| *owner == token) {
            *slot = None;
        }
    }
    shared.dispatch();
}

/// What [`read_some`] left behind.
enum Read {
    /// The peer's side is closed (or reading failed).
    Closed,
    /// Nothing more to read now (or the core paused the socket).
    Drained,
    /// Every read of the turn filled the buffer: more may wait.
    More,
}

/// Reads what the socket has (a bounded number of times) into the shard's buffer and
/// hands it to the core.
fn read_some<C: ShardCore>(shared: &Shared<C>, stream: &TcpStream, token: Token) -> Read {
    let mut buffer = shared.read_buffer.borrow_mut();
    for _ in 0..READS_PER_TURN {
        match stream.try_read(&mut buffer) {
            Ok(0) => {
                shared.core.borrow_mut().on_eof(token, Instant::now());
                return Read::Closed;
            }
            Ok(n) => {
                shared
                    .core
                    .borrow_mut()
                    .on_recv(token, &mut buffer[..n], Instant::now());
                // A full buffer: more may wait, unless the core paused the socket.
                if n < buffer.len() || !shared.core.borrow().wants_read(token) {
                    return Read::Drained;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Read::Drained,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                shared.core.borrow_mut().on_eof(token, Instant::now());
                return Read::Closed;
            }
        }
    }
    Read::More
}
