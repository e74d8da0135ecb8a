//! The inbound pause of an open connection: the handler's own
//! ([`Conn::pause_reading`](crate::Conn::pause_reading), a handle's command), the
//! automatic one while the output is over the backpressure threshold, and the shard's
//! memory budget's (`budget.rs`); and the close of a connection whose output went over
//! `max_buffered` with `close_on_limit`. Each pause has a flag of its own, so each ends
//! by itself; input flows while none holds.
//!
//! While input is paused the shard tells the backend to stop reading
//! ([`Connection::wants_read`]); bytes that still arrive, and the rest of a read that a
//! pause cut short, wait undecoded in `Connection::held` and go through the decoder,
//! in order, once the pause ends ([`Connection::pump_held`]). A close of ours ends any
//! pause, since the peer's close reply must be read.

use std::time::Instant;

use super::{Connection, ShardContext};
use crate::conn::Outbox;
use crate::proto::ProtocolError;

/// A held-input buffer larger than this is not kept for reuse once it is empty.
const MAX_RETAINED_HELD: usize = 64 * 1024;

impl Connection {
    /// True while the handler has paused reading and no close of ours is under way
    /// (a close reads again, to see the peer's answer).
    pub(crate) fn handler_paused(&self) -> bool {
        self.out.read_paused && !self.out.closed
    }

    /// True while input is not handed to the handler: it paused reading, the memory
    /// budget paused it, or (with `pause_on_backpressure`) the output is over the
    /// backpressure threshold. A close of ours ends it (the peer's close reply must be
    /// read).
    pub(super) fn input_paused(&self) -> bool {
        input_paused(&self.out)
    }

    /// False while the socket should not be read (see `input_paused`), and while a
    /// static file is being sent (pipelined requests wait in the socket).
    pub(crate) fn wants_read(&self) -> bool {
        !(self.file_streaming() || self.is_open() && self.input_paused())
    }

    /// Feeds the bytes held during a pause to the decoder, unless input is (still)
    /// paused. Called wherever a pause may end: after a callback, a handle's resume,
    /// a close of ours, output written.
    pub(crate) fn pump_held(&mut self, ctx: &ShardContext, now: Instant) {
        if !self.has_held() || self.input_paused() {
            return;
        }
        let mut held = std::mem::take(&mut self.rare_mut().held);
        // Ended: nobody reads them any more (the receive loop ignores them).
        self.receive_frames(&mut held, ctx, now);
        // A new pause inside those callbacks held the rest again.
        if !self.has_held() && held.capacity() <= MAX_RETAINED_HELD {
            held.clear();
            self.rare_mut().held = held;
        }
    }

    /// A handle asked to pause or resume reading (see
    /// [`Conn::pause_reading`](crate::Conn::pause_reading)).
    pub(crate) fn set_read_paused(&mut self, paused: bool, ctx: &ShardContext, now: Instant) {
        if self.sockjs_ws().is_some() {
            self.with_handler(ctx, now, |handler, conn| {
                super::sockjs::remote(handler, conn, crate::handler::Remote::Pause(paused));
            });
            return;
        }
        if self.is_open() {
            if paused && !self.out.read_paused {
                ctx.metrics.read_paused();
            }
            self.out.read_paused = paused;
            self.pump_held(ctx, now);
        }
    }

    /// A send went over `max_buffered` with `close_on_limit`: the handler hears of the
    /// close (1008 "backpressure limit") and the socket closes without waiting for the
    /// peer, whose output is abandoned where it could not take it (the shard decides).
    pub(crate) fn end_if_overflowed(&mut self, ctx: &ShardContext) {
        if let Some((code, reason)) = self.out.overflowed.filter(|_| self.is_open()) {
            tracing::debug!(conn = %self.id, reason, "closing: output over the backpressure limit");
            self.fail(ProtocolError { code, reason }, ctx);
        }
    }
}

/// See [`Connection::input_paused`] (a function of the outbox, so the receive loops
/// can ask while a `Conn` borrows it). The memory budget's pause counts too.
pub(super) fn input_paused(out: &Outbox) -> bool {
    !out.closed
        && (out.read_paused
            || out.budget_paused
            || out.limits.pause_on_backpressure && out.over_threshold())
}
