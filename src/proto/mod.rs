//! RFC 6455 framing, sans-I/O: frame headers, masking, incremental UTF-8, close
//! payloads, the receive state machine ([`Decoder`]) and the frame encoder; and the
//! legacy hixie-75/76 framing ([`HixieDecoder`], [`encode_hixie_text`]); and the
//! permessage-deflate codec ([`MessageDeflater`], [`MessageInflater`]).
//!
//! Nothing here touches a socket, a clock or a thread: bytes go in, events and bytes
//! come out. The runtime feeds each connection's read buffer to its [`Decoder`] and
//! writes what [`encode_frame`] produced.
//!
//! ```
//! use ringws::proto::{encode_frame, Decoder, Event, Limits, OpCode, Role};
//!
//! // A client sends a masked text frame...
//! let mut wire = Vec::new();
//! encode_frame(&mut wire, OpCode::Text, true, b"hello", Some([1, 2, 3, 4]));
//! // ...and the server decodes it in place.
//! let mut dec = Decoder::new(Role::Server, Limits::default());
//! let (used, ev) = dec.decode(&mut wire).unwrap();
//! assert_eq!(used, 11);
//! assert_eq!(ev, Some(Event::Text("hello")));
//! ```

pub mod close;
pub mod copy;
pub mod decode;
pub mod deflate;
pub mod encode;
pub mod frame;
pub mod hixie;
pub mod mask;
pub mod utf8;

pub use close::{parse_close_payload, CloseCode, CloseFrame};
pub use decode::{Decoder, Event, ProtocolError};
pub use deflate::{InflateError, MessageDeflater, MessageInflater};
pub use encode::{encode_close, encode_compressed_frame, encode_frame, frame_len};
pub use frame::{FrameHeader, OpCode};
pub use hixie::{encode_hixie_close, encode_hixie_text, HixieDecoder, HixieEvent};
pub use mask::apply_mask;
pub use utf8::{Utf8Error, Utf8Validator};

/// Which end of the connection we are: the server expects masked frames and sends
/// unmasked; the client the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts masked frames only; sends unmasked frames.
    Server,
    /// Accepts unmasked frames only; sends masked frames.
    Client,
}

/// Size limits enforced by the [`Decoder`], checked from frame headers before any
/// byte is buffered.
///
/// Defaults: `max_frame_size` 16 MiB, `max_message_size` 64 MiB. Exceeding either
/// fails with close code 1009 ([`CloseCode::TOO_BIG`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload one frame may declare (default 16 MiB).
    pub max_frame_size: usize,
    /// Largest total payload of one (possibly fragmented) data message (default 64 MiB).
    pub max_message_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
        }
    }
}
