//! A connection's share of the shard's memory budget (`runtime/shard/budget.rs`): what
//! it holds for its peer ([`Connection::held`]), the budget's own read pause, and the
//! close that frees what it holds.
//!
//! The shard recounts [`Connection::held`] after every call that may change it (its
//! `touch`), so the shard's total moves by the difference and is never rescanned.

use std::time::Instant;

use super::{Connection, FrontPhase, ShardContext, Stage};
use crate::http::{self, HttpError};
use crate::proto::{CloseCode, ProtocolError};

/// The bytes a connection (or a SockJS session) holds for its peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Held {
    /// Input not handled yet, by the capacity of its buffers (what the allocator
    /// gave, reserved ahead included): the assembly buffer of an incomplete message,
    /// input kept during a pause, a request head and body being read.
    pub(crate) incoming: usize,
    /// Output queued and not yet written (its length, as `max_buffered` counts it).
    pub(crate) outgoing: usize,
}

impl Held {
    pub(crate) fn total(self) -> usize {
        self.incoming.saturating_add(self.outgoing)
    }
}

/// The close of a connection that holds mostly incoming bytes when the shard is over
/// its memory budget.
pub(crate) const BUDGET_INCOMING: ProtocolError = ProtocolError {
    code: CloseCode(1009),
    reason: "message too big for the server's memory",
};

/// The close of a connection (or SockJS session) that holds mostly queued output when
/// the shard is over its memory budget.
pub(crate) const BUDGET_OUTGOING: ProtocolError = ProtocolError {
    code: CloseCode(1008),
    reason: "output over the server's memory budget",
};

/// The answer to an HTTP request being read when its connection is closed for the
/// budget.
const BUDGET_HTTP: HttpError = HttpError::new(503, "over the server's memory budget");

/// The close the budget gives a holder: 1009 when its incoming bytes are the larger
/// part, 1008 when its queued output is.
pub(crate) fn budget_close_for(held: Held) -> ProtocolError {
    if held.incoming >= held.outgoing {
        BUDGET_INCOMING
    } else {
        BUDGET_OUTGOING
    }
}

impl Connection {
    /// What this connection holds for its peer now. Incoming buffers count by their
    /// capacity: a message assembled in a growing buffer reserves up to as much again,
    /// and reallocating it holds the old and the new buffer at once for a moment, so
    /// the length alone would let the allocator's figure run well past the budget
    /// (BENCHMARKS.md, "Memory budget under a fragment flood").
    pub(crate) fn held(&self) -> Held {
        let incoming = match &self.stage {
            Stage::Front(front) => match &front.phase {
                FrontPhase::Http { head, .. } => head.capacity(),
                FrontPhase::SockJsWaiting { buffered, .. } => buffered.capacity(),
                FrontPhase::Hixie76Body { .. } => 0,
            },
            Stage::Open(session) => session.inbound.buffer_capacity(),
            Stage::Ended => 0,
        };
        let kept = self.rare.as_ref().map_or(0, |rare| rare.held.capacity());
        // A compressed message arriving in pieces holds its plaintext so far.
        let inflating = self
            .out
            .compression
            .as_ref()
            .map_or(0, |compression| compression.partial_bytes());
        Held {
            incoming: incoming.saturating_add(kept).saturating_add(inflating),
            // A static file's chunk being read is output on its way.
            outgoing: self.out.buffered() + self.file_bytes_reading(),
        }
    }

    /// True when the budget may pause this connection: an open WebSocket that is not
    /// closing and not paused by the budget already.
    pub(crate) fn budget_pausable(&self) -> bool {
        self.is_open() && !self.out.closed && !self.out.budget_paused
    }

    /// True while the budget pauses reading (until [`Connection::budget_resume`]).
    pub(crate) fn is_budget_paused(&self) -> bool {
        self.out.budget_paused
    }

    /// When the budget's pause began, while it lasts.
    pub(crate) fn budget_paused_since(&self) -> Option<Instant> {
        match self.out.budget_paused {
            true => self.rare.as_ref().and_then(|rare| rare.budget_paused_at),
            false => None,
        }
    }

    /// The shard is over its high-water mark: stop reading this connection (bytes
    /// already on their way are kept, as in any pause).
    pub(crate) fn budget_pause(&mut self, now: Instant) {
        self.out.budget_paused = true;
        self.rare_mut().budget_paused_at = Some(now);
    }

    /// The shard is back under its low-water mark: read again, and hand the handler
    /// what was kept meanwhile (unless another pause still holds).
    pub(crate) fn budget_resume(&mut self, ctx: &ShardContext, now: Instant) {
        self.out.budget_paused = false;
        if let Some(rare) = self.rare.as_mut() {
            rare.budget_paused_at = None;
        }
        self.pump_held(ctx, now);
    }

    /// True when a budget close would free something: a connection not closing yet,
    /// or a closing one whose queued output was not given up yet.
    pub(crate) fn budget_closable(&self) -> bool {
        !self.out.abandon && (!self.wants_close || self.out.buffered() > 0)
    }

    /// Closes the connection for the memory budget and frees what it holds. An open
    /// WebSocket is failed with [`BUDGET_INCOMING`] (1009) when most of what it holds
    /// is incoming, with [`BUDGET_OUTGOING`] (1008) when most is queued output (which is
    /// then thrown away, as `close_on_backpressure_limit` does); the handler's
    /// `on_close` reports it and the socket closes without waiting for a reply. A
    /// request being read is answered 503 and closed; a connection already closing
    /// has its output given up. Returns false when there was nothing to do.
    pub(crate) fn close_for_budget(&mut self, ctx: &ShardContext) -> bool {
        if !self.budget_closable() {
            return false;
        }
        let held = self.held();
        if let Some(rare) = self.rare.as_mut() {
            rare.held = Vec::new();
        }
        if self.wants_close {
            tracing::debug!(conn = %self.id, held = held.total(), "memory budget: giving up a closing connection's output");
            let error = BUDGET_OUTGOING;
            self.out.drop_for_close(error.code, error.reason);
            return true;
        }
        let error = budget_close_for(held);
        tracing::debug!(conn = %self.id, incoming = held.incoming, outgoing = held.outgoing, code = error.code.0, "memory budget: closing");
        if self.is_open() {
            if error.code == BUDGET_OUTGOING.code {
                self.out.drop_for_close(error.code, error.reason);
            }
            // Ending the connection drops its decoder, and the assembly buffer with it.
            self.fail(error, ctx);
            return true;
        }
        // Not a WebSocket (yet): no close frame; a request being read gets a 503 when
        // nothing of an earlier answer is half-written.
        self.transport_ended_sockjs();
        // A static file cut in its middle leaves no room for a clean 503 either.
        let clean = self.out.in_flight == 0 && !self.out.partial && !self.stop_file();
        self.out.queued = Vec::new();
        self.out.clear_output();
        if !clean {
            self.out.abandon = true;
        } else if self.in_http() {
            http::write_error(&mut self.out.queued, &BUDGET_HTTP, &[]);
        }
        self.close_after_response();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_larger_part_chooses_the_close() {
        let incoming = Held {
            incoming: 10,
            outgoing: 3,
        };
        assert_eq!(budget_close_for(incoming).code, CloseCode(1009));
        let outgoing = Held {
            incoming: 3,
            outgoing: 10,
        };
        assert_eq!(budget_close_for(outgoing).code, CloseCode(1008));
        assert_eq!(
            BUDGET_INCOMING.reason,
            "message too big for the server's memory"
        );
        assert_eq!(
            BUDGET_OUTGOING.reason,
            "output over the server's memory budget"
        );
        assert_eq!(outgoing.total(), 13);
    }
}
