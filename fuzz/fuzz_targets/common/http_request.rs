//! Fuzzes the HTTP/1.x request head parser and what the server reads from a parsed
//! head: `Content-Length` and keep-alive. Nothing may panic; a complete head lies
//! within the input, and an error's status is a 4xx/5xx.
//!
//! The `http_request` target and the seed replay test (`tests/fuzz_seeds.rs`) share this body.

use ringws::http::{header_storage, parse_request, Parse};

pub fn run(data: &[u8]) {
    let mut headers = header_storage();
    match parse_request(data, &mut headers, 8192) {
        Ok(Parse::Complete { request, head_len }) => {
            assert!(head_len <= data.len());
            assert!(data[..head_len].ends_with(b"\n"));
            match request.content_length() {
                Ok(len) => {
                    // Without the header the length is 0; a body is cut from what follows.
                    if request
                        .headers()
                        .all(|(n, _)| !n.eq_ignore_ascii_case("content-length"))
                    {
                        assert_eq!(len, 0);
                    }
                    let rest = &data[head_len..];
                    let body = &rest[..len.min(rest.len())];
                    let request = request.with_body(body);
                    assert_eq!(request.body().len(), body.len());
                }
                Err(e) => assert!((400..600).contains(&e.status), "{}", e.status),
            }
            let keep = request.keep_alive();
            if request.header_has_token("connection", "close") && request.version_minor() >= 1 {
                assert!(!keep);
            }
            let _ = (
                request.method(),
                request.path(),
                request.query(),
                request.target(),
            );
        }
        Ok(Parse::Partial) => {}
        Err(e) => assert!((400..600).contains(&e.status), "{}", e.status),
    }
}
