//! Fuzzes the sans-I/O handshake: request parsing, upgrade validation (RFC 6455 and, with
//! the request's `X-Protocol` header standing for HTTP/2's `:protocol`, RFC 8441's
//! extended CONNECT) and the answers. Whatever the bytes, nothing may panic and every
//! answer must be a well-formed head.
//!
//! The `handshake` target and the seed replay test (`tests/fuzz_seeds.rs`) share this body.

use ringws::handshake::{
    is_websocket_request, validate_extended_connect, validate_upgrade, write_accept,
    write_rejection, Version,
};
use ringws::http::{header_storage, parse_request, write_error, Parse};

pub fn run(data: &[u8]) {
    let mut headers = header_storage();
    let mut out = Vec::new();
    match parse_request(data, &mut headers, 8192) {
        Ok(Parse::Complete { request, head_len }) => {
            assert!(head_len <= data.len());
            let _ = is_websocket_request(&request);
            let _ = (request.path(), request.query(), request.target());
            let _ = request.headers().count();
            let protocol = request.header_str("X-Protocol");
            if let Ok(upgrade) = validate_extended_connect(&request, protocol) {
                assert_eq!((upgrade.version, upgrade.key), (Version::V13, ""));
                assert_eq!(request.method(), "CONNECT");
                let _ = (upgrade.protocols().count(), upgrade.origin());
            }
            match validate_upgrade(&request) {
                Ok(upgrade) => {
                    let first = upgrade.protocols().next();
                    let _ = upgrade.origin();
                    write_accept(&mut out, &upgrade, first, &[]);
                    assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
                }
                Err(err) => write_rejection(&mut out, &err),
            }
        }
        Ok(Parse::Partial) => {}
        Err(err) => write_error(&mut out, &err, &[]),
    }
    if !out.is_empty() {
        check_answer(&out);
    }
}

/// An answer is one head, ended once, whose every header line is free of CR and LF: no
/// byte of the request (a path, a protocol, a reason) can split the response or inject
/// a header. A `Content-Length` must count the body that follows exactly.
pub fn check_answer(out: &[u8]) {
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the head is ended");
    let head = &out[..end];
    let mut content_length = None;
    for (i, line) in head.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(
            !line.contains(&b'\r') && !line.contains(&b'\n'),
            "line {i} carries a CR or LF: {:?}",
            String::from_utf8_lossy(line)
        );
        if i == 0 {
            assert!(
                line.starts_with(b"HTTP/1.1 "),
                "{:?}",
                String::from_utf8_lossy(line)
            );
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .expect("a header line has a colon");
        let name = &line[..colon];
        assert!(
            !name.is_empty() && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-'),
            "bad header name {:?}",
            String::from_utf8_lossy(name)
        );
        if name.eq_ignore_ascii_case(b"content-length") {
            let value = std::str::from_utf8(&line[colon + 1..]).expect("ASCII length");
            content_length = Some(value.trim().parse::<usize>().expect("a number"));
        }
    }
    // Every line, the last included, ends with CRLF: a bare LF would end a line early.
    assert_eq!(
        head.iter().filter(|&&b| b == b'\n').count(),
        head.windows(2).filter(|w| w == b"\r\n").count(),
        "a bare LF in the head"
    );
    if let Some(len) = content_length {
        assert_eq!(
            out.len() - (end + 4),
            len,
            "Content-Length differs from the body"
        );
    }
}
