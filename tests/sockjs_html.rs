//! SockJS data inside HTML, end to end over raw sockets with two shards: a message that
//! would end the `htmlfile` page's `<script>` (`</script>`, `<!--`) arrives intact and
//! in order through the `htmlfile` transport and through the iframe-htmlfile flow (the
//! iframe page, then `htmlfile` with a `_jp.` callback); the frames are read from the
//! wire as a browser's HTML parser would cut them. Callbacks with characters outside
//! `[a-zA-Z0-9-_.]` get sockjs-node's 500, error bodies never echo the request, and
//! the iframe page carries the configured `sockjs_url`, escaped.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::{raw_connect, read_head};
use ringws::sockjs::fuzzing::quote;
use ringws::sockjs::{Flavour, SockJsOptions};
use ringws::{Conn, Handler, Message, RunningServer};

/// Echoes text messages.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        if let Message::Text(text) = message {
            conn.send_text(text);
        }
    }
}

/// Closes each session at open with a reason that would end a `<script>`.
struct CloseHostile;

impl Handler for CloseHostile {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        conn.close(3000, CLOSE_REASON);
    }
    fn on_message(&mut self, _conn: &mut Conn<'_>, _message: Message<'_>) {}
}

/// The message that must not break out of the htmlfile's script.
const HOSTILE: &str = "x</script><script>alert(1)</script><!--y";
/// The close reason of `/closer`.
const CLOSE_REASON: &str = "bye</script><!--";
/// A `sockjs_url` served from this server's `--static` directory.
const LOCAL_URL: &str = "/static/sockjs.min.js";

fn server() -> RunningServer {
    let options = SockJsOptions::default();
    common::builder()
        .sockjs("/echo", || Echo, options.clone())
        .sockjs("/old", || Echo, options.clone().flavour(Flavour::V0_3_3))
        .sockjs("/local", || Echo, options.clone().sockjs_url(LOCAL_URL))
        .sockjs(
            "/hostile_url",
            || Echo,
            options
                .clone()
                .sockjs_url("/s.js?a=1&b=\"><script>alert(1)</script>"),
        )
        .sockjs("/closer", || CloseHostile, options)
        .build()
        .expect("build")
        .start()
        .expect("start")
}

/// A fresh session id per test run and name.
fn sid(name: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{name}{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Sends one request (with `Connection: close`).
fn send(stream: &mut TcpStream, method: &str, path: &str, body: &str) {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    if method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("write");
}

/// The value of header `name` in `head`.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// One request on a fresh connection; a `Content-Length` body (or none) is read whole.
fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (String, Vec<u8>) {
    let mut stream = raw_connect(addr);
    send(&mut stream, method, path, body);
    let head = read_head(&mut stream);
    let length = header(&head, "Content-Length").map_or(0, |l| l.parse().expect("length"));
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("body");
    (head, body)
}

fn status(head: &str) -> u16 {
    head[9..12].parse().expect("status")
}

/// Reads one chunk of a chunked body as raw bytes; `None` at the last chunk.
fn read_chunk(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).expect("chunk size");
        line.push(byte[0]);
    }
    let size = std::str::from_utf8(&line[..line.len() - 2]).expect("chunk size");
    let size = usize::from_str_radix(size, 16).expect("chunk size");
    let mut data = vec![0; size + 2];
    stream.read_exact(&mut data).expect("chunk data");
    assert!(data.ends_with(b"\r\n"), "chunk not ended by CRLF");
    data.truncate(size);
    (size > 0).then_some(data)
}

/// Decodes a JavaScript / JSON string literal (`"`...`"`, escapes `\" \\ \/ \b \f \n
/// \r \t \uXXXX`, surrogate pairs) at the start of `s`; returns the value and the rest.
fn decode_string(s: &str) -> (String, &str) {
    let mut chars = s.char_indices();
    assert_eq!(
        chars.next().map(|(_, c)| c),
        Some('"'),
        "no string at {s:?}"
    );
    let mut out = String::new();
    let mut pending_high: Option<u32> = None;
    loop {
        let (i, c) = chars
            .next()
            .unwrap_or_else(|| panic!("unterminated: {s:?}"));
        let unit = match c {
            '"' => {
                assert!(pending_high.is_none(), "lone surrogate in {s:?}");
                return (out, &s[i + 1..]);
            }
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('"') => u32::from('"'),
                Some('\\') => u32::from('\\'),
                Some('/') => u32::from('/'),
                Some('b') => 8,
                Some('f') => 12,
                Some('n') => u32::from('\n'),
                Some('r') => u32::from('\r'),
                Some('t') => u32::from('\t'),
                Some('u') => {
                    let hex: String = (0..4)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    u32::from_str_radix(&hex, 16).unwrap_or_else(|_| panic!("bad \\u{hex}"))
                }
                other => panic!("bad escape \\{other:?} in {s:?}"),
            },
            c if (c as u32) < 0x20 => panic!("raw control character in a literal: {s:?}"),
            c => u32::from(c),
        };
        match (pending_high.take(), unit) {
            (None, 0xd800..=0xdbff) => pending_high = Some(unit),
            (Some(high), 0xdc00..=0xdfff) => {
                let c = 0x10000 + ((high - 0xd800) << 10) + (unit - 0xdc00);
                out.push(char::from_u32(c).expect("pair"));
            }
            (None, unit) => out.push(char::from_u32(unit).expect("lone low surrogate")),
            (Some(_), _) => panic!("lone high surrogate in {s:?}"),
        }
    }
}

/// The messages of an `a[...]` frame (a JSON array of strings).
fn frame_messages(frame: &str) -> Vec<String> {
    let mut rest = frame
        .strip_prefix("a[")
        .unwrap_or_else(|| panic!("not a message frame: {frame:?}"));
    let mut messages = Vec::new();
    loop {
        let (message, after) = decode_string(rest);
        messages.push(message);
        match after.as_bytes().first() {
            Some(b',') => rest = &after[1..],
            Some(b']') if after.len() == 1 => return messages,
            _ => panic!("bad frame {frame:?}"),
        }
    }
}

/// Cuts the complete `<script>` elements off the front of `body` the way a browser's
/// HTML parser does (a script element ends at the first `</script`, any case), checks
/// each is exactly `<script>\np("…");\n</script>\r\n` with no `</script` or `<!--`
/// inside the literal, and returns the frames (the decoded literals). An incomplete
/// element stays in `body`.
fn take_frames(body: &mut Vec<u8>) -> Vec<String> {
    let mut frames = Vec::new();
    loop {
        let text = std::str::from_utf8(body).expect("utf-8 body");
        let Some(after_open) = text.strip_prefix("<script>") else {
            assert!(
                "<script>".starts_with(text),
                "not a script element: {text:?}"
            );
            return frames;
        };
        let lower = after_open.to_ascii_lowercase();
        let Some(end) = lower.find("</script") else {
            return frames;
        };
        let script = &after_open[..end];
        let after_close = &after_open[end..];
        if after_close.len() < "</script>\r\n".len() {
            return frames;
        }
        assert!(
            after_close.starts_with("</script>\r\n"),
            "the script ended early: {text:?}"
        );
        assert!(
            !script.contains("<!--"),
            "an HTML comment opener in {script:?}"
        );
        let literal = script
            .strip_prefix("\np(")
            .and_then(|s| s.strip_suffix(");\n"))
            .unwrap_or_else(|| panic!("the script is not one p(\"…\") call: {script:?}"));
        let (frame, rest) = decode_string(literal);
        assert!(rest.is_empty(), "more than one literal in {script:?}");
        frames.push(frame);
        let used = "<script>".len() + end + "</script>\r\n".len();
        body.drain(..used);
    }
}

/// Opens `htmlfile?c=callback` on `session_path`, checks its head and prelude, and
/// returns the stream, positioned at the first frame.
fn open_htmlfile(addr: SocketAddr, session_path: &str, callback: &str) -> TcpStream {
    let mut stream = raw_connect(addr);
    send(
        &mut stream,
        "GET",
        &format!("{session_path}/htmlfile?c={callback}"),
        "",
    );
    let head = read_head(&mut stream);
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(
        header(&head, "Content-Type"),
        Some("text/html; charset=UTF-8")
    );
    assert_eq!(header(&head, "Transfer-Encoding"), Some("chunked"));
    let prelude = String::from_utf8(read_chunk(&mut stream).expect("prelude")).expect("utf-8");
    assert!(
        prelude.contains(&format!("    var c = parent.{callback};\n")),
        "{prelude}"
    );
    assert!(prelude.len() > 1024 && prelude.ends_with("\r\n\r\n"));
    stream
}

/// Reads frames from an open htmlfile response until `want` messages arrived (or a
/// close frame, or the end); returns the messages and the close frame if any.
fn read_messages(stream: &mut TcpStream, want: usize) -> (Vec<String>, Option<String>) {
    let mut body = Vec::new();
    let mut messages = Vec::new();
    let mut opened = false;
    while messages.len() < want {
        let Some(chunk) = read_chunk(stream) else {
            panic!("the response ended after {messages:?}");
        };
        body.extend_from_slice(&chunk);
        for frame in take_frames(&mut body) {
            match frame.as_str() {
                "o" => {
                    assert!(!opened, "two open frames");
                    opened = true;
                }
                "h" => {}
                f if f.starts_with("c[") => return (messages, Some(frame)),
                f => {
                    assert!(opened, "a message before the open frame: {f}");
                    messages.extend(frame_messages(f));
                }
            }
        }
    }
    assert!(body.is_empty(), "trailing bytes: {body:?}");
    (messages, None)
}

fn expected() -> Vec<String> {
    vec!["before".to_owned(), HOSTILE.to_owned(), "after".to_owned()]
}

/// Posts `body` to the session's `xhr_send` (its own connection): 204.
fn xhr_send(addr: SocketAddr, session_path: &str, body: &str) {
    let (head, _) = call(addr, "POST", &format!("{session_path}/xhr_send"), body);
    assert_eq!(status(&head), 204, "{head}");
}

#[test]
fn htmlfile_carries_script_closing_text_intact_and_in_order() {
    let server = server();
    let addr = server.local_addr();
    for service in ["/echo", "/old"] {
        let session = format!("{service}/000/{}", sid("html"));
        let mut stream = open_htmlfile(addr, &session, "callback");
        // One message per send: three frames (or fewer, if batched), in order.
        for message in expected() {
            xhr_send(addr, &session, &format!("[{}]", quote(&message)));
        }
        let (messages, close) = read_messages(&mut stream, 3);
        assert_eq!(close, None);
        assert_eq!(messages, expected(), "{service}");
    }
}

#[test]
fn iframe_htmlfile_carries_script_closing_text_intact_and_in_order() {
    let server = server();
    let addr = server.local_addr();
    // The iframe page (served by the service, loading the configured sockjs-client)...
    let (head, page) = call(addr, "GET", "/local/iframe-1.6.1.html", "");
    assert_eq!(status(&head), 200, "{head}");
    let page = String::from_utf8(page).expect("utf-8");
    assert!(
        page.contains(&format!("<script src=\"{LOCAL_URL}\"></script>")),
        "{page}"
    );
    // ...whose sockjs-client opens `htmlfile` with a callback on its `_jp` object.
    let session = format!("/local/a1b/{}", sid("iframe"));
    let mut stream = open_htmlfile(addr, &session, "_jp.a1b2c3d");
    // All three in one send: one frame of three messages.
    xhr_send(
        addr,
        &session,
        &format!(r#"["before","{}","after"]"#, HOSTILE),
    );
    let (messages, close) = read_messages(&mut stream, 3);
    assert_eq!(close, None);
    assert_eq!(messages, expected());
}

#[test]
fn htmlfile_close_reason_stays_inside_its_script() {
    let server = server();
    let addr = server.local_addr();
    let session = format!("/closer/000/{}", sid("closer"));
    let mut stream = open_htmlfile(addr, &session, "cb");
    let (messages, close) = read_messages(&mut stream, 1);
    assert!(messages.is_empty(), "{messages:?}");
    let expected = format!("c[3000,{}]", quote(CLOSE_REASON));
    assert_eq!(close.as_deref(), Some(expected.as_str()));
    assert_eq!(
        read_chunk(&mut stream),
        None,
        "the response ends at the close"
    );
}

#[test]
fn bad_callbacks_get_sockjs_nodes_500_and_errors_echo_nothing() {
    let server = server();
    let addr = server.local_addr();
    for transport in ["htmlfile", "jsonp"] {
        for service in ["/echo", "/old"] {
            let path = format!("{service}/000/{}/{transport}", sid("cb"));
            let (head, body) = call(addr, "GET", &path, "");
            assert_eq!(status(&head), 500, "{head}");
            assert_eq!(body, b"\"callback\" parameter required");
            for callback in [
                "a%3C%2Fscript%3E",
                "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                "a%22",
                "a%27",
                "a;alert(1)",
                "x%0Ay",
                "%C3%A9",
                "",
            ] {
                let (head, body) = call(addr, "GET", &format!("{path}?c={callback}"), "");
                assert_eq!(status(&head), 500, "{callback}: {head}");
                assert_eq!(
                    header(&head, "Content-Type"),
                    Some("text/plain; charset=UTF-8"),
                    "{head}"
                );
                assert_eq!(body, b"invalid \"callback\" parameter", "{callback}");
            }
        }
    }
    // A 404 and a 405 do not echo the path.
    let (head, body) = call(addr, "GET", "/echo/%3Cscript%3E/x/y/z", "");
    assert_eq!(status(&head), 404, "{head}");
    assert_eq!(
        header(&head, "Content-Type"),
        Some("text/plain; charset=UTF-8")
    );
    assert_eq!(body, b"404 Error: Page not found\n");
    let (head, body) = call(addr, "DELETE", "/echo/0/%3Cscript%3E/xhr", "");
    assert_eq!(status(&head), 405, "{head}");
    assert!(body.is_empty());
}

#[test]
fn iframe_page_has_the_configured_url_escaped_and_its_own_etag() {
    let server = server();
    let addr = server.local_addr();
    let mut etags = Vec::new();
    for service in ["/echo", "/local", "/hostile_url"] {
        let (head, page) = call(addr, "GET", &format!("{service}/iframe.html"), "");
        assert_eq!(status(&head), 200, "{head}");
        let page = String::from_utf8(page).expect("utf-8");
        assert_eq!(page.matches("<script").count(), 2, "{page}");
        etags.push(header(&head, "ETag").expect("etag").to_owned());
        if service == "/hostile_url" {
            assert!(
                page.contains(
                    "<script src=\"/s.js?a=1&amp;b=&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\"></script>"
                ),
                "{page}"
            );
        }
    }
    assert_ne!(etags[0], etags[1]);
    assert_ne!(etags[1], etags[2]);
    assert_ne!(etags[0], etags[2]);
}
