//! Malformed input over raw sockets: every bad request or frame gets its exact answer
//! (status line and reason, or close code and reason) and then the connection ends.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{
    expect_eof_within, raw_connect, raw_upgrade, read_to_close, refusal, send_frame, FrameReader,
    Received,
};
use ringws::proto::OpCode;
use ringws::{Builder, RunningServer};

/// The servers here wait 30 s for a close reply: a failed connection must not wait for
/// one at all, so its socket has to end well within [`PROMPT`].
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);
const PROMPT: Duration = Duration::from_secs(5);

fn server_with(configure: impl FnOnce(Builder) -> Builder) -> RunningServer {
    common::echo_server_with(|b| configure(b.close_timeout(CLOSE_TIMEOUT)))
}

/// The server fails the connection: exactly this close frame, then the socket ends at
/// once (without waiting for the client's close reply).
#[track_caller]
fn expect_failure(stream: &mut TcpStream, code: u16, reason: &str) {
    stream.set_read_timeout(Some(PROMPT)).expect("timeout");
    let mut reader = FrameReader::default();
    assert_eq!(
        reader.next(stream),
        Received::Close(Some(code), reason.to_owned())
    );
    expect_eof_within(stream, PROMPT);
}

#[test]
fn bad_handshakes_get_a_status_and_a_reason() {
    let server = server_with(|b| b);
    let addr = server.local_addr();
    const VERSIONS: &str = "Sec-WebSocket-Version: 13, 8, 7";
    let cases: [(&str, String); 6] = [
        (
            "GARBAGE\r\n\r\n",
            refusal("400 Bad Request", &[], "malformed request: invalid token"),
        ),
        (
            "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
            refusal("400 Bad Request", &[], "missing or invalid Sec-WebSocket-Key"),
        ),
        (
            "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 99\r\n\r\n",
            refusal("426 Upgrade Required", &[VERSIONS], "unsupported Sec-WebSocket-Version"),
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            refusal("400 Bad Request", &[], "websocket upgrade requires GET"),
        ),
        (
            "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            refusal("404 Not Found", &[], "no route for /nowhere"),
        ),
        (
            "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n",
            refusal(
                "426 Upgrade Required",
                &[VERSIONS],
                "this path serves WebSocket connections only",
            ),
        ),
    ];
    for (request, expected) in cases {
        let mut stream = raw_connect(addr);
        stream.write_all(request.as_bytes()).expect("write");
        // read_to_close fails on a read timeout: the answer must end the connection.
        assert_eq!(read_to_close(&mut stream), expected, "{request:?}");
    }
}

#[test]
fn oversized_request_head_gets_431() {
    let server = server_with(|b| b.max_head_bytes(1024));
    let mut stream = raw_connect(server.local_addr());
    let mut request = String::from("GET /echo HTTP/1.1\r\n");
    for i in 0..100 {
        request.push_str(&format!("X-Filler-{i}: {}\r\n", "y".repeat(40)));
    }
    // The server may answer and close before it has read all of it.
    let _ = stream.write_all(request.as_bytes());
    assert_eq!(
        read_to_close(&mut stream),
        refusal(
            "431 Request Header Fields Too Large",
            &[],
            "request header too large"
        )
    );
}

#[test]
fn unmasked_client_frame_closes_with_1002() {
    let server = server_with(|b| b);
    let mut stream = raw_upgrade(server.local_addr(), "/echo");
    stream.write_all(&[0x81, 0x02, b'h', b'i']).expect("write");
    expect_failure(&mut stream, 1002, "unmasked client frame");
}

#[test]
fn invalid_utf8_closes_with_1007() {
    let server = server_with(|b| b);
    let mut stream = raw_upgrade(server.local_addr(), "/echo");
    send_frame(&mut stream, OpCode::Text, true, &[b'o', b'k', 0xff, 0xfe]);
    expect_failure(&mut stream, 1007, "text is not UTF-8");
}

#[test]
fn invalid_utf8_in_a_first_fragment_fails_fast() {
    let server = server_with(|b| b);
    let mut stream = raw_upgrade(server.local_addr(), "/echo");
    // 0xF4 0x90 can never start valid UTF-8: the server must not wait for the last
    // fragment (which never comes: a server that waited would time the read out).
    send_frame(&mut stream, OpCode::Text, false, &[b'a', 0xf4, 0x90]);
    expect_failure(&mut stream, 1007, "text is not UTF-8");
}

/// A masked binary frame header claiming `len` bytes, and no payload.
fn header_only(len: u64) -> Vec<u8> {
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    header
}

#[test]
fn oversized_message_closes_with_1009_without_waiting_for_the_payload() {
    // The answer must come from the header alone: the server neither waits for nor
    // allocates the claimed size (the payload never comes: waiting times the read out).
    let server = server_with(|b| b.max_message_size(1024 * 1024));
    // 8 MiB: within the 16 MiB default frame limit, over the 1 MiB message limit.
    let mut stream = raw_upgrade(server.local_addr(), "/echo");
    stream.write_all(&header_only(8 << 20)).expect("write");
    expect_failure(&mut stream, 1009, "message too big");
    // 1 GiB: over the frame limit too, which is checked first.
    let mut stream = raw_upgrade(server.local_addr(), "/echo");
    stream.write_all(&header_only(1 << 30)).expect("write");
    expect_failure(&mut stream, 1009, "frame too big");
}

#[test]
fn fragmented_message_over_the_limit_closes_with_1009() {
    let server = server_with(|b| b.max_message_size(1000));
    let mut stream = raw_upgrade(server.local_addr(), "/echo");
    send_frame(&mut stream, OpCode::Binary, false, &[0; 600]);
    send_frame(&mut stream, OpCode::Continuation, true, &[0; 600]);
    expect_failure(&mut stream, 1009, "message too big");
}

#[test]
fn reserved_opcode_and_rsv_bits_close_with_1002() {
    let server = server_with(|b| b);
    for (first_byte, reason) in [(0x83u8, "reserved opcode"), (0xC1, "reserved bits set")] {
        let mut stream = raw_upgrade(server.local_addr(), "/echo");
        stream
            .write_all(&[first_byte, 0x80, 0, 0, 0, 0])
            .expect("write");
        expect_failure(&mut stream, 1002, reason);
    }
}

#[test]
fn fragments_with_an_interleaved_ping_assemble() {
    let server = server_with(|b| b);
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
    let server = server_with(|b| b);
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
    let server = server_with(|b| b.handshake_timeout(Duration::from_millis(200)));
    let mut stream = raw_connect(server.local_addr());
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    assert_eq!(
        read_to_close(&mut stream),
        refusal(
            "408 Request Timeout",
            &[],
            "request head not received in time"
        )
    );
}
