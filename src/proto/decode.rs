//! The receive state machine: frames in, validated events out (one per connection).

use super::close::{parse_close_payload, CloseCode, CloseFrame};
use super::frame::{FrameHeader, OpCode, RSV1};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
use super::{Limits, Role};
use std::fmt;

/// Assembly buffers larger than this are freed once their message is delivered.
const RETAIN_CAPACITY: usize = 64 * 1024;

/// Why the peer violated the protocol, with the close code to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    /// The close code to send (1002, 1007 or 1009).
    pub code: CloseCode,
    /// A short, static description (fits a close reason).
    pub reason: &'static str,
}

impl ProtocolError {
    /// A protocol violation (1002).
    pub const fn protocol(reason: &'static str) -> Self {
        ProtocolError {
            code: CloseCode::PROTOCOL_ERROR,
            reason,
        }
    }

    /// Invalid UTF-8 in a text message or close reason (1007).
    pub const fn invalid_utf8(reason: &'static str) -> Self {
        ProtocolError {
            code: CloseCode::INVALID_PAYLOAD,
            reason,
        }
    }

    /// A frame or message above the [`Limits`] (1009).
    pub const fn too_big(reason: &'static str) -> Self {
        ProtocolError {
            code: CloseCode::TOO_BIG,
            reason,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (close code {})", self.reason, self.code)
    }
}

impl std::error::Error for ProtocolError {}

/// One complete thing received from the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message (validated UTF-8).
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping; the application should answer with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// A close frame, with its parsed payload (`None` when empty).
    Close(Option<CloseFrame<'a>>),
    /// A complete data message sent compressed (RSV1 set on its first frame, under a
    /// negotiated permessage-deflate): `payload` is still compressed, to be inflated with
    /// a [`MessageInflater`](super::MessageInflater) and, when `text`, checked as UTF-8
    /// after inflating. Only a decoder told [`Decoder::accept_compressed`] returns it.
    Deflated {
        /// The message is text (its first frame's opcode was Text).
        text: bool,
        /// The compressed payload, the `00 00 ff ff` tail not included; for a decoder
        /// told [`Decoder::stream_compressed`], only the message's last piece (the
        /// pieces before it came as [`Event::DeflatedPart`]).
        payload: &'a [u8],
    },
    /// A piece of a compressed message that is not complete yet, as it arrived (a
    /// frame's payload or the part of it in this input, unmasked), for a decoder told
    /// [`Decoder::stream_compressed`]: the receiver inflates as the pieces come, and
    /// fails fast. The message ends with an [`Event::Deflated`] carrying its last piece
    /// (maybe empty).
    DeflatedPart {
        /// The message is text.
        text: bool,
        /// This piece of the compressed payload.
        payload: &'a [u8],
    },
}

/// The frame currently being received, after its header.
#[derive(Clone, Copy, Debug)]
struct FrameState {
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    /// Payload bytes still expected.
    remaining: u64,
    /// Payload bytes already received.
    received: u64,
    /// Key position for the next payload byte.
    mask_offset: usize,
}

/// The receive state machine for one connection: validates frames, unmasks in place,
/// assembles fragmented messages and returns [`Event`]s.
///
/// A message that arrives as one unfragmented frame entirely inside one input is
/// returned borrowed from that input (zero copy); otherwise the payload is assembled in
/// an internal buffer that exists only while a message is incomplete (a buffer above
/// 64 KiB is freed once its message is delivered). Control frames between fragments
/// are returned as soon as they complete.
///
/// After an `Err`, or after a [`Event::Close`], the decoder is finished: further calls
/// return `Ok((0, None))` ([`Decoder::is_finished`] says so).
///
/// ```
/// use ringws::proto::{encode_frame, Decoder, Event, Limits, OpCode, Role};
///
/// let mut wire = Vec::new();
/// encode_frame(&mut wire, OpCode::Text, false, b"hel", Some([7; 4]));
/// encode_frame(&mut wire, OpCode::Ping, true, b"!", Some([8; 4]));
/// encode_frame(&mut wire, OpCode::Continuation, true, b"lo", Some([9; 4]));
///
/// let mut dec = Decoder::new(Role::Server, Limits::default());
/// let mut got = Vec::new();
/// let len = wire.len(); // `wire` is borrowed by the event below
/// let mut pos = 0;
/// loop {
///     let (n, ev) = dec.decode(&mut wire[pos..]).unwrap();
///     pos += n;
///     match ev {
///         Some(Event::Text(t)) => got.push(format!("text {t}")),
///         Some(Event::Ping(p)) => got.push(format!("ping {p:?}")),
///         Some(other) => panic!("{other:?}"),
///         None if n == 0 || pos == len => break,
///         None => {}
///     }
/// }
/// assert_eq!(got, ["ping [33]", "text hello"]);
/// ```
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    limits: Limits,
    /// Header bytes carried across calls.
    hdr: [u8; FrameHeader::MAX_LEN],
    hdr_len: u8,
    /// The frame whose payload is being received.
    frame: Option<FrameState>,
    /// The data message in progress (Text or Binary), from its first frame's header
    /// until its final frame completes.
    msg: Option<OpCode>,
    /// Declared payload bytes of the message in progress.
    msg_len: u64,
    /// Assembly buffer for data messages not delivered zero-copy.
    buf: Vec<u8>,
    /// RSV1 may mark a message compressed (permessage-deflate was negotiated).
    rsv1_allowed: bool,
    /// The message in progress is compressed: its text is checked after inflating.
    compressed: bool,
    /// Compressed messages are handed out piece by piece ([`Event::DeflatedPart`])
    /// instead of assembled.
    stream_compressed: bool,
    /// `buf` holds a delivered message, to be cleared on the next call.
    release: bool,
    /// Assembly buffer for a control frame split across calls (rare, so it is
    /// allocated on first use rather than carried inline by every connection).
    ctrl: Vec<u8>,
    utf8: Utf8Validator,
    finished: bool,
}

impl Decoder {
    /// A decoder for one connection, expecting masked frames for [`Role::Server`] and
    /// unmasked ones for [`Role::Client`].
    pub fn new(role: Role, limits: Limits) -> Decoder {
        Decoder {
            role,
            limits,
            hdr: [0; FrameHeader::MAX_LEN],
            hdr_len: 0,
            frame: None,
            msg: None,
            msg_len: 0,
            buf: Vec::new(),
            rsv1_allowed: false,
            compressed: false,
            stream_compressed: false,
            release: false,
            ctrl: Vec::new(),
            utf8: Utf8Validator::new(),
            finished: false,
        }
    }

    /// Lets RSV1 mark a data message's first frame as compressed (permessage-deflate,
    /// RFC 7692 §6): such messages come out as [`Event::Deflated`], their payload
    /// untouched. RSV1 on a continuation or control frame, and RSV2/RSV3 always, stay
    /// protocol errors (1002).
    pub fn accept_compressed(&mut self) {
        self.rsv1_allowed = true;
    }

    /// As [`accept_compressed`](Self::accept_compressed), handing compressed messages
    /// out as they arrive rather than assembled: [`Event::DeflatedPart`] for each piece
    /// but the last, [`Event::Deflated`] for the last. Nothing of a compressed message
    /// is then buffered by the decoder.
    pub fn stream_compressed(&mut self) {
        self.rsv1_allowed = true;
        self.stream_compressed = true;
    }

    /// True while a data message is in progress: its first frame's header has arrived
    /// and its final frame has not completed (a fragmented message, or a single frame
    /// split across calls).
    pub fn in_message(&self) -> bool {
        self.msg.is_some()
    }

    /// True after an error or a close frame: the decoder accepts nothing more.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Capacity of the internal assembly buffer (for tests and memory accounting).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Bytes in the internal assembly buffer: the payload received so far of a message
    /// that is not delivered zero-copy (until the next call clears a delivered one).
    /// What the buffer really occupies, as opposed to the capacity reserved ahead.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Consumes bytes from the front of `input`, unmasking them in place, and returns
    /// how many bytes it consumed and at most one complete event. Call again with the
    /// rest while consumed > 0 or an event came.
    ///
    /// Every byte offered is either consumed or left for the next call only when an
    /// event is returned; a header split across calls is carried internally. After an
    /// `Err` or a close event, returns `Ok((0, None))` forever.
    pub fn decode<'a>(
        &'a mut self,
        input: &'a mut [u8],
    ) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
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
        let mut consumed = 0;
        let mut fr = match self.frame {
            Some(fr) => fr,
            None => {
                let (hdr, used) = match self.read_header(input) {
                    Ok(Some(h)) => h,
                    Ok(None) => return Ok((input.len(), None)),
                    Err(e) => return Err(self.fail(e)),
                };
                consumed = used;
                match self.start_frame(hdr) {
                    Ok(fr) => fr,
                    Err(e) => return Err(self.fail(e)),
                }
            }
        };

        let left = (input.len() - consumed) as u64;
        let avail = fr.remaining.min(left) as usize;
        let (start, end) = (consumed, consumed + avail);
        let whole = fr.received == 0 && avail as u64 == fr.remaining;

        // Hot path: the whole frame is in `input` and is a whole message or a control
        // frame: unmask in place and lend it out.
        if whole && (fr.opcode.is_control() || (fr.fin && fr.opcode != OpCode::Continuation)) {
            if let Some(key) = fr.mask {
                apply_mask(&mut input[start..end], key, 0);
            }
            self.frame = None;
            if !fr.opcode.is_control() {
                self.msg = None;
            }
            if fr.opcode == OpCode::Close {
                self.finished = true;
            }
            let input: &'a [u8] = input;
            if self.compressed && !fr.opcode.is_control() {
                self.compressed = false;
                let text = fr.opcode == OpCode::Text;
                let payload = &input[start..end];
                return Ok((end, Some(Event::Deflated { text, payload })));
            }
            return match make_event(fr.opcode, &input[start..end]) {
                Ok(ev) => Ok((end, Some(ev))),
                Err(e) => Err(self.fail(e)),
            };
        }

        // Assembly path: unmask what has arrived and buffer it.
        let chunk = &mut input[start..end];
        if let Some(key) = fr.mask {
            fr.mask_offset = apply_mask(chunk, key, fr.mask_offset);
        }
        let chunk: &[u8] = chunk;
        if fr.opcode.is_control() {
            // A control payload is at most 125 bytes (checked in start_frame).
            if self.ctrl.len() + avail > 125 {
                return Err(self.fail(ProtocolError::protocol("control frame overflow")));
            }
            if self.ctrl.capacity() == 0 {
                self.ctrl.reserve_exact(125);
            }
            self.ctrl.extend_from_slice(chunk);
        } else if self.compressed && self.stream_compressed {
            // A piece of a compressed message, handed out as it is.
            fr.remaining -= avail as u64;
            fr.received += avail as u64;
            let last = fr.remaining == 0 && fr.fin;
            self.frame = (fr.remaining > 0).then_some(fr);
            let text = self.msg == Some(OpCode::Text);
            if last {
                self.msg = None;
                self.compressed = false;
                return Ok((
                    end,
                    Some(Event::Deflated {
                        text,
                        payload: chunk,
                    }),
                ));
            }
            if avail == 0 {
                return Ok((end, None));
            }
            return Ok((
                end,
                Some(Event::DeflatedPart {
                    text,
                    payload: chunk,
                }),
            ));
        } else {
            if self.msg == Some(OpCode::Text) && !self.compressed && self.utf8.feed(chunk).is_err()
            {
                return Err(self.fail(ProtocolError::invalid_utf8("text is not UTF-8")));
            }
            // Size the buffer for the frame from its header, but never more than 64 KiB
            // beyond the bytes already here (a header alone must not make us allocate
            // what it claims): a message arriving in reads then lands without the
            // copies of repeated growth.
            let room = self.buf.capacity() - self.buf.len();
            if room < avail {
                let remaining = usize::try_from(fr.remaining).unwrap_or(usize::MAX);
                self.buf.reserve(remaining.min(avail + 64 * 1024));
            }
            super::copy::append(&mut self.buf, chunk);
        }
        fr.remaining -= avail as u64;
        fr.received += avail as u64;
        if fr.remaining > 0 {
            self.frame = Some(fr);
            return Ok((end, None));
        }
        self.frame = None;

        if fr.opcode.is_control() {
            if fr.opcode == OpCode::Close {
                self.finished = true;
            }
            return match make_event(fr.opcode, &self.ctrl) {
                Ok(ev) => Ok((end, Some(ev))),
                Err(e) => {
                    self.finished = true;
                    Err(e)
                }
            };
        }
        if !fr.fin {
            return Ok((end, None));
        }
        let kind = self.msg.take().unwrap_or(OpCode::Binary);
        self.release = true;
        if std::mem::take(&mut self.compressed) {
            let text = kind == OpCode::Text;
            return Ok((
                end,
                Some(Event::Deflated {
                    text,
                    payload: &self.buf,
                }),
            ));
        }
        if kind == OpCode::Text && self.utf8.finish().is_err() {
            return Err(self.fail(ProtocolError::invalid_utf8("text ends mid-character")));
        }
        match make_event(kind, &self.buf) {
            Ok(ev) => Ok((end, Some(ev))),
            Err(e) => {
                self.finished = true;
                Err(e)
            }
        }
    }

    /// Reads a header, carrying a partial one across calls. `Ok(Some((hdr, used)))`
    /// gives the bytes of `input` used; `Ok(None)` means all of `input` was carried.
    fn read_header(&mut self, input: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        if self.hdr_len == 0 {
            if let Some(h) = FrameHeader::parse(input)? {
                return Ok(Some(h));
            }
            // Fewer than 14 bytes, or the parse would have succeeded.
            let n = input.len().min(FrameHeader::MAX_LEN);
            self.hdr[..n].copy_from_slice(&input[..n]);
            self.hdr_len = n as u8;
            return Ok(None);
        }
        let had = usize::from(self.hdr_len);
        let take = (FrameHeader::MAX_LEN - had).min(input.len());
        self.hdr[had..had + take].copy_from_slice(&input[..take]);
        match FrameHeader::parse(&self.hdr[..had + take])? {
            Some((h, len)) => {
                self.hdr_len = 0;
                Ok(Some((h, len - had)))
            }
            None => {
                self.hdr_len = (had + take) as u8;
                Ok(None)
            }
        }
    }

    /// Validates a header against the connection state and starts its frame.
    fn start_frame(&mut self, h: FrameHeader) -> Result<FrameState, ProtocolError> {
        let opcode = OpCode::from_u8(h.opcode).ok_or(ProtocolError::protocol("reserved opcode"))?;
        // RSV1 is permessage-deflate's "compressed" bit, on a message's first frame only.
        let rsv1 = h.rsv == RSV1;
        let first_data = !opcode.is_control() && opcode != OpCode::Continuation;
        if h.rsv != 0 && !(rsv1 && self.rsv1_allowed && first_data) {
            return Err(ProtocolError::protocol(
                match (self.rsv1_allowed && rsv1, opcode) {
                    (true, OpCode::Continuation) => "RSV1 set on a continuation frame",
                    (true, _) => "RSV1 set on a control frame",
                    _ => "reserved bits set",
                },
            ));
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::protocol("unmasked client frame")),
            (Role::Client, true) => return Err(ProtocolError::protocol("masked server frame")),
            _ => {}
        }
        if opcode.is_control() {
            if !h.fin {
                return Err(ProtocolError::protocol("fragmented control frame"));
            }
            if h.payload_len > 125 {
                return Err(ProtocolError::protocol("control frame over 125 bytes"));
            }
            self.ctrl.clear();
        } else {
            match (opcode, self.msg) {
                (OpCode::Continuation, None) => {
                    return Err(ProtocolError::protocol("continuation without a message"))
                }
                (OpCode::Continuation, Some(_)) => {}
                (_, Some(_)) => {
                    return Err(ProtocolError::protocol(
                        "new message inside a fragmented one",
                    ))
                }
                (_, None) => {}
            }
            if h.payload_len > self.limits.max_frame_size as u64 {
                return Err(ProtocolError::too_big("frame too big"));
            }
            if opcode != OpCode::Continuation {
                self.msg_len = 0;
            }
            let total = self.msg_len.saturating_add(h.payload_len);
            if total > self.limits.max_message_size as u64 {
                return Err(ProtocolError::too_big("message too big"));
            }
            self.msg_len = total;
            if opcode != OpCode::Continuation {
                self.msg = Some(opcode);
                self.compressed = rsv1;
                self.utf8.reset();
                self.buf.clear();
            }
        }
        Ok(FrameState {
            fin: h.fin,
            opcode,
            mask: h.mask,
            remaining: h.payload_len,
            received: 0,
            mask_offset: 0,
        })
    }

    /// Marks the decoder finished and drops its buffers.
    fn fail(&mut self, e: ProtocolError) -> ProtocolError {
        self.finished = true;
        self.frame = None;
        self.msg = None;
        self.compressed = false;
        self.buf = Vec::new();
        e
    }
}

/// Builds the event for a complete message or control frame.
fn make_event(opcode: OpCode, payload: &[u8]) -> Result<Event<'_>, ProtocolError> {
    Ok(match opcode {
        OpCode::Text => Event::Text(
            simdutf8::basic::from_utf8(payload)
                .map_err(|_| ProtocolError::invalid_utf8("text is not UTF-8"))?,
        ),
        OpCode::Binary | OpCode::Continuation => Event::Binary(payload),
        OpCode::Ping => Event::Ping(payload),
        OpCode::Pong => Event::Pong(payload),
        OpCode::Close => Event::Close(parse_close_payload(payload)?),
    })
}

#[cfg(test)]
mod tests;
