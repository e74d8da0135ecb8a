//! The parts of a connection's state that most connections never use, boxed on first
//! use: an idle open WebSocket carries one pointer for all of them instead of ~100
//! bytes (memory per idle connection is a measured target, BENCHMARKS.md).

use std::time::Duration;

use super::Connection;
use super::SockJsRequest;
use crate::proto::CloseCode;

/// State needed by SockJS, a close we started, a paused handler or a refused body.
#[derive(Default)]
pub(super) struct Rare {
    /// Our close frame (code, reason) if we started the close handshake.
    pub(super) local_close: Option<(CloseCode, String)>,
    /// SockJS requests for session owners, taken by the shard: (owner shard, request).
    pub(super) sockjs_requests: Vec<(usize, SockJsRequest)>,
    /// The handler is the SockJS `websocket` adaptor (with this heartbeat delay):
    /// `ConnHandle` commands and heartbeat ticks go through it.
    pub(super) sockjs_ws: Option<Duration>,
    /// Bytes of a refused request body still to be read and dropped (a SockJS send
    /// over its service's `max_body_bytes`) before the next request begins.
    pub(super) discard: usize,
    /// Received bytes the handler has not been given yet because it paused reading
    /// ([`Conn::pause_reading`](crate::Conn::pause_reading)); they go through the
    /// decoder after the resume.
    pub(super) held: Vec<u8>,
    /// When the shard's memory budget paused reading, while it does
    /// (`Outbox::budget_paused`).
    pub(super) budget_paused_at: Option<std::time::Instant>,
}

impl Connection {
    /// The rare state, allocated on first use.
    pub(super) fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Takes our close frame, if we started the close handshake.
    pub(super) fn take_local_close(&mut self) -> Option<(CloseCode, String)> {
        self.rare.as_mut().and_then(|rare| rare.local_close.take())
    }

    pub(super) fn has_local_close(&self) -> bool {
        self.rare
            .as_ref()
            .is_some_and(|rare| rare.local_close.is_some())
    }

    /// The SockJS `websocket` adaptor's heartbeat delay, when this connection is one.
    pub(super) fn sockjs_ws(&self) -> Option<Duration> {
        self.rare.as_ref().and_then(|rare| rare.sockjs_ws)
    }

    pub(super) fn discard(&self) -> usize {
        self.rare.as_ref().map_or(0, |rare| rare.discard)
    }

    pub(super) fn has_held(&self) -> bool {
        self.rare.as_ref().is_some_and(|rare| !rare.held.is_empty())
    }

    /// The SockJS requests this connection made for session owners (for the shard).
    pub(crate) fn take_sockjs_requests(&mut self) -> Vec<(usize, SockJsRequest)> {
        match self.rare.as_mut() {
            Some(rare) => std::mem::take(&mut rare.sockjs_requests),
            None => Vec::new(),
        }
    }

    pub(crate) fn has_sockjs_requests(&self) -> bool {
        self.rare
            .as_ref()
            .is_some_and(|rare| !rare.sockjs_requests.is_empty())
    }
}
