//! The hixie-75/76 side of [`Connection`]: their handshake answers, the hixie-76
//! challenge body, and the `0x00 … 0xFF` frames delivered to the same handler.

use std::time::Instant;

use super::pause::{input_paused, BACKPRESSURE_LIMIT_ERROR};
use super::{guard, Connection, Inbound, Phase, ShardContext};
use crate::conn::{Conn, Framing};
use crate::handler::{Handler, Message};
use crate::handshake::{self, HixieHead, Upgrade, Version};
use crate::http::Request;
use crate::proto::{HixieDecoder, HixieEvent, ProtocolError};

impl Connection {
    /// Answers an accepted hixie request. hixie-75 opens at once; hixie-76 sends its
    /// 101 head now (a proxy holds the client's 8 bytes until it sees it) and waits for
    /// those bytes before the 16-byte answer.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn accept_hixie(
        &mut self,
        request: &Request<'_>,
        upgrade: &Upgrade<'_>,
        protocol: Option<&str>,
        headers: &[(&str, &str)],
        handler: Box<dyn Handler>,
        ctx: &ShardContext,
        now: Instant,
    ) {
        let head = HixieHead {
            origin: upgrade.origin(),
            // The scheme written in `Sec-WebSocket-Location`.
            scheme: if ctx.config.tls.is_some() {
                "wss"
            } else {
                "ws"
            },
            host: request.header_str("Host").unwrap_or(""),
            resource: request.target(),
            protocol,
        };
        let out = &mut self.out.queued;
        match (upgrade.version, upgrade.hixie76_keys()) {
            (Version::Hixie76, Some(keys)) => {
                handshake::write_hixie76_head(out, &head, headers);
                self.out.framing = Framing::Hixie76;
                self.phase = Phase::Hixie76Body {
                    keys,
                    body: [0; 8],
                    have: 0,
                    handler,
                };
            }
            _ => {
                handshake::write_hixie75_head(out, &head, headers);
                self.out.framing = Framing::Hixie75;
                let inbound = Inbound::Hixie(HixieDecoder::new(ctx.config.limits));
                self.open(inbound, handler, ctx, now);
            }
        }
    }

    /// Collects the hixie-76 body; once complete, answers the challenge, opens, and
    /// passes any following bytes on as frames.
    pub(super) fn receive_hixie76_body(
        &mut self,
        data: &mut [u8],
        ctx: &ShardContext,
        now: Instant,
    ) {
        let Phase::Hixie76Body {
            keys, body, have, ..
        } = &mut self.phase
        else {
            return;
        };
        let take = (body.len() - *have).min(data.len());
        body[*have..*have + take].copy_from_slice(&data[..take]);
        *have += take;
        if *have < body.len() {
            return;
        }
        let answer = handshake::hixie76_answer(keys.0, keys.1, body);
        self.out.queued.extend_from_slice(&answer);
        if let Phase::Hixie76Body { handler, .. } = std::mem::replace(&mut self.phase, Phase::Ended)
        {
            let inbound = Inbound::Hixie(HixieDecoder::new(ctx.config.limits));
            self.open(inbound, handler, ctx, now);
        }
        if take < data.len() {
            self.receive(&mut data[take..], ctx, now);
        }
    }

    /// Frames from a hixie client: text messages to the handler, `0xFF 0x00` to close.
    pub(super) fn receive_hixie_frames(&mut self, data: &[u8], ctx: &ShardContext, now: Instant) {
        let Phase::Open {
            inbound: Inbound::Hixie(decoder),
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
        let mut pos = 0;
        let mut ended: Option<Result<(), ProtocolError>> = None;
        while ended.is_none() && pos < data.len() {
            match decoder.decode(&data[pos..]) {
                Err(error) => ended = Some(Err(error)),
                Ok((consumed, event)) => {
                    pos += consumed;
                    match event {
                        // After our 0xFF 0x00, the peer's messages are discarded.
                        Some(HixieEvent::Text(text)) if !conn.out.closed => {
                            let message = Message::Text(text);
                            if let Err(error) = guard(id, || handler.on_message(&mut conn, message))
                            {
                                ended = Some(Err(error));
                            }
                        }
                        Some(HixieEvent::Close) => ended = Some(Ok(())),
                        Some(HixieEvent::Text(_)) => {}
                        None => break,
                    }
                }
            }
            if ended.is_some() {
                continue;
            }
            if conn.out.overflowed {
                ended = Some(Err(BACKPRESSURE_LIMIT_ERROR));
            } else if input_paused(conn.out) {
                // Keep the rest for the resume.
                self.rare_mut().held.extend_from_slice(&data[pos..]);
                break;
            }
        }
        match ended {
            // No code on the wire: the peer's close is reported as 1005 (no status).
            Some(Ok(())) => self.on_peer_close(None, ctx),
            Some(Err(error)) => self.fail(error, ctx),
            None => self.after_callback(ctx, now),
        }
    }
}
