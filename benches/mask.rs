//! Payload masking (RFC 6455 section 5.3): every implementation of
//! `ringws::proto::mask::available_impls()`, the `apply_mask` dispatcher, a
//! tungstenite-style `u32` peer written here, and `copy_from_slice` (memcpy) of the
//! same size as the ceiling.
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

criterion_group!(benches, bench_mask);
criterion_main!(benches);
