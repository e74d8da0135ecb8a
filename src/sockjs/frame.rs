//! SockJS frames (`o`, `h`, `a[...]`, `c[...]`), SockJS's JSON string escaping, and the
//! parsing of what clients send (JSON arrays of strings, form-encoded or raw).
//!
//! Client messages are parsed by a small strict JSON reader written for this job
//! instead of simd-json or serde_json: a client frame is an array of strings, the
//! reader decodes each string straight into the `String` handed to the user, keeps any
//! non-string element as its JSON text, turns lone UTF-16 surrogates (`"\ud800"`,
//! which browsers may send and serde_json rejects) into U+FFFD, and adds no dependency.

use crate::http::hex_value;

/// The open frame.
pub const OPEN_FRAME: &[u8] = b"o";
/// The heartbeat frame.
pub const HEARTBEAT_FRAME: &[u8] = b"h";

/// Why a client's send request or WebSocket message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// No body, an empty `d` form field, or JSON that is not an array:
    /// 500 `Payload expected.`.
    PayloadExpected,
    /// Invalid JSON (or invalid UTF-8): 500 `Broken JSON encoding.`.
    BrokenJson,
}

impl ParseError {
    /// The 500 response body text sockjs-node sends for this error.
    pub fn message(self) -> &'static str {
        match self {
            ParseError::PayloadExpected => "Payload expected.",
            ParseError::BrokenJson => "Broken JSON encoding.",
        }
    }
}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ParseError {}

/// True for the characters SockJS escapes as `\uXXXX` beyond plain JSON: the ranges
/// U+200C–U+200F, U+2028–U+202F, U+2060–U+206F and U+FFF0–U+FFFF, which browsers
/// mangle or drop.
fn sockjs_escaped(c: char) -> bool {
    matches!(c as u32, 0x200c..=0x200f | 0x2028..=0x202f | 0x2060..=0x206f | 0xfff0..=0xffff)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_u_escape(out: &mut Vec<u8>, unit: u32) {
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[((unit >> shift) & 0xf) as usize]);
    }
}

/// Appends `s` as a JSON string literal with SockJS's escaping: `"` and `\`, the
/// control characters as `JSON.stringify` writes them (`\n`, `\u0000`...), and the
/// ranges of [`quote`]'s documentation as lowercase `\uXXXX`.
pub fn quote_into(out: &mut Vec<u8>, s: &str) {
    quote_escaped(out, s, false);
}

/// [`quote_into`] for a string literal written inside an HTML `<script>` element (the
/// `htmlfile` transport): `<` is also written as `\u003c`, so no `</script>` or
/// `<!--` can appear in the literal and end the script or change how the HTML parser
/// reads it. The JavaScript (and JSON) value is unchanged: `\u003c` decodes to `<`.
/// U+2028 and U+2029, line terminators in older JavaScript, are escaped by both.
pub fn quote_into_script(out: &mut Vec<u8>, s: &str) {
    quote_escaped(out, s, true);
}

/// The one quoting loop: escapes are written while copying, no intermediate string.
fn quote_escaped(out: &mut Vec<u8>, s: &str, script: bool) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape: Option<&[u8]> = match c {
            '"' => Some(b"\\\""),
            '\\' => Some(b"\\\\"),
            '\n' => Some(b"\\n"),
            '\r' => Some(b"\\r"),
            '\t' => Some(b"\\t"),
            '\u{8}' => Some(b"\\b"),
            '\u{c}' => Some(b"\\f"),
            '<' if script => Some(b"\\u003c"),
            _ => None,
        };
        if let Some(esc) = escape {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(esc);
            start = i + c.len_utf8();
        } else if (c as u32) < 0x20 || sockjs_escaped(c) {
            out.extend_from_slice(&bytes[start..i]);
            push_u_escape(out, c as u32);
            start = i + c.len_utf8();
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `s` as a SockJS-escaped JSON string literal (see [`quote_into`]).
///
/// Escaped: `"`, `\`, U+0000–U+001F, U+200C–U+200F, U+2028–U+202F, U+2060–U+206F and
/// U+FFF0–U+FFFF (lone surrogates cannot occur in a Rust string).
#[cfg(any(test, feature = "fuzzing"))]
pub fn quote(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    quote_into(&mut out, s);
    // Only ASCII escapes were added to valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the message frame `a[...]` of already quoted, comma-separated messages.
pub fn write_array_frame(out: &mut Vec<u8>, quoted_joined: &[u8]) {
    out.extend_from_slice(b"a[");
    out.extend_from_slice(quoted_joined);
    out.push(b']');
}

/// Appends the message frame `a[...]` of `messages`.
#[cfg(test)]
pub fn write_messages_frame<S: AsRef<str>>(out: &mut Vec<u8>, messages: &[S]) {
    out.extend_from_slice(b"a[");
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        quote_into(out, m.as_ref());
    }
    out.push(b']');
}

/// Appends the close frame `c[code,"reason"]`.
pub fn write_close_frame(out: &mut Vec<u8>, code: u16, reason: &str) {
    out.extend_from_slice(b"c[");
    out.extend_from_slice(code.to_string().as_bytes());
    out.push(b',');
    quote_into(out, reason);
    out.push(b']');
}

/// Parses an `xhr_send` body (or a `text/plain` `jsonp_send` body): a JSON array whose
/// elements become messages. Strings are decoded; any other element is kept as its
/// JSON text (`[1]` gives `"1"`).
///
/// Errors as sockjs-node: an empty body, or valid JSON that is not an array, is
/// [`ParseError::PayloadExpected`]; invalid JSON or UTF-8 is [`ParseError::BrokenJson`].
pub fn parse_client_messages(body: &[u8]) -> Result<Vec<String>, ParseError> {
    if body.is_empty() {
        return Err(ParseError::PayloadExpected);
    }
    let text = core::str::from_utf8(body).map_err(|_| ParseError::BrokenJson)?;
    match parse_document(text)? {
        Document::Array(messages) => Ok(messages),
        Document::Other { .. } => Err(ParseError::PayloadExpected),
    }
}

/// Parses a `jsonp_send` body given its `Content-Type` (`None` when absent), as
/// sockjs-node: `application/x-www-form-urlencoded` takes the `d` field
/// (percent and `+` decoding), `text/plain` or no type takes the raw body; any
/// other type is [`ParseError::PayloadExpected`]. The JSON is then read as
/// [`parse_client_messages`] does.
pub fn parse_jsonp_send(
    body: &[u8],
    content_type: Option<&str>,
) -> Result<Vec<String>, ParseError> {
    let media = content_type.unwrap_or("").split(';').next().unwrap_or("");
    match media {
        "application/x-www-form-urlencoded" => {
            let mut d = None;
            for pair in body.split(|&b| b == b'&') {
                let (name, value) = match pair.iter().position(|&b| b == b'=') {
                    Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                    None => (pair, &pair[pair.len()..]),
                };
                if form_decode(name) == b"d" {
                    d = Some(form_decode(value));
                    break;
                }
            }
            match d {
                Some(value) if !value.is_empty() => parse_client_messages(&value),
                _ => Err(ParseError::PayloadExpected),
            }
        }
        "text/plain" | "" => parse_client_messages(body),
        _ => Err(ParseError::PayloadExpected),
    }
}

/// Parses one text message received on the `websocket` transport: a JSON array of
/// messages, or a single JSON value (one message). An empty message gives no
/// messages, as does `[]`. On error the server closes the WebSocket with
/// [`Flavour::broken_framing_close`](super::Flavour::broken_framing_close).
pub fn parse_websocket_message(payload: &str) -> Result<Vec<String>, ParseError> {
    if payload.is_empty() {
        return Ok(Vec::new());
    }
    match parse_document(payload)? {
        Document::Array(messages) => Ok(messages),
        Document::Other { string: Some(s) } => Ok(vec![s]),
        Document::Other { string: None } => Ok(vec![payload.trim_matches(is_ws).to_owned()]),
    }
}

/// Decodes `application/x-www-form-urlencoded` bytes: `+` is a space, `%XX` a byte;
/// a malformed `%` sequence is kept as is (as Node's `querystring`).
pub(crate) fn form_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                input.get(i + 1).copied().and_then(hex_value),
                input.get(i + 2).copied().and_then(hex_value),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

enum Document {
    Array(Vec<String>),
    Other { string: Option<String> },
}

/// Nesting deeper than this is refused as broken JSON (bounded recursion).
const MAX_DEPTH: usize = 64;

fn parse_document(text: &str) -> Result<Document, ParseError> {
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
    };
    p.skip_ws();
    let doc = if p.peek() == Some(b'[') {
        p.pos += 1;
        let mut messages = Vec::new();
        p.skip_ws();
        if p.peek() == Some(b']') {
            p.pos += 1;
        } else {
            loop {
                p.skip_ws();
                if p.peek() == Some(b'"') {
                    messages.push(p.string()?);
                } else {
                    let start = p.pos;
                    p.value(1)?;
                    messages.push(text.get(start..p.pos).unwrap_or("").to_owned());
                }
                p.skip_ws();
                match p.next() {
                    Some(b',') => continue,
                    Some(b']') => break,
                    _ => return Err(ParseError::BrokenJson),
                }
            }
        }
        Document::Array(messages)
    } else if p.peek() == Some(b'"') {
        Document::Other {
            string: Some(p.string()?),
        }
    } else {
        p.value(0)?;
        Document::Other { string: None }
    };
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(ParseError::BrokenJson);
    }
    Ok(doc)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), ParseError> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(ParseError::BrokenJson)
        }
    }

    /// Validates any JSON value at the cursor.
    fn value(&mut self, depth: usize) -> Result<(), ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::BrokenJson);
        }
        self.skip_ws();
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(open @ (b'[' | b'{')) => {
                self.pos += 1;
                let close = if open == b'[' { b']' } else { b'}' };
                self.skip_ws();
                if self.peek() == Some(close) {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.skip_ws();
                    if open == b'{' {
                        if self.peek() != Some(b'"') {
                            return Err(ParseError::BrokenJson);
                        }
                        self.string()?;
                        self.skip_ws();
                        if self.next() != Some(b':') {
                            return Err(ParseError::BrokenJson);
                        }
                    }
                    self.value(depth + 1)?;
                    self.skip_ws();
                    match self.next() {
                        Some(b',') => continue,
                        Some(c) if c == close => return Ok(()),
                        _ => return Err(ParseError::BrokenJson),
                    }
                }
            }
            _ => Err(ParseError::BrokenJson),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<(), ParseError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(ParseError::BrokenJson),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(ParseError::BrokenJson);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(ParseError::BrokenJson);
            }
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = self
                .next()
                .and_then(hex_value)
                .ok_or(ParseError::BrokenJson)?;
            v = v << 4 | u32::from(d);
        }
        Ok(v)
    }

    /// Decodes the JSON string at the cursor (which is on its opening quote).
    fn string(&mut self) -> Result<String, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // The input is a &str and we stopped on ASCII bytes: a char boundary.
            let run = core::str::from_utf8(&self.s[start..self.pos])
                .map_err(|_| ParseError::BrokenJson)?;
            out.push_str(run);
            match self.next() {
                Some(b'"') => return Ok(out),
                Some(b'\\') => {
                    let c = match self.next() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => self.unicode_escape()?,
                        _ => return Err(ParseError::BrokenJson),
                    };
                    out.push(c);
                }
                _ => return Err(ParseError::BrokenJson),
            }
        }
    }

    /// After `\u`: one escape, or a surrogate pair; a lone surrogate gives U+FFFD.
    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let unit = self.hex4()?;
        match unit {
            0xd800..=0xdbff => {
                if self.s[self.pos..].starts_with(b"\\u") {
                    let save = self.pos;
                    self.pos += 2;
                    let low = self.hex4()?;
                    if (0xdc00..=0xdfff).contains(&low) {
                        let c = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                        return Ok(char::from_u32(c).unwrap_or('\u{fffd}'));
                    }
                    self.pos = save;
                }
                Ok('\u{fffd}')
            }
            _ => Ok(char::from_u32(unit).unwrap_or('\u{fffd}')),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(s: &str) -> String {
        quote(s)
    }

    #[test]
    fn quote_plain_and_json_escapes() {
        assert_eq!(quoted("a"), r#""a""#);
        assert_eq!(quoted("  \u{0}\n\r "), r#""  \u0000\n\r ""#);
        assert_eq!(
            quoted("\u{1f}\u{7f}\u{8}\u{c}\t"),
            "\"\\u001f\u{7f}\\b\\f\\t\""
        );
        assert_eq!(quoted("\\\""), r#""\\\"""#);
        assert_eq!(quoted("é😀"), "\"é😀\"");
    }

    /// The suite's `JSONEncoding.test_xhr_server_encodes`: every char in
    /// 255..65536 matching `escapable_by_server` comes back as lowercase `\uXXXX`.
    #[test]
    fn quote_matches_suite_server_killer_string() {
        let escapable = |u: u32| matches!(u, 0x00..=0x1f | 0x200c..=0x200f | 0x2028..=0x202f | 0x2060..=0x206f | 0xfff0..=0xffff);
        let mut input = String::new();
        let mut expected = String::from("\"");
        for u in 255u32..65536 {
            if escapable(u) {
                if let Some(c) = char::from_u32(u) {
                    input.push(c);
                    expected.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
        expected.push('"');
        assert_eq!(quoted(&input), expected);
        // And nothing else in the BMP is escaped beyond plain JSON.
        for u in 0x20u32..0x10000 {
            let Some(c) = char::from_u32(u) else { continue };
            let q = quoted(&c.to_string());
            let plain = !escapable(u) && c != '"' && c != '\\';
            assert_eq!(q == format!("\"{c}\""), plain, "U+{u:04X}");
        }
    }

    /// Inside an HTML `<script>` (htmlfile) every `<` is `\u003c`, so neither
    /// `</script>` nor `<!--` appears; the value decodes back unchanged; the plain
    /// quoting (xhr, eventsource, websocket, jsonp) keeps `<` as is.
    #[test]
    fn quote_for_script_escapes_every_less_than() {
        let hostile = "x</script><script>alert(1)</script><!--y\u{2028}\u{2029}</SCRIPT ";
        let mut out = Vec::new();
        quote_into_script(&mut out, hostile);
        assert_eq!(
            out,
            br#""x\u003c/script>\u003cscript>alert(1)\u003c/script>\u003c!--y\u2028\u2029\u003c/SCRIPT ""#
        );
        assert!(!out.contains(&b'<'));
        let mut doc = b"[".to_vec();
        doc.extend_from_slice(&out);
        doc.push(b']');
        assert_eq!(parse_client_messages(&doc), Ok(vec![hostile.to_owned()]));
        // A whole frame quoted twice (htmlfile's p("a[...]")) decodes back to the frame.
        let mut frame = Vec::new();
        write_messages_frame(&mut frame, &[hostile]);
        let frame = String::from_utf8(frame).unwrap();
        let mut twice = b"[".to_vec();
        quote_into_script(&mut twice, &frame);
        twice.push(b']');
        assert!(!twice.contains(&b'<'));
        assert_eq!(parse_client_messages(&twice), Ok(vec![frame]));
        // Plain quoting is unchanged: `<` stays, U+2028/2029 are escaped.
        assert_eq!(quoted("a</script>"), r#""a</script>""#);
        assert_eq!(quoted("\u{2028}\u{2029}"), r#""\u2028\u2029""#);
    }

    #[test]
    fn frames() {
        let mut out = Vec::new();
        write_messages_frame(&mut out, &["a"]);
        assert_eq!(out, br#"a["a"]"#);
        out.clear();
        write_close_frame(&mut out, 2010, "Another connection still open");
        assert_eq!(out, br#"c[2010,"Another connection still open"]"#);
        out.clear();
        write_array_frame(&mut out, br#""x","y""#);
        assert_eq!(out, br#"a["x","y"]"#);
    }

    #[test]
    fn xhr_send_bodies_from_the_suite() {
        assert_eq!(parse_client_messages(br#"["a"]"#), Ok(vec!["a".to_owned()]));
        assert_eq!(
            parse_client_messages(b" [ \"a\" , \"b\" ] \n"),
            Ok(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            parse_client_messages(br#"["x"#),
            Err(ParseError::BrokenJson)
        );
        assert_eq!(parse_client_messages(b""), Err(ParseError::PayloadExpected));
        assert_eq!(parse_client_messages(b"[]"), Ok(vec![]));
        assert_eq!(
            parse_client_messages(br#""a""#),
            Err(ParseError::PayloadExpected)
        );
        assert_eq!(
            parse_client_messages(b"{}"),
            Err(ParseError::PayloadExpected)
        );
        assert_eq!(
            parse_client_messages(b"null"),
            Err(ParseError::PayloadExpected)
        );
        assert_eq!(parse_client_messages(b"[1,"), Err(ParseError::BrokenJson));
        assert_eq!(parse_client_messages(b"[1] x"), Err(ParseError::BrokenJson));
        assert_eq!(parse_client_messages(b"\xff"), Err(ParseError::BrokenJson));
        assert_eq!(
            parse_client_messages(br#"[1, -2.5e3, true, null, {"a":[1]}]"#),
            Ok(vec![
                "1".into(),
                "-2.5e3".into(),
                "true".into(),
                "null".into(),
                r#"{"a":[1]}"#.into()
            ])
        );
        assert_eq!(parse_client_messages(b"[01]"), Err(ParseError::BrokenJson));
        assert_eq!(
            parse_client_messages(b"[\"a\nb\"]"),
            Err(ParseError::BrokenJson)
        );
        let deep = "[".repeat(10_000);
        assert_eq!(
            parse_client_messages(deep.as_bytes()),
            Err(ParseError::BrokenJson)
        );
    }

    #[test]
    fn string_escapes_and_surrogates() {
        let m =
            parse_client_messages(br#"["\"\\\/\b\f\n\r\t\u0041\u00e9\ud83d\ude00\ud800x\udc00"]"#)
                .unwrap();
        assert_eq!(
            m,
            vec!["\"\\/\u{8}\u{c}\n\r\tAé😀\u{fffd}x\u{fffd}".to_owned()]
        );
        assert_eq!(
            parse_client_messages(br#"["\u12"]"#),
            Err(ParseError::BrokenJson)
        );
        assert_eq!(
            parse_client_messages(br#"["\q"]"#),
            Err(ParseError::BrokenJson)
        );
        // A lone high surrogate followed by another escape keeps the escape.
        assert_eq!(
            parse_client_messages(br#"["\ud800\u0041"]"#),
            Ok(vec!["\u{fffd}A".into()])
        );
    }

    /// The suite's `test_xhr_server_decodes`: every escaped char the client may send
    /// decodes and comes back equal.
    #[test]
    fn client_escapes_round_trip() {
        let mut body = String::from("[\"");
        let mut expected = String::new();
        for u in (0u32..0xd800).chain(0xe000..0x10000) {
            body.push_str(&format!("\\u{u:04x}"));
            expected.push(char::from_u32(u).unwrap_or('\u{fffd}'));
        }
        body.push_str("\"]");
        let m = parse_client_messages(body.as_bytes()).unwrap();
        assert_eq!(m, vec![expected.clone()]);
        let mut frame = Vec::new();
        write_messages_frame(&mut frame, &m);
        let back = parse_client_messages(&frame[1..]).unwrap();
        assert_eq!(back, vec![expected]);
    }

    #[test]
    fn jsonp_send_bodies_from_the_suite() {
        let form = Some("application/x-www-form-urlencoded");
        assert_eq!(
            parse_jsonp_send(b"d=%5B%22x%22%5D", form),
            Ok(vec!["x".into()])
        );
        assert_eq!(
            parse_jsonp_send(b"d=%5B%22x", form),
            Err(ParseError::BrokenJson)
        );
        for data in [&b""[..], b"d=", b"p=p"] {
            assert_eq!(
                parse_jsonp_send(data, form),
                Err(ParseError::PayloadExpected)
            );
        }
        assert_eq!(parse_jsonp_send(b"d=%5B%5D", form), Ok(vec![]));
        assert_eq!(
            parse_jsonp_send(b"d=%5B%22abc%22%5D", form),
            Ok(vec!["abc".into()])
        );
        assert_eq!(
            parse_jsonp_send(br#"["%61bc"]"#, Some("text/plain")),
            Ok(vec!["%61bc".into()])
        );
        assert_eq!(parse_jsonp_send(br#"["a"]"#, None), Ok(vec!["a".into()]));
        assert_eq!(
            parse_jsonp_send(br#"["a"]"#, Some("text/plain; charset=UTF-8")),
            Ok(vec!["a".into()])
        );
        assert_eq!(
            parse_jsonp_send(br#"["a"]"#, Some("application/json")),
            Err(ParseError::PayloadExpected)
        );
        assert_eq!(
            parse_jsonp_send(b"x=1&d=%5B%22a+b%22%5D", form),
            Ok(vec!["a b".into()])
        );
        assert_eq!(
            parse_jsonp_send(b"d=%5B%22%zz%22%5D", form),
            Ok(vec!["%zz".into()])
        );
        assert_eq!(
            parse_jsonp_send(b"d=%5B%22%4", form),
            Err(ParseError::BrokenJson)
        );
    }

    #[test]
    fn websocket_messages_from_the_suite() {
        assert_eq!(parse_websocket_message(r#"["a"]"#), Ok(vec!["a".into()]));
        assert_eq!(parse_websocket_message(""), Ok(vec![]));
        assert_eq!(parse_websocket_message("[]"), Ok(vec![]));
        assert_eq!(parse_websocket_message(r#""a""#), Ok(vec!["a".into()]));
        assert_eq!(parse_websocket_message(" 12 "), Ok(vec!["12".into()]));
        assert_eq!(
            parse_websocket_message(r#"["a"#),
            Err(ParseError::BrokenJson)
        );
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode(b"a+b%20c%2"), b"a b c%2");
        assert_eq!(form_decode(b"%"), b"%");
        assert_eq!(form_decode(b"%41%4a%4A"), b"AJJ");
    }
}
