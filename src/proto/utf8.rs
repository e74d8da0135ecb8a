//! Incremental UTF-8 validation across fragments, on simdutf8, failing fast.

use std::fmt;

/// The bytes of a text message are not (and can never become) valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error;

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for Utf8Error {}

/// Validates a text message chunk by chunk, carrying at most 3 bytes of an
/// incomplete trailing sequence between chunks.
///
/// It fails as soon as the bytes so far can never become valid UTF-8, including an
/// incomplete sequence whose prefix is already impossible (`F4 90`, `ED A0`, ...).
///
/// ```
/// use ringws::proto::Utf8Validator;
///
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(b"caf\xC3").is_ok()); // incomplete but possible
/// assert!(v.feed(b"\xA9!").is_ok());
/// assert!(v.finish().is_ok());
/// assert!(v.feed(b"\xF4\x90").is_err()); // above U+10FFFF: fails at once
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Validator {
    carry: [u8; 4],
    carry_len: u8,
}

/// Length of the sequence a lead byte starts; 0 for bytes that never lead a valid
/// multi-byte sequence (ASCII is handled elsewhere).
#[inline]
fn seq_len(b0: u8) -> usize {
    match b0 {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

/// Whether `p` (1..=4 bytes, starting with a lead byte) is a well-formed sequence or
/// a prefix of one, per the Unicode well-formed byte sequence table.
fn prefix_ok(p: &[u8]) -> bool {
    let Some((&b0, rest)) = p.split_first() else {
        return true;
    };
    let n = seq_len(b0);
    if n == 0 || p.len() > n {
        return false;
    }
    let second = match b0 {
        0xE0 => 0xA0..=0xBF,
        0xED => 0x80..=0x9F,
        0xF0 => 0x90..=0xBF,
        0xF4 => 0x80..=0x8F,
        _ => 0x80..=0xBF,
    };
    match rest {
        [] => true,
        [b1, tail @ ..] => second.contains(b1) && tail.iter().all(|b| (0x80..=0xBF).contains(b)),
    }
}

/// Where a trailing sequence that the chunk's end may have cut starts (`chunk.len()`
/// when the chunk ends on a complete sequence, or on bytes that are invalid anyway).
/// The returned tail is at most 3 bytes: a lead byte and continuation bytes only.
fn incomplete_tail_start(chunk: &[u8]) -> usize {
    let len = chunk.len();
    for i in 1..=len.min(3) {
        let b = chunk[len - i];
        match b {
            0x80..=0xBF => continue,
            0xC0..=0xFF if seq_len(b) == 0 || seq_len(b) > i => return len - i,
            _ => return len,
        }
    }
    len
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets any carried bytes, ready for a new message.
    pub fn reset(&mut self) {
        self.carry_len = 0;
    }

    /// Validates the next chunk. Err if the bytes so far can never become valid
    /// UTF-8 (fail fast: an invalid byte, or an incomplete sequence whose prefix is
    /// already impossible e.g. `0xF4 0x90` or `0xED 0xA0`).
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), Utf8Error> {
        if self.carry_len > 0 {
            let have = usize::from(self.carry_len);
            let need = seq_len(self.carry[0]).saturating_sub(have);
            let take = need.min(chunk.len());
            self.carry[have..have + take].copy_from_slice(&chunk[..take]);
            let now = have + take;
            if !prefix_ok(&self.carry[..now]) {
                return self.fail();
            }
            self.carry_len = now as u8;
            if take < need {
                return Ok(());
            }
            self.carry_len = 0;
            chunk = &chunk[take..];
        }
        // Split off a trailing sequence that may be incomplete, validate the rest in
        // one SIMD pass and check the tail against the well-formedness table.
        let cut = incomplete_tail_start(chunk);
        let (body, tail) = chunk.split_at(cut);
        if simdutf8::basic::from_utf8(body).is_err() || !prefix_ok(tail) {
            return self.fail();
        }
        self.carry[..tail.len()].copy_from_slice(tail);
        self.carry_len = tail.len() as u8;
        Ok(())
    }

    /// The message ended: Err if a sequence is left incomplete. Resets the validator
    /// either way.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        if self.carry_len > 0 {
            return self.fail();
        }
        Ok(())
    }

    fn fail(&mut self) -> Result<(), Utf8Error> {
        self.carry_len = 0;
        Err(Utf8Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks_ok(parts: &[&[u8]]) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        for p in parts {
            v.feed(p)?;
        }
        v.finish()
    }

    #[test]
    fn valid_split_everywhere() {
        let s = "aé€😀\u{10FFFF}\u{D7FF}\u{E000}ok κόσμε".as_bytes();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                assert_eq!(chunks_ok(&[&s[..i], &s[i..j], &s[j..]]), Ok(()), "{i} {j}");
            }
        }
        for i in 0..s.len() {
            // byte at a time
            let parts: Vec<&[u8]> = s.chunks(1).collect();
            assert_eq!(chunks_ok(&parts), Ok(()), "{i}");
        }
    }

    #[test]
    fn fail_fast_on_impossible_prefix() {
        for bad in [
            &b"ab\xF4\x90"[..],
            b"\xED\xA0",
            b"\xE0\x80",
            b"\xF0\x80",
            b"\xF5",
            b"\xC0",
            b"\xC1",
            b"\xFF",
            b"\x80",
            b"\xE2\x82\x41",
        ] {
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(bad), Err(Utf8Error), "{bad:x?}");
            // also when the prefix arrives one byte at a time
            let mut v = Utf8Validator::new();
            let r: Result<(), _> = bad.iter().try_for_each(|b| v.feed(&[*b]));
            assert_eq!(r, Err(Utf8Error), "bytewise {bad:x?}");
        }
    }

    #[test]
    fn incomplete_possible_prefix_waits_for_finish() {
        for ok in [
            &b"\xCE"[..],
            b"\xE2\x82",
            b"\xF4\x8F\xBF",
            b"\xF0\x90",
            b"\xED\x9F",
        ] {
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(ok), Ok(()), "{ok:x?}");
            assert_eq!(v.finish(), Err(Utf8Error));
            assert_eq!(v.finish(), Ok(()), "finish resets");
        }
    }

    #[test]
    fn compare_with_std_on_noise() {
        let mut s = 0x1234_5678_9abc_def0u64;
        for _ in 0..3000 {
            let len = (s % 12) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    // bias towards interesting bytes
                    [
                        0x41, 0x80, 0xBF, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0x90, 0xA0, 0x9F, s as u8,
                    ][(s >> 8) as usize % 12]
                })
                .collect();
            let want = std::str::from_utf8(&buf).is_ok();
            for cut in 0..=buf.len() {
                let got = chunks_ok(&[&buf[..cut], &buf[cut..]]).is_ok();
                assert_eq!(got, want, "{buf:x?} cut {cut}");
            }
        }
    }

    /// Byte at a time, the validator fails exactly at the first byte where std says
    /// the prefix can never become valid (an error with `error_len` set).
    #[test]
    fn fails_exactly_when_std_says_hopeless() {
        let interesting = [
            0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1,
            0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF,
        ];
        let n = interesting.len();
        for a in 0..n {
            for b in 0..n {
                for c in 0..n {
                    let buf = [interesting[a], interesting[b], interesting[c], 0x80, 0x41];
                    let hopeless = (1..=buf.len()).find(|&k| {
                        std::str::from_utf8(&buf[..k]).is_err_and(|e| e.error_len().is_some())
                    });
                    let mut v = Utf8Validator::new();
                    let failed = (1..=buf.len()).find(|&k| v.feed(&buf[k - 1..k]).is_err());
                    assert_eq!(failed, hopeless, "{buf:x?}");
                    let mut v = Utf8Validator::new();
                    assert_eq!(v.feed(&buf).is_err(), hopeless.is_some(), "{buf:x?}");
                }
            }
        }
    }
}
