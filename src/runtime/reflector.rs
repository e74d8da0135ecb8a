//! The benchmark floor: a frame reflector on the same backends as the real server.
//!
//! It answers the WebSocket handshake, then for every frame writes back an unmasked
//! frame with the same opcode and payload: no UTF-8 validation, no protocol checks, no
//! message assembly, no handler. What it costs is what the kernel and the backend cost
//! plus the unavoidable unmask and copy, so the benchmark rig measures how far ringws
//! proper is above that floor. It is not a server anyone should deploy.

use std::net::SocketAddr;
use std::time::Instant;

use slab::Slab;

use super::core::{SendBuf, ShardCore, Token};
use super::mailbox::{Command, Registry};
use crate::handshake;
use crate::http::{self, Parse};
use crate::proto::{apply_mask, FrameHeader};
use std::sync::Arc;

struct Reflection {
    generation: u32,
    upgraded: bool,
    /// Bytes of an incomplete request head or frame, kept for the next read.
    partial: Vec<u8>,
    out: Vec<u8>,
    spare: Vec<u8>,
    wants_close: bool,
    listed: bool,
}

pub(crate) struct Reflector {
    shard: usize,
    registry: Arc<Registry>,
    conns: Slab<Reflection>,
    next_generation: u32,
    ready: Vec<Token>,
    shutting_down: bool,
}

impl Reflector {
    pub(crate) fn new(shard: usize, registry: Arc<Registry>) -> Reflector {
        Reflector {
            shard,
            registry,
            conns: Slab::new(),
            next_generation: 0,
            ready: Vec::new(),
            shutting_down: false,
        }
    }

    fn get(&mut self, token: Token) -> Option<&mut Reflection> {
        self.conns
            .get_mut(token.index())
            .filter(|c| c.generation == token.generation())
    }

    fn touch(&mut self, token: Token) {
        if let Some(conn) = self.get(token) {
            if !conn.listed && (!conn.out.is_empty() || conn.wants_close) {
                conn.listed = true;
                self.ready.push(token);
            }
        }
    }
}

impl Reflection {
    fn receive(&mut self, data: &mut [u8]) {
        if self.partial.is_empty() {
            let used = self.consume(data);
            self.partial.extend_from_slice(&data[used..]);
        } else {
            let mut buffered = std::mem::take(&mut self.partial);
            buffered.extend_from_slice(data);
            let used = self.consume(&mut buffered);
            buffered.drain(..used);
            self.partial = buffered;
        }
    }

    /// Answers the handshake and reflects every complete frame; returns the bytes used.
    fn consume(&mut self, input: &mut [u8]) -> usize {
        let mut used = 0;
        if !self.upgraded {
            let mut headers = http::header_storage();
            match http::parse_request(input, &mut headers, 16 * 1024) {
                Ok(Parse::Partial) => return 0,
                Ok(Parse::Complete { request, head_len }) => {
                    match handshake::validate_upgrade(&request) {
                        Ok(upgrade) => handshake::write_accept(&mut self.out, &upgrade, None, &[]),
                        Err(error) => {
                            handshake::write_rejection(&mut self.out, &error);
                            self.wants_close = true;
                            return input.len();
                        }
                    }
                    self.upgraded = true;
                    used = head_len;
                }
                Err(error) => {
                    http::write_error(&mut self.out, &error, &[]);
                    self.wants_close = true;
                    return input.len();
                }
            }
        }
        while !self.wants_close {
            let Ok(Some((header, header_len))) = FrameHeader::parse(&input[used..]) else {
                // Incomplete, or garbage the floor does not judge: wait or stall.
                break;
            };
            let Some(end) = usize::try_from(header.payload_len)
                .ok()
                .and_then(|len| (used + header_len).checked_add(len))
                .filter(|end| *end <= input.len())
            else {
                break;
            };
            let payload = &mut input[used + header_len..end];
            if let Some(key) = header.mask {
                apply_mask(payload, key, 0);
            }
            let reply = FrameHeader {
                mask: None,
                ..header
            };
            let mut head = [0u8; FrameHeader::MAX_LEN];
            let n = reply.write(&mut head);
            self.out.extend_from_slice(&head[..n]);
            self.out.extend_from_slice(payload);
            self.wants_close = header.opcode == 0x8;
            used = end;
        }
        used
    }
}

impl ShardCore for Reflector {
    fn on_accept(&mut self, _listener: usize, _peer: Option<SocketAddr>, _now: Instant) -> Token {
        let generation = self.next_generation;
        self.next_generation = generation.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let token = Token::new(entry.key() as u32, generation);
        entry.insert(Reflection {
            generation,
            upgraded: false,
            partial: Vec::new(),
            out: Vec::new(),
            spare: Vec::new(),
            wants_close: self.shutting_down,
            listed: false,
        });
        self.touch(token);
        token
    }

    fn on_recv(&mut self, token: Token, data: &mut [u8], _now: Instant) {
        if let Some(conn) = self.get(token) {
            conn.receive(data);
            self.touch(token);
        }
    }

    fn on_eof(&mut self, token: Token, _now: Instant) {
        if let Some(conn) = self.get(token) {
            conn.wants_close = true;
            self.touch(token);
        }
    }

    fn take_send(&mut self, token: Token) -> Option<SendBuf> {
        let conn = self.get(token)?;
        if conn.out.is_empty() {
            return None;
        }
        let spare = std::mem::take(&mut conn.spare);
        Some(SendBuf::Owned(std::mem::replace(&mut conn.out, spare)))
    }

    fn on_sent(&mut self, token: Token, buf: SendBuf, written: std::io::Result<usize>) {
        let mut buf = buf.into_vec();
        let Some(conn) = self.get(token) else { return };
        match written {
            Ok(n) if n < buf.len() => {
                buf.drain(..n);
                buf.extend_from_slice(&conn.out);
                conn.out.clear();
                conn.spare = std::mem::replace(&mut conn.out, buf);
            }
            Ok(_) => {
                buf.clear();
                conn.spare = buf;
            }
            Err(_) => conn.wants_close = true,
        }
        self.touch(token);
    }

    fn wants_close(&self, token: Token) -> bool {
        self.conns
            .get(token.index())
            .filter(|c| c.generation == token.generation())
            .is_none_or(|c| c.wants_close)
    }

    fn on_closed(&mut self, token: Token) {
        if self.get(token).is_some() {
            self.conns.remove(token.index());
        }
    }

    fn on_wake(&mut self, _now: Instant) {
        let registry = Arc::clone(&self.registry);
        let mailbox = registry.mailbox(self.shard);
        mailbox.take_wake();
        while let Some(command) = mailbox.pop() {
            if let Command::Shutdown = command {
                self.shutting_down = true;
                let tokens: Vec<Token> = self
                    .conns
                    .iter()
                    .map(|(i, c)| Token::new(i as u32, c.generation))
                    .collect();
                for token in tokens {
                    if let Some(conn) = self.get(token) {
                        conn.wants_close = true;
                    }
                    self.touch(token);
                }
            }
        }
    }

    fn on_timer(&mut self, _now: Instant) {}

    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    fn drain_ready(&mut self, out: &mut Vec<Token>) {
        for token in self.ready.drain(..) {
            if let Some(conn) = self
                .conns
                .get_mut(token.index())
                .filter(|c| c.generation == token.generation())
            {
                conn.listed = false;
                out.push(token);
            }
        }
    }

    fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    fn is_finished(&self) -> bool {
        self.shutting_down && self.conns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{encode_frame, OpCode};

    #[test]
    fn reflects_frames_split_anywhere_after_the_handshake() {
        let registry = Arc::new(Registry::new(1).expect("registry"));
        let mut core = Reflector::new(0, registry);
        let now = Instant::now();
        let token = core.on_accept(0, None, now);
        let mut input =
            b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .to_vec();
        for size in [0usize, 5, 200, 70_000] {
            encode_frame(
                &mut input,
                OpCode::Binary,
                true,
                &vec![7u8; size],
                Some([1, 2, 3, 4]),
            );
        }
        for chunk in input.chunks_mut(999) {
            core.on_recv(token, chunk, now);
        }
        let out = core.take_send(token).expect("output");
        let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
        assert!(out.starts_with(b"HTTP/1.1 101 "));
        let mut expected = Vec::new();
        for size in [0usize, 5, 200, 70_000] {
            encode_frame(&mut expected, OpCode::Binary, true, &vec![7u8; size], None);
        }
        assert_eq!(&out[head_end..], &expected[..]);
    }
}
