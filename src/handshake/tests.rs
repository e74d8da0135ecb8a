//! Handshake tests on whole requests: parse, validate, answer.

use super::*;
use crate::http::{parse_request, HttpError, Parse, Request, MAX_HEADERS};

const CHROME: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
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

/// Parses `buf` (which must hold a complete head) and runs `f` on the request.
fn with_request<R>(buf: &[u8], f: impl FnOnce(&Request<'_>) -> R) -> R {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match parse_request(buf, &mut headers, 16 * 1024) {
        Ok(Parse::Complete { request, .. }) => f(&request),
        other => panic!("not a complete head: {other:?}"),
    }
}

/// Builds a request from a request line and header lines.
fn request(line: &str, headers: &[&str]) -> Vec<u8> {
    let mut out = format!("{line}\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

const GOOD: [&str; 5] = [
    "Host: h",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

/// GOOD with header `i` replaced by `with` (or dropped when `with` is empty).
fn good_but(i: usize, with: &str) -> Vec<u8> {
    let mut hs: Vec<&str> = GOOD.to_vec();
    if with.is_empty() {
        hs.remove(i);
    } else {
        hs[i] = with;
    }
    request("GET /ws HTTP/1.1", &hs)
}

fn validate(buf: &[u8]) -> Result<(Version, Option<String>), HttpError> {
    with_request(buf, |r| {
        validate_upgrade(r).map(|u| (u.version, u.origin().map(String::from)))
    })
}

#[test]
fn chrome_upgrade_is_accepted() {
    with_request(CHROME, |req| {
        assert!(is_websocket_request(req));
        let up = validate_upgrade(req).unwrap();
        assert_eq!(up.version, Version::V13);
        assert_eq!(up.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(up.origin(), Some("http://example.com"));
        assert_eq!(up.protocols().count(), 0);
        assert_eq!(up.protocols_raw(), None);
        assert_eq!(
            up.extensions_raw(),
            Some("permessage-deflate; client_max_window_bits")
        );
        let mut out = Vec::new();
        write_accept(&mut out, &up, None, &[]);
        assert_eq!(
            out,
            &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"[..]
        );
    });
}

#[test]
fn accept_with_protocol_and_extra_headers() {
    let buf = request(
        "GET /ws HTTP/1.1",
        &[&GOOD[..], &["Sec-WebSocket-Protocol: chat, superchat"]].concat(),
    );
    with_request(&buf, |req| {
        let up = validate_upgrade(req).unwrap();
        let mut out = Vec::new();
        write_accept(&mut out, &up, Some("chat"), &[("Server", "ringws")]);
        assert_eq!(
            out,
            &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\
Server: ringws\r\n\r\n"[..]
        );
    });
}

#[test]
fn protocols_iterator() {
    let buf = request(
        "GET /ws HTTP/1.1",
        &[
            &GOOD[..],
            &[
                "Sec-WebSocket-Protocol: chat,,  superchat ,\t v2.json ",
                "Sec-WebSocket-Protocol: ignored",
            ],
        ]
        .concat(),
    );
    with_request(&buf, |req| {
        let up = validate_upgrade(req).unwrap();
        assert_eq!(
            up.protocols().collect::<Vec<_>>(),
            ["chat", "superchat", "v2.json"]
        );
        assert_eq!(up.protocols_raw(), Some("chat,,  superchat ,\t v2.json"));
    });
}

#[test]
fn keep_alive_upgrade_and_case_are_accepted() {
    let buf = good_but(2, "connection: keep-alive, Upgrade");
    assert_eq!(validate(&buf).unwrap().0, Version::V13);
    let buf = good_but(1, "UPGRADE: WebSocket");
    assert_eq!(validate(&buf).unwrap().0, Version::V13);
    let buf = good_but(3, "Sec-WebSocket-Key:   dGhlIHNhbXBsZSBub25jZQ==  ");
    assert!(validate(&buf).is_ok());
}

#[test]
fn hybi_drafts_with_sec_websocket_origin() {
    for (v, version) in [("8", Version::V8), ("7", Version::V7)] {
        let buf = request(
            "GET /ws HTTP/1.1",
            &[
                "Host: h",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                &format!("Sec-WebSocket-Version: {v}"),
                "Sec-WebSocket-Origin: http://old.example",
                "Origin: http://ignored.example",
            ],
        );
        assert_eq!(
            validate(&buf).unwrap(),
            (version, Some("http://old.example".into()))
        );
        with_request(&buf, |req| {
            let up = validate_upgrade(req).unwrap();
            assert_eq!(up.version.number().to_string(), v);
            let mut out = Vec::new();
            write_accept(&mut out, &up, None, &[]);
            assert!(out
                .windows(28)
                .any(|w| w == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        });
    }
    // A V8 client that sends only Origin still gets it.
    let buf = good_but(4, "Sec-WebSocket-Version: 8");
    let buf = [&buf[..buf.len() - 2], b"Origin: http://o\r\n\r\n"].concat();
    assert_eq!(validate(&buf).unwrap().1.as_deref(), Some("http://o"));
    // V13 ignores Sec-WebSocket-Origin.
    let buf = good_but(0, "Host: h");
    let buf = [
        &buf[..buf.len() - 2],
        b"Sec-WebSocket-Origin: http://o\r\n\r\n",
    ]
    .concat();
    assert_eq!(validate(&buf).unwrap().1, None);
}

#[test]
fn every_rejection() {
    let cases: Vec<(Vec<u8>, HttpError)> = vec![
        (request("POST /ws HTTP/1.1", &GOOD), ERR_NOT_GET),
        (request("get /ws HTTP/1.1", &GOOD), ERR_NOT_GET),
        (request("GET /ws HTTP/1.0", &GOOD), ERR_NOT_HTTP11),
        (good_but(0, ""), ERR_NO_HOST),
        (good_but(1, ""), ERR_NO_UPGRADE),
        (good_but(1, "Upgrade: h2c"), ERR_NO_UPGRADE),
        (good_but(2, ""), ERR_NO_CONNECTION_UPGRADE),
        (
            good_but(2, "Connection: keep-alive"),
            ERR_NO_CONNECTION_UPGRADE,
        ),
        (good_but(3, ""), ERR_BAD_KEY),
        (good_but(3, "Sec-WebSocket-Key: "), ERR_BAD_KEY),
        (good_but(3, "Sec-WebSocket-Key: c2hvcnQ="), ERR_BAD_KEY),
        (
            good_but(3, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSE="),
            ERR_BAD_KEY,
        ),
        (
            good_but(3, "Sec-WebSocket-Key: not base64 at all!!!!!!"),
            ERR_BAD_KEY,
        ),
        (good_but(4, ""), ERR_NO_VERSION),
        (good_but(4, "Sec-WebSocket-Version: 12"), ERR_BAD_VERSION),
        (good_but(4, "Sec-WebSocket-Version: 13, 8"), ERR_BAD_VERSION),
        (good_but(4, "Sec-WebSocket-Version: "), ERR_BAD_VERSION),
        (good_but(4, "Sec-WebSocket-Version: 0"), ERR_BAD_VERSION),
    ];
    for (buf, want) in cases {
        let got = validate(&buf).unwrap_err();
        assert_eq!(got, want, "{}", String::from_utf8_lossy(&buf));
        let mut out = Vec::new();
        write_rejection(&mut out, &got);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(&format!("HTTP/1.1 {} ", want.status)),
            "{text}"
        );
        assert!(
            text.ends_with(&format!("\r\n\r\n{}\n", want.reason)),
            "{text}"
        );
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert_eq!(
            text.contains("\r\nSec-WebSocket-Version: 13, 8, 7\r\n"),
            want.status == 426,
            "{text}"
        );
    }
    for e in [
        ERR_NOT_GET,
        ERR_NOT_HTTP11,
        ERR_NO_HOST,
        ERR_NO_UPGRADE,
        ERR_BAD_KEY,
    ] {
        assert_eq!(e.status, 400);
    }
    for e in [ERR_NO_VERSION, ERR_BAD_VERSION, ERR_HIXIE75, ERR_HIXIE76] {
        assert_eq!(e.status, 426);
    }
}

#[test]
fn hixie_requests_validate() {
    let hixie76 = b"GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nSec-WebSocket-Protocol: sample\r\nUpgrade: WebSocket\r\n\
Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nOrigin: http://example.com\r\n\r\n^n:ds[4U";
    with_request(hixie76, |req| {
        assert!(is_websocket_request(req));
        let up = validate_upgrade(req).unwrap();
        assert_eq!(up.version, Version::Hixie76);
        assert_eq!(up.hixie76_keys(), Some((829309203, 259970620)));
        assert_eq!(up.origin(), Some("http://example.com"));
        assert_eq!(up.protocols().collect::<Vec<_>>(), ["sample"]);
        // A route that refuses legacy drafts answers 426 with the versions it speaks.
        let mut out = Vec::new();
        write_rejection(&mut out, &ERR_HIXIE76);
        assert!(out
            .starts_with(b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13, 8, 7\r\n"));
    });
    let hixie75 = b"GET /demo HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
Host: example.com\r\nOrigin: http://example.com\r\nWebSocket-Protocol: sample\r\n\r\n";
    with_request(hixie75, |req| {
        let up = validate_upgrade(req).unwrap();
        assert_eq!(up.version, Version::Hixie75);
        assert_eq!(up.hixie76_keys(), None);
        assert_eq!(up.protocols_raw(), Some("sample"));
    });
}

#[test]
fn bad_hixie_keys_get_400() {
    let base = ["Host: h", "Upgrade: WebSocket", "Connection: Upgrade"];
    let cases: [(&[&str], HttpError); 4] = [
        (&["Sec-WebSocket-Key1: 1 2"], ERR_HIXIE_KEY_MISSING),
        (
            &["Sec-WebSocket-Key1: 12", "Sec-WebSocket-Key2: 1 2"],
            ERR_HIXIE_KEY_NO_SPACES,
        ),
        (
            &["Sec-WebSocket-Key1: 1 2", "Sec-WebSocket-Key2: 1 1 x"],
            ERR_HIXIE_KEY_NOT_INTEGRAL,
        ),
        (
            &[
                "Sec-WebSocket-Key1: 9999999999 x",
                "Sec-WebSocket-Key2: 1 2",
            ],
            ERR_HIXIE_KEY_OVERFLOW,
        ),
    ];
    for (keys, want) in cases {
        let buf = request("GET /ws HTTP/1.1", &[&base[..], keys].concat());
        assert_eq!(validate(&buf).unwrap_err(), want, "{keys:?}");
    }
}

#[test]
fn plain_http_is_not_websocket() {
    let buf = request(
        "GET /index.html HTTP/1.1",
        &["Host: h", "Connection: keep-alive"],
    );
    with_request(&buf, |req| assert!(!is_websocket_request(req)));
    let buf = request("GET / HTTP/1.1", &["Host: h", "Upgrade: h2c, websocketx"]);
    with_request(&buf, |req| assert!(!is_websocket_request(req)));
}

/// The fuzz target's body: must never panic, whatever the bytes.
fn drive(data: &[u8], out: &mut Vec<u8>) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match parse_request(data, &mut headers, 4096) {
        Ok(Parse::Complete { request, head_len }) => {
            assert!(head_len <= data.len());
            match validate_upgrade(&request) {
                Ok(up) => {
                    let first = up.protocols().next();
                    write_accept(out, &up, first, &[("X", "y")]);
                }
                Err(e) => write_rejection(out, &e),
            }
        }
        Ok(Parse::Partial) => {}
        Err(e) => write_rejection(out, &e),
    }
}

#[test]
fn mutated_requests_never_panic() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = Vec::new();
    for cut in 0..=CHROME.len() {
        out.clear();
        drive(&CHROME[..cut], &mut out);
    }
    for _ in 0..5000 {
        let mut buf = CHROME.to_vec();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % buf.len();
            match next() % 3 {
                0 => buf[i] = next() as u8,
                1 => {
                    buf.remove(i);
                }
                _ => buf.insert(i, b"\r\n:, ="[(next() % 6) as usize]),
            }
        }
        out.clear();
        drive(&buf, &mut out);
    }
}

/// An HTTP/2 extended CONNECT as an adapter would build it: `:authority` as `Host`.
fn h2_headers<'a>(extra: &[(&'a str, &'a [u8])]) -> Vec<httparse::Header<'a>> {
    let mut headers = vec![httparse::Header {
        name: "Host",
        value: b"server.example.com",
    }];
    headers.extend(
        extra
            .iter()
            .map(|&(name, value)| httparse::Header { name, value }),
    );
    headers
}

#[test]
fn rfc_8441_extended_connect_is_validated_like_an_rfc_6455_upgrade() {
    let version: (&str, &[u8]) = ("Sec-WebSocket-Version", b"13");
    let headers = h2_headers(&[
        version,
        ("Origin", b"https://server.example.com"),
        ("Sec-WebSocket-Protocol", b"chat, superchat"),
        (
            "Sec-WebSocket-Extensions",
            b"permessage-deflate; client_max_window_bits",
        ),
    ]);
    let request = Request::from_parts("CONNECT", "/chat", 1, &headers);
    let upgrade = validate_extended_connect(&request, Some("websocket")).unwrap();
    assert_eq!((upgrade.version, upgrade.key), (Version::V13, ""));
    assert_eq!(upgrade.origin(), Some("https://server.example.com"));
    assert_eq!(
        upgrade.protocols().collect::<Vec<_>>(),
        ["chat", "superchat"]
    );
    // The same origin policy and deflate negotiation as over HTTP/1.1.
    assert!(check_origin(&OriginPolicy::SameOrigin, &request, &upgrade).is_ok());
    let agreement = negotiate_request(&request, &DeflateConfig::default()).unwrap();
    assert_eq!(agreement.response_value(), "permessage-deflate");
    let foreign = h2_headers(&[version, ("Origin", b"https://evil.example")]);
    let request = Request::from_parts("CONNECT", "/chat", 1, &foreign);
    let upgrade = validate_extended_connect(&request, Some("WebSocket")).unwrap();
    assert_eq!(
        check_origin(&OriginPolicy::SameOrigin, &request, &upgrade)
            .unwrap_err()
            .status,
        403
    );
}

#[test]
fn rfc_8441_refusals() {
    let ok = h2_headers(&[("Sec-WebSocket-Version", b"13")]);
    let connect = |method, headers| {
        let request = Request::from_parts(method, "/chat", 1, headers);
        validate_extended_connect(&request, Some("websocket")).map(|u| u.version)
    };
    assert_eq!(connect("GET", &ok), Err(ERR_NOT_CONNECT));
    assert_eq!(connect("CONNECT", &ok), Ok(Version::V13));
    let request = Request::from_parts("CONNECT", "/chat", 1, &ok);
    for protocol in [None, Some("webtransport"), Some("")] {
        assert_eq!(
            validate_extended_connect(&request, protocol).map(|u| u.version),
            Err(ERR_NOT_WEBSOCKET_PROTOCOL)
        );
    }
    let none = h2_headers(&[]);
    assert_eq!(connect("CONNECT", &none), Err(ERR_NO_VERSION));
    let eight = h2_headers(&[("Sec-WebSocket-Version", b"8")]);
    assert_eq!(connect("CONNECT", &eight), Err(ERR_BAD_VERSION));
    assert_eq!(ERR_NO_VERSION.status, 426);
}
