//! permessage-deflate on an open RFC 6455 connection (RFC 7692): what the connection
//! keeps ([`Compression`], in its outbox) and what its shard shares among all of them
//! ([`ShardCodecs`], in the [`ShardContext`](super::ShardContext)).
//!
//! Each direction follows its own agreement. Without context takeover the shard's
//! shared codecs do the work (a compressor per window size and level, one
//! decompressor at 15 bits, which inflates any smaller window), so a connection keeps
//! nothing. With it, the connection's own streams are created on first use,
//! hibernate when idle (`hibernate_idle`, driven by the connection's hibernation
//! timer) and right after each message while the shard is over its budget of live
//! streams. Inflated messages land in the shard's scratch buffer, lent for one handler
//! call, so a connection holds no plaintext between messages either.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use crate::deflate_options::DeflateOptions;
use crate::handshake::DeflateAgreement;
use crate::proto::{
    encode_compressed_frame, FrameHeader, InflateError, MessageDeflater, MessageInflater, OpCode,
    ProtocolError, Utf8Validator,
};

use super::{Connection, ShardContext, Timer};

/// The scratch buffer is shrunk back to this after a larger message.
const SCRATCH_RETAIN: usize = 256 * 1024;

/// A connection's side of a negotiated permessage-deflate.
pub(crate) struct Compression {
    agreement: DeflateAgreement,
    options: DeflateOptions,
    /// The connection's own compressor (server context takeover); `None`: the shard's.
    /// (Boxed, like the inflater: a connection without context takeover keeps only
    /// the pointers.)
    deflater: Option<Box<MessageDeflater>>,
    /// The connection's own decompressor (client context takeover); `None`: the shard's.
    inflater: Option<Box<MessageInflater>>,
    /// A compressed message arriving in pieces, inflated as they come.
    partial: Option<Box<Partial>>,
    /// A stream of its own was used since the hibernation timer last looked.
    active: bool,
    /// How many of its streams are counted live in the shard's total.
    counted: usize,
    /// The shard's count of live per-connection streams.
    live: Rc<Cell<usize>>,
}

impl Compression {
    /// The state for an agreement reached under `options`, on the shard of `codecs`.
    pub(crate) fn new(
        agreement: DeflateAgreement,
        options: DeflateOptions,
        codecs: &ShardCodecs,
    ) -> Compression {
        let deflater = (!agreement.server_no_context_takeover()).then(|| {
            Box::new(MessageDeflater::new(
                agreement.compress_window_bits(),
                options.compression_level(),
                false,
            ))
        });
        let inflater = (!agreement.client_no_context_takeover()).then(|| {
            Box::new(MessageInflater::new(
                agreement.decompress_window_bits(),
                false,
            ))
        });
        Compression {
            agreement,
            options,
            deflater,
            inflater,
            partial: None,
            active: false,
            counted: 0,
            live: Rc::clone(&codecs.live),
        }
    }

    /// Whether a message of `len` bytes is sent compressed.
    pub(crate) fn compresses(&self, len: usize) -> bool {
        len >= self.options.min_compressed_size()
    }

    /// True when the server compresses without context takeover: published messages
    /// can take the shard's once-compressed frame.
    pub(crate) fn shares_compressed(&self) -> bool {
        self.deflater.is_none()
    }

    /// Appends to `out` one RSV1 data frame: `payload` compressed.
    pub(crate) fn compress_frame(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        codecs: &ShardCodecs,
        out: &mut Vec<u8>,
    ) {
        let mut body = codecs.take_scratch();
        match &mut self.deflater {
            Some(deflater) => {
                deflater.compress(payload, &mut body);
                self.active = true;
            }
            None => codecs.compress_shared(&self.agreement, &self.options, payload, &mut body),
        }
        encode_compressed_frame(out, opcode, true, &body, None);
        codecs.count(|t| {
            t.out_plain += payload.len() as u64;
            t.out_wire += body.len() as u64;
        });
        codecs.give_back_scratch(body);
        self.after_message();
    }

    /// Inflates a compressed message that came whole into the shard's scratch buffer
    /// (capped at `max_message` bytes of plaintext: past it 1009, corrupt data 1007),
    /// or ends one that came in pieces ([`inflate_piece`](Self::inflate_piece)). Give
    /// the buffer back with [`ShardCodecs::give_back_scratch`].
    pub(crate) fn inflate(
        &mut self,
        payload: &[u8],
        text: bool,
        max_message: usize,
        codecs: &ShardCodecs,
    ) -> Result<Vec<u8>, ProtocolError> {
        if self.partial.is_some() {
            // The last piece of a message that came in pieces: `Some` at the last one.
            let plain = self.inflate_piece(payload, text, true, max_message)?;
            return Ok(plain.unwrap_or_default());
        }
        let mut plain = codecs.take_scratch();
        let result = match &mut self.inflater {
            Some(inflater) => {
                self.active = true;
                inflater.decompress(payload, true, max_message, &mut plain)
            }
            None => codecs.inflate_shared(payload, max_message, &mut plain),
        };
        self.after_message();
        if let Err(error) = result {
            codecs.give_back_scratch(plain);
            return Err(inflate_failure(error));
        }
        Ok(plain)
    }

    /// Inflates one piece of a compressed message arriving in pieces (`text` or not;
    /// `last` ends it), appending to the message's own buffer and checking UTF-8 as it
    /// grows, so bad text fails at the piece that shows it. The complete plaintext at
    /// the last piece. A client without context takeover gets an inflater lent for the
    /// message (the shard's is shared between calls of many connections).
    pub(crate) fn inflate_piece(
        &mut self,
        payload: &[u8],
        text: bool,
        last: bool,
        max_message: usize,
    ) -> Result<Option<Vec<u8>>, ProtocolError> {
        let own = self.inflater.is_some();
        let partial = self.partial.get_or_insert_with(|| {
            Box::new(Partial {
                plain: Vec::new(),
                utf8: Utf8Validator::new(),
                inflater: (!own).then(|| MessageInflater::new(15, true)),
            })
        });
        let before = partial.plain.len();
        let inflater = match (&mut partial.inflater, &mut self.inflater) {
            (Some(inflater), _) => inflater,
            (None, Some(inflater)) => &mut **inflater,
            (None, None) => unreachable!("a piece always has an inflater"),
        };
        self.active = true;
        let mut result = inflater
            .decompress(payload, last, max_message, &mut partial.plain)
            .map_err(inflate_failure);
        if result.is_ok() && text {
            let fresh = &partial.plain[before..];
            if partial.utf8.feed(fresh).is_err() || (last && partial.utf8.finish().is_err()) {
                result = Err(ProtocolError::invalid_utf8("text is not UTF-8"));
            }
        }
        let done = match result {
            Ok(()) if !last => None,
            Ok(()) => self.partial.take().map(|partial| partial.plain),
            Err(error) => {
                self.partial = None;
                self.after_message();
                return Err(error);
            }
        };
        self.after_message();
        Ok(done)
    }

    /// The bytes held by a message arriving in pieces (for the memory budget).
    pub(crate) fn partial_bytes(&self) -> usize {
        self.partial
            .as_ref()
            .map_or(0, |partial| partial.plain.capacity())
    }

    /// After each message (or piece): counts the streams now live, and hibernates them
    /// at once while the shard is over its budget (an inflater in the middle of a
    /// message keeps its stream).
    fn after_message(&mut self) {
        self.recount();
        if self.counted > 0 && self.live.get() > self.options.live_stream_budget() {
            self.hibernate();
        }
    }

    /// The hibernation timer fired: streams unused since it last looked hibernate.
    /// Returns whether the timer should look again (streams still live).
    pub(crate) fn hibernate_idle(&mut self) -> bool {
        if std::mem::take(&mut self.active) {
            return true;
        }
        self.hibernate();
        false
    }

    /// Drops the live streams, keeping each direction's history.
    fn hibernate(&mut self) {
        if let Some(deflater) = &mut self.deflater {
            deflater.hibernate();
        }
        if let Some(inflater) = &mut self.inflater {
            inflater.hibernate();
        }
        self.recount();
    }

    /// Brings the shard's live-stream total in line with this connection's streams.
    fn recount(&mut self) {
        let lent = self.partial.as_ref().and_then(|p| p.inflater.as_ref());
        let now = usize::from(self.deflater.as_ref().is_some_and(|d| d.is_live()))
            + usize::from(self.inflater.as_ref().is_some_and(|i| i.is_live()))
            + usize::from(lent.is_some_and(|i| i.is_live()));
        // The shard's total includes this connection's `counted`: never below it.
        self.live.set(self.live.get() + now - self.counted);
        self.counted = now;
    }

    /// The bytes its own streams and histories hold (estimates).
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        self.deflater.as_ref().map_or(0, |d| d.held_bytes())
            + self.inflater.as_ref().map_or(0, |i| i.held_bytes())
    }

    /// The streams of its own that are alive.
    pub(crate) fn live_streams(&self) -> usize {
        self.counted
    }
}

impl Connection {
    /// Arms the hibernation timer when the connection has live streams of its own and
    /// the timer is not armed yet (after anything that may have compressed or inflated).
    pub(super) fn arm_hibernation(&mut self, now: Instant) {
        let Some(compression) = &self.out.compression else {
            return;
        };
        if compression.live_streams() > 0 && self.timers.get(Timer::Hibernate).is_none() {
            let delay = compression.options.hibernation_delay();
            self.timers.set(Timer::Hibernate, now + delay);
        }
    }

    /// The hibernation timer fired: idle streams hibernate, busy ones are looked at
    /// again one delay later.
    pub(super) fn hibernation_timer(&mut self, _ctx: &ShardContext, now: Instant) {
        let Some(compression) = self.out.compression.as_deref_mut() else {
            return;
        };
        if compression.hibernate_idle() {
            let delay = compression.options.hibernation_delay();
            self.timers.set(Timer::Hibernate, now + delay);
        }
    }
}

impl Drop for Compression {
    fn drop(&mut self) {
        self.live
            .set(self.live.get() - self.counted.min(self.live.get()));
    }
}

impl std::fmt::Debug for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compression")
            .field("agreement", &self.agreement)
            .field("deflater", &self.deflater)
            .field("inflater", &self.inflater)
            .field("counted", &self.counted)
            .finish()
    }
}

/// A compressed message arriving in pieces.
struct Partial {
    /// Its plaintext so far.
    plain: Vec<u8>,
    /// The UTF-8 state of that plaintext (text messages).
    utf8: Utf8Validator,
    /// An inflater lent for this message when the client compresses without context
    /// takeover (the shard's shared one serves whole messages only).
    inflater: Option<MessageInflater>,
}

/// The close code and reason for a message that did not inflate.
fn inflate_failure(error: InflateError) -> ProtocolError {
    let reason = match error {
        InflateError::TooBig => "message too big after inflating",
        InflateError::Corrupt => "invalid compressed data",
    };
    ProtocolError {
        code: error.close_code(),
        reason,
    }
}

/// A publication's sequence number and its compressed frames, each with the window
/// bits and level it was compressed with.
type PublishedCache = (u64, Vec<(u8, u32, Bytes)>);

/// What a shard's connections share for permessage-deflate.
#[derive(Default)]
pub(crate) struct ShardCodecs {
    /// Compressors without context takeover, by (window bits, level).
    deflaters: RefCell<Vec<(u8, u32, MessageDeflater)>>,
    /// The decompressor for clients without context takeover (15 bits inflates any).
    inflater: RefCell<Option<MessageInflater>>,
    /// Where messages are compressed and inflated (lent for one call at a time).
    scratch: RefCell<Vec<u8>>,
    /// Per-connection streams alive on this shard.
    live: Rc<Cell<usize>>,
    /// Bytes through the codecs, for the shard's metrics.
    traffic: Cell<DeflateTraffic>,
    /// The last publication compressed without context takeover: its sequence number
    /// and one frame per (window bits, level) its subscribers asked for.
    published: RefCell<PublishedCache>,
}

/// Bytes a shard's codecs compressed and inflated (`crate::metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DeflateTraffic {
    pub(crate) in_wire: u64,
    pub(crate) in_plain: u64,
    pub(crate) out_plain: u64,
    pub(crate) out_wire: u64,
}

impl ShardCodecs {
    /// Counts traffic through the codecs.
    pub(crate) fn count(&self, f: impl FnOnce(&mut DeflateTraffic)) {
        let mut traffic = self.traffic.get();
        f(&mut traffic);
        self.traffic.set(traffic);
    }

    /// The traffic counted so far.
    pub(crate) fn traffic(&self) -> DeflateTraffic {
        self.traffic.get()
    }

    /// Takes the scratch buffer (empty); a nested call gets a new one.
    pub(crate) fn take_scratch(&self) -> Vec<u8> {
        std::mem::take(&mut *self.scratch.borrow_mut())
    }

    /// Returns a buffer from [`take_scratch`](Self::take_scratch), emptied (and shrunk
    /// after a large message).
    pub(crate) fn give_back_scratch(&self, mut buf: Vec<u8>) {
        buf.clear();
        if buf.capacity() > SCRATCH_RETAIN {
            buf = Vec::new();
        }
        let mut scratch = self.scratch.borrow_mut();
        if buf.capacity() >= scratch.capacity() {
            *scratch = buf;
        }
    }

    /// Compresses `payload` without context takeover into `out`.
    fn compress_shared(
        &self,
        agreement: &DeflateAgreement,
        options: &DeflateOptions,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        let bits = agreement.compress_window_bits();
        let level = options.compression_level();
        let mut deflaters = self.deflaters.borrow_mut();
        let index = match deflaters
            .iter()
            .position(|(b, l, _)| (*b, *l) == (bits, level))
        {
            Some(index) => index,
            None => {
                deflaters.push((bits, level, MessageDeflater::new(bits, level, true)));
                deflaters.len() - 1
            }
        };
        deflaters[index].2.compress(payload, out);
    }

    /// Inflates a message from a client without context takeover.
    fn inflate_shared(
        &self,
        payload: &[u8],
        max_message: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), crate::proto::InflateError> {
        let mut inflater = self.inflater.borrow_mut();
        let inflater = inflater.get_or_insert_with(|| MessageInflater::new(15, true));
        inflater.decompress(payload, true, max_message, out)
    }

    /// The RSV1 frame of publication `seq` (`opcode`, `payload`) compressed without
    /// context takeover for `compression`'s agreement: compressed on the first call for
    /// each (window bits, level), then shared by every such subscriber on this shard.
    pub(crate) fn published_frame(
        &self,
        seq: u64,
        opcode: OpCode,
        payload: &[u8],
        compression: &Compression,
    ) -> Bytes {
        let bits = compression.agreement.compress_window_bits();
        let level = compression.options.compression_level();
        {
            let cache = self.published.borrow();
            if cache.0 == seq {
                if let Some((_, _, frame)) =
                    cache.1.iter().find(|(b, l, _)| (*b, *l) == (bits, level))
                {
                    return frame.clone();
                }
            }
        }
        let mut body = self.take_scratch();
        self.compress_shared(
            &compression.agreement,
            &compression.options,
            payload,
            &mut body,
        );
        let mut frame = Vec::with_capacity(body.len() + FrameHeader::MAX_LEN);
        encode_compressed_frame(&mut frame, opcode, true, &body, None);
        self.give_back_scratch(body);
        let frame = Bytes::from(frame);
        let mut cache = self.published.borrow_mut();
        if cache.0 != seq {
            *cache = (seq, Vec::new());
        }
        cache.1.push((bits, level, frame.clone()));
        frame
    }

    /// Per-connection zlib streams alive on this shard.
    #[cfg(test)]
    pub(crate) fn live_streams(&self) -> usize {
        self.live.get()
    }
}

impl std::fmt::Debug for ShardCodecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardCodecs")
            .field("shared_deflaters", &self.deflaters.borrow().len())
            .field("live", &self.live.get())
            .finish()
    }
}

#[cfg(test)]
mod tests;
