//! Validation of an upgrade request into an [`Upgrade`].

use super::accept::is_valid_key;
use super::hixie::{parse_hixie76_key, ERR_HIXIE_KEY_MISSING};
use super::origin::origin_header;
use super::Version;
use crate::http::{HttpError, Request};

/// 400: the upgrade request's method is not `GET`.
///
/// RFC 6455 4.2.1 asks for `GET` and 4.2.2 for a 400 on any invalid handshake, so this
/// is a 400 rather than a 405 (which would need an `Allow` header).
pub const ERR_NOT_GET: HttpError = HttpError::new(400, "websocket upgrade requires GET");
/// 400: the upgrade request is not HTTP/1.1.
pub const ERR_NOT_HTTP11: HttpError = HttpError::new(400, "websocket upgrade requires HTTP/1.1");
/// 400: the request has no `Host` header (RFC 6455 4.2.1 item 2).
pub const ERR_NO_HOST: HttpError = HttpError::new(400, "missing Host header");
/// 400: the `Upgrade` header lacks the `websocket` token.
pub const ERR_NO_UPGRADE: HttpError = HttpError::new(400, "Upgrade header lacks websocket");
/// 400: the `Connection` header lacks the `upgrade` token.
pub const ERR_NO_CONNECTION_UPGRADE: HttpError =
    HttpError::new(400, "Connection header lacks upgrade");
/// 400: `Sec-WebSocket-Key` is absent or does not base64-decode to 16 bytes.
pub const ERR_BAD_KEY: HttpError = HttpError::new(400, "missing or invalid Sec-WebSocket-Key");
/// 426: `Sec-WebSocket-Version` is absent but `Sec-WebSocket-Key` is there (neither
/// an RFC 6455 nor a hixie request).
pub const ERR_NO_VERSION: HttpError = HttpError::new(426, "missing Sec-WebSocket-Version");
/// 426: `Sec-WebSocket-Version` names a version this server does not speak.
pub const ERR_BAD_VERSION: HttpError = HttpError::new(426, "unsupported Sec-WebSocket-Version");
/// 426: a hixie-76 / hybi-00 request on a route that refuses legacy drafts.
pub const ERR_HIXIE76: HttpError = HttpError::new(
    426,
    "legacy WebSocket draft hixie-76 (hybi-00) refused on this path",
);
/// 426: a hixie-75 request on a route that refuses legacy drafts.
pub const ERR_HIXIE75: HttpError =
    HttpError::new(426, "legacy WebSocket draft hixie-75 refused on this path");

/// 400: a WebSocket over HTTP/2 (RFC 8441) must be an extended CONNECT.
pub const ERR_NOT_CONNECT: HttpError =
    HttpError::new(400, "websocket over HTTP/2 requires extended CONNECT");
/// 400: an extended CONNECT whose `:protocol` is absent or not `websocket`.
pub const ERR_NOT_WEBSOCKET_PROTOCOL: HttpError =
    HttpError::new(400, "extended CONNECT :protocol is not websocket");

/// A validated upgrade request, borrowing the request.
///
/// ```
/// use ringws::handshake::{validate_upgrade, Version};
/// use ringws::http::{parse_request, Parse, MAX_HEADERS};
///
/// let buf = b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
/// Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
/// Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, , superchat\r\n\r\n";
/// let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
/// let Ok(Parse::Complete { request, .. }) = parse_request(buf, &mut headers, 8192) else {
///     panic!("incomplete");
/// };
/// let upgrade = validate_upgrade(&request).unwrap();
/// assert_eq!(upgrade.version, Version::V13);
/// assert_eq!(upgrade.origin(), Some("http://example.com"));
/// assert_eq!(upgrade.protocols().collect::<Vec<_>>(), ["chat", "superchat"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgrade<'b> {
    /// The protocol version the client asked for.
    pub version: Version,
    /// The `Sec-WebSocket-Key` value, trimmed (validated: base64 of 16 bytes); empty
    /// for the hixie drafts.
    pub key: &'b str,
    hixie76_keys: Option<(u32, u32)>,
    origin: Option<&'b str>,
    protocols: Option<&'b str>,
    extensions: Option<&'b str>,
}

impl<'b> Upgrade<'b> {
    /// The numbers of a hixie-76 request's `Sec-WebSocket-Key1` and `Key2`, for
    /// [`hixie76_answer`](super::hixie76_answer); `None` for other versions.
    pub fn hixie76_keys(&self) -> Option<(u32, u32)> {
        self.hixie76_keys
    }

    /// The client's origin: `Origin` for V13 and hixie, `Sec-WebSocket-Origin` for V7/V8
    /// (falling back to `Origin` when absent). `None` when absent or not UTF-8.
    pub fn origin(&self) -> Option<&'b str> {
        self.origin
    }

    /// The subprotocols offered in the first `Sec-WebSocket-Protocol` header
    /// (`WebSocket-Protocol` for hixie-75), in order:
    /// comma-split, trimmed, empty entries dropped.
    pub fn protocols(&self) -> impl Iterator<Item = &'b str> {
        split_list(self.protocols)
    }

    /// The first `Sec-WebSocket-Protocol` header as sent, if any.
    pub fn protocols_raw(&self) -> Option<&'b str> {
        self.protocols
    }

    /// The first `Sec-WebSocket-Extensions` header as sent, if any (not negotiated yet).
    pub fn extensions_raw(&self) -> Option<&'b str> {
        self.extensions
    }
}

fn split_list(raw: Option<&str>) -> impl Iterator<Item = &str> {
    raw.unwrap_or("")
        .split(',')
        .map(str::trim_ascii)
        .filter(|s| !s.is_empty())
}

/// Whether the request asks for a WebSocket upgrade at all (an `Upgrade` header with
/// the `websocket` token, case-insensitive). Plain HTTP requests return false and are
/// served by other routes.
pub fn is_websocket_request(req: &Request<'_>) -> bool {
    req.header_has_token("Upgrade", "websocket")
}

/// Validates an upgrade request (RFC 6455 4.2.1, the hybi-07/08 drafts, hixie-76 and
/// hixie-75).
///
/// Checks, in order, each failure with its [`HttpError`]: method `GET`
/// ([`ERR_NOT_GET`], 400), HTTP/1.1 ([`ERR_NOT_HTTP11`], 400), `Host`
/// ([`ERR_NO_HOST`], 400), `Upgrade: websocket` ([`ERR_NO_UPGRADE`], 400), a
/// `Connection` with the `upgrade` token ([`ERR_NO_CONNECTION_UPGRADE`], 400), the
/// version (426: [`ERR_NO_VERSION`], [`ERR_BAD_VERSION`]; answer them with
/// [`write_rejection`](super::write_rejection), which adds
/// `Sec-WebSocket-Version: 13, 8, 7`), then the key ([`ERR_BAD_KEY`], 400).
///
/// Without `Sec-WebSocket-Version`, a request with `Sec-WebSocket-Key1` or `Key2` is
/// hixie-76 (both keys must parse: [`parse_hixie76_key`](super::parse_hixie76_key)'s
/// errors and [`ERR_HIXIE_KEY_MISSING`](super::ERR_HIXIE_KEY_MISSING), all 400), and
/// one with no key at all is hixie-75. ([`ERR_HIXIE76`] and [`ERR_HIXIE75`] are for
/// routes that refuse legacy drafts.)
pub fn validate_upgrade<'b>(req: &Request<'b>) -> Result<Upgrade<'b>, HttpError> {
    if req.method() != "GET" {
        return Err(ERR_NOT_GET);
    }
    if req.version_minor() < 1 {
        return Err(ERR_NOT_HTTP11);
    }
    if req.header("Host").is_none() {
        return Err(ERR_NO_HOST);
    }
    if !is_websocket_request(req) {
        return Err(ERR_NO_UPGRADE);
    }
    if !req.header_has_token("Connection", "upgrade") {
        return Err(ERR_NO_CONNECTION_UPGRADE);
    }
    let version = version_of(req)?;
    let mut hixie76_keys = None;
    let key = match version {
        Version::Hixie76 => {
            let key = |name| req.header(name).ok_or(ERR_HIXIE_KEY_MISSING);
            let key1 = parse_hixie76_key(key("Sec-WebSocket-Key1")?)?;
            let key2 = parse_hixie76_key(key("Sec-WebSocket-Key2")?)?;
            hixie76_keys = Some((key1, key2));
            ""
        }
        Version::Hixie75 => "",
        _ => req
            .header_str("Sec-WebSocket-Key")
            .map(str::trim_ascii)
            .filter(|k| is_valid_key(k))
            .ok_or(ERR_BAD_KEY)?,
    };
    let protocols = match version {
        Version::Hixie75 => req.header_str("WebSocket-Protocol"),
        _ => req.header_str("Sec-WebSocket-Protocol"),
    };
    // The same header the origin check reads (`check_origin`).
    let origin = origin_header(req, version).and_then(|raw| core::str::from_utf8(raw).ok());
    Ok(Upgrade {
        version,
        key,
        hixie76_keys,
        origin: origin.map(str::trim_ascii),
        protocols,
        extensions: req.header_str("Sec-WebSocket-Extensions"),
    })
}

/// Validates a WebSocket bootstrapped over HTTP/2 (RFC 8441 §4–5): an extended CONNECT
/// whose `:protocol` pseudo-header (given as `protocol`, since pseudo-headers are not
/// headers) is `websocket`, with `Sec-WebSocket-Version: 13`. There is no key and no
/// `Upgrade`/`Connection` (HTTP/2 forbids them); origin, subprotocols and extensions
/// are read as for RFC 6455, so [`check_origin`](super::check_origin) and
/// permessage-deflate negotiation apply unchanged. The answer is a `200` with the
/// chosen `Sec-WebSocket-Protocol` / `Sec-WebSocket-Extensions`, no accept key.
///
/// ```
/// use ringws::handshake::{validate_extended_connect, Version, ERR_NOT_WEBSOCKET_PROTOCOL};
/// use ringws::http::Request;
///
/// let headers = [
///     httparse::Header { name: "Host", value: b"example.com" },
///     httparse::Header { name: "Sec-WebSocket-Version", value: b"13" },
///     httparse::Header { name: "Sec-WebSocket-Protocol", value: b"chat" },
/// ];
/// let request = Request::from_parts("CONNECT", "/chat", 1, &headers);
/// let upgrade = validate_extended_connect(&request, Some("websocket")).unwrap();
/// assert_eq!((upgrade.version, upgrade.key), (Version::V13, ""));
/// assert_eq!(upgrade.protocols().collect::<Vec<_>>(), ["chat"]);
/// assert_eq!(
///     validate_extended_connect(&request, Some("webtransport")),
///     Err(ERR_NOT_WEBSOCKET_PROTOCOL)
/// );
/// ```
pub fn validate_extended_connect<'b>(
    req: &Request<'b>,
    protocol: Option<&str>,
) -> Result<Upgrade<'b>, HttpError> {
    if req.method() != "CONNECT" {
        return Err(ERR_NOT_CONNECT);
    }
    // RFC 8441 §4: the token is compared as RFC 6455's `Upgrade: websocket` is.
    if !protocol.is_some_and(|protocol| protocol.eq_ignore_ascii_case("websocket")) {
        return Err(ERR_NOT_WEBSOCKET_PROTOCOL);
    }
    match req.header("Sec-WebSocket-Version").map(<[u8]>::trim_ascii) {
        Some(b"13") => {}
        Some(_) => return Err(ERR_BAD_VERSION),
        None => return Err(ERR_NO_VERSION),
    }
    let origin = origin_header(req, Version::V13).and_then(|raw| core::str::from_utf8(raw).ok());
    Ok(Upgrade {
        version: Version::V13,
        key: "",
        hixie76_keys: None,
        origin: origin.map(str::trim_ascii),
        protocols: req.header_str("Sec-WebSocket-Protocol"),
        extensions: req.header_str("Sec-WebSocket-Extensions"),
    })
}

fn version_of(req: &Request<'_>) -> Result<Version, HttpError> {
    let Some(raw) = req.header("Sec-WebSocket-Version") else {
        if req.header("Sec-WebSocket-Key1").is_some() || req.header("Sec-WebSocket-Key2").is_some()
        {
            return Ok(Version::Hixie76);
        }
        if req.header("Sec-WebSocket-Key").is_none() {
            return Ok(Version::Hixie75);
        }
        return Err(ERR_NO_VERSION);
    };
    match raw.trim_ascii() {
        b"13" => Ok(Version::V13),
        b"8" => Ok(Version::V8),
        b"7" => Ok(Version::V7),
        _ => Err(ERR_BAD_VERSION),
    }
}
