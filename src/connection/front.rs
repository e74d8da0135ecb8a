//! The HTTP front of a connection: parses requests (keep-alive, pipelining), routes
//! them, answers HTTP routes and static files, refuses what it must (400, 408, 413,
//! 426, 503), upgrades WebSocket requests (RFC 6455 here, the hixie drafts in
//! `hixie.rs`) and hands SockJS paths to `sockjs.rs`. Its state is the [`Front`] in
//! `Stage::Front`; once upgraded, the open [`Session`](super::Session) (`session.rs`)
//! replaces it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::{Compression, Connection, Front, FrontPhase, Inbound, ShardContext, Stage, Timer};
use crate::handshake;
use crate::http::{self, HttpError, Parse, Request};
use crate::proto::{Decoder, Role};
use crate::route::{
    Accept, HttpResponse, PrefixRoute, Reject, Route, UpgradeRequest, WebSocketOptions,
};

impl Connection {
    /// The shard is at its connection limit: the request this connection sends is
    /// answered `503 Service Unavailable` and the connection closes.
    pub(crate) fn refuse(&mut self) {
        self.refused = true;
    }

    /// Refused at accept (over the connection limit): not counted as admitted.
    pub(crate) fn is_refused(&self) -> bool {
        self.refused
    }

    /// True while the connection has not finished its first request: no upgrade, no
    /// answer yet, and not closing (counted against `Config::max_pending`).
    pub(crate) fn is_pending(&self) -> bool {
        !self.wants_close
            && self.front().is_some_and(|front| {
                !front.requests_served
                    && matches!(
                        front.phase,
                        FrontPhase::Http { .. } | FrontPhase::Hixie76Body { .. }
                    )
            })
    }

    /// Too many connections wait for their first request and this one waited longest:
    /// it is answered 408 (unless its 101 head is already out) and closed.
    pub(crate) fn evict(&mut self) {
        tracing::debug!(conn = %self.id, "too many pending handshakes; closing the oldest");
        if self.in_http() {
            let error = HttpError {
                status: 408,
                reason: "request not received in time",
            };
            http::write_error(&mut self.out.queued, &error, &[]);
        }
        self.close_after_response();
    }

    /// The peer's address, while the connection may still be upgraded.
    pub(super) fn peer(&self) -> Option<SocketAddr> {
        self.front().and_then(Front::peer)
    }

    /// Waiting for (or reading) a request head.
    pub(super) fn in_http(&self) -> bool {
        self.front()
            .is_some_and(|front| matches!(front.phase, FrontPhase::Http { .. }))
    }

    /// The server is shutting down and the front reads no further request.
    pub(super) fn draining(&self) -> bool {
        self.front().is_some_and(|front| front.draining)
    }

    pub(super) fn receive_http(&mut self, data: &mut [u8], ctx: &ShardContext, now: Instant) {
        let data = match self.discard() {
            0 => data,
            discard => {
                let skip = discard.min(data.len());
                self.rare_mut().discard -= skip;
                &mut data[skip..]
            }
        };
        let Stage::Front(Front {
            phase: FrontPhase::Http { head, .. },
            file,
            ..
        }) = &mut self.stage
        else {
            return;
        };
        if data.is_empty() {
            return;
        }
        if file.is_some() {
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
    pub(super) fn serve_requests(&mut self, input: &mut [u8], ctx: &ShardContext, now: Instant) {
        let mut pos = 0;
        while let Some(used) = self.answer_request(&input[pos..], ctx, now) {
            pos += used;
            let more = pos < input.len();
            match &self.stage {
                Stage::Front(front) => match front.phase {
                    // A file is streaming: the rest waits in `head` until it is sent.
                    FrontPhase::Http { .. } if front.file.is_some() => break,
                    FrontPhase::Http { .. } if more => continue,
                    FrontPhase::Hixie76Body { .. } if more => {
                        self.receive(&mut input[pos..], ctx, now);
                        return;
                    }
                    FrontPhase::SockJsWaiting { .. } if more => {
                        self.receive_while_waiting(&input[pos..]);
                        return;
                    }
                    _ => return,
                },
                Stage::Open(_) if more => {
                    self.receive(&mut input[pos..], ctx, now);
                    return;
                }
                _ => return,
            }
        }
        if let Stage::Front(Front {
            phase: FrontPhase::Http { head, .. },
            ..
        }) = &mut self.stage
        {
            head.extend_from_slice(&input[pos..]);
        }
    }

    /// Parses and answers the request at the front of `input`. Returns the bytes it
    /// took (head and body) once the request was complete and answered, `None` while
    /// more bytes are needed.
    pub(super) fn answer_request(
        &mut self,
        input: &[u8],
        ctx: &ShardContext,
        now: Instant,
    ) -> Option<usize> {
        let mut headers = http::header_storage();
        let (request, head_len) =
            match http::parse_request(input, &mut headers, ctx.config.max_head_bytes) {
                Ok(Parse::Partial) => return None,
                Ok(Parse::Complete { .. }) if self.refused => {
                    self.reject_http(&HttpError::new(503, "too many connections"), ctx);
                    return Some(input.len());
                }
                Ok(Parse::Complete { request, head_len }) => (request, head_len),
                Err(error) => {
                    self.reject_http(&error, ctx);
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
        if self.draining() && (sockjs.is_some() || handshake::is_websocket_request(&request)) {
            self.reject_http(&HttpError::new(503, "server shutting down"), ctx);
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
                    self.reject_http(&HttpError::new(413, "request body too large"), ctx);
                    return Some(input.len());
                }
            },
            Ok(len) => len,
            Err(error) => {
                self.reject_http(&error, ctx);
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
    pub(super) fn answer_http(
        &mut self,
        request: &Request<'_>,
        response: &HttpResponse,
        length: Option<u64>,
        ctx: &ShardContext,
        now: Instant,
    ) {
        ctx.metrics.http_request();
        // A route's (or the static files', or the missing route's) 4xx/5xx answer counts
        // as a refusal too.
        if response.status >= 400 {
            ctx.metrics.refused(response.status);
        }
        let keep_alive = self.write_http_head(request, response, length);
        if request.method() != "HEAD" && response.status != 304 {
            self.out.queued.extend_from_slice(&response.body);
        }
        self.finish_http(keep_alive, ctx, now);
    }

    /// Queues the head of a plain HTTP answer announcing `length` body bytes; returns
    /// whether the connection stays open after the answer.
    pub(super) fn write_http_head(
        &mut self,
        request: &Request<'_>,
        response: &HttpResponse,
        length: Option<u64>,
    ) -> bool {
        let keep_alive = request.keep_alive() && !self.draining();
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

    pub(super) fn upgrade(
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
            ctx.metrics.refused(error.status);
            handshake::write_rejection(&mut self.out.queued, &error);
            self.close_after_response();
            return;
        }
        let upgrade = match handshake::validate_upgrade(request) {
            Ok(upgrade) => upgrade,
            Err(error) => {
                tracing::debug!(conn = %self.id, status = error.status, reason = error.reason, "upgrade refused");
                ctx.metrics.refused(error.status);
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
            ctx.metrics.refused(error.status);
            handshake::write_rejection(&mut self.out.queued, &error);
            self.close_after_response();
            return;
        }
        // The route's origin policy runs before user code: a refused origin never
        // reaches the hook (403).
        if let Err(error) = handshake::check_origin(options.origin_policy(), request, &upgrade) {
            tracing::debug!(conn = %self.id, origin = ?upgrade.origin(), "upgrade refused: origin");
            ctx.metrics.refused(error.status);
            handshake::write_rejection(&mut self.out.queued, &error);
            self.close_after_response();
            return;
        }
        // Behind a trusted proxy the hook sees the client it forwarded (`http/forwarded.rs`).
        let tcp_peer = self.peer();
        let proxies = &ctx.config.trusted_proxies;
        let hook_input = UpgradeRequest {
            request,
            upgrade: &upgrade,
            peer: tcp_peer.map(|peer| proxies.client_addr(peer, request)),
            tcp_peer,
        };
        let accept = match upgrade_fn(&hook_input) {
            Ok(accept) => accept,
            Err(reject) => {
                ctx.metrics.refused(reject.status);
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
        // permessage-deflate, when the route offers it and the client asked for it.
        let deflate = options.deflate_options().and_then(|deflate| {
            handshake::negotiate_request(request, deflate.negotiation())
                .map(|agreement| (agreement, *deflate))
        });
        let mut headers = headers;
        let answer = deflate.map(|(agreement, _)| agreement.response_value());
        if let Some(answer) = &answer {
            headers.push((handshake::EXTENSIONS_HEADER, answer));
        }
        handshake::write_accept(
            &mut self.out.queued,
            &upgrade,
            accept.protocol.as_deref(),
            &headers,
        );
        self.count_upgrade(ctx, now);
        let mut decoder = Decoder::new(Role::Server, ctx.config.limits);
        if let Some((agreement, deflate)) = deflate {
            // Pieces of a compressed message are inflated as they come (failing fast
            // on bad text), not assembled compressed first.
            decoder.stream_compressed();
            let compression = Compression::new(agreement, deflate, &ctx.codecs);
            self.out.compression = Some(Box::new(compression));
        }
        self.open(Inbound::Rfc6455(decoder), accept.handler, ctx, now);
    }

    /// Counts an upgrade in the shard's metrics, with the time since the connection
    /// was accepted (call it before the front gives way to the session).
    pub(super) fn count_upgrade(&self, ctx: &ShardContext, now: Instant) {
        if let Some(front) = self.front() {
            ctx.metrics
                .upgraded(now.saturating_duration_since(front.accepted));
        }
    }

    pub(super) fn reject_http(&mut self, error: &HttpError, ctx: &ShardContext) {
        ctx.metrics.refused(error.status);
        tracing::debug!(conn = %self.id, status = error.status, reason = error.reason, "bad request");
        http::write_error(&mut self.out.queued, error, &[]);
        self.close_after_response();
    }

    /// An HTTP answer was queued: wait for the next request on a kept-alive connection,
    /// or close once the answer is written.
    pub(super) fn finish_http(&mut self, keep_alive: bool, ctx: &ShardContext, now: Instant) {
        let peer = self.peer();
        let Stage::Front(front) = &mut self.stage else {
            return;
        };
        front.requests_served = true;
        if keep_alive && !front.draining {
            front.phase = FrontPhase::Http {
                head: Vec::new(),
                peer,
            };
            self.timers
                .set(Timer::Handshake, now + ctx.config.handshake_timeout);
        } else {
            self.close_after_response();
        }
    }

    /// An HTTP answer was queued: nothing more is read, the socket closes after it.
    pub(super) fn close_after_response(&mut self) {
        self.stage = Stage::Ended;
        self.out.closed = true;
        self.wants_close = true;
        self.timers.clear_all();
    }

    pub(super) fn finish_http_timeout(&mut self, ctx: &ShardContext) {
        let Some(front) = self.front() else {
            return;
        };
        if let FrontPhase::Hixie76Body { .. } = front.phase {
            // The 101 head is out: no HTTP answer is possible, just close.
            tracing::debug!(conn = %self.id, "hixie-76 challenge body not received in time");
            self.close_after_response();
        } else if let FrontPhase::Http { head, .. } = &front.phase {
            if head.is_empty() && front.requests_served {
                // A kept-alive connection that stayed idle: close it quietly.
                self.close_after_response();
                return;
            }
            tracing::debug!(conn = %self.id, "request head not received in time");
            let error = HttpError {
                status: 408,
                reason: "request head not received in time",
            };
            ctx.metrics.refused(error.status);
            http::write_error(&mut self.out.queued, &error, &[]);
            self.close_after_response();
        } else if let FrontPhase::SockJsWaiting { .. } = front.phase {
            // Only a shutdown arms this: the owner did not answer in time.
            tracing::debug!(conn = %self.id, "no SockJS answer before the shutdown deadline");
            self.transport_ended_sockjs();
            self.close_after_response();
        }
    }
}

impl Front {
    /// The peer's address, while the connection may still be upgraded.
    fn peer(&self) -> Option<SocketAddr> {
        match &self.phase {
            FrontPhase::Http { peer, .. } | FrontPhase::SockJsWaiting { peer, .. } => *peer,
            FrontPhase::Hixie76Body { .. } => None,
        }
    }
}
