//! The ends of an open connection that the server decides: the idle timeout (ping a
//! quiet peer, close one that stays quiet; not while the handler paused reading) and
//! the server's shutdown.

use std::time::Instant;

use super::{close_reason, Connection, FrontPhase, Session, ShardContext, Stage, Timer};
use crate::conn::Framing;
use crate::handler::CloseInitiator;
use crate::proto::{CloseCode, OpCode};

impl Session {
    /// When the idle timer next looks at the session: half the idle timeout after
    /// the last bytes received (time to ping), or all of it once the ping went out.
    fn idle_deadline(&self, ctx: &ShardContext) -> Option<Instant> {
        let timeout = ctx.config.idle_timeout?;
        let wait = if self.idle_pinged {
            timeout
        } else {
            timeout / 2
        };
        Some(self.last_received + wait)
    }
}

impl Connection {
    /// The open session, while there is one.
    fn session_mut(&mut self) -> Option<&mut Session> {
        match &mut self.stage {
            Stage::Open(session) => Some(session),
            _ => None,
        }
    }

    /// Arms the idle timer for [`Session::idle_deadline`] (without an idle timeout, or
    /// without a session, never).
    pub(super) fn arm_idle(&mut self, ctx: &ShardContext) {
        let at = match &self.stage {
            Stage::Open(session) => session.idle_deadline(ctx),
            _ => None,
        };
        match at {
            Some(at) => self.timers.set(Timer::Idle, at),
            None => self.timers.clear(Timer::Idle),
        }
    }

    /// The idle timer fired: ping a quiet peer, close one that stayed quiet (1001
    /// "idle timeout", without waiting for its close reply), or wait again.
    pub(super) fn idle_timer(&mut self, ctx: &ShardContext, now: Instant) {
        let Some(timeout) = ctx.config.idle_timeout else {
            return;
        };
        let paused = self.handler_paused();
        let Some(session) = self.session_mut() else {
            return;
        };
        if paused {
            // We are not reading, so the peer's silence says nothing: no ping, no
            // close while the handler pauses; the wait starts again from here.
            session.last_received = now;
            session.idle_pinged = false;
            self.arm_idle(ctx);
            return;
        }
        let quiet = now.saturating_duration_since(session.last_received);
        if quiet >= timeout {
            tracing::debug!(conn = %self.id, "idle timeout");
            let reason = "idle timeout";
            self.out.queue_close(Some(CloseCode::GOING_AWAY), reason);
            let reason = close_reason(CloseInitiator::Local, CloseCode::GOING_AWAY, reason);
            self.end(reason, ctx);
            return;
        }
        if quiet >= timeout / 2 && !session.idle_pinged {
            session.idle_pinged = true;
            // The hixie drafts have no ping: their peers just get closed.
            if self.out.framing == Framing::Rfc6455 {
                self.out.send_frame(OpCode::Ping, b"");
            }
        }
        self.arm_idle(ctx);
    }

    /// The server is shutting down: say so to the peer (1001). With a `deadline`, an
    /// open connection waits for the peer's close reply until then (the close timer);
    /// without one it closes without waiting. A connection that is not open finishes
    /// what it is in the middle of, then closes (see [`Connection::drain`]).
    pub(crate) fn shutdown(&mut self, ctx: &ShardContext, deadline: Option<Instant>, now: Instant) {
        if !self.is_open() {
            self.drain(ctx, deadline, now);
            return;
        }
        let reason = if ctx
            .config
            .restarting
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            "server restarting"
        } else {
            "server shutting down"
        };
        if let Some(deadline) = deadline {
            if self.has_local_close() {
                // Already closing: the peer has until its close timer or the deadline.
                self.timers.set_earliest(Timer::Shutdown, deadline);
                return;
            }
            if self.out.framing != Framing::Hixie75 && !self.out.closed {
                self.out.queue_close(Some(CloseCode::GOING_AWAY), reason);
                self.rare_mut().local_close = Some((CloseCode::GOING_AWAY, reason.to_owned()));
                // Only the peer's reply is awaited now, until the deadline.
                self.timers.clear(Timer::Idle);
                self.timers.clear(Timer::Heartbeat);
                self.timers.set(Timer::Shutdown, deadline);
                return;
            }
        }
        let reason = self.local_close_reason().unwrap_or_else(|| {
            self.out.queue_close(Some(CloseCode::GOING_AWAY), reason);
            close_reason(CloseInitiator::Local, CloseCode::GOING_AWAY, reason)
        });
        self.end(reason, ctx);
    }

    /// Shutdown of a connection that is not an open WebSocket. An idle one (nothing of
    /// a request received) closes at once. With a `deadline`, a request half received
    /// is still read and answered with `Connection: close` until then. A SockJS
    /// request waiting on its session's owner (on any shard) waits for the answer,
    /// which the owner's own shutdown sends (`c[1001,...]` for a receiving request),
    /// until the deadline or, without one, the close timeout. Answers already queued
    /// are written before the socket closes, whatever the phase. Called again (a second
    /// shutdown), it only brings the deadline forward, or closes at once without one.
    fn drain(&mut self, ctx: &ShardContext, deadline: Option<Instant>, now: Instant) {
        let again = self.draining();
        if let Stage::Front(front) = &mut self.stage {
            front.draining = true;
        }
        if self.file_streaming() {
            // A static file being sent finishes first (`static_file.rs`).
            self.drain_file(ctx, deadline, now);
            return;
        }
        let phase = self.front().map(|front| &front.phase);
        let wait_until = match phase {
            Some(FrontPhase::Http { head, .. }) if !head.is_empty() && self.discard() == 0 => {
                deadline
            }
            Some(FrontPhase::SockJsWaiting { .. }) if !again => {
                Some(deadline.unwrap_or(now + ctx.config.close_timeout))
            }
            Some(FrontPhase::SockJsWaiting { .. }) => deadline,
            _ => None,
        };
        match wait_until {
            Some(until) => self.timers.set_earliest(Timer::Shutdown, until),
            None => {
                self.transport_ended_sockjs();
                self.close_after_response();
            }
        }
    }
}
