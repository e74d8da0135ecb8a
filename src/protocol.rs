//! [`Protocol`]: a byte-stream application, written once and served unchanged over raw
//! TCP ([`Builder::tcp`](crate::Builder::tcp)), WebSocket
//! ([`Builder::websocket_protocol`](crate::Builder::websocket_protocol)) and SockJS
//! ([`Builder::sockjs_protocol`](crate::Builder::sockjs_protocol)).
//!
//! Over WebSocket every message (binary or text) is handed to
//! [`Protocol::data_received`] as bytes and [`Transport::write`] sends a binary message
//! (a text message to a hixie client, which has no binary frames). Over SockJS, which
//! carries text only, the written bytes go out as text (invalid UTF-8 replaced by
//! U+FFFD). Message boundaries are not part of the stream: a protocol buffers what it
//! needs, as it would over TCP.

use std::io;

use crate::conn::{Conn, ConnId};
use crate::handler::{CloseReason, Handler, Message};
use crate::proto::CloseCode;
use crate::SendStatus;

/// A byte-stream protocol: one value per connection, called on the shard thread that
/// owns the connection (no locks, no `Send` needed).
///
/// ```
/// use ringws::{Protocol, Transport};
///
/// /// Echoes each complete line upper-cased; keeps a partial line until it ends.
/// #[derive(Default)]
/// struct Shout {
///     line: Vec<u8>,
/// }
///
/// impl Protocol for Shout {
///     fn data_received(&mut self, transport: &mut Transport<'_>, data: &[u8]) {
///         for &byte in data {
///             self.line.push(byte.to_ascii_uppercase());
///             if byte == b'\n' {
///                 transport.write(&self.line);
///                 self.line.clear();
///             }
///         }
///     }
/// }
/// ```
pub trait Protocol: 'static {
    /// The connection is open (for WebSocket and SockJS: the handshake succeeded).
    fn connection_made(&mut self, transport: &mut Transport<'_>) {
        let _ = transport;
    }

    /// Bytes arrived. They are borrowed for this call only: copy what you keep.
    fn data_received(&mut self, transport: &mut Transport<'_>, data: &[u8]);

    /// The connection ended: `None` for an orderly end (the peer closed, or
    /// [`Transport::close`]), `Some` with what went wrong otherwise. Called exactly once
    /// after `connection_made`; writes made from here may be dropped.
    fn connection_lost(&mut self, transport: &mut Transport<'_>, error: Option<io::Error>) {
        let _ = (transport, error);
    }
}

/// What a [`Protocol`] writes through: the connection, whichever door it came in by.
///
/// ```
/// use ringws::{Protocol, SendStatus, Transport};
///
/// struct Hello;
/// impl Protocol for Hello {
///     fn connection_made(&mut self, transport: &mut Transport<'_>) {
///         if transport.write(b"hello\n") == SendStatus::Backpressure {
///             // the peer reads slowly: produce less until it catches up
///         }
///     }
///     fn data_received(&mut self, transport: &mut Transport<'_>, _data: &[u8]) {
///         transport.close();
///     }
/// }
/// ```
pub struct Transport<'a> {
    sink: &'a mut (dyn Sink + 'a),
}

impl<'a> Transport<'a> {
    pub(crate) fn new(sink: &'a mut (dyn Sink + 'a)) -> Transport<'a> {
        Transport { sink }
    }

    /// Queues bytes for the peer. [`SendStatus::Backpressure`] says the queue is over
    /// the server's threshold; [`SendStatus::Dropped`] that the connection is closing or
    /// the queue is full.
    pub fn write(&mut self, data: &[u8]) -> SendStatus {
        self.sink.write(data)
    }

    /// Closes the connection once what was written has been sent (a WebSocket or
    /// SockJS peer gets close code 1000).
    pub fn close(&mut self) {
        self.sink.close();
    }

    /// Bytes written and not yet sent.
    pub fn buffered_amount(&self) -> usize {
        self.sink.buffered()
    }

    /// This connection's id (raw TCP connections have ids of their own, never equal
    /// to a WebSocket connection's).
    pub fn id(&self) -> ConnId {
        self.sink.id()
    }
}

/// Where a [`Transport`] writes: a raw TCP stream, or a WebSocket / SockJS [`Conn`].
pub(crate) trait Sink {
    fn write(&mut self, data: &[u8]) -> SendStatus;
    fn close(&mut self);
    fn buffered(&self) -> usize;
    fn id(&self) -> ConnId;
}

/// A [`Conn`] as a [`Sink`]: binary messages, or text ones where only text is carried.
struct ConnSink<'c, 'b> {
    conn: &'c mut Conn<'b>,
}

impl Sink for ConnSink<'_, '_> {
    fn write(&mut self, data: &[u8]) -> SendStatus {
        if self.conn.is_sockjs() || self.conn.is_hixie() {
            self.conn.send_text(&String::from_utf8_lossy(data))
        } else {
            self.conn.send_binary(data)
        }
    }

    fn close(&mut self) {
        self.conn.close(1000, "");
    }

    fn buffered(&self) -> usize {
        self.conn.buffered_amount()
    }

    fn id(&self) -> ConnId {
        self.conn.id()
    }
}

/// Serves a [`Protocol`] as a WebSocket / SockJS [`Handler`]: each message's bytes are
/// stream data; writes become messages.
pub(crate) struct ProtocolHandler<P> {
    protocol: P,
}

impl<P: Protocol> ProtocolHandler<P> {
    pub(crate) fn new(protocol: P) -> ProtocolHandler<P> {
        ProtocolHandler { protocol }
    }
}

impl<P: Protocol> Handler for ProtocolHandler<P> {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let mut sink = ConnSink { conn };
        self.protocol
            .connection_made(&mut Transport::new(&mut sink));
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        let mut sink = ConnSink { conn };
        let data = message.as_bytes();
        self.protocol
            .data_received(&mut Transport::new(&mut sink), data);
    }

    fn on_close(&mut self, conn: &mut Conn<'_>, reason: CloseReason) {
        let orderly = [CloseCode::NORMAL, CloseCode::GOING_AWAY, CloseCode(1005)];
        let error = (!orderly.contains(&reason.code)).then(|| io::Error::other(reason.to_string()));
        let mut sink = ConnSink { conn };
        self.protocol
            .connection_lost(&mut Transport::new(&mut sink), error);
    }
}
