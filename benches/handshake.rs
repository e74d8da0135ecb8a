//! The opening handshake: a real Chrome upgrade request through
//! `http::parse_request` + `handshake::validate_upgrade` + `handshake::write_accept`
//! into a reused `Vec` (time per handshake), the parse alone, and `accept_key` alone.
//!
//! `cargo bench --bench handshake` (short run: append `-- --warm-up-time 1 --measurement-time 2`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ringws::handshake::{accept_key, validate_upgrade, write_accept};
use ringws::http::{header_storage, parse_request, Parse};

/// What Chrome sends (header order and values as captured from Chrome 120 on Linux).
const CHROME: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: server.example.com:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

/// One full server-side handshake; returns the answer's length.
fn handshake(buf: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    let mut headers = header_storage();
    match parse_request(buf, &mut headers, 8192) {
        Ok(Parse::Complete { request, .. }) => {
            let upgrade = validate_upgrade(&request).expect("valid upgrade");
            write_accept(out, &upgrade, None, &[]);
        }
        other => panic!("unexpected parse: {other:?}"),
    }
    out.len()
}

fn bench_handshake(c: &mut Criterion) {
    let mut out = Vec::with_capacity(256);
    handshake(CHROME, &mut out);
    assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(out
        .windows(28)
        .any(|w| w == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));

    let mut g = c.benchmark_group("handshake");
    g.bench_function("chrome_full", |b| {
        b.iter(|| handshake(black_box(CHROME), &mut out))
    });
    g.bench_function("chrome_parse_only", |b| {
        b.iter(|| {
            let mut headers = header_storage();
            match parse_request(black_box(CHROME), &mut headers, 8192) {
                Ok(Parse::Complete { head_len, .. }) => head_len,
                _ => 0,
            }
        })
    });
    g.bench_function("accept_key", |b| {
        b.iter(|| accept_key(black_box(b"dGhlIHNhbXBsZSBub25jZQ==")))
    });
    g.finish();
}

criterion_group!(benches, bench_handshake);
criterion_main!(benches);
