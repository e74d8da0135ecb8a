//! The frame codec: server-role decode of masked frames fed whole (unmask + UTF-8 for
//! text, zero copy), a 64 KiB message arriving in 4 KiB reads (assembly path),
//! server-role encode (unmasked) into a reused `Vec`, and client-role encode (masked).
//!
//! `cargo bench --bench frame` (short run: append `-- --warm-up-time 1 --measurement-time 2`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ringws::proto::{encode_frame, Decoder, Event, Limits, OpCode, Role};

const SIZES: [usize; 5] = [16, 125, 1 << 10, 64 << 10, 1 << 20];
const KEY: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// ASCII text payload of `n` bytes (valid UTF-8, so the text path validates it all).
fn payload(n: usize) -> Vec<u8> {
    b"The quick brown fox jumps over the lazy dog. "
        .iter()
        .copied()
        .cycle()
        .take(n)
        .collect()
}

fn batch(size: usize) -> BatchSize {
    if size >= 64 << 10 {
        BatchSize::LargeInput
    } else {
        BatchSize::SmallInput
    }
}

/// Feeds `wire` to `dec` in `read`-byte pieces, as successive socket reads would
/// arrive; returns the number of events.
fn feed_reads(dec: &mut Decoder, wire: &mut [u8], read: usize) -> usize {
    let mut events = 0;
    for chunk in wire.chunks_mut(read) {
        let mut pos = 0;
        while pos < chunk.len() {
            let (n, ev) = dec.decode(&mut chunk[pos..]).unwrap();
            pos += n;
            let got = ev.is_some();
            black_box(ev);
            if got {
                events += 1;
            } else if n == 0 {
                break;
            }
        }
    }
    events
}

fn bench_decode(c: &mut Criterion) {
    for (name, op) in [("binary", OpCode::Binary), ("text", OpCode::Text)] {
        let mut g = c.benchmark_group(format!("decode/{name}"));
        for &size in &SIZES {
            let mut wire = Vec::new();
            encode_frame(&mut wire, op, true, &payload(size), Some(KEY));
            // Sanity check once: one whole event of the right length.
            {
                let mut dec = Decoder::new(Role::Server, Limits::default());
                let mut w = wire.clone();
                let (n, ev) = dec.decode(&mut w).unwrap();
                assert_eq!(n, wire.len());
                match ev {
                    Some(Event::Binary(p)) => assert_eq!(p.len(), size),
                    Some(Event::Text(t)) => assert_eq!(t.len(), size),
                    other => panic!("{other:?}"),
                }
            }
            g.throughput(Throughput::Bytes(size as u64));
            let mut dec = Decoder::new(Role::Server, Limits::default());
            // Decoding unmasks in place, so every iteration gets a fresh masked copy
            // (made outside the timed part).
            g.bench_with_input(BenchmarkId::new("whole", size), &size, |b, &size| {
                b.iter_batched_ref(
                    || wire.clone(),
                    |w| {
                        let (n, ev) = dec.decode(w).unwrap();
                        black_box((n, ev));
                    },
                    batch(size),
                )
            });
        }
        // One 64 KiB message arriving in 4 KiB reads: the assembly path (unmask +
        // copy into the decoder's buffer, UTF-8 validated across chunks for text).
        let size = 64 << 10;
        let mut wire = Vec::new();
        encode_frame(&mut wire, op, true, &payload(size), Some(KEY));
        let mut dec = Decoder::new(Role::Server, Limits::default());
        assert_eq!(feed_reads(&mut dec, &mut wire.clone(), 4096), 1);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("reads_4k", size), |b| {
            b.iter_batched_ref(
                || wire.clone(),
                |w| black_box(feed_reads(&mut dec, w, 4096)),
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

fn bench_encode(c: &mut Criterion) {
    for (name, mask) in [("server", None), ("client", Some(KEY))] {
        let mut g = c.benchmark_group(format!("encode/{name}"));
        for &size in &SIZES {
            let data = payload(size);
            let mut out = Vec::with_capacity(size + 14);
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_with_input(BenchmarkId::new("binary", size), &data, |b, d| {
                b.iter(|| {
                    out.clear();
                    encode_frame(&mut out, OpCode::Binary, true, black_box(d), mask);
                    black_box(out.len())
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
