//! The client side: N connections offering permessage-deflate, their messages and checks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ringws::proto::{
    encode_compressed_frame, encode_frame, Decoder, Event, FrameHeader, Limits, MessageDeflater,
    MessageInflater, OpCode, Role,
};

// ---------------------------------------------------------------------------------
// The client (parent process)
// ---------------------------------------------------------------------------------

/// What the server answered to the offer (RFC 7692 §7); `None` on the connection:
/// no extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Agreement {
    pub(crate) server_no_context_takeover: bool,
    pub(crate) client_no_context_takeover: bool,
    pub(crate) server_max_window_bits: u8,
    pub(crate) client_max_window_bits: u8,
}

pub(crate) fn parse_agreement(head: &str) -> std::io::Result<Option<Agreement>> {
    let Some(value) = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-extensions")
            .then_some(value.trim())
    }) else {
        return Ok(None);
    };
    let mut params = value.split(';').map(str::trim);
    if params.next() != Some("permessage-deflate") {
        return Err(std::io::Error::other(format!("odd answer {value:?}")));
    }
    let mut agreement = Agreement {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    for param in params {
        let bits = |v: &str| v.parse::<u8>().map_err(std::io::Error::other);
        match param.split_once('=') {
            None if param == "server_no_context_takeover" => {
                agreement.server_no_context_takeover = true
            }
            None if param == "client_no_context_takeover" => {
                agreement.client_no_context_takeover = true
            }
            Some(("server_max_window_bits", v)) => agreement.server_max_window_bits = bits(v)?,
            Some(("client_max_window_bits", v)) => agreement.client_max_window_bits = bits(v)?,
            _ => return Err(std::io::Error::other(format!("odd parameter {param:?}"))),
        }
    }
    Ok(Some(agreement))
}

/// One client connection: as little state as possible between messages.
pub(crate) struct Client {
    pub(crate) stream: TcpStream,
    pub(crate) decoder: Decoder,
    /// `None` without permessage-deflate.
    pub(crate) codec: Option<(MessageDeflater, MessageInflater)>,
    /// Keep the codec's streams between messages (else hibernate after each).
    pub(crate) keep_live: bool,
}

pub(crate) const OFFER: &str = "permessage-deflate; client_max_window_bits";

pub(crate) fn connect(addr: SocketAddr) -> std::io::Result<(Client, Option<Agreement>)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: {OFFER}\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !head.ends_with(b"\r\n\r\n") {
        // Byte by byte past the head would be exact; the server sends nothing after it
        // until we send a message, so whole reads are safe.
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(std::io::Error::other("closed during the handshake"));
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(std::io::Error::other(format!("upgrade refused: {head}")));
    }
    let agreement = parse_agreement(&head)?;
    let mut decoder = Decoder::new(Role::Client, Limits::default());
    let codec = agreement.map(|a| {
        decoder.accept_compressed();
        (
            MessageDeflater::new(a.client_max_window_bits, 6, a.client_no_context_takeover),
            MessageInflater::new(a.server_max_window_bits, a.server_no_context_takeover),
        )
    });
    Ok((
        Client {
            stream,
            decoder,
            codec,
            keep_live: false,
        },
        agreement,
    ))
}

impl Client {
    /// Sends `text` as one masked frame, compressed when deflate was agreed; returns
    /// the payload's size on the wire.
    pub(crate) fn send(&mut self, text: &str, key: [u8; 4]) -> std::io::Result<usize> {
        let mut frame = Vec::with_capacity(text.len() + FrameHeader::MAX_LEN);
        let sent = match &mut self.codec {
            Some((deflater, _)) => {
                let mut body = Vec::with_capacity(text.len());
                deflater.compress(text.as_bytes(), &mut body);
                if !self.keep_live {
                    deflater.hibernate();
                }
                encode_compressed_frame(&mut frame, OpCode::Text, true, &body, Some(key));
                body.len()
            }
            None => {
                encode_frame(&mut frame, OpCode::Text, true, text.as_bytes(), Some(key));
                text.len()
            }
        };
        self.stream.write_all(&frame)?;
        Ok(sent)
    }

    /// Reads the next data message; returns its text (inflated if compressed) and the
    /// payload's size on the wire. Pings and pongs are skipped. `buf[*start..]` holds
    /// bytes read but not decoded yet (empty it when moving to another connection).
    pub(crate) fn receive(
        &mut self,
        buf: &mut Vec<u8>,
        start: &mut usize,
    ) -> std::io::Result<(Vec<u8>, usize)> {
        loop {
            while *start < buf.len() {
                let (used, event) = self
                    .decoder
                    .decode(&mut buf[*start..])
                    .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
                let message = match event {
                    Some(Event::Text(text)) => Some((text.as_bytes().to_vec(), text.len())),
                    Some(Event::Deflated {
                        text: true,
                        payload,
                    }) => {
                        let Some((_, inflater)) = &mut self.codec else {
                            return Err(std::io::Error::other("RSV1 without an agreement"));
                        };
                        let mut plain = Vec::new();
                        inflater
                            .decompress(payload, true, 1 << 20, &mut plain)
                            .map_err(std::io::Error::other)?;
                        if !self.keep_live {
                            inflater.hibernate();
                        }
                        Some((plain, payload.len()))
                    }
                    Some(Event::Ping(_) | Event::Pong(_)) => None,
                    Some(other) => {
                        return Err(std::io::Error::other(format!("unexpected {other:?}")))
                    }
                    None if used == 0 => break,
                    None => None,
                };
                *start += used;
                if let Some(message) = message {
                    return Ok(message);
                }
            }
            if *start == buf.len() {
                buf.clear();
                *start = 0;
            }
            let len = buf.len();
            buf.resize(len + 16 * 1024, 0);
            let read = self.stream.read(&mut buf[len..])?;
            buf.truncate(len + read);
            if read == 0 {
                return Err(std::io::Error::other("closed by the server"));
            }
        }
    }

    pub(crate) fn hibernate_codec(&mut self) {
        if let Some((deflater, inflater)) = &mut self.codec {
            deflater.hibernate();
            inflater.hibernate();
        }
    }

    /// Bytes the client's own codec holds (histories once hibernated).
    pub(crate) fn held_bytes(&self) -> usize {
        self.codec
            .as_ref()
            .map_or(0, |(d, i)| d.held_bytes() + i.held_bytes())
    }
}

/// A compressible ~1 KiB JSON-like text, different per connection.
pub(crate) fn message(i: usize) -> String {
    let mut text = format!("{{\"conn\":{i},\"type\":\"order.update\",\"items\":[");
    let mut item = 0;
    while text.len() < 960 {
        if item > 0 {
            text.push(',');
        }
        text.push_str(&format!(
            "{{\"sku\":\"SKU-{:05}\",\"name\":\"widget {}\",\"qty\":{},\"price\":{}.99,\
             \"tags\":[\"blue\",\"sale\"]}}",
            (i * 7 + item) % 100_000,
            item,
            item % 5 + 1,
            item * 3 + 1
        ));
        item += 1;
    }
    text.push_str("],\"status\":\"ok\"}");
    text
}

/// Sends one message on every connection, then reads every echo; returns the
/// failures and the mean payload bytes sent and received.
pub(crate) fn round(clients: &mut [Client], round: usize) -> (usize, f64, f64) {
    let mut failures = 0;
    let (mut sent, mut received) = (0usize, 0usize);
    let mut ok = vec![true; clients.len()];
    for (i, client) in clients.iter_mut().enumerate() {
        let key = (i as u32 ^ ((round as u32) << 24)).to_le_bytes();
        match client.send(&message(i), key) {
            Ok(bytes) => sent += bytes,
            Err(error) => {
                if failures < 5 {
                    eprintln!("  conn {i}: send {round}: {error}");
                }
                failures += 1;
                ok[i] = false;
            }
        }
    }
    let mut buf = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        if !ok[i] {
            continue;
        }
        buf.clear();
        match client.receive(&mut buf, &mut 0) {
            Ok((text, bytes)) if text == message(i).as_bytes() => received += bytes,
            Ok(_) => {
                if failures < 5 {
                    eprintln!("  conn {i}: echo {round} differs");
                }
                failures += 1;
            }
            Err(error) => {
                if failures < 5 {
                    eprintln!("  conn {i}: echo {round}: {error}");
                }
                failures += 1;
            }
        }
    }
    let n = clients.len().max(1) as f64;
    (failures, sent as f64 / n, received as f64 / n)
}

/// Messages sent by [`fill`]: over 32 KiB each way, a full 15-bit window.
pub(crate) const FILL: usize = 32;

/// Sends [`FILL`] more messages on every connection, one connection at a time (its
/// client codec stays live for them, then hibernates), and checks every echo;
/// returns the failures.
pub(crate) fn fill(clients: &mut [Client]) -> usize {
    let mut failures = 0;
    let mut buf = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        client.keep_live = true;
        buf.clear();
        let mut start = 0;
        let mut result = Ok(());
        for k in 0..FILL {
            let key = (i as u32 ^ ((k as u32 + 3) << 24)).to_le_bytes();
            if let Err(error) = client.send(&message(i + 1 + k), key) {
                result = Err(error);
                break;
            }
        }
        for k in 0..FILL {
            if result.is_err() {
                break;
            }
            result = match client.receive(&mut buf, &mut start) {
                Ok((text, _)) if text == message(i + 1 + k).as_bytes() => Ok(()),
                Ok(_) => Err(std::io::Error::other(format!("echo {k} differs"))),
                Err(error) => Err(error),
            };
        }
        client.keep_live = false;
        client.hibernate_codec();
        if let Err(error) = result {
            if failures < 5 {
                eprintln!("  conn {i}: fill: {error}");
            }
            failures += 1;
        }
    }
    failures
}
