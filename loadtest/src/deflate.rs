//! The client side of permessage-deflate (RFC 7692) for the generator: the offer, a
//! parser for the server's answer, and the per-connection codec state (compress what
//! is sent, inflate what comes back) with wire and payload byte counts.

use ringws::proto::{encode_compressed_frame, encode_frame, frame_len, OpCode};
use ringws::proto::{InflateError, MessageDeflater, MessageInflater};
use serde::Serialize;

/// The offer sent with `--deflate`: permessage-deflate with context takeover both ways,
/// and the server may limit the client's window.
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// What the server agreed to in its `Sec-WebSocket-Extensions` answer (RFC 7692 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateAnswer {
    /// The server resets its compression context after every message.
    pub server_no_context_takeover: bool,
    /// We must reset ours after every message.
    pub client_no_context_takeover: bool,
    /// The server compresses with at most this window (15 when not answered).
    pub server_max_window_bits: u8,
    /// We must compress with at most this window (15 when not answered).
    pub client_max_window_bits: u8,
}

impl Default for DeflateAnswer {
    fn default() -> Self {
        DeflateAnswer {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl DeflateAnswer {
    /// The answer written back in RFC 7692 syntax, every parameter explicit.
    pub fn describe(&self) -> String {
        let mut s = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        s.push_str(&format!(
            "; server_max_window_bits={}; client_max_window_bits={}",
            self.server_max_window_bits, self.client_max_window_bits
        ));
        s
    }
}

/// The values of every `Sec-WebSocket-Extensions` header in a response head (status
/// line, headers, blank line), joined with `", "` as RFC 7230 §3.2.2 allows; `None`
/// when there is none.
pub fn extensions_header(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let mut values: Vec<&str> = Vec::new();
    for line in text.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("Sec-WebSocket-Extensions") {
                values.push(value.trim());
            }
        }
    }
    if values.is_empty() {
        None
    } else {
        Some(values.join(", "))
    }
}

/// Parses the server's `Sec-WebSocket-Extensions` answer to [`DEFLATE_OFFER`]:
/// `Ok(None)` when it is empty (the server declined), `Ok(Some(..))` for one valid
/// `permessage-deflate` answer, and an error for anything else: an extension we did not
/// offer, permessage-deflate twice, an unknown or repeated parameter, a value on a
/// `*_no_context_takeover`, a window-bits value outside 8..=15 or missing (RFC 7692
/// §7.1.2.2: the answer's `client_max_window_bits` needs a value).
pub fn parse_deflate_answer(value: &str) -> Result<Option<DeflateAnswer>, String> {
    let mut found: Option<DeflateAnswer> = None;
    for ext in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut parts = ext.split(';').map(|p| p.trim_matches([' ', '\t']));
        let name = parts.next().unwrap_or("");
        if name != "permessage-deflate" {
            return Err(format!(
                "the server answered an extension not offered: {name:?}"
            ));
        }
        if found.is_some() {
            return Err("the server answered permessage-deflate twice".into());
        }
        let mut a = DeflateAnswer::default();
        let mut seen: Vec<&str> = Vec::new();
        for p in parts {
            if p.is_empty() {
                return Err(format!("empty parameter in {ext:?}"));
            }
            let (key, val) = match p.split_once('=') {
                Some((k, v)) => (k.trim_matches([' ', '\t']), Some(unquote(v)?)),
                None => (p, None),
            };
            if seen.contains(&key) {
                return Err(format!("parameter {key} twice"));
            }
            seen.push(key);
            match (key, val) {
                ("server_no_context_takeover", None) => a.server_no_context_takeover = true,
                ("client_no_context_takeover", None) => a.client_no_context_takeover = true,
                ("server_max_window_bits", Some(v)) => a.server_max_window_bits = bits(key, v)?,
                ("client_max_window_bits", Some(v)) => a.client_max_window_bits = bits(key, v)?,
                ("server_no_context_takeover" | "client_no_context_takeover", Some(_)) => {
                    return Err(format!("{key} takes no value"))
                }
                ("server_max_window_bits" | "client_max_window_bits", None) => {
                    return Err(format!("{key} without a value in the answer"))
                }
                _ => return Err(format!("unknown parameter {key:?}")),
            }
        }
        found = Some(a);
    }
    Ok(found)
}

/// A parameter value: a token, or a quoted string (backslash escapes undone).
fn unquote(v: &str) -> Result<String, String> {
    let v = v.trim_matches([' ', '\t']);
    match v.strip_prefix('"') {
        None => Ok(v.to_string()),
        Some(rest) => {
            let inner = rest
                .strip_suffix('"')
                .ok_or_else(|| format!("unterminated quoted value {v:?}"))?;
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' {
                    chars.next().unwrap_or('\\')
                } else {
                    c
                });
            }
            Ok(out)
        }
    }
}

/// A window-bits value: a decimal 8..=15 without a leading zero.
fn bits(key: &str, v: String) -> Result<u8, String> {
    match v.parse::<u8>() {
        Ok(n) if (8..=15).contains(&n) && !v.starts_with('0') && !v.starts_with('+') => Ok(n),
        _ => Err(format!("{key}={v:?}: expected 8..=15")),
    }
}

/// Bytes and messages through one connection's permessage-deflate codec, over its
/// whole life (warmup included). Wire bytes are data frames (headers included);
/// payload bytes are the messages before compressing / after inflating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeflateCounts {
    /// Data messages sent (all compressed).
    pub messages_sent: u64,
    /// Their payload bytes before compressing.
    pub payload_bytes_sent: u64,
    /// Their frame bytes on the wire (headers and compressed payloads).
    pub wire_bytes_sent: u64,
    /// Data messages received.
    pub messages_received: u64,
    /// Of them, compressed (RSV1).
    pub compressed_received: u64,
    /// Their payload bytes after inflating.
    pub payload_bytes_received: u64,
    /// Their frame bytes on the wire (headers and payloads as received).
    pub wire_bytes_received: u64,
}

impl DeflateCounts {
    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &DeflateCounts) {
        self.messages_sent += o.messages_sent;
        self.payload_bytes_sent += o.payload_bytes_sent;
        self.wire_bytes_sent += o.wire_bytes_sent;
        self.messages_received += o.messages_received;
        self.compressed_received += o.compressed_received;
        self.payload_bytes_received += o.payload_bytes_received;
        self.wire_bytes_received += o.wire_bytes_received;
    }

    /// Wire bytes / payload bytes sent (client → server), 0 without traffic.
    pub fn ratio_sent(&self) -> f64 {
        ratio(self.wire_bytes_sent, self.payload_bytes_sent)
    }

    /// Wire bytes / payload bytes received (server → client), 0 without traffic.
    pub fn ratio_received(&self) -> f64 {
        ratio(self.wire_bytes_received, self.payload_bytes_received)
    }

    /// The summary lines.
    pub fn lines(&self) -> String {
        format!(
            "deflate (whole run, warmup included): sent {} msgs, {} B payload → {} B on the \
             wire (ratio {:.3}); received {} msgs ({} compressed), {} B on the wire → {} B \
             payload (ratio {:.3})",
            self.messages_sent,
            self.payload_bytes_sent,
            self.wire_bytes_sent,
            self.ratio_sent(),
            self.messages_received,
            self.compressed_received,
            self.wire_bytes_received,
            self.payload_bytes_received,
            self.ratio_received()
        )
    }
}

fn ratio(wire: u64, payload: u64) -> f64 {
    if payload == 0 {
        0.0
    } else {
        wire as f64 / payload as f64
    }
}

/// One connection's permessage-deflate codec, as agreed in `answer`.
pub struct DeflateCodec {
    deflater: MessageDeflater,
    inflater: MessageInflater,
    /// The compressed payload of the message being queued.
    zbuf: Vec<u8>,
    /// The message being inflated, or the last one.
    plain: Vec<u8>,
    /// Compressed bytes of the message being inflated, when it comes in pieces.
    piece_bytes: usize,
    /// A message's first pieces were inflated, its last is still to come.
    in_message: bool,
    max_message: usize,
    /// What the server agreed to.
    pub answer: DeflateAnswer,
    /// What went through.
    pub counts: DeflateCounts,
}

impl DeflateCodec {
    /// A codec for `answer`, compressing at zlib `level`, inflating messages of at most
    /// `max_message` bytes.
    pub fn new(answer: &DeflateAnswer, level: u32, max_message: usize) -> DeflateCodec {
        DeflateCodec {
            deflater: MessageDeflater::new(
                answer.client_max_window_bits,
                level,
                answer.client_no_context_takeover,
            ),
            inflater: MessageInflater::new(
                answer.server_max_window_bits,
                answer.server_no_context_takeover,
            ),
            zbuf: Vec::new(),
            plain: Vec::new(),
            piece_bytes: 0,
            in_message: false,
            max_message,
            answer: *answer,
            counts: DeflateCounts::default(),
        }
    }

    /// Appends to `out` one masked frame carrying `payload`: compressed with RSV1 for a
    /// data message, as is for a control frame.
    pub fn queue(&mut self, out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
        if !matches!(opcode, OpCode::Text | OpCode::Binary) {
            encode_frame(out, opcode, true, payload, Some(mask));
            return;
        }
        self.zbuf.clear();
        self.deflater.compress(payload, &mut self.zbuf);
        let before = out.len();
        encode_compressed_frame(out, opcode, true, &self.zbuf, Some(mask));
        self.counts.messages_sent += 1;
        self.counts.payload_bytes_sent += payload.len() as u64;
        self.counts.wire_bytes_sent += (out.len() - before) as u64;
    }

    /// Inflates one compressed message (its whole payload, as the decoder's
    /// `Event::Deflated` gives it, or its last piece after [`inflate_part`]) and returns
    /// the plaintext.
    ///
    /// [`inflate_part`]: DeflateCodec::inflate_part
    pub fn inflate(&mut self, payload: &[u8]) -> Result<&[u8], InflateError> {
        self.feed(payload, true)?;
        let compressed = std::mem::take(&mut self.piece_bytes);
        self.counts.messages_received += 1;
        self.counts.compressed_received += 1;
        self.counts.payload_bytes_received += self.plain.len() as u64;
        self.counts.wire_bytes_received += frame_len(compressed, false) as u64;
        Ok(&self.plain)
    }

    /// Inflates a piece of a compressed message that is not complete yet (the
    /// decoder's `Event::DeflatedPart`).
    pub fn inflate_part(&mut self, payload: &[u8]) -> Result<(), InflateError> {
        self.feed(payload, false)
    }

    fn feed(&mut self, payload: &[u8], fin: bool) -> Result<(), InflateError> {
        if !self.in_message {
            self.plain.clear();
            self.piece_bytes = 0;
        }
        self.in_message = !fin;
        self.piece_bytes += payload.len();
        self.inflater
            .decompress(payload, fin, self.max_message, &mut self.plain)
    }

    /// Counts an uncompressed data message received.
    pub fn count_plain(&mut self, len: usize) {
        self.counts.messages_received += 1;
        self.counts.payload_bytes_received += len as u64;
        self.counts.wire_bytes_received += frame_len(len, false) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringws::handshake::{negotiate, DeflateConfig};
    use ringws::proto::{Decoder, Event, Limits, Role};

    fn parse(v: &str) -> Result<Option<DeflateAnswer>, String> {
        parse_deflate_answer(v)
    }

    #[test]
    fn parses_every_parameter() {
        let a = parse(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            a,
            DeflateAnswer {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 10,
                client_max_window_bits: 9,
            }
        );
        assert_eq!(
            parse("permessage-deflate").unwrap(),
            Some(DeflateAnswer::default())
        );
        assert_eq!(
            parse("  permessage-deflate ;\tclient_max_window_bits=\"12\" ").unwrap(),
            Some(DeflateAnswer {
                client_max_window_bits: 12,
                ..DeflateAnswer::default()
            })
        );
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse(" , ").unwrap(), None);
    }

    #[test]
    fn refuses_bad_answers() {
        for bad in [
            "x-webkit-deflate-frame",
            "permessage-deflate, permessage-deflate",
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate;",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn reads_what_ringws_answers() {
        for (offer, config) in [
            (DEFLATE_OFFER, DeflateConfig::default()),
            (
                DEFLATE_OFFER,
                DeflateConfig {
                    server_no_context_takeover: true,
                    client_no_context_takeover: true,
                    server_max_window_bits: 11,
                    client_max_window_bits: 10,
                },
            ),
        ] {
            let agreed = negotiate([offer], &config).expect("agreed");
            let a = parse(&agreed.response_value()).unwrap().unwrap();
            assert_eq!(
                a.server_no_context_takeover,
                agreed.server_no_context_takeover()
            );
            assert_eq!(
                a.client_no_context_takeover,
                agreed.client_no_context_takeover()
            );
            assert_eq!(a.server_max_window_bits, agreed.server_max_window_bits());
            assert_eq!(a.client_max_window_bits, agreed.client_max_window_bits());
        }
    }

    #[test]
    fn finds_the_header_in_a_head() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
            sec-websocket-extensions: permessage-deflate\r\n\
            Sec-WebSocket-Extensions:  client_max_window_bits=10 \r\n\r\n";
        assert_eq!(
            extensions_header(head).as_deref(),
            Some("permessage-deflate, client_max_window_bits=10")
        );
        assert_eq!(
            extensions_header(b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n\r\n"),
            None
        );
    }

    /// What the codec sends, a server-role decoder reads as a compressed message that
    /// a server-side inflater restores; and it inflates what a server deflater sends.
    #[test]
    fn codec_round_trips_through_the_server_role() {
        for answer in [
            DeflateAnswer::default(),
            DeflateAnswer {
                client_no_context_takeover: true,
                server_no_context_takeover: true,
                client_max_window_bits: 9,
                server_max_window_bits: 10,
            },
        ] {
            let mut codec = DeflateCodec::new(&answer, 1, 1 << 20);
            let mut server_dec = Decoder::new(Role::Server, Limits::default());
            server_dec.accept_compressed();
            let mut server_inf = MessageInflater::new(
                answer.client_max_window_bits,
                answer.client_no_context_takeover,
            );
            let mut server_def = MessageDeflater::new(
                answer.server_max_window_bits,
                1,
                answer.server_no_context_takeover,
            );
            let msgs: Vec<Vec<u8>> = (0..5)
                .map(|i| format!("{{\"seq\":{i},\"data\":\"{}\"}}", "x".repeat(i * 40)).into())
                .collect();
            for (i, m) in msgs.iter().enumerate() {
                let mut wire = Vec::new();
                codec.queue(&mut wire, OpCode::Text, m, [1, 2, 3, 4]);
                let wire_len = wire.len();
                let (n, ev) = server_dec.decode(&mut wire).unwrap();
                assert_eq!(n, wire_len);
                let Some(Event::Deflated { text, payload }) = ev else {
                    panic!("not a compressed message: {ev:?}");
                };
                assert!(text);
                let mut plain = Vec::new();
                server_inf
                    .decompress(payload, true, 1 << 20, &mut plain)
                    .unwrap();
                assert_eq!(&plain, m);

                let mut z = Vec::new();
                server_def.compress(m, &mut z);
                if i % 2 == 0 {
                    assert_eq!(codec.inflate(&z).unwrap(), &m[..]);
                } else {
                    // In pieces, as a streaming decoder hands them out.
                    let (a, b) = z.split_at(z.len() / 2);
                    codec.inflate_part(a).unwrap();
                    assert_eq!(codec.inflate(b).unwrap(), &m[..]);
                }
            }
            assert_eq!(codec.counts.messages_sent, 5);
            assert_eq!(codec.counts.compressed_received, 5);
            let total: u64 = msgs.iter().map(|m| m.len() as u64).sum();
            assert_eq!(codec.counts.payload_bytes_sent, total);
            assert_eq!(codec.counts.payload_bytes_received, total);
            // Control frames go out uncompressed.
            let mut wire = Vec::new();
            codec.queue(&mut wire, OpCode::Ping, b"p", [0; 4]);
            assert_eq!(wire[0], 0x89);
        }
    }
}
