//! UTF-8 validation: ringws' incremental `Utf8Validator` (feed + finish, whole and in
//! 4 KiB chunks), `simdutf8::basic::from_utf8` and `std::str::from_utf8`, on ASCII and
//! on mixed scripts (Latin-1 accents, Cyrillic, CJK, emoji).
//!
//! `cargo bench --bench utf8` (short run: append `-- --warm-up-time 1 --measurement-time 2`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringws::proto::Utf8Validator;

const SIZES: [usize; 5] = [16, 125, 1 << 10, 64 << 10, 1 << 20];

const ASCII: &str = "The quick brown fox jumps over the lazy dog; {\"id\":42,\"ok\":true} ";
const MIXED: &str = "Ça a été déjà vu à Zürich, señor. Привет, мир! Съешь же ещё этих булок. \
你好，世界。日本語のテキスト。한국어 😀🎉🚀👍🏽 ";

/// `seed` repeated to at most `n` bytes, cut at a char boundary.
fn text(seed: &str, n: usize) -> String {
    let mut s = String::with_capacity(n + seed.len());
    while s.len() < n {
        s.push_str(seed);
    }
    let mut cut = n;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

fn bench_utf8(c: &mut Criterion) {
    for (kind, seed) in [("ascii", ASCII), ("mixed", MIXED)] {
        let mut g = c.benchmark_group(format!("utf8/{kind}"));
        for &size in &SIZES {
            let s = text(seed, size);
            let data = s.as_bytes();
            g.throughput(Throughput::Bytes(data.len() as u64));
            g.bench_with_input(BenchmarkId::new("validator", size), data, |b, d| {
                let mut v = Utf8Validator::new();
                b.iter(|| {
                    v.feed(black_box(d)).unwrap();
                    v.finish().unwrap();
                })
            });
            if size > 4096 {
                g.bench_with_input(
                    BenchmarkId::new("validator_4k_chunks", size),
                    data,
                    |b, d| {
                        let mut v = Utf8Validator::new();
                        b.iter(|| {
                            for chunk in black_box(d).chunks(4096) {
                                v.feed(chunk).unwrap();
                            }
                            v.finish().unwrap();
                        })
                    },
                );
            }
            g.bench_with_input(BenchmarkId::new("simdutf8_basic", size), data, |b, d| {
                b.iter(|| simdutf8::basic::from_utf8(black_box(d)).is_ok())
            });
            g.bench_with_input(BenchmarkId::new("std", size), data, |b, d| {
                b.iter(|| std::str::from_utf8(black_box(d)).is_ok())
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench_utf8);
criterion_main!(benches);
