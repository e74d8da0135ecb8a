//! permessage-deflate (RFC 7692) errors against raw clients: RSV bits where they do
//! not belong, deflate bombs (one frame, many, a message that never ends) and the
//! memory they hold, the inflated size cap, invalid UTF-8 after inflating and corrupt
//! compressed data. The backend follows RINGWS_BACKEND, so CI runs these on io_uring
//! and on epoll.

mod common;

use std::time::{Duration, Instant};

use common::deflate::{
    connect, connect_to_mode, expect_close, send_compressed, send_deflated,
    send_deflated_fragmented, send_frame_rsv, server, HELLO, HELLO_AGAIN, MAX_MESSAGE, RSV1,
};
use common::{raw_upgrade, send_frame, FrameReader, Received};
use ringws::proto::{MessageDeflater, OpCode};
use ringws::RunningServer;

#[test]
fn a_back_reference_without_client_context_takeover_is_1007() {
    let server = server();
    let answer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    let mut ws = connect(&server, "/nct0", &["permessage-deflate"], Some(answer));
    let mut reader = FrameReader::with_deflate(15, true);
    send_deflated(&mut ws, OpCode::Text, &HELLO);
    assert_eq!(reader.next(&mut ws), Received::Text("Hello".into()));
    send_deflated(&mut ws, OpCode::Text, &HELLO);
    assert_eq!(reader.next(&mut ws), Received::Text("Hello".into()));
    // The previous message is forgotten: a reference into it is invalid data.
    send_deflated(&mut ws, OpCode::Text, &HELLO_AGAIN);
    expect_close(&mut ws, &mut reader, 1007);
}

#[test]
fn rsv1_on_a_continuation_frame_is_1002() {
    let server = server();
    let answer = Some("permessage-deflate");
    // After an uncompressed first frame.
    let mut ws = connect(&server, "/ct0", &["permessage-deflate"], answer);
    let mut reader = FrameReader::with_deflate(15, false);
    send_frame_rsv(&mut ws, 0, OpCode::Text as u8, false, b"abc");
    send_frame_rsv(&mut ws, RSV1, OpCode::Continuation as u8, true, &HELLO);
    expect_close(&mut ws, &mut reader, 1002);
    // After a compressed first frame.
    let mut ws = connect(&server, "/ct0", &["permessage-deflate"], answer);
    let mut reader = FrameReader::with_deflate(15, false);
    send_frame_rsv(&mut ws, RSV1, OpCode::Text as u8, false, &HELLO[..3]);
    send_frame_rsv(&mut ws, RSV1, OpCode::Continuation as u8, true, &HELLO[3..]);
    expect_close(&mut ws, &mut reader, 1002);
}

#[test]
fn rsv1_on_a_control_frame_is_1002() {
    let server = server();
    for opcode in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
        let (mut ws, mut reader) = connect_to_mode(&server, "/ct0");
        let payload: &[u8] = if opcode == OpCode::Close {
            &[0x03, 0xe8]
        } else {
            b"x"
        };
        send_frame_rsv(&mut ws, RSV1, opcode as u8, true, payload);
        expect_close(&mut ws, &mut reader, 1002);
    }
}

#[test]
fn rsv2_and_rsv3_are_1002_even_with_deflate_agreed() {
    let server = server();
    for rsv in [0b010, 0b001, 0b110, 0b111] {
        let (mut ws, mut reader) = connect_to_mode(&server, "/ct0");
        send_frame_rsv(&mut ws, rsv, OpCode::Text as u8, true, &HELLO);
        expect_close(&mut ws, &mut reader, 1002);
    }
}

/// 16 MiB of zeros compressed (about 16 KiB): 1 MiB compressed once, then repeated
/// (each copy is a complete flushed run of blocks without references before it).
fn bomb() -> Vec<u8> {
    let mut mib = Vec::new();
    MessageDeflater::new(15, 9, true).compress(&vec![0u8; 1 << 20], &mut mib);
    let mut bomb = Vec::new();
    for _ in 0..15 {
        bomb.extend_from_slice(&mib);
        bomb.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    }
    bomb.extend_from_slice(&mib);
    // It is what it says: 16 MiB once inflated.
    let mut plain = Vec::new();
    ringws::proto::MessageInflater::new(15, true)
        .decompress(&bomb, true, usize::MAX / 2, &mut plain)
        .expect("the bomb inflates");
    assert!(plain.len() == 16 << 20 && plain.iter().all(|&b| b == 0));
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    bomb
}

#[test]
fn a_deflate_bomb_is_1009_in_one_frame_or_many() {
    let server = server();
    let bomb = bomb();
    for (opcode, pieces) in [
        (OpCode::Binary, 1),
        (OpCode::Binary, 6),
        (OpCode::Text, 1),
        (OpCode::Text, 3),
    ] {
        for path in ["/ct0", "/nct0"] {
            let (mut ws, mut reader) = connect_to_mode(&server, path);
            send_deflated_fragmented(&mut ws, opcode, &bomb, pieces);
            let reason = expect_close(&mut ws, &mut reader, 1009);
            assert_eq!(reason, "message too big after inflating");
        }
    }
    eprintln!("memory held after the bombs: {}", server.memory_held());
    // The server still serves: a new connection echoes.
    let mut ws = raw_upgrade(server.local_addr(), "/ct0");
    let mut reader = FrameReader::default();
    send_frame(&mut ws, OpCode::Text, true, b"still here");
    assert_eq!(reader.next(&mut ws), Received::Text("still here".into()));
}

#[test]
fn a_bomb_is_refused_before_its_message_ends() {
    let server = server();
    let bomb = bomb();
    // The first frame alone inflates past the cap; the message never ends.
    for path in ["/ct0", "/nct0"] {
        let (mut ws, mut reader) = connect_to_mode(&server, path);
        send_frame_rsv(&mut ws, RSV1, OpCode::Binary as u8, false, &bomb);
        let reason = expect_close(&mut ws, &mut reader, 1009);
        assert_eq!(reason, "message too big after inflating");
    }
}

/// Polls `server.memory_held()` until `ok` holds (at most 5 s); returns the last figure.
fn memory_held_until(server: &RunningServer, ok: impl Fn(usize) -> bool) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let held = server.memory_held();
        if ok(held) || Instant::now() > deadline {
            return held;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_partly_inflated_message_is_counted_in_memory_held() {
    let server = server();
    let (mut half, mut mib) = (Vec::new(), Vec::new());
    MessageDeflater::new(15, 9, true).compress(&vec![0u8; 512 << 10], &mut half);
    MessageDeflater::new(15, 9, true).compress(&vec![0u8; 1 << 20], &mut mib);
    for path in ["/ct0", "/nct0"] {
        let (mut ws, mut reader) = connect_to_mode(&server, path);
        // 512 KiB inflated and held, waiting for the rest of the message.
        let mut first = half.clone();
        first.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
        send_frame_rsv(&mut ws, RSV1, OpCode::Binary as u8, false, &first);
        let held = memory_held_until(&server, |held| held >= 512 << 10);
        assert!(held >= 512 << 10, "{path}: {held} bytes held");
        // The rest goes past the cap: 1009, and the bytes are let go.
        send_frame_rsv(&mut ws, 0, OpCode::Continuation as u8, true, &mib);
        expect_close(&mut ws, &mut reader, 1009);
        let held = memory_held_until(&server, |held| held < 64 << 10);
        assert!(held < 64 << 10, "{path}: {held} bytes still held");
    }
}

#[test]
fn the_inflated_size_cap_is_max_message_size_exactly() {
    let server = server();
    let (mut ws, mut reader) = connect_to_mode(&server, "/ct");
    let mut tx = MessageDeflater::new(15, 1, false);
    let mut message = vec![b'a'; MAX_MESSAGE];
    send_compressed(&mut ws, &mut tx, OpCode::Binary, &message);
    assert_eq!(reader.next(&mut ws), Received::Binary(message.clone()));
    message.push(b'!');
    send_compressed(&mut ws, &mut tx, OpCode::Binary, &message);
    expect_close(&mut ws, &mut reader, 1009);
}

#[test]
fn invalid_utf8_after_inflating_is_1007() {
    let server = server();
    let valid = "héllo wörld ✓ ".repeat(20);
    let join = |parts: &[&[u8]]| parts.concat();
    let bad = [
        join(&[valid.as_bytes(), b"abc\xff\xfedef", valid.as_bytes()]),
        join(&[valid.as_bytes(), b"ends mid-character \xc3"]),
        join(&[b"\xed\xa0\x80", valid.as_bytes()]),
    ];
    for bad in &bad {
        for pieces in [1, 4] {
            let (mut ws, mut reader) = connect_to_mode(&server, "/ct0");
            let mut tx = MessageDeflater::new(15, 1, false);
            // Valid multi-byte text first, then the invalid message.
            send_compressed(&mut ws, &mut tx, OpCode::Text, valid.as_bytes());
            assert_eq!(reader.next(&mut ws), Received::Text(valid.clone()));
            let mut body = Vec::new();
            tx.compress(bad, &mut body);
            send_deflated_fragmented(&mut ws, OpCode::Text, &body, pieces);
            expect_close(&mut ws, &mut reader, 1007);
        }
    }
    // The same bytes as binary are fine.
    let (mut ws, mut reader) = connect_to_mode(&server, "/ct0");
    let mut tx = MessageDeflater::new(15, 1, false);
    send_compressed(&mut ws, &mut tx, OpCode::Binary, b"abc\xff\xfedef");
    assert_eq!(
        reader.next(&mut ws),
        Received::Binary(b"abc\xff\xfedef".to_vec())
    );
}

#[test]
fn corrupt_compressed_data_is_1007() {
    let server = server();
    for (path, corrupt) in [
        // Block type 3 (reserved).
        ("/ct0", &[0xff; 8][..]),
        ("/nct0", &[0xff; 8]),
        // A back-reference with nothing before it.
        ("/ct0", &HELLO_AGAIN),
        // A stored block whose length check fails.
        ("/ct0", &[0x00, 0x05, 0x00, 0x00, 0x00, b'h']),
    ] {
        let (mut ws, mut reader) = connect_to_mode(&server, path);
        send_deflated(&mut ws, OpCode::Binary, corrupt);
        let reason = expect_close(&mut ws, &mut reader, 1007);
        assert_eq!(reason, "invalid compressed data", "{corrupt:?}");
    }
}
