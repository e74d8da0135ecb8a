//! `ringws serve --deflate` and `--deflate-mode`: the binary answers permessage-deflate
//! offers on its WebSocket routes and SockJS's `websocket` transport, compresses what it
//! sends and inflates what it gets; without the flags it answers no offer.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use common::serve::{ringws_serve, with_child};
use common::{FrameReader, Received};
use ringws::proto::{encode_compressed_frame, MessageDeflater, OpCode};

/// Upgrades `path` at `addr` offering permessage-deflate; the stream and the head.
fn upgrade_offering(addr: SocketAddr, path: &str) -> (TcpStream, String) {
    common::deflate::upgrade_offering(addr, path, &["permessage-deflate; client_max_window_bits"])
}

/// Sends `text` compressed by `deflater`, in one masked RSV1 frame.
fn send_compressed(stream: &mut TcpStream, deflater: &mut MessageDeflater, text: &str) {
    let mut body = Vec::new();
    deflater.compress(text.as_bytes(), &mut body);
    let mut frame = Vec::new();
    encode_compressed_frame(&mut frame, OpCode::Text, true, &body, Some([9, 8, 7, 6]));
    stream.write_all(&frame).expect("write frame");
}

/// Runs `check` against `ringws serve ARGS`, then stops it.
fn with_serve(args: &[&str], check: impl FnOnce(SocketAddr)) {
    with_child(ringws_serve(args), check);
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
