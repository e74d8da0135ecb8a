//! ringws: a WebSocket server engine for Linux io_uring, with an epoll fallback.
//!
//! The crate is layered (`ARCHITECTURE.md` at the repository root is the map):
//!
//! - [`proto`]: RFC 6455 frames, masks, UTF-8 and message assembly, sans-I/O, both roles,
//!   the legacy hixie-75/76 framing, and the permessage-deflate codec (not yet used by
//!   the server: see [`handshake::deflate`]);
//! - [`http`] and [`handshake`]: request parsing and the WebSocket upgrade (RFC 6455,
//!   hybi-07/08, hixie-76 / hybi-00, hixie-75), sans-I/O;
//! - the connection state machine (HTTP head → upgrade → frames → handler), sans-I/O;
//! - the runtime: shard threads that own sockets and drive the state machines on
//!   io_uring or epoll (the only layer that does I/O);
//! - [`pubsub`]: topics across shards and, through Redis, across servers
//!   ([`Conn::subscribe`], [`Conn::publish`], [`ServerHandle::publish`]): each message
//!   encoded once, fanned out per shard in one write per subscriber and loop turn;
//! - [`sockjs`]: the SockJS options ([`sockjs::SockJsOptions`], [`sockjs::Flavour`]) for
//!   the services [`Builder::sockjs`] serves next to the WebSocket routes; the SockJS
//!   protocol core behind them (sessions, transports, pages) is sans-I/O and internal;
//! - [`Server`], [`Handler`], [`Conn`] and [`ConnHandle`]: what an application uses;
//!   [`Protocol`] and [`Transport`] for byte streams served over raw TCP, WebSocket and
//!   SockJS alike.
//!
//! ```no_run
//! use ringws::{Conn, Handler, Message, Server};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
//!         match message {
//!             Message::Text(text) => conn.send_text(text),
//!             Message::Binary(bytes) => conn.send_binary(bytes),
//!         };
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     Server::builder()
//!         .bind("127.0.0.1:8080")
//!         .websocket("/echo", || Echo)
//!         .build()?
//!         .run()
//! }
//! ```
#![warn(missing_docs)]

/// The same [`Handler`] inside hyper and axum (feature `hyper`; the axum extractor with
/// feature `axum`): WebSocket upgrades over HTTP/1.1 and HTTP/2 (RFC 8441), sessions on
/// the adapter's threads, pub/sub shared with a [`Server`], and the hand-off of plain
/// TCP upgrades to its shards. See [`adapter::Adapter`].
#[cfg(feature = "hyper")]
pub mod adapter {
    pub use crate::runtime::adapter::{
        Adapter, AdapterBuilder, UpgradeRejection, WebSocketUpgrade,
    };
}
pub mod handshake;
pub mod http;
pub mod proto;
pub mod pubsub;
pub mod sockjs;

mod conn;
mod connection;
mod deflate_options;
mod handle;
mod handler;
pub mod metrics;
mod protocol;
mod route;
pub(crate) mod runtime;
mod server;
#[cfg(test)]
mod test_support;

/// Drives one connection by hand for the `session` fuzz target; not an API (the
/// `fuzzing` feature, on for the fuzz crate and this crate's own tests).
#[cfg(feature = "fuzzing")]
pub use connection::fuzzing;

pub use conn::{Conn, ConnId, SendStatus};
pub use deflate_options::{
    DeflateOptions, DEFAULT_DEFLATE_THRESHOLD, DEFAULT_HIBERNATE_AFTER, DEFAULT_MAX_LIVE_STREAMS,
};
pub use handle::{ConnHandle, SendError};
pub use handler::{CloseInitiator, CloseReason, Handler, Message};
pub use metrics::ServerStats;
pub use protocol::{Protocol, Transport};
pub use route::{Accept, HttpResponse, Reject, UpgradeRequest, WebSocketOptions};
/// Restarts that drop nobody: systemd socket activation and the hand-over of listening
/// sockets to a successor process.
pub use server::handover;
pub use server::{
    Backend, Builder, RunningServer, Server, ServerHandle, DEFAULT_MAX_PENDING_HANDSHAKES,
};

/// What the integration tests check the engine with; not an API (the `test-hooks`
/// feature, on only in this crate's own tests).
#[cfg(feature = "test-hooks")]
pub mod test_hooks {
    /// The shard that owns SockJS session `session_id` of the service added
    /// `service_index`-th (from 0) to a server with `shards` shards.
    pub fn sockjs_owner_shard(service_index: u32, session_id: &str, shards: usize) -> usize {
        crate::connection::owner_shard(service_index, session_id, shards)
    }
}
