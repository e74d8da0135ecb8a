//! The examples that once were the doc examples of the sans-I/O SockJS items, which are
//! internal now (`ringws::sockjs` exports only the options).

use super::frame::*;
use super::options::*;
use super::pages::*;
use super::path::*;
use super::session::*;
use super::transport::*;

#[test]
fn frame_quote_into() {
    let mut out = Vec::new();
    quote_into(&mut out, "a\"\n\u{2028}é");
    assert_eq!(out, "\"a\\\"\\n\\u2028é\"".as_bytes());
}

#[test]
fn frame_quote_into_script() {
    let mut out = Vec::new();
    quote_into_script(&mut out, "</script><!--");
    assert_eq!(out, br#""\u003c/script>\u003c!--""#);
}

#[test]
fn frame_write_messages_frame() {
    let mut out = Vec::new();
    write_messages_frame(&mut out, &["a", "b\"c"]);
    assert_eq!(out, br#"a["a","b\"c"]"#);
}

#[test]
fn frame_write_close_frame() {
    let mut out = Vec::new();
    write_close_frame(&mut out, 3000, "Go away!");
    assert_eq!(out, br#"c[3000,"Go away!"]"#);
}

#[test]
fn frame_parse_client_messages() {
    assert_eq!(
        parse_client_messages(br#"["a","b\u0041"]"#),
        Ok(vec!["a".into(), "bA".into()])
    );
    assert_eq!(parse_client_messages(b"[]"), Ok(vec![]));
    assert_eq!(parse_client_messages(b""), Err(ParseError::PayloadExpected));
    assert_eq!(
        parse_client_messages(br#"["x"#),
        Err(ParseError::BrokenJson)
    );
}

#[test]
fn frame_parse_jsonp_send() {
    let form = Some("application/x-www-form-urlencoded");
    assert_eq!(
        parse_jsonp_send(b"d=%5B%22x%22%5D", form),
        Ok(vec!["x".to_owned()])
    );
    assert_eq!(
        parse_jsonp_send(b"p=p", form),
        Err(ParseError::PayloadExpected)
    );
    assert_eq!(
        parse_jsonp_send(br#"["%61"]"#, Some("text/plain")),
        Ok(vec!["%61".into()])
    );
}

#[test]
fn frame_parse_websocket_message() {
    assert_eq!(
        parse_websocket_message(r#"["a","b"]"#).unwrap(),
        vec!["a", "b"]
    );
    assert_eq!(parse_websocket_message(r#""a""#).unwrap(), vec!["a"]);
    assert!(parse_websocket_message("").unwrap().is_empty());
    assert!(parse_websocket_message(r#"["a"#).is_err());
}

#[test]
fn path_route() {
    let o = SockJsOptions::default();
    assert_eq!(route("GET", "/", &o), Endpoint::Greeting);
    assert_eq!(
        route("POST", "/000/abc/xhr", &o),
        Endpoint::Session {
            server_id: "000",
            session_id: "abc",
            transport: TransportKind::Xhr
        }
    );
    assert_eq!(route("GET", "/a./a/xhr", &o), Endpoint::NotFound);
    assert_eq!(
        route("POST", "/0/0/websocket", &o),
        Endpoint::MethodNotAllowed { allow: "GET" }
    );
}

#[test]
fn path_query_param() {
    assert_eq!(
        query_param(Some("t=1&c=%63allback"), "c").as_deref(),
        Some("callback")
    );
    assert_eq!(query_param(None, "c"), None);
}

#[test]
fn session_example() {
    use std::time::Duration;

    let t0 = crate::test_support::t0();
    let mut session = Session::new(&SockJsOptions::default(), t0);
    let poll = ReceiverId(1);
    assert_eq!(session.attach(poll, t0), Attached::Opened);
    assert_eq!(session.next_frame(poll, t0).unwrap().bytes, b"o");
    session.detach(poll, false, t0); // the poll response ended after one frame
    assert_eq!(session.poll_event(), Some(SessionEvent::Opened));

    session.send("hello");
    let poll = ReceiverId(2);
    assert_eq!(session.attach(poll, t0), Attached::Resumed);
    assert_eq!(
        session.next_frame(poll, t0).unwrap().bytes,
        br#"a["hello"]"#
    );
    session.detach(poll, false, t0);
    assert_eq!(session.deadline(), Some(t0 + Duration::from_secs(5)));
}

#[test]
fn transport_encode_transport_frame() {
    let mut out = Vec::new();
    let jsonp = ReceiverKind::Jsonp {
        callback: "x".into(),
    };
    encode_transport_frame(&mut out, &jsonp, Flavour::Current, br#"a["x"]"#);
    assert_eq!(out, b"/**/x(\"a[\\\"x\\\"]\");\r\n");
}

#[test]
fn transport_http_receiver() {
    let options = SockJsOptions::default();
    let mut rx = HttpReceiver::new(ReceiverKind::XhrPolling, false, &options);
    let mut out = Vec::new();
    assert_eq!(rx.write_frame(&mut out, b"o"), Flow::End);
    assert_eq!(out, b"2\r\no\n\r\n0\r\n\r\n");
}

#[test]
fn options_sockjs_url() {
    let options = SockJsOptions::default().sockjs_url("/static/sockjs.min.js");
    assert_eq!(options.get_sockjs_url(), "/static/sockjs.min.js");
    let (page, _etag) = iframe_page(&options);
    assert!(page.contains(r#"<script src="/static/sockjs.min.js"></script>"#));
}

/// The integration guide's walk (`sockjs/mod.rs`): a poll opens a session.
#[test]
fn guide_example() {
    let options = SockJsOptions::default();
    let now = crate::test_support::t0();
    let Endpoint::Session { transport, .. } = route("POST", "/000/abc/xhr", &options) else {
        unreachable!()
    };
    assert_eq!(transport, TransportKind::Xhr);

    let mut session = Session::new(&options, now);
    let mut receiver = HttpReceiver::new(ReceiverKind::XhrPolling, false, &options);
    let id = ReceiverId(1);
    let mut out = Vec::new();
    assert_eq!(session.attach(id, now), Attached::Opened);
    while let Some(frame) = session.next_frame(id, now) {
        if receiver.write_frame(&mut out, frame.bytes) == Flow::End {
            session.detach(id, false, now);
            break;
        }
    }
    assert_eq!(out, b"2\r\no\n\r\n0\r\n\r\n");
    assert_eq!(session.poll_event(), Some(SessionEvent::Opened));
}
