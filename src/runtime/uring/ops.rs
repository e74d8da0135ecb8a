//! `user_data` encoding: which operation a completion belongs to, and for which
//! connection (its table slot, [`Token::slot`], plus the low 24 bits of the token's
//! generation) or which listener (its index, generation 0).
//!
//! Layout of the 64 bits: `op` (8) | `generation & 0xff_ffff` (24) | `slot` (32).
//! A completion whose index/generation no longer matches the backend's table entry is
//! stale (its connection was closed and the slot reused) and is ignored, except that any
//! provided buffer it carries is still given back to the ring.

use crate::runtime::core::Token;

const GEN_MASK: u32 = 0x00ff_ffff;

/// The kinds of operation the loop submits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Op {
    /// Multishot accept on the listener.
    Accept = 1,
    /// Read of the mailbox eventfd.
    Wake = 2,
    /// One-shot poll of the mailbox eventfd (used if a read reports EAGAIN).
    WakePoll = 3,
    /// Multishot recv on a connection.
    Recv = 4,
    /// Send on a connection.
    Send = 5,
    /// An `AsyncCancel`: its own completion carries nothing of interest.
    Cancel = 6,
    /// Connect of an outgoing connection.
    Connect = 7,
    /// Read of a file chunk (its index is the driver's file read slot).
    FileRead = 8,
}

impl Op {
    fn from_u8(v: u8) -> Option<Op> {
        Some(match v {
            1 => Op::Accept,
            2 => Op::Wake,
            3 => Op::WakePoll,
            4 => Op::Recv,
            5 => Op::Send,
            6 => Op::Cancel,
            7 => Op::Connect,
            8 => Op::FileRead,
            _ => return None,
        })
    }
}

/// Packs an operation and (for connection operations) its token.
pub(super) fn encode(op: Op, token: Option<Token>) -> u64 {
    let (index, generation) = match token {
        Some(t) => (
            t.slot() as u64 & 0xffff_ffff,
            (t.generation() & GEN_MASK) as u64,
        ),
        None => (0, 0),
    };
    ((op as u64) << 56) | (generation << 32) | index
}

/// Packs an operation on listener `index` (multishot accept), or on the driver's file
/// read slot `index`.
pub(super) fn encode_listener(op: Op, index: usize) -> u64 {
    ((op as u64) << 56) | (index as u64 & 0xffff_ffff)
}

/// What a completion's `user_data` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Decoded {
    pub(super) op: Option<Op>,
    /// The connection's table slot, or the listener's index.
    pub(super) index: usize,
    generation24: u32,
}

impl Decoded {
    /// True when `token` is the connection this completion was submitted for.
    pub(super) fn matches(&self, token: Token) -> bool {
        token.slot() == self.index && (token.generation() & GEN_MASK) == self.generation24
    }
}

/// Unpacks a completion's `user_data`.
pub(super) fn decode(user_data: u64) -> Decoded {
    Decoded {
        op: Op::from_u8((user_data >> 56) as u8),
        index: (user_data & 0xffff_ffff) as usize,
        generation24: ((user_data >> 32) as u32) & GEN_MASK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_stale_detection() {
        let t = Token::new(12345, 0x0100_0007);
        let d = decode(encode(Op::Recv, Some(t)));
        assert_eq!(d.op, Some(Op::Recv));
        assert_eq!(d.index, t.slot());
        assert!(d.matches(t));
        assert!(!d.matches(Token::new(12345, 0x0100_0008)));
        assert!(!d.matches(Token::new(12344, 0x0100_0007)));
        let s = Token::of_kind(crate::runtime::core::TokenKind::Stream, 12345, 3);
        assert!(decode(encode(Op::Connect, Some(s))).matches(s));
        assert!(!decode(encode(Op::Connect, Some(s))).matches(t));
        assert_eq!(decode(encode_listener(Op::Accept, 2)).index, 2);
        let file = decode(encode_listener(Op::FileRead, 5));
        assert_eq!((file.op, file.index), (Some(Op::FileRead), 5));
        let d = decode(encode(Op::Wake, None));
        assert_eq!(d.op, Some(Op::Wake));
        assert_eq!(decode(0).op, None);
    }
}
