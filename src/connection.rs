//! One connection's state machine: HTTP request head → route → WebSocket upgrade (or an
//! HTTP answer) → frames → handler callbacks, and the close handshake.
//!
//! It does no I/O: the shard feeds it received bytes and the current time, and reads
//! back what to send ([`Connection::out`]), whether the socket should be closed
//! ([`Connection::wants_close`]) and when it next needs the time
//! ([`Connection::deadline`]).
//!
//! Clients of every version share it: RFC 6455 and hybi-07/08 frame through the
//! [`Decoder`]; the legacy hixie-75/76 drafts have their own handshake and framing
//! (`hixie.rs`), behind the same handler callbacks. `pause.rs` holds input back while
//! the handler or the output's backpressure pauses it.

mod budget;
mod hixie;
mod lifecycle;
mod pause;
mod rare;
mod sockjs;
mod static_file;

use pause::{input_paused, BACKPRESSURE_LIMIT_ERROR};

pub(crate) use sockjs::{
    init_wall_clock, is_session_token, owner_shard, Effects, SessionTable, SockJsReply,
    SockJsRequest,
};
#[cfg(test)]
pub(crate) use static_file::FILE_CHUNK;
pub(crate) use static_file::{FileBody, FileRead};

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::{Conn, ConnId, Framing, OutLimits, Outbox, SendStatus};
use crate::handle::{Outgoing, Post};
use crate::handler::{CloseInitiator, CloseReason, Handler, Message, Remote};
use crate::handshake;
use crate::http::{self, HttpError, Parse, Request};
use crate::proto::{CloseCode, Decoder, Event, HixieDecoder, Limits, OpCode, ProtocolError, Role};
use crate::route::{
    Accept, HttpResponse, PrefixRoute, Reject, Route, Routes, UpgradeRequest, WebSocketOptions,
};
use crate::runtime::mailbox::Registry;

/// Server-wide settings every connection reads.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) limits: Limits,
    pub(crate) out_limits: OutLimits,
    pub(crate) max_head_bytes: usize,
    /// The largest request body accepted (a larger one is answered 413).
    pub(crate) max_body_bytes: usize,
    /// How long a client may take to send its complete request head (and how long a
    /// kept-alive connection may stay idle between requests).
    pub(crate) handshake_timeout: Duration,
    /// How long we wait for the peer's close frame after sending ours.
    pub(crate) close_timeout: Duration,
    /// Every connection speaks TLS with this configuration (see `runtime::tls`).
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// A WebSocket connection that received nothing for half of this is pinged, and
    /// closed with 1001 after all of it (`None`: never).
    pub(crate) idle_timeout: Option<Duration>,
    /// The connections one shard serves at once (`None`: no limit); the ones over it
    /// are answered 503 (see [`Connection::refuse`]).
    pub(crate) max_connections: Option<usize>,
    /// The connections one shard lets wait for their first request at once (`None`: no
    /// limit); past it the oldest is answered 408 (see [`Connection::evict`]).
    pub(crate) max_pending: Option<usize>,
    /// The bytes one shard may hold for its peers (its share of
    /// `Builder::memory_budget`; `usize::MAX`: no budget). See `runtime/shard/budget.rs`.
    pub(crate) memory_budget: usize,
    /// How long a shutdown waits for the peers' close replies, in nanoseconds (0: it
    /// does not wait). Set by `ServerHandle::shutdown_within` before it asks the shards.
    pub(crate) shutdown_grace: Arc<AtomicU64>,
}

/// What every connection of a shard shares.
pub(crate) struct ShardContext {
    pub(crate) shard: u32,
    pub(crate) registry: Arc<Registry>,
    /// Where the handles of this shard's connections post (`registry`, as a [`Post`]).
    pub(crate) poster: Arc<dyn Post>,
    pub(crate) routes: Arc<Routes>,
    pub(crate) config: Arc<Config>,
}

impl ShardContext {
    pub(crate) fn new(
        shard: u32,
        registry: Arc<Registry>,
        routes: Arc<Routes>,
        config: Arc<Config>,
    ) -> ShardContext {
        let poster: Arc<dyn Post> = registry.clone();
        ShardContext {
            shard,
            registry,
            poster,
            routes,
            config,
        }
    }
}

// Open is the steady state and by far the largest; boxing it would add an indirection
// to every read to save memory only during the short HTTP phase.
#[allow(clippy::large_enum_variant)]
enum Phase {
    /// Waiting for the request head; holds the bytes of a head split across reads.
    /// The peer's address lives in the phases that may still meet an upgrade request
    /// (for the upgrade hook), not in every open connection.
    Http {
        head: Vec<u8>,
        peer: Option<SocketAddr>,
    },
    /// hixie-76: the 101 head is queued; waiting for the 8 bytes after the request
    /// head (`have` of them so far) to answer the challenge and open.
    Hixie76Body {
        keys: (u32, u32),
        body: [u8; 8],
        have: usize,
        handler: Box<dyn Handler>,
    },
    /// Upgraded: frames go through the decoder to the handler.
    Open {
        inbound: Inbound,
        handler: Box<dyn Handler>,
    },
    /// A SockJS session request is with the session's owner shard: its reply (or, for
    /// a receiving request, its response bytes) comes back through
    /// [`Connection::sockjs_reply`]; later requests wait in `buffered`.
    SockJsWaiting {
        wait: sockjs::Wait,
        buffered: Vec<u8>,
        peer: Option<SocketAddr>,
    },
    /// The handler has been told the connection closed; input is ignored.
    Ended,
}

/// The receive side of an open connection: RFC 6455 frames or hixie frames.
enum Inbound {
    Rfc6455(Decoder),
    Hixie(HixieDecoder),
}

pub(crate) struct Connection {
    id: ConnId,
    phase: Phase,
    pub(crate) out: Outbox,
    wants_close: bool,
    deadline: Option<Instant>,
    /// At least one HTTP request was answered on this (kept-alive) connection.
    requests_served: bool,
    /// The state of the `/info` entropy generator (seeded by the shard).
    seed: u32,
    /// When the open connection last received bytes (for the idle timeout).
    last_received: Instant,
    /// The idle timeout's ping went out since `last_received`.
    idle_pinged: bool,
    /// Over the shard's connection limit: the first request is answered 503.
    refused: bool,
    /// The server is shutting down: the request in progress is answered with
    /// `Connection: close` and no other is read (see `lifecycle.rs`).
    draining: bool,
    /// What few connections need (SockJS, our close, a pause, a refused body).
    rare: Option<Box<rare::Rare>>,
    /// A static file's body being streamed (`static_file.rs`): later requests wait.
    file: Option<Box<static_file::FileStream>>,
}

impl Connection {
    pub(crate) fn new(
        id: ConnId,
        peer: Option<SocketAddr>,
        config: &Config,
        now: Instant,
    ) -> Connection {
        Connection {
            id,
            phase: Phase::Http {
                head: Vec::new(),
                peer,
            },
            out: Outbox::new(config.out_limits),
            wants_close: false,
            deadline: Some(now + config.handshake_timeout),
            requests_served: false,
            seed: 0,
            last_received: now,
            idle_pinged: false,
            refused: false,
            draining: false,
            rare: None,
            file: None,
        }
    }

    /// Seeds the connection's `/info` entropy (randomness comes from the runtime).
    pub(crate) fn set_seed(&mut self, seed: u32) {
        self.seed = seed;
    }

    /// The shard is at its connection limit: the request this connection sends is
    /// answered `503 Service Unavailable` and the connection closes.
    pub(crate) fn refuse(&mut self) {
        self.refused = true;
    }

    /// True while the connection has not finished its first request: no upgrade, no
    /// answer yet, and not closing (counted against `Config::max_pending`).
    pub(crate) fn is_pending(&self) -> bool {
        !self.requests_served
            && !self.wants_close
            && matches!(self.phase, Phase::Http { .. } | Phase::Hixie76Body { .. })
    }

    /// Too many connections wait for their first request and this one waited longest:
    /// it is answered 408 (unless its 101 head is already out) and closed.
    pub(crate) fn evict(&mut self) {
        tracing::debug!(conn = %self.id, "too many pending handshakes; closing the oldest");
        if let Phase::Http { .. } = self.phase {
            let error = HttpError {
                status: 408,
                reason: "request not received in time",
            };
            http::write_error(&mut self.out.queued, &error, &[]);
        }
        self.close_after_response();
    }

    /// True when the socket should be closed once the queued bytes are written.
    pub(crate) fn wants_close(&self) -> bool {
        self.wants_close
    }

    /// The peer's address, while the connection may still be upgraded.
    fn peer(&self) -> Option<SocketAddr> {
        match &self.phase {
            Phase::Http { peer, .. } | Phase::SockJsWaiting { peer, .. } => *peer,
            _ => None,
        }
    }

    /// When [`Connection::on_timer`] next has something to do.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Bytes arrived from the peer.
    pub(crate) fn receive(&mut self, data: &mut [u8], ctx: &ShardContext, now: Instant) {
        if let Phase::Open { .. } = self.phase {
            // The idle timer is not moved here: when it fires it looks at this.
            self.last_received = now;
            self.idle_pinged = false;
            if self.input_paused() || self.has_held() {
                // Reported after the pause, before the backend stopped reading (or
                // behind bytes kept then): kept, in order, for the resume.
                self.rare_mut().held.extend_from_slice(data);
                self.pump_held(ctx, now);
                return;
            }
        }
        match &mut self.phase {
            Phase::Http { .. } => self.receive_http(data, ctx, now),
            Phase::Hixie76Body { .. } => self.receive_hixie76_body(data, ctx, now),
            Phase::Open {
                inbound: Inbound::Hixie(_),
                ..
            } => self.receive_hixie_frames(data, ctx, now),
            Phase::Open { .. } => self.receive_frames(data, ctx, now),
            Phase::SockJsWaiting { .. } => self.receive_while_waiting(data),
            Phase::Ended => {}
        }
    }

    fn receive_http(&mut self, data: &mut [u8], ctx: &ShardContext, now: Instant) {
        let data = match self.discard() {
            0 => data,
            discard => {
                let skip = discard.min(data.len());
                self.rare_mut().discard -= skip;
                &mut data[skip..]
            }
        };
        let Phase::Http { head, .. } = &mut self.phase else {
            return;
        };
        if data.is_empty() {
            return;
        }
        if self.file.is_some() {
            // Pipelined behind a file still streaming: kept, in order, for after it
            // (reading stops meanwhile, see `wants_read`).
            head.extend_from_slice(data);
            return;
        }
        if head.is_empty() {
            // The common case, whole requests in one read: parse them where they lie.
            self.serve_requests(data, ctx, now);
        } else {
            let mut buffered = std::mem::take(head);
            buffered.extend_from_slice(data);
            self.serve_requests(&mut buffered, ctx, now);
        }
    }

    /// Answers every complete request in `input` in order (keep-alive and pipelining),
    /// keeps an incomplete request for the next read, and hands whatever follows an
    /// upgrade (frames, or a hixie-76 body) to the new connection.
    fn serve_requests(&mut self, input: &mut [u8], ctx: &ShardContext, now: Instant) {
        let mut pos = 0;
        while let Some(used) = self.answer_request(&input[pos..], ctx, now) {
            pos += used;
            match self.phase {
                // A file is streaming: the rest waits in `head` until it is sent.
                Phase::Http { .. } if self.file.is_some() => break,
                Phase::Http { .. } if pos < input.len() => continue,
                Phase::Open { .. } | Phase::Hixie76Body { .. } if pos < input.len() => {
                    self.receive(&mut input[pos..], ctx, now);
                    return;
                }
                Phase::SockJsWaiting { .. } if pos < input.len() => {
                    self.receive_while_waiting(&input[pos..]);
                    return;
                }
                _ => return,
            }
        }
        if let Phase::Http { head, .. } = &mut self.phase {
            head.extend_from_slice(&input[pos..]);
        }
    }

    /// Parses and answers the request at the front of `input`. Returns the bytes it
    /// took (head and body) once the request was complete and answered, `None` while
    /// more bytes are needed.
    fn answer_request(&mut self, input: &[u8], ctx: &ShardContext, now: Instant) -> Option<usize> {
        let mut headers = http::header_storage();
        let (request, head_len) =
            match http::parse_request(input, &mut headers, ctx.config.max_head_bytes) {
                Ok(Parse::Partial) => return None,
                Ok(Parse::Complete { .. }) if self.refused => {
                    self.reject_http(&HttpError::new(503, "too many connections"));
                    return Some(input.len());
                }
                Ok(Parse::Complete { request, head_len }) => (request, head_len),
                Err(error) => {
                    self.reject_http(&error);
                    return Some(input.len());
                }
            };
        let path = request.path();
        let exact = ctx.routes.find(path);
        // An exact WebSocket route keeps its upgrades; a SockJS service with the same
        // prefix answers the rest (its greeting).
        let sockjs_first = match exact {
            None => true,
            Some(Route::WebSocket { .. }) => !handshake::is_websocket_request(&request),
            Some(_) => false,
        };
        let sockjs = match sockjs_first {
            true => ctx.routes.find_sockjs(path),
            false => None,
        };
        if self.draining && (sockjs.is_some() || handshake::is_websocket_request(&request)) {
            self.reject_http(&HttpError::new(503, "server shutting down"));
            return Some(input.len());
        }
        let max_body = sockjs.map_or(ctx.config.max_body_bytes, |(service, _)| {
            service.options.max_body_bytes
        });
        let body_len = match request.content_length() {
            Ok(len) if len > max_body => match sockjs {
                // Answered now, before the body: the session never sees it.
                Some((service, _)) => {
                    let sent = input.len() - head_len;
                    let service = Arc::clone(service);
                    self.refuse_sockjs_body(&request, &service, len, sent, ctx, now);
                    // The head and the part of the body that is here.
                    return Some(head_len + sent.min(len));
                }
                None => {
                    self.reject_http(&HttpError::new(413, "request body too large"));
                    return Some(input.len());
                }
            },
            Ok(len) => len,
            Err(error) => {
                self.reject_http(&error);
                return Some(input.len());
            }
        };
        let end = head_len + body_len;
        if input.len() < end {
            return None;
        }
        let request = request.with_body(&input[head_len..end]);
        if let Some((service, rest)) = sockjs {
            let service = Arc::clone(service);
            self.serve_sockjs(&request, &service, rest, ctx, now);
            return Some(end);
        }
        match exact {
            Some(Route::WebSocket { hook, options }) => {
                self.upgrade(&request, hook.as_ref(), options, ctx, now)
            }
            Some(Route::Http(respond)) => {
                let response = respond(&request);
                let length = Some(response.body.len() as u64);
                self.answer_http(&request, &response, length, ctx, now);
            }
            None => match ctx.routes.find_prefix(path) {
                Some((PrefixRoute::Http(respond), _)) => {
                    let response = respond(&request);
                    let length = Some(response.body.len() as u64);
                    self.answer_http(&request, &response, length, ctx, now);
                }
                Some((PrefixRoute::Static(dir), rest)) => {
                    let answer = dir.serve(&request, rest);
                    match answer.body {
                        Some(body) => {
                            // The head now, the body streamed after it.
                            let keep_alive =
                                self.write_http_head(&request, &answer.response, answer.length);
                            self.start_file(body, keep_alive, ctx, now);
                        }
                        None => {
                            let length = answer.length;
                            self.answer_http(&request, &answer.response, length, ctx, now);
                        }
                    }
                }
                None => {
                    let body = format!("no route for {}\n", request.path());
                    let response = HttpResponse::text(404, body);
                    let length = Some(response.body.len() as u64);
                    self.answer_http(&request, &response, length, ctx, now);
                }
            },
        }
        Some(end)
    }

    /// Queues a plain HTTP answer announcing `length` body bytes (the body itself is
    /// left out for HEAD and for a 304), then waits for the next request or closes.
    fn answer_http(
        &mut self,
        request: &Request<'_>,
        response: &HttpResponse,
        length: Option<u64>,
        ctx: &ShardContext,
        now: Instant,
    ) {
        let keep_alive = self.write_http_head(request, response, length);
        if request.method() != "HEAD" && response.status != 304 {
            self.out.queued.extend_from_slice(&response.body);
        }
        self.finish_http(keep_alive, ctx, now);
    }

    /// Queues the head of a plain HTTP answer announcing `length` body bytes; returns
    /// whether the connection stays open after the answer.
    fn write_http_head(
        &mut self,
        request: &Request<'_>,
        response: &HttpResponse,
        length: Option<u64>,
    ) -> bool {
        let keep_alive = request.keep_alive() && !self.draining;
        let mut headers: Vec<(&str, &str)> = response
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if keep_alive && request.version_minor() == 0 {
            headers.push(("Connection", "keep-alive"));
        }
        http::write_response_head(
            &mut self.out.queued,
            response.status,
            &headers,
            &response.content_type,
            length,
            !keep_alive,
        );
        keep_alive
    }

    fn upgrade(
        &mut self,
        request: &Request<'_>,
        upgrade_fn: &dyn Fn(&UpgradeRequest<'_, '_>) -> Result<Accept, Reject>,
        options: &WebSocketOptions,
        ctx: &ShardContext,
        now: Instant,
    ) {
        if !handshake::is_websocket_request(request) {
            let error = HttpError {
                status: 426,
                reason: "this path serves WebSocket connections only",
            };
            handshake::write_rejection(&mut self.out.queued, &error);
            self.close_after_response();
            return;
        }
        let upgrade = match handshake::validate_upgrade(request) {
            Ok(upgrade) => upgrade,
            Err(error) => {
                tracing::debug!(conn = %self.id, status = error.status, reason = error.reason, "upgrade refused");
                handshake::write_rejection(&mut self.out.queued, &error);
                self.close_after_response();
                return;
            }
        };
        if upgrade.version.is_hixie() && !options.accepts_legacy_drafts() {
            let error = match upgrade.version {
                handshake::Version::Hixie75 => handshake::ERR_HIXIE75,
                _ => handshake::ERR_HIXIE76,
            };
            tracing::debug!(conn = %self.id, reason = error.reason, "upgrade refused");
            handshake::write_rejection(&mut self.out.queued, &error);
            self.close_after_response();
            return;
        }
        // The route's origin policy runs before user code: a refused origin never
        // reaches the hook (403).
        if let Err(error) = handshake::check_origin(options.origin_policy(), request, &upgrade) {
            tracing::debug!(conn = %self.id, origin = ?upgrade.origin(), "upgrade refused: origin");
            handshake::write_rejection(&mut self.out.queued, &error);
            self.close_after_response();
            return;
        }
        let hook_input = UpgradeRequest {
            request,
            upgrade: &upgrade,
            peer: self.peer(),
        };
        let accept = match upgrade_fn(&hook_input) {
            Ok(accept) => accept,
            Err(reject) => {
                let body = format!("{}\n", reject.reason);
                http::write_response(
                    &mut self.out.queued,
                    reject.status,
                    &[],
                    "text/plain; charset=utf-8",
                    body.as_bytes(),
                    true,
                );
                self.close_after_response();
                return;
            }
        };
        let headers: Vec<(&str, &str)> = accept
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if upgrade.version.is_hixie() {
            let protocol = accept.protocol.as_deref();
            self.accept_hixie(
                request,
                &upgrade,
                protocol,
                &headers,
                accept.handler,
                ctx,
                now,
            );
            return;
        }
        handshake::write_accept(
            &mut self.out.queued,
            &upgrade,
            accept.protocol.as_deref(),
            &headers,
        );
        let inbound = Inbound::Rfc6455(Decoder::new(Role::Server, ctx.config.limits));
        self.open(inbound, accept.handler, ctx, now);
    }

    /// The handshake is complete: frames go to the handler from now on.
    fn open(
        &mut self,
        inbound: Inbound,
        handler: Box<dyn Handler>,
        ctx: &ShardContext,
        now: Instant,
    ) {
        self.last_received = now;
        self.deadline = match self.sockjs_ws() {
            Some(heartbeat) => Some(now + heartbeat),
            None => self.idle_deadline(ctx),
        };
        self.phase = Phase::Open { inbound, handler };
        self.with_handler(ctx, now, |handler, conn| handler.on_open(conn));
    }

    fn reject_http(&mut self, error: &HttpError) {
        tracing::debug!(conn = %self.id, status = error.status, reason = error.reason, "bad request");
        http::write_error(&mut self.out.queued, error, &[]);
        self.close_after_response();
    }

    /// An HTTP answer was queued: wait for the next request on a kept-alive connection,
    /// or close once the answer is written.
    fn finish_http(&mut self, keep_alive: bool, ctx: &ShardContext, now: Instant) {
        self.requests_served = true;
        if keep_alive && !self.draining {
            self.phase = Phase::Http {
                head: Vec::new(),
                peer: self.peer(),
            };
            self.deadline = Some(now + ctx.config.handshake_timeout);
        } else {
            self.close_after_response();
        }
    }

    /// An HTTP answer was queued: nothing more is read, the socket closes after it.
    fn close_after_response(&mut self) {
        self.phase = Phase::Ended;
        self.out.closed = true;
        self.wants_close = true;
        self.deadline = None;
    }

    fn receive_frames(&mut self, data: &mut [u8], ctx: &ShardContext, now: Instant) {
        let Phase::Open {
            inbound: Inbound::Rfc6455(decoder),
            handler,
        } = &mut self.phase
        else {
            return;
        };
        let mut conn = Conn {
            id: self.id,
            out: &mut self.out,
            poster: &ctx.poster,
        };
        let id = self.id;
        let len = data.len();
        let mut pos = 0;
        let mut ended: Option<Result<Option<(CloseCode, String)>, ProtocolError>> = None;
        while ended.is_none() {
            let (consumed, event) = match decoder.decode(&mut data[pos..]) {
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
                    let message = Message::Text(text);
                    if let Err(error) = guard(id, || handler.on_message(&mut conn, message)) {
                        ended = Some(Err(error));
                    }
                }
                Some(Event::Binary(bytes)) if !conn.out.closed => {
                    let message = Message::Binary(bytes);
                    if let Err(error) = guard(id, || handler.on_message(&mut conn, message)) {
                        ended = Some(Err(error));
                    }
                }
                Some(Event::Ping(payload)) if !conn.out.closed => {
                    conn.out.send_frame(OpCode::Pong, payload);
                }
                Some(Event::Pong(payload)) => {
                    if let Err(error) = guard(id, || handler.on_pong(&mut conn, payload)) {
                        ended = Some(Err(error));
                    }
                }
                Some(Event::Close(frame)) => {
                    ended = Some(Ok(frame.map(|f| (f.code, f.reason.to_owned()))));
                }
                Some(_) => {}
                None if consumed == 0 || pos == len => break,
                None => {}
            }
            if conn.out.overflowed {
                ended = Some(Err(BACKPRESSURE_LIMIT_ERROR));
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
    fn on_peer_close(&mut self, peer_close: Option<(CloseCode, String)>, ctx: &ShardContext) {
        let reason = match self.take_local_close() {
            Some((code, reason)) => CloseReason {
                code,
                reason,
                initiator: CloseInitiator::Local,
            },
            None => {
                self.out
                    .queue_close(peer_close.as_ref().map(|(code, _)| *code), "");
                let (code, reason) = peer_close.unwrap_or((CloseCode::NO_STATUS, String::new()));
                CloseReason {
                    code,
                    reason,
                    initiator: CloseInitiator::Peer,
                }
            }
        };
        self.end(reason, ctx);
    }

    /// The peer broke the protocol: send the close code and reason, then close.
    fn fail(&mut self, error: ProtocolError, ctx: &ShardContext) {
        tracing::debug!(conn = %self.id, code = error.code.0, reason = error.reason, "failing connection");
        self.out.queue_close(Some(error.code), error.reason);
        let reason = CloseReason {
            code: error.code,
            reason: error.reason.to_owned(),
            initiator: CloseInitiator::Local,
        };
        self.end(reason, ctx);
    }

    /// Tells the handler the connection ended and asks for the socket to be closed.
    fn end(&mut self, reason: CloseReason, ctx: &ShardContext) {
        self.wants_close = true;
        self.deadline = None;
        if let Phase::Open { mut handler, .. } = std::mem::replace(&mut self.phase, Phase::Ended) {
            self.out.closed = true;
            let mut conn = Conn {
                id: self.id,
                out: &mut self.out,
                poster: &ctx.poster,
            };
            // A panic here has nothing left to fail: guard only contains and logs it.
            let _ = guard(self.id, || handler.on_close(&mut conn, reason));
        }
    }

    /// Runs `f` with the handler, then applies what it asked for (a close, say).
    fn with_handler(
        &mut self,
        ctx: &ShardContext,
        now: Instant,
        f: impl FnOnce(&mut dyn Handler, &mut Conn<'_>),
    ) {
        if let Phase::Open { handler, .. } = &mut self.phase {
            let mut conn = Conn {
                id: self.id,
                out: &mut self.out,
                poster: &ctx.poster,
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
    fn after_callback(&mut self, ctx: &ShardContext, now: Instant) {
        if self.out.overflowed {
            self.end_if_overflowed(ctx);
            return;
        }
        if let Some((code, reason)) = self.out.close_started.take().map(|close| *close) {
            if self.out.framing == Framing::Hixie75 {
                // hixie-75 has no closing handshake: our 0xFF 0x00 is the end.
                let initiator = CloseInitiator::Local;
                self.end(
                    CloseReason {
                        code,
                        reason,
                        initiator,
                    },
                    ctx,
                );
                return;
            }
            let close = (code, reason);
            self.rare_mut().local_close = Some(close);
            self.deadline = Some(now + ctx.config.close_timeout);
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
                    handler.on_remote(conn, Remote::Text(&text));
                });
            }
            // The SockJS `websocket` transport carries text only.
            _ if self.sockjs_ws().is_some() => {}
            message => {
                if !matches!(self.phase, Phase::Open { .. }) {
                    return;
                }
                if self.out.send_posted(&message) == Some(SendStatus::Unsupported) {
                    tracing::debug!(conn = %self.id, "dropping a non-text message for a hixie client");
                }
            }
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
                handler.on_remote(conn, Remote::Close(code.0, reason));
            });
            return;
        }
        self.with_handler(ctx, now, |_, conn| conn.close(code.0, reason));
    }

    /// Bytes were written: owe the handler `on_drain` once the queue has fallen back,
    /// and hand it the input kept while the output was over the threshold.
    pub(crate) fn on_written(&mut self, ctx: &ShardContext, now: Instant) {
        self.file_progress(now);
        let out = &self.out;
        if out.drain_owed && out.buffered() <= out.limits.backpressure_threshold {
            self.out.drain_owed = false;
            self.with_handler(ctx, now, |handler, conn| handler.on_drain(conn));
        }
        self.pump_held(ctx, now);
    }

    /// The peer stopped sending (EOF) or the socket failed. A static file being sent
    /// is finished first (a send that fails ends it, see `on_send_failed`).
    pub(crate) fn on_eof(&mut self, ctx: &ShardContext) {
        if self.file_peer_done() {
            return;
        }
        self.transport_ended(ctx);
    }

    /// A deadline passed: a handshake that never completed, or a close never answered.
    pub(crate) fn on_timer(&mut self, ctx: &ShardContext, now: Instant) {
        match self.deadline {
            Some(deadline) if deadline <= now => {}
            _ => return,
        }
        self.deadline = None;
        if self.file.is_some() {
            self.file_timer(ctx, now);
            return;
        }
        match self.take_local_close() {
            Some((code, reason)) => self.end(
                CloseReason {
                    code,
                    reason,
                    initiator: CloseInitiator::Local,
                },
                ctx,
            ),
            None if matches!(self.phase, Phase::Open { .. }) => {
                // The SockJS `websocket` adaptor's heartbeat.
                let Some(heartbeat) = self.sockjs_ws() else {
                    self.idle_timer(ctx, now);
                    return;
                };
                self.with_handler(ctx, now, |handler, conn| {
                    handler.on_remote(conn, crate::handler::Remote::Tick(now));
                });
                if self.deadline.is_none() && matches!(self.phase, Phase::Open { .. }) {
                    self.deadline = Some(now + heartbeat);
                }
            }
            None => self.finish_http_timeout(),
        }
    }

    fn finish_http_timeout(&mut self) {
        if let Phase::Hixie76Body { .. } = self.phase {
            // The 101 head is out: no HTTP answer is possible, just close.
            tracing::debug!(conn = %self.id, "hixie-76 challenge body not received in time");
            self.close_after_response();
        } else if let Phase::Http { head, .. } = &self.phase {
            if head.is_empty() && self.requests_served {
                // A kept-alive connection that stayed idle: close it quietly.
                self.close_after_response();
                return;
            }
            tracing::debug!(conn = %self.id, "request head not received in time");
            let error = HttpError {
                status: 408,
                reason: "request head not received in time",
            };
            http::write_error(&mut self.out.queued, &error, &[]);
            self.close_after_response();
        } else if let Phase::SockJsWaiting { .. } = self.phase {
            // Only a shutdown arms this: the owner did not answer in time.
            tracing::debug!(conn = %self.id, "no SockJS answer before the shutdown deadline");
            self.transport_ended_sockjs();
            self.close_after_response();
        }
    }

    /// The socket is gone (closed by the backend, or it failed): make sure the handler
    /// heard about it.
    pub(crate) fn transport_ended(&mut self, ctx: &ShardContext) {
        // The rest of a file being streamed has nowhere to go.
        self.file = None;
        self.transport_ended_sockjs();
        let reason = match self.take_local_close() {
            Some((code, reason)) => CloseReason {
                code,
                reason,
                initiator: CloseInitiator::Local,
            },
            None => CloseReason {
                code: CloseCode::ABNORMAL,
                reason: String::from("connection ended without a close frame"),
                initiator: CloseInitiator::Transport,
            },
        };
        self.end(reason, ctx);
        self.wants_close = true;
    }
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
