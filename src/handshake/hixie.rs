//! The legacy hixie-76 (hybi-00) and hixie-75 handshakes, server side: key parsing,
//! the MD5 challenge answer and the 101 heads. The client side is in [`client`].
//!
//! A hixie-76 server answers in two steps: the 101 head as soon as the request head is
//! read ([`write_hixie76_head`]), then, once the 8 bytes that follow the request head
//! have arrived, the 16-byte answer ([`hixie76_answer`]). The head must not wait for
//! those bytes: a proxy such as HAProxy holds them back until it sees the 101.
//!
//! ```
//! use ringws::handshake::{hixie76_answer, parse_hixie76_key};
//!
//! // The example of draft-hixie-thewebsocketprotocol-76, section 1.3.
//! let key1 = parse_hixie76_key(b"4 @1  46546xW%0l 1 5").unwrap();
//! let key2 = parse_hixie76_key(b"12998 5 Y3 1  .P00").unwrap();
//! assert_eq!((key1, key2), (829309203, 259970620));
//! assert_eq!(&hixie76_answer(key1, key2, b"^n:ds[4U"), b"8jKS'y:G*Co,Wxa-");
//! ```

pub mod client;

use md5::{Digest, Md5};

use crate::http::{write_header, write_headers, HttpError};

/// 400: a hixie-76 request with only one of `Sec-WebSocket-Key1` / `Key2`.
pub const ERR_HIXIE_KEY_MISSING: HttpError =
    HttpError::new(400, "hixie-76 request lacks Sec-WebSocket-Key1 or Key2");
/// 400: a `Sec-WebSocket-Key1`/`Key2` without a space (the number is divided by them).
pub const ERR_HIXIE_KEY_NO_SPACES: HttpError =
    HttpError::new(400, "Sec-WebSocket-Key1/Key2 has no spaces");
/// 400: a `Sec-WebSocket-Key1`/`Key2` whose number is not a multiple of its spaces.
pub const ERR_HIXIE_KEY_NOT_INTEGRAL: HttpError = HttpError::new(
    400,
    "Sec-WebSocket-Key1/Key2 number is not a multiple of its spaces",
);
/// 400: a `Sec-WebSocket-Key1`/`Key2` whose quotient does not fit 32 bits.
pub const ERR_HIXIE_KEY_OVERFLOW: HttpError =
    HttpError::new(400, "Sec-WebSocket-Key1/Key2 number is too large");

/// Parses a hixie-76 `Sec-WebSocket-Key1`/`Key2` value: its digits read as one decimal
/// number, divided by its number of spaces (U+0020).
///
/// Errors (all 400): no space ([`ERR_HIXIE_KEY_NO_SPACES`]), a remainder
/// ([`ERR_HIXIE_KEY_NOT_INTEGRAL`]), a number or quotient beyond 32 bits
/// ([`ERR_HIXIE_KEY_OVERFLOW`]).
///
/// ```
/// use ringws::handshake::{parse_hixie76_key, ERR_HIXIE_KEY_NO_SPACES};
///
/// assert_eq!(parse_hixie76_key(b"1 2 x"), Ok(6)); // 12 divided by 2 spaces
/// assert_eq!(parse_hixie76_key(b"12"), Err(ERR_HIXIE_KEY_NO_SPACES));
/// ```
pub fn parse_hixie76_key(value: &[u8]) -> Result<u32, HttpError> {
    let mut number: u64 = 0;
    let mut spaces: u64 = 0;
    for &b in value {
        match b {
            b'0'..=b'9' => {
                number = number
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(b - b'0')))
                    // The draft bounds the number itself by 2^32 - 1 times 12 spaces at
                    // most; anything past u64 is surely invalid.
                    .ok_or(ERR_HIXIE_KEY_OVERFLOW)?;
            }
            b' ' => spaces += 1,
            _ => {}
        }
    }
    if spaces == 0 {
        return Err(ERR_HIXIE_KEY_NO_SPACES);
    }
    if !number.is_multiple_of(spaces) {
        return Err(ERR_HIXIE_KEY_NOT_INTEGRAL);
    }
    u32::try_from(number / spaces).map_err(|_| ERR_HIXIE_KEY_OVERFLOW)
}

/// The 16-byte hixie-76 challenge answer: MD5 of key1 and key2 (each as 4 big-endian
/// bytes) followed by the 8 bytes the client sent after its request head.
pub fn hixie76_answer(key1: u32, key2: u32, body: &[u8; 8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(key1.to_be_bytes());
    md5.update(key2.to_be_bytes());
    md5.update(body);
    md5.finalize().into()
}

/// What a hixie 101 head says besides the fixed lines.
///
/// ```
/// use ringws::handshake::{write_hixie76_head, HixieHead};
///
/// let head = HixieHead {
///     origin: Some("http://example.com"),
///     scheme: "ws",
///     host: "example.com",
///     resource: "/demo",
///     protocol: Some("sample"),
/// };
/// let mut out = Vec::new();
/// write_hixie76_head(&mut out, &head, &[]);
/// assert_eq!(
///     out,
///     b"HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
/// Connection: Upgrade\r\nSec-WebSocket-Origin: http://example.com\r\n\
/// Sec-WebSocket-Location: ws://example.com/demo\r\nSec-WebSocket-Protocol: sample\r\n\r\n"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HixieHead<'a> {
    /// The client's `Origin`, echoed back (the header is left out when `None`).
    pub origin: Option<&'a str>,
    /// `ws`, or `wss` behind TLS.
    pub scheme: &'a str,
    /// The `Host` the client asked for.
    pub host: &'a str,
    /// The resource the client asked for: path and query as requested.
    pub resource: &'a str,
    /// The subprotocol chosen, if any.
    pub protocol: Option<&'a str>,
}

/// Writes the hixie-76 101 head (status line `HTTP/1.1 101 WebSocket Protocol
/// Handshake`, `Upgrade: WebSocket`, `Connection: Upgrade`, `Sec-WebSocket-Origin`,
/// `Sec-WebSocket-Location`, `Sec-WebSocket-Protocol` when chosen, `extra_headers`,
/// blank line). The 16-byte answer follows once the client's 8 bytes are in.
pub fn write_hixie76_head(out: &mut Vec<u8>, head: &HixieHead<'_>, extra_headers: &[(&str, &str)]) {
    out.extend_from_slice(b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n");
    write_fields(out, head, "Sec-", extra_headers);
}

/// Writes the hixie-75 101 head (`HTTP/1.1 101 Web Socket Protocol Handshake`,
/// `WebSocket-Origin`, `WebSocket-Location`, `WebSocket-Protocol` when chosen); there
/// is no challenge.
pub fn write_hixie75_head(out: &mut Vec<u8>, head: &HixieHead<'_>, extra_headers: &[(&str, &str)]) {
    out.extend_from_slice(b"HTTP/1.1 101 Web Socket Protocol Handshake\r\n");
    write_fields(out, head, "", extra_headers);
}

fn write_fields(out: &mut Vec<u8>, head: &HixieHead<'_>, prefix: &str, extra: &[(&str, &str)]) {
    out.extend_from_slice(b"Upgrade: WebSocket\r\nConnection: Upgrade\r\n");
    if let Some(origin) = head.origin {
        push_name(out, prefix, "WebSocket-Origin");
        push_clean(out, origin);
        out.extend_from_slice(b"\r\n");
    }
    push_name(out, prefix, "WebSocket-Location");
    for part in [head.scheme, "://", head.host, head.resource] {
        push_clean(out, part);
    }
    out.extend_from_slice(b"\r\n");
    if let Some(protocol) = head.protocol {
        if prefix.is_empty() {
            write_header(out, "WebSocket-Protocol", protocol);
        } else {
            write_header(out, "Sec-WebSocket-Protocol", protocol);
        }
    }
    write_headers(out, extra);
    out.extend_from_slice(b"\r\n");
}

fn push_name(out: &mut Vec<u8>, prefix: &str, name: &str) {
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
}

/// Appends `s` with the house's header rule (CR, LF and NUL written as spaces, see
/// `http::write_header`), so request data cannot split the head.
fn push_clean(out: &mut Vec<u8>, s: &str) {
    crate::http::write_header_piece(out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_vector() {
        let key1 = parse_hixie76_key(b"4 @1  46546xW%0l 1 5").unwrap();
        let key2 = parse_hixie76_key(b"12998 5 Y3 1  .P00").unwrap();
        assert_eq!(
            &hixie76_answer(key1, key2, b"^n:ds[4U"),
            b"8jKS'y:G*Co,Wxa-"
        );
    }

    #[test]
    fn key_edge_cases() {
        assert_eq!(parse_hixie76_key(b"123456"), Err(ERR_HIXIE_KEY_NO_SPACES));
        assert_eq!(parse_hixie76_key(b""), Err(ERR_HIXIE_KEY_NO_SPACES));
        assert_eq!(parse_hixie76_key(b"1 1 "), Err(ERR_HIXIE_KEY_NOT_INTEGRAL));
        assert_eq!(parse_hixie76_key(b" x "), Ok(0));
        // u32::MAX * 2 with two spaces is fine; one more and the quotient overflows.
        assert_eq!(parse_hixie76_key(b"8589934590  "), Ok(u32::MAX));
        assert_eq!(
            parse_hixie76_key(b"4294967296 "),
            Err(ERR_HIXIE_KEY_OVERFLOW)
        );
        // Digits past u64 fail without overflowing.
        assert_eq!(
            parse_hixie76_key(b"99999999999999999999999 "),
            Err(ERR_HIXIE_KEY_OVERFLOW)
        );
        for e in [
            ERR_HIXIE_KEY_MISSING,
            ERR_HIXIE_KEY_NO_SPACES,
            ERR_HIXIE_KEY_NOT_INTEGRAL,
            ERR_HIXIE_KEY_OVERFLOW,
        ] {
            assert_eq!(e.status, 400);
        }
    }

    #[test]
    fn hixie75_head() {
        let head = HixieHead {
            origin: Some("http://o"),
            scheme: "wss",
            host: "h:1",
            resource: "/p?q=1",
            protocol: Some("x"),
        };
        let mut out = Vec::new();
        write_hixie75_head(&mut out, &head, &[("Server", "ringws")]);
        assert_eq!(
            out,
            &b"HTTP/1.1 101 Web Socket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
Connection: Upgrade\r\nWebSocket-Origin: http://o\r\nWebSocket-Location: wss://h:1/p?q=1\r\n\
WebSocket-Protocol: x\r\nServer: ringws\r\n\r\n"[..]
        );
        let head = HixieHead {
            origin: None,
            host: "a\r\nb",
            protocol: None,
            ..head
        };
        out.clear();
        write_hixie76_head(&mut out, &head, &[]);
        assert_eq!(
            out,
            &b"HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Location: wss://a  b/p?q=1\r\n\r\n"[..]
        );
    }

    /// The head's request-derived pieces follow the house's one header rule
    /// (`http::write_header`): CR, LF and NUL are spaces.
    #[test]
    fn hixie_heads_use_the_one_header_sanitiser() {
        let head = HixieHead {
            origin: Some("http://o\0\r\nSet-Cookie: x"),
            scheme: "ws",
            host: "h\0",
            resource: "/\n",
            protocol: None,
        };
        let mut out = Vec::new();
        write_hixie76_head(&mut out, &head, &[]);
        assert_eq!(
            out,
            &b"HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Origin: http://o   Set-Cookie: x\r\n\
Sec-WebSocket-Location: ws://h / \r\n\r\n"[..]
        );
    }
}
