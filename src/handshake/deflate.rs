//! permessage-deflate negotiation (RFC 7692 §5 and §7), sans-I/O.
//!
//! A client offers the extension in one or more `Sec-WebSocket-Extensions` headers,
//! each a comma-separated list of extensions with `;` parameters (RFC 6455 §9.1). The
//! server holds a [`DeflateConfig`] (what it is willing to do) and calls [`negotiate`]
//! with the raw header values, or [`negotiate_request`] with the parsed request; the
//! [`DeflateAgreement`] it returns says how each direction compresses and gives the
//! exact answer to put in the 101 ([`DeflateAgreement::response_value`], or
//! [`DeflateAgreement::write_response_header`] for the whole header line).
//!
//! ```
//! use ringws::handshake::{negotiate, DeflateConfig};
//!
//! // Chrome's offer, and a server that wants a smaller window from the client.
//! let config = DeflateConfig { client_max_window_bits: 10, ..DeflateConfig::default() };
//! let agreement = negotiate(["permessage-deflate; client_max_window_bits"], &config)
//!     .expect("accepted");
//! assert_eq!(agreement.response_value(), "permessage-deflate; client_max_window_bits=10");
//! assert_eq!(agreement.client_max_window_bits(), 10);
//! assert_eq!(agreement.decompress_window_bits(), 10);
//! assert_eq!(agreement.compress_window_bits(), 15);
//!
//! let mut head = Vec::new();
//! agreement.write_response_header(&mut head);
//! assert_eq!(
//!     head,
//!     b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n"
//! );
//!
//! // Window bits 8 are answered as asked, but zlib compresses with 9 (see below).
//! let agreement = negotiate(
//!     ["x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8"],
//!     &DeflateConfig::default(),
//! )
//! .expect("accepted");
//! assert_eq!(agreement.response_value(), "permessage-deflate; server_max_window_bits=8");
//! assert_eq!(agreement.server_max_window_bits(), 8);
//! assert_eq!(agreement.compress_window_bits(), 9);
//!
//! // No permessage-deflate offer, or none acceptable: no agreement, no header.
//! assert!(negotiate(["permessage-deflate; foo=1"], &DeflateConfig::default()).is_none());
//! ```
//!
//! # Parsing
//!
//! Each header value is read with the RFC 6455 §9.1 grammar: `extension *( ";"
//! param [ "=" ( token / quoted-string ) ] )`, extensions separated by commas, optional
//! spaces and tabs around every separator, empty list elements skipped. A quoted value
//! must be a token once unquoted (backslash escapes are undone first). Names are
//! compared **exactly** (case-sensitive): the extension must be `permessage-deflate`
//! and the parameters spelled as in RFC 7692, in lower case; RFC 6455 registers
//! extension names as tokens without case folding, and every browser and client
//! library sends them in lower case. An extension that breaks the grammar is skipped
//! up to the next comma outside a quoted string (an unterminated quoted string ends
//! the header value).
//!
//! # Choosing an offer
//!
//! Offers are considered in the order sent (header after header, left to right) and
//! only `permessage-deflate` ones; the first acceptable one wins. An offer is declined,
//! and the next one tried, when it has an unknown parameter, a parameter twice, a
//! value on `server_no_context_takeover` or `client_no_context_takeover`,
//! `server_max_window_bits` without a value, or a window-bits value that is not a
//! decimal integer from 8 to 15 without a leading zero. Every well-formed offer is
//! acceptable to every [`DeflateConfig`], so the first well-formed offer wins.
//!
//! # The answer (RFC 7692 §7)
//!
//! - `server_no_context_takeover` is answered when the client offered it (which obliges
//!   the server to use it) or the config asks for it.
//! - `client_no_context_takeover` is answered when the client offered it (it announced
//!   it resets its context anyway; the answer lets the server drop its inflater between
//!   messages) or the config asks for it.
//! - `server_max_window_bits=N` is answered when the client offered it (then N is the
//!   smaller of the offer and the config) or the config is below 15.
//! - `client_max_window_bits=N` is answered only when the client offered the parameter
//!   (with a value or not) and N, the smaller of the offered value (15 without one) and
//!   the config, is below 15. A client that did not offer it may use a window of 15
//!   bits whatever the config says: the config's limit is then not applied, and the
//!   agreement says 15.
//!
//! The answer's parameters always come in that order: `permessage-deflate;
//! server_no_context_takeover; client_no_context_takeover; server_max_window_bits=N;
//! client_max_window_bits=N`.
//!
//! # Window bits 8
//!
//! RFC 7692 allows 8 (a 256-byte window), but zlib (and flate2, and zlib-rs) refuse to
//! raw-deflate with 8 bits. The decision here, as node's `ws` does: when the agreement
//! says 8 for the server's direction, the answer says 8 and the server compresses with
//! 9 ([`DeflateAgreement::compress_window_bits`]). This is safe because zlib with a
//! 9-bit window never emits a match distance over 250 (its window is 512 bytes, of
//! which `MIN_LOOKAHEAD` = 262 are kept for lookahead), so its output fits the client's
//! 256-byte window. It relies on that property of zlib and its ports; miniz_oxide
//! ignores window bits and must not be used for a window below 15. Inflating, a larger
//! window than the peer's is always correct, so the server inflates with at least 9
//! ([`DeflateAgreement::decompress_window_bits`]).

use crate::http::Request;

/// The extension's name, as it appears in offers and answers.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The header that carries offers and the answer.
pub const EXTENSIONS_HEADER: &str = "Sec-WebSocket-Extensions";

/// What the server is willing to do when it accepts permessage-deflate.
///
/// The default takes over context both ways with 15-bit windows: the best
/// compression, at about 300 KiB of zlib state per connection. Window bits outside
/// 8..=15 are clamped into that range by [`negotiate`].
///
/// ```
/// use ringws::handshake::DeflateConfig;
///
/// // Small memory: reset the context after every message, 9-bit windows.
/// let lean = DeflateConfig {
///     server_no_context_takeover: true,
///     client_no_context_takeover: true,
///     server_max_window_bits: 9,
///     client_max_window_bits: 9,
/// };
/// assert_ne!(lean, DeflateConfig::default());
/// assert_eq!(DeflateConfig::default().server_max_window_bits, 15);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeflateConfig {
    /// Reset the server's compression context after every message, even when the
    /// client did not ask (answered as `server_no_context_takeover`).
    pub server_no_context_takeover: bool,
    /// Ask the client to reset its compression context after every message (answered
    /// as `client_no_context_takeover`; the client must then comply).
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with, 8..=15 (answered as
    /// `server_max_window_bits` when below 15 or when the client offered it).
    pub server_max_window_bits: u8,
    /// The largest window the server lets the client compress with, 8..=15; applied
    /// only when the client offered `client_max_window_bits`.
    pub client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// A permessage-deflate agreement: the parameters the server answered, and how each
/// direction compresses. Built by [`negotiate`]; the [`Default`] is the plain
/// `permessage-deflate` answer (context takeover both ways, 15-bit windows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeflateAgreement {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: u8,
    client_max_window_bits: u8,
    answer_server_bits: bool,
    answer_client_bits: bool,
}

impl Default for DeflateAgreement {
    fn default() -> Self {
        DeflateAgreement {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            answer_server_bits: false,
            answer_client_bits: false,
        }
    }
}

impl DeflateAgreement {
    /// The server resets its compression context after every message (its messages
    /// can be compressed once for many connections).
    pub fn server_no_context_takeover(&self) -> bool {
        self.server_no_context_takeover
    }

    /// The client resets its compression context after every message, so the server
    /// may reset (or drop) its inflater after every message.
    pub fn client_no_context_takeover(&self) -> bool {
        self.client_no_context_takeover
    }

    /// The server's window bits as answered (8..=15; 15 when not answered).
    pub fn server_max_window_bits(&self) -> u8 {
        self.server_max_window_bits
    }

    /// The client's window bits as answered (8..=15); 15 when not answered, in
    /// particular when the client did not offer `client_max_window_bits`.
    pub fn client_max_window_bits(&self) -> u8 {
        self.client_max_window_bits
    }

    /// The window bits to give the server's raw deflater: the server's window bits,
    /// but 9 where they are 8 (zlib refuses 8; its 9-bit output fits a 256-byte window,
    /// see the [module docs](self)).
    pub fn compress_window_bits(&self) -> u8 {
        self.server_max_window_bits.max(9)
    }

    /// The window bits to give the server's raw inflater: the client's window bits,
    /// but 9 where they are 8 (a larger window always inflates correctly).
    pub fn decompress_window_bits(&self) -> u8 {
        self.client_max_window_bits.max(9)
    }

    /// The `Sec-WebSocket-Extensions` value to answer, e.g.
    /// `permessage-deflate; server_no_context_takeover; server_max_window_bits=10`:
    /// only the parameters RFC 7692 allows in this answer, in a fixed order.
    pub fn response_value(&self) -> String {
        let mut value = String::with_capacity(96);
        value.push_str(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            value.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            value.push_str("; client_no_context_takeover");
        }
        if self.answer_server_bits {
            value.push_str("; server_max_window_bits=");
            push_bits(&mut value, self.server_max_window_bits);
        }
        if self.answer_client_bits {
            value.push_str("; client_max_window_bits=");
            push_bits(&mut value, self.client_max_window_bits);
        }
        value
    }

    /// Appends the whole header line, `Sec-WebSocket-Extensions: <response_value>\r\n`,
    /// to a response head being written.
    pub fn write_response_header(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(EXTENSIONS_HEADER.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(self.response_value().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn push_bits(out: &mut String, bits: u8) {
    if bits >= 10 {
        out.push('1');
    }
    out.push(char::from(b'0' + bits % 10));
}

/// Negotiates permessage-deflate from the raw `Sec-WebSocket-Extensions` header values
/// of a request (every such header, in order; each may hold several extensions):
/// the first acceptable `permessage-deflate` offer is accepted under `config`; `None`
/// when there is none (answer without the header, uncompressed). See the
/// [module docs](self) for the grammar, the declined offers and the answer.
///
/// ```
/// use ringws::handshake::{negotiate, DeflateConfig};
///
/// // Autobahn 13.7: three offers in one header, the first one taken.
/// let offer = "permessage-deflate; client_no_context_takeover; client_max_window_bits, \
///              permessage-deflate; client_no_context_takeover, permessage-deflate";
/// let agreement = negotiate([offer], &DeflateConfig::default()).unwrap();
/// assert_eq!(agreement.response_value(), "permessage-deflate; client_no_context_takeover");
/// ```
pub fn negotiate<I>(offers: I, config: &DeflateConfig) -> Option<DeflateAgreement>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    for header in offers {
        let mut elements = Elements::new(header.as_ref());
        while let Some(element) = elements.next_element() {
            if let Ok((name, offer)) = element {
                if name == PERMESSAGE_DEFLATE && !offer.invalid {
                    return Some(accept(&offer, config));
                }
            }
        }
    }
    None
}

/// [`negotiate`] over every `Sec-WebSocket-Extensions` header of a request, in order
/// (a value that is not UTF-8 is skipped whole). This is the one call a server's
/// handshake makes; the answer goes into the 101 as an extra header:
///
/// ```
/// use ringws::handshake::{negotiate_request, validate_upgrade, write_accept, DeflateConfig};
/// use ringws::http::{header_storage, parse_request, Parse};
///
/// let buf = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
/// Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
/// Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n\
/// Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
/// let mut headers = header_storage();
/// let Ok(Parse::Complete { request, .. }) = parse_request(buf, &mut headers, 8192) else {
///     panic!("a complete head");
/// };
/// let upgrade = validate_upgrade(&request).unwrap();
/// let deflate = negotiate_request(&request, &DeflateConfig::default()).unwrap();
/// let mut out = Vec::new();
/// write_accept(&mut out, &upgrade, None, &[("Sec-WebSocket-Extensions", &deflate.response_value())]);
/// assert!(out.ends_with(b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"));
/// ```
pub fn negotiate_request(
    request: &Request<'_>,
    config: &DeflateConfig,
) -> Option<DeflateAgreement> {
    negotiate(
        request
            .headers()
            .filter(|(name, _)| name.eq_ignore_ascii_case(EXTENSIONS_HEADER))
            .filter_map(|(_, value)| core::str::from_utf8(value).ok()),
        config,
    )
}

fn accept(offer: &Offer, config: &DeflateConfig) -> DeflateAgreement {
    let server_config = config.server_max_window_bits.clamp(8, 15);
    let client_config = config.client_max_window_bits.clamp(8, 15);
    let server_max_window_bits = match offer.server_max_window_bits {
        Some(offered) => offered.min(server_config),
        None => server_config,
    };
    let (client_max_window_bits, answer_client_bits) = match offer.client_max_window_bits {
        Some(offered) => {
            let bits = offered.unwrap_or(15).min(client_config);
            (bits, bits < 15)
        }
        None => (15, false),
    };
    DeflateAgreement {
        server_no_context_takeover: offer.server_no_context_takeover
            || config.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
        answer_server_bits: offer.server_max_window_bits.is_some() || server_max_window_bits < 15,
        answer_client_bits,
    }
}

/// One extension's parameters, read as a permessage-deflate offer.
#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
    /// An unknown, duplicated or malformed parameter: the offer is declined.
    invalid: bool,
}

/// A parameter's value as written.
enum Value<'a> {
    Token(&'a str),
    /// The text between the quotes, escapes not yet undone.
    Quoted(&'a str),
}

impl Offer {
    fn apply(&mut self, name: &str, value: Option<Value<'_>>) {
        let ok = match name {
            "server_no_context_takeover" => {
                value.is_none() && !std::mem::replace(&mut self.server_no_context_takeover, true)
            }
            "client_no_context_takeover" => {
                value.is_none() && !std::mem::replace(&mut self.client_no_context_takeover, true)
            }
            "server_max_window_bits" => match value.as_ref().and_then(window_bits) {
                Some(bits) if self.server_max_window_bits.is_none() => {
                    self.server_max_window_bits = Some(bits);
                    true
                }
                _ => false,
            },
            "client_max_window_bits" => {
                let bits = match &value {
                    None => Some(None),
                    Some(value) => window_bits(value).map(Some),
                };
                match bits {
                    Some(bits) if self.client_max_window_bits.is_none() => {
                        self.client_max_window_bits = Some(bits);
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        if !ok {
            self.invalid = true;
        }
    }
}

/// A window-bits value: a decimal integer 8..=15 without a leading zero, as a token
/// or a quoted string that unquotes to one.
fn window_bits(value: &Value<'_>) -> Option<u8> {
    let mut digits = [0u8; 2];
    let mut len = 0;
    match value {
        Value::Token(token) => {
            if token.len() > 2 {
                return None;
            }
            for &b in token.as_bytes() {
                digits[len] = b;
                len += 1;
            }
        }
        Value::Quoted(raw) => {
            let mut bytes = raw.bytes();
            while let Some(b) = bytes.next() {
                let b = if b == b'\\' { bytes.next()? } else { b };
                if len == 2 {
                    return None;
                }
                digits[len] = b;
                len += 1;
            }
        }
    }
    match &digits[..len] {
        [d] if (b'8'..=b'9').contains(d) => Some(d - b'0'),
        [b'1', d] if (b'0'..=b'5').contains(d) => Some(10 + d - b'0'),
        _ => None,
    }
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// The grammar broken inside one extension.
struct Malformed;

/// The extensions of one header value, one after the other.
struct Elements<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Elements<'a> {
    fn new(s: &'a str) -> Self {
        Elements { s, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Result<&'a str, Malformed> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(Malformed);
        }
        Ok(&self.s[start..self.pos])
    }

    /// After the opening quote: the text up to the closing one, which is consumed.
    fn quoted(&mut self) -> Result<&'a str, Malformed> {
        let start = self.pos;
        loop {
            match self.peek() {
                None => return Err(Malformed),
                Some(b'"') => {
                    let inner = &self.s[start..self.pos];
                    self.pos += 1;
                    return Ok(inner);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                        Some(b) if b == b'\t' || b >= b' ' && b != 0x7f => self.pos += 1,
                        _ => return Err(Malformed),
                    }
                }
                // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                Some(b) if b == b'\t' || b >= b' ' && b != 0x7f => self.pos += 1,
                Some(_) => return Err(Malformed),
            }
        }
    }

    /// The next extension (empty list elements skipped): its name and its parameters
    /// read as a permessage-deflate offer, or `Malformed` (then the rest of it, up to
    /// the next comma outside quotes, is skipped). `None` at the end.
    fn next_element(&mut self) -> Option<Result<(&'a str, Offer), Malformed>> {
        loop {
            self.skip_ows();
            match self.peek() {
                None => return None,
                Some(b',') => self.pos += 1,
                Some(_) => break,
            }
        }
        let parsed = self.element();
        if parsed.is_err() {
            self.skip_malformed();
        }
        Some(parsed)
    }

    fn element(&mut self) -> Result<(&'a str, Offer), Malformed> {
        let name = self.token()?;
        let mut offer = Offer::default();
        loop {
            self.skip_ows();
            match self.peek() {
                None => return Ok((name, offer)),
                Some(b',') => {
                    self.pos += 1;
                    return Ok((name, offer));
                }
                Some(b';') => self.pos += 1,
                Some(_) => return Err(Malformed),
            }
            self.skip_ows();
            let param = self.token()?;
            self.skip_ows();
            let value = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.skip_ows();
                if self.peek() == Some(b'"') {
                    self.pos += 1;
                    Some(Value::Quoted(self.quoted()?))
                } else {
                    Some(Value::Token(self.token()?))
                }
            } else {
                None
            };
            offer.apply(param, value);
        }
    }

    /// Skips past the next comma outside a quoted string (or to the end).
    fn skip_malformed(&mut self) {
        let bytes = self.s.as_bytes();
        let mut in_quotes = false;
        while let Some(&b) = bytes.get(self.pos) {
            self.pos += 1;
            match b {
                b'\\' if in_quotes => self.pos += 1,
                b'"' => in_quotes = !in_quotes,
                b',' if !in_quotes => return,
                _ => {}
            }
        }
        self.pos = self.pos.min(bytes.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: DeflateConfig = DeflateConfig {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };

    /// The answer to `offers` under `config`, or `None` when declined.
    fn answer(offers: &[&str], config: &DeflateConfig) -> Option<String> {
        negotiate(offers, config).map(|a| a.response_value())
    }

    fn answer1(offer: &str) -> Option<String> {
        answer(&[offer], &DEFAULT)
    }

    #[test]
    fn browsers_offers() {
        // Firefox.
        let firefox = negotiate(["permessage-deflate"], &DEFAULT).unwrap();
        assert_eq!(firefox, DeflateAgreement::default());
        assert_eq!(firefox.response_value(), "permessage-deflate");
        assert_eq!(
            (
                firefox.compress_window_bits(),
                firefox.decompress_window_bits()
            ),
            (15, 15)
        );
        // Chrome, Safari: client_max_window_bits without a value; with a default
        // config nothing needs saying.
        let chrome = negotiate(["permessage-deflate; client_max_window_bits"], &DEFAULT).unwrap();
        assert_eq!(chrome.response_value(), "permessage-deflate");
        assert_eq!(chrome.client_max_window_bits(), 15);
        // ... and the config's limit is answered when the client offered the parameter.
        let config = DeflateConfig {
            client_max_window_bits: 12,
            ..DEFAULT
        };
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits"], &config).unwrap(),
            "permessage-deflate; client_max_window_bits=12"
        );
        // Old Chrome and Safari also sent x-webkit-deflate-frame: not ours.
        assert_eq!(answer1("x-webkit-deflate-frame"), None);
        assert_eq!(
            answer1("x-webkit-deflate-frame, permessage-deflate").unwrap(),
            "permessage-deflate"
        );
    }

    #[test]
    fn rfc7692_examples() {
        // §7.1.3 (and §5.2's offers): each offer with the answers a default server and
        // a constrained one give.
        let c = "permessage-deflate; client_max_window_bits; server_max_window_bits=10";
        assert_eq!(
            answer1(c).unwrap(),
            "permessage-deflate; server_max_window_bits=10"
        );
        let fallback = "permessage-deflate; client_max_window_bits; server_max_window_bits=10, \
                        permessage-deflate; client_max_window_bits";
        let agreement = negotiate([fallback], &DEFAULT).unwrap();
        assert_eq!(agreement.server_max_window_bits(), 10);
        assert_eq!(agreement.compress_window_bits(), 10);
        // A server with a smaller window than offered answers its own.
        let small = DeflateConfig {
            server_max_window_bits: 9,
            ..DEFAULT
        };
        assert_eq!(
            answer(&[fallback], &small).unwrap(),
            "permessage-deflate; server_max_window_bits=9"
        );
        // A malformed first offer falls back to the second.
        let bad_first = "permessage-deflate; server_max_window_bits=16, permessage-deflate";
        assert_eq!(answer1(bad_first).unwrap(), "permessage-deflate");
        // §7.1.3: the client asks for no server context takeover; the server must echo it.
        assert_eq!(
            answer1("permessage-deflate; server_no_context_takeover").unwrap(),
            "permessage-deflate; server_no_context_takeover"
        );
        // The server may add client_no_context_takeover unasked.
        let no_client = DeflateConfig {
            client_no_context_takeover: true,
            ..DEFAULT
        };
        assert_eq!(
            answer(&["permessage-deflate"], &no_client).unwrap(),
            "permessage-deflate; client_no_context_takeover"
        );
    }

    #[test]
    fn autobahn_13_offers() {
        // 13.7: three offers in one header.
        let offer = "permessage-deflate; client_no_context_takeover; client_max_window_bits, \
                     permessage-deflate; client_no_context_takeover, permessage-deflate";
        let agreement = negotiate([offer], &DEFAULT).unwrap();
        assert!(agreement.client_no_context_takeover());
        assert!(!agreement.server_no_context_takeover());
        assert_eq!(
            agreement.response_value(),
            "permessage-deflate; client_no_context_takeover"
        );
        // 13.3-13.6: server_no_context_takeover and server_max_window_bits 9 or 15.
        for (offer, want) in [
            (
                "permessage-deflate; server_max_window_bits=9",
                "permessage-deflate; server_max_window_bits=9",
            ),
            (
                "permessage-deflate; server_max_window_bits=15",
                "permessage-deflate; server_max_window_bits=15",
            ),
            (
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
            ),
            (
                "permessage-deflate; client_max_window_bits; server_no_context_takeover",
                "permessage-deflate; server_no_context_takeover",
            ),
        ] {
            assert_eq!(answer1(offer).unwrap(), want, "{offer}");
        }
    }

    #[test]
    fn several_headers_first_acceptable_wins() {
        // Across headers, in order.
        let headers = [
            "x-foo; a=1",
            "",
            "permessage-deflate; server_max_window_bits=11",
            "permessage-deflate",
        ];
        assert_eq!(
            answer(&headers, &DEFAULT).unwrap(),
            "permessage-deflate; server_max_window_bits=11"
        );
        // A declined offer in the first header lets the second header's offer win.
        let headers = [
            "permessage-deflate; bogus",
            "permessage-deflate; client_no_context_takeover",
        ];
        assert_eq!(
            answer(&headers, &DEFAULT).unwrap(),
            "permessage-deflate; client_no_context_takeover"
        );
        // Owned strings work too, and no headers at all means no agreement.
        let owned = vec![String::from("permessage-deflate")];
        assert!(negotiate(&owned, &DEFAULT).is_some());
        assert!(negotiate(Vec::<String>::new(), &DEFAULT).is_none());
        assert!(negotiate(["", "  ", ",,", " , \t,"], &DEFAULT).is_none());
    }

    #[test]
    fn declined_offers() {
        for offer in [
            // Unknown parameter.
            "permessage-deflate; foo",
            "permessage-deflate; foo=bar",
            "permessage-deflate; client_max_window_bits; x",
            // Duplicated parameters.
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=9; client_max_window_bits",
            // A value on the no-context-takeover flags, even an empty or quoted one.
            "permessage-deflate; server_no_context_takeover=true",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"\"",
            // server_max_window_bits needs a value.
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=",
            // Window bits out of range or not plain decimal.
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=0",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; server_max_window_bits=9.0",
            "permessage-deflate; server_max_window_bits=255",
            "permessage-deflate; server_max_window_bits=264",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=abc",
            // Quoted values that are not a valid window-bits token once unquoted.
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate; server_max_window_bits=\" 10\"",
            "permessage-deflate; server_max_window_bits=\"1 0\"",
            "permessage-deflate; server_max_window_bits=\"10,\"",
            "permessage-deflate; client_max_window_bits=\"16\"",
            // Case: names are case-sensitive.
            "Permessage-Deflate",
            "PERMESSAGE-DEFLATE",
            "permessage-deflate; Server_No_Context_Takeover",
            "permessage-deflate; CLIENT_MAX_WINDOW_BITS",
            // Not the grammar.
            "permessage-deflate;",
            "permessage-deflate; ; client_max_window_bits",
            "permessage-deflate=1",
            "permessage-deflate client_max_window_bits",
            "permessage-deflate; server_max_window_bits==10",
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate; server_max_window_bits=1\"0\"",
            "\"permessage-deflate\"",
            "permessage-deflate; server_max_window_bits=10\u{e9}",
            "permessage-deflate\u{0}",
            "permessage-deflate\r\n",
            "; permessage-deflate",
            // Near misses of the name.
            "permessage-deflate2",
            "permessage_deflate",
            "deflate",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(answer1(offer), None, "{offer:?} must be declined");
            // And the next offer is then tried.
            let with_next = format!("{offer}, permessage-deflate; client_no_context_takeover");
            let with_next_ok = offer.contains('"') && offer.matches('"').count() % 2 == 1;
            if !with_next_ok {
                assert_eq!(
                    answer1(&with_next).as_deref(),
                    Some("permessage-deflate; client_no_context_takeover"),
                    "{with_next:?}"
                );
            }
            let headers = [offer, "permessage-deflate"];
            assert_eq!(
                answer(&headers, &DEFAULT).unwrap(),
                "permessage-deflate",
                "{offer:?}"
            );
        }
    }

    #[test]
    fn an_unterminated_quote_swallows_the_rest_of_its_header_only() {
        let offer = "permessage-deflate; server_max_window_bits=\"10, permessage-deflate";
        assert_eq!(answer1(offer), None);
        assert_eq!(
            answer(&[offer, "permessage-deflate"], &DEFAULT).unwrap(),
            "permessage-deflate"
        );
        // A comma inside a well-formed quoted value does not split the list.
        let offer =
            "x-foo; a=\"b, permessage-deflate\", permessage-deflate; server_no_context_takeover";
        assert_eq!(
            answer1(offer).unwrap(),
            "permessage-deflate; server_no_context_takeover"
        );
        let offer = "x-foo; a=\"b\\\", permessage-deflate\"";
        assert_eq!(answer1(offer), None);
        // A malformed element's quoted commas are skipped as well.
        let offer =
            "x-foo a=\"b, permessage-deflate\", permessage-deflate; client_no_context_takeover";
        assert_eq!(
            answer1(offer).unwrap(),
            "permessage-deflate; client_no_context_takeover"
        );
    }

    #[test]
    fn quoted_values_and_whitespace() {
        for offer in [
            "permessage-deflate; server_max_window_bits=\"10\"",
            "permessage-deflate;server_max_window_bits=10",
            "permessage-deflate ;server_max_window_bits = 10",
            " \tpermessage-deflate\t;\t server_max_window_bits\t=\t\"10\"\t ",
            "permessage-deflate; server_max_window_bits=\"1\\0\"",
            ",permessage-deflate; server_max_window_bits=10,",
            ", ,permessage-deflate  ;  server_max_window_bits=10 , ,",
        ] {
            assert_eq!(
                answer1(offer).as_deref(),
                Some("permessage-deflate; server_max_window_bits=10"),
                "{offer:?}"
            );
        }
        assert_eq!(
            answer1("permessage-deflate; client_max_window_bits=\"9\"; server_no_context_takeover")
                .unwrap(),
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=9"
        );
        // Other extensions may carry any well-formed parameters.
        assert_eq!(
            answer1("x-foo; a; b=c; d=\"e f, g\\\"h\", permessage-deflate").unwrap(),
            "permessage-deflate"
        );
    }

    #[test]
    fn server_no_context_takeover() {
        // Offered: echoed and used.
        let a = negotiate(["permessage-deflate; server_no_context_takeover"], &DEFAULT).unwrap();
        assert!(a.server_no_context_takeover());
        // Not offered: added when the config wants it.
        let config = DeflateConfig {
            server_no_context_takeover: true,
            ..DEFAULT
        };
        let a = negotiate(["permessage-deflate"], &config).unwrap();
        assert!(a.server_no_context_takeover());
        assert_eq!(
            a.response_value(),
            "permessage-deflate; server_no_context_takeover"
        );
        // Neither: absent.
        let a = negotiate(["permessage-deflate"], &DEFAULT).unwrap();
        assert!(!a.server_no_context_takeover());
    }

    #[test]
    fn client_no_context_takeover() {
        let a = negotiate(["permessage-deflate; client_no_context_takeover"], &DEFAULT).unwrap();
        assert!(a.client_no_context_takeover());
        assert_eq!(
            a.response_value(),
            "permessage-deflate; client_no_context_takeover"
        );
        let config = DeflateConfig {
            client_no_context_takeover: true,
            ..DEFAULT
        };
        let a = negotiate(["permessage-deflate; client_max_window_bits"], &config).unwrap();
        assert!(a.client_no_context_takeover());
        assert_eq!(
            a.response_value(),
            "permessage-deflate; client_no_context_takeover"
        );
    }

    #[test]
    fn server_max_window_bits() {
        for offered in 8..=15u8 {
            for config in 8..=15u8 {
                let offer = format!("permessage-deflate; server_max_window_bits={offered}");
                let cfg = DeflateConfig {
                    server_max_window_bits: config,
                    ..DEFAULT
                };
                let a = negotiate([offer.as_str()], &cfg).unwrap();
                let want = offered.min(config);
                assert_eq!(a.server_max_window_bits(), want);
                assert_eq!(a.compress_window_bits(), want.max(9));
                // Offered: always answered, ≤ the offer.
                assert_eq!(
                    a.response_value(),
                    format!("permessage-deflate; server_max_window_bits={want}")
                );
            }
        }
        // Not offered: answered only when the config is below 15.
        for config in 8..=14u8 {
            let cfg = DeflateConfig {
                server_max_window_bits: config,
                ..DEFAULT
            };
            let a = negotiate(["permessage-deflate"], &cfg).unwrap();
            assert_eq!(
                a.response_value(),
                format!("permessage-deflate; server_max_window_bits={config}")
            );
            assert_eq!(a.compress_window_bits(), config.max(9));
        }
    }

    #[test]
    fn client_max_window_bits() {
        // Not offered: never answered, whatever the config; the client may use 15.
        for config in 8..=15u8 {
            let cfg = DeflateConfig {
                client_max_window_bits: config,
                ..DEFAULT
            };
            for offer in [
                "permessage-deflate",
                "permessage-deflate; server_max_window_bits=12",
                "permessage-deflate; client_no_context_takeover",
            ] {
                let a = negotiate([offer], &cfg).unwrap();
                assert!(
                    !a.response_value().contains("client_max_window_bits"),
                    "{offer}"
                );
                assert_eq!(a.client_max_window_bits(), 15);
                assert_eq!(a.decompress_window_bits(), 15);
            }
        }
        // Offered without a value: the config's value when below 15.
        for config in 8..=15u8 {
            let cfg = DeflateConfig {
                client_max_window_bits: config,
                ..DEFAULT
            };
            let a = negotiate(["permessage-deflate; client_max_window_bits"], &cfg).unwrap();
            assert_eq!(a.client_max_window_bits(), config);
            assert_eq!(a.decompress_window_bits(), config.max(9));
            let want = if config < 15 {
                format!("permessage-deflate; client_max_window_bits={config}")
            } else {
                "permessage-deflate".to_owned()
            };
            assert_eq!(a.response_value(), want);
        }
        // Offered with a value: the smaller of offer and config, never above the offer.
        for offered in 8..=15u8 {
            for config in 8..=15u8 {
                let offer = format!("permessage-deflate; client_max_window_bits={offered}");
                let cfg = DeflateConfig {
                    client_max_window_bits: config,
                    ..DEFAULT
                };
                let a = negotiate([offer.as_str()], &cfg).unwrap();
                let want = offered.min(config);
                assert_eq!(a.client_max_window_bits(), want);
                assert_eq!(a.decompress_window_bits(), want.max(9));
                assert_eq!(
                    a.response_value().contains("client_max_window_bits"),
                    want < 15
                );
            }
        }
    }

    #[test]
    fn window_bits_8() {
        let a = negotiate(
            ["permessage-deflate; server_max_window_bits=8; client_max_window_bits=8"],
            &DEFAULT,
        )
        .unwrap();
        assert_eq!(
            a.response_value(),
            "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8"
        );
        assert_eq!(
            (a.server_max_window_bits(), a.client_max_window_bits()),
            (8, 8)
        );
        assert_eq!(
            (a.compress_window_bits(), a.decompress_window_bits()),
            (9, 9)
        );
    }

    #[test]
    fn config_out_of_range_is_clamped() {
        let wild = DeflateConfig {
            server_max_window_bits: 0,
            client_max_window_bits: 200,
            ..DEFAULT
        };
        let a = negotiate(["permessage-deflate; client_max_window_bits"], &wild).unwrap();
        assert_eq!(
            a.response_value(),
            "permessage-deflate; server_max_window_bits=8"
        );
        assert_eq!(
            (a.server_max_window_bits(), a.client_max_window_bits()),
            (8, 15)
        );
    }

    #[test]
    fn every_parameter_in_the_fixed_order() {
        let config = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 11,
        };
        let offer = "permessage-deflate; client_max_window_bits; server_max_window_bits=12";
        let a = negotiate([offer], &config).unwrap();
        let value = "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                     server_max_window_bits=10; client_max_window_bits=11";
        assert_eq!(a.response_value(), value);
        let mut out = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
        a.write_response_header(&mut out);
        assert_eq!(
            out,
            format!("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: {value}\r\n")
                .into_bytes()
        );
        // The answer, read back as an offer, is accepted and agrees with itself.
        assert_eq!(negotiate([value], &DEFAULT), Some(a));
    }

    #[test]
    fn negotiate_request_reads_every_header() {
        use crate::http::{header_storage, parse_request, Parse};
        let buf =
            b"GET / HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Extensions: permessage-deflate; x\r\n\
sec-websocket-extensions: \xff\xfe\r\nX-Other: permessage-deflate\r\n\
SEC-WEBSOCKET-EXTENSIONS: foo, permessage-deflate; server_max_window_bits=9\r\n\r\n";
        let mut headers = header_storage();
        let Ok(Parse::Complete { request, .. }) = parse_request(buf, &mut headers, 8192) else {
            panic!("a complete head");
        };
        let a = negotiate_request(&request, &DEFAULT).unwrap();
        assert_eq!(
            a.response_value(),
            "permessage-deflate; server_max_window_bits=9"
        );
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\nX-Other: permessage-deflate\r\n\r\n";
        let mut headers = header_storage();
        let Ok(Parse::Complete { request, .. }) = parse_request(buf, &mut headers, 8192) else {
            panic!("a complete head");
        };
        assert!(negotiate_request(&request, &DEFAULT).is_none());
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let alphabet = b"permessage-deflate;,=\" \t\\client_server_max_window_bits_no_context_takeover0123456789\x7f\x01\xc3\xa9";
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 60) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    let x = state.rotate_left(i as u32 * 5);
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            if let Some(a) = negotiate([text.as_ref()], &DEFAULT) {
                assert!((8..=15).contains(&a.server_max_window_bits()));
                assert!((8..=15).contains(&a.client_max_window_bits()));
                assert_eq!(negotiate([a.response_value()], &DEFAULT), Some(a));
                if !text.contains("client_max_window_bits") {
                    assert!(!a.response_value().contains("client_max_window_bits"));
                }
            }
        }
    }
}
