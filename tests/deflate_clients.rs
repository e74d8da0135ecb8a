//! permessage-deflate (RFC 7692) with a real client (node's `ws`, which negotiates the
//! extension by default), through pub/sub (shared compressed frames for subscribers
//! without context takeover, per-connection compression with it) and on SockJS's
//! `websocket` transport. The backend follows RINGWS_BACKEND, so CI runs these on
//! io_uring and on epoll.

mod common;

use std::net::TcpStream;
use std::process::Command;

use common::deflate::{
    extension_answer, letters, node_ws, python_websockets, send_compressed, support_dir,
    upgrade_offering, Outside,
};
use common::skip::skip;
use common::{builder, send_frame, Echo, FrameReader, Received};
use ringws::proto::{MessageDeflater, OpCode};
use ringws::sockjs::SockJsOptions;
use ringws::{
    Accept, Builder, Conn, DeflateOptions, Handler, Message, RunningServer, WebSocketOptions,
};

/// The answer to a plain offer under [`DeflateOptions::no_context_takeover`].
const NCT_ANSWER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

fn start(builder: Builder) -> RunningServer {
    let server = builder.build().expect("build");
    eprintln!("backend: {:?}", server.backend());
    server.start().expect("start")
}

/// Echo routes for the real clients: `/ct` context takeover, `/nct` none, `/w9` 9-bit
/// windows; with the answer each gives to a `permessage-deflate;
/// client_max_window_bits` offer (what node's `ws` and python's `websockets` send).
const CLIENT_ROUTES: [(&str, &str); 3] = [
    ("/ct", "permessage-deflate"),
    ("/nct", NCT_ANSWER),
    (
        "/w9",
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
    ),
];

fn client_server() -> RunningServer {
    let ct = DeflateOptions::context_takeover;
    let mut builder = builder();
    for (path, deflate) in [
        ("/ct", ct()),
        ("/nct", DeflateOptions::no_context_takeover()),
        (
            "/w9",
            ct().server_max_window_bits(9).client_max_window_bits(9),
        ),
    ] {
        let options = WebSocketOptions::default().deflate(deflate);
        builder = builder.websocket_with_options(path, options, |_| Ok(Accept::new(Echo)));
    }
    start(builder)
}

/// Runs a client script against `url`; asserts it succeeded and returns its
/// `name=value` lines.
#[track_caller]
fn run_client(mut command: Command, url: &str) -> Vec<(String, String)> {
    let output = command.arg(url).output().expect("the client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{url}: the client failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// The value of `name` in a client's output.
#[track_caller]
fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("no {name} in {fields:?}"))
}

#[test]
fn node_ws_echoes_through_every_mode() {
    let module = match node_ws() {
        Outside::Ran(module) => module,
        Outside::Missing(why) => return skip(why),
    };
    let server = client_server();
    for (path, answer) in CLIENT_ROUTES {
        let url = format!("ws://{}{path}", server.local_addr());
        let mut node = Command::new("node");
        node.arg(support_dir().join("ws_deflate_echo.js"))
            .env("WS_MODULE", &module);
        let fields = run_client(node, &url);
        assert_eq!(field(&fields, "extensions"), answer, "{path}");
        assert_eq!(field(&fields, "echoed"), "4", "{path}");
        // The echoes came compressed: far fewer bytes on the wire than in the messages.
        let plain: usize = field(&fields, "plain_bytes").parse().unwrap();
        let wire: usize = field(&fields, "wire_bytes").parse().unwrap();
        assert!(wire < plain / 2, "{path}: {wire} bytes read for {plain}");
        eprintln!("{path}: {wire} bytes read for {plain}");
    }
}

#[test]
fn python_websockets_echoes_through_every_mode() {
    let python = match python_websockets() {
        Outside::Ran(python) => python,
        Outside::Missing(why) => return skip(why),
    };
    let server = client_server();
    for (path, answer) in CLIENT_ROUTES {
        let url = format!("ws://{}{path}", server.local_addr());
        let mut client = Command::new(&python);
        client.arg(support_dir().join("websockets_deflate_echo.py"));
        let fields = run_client(client, &url);
        assert_eq!(field(&fields, "extensions"), answer, "{path}");
        assert_eq!(field(&fields, "echoed"), "4", "{path}");
        // Every echo over the 64-byte threshold came with RSV1: three of the four.
        assert_eq!(field(&fields, "compressed"), "3", "{path}");
    }
}

/// Subscribes to `news` on open and says `ready`; `pub DATA` publishes DATA to the
/// others.
struct Subscriber;

impl Handler for Subscriber {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        conn.subscribe("news");
        conn.send_text("ready");
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        if let Message::Text(text) = message {
            if let Some(data) = text.strip_prefix("pub ") {
                conn.publish("news", Message::Text(data));
            }
        }
    }
}

/// A published message as a subscriber should read it.
fn received(message: &Message<'_>) -> Received {
    match message {
        Message::Text(text) => Received::Text((*text).to_owned()),
        Message::Binary(bytes) => Received::Binary(bytes.to_vec()),
    }
}

#[test]
fn publications_reach_subscribers_of_every_mode_in_order() {
    let mut builder = builder().shards(1);
    for (path, deflate) in [
        ("/ct", Some(DeflateOptions::context_takeover())),
        ("/nct", Some(DeflateOptions::no_context_takeover())),
        ("/off", None),
    ] {
        let mut options = WebSocketOptions::default();
        if let Some(deflate) = deflate {
            options = options.deflate(deflate);
        }
        builder = builder.websocket_with_options(path, options, |_| Ok(Accept::new(Subscriber)));
    }
    let server = start(builder);
    // (path, offer, answer, reader)
    let subscribers: [(&str, &[&str], Option<&str>, FrameReader); 6] = [
        (
            "/ct",
            &["permessage-deflate"],
            Some("permessage-deflate"),
            FrameReader::with_deflate(15, false),
        ),
        (
            "/ct",
            &["permessage-deflate; server_no_context_takeover"],
            Some("permessage-deflate; server_no_context_takeover"),
            FrameReader::with_deflate(15, true),
        ),
        (
            "/nct",
            &["permessage-deflate"],
            Some(NCT_ANSWER),
            FrameReader::with_deflate(15, true),
        ),
        (
            "/nct",
            &["permessage-deflate; server_max_window_bits=10"],
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=10",
            ),
            FrameReader::with_deflate(10, true),
        ),
        ("/ct", &[], None, FrameReader::default()),
        (
            "/off",
            &["permessage-deflate"],
            None,
            FrameReader::default(),
        ),
    ];
    let mut clients: Vec<(TcpStream, FrameReader)> = subscribers
        .into_iter()
        .map(|(path, offers, answer, mut reader)| {
            let (mut ws, head) = upgrade_offering(server.local_addr(), path, offers);
            assert_eq!(
                extension_answer(&head).as_deref(),
                answer,
                "{path} {offers:?}"
            );
            assert_eq!(reader.next(&mut ws), Received::Text("ready".into()));
            (ws, reader)
        })
        .collect();
    assert_eq!(server.handle().subscriber_count("news"), clients.len());

    let (text_100, text_40k) = (letters(100, 1), letters(40 << 10, 2));
    let binary_24k: Vec<u8> = letters(24 << 10, 3).into_bytes();
    let text_300 = letters(300, 4);
    let messages = [
        Message::Text("tiny"),
        Message::Text(&text_100),
        Message::Text(&text_40k),
        Message::Binary(&binary_24k),
        // Repeats: a context-taking compressor reaches back for them.
        Message::Text(&text_100),
        Message::Text(&text_300),
        Message::Text(&text_40k),
        Message::Text("short again"),
    ];
    // Published twice over: each message is compressed once per shard for the
    // subscribers without context takeover, and the second round must not reuse the
    // first round's frames wrongly either.
    for _ in 0..2 {
        for message in &messages {
            server.handle().publish("news", *message).expect("publish");
        }
    }
    for (i, (ws, reader)) in clients.iter_mut().enumerate() {
        for round in 0..2 {
            for (n, message) in messages.iter().enumerate() {
                assert_eq!(
                    reader.next(ws),
                    received(message),
                    "subscriber {i}, round {round}, message {n}"
                );
            }
        }
    }
    // 6 of the 8 messages are over the 64-byte threshold.
    let compressed: Vec<usize> = clients
        .iter()
        .map(|(_, reader)| reader.compressed)
        .collect();
    assert_eq!(compressed, [12, 12, 12, 12, 0, 0]);

    // A publication from a connection (the plain one) reaches the others, compressed
    // where agreed; the publisher gets nothing.
    let big = letters(30 << 10, 5);
    send_frame(
        &mut clients[4].0,
        OpCode::Text,
        true,
        format!("pub {big}").as_bytes(),
    );
    for (i, (ws, reader)) in clients.iter_mut().enumerate() {
        if i != 4 {
            assert_eq!(
                reader.next(ws),
                Received::Text(big.clone()),
                "subscriber {i}"
            );
        }
    }
    let compressed: Vec<usize> = clients
        .iter()
        .map(|(_, reader)| reader.compressed)
        .collect();
    assert_eq!(compressed, [13, 13, 13, 13, 0, 0]);
}

#[test]
fn sockjs_websocket_frames_are_compressed() {
    let ct = DeflateOptions::context_takeover().threshold(0);
    let server = start(
        builder()
            .sockjs("/sj", || Echo, SockJsOptions::default().deflate(ct))
            .sockjs(
                "/sjn",
                || Echo,
                SockJsOptions::default().deflate(DeflateOptions::no_context_takeover()),
            )
            .sockjs("/sjoff", || Echo, SockJsOptions::default()),
    );
    let addr = server.local_addr();
    let offer = ["permessage-deflate"];
    let long = letters(300, 6);

    // Context takeover, every frame compressed: `o`, then the echoes in `a[...]`.
    let (mut ws, head) = upgrade_offering(addr, "/sj/000/abcdefgh/websocket", &offer);
    assert_eq!(
        extension_answer(&head).as_deref(),
        Some("permessage-deflate")
    );
    let mut reader = FrameReader::with_deflate(15, false);
    assert_eq!(reader.next(&mut ws), Received::Text("o".into()));
    assert_eq!(reader.compressed, 1);
    let mut tx = MessageDeflater::new(15, 1, false);
    send_compressed(&mut ws, &mut tx, OpCode::Text, br#"["hello","there"]"#);
    assert_eq!(
        reader.next(&mut ws),
        Received::Text(r#"a["hello","there"]"#.into())
    );
    for _ in 0..2 {
        let message = format!(r#"["{long}"]"#);
        send_compressed(&mut ws, &mut tx, OpCode::Text, message.as_bytes());
        assert_eq!(reader.next(&mut ws), Received::Text(format!("a{message}")));
    }
    send_frame(&mut ws, OpCode::Text, true, br#"["plain"]"#);
    assert_eq!(reader.next(&mut ws), Received::Text(r#"a["plain"]"#.into()));
    assert_eq!(reader.compressed, 5);

    // Without context takeover and the default threshold: `o` goes out as it is.
    let (mut ws, head) = upgrade_offering(addr, "/sjn/000/abcdefgi/websocket", &offer);
    assert_eq!(extension_answer(&head).as_deref(), Some(NCT_ANSWER));
    let mut reader = FrameReader::with_deflate(15, true);
    assert_eq!(reader.next(&mut ws), Received::Text("o".into()));
    assert_eq!(reader.compressed, 0);
    let mut tx = MessageDeflater::new(15, 1, true);
    let message = format!(r#"["{long}"]"#);
    for _ in 0..2 {
        send_compressed(&mut ws, &mut tx, OpCode::Text, message.as_bytes());
        assert_eq!(reader.next(&mut ws), Received::Text(format!("a{message}")));
    }
    assert_eq!(reader.compressed, 2);

    // Raw `/websocket`: no SockJS framing, compressed both ways.
    let (mut ws, head) = upgrade_offering(addr, "/sj/websocket", &offer);
    assert_eq!(
        extension_answer(&head).as_deref(),
        Some("permessage-deflate")
    );
    let mut reader = FrameReader::with_deflate(15, false);
    let mut tx = MessageDeflater::new(15, 1, false);
    send_compressed(&mut ws, &mut tx, OpCode::Text, long.as_bytes());
    assert_eq!(reader.next(&mut ws), Received::Text(long.clone()));
    assert_eq!(reader.compressed, 1);

    // A service without deflate answers nothing, on either form.
    for (path, open) in [
        ("/sjoff/000/abcdefgj/websocket", true),
        ("/sjoff/websocket", false),
    ] {
        let (mut ws, head) = upgrade_offering(addr, path, &offer);
        assert_eq!(extension_answer(&head), None, "{path}");
        let mut reader = FrameReader::default();
        if open {
            assert_eq!(reader.next(&mut ws), Received::Text("o".into()));
        }
        send_frame(&mut ws, OpCode::Text, true, br#"["x"]"#);
        let want = if open { r#"a["x"]"# } else { r#"["x"]"# };
        assert_eq!(reader.next(&mut ws), Received::Text(want.into()), "{path}");
    }
}
