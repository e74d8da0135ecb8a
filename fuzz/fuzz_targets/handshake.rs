//! Fuzzes the sans-I/O handshake: request parsing, upgrade validation and the answers.
//! Whatever the bytes, nothing may panic and every answer must be a well-formed head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringws::handshake::{is_websocket_request, validate_upgrade, write_accept, write_rejection};
use ringws::http::{header_storage, parse_request, write_error, Parse};

fuzz_target!(|data: &[u8]| {
    let mut headers = header_storage();
    let mut out = Vec::new();
    match parse_request(data, &mut headers, 8192) {
        Ok(Parse::Complete { request, head_len }) => {
            assert!(head_len <= data.len());
            let _ = is_websocket_request(&request);
            let _ = (request.path(), request.query(), request.target());
            let _ = request.headers().count();
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
        // One head, ended once: no header value from the request split the response.
        let end = out.windows(4).position(|w| w == b"\r\n\r\n");
        assert!(end.is_some());
    }
});
