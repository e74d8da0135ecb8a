//! Framing of the legacy hixie-75 and hixie-76 (hybi-00) drafts, sans-I/O.
//!
//! A text frame is `0x00`, UTF-8 text, `0xFF`. A frame whose type byte has its high
//! bit set carries a length (7 bits per byte, most significant first, high bit set on
//! every byte but the last) and that many bytes, which are read and discarded; the one
//! such frame with type `0xFF` and length 0 is the closing handshake (`0xFF 0x00`).
//! There is no masking, no binary message, no ping and no close code on the wire.
//!
//! ```
//! use ringws::proto::{encode_hixie_close, encode_hixie_text, HixieDecoder, HixieEvent, Limits};
//!
//! let mut wire = Vec::new();
//! encode_hixie_text(&mut wire, "hello");
//! encode_hixie_close(&mut wire);
//! assert_eq!(wire, b"\x00hello\xFF\xFF\x00");
//!
//! let mut dec = HixieDecoder::new(Limits::default());
//! let (used, ev) = dec.decode(&wire).unwrap();
//! assert_eq!((used, ev), (7, Some(HixieEvent::Text("hello"))));
//! let (used, ev) = dec.decode(&wire[7..]).unwrap();
//! assert_eq!((used, ev), (2, Some(HixieEvent::Close)));
//! ```

use super::decode::ProtocolError;
use super::utf8::Utf8Validator;
use super::Limits;

/// Assembly buffers larger than this are freed once their message is delivered.
const RETAIN_CAPACITY: usize = 64 * 1024;

/// One complete thing received from a hixie peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HixieEvent<'a> {
    /// A complete text message (validated UTF-8).
    Text(&'a str),
    /// The closing handshake, `0xFF 0x00`.
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a frame type byte.
    FrameStart,
    /// Inside a `0x00 … 0xFF` frame; `keep` is false for other sentinel frame types,
    /// whose bytes are discarded.
    Sentinel { keep: bool },
    /// Reading the length of a length-prefixed frame of type `frame_type`.
    Length { frame_type: u8, len: u64 },
    /// Skipping `remaining` bytes of a length-prefixed frame.
    Skip { remaining: u64 },
}

/// The receive state machine for one hixie-75/76 connection (either role: the framing
/// is the same both ways).
///
/// Incremental over arbitrary splits of the input. A text frame found whole in one input
/// is returned borrowed from it (zero copy); otherwise it is assembled in a buffer that
/// exists only while the frame is incomplete, its UTF-8 validated as it arrives (failing
/// at the first byte that can never become valid). A message is limited to the smaller
/// of [`Limits::max_message_size`] and [`Limits::max_frame_size`]: the limit is checked
/// before buffering, and a length-prefixed frame's declared length counts against it
/// although its bytes are discarded.
///
/// Errors carry the close code a server reports locally (1002, 1007, 1009); on the wire
/// a hixie connection only ever sends `0xFF 0x00`. After an error or a
/// [`HixieEvent::Close`] the decoder is finished and returns `Ok((0, None))`.
///
/// ```
/// use ringws::proto::{HixieDecoder, HixieEvent, Limits};
///
/// let mut dec = HixieDecoder::new(Limits::default());
/// assert_eq!(dec.decode(b"\x00caf\xC3").unwrap(), (5, None));
/// assert_eq!(dec.decode(b"\xA9\xFF").unwrap(), (2, Some(HixieEvent::Text("café"))));
/// // A length-prefixed frame (type 0x80, 3 bytes) is read and discarded.
/// assert_eq!(dec.decode(b"\x80\x03abc").unwrap(), (5, None));
/// assert!(dec.decode(b"\x00\xC0\xFF").is_err()); // invalid UTF-8: 1007
/// ```
#[derive(Debug)]
pub struct HixieDecoder {
    limit: u64,
    state: State,
    /// Bytes of the current message (kept or discarded) so far, checked against `limit`.
    msg_len: u64,
    buf: Vec<u8>,
    /// `buf` holds a delivered message, to be cleared on the next call.
    release: bool,
    utf8: Utf8Validator,
    finished: bool,
}

impl HixieDecoder {
    /// A decoder with these limits (the smaller of the two sizes bounds a message).
    pub fn new(limits: Limits) -> HixieDecoder {
        HixieDecoder {
            limit: limits.max_message_size.min(limits.max_frame_size) as u64,
            state: State::FrameStart,
            msg_len: 0,
            buf: Vec::new(),
            release: false,
            utf8: Utf8Validator::new(),
            finished: false,
        }
    }

    /// True after an error or the closing handshake: the decoder accepts nothing more.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// True while a frame has started and not ended.
    pub fn in_message(&self) -> bool {
        self.state != State::FrameStart
    }

    /// Capacity of the internal assembly buffer (for tests and memory accounting).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Consumes bytes from the front of `input` and returns how many it consumed and at
    /// most one complete event. Without an event, all of `input` was consumed; after an
    /// event, call again with the rest. After an `Err` or a close, returns `Ok((0, None))`.
    pub fn decode<'a>(
        &'a mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<HixieEvent<'a>>), ProtocolError> {
        if self.finished {
            return Ok((0, None));
        }
        if self.release {
            self.release = false;
            self.buf.clear();
            if self.buf.capacity() > RETAIN_CAPACITY {
                self.buf = Vec::new();
            }
        }
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::FrameStart => {
                    let frame_type = input[pos];
                    pos += 1;
                    self.msg_len = 0;
                    if frame_type & 0x80 == 0 {
                        let keep = frame_type == 0x00;
                        self.state = State::Sentinel { keep };
                        self.utf8.reset();
                        if keep {
                            // Hot path: the whole frame is here; lend it out.
                            let rest = &input[pos..];
                            if let Some(end) = rest.iter().position(|&b| b == 0xFF) {
                                if end as u64 <= self.limit {
                                    self.state = State::FrameStart;
                                    let text = simdutf8::basic::from_utf8(&rest[..end])
                                        .map_err(|_| self.fail(utf8_error()))?;
                                    return Ok((pos + end + 1, Some(HixieEvent::Text(text))));
                                }
                            }
                        }
                    } else {
                        self.state = State::Length { frame_type, len: 0 };
                    }
                }
                State::Sentinel { keep } => {
                    let rest = &input[pos..];
                    let end = rest.iter().position(|&b| b == 0xFF);
                    let chunk = &rest[..end.unwrap_or(rest.len())];
                    self.msg_len += chunk.len() as u64;
                    if self.msg_len > self.limit {
                        return Err(self.fail(ProtocolError::too_big("message too big")));
                    }
                    if keep {
                        if self.utf8.feed(chunk).is_err() {
                            return Err(self.fail(utf8_error()));
                        }
                        self.buf.extend_from_slice(chunk);
                    }
                    pos += chunk.len();
                    if end.is_none() {
                        break;
                    }
                    pos += 1; // the 0xFF
                    self.state = State::FrameStart;
                    if keep {
                        if self.utf8.finish().is_err() {
                            return Err(self.fail(utf8_error()));
                        }
                        self.release = true;
                        // Already validated incrementally; this check never fails.
                        return match std::str::from_utf8(&self.buf) {
                            Ok(text) => Ok((pos, Some(HixieEvent::Text(text)))),
                            Err(_) => {
                                self.finished = true;
                                Err(utf8_error())
                            }
                        };
                    }
                }
                State::Length { frame_type, len } => {
                    let b = input[pos];
                    pos += 1;
                    let limit = self.limit;
                    let len = len
                        .checked_mul(128)
                        .and_then(|l| l.checked_add(u64::from(b & 0x7F)))
                        .filter(|&l| l <= limit)
                        .ok_or_else(|| self.fail(ProtocolError::too_big("frame too big")))?;
                    if b & 0x80 != 0 {
                        self.state = State::Length { frame_type, len };
                    } else if frame_type == 0xFF && len == 0 {
                        self.finished = true;
                        self.state = State::FrameStart;
                        return Ok((pos, Some(HixieEvent::Close)));
                    } else {
                        self.msg_len = len;
                        self.state = if len == 0 {
                            State::FrameStart
                        } else {
                            State::Skip { remaining: len }
                        };
                    }
                }
                State::Skip { remaining } => {
                    let take = remaining.min((input.len() - pos) as u64);
                    pos += take as usize;
                    self.state = if take == remaining {
                        State::FrameStart
                    } else {
                        State::Skip {
                            remaining: remaining - take,
                        }
                    };
                }
            }
        }
        Ok((pos, None))
    }

    /// Marks the decoder finished and drops its buffer.
    fn fail(&mut self, e: ProtocolError) -> ProtocolError {
        self.finished = true;
        self.state = State::FrameStart;
        self.buf = Vec::new();
        e
    }
}

fn utf8_error() -> ProtocolError {
    ProtocolError::invalid_utf8("text is not UTF-8")
}

/// Appends a hixie text frame: `0x00`, the text, `0xFF` (UTF-8 never contains `0xFF`).
pub fn encode_hixie_text(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 2);
    out.push(0x00);
    out.extend_from_slice(text.as_bytes());
    out.push(0xFF);
}

/// Appends the hixie closing handshake, `0xFF 0x00`.
pub fn encode_hixie_close(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xFF, 0x00]);
}

#[cfg(test)]
mod tests;
