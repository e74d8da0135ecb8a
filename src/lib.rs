//! ringws: a WebSocket server engine for Linux io_uring, with an epoll fallback.
//!
//! The crate is layered (see `DESIGN.md` at the repository root):
//!
//! - [`proto`]: RFC 6455 frames, masks, UTF-8 and message assembly, sans-I/O;
//! - [`http`] and [`handshake`]: request parsing and the WebSocket upgrade, sans-I/O;
//! - `runtime`: shard threads that own sockets and drive the state machines (the only
//!   layer that does I/O);
//! - [`Server`], [`Handler`] and [`Conn`]: what an embedding application uses.
#![warn(missing_docs)]

pub mod handshake;
pub mod http;
pub mod proto;
pub(crate) mod runtime;
