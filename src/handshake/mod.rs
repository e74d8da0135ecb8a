//! The WebSocket opening handshake, sans-I/O.
//!
//! Given a parsed [`Request`](crate::http::Request): [`is_websocket_request`] tells an
//! upgrade from plain HTTP, [`validate_upgrade`] checks it into an [`Upgrade`] (RFC
//! 6455 version 13 and the hybi-07/08 drafts, versions 7 and 8), and [`write_accept`]
//! or [`write_rejection`] append the answer to an output buffer. The accept key is
//! computed on the stack ([`accept_key`]). The legacy hixie-76 (hybi-00) and hixie-75
//! drafts validate into the same [`Upgrade`] ([`Version::Hixie76`], [`Version::Hixie75`])
//! and are answered by [`write_hixie76_head`] / [`hixie76_answer`] and
//! [`write_hixie75_head`]; [`client`] is the hixie-76 client role. [`check_origin`]
//! applies a route's [`OriginPolicy`] (cross-site WebSocket hijacking) to an upgrade.
//! [`deflate`] negotiates permessage-deflate (RFC 7692): [`negotiate_request`] gives a
//! [`DeflateAgreement`] whose answer goes into the 101 as an extra header.
//! [`validate_extended_connect`] checks a WebSocket bootstrapped over HTTP/2 (RFC 8441,
//! an extended CONNECT) into the same [`Upgrade`], for an adapter that builds the
//! [`Request`](crate::http::Request) from another server's parts
//! ([`Request::from_parts`](crate::http::Request::from_parts)).
//!
//! ```
//! use ringws::handshake::{is_websocket_request, validate_upgrade, write_accept, write_rejection};
//! use ringws::http::{parse_request, Parse, MAX_HEADERS};
//!
//! let buf = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
//! Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//! Sec-WebSocket-Version: 13\r\n\r\n";
//! let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
//! let mut out = Vec::new();
//! if let Ok(Parse::Complete { request, .. }) = parse_request(buf, &mut headers, 8192) {
//!     assert!(is_websocket_request(&request));
//!     match validate_upgrade(&request) {
//!         Ok(upgrade) => write_accept(&mut out, &upgrade, None, &[]),
//!         Err(err) => write_rejection(&mut out, &err),
//!     }
//! }
//! assert_eq!(
//!     out,
//!     b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
//! Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
//! );
//! ```

mod accept;
pub mod client;
pub mod deflate;
mod hixie;
mod origin;
mod response;
mod validate;

#[cfg(test)]
mod tests;

pub use accept::{accept_key, AcceptKey, WEBSOCKET_GUID};
pub use client::{
    client_key, read_server_response, write_client_request, ClientHandshakeError, ClientKey,
};
pub use deflate::{
    negotiate, negotiate_request, DeflateAgreement, DeflateConfig, EXTENSIONS_HEADER,
    PERMESSAGE_DEFLATE,
};
pub use hixie::{
    hixie76_answer, parse_hixie76_key, write_hixie75_head, write_hixie76_head, HixieHead,
    ERR_HIXIE_KEY_MISSING, ERR_HIXIE_KEY_NOT_INTEGRAL, ERR_HIXIE_KEY_NO_SPACES,
    ERR_HIXIE_KEY_OVERFLOW,
};
pub use origin::{check_origin, OriginPolicy, ParseOriginPolicyError, ERR_ORIGIN};
pub use response::{write_accept, write_rejection};
pub use validate::{
    is_websocket_request, validate_extended_connect, validate_upgrade, Upgrade, ERR_BAD_KEY,
    ERR_BAD_VERSION, ERR_HIXIE75, ERR_HIXIE76, ERR_NOT_CONNECT, ERR_NOT_GET, ERR_NOT_HTTP11,
    ERR_NOT_WEBSOCKET_PROTOCOL, ERR_NO_CONNECTION_UPGRADE, ERR_NO_HOST, ERR_NO_UPGRADE,
    ERR_NO_VERSION,
};

/// The header a 426 answer carries: the versions this server speaks, preferred first.
pub const SUPPORTED_VERSIONS_HEADER: (&str, &str) = ("Sec-WebSocket-Version", "13, 8, 7");

/// WebSocket protocol versions this server speaks.
///
/// ```
/// use ringws::handshake::Version;
///
/// assert_eq!(Version::V8.number(), 8);
/// assert!(Version::Hixie76.is_hixie() && !Version::V7.is_hixie());
/// assert_eq!(Version::Hixie76.name(), "hixie-76");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 6455, `Sec-WebSocket-Version: 13`.
    V13,
    /// The hybi-08 .. hybi-12 drafts (`Sec-WebSocket-Version: 8`).
    V8,
    /// The hybi-07 draft (`Sec-WebSocket-Version: 7`).
    V7,
    /// draft-hixie-thewebsocketprotocol-76, the same as hybi-00: `Sec-WebSocket-Key1`
    /// and `Key2`, an MD5 challenge, `0x00 … 0xFF` text frames, no masking.
    Hixie76,
    /// draft-hixie-thewebsocketprotocol-75: no key and no challenge, the same framing.
    Hixie75,
}

impl Version {
    /// The `Sec-WebSocket-Version` number for this version; 0 for the hixie drafts,
    /// which send none (hixie-76 is hybi-00).
    pub fn number(self) -> u8 {
        match self {
            Version::V13 => 13,
            Version::V8 => 8,
            Version::V7 => 7,
            Version::Hixie76 | Version::Hixie75 => 0,
        }
    }

    /// True for the hixie-75/76 drafts: their own handshake and `0x00 … 0xFF` framing,
    /// text messages only, no masking.
    pub fn is_hixie(self) -> bool {
        matches!(self, Version::Hixie76 | Version::Hixie75)
    }

    /// The short name of the RFC or draft: `rfc6455`, `hybi-08`, `hybi-07`,
    /// `hixie-76`, `hixie-75`.
    pub fn name(self) -> &'static str {
        match self {
            Version::V13 => "rfc6455",
            Version::V8 => "hybi-08",
            Version::V7 => "hybi-07",
            Version::Hixie76 => "hixie-76",
            Version::Hixie75 => "hixie-75",
        }
    }
}
