//! [`Conn`], the connection as a handler sees it, and its outgoing queue.

use std::fmt;
use std::sync::Arc;

use crate::handle::{ConnHandle, Outgoing, Post};
use crate::proto::encode::{encode_close, encode_frame};
use crate::proto::{encode_hixie_close, encode_hixie_text, CloseCode, OpCode};

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
    /// Stop reading a connection while its buffered bytes are over the threshold
    /// (`Builder::pause_reading_on_backpressure`).
    pub(crate) pause_on_backpressure: bool,
    /// A send over `max_buffered` closes the connection instead of being dropped
    /// alone (`Builder::close_on_backpressure_limit`).
    pub(crate) close_on_limit: bool,
}

/// The close code and reason of a connection closed for going over `max_buffered`
/// with `close_on_limit`.
pub(crate) const BACKPRESSURE_LIMIT: (CloseCode, &str) = (CloseCode(1008), "backpressure limit");

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
    /// (Boxed: rare, and every connection carries the field.)
    pub(crate) close_started: Option<Box<(CloseCode, String)>>,
    /// A send reported `Backpressure`; `on_drain` is owed when the queue falls back.
    pub(crate) drain_owed: bool,
    pub(crate) limits: OutLimits,
    /// The framing written (RFC 6455 until a hixie upgrade says otherwise).
    pub(crate) framing: Framing,
    /// [`Framing::SockJs`] only: the messages sent during a callback.
    pub(crate) messages: Vec<String>,
    /// The handler asked not to be given more input ([`Conn::pause_reading`]). It lives
    /// here because the outbox is what a [`Conn`] borrows of its connection.
    pub(crate) read_paused: bool,
    /// The shard's memory budget paused reading (the shard's `budget.rs`): a pause of
    /// its own, so that it and the handler's (`read_paused`) end independently.
    pub(crate) budget_paused: bool,
    /// A send went over `max_buffered` with `close_on_limit`: the connection is closed
    /// with [`BACKPRESSURE_LIMIT`] (the close frame is queued only when nothing else is
    /// half-written; otherwise `abandon` is set).
    pub(crate) overflowed: bool,
    /// The shard should give up on this output and close the socket (see
    /// `ShardCore::abandon_output`).
    pub(crate) abandon: bool,
    /// `queued` starts with the unwritten rest of an earlier send (a short write), so
    /// it cannot be thrown away without cutting a frame.
    pub(crate) partial: bool,
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
            read_paused: false,
            budget_paused: false,
            overflowed: false,
            abandon: false,
            partial: false,
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

    /// True while the buffered bytes are over the backpressure threshold.
    pub(crate) fn over_threshold(&self) -> bool {
        self.buffered() > self.limits.backpressure_threshold
    }

    /// A send of `len` more bytes would go over `max_buffered`: drop it, and with
    /// `close_on_limit` close the connection. Returns [`SendStatus::Dropped`].
    fn over_limit(&mut self) -> SendStatus {
        if !self.limits.close_on_limit || self.closed {
            return SendStatus::Dropped;
        }
        self.overflowed = true;
        let (code, reason) = BACKPRESSURE_LIMIT;
        match self.framing {
            // The session writes its own close frame (`c[1008,"backpressure limit"]`).
            Framing::SockJs => {
                self.closed = true;
                self.close_started = Some(Box::new((code, reason.to_owned())));
            }
            // Nothing handed to the socket yet: the unsent messages give way to the
            // close frame. Otherwise the peer has not taken what it was given, so no
            // close frame could follow it: the shard abandons the output.
            _ if self.in_flight == 0 && !self.partial => {
                self.queued.clear();
                self.queue_close(Some(code), reason);
            }
            _ => {
                self.closed = true;
                self.abandon = true;
            }
        }
        SendStatus::Dropped
    }

    /// Gives up the queued output for a close the server decided (the memory budget's
    /// 1008, `code` and `reason`): the unsent messages are thrown away and, when nothing is
    /// half-written to the socket, replaced by the close frame; otherwise the output is
    /// abandoned (the shard stops writing and closes the socket). Either way the queued
    /// bytes are freed now. A close already queued is abandoned with the rest.
    pub(crate) fn drop_for_close(&mut self, code: CloseCode, reason: &str) {
        self.queued = Vec::new();
        if self.closed || self.in_flight > 0 || self.partial {
            self.closed = true;
            self.abandon = true;
            self.partial = false;
            return;
        }
        self.queue_close(Some(code), reason);
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
        if self.closed {
            return SendStatus::Dropped;
        }
        if self.buffered() + payload.len() > self.limits.max_buffered {
            return self.over_limit();
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

    /// Queues a message a [`ConnHandle`] posted, encoded for this outbox's framing like
    /// the handler's own sends ([`Outbox::send_frame`]: same limits, same answers);
    /// `None` for the commands that are not messages (close, pause, resume).
    pub(crate) fn send_posted(&mut self, message: &Outgoing) -> Option<SendStatus> {
        let (opcode, payload) = message.data()?;
        Some(self.send_frame(opcode, payload))
    }

    fn send_sockjs(&mut self, opcode: OpCode, payload: &[u8]) -> SendStatus {
        if opcode != OpCode::Text {
            return SendStatus::Unsupported;
        }
        // `in_flight` counts the session's pending bytes (set before each callback).
        if self.closed {
            return SendStatus::Dropped;
        }
        if self.in_flight + payload.len() > self.limits.max_buffered {
            return self.over_limit();
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
        if self.over_threshold() {
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
    /// Where this connection's handles post ([`Conn::handle`]).
    pub(crate) poster: &'a Arc<dyn Post>,
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
        ConnHandle::new(self.id, Arc::clone(self.poster))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(close_on_limit: bool) -> Outbox {
        Outbox::new(OutLimits {
            backpressure_threshold: 10,
            max_buffered: 100,
            pause_on_backpressure: true,
            close_on_limit,
        })
    }

    #[test]
    fn over_the_limit_drops_the_message_and_keeps_the_connection_by_default() {
        let mut out = outbox(false);
        assert_eq!(
            out.send_frame(OpCode::Binary, &[1; 60]),
            SendStatus::Backpressure
        );
        assert!(out.over_threshold());
        assert_eq!(
            out.send_frame(OpCode::Binary, &[2; 60]),
            SendStatus::Dropped
        );
        assert!(!out.closed && !out.overflowed && !out.abandon);
        assert_eq!(
            out.send_frame(OpCode::Binary, &[3; 10]),
            SendStatus::Backpressure
        );
    }

    #[test]
    fn close_on_limit_replaces_unsent_messages_with_a_1008_close() {
        let mut out = outbox(true);
        out.send_frame(OpCode::Binary, &[1; 60]);
        assert_eq!(
            out.send_frame(OpCode::Binary, &[2; 60]),
            SendStatus::Dropped
        );
        assert!(out.closed && out.overflowed && !out.abandon);
        let mut expected = Vec::new();
        encode_close(
            &mut expected,
            Some(CloseCode(1008)),
            "backpressure limit",
            None,
        );
        assert_eq!(out.queued, expected);
        // Later sends are dropped like any send after a close.
        assert_eq!(out.send_frame(OpCode::Text, b"late"), SendStatus::Dropped);
    }

    #[test]
    fn close_on_limit_abandons_output_the_peer_has_partly_taken() {
        let mut out = outbox(true);
        out.send_frame(OpCode::Binary, &[1; 60]);
        // Handed to the socket, not yet reported written.
        out.in_flight = std::mem::take(&mut out.queued).len();
        assert_eq!(
            out.send_frame(OpCode::Binary, &[]),
            SendStatus::Backpressure
        );
        assert_eq!(
            out.send_frame(OpCode::Binary, &[2; 60]),
            SendStatus::Dropped
        );
        assert!(out.closed && out.overflowed && out.abandon);

        // The unwritten rest of a short write at the front: no clean frame boundary.
        let mut out = outbox(true);
        out.send_frame(OpCode::Binary, &[1; 60]);
        out.partial = true;
        assert_eq!(
            out.send_frame(OpCode::Binary, &[2; 60]),
            SendStatus::Dropped
        );
        assert!(out.abandon);
    }

    fn posted(framing: Framing, message: Outgoing) -> (Option<SendStatus>, Vec<u8>) {
        let mut out = outbox(false);
        out.limits.max_buffered = 1000;
        out.limits.backpressure_threshold = 1000;
        out.framing = framing;
        let status = out.send_posted(&message);
        (status, out.queued)
    }

    fn commands() -> [Outgoing; 3] {
        [
            Outgoing::Close {
                code: CloseCode(1000),
                reason: "bye".to_owned(),
            },
            Outgoing::PauseReading,
            Outgoing::ResumeReading,
        ]
    }

    #[test]
    fn a_posted_message_is_encoded_as_an_rfc6455_frame() {
        let queued = Some(SendStatus::Queued);
        let text = |t: &str| Outgoing::Text(Arc::from(t));
        let binary = |b: &[u8]| Outgoing::Binary(Arc::from(b));
        let ping = |b: &[u8]| Outgoing::Ping(Arc::from(b));
        assert_eq!(
            posted(Framing::Rfc6455, text("hé")),
            (queued, vec![0x81, 3, b'h', 0xc3, 0xa9])
        );
        assert_eq!(
            posted(Framing::Rfc6455, binary(&[0, 0xff])),
            (queued, vec![0x82, 2, 0, 0xff])
        );
        assert_eq!(
            posted(Framing::Rfc6455, ping(b"p")),
            (queued, vec![0x89, 1, b'p'])
        );
        assert_eq!(posted(Framing::Rfc6455, ping(b"")), (queued, vec![0x89, 0]));
        // A 16-bit length past 125 bytes.
        let (status, bytes) = posted(Framing::Rfc6455, binary(&[7; 200]));
        assert_eq!(status, queued);
        assert_eq!(bytes[..4], [0x82, 126, 0, 200]);
        assert_eq!(bytes[4..], [7; 200]);
        // The other commands are not messages: nothing is queued.
        for command in commands() {
            assert_eq!(posted(Framing::Rfc6455, command), (None, Vec::new()));
        }
    }

    #[test]
    fn a_posted_text_message_is_a_hixie_frame_and_the_rest_is_unsupported() {
        for framing in [Framing::Hixie76, Framing::Hixie75] {
            assert_eq!(
                posted(framing, Outgoing::Text(Arc::from("hé"))),
                (Some(SendStatus::Queued), vec![0x00, b'h', 0xc3, 0xa9, 0xff])
            );
            let unsupported = (Some(SendStatus::Unsupported), Vec::new());
            assert_eq!(
                posted(framing, Outgoing::Binary(Arc::from(&b"b"[..]))),
                unsupported
            );
            assert_eq!(
                posted(framing, Outgoing::Ping(Arc::from(&b"p"[..]))),
                unsupported
            );
            for command in commands() {
                assert_eq!(posted(framing, command), (None, Vec::new()));
            }
        }
    }

    #[test]
    fn a_posted_message_is_held_to_the_limits_of_the_handlers_sends() {
        let mut out = outbox(false);
        let message = Outgoing::Binary(Arc::from(&[1u8; 60][..]));
        assert_eq!(out.send_posted(&message), Some(SendStatus::Backpressure));
        assert!(out.drain_owed);
        assert_eq!(out.send_posted(&message), Some(SendStatus::Dropped));
        out.queue_close(Some(CloseCode::NORMAL), "");
        let message = Outgoing::Text(Arc::from("late"));
        assert_eq!(out.send_posted(&message), Some(SendStatus::Dropped));
    }

    #[test]
    fn close_on_limit_closes_a_sockjs_session_through_its_close() {
        let mut out = Outbox::sockjs(outbox(true).limits);
        assert_eq!(
            out.send_frame(OpCode::Text, &[b'a'; 60]),
            SendStatus::Queued
        );
        assert_eq!(
            out.send_frame(OpCode::Text, &[b'b'; 60]),
            SendStatus::Dropped
        );
        assert_eq!(
            out.close_started.as_deref(),
            Some(&(CloseCode(1008), "backpressure limit".to_owned()))
        );
        assert!(out.closed && !out.abandon);
    }
}
