//! The stream table's bridge side: connecting links for new bridges, and keeping a
//! bridged WebSocket connection and its link in step (data, congestion, ends).

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use super::{Kind, Streams};
use crate::runtime::bridge::{self, Bridge};
use crate::runtime::core::Token;

impl Streams {
    pub(super) fn backend_ended(&mut self, bridge: &RefCell<Bridge>, error: Option<io::Error>) {
        let Ok(mut b) = bridge.try_borrow_mut() else {
            return;
        };
        if matches!(
            b.backend,
            bridge::BackendState::Open | bridge::BackendState::Connecting
        ) {
            b.backend = match error {
                Some(error) => bridge::BackendState::Failed(error.to_string()),
                None => bridge::BackendState::Closed,
            };
        }
        // Nothing more reaches the backend: a WebSocket paused for it reads again (and
        // sees its close handshake).
        b.to_backend = Vec::new();
        b.in_flight = 0;
        self.pumps.extend(b.ws);
        self.ready.extend(b.ws);
    }

    /// May the WebSocket connection `ws` be read? (Not while its bridge's backend lags.)
    pub(crate) fn ws_wants_read(&self, ws: Token) -> bool {
        if self.bridges.is_empty() {
            return true;
        }
        self.bridges
            .get(&ws)
            .and_then(|b| b.try_borrow().ok().map(|b| b.backend_keeps_up()))
            .unwrap_or(true)
    }

    /// Moves new bridges' connects into `out`.
    pub(crate) fn take_connects(&mut self, out: &mut Vec<(Token, SocketAddr)>) {
        bridge::take_new(&mut self.new_bridges);
        for bridge in std::mem::take(&mut self.new_bridges) {
            let Ok(mut b) = bridge.try_borrow_mut() else {
                continue;
            };
            let Some(ws) = b.ws else { continue };
            // At shutdown the WebSocket is closing: no backend for it.
            if b.ws_closed || self.shutting_down {
                continue;
            }
            b.threshold = self.limits.backpressure_threshold;
            let addr = b.addr;
            drop(b);
            self.bridges.insert(ws, Rc::clone(&bridge));
            let token = self.insert(Kind::Link(Rc::clone(&bridge)), true);
            if let Ok(mut b) = bridge.try_borrow_mut() {
                b.link = Some(token);
            }
            out.push((token, addr));
        }
    }

    pub(crate) fn on_connected(&mut self, token: Token, result: io::Result<()>) {
        let Some(stream) = self.get(token) else {
            return;
        };
        stream.connecting = false;
        let Kind::Link(bridge) = &stream.kind else {
            return;
        };
        let bridge = Rc::clone(bridge);
        match result {
            Ok(()) => {
                if let Ok(mut b) = bridge.try_borrow_mut() {
                    b.backend = bridge::BackendState::Open;
                }
                self.ready.push(token);
            }
            Err(error) => {
                self.slab.remove(token.key());
                self.backend_ended(&bridge, Some(error));
            }
        }
    }

    /// A WebSocket connection changed (`buffered`: its queued outgoing bytes): update
    /// its bridge's congestion and list the link when it has work.
    pub(crate) fn touched(&mut self, ws: Token, buffered: usize) {
        if self.bridges.is_empty() {
            return;
        }
        let Some(bridge) = self.bridges.get(&ws) else {
            return;
        };
        let Ok(mut b) = bridge.try_borrow_mut() else {
            return;
        };
        let congested = buffered > self.limits.backpressure_threshold;
        let link = b.link;
        if congested != b.ws_congested || !b.to_backend.is_empty() || b.ws_closed {
            b.ws_congested = congested;
            self.ready.extend(link);
        }
        if !b.backend_keeps_up() {
            self.ready.push(ws);
        }
        if !b.to_ws.is_empty() && !congested {
            // Backend bytes that did not fit on the WebSocket's queue: it drained.
            self.pumps.push(ws);
        }
    }

    /// The WebSocket connection `ws` is gone.
    pub(crate) fn ws_gone(&mut self, ws: Token) {
        if let Some(bridge) = self.bridges.remove(&ws) {
            if let Ok(mut b) = bridge.try_borrow_mut() {
                b.ws_closed = true;
                b.ws = None;
                b.ws_congested = false;
                self.ready.extend(b.link);
            }
        }
    }

    /// The WebSocket connections whose bridges have something for them.
    pub(crate) fn take_pumps(&mut self) -> Vec<Token> {
        std::mem::take(&mut self.pumps)
    }

    /// The bridge of WebSocket connection `ws`.
    pub(crate) fn bridge(&self, ws: Token) -> Option<Rc<RefCell<Bridge>>> {
        self.bridges.get(&ws).cloned()
    }
}
