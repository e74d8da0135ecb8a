//! One client connection: TCP connect, the upgrade handshake and frame I/O, on
//! ringws's sans-I/O client role: RFC 6455 (masked frames out, [`Decoder`] in client
//! role) or the legacy hixie-76 draft ([`Hixie76Client`], `0x00 … 0xFF` text frames,
//! [`HixieDecoder`] in), chosen per connection by [`Protocol`].

use crate::deflate::{extensions_header, parse_deflate_answer, DeflateCodec, DeflateCounts};
use crate::deflate::{DeflateAnswer, DEFLATE_OFFER};
use crate::target::Target;
use ringws::handshake::client::{Hixie76Client, HixieKey};
use ringws::handshake::{
    client_key, read_server_response, write_client_request, EXTENSIONS_HEADER,
};
use ringws::proto::{
    encode_close, encode_frame, encode_hixie_close, encode_hixie_text, CloseCode, Decoder, Event,
    HixieDecoder, HixieEvent, Limits, OpCode, Role,
};
use std::fmt;
use std::io;
use std::str::FromStr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Bytes read per `read` call.
const READ_SIZE: usize = 16 * 1024;
/// Largest response head accepted during the handshake.
const MAX_HEAD: usize = 16 * 1024;

/// A cheap xorshift64* generator for mask keys and handshake nonces (not for secrets).
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (any value; zero is replaced).
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A frame mask key.
    pub fn mask(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_ne_bytes()
    }

    /// A handshake nonce.
    pub fn nonce(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next_u64().to_ne_bytes());
        out[8..].copy_from_slice(&self.next_u64().to_ne_bytes());
        out
    }

    /// A hixie-76 key: 1 to 12 spaces and a number whose product with them fits 32 bits.
    pub fn hixie_key(&mut self) -> HixieKey {
        let r = self.next_u64();
        let spaces = (r % 12) as u32 + 1;
        HixieKey {
            number: (r >> 32) as u32 / spaces,
            spaces,
        }
    }

    /// A complete hixie-76 client handshake: two keys and the 8-byte body.
    pub fn hixie76(&mut self) -> Option<Hixie76Client> {
        let (key1, key2) = (self.hixie_key(), self.hixie_key());
        Hixie76Client::new(key1, key2, self.next_u64().to_ne_bytes())
    }
}

/// The wire protocol a connection speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// RFC 6455 (the default).
    #[default]
    Rfc6455,
    /// The legacy hixie-76 (hybi-00) draft: text messages only, no ping/pong, close is
    /// `0xFF 0x00`.
    Hixie76,
}

impl Protocol {
    /// The name used on the command line and in JSON settings.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Rfc6455 => "rfc6455",
            Protocol::Hixie76 => "hixie76",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Protocol, String> {
        match s.to_ascii_lowercase().as_str() {
            "rfc6455" => Ok(Protocol::Rfc6455),
            "hixie76" | "hixie-76" => Ok(Protocol::Hixie76),
            _ => Err(format!("{s:?}: expected rfc6455 or hixie76")),
        }
    }
}

/// Why a connection failed; each kind is counted separately in the reports.
#[derive(Debug)]
pub enum ConnError {
    /// TCP connect failed.
    Connect(io::Error),
    /// The server's answer to the upgrade was not a valid 101.
    Handshake(String),
    /// The server sent frames that violate the protocol, or echoed the wrong thing (or
    /// a message the protocol cannot carry was sent, e.g. binary over hixie-76).
    Protocol(String),
    /// The server closed the connection (close frame or EOF) while it was in use.
    Closed(String),
    /// A read or write failed after connecting.
    Io(io::Error),
    /// Connect, handshake or close took too long.
    Timeout(&'static str),
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Connect(e) => write!(f, "connect: {e}"),
            ConnError::Handshake(e) => write!(f, "handshake: {e}"),
            ConnError::Protocol(e) => write!(f, "protocol: {e}"),
            ConnError::Closed(e) => write!(f, "closed: {e}"),
            ConnError::Io(e) => write!(f, "io: {e}"),
            ConnError::Timeout(what) => write!(f, "timeout: {what}"),
        }
    }
}

/// A data message or pong from the server, borrowed from the read buffer.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message (RFC 6455 only).
    Binary(&'a [u8]),
    /// A pong (RFC 6455 only).
    Pong(&'a [u8]),
}

/// The receive side of either protocol.
enum Dec {
    Rfc6455(Decoder),
    Hixie76(HixieDecoder),
}

/// What one decode step gave, either protocol.
enum Got<'a> {
    Msg(Incoming<'a>),
    Ping(&'a [u8]),
    Close(Option<u16>),
    Nothing,
}

/// What [`WsConn::pump`] saw besides messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pumped {
    /// Still open.
    Open,
    /// The server sent a close frame (with its code, if any); our answer is queued.
    PeerClosed(Option<u16>),
    /// The server closed the TCP connection.
    Eof,
}

/// One open WebSocket client connection, RFC 6455 or hixie-76.
pub struct WsConn {
    stream: TcpStream,
    protocol: Protocol,
    dec: Dec,
    rbuf: Vec<u8>,
    rlen: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    rng: XorShift,
    close_sent: bool,
    /// permessage-deflate, when asked for and agreed.
    deflate: Option<Box<DeflateCodec>>,
}

/// permessage-deflate as the client asks for it (`--deflate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateRequest {
    /// zlib level of what the client sends (0..=9).
    pub level: u32,
}

impl WsConn {
    /// TCP connect to `target`, send the upgrade request of `protocol` and wait for a
    /// valid 101 (for hixie-76: the head and the 16-byte challenge answer), all within
    /// `timeout`. Bytes after the handshake are kept for the first [`pump`].
    ///
    /// [`pump`]: WsConn::pump
    pub async fn connect(
        target: &Target,
        protocol: Protocol,
        rng: XorShift,
        timeout: Duration,
    ) -> Result<WsConn, ConnError> {
        WsConn::connect_with(target, protocol, rng, timeout, None).await
    }

    /// [`connect`](WsConn::connect), offering permessage-deflate ([`DEFLATE_OFFER`])
    /// when `deflate` is given (RFC 6455 only): the server must agree, or the handshake
    /// fails; then every data message is sent compressed and compressed echoes are
    /// inflated.
    pub async fn connect_with(
        target: &Target,
        protocol: Protocol,
        rng: XorShift,
        timeout: Duration,
        deflate: Option<DeflateRequest>,
    ) -> Result<WsConn, ConnError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(target.addr())).await {
            Err(_) => return Err(ConnError::Timeout("tcp connect")),
            Ok(Err(e)) => return Err(ConnError::Connect(e)),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let mut conn = WsConn {
            stream,
            protocol,
            dec: match protocol {
                Protocol::Rfc6455 => Dec::Rfc6455(Decoder::new(Role::Client, Limits::default())),
                Protocol::Hixie76 => Dec::Hixie76(HixieDecoder::new(Limits::default())),
            },
            rbuf: Vec::new(),
            rlen: 0,
            wbuf: Vec::with_capacity(256),
            wpos: 0,
            rng,
            close_sent: false,
            deflate: None,
        };
        let (host, resource) = (&target.host_header, &target.path_and_query);
        let done = match protocol {
            Protocol::Rfc6455 => {
                let key = client_key(conn.rng.nonce());
                let offer = [(EXTENSIONS_HEADER, DEFLATE_OFFER)];
                let extra: &[(&str, &str)] = if deflate.is_some() { &offer } else { &[] };
                write_client_request(&mut conn.wbuf, host, resource, &key, &[], extra);
                let check =
                    |head: &[u8]| read_server_response(head, &key).map_err(|e| e.to_string());
                tokio::time::timeout(timeout, conn.handshake(check)).await
            }
            Protocol::Hixie76 => {
                let client = conn
                    .rng
                    .hixie76()
                    .ok_or_else(|| ConnError::Handshake("invalid hixie-76 key".into()))?;
                let origin = format!("http://{host}");
                client.write_request(&mut conn.wbuf, host, resource, &origin, None);
                let check = |head: &[u8]| client.check_response(head).map_err(|e| e.to_string());
                tokio::time::timeout(timeout, conn.handshake(check)).await
            }
        };
        let head = match done {
            Err(_) => return Err(ConnError::Timeout("handshake")),
            Ok(r) => r?,
        };
        if let (Some(req), Protocol::Rfc6455) = (deflate, protocol) {
            let answer = deflate_answer(&head)?;
            if let Dec::Rfc6455(d) = &mut conn.dec {
                d.accept_compressed();
            }
            let max = Limits::default().max_message_size;
            conn.deflate = Some(Box::new(DeflateCodec::new(&answer, req.level, max)));
        }
        Ok(conn)
    }

    /// What the server agreed to and what went through permessage-deflate so far
    /// (`None` without it).
    pub fn deflate_state(&self) -> Option<(DeflateAnswer, DeflateCounts)> {
        self.deflate.as_ref().map(|d| (d.answer, d.counts))
    }

    /// The protocol this connection speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Sends the request, then reads until `check` (the protocol's response check:
    /// `Ok(None)` = read more, `Ok(Some(len))` = handshake of `len` bytes accepted);
    /// returns the accepted response head.
    async fn handshake(
        &mut self,
        check: impl Fn(&[u8]) -> Result<Option<usize>, String>,
    ) -> Result<Vec<u8>, ConnError> {
        self.flush().await?;
        let mut head = Vec::with_capacity(512);
        let mut chunk = [0u8; 2048];
        loop {
            let n = self.stream.read(&mut chunk).await.map_err(ConnError::Io)?;
            if n == 0 {
                return Err(ConnError::Handshake(
                    "connection closed before the 101".into(),
                ));
            }
            head.extend_from_slice(&chunk[..n]);
            match check(&head) {
                Ok(None) if head.len() > MAX_HEAD => {
                    return Err(ConnError::Handshake("response head too large".into()))
                }
                Ok(None) => {}
                Ok(Some(head_len)) => {
                    self.rbuf = vec![0; READ_SIZE.max(head.len() - head_len)];
                    let rest = &head[head_len..];
                    self.rbuf[..rest.len()].copy_from_slice(rest);
                    self.rlen = rest.len();
                    head.truncate(head_len);
                    return Ok(head);
                }
                Err(e) => return Err(ConnError::Handshake(e)),
            }
        }
    }

    /// Queues a frame (masked, on RFC 6455) and tries to write it at once (without
    /// waiting). On hixie-76 only [`OpCode::Text`] with UTF-8 `payload` can be sent.
    pub fn send(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), ConnError> {
        self.queue(opcode, payload)?;
        self.try_flush()
    }

    /// Queues a frame like [`send`] without writing it: queue a batch, then write it
    /// with one [`try_flush`] (one `write` for all of them).
    ///
    /// [`send`]: WsConn::send
    /// [`try_flush`]: WsConn::try_flush
    pub fn queue(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), ConnError> {
        match self.protocol {
            Protocol::Rfc6455 => {
                let mask = self.rng.mask();
                match &mut self.deflate {
                    None => encode_frame(&mut self.wbuf, opcode, true, payload, Some(mask)),
                    Some(z) => z.queue(&mut self.wbuf, opcode, payload, mask),
                }
            }
            Protocol::Hixie76 => {
                if opcode != OpCode::Text {
                    return Err(ConnError::Protocol(format!(
                        "hixie-76 has text messages only, cannot send {opcode:?}"
                    )));
                }
                let text = std::str::from_utf8(payload)
                    .map_err(|_| ConnError::Protocol("hixie-76 text is not UTF-8".into()))?;
                encode_hixie_text(&mut self.wbuf, text);
            }
        }
        Ok(())
    }

    /// Queues the close (a 1000 close frame, or hixie-76's `0xFF 0x00`) once and tries
    /// to write it.
    pub fn send_close(&mut self) -> Result<(), ConnError> {
        if !self.close_sent {
            self.close_sent = true;
            queue_close(self.protocol, &mut self.wbuf, &mut self.rng);
        }
        self.try_flush()
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Writes what is queued as far as the socket takes it now, without waiting (what
    /// is left goes out in a later [`pump`](WsConn::pump) or [`flush`](WsConn::flush)).
    pub fn try_flush(&mut self) -> Result<(), ConnError> {
        while self.wpos < self.wbuf.len() {
            match self.stream.try_write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(ConnError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(())
    }

    /// Writes everything queued, waiting as needed.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        if self.wpos < self.wbuf.len() {
            self.stream
                .write_all(&self.wbuf[self.wpos..])
                .await
                .map_err(ConnError::Io)?;
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(())
    }

    /// Waits until the socket is readable (or writable while bytes are queued), writes
    /// what it can, reads what arrived and hands each complete message or pong to `on`.
    /// Pings are answered with pongs; a close (frame, or hixie-76's `0xFF 0x00`) is
    /// answered and reported.
    pub async fn pump(&mut self, on: &mut impl FnMut(Incoming<'_>)) -> Result<Pumped, ConnError> {
        if self.rlen > 0 {
            return self.decode_buffered(on);
        }
        if self.pending() == 0 {
            // The common case: only reading. `AsyncRead` (not `try_read`) because after
            // a short read it knows the socket is drained and waits for the next epoll
            // event instead of trying another `read` that would fail with EAGAIN.
            let n = self
                .stream
                .read(&mut self.rbuf)
                .await
                .map_err(ConnError::Io)?;
            if n == 0 {
                return Ok(Pumped::Eof);
            }
            self.rlen = n;
            return self.decode_buffered(on);
        }
        let ready = self
            .stream
            .ready(Interest::READABLE | Interest::WRITABLE)
            .await
            .map_err(ConnError::Io)?;
        if ready.is_writable() {
            self.try_flush()?;
        }
        if ready.is_readable() || ready.is_read_closed() {
            match self.stream.try_read(&mut self.rbuf) {
                Ok(0) => return Ok(Pumped::Eof),
                Ok(n) => {
                    self.rlen = n;
                    return self.decode_buffered(on);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
        Ok(Pumped::Open)
    }

    fn decode_buffered(&mut self, on: &mut impl FnMut(Incoming<'_>)) -> Result<Pumped, ConnError> {
        let WsConn {
            protocol,
            dec,
            rbuf,
            rlen,
            wbuf,
            rng,
            close_sent,
            deflate,
            ..
        } = self;
        let len = std::mem::take(rlen);
        let mut pos = 0;
        let mut outcome = Pumped::Open;
        let protocol_error = |e: ringws::proto::ProtocolError| ConnError::Protocol(e.to_string());
        while pos < len {
            let input = &mut rbuf[pos..len];
            let (n, got) = match dec {
                Dec::Rfc6455(d) => {
                    let (n, ev) = d.decode(input).map_err(protocol_error)?;
                    let got = match ev {
                        Some(Event::Text(t)) => {
                            if let Some(z) = deflate {
                                z.count_plain(t.len());
                            }
                            Got::Msg(Incoming::Text(t))
                        }
                        Some(Event::Binary(b)) => {
                            if let Some(z) = deflate {
                                z.count_plain(b.len());
                            }
                            Got::Msg(Incoming::Binary(b))
                        }
                        Some(Event::Pong(p)) => Got::Msg(Incoming::Pong(p)),
                        Some(Event::Ping(p)) => Got::Ping(p),
                        Some(Event::Close(frame)) => Got::Close(frame.map(|f| f.code.0)),
                        // The decoder accepts RSV1 only once deflate is agreed.
                        Some(Event::Deflated { text, payload }) => {
                            let Some(z) = deflate else {
                                return Err(ConnError::Protocol(
                                    "unexpected compressed message".into(),
                                ));
                            };
                            let plain = z.inflate(payload).map_err(|e| {
                                ConnError::Protocol(format!("compressed message: {e}"))
                            })?;
                            if text {
                                Got::Msg(Incoming::Text(std::str::from_utf8(plain).map_err(
                                    |_| ConnError::Protocol("inflated text is not UTF-8".into()),
                                )?))
                            } else {
                                Got::Msg(Incoming::Binary(plain))
                            }
                        }
                        // Only with `Decoder::stream_compressed` (not asked for here).
                        Some(Event::DeflatedPart { payload, .. }) => {
                            let Some(z) = deflate else {
                                return Err(ConnError::Protocol(
                                    "unexpected compressed message".into(),
                                ));
                            };
                            z.inflate_part(payload).map_err(|e| {
                                ConnError::Protocol(format!("compressed message: {e}"))
                            })?;
                            Got::Nothing
                        }
                        None => Got::Nothing,
                    };
                    (n, got)
                }
                Dec::Hixie76(d) => {
                    let (n, ev) = d.decode(input).map_err(protocol_error)?;
                    let got = match ev {
                        Some(HixieEvent::Text(t)) => Got::Msg(Incoming::Text(t)),
                        Some(HixieEvent::Close) => Got::Close(None),
                        None => Got::Nothing,
                    };
                    (n, got)
                }
            };
            pos += n;
            match got {
                Got::Msg(m) => on(m),
                Got::Ping(p) if !*close_sent => {
                    encode_frame(wbuf, OpCode::Pong, true, p, Some(rng.mask()));
                }
                Got::Ping(_) => {}
                Got::Close(code) => {
                    outcome = Pumped::PeerClosed(code);
                    if !*close_sent {
                        *close_sent = true;
                        queue_close(*protocol, wbuf, rng);
                    }
                    break;
                }
                Got::Nothing if n == 0 => break,
                Got::Nothing => {}
            }
        }
        self.try_flush()?;
        Ok(outcome)
    }

    /// Sends a close frame and waits (up to `timeout`) for the server's close or EOF.
    /// Returns true when the closing handshake completed in time.
    pub async fn close(mut self, timeout: Duration) -> bool {
        if self.send_close().is_err() {
            return false;
        }
        let done = async {
            loop {
                match self.pump(&mut |_| {}).await {
                    Ok(Pumped::Open) => {}
                    Ok(_) => return true,
                    Err(_) => return false,
                }
            }
        };
        tokio::time::timeout(timeout, done).await.unwrap_or(false)
    }
}

/// The agreed permessage-deflate parameters from the 101 `head`, or why there are none.
fn deflate_answer(head: &[u8]) -> Result<DeflateAnswer, ConnError> {
    let value = extensions_header(head).unwrap_or_default();
    match parse_deflate_answer(&value) {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(ConnError::Handshake(
            "permessage-deflate offered (--deflate) but the server did not agree \
             (no Sec-WebSocket-Extensions in its 101)"
                .into(),
        )),
        Err(e) => Err(ConnError::Handshake(format!(
            "bad Sec-WebSocket-Extensions answer {value:?}: {e}"
        ))),
    }
}

/// Connects once with [`DEFLATE_OFFER`] and returns what the server agreed to (or
/// why not), then closes: for a clear error before a run that needs deflate.
pub fn probe_deflate(target: &Target, level: u32) -> Result<DeflateAnswer, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let timeout = Duration::from_secs(10);
        let req = Some(DeflateRequest { level });
        let conn = WsConn::connect_with(target, Protocol::Rfc6455, XorShift::new(1), timeout, req)
            .await
            .map_err(|e| e.to_string())?;
        let answer = conn.deflate.as_ref().map(|d| d.answer);
        conn.close(Duration::from_secs(1)).await;
        answer.ok_or_else(|| "permessage-deflate not agreed".to_string())
    })
}

/// Appends `protocol`'s close: a masked 1000 close frame, or hixie-76's `0xFF 0x00`.
fn queue_close(protocol: Protocol, wbuf: &mut Vec<u8>, rng: &mut XorShift) {
    match protocol {
        Protocol::Rfc6455 => encode_close(wbuf, Some(CloseCode::NORMAL), "", Some(rng.mask())),
        Protocol::Hixie76 => encode_hixie_close(wbuf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xorshift_varies() {
        let mut r = XorShift::new(0);
        let a = r.nonce();
        let b = r.nonce();
        assert_ne!(a, b);
        assert_ne!(r.mask(), r.mask());
    }

    #[test]
    fn hixie_keys_are_valid() {
        let mut r = XorShift::new(7);
        for _ in 0..10_000 {
            let key = r.hixie_key();
            assert!((1..=12).contains(&key.spaces), "{key:?}");
            assert!(key.to_header_value().is_some(), "{key:?}");
        }
        assert!(r.hixie76().is_some());
        assert_ne!(r.hixie76(), r.hixie76());
    }

    #[test]
    fn protocol_names() {
        for p in [Protocol::Rfc6455, Protocol::Hixie76] {
            assert_eq!(p.name().parse::<Protocol>(), Ok(p));
        }
        assert_eq!("HIXIE-76".parse::<Protocol>(), Ok(Protocol::Hixie76));
        assert_eq!(Protocol::default(), Protocol::Rfc6455);
        assert!("hybi10".parse::<Protocol>().is_err());
    }
}
