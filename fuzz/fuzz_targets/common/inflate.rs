//! The permessage-deflate codec (`ringws::proto::{MessageInflater, MessageDeflater}`).
//! The first byte picks the window bits (9 + b % 7), no-context-takeover (0x08), the
//! cap (0x10: 64 KiB, else 1 KiB), hibernation between messages (0x40) and the mode
//! (0x20); the second byte the chunk size (1..=256).
//!
//! - Inflate mode: the rest is arbitrary compressed bytes fed in chunks; a chunk ending
//!   in 0xff ends a message (`fin`), as does the last one. No panic, no loop; a message
//!   never yields more than cap + 1 bytes, a successful one at most the cap, and its
//!   buffer's capacity never exceeds cap + 1.
//! - Round-trip mode: the rest, split on LF, is a sequence of plaintext messages; each
//!   is compressed by a `MessageDeflater` and inflated chunk by chunk by a
//!   `MessageInflater` (either side hibernating between messages when asked); the
//!   result must equal the message.
//!
//! The `inflate` target and the seed replay test (`tests/fuzz_seeds.rs`) share this body.

use ringws::proto::{MessageDeflater, MessageInflater};

pub fn run(data: &[u8]) {
    let [config, piece, rest @ ..] = data else {
        return;
    };
    let window_bits = 9 + config % 7;
    let no_takeover = config & 0x08 != 0;
    let cap = if config & 0x10 != 0 { 1 << 16 } else { 1 << 10 };
    let hibernate = config & 0x40 != 0;
    let piece = 1 + usize::from(*piece);
    if config & 0x20 == 0 {
        inflate_junk(window_bits, no_takeover, cap, hibernate, piece, rest);
    } else {
        round_trip(window_bits, no_takeover, hibernate, piece, rest);
    }
}

fn inflate_junk(
    window_bits: u8,
    no_takeover: bool,
    cap: usize,
    hibernate: bool,
    piece: usize,
    data: &[u8],
) {
    let mut rx = MessageInflater::new(window_bits, no_takeover);
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = data.chunks(piece).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let fin = i + 1 == chunks.len() || chunk.last() == Some(&0xff);
        let result = rx.decompress(chunk, fin, cap, &mut out);
        assert!(
            out.len() <= cap + 1,
            "{} bytes over a cap of {cap}",
            out.len()
        );
        assert!(out.capacity() <= cap + 1, "capacity {}", out.capacity());
        if result.is_err() {
            return;
        }
        if fin {
            assert!(out.len() <= cap);
            out = Vec::new();
            if hibernate {
                assert!(rx.hibernate());
            }
        }
    }
}

fn round_trip(window_bits: u8, no_takeover: bool, hibernate: bool, piece: usize, data: &[u8]) {
    let mut tx = MessageDeflater::new(window_bits, 1 + u32::from(window_bits % 9), no_takeover);
    let mut rx = MessageInflater::new(window_bits, no_takeover);
    for (n, msg) in data.split(|&b| b == b'\n').enumerate() {
        if hibernate {
            if n % 2 == 0 {
                tx.hibernate();
            } else {
                assert!(rx.hibernate());
            }
        }
        let mut wire = Vec::new();
        tx.compress(msg, &mut wire);
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = wire.chunks(piece).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            rx.decompress(chunk, i + 1 == chunks.len(), msg.len(), &mut out)
                .expect("our own output inflates within its length");
        }
        assert_eq!(out, msg, "message {n}");
    }
}
