//! A shard's byte streams: raw TCP connections served by a [`Protocol`] (accepted on the
//! shard's extra listeners) and outgoing links to bridge backends. Their tokens carry
//! [`TokenKind::Stream`], so they never collide with the WebSocket connections' tokens.
//!
//! The shard forwards every [`ShardCore`](super::core::ShardCore) call for a stream
//! token here; what a link changes on its WebSocket side is left in [`Streams::pumps`]
//! for the shard to apply (`bridge::pump`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::Arc;

use slab::Slab;

use super::bridge::Bridge;
use super::core::{Token, TokenKind};
use crate::conn::{ConnId, OutLimits};
use crate::connection::guard;
use crate::protocol::{Protocol, Sink, Transport};
use crate::SendStatus;

mod bridged;

/// Makes the [`Protocol`] of each connection accepted on one raw TCP listener.
pub(crate) type ProtocolFactory = Arc<dyn Fn() -> Box<dyn Protocol> + Send + Sync>;

enum Kind {
    /// A raw TCP connection; `None` once its protocol panicked (it is closing).
    Protocol(Option<Box<dyn Protocol>>),
    /// The backend side of a bridge.
    Link(Rc<RefCell<Bridge>>),
}

struct Stream {
    generation: u32,
    id: ConnId,
    kind: Kind,
    /// [`Kind::Protocol`]: bytes waiting for the socket (a link's are in its bridge).
    out: Vec<u8>,
    in_flight: usize,
    /// No more reading (EOF or error) or the protocol asked to close.
    closing: bool,
    /// `connection_lost` ran.
    lost: bool,
    /// A link whose connect has not completed.
    connecting: bool,
}

/// The stream table of one shard.
pub(crate) struct Streams {
    shard: u32,
    limits: OutLimits,
    protocols: Arc<Vec<ProtocolFactory>>,
    slab: Slab<Stream>,
    next_generation: u32,
    ready: Vec<Token>,
    /// Bridged WebSocket connections, by their token.
    bridges: HashMap<Token, Rc<RefCell<Bridge>>>,
    /// WebSocket connections whose bridge has something for them.
    pumps: Vec<Token>,
    new_bridges: Vec<Rc<RefCell<Bridge>>>,
    shutting_down: bool,
}

/// A raw stream's outgoing queue as a [`Sink`].
struct StreamSink<'s> {
    stream: &'s mut Stream,
    limits: OutLimits,
}

impl Sink for StreamSink<'_> {
    fn write(&mut self, data: &[u8]) -> SendStatus {
        let s = &mut *self.stream;
        let buffered = s.out.len() + s.in_flight;
        if s.closing || buffered + data.len() > self.limits.max_buffered {
            return SendStatus::Dropped;
        }
        s.out.extend_from_slice(data);
        if buffered + data.len() > self.limits.backpressure_threshold {
            SendStatus::Backpressure
        } else {
            SendStatus::Queued
        }
    }

    fn close(&mut self) {
        self.stream.closing = true;
    }

    fn buffered(&self) -> usize {
        self.stream.out.len() + self.stream.in_flight
    }

    fn id(&self) -> ConnId {
        self.stream.id
    }
}

/// Which protocol callback to run.
enum Call<'d> {
    Made,
    Data(&'d [u8]),
    Lost(Option<io::Error>),
}

impl Streams {
    /// The raw TCP streams and bridge links open now.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn new(shard: u32, limits: OutLimits) -> Streams {
        Streams {
            shard,
            limits,
            protocols: Arc::new(Vec::new()),
            slab: Slab::new(),
            next_generation: 0,
            ready: Vec::new(),
            bridges: HashMap::new(),
            pumps: Vec::new(),
            new_bridges: Vec::new(),
            shutting_down: false,
        }
    }

    /// The protocols of the raw TCP listeners 1, 2, … (listener 0 is the HTTP one).
    pub(crate) fn set_protocols(&mut self, protocols: Arc<Vec<ProtocolFactory>>) {
        self.protocols = protocols;
    }

    fn insert(&mut self, kind: Kind, connecting: bool) -> Token {
        let generation = self.next_generation;
        self.next_generation = generation.wrapping_add(1);
        let vacant = self.slab.vacant_entry();
        let token = Token::of_kind(TokenKind::Stream, vacant.key(), generation);
        vacant.insert(Stream {
            generation,
            id: ConnId {
                shard: self.shard,
                token,
            },
            kind,
            out: Vec::new(),
            in_flight: 0,
            closing: false,
            lost: false,
            connecting,
        });
        token
    }

    fn get(&mut self, token: Token) -> Option<&mut Stream> {
        self.slab
            .get_mut(token.key())
            .filter(|s| s.generation == token.generation())
    }

    fn get_ref(&self, token: Token) -> Option<&Stream> {
        self.slab
            .get(token.key())
            .filter(|s| s.generation == token.generation())
    }

    /// Runs one protocol callback, containing a panic to this stream.
    fn call(&mut self, token: Token, call: Call<'_>) {
        let limits = self.limits;
        let Some(stream) = self.get(token) else {
            return;
        };
        let protocol = match &mut stream.kind {
            Kind::Protocol(protocol) => protocol.take(),
            Kind::Link(_) => None,
        };
        let Some(mut protocol) = protocol else { return };
        let id = stream.id;
        if let Call::Lost(_) = call {
            stream.lost = true;
        }
        let mut sink = StreamSink { stream, limits };
        let result = guard(id, || {
            let mut transport = Transport::new(&mut sink);
            match call {
                Call::Made => protocol.connection_made(&mut transport),
                Call::Data(data) => protocol.data_received(&mut transport, data),
                Call::Lost(error) => protocol.connection_lost(&mut transport, error),
            }
        });
        let stream = sink.stream;
        match result {
            Ok(()) => stream.kind = Kind::Protocol(Some(protocol)),
            Err(_) => {
                stream.closing = true;
                stream.lost = true;
            }
        }
        self.ready.push(token);
    }

    /// A connection arrived on raw TCP listener `door` (0-based among the raw ones).
    pub(crate) fn on_accept(&mut self, door: usize) -> Token {
        let protocol = self.protocols.get(door).map(|factory| factory());
        let orphan = protocol.is_none();
        let token = self.insert(Kind::Protocol(protocol), false);
        if self.shutting_down || orphan {
            if let Some(stream) = self.get(token) {
                stream.closing = true;
            }
        }
        self.call(token, Call::Made);
        self.ready.push(token);
        token
    }

    pub(crate) fn on_recv(&mut self, token: Token, data: &[u8]) {
        let Some(stream) = self.get(token) else {
            return;
        };
        match &stream.kind {
            Kind::Protocol(_) => self.call(token, Call::Data(data)),
            Kind::Link(bridge) => {
                let bridge = Rc::clone(bridge);
                let ws = match bridge.try_borrow_mut() {
                    Ok(mut b) => {
                        b.to_ws.extend_from_slice(data);
                        b.ws
                    }
                    Err(_) => None,
                };
                self.pumps.extend(ws);
            }
        }
    }

    pub(crate) fn on_eof(&mut self, token: Token, error: Option<io::Error>) {
        let Some(stream) = self.get(token) else {
            return;
        };
        stream.closing = true;
        self.ready.push(token);
        let Some(stream) = self.get(token) else {
            return;
        };
        match &stream.kind {
            Kind::Protocol(_) if !stream.lost => self.call(token, Call::Lost(error)),
            Kind::Protocol(_) => {}
            Kind::Link(bridge) => {
                let bridge = Rc::clone(bridge);
                self.backend_ended(&bridge, error);
            }
        }
    }

    pub(crate) fn take_send(&mut self, token: Token) -> Option<Vec<u8>> {
        let stream = self.get(token)?;
        if stream.connecting {
            return None;
        }
        let buf = match &stream.kind {
            Kind::Protocol(_) => std::mem::take(&mut stream.out),
            Kind::Link(bridge) => {
                let mut b = bridge.try_borrow_mut().ok()?;
                std::mem::take(&mut b.to_backend)
            }
        };
        if buf.is_empty() {
            return None;
        }
        match &stream.kind {
            Kind::Protocol(_) => stream.in_flight = buf.len(),
            Kind::Link(bridge) => {
                if let Ok(mut b) = bridge.try_borrow_mut() {
                    b.in_flight = buf.len();
                }
            }
        }
        Some(buf)
    }

    pub(crate) fn on_sent(&mut self, token: Token, mut buf: Vec<u8>, written: io::Result<usize>) {
        self.ready.push(token);
        let Some(stream) = self.get(token) else {
            return;
        };
        let n = match written {
            Ok(n) => n.min(buf.len()),
            Err(error) => {
                stream.in_flight = 0;
                self.on_eof(token, Some(error));
                return;
            }
        };
        buf.drain(..n);
        let mut ws = None;
        match &stream.kind {
            Kind::Protocol(_) => {
                stream.in_flight = 0;
                buf.append(&mut stream.out);
                stream.out = buf;
            }
            Kind::Link(bridge) => {
                if let Ok(mut b) = bridge.try_borrow_mut() {
                    b.in_flight = 0;
                    buf.append(&mut b.to_backend);
                    b.to_backend = buf;
                    ws = b.ws;
                }
            }
        }
        // The WebSocket may be read again.
        self.ready.extend(ws);
    }

    pub(crate) fn wants_close(&self, token: Token) -> bool {
        let Some(stream) = self.get_ref(token) else {
            return true;
        };
        match &stream.kind {
            Kind::Protocol(_) => stream.closing && stream.out.is_empty(),
            Kind::Link(bridge) => match bridge.try_borrow() {
                // Abandon a connect nobody waits for any more (bytes the WebSocket sent
                // before it closed still go to the backend).
                Ok(b) if stream.connecting => {
                    self.shutting_down || b.ws_closed && b.to_backend.is_empty()
                }
                Ok(b) => {
                    stream.closing
                        || self.shutting_down && b.ws.is_none()
                        || b.ws_closed && b.to_backend.is_empty()
                }
                Err(_) => false,
            },
        }
    }

    pub(crate) fn wants_read(&self, token: Token) -> bool {
        let Some(stream) = self.get_ref(token) else {
            return true;
        };
        match &stream.kind {
            Kind::Protocol(_) => {
                !self.limits.pause_on_backpressure
                    || stream.out.len() + stream.in_flight <= self.limits.backpressure_threshold
            }
            Kind::Link(bridge) => bridge.try_borrow().map_or(true, |b| !b.ws_congested),
        }
    }

    pub(crate) fn on_closed(&mut self, token: Token) {
        let key = token.key();
        if self.get(token).is_none() {
            return;
        }
        let lost = self.get_ref(token).is_some_and(|s| s.lost);
        if !lost {
            self.call(token, Call::Lost(None));
        }
        let stream = self.slab.remove(key);
        if let Kind::Link(bridge) = stream.kind {
            if let Ok(mut b) = bridge.try_borrow_mut() {
                b.link = None;
            }
            self.backend_ended(&bridge, None);
        }
    }

    pub(crate) fn drain_ready(&mut self, out: &mut Vec<Token>) {
        out.append(&mut self.ready);
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty() || !self.pumps.is_empty()
    }

    pub(crate) fn shutdown(&mut self) {
        self.shutting_down = true;
        let tokens: Vec<Token> = self.slab.iter().map(|(_, s)| s.id.token).collect();
        for token in tokens {
            if let Some(stream) = self.get(token) {
                if let Kind::Protocol(_) = stream.kind {
                    stream.closing = true;
                }
            }
            self.ready.push(token);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }
}
