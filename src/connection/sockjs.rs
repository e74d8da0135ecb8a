//! SockJS on top of [`Connection`] and the shard, following the integration guide of
//! [`crate::sockjs`]:
//!
//! - the connection side ([`Connection::serve_sockjs`]) answers the plain pages
//!   (greeting, `/info`, iframe, preflights, errors) into its outbox, upgrades the
//!   `websocket` and raw `/websocket` endpoints, and turns session requests (sends and
//!   receiving requests) into [`SockJsRequest`]s for the session's owner shard, then
//!   waits for the [`SockJsReply`] before it reads its next request;
//! - the owner side (the shard's `SessionTable`, `runtime/shard/sessions.rs`) holds
//!   the sessions that hash to this shard ([`owner_shard`]) with their handlers, receivers and timers, and
//!   answers with transport-encoded bytes that the connection's shard copies out as
//!   they are.
//!
//! When the owner is the connection's own shard the same messages are handled in place
//! (no mailbox); otherwise they travel as mailbox commands.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

mod websocket;

use super::{guard, Connection, Front, FrontPhase, ShardContext, Stage};
use crate::conn::{Conn, ConnId, Outbox, Token};
use crate::handler::{CloseInitiator, CloseReason, Handler, Message};
use crate::handshake;
use crate::http::Request;
use crate::proto::CloseCode;
use crate::route::{Accept, Reject, SockJsService, UpgradeRequest, WebSocketOptions};
use crate::sockjs::{
    parse_client_messages, parse_jsonp_send, route, websocket_error_text, write_bad_request,
    write_callback_error, write_greeting, write_iframe_page, write_info, write_jsonp_send_ok,
    write_method_not_allowed, write_not_found, write_preflight, write_send_error, write_too_large,
    write_xhr_send_ok, CloseCause, Endpoint, HttpReceiver, ReceiverId, ReceiverKind, Session,
    SessionEvent, SessionState, TransportKind,
};
use websocket::SockJsWebSocket;

/// Hands `remote` to the connection's SockJS `websocket` adapter: `handler` is one when
/// the connection serves that transport (`Connection::sockjs_ws`); otherwise nothing
/// happens.
pub(super) fn remote(
    handler: &mut dyn Handler,
    conn: &mut Conn<'_>,
    remote: crate::handler::Remote<'_>,
) {
    let handler: &mut dyn std::any::Any = handler;
    if let Some(adapter) = handler.downcast_mut::<SockJsWebSocket>() {
        adapter.remote(conn, remote);
    }
}

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

/// The wall clock as the runtime read it: one reading of both clocks, taken by the
/// shard at its start and passed in through [`ShardContext::wall`], so the connection
/// dates `Expires` headers from its monotonic `now` without reading a clock. Unset
/// (a context built without a shard, as in tests), it gives the epoch.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WallClock {
    base: Option<(Instant, SystemTime)>,
}

impl WallClock {
    /// `wall` read at the monotonic instant `now`.
    pub(crate) fn new(now: Instant, wall: SystemTime) -> WallClock {
        WallClock {
            base: Some((now, wall)),
        }
    }

    /// The wall time at the monotonic instant `now`.
    pub(crate) fn at(&self, now: Instant) -> SystemTime {
        match self.base {
            Some((base, wall)) => wall + now.saturating_duration_since(base),
            None => SystemTime::UNIX_EPOCH,
        }
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
        let keep_alive = request.keep_alive() && request.version_minor() >= 1 && !self.draining();
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
                write_iframe_page(out, request, page, etag, ctx.wall.at(now), close);
            }
            Endpoint::Preflight { allow_methods } => {
                write_preflight(
                    out,
                    request,
                    options,
                    allow_methods,
                    ctx.wall.at(now),
                    close,
                );
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
                    TransportKind::WebSocket => {
                        self.sockjs_upgrade(request, service, false, keep_alive, ctx, now);
                        return;
                    }
                    TransportKind::XhrSend | TransportKind::JsonpSend => {
                        let parsed = if transport == TransportKind::XhrSend {
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
                                if transport == TransportKind::XhrSend {
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
                            let owner = owner_shard(key.service, &key.id, ctx.shards);
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
        let owner = owner_shard(key.service, &key.id, ctx.shards);
        let request = SockJsRequest {
            key,
            from_shard: ctx.shard,
            from: self.id.token,
            op,
        };
        self.rare_mut().sockjs_requests.push((owner, request));
        self.timers.clear_all();
        let peer = self.peer();
        if let Stage::Front(front) = &mut self.stage {
            front.phase = FrontPhase::SockJsWaiting {
                wait,
                buffered: Vec::new(),
                peer,
            };
        }
    }

    /// A fresh `/info` entropy (xorshift32 over the seed the shard gave).
    fn next_entropy(&mut self) -> u32 {
        let Stage::Front(front) = &mut self.stage else {
            return 0;
        };
        let mut x = front.seed | 1;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        front.seed = x;
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
        if let Stage::Front(Front {
            phase: FrontPhase::SockJsWaiting { buffered, .. },
            ..
        }) = &mut self.stage
        {
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
        let Some(Front {
            phase: FrontPhase::SockJsWaiting { wait, .. },
            ..
        }) = self.front()
        else {
            return;
        };
        match (wait, reply) {
            (Wait::Send { .. }, SockJsReply::Sent { found }) => {
                let Some(phase) = self.take_front_phase() else {
                    return;
                };
                let FrontPhase::SockJsWaiting {
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
                    if let Some(FrontPhase::SockJsWaiting {
                        wait: Wait::Receive { keep_alive, .. },
                        buffered,
                        peer,
                    }) = self.take_front_phase()
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
        if let Stage::Front(Front {
            phase: FrontPhase::Http { peer: slot, .. },
            ..
        }) = &mut self.stage
        {
            *slot = peer;
        }
        if keep_alive && !buffered.is_empty() {
            self.receive(&mut buffered, ctx, now);
        }
    }

    /// The connection goes away: a receiving request still waiting tells the owner (the
    /// session closes with `c[1002,"Connection interrupted"]`).
    pub(super) fn transport_ended_sockjs(&mut self) {
        if let Some(Front {
            phase:
                FrontPhase::SockJsWaiting {
                    wait:
                        Wait::Receive {
                            key,
                            receiver,
                            owner,
                            ..
                        },
                    ..
                },
            ..
        }) = self.front()
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
            self.stage = Stage::Ended;
        }
    }

    /// Takes the front's phase, leaving an empty request phase (no peer) in its place
    /// until `finish_http` decides what follows.
    fn take_front_phase(&mut self) -> Option<FrontPhase> {
        let Stage::Front(front) = &mut self.stage else {
            return None;
        };
        let empty = FrontPhase::Http {
            head: Vec::new(),
            peer: None,
        };
        Some(std::mem::replace(&mut front.phase, empty))
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
        let mut ws_options =
            WebSocketOptions::default().allowed_origins(handshake::OriginPolicy::Any);
        if let Some(deflate) = options.deflate_options() {
            ws_options = ws_options.deflate(*deflate);
        }
        self.upgrade(request, &hook, &ws_options, ctx, now);
    }
}

/// Drains a session's events into its handler ([`SessionEvent::Opened`] → `on_open`,
/// messages → `on_message`, [`SessionEvent::Closed`] → `on_close`), handing what the
/// handler sent or closed back to the session after each call. While the handler has
/// paused reading, an open session keeps its events for later; a closing one delivers
/// them (the close is not held up by a pause).
pub(crate) fn run_session_events(
    session: &mut Session,
    handler: &mut dyn Handler,
    out: &mut Outbox,
    id: ConnId,
    ctx: &ShardContext,
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
            ctx,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn wall_clock_is_the_shards_reading_moved_by_now() {
        let base = crate::test_support::t0();
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let clock = WallClock::new(base, wall);
        assert_eq!(clock.at(base), wall);
        assert_eq!(
            clock.at(base + Duration::from_secs(5)),
            wall + Duration::from_secs(5)
        );
        // Unset (no shard): the epoch, whatever `now`.
        assert_eq!(WallClock::default().at(base), UNIX_EPOCH);
    }
}
