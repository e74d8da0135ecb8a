//! HTTP/1.x request parsing and response writing, sans-I/O.
//!
//! [`parse_request`] turns the bytes read so far into a [`Request`] that borrows the read
//! buffer (zero copy) and the caller's header storage (a stack array of [`MAX_HEADERS`]
//! entries). [`write_response`] and [`write_error`] append a complete response to an
//! output buffer. Nothing here does I/O or reads a clock.
//!
//! ```
//! use ringws::http::{header_storage, parse_request, Parse};
//!
//! let buf = b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
//! let mut headers = header_storage();
//! match parse_request(buf, &mut headers, 8192) {
//!     Ok(Parse::Complete { request, head_len }) => {
//!         assert_eq!(request.path(), "/chat");
//!         assert_eq!(request.query(), Some("room=1"));
//!         assert_eq!(request.header_str("host"), Some("example.com"));
//!         assert_eq!(head_len, buf.len());
//!     }
//!     other => panic!("unexpected: {other:?}"),
//! }
//! ```

pub(crate) mod conditional;
mod forwarded;
mod request;
mod response;
pub(crate) mod static_path;

pub use forwarded::{Cidr, ForwardedHeader, InvalidCidr, TrustedProxies};
pub use request::{parse_request, Parse, Request};
pub use response::{write_error, write_response};
pub(crate) use response::{
    write_header, write_header_decimal, write_header_piece, write_headers, write_response_head,
    write_status_line, write_status_line_with,
};

/// Max header entries parsed into the stack array.
pub const MAX_HEADERS: usize = 64;

/// The value of one hexadecimal digit (percent-escapes in paths and form bodies, JSON
/// `\u` escapes).
pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

pub use httparse::Header;

/// The caller's header storage for [`parse_request`], meant to live on the stack.
pub type HeaderStorage<'b> = [Header<'b>; MAX_HEADERS];

/// Empty header storage for [`parse_request`] (same as
/// `[httparse::EMPTY_HEADER; MAX_HEADERS]`, without naming `httparse`).
pub const fn header_storage<'b>() -> HeaderStorage<'b> {
    [httparse::EMPTY_HEADER; MAX_HEADERS]
}

/// An HTTP error answer: a status code and a human reason sent as the text/plain body.
///
/// ```
/// use ringws::http::{write_error, HttpError};
///
/// let err = HttpError::new(404, "no such route");
/// let mut out = Vec::new();
/// write_error(&mut out, &err, &[]);
/// assert!(out.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
/// assert!(out.ends_with(b"\r\n\r\nno such route\n"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpError {
    /// The HTTP status code sent in the status line.
    pub status: u16,
    /// A short human explanation, sent as the response body.
    pub reason: &'static str,
}

impl HttpError {
    /// Builds an error from a status code and a reason.
    pub const fn new(status: u16, reason: &'static str) -> Self {
        Self { status, reason }
    }
}

impl core::fmt::Display for HttpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            status_text(self.status),
            self.reason
        )
    }
}

impl std::error::Error for HttpError {}

/// Standard reason phrase for a status code (`""` for codes this crate does not know).
///
/// ```
/// assert_eq!(ringws::http::status_text(101), "Switching Protocols");
/// assert_eq!(ringws::http::status_text(426), "Upgrade Required");
/// ```
pub fn status_text(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_texts() {
        assert_eq!(status_text(200), "OK");
        assert_eq!(status_text(400), "Bad Request");
        assert_eq!(status_text(403), "Forbidden");
        assert_eq!(status_text(404), "Not Found");
        assert_eq!(status_text(405), "Method Not Allowed");
        assert_eq!(status_text(431), "Request Header Fields Too Large");
        assert_eq!(status_text(500), "Internal Server Error");
        assert_eq!(status_text(503), "Service Unavailable");
        assert_eq!(status_text(999), "");
    }

    #[test]
    fn error_display() {
        let e = HttpError::new(431, "request header too large");
        assert_eq!(
            e.to_string(),
            "431 Request Header Fields Too Large: request header too large"
        );
    }
}
