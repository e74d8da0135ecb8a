//! Payload masking (RFC 6455 section 5.3): XOR with a 4-byte key, with SIMD
//! implementations chosen at run time.
//!
//! Every implementation has the same contract as [`apply_mask`] and takes an `offset`
//! (the key position of `buf[0]`, modulo 4) so a payload can be processed in chunks:
//!
//! ```
//! use ringws::proto::mask::{apply_mask, apply_mask_bytewise};
//!
//! let key = [0x12, 0x34, 0x56, 0x78];
//! let mut whole = *b"hello, chunked world";
//! apply_mask_bytewise(&mut whole, key, 0);
//! let mut parts = *b"hello, chunked world";
//! let (a, b) = parts.split_at_mut(7);
//! let off = apply_mask(a, key, 0);
//! assert_eq!(off, 3);
//! apply_mask(b, key, off);
//! assert_eq!(whole, parts);
//! ```
#![warn(unsafe_op_in_unsafe_fn)]

/// The signature shared by every mask implementation.
pub type MaskFn = fn(&mut [u8], [u8; 4], usize) -> usize;

/// The key rotated so that byte 0 of the result applies to a byte at key position
/// `offset % 4`.
#[inline(always)]
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let o = offset & 3;
    [key[o], key[(o + 1) & 3], key[(o + 2) & 3], key[(o + 3) & 3]]
}

/// The key offset after `len` more bytes.
#[inline(always)]
fn next_offset(offset: usize, len: usize) -> usize {
    // Wrapping is harmless: 2^64 is a multiple of 4.
    offset.wrapping_add(len) & 3
}

/// XORs `buf` with the 4-byte `key` starting at key position `offset % 4`; returns the
/// new offset (`(offset + buf.len()) % 4`) so a payload can be unmasked in chunks.
///
/// Uses the best implementation for this CPU (AVX-512, AVX2, SSE2, NEON, else
/// [`apply_mask_scalar_u64`]); the choice is detected once and cached.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    if buf.len() < 16 {
        return apply_mask_scalar_u64(buf, key, offset);
    }
    dispatch(buf, key, offset)
}

#[cfg(target_arch = "x86_64")]
fn dispatch(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    use std::sync::atomic::{AtomicU8, Ordering};
    // 0 = not detected yet, 1 = SSE2, 2 = AVX2, 3 = AVX-512F.
    static BEST: AtomicU8 = AtomicU8::new(0);
    let mut best = BEST.load(Ordering::Relaxed);
    if best == 0 {
        best = if is_x86_feature_detected!("avx512f") {
            3
        } else if is_x86_feature_detected!("avx2") {
            2
        } else {
            1
        };
        BEST.store(best, Ordering::Relaxed);
    }
    let rk = rotate(key, offset);
    match best {
        // SAFETY: `best` is 3 only if avx512f was detected on this CPU above.
        3 => unsafe { x86::mask_avx512(buf, rk) },
        // SAFETY: `best` is 2 only if avx2 was detected on this CPU above.
        2 => unsafe { x86::mask_avx2(buf, rk) },
        // SAFETY: SSE2 is part of the x86_64 baseline.
        _ => unsafe { x86::mask_sse2(buf, rk) },
    }
    next_offset(offset, buf.len())
}

#[cfg(target_arch = "aarch64")]
fn dispatch(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    apply_mask_neon(buf, key, offset)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn dispatch(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    apply_mask_scalar_u64(buf, key, offset)
}

/// Reference implementation, one byte at a time. Same contract as [`apply_mask`].
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset.wrapping_add(i)) & 3];
    }
    next_offset(offset, buf.len())
}

/// Portable fallback working on 8-byte words. Same contract as [`apply_mask`].
pub fn apply_mask_scalar_u64(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    let rk = rotate(key, offset);
    mask_words(buf, rk);
    next_offset(offset, buf.len())
}

/// Masks `buf` with the already rotated key `rk` (key position 0 at `buf[0]`).
#[inline(always)]
fn mask_words(buf: &mut [u8], rk: [u8; 4]) {
    let k = u64::from_ne_bytes([rk[0], rk[1], rk[2], rk[3], rk[0], rk[1], rk[2], rk[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ k).to_ne_bytes());
    }
    // A multiple of 8 bytes was done, so the key position is still 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= rk[i & 3];
    }
}

/// SSE2 implementation (x86_64 baseline, always available). Same contract as
/// [`apply_mask`].
#[cfg(target_arch = "x86_64")]
pub fn apply_mask_sse2(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    // SAFETY: SSE2 is part of the x86_64 baseline, so the feature is always present.
    unsafe { x86::mask_sse2(buf, rotate(key, offset)) };
    next_offset(offset, buf.len())
}

/// AVX2 implementation. Same contract as [`apply_mask`]; checks
/// `is_x86_feature_detected!("avx2")` (cached by std) and falls back to
/// [`apply_mask_sse2`] when the CPU lacks AVX2.
#[cfg(target_arch = "x86_64")]
pub fn apply_mask_avx2(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    if !is_x86_feature_detected!("avx2") {
        return apply_mask_sse2(buf, key, offset);
    }
    // SAFETY: avx2 was detected on this CPU just above.
    unsafe { x86::mask_avx2(buf, rotate(key, offset)) };
    next_offset(offset, buf.len())
}

/// AVX-512F implementation. Same contract as [`apply_mask`]; checks
/// `is_x86_feature_detected!("avx512f")` (cached by std) and falls back to
/// [`apply_mask_avx2`] when the CPU lacks AVX-512F.
#[cfg(target_arch = "x86_64")]
pub fn apply_mask_avx512(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    if !is_x86_feature_detected!("avx512f") {
        return apply_mask_avx2(buf, key, offset);
    }
    // SAFETY: avx512f was detected on this CPU just above.
    unsafe { x86::mask_avx512(buf, rotate(key, offset)) };
    next_offset(offset, buf.len())
}

/// NEON implementation (NEON is part of the aarch64 baseline). Same contract as
/// [`apply_mask`].
#[cfg(target_arch = "aarch64")]
pub fn apply_mask_neon(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    use core::arch::aarch64::{vdupq_n_u32, veorq_u8, vld1q_u8, vreinterpretq_u8_u32, vst1q_u8};
    let rk = rotate(key, offset);
    let mut chunks = buf.chunks_exact_mut(16);
    // SAFETY: NEON is a baseline feature of aarch64 targets; each load and store
    // touches exactly the 16 bytes of `c`, a valid, exclusively borrowed slice
    // (vld1q/vst1q have no alignment requirement).
    unsafe {
        let k = vreinterpretq_u8_u32(vdupq_n_u32(u32::from_ne_bytes(rk)));
        for c in &mut chunks {
            let v = vld1q_u8(c.as_ptr());
            vst1q_u8(c.as_mut_ptr(), veorq_u8(v, k));
        }
    }
    mask_words(chunks.into_remainder(), rk);
    next_offset(offset, buf.len())
}

/// Every implementation usable on this CPU, by name, the reference (`bytewise`) first,
/// for tests and benchmarks.
pub fn available_impls() -> Vec<(&'static str, MaskFn)> {
    let mut v: Vec<(&'static str, MaskFn)> = vec![
        ("bytewise", apply_mask_bytewise),
        ("scalar_u64", apply_mask_scalar_u64),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        v.push(("sse2", apply_mask_sse2));
        if is_x86_feature_detected!("avx2") {
            v.push(("avx2", apply_mask_avx2));
        }
        if is_x86_feature_detected!("avx512f") {
            v.push(("avx512", apply_mask_avx512));
        }
    }
    #[cfg(target_arch = "aarch64")]
    v.push(("neon", apply_mask_neon));
    v.push(("dispatch", apply_mask));
    v
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    /// # Safety
    /// The CPU must support SSE2 (always true on x86_64).
    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn mask_sse2(buf: &mut [u8], rk: [u8; 4]) {
        let k = _mm_set1_epi32(i32::from_ne_bytes(rk));
        let mut chunks = buf.chunks_exact_mut(16);
        for c in &mut chunks {
            let p = c.as_mut_ptr().cast::<__m128i>();
            // SAFETY: `c` is exactly 16 valid, exclusively borrowed bytes; the
            // unaligned load/store have no alignment requirement.
            unsafe { _mm_storeu_si128(p, _mm_xor_si128(_mm_loadu_si128(p), k)) };
        }
        // 16 is a multiple of 4: the tail starts at key position 0.
        super::mask_words(chunks.into_remainder(), rk);
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn mask_avx2(buf: &mut [u8], rk: [u8; 4]) {
        let k = _mm256_set1_epi32(i32::from_ne_bytes(rk));
        let mut chunks = buf.chunks_exact_mut(32);
        for c in &mut chunks {
            let p = c.as_mut_ptr().cast::<__m256i>();
            // SAFETY: `c` is exactly 32 valid, exclusively borrowed bytes; the
            // unaligned load/store have no alignment requirement; avx2 is enabled.
            unsafe { _mm256_storeu_si256(p, _mm256_xor_si256(_mm256_loadu_si256(p), k)) };
        }
        let rest = chunks.into_remainder();
        // SAFETY: SSE2 is implied by AVX2 (and by x86_64).
        unsafe { mask_sse2(rest, rk) };
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    // The `_mm512_*` intrinsics and the avx512f target feature are stable since Rust
    // 1.89, the crate's `rust-version`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn mask_avx512(buf: &mut [u8], rk: [u8; 4]) {
        let k = _mm512_set1_epi32(i32::from_ne_bytes(rk));
        let mut chunks = buf.chunks_exact_mut(64);
        for c in &mut chunks {
            let p = c.as_mut_ptr().cast::<i32>();
            // SAFETY: `c` is exactly 64 valid, exclusively borrowed bytes; the
            // unaligned load/store have no alignment requirement; avx512f is enabled.
            unsafe { _mm512_storeu_epi32(p, _mm512_xor_si512(_mm512_loadu_epi32(p), k)) };
        }
        let rest = chunks.into_remainder();
        // SAFETY: AVX2 is implied by AVX-512F.
        unsafe { mask_avx2(rest, rk) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift pseudo-random bytes.
    fn noise(n: usize, mut s: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect()
    }

    const KEYS: [[u8; 4]; 4] = [
        [0, 0, 0, 0],
        [0xFF, 0xFF, 0xFF, 0xFF],
        [0x12, 0x34, 0x56, 0x78],
        [0xA5, 0x01, 0xC3, 0x7E],
    ];

    #[test]
    fn all_impls_match_bytewise() {
        let impls = available_impls();
        assert!(impls.len() >= 3);
        let src = noise(300 + 8, 0x9E37_79B9_7F4A_7C15);
        for (name, f) in &impls {
            for key in KEYS {
                for len in 0..=300 {
                    for offset in 0..8 {
                        for start in 0..4 {
                            let mut want = src[start..start + len].to_vec();
                            let want_off = apply_mask_bytewise(&mut want, key, offset);
                            let mut got = src.clone();
                            let got_off = f(&mut got[start..start + len], key, offset);
                            assert_eq!(got_off, (offset + len) % 4, "{name} offset");
                            assert_eq!(got_off, want_off);
                            assert_eq!(
                                &got[start..start + len],
                                &want[..],
                                "{name} {len} {offset} {start}"
                            );
                            assert_eq!(&got[..start], &src[..start], "{name} wrote before");
                            assert_eq!(
                                &got[start + len..],
                                &src[start + len..],
                                "{name} wrote after"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn chunked_equals_whole() {
        let src = noise(1000, 7);
        let key = [1, 2, 3, 4];
        let mut want = src.clone();
        apply_mask_bytewise(&mut want, key, 0);
        for (name, f) in available_impls() {
            for step in [1, 3, 5, 17, 63, 64, 65, 333] {
                let mut got = src.clone();
                let mut off = 0;
                for c in got.chunks_mut(step) {
                    off = f(c, key, off);
                }
                assert_eq!(got, want, "{name} step {step}");
            }
        }
    }

    #[test]
    fn huge_offset_wraps() {
        let mut b = [0u8; 5];
        assert_eq!(apply_mask(&mut b, [1, 2, 3, 4], usize::MAX), 0);
        assert_eq!(b, [4, 1, 2, 3, 4]);
    }
}
