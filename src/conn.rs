//! [`Conn`], the connection as a handler sees it, and its outgoing queue.

use std::fmt;
use std::sync::Arc;

use crate::handle::ConnHandle;
use crate::proto::encode::{encode_close, encode_frame};
use crate::proto::{encode_hixie_close, encode_hixie_text, CloseCode, OpCode};
use crate::runtime::core::Token;
use crate::runtime::mailbox::Registry;

/// Identifies a connection across the whole server: the shard that owns it and its
/// token on that shard (tokens carry a generation, so an id is never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) shard: u32,
    pub(crate) token: Token,
}

impl ConnId {
    /// The index of the shard thread that owns the connection.
    pub fn shard(&self) -> usize {
        self.shard as usize
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}.{}",
            self.shard,
            self.token.index(),
            self.token.generation()
        )
    }
}

/// What happened to a message given to [`Conn::send_text`] and friends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued; the connection's buffered bytes are under the backpressure threshold.
    Queued,
    /// Queued, but the buffered bytes are now over the backpressure threshold: the peer
    /// reads slower than we write. Slow down; `on_drain` is called once they fall back.
    Backpressure,
    /// Not queued: the connection is closing, or the message would take the buffered
    /// bytes over the hard limit.
    Dropped,
    /// Not queued: the client's protocol version cannot carry it. The hixie-75/76
    /// drafts have text messages only: a binary message or a ping to such a client
    /// gets this answer.
    Unsupported,
}

/// How a connection's outgoing frames are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// RFC 6455 (and hybi-07/08) frames.
    Rfc6455,
    /// hixie-76: `0x00 … 0xFF` text frames, `0xFF 0x00` to close.
    Hixie76,
    /// hixie-75: the same framing, but no closing handshake is awaited.
    Hixie75,
    /// A SockJS session: text messages are collected in [`Outbox::messages`] and handed
    /// to the session after the callback; nothing is encoded here.
    SockJs,
}

/// Outgoing limits of one connection (from the server's configuration).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OutLimits {
    pub(crate) backpressure_threshold: usize,
    pub(crate) max_buffered: usize,
}

/// The outgoing side of a connection: encoded frames waiting for the socket.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// Encoded bytes not yet handed to the backend.
    pub(crate) queued: Vec<u8>,
    /// Bytes handed to the backend and not yet reported sent.
    pub(crate) in_flight: usize,
    /// No more data frames may be queued (a close frame was queued, or the connection ended).
    pub(crate) closed: bool,
    /// The close frame `Conn::close` queued (code, reason), until the connection arms
    /// its close timer and takes it.
    pub(crate) close_started: Option<(CloseCode, String)>,
    /// A send reported `Backpressure`; `on_drain` is owed when the queue falls back.
    pub(crate) drain_owed: bool,
    pub(crate) limits: OutLimits,
    /// The framing written (RFC 6455 until a hixie upgrade says otherwise).
    pub(crate) framing: Framing,
    /// [`Framing::SockJs`] only: the messages sent during a callback.
    pub(crate) messages: Vec<String>,
}

impl Outbox {
    pub(crate) fn new(limits: OutLimits) -> Outbox {
        Outbox {
            queued: Vec::new(),
            in_flight: 0,
            closed: false,
            close_started: None,
            drain_owed: false,
            limits,
            framing: Framing::Rfc6455,
            messages: Vec::new(),
        }
    }

    /// The outbox of a SockJS session's handler (see [`Framing::SockJs`]).
    pub(crate) fn sockjs(limits: OutLimits) -> Outbox {
        Outbox {
            framing: Framing::SockJs,
            ..Outbox::new(limits)
        }
    }

    /// Bytes accepted for sending and not yet written to the socket.
    pub(crate) fn buffered(&self) -> usize {
        self.queued.len() + self.in_flight
    }

    /// Queues one unmasked (server role) data or control frame; for a hixie connection,
    /// text only (anything else is [`SendStatus::Unsupported`]).
    pub(crate) fn send_frame(&mut self, opcode: OpCode, payload: &[u8]) -> SendStatus {
        if self.framing == Framing::SockJs {
            return self.send_sockjs(opcode, payload);
        }
        let hixie = self.framing != Framing::Rfc6455;
        if hixie && opcode != OpCode::Text {
            return SendStatus::Unsupported;
        }
        if self.closed || self.buffered() + payload.len() > self.limits.max_buffered {
            return SendStatus::Dropped;
        }
        if hixie {
            match std::str::from_utf8(payload) {
                Ok(text) => encode_hixie_text(&mut self.queued, text),
                Err(_) => return SendStatus::Unsupported,
            }
        } else {
            encode_frame(&mut self.queued, opcode, true, payload, None);
        }
        self.status_after_queue()
    }

    /// Queues bytes that are already an encoded frame (from another thread's handle).
    pub(crate) fn send_encoded(&mut self, frame: &[u8]) -> SendStatus {
        if self.closed || self.buffered() + frame.len() > self.limits.max_buffered {
            return SendStatus::Dropped;
        }
        crate::proto::copy::append(&mut self.queued, frame);
        self.status_after_queue()
    }

    fn send_sockjs(&mut self, opcode: OpCode, payload: &[u8]) -> SendStatus {
        if opcode != OpCode::Text {
            return SendStatus::Unsupported;
        }
        // `in_flight` counts the session's pending bytes (set before each callback).
        if self.closed || self.in_flight + payload.len() > self.limits.max_buffered {
            return SendStatus::Dropped;
        }
        match std::str::from_utf8(payload) {
            Ok(text) => {
                self.in_flight += payload.len();
                self.messages.push(text.to_owned());
                SendStatus::Queued
            }
            Err(_) => SendStatus::Unsupported,
        }
    }

    fn status_after_queue(&mut self) -> SendStatus {
        if self.buffered() > self.limits.backpressure_threshold {
            self.drain_owed = true;
            SendStatus::Backpressure
        } else {
            SendStatus::Queued
        }
    }

    /// Queues a close frame (once); later data sends are dropped. A hixie connection
    /// has no close code on the wire: it sends `0xFF 0x00`.
    pub(crate) fn queue_close(&mut self, code: Option<CloseCode>, reason: &str) -> bool {
        if self.closed {
            return false;
        }
        self.closed = true;
        match self.framing {
            Framing::Rfc6455 => encode_close(&mut self.queued, code, reason, None),
            Framing::Hixie76 | Framing::Hixie75 => encode_hixie_close(&mut self.queued),
            // The session writes its own close frame.
            Framing::SockJs => {}
        }
        true
    }
}

/// A WebSocket connection as a [`Handler`](crate::Handler) sees it during a callback:
/// send messages, ping, close, or take a [`ConnHandle`] to reach the connection later
/// from any thread.
///
/// ```
/// use ringws::{Conn, Handler, Message, SendStatus};
///
/// struct Greeter;
///
/// impl Handler for Greeter {
///     fn on_open(&mut self, conn: &mut Conn<'_>) {
///         conn.send_text("hello");
///     }
///     fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
///         if let Message::Text("bye") = message {
///             conn.close(1000, "see you");
///         } else if conn.send_binary(message.as_bytes()) == SendStatus::Backpressure {
///             // the peer is slow: stop producing until on_drain
///         }
///     }
/// }
/// ```
pub struct Conn<'a> {
    pub(crate) id: ConnId,
    pub(crate) out: &'a mut Outbox,
    pub(crate) registry: &'a Arc<Registry>,
}

impl Conn<'_> {
    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Sends a text message (to a client of any version).
    pub fn send_text(&mut self, text: &str) -> SendStatus {
        self.out.send_frame(OpCode::Text, text.as_bytes())
    }

    /// Sends a binary message. A hixie-75/76 client cannot receive one:
    /// [`SendStatus::Unsupported`].
    pub fn send_binary(&mut self, bytes: &[u8]) -> SendStatus {
        self.out.send_frame(OpCode::Binary, bytes)
    }

    /// True when the client speaks a hixie draft: text messages only, no ping, no close
    /// code on the wire.
    pub fn is_hixie(&self) -> bool {
        matches!(self.out.framing, Framing::Hixie76 | Framing::Hixie75)
    }

    /// True when this is a SockJS session (any transport but the raw `/websocket`):
    /// text messages only, no ping.
    pub fn is_sockjs(&self) -> bool {
        self.out.framing == Framing::SockJs
    }

    /// Sends a ping; the payload is cut to the 125 bytes a control frame may carry.
    /// The hixie drafts have no ping: [`SendStatus::Unsupported`].
    pub fn ping(&mut self, payload: &[u8]) -> SendStatus {
        self.out
            .send_frame(OpCode::Ping, &payload[..payload.len().min(125)])
    }

    /// Starts the close handshake with `code` and `reason` (cut at 123 bytes on a char
    /// boundary). The connection ends when the peer answers, or after the close timeout.
    /// Codes a peer may not send (such as 1005 or 1006) are replaced by 1000. A hixie
    /// client is sent `0xFF 0x00` (the code and reason are only reported to `on_close`).
    pub fn close(&mut self, code: u16, reason: &str) {
        let code = CloseCode(code);
        let code = if code.is_allowed_on_wire() {
            code
        } else {
            CloseCode::NORMAL
        };
        if self.out.queue_close(Some(code), reason) {
            self.out.close_started = Some((code, reason.to_owned()));
        }
    }

    /// Bytes queued for this connection and not yet written to its socket.
    pub fn buffered_amount(&self) -> usize {
        self.out.buffered()
    }

    /// A handle to this connection that other threads (and later callbacks) can use.
    pub fn handle(&self) -> ConnHandle {
        ConnHandle::new(self.id, Arc::clone(self.registry))
    }
}
