//! Complete HTTP/1.1 responses of a SockJS service that are not frame streams: the
//! greeting, `/info`, the iframe page, CORS preflights, send answers and errors, plus
//! the header sets shared with the receiving transports (CORS, cookie, caching).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};

use super::frame::ParseError;
use super::options::{Flavour, SockJsOptions};
use super::path::TransportKind;
use crate::http::Request;

/// One year, the cache lifetime of the iframe page and of preflight answers.
pub const CACHE_SECONDS: u64 = 365 * 24 * 60 * 60;

/// The greeting body.
pub const GREETING: &str = "Welcome to SockJS!\n";

/// sockjs-node's 404 body.
pub const NOT_FOUND_BODY: &str = "404 Error: Page not found\n";

const IFRAME_CURRENT: [&str; 2] = [
    "<!DOCTYPE html>\n<html>\n<head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n  <script src=\"",
    "\"></script>\n  <script>\n    document.domain = document.domain;\n    SockJS.bootstrap_iframe();\n  </script>\n</head>\n<body>\n  <h2>Don't panic!</h2>\n  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n</body>\n</html>",
];

const IFRAME_0_3_3: [&str; 2] = [
    "<!DOCTYPE html>\n<html>\n<head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n  <script>\n    document.domain = document.domain;\n    _sockjs_onload = function(){SockJS.bootstrap_iframe();};\n  </script>\n  <script src=\"",
    "\"></script>\n</head>\n<body>\n  <h2>Don't panic!</h2>\n  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n</body>\n</html>",
];

/// Appends `HTTP/1.1 <code> <reason>\r\n` through the house's response writer
/// ([`crate::http`]), with sockjs-node's reason phrases (`413 Payload Too Large`).
pub(crate) fn status_line(out: &mut Vec<u8>, code: u16) {
    let reason = match code {
        413 => "Payload Too Large",
        code => crate::http::status_text(code),
    };
    crate::http::write_status_line_with(out, code, reason);
}

/// Appends `name: value\r\n` through the house's one header sanitiser
/// ([`crate::http`]'s `write_header`): CR, LF and NUL in the name or the value (from
/// request data) become spaces so they cannot split the response.
pub(crate) fn header(out: &mut Vec<u8>, name: &str, value: &str) {
    crate::http::write_header(out, name, value);
}

/// Ends the head: `Content-Type` (when given), `Content-Length` (unless the status has
/// no body: 204, 304), `Connection: close` when `close`, the blank line, the body.
fn finish(out: &mut Vec<u8>, code: u16, content_type: Option<&str>, body: &[u8], close: bool) {
    if let Some(ct) = content_type {
        header(out, "Content-Type", ct);
    }
    if code != 204 && code != 304 {
        crate::http::write_header_decimal(out, "Content-Length", body.len() as u64);
    }
    if close {
        header(out, "Connection", "close");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// The `Access-Control-*` headers of the xhr family and `/info`.
///
/// Current: an `Origin` (even `null`) is echoed with `Access-Control-Allow-Credentials:
/// true`; no `Origin` gives `*` without credentials. 0.3.3: a missing or `null` origin
/// gives `*`, and credentials are always `true`. Both add `Vary: Origin` and echo a
/// non-empty `Access-Control-Request-Headers` as `Access-Control-Allow-Headers`.
pub fn write_cors_headers(out: &mut Vec<u8>, request: &Request<'_>, options: &SockJsOptions) {
    let origin = request.header_str("origin").filter(|o| !o.is_empty());
    match options.flavour {
        Flavour::Current => match origin {
            Some(o) => {
                header(out, "Access-Control-Allow-Origin", o);
                header(out, "Access-Control-Allow-Credentials", "true");
            }
            None => header(out, "Access-Control-Allow-Origin", "*"),
        },
        Flavour::V0_3_3 => {
            header(
                out,
                "Access-Control-Allow-Origin",
                origin.filter(|o| *o != "null").unwrap_or("*"),
            );
            header(out, "Access-Control-Allow-Credentials", "true");
        }
    }
    header(out, "Vary", "Origin");
    write_allow_headers(out, request);
}

fn write_allow_headers(out: &mut Vec<u8>, request: &Request<'_>) {
    if let Some(h) = request
        .header_str("access-control-request-headers")
        .filter(|h| !h.is_empty())
    {
        header(out, "Access-Control-Allow-Headers", h);
    }
}

/// The CORS headers of `eventsource` responses: none in 0.3.3; in the current flavour
/// an `Origin` other than `null` is echoed with credentials, else `*`.
pub(crate) fn write_eventsource_cors(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    options: &SockJsOptions,
) {
    if options.flavour == Flavour::V0_3_3 {
        return;
    }
    match request
        .header_str("origin")
        .filter(|o| !o.is_empty() && *o != "null")
    {
        Some(o) => {
            header(out, "Access-Control-Allow-Origin", o);
            header(out, "Access-Control-Allow-Credentials", "true");
        }
        None => header(out, "Access-Control-Allow-Origin", "*"),
    }
    header(out, "Vary", "Origin");
    write_allow_headers(out, request);
}

/// `Cache-Control` forbidding any caching (the flavour's exact value).
pub fn write_no_cache_header(out: &mut Vec<u8>, options: &SockJsOptions) {
    header(out, "Cache-Control", options.flavour.no_cache_value());
}

/// `Set-Cookie: JSESSIONID=<the request's JSESSIONID or dummy>; path=/`, only when
/// [`SockJsOptions::cookie_needed`] is on.
pub fn write_cookie_header(out: &mut Vec<u8>, request: &Request<'_>, options: &SockJsOptions) {
    if !options.cookie_needed {
        return;
    }
    let mut jsid = None;
    for (name, value) in request.headers() {
        if !name.eq_ignore_ascii_case("cookie") {
            continue;
        }
        let Ok(value) = core::str::from_utf8(value) else {
            continue;
        };
        for cookie in value.split(';') {
            let mut parts = cookie.split('=');
            if parts.next().map(str::trim) == Some("JSESSIONID") {
                jsid = Some(parts.next().unwrap_or("").trim());
            }
        }
    }
    let jsid = jsid.filter(|j| !j.is_empty()).unwrap_or("dummy");
    header(out, "Set-Cookie", &format!("JSESSIONID={jsid}; path=/"));
}

/// `Cache-Control: public, max-age=31536000` and `Expires` one year after `now`.
fn write_cache_for(out: &mut Vec<u8>, now: SystemTime) {
    header(
        out,
        "Cache-Control",
        &format!("public, max-age={CACHE_SECONDS}"),
    );
    header(
        out,
        "Expires",
        &http_date(now + Duration::from_secs(CACHE_SECONDS)),
    );
}

/// Formats an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`); times before 1970 give the
/// epoch.
pub fn http_date(t: SystemTime) -> String {
    // One HTTP date formatter in the house: the one static files use.
    crate::http::conditional::http_date(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// `200 Welcome to SockJS!\n` (`text/plain; charset=UTF-8`).
pub fn write_greeting(out: &mut Vec<u8>, close: bool) {
    status_line(out, 200);
    finish(
        out,
        200,
        Some("text/plain; charset=UTF-8"),
        GREETING.as_bytes(),
        close,
    );
}

/// The `/info` JSON body: `{"websocket":..,"origins":["*:*"],"cookie_needed":..,"entropy":..}`.
pub fn info_body(options: &SockJsOptions, entropy: u32) -> String {
    format!(
        "{{\"websocket\":{},\"origins\":[\"*:*\"],\"cookie_needed\":{},\"entropy\":{}}}",
        options.websocket, options.cookie_needed, entropy
    )
}

/// `GET /info`: 200 JSON with CORS and no-cache headers; `entropy` is a fresh random
/// 32-bit number from the caller.
pub fn write_info(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    options: &SockJsOptions,
    entropy: u32,
    close: bool,
) {
    status_line(out, 200);
    write_cors_headers(out, request, options);
    write_no_cache_header(out, options);
    let body = info_body(options, entropy);
    finish(
        out,
        200,
        Some("application/json; charset=UTF-8"),
        body.as_bytes(),
        close,
    );
}

/// The iframe page for these options (flavour template, `sockjs_url`) and its ETag
/// (the quoted hex MD5 of the page, so it changes with the URL). Compute it once per
/// service and keep it. The URL is written into the `src` attribute HTML-escaped
/// (`&`, `"`, `'`, `<`, `>`), so even a configured URL cannot leave the attribute.
pub fn iframe_page(options: &SockJsOptions) -> (String, String) {
    let [head, tail] = match options.flavour {
        Flavour::Current => IFRAME_CURRENT,
        Flavour::V0_3_3 => IFRAME_0_3_3,
    };
    let url = &options.sockjs_url;
    let mut body = String::with_capacity(head.len() + url.len() + tail.len());
    body.push_str(head);
    push_attribute_escaped(&mut body, url);
    body.push_str(tail);
    let digest = Md5::digest(body.as_bytes());
    let mut etag = String::with_capacity(34);
    etag.push('"');
    for b in digest {
        etag.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        etag.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    etag.push('"');
    (body, etag)
}

/// Appends `value` escaped for a double-quoted HTML attribute: `&` `"` `'` `<` `>` as
/// character references, everything else as is.
fn push_attribute_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

/// `GET /iframe*.html`: 200 with the page, `ETag` and one-year caching headers; 304
/// (no body, no `Content-Type`) when `If-None-Match` equals the ETag. `now` dates
/// `Expires`. Computes the page each time; see [`write_iframe_page`] to reuse it.
#[cfg(test)]
pub fn write_iframe(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    options: &SockJsOptions,
    now: SystemTime,
    close: bool,
) {
    let (body, etag) = iframe_page(options);
    write_iframe_page(out, request, &body, &etag, now, close);
}

/// [`write_iframe`] with a page and ETag computed once by [`iframe_page`].
pub fn write_iframe_page(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    body: &str,
    etag: &str,
    now: SystemTime,
    close: bool,
) {
    if request.header_str("if-none-match") == Some(etag) {
        status_line(out, 304);
        write_cache_for(out, now);
        header(out, "ETag", etag);
        finish(out, 304, None, b"", close);
        return;
    }
    status_line(out, 200);
    write_cache_for(out, now);
    header(out, "ETag", etag);
    finish(
        out,
        200,
        Some("text/html; charset=UTF-8"),
        body.as_bytes(),
        close,
    );
}

/// An `OPTIONS` preflight ([`Endpoint::Preflight`](super::Endpoint::Preflight)): 204
/// with the cookie (when needed), CORS, one-year caching, `Access-Control-Allow-Methods`
/// and `Access-Control-Max-Age`. `now` dates `Expires`.
pub fn write_preflight(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    options: &SockJsOptions,
    allow_methods: &str,
    now: SystemTime,
    close: bool,
) {
    status_line(out, 204);
    write_cookie_header(out, request, options);
    write_cors_headers(out, request, options);
    write_cache_for(out, now);
    header(out, "Access-Control-Allow-Methods", allow_methods);
    header(out, "Access-Control-Max-Age", &CACHE_SECONDS.to_string());
    finish(out, 204, None, b"", close);
}

/// 404 `404 Error: Page not found\n` (unknown path, disabled transport, or a send to a
/// session that does not exist).
pub fn write_not_found(out: &mut Vec<u8>, close: bool) {
    status_line(out, 404);
    finish(
        out,
        404,
        Some("text/plain; charset=UTF-8"),
        NOT_FOUND_BODY.as_bytes(),
        close,
    );
}

/// 405 with `Allow`, no `Content-Type` and an empty body.
pub fn write_method_not_allowed(out: &mut Vec<u8>, allow: &str, close: bool) {
    status_line(out, 405);
    header(out, "Allow", allow);
    finish(out, 405, None, b"", close);
}

/// 400 with a text body, e.g. a WebSocket endpoint that got no valid upgrade (see
/// [`websocket_error_text`]).
pub fn write_bad_request(out: &mut Vec<u8>, text: &str, close: bool) {
    status_line(out, 400);
    finish(
        out,
        400,
        Some("text/plain; charset=UTF-8"),
        text.as_bytes(),
        close,
    );
}

/// The 400 body sockjs-node sends when a WebSocket endpoint gets a request it cannot
/// upgrade. 0.3.3 names the faulty header (`Can "Upgrade" only to "WebSocket".`,
/// `"Connection" must be "Upgrade".`); the current flavour says `Not a valid websocket
/// request`. A well-formed upgrade with a version the endpoint refuses (see
/// [`Flavour::accepts_websocket_version`]) gives
/// `Only supported WebSocket protocol is RFC 6455.`.
pub fn websocket_error_text(request: &Request<'_>, options: &SockJsOptions) -> &'static str {
    let upgrade_ok = request
        .header_str("upgrade")
        .is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket"));
    let connection_ok = request.header_has_token("connection", "upgrade");
    match options.flavour {
        Flavour::V0_3_3 if !upgrade_ok => "Can \"Upgrade\" only to \"WebSocket\".",
        Flavour::V0_3_3 if !connection_ok => "\"Connection\" must be \"Upgrade\".",
        Flavour::Current if !upgrade_ok || !connection_ok => "Not a valid websocket request",
        _ => "Only supported WebSocket protocol is RFC 6455.",
    }
}

/// `xhr_send` accepted: 204 with cookie, no-cache, CORS and
/// `Content-Type: text/plain; charset=UTF-8`.
pub fn write_xhr_send_ok(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    options: &SockJsOptions,
    close: bool,
) {
    status_line(out, 204);
    write_cookie_header(out, request, options);
    write_no_cache_header(out, options);
    write_cors_headers(out, request, options);
    finish(out, 204, Some("text/plain; charset=UTF-8"), b"", close);
}

/// `jsonp_send` accepted: 200 `ok` with cookie and no-cache headers.
pub fn write_jsonp_send_ok(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    options: &SockJsOptions,
    close: bool,
) {
    status_line(out, 200);
    write_cookie_header(out, request, options);
    write_no_cache_header(out, options);
    finish(out, 200, Some("text/plain; charset=UTF-8"), b"ok", close);
}

/// A refused `xhr_send` / `jsonp_send` body: 500 `Payload expected.` or
/// `Broken JSON encoding.`, with the headers of that transport's answers.
pub fn write_send_error(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    options: &SockJsOptions,
    transport: TransportKind,
    error: ParseError,
    close: bool,
) {
    write_500(
        out,
        request,
        options,
        transport == TransportKind::XhrSend,
        error.message(),
        close,
    );
}

/// A 500 with cookie and no-cache headers (and CORS when `cors`), text body.
pub(crate) fn write_500(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    options: &SockJsOptions,
    cors: bool,
    message: &str,
    close: bool,
) {
    write_error(out, 500, request, options, cors, message, close);
}

/// `413 Payload Too Large` for a request whose `Content-Length` (`length`) is over
/// [`SockJsOptions::max_body_bytes`]: cookie, no-cache and CORS headers (so a browser's
/// `xhr_send` can read it), and a text body naming both sizes.
pub fn write_too_large(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    options: &SockJsOptions,
    length: usize,
    close: bool,
) {
    let message = format!(
        "Payload too large: {length} bytes, the limit is {} bytes",
        options.max_body_bytes
    );
    write_error(out, 413, request, options, true, &message, close);
}

/// An error status with cookie and no-cache headers (and CORS when `cors`), text body.
fn write_error(
    out: &mut Vec<u8>,
    status: u16,
    request: &Request<'_>,
    options: &SockJsOptions,
    cors: bool,
    message: &str,
    close: bool,
) {
    status_line(out, status);
    write_cookie_header(out, request, options);
    write_no_cache_header(out, options);
    if cors {
        write_cors_headers(out, request, options);
    }
    finish(
        out,
        status,
        Some("text/plain; charset=UTF-8"),
        message.as_bytes(),
        close,
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::http::{header_storage, parse_request, Parse};

    /// Parses `raw` and runs `f` on the request.
    pub(crate) fn with_request<R>(raw: &str, f: impl FnOnce(&Request<'_>) -> R) -> R {
        let mut headers = header_storage();
        match parse_request(raw.as_bytes(), &mut headers, 65536) {
            Ok(Parse::Complete { request, .. }) => f(&request),
            other => panic!("bad test request: {other:?}"),
        }
    }

    /// A parsed response: status, lower-cased headers, body.
    #[derive(Debug)]
    pub(crate) struct Resp {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Resp {
        pub fn get(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == &name.to_ascii_lowercase())
                .map(|(_, v)| v.as_str())
        }
    }

    pub(crate) fn parse_resp(out: &[u8]) -> Resp {
        let text = out;
        let end = text
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("head end");
        let head = std::str::from_utf8(&text[..end]).expect("utf8 head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(": ").expect("header");
                (n.to_ascii_lowercase(), v.to_owned())
            })
            .collect();
        let resp = Resp {
            status,
            headers,
            body: text[end + 4..].to_vec(),
        };
        if let Some(len) = resp.get("content-length") {
            assert_eq!(len.parse::<usize>().unwrap(), resp.body.len());
        }
        resp
    }

    fn both() -> [SockJsOptions; 2] {
        [
            SockJsOptions::default(),
            SockJsOptions::default().flavour(Flavour::V0_3_3),
        ]
    }

    /// The suite's `verify_cors`, per flavour.
    fn verify_cors(r: &Resp, flavour: Flavour, origin: Option<&str>) {
        match flavour {
            Flavour::Current => match origin {
                Some(o) => {
                    assert_eq!(r.get("access-control-allow-origin"), Some(o));
                    assert_eq!(r.get("access-control-allow-credentials"), Some("true"));
                }
                None => {
                    assert_eq!(r.get("access-control-allow-origin"), Some("*"));
                    assert_eq!(r.get("access-control-allow-credentials"), None);
                }
            },
            Flavour::V0_3_3 => {
                let expected = origin.filter(|o| *o != "null").unwrap_or("*");
                assert_eq!(r.get("access-control-allow-origin"), Some(expected));
                assert_eq!(r.get("access-control-allow-credentials"), Some("true"));
            }
        }
    }

    fn verify_not_cached(r: &Resp, o: &SockJsOptions) {
        assert_eq!(r.get("cache-control"), Some(o.flavour.no_cache_value()));
        assert_eq!(r.get("expires"), None);
        assert_eq!(r.get("last-modified"), None);
    }

    #[test]
    fn greeting() {
        let mut out = Vec::new();
        write_greeting(&mut out, false);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: 19\r\n\r\nWelcome to SockJS!\n"
        );
        out.clear();
        write_greeting(&mut out, true);
        assert_eq!(parse_resp(&out).get("connection"), Some("close"));
    }

    #[test]
    fn info_from_the_suite() {
        for o in both() {
            let mut out = Vec::new();
            with_request("GET /info HTTP/1.1\r\nOrigin: test\r\n\r\n", |r| {
                write_info(&mut out, r, &o, 4_000_000_000, false)
            });
            let r = parse_resp(&out);
            assert_eq!(r.status, 200);
            assert_eq!(
                r.get("content-type"),
                Some("application/json; charset=UTF-8")
            );
            assert_eq!(r.get("set-cookie"), None);
            verify_not_cached(&r, &o);
            verify_cors(&r, o.flavour, Some("test"));
            assert_eq!(
                r.body,
                br#"{"websocket":true,"origins":["*:*"],"cookie_needed":false,"entropy":4000000000}"#
            );
        }
        let o = SockJsOptions::default()
            .websocket(false)
            .cookie_needed(true);
        assert_eq!(
            info_body(&o, 7),
            r#"{"websocket":false,"origins":["*:*"],"cookie_needed":true,"entropy":7}"#
        );
    }

    #[test]
    fn preflights_from_the_suite() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for o in both() {
            for origin in [None, Some("test"), Some("null")] {
                for methods in ["OPTIONS, GET", "OPTIONS, POST"] {
                    let mut raw = String::from("OPTIONS /info HTTP/1.1\r\n");
                    if let Some(origin) = origin {
                        raw.push_str(&format!(
                            "Origin: {origin}\r\nAccess-Control-Request-Method: POST\r\n"
                        ));
                    }
                    raw.push_str("\r\n");
                    let mut out = Vec::new();
                    with_request(&raw, |r| {
                        write_preflight(&mut out, r, &o, methods, now, false)
                    });
                    let r = parse_resp(&out);
                    assert_eq!(r.status, 204);
                    assert_eq!(r.get("cache-control"), Some("public, max-age=31536000"));
                    assert_eq!(r.get("expires"), Some("Wed, 13 Nov 2024 22:13:20 GMT"));
                    assert!(
                        r.get("access-control-max-age")
                            .unwrap()
                            .parse::<u64>()
                            .unwrap()
                            > 1_000_000
                    );
                    assert_eq!(r.get("access-control-allow-methods"), Some(methods));
                    assert!(r.body.is_empty());
                    assert_eq!(r.get("content-length"), None);
                    verify_cors(&r, o.flavour, origin);
                }
            }
        }
    }

    #[test]
    fn request_headers_are_echoed() {
        for o in both() {
            for (h, expected) in [("a, b, c", Some("a, b, c")), ("", None)] {
                let raw = format!("OPTIONS /0/0/xhr HTTP/1.1\r\nOrigin: test\r\nAccess-Control-Request-Headers: {h}\r\n\r\n");
                let mut out = Vec::new();
                with_request(&raw, |r| {
                    write_preflight(&mut out, r, &o, "OPTIONS, POST", UNIX_EPOCH, false)
                });
                assert_eq!(
                    parse_resp(&out).get("access-control-allow-headers"),
                    expected
                );
            }
        }
    }

    #[test]
    fn iframe_from_the_suite() {
        let now = UNIX_EPOCH;
        for o in both() {
            let mut out = Vec::new();
            with_request("GET /iframe.html HTTP/1.1\r\n\r\n", |r| {
                write_iframe(&mut out, r, &o, now, false)
            });
            let r = parse_resp(&out);
            assert_eq!(r.status, 200);
            assert_eq!(r.get("content-type"), Some("text/html; charset=UTF-8"));
            assert_eq!(r.get("cache-control"), Some("public, max-age=31536000"));
            assert_eq!(r.get("expires"), Some("Fri, 01 Jan 1971 00:00:00 GMT"));
            assert_eq!(r.get("last-modified"), None);
            assert_eq!(r.get("set-cookie"), None);
            let etag = r.get("etag").unwrap().to_owned();
            assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34);
            let body = String::from_utf8(r.body.clone()).unwrap();
            let script = format!("  <script src=\"{}\"></script>\n", o.sockjs_url);
            let expected = match o.flavour {
                Flavour::Current => format!(
                    "<!DOCTYPE html>\n<html>\n<head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n{script}  <script>\n    document.domain = document.domain;\n    SockJS.bootstrap_iframe();\n  </script>\n</head>\n<body>\n  <h2>Don't panic!</h2>\n  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n</body>\n</html>"
                ),
                Flavour::V0_3_3 => format!(
                    "<!DOCTYPE html>\n<html>\n<head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n  <script>\n    document.domain = document.domain;\n    _sockjs_onload = function(){{SockJS.bootstrap_iframe();}};\n  </script>\n{script}</head>\n<body>\n  <h2>Don't panic!</h2>\n  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n</body>\n</html>"
                ),
            };
            assert_eq!(body, expected);
            // ETag = md5 of the body.
            let hex: String = Md5::digest(body.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(etag, format!("\"{hex}\""));

            let mut out = Vec::new();
            let raw = format!("GET /iframe.html HTTP/1.1\r\nIf-None-Match: {etag}\r\n\r\n");
            with_request(&raw, |r| write_iframe(&mut out, r, &o, now, false));
            let r = parse_resp(&out);
            assert_eq!(r.status, 304);
            assert_eq!(r.get("content-type"), None);
            assert!(r.body.is_empty());
        }
        let (a, _) = iframe_page(&SockJsOptions::default().sockjs_url("/s.js"));
        assert!(a.contains("<script src=\"/s.js\"></script>"));
    }

    /// The configured `sockjs_url` is in the page, attribute-escaped, for both
    /// flavours, and the ETag follows the URL.
    #[test]
    fn iframe_page_escapes_the_configured_url() {
        let hostile = "/s.js?a=1&b=\"><script>alert('x')</script>";
        let escaped = "/s.js?a=1&amp;b=&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;";
        for flavour in [Flavour::Current, Flavour::V0_3_3] {
            let o = SockJsOptions::default().flavour(flavour);
            let (page, etag) = iframe_page(&o.clone().sockjs_url(hostile));
            assert!(
                page.contains(&format!("<script src=\"{escaped}\"></script>")),
                "{page}"
            );
            assert!(!page.contains("alert('x')"), "{page}");
            assert_eq!(page.matches("<script").count(), 2, "{page}");
            let (page_a, etag_a) = iframe_page(&o.clone().sockjs_url("/static/sockjs.min.js"));
            let (page_b, etag_b) = iframe_page(&o.clone().sockjs_url("/static/sockjs.js"));
            assert!(page_a.contains("<script src=\"/static/sockjs.min.js\"></script>"));
            assert!(page_b.contains("<script src=\"/static/sockjs.js\"></script>"));
            assert_ne!(etag_a, etag_b);
            assert_ne!(etag, etag_a);
            let (_, etag_default) = iframe_page(&o);
            assert_ne!(etag_default, etag_a);
            // Same options, same page and ETag (it is computed once per service).
            assert_eq!(
                iframe_page(&o.clone().sockjs_url("/static/sockjs.js")).1,
                etag_b
            );
        }
        let mut out = String::new();
        push_attribute_escaped(&mut out, "https://cdn.example/a.js?v=1.6.1");
        assert_eq!(out, "https://cdn.example/a.js?v=1.6.1");
    }

    #[test]
    fn errors() {
        let mut out = Vec::new();
        write_not_found(&mut out, false);
        let r = parse_resp(&out);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (404, NOT_FOUND_BODY.as_bytes())
        );

        out.clear();
        write_method_not_allowed(&mut out, "GET", false);
        let r = parse_resp(&out);
        assert_eq!(r.status, 405);
        assert_eq!(r.get("allow"), Some("GET"));
        assert_eq!(r.get("content-type"), None);
        assert!(r.body.is_empty());
        assert_eq!(
            out,
            b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn websocket_error_texts() {
        let v033 = SockJsOptions::default().flavour(Flavour::V0_3_3);
        let cur = SockJsOptions::default();
        let plain = "GET /0/0/websocket HTTP/1.1\r\n\r\n";
        let bad_conn =
            "GET /0/0/websocket HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: close\r\n\r\n";
        let good = "GET /websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
        with_request(plain, |r| {
            assert_eq!(
                websocket_error_text(r, &v033),
                "Can \"Upgrade\" only to \"WebSocket\"."
            );
            assert_eq!(
                websocket_error_text(r, &cur),
                "Not a valid websocket request"
            );
        });
        with_request(bad_conn, |r| {
            assert_eq!(
                websocket_error_text(r, &v033),
                "\"Connection\" must be \"Upgrade\"."
            );
            assert_eq!(
                websocket_error_text(r, &cur),
                "Not a valid websocket request"
            );
        });
        with_request(good, |r| {
            assert_eq!(
                websocket_error_text(r, &cur),
                "Only supported WebSocket protocol is RFC 6455."
            );
        });
        let mut out = Vec::new();
        write_bad_request(&mut out, "Not a valid websocket request", false);
        let r = parse_resp(&out);
        assert_eq!(r.status, 400);
        assert_eq!(r.body, b"Not a valid websocket request");
    }

    #[test]
    fn send_answers_from_the_suite() {
        for o in both() {
            let raw = "POST /0/0/xhr_send HTTP/1.1\r\nOrigin: test\r\n\r\n";
            let mut out = Vec::new();
            with_request(raw, |r| write_xhr_send_ok(&mut out, r, &o, false));
            let r = parse_resp(&out);
            assert_eq!(r.status, 204);
            assert!(r.body.is_empty());
            assert_eq!(r.get("content-type"), Some("text/plain; charset=UTF-8"));
            verify_cors(&r, o.flavour, Some("test"));
            verify_not_cached(&r, &o);

            let mut out = Vec::new();
            with_request(raw, |r| write_jsonp_send_ok(&mut out, r, &o, false));
            let r = parse_resp(&out);
            assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
            assert_eq!(r.get("content-type"), Some("text/plain; charset=UTF-8"));
            verify_not_cached(&r, &o);

            for (t, e, text) in [
                (
                    TransportKind::XhrSend,
                    ParseError::BrokenJson,
                    "Broken JSON encoding.",
                ),
                (
                    TransportKind::JsonpSend,
                    ParseError::PayloadExpected,
                    "Payload expected.",
                ),
            ] {
                let mut out = Vec::new();
                with_request(raw, |r| write_send_error(&mut out, r, &o, t, e, false));
                let r = parse_resp(&out);
                assert_eq!(r.status, 500);
                assert_eq!(r.body, text.as_bytes());
            }
        }
    }

    #[test]
    fn jsessionid_cookie_from_the_suite() {
        let o = SockJsOptions::default().cookie_needed(true);
        let cases = [
            ("", "JSESSIONID=dummy; path=/"),
            ("Cookie: JSESSIONID=abcdef\r\n", "JSESSIONID=abcdef; path=/"),
            (
                "Cookie: a=b; JSESSIONID = xyz ; c=d\r\n",
                "JSESSIONID=xyz; path=/",
            ),
        ];
        for (cookie, expected) in cases {
            let raw = format!("POST /0/0/jsonp_send HTTP/1.1\r\n{cookie}\r\n");
            let mut out = Vec::new();
            with_request(&raw, |r| write_jsonp_send_ok(&mut out, r, &o, false));
            assert_eq!(parse_resp(&out).get("set-cookie"), Some(expected));
        }
        let mut out = Vec::new();
        with_request("GET /info HTTP/1.1\r\n\r\n", |r| {
            write_info(&mut out, r, &o, 1, false)
        });
        assert_eq!(parse_resp(&out).get("set-cookie"), None);
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(784_111_777)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
    }

    #[test]
    fn header_values_cannot_split_the_response() {
        let mut out = Vec::new();
        header(&mut out, "X", "a\r\nb");
        assert_eq!(out, b"X: a  b\r\n");
    }

    /// The pages and transports write headers with the same rule as every other
    /// writer (`http::write_header`): CR, LF and NUL in names and values are spaces.
    #[test]
    fn pages_use_the_one_header_sanitiser() {
        for bad in ["a\r\nSet-Cookie: b", "a\0b", "\n\n", "x\ry"] {
            let mut ours = Vec::new();
            header(&mut ours, bad, bad);
            let mut theirs = Vec::new();
            crate::http::write_header(&mut theirs, bad, bad);
            assert_eq!(ours, theirs);
            assert_eq!(ours.iter().filter(|&&b| b == b'\n').count(), 1);
            assert!(!ours.contains(&0) && !ours[..ours.len() - 2].contains(&b'\r'));
        }
        let mut out = Vec::new();
        status_line(&mut out, 413);
        assert_eq!(out, b"HTTP/1.1 413 Payload Too Large\r\n");
        out.clear();
        status_line(&mut out, 404);
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\n");
    }

    #[test]
    fn too_large_is_a_413_a_browser_can_read() {
        let raw =
            "POST /echo/0/s/xhr_send HTTP/1.1\r\nOrigin: http://x\r\nContent-Length: 9\r\n\r\n";
        for o in both() {
            let o = o.max_body_bytes(8);
            let mut out = Vec::new();
            with_request(raw, |r| write_too_large(&mut out, r, &o, 9, true));
            assert!(out.starts_with(b"HTTP/1.1 413 Payload Too Large\r\n"));
            let r = parse_resp(&out);
            assert_eq!(r.status, 413);
            assert_eq!(r.get("connection"), Some("close"));
            assert_eq!(r.get("access-control-allow-origin"), Some("http://x"));
            assert_eq!(r.get("cache-control"), Some(o.flavour.no_cache_value()));
            let body = String::from_utf8(r.body).unwrap();
            assert_eq!(body, "Payload too large: 9 bytes, the limit is 8 bytes");
        }
    }
}
