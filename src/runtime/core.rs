//! The contract between a shard's connection logic and the I/O backend that drives it.
//!
//! A backend (io_uring or epoll) owns the sockets and does the system calls; the shard
//! core owns the connection state machines and the user's handlers. The backend reports
//! what happened (accepted, bytes received, bytes sent, peer gone, mailbox woken, time
//! passed) and asks what to do next (bytes to send, sockets to close). Both backends drive
//! the same core the same way, so protocol behaviour never depends on the backend.
//!
//! The calling protocol, per loop turn:
//! 1. report events: [`ShardCore::on_accept`], [`ShardCore::on_recv`],
//!    [`ShardCore::on_eof`], [`ShardCore::on_sent`], [`ShardCore::on_wake`],
//!    [`ShardCore::on_timer`];
//! 2. collect the tokens that changed with [`ShardCore::drain_ready`]; for each one that
//!    has no send in flight, [`ShardCore::take_send`] gives the next bytes to write;
//!    when it returns `None` and [`ShardCore::wants_close`] is true, close the socket
//!    and report [`ShardCore::on_closed`];
//! 3. wait for I/O until [`ShardCore::next_deadline`] at the latest;
//! 4. stop the loop once [`ShardCore::is_finished`] is true (after a shutdown every
//!    connection was closed and reported with `on_closed`).

use std::net::SocketAddr;
use std::time::Instant;

/// Identifies one connection on one shard. Tokens are reused after `on_closed`, with a new
/// generation, so a stale token never reaches a newer connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Token(pub(crate) u64);

impl Token {
    /// Packs a slab index and a generation.
    pub(crate) fn new(index: u32, generation: u32) -> Token {
        Token(((generation as u64) << 32) | index as u64)
    }

    /// The slab index: dense, small, usable as an index into a backend's own table.
    pub(crate) fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    /// The generation of the slot when this token was issued.
    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// Everything a backend needs from a shard: implemented by the shard's connection table
/// (`runtime::shard::Shard`), and by small test cores in the backends' own tests.
pub(crate) trait ShardCore {
    /// A connection was accepted. Returns its token; the backend keeps the socket under it.
    fn on_accept(&mut self, peer: Option<SocketAddr>, now: Instant) -> Token;

    /// Bytes arrived on `token`. The core may modify them in place (unmasking) and
    /// borrows them only for this call, so the backend may recycle the buffer afterwards.
    fn on_recv(&mut self, token: Token, data: &mut [u8], now: Instant);

    /// The peer closed its sending side (read returned 0) or reading failed. The core
    /// decides what to flush before it wants the socket closed.
    fn on_eof(&mut self, token: Token, now: Instant);

    /// Gives the next bytes to write on `token`, or `None` when nothing is queued. The
    /// backend owns the buffer until it hands it back with [`ShardCore::on_sent`]; it asks
    /// again only after that (one send in flight per connection keeps bytes in order).
    fn take_send(&mut self, token: Token) -> Option<Vec<u8>>;

    /// A send finished: `written` bytes from the front of `buf` reached the socket (it may
    /// be fewer than `buf.len()`: the core queues the rest first). `Err` means the socket
    /// failed; the core then wants it closed.
    fn on_sent(&mut self, token: Token, buf: Vec<u8>, written: std::io::Result<usize>);

    /// True when the backend should close the socket once nothing more is queued.
    fn wants_close(&self, token: Token) -> bool;

    /// The socket was closed by the backend. The core forgets the connection (calling the
    /// user's close hook if it has not run yet) and may reuse the token's slot.
    fn on_closed(&mut self, token: Token);

    /// The shard's mailbox was signalled: process cross-shard commands.
    fn on_wake(&mut self, now: Instant);

    /// Time passed: fire due timers (close handshake timeouts and the like).
    fn on_timer(&mut self, now: Instant);

    /// The earliest instant at which [`ShardCore::on_timer`] has work to do.
    fn next_deadline(&self) -> Option<Instant>;

    /// Moves the tokens whose state changed (output queued, close wanted) into `out`.
    fn drain_ready(&mut self, out: &mut Vec<Token>);

    /// True once the backend should stop accepting new connections (shutdown started).
    fn is_shutting_down(&self) -> bool;

    /// True once the shard has shut down and every connection was reported closed.
    fn is_finished(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn token_round_trips_index_and_generation() {
        let t = Token::new(7, 0xdead_beef);
        assert_eq!(t.index(), 7);
        assert_eq!(t.generation(), 0xdead_beef);
    }
}
