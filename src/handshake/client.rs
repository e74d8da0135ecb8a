//! The client side of the opening handshake, sans-I/O: the key, the upgrade request
//! and the check of the server's answer, for RFC 6455 ([`client_key`],
//! [`write_client_request`], [`read_server_response`]) and for hixie-76
//! ([`Hixie76Client`]). Tests and the load generator use them.
//!
//! Nothing here reads a socket, a clock or a random source: the caller supplies the
//! random nonce or key bytes and the bytes it has read so far.

pub use super::hixie::client::{Hixie76Client, HixieClientError, HixieKey};

use super::accept::accept_key;
use crate::http::{write_header, write_headers, MAX_HEADERS};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use core::fmt;

/// A `Sec-WebSocket-Key` value: base64 of 16 nonce bytes, 24 ASCII bytes on the stack.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey([u8; 24]);

impl ClientKey {
    /// The key as a `str` (base64 is always ASCII).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The key as ASCII bytes.
    pub fn as_bytes(&self) -> &[u8; 24] {
        &self.0
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientKey").field(&self.as_str()).finish()
    }
}

/// Base64 of 16 caller-chosen random bytes: the `Sec-WebSocket-Key` (24 bytes, on the
/// stack). RFC 6455 asks for a fresh random nonce per connection.
///
/// ```
/// let key = ringws::handshake::client_key(*b"the sample nonce");
/// assert_eq!(key.as_str(), "dGhlIHNhbXBsZSBub25jZQ==");
/// ```
pub fn client_key(nonce: [u8; 16]) -> ClientKey {
    let mut out = [0u8; 24];
    // 16 bytes always encode to exactly 24 base64 bytes, so this cannot fail.
    let written = STANDARD.encode_slice(nonce, &mut out).unwrap_or(0);
    debug_assert_eq!(written, 24);
    ClientKey(out)
}

/// Appends a version-13 upgrade request to `out`: `GET path_and_query HTTP/1.1`,
/// `Host`, `Upgrade: websocket`, `Connection: Upgrade`, `Sec-WebSocket-Key`,
/// `Sec-WebSocket-Version: 13`, `Sec-WebSocket-Protocol` (comma-joined) when
/// `protocols` is not empty, then `extra_headers`.
///
/// CR and LF in header names and values are written as spaces; spaces, CR and LF in
/// `path_and_query` are percent-encoded; an empty `path_and_query` is sent as `/`.
///
/// ```
/// use ringws::handshake::{client_key, write_client_request};
///
/// let key = client_key(*b"the sample nonce");
/// let mut out = Vec::new();
/// write_client_request(&mut out, "example.com", "/chat", &key, &["chat"], &[]);
/// assert!(out.starts_with(b"GET /chat HTTP/1.1\r\nHost: example.com\r\n"));
/// assert!(out.ends_with(b"Sec-WebSocket-Protocol: chat\r\n\r\n"));
/// ```
pub fn write_client_request(
    out: &mut Vec<u8>,
    host: &str,
    path_and_query: &str,
    key: &ClientKey,
    protocols: &[&str],
    extra_headers: &[(&str, &str)],
) {
    out.extend_from_slice(b"GET ");
    let target = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    // A request target never contains spaces or line breaks: percent-encode them.
    for b in target.bytes() {
        match b {
            b' ' => out.extend_from_slice(b"%20"),
            b'\r' => out.extend_from_slice(b"%0D"),
            b'\n' => out.extend_from_slice(b"%0A"),
            b => out.push(b),
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_header(out, "Host", host);
    out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
    write_header(out, "Sec-WebSocket-Key", key.as_str());
    out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
    if !protocols.is_empty() {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        for (i, p) in protocols.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            crate::http::write_header_piece(out, p);
        }
        out.extend_from_slice(b"\r\n");
    }
    write_headers(out, extra_headers);
    out.extend_from_slice(b"\r\n");
}

/// Why the server's answer to an upgrade request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientHandshakeError {
    /// The bytes are not an HTTP/1.x response head (or it has too many headers).
    Malformed(&'static str),
    /// The server answered with a status other than 101.
    Status(u16),
    /// The 101 answer lacks `Upgrade: websocket`.
    NoUpgrade,
    /// The 101 answer lacks the `upgrade` token in `Connection`.
    NoConnectionUpgrade,
    /// The 101 answer has no `Sec-WebSocket-Accept`.
    NoAccept,
    /// `Sec-WebSocket-Accept` does not match the key sent.
    BadAccept,
}

impl fmt::Display for ClientHandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientHandshakeError::Malformed(why) => write!(f, "malformed response: {why}"),
            ClientHandshakeError::Status(status) => {
                write!(f, "server answered {status} instead of 101")
            }
            ClientHandshakeError::NoUpgrade => f.write_str("101 without Upgrade: websocket"),
            ClientHandshakeError::NoConnectionUpgrade => {
                f.write_str("101 without Connection: upgrade")
            }
            ClientHandshakeError::NoAccept => f.write_str("101 without Sec-WebSocket-Accept"),
            ClientHandshakeError::BadAccept => {
                f.write_str("Sec-WebSocket-Accept does not match the key")
            }
        }
    }
}

impl std::error::Error for ClientHandshakeError {}

fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .any(|h| {
            h.value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
}

/// Checks the server's answer to [`write_client_request`] on the bytes read so far.
///
/// `Ok(None)`: the head is incomplete, read more and call again with the whole buffer.
/// `Ok(Some(head_len))`: a valid `101 Switching Protocols` whose
/// `Sec-WebSocket-Accept` matches `key`; frames may follow from `buf[head_len..]`.
/// `Err`: anything else ([`ClientHandshakeError::Status`] carries a status other than
/// 101).
///
/// ```
/// use ringws::handshake::{client_key, read_server_response, ClientHandshakeError};
///
/// let key = client_key(*b"the sample nonce");
/// let answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
/// Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00";
/// assert_eq!(read_server_response(answer, &key), Ok(Some(answer.len() - 2)));
/// assert_eq!(read_server_response(&answer[..40], &key), Ok(None));
/// assert_eq!(
///     read_server_response(b"HTTP/1.1 404 Not Found\r\n\r\n", &key),
///     Err(ClientHandshakeError::Status(404))
/// );
/// ```
pub fn read_server_response(
    buf: &[u8],
    key: &ClientKey,
) -> Result<Option<usize>, ClientHandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(n)) => n,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ClientHandshakeError::Malformed("too many headers"))
        }
        Err(_) => return Err(ClientHandshakeError::Malformed("not an HTTP/1.x response")),
    };
    let status = response.code.unwrap_or(0);
    if status != 101 {
        return Err(ClientHandshakeError::Status(status));
    }
    let headers = response.headers;
    if !has_token(headers, "Upgrade", "websocket") {
        return Err(ClientHandshakeError::NoUpgrade);
    }
    if !has_token(headers, "Connection", "upgrade") {
        return Err(ClientHandshakeError::NoConnectionUpgrade);
    }
    let accept = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Accept"))
        .ok_or(ClientHandshakeError::NoAccept)?;
    if accept.value.trim_ascii() != accept_key(key.as_bytes()) {
        return Err(ClientHandshakeError::BadAccept);
    }
    Ok(Some(head_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{validate_upgrade, write_accept};
    use crate::http::{parse_request, Parse};

    #[test]
    fn key_is_base64_of_nonce() {
        assert_eq!(
            client_key(*b"the sample nonce").as_str(),
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
        assert_eq!(client_key([0; 16]).as_str(), "AAAAAAAAAAAAAAAAAAAAAA==");
    }

    fn round_trip(protocols: &[&str], extra: &[(&str, &str)]) {
        let key = client_key([7; 16]);
        let mut req = Vec::new();
        write_client_request(
            &mut req,
            "127.0.0.1:9001",
            "/echo?x=1",
            &key,
            protocols,
            extra,
        );
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Ok(Parse::Complete { request, head_len }) = parse_request(&req, &mut headers, 8192)
        else {
            panic!("request did not parse");
        };
        assert_eq!(head_len, req.len());
        assert_eq!(request.path(), "/echo");
        assert_eq!(request.query(), Some("x=1"));
        let upgrade = validate_upgrade(&request).expect("server refused the request");
        assert_eq!(upgrade.key, key.as_str());
        assert_eq!(upgrade.protocols().collect::<Vec<_>>(), protocols);
        for (name, value) in extra {
            assert_eq!(request.header_str(name), Some(*value));
        }
        let mut answer = Vec::new();
        write_accept(&mut answer, &upgrade, protocols.first().copied(), &[]);
        let head = answer.len();
        answer.extend_from_slice(b"\x81\x02hi");
        assert_eq!(read_server_response(&answer, &key), Ok(Some(head)));
    }

    #[test]
    fn round_trip_against_server_side() {
        round_trip(&[], &[]);
        round_trip(&["chat", "superchat"], &[("Origin", "http://localhost")]);
    }

    #[test]
    fn empty_path_is_slash() {
        let key = client_key([1; 16]);
        let mut req = Vec::new();
        write_client_request(&mut req, "h", "", &key, &[], &[]);
        assert!(req.starts_with(b"GET / HTTP/1.1\r\n"));
        req.clear();
        write_client_request(
            &mut req,
            "h",
            "/a b\r\nX: y",
            &key,
            &[],
            &[("A\r\nB", "c\nd")],
        );
        assert!(req.starts_with(b"GET /a%20b%0D%0AX:%20y HTTP/1.1\r\n"));
        let text = String::from_utf8(req).unwrap();
        assert!(text.contains("\r\nA  B: c d\r\n"), "{text}");
        assert_eq!(text.matches("\r\n").count(), 8, "{text}");
    }

    #[test]
    fn wrong_accept_is_refused() {
        let key = client_key([1; 16]);
        let other = client_key([2; 16]);
        let mut req = Vec::new();
        write_client_request(&mut req, "h", "/", &other, &[], &[]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Ok(Parse::Complete { request, .. }) = parse_request(&req, &mut headers, 8192) else {
            panic!("request did not parse");
        };
        let mut answer = Vec::new();
        write_accept(&mut answer, &validate_upgrade(&request).unwrap(), None, &[]);
        assert_eq!(
            read_server_response(&answer, &key),
            Err(ClientHandshakeError::BadAccept)
        );
    }

    #[test]
    fn non_101_carries_status() {
        let key = client_key([1; 16]);
        let answer = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        let err = read_server_response(answer, &key).unwrap_err();
        assert_eq!(err, ClientHandshakeError::Status(400));
        assert!(err.to_string().contains("400"));
    }

    #[test]
    fn split_response_needs_more() {
        let key = client_key([3; 16]);
        let mut req = Vec::new();
        write_client_request(&mut req, "h", "/", &key, &[], &[]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Ok(Parse::Complete { request, .. }) = parse_request(&req, &mut headers, 8192) else {
            panic!("request did not parse");
        };
        let mut answer = Vec::new();
        write_accept(&mut answer, &validate_upgrade(&request).unwrap(), None, &[]);
        for cut in 0..answer.len() {
            assert_eq!(
                read_server_response(&answer[..cut], &key),
                Ok(None),
                "{cut}"
            );
        }
        assert_eq!(read_server_response(&answer, &key), Ok(Some(answer.len())));
    }

    #[test]
    fn missing_headers_and_garbage() {
        let key = client_key([1; 16]);
        let accept = crate::handshake::AcceptKey::new(key.as_bytes());
        let ok_accept = format!("Sec-WebSocket-Accept: {}\r\n", accept.as_str());
        let cases: [(String, ClientHandshakeError); 4] = [
            (
                format!("HTTP/1.1 101 X\r\nConnection: upgrade\r\n{ok_accept}\r\n"),
                ClientHandshakeError::NoUpgrade,
            ),
            (
                format!("HTTP/1.1 101 X\r\nUpgrade: WebSocket\r\n{ok_accept}\r\n"),
                ClientHandshakeError::NoConnectionUpgrade,
            ),
            (
                "HTTP/1.1 101 X\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n"
                    .to_string(),
                ClientHandshakeError::NoAccept,
            ),
            (
                "SSH-2.0-OpenSSH\r\n\r\n".to_string(),
                ClientHandshakeError::Malformed("not an HTTP/1.x response"),
            ),
        ];
        for (answer, want) in cases {
            assert_eq!(read_server_response(answer.as_bytes(), &key), Err(want));
        }
    }
}
