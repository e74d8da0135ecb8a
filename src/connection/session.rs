//! The open session of a connection, whatever its framing: RFC 6455 or hixie frames
//! through one receive loop ([`Inbound::decode`] yields the same events for both; the
//! SockJS-over-WebSocket adapter is a handler on top), message delivery, the close
//! handshake and every [`CloseReason`], handler callbacks and what they ask for, and
//! `ConnHandle` posts. Its state is the [`Session`] in `Stage::Open`, which the upgrade
//! builds from the front, or which is built already open, with no request and no front
//! ([`Connection::open_with`], [`Connection::from_session`]). Timers: `timers.rs`; idle and shutdown: `lifecycle.rs`;
//! pauses: `pause.rs`.

use std::time::Instant;

use super::pause::input_paused;
use super::{Compression, Connection, Inbound, Session, ShardContext, Stage, Timer};
use crate::conn::{Conn, ConnId, Framing, SendStatus};
use crate::deflate_options::DeflateOptions;
use crate::handle::Outgoing;
use crate::handler::{CloseInitiator, CloseReason, Handler, Message, Remote};
use crate::handshake::DeflateAgreement;
use crate::metrics::Received;
use crate::proto::{
    CloseCode, Decoder, Event, HixieDecoder, HixieEvent, OpCode, ProtocolError, Role,
};
use crate::pubsub::hub::Publication;
use crate::pubsub::{Delivery, SlowSubscribers};

impl Inbound {
    /// Decodes from the front of `input` (unmasked in place for RFC 6455): the bytes
    /// used and the next event, if one is complete. A hixie text frame is an
    /// [`Event::Text`], its `0xFF 0x00` an [`Event::Close`] without a code.
    pub(super) fn decode<'a>(
        &'a mut self,
        input: &'a mut [u8],
    ) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
        match self {
            Inbound::Rfc6455(decoder) => decoder.decode(input),
            Inbound::Hixie(decoder) => {
                let (consumed, event) = decoder.decode(input)?;
                let event = event.map(|event| match event {
                    HixieEvent::Text(text) => Event::Text(text),
                    HixieEvent::Close => Event::Close(None),
                });
                Ok((consumed, event))
            }
        }
    }

    /// The capacity of the decoder's assembly buffer (see `budget.rs`).
    pub(super) fn buffer_capacity(&self) -> usize {
        match self {
            Inbound::Rfc6455(decoder) => decoder.buffer_capacity(),
            Inbound::Hixie(decoder) => decoder.buffer_capacity(),
        }
    }
}

/// Why a connection ended, as the handler's `on_close` hears it: every
/// [`CloseReason`] of an open connection is built here.
pub(super) fn close_reason(
    initiator: CloseInitiator,
    code: CloseCode,
    reason: impl Into<String>,
) -> CloseReason {
    CloseReason {
        code,
        reason: reason.into(),
        initiator,
    }
}

impl Session {
    /// An open session receiving through `inbound` into `handler`, quiet since `now`.
    pub(super) fn new(inbound: Inbound, handler: Box<dyn Handler>, now: Instant) -> Session {
        Session {
            inbound,
            handler,
            last_received: now,
            idle_pinged: false,
        }
    }
}

impl Connection {
    /// A connection already open, with no request: the handshake happened elsewhere
    /// (what an adapter for another HTTP server needs). Frames in `framing` go to
    /// `handler` from now on; its `on_open` runs here. With `deflate` (the agreement
    /// the handshake answered, and the route's options; RFC 6455 framing only), the
    /// session compresses and inflates as one upgraded by the front does. `None` for
    /// [`Framing::SockJs`], which is not a wire framing.
    // No caller in the server yet (the fuzz target and the tests use it).
    #[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
    pub(crate) fn open_with(
        id: ConnId,
        framing: Framing,
        handler: Box<dyn Handler>,
        deflate: Option<(DeflateAgreement, DeflateOptions)>,
        ctx: &ShardContext,
        now: Instant,
    ) -> Option<Connection> {
        let limits = ctx.config.limits;
        let mut compression = None;
        let inbound = match framing {
            Framing::Rfc6455 => {
                let mut decoder = Decoder::new(Role::Server, limits);
                if let Some((agreement, options)) = deflate {
                    decoder.stream_compressed();
                    compression = Some(Box::new(Compression::new(agreement, options, &ctx.codecs)));
                }
                Inbound::Rfc6455(decoder)
            }
            Framing::Hixie75 | Framing::Hixie76 => Inbound::Hixie(HixieDecoder::new(limits)),
            Framing::SockJs => return None,
        };
        let session = Session::new(inbound, handler, now);
        Some(Connection::from_session(
            id,
            framing,
            session,
            compression,
            ctx,
            now,
        ))
    }

    /// A connection whose session is `session`, already open in `framing` (not
    /// [`Framing::SockJs`]), compressing with `compression` when given (its decoder
    /// told so): no HTTP front is ever built. The handler's `on_open` runs here.
    pub(super) fn from_session(
        id: ConnId,
        framing: Framing,
        session: Session,
        compression: Option<Box<Compression>>,
        ctx: &ShardContext,
        now: Instant,
    ) -> Connection {
        let mut conn = Connection {
            id,
            stage: Stage::Ended,
            out: crate::conn::Outbox::new(ctx.config.out_limits),
            wants_close: false,
            timers: super::Timers::default(),
            refused: false,
            rare: None,
        };
        conn.out.framing = framing;
        conn.out.compression = compression;
        conn.start_session(session, ctx, now);
        conn
    }

    /// The handshake is complete: frames go to the handler from now on.
    pub(super) fn open(
        &mut self,
        inbound: Inbound,
        handler: Box<dyn Handler>,
        ctx: &ShardContext,
        now: Instant,
    ) {
        self.start_session(Session::new(inbound, handler, now), ctx, now);
    }

    /// The front (if any) is done: `session` takes over, and its handler hears
    /// `on_open`.
    fn start_session(&mut self, session: Session, ctx: &ShardContext, now: Instant) {
        self.stage = Stage::Open(session);
        ctx.metrics.websocket_open(true);
        self.timers.clear(Timer::Handshake);
        match self.sockjs_ws() {
            Some(heartbeat) => self.timers.set(Timer::Heartbeat, now + heartbeat),
            None => self.arm_idle(ctx),
        }
        self.with_handler(ctx, now, |handler, conn| handler.on_open(conn));
    }

    /// The receive loop of an open connection, for every framing: the decoder's events
    /// (RFC 6455 frames or hixie `0x00 … 0xFF` frames, see [`Inbound`]) go to the
    /// handler until the input is used up, the peer closes, something fails, or a pause
    /// holds the rest back.
    pub(super) fn receive_frames(&mut self, data: &mut [u8], ctx: &ShardContext, now: Instant) {
        let Stage::Open(Session {
            inbound, handler, ..
        }) = &mut self.stage
        else {
            return;
        };
        let mut conn = Conn {
            id: self.id,
            out: &mut self.out,
            ctx,
        };
        let id = self.id;
        let len = data.len();
        let mut pos = 0;
        let mut ended: Option<Result<Option<(CloseCode, String)>, ProtocolError>> = None;
        while ended.is_none() {
            let (consumed, event) = match inbound.decode(&mut data[pos..]) {
                Ok(step) => step,
                Err(error) => {
                    ended = Some(Err(error));
                    break;
                }
            };
            pos += consumed;
            match event {
                // After our close frame, the peer's data is discarded (RFC 6455 5.5.1).
                Some(Event::Text(text)) if !conn.out.closed => {
                    ctx.metrics.received(Received::Text, text.len());
                    let message = Message::Text(text);
                    if let Err(error) = guard(id, || handler.on_message(&mut conn, message)) {
                        ended = Some(Err(error));
                    }
                }
                Some(Event::Binary(bytes)) if !conn.out.closed => {
                    ctx.metrics.received(Received::Binary, bytes.len());
                    let message = Message::Binary(bytes);
                    if let Err(error) = guard(id, || handler.on_message(&mut conn, message)) {
                        ended = Some(Err(error));
                    }
                }
                Some(Event::Deflated { text, payload }) if !conn.out.closed => {
                    if let Err(error) = inflate_and_deliver(&mut conn, handler, text, payload) {
                        ended = Some(Err(error));
                    }
                }
                Some(Event::DeflatedPart { text, payload }) if !conn.out.closed => {
                    if let Err(error) = inflate_piece(&mut conn, text, payload) {
                        ended = Some(Err(error));
                    }
                }
                Some(Event::Ping(payload)) if !conn.out.closed => {
                    ctx.metrics.received(Received::Ping, payload.len());
                    conn.out.send_frame(OpCode::Pong, payload);
                }
                Some(Event::Pong(payload)) => {
                    ctx.metrics.received(Received::Pong, payload.len());
                    if let Err(error) = guard(id, || handler.on_pong(&mut conn, payload)) {
                        ended = Some(Err(error));
                    }
                }
                // A hixie close carries no code: reported as 1005 (no status).
                Some(Event::Close(frame)) => {
                    ctx.metrics.received(Received::Close, 0);
                    ended = Some(Ok(frame.map(|f| (f.code, f.reason.to_owned()))));
                }
                Some(_) => {}
                None if consumed == 0 || pos == len => break,
                None => {}
            }
            if let Some((code, reason)) = conn.out.overflowed {
                ended = Some(Err(ProtocolError { code, reason }));
            } else if input_paused(conn.out) {
                // Keep the rest, undecoded, for the resume.
                self.rare_mut().held.extend_from_slice(&data[pos..]);
                break;
            }
        }
        match ended {
            Some(Ok(peer_close)) => self.on_peer_close(peer_close, ctx),
            Some(Err(error)) => self.fail(error, ctx),
            None => self.after_callback(ctx, now),
        }
    }

    /// The peer's close frame arrived: answer it (unless we started), end the connection
    /// and close the socket first, as RFC 6455 asks of servers.
    pub(super) fn on_peer_close(
        &mut self,
        peer_close: Option<(CloseCode, String)>,
        ctx: &ShardContext,
    ) {
        let reason = self.local_close_reason().unwrap_or_else(|| {
            self.out
                .queue_close(peer_close.as_ref().map(|(code, _)| *code), "");
            let (code, reason) = peer_close.unwrap_or((CloseCode::NO_STATUS, String::new()));
            close_reason(CloseInitiator::Peer, code, reason)
        });
        self.end(reason, ctx);
    }

    /// The peer broke the protocol: send the close code and reason, then close.
    pub(super) fn fail(&mut self, error: ProtocolError, ctx: &ShardContext) {
        tracing::debug!(conn = %self.id, code = error.code.0, reason = error.reason, "failing connection");
        self.out.queue_close(Some(error.code), error.reason);
        let reason = close_reason(CloseInitiator::Local, error.code, error.reason);
        self.end(reason, ctx);
    }

    /// Our close frame's reason, taken, when we started the close handshake: the reason
    /// the handler hears whatever ends the connection after it.
    pub(super) fn local_close_reason(&mut self) -> Option<CloseReason> {
        let (code, reason) = self.take_local_close()?;
        Some(close_reason(CloseInitiator::Local, code, reason))
    }

    /// Tells the handler the connection ended and asks for the socket to be closed.
    pub(super) fn end(&mut self, reason: CloseReason, ctx: &ShardContext) {
        self.wants_close = true;
        self.timers.clear_all();
        if let Stage::Open(Session { mut handler, .. }) =
            std::mem::replace(&mut self.stage, Stage::Ended)
        {
            ctx.metrics.websocket_open(false);
            ctx.metrics.closed(reason.code.0);
            self.out.closed = true;
            let mut conn = Conn {
                id: self.id,
                out: &mut self.out,
                ctx,
            };
            // A panic here has nothing left to fail: guard only contains and logs it.
            let _ = guard(self.id, || handler.on_close(&mut conn, reason));
        }
    }

    /// Runs `f` with the handler, then applies what it asked for (a close, say).
    pub(super) fn with_handler(
        &mut self,
        ctx: &ShardContext,
        now: Instant,
        f: impl FnOnce(&mut dyn Handler, &mut Conn<'_>),
    ) {
        if let Stage::Open(Session { handler, .. }) = &mut self.stage {
            let mut conn = Conn {
                id: self.id,
                out: &mut self.out,
                ctx,
            };
            match guard(self.id, || f(handler.as_mut(), &mut conn)) {
                Ok(()) => {
                    self.after_callback(ctx, now);
                    // The callback may have resumed reading, or started a close.
                    self.pump_held(ctx, now);
                }
                Err(error) => self.fail(error, ctx),
            }
        }
    }

    /// A handler call may have started the close handshake: remember our close frame and
    /// arm the close timer. Or it went over the backpressure limit, which closes at once.
    pub(super) fn after_callback(&mut self, ctx: &ShardContext, now: Instant) {
        self.arm_hibernation(now);
        if self.out.overflowed.is_some() {
            self.end_if_overflowed(ctx);
            return;
        }
        if let Some((code, reason)) = self.out.close_started.take().map(|close| *close) {
            if self.out.framing == Framing::Hixie75 {
                // hixie-75 has no closing handshake: our 0xFF 0x00 is the end.
                self.end(close_reason(CloseInitiator::Local, code, reason), ctx);
                return;
            }
            let close = (code, reason);
            self.rare_mut().local_close = Some(close);
            // The peer's reply is what we wait for now: no more pings or heartbeats.
            self.timers.clear(Timer::Idle);
            self.timers.clear(Timer::Heartbeat);
            self.timers
                .set(Timer::Close, now + ctx.config.close_timeout);
        }
    }

    /// What a `ConnHandle` posted for this connection, applied on its shard: a
    /// message is encoded for the connection's framing (an RFC 6455 frame, a hixie
    /// `0x00 … 0xFF` frame, a SockJS message over the `websocket` transport) and held to
    /// the same limits as the handler's own sends; a binary message or a ping to a
    /// client that cannot carry it is dropped.
    pub(crate) fn posted(&mut self, message: Outgoing, ctx: &ShardContext, now: Instant) {
        match message {
            Outgoing::Close { code, reason } => self.close(code, &reason, ctx, now),
            Outgoing::PauseReading => self.set_read_paused(true, ctx, now),
            Outgoing::ResumeReading => self.set_read_paused(false, ctx, now),
            Outgoing::Text(text) if self.sockjs_ws().is_some() => {
                self.with_handler(ctx, now, |handler, conn| {
                    super::sockjs::remote(handler, conn, Remote::Text(&text));
                });
            }
            // The SockJS `websocket` transport carries text only.
            _ if self.sockjs_ws().is_some() => {}
            message => {
                if !self.is_open() {
                    return;
                }
                match self.out.send_posted(&message, &ctx.codecs) {
                    Some(SendStatus::Unsupported) => {
                        tracing::debug!(conn = %self.id, "dropping a non-text message for a hixie client");
                    }
                    Some(status) if matches!(message, Outgoing::Text(_) | Outgoing::Binary(_)) => {
                        let bytes = message.data().map_or(0, |(_, payload)| payload.len());
                        ctx.metrics.send_status(status, bytes);
                    }
                    _ => {}
                }
                self.arm_hibernation(now);
            }
        }
    }

    /// A message published to a topic this connection subscribes to (see
    /// `crate::pubsub`): the publication's shared frame for an RFC 6455 session (with
    /// `share`, a plaintext socket, a large one is not even copied), the text for hixie
    /// and the SockJS `websocket` adapter.
    pub(crate) fn deliver(
        &mut self,
        publication: &Publication,
        share: bool,
        ctx: &ShardContext,
        now: Instant,
    ) -> Delivery {
        if !self.is_open() || self.out.closed {
            return Delivery::NotOpen;
        }
        if self.sockjs_ws().is_some() {
            let Some(text) = publication.text() else {
                return Delivery::Unsupported;
            };
            // The adapter sends it as `a["…"]`: the text and at least 4 bytes of framing
            // (JSON escapes only add). Held to `max_buffered` like any published
            // message, with the slow-subscriber policy.
            if self.out.buffered() + text.len() + 4 > self.out.limits.max_buffered {
                if ctx.config.slow_subscribers != SlowSubscribers::Close {
                    return Delivery::Dropped;
                }
                let (code, reason) = crate::pubsub::SLOW_SUBSCRIBER;
                // Unsent messages give way to the session's close frame (when nothing
                // is half-written ahead of them).
                if self.out.in_flight == 0 && !self.out.partial {
                    self.out.clear_output();
                }
                self.with_handler(ctx, now, |handler, conn| {
                    super::sockjs::remote(handler, conn, Remote::Close(code.0, reason));
                });
                return Delivery::Closed;
            }
            let before = self.out.buffered();
            self.with_handler(ctx, now, |handler, conn| {
                super::sockjs::remote(handler, conn, Remote::Text(text));
            });
            // The adapter's send is dropped when an escaped text does not fit after all.
            return if self.out.buffered() > before {
                Delivery::Queued
            } else {
                Delivery::Dropped
            };
        }
        let close_slow = ctx.config.slow_subscribers == SlowSubscribers::Close;
        let status = self
            .out
            .send_published(publication, share, close_slow, &ctx.codecs);
        self.arm_hibernation(now);
        ctx.metrics.send_status(status, publication.payload().len());
        match status {
            SendStatus::Queued | SendStatus::Backpressure => Delivery::Queued,
            SendStatus::Unsupported => Delivery::Unsupported,
            SendStatus::Dropped if self.out.overflowed.is_some() => Delivery::Closed,
            SendStatus::Dropped => Delivery::Dropped,
        }
    }

    /// A close requested from elsewhere (a `ConnHandle`).
    pub(crate) fn close(
        &mut self,
        code: CloseCode,
        reason: &str,
        ctx: &ShardContext,
        now: Instant,
    ) {
        if self.sockjs_ws().is_some() {
            self.with_handler(ctx, now, |handler, conn| {
                super::sockjs::remote(handler, conn, Remote::Close(code.0, reason));
            });
            return;
        }
        self.with_handler(ctx, now, |_, conn| conn.close(code.0, reason));
    }

    /// The SockJS `websocket` adaptor's heartbeat: tick it, then wait again unless it
    /// ended or started a close.
    pub(super) fn heartbeat(&mut self, ctx: &ShardContext, now: Instant) {
        let Some(heartbeat) = self.sockjs_ws() else {
            return;
        };
        self.with_handler(ctx, now, |handler, conn| {
            super::sockjs::remote(handler, conn, Remote::Tick(now));
        });
        if self.is_open() && self.timers.get(Timer::Close).is_none() {
            self.timers.set(Timer::Heartbeat, now + heartbeat);
        }
    }
}

/// A compressed message (permessage-deflate): inflated into the shard's scratch
/// buffer, checked as UTF-8 when it is text, handed to the handler, and the buffer
/// given back.
fn inflate_and_deliver(
    conn: &mut Conn<'_>,
    handler: &mut Box<dyn Handler>,
    text: bool,
    payload: &[u8],
) -> Result<(), ProtocolError> {
    let ctx = conn.ctx;
    let Some(compression) = conn.out.compression.as_deref_mut() else {
        // The decoder accepts RSV1 only where the extension was agreed.
        return Err(ProtocolError::protocol("reserved bits set"));
    };
    let max_message = ctx.config.limits.max_message_size;
    let plain = compression.inflate(payload, text, max_message, &ctx.codecs)?;
    // (The pieces before the last counted their wire bytes as they came.)
    ctx.codecs.count(|t| {
        t.in_wire += payload.len() as u64;
        t.in_plain += plain.len() as u64;
    });
    let kind = if text {
        Received::Text
    } else {
        Received::Binary
    };
    ctx.metrics.received(kind, plain.len());
    let id = conn.id;
    let result = if text {
        match simdutf8::basic::from_utf8(&plain) {
            Ok(text) => guard(id, || handler.on_message(conn, Message::Text(text))),
            Err(_) => Err(ProtocolError::invalid_utf8("text is not UTF-8")),
        }
    } else {
        guard(id, || handler.on_message(conn, Message::Binary(&plain)))
    };
    ctx.codecs.give_back_scratch(plain);
    result
}

/// A piece of a compressed message arriving in pieces: inflated into the connection's
/// buffer for that message, its text checked as it grows.
fn inflate_piece(conn: &mut Conn<'_>, text: bool, payload: &[u8]) -> Result<(), ProtocolError> {
    let max_message = conn.ctx.config.limits.max_message_size;
    let Some(compression) = conn.out.compression.as_deref_mut() else {
        return Err(ProtocolError::protocol("reserved bits set"));
    };
    compression.inflate_piece(payload, text, false, max_message)?;
    conn.ctx.codecs.count(|t| t.in_wire += payload.len() as u64);
    Ok(())
}

/// What a peer is told when its handler panicked.
const HANDLER_PANICKED: ProtocolError = ProtocolError {
    code: CloseCode::INTERNAL_ERROR,
    reason: "internal server error",
};

/// Runs one handler callback and contains a panic to this connection: it is logged and
/// the connection fails with 1011, while the shard and its other connections carry on.
/// (The handler is not used again except for `on_close`, so a half-updated handler state
/// is never observed by a later message.)
pub(crate) fn guard(id: ConnId, callback: impl FnOnce()) -> Result<(), ProtocolError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(callback)).map_err(|_| {
        tracing::error!(conn = %id, "handler panicked; closing the connection with 1011");
        HANDLER_PANICKED
    })
}
