//! Malformed input over raw sockets: every bad request or frame gets a clear answer.

mod common;

use std::io::Write;

use common::{raw_connect, raw_upgrade, read_to_close, send_frame, FrameReader, Received};
use ringws::proto::OpCode;

#[test]
fn bad_handshakes_get_a_status_and_a_reason() {
    let server = common::echo_server();
    let addr = server.local_addr();
    let cases: [(&str, &str, &str); 6] = [
        ("GARBAGE\r\n\r\n", "400", "malformed request"),
        (
            "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "400",
            "Sec-WebSocket-Key",
        ),
        (
            "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 99\r\n\r\n",
            "426",
            "Sec-WebSocket-Version: 13, 8, 7",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "400",
            "GET",
        ),
        ("GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "404", "no route for /nowhere"),
        ("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", "426", "WebSocket"),
    ];
    for (request, status, needle) in cases {
        let mut stream = raw_connect(addr);
        stream.write_all(request.as_bytes()).expect("write");
        let response = read_to_close(&mut stream);
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?} got {response:?}"
        );
        assert!(response.contains(needle), "{request:?} got {response:?}");
    }
}

#[test]
fn oversized_request_head_gets_431() {
    let server = common::echo_server_with(|b| b.max_head_bytes(1024));
    let mut stream = raw_connect(server.local_addr());
    let mut request = String::from("GET /echo HTTP/1.1\r\n");
    for i in 0..100 {
        request.push_str(&format!("X-Filler-{i}: {}\r\n", "y".repeat(40)));
    }
    let _ = stream.write_all(request.as_bytes());
    let response = read_to_close(&mut stream);
    assert!(response.starts_with("HTTP/1.1 431 "), "{response}");
}

#[test]
fn unmasked_client_frame_closes_with_1002() {
    let server = common::echo_server();
    let mut stream = raw_upgrade(server.local_addr(), "/echo");
    stream.write_all(&[0x81, 0x02, b'h', b'i']).expect("write");
    let received = FrameReader::default().next(&mut stream);
    assert!(
        matches!(received, Received::Close(Some(1002), _)),
        "{received:?}"
    );
}

#[test]
fn invalid_utf8_closes_with_1007() {
    let server = common::echo_server();
    let mut stream = raw_upgrade(server.local_addr(), "/echo");
    send_frame(&mut stream, OpCode::Text, true, &[b'o', b'k', 0xff, 0xfe]);
    let received = FrameReader::default().next(&mut stream);
    assert!(
        matches!(received, Received::Close(Some(1007), _)),
        "{received:?}"
    );
}

#[test]
fn invalid_utf8_in_a_first_fragment_fails_fast() {
    let server = common::echo_server();
    let mut stream = raw_upgrade(server.local_addr(), "/echo");
    // 0xF4 0x90 can never start valid UTF-8: the server must not wait for the last fragment.
    send_frame(&mut stream, OpCode::Text, false, &[b'a', 0xf4, 0x90]);
    let received = FrameReader::default().next(&mut stream);
    assert!(
        matches!(received, Received::Close(Some(1007), _)),
        "{received:?}"
    );
}

#[test]
fn oversized_message_closes_with_1009_without_waiting_for_the_payload() {
    let server = common::echo_server_with(|b| b.max_message_size(1024 * 1024));
    let mut stream = raw_upgrade(server.local_addr(), "/echo");
    // A masked binary frame header claiming 1 GiB, and no payload: the answer must come
    // from the header alone (the server neither waits for nor allocates the claimed size).
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    stream.write_all(&header).expect("write");
    let received = FrameReader::default().next(&mut stream);
    assert!(
        matches!(received, Received::Close(Some(1009), _)),
        "{received:?}"
    );
}

#[test]
fn fragmented_message_over_the_limit_closes_with_1009() {
    let server = common::echo_server_with(|b| b.max_message_size(1000));
    let mut stream = raw_upgrade(server.local_addr(), "/echo");
    send_frame(&mut stream, OpCode::Binary, false, &[0; 600]);
    send_frame(&mut stream, OpCode::Continuation, true, &[0; 600]);
    let received = FrameReader::default().next(&mut stream);
    assert!(
        matches!(received, Received::Close(Some(1009), _)),
        "{received:?}"
    );
}

#[test]
fn reserved_opcode_and_rsv_bits_close_with_1002() {
    let server = common::echo_server();
    for first_byte in [0x83u8, 0xC1] {
        let mut stream = raw_upgrade(server.local_addr(), "/echo");
        stream
            .write_all(&[first_byte, 0x80, 0, 0, 0, 0])
            .expect("write");
        let received = FrameReader::default().next(&mut stream);
        assert!(
            matches!(received, Received::Close(Some(1002), _)),
            "{first_byte:#x}: {received:?}"
        );
    }
}

#[test]
fn fragments_with_an_interleaved_ping_assemble() {
    let server = common::echo_server();
    let mut stream = raw_upgrade(server.local_addr(), "/echo");
    send_frame(&mut stream, OpCode::Text, false, "frag".as_bytes());
    send_frame(&mut stream, OpCode::Ping, true, b"p1");
    send_frame(&mut stream, OpCode::Continuation, false, "men".as_bytes());
    send_frame(&mut stream, OpCode::Continuation, true, "ted ✓".as_bytes());
    let mut reader = FrameReader::default();
    assert_eq!(reader.next(&mut stream), Received::Pong(b"p1".to_vec()));
    assert_eq!(
        reader.next(&mut stream),
        Received::Text("fragmented ✓".to_owned())
    );
    send_frame(&mut stream, OpCode::Close, true, &[0x03, 0xe8]);
    assert_eq!(
        reader.next(&mut stream),
        Received::Close(Some(1000), String::new())
    );
    assert_eq!(reader.next(&mut stream), Received::Eof);
}

#[test]
fn frames_split_byte_by_byte_still_echo() {
    let server = common::echo_server();
    let mut stream = raw_upgrade(server.local_addr(), "/echo");
    let mut frame = Vec::new();
    ringws::proto::encode_frame(
        &mut frame,
        OpCode::Binary,
        true,
        &[7u8; 300],
        Some([9, 8, 7, 6]),
    );
    for byte in &frame {
        stream.write_all(std::slice::from_ref(byte)).expect("write");
    }
    assert_eq!(
        FrameReader::default().next(&mut stream),
        Received::Binary(vec![7u8; 300])
    );
}

#[test]
fn stalled_handshake_times_out_with_408() {
    let server =
        common::echo_server_with(|b| b.handshake_timeout(std::time::Duration::from_millis(200)));
    let mut stream = raw_connect(server.local_addr());
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let response = read_to_close(&mut stream);
    assert!(response.starts_with("HTTP/1.1 408 "), "{response}");
}
