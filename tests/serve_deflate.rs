//! `ringws serve --deflate` and `--deflate-mode`: the binary answers permessage-deflate
//! offers on its WebSocket routes and SockJS's `websocket` transport, compresses what it
//! sends and inflates what it gets; without the flags it answers no offer.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Child;

use common::serve::ringws_serve;
use common::{raw_connect, read_head, FrameReader, Received};
use ringws::proto::{apply_mask, FrameHeader, MessageDeflater, OpCode};

/// Upgrades `path` at `addr` offering permessage-deflate; the stream and the head.
fn upgrade_offering(addr: SocketAddr, path: &str) -> (TcpStream, String) {
    let mut stream = raw_connect(addr);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    (stream, head)
}

/// Sends `text` compressed by `deflater`, in one masked RSV1 frame.
fn send_compressed(stream: &mut TcpStream, deflater: &mut MessageDeflater, text: &str) {
    let mut body = Vec::new();
    deflater.compress(text.as_bytes(), &mut body);
    let key = [9, 8, 7, 6];
    let header = FrameHeader {
        fin: true,
        rsv: 0b100,
        opcode: OpCode::Text as u8,
        mask: Some(key),
        payload_len: body.len() as u64,
    };
    let mut head = [0u8; FrameHeader::MAX_LEN];
    let len = header.write(&mut head);
    apply_mask(&mut body, key, 0);
    let mut frame = head[..len].to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).expect("write frame");
}

/// Runs `check` against `ringws serve ARGS`, then stops it.
fn with_serve(args: &[&str], check: impl FnOnce(SocketAddr)) {
    let (mut child, addr): (Child, _) = ringws_serve(args);
    let addr = match addr {
        Ok(addr) => addr,
        Err(log) => {
            let _ = child.kill();
            panic!("{log}");
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(addr)));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn json(n: usize) -> String {
    format!("{{\"n\":{n},\"user\":\"someone\",\"text\":\"a message long enough to compress\"}}")
}

#[test]
fn deflate_flag_compresses_the_echo_with_context_takeover() {
    with_serve(&["--deflate"], |addr| {
        let (mut stream, head) = upgrade_offering(addr, "/echo");
        assert!(
            head.contains("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
            "{head}"
        );
        let mut deflater = MessageDeflater::new(15, 1, false);
        let mut reader = FrameReader::with_deflate(15, false);
        for n in 0..3 {
            send_compressed(&mut stream, &mut deflater, &json(n));
            assert_eq!(reader.next(&mut stream), Received::Text(json(n)));
        }
        assert_eq!(reader.compressed, 3);
    });
}

#[test]
fn deflate_mode_no_context_takeover_answers_so_and_compresses_each_message_alone() {
    with_serve(
        &[
            "--deflate-mode",
            "no-context-takeover",
            "--deflate-level",
            "9",
        ],
        |addr| {
            for path in ["/echo", "/broadcast", "/echo/000/abcdefgh/websocket"] {
                let (mut stream, head) = upgrade_offering(addr, path);
                assert!(
                head.contains(
                    "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
                     client_no_context_takeover\r\n"
                ),
                "{path}: {head}"
            );
                let mut deflater = MessageDeflater::new(15, 1, true);
                let mut reader = FrameReader::with_deflate(15, true);
                let sockjs = path.ends_with("/websocket");
                if sockjs {
                    assert_eq!(reader.next(&mut stream), Received::Text("o".into()));
                }
                for n in 0..2 {
                    let text = json(n);
                    let (sent, echoed) = if sockjs {
                        let quoted = serde_json::to_string(&text).expect("JSON");
                        (format!("[{quoted}]"), format!("a[{quoted}]"))
                    } else {
                        (text.clone(), text)
                    };
                    send_compressed(&mut stream, &mut deflater, &sent);
                    assert_eq!(reader.next(&mut stream), Received::Text(echoed), "{path}");
                }
                assert_eq!(reader.compressed, 2, "{path}");
            }
        },
    );
}

#[test]
fn without_the_flag_no_offer_is_answered() {
    with_serve(&[], |addr| {
        let (_stream, head) = upgrade_offering(addr, "/echo");
        assert!(!head.contains("Sec-WebSocket-Extensions"), "{head}");
    });
}
