//! Receiving requests: the response head and prelude of each transport, the encoding
//! of one SockJS frame for it, chunking, and when the response must end.

use super::frame::{quote_into, quote_into_script};
use super::options::{Flavour, SockJsOptions};
use super::pages::{
    header, status_line, write_cookie_header, write_cors_headers, write_eventsource_cors,
    write_no_cache_header,
};
use super::path::{query_param, TransportKind};
use crate::http::Request;

/// The prelude of `xhr_streaming`: 2048 `h` then `\n` (for IE's XHR).
const XHR_PRELUDE_LEN: usize = 2048;

/// The htmlfile page before its frames; `{{ callback }}` is replaced by the callback.
const HTMLFILE_TEMPLATE: &str = "<!doctype html>\n<html><head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n</head><body><h2>Don't panic!</h2>\n  <script>\n    document.domain = document.domain;\n    var c = parent.{{ callback }};\n    c.start();\n    function p(d) {c.message(d);};\n    window.onload = function() {c.stop();};\n  </script>";

/// How a receiving request gets its frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverKind {
    /// `xhr`: one frame per response, `frame\n`.
    XhrPolling,
    /// `xhr_streaming`: 2 KiB prelude, then `frame\n` each.
    XhrStreaming,
    /// `eventsource`: `\r\n` prelude, then `data: frame\r\n\r\n` each.
    EventSource,
    /// `htmlfile`: a padded HTML prelude, then `<script>\np("frame");\n</script>\r\n`
    /// (the frame quoted by [`quote_into_script`](super::quote_into_script): `<` is
    /// `\u003c`).
    HtmlFile {
        /// The validated JavaScript callback name.
        callback: String,
    },
    /// `jsonp`: one frame per response, `/**/callback("frame");\r\n` (no `/**/` in 0.3.3).
    Jsonp {
        /// The validated JavaScript callback name.
        callback: String,
    },
    /// `websocket`: each frame is one text message, no HTTP response.
    WebSocket,
}

/// Why a `jsonp` / `htmlfile` request was refused (500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackError {
    /// Neither `c` nor `callback` in the query: `"callback" parameter required`.
    Missing,
    /// Empty, a character outside `[a-zA-Z0-9-_.]` (or, for current jsonp, more than
    /// 32 characters): `invalid "callback" parameter`. The name is written into
    /// JavaScript (and, for `htmlfile`, into an HTML page), so nothing else may pass.
    Invalid,
}

impl CallbackError {
    /// The 500 body text.
    pub fn message(self) -> &'static str {
        match self {
            CallbackError::Missing => "\"callback\" parameter required",
            CallbackError::Invalid => "invalid \"callback\" parameter",
        }
    }
}

impl ReceiverKind {
    /// The kind for a receiving transport's request; `jsonp` and `htmlfile` take their
    /// callback from the `c` (or `callback`) query parameter and validate it.
    /// `None`-like misuse (a send transport) gives `Ok(None)`.
    pub fn from_request(
        transport: TransportKind,
        request: &Request<'_>,
        options: &SockJsOptions,
    ) -> Result<Option<ReceiverKind>, CallbackError> {
        Ok(Some(match transport {
            TransportKind::Xhr => ReceiverKind::XhrPolling,
            TransportKind::XhrStreaming => ReceiverKind::XhrStreaming,
            TransportKind::EventSource => ReceiverKind::EventSource,
            TransportKind::WebSocket => ReceiverKind::WebSocket,
            TransportKind::HtmlFile => ReceiverKind::HtmlFile {
                callback: callback(request, usize::MAX)?,
            },
            TransportKind::Jsonp => {
                let max = match options.flavour {
                    Flavour::Current => 32,
                    Flavour::V0_3_3 => usize::MAX,
                };
                ReceiverKind::Jsonp {
                    callback: callback(request, max)?,
                }
            }
            TransportKind::XhrSend | TransportKind::JsonpSend => return Ok(None),
        }))
    }

    /// Polling kinds end their response after one frame.
    pub fn is_polling(&self) -> bool {
        matches!(self, ReceiverKind::XhrPolling | ReceiverKind::Jsonp { .. })
    }
}

fn callback(request: &Request<'_>, max_len: usize) -> Result<String, CallbackError> {
    let query = request.query();
    let cb = query_param(query, "c")
        .or_else(|| query_param(query, "callback"))
        .ok_or(CallbackError::Missing)?;
    if !valid_callback(&cb) || cb.len() > max_len {
        return Err(CallbackError::Invalid);
    }
    Ok(cb)
}

/// The callback check, `/^[a-zA-Z0-9-_.]+$/`: a name of ASCII letters, digits, `-`,
/// `_` and `.`, which can neither leave the JavaScript expression it is written into
/// (`parent.NAME`, `NAME("frame")`) nor the `<script>`. sockjs-node refuses the same
/// characters (`/[^a-zA-Z0-9-_.]/`) but lets an empty name through; here it is
/// refused too (it could only give broken JavaScript).
fn valid_callback(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A refused callback: 500 with the error text, cookie and no-cache headers.
pub fn write_callback_error(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    options: &SockJsOptions,
    error: CallbackError,
    close: bool,
) {
    super::pages::write_500(out, request, options, false, error.message(), close);
}

/// Appends one frame encoded for `kind`, without HTTP chunking, and returns the bytes
/// that count toward the response limit (all of them).
pub fn encode_transport_frame(
    out: &mut Vec<u8>,
    kind: &ReceiverKind,
    flavour: Flavour,
    frame: &[u8],
) -> usize {
    let start = out.len();
    match kind {
        ReceiverKind::XhrPolling | ReceiverKind::XhrStreaming => {
            out.extend_from_slice(frame);
            out.push(b'\n');
        }
        ReceiverKind::EventSource => {
            out.extend_from_slice(b"data: ");
            for &b in frame {
                match b {
                    b'%' => out.extend_from_slice(b"%25"),
                    b'\r' => out.extend_from_slice(b"%0D"),
                    b'\n' => out.extend_from_slice(b"%0A"),
                    0 => out.extend_from_slice(b"%00"),
                    b => out.push(b),
                }
            }
            out.extend_from_slice(b"\r\n\r\n");
        }
        ReceiverKind::HtmlFile { .. } => {
            // The frame is a string literal inside an HTML <script>: `<` is escaped
            // (`\u003c`) so message text cannot end the script (`</script>`) or open
            // an HTML comment (`<!--`).
            out.extend_from_slice(b"<script>\np(");
            quote_into_script(out, &String::from_utf8_lossy(frame));
            out.extend_from_slice(b");\n</script>\r\n");
        }
        ReceiverKind::Jsonp { callback } => {
            if flavour == Flavour::Current {
                out.extend_from_slice(b"/**/");
            }
            out.extend_from_slice(callback.as_bytes());
            out.push(b'(');
            quote_into(out, &String::from_utf8_lossy(frame));
            out.extend_from_slice(b");\r\n");
        }
        ReceiverKind::WebSocket => out.extend_from_slice(frame),
    }
    out.len() - start
}

/// What the server does after a frame was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The response stays open for more frames.
    Continue,
    /// The response is complete (its end was written): detach the receiver from its
    /// session, then keep the connection alive if [`HttpReceiver::keep_alive`] says
    /// so, else close it.
    End,
}

/// The response of one receiving HTTP request (every [`ReceiverKind`] but
/// `WebSocket`): head, prelude, framed and chunked frames, the end.
#[derive(Debug, Clone)]
pub struct HttpReceiver {
    kind: ReceiverKind,
    flavour: Flavour,
    chunked: bool,
    sent: usize,
    limit: usize,
    ended: bool,
}

impl HttpReceiver {
    /// A receiver for `kind`; `http10` is an HTTP/1.0 request (no chunking: the body
    /// ends when the connection closes).
    pub fn new(kind: ReceiverKind, http10: bool, options: &SockJsOptions) -> Self {
        let websocket = kind == ReceiverKind::WebSocket;
        let limit = if kind.is_polling() {
            1
        } else if websocket {
            usize::MAX
        } else {
            options.response_limit
        };
        Self {
            kind,
            flavour: options.flavour,
            chunked: !http10 && !websocket,
            sent: 0,
            limit,
            ended: false,
        }
    }

    /// Whether the connection may serve another request after [`Flow::End`]:
    /// HTTP/1.1 (chunked) yes, HTTP/1.0 no.
    pub fn keep_alive(&self) -> bool {
        self.chunked
    }

    /// Appends the response head (status 200, the transport's content type, cookie,
    /// no-cache and CORS headers as sockjs-node, `Transfer-Encoding: chunked` or
    /// `Connection: close`) and the prelude as its own chunk.
    pub fn write_head(&self, out: &mut Vec<u8>, request: &Request<'_>, options: &SockJsOptions) {
        if self.kind == ReceiverKind::WebSocket {
            return;
        }
        status_line(out, 200);
        write_cookie_header(out, request, options);
        write_no_cache_header(out, options);
        let content_type = match (&self.kind, options.flavour) {
            (ReceiverKind::XhrPolling | ReceiverKind::XhrStreaming, _) => {
                write_cors_headers(out, request, options);
                "application/javascript; charset=UTF-8"
            }
            (ReceiverKind::EventSource, flavour) => {
                write_eventsource_cors(out, request, options);
                match flavour {
                    Flavour::Current => "text/event-stream",
                    Flavour::V0_3_3 => "text/event-stream; charset=UTF-8",
                }
            }
            (ReceiverKind::HtmlFile { .. }, _) => "text/html; charset=UTF-8",
            (ReceiverKind::Jsonp { .. }, flavour) => {
                if flavour == Flavour::Current {
                    header(out, "X-Content-Type-Options", "nosniff");
                }
                "application/javascript; charset=UTF-8"
            }
            (ReceiverKind::WebSocket, _) => "",
        };
        header(out, "Content-Type", content_type);
        if self.chunked {
            header(out, "Transfer-Encoding", "chunked");
        } else {
            header(out, "Connection", "close");
        }
        out.extend_from_slice(b"\r\n");
        let mut prelude = Vec::new();
        match &self.kind {
            ReceiverKind::XhrStreaming => {
                prelude.resize(XHR_PRELUDE_LEN, b'h');
                prelude.push(b'\n');
            }
            ReceiverKind::EventSource => prelude.extend_from_slice(b"\r\n"),
            ReceiverKind::HtmlFile { callback } => {
                prelude.extend_from_slice(
                    HTMLFILE_TEMPLATE
                        .replace("{{ callback }}", callback)
                        .as_bytes(),
                );
                // sockjs-node pads its template (measured with the placeholder) with
                // spaces to a bit over 1 KiB for Safari.
                let pad = (1024 + 13usize).saturating_sub(HTMLFILE_TEMPLATE.len());
                prelude.resize(prelude.len() + pad, b' ');
                prelude.extend_from_slice(b"\r\n\r\n");
            }
            _ => {}
        }
        self.write_chunk(out, &prelude);
    }

    fn write_chunk(&self, out: &mut Vec<u8>, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.chunked {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(data);
        }
    }

    /// Appends one SockJS frame (`o`, `h`, `a[...]`, `c[...]`) encoded for this
    /// transport, as its own chunk. Returns [`Flow::End`] (and writes the end) after a
    /// polling response's frame, when a streaming response reached the response limit,
    /// or when `frame` is a close frame. Frames after the end are ignored.
    pub fn write_frame(&mut self, out: &mut Vec<u8>, frame: &[u8]) -> Flow {
        if self.ended {
            return Flow::End;
        }
        let mut encoded = Vec::with_capacity(frame.len() + 16);
        self.sent += encode_transport_frame(&mut encoded, &self.kind, self.flavour, frame);
        self.write_chunk(out, &encoded);
        if self.sent >= self.limit || frame.first() == Some(&b'c') {
            self.write_end(out);
            return Flow::End;
        }
        Flow::Continue
    }

    /// Appends the end of the body (the last chunk `0\r\n\r\n` when chunked; nothing
    /// for HTTP/1.0, where the server closes the connection). Idempotent.
    pub fn write_end(&mut self, out: &mut Vec<u8>) {
        if !self.ended && self.chunked && self.kind != ReceiverKind::WebSocket {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        self.ended = true;
    }
}

#[cfg(test)]
mod tests {
    use super::super::pages::tests::{parse_resp, with_request};
    use super::*;

    fn dechunk(mut body: &[u8]) -> Vec<Vec<u8>> {
        let mut chunks = Vec::new();
        loop {
            let nl = body.windows(2).position(|w| w == b"\r\n").unwrap();
            let len = usize::from_str_radix(std::str::from_utf8(&body[..nl]).unwrap(), 16).unwrap();
            let data = &body[nl + 2..nl + 2 + len];
            assert_eq!(&body[nl + 2 + len..nl + 4 + len], b"\r\n");
            chunks.push(data.to_vec());
            body = &body[nl + 4 + len..];
            if len == 0 {
                assert!(body.is_empty());
                return chunks;
            }
        }
    }

    fn kind_for(
        raw: &str,
        t: TransportKind,
        o: &SockJsOptions,
    ) -> Result<Option<ReceiverKind>, CallbackError> {
        with_request(raw, |r| ReceiverKind::from_request(t, r, o))
    }

    #[test]
    fn xhr_polling_from_the_suite() {
        let o = SockJsOptions::default();
        let raw = "POST /0/0/xhr HTTP/1.1\r\nOrigin: test\r\n\r\n";
        let mut rx = HttpReceiver::new(ReceiverKind::XhrPolling, false, &o);
        let mut out = Vec::new();
        with_request(raw, |r| rx.write_head(&mut out, r, &o));
        assert_eq!(rx.write_frame(&mut out, b"o"), Flow::End);
        assert_eq!(rx.write_frame(&mut out, b"h"), Flow::End);
        let r = parse_resp(&out);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.get("content-type"),
            Some("application/javascript; charset=UTF-8")
        );
        assert_eq!(r.get("access-control-allow-origin"), Some("test"));
        assert_eq!(r.get("access-control-allow-credentials"), Some("true"));
        assert_eq!(
            r.get("cache-control"),
            Some("no-store, no-cache, no-transform, must-revalidate, max-age=0")
        );
        assert_eq!(r.get("transfer-encoding"), Some("chunked"));
        assert_eq!(r.get("content-length"), None);
        assert_eq!(dechunk(&r.body), vec![b"o\n".to_vec(), vec![]]);
        assert!(rx.keep_alive());
    }

    #[test]
    fn xhr_streaming_response_limit_from_the_suite() {
        let o = SockJsOptions::default().response_limit(4096);
        let mut rx = HttpReceiver::new(ReceiverKind::XhrStreaming, false, &o);
        let mut out = Vec::new();
        with_request("POST /0/0/xhr_streaming HTTP/1.1\r\n\r\n", |r| {
            rx.write_head(&mut out, r, &o)
        });
        assert_eq!(rx.write_frame(&mut out, b"o"), Flow::Continue);
        let msg = format!("a[\"{}\"]", "x".repeat(128));
        for _ in 0..30 {
            assert_eq!(rx.write_frame(&mut out, msg.as_bytes()), Flow::Continue);
        }
        assert_eq!(rx.write_frame(&mut out, msg.as_bytes()), Flow::End);
        let r = parse_resp(&out);
        let chunks = dechunk(&r.body);
        let mut prelude = vec![b'h'; 2048];
        prelude.push(b'\n');
        assert_eq!(chunks[0], prelude);
        assert_eq!(chunks[1], b"o\n");
        assert_eq!(chunks[2], format!("{msg}\n").into_bytes());
        assert_eq!(chunks.len(), 2 + 31 + 1);
    }

    #[test]
    fn streaming_ends_on_close_frame_http11_and_http10() {
        let o = SockJsOptions::default();
        let mut rx = HttpReceiver::new(ReceiverKind::XhrStreaming, false, &o);
        let mut out = Vec::new();
        with_request("POST /0/0/xhr_streaming HTTP/1.1\r\n\r\n", |r| {
            rx.write_head(&mut out, r, &o)
        });
        assert_eq!(rx.write_frame(&mut out, b"o"), Flow::Continue);
        assert_eq!(
            rx.write_frame(&mut out, br#"c[3000,"Go away!"]"#),
            Flow::End
        );
        let chunks = dechunk(&parse_resp(&out).body);
        assert_eq!(chunks[0][0], b'h');
        assert_eq!(
            &chunks[1..],
            &[b"o\n".to_vec(), b"c[3000,\"Go away!\"]\n".to_vec(), vec![]]
        );

        let mut rx = HttpReceiver::new(ReceiverKind::XhrStreaming, true, &o);
        let mut out = Vec::new();
        with_request(
            "POST /0/0/xhr_streaming HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
            |r| rx.write_head(&mut out, r, &o),
        );
        rx.write_frame(&mut out, b"o");
        assert_eq!(
            rx.write_frame(&mut out, br#"c[3000,"Go away!"]"#),
            Flow::End
        );
        assert!(!rx.keep_alive());
        let r = parse_resp(&out);
        assert_eq!(r.get("transfer-encoding"), None);
        assert_eq!(r.get("content-length"), None);
        assert_eq!(r.get("connection"), Some("close"));
        assert_eq!(r.body.len(), 2049 + 2 + 19);
        assert!(r.body.ends_with(b"h\no\nc[3000,\"Go away!\"]\n"));
    }

    #[test]
    fn eventsource_from_the_suite() {
        for (o, ct) in [
            (SockJsOptions::default(), "text/event-stream"),
            (
                SockJsOptions::default().flavour(Flavour::V0_3_3),
                "text/event-stream; charset=UTF-8",
            ),
        ] {
            let mut rx = HttpReceiver::new(ReceiverKind::EventSource, false, &o);
            let mut out = Vec::new();
            with_request("GET /0/0/eventsource HTTP/1.1\r\n\r\n", |r| {
                rx.write_head(&mut out, r, &o)
            });
            rx.write_frame(&mut out, b"o");
            rx.write_frame(&mut out, br#"a["x"]"#);
            rx.write_frame(&mut out, br#"a["  \u0000\n\r %"]"#);
            let r = parse_resp(&out);
            assert_eq!(r.get("content-type"), Some(ct));
            assert_eq!(r.get("cache-control"), Some(o.flavour.no_cache_value()));
            let chunks = dechunk(&{
                let mut b = r.body.clone();
                b.extend_from_slice(b"0\r\n\r\n");
                b
            });
            assert_eq!(chunks[0], b"\r\n");
            assert_eq!(chunks[1], b"data: o\r\n\r\n");
            assert_eq!(chunks[2], b"data: a[\"x\"]\r\n\r\n");
            assert_eq!(chunks[3], b"data: a[\"  \\u0000\\n\\r %25\"]\r\n\r\n");
        }
        // response_limit 4096 with one 4096-byte message: ends after it.
        let o = SockJsOptions::default().response_limit(4096);
        let mut rx = HttpReceiver::new(ReceiverKind::EventSource, false, &o);
        let mut out = Vec::new();
        assert_eq!(rx.write_frame(&mut out, b"o"), Flow::Continue);
        let msg = format!("a[\"{}\"]", "x".repeat(4096));
        assert_eq!(rx.write_frame(&mut out, msg.as_bytes()), Flow::End);
    }

    #[test]
    fn htmlfile_from_the_suite() {
        let o = SockJsOptions::default().response_limit(4096);
        let kind = kind_for(
            "GET /0/0/htmlfile?c=%63allback HTTP/1.1\r\n\r\n",
            TransportKind::HtmlFile,
            &o,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            kind,
            ReceiverKind::HtmlFile {
                callback: "callback".into()
            }
        );
        let mut rx = HttpReceiver::new(kind, false, &o);
        let mut out = Vec::new();
        with_request("GET /0/0/htmlfile?c=callback HTTP/1.1\r\n\r\n", |r| {
            rx.write_head(&mut out, r, &o)
        });
        assert_eq!(rx.write_frame(&mut out, b"o"), Flow::Continue);
        assert_eq!(rx.write_frame(&mut out, br#"a["x"]"#), Flow::Continue);
        let msg = format!("a[\"{}\"]", "x".repeat(4096));
        assert_eq!(rx.write_frame(&mut out, msg.as_bytes()), Flow::End);
        let r = parse_resp(&out);
        assert_eq!(r.get("content-type"), Some("text/html; charset=UTF-8"));
        let chunks = dechunk(&r.body);
        let head = "<!doctype html>\n<html><head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n</head><body><h2>Don't panic!</h2>\n  <script>\n    document.domain = document.domain;\n    var c = parent.callback;\n    c.start();\n    function p(d) {c.message(d);};\n    window.onload = function() {c.stop();};\n  </script>";
        let prelude = std::str::from_utf8(&chunks[0]).unwrap();
        assert_eq!(prelude.trim(), head);
        assert!(prelude.len() > 1024);
        assert!(prelude.ends_with(" \r\n\r\n"));
        assert_eq!(chunks[1], b"<script>\np(\"o\");\n</script>\r\n");
        assert_eq!(chunks[2], b"<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n");
        assert_eq!(
            chunks[3],
            format!(
                "<script>\np(\"a[\\\"{}\\\"]\");\n</script>\r\n",
                "x".repeat(4096)
            )
            .into_bytes()
        );
    }

    /// A message that would end the htmlfile's `<script>` (or open an HTML comment)
    /// reaches the page with every `<` as `\u003c`; the other transports' bytes keep
    /// `<` as it is.
    #[test]
    fn htmlfile_frames_cannot_end_their_script() {
        let hostile = "x</script><script>alert(1)</script><!--y";
        let mut frame = Vec::new();
        crate::sockjs::frame::write_messages_frame(&mut frame, &["a", hostile, "b"]);
        let html = ReceiverKind::HtmlFile {
            callback: "c".into(),
        };
        let mut out = Vec::new();
        encode_transport_frame(&mut out, &html, Flavour::Current, &frame);
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            "<script>\np(\"a[\\\"a\\\",\\\"x\\u003c/script>\\u003cscript>alert(1)\\u003c/script>\\u003c!--y\\\",\\\"b\\\"]\");\n</script>\r\n"
        );
        let literal = text
            .strip_prefix("<script>\np(")
            .and_then(|t| t.strip_suffix(");\n</script>\r\n"))
            .unwrap();
        assert!(!literal.contains('<'), "{literal}");
        let doc = format!("[{literal}]");
        let decoded = crate::sockjs::parse_client_messages(doc.as_bytes()).unwrap();
        assert_eq!(decoded, vec![String::from_utf8(frame.clone()).unwrap()]);

        let raw = std::str::from_utf8(&frame).unwrap();
        for (kind, expected) in [
            (ReceiverKind::XhrPolling, format!("{raw}\n")),
            (ReceiverKind::XhrStreaming, format!("{raw}\n")),
            (ReceiverKind::EventSource, format!("data: {raw}\r\n\r\n")),
            (ReceiverKind::WebSocket, raw.to_owned()),
        ] {
            let mut out = Vec::new();
            encode_transport_frame(&mut out, &kind, Flavour::Current, &frame);
            assert_eq!(std::str::from_utf8(&out).unwrap(), expected, "{kind:?}");
        }
        let mut out = Vec::new();
        let jsonp = ReceiverKind::Jsonp {
            callback: "cb".into(),
        };
        encode_transport_frame(&mut out, &jsonp, Flavour::Current, &frame);
        let mut quoted = Vec::new();
        quote_into(&mut quoted, raw);
        let expected = format!("/**/cb({});\r\n", std::str::from_utf8(&quoted).unwrap());
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
        assert!(expected.contains("</script>"));
    }

    #[test]
    fn jsonp_from_the_suite() {
        for (o, prefix) in [
            (SockJsOptions::default(), "/**/"),
            (SockJsOptions::default().flavour(Flavour::V0_3_3), ""),
        ] {
            let kind = kind_for(
                "GET /0/0/jsonp?c=%63allback HTTP/1.1\r\n\r\n",
                TransportKind::Jsonp,
                &o,
            )
            .unwrap()
            .unwrap();
            let mut rx = HttpReceiver::new(kind, false, &o);
            let mut out = Vec::new();
            with_request("GET /0/0/jsonp?c=callback HTTP/1.1\r\n\r\n", |r| {
                rx.write_head(&mut out, r, &o)
            });
            assert_eq!(
                rx.write_frame(&mut out, br#"c[3000,"Go away!"]"#),
                Flow::End
            );
            let r = parse_resp(&out);
            assert_eq!(
                r.get("content-type"),
                Some("application/javascript; charset=UTF-8")
            );
            assert_eq!(r.get("cache-control"), Some(o.flavour.no_cache_value()));
            assert_eq!(
                r.get("x-content-type-options"),
                (o.flavour == Flavour::Current).then_some("nosniff")
            );
            let chunks = dechunk(&r.body);
            assert_eq!(
                chunks[0],
                format!("{prefix}callback(\"c[3000,\\\"Go away!\\\"]\");\r\n").into_bytes()
            );
        }
    }

    #[test]
    fn callbacks_from_the_suite() {
        let o = SockJsOptions::default();
        for t in [TransportKind::Jsonp, TransportKind::HtmlFile] {
            assert_eq!(
                kind_for("GET /a/a/x HTTP/1.1\r\n\r\n", t, &o),
                Err(CallbackError::Missing)
            );
            for cb in [
                "%20",
                "*",
                "abc(",
                "abc%28",
                "",
                "a%3C%2Fscript%3E",
                "a</script>",
                "a%22",
                "a;alert(1)",
                "a%0A",
                "%C3%A9",
                "a+b",
            ] {
                let raw = format!("GET /a/a/x?c={cb} HTTP/1.1\r\n\r\n");
                assert_eq!(kind_for(&raw, t, &o), Err(CallbackError::Invalid), "{cb}");
            }
            assert!(kind_for("GET /a/a/x?callback=a.b-c_9 HTTP/1.1\r\n\r\n", t, &o).is_ok());
        }
        let long = format!("GET /a/a/x?c={} HTTP/1.1\r\n\r\n", "a".repeat(33));
        assert_eq!(
            kind_for(&long, TransportKind::Jsonp, &o),
            Err(CallbackError::Invalid)
        );
        assert!(kind_for(&long, TransportKind::HtmlFile, &o).is_ok());
        assert!(kind_for(
            &long,
            TransportKind::Jsonp,
            &o.clone().flavour(Flavour::V0_3_3)
        )
        .is_ok());
        assert_eq!(
            CallbackError::Missing.message(),
            "\"callback\" parameter required"
        );

        let mut out = Vec::new();
        with_request("GET /a/a/jsonp HTTP/1.1\r\n\r\n", |r| {
            write_callback_error(&mut out, r, &o, CallbackError::Invalid, false)
        });
        let r = parse_resp(&out);
        assert_eq!(r.status, 500);
        assert_eq!(r.body, b"invalid \"callback\" parameter");
    }

    #[test]
    fn cookie_on_receivers() {
        let o = SockJsOptions::default().cookie_needed(true);
        for kind in [
            ReceiverKind::XhrPolling,
            ReceiverKind::XhrStreaming,
            ReceiverKind::EventSource,
            ReceiverKind::HtmlFile {
                callback: "c".into(),
            },
            ReceiverKind::Jsonp {
                callback: "c".into(),
            },
        ] {
            let rx = HttpReceiver::new(kind, false, &o);
            let mut out = Vec::new();
            with_request("POST /0/0/xhr HTTP/1.1\r\n\r\n", |r| {
                rx.write_head(&mut out, r, &o)
            });
            assert_eq!(
                parse_resp(&out).get("set-cookie"),
                Some("JSESSIONID=dummy; path=/")
            );
        }
    }

    #[test]
    fn websocket_kind_is_raw() {
        let o = SockJsOptions::default();
        let mut rx = HttpReceiver::new(ReceiverKind::WebSocket, false, &o);
        let mut out = Vec::new();
        with_request("GET /0/0/websocket HTTP/1.1\r\n\r\n", |r| {
            rx.write_head(&mut out, r, &o)
        });
        assert!(out.is_empty());
        assert_eq!(rx.write_frame(&mut out, b"o"), Flow::Continue);
        assert_eq!(out, b"o");
    }
}
