//! SockJS on top of [`Connection`] and the shard, following the integration guide of
//! [`crate::sockjs`]:
//!
//! - the connection side ([`Connection::serve_sockjs`]) answers the plain pages
//!   (greeting, `/info`, iframe, preflights, errors) into its outbox, upgrades the
//!   `websocket` and raw `/websocket` endpoints, and turns session requests (sends and
//!   receiving requests) into [`SockJsRequest`]s for the session's owner shard, then
//!   waits for the [`SockJsReply`] before it reads its next request;
//! - the owner side ([`SessionTable`], one per shard) holds the sessions that hash to
//!   this shard ([`owner_shard`]) with their handlers, receivers and timers, and
//!   answers with transport-encoded bytes that the connection's shard copies out as
//!   they are.
//!
//! When the owner is the connection's own shard the same messages are handled in place
//! (no mailbox); otherwise they travel as mailbox commands.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use slab::Slab;

use super::budget::{budget_close_for, Held};
use super::{guard, Connection, Phase, ShardContext};
use crate::conn::{Conn, ConnId, OutLimits, Outbox};
use crate::handle::{Outgoing, Post};
use crate::handler::{CloseInitiator, CloseReason, Handler, Message, Remote};
use crate::handshake;
use crate::http::Request;
use crate::proto::CloseCode;
use crate::route::{Accept, Reject, SockJsService, UpgradeRequest, WebSocketOptions};
use crate::runtime::core::Token;
use crate::runtime::shard::budget::Holder;
use crate::sockjs::{
    parse_client_messages, parse_jsonp_send, parse_websocket_message, route, websocket_error_text,
    write_bad_request, write_callback_error, write_greeting, write_iframe_page, write_info,
    write_jsonp_send_ok, write_method_not_allowed, write_not_found, write_preflight,
    write_send_error, write_too_large, write_xhr_send_ok, Attached, CloseCause, Endpoint, Flavour,
    Flow, HttpReceiver, ReceiverId, ReceiverKind, Session, SessionEvent, SessionState, Timer,
    Transport, ANOTHER_CONNECTION_STILL_OPEN,
};

/// A session's key: the service's index and the session id from the URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SessionKey {
    pub(crate) service: u32,
    pub(crate) id: String,
}

/// The shard that owns the session `id` of service `service`, out of `shards`: a fixed
/// hash (the same in every thread of the process), so every shard agrees.
pub(crate) fn owner_shard(service: u32, id: &str, shards: usize) -> usize {
    // `DefaultHasher::new` is the same in every thread of a process (fixed keys).
    let mut hasher = std::hash::DefaultHasher::new();
    service.hash(&mut hasher);
    id.hash(&mut hasher);
    (hasher.finish() % shards.max(1) as u64) as usize
}

/// A connection's request to the session's owner.
#[derive(Debug)]
pub(crate) struct SockJsRequest {
    pub(crate) key: SessionKey,
    /// The shard and token of the connection that asks (the replies go there).
    pub(crate) from_shard: u32,
    pub(crate) from: Token,
    pub(crate) op: SockJsOp,
}

/// What a connection asks of a session.
#[derive(Debug)]
pub(crate) enum SockJsOp {
    /// `xhr_send` / `jsonp_send`: deliver these messages (reply [`SockJsReply::Sent`]).
    Send(Vec<String>),
    /// A receiving request: attach this receiver (replies [`SockJsReply::Output`] until
    /// one with `end`).
    Attach {
        receiver: ReceiverId,
        rx: HttpReceiver,
    },
    /// The receiving request's connection went away before its response ended.
    Detach { receiver: ReceiverId },
}

/// The owner's answer to a connection.
#[derive(Debug)]
pub(crate) enum SockJsReply {
    /// The send was delivered (`found`) or the session does not exist (404).
    Sent { found: bool },
    /// Transport-encoded bytes of a receiving response; `end`: the response is complete.
    Output {
        receiver: ReceiverId,
        bytes: Vec<u8>,
        end: bool,
    },
}

/// What a connection waits for while a session request is with the owner.
#[derive(Debug)]
pub(super) enum Wait {
    Send {
        /// The success answer, written when the owner found the session.
        ok: Vec<u8>,
        keep_alive: bool,
    },
    Receive {
        key: SessionKey,
        receiver: ReceiverId,
        owner: usize,
        keep_alive: bool,
    },
}

static WALL_BASE: OnceLock<(Instant, SystemTime)> = OnceLock::new();

/// Records one reading of both clocks (by the runtime, at shard start), so the
/// connection can date `Expires` headers from its monotonic `now` without reading a
/// clock.
pub(crate) fn init_wall_clock(now: Instant, wall: SystemTime) {
    let _ = WALL_BASE.set((now, wall));
}

fn wall(now: Instant) -> SystemTime {
    match WALL_BASE.get() {
        Some(&(base, wall)) => wall + now.saturating_duration_since(base),
        None => SystemTime::UNIX_EPOCH,
    }
}

/// The most bytes of a refused SockJS body that are read and dropped to keep the
/// connection; past it the connection closes after the 413.
const MAX_DISCARD: usize = 1024 * 1024;

/// The handed-over bytes a waiting connection buffers at most (a client that
/// pipelines behind a streaming request).
const MAX_BUFFERED_WHILE_WAITING: usize = 64 * 1024;

impl Connection {
    /// Serves one request for a SockJS service (`rest`: the path after its prefix).
    pub(super) fn serve_sockjs(
        &mut self,
        request: &Request<'_>,
        service: &Arc<SockJsService>,
        rest: &str,
        ctx: &ShardContext,
        now: Instant,
    ) {
        let options = &service.options;
        // The pages never say `Connection: keep-alive`, which HTTP/1.0 would need.
        let keep_alive = request.keep_alive() && request.version_minor() >= 1 && !self.draining;
        let close = !keep_alive;
        let out = &mut self.out.queued;
        match route(request.method(), rest, options) {
            Endpoint::Greeting => write_greeting(out, close),
            Endpoint::Info => {
                let entropy = self.next_entropy();
                write_info(&mut self.out.queued, request, options, entropy, close);
            }
            Endpoint::Iframe => {
                let (page, etag) = &service.iframe;
                write_iframe_page(out, request, page, etag, wall(now), close);
            }
            Endpoint::Preflight { allow_methods } => {
                write_preflight(out, request, options, allow_methods, wall(now), close);
            }
            Endpoint::MethodNotAllowed { allow } => write_method_not_allowed(out, allow, close),
            Endpoint::NotFound => write_not_found(out, close),
            Endpoint::RawWebSocket => {
                self.sockjs_upgrade(request, service, true, keep_alive, ctx, now);
                return;
            }
            Endpoint::Session {
                session_id,
                transport,
                ..
            } => {
                let key = SessionKey {
                    service: service.index,
                    id: session_id.to_owned(),
                };
                match transport {
                    Transport::WebSocket => {
                        self.sockjs_upgrade(request, service, false, keep_alive, ctx, now);
                        return;
                    }
                    Transport::XhrSend | Transport::JsonpSend => {
                        let parsed = if transport == Transport::XhrSend {
                            parse_client_messages(request.body())
                        } else {
                            parse_jsonp_send(request.body(), request.header_str("content-type"))
                        };
                        match parsed {
                            Err(error) => {
                                write_send_error(out, request, options, transport, error, close)
                            }
                            Ok(messages) => {
                                let mut ok = Vec::new();
                                if transport == Transport::XhrSend {
                                    write_xhr_send_ok(&mut ok, request, options, close);
                                } else {
                                    write_jsonp_send_ok(&mut ok, request, options, close);
                                }
                                let wait = Wait::Send { ok, keep_alive };
                                self.ask_owner(key, SockJsOp::Send(messages), wait, ctx);
                                return;
                            }
                        }
                    }
                    _ => match ReceiverKind::from_request(transport, request, options) {
                        Err(error) => write_callback_error(out, request, options, error, close),
                        Ok(None) => write_not_found(out, close),
                        Ok(Some(kind)) => {
                            let rx = HttpReceiver::new(kind, request.version_minor() == 0, options);
                            rx.write_head(out, request, options);
                            let keep_alive = keep_alive && rx.keep_alive();
                            let receiver = self.receiver_id();
                            let owner = owner_shard(key.service, &key.id, ctx.registry.shards());
                            let wait = Wait::Receive {
                                key: key.clone(),
                                receiver,
                                owner,
                                keep_alive,
                            };
                            self.ask_owner(key, SockJsOp::Attach { receiver, rx }, wait, ctx);
                            return;
                        }
                    },
                }
            }
        }
        self.finish_http(keep_alive, ctx, now);
    }

    /// A request whose body (`length` bytes, `sent` of them already here) is over the
    /// service's `max_body_bytes`: answered 413 at once, before the body is read. A
    /// body of at most [`MAX_DISCARD`] more bytes is read and dropped so the connection
    /// stays usable; a larger one closes the connection after the answer. The session
    /// is not touched.
    pub(super) fn refuse_sockjs_body(
        &mut self,
        request: &Request<'_>,
        service: &SockJsService,
        length: usize,
        sent: usize,
        ctx: &ShardContext,
        now: Instant,
    ) {
        tracing::debug!(conn = %self.id, length, limit = service.options.max_body_bytes, "SockJS request body too large");
        let rest = length.saturating_sub(sent);
        let keep_alive =
            request.keep_alive() && request.version_minor() >= 1 && rest <= MAX_DISCARD;
        let out = &mut self.out.queued;
        write_too_large(out, request, &service.options, length, !keep_alive);
        self.finish_http(keep_alive, ctx, now);
        if keep_alive {
            self.rare_mut().discard = rest;
        }
    }

    /// Posts `op` for the owner of `key` (the shard takes it from
    /// `sockjs_requests`) and waits for the reply.
    fn ask_owner(&mut self, key: SessionKey, op: SockJsOp, wait: Wait, ctx: &ShardContext) {
        let owner = owner_shard(key.service, &key.id, ctx.registry.shards());
        let request = SockJsRequest {
            key,
            from_shard: ctx.shard,
            from: self.id.token,
            op,
        };
        self.rare_mut().sockjs_requests.push((owner, request));
        self.deadline = None;
        self.phase = Phase::SockJsWaiting {
            wait,
            buffered: Vec::new(),
            peer: self.peer(),
        };
    }

    /// A fresh `/info` entropy (xorshift32 over the seed the shard gave).
    fn next_entropy(&mut self) -> u32 {
        let mut x = self.seed | 1;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.seed = x;
        x
    }

    /// A receiver id unique among the connections of every shard.
    fn receiver_id(&self) -> ReceiverId {
        let token = self.id.token;
        ReceiverId(
            (u64::from(self.id.shard) << 56)
                | (u64::from(token.generation() & 0xff_ffff) << 32)
                | token.index() as u64,
        )
    }

    /// Bytes that arrived while waiting for the owner: kept for after the reply.
    pub(super) fn receive_while_waiting(&mut self, data: &[u8]) {
        if let Phase::SockJsWaiting { buffered, .. } = &mut self.phase {
            if buffered.len() + data.len() > MAX_BUFFERED_WHILE_WAITING {
                tracing::debug!(conn = %self.id, "too much pipelined input behind a SockJS request");
                self.transport_ended_sockjs();
                self.close_after_response();
                return;
            }
            buffered.extend_from_slice(data);
        }
    }

    /// The owner answered.
    pub(crate) fn sockjs_reply(&mut self, reply: SockJsReply, ctx: &ShardContext, now: Instant) {
        let Phase::SockJsWaiting { wait, .. } = &self.phase else {
            return;
        };
        match (wait, reply) {
            (Wait::Send { .. }, SockJsReply::Sent { found }) => {
                let phase = std::mem::replace(&mut self.phase, Phase::Ended);
                let Phase::SockJsWaiting {
                    wait: Wait::Send { ok, keep_alive },
                    buffered,
                    peer,
                } = phase
                else {
                    return;
                };
                if found {
                    self.out.queued.extend_from_slice(&ok);
                } else {
                    write_not_found(&mut self.out.queued, !keep_alive);
                }
                self.resume_http(keep_alive, buffered, peer, ctx, now);
            }
            (
                Wait::Receive { receiver, .. },
                SockJsReply::Output {
                    receiver: to,
                    bytes,
                    end,
                },
            ) if *receiver == to => {
                self.out.queued.extend_from_slice(&bytes);
                if end {
                    let phase = std::mem::replace(&mut self.phase, Phase::Ended);
                    if let Phase::SockJsWaiting {
                        wait: Wait::Receive { keep_alive, .. },
                        buffered,
                        peer,
                    } = phase
                    {
                        self.resume_http(keep_alive, buffered, peer, ctx, now);
                    }
                }
            }
            _ => {}
        }
    }

    fn resume_http(
        &mut self,
        keep_alive: bool,
        mut buffered: Vec<u8>,
        peer: Option<std::net::SocketAddr>,
        ctx: &ShardContext,
        now: Instant,
    ) {
        self.finish_http(keep_alive, ctx, now);
        if let Phase::Http { peer: slot, .. } = &mut self.phase {
            *slot = peer;
        }
        if keep_alive && !buffered.is_empty() {
            self.receive(&mut buffered, ctx, now);
        }
    }

    /// The connection goes away: a receiving request still waiting tells the owner (the
    /// session closes with `c[1002,"Connection interrupted"]`).
    pub(super) fn transport_ended_sockjs(&mut self) {
        if let Phase::SockJsWaiting {
            wait:
                Wait::Receive {
                    key,
                    receiver,
                    owner,
                    ..
                },
            ..
        } = &self.phase
        {
            let request = SockJsRequest {
                key: key.clone(),
                from_shard: self.id.shard,
                from: self.id.token,
                op: SockJsOp::Detach {
                    receiver: *receiver,
                },
            };
            let owner = *owner;
            self.rare_mut().sockjs_requests.push((owner, request));
            self.phase = Phase::Ended;
        }
    }

    /// The `websocket` transport (`raw = false`) or the raw `/websocket` endpoint.
    fn sockjs_upgrade(
        &mut self,
        request: &Request<'_>,
        service: &Arc<SockJsService>,
        raw: bool,
        keep_alive: bool,
        ctx: &ShardContext,
        now: Instant,
    ) {
        let options = &service.options;
        let version = request.header_str("Sec-WebSocket-Version");
        let upgradable = handshake::is_websocket_request(request)
            && request.header_has_token("connection", "upgrade")
            && options.flavour.accepts_websocket_version(raw, version);
        if !upgradable {
            let text = websocket_error_text(request, options);
            write_bad_request(&mut self.out.queued, text, !keep_alive);
            self.finish_http(keep_alive, ctx, now);
            return;
        }
        let flavour = options.flavour;
        let hook = |_: &UpgradeRequest<'_, '_>| -> Result<Accept, Reject> {
            let user = (service.factory)();
            let handler: Box<dyn Handler> = if raw {
                user
            } else {
                Box::new(SockJsWebSocket::new(user, service, flavour, now, ctx))
            };
            Ok(Accept {
                handler,
                protocol: None,
                headers: Vec::new(),
            })
        };
        if !raw {
            self.rare_mut().sockjs_ws = Some(options.heartbeat_delay);
        }
        // SockJS answers every origin (its CORS rules), its WebSocket transports too.
        let any_origin = WebSocketOptions::default().allowed_origins(handshake::OriginPolicy::Any);
        self.upgrade(request, &hook, &any_origin, ctx, now);
    }
}

/// The `websocket` transport: a private session whose frames are the WebSocket's text
/// messages, serving the user's handler (wrapped, so the connection drives it like any
/// WebSocket handler).
struct SockJsWebSocket {
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
    fn new(
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
        run_events(
            &mut self.session,
            self.user.as_mut(),
            &mut self.out,
            conn.id,
            conn.poster,
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

    fn on_remote(&mut self, conn: &mut Conn<'_>, remote: Remote<'_>) -> bool {
        match remote {
            Remote::Text(text) => {
                self.session.send(text);
            }
            Remote::Tick(now) => {
                self.now = now;
                if self.session.on_timer(now) != Timer::Heartbeat {
                    return true;
                }
            }
            Remote::Close(code, reason) => {
                self.session.close(code, reason);
                run_events(
                    &mut self.session,
                    self.user.as_mut(),
                    &mut self.out,
                    conn.id,
                    conn.poster,
                );
                self.sync_pause(conn);
            }
            Remote::Pause(paused) => {
                self.out.read_paused = paused;
                self.run(conn);
                return true;
            }
        }
        self.flush(conn);
        true
    }
}

/// The text of a message a `ConnHandle` posted to a session, which goes out as a
/// SockJS message (`a["..."]`); `None` for what SockJS cannot carry (binary messages,
/// pings), which is dropped, and for the commands that are not messages.
fn posted_text(message: &Outgoing) -> Option<&str> {
    match message {
        Outgoing::Text(text) => Some(text),
        _ => None,
    }
}

/// Drains a session's events into its handler ([`SessionEvent::Opened`] → `on_open`,
/// messages → `on_message`, [`SessionEvent::Closed`] → `on_close`), handing what the
/// handler sent or closed back to the session after each call. While the handler has
/// paused reading, an open session keeps its events for later; a closing one delivers
/// them (the close is not held up by a pause).
fn run_events(
    session: &mut Session,
    handler: &mut dyn Handler,
    out: &mut Outbox,
    id: ConnId,
    poster: &Arc<dyn Post>,
) {
    loop {
        if out.read_paused && !out.closed && session.state() == SessionState::Open {
            break;
        }
        let Some(event) = session.poll_event() else {
            break;
        };
        out.in_flight = session.pending_bytes();
        let mut conn = Conn {
            id,
            out: &mut *out,
            poster,
        };
        let result = match event {
            SessionEvent::Opened => guard(id, || handler.on_open(&mut conn)),
            SessionEvent::Message(text) => {
                guard(id, || handler.on_message(&mut conn, Message::Text(&text)))
            }
            SessionEvent::Closed(cause) => {
                conn.out.closed = true;
                let reason = match cause {
                    CloseCause::Closed { code, reason } => CloseReason {
                        code: CloseCode(code),
                        reason,
                        initiator: CloseInitiator::Local,
                    },
                    CloseCause::Interrupted => CloseReason {
                        code: CloseCode(1002),
                        reason: "Connection interrupted".to_owned(),
                        initiator: CloseInitiator::Transport,
                    },
                    CloseCause::TimedOut => CloseReason {
                        code: CloseCode::ABNORMAL,
                        reason: "session timed out".to_owned(),
                        initiator: CloseInitiator::Transport,
                    },
                };
                guard(id, || handler.on_close(&mut conn, reason))
            }
        };
        for message in out.messages.drain(..) {
            session.send(&message);
        }
        if let Some((code, reason)) = out.close_started.take().map(|close| *close) {
            session.close(code.0, &reason);
        }
        if result.is_err() {
            session.close(1011, "internal server error");
        }
    }
}

/// Session tokens have this bit set in their index, so the shard tells them from
/// connection tokens (`ConnId`s of sessions, timers, `ConnHandle` commands).
const SESSION_BIT: u32 = 1 << 31;

/// True for the token of a session (not a connection).
pub(crate) fn is_session_token(token: Token) -> bool {
    token.index() as u32 & SESSION_BIT != 0
}

/// An attached receiving request.
struct Receiver {
    id: ReceiverId,
    rx: HttpReceiver,
    shard: u32,
    token: Token,
}

struct Slot {
    key: SessionKey,
    generation: u32,
    session: Session,
    handler: Box<dyn Handler>,
    out: Outbox,
    receiver: Option<Receiver>,
    /// A second receiving request, held until `.1` before it is answered 2010: the
    /// attached receiver's abort may be on its way on another socket (often another
    /// shard), and if it lands first this request gets the session's close instead.
    contender: Option<(Receiver, Instant)>,
    armed: Option<Instant>,
    /// Send requests (their connections' shard and token) not answered yet because
    /// the handler paused reading with their messages still waiting: the client's
    /// next send waits behind the answer, as a paused socket holds back a WebSocket.
    held_sends: Vec<(u32, Token)>,
    /// Bytes of the messages delivered to the session since its event queue was last
    /// found empty: an upper bound of what waits in it (a paused handler's input).
    inbox: usize,
    /// The bytes this session counts in [`SessionTable::held`] (the memory budget).
    counted: usize,
}

impl Slot {
    /// True while the handler paused reading and messages wait in the session.
    fn holds_input(&self) -> bool {
        self.out.read_paused && !self.out.closed && self.session.has_events()
    }

    /// Answers the held send requests (the session takes input again, or is gone).
    fn release_sends(&mut self, fx: &mut Effects) {
        for (shard, token) in self.held_sends.drain(..) {
            fx.replies
                .push((shard, token, SockJsReply::Sent { found: true }));
        }
    }
}

/// How long a second receiving request waits for a possible abort of the first.
const CONTENDER_HOLD: std::time::Duration = std::time::Duration::from_millis(25);

/// What the shard must do after a session table call.
#[derive(Default)]
pub(crate) struct Effects {
    /// Replies for connections: (their shard, their token, the reply).
    pub(crate) replies: Vec<(u32, Token, SockJsReply)>,
    /// Timers to arm: (deadline, session token).
    pub(crate) timers: Vec<(Instant, Token)>,
}

/// The sessions a shard owns.
pub(crate) struct SessionTable {
    slots: Slab<Slot>,
    /// The bytes the sessions hold for their clients (queued output, input waiting for
    /// a paused handler): the sum of the slots' `counted`, for the shard's memory
    /// budget.
    held: usize,
    by_key: HashMap<SessionKey, usize>,
    next_generation: u32,
    limits: OutLimits,
    /// The server shut the sessions down: a receiving request that arrives later gets
    /// [`SHUTTING_DOWN`] and no session is made.
    shut: bool,
}

/// The close frame of every session at shutdown.
const SHUTTING_DOWN: &[u8] = br#"c[1001,"Server shutting down"]"#;

impl SessionTable {
    pub(crate) fn new(limits: OutLimits) -> SessionTable {
        SessionTable {
            slots: Slab::new(),
            held: 0,
            by_key: HashMap::new(),
            next_generation: 0,
            limits,
            shut: false,
        }
    }

    fn token(index: usize, generation: u32) -> Token {
        Token::new(index as u32 | SESSION_BIT, generation)
    }

    fn slot_of(&self, token: Token) -> Option<usize> {
        let index = (token.index() as u32 & !SESSION_BIT) as usize;
        self.slots
            .get(index)
            .filter(|s| s.generation == token.generation())
            .map(|_| index)
    }

    fn create(
        &mut self,
        key: SessionKey,
        service: &SockJsService,
        now: Instant,
        fx: &mut Effects,
    ) -> usize {
        if let Some(old) = self.by_key.remove(&key) {
            let mut old = self.slots.remove(old);
            self.held = self.held.saturating_sub(old.counted);
            old.release_sends(fx);
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let index = self.slots.insert(Slot {
            key: key.clone(),
            generation,
            session: Session::new(&service.options, now),
            handler: (service.factory)(),
            out: Outbox::sockjs(self.limits),
            receiver: None,
            contender: None,
            armed: None,
            held_sends: Vec::new(),
            inbox: 0,
            counted: 0,
        });
        self.by_key.insert(key, index);
        index
    }

    /// Runs a connection's request.
    pub(crate) fn handle(
        &mut self,
        request: SockJsRequest,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        let SockJsRequest {
            key,
            from_shard,
            from,
            op,
        } = request;
        let Some(service) = ctx.routes.sockjs_service(key.service).cloned() else {
            return;
        };
        let existing = self
            .by_key
            .get(&key)
            .copied()
            .filter(|&i| !self.slots[i].session.is_expired());
        let index = match op {
            SockJsOp::Send(messages) => {
                let Some(index) = existing else {
                    let found = false;
                    fx.replies
                        .push((from_shard, from, SockJsReply::Sent { found }));
                    return;
                };
                let slot = &mut self.slots[index];
                let bytes = messages
                    .iter()
                    .map(String::len)
                    .fold(0, usize::saturating_add);
                if slot.session.deliver(messages) {
                    slot.inbox = slot.inbox.saturating_add(bytes);
                }
                slot.held_sends.push((from_shard, from));
                self.run_and_flush(index, ctx, now, fx);
                index
            }
            SockJsOp::Attach { receiver, rx } if self.shut => {
                // Handed over before this shard's shutdown, arrived after it.
                let late = Receiver {
                    id: receiver,
                    rx,
                    shard: from_shard,
                    token: from,
                };
                answer(late, SHUTTING_DOWN, fx);
                return;
            }
            SockJsOp::Attach { receiver, rx } => {
                let index = match existing {
                    Some(index) => index,
                    None => self.create(key, &service, now, fx),
                };
                let slot = &mut self.slots[index];
                if slot.session.attach(receiver, now) == Attached::AnotherConnectionStillOpen {
                    let contender = Receiver {
                        id: receiver,
                        rx,
                        shard: from_shard,
                        token: from,
                    };
                    let until = now + CONTENDER_HOLD;
                    if let Some((older, _)) = slot.contender.replace((contender, until)) {
                        refuse(older, fx);
                    }
                    fx.timers.push((until, Self::token(index, slot.generation)));
                    return;
                }
                slot.receiver = Some(Receiver {
                    id: receiver,
                    rx,
                    shard: from_shard,
                    token: from,
                });
                self.flush(index, now, fx);
                self.run_and_flush(index, ctx, now, fx);
                index
            }
            SockJsOp::Detach { receiver } => {
                let Some(index) = existing else {
                    return;
                };
                let slot = &mut self.slots[index];
                if slot
                    .contender
                    .as_ref()
                    .is_some_and(|(c, _)| c.id == receiver)
                {
                    // The held request's own connection went away.
                    slot.contender = None;
                    return;
                }
                slot.session.detach(receiver, true, now);
                if slot.receiver.as_ref().is_some_and(|r| r.id == receiver) {
                    slot.receiver = None;
                }
                self.run_and_flush(index, ctx, now, fx);
                self.promote_contender(index, ctx, now, fx);
                index
            }
        };
        self.arm(index, fx);
    }

    fn run_and_flush(&mut self, index: usize, ctx: &ShardContext, now: Instant, fx: &mut Effects) {
        let slot = &mut self.slots[index];
        let id = ConnId {
            shard: ctx.shard,
            token: Self::token(index, slot.generation),
        };
        run_events(
            &mut slot.session,
            slot.handler.as_mut(),
            &mut slot.out,
            id,
            &ctx.poster,
        );
        if !slot.holds_input() {
            slot.release_sends(fx);
        }
        self.flush(index, now, fx);
    }

    /// Writes the session's frames to its attached receiver, if any.
    fn flush(&mut self, index: usize, now: Instant, fx: &mut Effects) {
        let slot = &mut self.slots[index];
        let Some(receiver) = &mut slot.receiver else {
            return;
        };
        let mut bytes = Vec::new();
        let mut end = false;
        while let Some(frame) = slot.session.next_frame(receiver.id, now) {
            if receiver.rx.write_frame(&mut bytes, frame.bytes) == Flow::End {
                end = true;
                break;
            }
        }
        if end {
            slot.session.detach(receiver.id, false, now);
        }
        if !bytes.is_empty() || end {
            let output = SockJsReply::Output {
                receiver: receiver.id,
                bytes,
                end,
            };
            fx.replies.push((receiver.shard, receiver.token, output));
        }
        if end {
            slot.receiver = None;
        }
    }

    /// The attached receiver is gone: a held second request takes its place (it gets
    /// the session's close frame if the first one's abort closed the session).
    fn promote_contender(
        &mut self,
        index: usize,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        let slot = &mut self.slots[index];
        if slot.receiver.is_some() {
            return;
        }
        let Some((contender, _)) = slot.contender.take() else {
            return;
        };
        if slot.session.attach(contender.id, now) == Attached::AnotherConnectionStillOpen {
            refuse(contender, fx);
            return;
        }
        slot.receiver = Some(contender);
        self.flush(index, now, fx);
        self.run_and_flush(index, ctx, now, fx);
    }

    /// Arms the session's timer and recounts what it holds (every call that changes a
    /// session ends here).
    fn arm(&mut self, index: usize, fx: &mut Effects) {
        self.recount(index);
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if let Some(deadline) = slot.session.deadline() {
            if slot.armed != Some(deadline) {
                slot.armed = Some(deadline);
                fx.timers
                    .push((deadline, Self::token(index, slot.generation)));
            }
        }
    }

    /// A session's timer fired: a heartbeat, or its expiry.
    pub(crate) fn on_timer(
        &mut self,
        token: Token,
        deadline: Instant,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        let Some(index) = self.slot_of(token) else {
            return;
        };
        let slot = &mut self.slots[index];
        if slot.armed == Some(deadline) {
            slot.armed = None;
        }
        if slot
            .contender
            .as_ref()
            .is_some_and(|(_, until)| *until <= now)
        {
            if slot.receiver.is_some() {
                if let Some((contender, _)) = slot.contender.take() {
                    refuse(contender, fx);
                }
            } else {
                self.promote_contender(index, ctx, now, fx);
            }
        }
        let slot = &mut self.slots[index];
        match slot.session.on_timer(now) {
            Timer::Idle => {}
            Timer::Heartbeat => self.flush(index, now, fx),
            Timer::Expired => {
                self.run_and_flush(index, ctx, now, fx);
                let slot = self.slots.remove(index);
                self.held = self.held.saturating_sub(slot.counted);
                self.by_key.remove(&slot.key);
                return;
            }
        }
        self.arm(index, fx);
    }

    /// What a `ConnHandle` posted for a session: a text message goes out as a SockJS
    /// message, binary messages and pings are dropped (SockJS carries text only), a
    /// close, pause or resume is applied.
    pub(crate) fn posted(
        &mut self,
        token: Token,
        message: Outgoing,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        match message {
            Outgoing::Close { code, reason } => self.close(token, code, &reason, ctx, now, fx),
            Outgoing::PauseReading => self.set_read_paused(token, true, ctx, now, fx),
            Outgoing::ResumeReading => self.set_read_paused(token, false, ctx, now, fx),
            message => {
                if let Some(text) = posted_text(&message) {
                    self.send_text(token, text, ctx, now, fx);
                }
            }
        }
    }

    /// A `ConnHandle` sent a text message to a session.
    fn send_text(
        &mut self,
        token: Token,
        text: &str,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        let Some(index) = self.slot_of(token) else {
            return;
        };
        let slot = &mut self.slots[index];
        // A handle's sends are held to `max_buffered` like the handler's own.
        if slot.session.pending_bytes() + text.len() > self.limits.max_buffered {
            if self.limits.close_on_limit {
                let (code, reason) = crate::conn::BACKPRESSURE_LIMIT;
                slot.session.close(code.0, reason);
                self.run_and_flush(index, ctx, now, fx);
                self.arm(index, fx);
            }
            return;
        }
        slot.session.send(text);
        self.flush(index, now, fx);
        self.arm(index, fx);
    }

    /// The server shuts down: every open session closes with 1001 (its handler hears
    /// `on_close`, an attached receiver gets the close frame) and is forgotten.
    pub(crate) fn shutdown(&mut self, ctx: &ShardContext, now: Instant, fx: &mut Effects) {
        self.shut = true;
        let indices: Vec<usize> = self.slots.iter().map(|(i, _)| i).collect();
        for index in indices {
            // A receiving request held as a contender gets the close too.
            if let Some((contender, _)) = self.slots[index].contender.take() {
                answer(contender, SHUTTING_DOWN, fx);
            }
            self.slots[index]
                .session
                .close(1001, "Server shutting down");
            self.run_and_flush(index, ctx, now, fx);
        }
        self.slots.clear();
        self.by_key.clear();
        self.held = 0;
    }

    /// A `ConnHandle` paused or resumed a session's handler: on a resume, the messages
    /// it kept are delivered.
    fn set_read_paused(
        &mut self,
        token: Token,
        paused: bool,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        let Some(index) = self.slot_of(token) else {
            return;
        };
        self.slots[index].out.read_paused = paused;
        self.run_and_flush(index, ctx, now, fx);
        self.arm(index, fx);
    }

    /// A `ConnHandle` closed a session.
    fn close(
        &mut self,
        token: Token,
        code: CloseCode,
        reason: &str,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        let Some(index) = self.slot_of(token) else {
            return;
        };
        self.slots[index].session.close(code.0, reason);
        self.run_and_flush(index, ctx, now, fx);
        self.arm(index, fx);
    }
}

impl SessionTable {
    /// The bytes the sessions hold for their clients (the shard's memory budget).
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Recounts what session `index` holds: its queued output and the input waiting
    /// for its handler.
    fn recount(&mut self, index: usize) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if !slot.session.has_events() {
            slot.inbox = 0;
        }
        let now = slot.session.pending_bytes().saturating_add(slot.inbox);
        self.held = self.held.saturating_sub(slot.counted).saturating_add(now);
        slot.counted = now;
    }

    /// The open sessions holding something, for the budget's choice of victims.
    pub(crate) fn budget_holders(&self, out: &mut Vec<Holder<Token>>) {
        for (index, slot) in self.slots.iter() {
            if slot.counted == 0 || slot.session.state() != SessionState::Open {
                continue;
            }
            out.push(Holder {
                key: Self::token(index, slot.generation),
                incoming: slot.inbox,
                outgoing: slot.session.pending_bytes(),
                paused: false,
                pausable: false,
                closable: true,
            });
        }
    }

    /// The shard is over its memory budget and this session is among the largest
    /// holders: it closes with `c[1009,...]` or `c[1008,...]` (see
    /// `connection::budget_close_for`), its handler hears `on_close`, and its queued
    /// output goes at its next poll (which gets what was queued, then the close) or
    /// when it expires; the input waiting for a paused handler is delivered first.
    pub(crate) fn close_for_budget(
        &mut self,
        token: Token,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        let Some(index) = self.slot_of(token) else {
            return;
        };
        let slot = &mut self.slots[index];
        let held = Held {
            incoming: slot.inbox,
            outgoing: slot.session.pending_bytes(),
        };
        let error = budget_close_for(held);
        tracing::debug!(session = ?slot.key, code = error.code.0, "memory budget: closing a SockJS session");
        slot.session.close(error.code.0, error.reason);
        self.run_and_flush(index, ctx, now, fx);
        self.arm(index, fx);
    }
}

/// Answers a receiving request that found another one attached:
/// `c[2010,"Another connection still open"]`, ending its response.
fn refuse(receiver: Receiver, fx: &mut Effects) {
    answer(receiver, ANOTHER_CONNECTION_STILL_OPEN, fx);
}

/// Answers a receiving request that is not attached with a close `frame`, ending its
/// response.
fn answer(mut receiver: Receiver, frame: &[u8], fx: &mut Effects) {
    let mut bytes = Vec::new();
    receiver.rx.write_frame(&mut bytes, frame);
    let output = SockJsReply::Output {
        receiver: receiver.id,
        bytes,
        end: true,
    };
    fx.replies.push((receiver.shard, receiver.token, output));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a session sends its receiver after the messages posted by a handle.
    fn sent_after(posted: Vec<Outgoing>) -> Option<Vec<u8>> {
        let now = Instant::now();
        let mut session = Session::new(&Default::default(), now);
        let receiver = ReceiverId(1);
        session.attach(receiver, now);
        let open = session.next_frame(receiver, now).map(|f| f.bytes.to_vec());
        assert_eq!(open.as_deref(), Some(&b"o"[..]));
        for message in &posted {
            if let Some(text) = posted_text(message) {
                session.send(text);
            }
        }
        session.next_frame(receiver, now).map(|f| f.bytes.to_vec())
    }

    #[test]
    fn posted_text_messages_are_a_sockjs_array_frame() {
        let text = |t: &str| Outgoing::Text(Arc::from(t));
        assert_eq!(
            sent_after(vec![text("say \"hi\"")]).as_deref(),
            Some(&br#"a["say \"hi\""]"#[..])
        );
        assert_eq!(
            sent_after(vec![text("one"), text("two")]).as_deref(),
            Some(&br#"a["one","two"]"#[..])
        );
    }

    #[test]
    fn what_sockjs_cannot_carry_is_dropped_and_commands_are_not_messages() {
        let posted = vec![
            Outgoing::Binary(Arc::from(&b"b"[..])),
            Outgoing::Ping(Arc::from(&b"p"[..])),
            Outgoing::Close {
                code: CloseCode(1000),
                reason: String::new(),
            },
            Outgoing::PauseReading,
            Outgoing::ResumeReading,
        ];
        assert_eq!(sent_after(posted), None);
    }
}
