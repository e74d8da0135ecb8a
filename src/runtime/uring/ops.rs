//! `user_data` encoding: which operation a completion belongs to, and for which
//! connection (slab index plus the low 24 bits of the token's generation).
//!
//! Layout of the 64 bits: `op` (8) | `generation & 0xff_ffff` (24) | `index` (32).
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
            _ => return None,
        })
    }
}

/// Packs an operation and (for connection operations) its token.
pub(super) fn encode(op: Op, token: Option<Token>) -> u64 {
    let (index, generation) = match token {
        Some(t) => (
            t.index() as u64 & 0xffff_ffff,
            (t.generation() & GEN_MASK) as u64,
        ),
        None => (0, 0),
    };
    ((op as u64) << 56) | (generation << 32) | index
}

/// What a completion's `user_data` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Decoded {
    pub(super) op: Option<Op>,
    pub(super) index: usize,
    generation24: u32,
}

impl Decoded {
    /// True when `token` is the connection this completion was submitted for.
    pub(super) fn matches(&self, token: Token) -> bool {
        token.index() == self.index && (token.generation() & GEN_MASK) == self.generation24
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
        assert_eq!(d.index, 12345);
        assert!(d.matches(t));
        assert!(!d.matches(Token::new(12345, 0x0100_0008)));
        assert!(!d.matches(Token::new(12344, 0x0100_0007)));
        let d = decode(encode(Op::Wake, None));
        assert_eq!(d.op, Some(Op::Wake));
        assert_eq!(decode(0).op, None);
    }
}
