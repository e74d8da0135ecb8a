//! Shared helpers for the integration tests: start a server, speak raw frames.
#![allow(dead_code)]

pub mod redis;
pub mod seccomp;
pub mod serve;
pub mod skip;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ringws::proto::{encode_frame, Decoder, Event, Limits, OpCode, Role};
use ringws::{Builder, Conn, Handler, Message, RunningServer, Server};

/// Sends every message back as it came.
pub struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }
}

/// A builder on an ephemeral loopback port with two shards (the backend follows
/// RINGWS_BACKEND, so CI runs these tests on both).
pub fn builder() -> Builder {
    Server::builder().bind("127.0.0.1:0").shards(2)
}

/// Starts an echo server on `/echo`.
pub fn echo_server() -> RunningServer {
    echo_server_with(|builder| builder)
}

/// Starts an echo server on `/echo` with settings changed by `configure`.
pub fn echo_server_with(configure: impl FnOnce(Builder) -> Builder) -> RunningServer {
    configure(builder())
        .websocket("/echo", || Echo)
        .build()
        .expect("build")
        .start()
        .expect("start")
}

/// A blocking raw TCP client with timeouts, so a server bug fails a test instead of hanging it.
pub fn raw_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Sends an upgrade request for `path` and reads the response head.
pub fn raw_upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = raw_connect(addr);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "upgrade refused: {head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    stream
}

/// Reads an HTTP response head byte by byte (so no frame bytes are consumed).
pub fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "connection ended in the response head ({other:?}): {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// True when a read error means the peer ended the connection (a reset is how a server
/// closes a socket with unread input), false for a read timeout or anything else.
pub fn is_close(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    )
}

/// True when a read error is the socket's read timeout running out.
pub fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads everything up to the server's close (FIN or reset). A read timeout is not a
/// close: it fails the test, with what arrived so far.
#[track_caller]
pub fn read_to_close(stream: &mut TcpStream) -> String {
    String::from_utf8_lossy(&read_bytes_to_close(stream)).into_owned()
}

/// [`read_to_close`] for bytes.
#[track_caller]
pub fn read_bytes_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        Err(error) if is_close(&error) => {}
        Err(error) => panic!(
            "no close from the server ({error}) after {} bytes: {:?}",
            response.len(),
            String::from_utf8_lossy(&response[..response.len().min(2048)])
        ),
    }
    response
}

/// Reads to the server's close, which must come within `limit` and carry no more bytes.
#[track_caller]
pub fn expect_eof_within(stream: &mut TcpStream, limit: Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    let rest = read_bytes_to_close(stream);
    assert!(
        rest.is_empty(),
        "unexpected bytes before the close: {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(
        started.elapsed() < limit,
        "closed only after {:?}",
        started.elapsed()
    );
}

/// Asserts that nothing arrives on `stream` for `window` (the read times out) and the
/// connection stays open; restores a 10 s read timeout afterwards.
#[track_caller]
pub fn expect_silence(stream: &mut TcpStream, window: Duration) {
    stream.set_read_timeout(Some(window)).expect("read timeout");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(error) if is_timeout(&error) => {}
        Ok(0) => panic!("the server closed the connection during {window:?} of expected silence"),
        Ok(_) => panic!(
            "byte {:#04x} arrived during {window:?} of expected silence",
            byte[0]
        ),
        Err(error) => panic!("read failed during expected silence: {error}"),
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
}

/// Writes one masked frame, as a client must.
pub fn send_frame(stream: &mut TcpStream, opcode: OpCode, fin: bool, payload: &[u8]) {
    let mut out = Vec::new();
    encode_frame(
        &mut out,
        opcode,
        fin,
        payload,
        Some([0x37, 0xfa, 0x21, 0x3d]),
    );
    stream.write_all(&out).expect("write frame");
}

/// What a raw client reads from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Text(String),
    Binary(Vec<u8>),
    Pong(Vec<u8>),
    /// Only from a reader made with [`FrameReader::with_pings`].
    Ping(Vec<u8>),
    Close(Option<u16>, String),
    /// The TCP connection ended (FIN or reset) without a close frame. A read timeout is
    /// never reported as this: it fails the test.
    Eof,
}

/// A client-role reader of server frames over a raw socket.
pub struct FrameReader {
    decoder: Decoder,
    buffer: Vec<u8>,
    start: usize,
    /// Report pings as `Received::Ping` instead of skipping them.
    pings: bool,
    /// permessage-deflate was agreed: compressed messages are inflated with this.
    inflater: Option<ringws::proto::MessageInflater>,
    /// How many messages arrived compressed.
    pub compressed: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            decoder: Decoder::new(Role::Client, Limits::default()),
            buffer: Vec::new(),
            start: 0,
            pings: false,
            inflater: None,
            compressed: 0,
        }
    }
}

impl FrameReader {
    /// A reader that reports the server's pings too.
    pub fn with_pings() -> FrameReader {
        FrameReader {
            pings: true,
            ..FrameReader::default()
        }
    }

    /// A reader for a connection with permessage-deflate agreed: RSV1 messages are
    /// inflated with a `window_bits` inflater (context takeover unless
    /// `no_context_takeover`) and counted in [`FrameReader::compressed`].
    pub fn with_deflate(window_bits: u8, no_context_takeover: bool) -> FrameReader {
        let mut reader = FrameReader::default();
        reader.decoder.accept_compressed();
        reader.inflater = Some(ringws::proto::MessageInflater::new(
            window_bits,
            no_context_takeover,
        ));
        reader
    }

    /// Reads until the next message, pong, close (or ping, `with_pings`). Panics when the
    /// socket's read timeout runs out first: silence is not a close.
    #[track_caller]
    pub fn next(&mut self, stream: &mut TcpStream) -> Received {
        loop {
            let (consumed, event) = self
                .decoder
                .decode(&mut self.buffer[self.start..])
                .expect("server sent a valid frame");
            self.start += consumed;
            let received = match event {
                Some(Event::Text(text)) => Some(Received::Text(text.to_owned())),
                Some(Event::Binary(bytes)) => Some(Received::Binary(bytes.to_vec())),
                Some(Event::Pong(bytes)) => Some(Received::Pong(bytes.to_vec())),
                Some(Event::Ping(bytes)) if self.pings => Some(Received::Ping(bytes.to_vec())),
                Some(Event::Ping(_)) => None,
                // Only a decoder told `stream_compressed` hands out pieces.
                Some(Event::DeflatedPart { .. }) => unreachable!("whole messages only"),
                Some(Event::Deflated { text, payload }) => {
                    self.compressed += 1;
                    let inflater = self.inflater.as_mut().expect("deflate agreed");
                    let mut plain = Vec::new();
                    inflater
                        .decompress(payload, true, usize::MAX / 2, &mut plain)
                        .expect("the server's compressed message inflates");
                    Some(if text {
                        Received::Text(String::from_utf8(plain).expect("UTF-8 text"))
                    } else {
                        Received::Binary(plain)
                    })
                }
                Some(Event::Close(frame)) => {
                    Some(frame.map_or(Received::Close(None, String::new()), |f| {
                        Received::Close(Some(f.code.0), f.reason.to_owned())
                    }))
                }
                None => None,
            };
            if let Some(received) = received {
                return received;
            }
            if consumed == 0 {
                self.buffer.drain(..self.start);
                self.start = 0;
                let mut chunk = [0u8; 65536];
                match stream.read(&mut chunk) {
                    Ok(0) => return Received::Eof,
                    Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                    Err(error) if is_close(&error) => return Received::Eof,
                    Err(error) => panic!(
                        "no frame and no close from the server: {error} (read timeout {:?})",
                        stream.read_timeout().ok().flatten()
                    ),
                }
            }
        }
    }
}

/// The whole answer the server gives a request it refuses (`http::write_error`):
/// `status` is the status code and phrase ("400 Bad Request"), `headers` the extra
/// header lines before the content type ("Sec-WebSocket-Version: 13, 8, 7"), `reason`
/// the plain-text body without its final newline.
pub fn refusal(status: &str, headers: &[&str], reason: &str) -> String {
    let mut answer = format!("HTTP/1.1 {status}\r\n");
    for header in headers {
        answer.push_str(header);
        answer.push_str("\r\n");
    }
    answer.push_str(&format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{reason}\n",
        reason.len() + 1
    ));
    answer
}

/// permessage-deflate helpers (tests/deflate*.rs).
pub mod deflate;
