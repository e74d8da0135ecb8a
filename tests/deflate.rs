//! permessage-deflate (RFC 7692) end to end against raw clients: negotiation on the
//! wire, the window sizes answered checked by an outside inflater (python3's zlib), the
//! threshold, the RFC's own vectors, empty and fragmented compressed messages, and
//! context takeover across hibernation. Errors (RSV misuse, bombs, invalid data) are in
//! `tests/deflate_errors.rs`; real clients, pub/sub and SockJS in
//! `tests/deflate_clients.rs`. The backend follows RINGWS_BACKEND, so CI runs these on
//! io_uring and on epoll.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::deflate::{
    connect, connect_to_mode, expect_close, letters, noise, python_inflate, send_compressed,
    send_deflated, send_deflated_fragmented, send_frame_rsv, server, words, Outside, RawMessage,
    RawReader, HELLO, HELLO_AGAIN, HELLO_BFINAL, RSV1,
};
use common::skip::skip;
use common::{send_frame, FrameReader, Received};
use ringws::proto::{MessageDeflater, OpCode};

#[test]
fn without_an_offer_nothing_is_answered_and_rsv1_is_1002() {
    let server = server();
    for path in ["/ct", "/nct"] {
        let mut ws = connect(&server, path, &[], None);
        let mut reader = FrameReader::default();
        send_frame(&mut ws, OpCode::Text, true, b"plain");
        assert_eq!(reader.next(&mut ws), Received::Text("plain".into()));
        send_deflated(&mut ws, OpCode::Text, &HELLO);
        expect_close(&mut ws, &mut reader, 1002);
    }
}

#[test]
fn a_route_without_deflate_never_answers_the_offer() {
    let server = server();
    for offers in [
        &["permessage-deflate"][..],
        &["permessage-deflate; client_max_window_bits"],
        &[
            "x-webkit-deflate-frame",
            "permessage-deflate; server_no_context_takeover",
        ],
    ] {
        let mut ws = connect(&server, "/plain", offers, None);
        let mut reader = FrameReader::default();
        let long = words(300, 1);
        send_frame(&mut ws, OpCode::Text, true, long.as_bytes());
        assert_eq!(reader.next(&mut ws), Received::Text(long));
        send_deflated(&mut ws, OpCode::Text, &HELLO);
        expect_close(&mut ws, &mut reader, 1002);
    }
}

#[test]
fn offers_are_answered_with_rfc_7692_parameters_only() {
    let server = server();
    let cases: [(&str, &[&str], Option<&str>); 11] = [
        ("/ct", &["permessage-deflate"], Some("permessage-deflate")),
        // A value-less client_max_window_bits is allowed; the config is 15: no answer.
        (
            "/ct",
            &["permessage-deflate; client_max_window_bits"],
            Some("permessage-deflate"),
        ),
        (
            "/w9",
            &["permessage-deflate; client_max_window_bits"],
            Some("permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"),
        ),
        // The client did not offer client_max_window_bits: it is not answered.
        (
            "/w9",
            &["permessage-deflate"],
            Some("permessage-deflate; server_max_window_bits=9"),
        ),
        (
            "/ct",
            &["permessage-deflate; server_max_window_bits=10"],
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        (
            "/ct",
            &["permessage-deflate; server_no_context_takeover"],
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        // An invalid first offer, then a valid one: the second is taken.
        (
            "/ct",
            &["permessage-deflate; server_max_window_bits=16, permessage-deflate; client_no_context_takeover"],
            Some("permessage-deflate; client_no_context_takeover"),
        ),
        // The same over two headers.
        (
            "/ct",
            &[
                "permessage-deflate; foo=1",
                "permessage-deflate; server_max_window_bits=12",
            ],
            Some("permessage-deflate; server_max_window_bits=12"),
        ),
        ("/ct", &["x-webkit-deflate-frame"], None),
        (
            "/nct",
            &["permessage-deflate; client_max_window_bits"],
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ),
        (
            "/ct",
            &["permessage-deflate; server_max_window_bits=8"],
            Some("permessage-deflate; server_max_window_bits=8"),
        ),
    ];
    for (path, offers, answer) in cases {
        let mut ws = connect(&server, path, offers, answer);
        let mut reader = FrameReader::with_deflate(15, false);
        // Every agreed connection takes the RFC's compressed "Hello".
        if answer.is_some() {
            send_deflated(&mut ws, OpCode::Text, &HELLO);
            assert_eq!(
                reader.next(&mut ws),
                Received::Text("Hello".into()),
                "{path} {offers:?}"
            );
        }
        send_frame(&mut ws, OpCode::Text, true, b"plain");
        assert_eq!(reader.next(&mut ws), Received::Text("plain".into()));
    }
}

/// Sends `message` twice (uncompressed) and returns the two echoes, read by `reader`.
fn echo_twice(ws: &mut TcpStream, reader: &mut FrameReader, message: &[u8]) -> [Received; 2] {
    send_frame(ws, OpCode::Binary, true, message);
    let first = reader.next(ws);
    send_frame(ws, OpCode::Binary, true, message);
    [first, reader.next(ws)]
}

/// Compresses `messages` in order with a context-taking compressor of `window_bits`.
fn compress_all(window_bits: u8, messages: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut tx = MessageDeflater::new(window_bits, 1, false);
    messages
        .iter()
        .map(|message| {
            let mut body = Vec::new();
            tx.compress(message, &mut body);
            body
        })
        .collect()
}

/// Sends `message` (uncompressed) and returns the compressed payload of its echo.
#[track_caller]
fn echo_compressed(
    ws: &mut TcpStream,
    reader: &mut RawReader,
    opcode: OpCode,
    message: &[u8],
) -> Vec<u8> {
    send_frame(ws, opcode, true, message);
    match reader.next(ws) {
        RawMessage::Deflated { text, payload } if text == (opcode == OpCode::Text) => payload,
        other => panic!("expected a compressed {opcode:?} message, got {other:?}"),
    }
}

/// Asserts python's zlib inflates `payloads` with a `wbits` window into `want`.
#[track_caller]
fn assert_python_inflates(wbits: u8, payloads: &[Vec<u8>], want: &[&[u8]]) {
    match python_inflate(wbits, payloads) {
        Outside::Ran(Ok(plain)) => assert!(plain == want, "python inflated something else"),
        Outside::Ran(Err(error)) => {
            panic!("the server's output does not fit {wbits} bits: {error}")
        }
        Outside::Missing(why) => panic!("{why}"),
    }
}

/// Whether python's zlib rejects `payloads` with a `wbits` window (`None`: no python3).
fn python_rejects(wbits: u8, payloads: &[Vec<u8>]) -> Option<bool> {
    match python_inflate(wbits, payloads) {
        Outside::Ran(result) => Some(result.is_err()),
        Outside::Missing(why) => {
            skip(why);
            None
        }
    }
}

#[test]
fn server_max_window_bits_10_is_what_the_server_compresses_with() {
    // 2000 incompressible bytes: the second copy can only point back 2000 bytes, past
    // a 10-bit window. (ringws's own MessageInflater, on zlib-rs, inflates such
    // references with a 10-bit window anyway, so python's zlib is the judge.)
    let message = noise(2000, 7);
    // Control: a 15-bit compressor's second copy does not inflate with 10 bits.
    let control = compress_all(15, &[&message, &message]);
    match python_rejects(10, &control) {
        None => return,
        Some(rejected) => assert!(rejected, "python inflated a 15-bit stream with 10 bits"),
    }

    let server = server();
    let offer = "permessage-deflate; server_max_window_bits=10";
    let answer = Some("permessage-deflate; server_max_window_bits=10");
    let mut ws = connect(&server, "/ct", &[offer], answer);
    let mut reader = RawReader::default();
    let payloads: Vec<Vec<u8>> = (0..2)
        .map(|_| echo_compressed(&mut ws, &mut reader, OpCode::Binary, &message))
        .collect();
    assert_python_inflates(10, &payloads, &[&message, &message]);
    // And ringws's client side reads them too.
    let mut ws = connect(&server, "/ct", &[offer], answer);
    let mut reader = FrameReader::with_deflate(10, false);
    let [first, second] = echo_twice(&mut ws, &mut reader, &message);
    assert_eq!(first, Received::Binary(message.clone()));
    assert_eq!(second, Received::Binary(message));
    assert_eq!(reader.compressed, 2);
}

#[test]
fn server_no_context_takeover_offered_resets_the_server_context() {
    let server = server();
    let message = words(1500, 3).into_bytes();
    let offer = "permessage-deflate; server_no_context_takeover";
    for path in ["/ct", "/nct"] {
        let answer = if path == "/ct" {
            offer
        } else {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        };
        let mut ws = connect(&server, path, &[offer], Some(answer));
        // An inflater that forgets every message: a back-reference fails it.
        let mut reader = FrameReader::with_deflate(15, true);
        let [first, second] = echo_twice(&mut ws, &mut reader, &message);
        assert_eq!(first, Received::Binary(message.clone()), "{path}");
        assert_eq!(second, Received::Binary(message.clone()), "{path}");
        assert_eq!(reader.compressed, 2, "{path}");
    }
}

#[test]
fn messages_under_the_threshold_go_out_uncompressed() {
    let server = server();
    let (mut ws, mut reader) = connect_to_mode(&server, "/ct");
    for (len, compressed) in [(10, 0), (63, 0), (64, 1), (200, 2), (5, 2)] {
        let text = words(len, len as u64);
        send_frame(&mut ws, OpCode::Text, true, text.as_bytes());
        assert_eq!(reader.next(&mut ws), Received::Text(text));
        assert_eq!(reader.compressed, compressed, "after {len} bytes");
    }
}

#[test]
fn rfc_7692_vectors_are_inflated() {
    let server = server();
    let answer = Some("permessage-deflate");
    // Each form on its own connection, echoed compressed (threshold 0).
    for vector in [&HELLO[..], &HELLO_BFINAL] {
        let mut ws = connect(&server, "/ct0", &["permessage-deflate"], answer);
        let mut reader = FrameReader::with_deflate(15, false);
        send_deflated(&mut ws, OpCode::Text, vector);
        assert_eq!(reader.next(&mut ws), Received::Text("Hello".into()));
        // And a plain message after it.
        send_frame(&mut ws, OpCode::Text, true, b"after");
        assert_eq!(reader.next(&mut ws), Received::Text("after".into()));
        assert_eq!(reader.compressed, 2);
    }
    // Context takeover: the second "Hello" is a back-reference into the first.
    let mut ws = connect(&server, "/ct0", &["permessage-deflate"], answer);
    let mut reader = FrameReader::with_deflate(15, false);
    for vector in [&HELLO[..], &HELLO_AGAIN, &HELLO_AGAIN, &HELLO] {
        send_deflated(&mut ws, OpCode::Text, vector);
        assert_eq!(reader.next(&mut ws), Received::Text("Hello".into()));
    }
    assert_eq!(reader.compressed, 4);
    // BFINAL then the plain form on one connection.
    let mut ws = connect(&server, "/ct0", &["permessage-deflate"], answer);
    let mut reader = FrameReader::with_deflate(15, false);
    for vector in [&HELLO_BFINAL[..], &HELLO, &HELLO_BFINAL] {
        send_deflated(&mut ws, OpCode::Text, vector);
        assert_eq!(reader.next(&mut ws), Received::Text("Hello".into()));
    }
}

#[test]
fn empty_compressed_messages() {
    let server = server();
    let (mut ws, mut reader) = connect_to_mode(&server, "/ct0");
    // The empty message compressed: an empty stored block, its tail removed (`00`).
    send_deflated(&mut ws, OpCode::Text, &[0x00]);
    assert_eq!(reader.next(&mut ws), Received::Text(String::new()));
    send_deflated(&mut ws, OpCode::Binary, &[0x00]);
    assert_eq!(reader.next(&mut ws), Received::Binary(Vec::new()));
    // The context carries on across them.
    send_deflated(&mut ws, OpCode::Text, &HELLO);
    assert_eq!(reader.next(&mut ws), Received::Text("Hello".into()));
    send_deflated(&mut ws, OpCode::Text, &[0x00]);
    assert_eq!(reader.next(&mut ws), Received::Text(String::new()));
    send_deflated(&mut ws, OpCode::Text, &HELLO_AGAIN);
    assert_eq!(reader.next(&mut ws), Received::Text("Hello".into()));
    assert_eq!(reader.compressed, 5);
}

#[test]
fn a_fragmented_compressed_message_with_rsv1_on_its_first_frame() {
    let server = server();
    let (mut ws, mut reader) = connect_to_mode(&server, "/ct0");
    let mut tx = MessageDeflater::new(15, 6, false);
    // Multi-byte characters throughout: pieces of it split them anywhere.
    let text = words(3000, 11).replace(' ', " ✓ héllo wörld ✓ ");
    for pieces in [2, 5, 9] {
        let mut body = Vec::new();
        tx.compress(text.as_bytes(), &mut body);
        send_deflated_fragmented(&mut ws, OpCode::Text, &body, pieces);
        assert_eq!(
            reader.next(&mut ws),
            Received::Text(text.clone()),
            "{pieces}"
        );
    }
    // A ping between the fragments is answered and the message still arrives whole.
    let mut body = Vec::new();
    tx.compress(text.as_bytes(), &mut body);
    let half = body.len() / 2;
    send_frame_rsv(&mut ws, RSV1, OpCode::Text as u8, false, &body[..half]);
    send_frame(&mut ws, OpCode::Ping, true, b"mid");
    send_frame_rsv(&mut ws, 0, OpCode::Continuation as u8, true, &body[half..]);
    assert_eq!(reader.next(&mut ws), Received::Pong(b"mid".to_vec()));
    assert_eq!(reader.next(&mut ws), Received::Text(text));
    assert_eq!(reader.compressed, 4);
}

#[test]
fn server_max_window_bits_8_output_inflates_with_a_256_byte_window() {
    // 4 KiB of text repeating every 300 bytes (past a 256-byte window), with runs.
    let segment = letters(200, 9) + &"x".repeat(100);
    let text = segment.repeat(14)[..4096].to_owned();

    // Control: what a 15-bit compressor makes of it does not inflate with 8 bits.
    let control = compress_all(15, &[text.as_bytes(), text.as_bytes()]);
    match python_rejects(8, &control) {
        None => return,
        Some(rejected) => assert!(
            rejected,
            "python's zlib inflated a 15-bit stream with wbits -8: the check proves nothing"
        ),
    }
    assert_python_inflates(15, &control, &[text.as_bytes(), text.as_bytes()]);

    let server = server();
    let offer = "permessage-deflate; server_max_window_bits=8";
    let mut ws = connect(&server, "/ct", &[offer], Some(offer));
    let mut reader = RawReader::default();
    let payloads: Vec<Vec<u8>> = (0..2)
        .map(|_| echo_compressed(&mut ws, &mut reader, OpCode::Text, text.as_bytes()))
        .collect();
    assert!(payloads[0].len() < text.len(), "{}", payloads[0].len());
    assert_python_inflates(8, &payloads, &[text.as_bytes(), text.as_bytes()]);
}

/// Sends each message compressed with the client's context-taking `tx`, checks the
/// echo and returns the compressed sizes.
fn exchange(
    ws: &mut TcpStream,
    reader: &mut FrameReader,
    tx: &mut MessageDeflater,
    messages: &[&str],
) -> Vec<usize> {
    messages
        .iter()
        .map(|message| {
            let size = send_compressed(ws, tx, OpCode::Text, message.as_bytes());
            assert_eq!(reader.next(ws), Received::Text((*message).to_owned()));
            size
        })
        .collect()
}

#[test]
fn context_takeover_carries_on_across_hibernation() {
    let server = server();
    let (l1, l2) = (letters(2000, 21), letters(2000, 22));
    let mut ws = connect(
        &server,
        "/hib",
        &["permessage-deflate"],
        Some("permessage-deflate"),
    );
    let mut reader = FrameReader::with_deflate(15, false);
    let mut tx = MessageDeflater::new(15, 1, false);
    let before = exchange(&mut ws, &mut reader, &mut tx, &[&l1, &l2, "short"]);
    // Well past twice the hibernation delay: both sides' streams on the server
    // hibernated. The client's context goes on: its repeats are back-references.
    std::thread::sleep(Duration::from_millis(1000));
    let after = exchange(&mut ws, &mut reader, &mut tx, &[&l1, &l2, &l1, "short"]);
    assert!(
        after[0] < before[0] / 4 && after[1] < before[1] / 4,
        "the repeats were not back-references: {before:?} then {after:?}"
    );
    // A message in progress across the delay: the server's inflater stays live in it.
    let mut body = Vec::new();
    tx.compress(format!("{l1}{l2}").as_bytes(), &mut body);
    let half = body.len() / 2;
    send_frame_rsv(&mut ws, RSV1, OpCode::Text as u8, false, &body[..half]);
    std::thread::sleep(Duration::from_millis(600));
    send_frame_rsv(&mut ws, 0, OpCode::Continuation as u8, true, &body[half..]);
    assert_eq!(reader.next(&mut ws), Received::Text(format!("{l1}{l2}")));
    std::thread::sleep(Duration::from_millis(600));
    exchange(&mut ws, &mut reader, &mut tx, &[&l2, "Hello"]);
    assert_eq!(reader.compressed, 10);
}

#[test]
fn context_takeover_with_no_live_streams_hibernates_after_every_message() {
    let server = server();
    let texts: Vec<String> = (0..3).map(|i| letters(1500, 30 + i)).collect();
    let mut clients: Vec<_> = (0..2)
        .map(|_| {
            (
                connect(
                    &server,
                    "/hib0",
                    &["permessage-deflate"],
                    Some("permessage-deflate"),
                ),
                FrameReader::with_deflate(15, false),
                MessageDeflater::new(15, 1, false),
            )
        })
        .collect();
    for round in 0..3 {
        for (ws, reader, tx) in &mut clients {
            let sizes = exchange(ws, reader, tx, &[&texts[0], &texts[1], &texts[2]]);
            if round > 0 {
                assert!(sizes.iter().all(|&s| s < 300), "{sizes:?}");
            }
        }
    }
    for (_, reader, _) in &clients {
        assert_eq!(reader.compressed, 9);
    }
}
