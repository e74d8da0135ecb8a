//! [`Conn`], the connection as a handler sees it, and its outgoing queue.

use std::fmt;
use std::sync::Arc;

use crate::connection::ShardContext;
use crate::handle::ConnHandle;
use crate::handler::Message;
use crate::proto::{CloseCode, OpCode};

mod outbox;

pub(crate) use outbox::{Framing, OutLimits, Outbox, SendBuf, BACKPRESSURE_LIMIT};

/// Identifies one connection on one shard. Tokens are reused after the connection
/// ends, with a new generation, so a stale token never reaches a newer connection.
/// (The shard's backend has its own view of them: `Token::slot`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Token(pub(crate) u64);

impl Token {
    /// Packs a slab index and a generation.
    pub(crate) fn new(index: u32, generation: u32) -> Token {
        Token(((generation as u64) << 32) | index as u64)
    }

    /// The slab index as the shard numbers it (a shard may use a high bit to keep two
    /// kinds of sockets apart).
    pub(crate) fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    /// The generation of the slot when this token was issued.
    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

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
    /// bytes over the hard limit. With
    /// [`Builder::close_on_backpressure_limit`](crate::Builder::close_on_backpressure_limit)
    /// the second case also closes the connection (1008 "backpressure limit").
    Dropped,
    /// Not queued: the client's protocol version cannot carry it. The hixie-75/76
    /// drafts have text messages only: a binary message or a ping to such a client
    /// gets this answer.
    Unsupported,
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
    /// The shard's shared state: where this connection's handles post
    /// ([`Conn::handle`]), its topic table and the pub/sub hub.
    pub(crate) ctx: &'a ShardContext,
}

impl Conn<'_> {
    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Sends a text message (to a client of any version).
    pub fn send_text(&mut self, text: &str) -> SendStatus {
        let status = self
            .out
            .send_message(OpCode::Text, text.as_bytes(), &self.ctx.codecs);
        self.counted(status, text.len())
    }

    /// Sends a binary message. A hixie-75/76 client cannot receive one:
    /// [`SendStatus::Unsupported`].
    pub fn send_binary(&mut self, bytes: &[u8]) -> SendStatus {
        let status = self
            .out
            .send_message(OpCode::Binary, bytes, &self.ctx.codecs);
        self.counted(status, bytes.len())
    }

    /// Counts a send of `bytes` in the shard's metrics; returns its status.
    fn counted(&self, status: SendStatus, bytes: usize) -> SendStatus {
        self.ctx.metrics.send_status(status, bytes);
        status
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
            self.out.close_started = Some(Box::new((code, reason.to_owned())));
        }
    }

    /// Stops giving this handler input until [`Conn::resume_reading`] (or
    /// [`ConnHandle::resume_reading`] from another thread): no `on_message` or
    /// `on_pong` meanwhile, and the socket is not read, so a peer that keeps sending
    /// fills its own socket buffers instead of the server's memory. For a handler that
    /// is behind, say one that handed a message to a worker thread and wants the
    /// answer before the next message.
    ///
    /// Nothing is lost or reordered: messages that had already arrived in the same read
    /// are kept and delivered after the resume. A pause never holds up the end of the
    /// connection: once the server starts a close ([`Conn::close`], a handle's close,
    /// the idle timeout, a shutdown) it reads again to see the peer's close reply (the
    /// data messages it then finds are discarded, as after any close). While the
    /// handler pauses, the idle timeout does not run: the peer is not idle, we are not
    /// listening; the clock starts again at the resume. (A peer's own close or EOF is
    /// seen only after the resume, behind the messages it sent before it.)
    ///
    /// On a SockJS session the session's incoming messages wait in the session; over
    /// the `websocket` transport its socket stops being read too, and over the HTTP
    /// transports the send request that brought them is answered only after the
    /// resume (the client sends its next batch after that answer).
    ///
    /// ```
    /// use ringws::{Conn, Handler, Message};
    ///
    /// /// Answers each message from a worker thread, one message at a time.
    /// struct Offload;
    ///
    /// impl Handler for Offload {
    ///     fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
    ///         let job = message.as_bytes().to_vec();
    ///         let handle = conn.handle();
    ///         conn.pause_reading();
    ///         std::thread::spawn(move || {
    ///             let answer = format!("{} bytes", job.len()); // the slow work
    ///             handle.send_text(&answer).ok();
    ///             // Posted after the answer, so the answer goes out first.
    ///             handle.resume_reading().ok();
    ///         });
    ///     }
    /// }
    /// ```
    pub fn pause_reading(&mut self) {
        if !self.out.read_paused {
            self.ctx.metrics.read_paused();
        }
        self.out.read_paused = true;
    }

    /// Undoes [`Conn::pause_reading`]: the messages kept meanwhile are delivered (after
    /// the current callback returns, when called from one) and the socket is read again.
    pub fn resume_reading(&mut self) {
        self.out.read_paused = false;
    }

    /// True between [`Conn::pause_reading`] and the resume. (The automatic pause while
    /// the output is over the backpressure threshold is not reported here: that one
    /// ends by itself, at `on_drain`.)
    pub fn is_reading_paused(&self) -> bool {
        self.out.read_paused
    }

    /// Bytes queued for this connection and not yet written to its socket.
    pub fn buffered_amount(&self) -> usize {
        self.out.buffered()
    }

    /// A handle to this connection that other threads (and later callbacks) can use.
    pub fn handle(&self) -> ConnHandle {
        ConnHandle::new(self.id, Arc::clone(&self.ctx.poster))
    }

    /// Subscribes this connection to `topic` (an exact name; no wildcards): from now
    /// on it receives what is published there, until [`Conn::unsubscribe`] or its end
    /// (a connection leaves all its topics when it closes). Returns false when it was
    /// subscribed already. See [`pubsub`](crate::pubsub) for the guarantees.
    ///
    /// ```
    /// use ringws::{Conn, Handler, Message};
    ///
    /// /// `/join NAME` moves the connection to another room; anything else is said
    /// /// to the room it is in.
    /// struct Rooms {
    ///     room: String,
    /// }
    ///
    /// impl Handler for Rooms {
    ///     fn on_open(&mut self, conn: &mut Conn<'_>) {
    ///         conn.subscribe(&self.room);
    ///     }
    ///     fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
    ///         match message {
    ///             Message::Text(line) if line.starts_with("/join ") => {
    ///                 conn.unsubscribe(&self.room);
    ///                 self.room = line["/join ".len()..].to_owned();
    ///                 conn.subscribe(&self.room);
    ///             }
    ///             message => conn.publish(&self.room, message),
    ///         }
    ///     }
    /// }
    /// ```
    pub fn subscribe(&mut self, topic: &str) -> bool {
        self.ctx
            .topics
            .subscribe(self.id.shard, self.id.token, topic)
    }

    /// Unsubscribes this connection from `topic`. Returns false when it was not
    /// subscribed. A message already on its way to this shard is not delivered.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.ctx
            .topics
            .unsubscribe(self.id.shard, self.id.token, topic)
    }

    /// True when this connection is subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.ctx.topics.is_subscribed(self.id.token, topic)
    }

    /// Publishes `message` to every subscriber of `topic` on every shard (and, with
    /// [`Builder::redis`](crate::Builder::redis), every node) except this connection.
    /// The message is copied once; it reaches the subscribers after this callback
    /// returns. A hixie or SockJS subscriber cannot receive a binary message: it is
    /// skipped there (and counted).
    pub fn publish(&mut self, topic: &str, message: Message<'_>) {
        // Fails only when the server has stopped, which ends this connection too.
        let at = Some(self.ctx.now.get());
        let _ = self
            .ctx
            .topics
            .hub
            .publish(topic, message, Some(self.id), at);
    }

    /// Publishes `message` to every subscriber of `topic`, this connection included
    /// (if it is subscribed; like `ServerHandle::publish`). This connection's own copy
    /// is queued at once, as a send of its own (the handler's limits and answers, not
    /// counted in the pub/sub figures), so it keeps its place among this callback's
    /// sends.
    pub fn publish_to_all(&mut self, topic: &str, message: Message<'_>) {
        if self.is_subscribed(topic) {
            let (opcode, payload) = match message {
                Message::Text(text) => (OpCode::Text, text.as_bytes()),
                Message::Binary(bytes) => (OpCode::Binary, bytes),
            };
            self.out.send_message(opcode, payload, &self.ctx.codecs);
        }
        let at = Some(self.ctx.now.get());
        let _ = self
            .ctx
            .topics
            .hub
            .publish(topic, message, Some(self.id), at);
    }
}
