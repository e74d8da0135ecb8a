//! SockJS served end to end over raw sockets, with two shards: every transport, `/info`
//! and the iframe, the cookie option, response limits, the 2010 and 1002 closes,
//! heartbeats and expiry, keep-alive, HTTP/1.0, and sessions whose requests arrive on
//! shards other than their owner's.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{raw_connect, read_head, send_frame, FrameReader, Received};
use ringws::proto::OpCode;
use ringws::sockjs::SockJsOptions;
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

/// Closes each session at once with 3000 "Go away!".
struct GoAway;

impl Handler for GoAway {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        conn.close(3000, "Go away!");
    }
    fn on_message(&mut self, _conn: &mut Conn<'_>, _message: Message<'_>) {}
}

/// Answers each message with the shard its session runs on.
struct Where;

impl Handler for Where {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        if let Message::Text(text) = message {
            let answer = format!("{}:{text}", conn.id().shard());
            conn.send_text(&answer);
        }
    }
}

/// Pushes a message, then closes, from another thread through a `ConnHandle`.
struct Push;

impl Handler for Push {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let handle = conn.handle();
        std::thread::spawn(move || {
            handle.send_text("pushed").expect("shard running");
            handle.close(4000, "bye").expect("shard running");
        });
    }
    fn on_message(&mut self, _conn: &mut Conn<'_>, _message: Message<'_>) {}
}

const SHARDS: usize = 2;
/// The service index of `/where` (the order of the `sockjs` calls below).
const WHERE_INDEX: u32 = 2;

fn server() -> RunningServer {
    let options = SockJsOptions::default();
    common::builder()
        .shards(SHARDS)
        .sockjs("/echo", || Echo, options.clone().response_limit(4096))
        .sockjs("/close", || GoAway, options.clone())
        .sockjs("/where", || Where, options.clone())
        .sockjs("/cookie", || Echo, options.clone().cookie_needed(true))
        .sockjs("/nows", || Echo, options.clone().websocket(false))
        .sockjs(
            "/fast",
            || Echo,
            options
                .clone()
                .heartbeat_delay(Duration::from_millis(100))
                .disconnect_delay(Duration::from_millis(200)),
        )
        .sockjs("/echo/deeper", || GoAway, options.clone())
        .sockjs("/push", || Push, options)
        .websocket("/echo", || common::Echo)
        .build()
        .expect("build")
        .start()
        .expect("start")
}

/// A minimal HTTP/1.1 client on one kept-alive connection.
struct Client {
    stream: TcpStream,
}

/// One response: head, and the body (de-chunked) when it was read whole.
struct Response {
    head: String,
    body: String,
}

impl Response {
    fn status(&self) -> u16 {
        self.head[9..12].parse().expect("status")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client {
            stream: raw_connect(addr),
        }
    }

    fn send(&mut self, method: &str, path: &str, headers: &[&str], body: &str) {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for h in headers {
            request.push_str(h);
            request.push_str("\r\n");
        }
        if !body.is_empty() || method == "POST" {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.stream.write_all(request.as_bytes()).expect("write");
    }

    /// Sends a request and reads its whole response.
    fn call(&mut self, method: &str, path: &str, headers: &[&str], body: &str) -> Response {
        self.send(method, path, headers, body);
        self.response()
    }

    fn response(&mut self) -> Response {
        let head = read_head(&mut self.stream);
        let response = Response {
            head,
            body: String::new(),
        };
        let body = if response.header("Transfer-Encoding") == Some("chunked") {
            let mut body = String::new();
            while let Some(chunk) = self.chunk() {
                body.push_str(&chunk);
            }
            body
        } else if let Some(len) = response.header("Content-Length") {
            let mut body = vec![0; len.parse().expect("length")];
            self.stream.read_exact(&mut body).expect("body");
            String::from_utf8(body).expect("utf-8")
        } else if matches!(response.status(), 204 | 304) {
            String::new()
        } else {
            let mut body = Vec::new();
            self.stream.read_to_end(&mut body).expect("body to close");
            String::from_utf8(body).expect("utf-8")
        };
        Response { body, ..response }
    }

    /// Reads one chunk of a chunked body; `None` at the last chunk.
    fn chunk(&mut self) -> Option<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            self.stream.read_exact(&mut byte).expect("chunk size");
            line.push(byte[0]);
        }
        let size = usize::from_str_radix(std::str::from_utf8(&line[..line.len() - 2]).unwrap(), 16)
            .expect("chunk size");
        let mut data = vec![0; size + 2];
        self.stream.read_exact(&mut data).expect("chunk data");
        assert!(data.ends_with(b"\r\n"));
        data.truncate(size);
        (size > 0).then(|| String::from_utf8(data).expect("utf-8"))
    }
}

/// A fresh session id per test run and name (sessions live across tests in a process).
fn sid(name: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{name}{}", N.fetch_add(1, Ordering::Relaxed))
}

#[test]
fn greeting_info_and_iframe_on_one_kept_alive_connection() {
    let server = server();
    let mut c = Client::new(server.local_addr());
    for path in ["/echo", "/echo/"] {
        let r = c.call("GET", path, &[], "");
        assert_eq!((r.status(), r.body.as_str()), (200, "Welcome to SockJS!\n"));
        assert_eq!(r.header("Connection"), None, "{}", r.head);
    }
    let r = c.call("GET", "/echo/info", &[], "");
    assert_eq!(r.status(), 200);
    assert!(
        r.body
            .starts_with(r#"{"websocket":true,"origins":["*:*"],"cookie_needed":false,"entropy":"#),
        "{}",
        r.body
    );
    let r2 = c.call("GET", "/echo/info", &[], "");
    assert_ne!(r.body, r2.body, "entropy must change");
    let r = c.call("GET", "/nows/info", &[], "");
    assert!(r.body.contains(r#""websocket":false"#), "{}", r.body);
    let r = c.call("GET", "/cookie/info", &[], "");
    assert!(r.body.contains(r#""cookie_needed":true"#), "{}", r.body);
    let r = c.call("OPTIONS", "/echo/info", &["Origin: http://a"], "");
    assert_eq!(r.status(), 204);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("http://a"));
    assert!(
        r.header("Expires").is_some_and(|e| e.ends_with(" GMT")),
        "{}",
        r.head
    );
    let r = c.call("GET", "/echo/iframe.html", &[], "");
    assert_eq!(r.status(), 200);
    assert!(r.body.contains("SockJS.bootstrap_iframe()"), "{}", r.body);
    let etag = r.header("ETag").expect("etag").to_owned();
    let r = c.call(
        "GET",
        "/echo/iframe-a.html",
        &[&format!("If-None-Match: {etag}")],
        "",
    );
    assert_eq!(r.status(), 304);
    let r = c.call("GET", "/echo/nothing/here", &[], "");
    assert_eq!(
        (r.status(), r.body.as_str()),
        (404, "404 Error: Page not found\n")
    );
    let r = c.call("DELETE", "/echo/info", &[], "");
    assert_eq!(r.status(), 405);
    // The longest prefix wins: /echo/deeper is its own service.
    let r = c.call("POST", &format!("/echo/deeper/0/{}/xhr", sid("d")), &[], "");
    assert_eq!(r.body, "o\n");
}

#[test]
fn xhr_polling_and_xhr_send_keep_alive() {
    let server = server();
    let mut c = Client::new(server.local_addr());
    let s = sid("xhr");
    let r = c.call("POST", &format!("/echo/000/{s}/xhr"), &[], "");
    assert_eq!((r.status(), r.body.as_str()), (200, "o\n"));
    assert_eq!(
        r.header("Content-Type"),
        Some("application/javascript; charset=UTF-8")
    );
    let r = c.call(
        "POST",
        &format!("/echo/000/{s}/xhr_send"),
        &[],
        r#"["a","b\u0041"]"#,
    );
    assert_eq!(r.status(), 204);
    let r = c.call("POST", &format!("/echo/000/{s}/xhr"), &[], "");
    assert_eq!(r.body, "a[\"a\",\"bA\"]\n");
    let r = c.call("POST", &format!("/echo/000/{s}/xhr_send"), &[], r#"["x"#);
    assert_eq!(
        (r.status(), r.body.as_str()),
        (500, "Broken JSON encoding.")
    );
    let r = c.call("POST", &format!("/echo/000/{s}/xhr_send"), &[], "");
    assert_eq!((r.status(), r.body.as_str()), (500, "Payload expected."));
    let r = c.call(
        "POST",
        &format!("/echo/000/{}/xhr_send", sid("none")),
        &[],
        r#"["a"]"#,
    );
    assert_eq!(r.status(), 404);
    // Pipelined: a send and a poll in one write, answered in order.
    let pipelined = format!(
        "POST /echo/000/{s}/xhr_send HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n[\"p\"]\
         POST /echo/000/{s}/xhr HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
    );
    c.stream.write_all(pipelined.as_bytes()).unwrap();
    assert_eq!(c.response().status(), 204);
    assert_eq!(c.response().body, "a[\"p\"]\n");
}

#[test]
fn xhr_streaming_ends_at_the_response_limit_and_keeps_the_connection() {
    let server = server();
    let addr = server.local_addr();
    let s = sid("stream");
    let mut c = Client::new(addr);
    c.send("POST", &format!("/echo/000/{s}/xhr_streaming"), &[], "");
    let head = read_head(&mut c.stream);
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    assert_eq!(c.chunk().unwrap(), format!("{}\n", "h".repeat(2048)));
    assert_eq!(c.chunk().unwrap(), "o\n");
    let mut sender = Client::new(addr);
    let message = "x".repeat(128);
    let mut received = 0;
    for _ in 0..40 {
        let r = sender.call(
            "POST",
            &format!("/echo/000/{s}/xhr_send"),
            &[],
            &format!("[\"{message}\"]"),
        );
        assert_eq!(r.status(), 204);
        match c.chunk() {
            Some(chunk) => {
                assert_eq!(chunk, format!("a[\"{message}\"]\n"));
                received += chunk.len();
            }
            None => break,
        }
    }
    // 4096 bytes of frames: the response ended after the frame that crossed it.
    assert!((4096..4096 + 134).contains(&(received + 2)), "{received}");
    // The same connection serves the next request.
    let r = c.call("POST", &format!("/echo/000/{s}/xhr"), &[], "");
    assert_eq!(r.status(), 200);
}

#[test]
fn eventsource_htmlfile_and_jsonp() {
    let server = server();
    let addr = server.local_addr();
    let mut c = Client::new(addr);
    let mut sender = Client::new(addr);

    let s = sid("es");
    c.send("GET", &format!("/echo/000/{s}/eventsource"), &[], "");
    let head = read_head(&mut c.stream);
    assert!(head.contains("Content-Type: text/event-stream"), "{head}");
    assert_eq!(c.chunk().unwrap(), "\r\n");
    assert_eq!(c.chunk().unwrap(), "data: o\r\n\r\n");
    sender.call("POST", &format!("/echo/000/{s}/xhr_send"), &[], r#"["e"]"#);
    assert_eq!(c.chunk().unwrap(), "data: a[\"e\"]\r\n\r\n");

    let mut c = Client::new(addr);
    let s = sid("html");
    c.send("GET", &format!("/echo/000/{s}/htmlfile?c=cb"), &[], "");
    let head = read_head(&mut c.stream);
    assert!(
        head.contains("Content-Type: text/html; charset=UTF-8"),
        "{head}"
    );
    let prelude = c.chunk().unwrap();
    assert!(
        prelude.contains("var c = parent.cb;") && prelude.len() > 1024,
        "{prelude}"
    );
    assert_eq!(c.chunk().unwrap(), "<script>\np(\"o\");\n</script>\r\n");
    sender.call("POST", &format!("/echo/000/{s}/xhr_send"), &[], r#"["h"]"#);
    assert_eq!(
        c.chunk().unwrap(),
        "<script>\np(\"a[\\\"h\\\"]\");\n</script>\r\n"
    );
    let r = Client::new(addr).call("GET", &format!("/echo/000/{}/htmlfile", sid("h")), &[], "");
    assert_eq!(
        (r.status(), r.body.as_str()),
        (500, "\"callback\" parameter required")
    );

    let mut c = Client::new(addr);
    let s = sid("jsonp");
    let r = c.call("GET", &format!("/echo/000/{s}/jsonp?c=cb"), &[], "");
    assert_eq!(r.body, "/**/cb(\"o\");\r\n");
    let form = "Content-Type: application/x-www-form-urlencoded";
    let r = c.call(
        "POST",
        &format!("/echo/000/{s}/jsonp_send"),
        &[form],
        "d=%5B%22j%22%5D",
    );
    assert_eq!((r.status(), r.body.as_str()), (200, "ok"));
    let r = c.call("GET", &format!("/echo/000/{s}/jsonp?c=cb"), &[], "");
    assert_eq!(r.body, "/**/cb(\"a[\\\"j\\\"]\");\r\n");
    let r = c.call("GET", &format!("/echo/000/{s}/jsonp?c=%3Cx"), &[], "");
    assert_eq!(
        (r.status(), r.body.as_str()),
        (500, "invalid \"callback\" parameter")
    );
}

#[test]
fn websocket_transport_raw_websocket_and_the_plain_route() {
    let server = server();
    let addr = server.local_addr();

    let mut ws = common::raw_upgrade(addr, &format!("/echo/000/{}/websocket", sid("ws")));
    let mut reader = FrameReader::default();
    assert_eq!(reader.next(&mut ws), Received::Text("o".into()));
    send_frame(&mut ws, OpCode::Text, true, br#"["hi","there"]"#);
    // Messages echoed during one delivery go out as one frame.
    assert_eq!(
        reader.next(&mut ws),
        Received::Text(r#"a["hi","there"]"#.into())
    );
    send_frame(&mut ws, OpCode::Text, true, br#"["broken"#);
    assert_eq!(
        reader.next(&mut ws),
        Received::Close(Some(3000), "Broken framing.".into())
    );

    let mut ws = common::raw_upgrade(addr, &format!("/close/000/{}/websocket", sid("wsc")));
    let mut reader = FrameReader::default();
    assert_eq!(reader.next(&mut ws), Received::Text("o".into()));
    assert_eq!(
        reader.next(&mut ws),
        Received::Text(r#"c[3000,"Go away!"]"#.into())
    );
    assert_eq!(
        reader.next(&mut ws),
        Received::Close(Some(1000), "Normal closure".into())
    );

    // Raw /websocket: no SockJS framing.
    let mut ws = common::raw_upgrade(addr, "/echo/websocket");
    let mut reader = FrameReader::default();
    send_frame(&mut ws, OpCode::Text, true, b"plain");
    assert_eq!(reader.next(&mut ws), Received::Text("plain".into()));

    // The exact WebSocket route on /echo keeps its upgrades.
    let mut ws = common::raw_upgrade(addr, "/echo");
    let mut reader = FrameReader::default();
    send_frame(&mut ws, OpCode::Binary, true, b"\x01\x02");
    assert_eq!(reader.next(&mut ws), Received::Binary(vec![1, 2]));

    // No upgrade on a websocket endpoint: 400; disabled websocket: 404.
    let mut c = Client::new(addr);
    let r = c.call(
        "GET",
        &format!("/echo/000/{}/websocket", sid("no")),
        &[],
        "",
    );
    assert_eq!(
        (r.status(), r.body.as_str()),
        (400, "Not a valid websocket request")
    );
    let r = c.call(
        "GET",
        &format!("/nows/000/{}/websocket", sid("no")),
        &[],
        "",
    );
    assert_eq!(r.status(), 404);
}

#[test]
fn cookie_option_sets_jsessionid() {
    let server = server();
    let mut c = Client::new(server.local_addr());
    let r = c.call("POST", &format!("/cookie/000/{}/xhr", sid("c")), &[], "");
    assert_eq!(r.header("Set-Cookie"), Some("JSESSIONID=dummy; path=/"));
    let r = c.call(
        "POST",
        &format!("/cookie/000/{}/xhr", sid("c")),
        &["Cookie: JSESSIONID=abc"],
        "",
    );
    assert_eq!(r.header("Set-Cookie"), Some("JSESSIONID=abc; path=/"));
    let r = c.call("POST", &format!("/echo/000/{}/xhr", sid("c")), &[], "");
    assert_eq!(r.header("Set-Cookie"), None);
}

#[test]
fn second_receiver_gets_2010_and_a_dropped_one_closes_with_1002() {
    let server = server();
    let addr = server.local_addr();
    let s = sid("twice");
    let mut first = Client::new(addr);
    first.send("POST", &format!("/echo/000/{s}/xhr_streaming"), &[], "");
    read_head(&mut first.stream);
    first.chunk();
    assert_eq!(first.chunk().unwrap(), "o\n");
    let r = Client::new(addr).call("POST", &format!("/echo/000/{s}/xhr"), &[], "");
    assert_eq!(r.body, "c[2010,\"Another connection still open\"]\n");
    // The first is still attached and served.
    Client::new(addr).call(
        "POST",
        &format!("/echo/000/{s}/xhr_send"),
        &[],
        r#"["still"]"#,
    );
    assert_eq!(first.chunk().unwrap(), "a[\"still\"]\n");
    drop(first);
    // The owner hears of the drop at once: the session closes with 1002.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = Client::new(addr).call("POST", &format!("/echo/000/{s}/xhr"), &[], "");
        if r.body == "c[1002,\"Connection interrupted\"]\n" {
            break;
        }
        assert_eq!(r.body, "c[2010,\"Another connection still open\"]\n");
        assert!(Instant::now() < deadline, "the drop was not noticed");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn closed_sessions_answer_their_close_frame() {
    let server = server();
    let mut c = Client::new(server.local_addr());
    let s = sid("close");
    assert_eq!(
        c.call("POST", &format!("/close/000/{s}/xhr"), &[], "").body,
        "o\n"
    );
    for _ in 0..2 {
        let r = c.call("POST", &format!("/close/000/{s}/xhr"), &[], "");
        assert_eq!(r.body, "c[3000,\"Go away!\"]\n");
    }
    let r = c.call(
        "POST",
        &format!("/close/000/{}/xhr_streaming", sid("cs")),
        &[],
        "",
    );
    assert!(
        r.body.ends_with("\no\nc[3000,\"Go away!\"]\n"),
        "{}",
        r.body
    );
}

#[test]
fn heartbeats_and_expiry() {
    let server = server();
    let addr = server.local_addr();
    let s = sid("hb");
    let mut c = Client::new(addr);
    c.send("POST", &format!("/fast/000/{s}/xhr_streaming"), &[], "");
    read_head(&mut c.stream);
    c.chunk();
    assert_eq!(c.chunk().unwrap(), "o\n");
    assert_eq!(c.chunk().unwrap(), "h\n");
    assert_eq!(c.chunk().unwrap(), "h\n");
    drop(c);
    // Interrupted, then expired after the disconnect delay: a send finds nothing.
    std::thread::sleep(Duration::from_millis(500));
    let r = Client::new(addr).call("POST", &format!("/fast/000/{s}/xhr_send"), &[], r#"["x"]"#);
    assert_eq!(r.status(), 404);
    // The same id then starts a new session.
    let r = Client::new(addr).call("POST", &format!("/fast/000/{s}/xhr"), &[], "");
    assert_eq!(r.body, "o\n");
    // The websocket transport has heartbeats too.
    let mut ws = common::raw_upgrade(addr, &format!("/fast/000/{}/websocket", sid("hbw")));
    let mut reader = FrameReader::default();
    assert_eq!(reader.next(&mut ws), Received::Text("o".into()));
    assert_eq!(reader.next(&mut ws), Received::Text("h".into()));
    send_frame(&mut ws, OpCode::Text, true, br#"["x"]"#);
    assert_eq!(reader.next(&mut ws), Received::Text(r#"a["x"]"#.into()));
    assert_eq!(reader.next(&mut ws), Received::Text("h".into()));
}

#[test]
fn http10_receivers_are_not_chunked_and_close() {
    let server = server();
    let mut stream = raw_connect(server.local_addr());
    let s = sid("h10");
    let request = format!("POST /echo/000/{s}/xhr HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let response = common::read_to_close(&mut stream);
    assert!(response.contains("Connection: close\r\n"), "{response}");
    assert!(!response.contains("chunked"), "{response}");
    assert!(response.ends_with("\r\n\r\no\n"), "{response}");
}

#[test]
fn sessions_are_served_across_shards() {
    let server = server();
    let addr = server.local_addr();
    let before = server.sockjs_handoffs();
    let mut owners = [0usize; SHARDS];
    for i in 0..16 {
        let s = format!("{}-{i}", sid("x"));
        let owner = ringws::sockjs_owner_shard(WHERE_INDEX, &s, SHARDS);
        owners[owner] += 1;
        // Every request on its own connection: they land on either shard.
        let r = Client::new(addr).call("POST", &format!("/where/000/{s}/xhr"), &[], "");
        assert_eq!(r.body, "o\n");
        let r =
            Client::new(addr).call("POST", &format!("/where/000/{s}/xhr_send"), &[], r#"["m"]"#);
        assert_eq!(r.status(), 204);
        let r = Client::new(addr).call("POST", &format!("/where/000/{s}/xhr"), &[], "");
        assert_eq!(r.body, format!("a[\"{owner}:m\"]\n"));
        // A streaming response handed over between shards, until its close.
        let mut c = Client::new(addr);
        c.send("POST", &format!("/where/000/{s}/xhr_streaming"), &[], "");
        read_head(&mut c.stream);
        c.chunk();
        Client::new(addr).call("POST", &format!("/where/000/{s}/xhr_send"), &[], r#"["n"]"#);
        assert_eq!(c.chunk().unwrap(), format!("a[\"{owner}:n\"]\n"));
    }
    assert!(owners.iter().all(|&n| n > 0), "{owners:?}");
    assert!(
        server.sockjs_handoffs() > before,
        "no request was handed to another shard"
    );
}

#[test]
fn conn_handles_reach_sessions() {
    let server = server();
    let addr = server.local_addr();
    let mut c = Client::new(addr);
    let r = c.call(
        "POST",
        &format!("/push/000/{}/xhr_streaming", sid("p")),
        &[],
        "",
    );
    assert!(
        r.body.ends_with("\no\na[\"pushed\"]\nc[4000,\"bye\"]\n"),
        "{}",
        r.body
    );

    let mut ws = common::raw_upgrade(addr, &format!("/push/000/{}/websocket", sid("pw")));
    let mut reader = FrameReader::default();
    assert_eq!(reader.next(&mut ws), Received::Text("o".into()));
    assert_eq!(
        reader.next(&mut ws),
        Received::Text(r#"a["pushed"]"#.into())
    );
    assert_eq!(
        reader.next(&mut ws),
        Received::Text(r#"c[4000,"bye"]"#.into())
    );
    assert_eq!(
        reader.next(&mut ws),
        Received::Close(Some(1000), "Normal closure".into())
    );
}
