//! Legacy WebSocket drafts end to end over raw sockets: hixie-75, hixie-76 (hybi-00),
//! hybi-07 and hybi-08 next to RFC 6455, against one server whose `/echo` handler does
//! not know which version its client speaks; and `ringws serve` doing the same.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::serve::{ringws_serve, with_child};
use common::{
    expect_silence, is_close, raw_connect, read_head, read_to_close, send_frame, Echo, FrameReader,
    Received,
};
use ringws::handshake::client::{Hixie76Client, HixieKey};
use ringws::proto::{CloseCode, HixieDecoder, HixieEvent, Limits, OpCode};
use ringws::{
    Accept, CloseInitiator, CloseReason, Conn, Handler, Message, RunningServer, WebSocketOptions,
};

/// Largest message the shared server accepts.
const MAX_MESSAGE: usize = 64 * 1024;

/// Closes on "bye"; otherwise echoes.
struct Bye;

impl Handler for Bye {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text("bye") => conn.close(1000, "bye"),
            other => {
                conn.send_text(&String::from_utf8_lossy(other.as_bytes()));
            }
        }
    }
}

/// Tries what a hixie client cannot receive, and says what happened (to the client: the
/// test thread asserts, not this handler on its shard).
struct Probe;

impl Handler for Probe {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let handle = conn.handle();
        let posts = [
            handle.send_binary(b"\x01\x02"),
            handle.ping(b"p"),
            handle.send_text("via handle"),
        ];
        // Sent at once, so it arrives before what the handle posted.
        conn.send_text(&format!("posts {posts:?}"));
    }
    fn on_message(&mut self, conn: &mut Conn<'_>, _message: Message<'_>) {
        let report = format!(
            "binary {:?}, ping {:?}, hixie {}",
            conn.send_binary(b"x"),
            conn.ping(b""),
            conn.is_hixie()
        );
        conn.send_text(&report);
    }
}

/// The one server all tests here share.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let strict = WebSocketOptions::default().legacy_drafts(false);
        let server = common::builder()
            .max_message_size(MAX_MESSAGE)
            .websocket("/echo", || Echo)
            .websocket("/bye", || Bye)
            .websocket("/probe", || Probe)
            .websocket_with_options("/strict", strict, |_| Ok(Accept::new(Echo)))
            .websocket_with("/proto", |req| {
                let first = req.protocols().next().map(str::to_owned);
                let accept = Accept::new(Echo);
                Ok(match first {
                    Some(protocol) => accept.protocol(protocol),
                    None => accept,
                })
            })
            .build()
            .expect("build")
            .start()
            .expect("start");
        let addr = server.local_addr();
        // Lives as long as the test process.
        std::mem::forget(server);
        addr
    })
}

/// A hixie client on a raw socket: the framing reader and what is buffered.
struct Hixie {
    stream: TcpStream,
    decoder: HixieDecoder,
    buffer: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
enum Got {
    Text(String),
    Close,
    Eof,
}

impl Hixie {
    fn new(stream: TcpStream, after_handshake: &[u8]) -> Hixie {
        Hixie {
            stream,
            decoder: HixieDecoder::new(Limits::default()),
            buffer: after_handshake.to_vec(),
        }
    }

    fn send(&mut self, wire: &[u8]) {
        self.stream.write_all(wire).expect("write");
    }

    fn send_text(&mut self, text: &str) {
        let mut wire = Vec::new();
        ringws::proto::encode_hixie_text(&mut wire, text);
        self.send(&wire);
    }

    fn next(&mut self) -> Got {
        loop {
            let (used, event) = self.decoder.decode(&self.buffer).expect("valid frames");
            let got = match event {
                Some(HixieEvent::Text(text)) => Some(Got::Text(text.to_owned())),
                Some(HixieEvent::Close) => Some(Got::Close),
                None => None,
            };
            self.buffer.drain(..used);
            if let Some(got) = got {
                return got;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                // FIN, or a reset (how a server closes a socket with unread input).
                Ok(0) => return Got::Eof,
                Err(error) if is_close(&error) => return Got::Eof,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                // A read timeout (or any other failure) is not a close: fail here.
                Err(error) => panic!(
                    "no hixie frame and no close from the server: {error} (read timeout {:?}, \
                     {} bytes of a frame buffered)",
                    self.stream.read_timeout().ok().flatten(),
                    self.buffer.len()
                ),
            }
        }
    }
}

/// The draft's own example keys and body.
const DRAFT_KEY1: &str = "4 @1  46546xW%0l 1 5";
const DRAFT_KEY2: &str = "12998 5 Y3 1  .P00";
const DRAFT_BODY: &[u8; 8] = b"^n:ds[4U";
const DRAFT_ANSWER: &[u8; 16] = b"8jKS'y:G*Co,Wxa-";

fn draft_head(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key2: {DRAFT_KEY2}\r\nUpgrade: WebSocket\r\n\
         Sec-WebSocket-Key1: {DRAFT_KEY1}\r\nOrigin: http://example.com\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn read_exact<const N: usize>(stream: &mut TcpStream) -> [u8; N] {
    let mut buf = [0u8; N];
    stream.read_exact(&mut buf).expect("read");
    buf
}

/// A hixie-76 handshake through the client role; returns the open client.
fn hixie76(addr: SocketAddr, path: &str, seed: u32) -> Hixie {
    let client = Hixie76Client::new(
        HixieKey {
            number: seed.wrapping_mul(2_654_435_761) % 300_000_000,
            spaces: seed % 12 + 1,
        },
        HixieKey {
            number: seed,
            spaces: 3,
        },
        *b"abcdefgh",
    )
    .expect("keys");
    let mut stream = raw_connect(addr);
    let mut request = Vec::new();
    // A page of the server's own origin (WebSocket routes accept only that by default).
    let origin = format!("http://{addr}");
    client.write_request(&mut request, &addr.to_string(), path, &origin, None);
    stream.write_all(&request).expect("write");
    let mut response = read_head(&mut stream).into_bytes();
    response.extend_from_slice(&read_exact::<16>(&mut stream));
    assert_eq!(client.check_response(&response), Ok(Some(response.len())));
    Hixie::new(stream, &[])
}

/// A hixie-75 handshake; returns the open client and the 101 head.
fn hixie75(addr: SocketAddr, path: &str) -> (Hixie, String) {
    let mut stream = raw_connect(addr);
    let request = format!(
        "GET {path} HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nHost: {addr}\r\n\
         Origin: http://{addr}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let head = read_head(&mut stream);
    assert!(
        head.starts_with("HTTP/1.1 101 Web Socket Protocol Handshake\r\n"),
        "{head}"
    );
    (Hixie::new(stream, &[]), head)
}

/// An RFC-style handshake with `Sec-WebSocket-Version: version` (and the hybi drafts'
/// `Sec-WebSocket-Origin`); returns the stream and the response head.
fn hybi(addr: SocketAddr, path: &str, version: u8) -> (TcpStream, String) {
    let mut stream = raw_connect(addr);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\
         Sec-WebSocket-Origin: http://{addr}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let head = read_head(&mut stream);
    (stream, head)
}

#[test]
fn draft_vector_with_body_and_frame_in_one_write() {
    let addr = server();
    let mut stream = raw_connect(addr);
    let mut request = draft_head("/proto", "Sec-WebSocket-Protocol: sample\r\n");
    request.extend_from_slice(DRAFT_BODY);
    request.extend_from_slice(b"\x00hello\xFF");
    stream.write_all(&request).expect("write");
    let head = read_head(&mut stream);
    assert_eq!(
        head,
        "HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Origin: http://example.com\r\n\
         Sec-WebSocket-Location: ws://example.com/proto\r\nSec-WebSocket-Protocol: sample\r\n\r\n"
    );
    assert_eq!(&read_exact::<16>(&mut stream), DRAFT_ANSWER);
    let mut client = Hixie::new(stream, &[]);
    assert_eq!(client.next(), Got::Text("hello".into()));
}

#[test]
fn hixie76_handshake_split_byte_by_byte() {
    let addr = server();
    let mut stream = raw_connect(addr);
    let mut request = draft_head("/echo?room=1", "");
    request.extend_from_slice(DRAFT_BODY);
    for byte in &request {
        stream.write_all(&[*byte]).expect("write");
        std::thread::sleep(Duration::from_micros(300));
    }
    let head = read_head(&mut stream);
    assert_eq!(
        head,
        "HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Origin: http://example.com\r\n\
         Sec-WebSocket-Location: ws://example.com/echo?room=1\r\n\r\n"
    );
    assert_eq!(&read_exact::<16>(&mut stream), DRAFT_ANSWER);
    let mut client = Hixie::new(stream, &[]);
    for byte in b"\x00split\xFF" {
        client.send(&[*byte]);
    }
    assert_eq!(client.next(), Got::Text("split".into()));
}

#[test]
fn hixie76_head_is_sent_before_the_body_arrives() {
    let addr = server();
    let mut stream = raw_connect(addr);
    stream.write_all(&draft_head("/echo", "")).expect("write");
    // The 101 head comes without the 8 bytes (a proxy would hold them until it sees it).
    let head = read_head(&mut stream);
    assert_eq!(
        head,
        "HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Origin: http://example.com\r\n\
         Sec-WebSocket-Location: ws://example.com/echo\r\n\r\n"
    );
    // Nothing more (and no close) until the body arrives, nor with 3 of its 8 bytes.
    expect_silence(&mut stream, Duration::from_millis(200));
    stream.write_all(&DRAFT_BODY[..3]).expect("write");
    expect_silence(&mut stream, Duration::from_millis(200));
    stream.write_all(&DRAFT_BODY[3..]).expect("write");
    assert_eq!(&read_exact::<16>(&mut stream), DRAFT_ANSWER);
    let mut client = Hixie::new(stream, &[]);
    client.send_text("later");
    assert_eq!(client.next(), Got::Text("later".into()));
}

#[test]
fn hixie76_body_never_sent_closes_after_the_handshake_timeout() {
    // Its own server: the shared one keeps the default 10 s timeout.
    let server = common::echo_server_with(|b| b.handshake_timeout(Duration::from_millis(300)));
    let started = Instant::now();
    let mut stream = raw_connect(server.local_addr());
    stream.write_all(&draft_head("/echo", "")).expect("write");
    assert!(read_head(&mut stream).starts_with("HTTP/1.1 101 WebSocket Protocol Handshake\r\n"));
    // No answer, no HTTP error (the 101 is out): the connection just ends, by the
    // handshake timeout (not at once, and well before the shared server's 10 s).
    assert_eq!(read_to_close(&mut stream), "");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "closed after {waited:?}, the handshake timeout is 300 ms"
    );
}

#[test]
fn bad_hixie76_keys_get_400() {
    let addr = server();
    for (key1, key2, why) in [
        (
            "123456",
            DRAFT_KEY2,
            "Sec-WebSocket-Key1/Key2 has no spaces",
        ),
        // 11 / 2
        (
            "1 1 x",
            DRAFT_KEY2,
            "Sec-WebSocket-Key1/Key2 number is not a multiple of its spaces",
        ),
        // over 32 bits
        (
            "99999999999 x",
            DRAFT_KEY2,
            "Sec-WebSocket-Key1/Key2 number is too large",
        ),
    ] {
        let mut stream = raw_connect(addr);
        let request = format!(
            "GET /echo HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key1: {key1}\r\nSec-WebSocket-Key2: {key2}\r\n\r\n12345678"
        );
        stream.write_all(request.as_bytes()).expect("write");
        assert_eq!(read_to_close(&mut stream), bad_request(why), "{key1}");
    }
    let mut stream = raw_connect(addr);
    let request = "GET /echo HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key1: 1 2\r\n\r\n";
    stream.write_all(request.as_bytes()).expect("write");
    assert_eq!(
        read_to_close(&mut stream),
        bad_request("hixie-76 request lacks Sec-WebSocket-Key1 or Key2")
    );
}

/// The whole answer to a refused request: `status` with `why` as its body.
fn error_response(status: &str, extra: &str, why: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{why}\n",
        why.len() + 1
    )
}

fn bad_request(why: &str) -> String {
    error_response("400 Bad Request", "", why)
}

fn upgrade_required(why: &str) -> String {
    error_response(
        "426 Upgrade Required",
        "Sec-WebSocket-Version: 13, 8, 7\r\n",
        why,
    )
}

#[test]
fn close_started_by_the_server() {
    let mut client = hixie76(server(), "/bye", 11);
    client.send_text("hi");
    assert_eq!(client.next(), Got::Text("hi".into()));
    client.send_text("bye");
    assert_eq!(client.next(), Got::Close);
    client.send(b"\xFF\x00");
    assert_eq!(client.next(), Got::Eof);
    // hixie-75 has no closing handshake: the server closes right after its 0xFF 0x00.
    let (mut client, _) = hixie75(server(), "/bye");
    client.send_text("bye");
    assert_eq!(client.next(), Got::Close);
    assert_eq!(client.next(), Got::Eof);
}

#[test]
fn binary_and_ping_are_refused_for_hixie_clients() {
    let mut client = hixie76(server(), "/probe", 12);
    // Posting all three succeeded (the handler reports it) ...
    assert_eq!(
        client.next(),
        Got::Text("posts [Ok(()), Ok(()), Ok(())]".into())
    );
    // ... but the handle's binary message and ping were dropped; its text came through.
    assert_eq!(client.next(), Got::Text("via handle".into()));
    client.send_text("go");
    assert_eq!(
        client.next(),
        Got::Text("binary Unsupported, ping Unsupported, hixie true".into())
    );
}

#[test]
fn hixie75_headers_and_echo() {
    let (mut client, head) = hixie75(server(), "/echo");
    let addr = server();
    assert_eq!(
        head,
        format!(
            "HTTP/1.1 101 Web Socket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
             Connection: Upgrade\r\nWebSocket-Origin: http://{addr}\r\n\
             WebSocket-Location: ws://{addr}/echo\r\n\r\n"
        )
    );
    client.send_text("seventy-five");
    assert_eq!(client.next(), Got::Text("seventy-five".into()));
    client.send(b"\xFF\x00");
    assert_eq!(client.next(), Got::Close);
    assert_eq!(client.next(), Got::Eof);
}

#[test]
fn route_refusing_legacy_drafts_answers_426() {
    let addr = server();
    let mut stream = raw_connect(addr);
    let mut request = draft_head("/strict", "");
    request.extend_from_slice(DRAFT_BODY);
    stream.write_all(&request).expect("write");
    assert_eq!(
        read_to_close(&mut stream),
        upgrade_required("legacy WebSocket draft hixie-76 (hybi-00) refused on this path")
    );
    let mut stream = raw_connect(addr);
    let request = format!(
        "GET /strict HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nHost: {addr}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    assert_eq!(
        read_to_close(&mut stream),
        upgrade_required("legacy WebSocket draft hixie-75 refused on this path")
    );
    // RFC 6455 and the hybi drafts are still welcome there.
    for version in [13, 8, 7] {
        let (mut stream, head) = hybi(addr, "/strict", version);
        assert_eq!(head, SWITCHING, "version {version}");
        send_frame(&mut stream, OpCode::Text, true, b"strict");
        assert_eq!(
            FrameReader::default().next(&mut stream),
            Received::Text("strict".into())
        );
    }
}

/// The answer to [`hybi`]'s request (the key is the RFC's example).
const SWITCHING: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

#[test]
fn other_versions_get_426_with_the_supported_list() {
    let (mut stream, head) = hybi(server(), "/echo", 9);
    let body = read_to_close(&mut stream);
    assert_eq!(
        head + &body,
        upgrade_required("unsupported Sec-WebSocket-Version")
    );
}

#[test]
fn every_version_at_once_on_one_handler() {
    let addr = server();
    let mut hixie = vec![hixie76(addr, "/echo", 1), hixie75(addr, "/echo").0];
    let mut hybi_clients = Vec::new();
    for version in [7, 8, 13] {
        let (stream, head) = hybi(addr, "/echo", version);
        assert_eq!(head, SWITCHING, "version {version}");
        hybi_clients.push((version, stream, FrameReader::default()));
    }
    // All five are open together; each speaks in turn, twice, and gets its echo.
    for round in 0..2 {
        for (i, client) in hixie.iter_mut().enumerate() {
            client.send_text(&format!("hixie {i} round {round}"));
        }
        for (version, stream, _) in &mut hybi_clients {
            let text = format!("v{version} round {round}");
            send_frame(stream, OpCode::Text, true, text.as_bytes());
        }
        for (i, client) in hixie.iter_mut().enumerate() {
            assert_eq!(client.next(), Got::Text(format!("hixie {i} round {round}")));
        }
        for (version, stream, reader) in &mut hybi_clients {
            let want = format!("v{version} round {round}");
            assert_eq!(reader.next(stream), Received::Text(want));
        }
    }
    // Binary still works for the RFC-framed versions.
    for (_, stream, reader) in &mut hybi_clients {
        send_frame(stream, OpCode::Binary, true, &[0, 0xFF, 1]);
        assert_eq!(reader.next(stream), Received::Binary(vec![0, 0xFF, 1]));
        send_frame(stream, OpCode::Close, true, &1000u16.to_be_bytes());
        assert_eq!(
            reader.next(stream),
            Received::Close(Some(1000), String::new())
        );
    }
    for client in &mut hixie {
        client.send(b"\xFF\x00");
        assert_eq!(client.next(), Got::Close);
        assert_eq!(client.next(), Got::Eof);
    }
}

#[test]
fn ringws_serve_speaks_every_version() {
    with_child(ringws_serve(&[]), |addr| {
        // The draft's vector, body and a frame in one write.
        let mut stream = raw_connect(addr);
        let mut request = draft_head("/echo", "");
        request.extend_from_slice(DRAFT_BODY);
        request.extend_from_slice(b"\x00seventy-six\xFF");
        stream.write_all(&request).expect("write");
        assert_eq!(
            read_head(&mut stream),
            "HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Origin: http://example.com\r\n\
             Sec-WebSocket-Location: ws://example.com/echo\r\n\r\n"
        );
        assert_eq!(&read_exact::<16>(&mut stream), DRAFT_ANSWER);
        let mut h76 = Hixie::new(stream, &[]);
        assert_eq!(h76.next(), Got::Text("seventy-six".into()));
        let (mut h75, _) = hixie75(addr, "/echo");
        h75.send_text("seventy-five");
        assert_eq!(h75.next(), Got::Text("seventy-five".into()));
        for version in [7, 8] {
            let (mut stream, head) = hybi(addr, "/echo", version);
            assert_eq!(head, SWITCHING, "version {version}");
            send_frame(&mut stream, OpCode::Text, true, b"hybi");
            assert_eq!(
                FrameReader::default().next(&mut stream),
                Received::Text("hybi".into())
            );
        }
        h76.send(b"\xFF\x00");
        assert_eq!(h76.next(), Got::Close);
        assert_eq!(h76.next(), Got::Eof);
    });
}

/// Echoes text; closes with 1000 "bye" on "bye"; panics on "boom" (on purpose); and
/// reports every `on_close` to the test thread, which does the asserting.
struct Recorder(Sender<CloseReason>);

impl Handler for Recorder {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text("bye") => conn.close(1000, "bye"),
            Message::Text("boom") => panic!("handler bug triggered on purpose"),
            Message::Text(text) => {
                conn.send_text(text);
            }
            Message::Binary(_) => {
                conn.send_text("binary from a hixie client?");
            }
        }
    }

    fn on_close(&mut self, _conn: &mut Conn<'_>, reason: CloseReason) {
        // The receiver is gone only if the test already failed.
        let _ = self.0.send(reason);
    }
}

/// A server of the test's own, so that every close it reports belongs to this test:
/// the recorder on `/record`, with the shared server's message limit.
fn recording_server() -> (RunningServer, Receiver<CloseReason>) {
    let (closes_tx, closes) = mpsc::channel();
    let server = common::builder()
        .max_message_size(MAX_MESSAGE)
        .websocket("/record", move || Recorder(closes_tx.clone()))
        .build()
        .expect("build")
        .start()
        .expect("start");
    (server, closes)
}

/// Both drafts, for the tests that run the same exchange over each.
#[derive(Clone, Copy, Debug)]
enum Draft {
    Hixie75,
    Hixie76,
}

const DRAFTS: [Draft; 2] = [Draft::Hixie75, Draft::Hixie76];

/// Opens a `draft` client on the recorder and checks that it echoes.
fn open_recorded(draft: Draft, addr: SocketAddr) -> Hixie {
    let mut client = match draft {
        Draft::Hixie75 => hixie75(addr, "/record").0,
        Draft::Hixie76 => hixie76(addr, "/record", 21),
    };
    client.send_text("open");
    assert_eq!(client.next(), Got::Text("open".into()), "{draft:?}");
    client
}

fn reason(code: CloseCode, text: &str, initiator: CloseInitiator) -> CloseReason {
    CloseReason {
        code,
        reason: text.to_owned(),
        initiator,
    }
}

/// The next `on_close` the server reported.
#[track_caller]
fn next_close(closes: &Receiver<CloseReason>) -> CloseReason {
    closes
        .recv_timeout(Duration::from_secs(10))
        .expect("on_close was not called within 10 s")
}

/// After the server stopped (and dropped every handler and the factory's sender), no
/// `on_close` is left unread: each connection reported exactly once.
#[track_caller]
fn expect_no_more_closes(server: RunningServer, closes: Receiver<CloseReason>) {
    server.shutdown().expect("clean shutdown");
    match closes.recv_timeout(Duration::from_secs(10)) {
        Err(RecvTimeoutError::Disconnected) => {}
        other => panic!("one close too many, or the server kept a handler: {other:?}"),
    }
}

#[test]
fn hixie_client_close_reports_1005_from_the_peer() {
    for draft in DRAFTS {
        let (server, closes) = recording_server();
        let mut client = open_recorded(draft, server.local_addr());
        client.send(b"\xFF\x00");
        assert_eq!(client.next(), Got::Close, "{draft:?}");
        assert_eq!(client.next(), Got::Eof, "{draft:?}");
        assert_eq!(
            next_close(&closes),
            reason(CloseCode::NO_STATUS, "", CloseInitiator::Peer),
            "{draft:?}"
        );
        expect_no_more_closes(server, closes);
    }
}

#[test]
fn hixie_invalid_utf8_reports_1007() {
    // A whole frame, and one cut off at the first byte that can never become UTF-8
    // (the server must not wait for its end).
    for wire in [&b"\x00ok\xC0\xFF"[..], b"\x00ok\xC0", b"\x00ok\xE2\x82\xFF"] {
        for draft in DRAFTS {
            let (server, closes) = recording_server();
            let mut client = open_recorded(draft, server.local_addr());
            client.send(wire);
            assert_eq!(client.next(), Got::Close, "{draft:?} {wire:?}");
            assert_eq!(client.next(), Got::Eof, "{draft:?} {wire:?}");
            assert_eq!(
                next_close(&closes),
                reason(
                    CloseCode::INVALID_PAYLOAD,
                    "text is not UTF-8",
                    CloseInitiator::Local
                ),
                "{draft:?} {wire:?}"
            );
            expect_no_more_closes(server, closes);
        }
    }
}

#[test]
fn hixie_message_over_the_limit_reports_1009() {
    // A text frame one byte over, and a length-prefixed frame declaring one byte over
    // (0x84 0x80 0x01 is 65537), whose bytes would have been discarded anyway.
    let mut text = vec![0x00];
    text.extend(std::iter::repeat_n(b'y', MAX_MESSAGE + 1));
    text.push(0xFF);
    let cases = [
        (text, "message too big"),
        (b"\x80\x84\x80\x01".to_vec(), "frame too big"),
    ];
    for (wire, why) in &cases {
        for draft in DRAFTS {
            let (server, closes) = recording_server();
            let mut client = open_recorded(draft, server.local_addr());
            // Exactly the limit is fine, both ways (0x84 0x80 0x00 is 65536).
            client.send_text(&"x".repeat(MAX_MESSAGE));
            assert_eq!(client.next(), Got::Text("x".repeat(MAX_MESSAGE)));
            let mut at_limit = b"\x80\x84\x80\x00".to_vec();
            at_limit.resize(at_limit.len() + MAX_MESSAGE, b'z');
            client.send(&at_limit);
            client.send_text("still open");
            assert_eq!(client.next(), Got::Text("still open".into()), "{draft:?}");
            // The server may close before reading it all.
            let _ = client.stream.write_all(wire);
            assert_eq!(client.next(), Got::Close, "{draft:?} {why}");
            assert_eq!(client.next(), Got::Eof, "{draft:?} {why}");
            assert_eq!(
                next_close(&closes),
                reason(CloseCode::TOO_BIG, why, CloseInitiator::Local),
                "{draft:?}"
            );
            expect_no_more_closes(server, closes);
        }
    }
}

#[test]
fn hixie_frames_of_other_types_are_skipped_not_protocol_errors() {
    // The drafts define no protocol error (nothing closes with 1002): a sentinel frame
    // of a type other than 0x00, a length-prefixed frame, and a 0xFF frame that has a
    // length (so is no close) are all read and discarded.
    for draft in DRAFTS {
        let (server, closes) = recording_server();
        let mut client = open_recorded(draft, server.local_addr());
        client.send(b"\x01skip\xFF\x7Fskip\xFF\x80\x03abc\xFF\x01z\x00after\xFF");
        assert_eq!(client.next(), Got::Text("after".into()), "{draft:?}");
        client.send(b"\xFF\x00");
        assert_eq!(client.next(), Got::Close, "{draft:?}");
        assert_eq!(client.next(), Got::Eof, "{draft:?}");
        assert_eq!(
            next_close(&closes),
            reason(CloseCode::NO_STATUS, "", CloseInitiator::Peer),
            "{draft:?}"
        );
        expect_no_more_closes(server, closes);
    }
}

#[test]
fn hixie_connection_ended_without_a_close_reports_1006() {
    for draft in DRAFTS {
        let (server, closes) = recording_server();
        let mut client = open_recorded(draft, server.local_addr());
        client.stream.shutdown(Shutdown::Write).expect("shutdown");
        assert_eq!(
            next_close(&closes),
            reason(
                CloseCode::ABNORMAL,
                "connection ended without a close frame",
                CloseInitiator::Transport
            ),
            "{draft:?}"
        );
        assert_eq!(client.next(), Got::Eof, "{draft:?}");
        expect_no_more_closes(server, closes);
    }
}

#[test]
fn hixie_close_by_the_handler_reports_its_code_once_the_close_completes() {
    let (server, closes) = recording_server();
    // hixie-76: the server waits for the client's 0xFF 0x00 before it reports.
    let mut client = open_recorded(Draft::Hixie76, server.local_addr());
    client.send_text("bye");
    assert_eq!(client.next(), Got::Close);
    assert_eq!(closes.try_recv(), Err(TryRecvError::Empty));
    client.send(b"\xFF\x00");
    assert_eq!(client.next(), Got::Eof);
    let bye = reason(CloseCode::NORMAL, "bye", CloseInitiator::Local);
    assert_eq!(next_close(&closes), bye);
    // hixie-75 has no closing handshake: its 0xFF 0x00 ends the connection at once.
    let mut client = open_recorded(Draft::Hixie75, server.local_addr());
    client.send_text("bye");
    assert_eq!(client.next(), Got::Close);
    assert_eq!(client.next(), Got::Eof);
    assert_eq!(next_close(&closes), bye);
    expect_no_more_closes(server, closes);
}

#[test]
fn hixie_handler_panic_reports_1011() {
    for draft in DRAFTS {
        let (server, closes) = recording_server();
        let mut client = open_recorded(draft, server.local_addr());
        client.send_text("boom");
        assert_eq!(client.next(), Got::Close, "{draft:?}");
        assert_eq!(client.next(), Got::Eof, "{draft:?}");
        assert_eq!(
            next_close(&closes),
            reason(
                CloseCode::INTERNAL_ERROR,
                "internal server error",
                CloseInitiator::Local
            ),
            "{draft:?}"
        );
        expect_no_more_closes(server, closes);
    }
}
