//! One client connection: TCP connect, the upgrade handshake and frame I/O, on
//! ringws's sans-I/O client role (masked frames out, [`Decoder`] in client role).

use crate::target::Target;
use ringws::handshake::{client_key, read_server_response, write_client_request};
use ringws::proto::{encode_close, encode_frame, CloseCode, Decoder, Event, Limits, OpCode, Role};
use std::fmt;
use std::io;
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
}

/// Why a connection failed; each kind is counted separately in the reports.
#[derive(Debug)]
pub enum ConnError {
    /// TCP connect failed.
    Connect(io::Error),
    /// The server's answer to the upgrade was not a valid 101.
    Handshake(String),
    /// The server sent frames that violate RFC 6455, or echoed the wrong thing.
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
    /// A binary message.
    Binary(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
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

/// One open WebSocket client connection.
pub struct WsConn {
    stream: TcpStream,
    dec: Decoder,
    rbuf: Vec<u8>,
    rlen: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    rng: XorShift,
    close_sent: bool,
}

impl WsConn {
    /// TCP connect to `target`, send the upgrade request and wait for a valid 101, all
    /// within `timeout`. Bytes after the 101 head are kept for the first [`pump`].
    ///
    /// [`pump`]: WsConn::pump
    pub async fn connect(
        target: &Target,
        rng: XorShift,
        timeout: Duration,
    ) -> Result<WsConn, ConnError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(target.addr())).await {
            Err(_) => return Err(ConnError::Timeout("tcp connect")),
            Ok(Err(e)) => return Err(ConnError::Connect(e)),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let mut conn = WsConn {
            stream,
            dec: Decoder::new(Role::Client, Limits::default()),
            rbuf: Vec::new(),
            rlen: 0,
            wbuf: Vec::with_capacity(256),
            wpos: 0,
            rng,
            close_sent: false,
        };
        let key = client_key(conn.rng.nonce());
        write_client_request(
            &mut conn.wbuf,
            &target.host_header,
            &target.path_and_query,
            &key,
            &[],
            &[],
        );
        match tokio::time::timeout(timeout, conn.handshake(&key)).await {
            Err(_) => Err(ConnError::Timeout("handshake")),
            Ok(r) => r.map(|()| conn),
        }
    }

    async fn handshake(&mut self, key: &ringws::handshake::ClientKey) -> Result<(), ConnError> {
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
            match read_server_response(&head, key) {
                Ok(None) if head.len() > MAX_HEAD => {
                    return Err(ConnError::Handshake("response head too large".into()))
                }
                Ok(None) => {}
                Ok(Some(head_len)) => {
                    self.rbuf = vec![0; READ_SIZE.max(head.len() - head_len)];
                    let rest = &head[head_len..];
                    self.rbuf[..rest.len()].copy_from_slice(rest);
                    self.rlen = rest.len();
                    return Ok(());
                }
                Err(e) => return Err(ConnError::Handshake(e.to_string())),
            }
        }
    }

    /// Queues a masked frame and tries to write it at once (without waiting).
    pub fn send(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), ConnError> {
        let mask = self.rng.mask();
        encode_frame(&mut self.wbuf, opcode, true, payload, Some(mask));
        self.try_flush()
    }

    /// Queues a close frame (1000) once and tries to write it.
    pub fn send_close(&mut self) -> Result<(), ConnError> {
        if !self.close_sent {
            self.close_sent = true;
            let mask = self.rng.mask();
            encode_close(&mut self.wbuf, Some(CloseCode::NORMAL), "", Some(mask));
        }
        self.try_flush()
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    fn try_flush(&mut self) -> Result<(), ConnError> {
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
    /// Pings are answered with pongs; a close frame is answered and reported.
    pub async fn pump(&mut self, on: &mut impl FnMut(Incoming<'_>)) -> Result<Pumped, ConnError> {
        if self.rlen > 0 {
            return self.decode_buffered(on);
        }
        let interest = if self.pending() > 0 {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let ready = self.stream.ready(interest).await.map_err(ConnError::Io)?;
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
            dec,
            rbuf,
            rlen,
            wbuf,
            rng,
            close_sent,
            ..
        } = self;
        let len = std::mem::take(rlen);
        let mut pos = 0;
        let mut outcome = Pumped::Open;
        while pos < len {
            let (n, ev) = dec
                .decode(&mut rbuf[pos..len])
                .map_err(|e| ConnError::Protocol(e.to_string()))?;
            pos += n;
            match ev {
                Some(Event::Text(t)) => on(Incoming::Text(t)),
                Some(Event::Binary(b)) => on(Incoming::Binary(b)),
                Some(Event::Pong(p)) => on(Incoming::Pong(p)),
                Some(Event::Ping(p)) if !*close_sent => {
                    encode_frame(wbuf, OpCode::Pong, true, p, Some(rng.mask()));
                }
                Some(Event::Ping(_)) => {}
                Some(Event::Close(frame)) => {
                    outcome = Pumped::PeerClosed(frame.map(|f| f.code.0));
                    if !*close_sent {
                        *close_sent = true;
                        encode_close(wbuf, Some(CloseCode::NORMAL), "", Some(rng.mask()));
                    }
                    break;
                }
                None if n == 0 => break,
                None => {}
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
}
