//! A connection's outgoing side: encoded frames (and shared published frames) waiting
//! for the socket, with the limits that decide `SendStatus`.

use std::collections::VecDeque;

use bytes::Bytes;

use super::SendStatus;
use crate::connection::{Compression, ShardCodecs};
use crate::handle::Outgoing;
use crate::proto::encode::{encode_close, encode_frame};
use crate::proto::{encode_hixie_close, encode_hixie_text, CloseCode, OpCode};
use crate::pubsub::hub::Publication;
use crate::pubsub::SLOW_SUBSCRIBER;

/// Bytes handed to the backend for one send: the connection's own buffer, or a
/// published frame shared with other subscribers (see [`Outbox::send_published`]).
/// Either way the heap bytes do not move while the value is moved, so a backend may
/// give the kernel their address and keep the value until the send completes.
#[derive(Debug)]
pub(crate) enum SendBuf {
    Owned(Vec<u8>),
    Shared(Bytes),
}

impl std::ops::Deref for SendBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SendBuf::Owned(bytes) => bytes,
            SendBuf::Shared(bytes) => bytes,
        }
    }
}

impl SendBuf {
    /// Drops the first `n` bytes (written by a short send).
    pub(crate) fn advance(&mut self, n: usize) {
        match self {
            SendBuf::Owned(bytes) => {
                bytes.drain(..n.min(bytes.len()));
            }
            SendBuf::Shared(bytes) => {
                let _ = bytes.split_to(n.min(bytes.len()));
            }
        }
    }

    /// The bytes as an owned buffer (a shared one is copied; the runtime's raw streams
    /// only ever see owned ones).
    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self {
            SendBuf::Owned(bytes) => bytes,
            SendBuf::Shared(bytes) => bytes.to_vec(),
        }
    }
}

/// Output that goes before [`Outbox::queued`]: shared published frames, and the owned
/// bytes queued before each of them.
#[derive(Debug, Default)]
pub(crate) struct Ahead {
    chunks: VecDeque<SendBuf>,
    bytes: usize,
}

impl Ahead {
    fn push_back(&mut self, chunk: SendBuf) {
        self.bytes += chunk.len();
        self.chunks.push_back(chunk);
    }

    fn push_front(&mut self, chunk: SendBuf) {
        self.bytes += chunk.len();
        self.chunks.push_front(chunk);
    }

    fn pop_front(&mut self) -> Option<SendBuf> {
        let chunk = self.chunks.pop_front()?;
        self.bytes -= chunk.len();
        Some(chunk)
    }
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
    /// Published frames of this size or more are sent from the shared buffer rather
    /// than copied ([`crate::pubsub::SHARED_SEND_MIN`]; the fuzz target lowers it to
    /// reach that path).
    pub(crate) shared_send_min: usize,
}

/// The close code and reason of a connection closed for going over `max_buffered`
/// with `close_on_limit`.
pub(crate) const BACKPRESSURE_LIMIT: (CloseCode, &str) = (CloseCode(1008), "backpressure limit");

/// What a send over `max_buffered` does: close the connection (`true`) with this code
/// and reason, or only drop the message.
type OnLimit = (bool, (CloseCode, &'static str));

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
    pub(crate) overflowed: Option<(CloseCode, &'static str)>,
    /// The shard should give up on this output and close the socket (see
    /// `ShardCore::abandon_output`).
    pub(crate) abandon: bool,
    /// The output (`ahead`'s first chunk, or `queued`) starts with the unwritten rest
    /// of an earlier send (a short write), so it cannot be thrown away without cutting a
    /// frame.
    pub(crate) partial: bool,
    /// Output that goes out before `queued`: published frames shared with other
    /// subscribers (boxed: only while a large published message waits).
    ahead: Option<Box<Ahead>>,
    /// permessage-deflate, when negotiated (RFC 6455 framing only): data messages of
    /// its threshold or more go out compressed.
    pub(crate) compression: Option<Box<Compression>>,
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
            overflowed: None,
            abandon: false,
            partial: false,
            ahead: None,
            compression: None,
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
        self.queued.len() + self.in_flight + self.ahead.as_ref().map_or(0, |a| a.bytes)
    }

    /// True when something waits to be handed to the backend.
    pub(crate) fn has_output(&self) -> bool {
        !self.queued.is_empty() || self.ahead.is_some()
    }

    /// Throws away everything not yet handed to the backend.
    pub(crate) fn clear_output(&mut self) {
        self.queued.clear();
        self.ahead = None;
    }

    /// The next bytes to hand to the backend (one send): the first chunk ahead of the
    /// queue, else the whole queue (which leaves the outbox with no buffer).
    pub(crate) fn take_output(&mut self) -> Option<SendBuf> {
        let chunk = match self.ahead.as_mut() {
            Some(ahead) => {
                let chunk = ahead.pop_front();
                if ahead.chunks.is_empty() {
                    self.ahead = None;
                }
                chunk
            }
            None => None,
        };
        let chunk = match chunk {
            Some(chunk) => chunk,
            None if self.queued.is_empty() => return None,
            None => SendBuf::Owned(std::mem::take(&mut self.queued)),
        };
        self.in_flight = chunk.len();
        self.partial = false;
        Some(chunk)
    }

    /// The backend wrote only part of a send; `rest` is what it did not write, which
    /// goes out before anything else. Returns a buffer the caller may reuse.
    pub(crate) fn unsent(&mut self, rest: SendBuf) -> Option<Vec<u8>> {
        self.in_flight = 0;
        self.partial = true;
        match (self.ahead.as_mut(), rest) {
            (None, SendBuf::Owned(mut rest)) => {
                rest.extend_from_slice(&self.queued);
                self.queued.clear();
                Some(std::mem::replace(&mut self.queued, rest))
            }
            (Some(ahead), rest) => {
                ahead.push_front(rest);
                None
            }
            (None, rest) => {
                let mut ahead = Box::<Ahead>::default();
                ahead.push_back(rest);
                self.ahead = Some(ahead);
                None
            }
        }
    }

    /// Everything not yet handed to the backend, as one buffer in `queued` (TLS seals
    /// plaintext from there).
    pub(crate) fn flatten(&mut self) {
        let Some(mut ahead) = self.ahead.take() else {
            return;
        };
        let mut all = Vec::with_capacity(ahead.bytes + self.queued.len());
        while let Some(chunk) = ahead.pop_front() {
            all.extend_from_slice(&chunk);
        }
        all.extend_from_slice(&self.queued);
        self.queued = all;
    }

    /// Queues a published message (see [`crate::pubsub`]). An RFC 6455 connection gets
    /// the publication's own frame: with `share` (a plaintext socket) and a frame of
    /// `shared_send_min` bytes or more, the shared buffer itself goes out, else the
    /// frame is copied into the batch; hixie and SockJS framings write the text. Over
    /// `max_buffered` the message is dropped, or with `close_slow` the connection is
    /// closed with 1008 "slow subscriber".
    pub(crate) fn send_published(
        &mut self,
        publication: &Publication,
        share: bool,
        close_slow: bool,
        codecs: &ShardCodecs,
    ) -> SendStatus {
        let on_limit = (close_slow, SLOW_SUBSCRIBER);
        if self.framing != Framing::Rfc6455 {
            return match publication.text() {
                Some(text) => self.send_frame_with(OpCode::Text, text.as_bytes(), on_limit),
                None => SendStatus::Unsupported,
            };
        }
        if self.closed {
            return SendStatus::Dropped;
        }
        let payload = publication.payload();
        if self.buffered() + payload.len() > self.limits.max_buffered {
            return self.over_limit(on_limit);
        }
        let opcode = publication.opcode();
        let compressed = match self.compression.as_deref_mut() {
            Some(compression) if compression.compresses(payload.len()) => {
                if !compression.shares_compressed() {
                    // Context takeover: this connection's own compressor must see
                    // every message it sends, so it compresses its own copy.
                    compression.compress_frame(opcode, payload, codecs, &mut self.queued);
                    return self.status_after_queue();
                }
                Some(codecs.published_frame(publication.seq(), opcode, payload, compression))
            }
            _ => None,
        };
        let frame = compressed.as_ref().unwrap_or(publication.frame());
        if share && frame.len() >= self.limits.shared_send_min {
            let ahead = self.ahead.get_or_insert_with(Box::default);
            if !self.queued.is_empty() {
                ahead.push_back(SendBuf::Owned(std::mem::take(&mut self.queued)));
            }
            ahead.push_back(SendBuf::Shared(frame.clone()));
        } else {
            self.queued.extend_from_slice(frame);
        }
        self.status_after_queue()
    }

    /// True while the buffered bytes are over the backpressure threshold.
    pub(crate) fn over_threshold(&self) -> bool {
        self.buffered() > self.limits.backpressure_threshold
    }

    /// A send of `len` more bytes would go over `max_buffered`: drop it, and with
    /// `on_limit.0` close the connection with `on_limit.1` (`close_on_limit` and
    /// [`BACKPRESSURE_LIMIT`] for the handler's sends). Returns [`SendStatus::Dropped`].
    fn over_limit(&mut self, on_limit: OnLimit) -> SendStatus {
        let (close, (code, reason)) = on_limit;
        if !close || self.closed {
            return SendStatus::Dropped;
        }
        self.overflowed = Some((code, reason));
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
                self.clear_output();
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
        self.ahead = None;
        if self.closed || self.in_flight > 0 || self.partial {
            self.closed = true;
            self.abandon = true;
            self.partial = false;
            return;
        }
        self.queue_close(Some(code), reason);
    }

    /// Queues a data message from the handler (or a handle, or the bridge): compressed
    /// when permessage-deflate is on and it is at least the threshold, else as
    /// [`send_frame`](Self::send_frame) does. Its uncompressed size is what counts
    /// against `max_buffered` (checked before compressing: a message that is dropped must
    /// not have gone through a context-takeover compressor the peer will not follow).
    pub(crate) fn send_message(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        codecs: &ShardCodecs,
    ) -> SendStatus {
        let compresses = self.framing == Framing::Rfc6455
            && self
                .compression
                .as_ref()
                .is_some_and(|compression| compression.compresses(payload.len()));
        if !compresses {
            return self.send_frame(opcode, payload);
        }
        if self.closed {
            return SendStatus::Dropped;
        }
        if self.buffered() + payload.len() > self.limits.max_buffered {
            return self.over_limit((self.limits.close_on_limit, BACKPRESSURE_LIMIT));
        }
        if let Some(compression) = self.compression.as_deref_mut() {
            compression.compress_frame(opcode, payload, codecs, &mut self.queued);
        }
        self.status_after_queue()
    }

    /// Queues one unmasked (server role) data or control frame, uncompressed; for a
    /// hixie connection, text only (anything else is [`SendStatus::Unsupported`]).
    pub(crate) fn send_frame(&mut self, opcode: OpCode, payload: &[u8]) -> SendStatus {
        let on_limit = (self.limits.close_on_limit, BACKPRESSURE_LIMIT);
        self.send_frame_with(opcode, payload, on_limit)
    }

    fn send_frame_with(&mut self, opcode: OpCode, payload: &[u8], on_limit: OnLimit) -> SendStatus {
        if self.framing == Framing::SockJs {
            return self.send_sockjs(opcode, payload, on_limit);
        }
        let hixie = self.framing != Framing::Rfc6455;
        if hixie && opcode != OpCode::Text {
            return SendStatus::Unsupported;
        }
        if self.closed {
            return SendStatus::Dropped;
        }
        if self.buffered() + payload.len() > self.limits.max_buffered {
            return self.over_limit(on_limit);
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
    pub(crate) fn send_posted(
        &mut self,
        message: &Outgoing,
        codecs: &ShardCodecs,
    ) -> Option<SendStatus> {
        let (opcode, payload) = message.data()?;
        Some(self.send_message(opcode, payload, codecs))
    }

    fn send_sockjs(&mut self, opcode: OpCode, payload: &[u8], on_limit: OnLimit) -> SendStatus {
        if opcode != OpCode::Text {
            return SendStatus::Unsupported;
        }
        // `in_flight` counts the session's pending bytes (set before each callback).
        if self.closed {
            return SendStatus::Dropped;
        }
        if self.in_flight + payload.len() > self.limits.max_buffered {
            return self.over_limit(on_limit);
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

#[cfg(test)]
mod tests {
    use crate::connection::ShardCodecs;
    use std::sync::Arc;

    use crate::pubsub::SHARED_SEND_MIN;

    use super::*;

    fn outbox(close_on_limit: bool) -> Outbox {
        Outbox::new(OutLimits {
            backpressure_threshold: 10,
            max_buffered: 100,
            pause_on_backpressure: true,
            close_on_limit,
            shared_send_min: SHARED_SEND_MIN,
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
        assert!(!out.closed && out.overflowed.is_none() && !out.abandon);
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
        assert!(out.closed && out.overflowed.is_some() && !out.abandon);
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
        assert!(out.closed && out.overflowed.is_some() && out.abandon);

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
        let status = out.send_posted(&message, &ShardCodecs::default());
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
        assert_eq!(
            out.send_posted(&message, &ShardCodecs::default()),
            Some(SendStatus::Backpressure)
        );
        assert!(out.drain_owed);
        assert_eq!(
            out.send_posted(&message, &ShardCodecs::default()),
            Some(SendStatus::Dropped)
        );
        out.queue_close(Some(CloseCode::NORMAL), "");
        let message = Outgoing::Text(Arc::from("late"));
        assert_eq!(
            out.send_posted(&message, &ShardCodecs::default()),
            Some(SendStatus::Dropped)
        );
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
    // --- published messages (`send_published`) -----------------------------------

    use crate::handler::Message;

    fn roomy(framing: Framing) -> Outbox {
        let mut out = Outbox::new(OutLimits {
            backpressure_threshold: 1 << 20,
            max_buffered: 1 << 20,
            pause_on_backpressure: false,
            close_on_limit: false,
            shared_send_min: SHARED_SEND_MIN,
        });
        out.framing = framing;
        out
    }

    fn text(t: &str) -> Publication {
        Publication::new("t", Message::Text(t), None)
    }

    fn binary(b: &[u8]) -> Publication {
        Publication::new("t", Message::Binary(b), None)
    }

    /// Everything the outbox would hand the backend, in order, as plain bytes.
    fn drain_all(out: &mut Outbox) -> Vec<u8> {
        let mut all = Vec::new();
        for _ in 0..1000 {
            let Some(chunk) = out.take_output() else {
                break;
            };
            all.extend_from_slice(&chunk);
            out.in_flight = 0;
        }
        assert!(!out.has_output());
        all
    }

    #[test]
    fn a_small_publication_is_copied_into_the_queue_byte_exact() {
        let mut out = roomy(Framing::Rfc6455);
        out.send_frame(OpCode::Text, b"own");
        let publication = text("hello");
        assert_eq!(
            out.send_published(&publication, true, false, &ShardCodecs::default()),
            SendStatus::Queued
        );
        let mut expected = vec![0x81, 3, b'o', b'w', b'n'];
        expected.extend_from_slice(publication.frame());
        assert_eq!(out.queued, expected);
        assert!(out.ahead.is_none(), "a small frame is never shared");
        assert_eq!(out.buffered(), expected.len());
    }

    #[test]
    fn a_large_publication_is_shared_after_the_bytes_queued_before_it() {
        let payload = vec![3u8; SHARED_SEND_MIN];
        let publication = binary(&payload);
        assert!(publication.frame().len() >= SHARED_SEND_MIN);
        let mut out = roomy(Framing::Rfc6455);
        out.send_frame(OpCode::Text, b"before");
        let before = out.queued.clone();
        assert_eq!(
            out.send_published(&publication, true, false, &ShardCodecs::default()),
            SendStatus::Queued
        );
        out.send_frame(OpCode::Text, b"after");
        let after = out.queued.clone();
        let total = before.len() + publication.frame().len() + after.len();
        assert_eq!(out.buffered(), total, "ahead bytes count as buffered");
        assert!(out.has_output());

        let first = out.take_output().expect("the owned bytes queued before");
        assert!(matches!(first, SendBuf::Owned(_)));
        assert_eq!(&first[..], &before[..]);
        assert_eq!(out.in_flight, before.len());
        assert_eq!(out.buffered(), total);
        out.in_flight = 0;
        let second = out.take_output().expect("the shared frame");
        let SendBuf::Shared(ref bytes) = second else {
            panic!("not shared: {second:?}");
        };
        assert_eq!(
            bytes.as_ptr(),
            publication.frame().as_ptr(),
            "the same bytes"
        );
        assert_eq!(bytes.len(), publication.frame().len());
        out.in_flight = 0;
        let third = out.take_output().expect("the queue");
        assert!(matches!(third, SendBuf::Owned(_)));
        assert_eq!(&third[..], &after[..]);
        out.in_flight = 0;
        assert!(out.take_output().is_none());
        assert_eq!(out.buffered(), 0);
    }

    #[test]
    fn a_large_publication_without_share_or_below_the_line_is_copied() {
        let big = binary(&vec![4u8; SHARED_SEND_MIN]);
        let mut out = roomy(Framing::Rfc6455);
        assert_eq!(
            out.send_published(&big, false, false, &ShardCodecs::default()),
            SendStatus::Queued
        );
        assert!(out.ahead.is_none());
        assert_eq!(out.queued, big.frame()[..]);
        assert_ne!(out.queued.as_ptr(), big.frame().as_ptr());
        // A frame one byte short of the line: copied even with share.
        let header = 4; // 126 and a 16-bit length
        let short = binary(&vec![5u8; SHARED_SEND_MIN - header - 1]);
        assert_eq!(short.frame().len(), SHARED_SEND_MIN - 1);
        let mut out = roomy(Framing::Rfc6455);
        out.send_published(&short, true, false, &ShardCodecs::default());
        assert!(out.ahead.is_none());
        assert_eq!(out.queued, short.frame()[..]);
    }

    #[test]
    fn hixie_subscribers_get_text_frames_and_binary_is_unsupported() {
        for framing in [Framing::Hixie76, Framing::Hixie75] {
            let mut out = roomy(framing);
            assert_eq!(
                out.send_published(&text("hé"), true, false, &ShardCodecs::default()),
                SendStatus::Queued
            );
            assert_eq!(out.queued, [0x00, b'h', 0xc3, 0xa9, 0xff]);
            let big = "x".repeat(SHARED_SEND_MIN * 2);
            assert_eq!(
                out.send_published(&text(&big), true, false, &ShardCodecs::default()),
                SendStatus::Queued
            );
            assert!(out.ahead.is_none(), "hixie never shares the RFC 6455 frame");
            assert_eq!(out.queued.len(), 5 + big.len() + 2);
            assert_eq!(
                out.send_published(&binary(b"b"), true, false, &ShardCodecs::default()),
                SendStatus::Unsupported
            );
            assert_eq!(
                out.send_published(
                    &binary(&vec![0; SHARED_SEND_MIN]),
                    true,
                    false,
                    &ShardCodecs::default()
                ),
                SendStatus::Unsupported
            );
            assert_eq!(out.queued.len(), 5 + big.len() + 2);
        }
    }

    #[test]
    fn sockjs_subscribers_collect_the_text() {
        let mut out = Outbox::sockjs(roomy(Framing::Rfc6455).limits);
        assert_eq!(
            out.send_published(&text("a\"b"), true, false, &ShardCodecs::default()),
            SendStatus::Queued
        );
        assert_eq!(out.messages, ["a\"b"]);
        assert!(out.queued.is_empty() && out.ahead.is_none());
        assert_eq!(
            out.send_published(&binary(b"b"), true, false, &ShardCodecs::default()),
            SendStatus::Unsupported
        );
        assert_eq!(out.messages.len(), 1);
    }

    #[test]
    fn over_max_buffered_a_publication_is_dropped_or_closes_with_1008() {
        let small = binary(&[1; 60]);
        let mut out = outbox(false);
        assert_eq!(
            out.send_published(&small, true, false, &ShardCodecs::default()),
            SendStatus::Backpressure
        );
        assert_eq!(
            out.send_published(&small, true, false, &ShardCodecs::default()),
            SendStatus::Dropped
        );
        assert!(!out.closed && out.overflowed.is_none());
        assert_eq!(out.queued, small.frame()[..]);

        let mut out = outbox(false);
        out.send_published(&small, true, true, &ShardCodecs::default());
        assert_eq!(
            out.send_published(&small, true, true, &ShardCodecs::default()),
            SendStatus::Dropped
        );
        assert!(out.closed && !out.abandon);
        assert_eq!(out.overflowed, Some((CloseCode(1008), "slow subscriber")));
        let mut expected = Vec::new();
        encode_close(
            &mut expected,
            Some(CloseCode(1008)),
            "slow subscriber",
            None,
        );
        assert_eq!(
            out.queued, expected,
            "the unsent messages give way to the close"
        );
        assert_eq!(
            out.send_published(&small, true, true, &ShardCodecs::default()),
            SendStatus::Dropped
        );

        // A shared frame half-written: no clean place for a close frame, abandon.
        let big = binary(&vec![2; SHARED_SEND_MIN]);
        let mut out = roomy(Framing::Rfc6455);
        out.limits.max_buffered = SHARED_SEND_MIN + 100;
        out.send_published(&big, true, true, &ShardCodecs::default());
        let mut chunk = out.take_output().unwrap();
        chunk.advance(10);
        out.unsent(chunk);
        assert_eq!(
            out.send_published(&big, true, true, &ShardCodecs::default()),
            SendStatus::Dropped
        );
        assert!(out.closed && out.abandon);

        // A SockJS session closes through its own close frame.
        let mut out = Outbox::sockjs(outbox(false).limits);
        assert_eq!(
            out.send_published(&text(&"a".repeat(60)), true, true, &ShardCodecs::default()),
            SendStatus::Queued
        );
        out.in_flight = 60;
        assert_eq!(
            out.send_published(&text(&"b".repeat(60)), true, true, &ShardCodecs::default()),
            SendStatus::Dropped
        );
        assert_eq!(
            out.close_started.as_deref(),
            Some(&(CloseCode(1008), "slow subscriber".to_owned()))
        );
    }

    #[test]
    fn short_writes_keep_the_order_of_ahead_chunks_and_queued_bytes() {
        let big = binary(&(0..SHARED_SEND_MIN).map(|i| i as u8).collect::<Vec<_>>());
        let mut out = roomy(Framing::Rfc6455);
        out.send_frame(OpCode::Text, b"one");
        out.send_published(&big, true, false, &ShardCodecs::default());
        out.send_frame(OpCode::Text, b"two");
        out.send_published(&big, true, false, &ShardCodecs::default());
        out.send_frame(OpCode::Text, b"three");
        let mut expected = roomy(Framing::Rfc6455);
        expected.send_frame(OpCode::Text, b"one");
        expected.send_published(&big, false, false, &ShardCodecs::default());
        expected.send_frame(OpCode::Text, b"two");
        expected.send_published(&big, false, false, &ShardCodecs::default());
        expected.send_frame(OpCode::Text, b"three");
        let expected = expected.queued;
        let mut total = expected.len();
        assert_eq!(out.buffered(), total);

        // Write in odd-sized pieces: every send is cut short, the rest handed back.
        let mut written = Vec::new();
        for step in 0..10_000 {
            let Some(mut chunk) = out.take_output() else {
                break;
            };
            assert_eq!(out.buffered(), total - written.len(), "step {step}");
            let n = (997 + step * 131) % 5000 + 1;
            let n = n.min(chunk.len());
            written.extend_from_slice(&chunk[..n]);
            if n < chunk.len() {
                chunk.advance(n);
                out.unsent(chunk);
                assert!(out.partial);
            } else {
                out.in_flight = 0;
            }
            // Something queued meanwhile goes after everything before it.
            if step == 3 {
                out.send_frame(OpCode::Text, b"late");
                total += 6;
            }
        }
        let mut with_late = expected.clone();
        with_late.extend_from_slice(&[0x81, 4, b'l', b'a', b't', b'e']);
        assert_eq!(written.len(), with_late.len());
        assert!(written == with_late, "the bytes left in order");
        assert_eq!(out.buffered(), 0);
    }

    #[test]
    fn an_owned_short_write_takes_back_the_queue_behind_it() {
        let mut out = roomy(Framing::Rfc6455);
        out.send_frame(OpCode::Text, b"abc");
        let mut chunk = out.take_output().unwrap();
        out.send_frame(OpCode::Text, b"def");
        chunk.advance(2);
        let spare = out.unsent(chunk);
        assert!(spare.is_some_and(|buffer| buffer.is_empty()));
        assert_eq!(out.queued, [b'a', b'b', b'c', 0x81, 3, b'd', b'e', b'f']);
        assert_eq!(out.buffered(), 8);
        // A shared chunk cut short with no ahead: it goes ahead of the queue.
        let big = binary(&vec![8; SHARED_SEND_MIN]);
        let mut out = roomy(Framing::Rfc6455);
        out.send_published(&big, true, false, &ShardCodecs::default());
        let mut chunk = out.take_output().unwrap();
        out.send_frame(OpCode::Text, b"x");
        chunk.advance(100);
        assert!(out.unsent(chunk).is_none());
        let mut rest = big.frame()[100..].to_vec();
        rest.extend_from_slice(&[0x81, 1, b'x']);
        assert_eq!(out.buffered(), rest.len());
        assert_eq!(drain_all(&mut out), rest);
        // `advance` past the end empties, never panics.
        let mut chunk = SendBuf::Shared(big.frame().clone());
        chunk.advance(usize::MAX);
        assert!(chunk.is_empty());
        let mut chunk = SendBuf::Owned(vec![1, 2]);
        chunk.advance(5);
        assert!(chunk.is_empty());
        assert_eq!(
            SendBuf::Shared(big.frame().clone()).into_vec(),
            big.frame()[..]
        );
    }

    #[test]
    fn clear_output_and_flatten() {
        let big = binary(&vec![6; SHARED_SEND_MIN]);
        let mut out = roomy(Framing::Rfc6455);
        out.send_frame(OpCode::Text, b"a");
        out.send_published(&big, true, false, &ShardCodecs::default());
        out.send_frame(OpCode::Text, b"b");
        let expected = [&[0x81, 1, b'a'][..], big.frame(), &[0x81, 1, b'b']].concat();
        assert_eq!(out.buffered(), expected.len());
        out.flatten();
        assert!(out.ahead.is_none());
        assert_eq!(out.queued, expected);
        assert_eq!(out.buffered(), expected.len());
        out.flatten();
        assert_eq!(out.queued, expected, "flatten twice changes nothing");

        out.send_published(&big, true, false, &ShardCodecs::default());
        assert!(out.ahead.is_some());
        out.clear_output();
        assert!(!out.has_output());
        assert_eq!(out.buffered(), 0);
        assert!(out.take_output().is_none());
    }
}
