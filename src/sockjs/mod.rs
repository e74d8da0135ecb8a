//! The SockJS protocol, served by [`Builder::sockjs`](crate::Builder::sockjs) and
//! [`Builder::sockjs_protocol`](crate::Builder::sockjs_protocol) next to the WebSocket
//! routes: both the 0.3.3 protocol and the current one.
//!
//! What an application configures is here: [`SockJsOptions`] (delays, limits, the
//! client script's URL, the [`Transports`] offered) and the protocol [`Flavour`]. The
//! protocol core behind them (paths, pages, frames, sessions, transports) is sans-I/O
//! and internal to the crate.
//!
//! # Flavours
//!
//! [`Flavour::V0_3_3`] (sockjs-node 0.3.9, suite v0.3.3) vs [`Flavour::Current`]
//! (sockjs-node 0.3.24, suite main):
//!
//! | | 0.3.3 | current |
//! |---|---|---|
//! | CORS origin | missing or `null` → `*` | echoed, `null` included; missing → `*` |
//! | `Access-Control-Allow-Credentials` | always `true` | only with an `Origin` |
//! | `Cache-Control` no-cache | `no-store, no-cache, must-revalidate, max-age=0` | adds `no-transform` |
//! | iframe page | `_sockjs_onload` script, then the sockjs script | sockjs script, then `SockJS.bootstrap_iframe()` |
//! | jsonp frame | `cb("…");\r\n` | `/**/cb("…");\r\n`, `X-Content-Type-Options: nosniff` |
//! | jsonp callback | `[a-zA-Z0-9-_.]` | same, at most 32 chars |
//! | eventsource | `text/event-stream; charset=UTF-8`, no CORS | `text/event-stream`, CORS (`null` → `*`) |
//! | WebSocket versions | hixie, 7, 8, 13 | hixie, 13 (raw `/websocket`: 8, 13 in both) |
//! | 400 on a non-upgrade | `Can "Upgrade" only to "WebSocket".` / `"Connection" must be "Upgrade".` | `Not a valid websocket request` |
//! | broken JSON on `websocket` | close 1002 `Broken framing.` | close 3000 `Broken framing.` |
//! | default `sockjs_url` | [`LEGACY_SOCKJS_URL`] | [`DEFAULT_SOCKJS_URL`] |
//!
//! Both accept `[]` and empty frames; the main suite only tests it.

// # Contract for the server (integration guide)
//
// Internal: how `connection/sockjs.rs` drives the sans-I/O core. Nothing here touches
// a socket, a clock, a thread or a random source: the server passes requests, bodies,
// `now` instants, wall-clock times (for `Expires`) and entropy in, and gets bytes,
// frames and events out.
//
// One SockJS service lives under a prefix (`/echo`). The server strips the prefix and
// calls [`route`]`(method, rest_of_path, &options)`, then, by [`Endpoint`]
// (`close` below is "add `Connection: close`", i.e. the connection will not be
// kept alive):
//
// HTTP/1.0 requests: pass `close = true` (these writers never add
// `Connection: keep-alive`, which an HTTP/1.0 client needs to keep the connection).
//
// - `Greeting` → [`write_greeting`]; `Info` → [`write_info`] with a fresh random
//   `u32`; `Iframe` → [`write_iframe`] (ETag, 304); `Preflight { allow_methods }` →
//   [`write_preflight`]; `MethodNotAllowed { allow }` → [`write_method_not_allowed`];
//   `NotFound` → [`write_not_found`]. These are complete responses with a
//   `Content-Length` (none on 204/304), so the connection stays usable.
// - `RawWebSocket` → validate the upgrade ([`Flavour::accepts_websocket_version`] with
//   `raw = true`; on failure [`write_bad_request`] with [`websocket_error_text`]),
//   then serve a plain WebSocket: the handler's messages are WebSocket text
//   messages, no SockJS framing, no session.
// - `Session { session_id, transport, .. }`:
//   - `XhrSend` / `JsonpSend`: read the whole body; look the session up by
//     `session_id` (missing or expired → [`write_not_found`]); parse with
//     [`parse_client_messages`] (xhr_send) or [`parse_jsonp_send`] (jsonp_send, with
//     the request's `Content-Type`); on error [`write_send_error`]; else
//     [`Session::deliver`], answer [`write_xhr_send_ok`] / [`write_jsonp_send_ok`],
//     and drain the session's events into the handler (below).
//     Note that sockjs-node checks the body before the session (a broken body to a
//     missing session is a 500).
//   - `WebSocket`: validate the upgrade ([`Flavour::accepts_websocket_version`],
//     `raw = false`; errors as above). A WebSocket session is private to its
//     connection (never in the session map; ids may repeat): make a
//     [`Session::new`], [`Session::attach`] it, and send each
//     [`Session::next_frame`] as one text message. Each text message received goes
//     through [`parse_websocket_message`]; on error close the WebSocket with
//     [`Flavour::broken_framing_close`]; else [`Session::deliver`]. After a close
//     frame (`Frame::is_close`) close the WebSocket with 1000 "Normal closure". When
//     the peer goes away, [`Session::detach`]`(id, true, now)`, drain events, drop.
//   - the receiving transports (`Xhr`, `XhrStreaming`, `EventSource`, `HtmlFile`,
//     `Jsonp`): [`ReceiverKind::from_request`] (a bad `jsonp`/`htmlfile` callback →
//     [`write_callback_error`]); find the session by id or create one with
//     [`Session::new`] (an expired one is replaced by a new one); make an
//     [`HttpReceiver::new`]`(kind, http10, &options)` and
//     [`HttpReceiver::write_head`]; then [`Session::attach`] with a fresh
//     [`ReceiverId`]:
//     - `AnotherConnectionStillOpen` → [`HttpReceiver::write_frame`] with
//       [`ANOTHER_CONNECTION_STILL_OPEN`] (it ends the response);
//     - otherwise flush (below).
//
// **Flushing** a session to its attached receiver: loop on
// [`Session::next_frame`]`(id, now)` and [`HttpReceiver::write_frame`]; stop on
// `None` (keep the response open and waiting) or on [`Flow::End`]. On `End`, the
// response is complete: call [`Session::detach`]`(id, false, now)` (a no-op after a
// close frame); with HTTP/1.1 ([`HttpReceiver::keep_alive`]) the connection reads
// its next request, with HTTP/1.0 the server closes it (the body has no length).
// Flush again after the handler ran (it may `send` or `close`), after
// [`Timer::Heartbeat`], and after a send request delivered messages to an echoing
// handler.
//
// **Interrupted** receivers: when the client closes a connection whose receiving
// response has not ended, call [`Session::detach`]`(id, true, now)`: the session
// closes with `c[1002,"Connection interrupted"]`.
//
// **Events**: after each call that may queue them (`attach`, `deliver`, `detach`,
// `close`, `on_timer`), drain [`Session::poll_event`] in order and call the user's
// handler: [`SessionEvent::Opened`] → on open, [`SessionEvent::Message`] → on
// message, [`SessionEvent::Closed`] → on close (last). The handler acts on the
// session with [`Session::send`] and [`Session::close`].
//
// **Timers**: keep each session's [`Session::deadline`] in a timer wheel; when due
// call [`Session::on_timer`]`(now)`: `Heartbeat` → flush; `Expired` → drain events,
// remove the session from the map.
//
// **Chunking**: HTTP/1.1 receiving responses use `Transfer-Encoding: chunked`, the
// prelude and every frame in its own chunk, and `0\r\n\r\n` at the end
// ([`HttpReceiver::write_end`], also written by `write_frame` on `End`). When a
// session goes away while a response is open, call `write_end` and detach.
//

mod frame;
mod options;
mod pages;
mod path;
mod session;
mod transport;

pub use options::{
    Flavour, SockJsOptions, Transports, DEFAULT_MAX_BODY_BYTES, DEFAULT_SOCKJS_URL,
    LEGACY_SOCKJS_URL,
};

// The sans-I/O core, for the server (`connection/sockjs.rs`) only.
pub(crate) use frame::{parse_client_messages, parse_jsonp_send, parse_websocket_message};
pub(crate) use pages::{
    iframe_page, websocket_error_text, write_bad_request, write_greeting, write_iframe_page,
    write_info, write_jsonp_send_ok, write_method_not_allowed, write_not_found, write_preflight,
    write_send_error, write_too_large, write_xhr_send_ok,
};
pub(crate) use path::{route, Endpoint, TransportKind};
pub(crate) use session::{
    Attached, CloseCause, ReceiverId, Session, SessionEvent, SessionState, Timer,
    ANOTHER_CONNECTION_STILL_OPEN,
};
pub(crate) use transport::{write_callback_error, Flow, HttpReceiver, ReceiverKind};

/// The client-message parsers and the JSON quoting, for the fuzz targets
/// (`fuzz/fuzz_targets/common/sockjs_body.rs`) and the tests that build expected frames.
/// Not an API: only with the `fuzzing` feature, which `fuzz/Cargo.toml` and this
/// crate's own dev-dependency turn on.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use super::frame::{
        parse_client_messages, parse_jsonp_send, parse_websocket_message, quote, ParseError,
    };
}

#[cfg(test)]
mod examples_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    /// A miniature server following the integration guide, with an echo handler or a
    /// handler that closes each session at open (the suite's `echo` and `close`).
    struct Service {
        options: SockJsOptions,
        close_at_open: bool,
        sessions: HashMap<String, Session>,
        next_id: u64,
    }

    impl Service {
        fn new(close_at_open: bool) -> Self {
            Self {
                options: SockJsOptions::default().response_limit(4096),
                close_at_open,
                sessions: HashMap::new(),
                next_id: 0,
            }
        }

        fn run_handler(&mut self, sid: &str) {
            let Some(s) = self.sessions.get_mut(sid) else {
                return;
            };
            while let Some(e) = s.poll_event() {
                match e {
                    SessionEvent::Opened if self.close_at_open => {
                        s.close(3000, "Go away!");
                    }
                    SessionEvent::Message(m) => {
                        s.send(&m);
                    }
                    _ => {}
                }
            }
        }

        fn flush(
            &mut self,
            sid: &str,
            id: ReceiverId,
            rx: &mut HttpReceiver,
            out: &mut Vec<u8>,
            now: Instant,
        ) -> Flow {
            let s = self.sessions.get_mut(sid).unwrap();
            while let Some(frame) = s.next_frame(id, now) {
                if rx.write_frame(out, frame.bytes) == Flow::End {
                    s.detach(id, false, now);
                    return Flow::End;
                }
            }
            Flow::Continue
        }

        /// Starts a receiving request; returns its receiver state and what was written.
        fn receive(
            &mut self,
            sid: &str,
            kind: ReceiverKind,
            now: Instant,
        ) -> (ReceiverId, HttpReceiver, Vec<u8>, Flow) {
            let mut rx = HttpReceiver::new(kind, false, &self.options);
            let mut out = Vec::new();
            if self.sessions.get(sid).is_none_or(Session::is_expired) {
                self.sessions
                    .insert(sid.to_owned(), Session::new(&self.options, now));
            }
            self.next_id += 1;
            let id = ReceiverId(self.next_id);
            let attached = self.sessions.get_mut(sid).unwrap().attach(id, now);
            if attached == Attached::AnotherConnectionStillOpen {
                let flow = rx.write_frame(&mut out, ANOTHER_CONNECTION_STILL_OPEN);
                return (id, rx, out, flow);
            }
            let mut flow = self.flush(sid, id, &mut rx, &mut out, now);
            self.run_handler(sid);
            if flow == Flow::Continue {
                flow = self.flush(sid, id, &mut rx, &mut out, now);
            }
            (id, rx, out, flow)
        }

        fn xhr_send(&mut self, sid: &str, body: &[u8]) -> u16 {
            let messages = match parse_client_messages(body) {
                Ok(m) => m,
                Err(_) => return 500,
            };
            let Some(s) = self.sessions.get_mut(sid) else {
                return 404;
            };
            s.deliver(messages);
            self.run_handler(sid);
            204
        }
    }

    fn body_of(out: &[u8]) -> String {
        // Strip chunk framing of single-chunk writes: "<len>\r\n<data>\r\n".
        let mut s = out;
        let mut text = Vec::new();
        while !s.is_empty() {
            let nl = s.windows(2).position(|w| w == b"\r\n").unwrap();
            let len = usize::from_str_radix(std::str::from_utf8(&s[..nl]).unwrap(), 16).unwrap();
            text.extend_from_slice(&s[nl + 2..nl + 2 + len]);
            s = &s[nl + 4 + len..];
        }
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn suite_xhr_polling_echo() {
        let t = crate::test_support::t0();
        let mut svc = Service::new(false);
        let (_, _, out, flow) = svc.receive("s", ReceiverKind::XhrPolling, t);
        assert_eq!((body_of(&out), flow), ("o\n".to_owned(), Flow::End));
        assert_eq!(svc.xhr_send("s", br#"["a"]"#), 204);
        assert_eq!(svc.xhr_send("s", br#"["x"#), 500);
        assert_eq!(svc.xhr_send("bad_session", br#"["a"]"#), 404);
        let (_, _, out, _) = svc.receive("s", ReceiverKind::XhrPolling, t);
        assert_eq!(body_of(&out), "a[\"a\"]\n");
        // A waiting poll and a second one.
        let (_, _, out, flow) = svc.receive("s", ReceiverKind::XhrPolling, t);
        assert_eq!((out.is_empty(), flow), (true, Flow::Continue));
        let (_, _, out, flow) = svc.receive("s", ReceiverKind::XhrPolling, t);
        assert_eq!(body_of(&out), "c[2010,\"Another connection still open\"]\n");
        assert_eq!(flow, Flow::End);
    }

    #[test]
    fn suite_close_service_polling_and_streaming() {
        let t = crate::test_support::t0();
        let mut svc = Service::new(true);
        let (_, _, out, _) = svc.receive("p", ReceiverKind::XhrPolling, t);
        assert_eq!(body_of(&out), "o\n");
        for _ in 0..2 {
            let (_, _, out, _) = svc.receive(
                "p",
                ReceiverKind::Jsonp {
                    callback: "x".into(),
                },
                t,
            );
            assert_eq!(body_of(&out), "/**/x(\"c[3000,\\\"Go away!\\\"]\");\r\n");
        }
        let (_, _, out, flow) = svc.receive("s", ReceiverKind::XhrStreaming, t);
        assert_eq!(
            (body_of(&out), flow),
            ("o\nc[3000,\"Go away!\"]\n".to_owned(), Flow::End)
        );
        let (_, _, out, flow) = svc.receive("s", ReceiverKind::XhrStreaming, t);
        assert_eq!(
            (body_of(&out), flow),
            ("c[3000,\"Go away!\"]\n".to_owned(), Flow::End)
        );
        // Expiry after the disconnect delay, then a new session.
        let s = svc.sessions.get_mut("s").unwrap();
        assert_eq!(s.on_timer(t + Duration::from_secs(5)), Timer::Expired);
        let (_, _, out, _) = svc.receive("s", ReceiverKind::XhrPolling, t + Duration::from_secs(5));
        assert_eq!(body_of(&out), "o\n");
    }

    #[test]
    fn suite_xhr_streaming_echo_until_limit() {
        let t = crate::test_support::t0();
        let mut svc = Service::new(false);
        let (id, mut rx, out, flow) = svc.receive("s", ReceiverKind::XhrStreaming, t);
        assert_eq!((body_of(&out), flow), ("o\n".to_owned(), Flow::Continue));
        let msg = format!("\"{}\"", "x".repeat(128));
        for i in 0..31 {
            assert_eq!(svc.xhr_send("s", format!("[{msg}]").as_bytes()), 204);
            let mut out = Vec::new();
            let flow = svc.flush("s", id, &mut rx, &mut out, t);
            let expected_end = if i == 30 { "0\r\n\r\n" } else { "" };
            assert!(out.ends_with(format!("a[{msg}]\n\r\n{expected_end}").as_bytes()));
            assert_eq!(flow, if i == 30 { Flow::End } else { Flow::Continue });
        }
        assert_eq!(svc.sessions["s"].receiver(), None);
        assert_eq!(svc.sessions["s"].state(), SessionState::Open);
    }
}
