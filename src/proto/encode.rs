//! Frames out, for both roles: the server sends unmasked frames, the client masked ones.

use super::close::CloseCode;
use super::frame::{FrameHeader, OpCode, RSV1};
use super::mask::apply_mask;

/// The encoded size of a frame with a `payload_len`-byte payload.
///
/// ```
/// use ringws::proto::frame_len;
///
/// assert_eq!(frame_len(125, false), 127);
/// assert_eq!(frame_len(126, true), 134);
/// ```
pub fn frame_len(payload_len: usize, masked: bool) -> usize {
    let ext = match payload_len {
        0..=125 => 0,
        126..=0xFFFF => 2,
        _ => 8,
    };
    2 + ext + if masked { 4 } else { 0 } + payload_len
}

/// Appends one frame to `out`. `mask` = `Some(key)` for the client role (the payload is
/// masked while copying: it is appended, then masked in place in `out`), `None` for
/// the server.
///
/// ```
/// use ringws::proto::{encode_frame, OpCode};
///
/// let mut out = Vec::new();
/// encode_frame(&mut out, OpCode::Text, true, b"hi", None);
/// assert_eq!(out, b"\x81\x02hi");
/// ```
pub fn encode_frame(
    out: &mut Vec<u8>,
    opcode: OpCode,
    fin: bool,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    encode_with_rsv(out, opcode, fin, 0, payload, mask);
}

/// Appends the first frame of a permessage-deflate message (RFC 7692): as
/// [`encode_frame`], with RSV1 set, `payload` being the compressed bytes (see
/// [`MessageDeflater`](super::MessageDeflater)). Its continuations, if any, are plain
/// [`encode_frame`]s.
///
/// ```
/// use ringws::proto::{encode_compressed_frame, OpCode};
///
/// let mut out = Vec::new();
/// // RFC 7692 §7.2.3.1: "Hello" compressed.
/// encode_compressed_frame(&mut out, OpCode::Text, true, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], None);
/// assert_eq!(out[..2], [0xc1, 0x07]);
/// ```
pub fn encode_compressed_frame(
    out: &mut Vec<u8>,
    opcode: OpCode,
    fin: bool,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    encode_with_rsv(out, opcode, fin, RSV1, payload, mask);
}

fn encode_with_rsv(
    out: &mut Vec<u8>,
    opcode: OpCode,
    fin: bool,
    rsv: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let h = FrameHeader {
        fin,
        rsv,
        opcode: opcode as u8,
        mask,
        payload_len: payload.len() as u64,
    };
    let mut hdr = [0u8; FrameHeader::MAX_LEN];
    let n = h.write(&mut hdr);
    out.reserve(n + payload.len());
    out.extend_from_slice(&hdr[..n]);
    let start = out.len();
    super::copy::append(out, payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

/// Appends a close frame with `code` and `reason` (the reason truncated at a char
/// boundary so the payload is at most 125 bytes); `code` `None` gives an empty payload
/// (and the reason is ignored). The caller should send only codes allowed on the wire
/// (not 1005 or 1006).
///
/// ```
/// use ringws::proto::{encode_close, CloseCode};
///
/// let mut out = Vec::new();
/// encode_close(&mut out, Some(CloseCode::NORMAL), "bye", None);
/// assert_eq!(out, b"\x88\x05\x03\xe8bye");
/// ```
pub fn encode_close(
    out: &mut Vec<u8>,
    code: Option<CloseCode>,
    reason: &str,
    mask: Option<[u8; 4]>,
) {
    let mut payload = [0u8; 125];
    let len = match code {
        None => 0,
        Some(code) => {
            payload[..2].copy_from_slice(&code.0.to_be_bytes());
            let mut end = reason.len().min(123);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
            2 + end
        }
    };
    encode_frame(out, OpCode::Close, true, &payload[..len], mask);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{parse_close_payload, CloseFrame};

    #[test]
    fn lengths_match_frame_len() {
        for len in [0, 1, 125, 126, 0xFFFF, 0x1_0000] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut out = vec![0xAA];
                encode_frame(&mut out, OpCode::Binary, true, &vec![5; len], mask);
                assert_eq!(out.len() - 1, frame_len(len, mask.is_some()));
                assert_eq!(out[0], 0xAA, "appends");
            }
        }
    }

    #[test]
    fn masked_payload() {
        let mut out = Vec::new();
        encode_frame(
            &mut out,
            OpCode::Binary,
            false,
            &[0, 0, 0, 0, 0],
            Some([1, 2, 3, 4]),
        );
        assert_eq!(out, [0x02, 0x85, 1, 2, 3, 4, 1, 2, 3, 4, 1]);
    }

    #[test]
    fn close_truncates_at_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let mut out = Vec::new();
        encode_close(&mut out, Some(CloseCode::GOING_AWAY), &reason, None);
        assert_eq!(out[1] as usize, out.len() - 2);
        assert!(out.len() - 2 <= 125);
        let cf = parse_close_payload(&out[2..]).unwrap().unwrap();
        assert_eq!(cf.code, CloseCode::GOING_AWAY);
        assert_eq!(cf.reason, "é".repeat(61));

        let mut out = Vec::new();
        encode_close(&mut out, None, "ignored", Some([1, 1, 1, 1]));
        assert_eq!(out, [0x88, 0x80, 1, 1, 1, 1]);

        let mut out = Vec::new();
        encode_close(&mut out, Some(CloseCode(4000)), &"x".repeat(123), None);
        assert_eq!(out.len(), 127);
        assert_eq!(
            parse_close_payload(&out[2..]).unwrap(),
            Some(CloseFrame {
                code: CloseCode(4000),
                reason: &"x".repeat(123)
            })
        );
    }
}
