//! Helpers for the permessage-deflate tests (RFC 7692): upgrades that offer the
//! extension, frames with RSV bits written by hand, a reader that keeps compressed
//! payloads as they came, the echo server the raw-client tests share, and the outside
//! inflaters and clients (python3's zlib, node's `ws`, python's `websockets`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use std::time::Duration;

use ringws::proto::{
    apply_mask, Decoder, Event, FrameHeader, Limits, MessageDeflater, OpCode, Role,
};
use ringws::{Accept, Builder, DeflateOptions, RunningServer, WebSocketOptions};

use super::{builder, raw_connect, read_head, Echo, FrameReader, Received};

/// The masking key of every frame written here.
pub const MASK: [u8; 4] = [0x9a, 0x5c, 0x03, 0xe7];

/// The RSV1 bit as [`FrameHeader::rsv`] holds it.
pub const RSV1: u8 = 0b100;

/// The server's `max_message_size`.
pub const MAX_MESSAGE: usize = 1 << 20;

/// "Hello" compressed, RFC 7692 §7.2.3.1.
pub const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// "Hello" compressed in a final block (BFINAL set), RFC 7692 §7.2.3.3.
pub const HELLO_BFINAL: [u8; 7] = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// "Hello" again, a back-reference to the previous message, RFC 7692 §7.2.3.2.
pub const HELLO_AGAIN: [u8; 5] = [0xf2, 0x00, 0x11, 0x00, 0x00];

/// An echo route with `deflate`, or without the extension.
pub fn route(builder: Builder, path: &str, deflate: Option<DeflateOptions>) -> Builder {
    let mut options = WebSocketOptions::default();
    if let Some(deflate) = deflate {
        options = options.deflate(deflate);
    }
    builder.websocket_with_options(path, options, |_| Ok(Accept::new(Echo)))
}

/// Echo routes: `/ct` context takeover, `/ct0` the same compressing every message,
/// `/nct` and `/nct0` without context takeover, `/w9` with 9-bit windows, `/hib`
/// hibernating after 200 ms, `/hib0` with no live streams allowed, `/plain` without
/// the extension; messages capped at [`MAX_MESSAGE`]; on the shared [`builder`].
pub fn server() -> RunningServer {
    let ct = DeflateOptions::context_takeover;
    let nct = DeflateOptions::no_context_takeover;
    let mut builder = builder().max_message_size(MAX_MESSAGE);
    for (path, deflate) in [
        ("/ct", Some(ct())),
        ("/ct0", Some(ct().threshold(0))),
        ("/nct", Some(nct())),
        ("/nct0", Some(nct().threshold(0))),
        (
            "/w9",
            Some(ct().server_max_window_bits(9).client_max_window_bits(9)),
        ),
        (
            "/hib",
            Some(
                ct().threshold(0)
                    .hibernate_after(Duration::from_millis(200)),
            ),
        ),
        ("/hib0", Some(ct().threshold(0).max_live_streams(0))),
        ("/plain", None),
    ] {
        builder = route(builder, path, deflate);
    }
    let server = builder.build().expect("build");
    eprintln!("backend: {:?}", server.backend());
    server.start().expect("start")
}

/// Connects to `path` offering `offers`; asserts the answer is `answer`.
#[track_caller]
pub fn connect(
    server: &RunningServer,
    path: &str,
    offers: &[&str],
    answer: Option<&str>,
) -> TcpStream {
    let (stream, head) = upgrade_offering(server.local_addr(), path, offers);
    assert_eq!(
        extension_answer(&head).as_deref(),
        answer,
        "{path} offered {offers:?}: {head}"
    );
    stream
}

/// The answer to a plain `permessage-deflate` offer on `/ct0` or `/nct0`.
pub fn answer_for(path: &str) -> &'static str {
    match path {
        "/ct" | "/ct0" => "permessage-deflate",
        "/nct0" => "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        _ => unreachable!("{path}"),
    }
}

/// Connects to `/ct`, `/ct0` or `/nct0` with a plain offer, its answer checked, and a reader
/// inflating in that mode.
pub fn connect_to_mode(server: &RunningServer, path: &str) -> (TcpStream, FrameReader) {
    let ws = connect(
        server,
        path,
        &["permessage-deflate"],
        Some(answer_for(path)),
    );
    (ws, FrameReader::with_deflate(15, path == "/nct0"))
}

/// Reads the server's close and asserts its code.
#[track_caller]
pub fn expect_close(stream: &mut TcpStream, reader: &mut FrameReader, code: u16) -> String {
    match reader.next(stream) {
        Received::Close(Some(got), reason) if got == code => reason,
        other => panic!("expected close {code}, got {other:?}"),
    }
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

/// Text of `len` bytes made of pseudo-random words: compressible, and different for
/// each `seed`.
pub fn words(len: usize, seed: u64) -> String {
    const WORDS: [&str; 12] = [
        "deflate ",
        "window ",
        "context ",
        "takeover ",
        "frame ",
        "message ",
        "server ",
        "client ",
        "shard ",
        "zlib ",
        "hibernate ",
        "stream ",
    ];
    let mut text = String::new();
    for byte in noise(len, seed) {
        text.push_str(WORDS[usize::from(byte) % WORDS.len()]);
        if text.len() >= len {
            break;
        }
    }
    text.truncate(len);
    text
}

/// `len` pseudo-random lowercase letters: little to compress within the text, so a
/// repeat of it compresses only by reaching back into history.
pub fn letters(len: usize, seed: u64) -> String {
    noise(len, seed)
        .iter()
        .map(|b| char::from(b'a' + b % 26))
        .collect()
}

/// Sends an upgrade request for `path` with one `Sec-WebSocket-Extensions` header per
/// entry of `offers`; asserts the 101 and returns the stream and the response head.
pub fn upgrade_offering(addr: SocketAddr, path: &str, offers: &[&str]) -> (TcpStream, String) {
    let mut stream = raw_connect(addr);
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for offer in offers {
        request.push_str(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "upgrade refused: {head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    (stream, head)
}

/// Every `Sec-WebSocket-Extensions` value of a response head (name matched without
/// case), in order.
pub fn extension_answers(head: &str) -> Vec<String> {
    head.split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, value)| value.trim().to_owned())
        .collect()
}

/// The single `Sec-WebSocket-Extensions` answer of a head, `None` when there is none
/// (and a failure when there are several).
#[track_caller]
pub fn extension_answer(head: &str) -> Option<String> {
    let mut answers = extension_answers(head);
    assert!(answers.len() <= 1, "more than one answer: {head}");
    answers.pop()
}

/// Writes one masked frame with the given RSV bits and raw opcode.
pub fn send_frame_rsv(stream: &mut TcpStream, rsv: u8, opcode: u8, fin: bool, payload: &[u8]) {
    write_frame_rsv(stream, rsv, opcode, fin, payload).expect("write frame");
}

/// [`send_frame_rsv`], returning the write's error.
pub fn write_frame_rsv(
    stream: &mut TcpStream,
    rsv: u8,
    opcode: u8,
    fin: bool,
    payload: &[u8],
) -> io::Result<()> {
    let header = FrameHeader {
        fin,
        rsv,
        opcode,
        mask: Some(MASK),
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; FrameHeader::MAX_LEN];
    let len = header.write(&mut head);
    let mut out = head[..len].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], MASK, 0);
    stream.write_all(&out)
}

/// Sends an already compressed message payload in one RSV1 frame.
pub fn send_deflated(stream: &mut TcpStream, opcode: OpCode, compressed: &[u8]) {
    send_frame_rsv(stream, RSV1, opcode as u8, true, compressed);
}

/// Compresses `payload` with `deflater` and sends it in one RSV1 frame; returns the
/// compressed size.
pub fn send_compressed(
    stream: &mut TcpStream,
    deflater: &mut MessageDeflater,
    opcode: OpCode,
    payload: &[u8],
) -> usize {
    let mut body = Vec::new();
    deflater.compress(payload, &mut body);
    send_deflated(stream, opcode, &body);
    body.len()
}

/// Sends `compressed` as a fragmented message of `pieces` frames (RSV1 on the first
/// only, as RFC 7692 §6.1 requires). The server may fail the message before its end
/// and close: the frames after that are not sent (the write fails with a broken pipe
/// or a reset, which is not an error here); the caller reads the close.
pub fn send_deflated_fragmented(
    stream: &mut TcpStream,
    opcode: OpCode,
    compressed: &[u8],
    pieces: usize,
) {
    let size = compressed.len().div_ceil(pieces).max(1);
    let chunks: Vec<&[u8]> = compressed.chunks(size).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let (rsv, code) = if i == 0 {
            (RSV1, opcode as u8)
        } else {
            (0, OpCode::Continuation as u8)
        };
        match write_frame_rsv(stream, rsv, code, i + 1 == chunks.len(), chunk) {
            Ok(()) => {}
            Err(error) if is_closed_for_writing(&error) => return,
            Err(error) => panic!("write frame {i}: {error}"),
        }
    }
}

/// True when a write failed because the peer closed the connection.
pub fn is_closed_for_writing(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// What [`RawReader`] reads: a data message as it came (compressed or not) or a close.
#[derive(Debug, PartialEq, Eq)]
pub enum RawMessage {
    /// RSV1 set: the payload still compressed (without the `00 00 ff ff` tail).
    Deflated {
        text: bool,
        payload: Vec<u8>,
    },
    Text(String),
    Binary(Vec<u8>),
    Close(Option<u16>, String),
    Eof,
}

/// A client-role reader that keeps compressed payloads as they came, for inflating
/// them with something else than ringws.
pub struct RawReader {
    decoder: Decoder,
    buffer: Vec<u8>,
    start: usize,
}

impl Default for RawReader {
    fn default() -> Self {
        let mut decoder = Decoder::new(Role::Client, Limits::default());
        decoder.accept_compressed();
        RawReader {
            decoder,
            buffer: Vec::new(),
            start: 0,
        }
    }
}

impl RawReader {
    /// The next data message or close (pings and pongs skipped).
    #[track_caller]
    pub fn next(&mut self, stream: &mut TcpStream) -> RawMessage {
        loop {
            let (consumed, event) = self
                .decoder
                .decode(&mut self.buffer[self.start..])
                .expect("server sent a valid frame");
            self.start += consumed;
            let message = match event {
                Some(Event::Deflated { text, payload }) => Some(RawMessage::Deflated {
                    text,
                    payload: payload.to_vec(),
                }),
                Some(Event::Text(text)) => Some(RawMessage::Text(text.to_owned())),
                Some(Event::Binary(bytes)) => Some(RawMessage::Binary(bytes.to_vec())),
                Some(Event::Close(frame)) => {
                    Some(frame.map_or(RawMessage::Close(None, String::new()), |f| {
                        RawMessage::Close(Some(f.code.0), f.reason.to_owned())
                    }))
                }
                // Pings, pongs; pieces never come (the decoder assembles).
                _ => None,
            };
            if let Some(message) = message {
                return message;
            }
            if consumed == 0 {
                self.buffer.drain(..self.start);
                self.start = 0;
                let mut chunk = [0u8; 65536];
                match stream.read(&mut chunk) {
                    Ok(0) => return RawMessage::Eof,
                    Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                    Err(error) if super::is_close(&error) => return RawMessage::Eof,
                    Err(error) => panic!("no frame and no close from the server: {error}"),
                }
            }
        }
    }
}

/// The outcome of running an outside tool.
pub enum Outside<T> {
    /// It ran and answered.
    Ran(T),
    /// It is not on this machine (the reason).
    Missing(String),
}

/// Inflates the compressed message payloads `messages` (tails not included) in order,
/// with context takeover, by python3's zlib with a raw window of `wbits` bits
/// (`tests/support/inflate_window.py`). The input is fed one byte per call, so that
/// zlib checks every match distance against the window (within one call zlib accepts
/// distances back into that call's own output, whatever the window).
pub fn python_inflate(wbits: u8, messages: &[Vec<u8>]) -> Outside<Result<Vec<Vec<u8>>, String>> {
    let script = support_dir().join("inflate_window.py");
    let child = Command::new("python3")
        .arg(&script)
        .arg(wbits.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => return Outside::Missing(format!("python3 cannot run: {error}")),
    };
    let mut input = Vec::new();
    for message in messages {
        input.extend_from_slice(&(message.len() as u32).to_be_bytes());
        input.extend_from_slice(message);
    }
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("python3 output");
    writer.join().expect("writer").expect("write to python3");
    if !output.status.success() {
        return Outside::Ran(Err(format!(
            "python3 failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let mut plain = Vec::new();
    let mut rest = output.stdout.as_slice();
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        plain.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    Outside::Ran(Ok(plain))
}

/// `tests/support/`.
pub fn support_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support")
}

/// The directory holding node's `ws` package (`node_modules/ws`), installed with npm
/// under the target directory on first use.
pub fn node_ws() -> Outside<PathBuf> {
    static INSTALL: OnceLock<Mutex<Result<PathBuf, String>>> = OnceLock::new();
    let result = INSTALL.get_or_init(|| Mutex::new(install_node_ws()));
    match &*result.lock().unwrap() {
        Ok(path) => Outside::Ran(path.clone()),
        Err(why) => Outside::Missing(why.clone()),
    }
}

fn install_node_ws() -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("node-ws");
    let module = dir.join("node_modules").join("ws");
    let node = Command::new("node").arg("--version").output();
    if !node.as_ref().is_ok_and(|o| o.status.success()) {
        return Err(format!("node cannot run: {node:?}"));
    }
    if module.join("package.json").exists() {
        return Ok(module);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let npm = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "ws@8"])
        .current_dir(&dir)
        .output()
        .map_err(|e| format!("npm cannot run: {e}"))?;
    if !npm.status.success() || !module.join("package.json").exists() {
        return Err(format!(
            "npm install ws@8 failed ({}): {}",
            npm.status,
            String::from_utf8_lossy(&npm.stderr)
        ));
    }
    Ok(module)
}

/// A python3 with the `websockets` package, in a virtual environment under the
/// target directory made on first use (pip install from the package registry).
pub fn python_websockets() -> Outside<PathBuf> {
    static INSTALL: OnceLock<Mutex<Result<PathBuf, String>>> = OnceLock::new();
    let result = INSTALL.get_or_init(|| Mutex::new(install_python_websockets()));
    match &*result.lock().unwrap() {
        Ok(path) => Outside::Ran(path.clone()),
        Err(why) => Outside::Missing(why.clone()),
    }
}

fn install_python_websockets() -> Result<PathBuf, String> {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("py-websockets");
    let python = venv.join("bin").join("python");
    let has = |python: &PathBuf| {
        Command::new(python)
            .args(["-c", "import websockets.sync.client"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has(&python) {
        return Ok(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .map_err(|e| format!("python3 cannot run: {e}"))?;
    if !made.status.success() {
        return Err(format!(
            "python3 -m venv failed: {}",
            String::from_utf8_lossy(&made.stderr)
        ));
    }
    let pip = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "websockets>=14,<18"])
        .output()
        .map_err(|e| format!("pip cannot run: {e}"))?;
    if !pip.status.success() || !has(&python) {
        return Err(format!(
            "pip install websockets failed ({}): {}",
            pip.status,
            String::from_utf8_lossy(&pip.stderr)
        ));
    }
    Ok(python)
}
