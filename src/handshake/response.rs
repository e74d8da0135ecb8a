//! The handshake answers: 101 Switching Protocols, or a rejection.

use super::{AcceptKey, Upgrade, SUPPORTED_VERSIONS_HEADER};
use crate::http::{write_error, write_header, write_headers, write_status_line, HttpError};

/// Writes the 101 Switching Protocols answer: `Upgrade: websocket`,
/// `Connection: Upgrade`, `Sec-WebSocket-Accept`, `Sec-WebSocket-Protocol` when
/// `protocol` is `Some`, then `extra_headers`. The same answer serves V13, V8 and V7;
/// the hixie drafts have their own ([`write_hixie76_head`](super::write_hixie76_head),
/// [`write_hixie75_head`](super::write_hixie75_head)).
pub fn write_accept(
    out: &mut Vec<u8>,
    upgrade: &Upgrade<'_>,
    protocol: Option<&str>,
    extra_headers: &[(&str, &str)],
) {
    let accept = AcceptKey::new(upgrade.key.as_bytes());
    write_status_line(out, 101);
    out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
    write_header(out, "Sec-WebSocket-Accept", accept.as_str());
    if let Some(protocol) = protocol {
        write_header(out, "Sec-WebSocket-Protocol", protocol);
    }
    write_headers(out, extra_headers);
    out.extend_from_slice(b"\r\n");
}

/// Writes a refused handshake as a text/plain error with `Connection: close`; a 426
/// also carries [`SUPPORTED_VERSIONS_HEADER`] (`Sec-WebSocket-Version: 13, 8, 7`).
pub fn write_rejection(out: &mut Vec<u8>, err: &HttpError) {
    if err.status == 426 {
        write_error(out, err, &[SUPPORTED_VERSIONS_HEADER]);
    } else {
        write_error(out, err, &[]);
    }
}
