//! Payload masking (RFC 6455 section 5.3): every implementation of
//! `ringws::proto::mask::available_impls()`, the `apply_mask` dispatcher, a
//! tungstenite-style `u32` peer written here, and `copy_from_slice` (memcpy) of the
//! same size as the ceiling. `apply_mask` is also called directly (inlinable), beside
//! `dispatch` (the same function through `available_impls`' function pointer).
//! `memcpy_page_delta` shows how `copy_from_slice` depends on the destination's
//! offset from the source within a 4 KiB page.
//!
//! `cargo bench --bench mask` (short run: append `-- --warm-up-time 1 --measurement-time 2`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringws::proto::apply_mask;
use ringws::proto::mask::available_impls;

const SIZES: [usize; 5] = [16, 125, 1 << 10, 64 << 10, 1 << 20];
const KEY: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// The classic peer implementation (as in tungstenite's `apply_mask_fast32`): mask the
/// unaligned head bytewise, xor aligned `u32` words with the key rotated to match,
/// then the tail bytewise. Written here, not taken from tungstenite.
fn peer_u32(buf: &mut [u8], key: [u8; 4]) {
    // SAFETY: every bit pattern is a valid `u32` and a valid `u8`, so viewing the
    // aligned middle of a byte slice as `u32` words is sound.
    let (head, words, tail) = unsafe { buf.align_to_mut::<u32>() };
    for (i, b) in head.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
    let shift = head.len() & 3;
    let k = u32::from_ne_bytes(key);
    let k = if shift == 0 {
        k
    } else if cfg!(target_endian = "big") {
        k.rotate_left(8 * shift as u32)
    } else {
        k.rotate_right(8 * shift as u32)
    };
    for w in words.iter_mut() {
        *w ^= k;
    }
    let kb = k.to_ne_bytes();
    for (i, b) in tail.iter_mut().enumerate() {
        *b ^= kb[i & 3];
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
        .collect()
}

fn bench_mask(c: &mut Criterion) {
    // Sanity: the peer agrees with the reference implementation, at every alignment.
    {
        let src = pattern(300);
        for start in 0..4 {
            let mut want = src.clone();
            ringws::proto::mask::apply_mask_bytewise(&mut want[start..], KEY, 0);
            let mut got = src.clone();
            peer_u32(&mut got[start..], KEY);
            assert_eq!(got, want, "peer_u32 at start {start}");
        }
    }

    let impls = available_impls();
    let mut g = c.benchmark_group("mask");
    for &size in &SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let mut buf = pattern(size);
        for &(name, f) in &impls {
            if name == "bytewise" && size > 64 << 10 {
                continue;
            }
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                b.iter(|| black_box(f(black_box(&mut buf[..]), black_box(KEY), 0)))
            });
        }
        g.bench_with_input(BenchmarkId::new("apply_mask", size), &size, |b, _| {
            b.iter(|| black_box(apply_mask(black_box(&mut buf[..]), black_box(KEY), 0)))
        });
        g.bench_with_input(BenchmarkId::new("peer_u32", size), &size, |b, _| {
            b.iter(|| peer_u32(black_box(&mut buf[..]), black_box(KEY)))
        });
        let src = pattern(size);
        g.bench_with_input(BenchmarkId::new("memcpy", size), &size, |b, _| {
            b.iter(|| black_box(&mut buf[..]).copy_from_slice(black_box(&src[..])))
        });
    }
    g.finish();
}

/// `copy_from_slice` where the destination sits `delta` bytes past the source's
/// position within a 4 KiB page (as in `encode_frame`, where the payload lands after
/// a 2..14-byte header). On some CPUs (seen on AMD Zen, family 25, glibc 2.36: `rep
/// movsb`) a small non-zero `delta` makes large copies an order of magnitude slower.
fn bench_memcpy_alias(c: &mut Criterion) {
    let mut g = c.benchmark_group("memcpy_page_delta");
    for &size in &[64usize << 10, 256 << 10] {
        g.throughput(Throughput::Bytes(size as u64));
        // One arena: the source at a page boundary, the destination `delta` bytes past
        // the next page boundary after the source's end.
        let mut arena = vec![0u8; 2 * size + 3 * 4096];
        let base = arena.as_ptr() as usize;
        let src_at = (4096 - base % 4096) % 4096;
        let dst_page = src_at + size.next_multiple_of(4096);
        for delta in [0usize, 4, 10, 64] {
            g.bench_with_input(
                BenchmarkId::new(format!("delta_{delta}"), size),
                &size,
                |b, &size| {
                    b.iter(|| {
                        let (src, dst) = arena.split_at_mut(dst_page);
                        black_box(&mut dst[delta..delta + size])
                            .copy_from_slice(black_box(&src[src_at..src_at + size]))
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench_mask, bench_memcpy_alias);
criterion_main!(benches);
