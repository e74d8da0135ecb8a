//! The SockJS `websocket` transport over a WebSocket connection: a private session
//! (never in the shard's session table; ids may repeat) whose frames are the
//! WebSocket's text messages. [`SockJsWebSocket`] wraps the user's handler, so the
//! connection drives it like any WebSocket handler: the messages it receives go through
//! [`parse_websocket_message`] into the session, the session's events reach the user's
//! handler through [`run_session_events`], and the session's frames go out as text
//! messages. The connection ticks it every heartbeat delay (`Remote::Tick`), which dates
//! the session's clock: it reads none.

use std::time::Instant;

use super::run_session_events;
use crate::conn::{Conn, Outbox};
use crate::connection::ShardContext;
use crate::handler::{CloseReason, Handler, Message, Remote};
use crate::route::SockJsService;
use crate::sockjs::{parse_websocket_message, Flavour, ReceiverId, Session, SessionState, Timer};

/// The `websocket` transport: a private session whose frames are the WebSocket's text
/// messages, serving the user's handler (wrapped, so the connection drives it like any
/// WebSocket handler).
pub(super) struct SockJsWebSocket {
    session: Session,
    user: Box<dyn Handler>,
    /// The user handler's outbox (SockJS framing: messages are collected).
    out: Outbox,
    flavour: Flavour,
    /// The session's clock: its creation, then the last heartbeat tick (the connection
    /// ticks every heartbeat delay), so an idle session gets `h` each tick.
    now: Instant,
}

const WS_RECEIVER: ReceiverId = ReceiverId(0);

impl SockJsWebSocket {
    pub(super) fn new(
        user: Box<dyn Handler>,
        service: &SockJsService,
        flavour: Flavour,
        now: Instant,
        ctx: &ShardContext,
    ) -> SockJsWebSocket {
        SockJsWebSocket {
            session: Session::new(&service.options, now),
            user,
            out: Outbox::sockjs(ctx.config.out_limits),
            flavour,
            now,
        }
    }

    /// Drains the session's events into the user's handler, then writes its frames.
    fn run(&mut self, conn: &mut Conn<'_>) {
        run_session_events(
            &mut self.session,
            self.user.as_mut(),
            &mut self.out,
            conn.id,
            conn.ctx,
        );
        self.sync_pause(conn);
        self.flush(conn);
    }

    /// The socket is read while the user's handler takes messages: its pause (which
    /// holds the session's messages) also pauses the WebSocket under it.
    fn sync_pause(&self, conn: &mut Conn<'_>) {
        conn.out.read_paused = self.out.read_paused && self.session.state() == SessionState::Open;
    }

    fn flush(&mut self, conn: &mut Conn<'_>) {
        while let Some(frame) = self.session.next_frame(WS_RECEIVER, self.now) {
            conn.send_text(std::str::from_utf8(frame.bytes).unwrap_or_default());
            if frame.is_close {
                conn.close(1000, "Normal closure");
                break;
            }
        }
    }
}

impl Handler for SockJsWebSocket {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        self.session.attach(WS_RECEIVER, self.now);
        self.flush(conn);
        self.run(conn);
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        match parse_websocket_message(text) {
            Ok(messages) => {
                self.session.deliver(messages);
                self.run(conn);
            }
            Err(_) => {
                let (code, reason) = self.flavour.broken_framing_close();
                conn.close(code, reason);
            }
        }
    }

    fn on_close(&mut self, conn: &mut Conn<'_>, _reason: CloseReason) {
        self.session.detach(WS_RECEIVER, true, self.now);
        self.run(conn);
    }
}

impl SockJsWebSocket {
    /// What a handle or the heartbeat timer asked of the session (see [`Remote`]).
    pub(super) fn remote(&mut self, conn: &mut Conn<'_>, remote: Remote<'_>) {
        match remote {
            Remote::Text(text) => {
                self.session.send(text);
            }
            Remote::Tick(now) => {
                self.now = now;
                if self.session.on_timer(now) != Timer::Heartbeat {
                    return;
                }
            }
            Remote::Close(code, reason) => {
                self.session.close(code, reason);
                run_session_events(
                    &mut self.session,
                    self.user.as_mut(),
                    &mut self.out,
                    conn.id,
                    conn.ctx,
                );
                self.sync_pause(conn);
            }
            Remote::Pause(paused) => {
                self.out.read_paused = paused;
                self.run(conn);
                return;
            }
        }
        self.flush(conn);
    }
}
