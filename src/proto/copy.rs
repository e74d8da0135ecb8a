//! Appending a payload to an output buffer without `rep movsb`.
//!
//! glibc's `memcpy` switches to `rep movsb` above a couple of KiB, and on some x86 CPUs
//! (measured here on AMD EPYC, `benches/mask.rs`, group `memcpy_page_delta`) that
//! instruction slows down about 20× when the destination sits a few bytes past the
//! source's offset within a 4 KiB page — exactly the layout of a frame header followed
//! by its payload. A plain vector loop has no such cliff, so payload copies on the hot
//! path go through [`append`].

/// Copies shorter than this use `extend_from_slice` (memcpy's small-size paths are fine).
const VECTOR_COPY_MIN: usize = 1024;

/// Appends `src` to `out`, like `out.extend_from_slice(src)`, with a vector loop for
/// large copies.
///
/// ```
/// let mut out = b"head".to_vec();
/// ringws::proto::copy::append(&mut out, &[7u8; 5000]);
/// assert_eq!(out.len(), 5004);
/// assert!(out[4..].iter().all(|&b| b == 7));
/// ```
#[inline]
pub fn append(out: &mut Vec<u8>, src: &[u8]) {
    if src.len() < VECTOR_COPY_MIN {
        out.extend_from_slice(src);
        return;
    }
    out.reserve(src.len());
    let len = out.len();
    // SAFETY: `reserve` made room for `src.len()` more bytes after `len`; `copy_into`
    // writes exactly that many bytes there from `src`, which cannot overlap `out`'s
    // spare capacity (we hold `&mut out`), and only then is the length raised.
    unsafe {
        copy_into(out.as_mut_ptr().add(len), src);
        out.set_len(len + src.len());
    }
}

/// Copies `src` to `dst`.
///
/// # Safety
/// `dst` must be valid for `src.len()` bytes of writes and must not overlap `src`.
#[cfg(target_arch = "x86_64")]
unsafe fn copy_into(dst: *mut u8, src: &[u8]) {
    // std caches the detection (one relaxed atomic load after the first call).
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected on this CPU; the caller upholds the rest.
        unsafe { copy_avx2(dst, src) }
    } else {
        // SAFETY: SSE2 is part of the x86_64 baseline; the caller upholds the rest.
        unsafe { copy_sse2(dst, src) }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn copy_into(dst: *mut u8, src: &[u8]) {
    // SAFETY: the caller guarantees `dst` is writable for `src.len()` bytes, no overlap.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) }
}

/// # Safety
/// AVX2 must be available; `dst` writable for `src.len()` bytes, not overlapping `src`;
/// `src.len() >= 32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn copy_avx2(dst: *mut u8, src: &[u8]) {
    use std::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm256_storeu_si256};
    let len = src.len();
    let s = src.as_ptr();
    let mut i = 0;
    // SAFETY (whole block): every load reads 32 bytes at `s + i` with `i + 32 <= len`,
    // every store writes 32 bytes at `dst + i` under the same bound, which the caller
    // guarantees is writable; unaligned loads and stores are used throughout.
    unsafe {
        while i + 128 <= len {
            let a = _mm256_loadu_si256(s.add(i) as *const __m256i);
            let b = _mm256_loadu_si256(s.add(i + 32) as *const __m256i);
            let c = _mm256_loadu_si256(s.add(i + 64) as *const __m256i);
            let d = _mm256_loadu_si256(s.add(i + 96) as *const __m256i);
            _mm256_storeu_si256(dst.add(i) as *mut __m256i, a);
            _mm256_storeu_si256(dst.add(i + 32) as *mut __m256i, b);
            _mm256_storeu_si256(dst.add(i + 64) as *mut __m256i, c);
            _mm256_storeu_si256(dst.add(i + 96) as *mut __m256i, d);
            i += 128;
        }
        while i + 32 <= len {
            let a = _mm256_loadu_si256(s.add(i) as *const __m256i);
            _mm256_storeu_si256(dst.add(i) as *mut __m256i, a);
            i += 32;
        }
        if i < len {
            // The last 32 bytes, overlapping what was already copied (len >= 32).
            let last = len - 32;
            let a = _mm256_loadu_si256(s.add(last) as *const __m256i);
            _mm256_storeu_si256(dst.add(last) as *mut __m256i, a);
        }
    }
}

/// # Safety
/// `dst` writable for `src.len()` bytes, not overlapping `src`; `src.len() >= 16`.
#[cfg(target_arch = "x86_64")]
unsafe fn copy_sse2(dst: *mut u8, src: &[u8]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_storeu_si128};
    let len = src.len();
    let s = src.as_ptr();
    let mut i = 0;
    // SAFETY (whole block): as in `copy_avx2`, with 16-byte accesses bounded by `len`.
    unsafe {
        while i + 64 <= len {
            let a = _mm_loadu_si128(s.add(i) as *const __m128i);
            let b = _mm_loadu_si128(s.add(i + 16) as *const __m128i);
            let c = _mm_loadu_si128(s.add(i + 32) as *const __m128i);
            let d = _mm_loadu_si128(s.add(i + 48) as *const __m128i);
            _mm_storeu_si128(dst.add(i) as *mut __m128i, a);
            _mm_storeu_si128(dst.add(i + 16) as *mut __m128i, b);
            _mm_storeu_si128(dst.add(i + 32) as *mut __m128i, c);
            _mm_storeu_si128(dst.add(i + 48) as *mut __m128i, d);
            i += 64;
        }
        while i + 16 <= len {
            let a = _mm_loadu_si128(s.add(i) as *const __m128i);
            _mm_storeu_si128(dst.add(i) as *mut __m128i, a);
            i += 16;
        }
        if i < len {
            let last = len - 16;
            let a = _mm_loadu_si128(s.add(last) as *const __m128i);
            _mm_storeu_si128(dst.add(last) as *mut __m128i, a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn append_matches_extend_for_every_length_and_destination_offset() {
        for len in (0..=2100).chain([4096, 65_536, 65_537]) {
            let src = pattern(len);
            for prefix in [0usize, 1, 10, 31] {
                let mut out = vec![0xAA; prefix];
                append(&mut out, &src);
                assert_eq!(out.len(), prefix + len);
                assert!(out[..prefix].iter().all(|&b| b == 0xAA));
                assert_eq!(&out[prefix..], &src[..], "len {len} prefix {prefix}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn both_vector_loops_copy_exactly() {
        for len in [32usize, 33, 63, 64, 127, 128, 129, 1000, 4099] {
            let src = pattern(len);
            let mut dst = vec![0u8; len + 1];
            // SAFETY: `dst` has room for `len` bytes and does not overlap `src`.
            unsafe { copy_sse2(dst.as_mut_ptr(), &src) };
            assert_eq!(&dst[..len], &src[..]);
            assert_eq!(dst[len], 0, "wrote past the end");
            if is_x86_feature_detected!("avx2") {
                let mut dst = vec![0u8; len + 1];
                // SAFETY: AVX2 detected; room for `len` bytes; no overlap.
                unsafe { copy_avx2(dst.as_mut_ptr(), &src) };
                assert_eq!(&dst[..len], &src[..]);
                assert_eq!(dst[len], 0, "wrote past the end");
            }
        }
    }
}
