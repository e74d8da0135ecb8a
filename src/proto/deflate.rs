//! The permessage-deflate codec (RFC 7692 §7.2), sans-I/O: [`MessageDeflater`] compresses
//! one whole message payload at a time, [`MessageInflater`] inflates a message that may
//! arrive in several frames, with a cap on its size. The negotiation (which window bits,
//! which no-context-takeover flags) is not here: both take those as plain parameters.
//!
//! ```
//! use ringws::proto::{MessageDeflater, MessageInflater};
//!
//! let mut tx = MessageDeflater::new(15, 6, false);
//! let mut rx = MessageInflater::new(15, false);
//! for msg in [&b"Hello"[..], b"Hello", b""] {
//!     let mut wire = Vec::new();
//!     tx.compress(msg, &mut wire); // the payload of a frame with RSV1 set
//!     let mut plain = Vec::new();
//!     rx.decompress(&wire, true, 1 << 20, &mut plain).unwrap();
//!     assert_eq!(plain, msg);
//! }
//! // Idle: drop both zlib streams, keep 2^15 bytes of history each.
//! tx.hibernate();
//! assert!(rx.hibernate());
//! let mut wire = Vec::new();
//! tx.compress(b"Hello again", &mut wire);
//! let mut plain = Vec::new();
//! rx.decompress(&wire, true, 1 << 20, &mut plain).unwrap();
//! assert_eq!(plain, b"Hello again");
//! ```
//!
//! # Wire rules followed
//!
//! - A message is compressed with a sync flush and the trailing `00 00 ff ff` removed;
//!   the receiver appends it after the last frame (`fin`) before inflating (§7.2.1-2).
//! - The empty message is the single byte `00` (an empty stored block; the stream is
//!   byte-aligned at every message boundary, so this never touches the zlib stream).
//! - A final block (BFINAL, e.g. the RFC's `f3 48 cd c9 c9 07 00` = "Hello") is legal:
//!   the rest of that message (the appended `00 00 ff ff`, anything else) is ignored and
//!   the next message starts a fresh stream (primed with the history when context
//!   takeover is on, so a sender that keeps its window across it still decodes).
//! - Window bits 8 (allowed by the RFC, refused by zlib for raw deflate) are run as 9:
//!   zlib at 9 never emits a distance over 250, so a peer told 8 decodes our output, and
//!   an inflater with a 512-byte window decodes a peer's 256-byte-window output.
//!
//! # Backend: flate2 with zlib-rs
//!
//! Measured per live stream on the project VM (`/work/shared/notes/deflate.md`): zlib-rs
//! holds 245 / 259 / 371 KiB to deflate at window bits 9 / 12 / 15 and 46.6 KiB to
//! inflate; stock zlib (libz-sys, which honours memLevel) 136 / 150 / 262 KiB and
//! 7 KiB + 2^wb. zlib-rs is much faster for the common case, small messages with context
//! takeover at level 1 (0.19 vs 1.6 µs per 125 B JSON message), similar otherwise; it is
//! pure Rust (no C toolchain, no `unsafe` C stream), and supports raw deflate with window
//! bits 9..=15 and `set_dictionary` both ways, which hibernation needs. Its extra memory
//! matters only for *active* connections: an idle one calls [`MessageDeflater::hibernate`]
//! / [`MessageInflater::hibernate`] and then holds no stream at all, only its history.
//! miniz_oxide (flate2's default) ignores window bits and is not usable here.
//!
//! # Hibernation
//!
//! With context takeover, both sides remember the last 2^wb bytes of plaintext (a ring,
//! one copy per message). `hibernate()` drops the zlib stream; the next message creates
//! a fresh one and gives it that history with `set_dictionary`, which is exactly the
//! window the dropped stream could still refer to, so the peer's never-hibernated stream
//! decodes every later message (the tests check this at wb 9, 12 and 15, both ways).
//! The bytes are not always those a never-hibernated zlib-rs deflater would send (its
//! hash chains after `set_dictionary` differ from a live stream's, so some matches
//! differ), only equally valid. Idle cost: 2^wb bytes per direction instead of
//! ~300-400 KiB. Without context takeover there is no
//! history and hibernation simply frees the stream.
//!
//! # Memory budget
//!
//! `held_bytes()` estimates what a codec holds: the stream (the figures above, a
//! constant per backend) plus the history buffer's capacity. A live deflater is
//! ≈ 243 KiB + 4·2^wb, a live inflater ≈ 47 KiB.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::close::CloseCode;

#[cfg(test)]
mod tests;

/// The bytes a sync flush ends with, removed by the sender and appended by the receiver.
pub const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The most output the inflater produces per zlib call, and so the most it allocates
/// past the message cap before reporting [`InflateError::TooBig`].
pub const INFLATE_STEP: usize = 16 << 10;

/// Estimated bytes a live zlib-rs deflate stream holds: a fixed ≈ 243 KiB (the 128 KiB
/// hash table among it) plus the window and its chain table, 4 bytes per window byte.
fn deflate_stream_bytes(window_bits: u8) -> usize {
    (243 << 10) + (4usize << window_bits)
}

/// Estimated bytes a live zlib-rs inflate stream holds (measured 46.6 KiB at any window).
const INFLATE_STREAM_BYTES: usize = 47 << 10;

/// Maps a negotiated window size (8..=15) to the one zlib runs with (9..=15).
fn zlib_window_bits(window_bits: u8) -> u8 {
    assert!(
        (8..=15).contains(&window_bits),
        "permessage-deflate window bits must be 8..=15, got {window_bits}"
    );
    window_bits.max(9)
}

/// Compresses whole messages for one connection's sending direction (RFC 7692 §7.2.1).
///
/// The zlib stream is created on the first non-empty message, not by [`new`](Self::new),
/// and dropped by [`hibernate`](Self::hibernate).
pub struct MessageDeflater {
    window_bits: u8,
    level: Compression,
    no_context_takeover: bool,
    stream: Option<Compress>,
    history: History,
}

impl MessageDeflater {
    /// A deflater for `window_bits` (8..=15; 8 runs as 9), zlib `level` (0..=9; higher
    /// is taken as 9) and, when `no_context_takeover`, a fresh window for every message.
    ///
    /// # Panics
    ///
    /// If `window_bits` is outside 8..=15.
    pub fn new(window_bits: u8, level: u32, no_context_takeover: bool) -> Self {
        let window_bits = zlib_window_bits(window_bits);
        MessageDeflater {
            window_bits,
            level: Compression::new(level.min(9)),
            no_context_takeover,
            stream: None,
            history: History::new(if no_context_takeover {
                0
            } else {
                1 << window_bits
            }),
        }
    }

    /// The window bits zlib runs with (9..=15).
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Whether a zlib stream is allocated (false before the first message and after
    /// [`hibernate`](Self::hibernate)).
    pub fn is_live(&self) -> bool {
        self.stream.is_some()
    }

    /// Appends to `out` the compressed payload of the message `payload`: deflated with a
    /// sync flush, the trailing `00 00 ff ff` removed. The empty message gives `[0x00]`.
    /// The caller sends it in one or more frames, RSV1 set on the first.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        if payload.is_empty() {
            // An empty stored block; the stream is byte-aligned between messages.
            out.push(0x00);
            return;
        }
        let start = out.len();
        let stream = self.stream.get_or_insert_with(|| {
            let mut stream = Compress::new_with_window_bits(self.level, false, self.window_bits);
            if !self.history.is_empty() {
                stream
                    .set_dictionary(self.history.contiguous())
                    .expect("set_dictionary on a fresh raw deflate stream");
            }
            stream
        });
        let mut input = payload;
        loop {
            out.reserve(64 + input.len() / 2);
            let before = stream.total_in();
            stream
                .compress_vec(input, out, FlushCompress::Sync)
                .expect("deflate with valid state cannot fail");
            input = &input[(stream.total_in() - before) as usize..];
            // Done once all input is in and the flush did not fill the buffer.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        debug_assert!(out[start..].ends_with(&DEFLATE_TAIL));
        out.truncate(out.len() - DEFLATE_TAIL.len());
        if self.no_context_takeover {
            stream.reset();
        } else {
            self.history.push(payload);
        }
    }

    /// Drops the zlib stream, keeping only the history (the last 2^wb bytes sent, with
    /// context takeover): the next [`compress`](Self::compress) rebuilds the stream from
    /// it, and the peer decodes it as if nothing happened. Call it between messages when
    /// the connection goes idle.
    pub fn hibernate(&mut self) {
        self.stream = None;
    }

    /// An estimate of the bytes this deflater holds: the live stream, if any, plus the
    /// history.
    pub fn held_bytes(&self) -> usize {
        self.stream
            .as_ref()
            .map_or(0, |_| deflate_stream_bytes(self.window_bits))
            + self.history.held_bytes()
    }
}

impl std::fmt::Debug for MessageDeflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageDeflater")
            .field("window_bits", &self.window_bits)
            .field("level", &self.level.level())
            .field("no_context_takeover", &self.no_context_takeover)
            .field("live", &self.stream.is_some())
            .field("history", &self.history.buf.len())
            .finish()
    }
}

/// Why a compressed message could not be inflated. Either way the connection fails
/// (RFC 7692 §8.2.3.4 / §7.2.2); [`close_code`](Self::close_code) is the code to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The message inflates to more than the cap: close with 1009.
    TooBig,
    /// The compressed data is not valid DEFLATE: close with 1007.
    Corrupt,
}

impl InflateError {
    /// The close code to fail the connection with: 1009 for [`TooBig`](Self::TooBig);
    /// 1007 ("invalid frame payload data") for [`Corrupt`](Self::Corrupt), as node's
    /// `ws` does: the frames were well formed, their payload was not; 1002 stays for
    /// framing violations (RSV1 on a continuation or control frame).
    pub fn close_code(self) -> CloseCode {
        match self {
            InflateError::TooBig => CloseCode::TOO_BIG,
            InflateError::Corrupt => CloseCode::INVALID_PAYLOAD,
        }
    }
}

impl std::fmt::Display for InflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InflateError::TooBig => "inflated message too big",
            InflateError::Corrupt => "invalid deflate data",
        })
    }
}

impl std::error::Error for InflateError {}

/// Inflates messages for one connection's receiving direction (RFC 7692 §7.2.2),
/// incrementally and with a cap on each message's size.
///
/// The zlib stream is created on the first message, not by [`new`](Self::new), and
/// dropped by [`hibernate`](Self::hibernate). After an error the connection fails; the
/// inflater is left reset and must not be trusted with more of that connection's data.
pub struct MessageInflater {
    window_bits: u8,
    no_context_takeover: bool,
    stream: Option<Decompress>,
    history: History,
    /// Bytes inflated so far for the current message.
    message_len: usize,
    /// A message has started (a chunk without `fin` was fed).
    in_message: bool,
    /// Compressed bytes fed so far for the current message.
    message_input: usize,
    /// The current message's stream ended (BFINAL): the rest of it, the appended
    /// `00 00 ff ff` included, is ignored.
    stream_ended: bool,
}

impl MessageInflater {
    /// An inflater for a peer compressing with `window_bits` (8..=15; 8 inflates with 9)
    /// and, when `no_context_takeover`, a fresh window for every message.
    ///
    /// # Panics
    ///
    /// If `window_bits` is outside 8..=15.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        let window_bits = zlib_window_bits(window_bits);
        MessageInflater {
            window_bits,
            no_context_takeover,
            stream: None,
            history: History::new(if no_context_takeover {
                0
            } else {
                1 << window_bits
            }),
            message_len: 0,
            in_message: false,
            message_input: 0,
            stream_ended: false,
        }
    }

    /// The window bits zlib runs with (9..=15).
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Whether a zlib stream is allocated.
    pub fn is_live(&self) -> bool {
        self.stream.is_some()
    }

    /// Inflates `chunk`, a piece of a compressed message's payload (one frame's, or part
    /// of one), appending the plaintext to `out`; `fin` marks the message's last piece,
    /// after which `00 00 ff ff` is appended and the next call starts a new message.
    ///
    /// The message's plaintext is capped at `max_message` bytes in total across its
    /// pieces: past it, [`InflateError::TooBig`], having appended at most one byte more
    /// than the cap. `out` grows in steps of at most [`INFLATE_STEP`] and never past
    /// its length at the message's start plus the cap plus one (nothing is reserved
    /// from a declared size). Invalid data gives [`InflateError::Corrupt`].
    pub fn decompress(
        &mut self,
        chunk: &[u8],
        fin: bool,
        max_message: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        self.in_message = true;
        self.message_input += chunk.len();
        // A message with no compressed bytes at all (not even the `00` of an empty
        // block) is taken as empty: the tail alone would leave the stream inside a
        // block header and corrupt the next message.
        let empty = fin && self.message_input == 0;
        let result = self.feed(chunk, max_message, out).and_then(|()| {
            if fin && !empty {
                self.feed(&DEFLATE_TAIL, max_message, out)
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) if fin => {
                self.end_message();
                Ok(())
            }
            Ok(()) => Ok(()),
            Err(e) => {
                self.stream = None;
                self.history.clear();
                self.message_len = 0;
                self.message_input = 0;
                self.in_message = false;
                self.stream_ended = false;
                Err(e)
            }
        }
    }

    fn end_message(&mut self) {
        self.message_len = 0;
        self.message_input = 0;
        self.in_message = false;
        self.stream_ended = false;
        if self.no_context_takeover {
            if let Some(stream) = &mut self.stream {
                stream.reset(false);
            }
        }
    }

    /// Runs `input` through the stream, at most [`INFLATE_STEP`] bytes of output per call.
    fn feed(
        &mut self,
        mut input: &[u8],
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        while !self.stream_ended {
            // Room for one byte past the cap, so that going over it is seen.
            let room = max.saturating_add(1) - self.message_len;
            let step = INFLATE_STEP.min(room);
            reserve_capped(out, step, room);
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => self
                    .stream
                    .insert(fresh_inflate(self.window_bits, &mut self.history)?),
            };
            let (in_before, out_before) = (stream.total_in(), stream.total_out());
            let status = stream
                .decompress_uninit(
                    input,
                    &mut out.spare_capacity_mut()[..step],
                    FlushDecompress::None,
                )
                .map_err(|_| InflateError::Corrupt)?;
            let consumed = (stream.total_in() - in_before) as usize;
            let written = (stream.total_out() - out_before) as usize;
            let len = out.len();
            // SAFETY: zlib initialised the `written` bytes after `len` it reports.
            unsafe { out.set_len(len + written) };
            input = &input[consumed..];
            self.message_len += written;
            if self.message_len > max {
                return Err(InflateError::TooBig);
            }
            self.history.push(&out[len..]);
            match status {
                Status::StreamEnd => {
                    // A final block: the DEFLATE stream ends, what follows in the
                    // message is ignored and the next message starts a new stream.
                    self.stream = None;
                    self.stream_ended = true;
                }
                Status::Ok | Status::BufError => {
                    if written < step && input.is_empty() {
                        return Ok(());
                    }
                    if written == 0 && consumed == 0 {
                        // No progress with input and room: not a raw deflate stream.
                        return Err(InflateError::Corrupt);
                    }
                }
            }
        }
        Ok(())
    }

    /// Drops the zlib stream between messages, keeping only the history (the last 2^wb
    /// bytes received, with context takeover); the next message rebuilds the stream
    /// from it. Returns false, and keeps the stream, in the middle of a message.
    pub fn hibernate(&mut self) -> bool {
        if self.in_message {
            return false;
        }
        self.stream = None;
        true
    }

    /// An estimate of the bytes this inflater holds: the live stream, if any, plus the
    /// history.
    pub fn held_bytes(&self) -> usize {
        self.stream.as_ref().map_or(0, |_| INFLATE_STREAM_BYTES) + self.history.held_bytes()
    }
}

impl std::fmt::Debug for MessageInflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageInflater")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("live", &self.stream.is_some())
            .field("history", &self.history.buf.len())
            .field("message_len", &self.message_len)
            .finish()
    }
}

/// A raw inflate stream primed with `history`.
fn fresh_inflate(window_bits: u8, history: &mut History) -> Result<Decompress, InflateError> {
    let mut stream = Decompress::new_with_window_bits(false, window_bits);
    if !history.is_empty() {
        stream
            .set_dictionary(history.contiguous())
            .map_err(|_| InflateError::Corrupt)?;
    }
    Ok(stream)
}

/// Makes `step` bytes of spare room in `out`, growing geometrically but never past
/// `limit` bytes beyond its current length (unless `step` itself needs more).
fn reserve_capped(out: &mut Vec<u8>, step: usize, limit: usize) {
    if out.capacity() - out.len() >= step {
        return;
    }
    let len = out.len();
    let target = (len + step).max((out.capacity() * 2).min(len + limit));
    out.reserve_exact(target - len);
}

/// The last `cap` bytes of plaintext, as a ring once full (`cap` 0: keeps nothing).
struct History {
    buf: Vec<u8>,
    cap: usize,
    /// The oldest byte's index once `buf` is full; 0 before.
    head: usize,
}

impl History {
    fn new(cap: usize) -> Self {
        History {
            buf: Vec::new(),
            cap,
            head: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn held_bytes(&self) -> usize {
        self.buf.capacity()
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.head = 0;
    }

    fn push(&mut self, mut data: &[u8]) {
        if self.cap == 0 || data.is_empty() {
            return;
        }
        if data.len() >= self.cap {
            data = &data[data.len() - self.cap..];
            self.buf.clear();
            self.head = 0;
        }
        if self.buf.len() < self.cap {
            let n = (self.cap - self.buf.len()).min(data.len());
            let need = self.buf.len() + n;
            if self.buf.capacity() < need {
                let target = need.max((self.buf.capacity() * 2).min(self.cap));
                self.buf.reserve_exact(target - self.buf.len());
            }
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        while !data.is_empty() {
            let n = (self.cap - self.head).min(data.len());
            self.buf[self.head..self.head + n].copy_from_slice(&data[..n]);
            self.head = (self.head + n) % self.cap;
            data = &data[n..];
        }
    }

    /// The bytes in order, oldest first.
    fn contiguous(&mut self) -> &[u8] {
        self.buf.rotate_left(self.head);
        self.head = 0;
        &self.buf
    }
}
