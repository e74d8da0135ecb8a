//! Response writing into a caller-owned output buffer.

use super::{status_text, HttpError};

/// Writes a complete response: status line, `extra_headers`, `Content-Type` (omitted
/// when `content_type` is empty), `Content-Length`, `Connection: close` when `close` is
/// true, and the body.
///
/// CR, LF and NUL bytes in header names and values are written as spaces (the one rule
/// of every response writer in the crate), so a header built from request data cannot
/// split the response.
///
/// ```
/// let mut out = Vec::new();
/// ringws::http::write_response(&mut out, 200, &[("X-A", "1")], "text/plain", b"hi", false);
/// assert_eq!(
///     out,
///     b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
/// );
/// ```
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    extra_headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
    close: bool,
) {
    let length = Some(body.len() as u64);
    write_response_head(out, status, extra_headers, content_type, length, close);
    out.extend_from_slice(body);
}

/// Writes a response head only, as [`write_response`] would for a body of
/// `content_length` bytes (no `Content-Length` when `None`, as for a 304); the caller
/// appends the body, or none for a HEAD request.
pub(crate) fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    extra_headers: &[(&str, &str)],
    content_type: &str,
    content_length: Option<u64>,
    close: bool,
) {
    write_status_line(out, status);
    write_headers(out, extra_headers);
    if !content_type.is_empty() {
        write_header(out, "Content-Type", content_type);
    }
    if let Some(length) = content_length {
        out.extend_from_slice(b"Content-Length: ");
        write_decimal(out, length);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes `err` as a `text/plain` response whose body is the reason followed by `"\n"`,
/// with `Connection: close`.
pub fn write_error(out: &mut Vec<u8>, err: &HttpError, extra_headers: &[(&str, &str)]) {
    write_status_line(out, err.status);
    write_headers(out, extra_headers);
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    write_decimal(out, err.reason.len() as u64 + 1);
    out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    out.extend_from_slice(err.reason.as_bytes());
    out.push(b'\n');
}

/// Writes `HTTP/1.1 <status> <reason phrase>\r\n`.
pub(crate) fn write_status_line(out: &mut Vec<u8>, status: u16) {
    write_status_line_with(out, status, status_text(status));
}

/// Writes `HTTP/1.1 <status> <reason>\r\n` with a caller's reason phrase (SockJS keeps
/// sockjs-node's wording), sanitised as header values are.
pub(crate) fn write_status_line_with(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(out, u64::from(status));
    out.push(b' ');
    write_sanitized(out, reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes each `(name, value)` as a header line.
pub(crate) fn write_headers(out: &mut Vec<u8>, headers: &[(&str, &str)]) {
    for (name, value) in headers {
        write_header(out, name, value);
    }
}

/// Writes one `name: value\r\n` line. This is the house's one header sanitiser, used
/// by every response writer (route answers, static files, handshakes, SockJS pages and
/// transports): CR, LF and NUL in the name or the value are written as spaces, so a
/// header built from request data can neither split the head nor end it.
pub(crate) fn write_header(out: &mut Vec<u8>, name: &str, value: &str) {
    write_sanitized(out, name.as_bytes());
    out.extend_from_slice(b": ");
    write_sanitized(out, value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes a header line whose value is a decimal number.
pub(crate) fn write_header_decimal(out: &mut Vec<u8>, name: &str, value: u64) {
    write_sanitized(out, name.as_bytes());
    out.extend_from_slice(b": ");
    write_decimal(out, value);
    out.extend_from_slice(b"\r\n");
}

/// Writes a piece of a header line (a name or part of a value built from several
/// pieces) with [`write_header`]'s rule: CR, LF and NUL are written as spaces.
pub(crate) fn write_header_piece(out: &mut Vec<u8>, piece: &str) {
    write_sanitized(out, piece.as_bytes());
}

/// The bytes [`write_header`] refuses in a header line: they are written as spaces.
fn is_forbidden_in_header(b: u8) -> bool {
    matches!(b, b'\r' | b'\n' | 0)
}

fn write_sanitized(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.iter().any(|&b| is_forbidden_in_header(b)) {
        out.extend(
            bytes
                .iter()
                .map(|&b| if is_forbidden_in_header(b) { b' ' } else { b }),
        );
    } else {
        out.extend_from_slice(bytes);
    }
}

fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_with_close_and_no_type() {
        let mut out = Vec::new();
        write_response(&mut out, 204, &[], "", b"", true);
        assert_eq!(
            out,
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn error_response() {
        let mut out = Vec::new();
        let err = HttpError::new(426, "nope");
        write_error(&mut out, &err, &[("Sec-WebSocket-Version", "13")]);
        assert_eq!(
            out,
            &b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\nConnection: close\r\n\r\nnope\n"[..]
        );
    }

    #[test]
    fn header_injection_is_neutralised() {
        let mut out = Vec::new();
        write_header(&mut out, "X", "a\r\nSet-Cookie: b");
        assert_eq!(out, b"X: a  Set-Cookie: b\r\n");
    }

    /// Counts the header lines of a head (up to the blank line) and checks that no
    /// line holds CR, LF or NUL except its own CRLF.
    fn header_lines(head: &[u8]) -> Vec<&[u8]> {
        let end = head
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head");
        let lines: Vec<&[u8]> = head[..end].split(|&b| b == b'\n').collect();
        for line in &lines[..lines.len() - 1] {
            assert_eq!(line.last(), Some(&b'\r'), "a bare LF in {head:?}");
        }
        for line in &lines {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(
                !line.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)),
                "CR/LF/NUL in {line:?}"
            );
        }
        lines
    }

    #[test]
    fn cr_lf_and_nul_cannot_split_a_header_name_or_value() {
        let hostile = [
            "a\r\nSet-Cookie: b",
            "a\nSet-Cookie: b",
            "a\rSet-Cookie: b",
            "a\0b",
            "a\r\n\r\n<html>",
            "\r\n",
        ];
        for bad in hostile {
            let mut out = Vec::new();
            write_header(&mut out, "X", bad);
            let expected: Vec<u8> = bad
                .bytes()
                .map(|b| {
                    if matches!(b, b'\r' | b'\n' | 0) {
                        b' '
                    } else {
                        b
                    }
                })
                .collect();
            assert_eq!(out, [&b"X: "[..], &expected, b"\r\n"].concat());
            out.clear();
            write_header(&mut out, bad, "v");
            assert_eq!(out, [&expected[..], b": v\r\n"].concat());
            // A whole response: still one status line, three headers, one body.
            out.clear();
            write_response(&mut out, 200, &[(bad, bad)], bad, b"body", true);
            let lines = header_lines(&out);
            assert_eq!(lines.len(), 5, "{:?}", String::from_utf8_lossy(&out));
            assert!(out.ends_with(b"\r\n\r\nbody"));
            out.clear();
            write_status_line_with(&mut out, 200, bad);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            assert!(!out.contains(&0));
        }
    }

    #[test]
    fn decimal_headers() {
        let mut out = Vec::new();
        write_header_decimal(&mut out, "Content-Length", 31_536_000);
        assert_eq!(out, b"Content-Length: 31536000\r\n");
    }

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 431, 65535, u64::MAX] {
            let mut out = Vec::new();
            write_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn unknown_status_line() {
        let mut out = Vec::new();
        write_status_line(&mut out, 599);
        assert_eq!(out, b"HTTP/1.1 599 \r\n");
    }
}
