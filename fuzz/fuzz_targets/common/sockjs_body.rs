//! Fuzzes the SockJS client-message parsers (xhr_send, jsonp_send with both content
//! types, websocket messages) and `quote`: nothing may panic, and a quoted string reads
//! back as itself, alone or in an array.
//!
//! The `sockjs_body` target and the seed replay test (`tests/fuzz_seeds.rs`) share this body.

use ringws::sockjs::fuzzing::{
    parse_client_messages, parse_jsonp_send, parse_websocket_message, quote,
};

pub fn run(data: &[u8]) {
    let direct = parse_client_messages(data);
    // text/plain and no type read the body as xhr_send does.
    assert_eq!(parse_jsonp_send(data, Some("text/plain")), direct);
    assert_eq!(parse_jsonp_send(data, None), direct);
    let _ = parse_jsonp_send(data, Some("application/x-www-form-urlencoded"));
    let _ = parse_jsonp_send(
        data,
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
    );
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_websocket_message(text);
    // Round trips: quote() must give a JSON string the parsers read back unchanged.
    let quoted = quote(text);
    assert_eq!(
        parse_websocket_message(&quoted),
        Ok(vec![text.to_owned()]),
        "{quoted:?}"
    );
    let array = format!("[{quoted},{quoted}]");
    assert_eq!(
        parse_client_messages(array.as_bytes()),
        Ok(vec![text.to_owned(), text.to_owned()]),
        "{array:?}"
    );
    let form = format!("d={}", percent(array.as_bytes()));
    assert_eq!(
        parse_jsonp_send(form.as_bytes(), Some("application/x-www-form-urlencoded")),
        Ok(vec![text.to_owned(), text.to_owned()]),
        "{form:?}"
    );
}

/// Percent-encodes every byte that is not alphanumeric.
fn percent(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
