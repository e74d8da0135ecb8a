//! A static file's body streamed through the shard with no network: the shard is
//! driven by hand (`ShardCore` calls) and the file reads are done on the test's thread,
//! so chunking, pipelining, failed and short reads, late answers and the stall cut are
//! checked deterministically. The connection side is `connection/static_file.rs`.

use std::sync::Arc;
use std::time::Instant;

use crate::route::{PrefixRoute, Routes};
use crate::runtime::core::{FileRead, ShardCore, Token};
use crate::runtime::files::StaticDir;
use crate::runtime::shard::Shard;

use crate::connection::FILE_CHUNK;

const LEN: usize = 2 * FILE_CHUNK + 1000;

/// A shard serving a temp dir with `f.bin` (`LEN` patterned bytes) under `/`.
fn shard(name: &str) -> (Shard, Vec<u8>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("ringws-sf-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let contents: Vec<u8> = (0..LEN).map(|i| (i % 249) as u8).collect();
    std::fs::write(dir.join("f.bin"), &contents).expect("write");
    let mut routes = Routes::default();
    let static_dir = StaticDir::new(&dir).expect("static dir");
    routes.insert_prefix("/", PrefixRoute::Static(Box::new(static_dir)));
    let shard = Shard::standalone(Arc::new(routes), Arc::new(crate::server::default_config()));
    (shard, contents, dir)
}

fn reads(shard: &mut Shard) -> Vec<FileRead> {
    let mut out = Vec::new();
    shard.take_file_reads(&mut out);
    out
}

/// Runs the backend's half until nothing moves: reads done, sends all written.
/// Returns what was sent; checks one read at a time and at most two chunks queued.
fn drive(shard: &mut Shard, token: Token) -> Vec<u8> {
    let mut sent = Vec::new();
    loop {
        let mut moved = false;
        let pending = reads(shard);
        assert!(pending.len() <= 1, "{} reads at once", pending.len());
        for read in pending {
            assert!(read.len <= FILE_CHUNK);
            let result = crate::runtime::core::read_blocking(&read);
            shard.on_file_read(read.token, result, Instant::now());
            moved = true;
        }
        if let Some(buf) = shard.take_send(token) {
            assert!(
                buf.len() <= 2 * FILE_CHUNK + 1024,
                "{} bytes queued",
                buf.len()
            );
            sent.extend_from_slice(&buf);
            let n = buf.len();
            shard.on_sent(token, buf, Ok(n));
            moved = true;
        }
        if !moved {
            return sent;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn a_body_streams_in_chunks_and_pipelined_requests_follow_it() {
    let (mut s, contents, dir) = shard("stream");
    let now = Instant::now();
    let t = s.on_accept(0, None, now);
    let mut input = b"GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n\
        GET /f.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=5-9\r\n\r\n"
        .to_vec();
    s.on_recv(t, &mut input, now);
    assert!(!s.wants_read(t), "reading goes on while the body streams");
    let sent = drive(&mut s, t);
    let body_at = find(&sent, b"\r\n\r\n").expect("a head") + 4;
    let head = String::from_utf8_lossy(&sent[..body_at]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {LEN}\r\n")),
        "{head}"
    );
    assert!(sent[body_at..].starts_with(&contents), "the body differs");
    let rest = &sent[body_at + LEN..];
    let second = find(rest, b"\r\n\r\n").expect("the second head") + 4;
    assert!(rest.starts_with(b"HTTP/1.1 206 Partial Content\r\n"));
    assert_eq!(&rest[second..], &contents[5..10]);
    assert!(s.wants_read(t) && !s.wants_close(t));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_failed_or_short_read_cuts_the_body_and_a_closed_connection_drops_its_read() {
    let (mut s, _, dir) = shard("cut");
    let now = Instant::now();
    let get = || b"GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    for result in [Err(std::io::Error::other("disk on fire")), Ok(Vec::new())] {
        let t = s.on_accept(0, None, now);
        s.on_recv(t, &mut get(), now);
        let read = reads(&mut s).pop().expect("a read");
        assert!(!s.wants_close(t));
        s.on_file_read(t, result, now);
        assert!(s.wants_close(t), "the body cannot be completed");
        assert!(reads(&mut s).is_empty());
        drop(read);
    }
    // The peer goes away while a read is out: its answer finds nothing.
    let t = s.on_accept(0, None, now);
    s.on_recv(t, &mut get(), now);
    let read = reads(&mut s).pop().expect("a read");
    s.on_closed(t);
    s.on_file_read(t, crate::runtime::core::read_blocking(&read), now);
    assert!(reads(&mut s).is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_peer_that_stops_sending_still_gets_the_body_and_a_failed_send_ends_it() {
    let (mut s, _, dir) = shard("eof");
    let now = Instant::now();
    let t = s.on_accept(0, None, now);
    s.on_recv(
        t,
        &mut b"GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        now,
    );
    s.on_eof(t, now);
    assert!(!s.wants_close(t), "EOF cut the body");
    let sent = drive(&mut s, t);
    assert!(sent.len() > LEN);
    assert!(s.wants_close(t), "no close after the body and the EOF");
    // A send that fails drops the rest.
    let t = s.on_accept(0, None, now);
    s.on_recv(
        t,
        &mut b"GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        now,
    );
    let buf = s.take_send(t).expect("the head");
    s.on_sent(t, buf, Err(std::io::Error::other("reset")));
    assert!(s.wants_close(t));
    if let Some(read) = reads(&mut s).pop() {
        s.on_file_read(t, crate::runtime::core::read_blocking(&read), now);
    }
    assert!(
        reads(&mut s).is_empty(),
        "reading on after the socket failed"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_peer_that_takes_nothing_for_the_handshake_timeout_has_the_body_cut() {
    let (mut s, _, dir) = shard("stall");
    let now = Instant::now();
    let t = s.on_accept(0, None, now);
    s.on_recv(
        t,
        &mut b"GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        now,
    );
    let read = reads(&mut s).pop().expect("a read");
    s.on_file_read(t, crate::runtime::core::read_blocking(&read), now);
    let timeout = crate::server::default_config().handshake_timeout;
    s.on_timer(now + timeout / 2);
    assert!(!s.wants_close(t), "cut while within the timeout");
    s.on_timer(now + timeout + std::time::Duration::from_millis(1));
    assert!(s.wants_close(t), "a stalled transfer was not cut");
    let _ = std::fs::remove_dir_all(dir);
}
