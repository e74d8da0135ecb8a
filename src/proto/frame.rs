//! Frame opcodes and the frame header (RFC 6455 section 5.2).

use super::decode::ProtocolError;

/// A frame opcode defined by RFC 6455. Reserved opcodes (3-7, 0xB-0xF) have no variant.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// Continues a fragmented data message.
    Continuation = 0,
    /// Starts a text (UTF-8) message.
    Text = 1,
    /// Starts a binary message.
    Binary = 2,
    /// Close control frame.
    Close = 8,
    /// Ping control frame.
    Ping = 9,
    /// Pong control frame.
    Pong = 10,
}

impl OpCode {
    /// Maps a raw 4-bit opcode to an [`OpCode`]; `None` for reserved values.
    #[inline]
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0 => OpCode::Continuation,
            1 => OpCode::Text,
            2 => OpCode::Binary,
            8 => OpCode::Close,
            9 => OpCode::Ping,
            10 => OpCode::Pong,
            _ => return None,
        })
    }

    /// Whether this is a control opcode (Close, Ping, Pong).
    #[inline]
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// The RSV1 bit as [`FrameHeader::rsv`] holds it: permessage-deflate's "this message
/// is compressed" (RFC 7692 §6).
pub(super) const RSV1: u8 = 0b100;

/// A parsed frame header. Fields are raw: validation against the connection state
/// (reserved bits, opcodes, masking, sizes) is the [`Decoder`](super::Decoder)'s job.
///
/// ```
/// use ringws::proto::FrameHeader;
///
/// let (h, len) = FrameHeader::parse(&[0x81, 0x05, b'h']).unwrap().unwrap();
/// assert_eq!((h.fin, h.opcode, h.payload_len, len), (true, 1, 5, 2));
/// let mut out = [0u8; 14];
/// assert_eq!(h.write(&mut out), 2);
/// assert_eq!(&out[..2], &[0x81, 0x05]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The FIN bit: this frame ends its message.
    pub fin: bool,
    /// The three RSV bits (RSV1 is bit 2), zero unless an extension is negotiated.
    pub rsv: u8,
    /// The raw 4-bit opcode (see [`OpCode::from_u8`]).
    pub opcode: u8,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The declared payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    /// The largest encoded header: 2 bytes, 8 extended length bytes, 4 mask bytes.
    pub const MAX_LEN: usize = 14;

    /// Parses a header from the front of `buf`: `Ok(None)` = need more bytes;
    /// `Ok(Some((hdr, header_len)))` otherwise.
    ///
    /// A 64-bit length with its most significant bit set is an error (1002);
    /// non-minimal length encodings are accepted.
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let (b0, b1) = match buf {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(None),
        };
        let (payload_len, mut len) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
                _ => return Ok(None),
            },
            127 => {
                let mut l = [0u8; 8];
                match buf.get(2..10) {
                    Some(s) => l.copy_from_slice(s),
                    None => return Ok(None),
                }
                let v = u64::from_be_bytes(l);
                if v >> 63 != 0 {
                    return Err(ProtocolError::protocol("64-bit payload length has MSB set"));
                }
                (v, 10)
            }
            l => (u64::from(l), 2),
        };
        let mask = if b1 & 0x80 != 0 {
            let mut k = [0u8; 4];
            match buf.get(len..len + 4) {
                Some(s) => k.copy_from_slice(s),
                None => return Ok(None),
            }
            len += 4;
            Some(k)
        } else {
            None
        };
        let hdr = FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x7,
            opcode: b0 & 0x0F,
            mask,
            payload_len,
        };
        Ok(Some((hdr, len)))
    }

    /// Writes the header into `out` (2..=14 bytes, minimal length encoding) returning
    /// the length. `rsv` and `opcode` are truncated to 3 and 4 bits; a `payload_len`
    /// with its MSB set is written as is (the caller must not do that).
    pub fn write(&self, out: &mut [u8; 14]) -> usize {
        out[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x7) << 4) | (self.opcode & 0x0F);
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut len = match self.payload_len {
            l @ 0..=125 => {
                out[1] = mask_bit | l as u8;
                2
            }
            l @ 126..=0xFFFF => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(l as u16).to_be_bytes());
                4
            }
            l => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&l.to_be_bytes());
                10
            }
        };
        if let Some(k) = self.mask {
            out[len..len + 4].copy_from_slice(&k);
            len += 4;
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes() {
        for v in 0..16u8 {
            match OpCode::from_u8(v) {
                Some(op) => {
                    assert_eq!(op as u8, v);
                    assert_eq!(op.is_control(), v >= 8);
                }
                None => assert!((3..=7).contains(&v) || v >= 11),
            }
        }
    }

    #[test]
    fn round_trip_all_length_forms() {
        for &len in &[0u64, 1, 125, 126, 0xFFFF, 0x1_0000, 1 << 40] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let h = FrameHeader {
                    fin: len % 2 == 0,
                    rsv: 0,
                    opcode: 2,
                    mask,
                    payload_len: len,
                };
                let mut out = [0u8; 14];
                let n = h.write(&mut out);
                let expect =
                    2 + match len {
                        0..=125 => 0,
                        126..=0xFFFF => 2,
                        _ => 8,
                    } + if mask.is_some() { 4 } else { 0 };
                assert_eq!(n, expect);
                assert_eq!(FrameHeader::parse(&out[..n]).unwrap(), Some((h, n)));
                for short in 0..n {
                    assert_eq!(FrameHeader::parse(&out[..short]).unwrap(), None);
                }
            }
        }
    }

    #[test]
    fn msb_length_rejected_non_minimal_accepted() {
        let mut b = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            FrameHeader::parse(&b).unwrap_err().code,
            crate::proto::CloseCode::PROTOCOL_ERROR
        );
        b[2] = 0;
        let (h, n) = FrameHeader::parse(&b).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (1, 10));
        let (h, n) = FrameHeader::parse(&[0x82, 126, 0, 5]).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (5, 4));
    }

    #[test]
    fn raw_bits() {
        let (h, _) = FrameHeader::parse(&[0x7F, 0x00]).unwrap().unwrap();
        assert_eq!((h.fin, h.rsv, h.opcode), (false, 7, 15));
    }
}
