//! One shard's io_uring event loop: owns the ring, the buffer ring, the accepted sockets
//! and every buffer an in-flight operation points at, and drives a [`ShardCore`].
//!
//! Ownership rule for memory handed to the kernel: an operation's memory (a send's `Vec`,
//! the 8-byte mailbox buffer, the provided buffers, a file read's buffer and its file)
//! stays owned by this struct until the
//! operation's final completion has been reaped. Connections are only removed from the
//! table (and their fd closed) when neither a recv nor a send is in flight for them, so
//! a completion can only be "stale" for a slot in teardown or core-misuse paths, and the
//! generation in `user_data` catches it.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::bufring::BufRing;
use super::ops::{self, Op};
use super::ring::SetupKind;
use crate::runtime::core::{FileRead, SendBuf, ShardCore, Token};
use crate::runtime::eventfd::EventFd;

mod connect;

/// How long teardown waits for cancelled operations to complete before giving up (and
/// leaking, rather than freeing, the memory they may still point at).
const TEARDOWN_LIMIT: Duration = Duration::from_secs(5);

/// Bound on the rounds of `drain_ready` per loop turn, so that a core which keeps
/// reporting tokens cannot starve the ring.
const READY_ROUNDS: usize = 16;

/// How many times a multishot recv ended with ENOBUFS (the buffer ring ran dry); the
/// tests check that their small ring really exercised the re-arm path.
#[cfg(test)]
pub(super) static ENOBUFS_SEEN: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// How many SQEs went to the pending queue because the SQ was full (tests).
#[cfg(test)]
pub(super) static SQ_OVERFLOWS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// The backend's per-connection state.
struct ConnIo {
    token: Token,
    fd: OwnedFd,
    /// The buffer of the send in flight; the kernel reads it until the send completes.
    send: Option<SendBuf>,
    /// A recv SQE was pushed and its final completion (no MORE flag) has not arrived.
    recv_armed: bool,
    /// Reading ended for good (EOF or an error was reported): never re-armed.
    read_done: bool,
    /// The core wants the socket closed; we wait for the in-flight operations.
    closing: bool,
    /// An AsyncCancel for the recv was pushed (reset by the recv's final completion).
    cancel_sent: bool,
    /// An AsyncCancel for the send in flight was pushed (its output was abandoned).
    send_cancel_sent: bool,
    /// The core answered `wants_read == false`: no recv is armed until it says true.
    paused: bool,
    /// An outgoing connection whose Connect is in flight: the address the kernel reads
    /// until the completion (boxed, so its address is stable).
    connecting: Option<Box<socket2::SockAddr>>,
}

impl ConnIo {
    fn new(token: Token, fd: OwnedFd) -> ConnIo {
        ConnIo {
            token,
            fd,
            send: None,
            recv_armed: false,
            read_done: false,
            closing: false,
            cancel_sent: false,
            send_cancel_sent: false,
            paused: false,
            connecting: None,
        }
    }
}

/// Where the mailbox wake-up stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WakeState {
    Idle,
    Reading,
    Polling,
}

pub(super) struct Driver<'w> {
    // Field order matters: the ring is dropped (closed) before the buffer ring's memory.
    ring: IoUring,
    bufs: BufRing,
    setup: SetupKind,
    /// By [`Token::slot`].
    conns: Vec<Option<ConnIo>>,
    listeners: Vec<RawFd>,
    /// Per listener: its multishot accept is in flight.
    accept_armed: Vec<bool>,
    wake: &'w EventFd,
    /// The mailbox read's target; boxed so that its address is stable.
    wake_buf: Box<u64>,
    wake_state: WakeState,
    accepting: bool,
    /// Accepting stopped for a restart: once the accepts' cancels have completed, the
    /// listeners' queues are checked once (`accept_stranded`).
    check_queues: bool,
    /// Accept stopped on EMFILE/ENFILE; re-armed after a close or a wake-up.
    accept_paused: bool,
    cancels_inflight: usize,
    /// Set in teardown: the core is finished and is no longer called.
    finishing: bool,
    /// SQEs that did not fit in the SQ; pushed before the next submission, in order.
    pending: VecDeque<squeue::Entry>,
    cqes: Vec<(u64, i32, u32)>,
    ready: Vec<Token>,
    again: Vec<Token>,
    connects: Vec<(Token, SocketAddr)>,
    /// File reads in flight (`IORING_OP_READ`), by slot: the request (whose `Arc`
    /// keeps the file open) and the buffer the kernel writes into.
    file_reads: Vec<Option<(FileRead, Vec<u8>)>>,
    /// Free slots of `file_reads`.
    free_file_slots: Vec<usize>,
    /// The core's new file reads of this turn.
    file_batch: Vec<FileRead>,
}

impl<'w> Driver<'w> {
    pub(super) fn new(
        ring: IoUring,
        setup: SetupKind,
        bufs: BufRing,
        listeners: &[TcpListener],
        wake: &'w EventFd,
    ) -> Driver<'w> {
        Driver {
            ring,
            bufs,
            setup,
            conns: Vec::new(),
            listeners: listeners.iter().map(AsRawFd::as_raw_fd).collect(),
            accept_armed: vec![false; listeners.len()],
            wake,
            wake_buf: Box::new(0),
            wake_state: WakeState::Idle,
            accepting: true,
            check_queues: false,
            accept_paused: false,
            cancels_inflight: 0,
            finishing: false,
            pending: VecDeque::new(),
            cqes: Vec::with_capacity(256),
            ready: Vec::with_capacity(64),
            again: Vec::with_capacity(64),
            connects: Vec::new(),
            file_reads: Vec::new(),
            free_file_slots: Vec::new(),
            file_batch: Vec::new(),
        }
    }

    /// Runs until the core is finished, then cancels and drains everything left.
    pub(super) fn run<C: ShardCore>(&mut self, core: &mut C) -> io::Result<()> {
        tracing::debug!(
            setup = self.setup.describe(),
            buffers = self.bufs.count(),
            buffer_size = self.bufs.buffer_size(),
            "io_uring shard loop starting"
        );
        let result = self.event_loop(core).and_then(|()| self.teardown(core));
        if result.is_err() {
            self.leak_in_flight_memory();
        }
        result
    }

    fn event_loop<C: ShardCore>(&mut self, core: &mut C) -> io::Result<()> {
        loop {
            self.reap(core)?;
            let now = Instant::now();
            if core.next_deadline().is_some_and(|d| d <= now) {
                core.on_timer(now);
            }
            if self.accepting && !core.accepting() {
                // Cancelling a multishot accept leaves the listener's queue as it is:
                // connections still queued go to whoever accepts next (at a restart,
                // the successor, which holds the same sockets).
                self.accepting = false;
                self.check_queues = !core.is_shutting_down();
                self.cancel_accepts();
            }
            if self.check_queues && !self.accept_armed.iter().any(|&armed| armed) {
                self.check_queues = false;
                self.accept_stranded(core, now);
            }
            let busy = self.process_ready(core);
            if core.is_finished() {
                return Ok(());
            }
            self.rearm();
            self.wait(core.next_deadline(), busy)?;
        }
    }

    fn cancel_accepts(&mut self) {
        for i in 0..self.accept_armed.len() {
            if self.accept_armed[i] {
                self.cancel(ops::encode_listener(Op::Accept, i));
            }
        }
    }

    /// Re-arms the listeners' accepts and the mailbox read when they are not in flight.
    fn rearm(&mut self) {
        for i in 0..self.listeners.len() {
            if self.accepting && !self.accept_armed[i] && !self.accept_paused {
                let e = opcode::AcceptMulti::new(types::Fd(self.listeners[i]))
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
                    .user_data(ops::encode_listener(Op::Accept, i));
                // SAFETY: multishot accept without an address buffer points at no memory.
                unsafe { self.push(e) };
                self.accept_armed[i] = true;
            }
        }
        if self.wake_state == WakeState::Idle && !self.finishing {
            self.arm_wake_read();
        }
    }

    fn arm_wake_read(&mut self) {
        let buf: *mut u64 = &mut *self.wake_buf;
        let e = opcode::Read::new(types::Fd(self.wake.as_raw_fd()), buf.cast::<u8>(), 8)
            .build()
            .user_data(ops::encode(Op::Wake, None));
        // SAFETY: `wake_buf` is a boxed u64 owned by the driver; it is not freed before
        // this read's completion is reaped (teardown waits for it, error paths leak it).
        unsafe { self.push(e) };
        self.wake_state = WakeState::Reading;
    }

    /// Queues an SQE (into the SQ, or the overflow queue when the SQ is full).
    ///
    /// # Safety
    /// Any memory the entry points at must stay valid until its final completion.
    unsafe fn push(&mut self, e: squeue::Entry) {
        if self.pending.is_empty() {
            // SAFETY: forwarded to the caller's contract.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
        }
        #[cfg(test)]
        SQ_OVERFLOWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.pending.push_back(e);
    }

    /// Moves overflowed SQEs into the SQ, submitting when it fills up.
    fn flush_pending(&mut self) -> io::Result<()> {
        while let Some(e) = self.pending.front() {
            // SAFETY: the entry was accepted by `push`, whose caller vouched for it.
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                self.pending.pop_front();
                continue;
            }
            self.bufs.commit();
            match self.ring.submit() {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if is_transient(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn cancel(&mut self, target: u64) {
        let e = opcode::AsyncCancel::new(target)
            .build()
            .user_data(ops::encode(Op::Cancel, None));
        // SAFETY: a cancel request points at no memory.
        unsafe { self.push(e) };
        self.cancels_inflight += 1;
    }

    /// Submits queued SQEs and waits for at least one completion, or until `deadline`.
    fn wait(&mut self, deadline: Option<Instant>, busy: bool) -> io::Result<()> {
        self.bufs.commit();
        self.flush_pending()?;
        let nowait = busy || !self.pending.is_empty();
        let submitter = self.ring.submitter();
        let r = match deadline {
            _ if nowait => submitter.submit(),
            None => submitter.submit_and_wait(1),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    submitter.submit()
                } else {
                    let ts = types::Timespec::from(left);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    submitter.submit_with_args(1, &args)
                }
            }
        };
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_transient(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Handles every completion currently in the CQ.
    fn reap<C: ShardCore>(&mut self, core: &mut C) -> io::Result<()> {
        let mut batch = std::mem::take(&mut self.cqes);
        batch.clear();
        batch.extend(
            self.ring
                .completion()
                .map(|e| (e.user_data(), e.result(), e.flags())),
        );
        let now = Instant::now();
        let mut result = Ok(());
        for &(user_data, res, flags) in &batch {
            if let Err(e) = self.complete(core, user_data, res, flags, now) {
                result = Err(e);
                break;
            }
        }
        self.cqes = batch;
        self.bufs.commit();
        result
    }

    fn complete<C: ShardCore>(
        &mut self,
        core: &mut C,
        user_data: u64,
        res: i32,
        flags: u32,
        now: Instant,
    ) -> io::Result<()> {
        let d = ops::decode(user_data);
        match d.op {
            Some(Op::Cancel) => self.cancels_inflight = self.cancels_inflight.saturating_sub(1),
            Some(Op::Accept) => self.on_accept_cqe(core, d.index, res, flags, now),
            Some(Op::Connect) => self.on_connect_cqe(core, d, res, now),
            Some(Op::Wake) => return self.on_wake_cqe(core, res, now),
            Some(Op::WakePoll) => {
                self.wake_state = WakeState::Idle;
                if res < 0 && res != -libc::ECANCELED {
                    return Err(io::Error::from_raw_os_error(-res));
                }
                // Re-armed as a read by `rearm` (the poll said it is readable).
            }
            Some(Op::Recv) => self.on_recv_cqe(core, d, res, flags, now),
            Some(Op::FileRead) => self.on_file_read_cqe(core, d.index, res, now),
            Some(Op::Send) => self.on_send_cqe(core, d, res),
            None => {
                tracing::warn!(user_data, res, "io_uring completion with unknown user_data");
                if let Some(bid) = cqueue::buffer_select(flags) {
                    self.bufs.recycle(bid);
                }
            }
        }
        Ok(())
    }

    fn on_accept_cqe<C: ShardCore>(
        &mut self,
        core: &mut C,
        listener: usize,
        res: i32,
        flags: u32,
        now: Instant,
    ) {
        if !cqueue::more(flags) {
            if let Some(armed) = self.accept_armed.get_mut(listener) {
                *armed = false;
            }
        }
        if res < 0 {
            match -res {
                libc::ECANCELED => {}
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                    tracing::warn!(error = %io::Error::from_raw_os_error(-res), "accept failed; pausing until a connection closes");
                    self.accept_paused = true;
                }
                _ => {
                    tracing::debug!(error = %io::Error::from_raw_os_error(-res), "accept failed");
                }
            }
            return;
        }
        // SAFETY: a successful accept returns a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(res) };
        if self.finishing || core.is_shutting_down() {
            drop(fd); // accepted just before the cancel took effect: close it
            return;
        }
        // Not accepting any more but not shutting down (a restart): a connection the
        // kernel completed before the cancel took effect is served like any other.
        self.serve_accepted(core, listener, fd, now);
    }

    /// After a restart's cancels: takes what is left in the listeners' queues with plain
    /// non-blocking `accept4` calls, and serves it. io_uring waits for a listener
    /// exclusively (one waiter is woken per connection): a wake-up that reached this
    /// ring's accept just before its cancel is gone with it, and the successor's
    /// waiters were never woken for that connection. Taking the queue here once leaves
    /// nothing stranded; later connections wake the successor (this ring no longer
    /// waits).
    fn accept_stranded<C: ShardCore>(&mut self, core: &mut C, now: Instant) {
        for listener in 0..self.listeners.len() {
            loop {
                // SAFETY: accept4 on a listening descriptor the driver's caller keeps
                // open, with no address buffer (null pointers are allowed).
                let res = unsafe {
                    libc::accept4(
                        self.listeners[listener],
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_CLOEXEC,
                    )
                };
                if res < 0 {
                    let error = io::Error::last_os_error();
                    match error.kind() {
                        io::ErrorKind::Interrupted => continue,
                        io::ErrorKind::WouldBlock => {}
                        _ => tracing::debug!(%error, "accepting a stranded connection failed"),
                    }
                    break;
                }
                tracing::debug!(
                    listener,
                    "served a connection left in the queue at a restart"
                );
                // SAFETY: a successful accept4 returns a fresh descriptor nothing owns.
                let fd = unsafe { OwnedFd::from_raw_fd(res) };
                self.serve_accepted(core, listener, fd, now);
            }
        }
    }

    /// Serves an accepted socket: the core's token, the table, a recv.
    fn serve_accepted<C: ShardCore>(
        &mut self,
        core: &mut C,
        listener: usize,
        fd: OwnedFd,
        now: Instant,
    ) {
        let sock = socket2::SockRef::from(&fd);
        if let Err(e) = sock.set_tcp_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY failed on accepted socket");
        }
        let peer = sock.peer_addr().ok().and_then(|a| a.as_socket());
        let token = core.on_accept(listener, peer, now);
        let idx = self.install(ConnIo::new(token, fd));
        self.arm_recv(idx);
        self.again.push(token);
    }

    /// Puts a socket into the table under its token's slot; returns the slot.
    fn install(&mut self, conn: ConnIo) -> usize {
        let token = conn.token;
        let idx = token.slot();
        if idx >= self.conns.len() {
            self.conns.resize_with(idx + 1, || None);
        }
        if let Some(old) = self.conns[idx].take() {
            tracing::error!(?token, old = ?old.token, "core reused a slot that was not closed");
            self.forget_conn(old);
        }
        self.conns[idx] = Some(conn);
        idx
    }

    /// Drops a connection whose operations may still be in flight: its fd is closed
    /// (the kernel keeps its own file reference) but a send buffer or a connect
    /// address is leaked.
    fn forget_conn(&mut self, conn: ConnIo) {
        let ConnIo {
            send,
            fd,
            connecting,
            ..
        } = conn;
        if let Some(buf) = send {
            std::mem::forget(buf);
        }
        if let Some(addr) = connecting {
            std::mem::forget(addr);
        }
        drop(fd);
    }

    fn arm_recv(&mut self, idx: usize) {
        let bgid = self.bufs.bgid();
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if conn.recv_armed
            || conn.read_done
            || conn.closing
            || conn.paused
            || conn.connecting.is_some()
        {
            return;
        }
        conn.recv_armed = true;
        let e = opcode::RecvMulti::new(types::Fd(conn.fd.as_raw_fd()), bgid)
            .build()
            .user_data(ops::encode(Op::Recv, Some(conn.token)));
        // SAFETY: the recv writes only into provided buffers, which live in `self.bufs`
        // until the ring is closed (or are leaked on error paths).
        unsafe { self.push(e) };
    }

    fn on_wake_cqe<C: ShardCore>(
        &mut self,
        core: &mut C,
        res: i32,
        now: Instant,
    ) -> io::Result<()> {
        self.wake_state = WakeState::Idle;
        if res == -libc::EAGAIN {
            // The eventfd is non-blocking and this kernel reports it: wait for readiness.
            let e = opcode::PollAdd::new(types::Fd(self.wake.as_raw_fd()), libc::POLLIN as u32)
                .build()
                .user_data(ops::encode(Op::WakePoll, None));
            // SAFETY: a poll request points at no memory.
            unsafe { self.push(e) };
            self.wake_state = WakeState::Polling;
            return Ok(());
        }
        if res == -libc::ECANCELED {
            return Ok(());
        }
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        if !self.finishing {
            self.wake.drain();
            if self.accept_paused {
                self.accept_paused = false;
            }
            core.on_wake(now);
        }
        Ok(())
    }

    fn live(&mut self, d: ops::Decoded) -> Option<&mut ConnIo> {
        self.conns
            .get_mut(d.index)
            .and_then(Option::as_mut)
            .filter(|c| d.matches(c.token))
    }

    fn on_recv_cqe<C: ShardCore>(
        &mut self,
        core: &mut C,
        d: ops::Decoded,
        res: i32,
        flags: u32,
        now: Instant,
    ) {
        let bid = cqueue::buffer_select(flags);
        let more = cqueue::more(flags);
        let finishing = self.finishing;
        let Some(conn) = self.live(d) else {
            // Stale: the connection is gone. Only the buffer matters.
            if let Some(bid) = bid {
                self.bufs.recycle(bid);
            }
            return;
        };
        if !more {
            conn.recv_armed = false;
            conn.cancel_sent = false;
        }
        let token = conn.token;
        let quiet = conn.closing || finishing;
        let mut eof = false;
        if res > 0 {
            match bid {
                Some(bid) => {
                    if !quiet {
                        if let Some(data) = self.bufs.buffer_mut(bid, res as usize) {
                            core.on_recv(token, data, now);
                        }
                    }
                    self.bufs.recycle(bid);
                }
                None => tracing::warn!(?token, res, "recv completion without a buffer"),
            }
        } else {
            if let Some(bid) = bid {
                self.bufs.recycle(bid);
            }
            // 0 = EOF; ENOBUFS = the ring ran dry (re-armed below, after the buffers
            // of this batch went back); ECANCELED = our own cancel; others = failure.
            eof = res != -libc::ENOBUFS && res != -libc::ECANCELED;
            #[cfg(test)]
            if res == -libc::ENOBUFS {
                ENOBUFS_SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if res < 0 && eof {
                tracing::debug!(?token, error = %io::Error::from_raw_os_error(-res), "recv failed");
            }
        }
        let Some(conn) = self.live(d) else { return };
        if eof && !conn.read_done {
            conn.read_done = true;
            if !quiet {
                core.on_eof(token, now);
            }
        }
        if !quiet && !conn.read_done && !core.wants_read(token) {
            conn.paused = true;
            if conn.recv_armed && !conn.cancel_sent {
                conn.cancel_sent = true;
                self.cancel(ops::encode(Op::Recv, Some(token)));
            }
        }
        let Some(conn) = self.live(d) else { return };
        let recv_armed = conn.recv_armed;
        let closing = conn.closing;
        if !recv_armed {
            if closing || finishing {
                self.again.push(token);
            } else {
                self.arm_recv(d.index);
            }
        }
    }

    fn on_send_cqe<C: ShardCore>(&mut self, core: &mut C, d: ops::Decoded, res: i32) {
        let finishing = self.finishing;
        let Some(conn) = self.live(d) else {
            tracing::warn!(
                index = d.index,
                res,
                "send completion for an unknown connection"
            );
            return;
        };
        let token = conn.token;
        let Some(buf) = conn.send.take() else { return };
        if finishing {
            return;
        }
        let written = if res >= 0 {
            Ok(res as usize)
        } else {
            Err(io::Error::from_raw_os_error(-res))
        };
        core.on_sent(token, buf, written);
        self.again.push(token);
    }

    /// Step 2 of the calling protocol. Returns true when tokens are left over (the next
    /// wait must not block).
    fn process_ready<C: ShardCore>(&mut self, core: &mut C) -> bool {
        self.start_connects(core);
        self.start_adopted(core);
        self.start_file_reads(core);
        for _ in 0..READY_ROUNDS {
            let mut batch = std::mem::take(&mut self.ready);
            core.drain_ready(&mut batch);
            batch.append(&mut self.again);
            if batch.is_empty() {
                self.ready = batch;
                return false;
            }
            for token in batch.drain(..) {
                self.process_token(core, token);
            }
            self.ready = batch;
        }
        core.drain_ready(&mut self.ready);
        self.ready.append(&mut self.again);
        // Keep them for the next turn via `again`.
        std::mem::swap(&mut self.ready, &mut self.again);
        !self.again.is_empty()
    }

    fn process_token<C: ShardCore>(&mut self, core: &mut C, token: Token) {
        let idx = token.slot();
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if conn.token != token {
            return; // stale token
        }
        if conn.connecting.is_some() {
            // The connect's completion brings it back; a core that no longer wants
            // the connection has it abandoned (reported as a failed connect).
            if !conn.cancel_sent && core.wants_close(token) {
                conn.cancel_sent = true;
                self.cancel(ops::encode(Op::Connect, Some(token)));
            }
            return;
        }
        if !conn.closing && !conn.read_done {
            conn.paused = !core.wants_read(token);
            if conn.paused && conn.recv_armed && !conn.cancel_sent {
                conn.cancel_sent = true;
                self.cancel(ops::encode(Op::Recv, Some(token)));
            } else if !conn.paused && !conn.recv_armed {
                self.arm_recv(idx);
            }
        }
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if conn.send.is_some() {
            if !conn.send_cancel_sent && core.abandon_output(token) {
                // A peer that never reads: stop waiting for this send.
                conn.send_cancel_sent = true;
                self.cancel(ops::encode(Op::Send, Some(token)));
            }
            return; // on_sent will bring it back
        }
        if let Some(buf) = core.take_send(token) {
            let len = buf.len().min(u32::MAX as usize) as u32;
            let e = opcode::Send::new(types::Fd(conn.fd.as_raw_fd()), buf.as_ptr(), len)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(ops::encode(Op::Send, Some(token)));
            // Moving the buffer into the table does not move its heap bytes (an owned
            // Vec's, or a shared `Bytes`' refcounted ones, which this value keeps alive).
            conn.send = Some(buf);
            // SAFETY: the bytes are owned (or, shared, kept alive) by `conn.send` until
            // this send's completion (`on_send_cqe`); the connection is not removed while
            // a send is in flight, and error paths leak it rather than free it. Nothing
            // writes shared bytes: a `Bytes` is immutable.
            unsafe { self.push(e) };
            return;
        }
        if !core.wants_close(token) {
            return;
        }
        conn.closing = true;
        if conn.recv_armed {
            if !conn.cancel_sent {
                conn.cancel_sent = true;
                self.cancel(ops::encode(Op::Recv, Some(token)));
            }
            return; // the recv's final completion brings the token back
        }
        // Nothing in flight: close the fd and tell the core.
        self.conns[idx] = None;
        core.on_closed(token);
        if self.accept_paused {
            self.accept_paused = false;
        }
    }

    /// Step 2 of the calling protocol, for files: submits a read for each chunk the
    /// core asks for.
    fn start_file_reads<C: ShardCore>(&mut self, core: &mut C) {
        let mut batch = std::mem::take(&mut self.file_batch);
        core.take_file_reads(&mut batch);
        for read in batch.drain(..) {
            let buf = read.buffer();
            let slot = match self.free_file_slots.pop() {
                Some(slot) => slot,
                None => {
                    self.file_reads.push(None);
                    self.file_reads.len() - 1
                }
            };
            let fd = types::Fd(read.file.as_raw_fd());
            let offset = read.offset;
            // Moving the Vec into the table does not move its heap buffer.
            let (_, buf) = self.file_reads[slot].insert((read, buf));
            let len = buf.len() as u32; // at most FileRead::MAX_LEN
            let e = opcode::Read::new(fd, buf.as_mut_ptr(), len)
                .offset(offset)
                .build()
                .user_data(ops::encode_listener(Op::FileRead, slot));
            // SAFETY: the buffer (and the file, through its `Arc`) is owned by
            // `file_reads[slot]` until this read's completion (`on_file_read_cqe`); the
            // slot is not reused before then, teardown waits for it, and error paths
            // leak it rather than free it.
            unsafe { self.push(e) };
        }
        self.file_batch = batch;
    }

    fn on_file_read_cqe<C: ShardCore>(
        &mut self,
        core: &mut C,
        slot: usize,
        res: i32,
        now: Instant,
    ) {
        let Some((read, mut buf)) = self.file_reads.get_mut(slot).and_then(Option::take) else {
            tracing::warn!(slot, res, "file read completion for an unknown slot");
            return;
        };
        self.free_file_slots.push(slot);
        drop(read.file);
        if self.finishing {
            return;
        }
        let result = match usize::try_from(res) {
            Ok(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(_) => Err(io::Error::from_raw_os_error(-res)),
        };
        core.on_file_read(read.token, result, now);
    }

    /// Cancels everything still in flight and waits for the completions, so that no
    /// memory the kernel may write or read is freed early, then closes every socket.
    fn teardown<C: ShardCore>(&mut self, core: &mut C) -> io::Result<()> {
        self.finishing = true;
        self.accepting = false;
        self.cancel_accepts();
        match self.wake_state {
            WakeState::Reading => self.cancel(ops::encode(Op::Wake, None)),
            WakeState::Polling => self.cancel(ops::encode(Op::WakePoll, None)),
            WakeState::Idle => {}
        }
        let mut targets = Vec::new();
        for conn in self.conns.iter_mut().flatten() {
            tracing::warn!(token = ?conn.token, "connection still open at shard end; closing it");
            conn.closing = true;
            if conn.recv_armed && !conn.cancel_sent {
                conn.cancel_sent = true;
                targets.push(ops::encode(Op::Recv, Some(conn.token)));
            }
            if conn.send.is_some() {
                targets.push(ops::encode(Op::Send, Some(conn.token)));
            }
            if conn.connecting.is_some() {
                targets.push(ops::encode(Op::Connect, Some(conn.token)));
            }
        }
        for t in targets {
            self.cancel(t);
        }
        let give_up = Instant::now() + TEARDOWN_LIMIT;
        while self.in_flight() {
            let now = Instant::now();
            if now >= give_up {
                tracing::error!(
                    "io_uring operations still in flight at shard end; leaking their memory"
                );
                self.leak_in_flight_memory();
                break;
            }
            self.wait(Some(now + Duration::from_millis(100)), false)?;
            self.reap(core)?;
        }
        self.again.clear();
        // Closes every remaining socket (OwnedFd).
        self.conns.clear();
        if let Err(e) = self.ring.submitter().unregister_buf_ring(self.bufs.bgid()) {
            tracing::debug!(error = %e, "unregistering the buffer ring failed");
        }
        Ok(())
    }

    fn in_flight(&self) -> bool {
        self.accept_armed.iter().any(|&armed| armed)
            || self.wake_state != WakeState::Idle
            || self.cancels_inflight > 0
            || !self.pending.is_empty()
            || self.file_reads.iter().any(Option::is_some)
            || self
                .conns
                .iter()
                .flatten()
                .any(|c| c.recv_armed || c.send.is_some() || c.connecting.is_some())
    }

    /// Error paths: operations may still be in flight when the ring is dropped, so the
    /// memory they point at is leaked instead of freed. Sockets are still closed.
    fn leak_in_flight_memory(&mut self) {
        self.bufs.leak_on_drop();
        let wake_buf = std::mem::replace(&mut self.wake_buf, Box::new(0));
        Box::leak(wake_buf);
        for (read, buf) in self.file_reads.iter_mut().filter_map(Option::take) {
            std::mem::forget(buf);
            std::mem::forget(read);
        }
        for conn in self.conns.iter_mut().flatten() {
            if let Some(buf) = conn.send.take() {
                std::mem::forget(buf);
            }
            if let Some(addr) = conn.connecting.take() {
                std::mem::forget(addr);
            }
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
    )
}
