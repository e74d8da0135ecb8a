//! Shared helpers for the integration tests: start a server, speak raw frames.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

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

/// Reads a whole HTTP response (the server closes after plain HTTP answers).
pub fn read_to_close(stream: &mut TcpStream) -> String {
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
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
    /// The TCP connection ended without a close frame.
    Eof,
}

/// A client-role reader of server frames over a raw socket.
pub struct FrameReader {
    decoder: Decoder,
    buffer: Vec<u8>,
    start: usize,
    /// Report pings as `Received::Ping` instead of skipping them.
    pings: bool,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            decoder: Decoder::new(Role::Client, Limits::default()),
            buffer: Vec::new(),
            start: 0,
            pings: false,
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

    /// Reads until the next message, pong, close (or ping, `with_pings`).
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
                    Ok(0) | Err(_) => return Received::Eof,
                    Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                }
            }
        }
    }
}
