//! The contract between a shard's connection logic and the I/O backend that drives it.
//!
//! A backend (io_uring or epoll) owns the sockets and does the system calls; the shard
//! core owns the connection state machines and the user's handlers. The backend reports
//! what happened (accepted, bytes received, bytes sent, peer gone, mailbox woken, time
//! passed) and asks what to do next (bytes to send, sockets to close). Both backends drive
//! the same core the same way, so protocol behaviour never depends on the backend.
//!
//! The calling protocol, per loop turn:
//! 1. report events: [`ShardCore::on_accept`] (with the index of the listener that
//!    accepted, in the order the backend was given its listeners),
//!    [`ShardCore::on_connected`], [`ShardCore::on_recv`], [`ShardCore::on_eof`],
//!    [`ShardCore::on_sent`], [`ShardCore::on_wake`], [`ShardCore::on_timer`];
//! 2. start the outgoing connections [`ShardCore::take_connects`] asks for (without
//!    blocking; each ends with one `on_connected`, `Ok` or `Err`), and the file reads
//!    [`ShardCore::take_file_reads`] asks for (off the loop's thread of control; each
//!    ends with one [`ShardCore::on_file_read`], reported in step 1 of a later turn);
//! 3. collect the tokens that changed with [`ShardCore::drain_ready`]; for each one that
//!    has no send in flight (and is not still connecting), [`ShardCore::take_send`]
//!    gives the next bytes to write; when it returns `None` and
//!    [`ShardCore::wants_close`] is true, close the socket and report
//!    [`ShardCore::on_closed`]; reading is (re)started only while
//!    [`ShardCore::wants_read`] is true, and stopped (a few bytes already on their way
//!    may still be reported) when it turns false;
//! 4. wait for I/O until [`ShardCore::next_deadline`] at the latest;
//! 5. stop the loop once [`ShardCore::is_finished`] is true (after a shutdown every
//!    connection was closed and reported with `on_closed`).
//!
//! Tokens of outgoing connections come from the core (`take_connects`); from a
//! successful `on_connected` on they are ordinary sockets (recv, send, eof, close, like
//! accepted ones). After `on_connected(token, Err(_))` the backend forgets the token and
//! never reports `on_closed` for it. A core that lists a still-connecting token with
//! `wants_close` true has the connect abandoned: it ends with `on_connected(Err(_))`. A core lists a token in `drain_ready` whenever its
//! `wants_read` answer changes, so the backend looks at it again.

use std::net::SocketAddr;
use std::time::Instant;

pub(crate) use crate::conn::{SendBuf, Token};

/// What a [`Token`] names. A shard keeps three tables, each numbering its own entries
/// from 0; the kind is carried in high bits of the token's index, so tokens of the
/// tables never collide and the shard tells them apart without a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// A WebSocket / HTTP connection (the shard's connection table).
    Conn,
    /// A raw TCP stream or an outgoing bridge link (`runtime/link.rs`).
    Stream,
    /// A SockJS session (the shard's session table); never handed to a backend.
    Session,
}

impl TokenKind {
    /// The index bits of each kind; a table key must stay under the lowest of them.
    const STREAM_BIT: u32 = 1 << 30;
    const SESSION_BIT: u32 = 1 << 31;
    const KIND_BITS: u32 = Self::STREAM_BIT | Self::SESSION_BIT;

    fn bits(self) -> u32 {
        match self {
            TokenKind::Conn => 0,
            TokenKind::Stream => Self::STREAM_BIT,
            TokenKind::Session => Self::SESSION_BIT,
        }
    }
}

impl Token {
    /// The token of entry `key` of the `kind` table, issued at `generation`.
    pub(crate) fn of_kind(kind: TokenKind, key: usize, generation: u32) -> Token {
        let key = key as u32;
        debug_assert_eq!(key & TokenKind::KIND_BITS, 0, "token key {key} too large");
        Token::new(kind.bits() | key, generation)
    }

    /// Which table this token belongs to.
    pub(crate) fn kind(self) -> TokenKind {
        let index = self.index() as u32;
        if index & TokenKind::SESSION_BIT != 0 {
            TokenKind::Session
        } else if index & TokenKind::STREAM_BIT != 0 {
            TokenKind::Stream
        } else {
            TokenKind::Conn
        }
    }

    /// The entry's key in its own table (the index without the kind bits).
    pub(crate) fn key(self) -> usize {
        (self.index() as u32 & !TokenKind::KIND_BITS) as usize
    }

    /// A dense, small index for a backend's own table: the core's two socket index
    /// spaces ([`TokenKind::Conn`] and [`TokenKind::Stream`]) interleaved.
    pub(crate) fn slot(self) -> usize {
        match self.kind() {
            TokenKind::Stream => (self.key() << 1) | 1,
            TokenKind::Conn | TokenKind::Session => self.key() << 1,
        }
    }
}

/// The connection layer says what to read (a [`FileRead`]); the runtime does it.
pub(crate) use crate::connection::FileRead;

/// Does `read` on the calling thread (`pread`); the epoll backend runs this on its
/// blocking pool. Returns the bytes read: fewer than asked near the end of the file,
/// none at or past it.
pub(crate) fn read_blocking(read: &FileRead) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = read.buffer();
    loop {
        match read.file.read_at(&mut buf, read.offset) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// Everything a backend needs from a shard: implemented by the shard's connection table
/// (`runtime::shard::Shard`), and by small test cores in the backends' own tests.
pub(crate) trait ShardCore {
    /// A connection was accepted on listener `listener` (its index in the backend's
    /// list). Returns its token; the backend keeps the socket under it.
    fn on_accept(&mut self, listener: usize, peer: Option<SocketAddr>, now: Instant) -> Token;

    /// Moves the outgoing connections the core wants into `out`: a token the core
    /// allocated and the address to connect to. Each is answered by one `on_connected`.
    fn take_connects(&mut self, out: &mut Vec<(Token, SocketAddr)>) {
        let _ = out;
    }

    /// Moves the file reads the core wants into `out`. Each is answered by one
    /// [`ShardCore::on_file_read`], also when its token was closed meanwhile (not once
    /// the core is finished: the backend then drops what is still in flight).
    fn take_file_reads(&mut self, out: &mut Vec<FileRead>) {
        let _ = out;
    }

    /// Step 2, with the connects: sockets whose connections the core opened already
    /// (handed over by another server, see `shard/adopt.rs`); the backend serves each
    /// like an accepted one, under its token.
    fn take_adopted(&mut self, out: &mut Vec<(Token, std::os::fd::OwnedFd)>) {
        let _ = out;
    }

    /// A read asked for with `take_file_reads` finished: the bytes read (fewer than
    /// asked near the end of the file, none past it), or the error. `token` may be
    /// closed by now; the core then drops the bytes.
    fn on_file_read(&mut self, token: Token, result: std::io::Result<Vec<u8>>, now: Instant) {
        let _ = (token, result, now);
    }

    /// An outgoing connection asked for with `take_connects` finished connecting, or
    /// failed (then the token is forgotten: no `on_closed` follows).
    fn on_connected(&mut self, token: Token, result: std::io::Result<()>, now: Instant) {
        let _ = (token, result, now);
    }

    /// False while the core wants no bytes from `token` (backpressure, or a handler
    /// that paused reading). The backend
    /// checks it before reading or re-arming a read; the core lists the token in
    /// `drain_ready` when the answer changes.
    fn wants_read(&self, token: Token) -> bool {
        let _ = token;
        true
    }

    /// Bytes arrived on `token`. The core may modify them in place (unmasking) and
    /// borrows them only for this call, so the backend may recycle the buffer afterwards.
    fn on_recv(&mut self, token: Token, data: &mut [u8], now: Instant);

    /// The peer closed its sending side (read returned 0) or reading failed. The core
    /// decides what to flush before it wants the socket closed.
    fn on_eof(&mut self, token: Token, now: Instant);

    /// Gives the next bytes to write on `token`, or `None` when nothing is queued. The
    /// backend owns the buffer until it hands it back with [`ShardCore::on_sent`]; it asks
    /// again only after that (one send in flight per connection keeps bytes in order).
    /// The bytes may be shared with other connections' sends (a published frame): the
    /// backend only reads them.
    fn take_send(&mut self, token: Token) -> Option<SendBuf>;

    /// A send finished: `written` bytes from the front of `buf` reached the socket (it may
    /// be fewer than `buf.len()`: the core queues the rest first). `Err` means the socket
    /// failed; the core then wants it closed.
    fn on_sent(&mut self, token: Token, buf: SendBuf, written: std::io::Result<usize>);

    /// True when the core has given up on `token`'s output: a connection that wants
    /// closing but whose peer has not taken its last bytes within the close timeout (a
    /// peer that never reads). The backend then cancels a send in flight (reporting it
    /// with an error through [`ShardCore::on_sent`]) instead of waiting for it, and
    /// closes the socket; `take_send` gives nothing more for such a token.
    fn abandon_output(&self, token: Token) -> bool {
        let _ = token;
        false
    }

    /// True when the backend should close the socket once nothing more is queued.
    fn wants_close(&self, token: Token) -> bool;

    /// The socket was closed by the backend. The core forgets the connection (calling the
    /// user's close hook if it has not run yet) and may reuse the token's slot.
    fn on_closed(&mut self, token: Token);

    /// The shard's mailbox was signalled: process cross-shard commands. The backend
    /// has drained the wake-up eventfd first (the core only clears the mailbox's
    /// pending-wake flag, `Mailbox::take_wake`).
    fn on_wake(&mut self, now: Instant);

    /// Time passed: fire due timers (close handshake timeouts and the like).
    fn on_timer(&mut self, now: Instant);

    /// The earliest instant at which [`ShardCore::on_timer`] has work to do.
    fn next_deadline(&self) -> Option<Instant>;

    /// Moves the tokens whose state changed (output queued, close wanted) into `out`.
    fn drain_ready(&mut self, out: &mut Vec<Token>);

    /// True once the backend should stop accepting new connections (shutdown started).
    /// A connection accepted while the stop takes effect is dropped.
    fn is_shutting_down(&self) -> bool;

    /// False once the backend should stop accepting: at a shutdown, and at a restart
    /// (`ServerHandle::restart_within`), where a successor accepts from the same
    /// listening sockets. The backend stops asking for connections without closing its
    /// listeners' queues; a connection the kernel hands over while the stop takes effect
    /// (an io_uring accept completing before its cancel) is still reported with
    /// `on_accept` unless the core is shutting down.
    fn accepting(&self) -> bool {
        !self.is_shutting_down()
    }

    /// True once the shard has shut down and every connection was reported closed.
    fn is_finished(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::{Token, TokenKind};

    #[test]
    fn token_round_trips_index_and_generation() {
        let t = Token::new(7, 0xdead_beef);
        assert_eq!(t.index(), 7);
        assert_eq!(t.generation(), 0xdead_beef);
    }

    #[test]
    fn slots_interleave_the_two_index_spaces() {
        assert_eq!(Token::new(3, 1).slot(), 6);
        assert_eq!(Token::of_kind(TokenKind::Stream, 3, 1).slot(), 7);
        assert_eq!(Token::of_kind(TokenKind::Stream, 0, 0).slot(), 1);
    }

    #[test]
    fn kinds_round_trip() {
        for kind in [TokenKind::Conn, TokenKind::Stream, TokenKind::Session] {
            let t = Token::of_kind(kind, 12345, 9);
            assert_eq!((t.kind(), t.key(), t.generation()), (kind, 12345, 9));
        }
    }
}
