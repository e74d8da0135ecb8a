//! Request head parsing on top of `httparse`, borrowing the read buffer.

use super::{HeaderStorage, HttpError};

/// A parsed request head borrowing the read buffer (zero copy).
///
/// The lifetime `'b` is the shorter of the two borrows the request holds: the read
/// buffer and the caller's header storage given to [`parse_request`]. Both usually
/// live in the same stack frame, so one lifetime keeps signatures simple.
///
/// ```
/// use ringws::http::{parse_request, Parse, MAX_HEADERS};
///
/// let buf = b"GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n";
/// let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
/// let Ok(Parse::Complete { request, .. }) = parse_request(buf, &mut headers, 8192) else {
///     panic!("incomplete");
/// };
/// assert_eq!(request.method(), "GET");
/// assert!(request.header_has_token("connection", "upgrade"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Request<'b> {
    method: &'b str,
    target: &'b str,
    path: &'b str,
    query: Option<&'b str>,
    version_minor: u8,
    headers: &'b [httparse::Header<'b>],
    body: &'b [u8],
}

impl<'b> Request<'b> {
    /// A request whose head was read elsewhere (another HTTP server's, say): `method`,
    /// the request `target` (path and query), the HTTP/1 minor version (HTTP/2 requests
    /// pass 1) and the headers. An adapter for HTTP/2 gives `:authority` as a `Host`
    /// header, so that the origin policy compares against it as it does for HTTP/1.1.
    ///
    /// ```
    /// use ringws::http::Request;
    ///
    /// let headers = [httparse::Header { name: "Host", value: b"example.com" }];
    /// let request = Request::from_parts("GET", "/chat?room=1", 1, &headers);
    /// assert_eq!((request.path(), request.query()), ("/chat", Some("room=1")));
    /// assert_eq!(request.header("host"), Some(&b"example.com"[..]));
    /// ```
    pub fn from_parts(
        method: &'b str,
        target: &'b str,
        version_minor: u8,
        headers: &'b [httparse::Header<'b>],
    ) -> Request<'b> {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        Request {
            method,
            target,
            path,
            query,
            version_minor,
            headers,
            body: &[],
        }
    }

    /// The request method as sent (`GET`, `POST`...), case-sensitive per HTTP.
    pub fn method(&self) -> &'b str {
        self.method
    }

    /// The request body: empty until the caller attaches the bytes that followed the
    /// head with [`Request::with_body`] (the server does, before a handler sees it).
    pub fn body(&self) -> &'b [u8] {
        self.body
    }

    /// The same request with `body` attached.
    pub fn with_body(self, body: &'b [u8]) -> Request<'b> {
        Request { body, ..self }
    }

    /// How many body bytes follow the head: `Content-Length`, or 0 without one.
    /// `Transfer-Encoding` (a chunked request body) is answered 501, an unreadable or
    /// conflicting length 400.
    pub fn content_length(&self) -> Result<usize, HttpError> {
        if self.header("transfer-encoding").is_some() {
            return Err(HttpError::new(
                501,
                "chunked request bodies are not supported",
            ));
        }
        let mut length = None;
        for (name, value) in self.headers() {
            if !name.eq_ignore_ascii_case("content-length") {
                continue;
            }
            let parsed = std::str::from_utf8(value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(HttpError::new(400, "invalid Content-Length"))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(HttpError::new(400, "conflicting Content-Length headers"));
            }
            length = Some(parsed);
        }
        Ok(length.unwrap_or(0))
    }

    /// Whether the client wants the connection kept open after the response: the
    /// default for HTTP/1.1 unless it says `Connection: close`, and for HTTP/1.0 only
    /// when it says `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.version_minor >= 1 {
            !self.header_has_token("connection", "close")
        } else {
            self.header_has_token("connection", "keep-alive")
        }
    }

    /// The path part of the request target, without the query.
    pub fn path(&self) -> &'b str {
        self.path
    }

    /// The query (after the first `?`, without it), if the target has one.
    pub fn query(&self) -> Option<&'b str> {
        self.query
    }

    /// The full request target as sent (path + query).
    pub fn target(&self) -> &'b str {
        self.target
    }

    /// The HTTP minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub fn version_minor(&self) -> u8 {
        self.version_minor
    }

    /// First header with this name (case-insensitive), as bytes.
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// First header with this name (case-insensitive), as `str`; `None` when absent or
    /// not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'b str> {
        self.header(name).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// Iterates all headers in order as `(name, value)`.
    pub fn headers(&self) -> impl Iterator<Item = (&'b str, &'b [u8])> + '_ {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// True when a comma-separated header (`Connection`, `Upgrade`...) contains `token`
    /// case-insensitively, in any of the headers with that name
    /// (`Connection: keep-alive, Upgrade` contains `upgrade`).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .any(|h| {
                h.value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
            })
    }
}

/// The outcome of [`parse_request`] on the bytes read so far.
#[derive(Debug)]
pub enum Parse<'b> {
    /// The head is not complete yet: read more bytes and parse again.
    Partial,
    /// A complete head; `head_len` bytes of the buffer were the head (any body or
    /// frames start after).
    Complete {
        /// The parsed request head.
        request: Request<'b>,
        /// Number of bytes of the buffer taken by the head, final `\r\n\r\n` included.
        head_len: usize,
    },
}

/// Parses a request head from the bytes read so far.
///
/// `headers` is the caller's storage (usually a stack array); the returned
/// [`Request`] borrows both it and `buf`, for the shorter of the two lifetimes.
/// HTTP/1.0 and HTTP/1.1 are accepted (the WebSocket handshake rejects upgrades that
/// are not HTTP/1.1). Only the first `max_head_bytes` bytes are looked at.
///
/// Errors: a malformed head gives 400 `malformed request: <httparse error>`; more
/// than [`MAX_HEADERS`](super::MAX_HEADERS) headers gives 431 `too many request
/// headers`; a head that has not completed within `max_head_bytes` gives 431
/// `request header too large`.
pub fn parse_request<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut HeaderStorage<'b>,
    max_head_bytes: usize,
) -> Result<Parse<'h>, HttpError> {
    let window = &buf[..buf.len().min(max_head_bytes)];
    let storage: &'h mut [httparse::Header<'b>] = headers;
    let mut req = httparse::Request::new(storage);
    let status = req.parse(window).map_err(map_error)?;
    let head_len = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial if window.len() >= max_head_bytes => return Err(HEAD_TOO_LARGE),
        httparse::Status::Partial => return Ok(Parse::Partial),
    };
    let httparse::Request {
        method,
        path,
        version,
        headers,
    } = req;
    let (Some(method), Some(target), Some(version_minor)) = (method, path, version) else {
        return Err(HttpError::new(
            400,
            "malformed request: incomplete request line",
        ));
    };
    let headers: &'h [httparse::Header<'h>] = headers;
    Ok(Parse::Complete {
        request: Request::from_parts(method, target, version_minor, headers),
        head_len,
    })
}

const HEAD_TOO_LARGE: HttpError = HttpError::new(431, "request header too large");

fn map_error(e: httparse::Error) -> HttpError {
    use httparse::Error as E;
    let reason = match e {
        E::TooManyHeaders => return HttpError::new(431, "too many request headers"),
        E::HeaderName => "malformed request: invalid header name",
        E::HeaderValue => "malformed request: invalid header value",
        E::NewLine => "malformed request: invalid new line",
        E::Status => "malformed request: invalid response status",
        E::Token => "malformed request: invalid token",
        E::Version => "malformed request: invalid HTTP version",
    };
    HttpError::new(400, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::MAX_HEADERS;

    const CHROME: &[u8] = b"GET /chat?room=lobby&x=1 HTTP/1.1\r\n\
Host: server.example.com:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

    fn hdrs<'b>() -> [httparse::Header<'b>; MAX_HEADERS] {
        [httparse::EMPTY_HEADER; MAX_HEADERS]
    }

    fn parsed<'b>(buf: &'b [u8], h: &'b mut [httparse::Header<'b>; MAX_HEADERS]) -> Request<'b> {
        match parse_request(buf, h, 8192) {
            Ok(Parse::Complete { request, .. }) => request,
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn content_length_and_its_refusals() {
        let cases: [(&[u8], Result<usize, u16>); 6] = [
            (b"GET / HTTP/1.1\r\n\r\n", Ok(0)),
            (b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n", Ok(12)),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 12\r\nContent-Length: 12\r\n\r\n",
                Ok(12),
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Err(400),
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", Err(400)),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(501),
            ),
        ];
        for (buf, expected) in cases {
            let mut h = hdrs();
            let request = parsed(buf, &mut h);
            assert_eq!(
                request.content_length().map_err(|e| e.status),
                expected,
                "{buf:?}"
            );
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let cases: [(&[u8], bool); 4] = [
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
        ];
        for (buf, expected) in cases {
            let mut h = hdrs();
            assert_eq!(parsed(buf, &mut h).keep_alive(), expected, "{buf:?}");
        }
    }

    #[test]
    fn parses_chrome_upgrade() {
        let mut buf = CHROME.to_vec();
        buf.extend_from_slice(&[0x81, 0x85]); // first frame bytes after the head
        let mut h = hdrs();
        let Ok(Parse::Complete { request, head_len }) = parse_request(&buf, &mut h, 8192) else {
            panic!("not complete");
        };
        assert_eq!(head_len, CHROME.len());
        assert_eq!(request.method(), "GET");
        assert_eq!(request.target(), "/chat?room=lobby&x=1");
        assert_eq!(request.path(), "/chat");
        assert_eq!(request.query(), Some("room=lobby&x=1"));
        assert_eq!(request.version_minor(), 1);
        assert_eq!(request.header_str("HOST"), Some("server.example.com:8080"));
        assert_eq!(
            request.header("sec-websocket-key"),
            Some(&b"dGhlIHNhbXBsZSBub25jZQ=="[..])
        );
        assert_eq!(request.headers().count(), 12);
        assert_eq!(
            request.headers().next(),
            Some(("Host", &b"server.example.com:8080"[..]))
        );
        assert!(request.header_has_token("connection", "UPGRADE"));
        assert!(request.header_has_token("Upgrade", "WebSocket"));
        assert!(request.header_has_token("accept-encoding", "deflate"));
        assert!(!request.header_has_token("accept-encoding", "gzip, deflate"));
        assert!(request.header("x-missing").is_none());
    }

    #[test]
    fn partial_at_every_split() {
        for cut in 0..CHROME.len() {
            let mut h = hdrs();
            match parse_request(&CHROME[..cut], &mut h, 8192) {
                Ok(Parse::Partial) => {}
                other => panic!("cut {cut}: {other:?}"),
            }
        }
        let mut h = hdrs();
        assert!(matches!(
            parse_request(CHROME, &mut h, 8192),
            Ok(Parse::Complete { head_len, .. }) if head_len == CHROME.len()
        ));
    }

    #[test]
    fn token_lists() {
        let buf = b"GET / HTTP/1.1\r\nConnection: keep-alive,  Upgrade \r\nConnection: x\r\nX-Empty:\r\n\r\n";
        let mut h = hdrs();
        let Ok(Parse::Complete { request, .. }) = parse_request(buf, &mut h, 8192) else {
            panic!()
        };
        assert!(request.header_has_token("Connection", "upgrade"));
        assert!(request.header_has_token("Connection", "keep-alive"));
        assert!(request.header_has_token("connection", "x"));
        assert!(!request.header_has_token("Connection", "close"));
        assert!(!request.header_has_token("Connection", "upgrad"));
        assert!(!request.header_has_token("X-Empty", "a"));
        assert_eq!(request.header_str("x-empty"), Some(""));
    }

    #[test]
    fn http10_and_no_query() {
        let buf = b"POST /submit HTTP/1.0\r\n\r\nbody";
        let mut h = hdrs();
        let Ok(Parse::Complete { request, head_len }) = parse_request(buf, &mut h, 8192) else {
            panic!()
        };
        assert_eq!(head_len, buf.len() - 4);
        assert_eq!(request.method(), "POST");
        assert_eq!(request.version_minor(), 0);
        assert_eq!(request.query(), None);
        assert_eq!(request.headers().count(), 0);
    }

    #[test]
    fn empty_query() {
        let buf = b"GET /a? HTTP/1.1\r\n\r\n";
        let mut h = hdrs();
        let Ok(Parse::Complete { request, .. }) = parse_request(buf, &mut h, 8192) else {
            panic!()
        };
        assert_eq!(request.path(), "/a");
        assert_eq!(request.query(), Some(""));
    }

    #[test]
    fn non_utf8_header_value() {
        let buf = b"GET / HTTP/1.1\r\nX-Bin: \xff\xfe\r\n\r\n";
        let mut h = hdrs();
        let Ok(Parse::Complete { request, .. }) = parse_request(buf, &mut h, 8192) else {
            panic!()
        };
        assert_eq!(request.header("x-bin"), Some(&b"\xff\xfe"[..]));
        assert_eq!(request.header_str("x-bin"), None);
    }

    #[test]
    fn malformed_is_400() {
        for buf in [
            &b"GET / HTTP/2.0\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"G\x01T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        ] {
            let mut h = hdrs();
            let err = parse_request(buf, &mut h, 8192).unwrap_err();
            assert_eq!(err.status, 400, "{buf:?}");
            assert!(err.reason.starts_with("malformed request: "), "{err:?}");
        }
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        let mut h = hdrs();
        let err = parse_request(&buf, &mut h, 1 << 20).unwrap_err();
        assert_eq!(err, HttpError::new(431, "too many request headers"));
    }

    #[test]
    fn head_too_large_is_431() {
        let mut buf = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        buf.resize(200, b'a');
        let mut h = hdrs();
        assert_eq!(
            parse_request(&buf, &mut h, 200).unwrap_err(),
            HEAD_TOO_LARGE
        );
        let mut h = hdrs();
        assert!(matches!(
            parse_request(&buf, &mut h, 201),
            Ok(Parse::Partial)
        ));
        // Complete, but only after the limit.
        buf.extend_from_slice(b"\r\n\r\n");
        let mut h = hdrs();
        assert_eq!(
            parse_request(&buf, &mut h, 203).unwrap_err(),
            HEAD_TOO_LARGE
        );
        let mut h = hdrs();
        assert!(matches!(
            parse_request(&buf, &mut h, 204),
            Ok(Parse::Complete { head_len: 204, .. })
        ));
    }

    #[test]
    fn zero_limit_is_431() {
        let mut h = hdrs();
        assert_eq!(parse_request(b"", &mut h, 0).unwrap_err(), HEAD_TOO_LARGE);
    }
}
