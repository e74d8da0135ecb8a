//! The WebSocket-to-TCP bridge (websockify's job): each WebSocket connection on a bridge
//! route opens a TCP connection to the backend and the bytes are copied both ways, in
//! order, with backpressure on each side.
//!
//! The WebSocket side is a [`Handler`] ([`BridgeHandler`]); the TCP side is a link in
//! the shard's stream table (`runtime::link`). They share a [`Bridge`] (same shard
//! thread, `Rc<RefCell<_>>`). The handler hands a new bridge to the shard through a
//! thread-local queue, which the shard drains when the backend asks for connects.
//!
//! Backpressure: the backend link is not read while the WebSocket's outgoing queue is
//! over the threshold, and the WebSocket is not read while the bytes waiting for the
//! backend are over it.
//!
//! Closes: the backend refusing (or failing) closes the WebSocket with 1011
//! `"backend unavailable: <reason>"`; the backend closing closes it with 1000
//! "backend closed", after everything it sent; the WebSocket closing closes the link
//! after the bytes it sent reached the backend.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use base64::Engine;

use crate::conn::Conn;
use crate::connection::{Connection, ShardContext};
use crate::handler::{CloseReason, Handler, Message};
use crate::proto::{CloseCode, OpCode};
use crate::route::{Accept, UpgradeRequest};
use crate::runtime::core::Token;

thread_local! {
    /// Bridges opened on this shard thread and not yet seen by its stream table.
    static NEW_BRIDGES: RefCell<Vec<Rc<RefCell<Bridge>>>> = const { RefCell::new(Vec::new()) };
}

/// Moves the bridges opened since the last call into `out`.
pub(crate) fn take_new(out: &mut Vec<Rc<RefCell<Bridge>>>) {
    NEW_BRIDGES.with(|list| {
        if let Ok(mut list) = list.try_borrow_mut() {
            out.append(&mut list);
        }
    });
}

/// How WebSocket messages carry the stream (websockify's subprotocols).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `binary` (or no subprotocol): binary messages.
    Binary,
    /// `base64`: text messages carrying base64.
    Base64,
}

/// Where the backend side stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BackendState {
    Connecting,
    Open,
    /// Connecting or writing failed: the reason.
    Failed(String),
    /// The backend closed its side.
    Closed,
}

/// The state a bridge's two sides share.
pub(crate) struct Bridge {
    pub(crate) addr: SocketAddr,
    pub(crate) mode: Mode,
    /// The WebSocket connection (set when it opens).
    pub(crate) ws: Option<Token>,
    /// The backend link (set when the shard starts connecting it).
    pub(crate) link: Option<Token>,
    /// Bytes from the WebSocket, not yet handed to the link's socket.
    pub(crate) to_backend: Vec<u8>,
    /// Bytes handed to the link's socket and not yet reported sent.
    pub(crate) in_flight: usize,
    /// Bytes from the backend, not yet queued on the WebSocket.
    pub(crate) to_ws: Vec<u8>,
    pub(crate) backend: BackendState,
    /// The WebSocket ended (its handler's `on_close` ran).
    pub(crate) ws_closed: bool,
    /// The WebSocket's outgoing queue is over the threshold: do not read the backend.
    pub(crate) ws_congested: bool,
    /// The close for the backend's end was queued on the WebSocket.
    pub(crate) close_sent: bool,
    pub(crate) threshold: usize,
}

impl Bridge {
    /// True while the WebSocket may be read (the backend keeps up).
    pub(crate) fn backend_keeps_up(&self) -> bool {
        self.to_backend.len() + self.in_flight <= self.threshold
    }
}

/// The upgrade hook of a bridge route: picks the subprotocol (`binary` or `base64`,
/// in the client's order; binary without one) and opens the bridge.
pub(crate) fn accept(request: &UpgradeRequest<'_, '_>, addr: SocketAddr) -> Accept {
    let chosen = request
        .protocols()
        .find(|p| p.eq_ignore_ascii_case("binary") || p.eq_ignore_ascii_case("base64"));
    let mode = match chosen {
        Some(p) if p.eq_ignore_ascii_case("base64") => Mode::Base64,
        _ => Mode::Binary,
    };
    let bridge = Bridge {
        addr,
        mode,
        ws: None,
        link: None,
        to_backend: Vec::new(),
        in_flight: 0,
        to_ws: Vec::new(),
        backend: BackendState::Connecting,
        ws_closed: false,
        ws_congested: false,
        close_sent: false,
        threshold: 256 * 1024,
    };
    let handler = BridgeHandler {
        bridge: Rc::new(RefCell::new(bridge)),
    };
    match chosen {
        Some(protocol) => Accept::new(handler).protocol(protocol.to_ascii_lowercase()),
        None => Accept::new(handler),
    }
}

/// The WebSocket side of a bridge.
struct BridgeHandler {
    bridge: Rc<RefCell<Bridge>>,
}

impl Handler for BridgeHandler {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        if let Ok(mut bridge) = self.bridge.try_borrow_mut() {
            bridge.ws = Some(conn.id().token);
        }
        let bridge = Rc::clone(&self.bridge);
        NEW_BRIDGES.with(|list| {
            if let Ok(mut list) = list.try_borrow_mut() {
                list.push(bridge);
            }
        });
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        let Ok(mut bridge) = self.bridge.try_borrow_mut() else {
            return;
        };
        match (bridge.mode, message) {
            (Mode::Base64, Message::Text(text)) => {
                let engine = base64::engine::general_purpose::STANDARD;
                let start = bridge.to_backend.len();
                if engine
                    .decode_vec(text.trim(), &mut bridge.to_backend)
                    .is_err()
                {
                    bridge.to_backend.truncate(start);
                    drop(bridge);
                    conn.close(1007, "invalid base64");
                }
            }
            (_, message) => bridge.to_backend.extend_from_slice(message.as_bytes()),
        }
    }

    fn on_close(&mut self, _conn: &mut Conn<'_>, _reason: CloseReason) {
        if let Ok(mut bridge) = self.bridge.try_borrow_mut() {
            bridge.ws_closed = true;
        }
    }
}

/// Frame header bytes at most (a server frame carries no mask).
const MAX_HEADER: usize = 10;

/// Queues what the backend sent on the WebSocket, as much as its `max_buffered` has
/// room for, and, once the backend is gone and everything it sent is queued, the close
/// that says so. Bytes that do not fit stay in `to_ws` (the backend is not read
/// meanwhile: its reads stopped at the backpressure threshold, and what was already on
/// its way is bounded by the socket buffer) until the WebSocket drains and `touched`
/// lists it for another pump: a slow WebSocket reader loses nothing.
pub(crate) fn pump(bridge: &RefCell<Bridge>, conn: &mut Connection, ctx: &ShardContext) {
    let Ok(mut b) = bridge.try_borrow_mut() else {
        return;
    };
    if !b.to_ws.is_empty() {
        let room = conn
            .out
            .limits
            .max_buffered
            .saturating_sub(conn.out.buffered() + MAX_HEADER);
        // Base64 turns 3 bytes into 4: take whole groups of 3.
        let fits = match b.mode {
            Mode::Binary => room,
            Mode::Base64 => room / 4 * 3,
        };
        let take = fits.min(b.to_ws.len());
        if take > 0 {
            let data = &b.to_ws[..take];
            match b.mode {
                Mode::Binary => {
                    conn.out.send_message(OpCode::Binary, data, &ctx.codecs);
                }
                Mode::Base64 => {
                    let text = base64::engine::general_purpose::STANDARD.encode(data);
                    conn.out
                        .send_message(OpCode::Text, text.as_bytes(), &ctx.codecs);
                }
            }
            b.to_ws.drain(..take);
        }
        if !b.to_ws.is_empty() {
            // The close (if the backend is gone) follows the rest.
            return;
        }
    }
    let end = match &b.backend {
        _ if b.close_sent || b.ws_closed => None,
        BackendState::Failed(reason) => Some((
            CloseCode::INTERNAL_ERROR,
            format!("backend unavailable: {reason}"),
        )),
        BackendState::Closed => Some((CloseCode::NORMAL, String::from("backend closed"))),
        BackendState::Connecting | BackendState::Open => None,
    };
    if let Some((code, reason)) = end {
        b.close_sent = true;
        drop(b);
        conn.close(code, &reason, ctx, Instant::now());
    }
}
