//! What an application implements: a [`Handler`] per WebSocket connection, called on the
//! shard thread that owns the connection, with a [`Conn`] to answer through.

use std::any::Any;
use std::fmt;

use crate::conn::Conn;
use crate::proto::CloseCode;

/// One complete WebSocket message. When the message arrived in a single frame inside
/// one read, the text or bytes are borrowed straight from the receive buffer (no copy);
/// otherwise they borrow the connection's assembly buffer. Either way the borrow ends
/// when the handler returns: copy what you keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, already validated as UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes, whatever the message type.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
        }
    }
}

/// Why a connection ended, as the handler's `on_close` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseReason {
    /// The close code: the peer's, ours, or 1006 (abnormal) when the TCP connection
    /// ended without a close handshake, 1005 when the peer's close frame had no code.
    pub code: CloseCode,
    /// The close reason text (may be empty).
    pub reason: String,
    /// Who started the close.
    pub initiator: CloseInitiator,
}

/// Which side started the end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseInitiator {
    /// The peer sent a close frame first.
    Peer,
    /// This server sent a close frame first: a `close` call, a protocol error found in
    /// the peer's input, or a shutdown.
    Local,
    /// The TCP connection ended (or failed) without a completed close handshake.
    Transport,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?})", self.code.0, self.initiator)?;
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

/// The application side of one WebSocket connection.
///
/// A handler is created per connection by the route's factory and lives on the shard
/// thread that owns the connection: it needs no locks and no `Send`. Every callback gets
/// the connection as [`Conn`], through which it sends, closes or takes a
/// [`ConnHandle`](crate::ConnHandle) for other threads.
///
/// ```
/// use ringws::{Conn, Handler, Message};
///
/// /// Sends every message back to its sender.
/// struct Echo;
///
/// impl Handler for Echo {
///     fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
///         match message {
///             Message::Text(text) => conn.send_text(text),
///             Message::Binary(bytes) => conn.send_binary(bytes),
///         };
///     }
/// }
/// ```
///
/// `Any` (every `'static` type is) only lets the crate recognise its own wrapping
/// handlers; it asks nothing of an implementation.
pub trait Handler: Any {
    /// The handshake succeeded; the connection is open.
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
    }

    /// A complete message arrived.
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>);

    /// A pong arrived (the answer to [`Conn::ping`], or an unsolicited heartbeat).
    fn on_pong(&mut self, conn: &mut Conn<'_>, payload: &[u8]) {
        let _ = (conn, payload);
    }

    /// The bytes waiting to be sent fell back under the backpressure threshold after a
    /// send had returned [`SendStatus::Backpressure`](crate::SendStatus::Backpressure).
    fn on_drain(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
    }

    /// The connection ended. Called exactly once for every opened connection; sends made
    /// from here are dropped.
    fn on_close(&mut self, conn: &mut Conn<'_>, reason: CloseReason) {
        let _ = (conn, reason);
    }
}

/// What a [`ConnHandle`](crate::ConnHandle) (or the connection's heartbeat timer) asks
/// of a connection that serves the SockJS `websocket` transport: the connection hands it
/// to its SockJS adapter (`connection/sockjs/websocket.rs`), which recognises itself
/// behind `dyn Handler`, rather than to the user's handler.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Remote<'a> {
    /// A text message.
    Text(&'a str),
    /// A close with code and reason.
    Close(u16, &'a str),
    /// A timer tick (heartbeats of the SockJS `websocket` transport).
    Tick(std::time::Instant),
    /// Pause (`true`) or resume (`false`) reading.
    Pause(bool),
}
