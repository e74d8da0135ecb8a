//! The client role of the hixie-76 handshake, sans-I/O: write the request, check the
//! answer. Randomness is the caller's: it passes the key numbers, their spaces and the
//! 8-byte body, so tests are reproducible and the load generator picks its own RNG.

use std::fmt;

use super::hixie76_answer;
use crate::http::{write_header, MAX_HEADERS};

/// One `Sec-WebSocket-Key1`/`Key2` to build: the number the server will compute and
/// the spaces it will divide by (1 to 12, as the draft says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HixieKey {
    /// The quotient the server computes.
    pub number: u32,
    /// The number of spaces in the key (1..=12); `number * spaces` must fit 32 bits.
    pub spaces: u32,
}

/// Characters the draft allows as noise in a key (U+0021–U+002F, U+003A–U+007E).
const NOISE: &[u8] =
    b"!\"#$%&'()*+,-./:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";

impl HixieKey {
    /// The header value: the digits of `number * spaces` with the spaces and two noise
    /// characters (chosen from the number) mixed in; `None` when the key is invalid.
    pub fn to_header_value(self) -> Option<String> {
        if !(1..=12).contains(&self.spaces) {
            return None;
        }
        let product = self.number.checked_mul(self.spaces)?;
        let digits = product.to_string();
        let noise = |i: u32| char::from(NOISE[(i as usize) % NOISE.len()]);
        let mut value = String::with_capacity(digits.len() + 14);
        value.push(noise(self.number));
        let mut spaces = self.spaces as usize;
        for digit in digits.chars() {
            value.push(digit);
            if spaces > 0 {
                value.push(' ');
                spaces -= 1;
            }
        }
        value.extend(std::iter::repeat_n(' ', spaces));
        value.push(noise(self.number / 7 + self.spaces));
        Some(value)
    }
}

/// Why a server's answer to a hixie-76 request is not acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HixieClientError {
    /// What was wrong, briefly.
    pub reason: &'static str,
}

impl fmt::Display for HixieClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hixie-76 handshake failed: {}", self.reason)
    }
}

impl std::error::Error for HixieClientError {}

fn fail<T>(reason: &'static str) -> Result<T, HixieClientError> {
    Err(HixieClientError { reason })
}

/// One hixie-76 client handshake: the keys and body chosen by the caller, and the
/// answer the server must send back.
///
/// ```
/// use ringws::handshake::client::{Hixie76Client, HixieKey};
///
/// let client = Hixie76Client::new(
///     HixieKey { number: 829309203, spaces: 5 },
///     HixieKey { number: 259970620, spaces: 4 },
///     *b"^n:ds[4U",
/// )
/// .unwrap();
/// let mut request = Vec::new();
/// client.write_request(&mut request, "example.com", "/demo", "http://example.com", None);
/// assert!(request.ends_with(b"\r\n\r\n^n:ds[4U"));
///
/// let response = b"HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
/// Connection: Upgrade\r\nSec-WebSocket-Origin: http://example.com\r\n\
/// Sec-WebSocket-Location: ws://example.com/demo\r\n\r\n8jKS'y:G*Co,Wxa-\x00hi\xFF";
/// // Incomplete input asks for more; the complete handshake gives its length.
/// assert_eq!(client.check_response(&response[..50]), Ok(None));
/// assert_eq!(client.check_response(response), Ok(Some(response.len() - 4)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hixie76Client {
    key1: String,
    key2: String,
    body: [u8; 8],
    answer: [u8; 16],
}

impl Hixie76Client {
    /// A handshake with these keys and 8-byte body; `None` when a key is invalid
    /// (spaces outside 1..=12, or `number * spaces` over 32 bits).
    pub fn new(key1: HixieKey, key2: HixieKey, body: [u8; 8]) -> Option<Hixie76Client> {
        Some(Hixie76Client {
            key1: key1.to_header_value()?,
            key2: key2.to_header_value()?,
            answer: hixie76_answer(key1.number, key2.number, &body),
            body,
        })
    }

    /// The 16 bytes the server must answer with.
    pub fn expected_answer(&self) -> &[u8; 16] {
        &self.answer
    }

    /// The 8 bytes sent after the request head.
    pub fn body(&self) -> &[u8; 8] {
        &self.body
    }

    /// Appends the request head only (`GET resource`, `Upgrade: WebSocket`,
    /// `Connection: Upgrade`, `Host`, `Origin`, the two keys, `Sec-WebSocket-Protocol`
    /// when given); send [`Hixie76Client::body`] after it.
    pub fn write_request_head(
        &self,
        out: &mut Vec<u8>,
        host: &str,
        resource: &str,
        origin: &str,
        protocol: Option<&str>,
    ) {
        out.extend_from_slice(b"GET ");
        out.extend(resource.bytes().filter(|b| !b.is_ascii_whitespace()));
        out.extend_from_slice(b" HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n");
        write_header(out, "Host", host);
        write_header(out, "Origin", origin);
        write_header(out, "Sec-WebSocket-Key1", &self.key1);
        write_header(out, "Sec-WebSocket-Key2", &self.key2);
        if let Some(protocol) = protocol {
            write_header(out, "Sec-WebSocket-Protocol", protocol);
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Appends the whole request: the head, then the 8-byte body.
    pub fn write_request(
        &self,
        out: &mut Vec<u8>,
        host: &str,
        resource: &str,
        origin: &str,
        protocol: Option<&str>,
    ) {
        self.write_request_head(out, host, resource, origin, protocol);
        out.extend_from_slice(&self.body);
    }

    /// Checks the server's answer in `input` (the bytes received so far). `Ok(None)`:
    /// incomplete, read more. `Ok(Some(n))`: the handshake is complete and good, and
    /// its `n` bytes (head and 16-byte answer) are followed by frames.
    pub fn check_response(&self, input: &[u8]) -> Result<Option<usize>, HixieClientError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(input) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return fail("malformed response head"),
        };
        if response.code != Some(101) {
            return fail("status is not 101");
        }
        let has = |name: &str, token: Option<&str>| {
            response.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case(name)
                    && token.is_none_or(|t| {
                        std::str::from_utf8(h.value).is_ok_and(|v| {
                            v.split(',').any(|part| part.trim().eq_ignore_ascii_case(t))
                        })
                    })
            })
        };
        if !has("Upgrade", Some("websocket")) || !has("Connection", Some("upgrade")) {
            return fail("missing Upgrade: WebSocket or Connection: Upgrade");
        }
        if !has("Sec-WebSocket-Origin", None) || !has("Sec-WebSocket-Location", None) {
            return fail("missing Sec-WebSocket-Origin or Sec-WebSocket-Location");
        }
        let Some(answer) = input.get(head_len..head_len + 16) else {
            return Ok(None);
        };
        if answer != self.answer {
            return fail("wrong challenge answer");
        }
        Ok(Some(head_len + 16))
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_hixie76_key;
    use super::*;

    #[test]
    fn keys_round_trip() {
        for (number, spaces) in [(0, 1), (7, 12), (u32::MAX, 1), (u32::MAX / 12, 12), (5, 3)] {
            let key = HixieKey { number, spaces };
            let value = key.to_header_value().unwrap();
            assert!(
                !value.starts_with(' ') && !value.ends_with(' '),
                "{value:?}"
            );
            assert_eq!(parse_hixie76_key(value.as_bytes()), Ok(number), "{value:?}");
        }
        assert_eq!(
            HixieKey {
                number: 1,
                spaces: 0
            }
            .to_header_value(),
            None
        );
        assert_eq!(
            HixieKey {
                number: 1,
                spaces: 13
            }
            .to_header_value(),
            None
        );
        assert_eq!(
            HixieKey {
                number: u32::MAX,
                spaces: 2
            }
            .to_header_value(),
            None
        );
    }

    #[test]
    fn bad_answers() {
        let client = Hixie76Client::new(
            HixieKey {
                number: 1,
                spaces: 1,
            },
            HixieKey {
                number: 2,
                spaces: 2,
            },
            [0; 8],
        )
        .unwrap();
        let head = b"HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Origin: o\r\nSec-WebSocket-Location: ws://h/\r\n\r\n";
        let mut good = head.to_vec();
        good.extend_from_slice(client.expected_answer());
        assert_eq!(client.check_response(&good), Ok(Some(good.len())));
        assert_eq!(client.check_response(&good[..good.len() - 1]), Ok(None));
        let mut wrong = head.to_vec();
        wrong.extend_from_slice(&[0; 16]);
        assert!(client.check_response(&wrong).is_err());
        let refused = b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n";
        assert!(client.check_response(refused).is_err());
        let bare = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        assert!(client.check_response(bare).is_err());
    }
}
