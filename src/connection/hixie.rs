//! The hixie-75/76 side of [`Connection`]: their handshake answers, the hixie-76
//! challenge body; their `0x00 … 0xFF` frames go through the one receive loop
//! (`Connection::receive_frames`, via `Inbound::decode`).

use std::time::Instant;

use super::{Connection, Front, FrontPhase, Inbound, ShardContext, Stage};
use crate::conn::Framing;
use crate::handler::Handler;
use crate::handshake::{self, HixieHead, Upgrade, Version};
use crate::http::Request;
use crate::proto::HixieDecoder;

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
        self.count_upgrade(ctx, now);
        let out = &mut self.out.queued;
        match (upgrade.version, upgrade.hixie76_keys()) {
            (Version::Hixie76, Some(keys)) => {
                handshake::write_hixie76_head(out, &head, headers);
                self.out.framing = Framing::Hixie76;
                if let Stage::Front(front) = &mut self.stage {
                    front.phase = FrontPhase::Hixie76Body {
                        keys,
                        body: [0; 8],
                        have: 0,
                        handler,
                    };
                }
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
        let Stage::Front(Front {
            phase: FrontPhase::Hixie76Body {
                keys, body, have, ..
            },
            ..
        }) = &mut self.stage
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
        if let Stage::Front(Front {
            phase: FrontPhase::Hixie76Body { handler, .. },
            ..
        }) = std::mem::replace(&mut self.stage, Stage::Ended)
        {
            let inbound = Inbound::Hixie(HixieDecoder::new(ctx.config.limits));
            self.open(inbound, handler, ctx, now);
        }
        if take < data.len() {
            self.receive(&mut data[take..], ctx, now);
        }
    }
}
