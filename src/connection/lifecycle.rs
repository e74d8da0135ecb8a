//! The ends of an open connection that the server decides: the idle timeout (ping a
//! quiet peer, close one that stays quiet; not while the handler paused reading) and
//! the server's shutdown.

use std::time::Instant;

use super::{Connection, Phase, ShardContext};
use crate::conn::Framing;
use crate::handler::{CloseInitiator, CloseReason};
use crate::proto::{CloseCode, OpCode};

impl Connection {
    /// When the idle timer next looks at the connection: half the idle timeout after
    /// the last bytes received (time to ping), or all of it once the ping went out.
    pub(super) fn idle_deadline(&self, ctx: &ShardContext) -> Option<Instant> {
        let timeout = ctx.config.idle_timeout?;
        let wait = if self.idle_pinged {
            timeout
        } else {
            timeout / 2
        };
        Some(self.last_received + wait)
    }

    /// The idle timer fired: ping a quiet peer, close one that stayed quiet (1001
    /// "idle timeout", without waiting for its close reply), or wait again.
    pub(super) fn idle_timer(&mut self, ctx: &ShardContext, now: Instant) {
        let Some(timeout) = ctx.config.idle_timeout else {
            return;
        };
        if self.handler_paused() {
            // We are not reading, so the peer's silence says nothing: no ping, no
            // close while the handler pauses; the wait starts again from here.
            self.last_received = now;
            self.idle_pinged = false;
            self.deadline = self.idle_deadline(ctx);
            return;
        }
        let quiet = now.saturating_duration_since(self.last_received);
        if quiet >= timeout {
            tracing::debug!(conn = %self.id, "idle timeout");
            let reason = "idle timeout";
            self.out.queue_close(Some(CloseCode::GOING_AWAY), reason);
            let reason = CloseReason {
                code: CloseCode::GOING_AWAY,
                reason: reason.to_owned(),
                initiator: CloseInitiator::Local,
            };
            self.end(reason, ctx);
            return;
        }
        if quiet >= timeout / 2 && !self.idle_pinged {
            self.idle_pinged = true;
            // The hixie drafts have no ping: their peers just get closed.
            if self.out.framing == Framing::Rfc6455 {
                self.out.send_frame(OpCode::Ping, b"");
            }
        }
        self.deadline = self.idle_deadline(ctx);
    }

    /// The server is shutting down: say so to the peer (1001). With a `deadline`, an
    /// open connection waits for the peer's close reply until then (the close timer);
    /// without one, or for anything but an open connection, it closes without waiting.
    pub(crate) fn shutdown(&mut self, ctx: &ShardContext, deadline: Option<Instant>) {
        if !matches!(self.phase, Phase::Open { .. }) {
            self.close_after_response();
            return;
        }
        let reason = "server shutting down";
        if let Some(deadline) = deadline {
            if self.local_close.is_some() {
                // Already closing: the peer has until its close timer or the deadline.
                self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
                return;
            }
            if self.out.framing != Framing::Hixie75 && !self.out.closed {
                self.out.queue_close(Some(CloseCode::GOING_AWAY), reason);
                self.local_close = Some((CloseCode::GOING_AWAY, reason.to_owned()));
                self.deadline = Some(deadline);
                return;
            }
        }
        let reason = match self.local_close.take() {
            Some((code, reason)) => CloseReason {
                code,
                reason,
                initiator: CloseInitiator::Local,
            },
            None => {
                self.out.queue_close(Some(CloseCode::GOING_AWAY), reason);
                CloseReason {
                    code: CloseCode::GOING_AWAY,
                    reason: reason.to_owned(),
                    initiator: CloseInitiator::Local,
                }
            }
        };
        self.end(reason, ctx);
    }
}
