//! The permessage-deflate codec: compress and decompress a 125 B JSON message and a
//! 16 KiB text at window bits 15, with context takeover at levels 1 and 6 and without it
//! at level 6 (the stream reset per message). Decompression replays a sequence of
//! messages compressed ahead, cycling, so context takeover sees a realistic window.
//! Prints once the bytes a live deflate / inflate stream holds at wb 9, 12 and 15.
//!
//! `cargo bench --bench deflate` (short run: append `-- --warm-up-time 1 --measurement-time 1`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringws::proto::{MessageDeflater, MessageInflater};

/// Distinct messages compressed ahead for the decompression runs.
const RUN: usize = 256;

/// A ~125-byte JSON message, varying with `i`.
fn json(i: usize) -> Vec<u8> {
    let mut m = format!(
        r#"{{"type":"trade","seq":{i},"symbol":"ETH-USD","price":{}.{:02},"qty":{},"side":"buy"}}"#,
        1800 + i % 97,
        i % 100,
        1 + i % 13
    )
    .into_bytes();
    m.resize(125, b' ');
    m
}

/// 16 KiB of English-like text, varying with `i`.
fn text(i: usize) -> Vec<u8> {
    let words = [
        "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "runs", "away",
        "from", "a", "sleepy", "cat", "under", "warm", "sun",
    ];
    let mut m = Vec::with_capacity(16 << 10);
    let mut k = i as u64 * 7 + 1;
    while m.len() < 16 << 10 {
        k = k
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        m.extend_from_slice(words[(k >> 33) as usize % words.len()].as_bytes());
        m.push(b' ');
    }
    m.truncate(16 << 10);
    m
}

/// (name, level, no_context_takeover)
const MODES: [(&str, u32, bool); 3] = [
    ("takeover-l1", 1, false),
    ("takeover-l6", 6, false),
    ("reset-l6", 6, true),
];

fn bench_codec(c: &mut Criterion) {
    print_held_bytes();
    for (kind, make) in [("json125", json as fn(usize) -> Vec<u8>), ("text16k", text)] {
        let msgs: Vec<Vec<u8>> = (0..RUN).map(make).collect();
        let mut group = c.benchmark_group(format!("deflate/{kind}"));
        group.throughput(Throughput::Bytes(msgs[0].len() as u64));
        for (mode, level, reset) in MODES {
            let mut tx = MessageDeflater::new(15, level, reset);
            let mut out = Vec::with_capacity(32 << 10);
            let mut i = 0;
            group.bench_function(BenchmarkId::new("compress", mode), |b| {
                b.iter(|| {
                    out.clear();
                    tx.compress(black_box(&msgs[i % RUN]), &mut out);
                    i += 1;
                    out.len()
                })
            });
            // Compressed ahead: the same stream's output, replayed in order by a fresh
            // inflater each time round the run.
            let mut tx = MessageDeflater::new(15, level, reset);
            let wires: Vec<Vec<u8>> = msgs
                .iter()
                .map(|m| {
                    let mut w = Vec::new();
                    tx.compress(m, &mut w);
                    w
                })
                .collect();
            let ratio: usize = wires.iter().map(Vec::len).sum::<usize>() * 1000
                / msgs.iter().map(Vec::len).sum::<usize>();
            eprintln!(
                "{kind} {mode}: compressed to {}.{}%",
                ratio / 10,
                ratio % 10
            );
            let mut rx = MessageInflater::new(15, reset);
            let mut plain = Vec::with_capacity(32 << 10);
            let mut i = 0;
            group.bench_function(BenchmarkId::new("decompress", mode), |b| {
                b.iter(|| {
                    if i % RUN == 0 {
                        rx = MessageInflater::new(15, reset);
                    }
                    plain.clear();
                    rx.decompress(black_box(&wires[i % RUN]), true, 1 << 20, &mut plain)
                        .unwrap();
                    i += 1;
                    plain.len()
                })
            });
        }
        group.finish();
    }
}

fn print_held_bytes() {
    for wb in [9u8, 12, 15] {
        let mut tx = MessageDeflater::new(wb, 6, false);
        let mut rx = MessageInflater::new(wb, false);
        let mut wire = Vec::new();
        tx.compress(&json(0), &mut wire);
        rx.decompress(&wire, true, 1 << 20, &mut Vec::new())
            .unwrap();
        let live = (tx.held_bytes(), rx.held_bytes());
        tx.hibernate();
        rx.hibernate();
        eprintln!(
            "held bytes at wb {wb}: live deflate {} / inflate {} (estimates, incl. history); \
             hibernated {} / {}",
            live.0,
            live.1,
            tx.held_bytes(),
            rx.held_bytes()
        );
    }
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
