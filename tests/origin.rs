//! The origin policy of WebSocket routes (cross-site WebSocket hijacking), over raw
//! sockets: for same-origin (the default), an allow-list and any origin, a browser's
//! matching origin, a foreign one and none; the hybi-07/08 `Sec-WebSocket-Origin` and
//! the hixie drafts' `Origin`; a refused origin never reaching the upgrade hook; the
//! SockJS WebSocket transports, the bridge and protocol routes; and `ringws serve
//! --allowed-origins`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::serve::{ringws_child, ringws_serve, with_child};
use common::{
    raw_connect, read_head, read_to_close, refusal, send_frame, Echo, FrameReader, Received,
};
use ringws::handshake::OriginPolicy;
use ringws::proto::OpCode;
use ringws::sockjs::SockJsOptions;
use ringws::{Accept, Protocol, Transport, WebSocketOptions};

/// A byte-stream protocol that answers each chunk upper-cased.
#[derive(Default)]
struct Upper;

impl Protocol for Upper {
    fn data_received(&mut self, transport: &mut Transport<'_>, data: &[u8]) {
        transport.write(&data.to_ascii_uppercase());
    }
}

/// Upgrades the hook of `/hooked` saw (only accepted ones may reach it).
static HOOKED: AtomicUsize = AtomicUsize::new(0);

/// The one server the in-process tests share, and the TCP backend its bridge uses.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let backend = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let backend_addr = backend.local_addr().expect("backend address");
        // Accepts and holds the bridge's connections for the life of the process.
        thread::spawn(move || {
            let mut held = Vec::new();
            for stream in backend.incoming().map_while(Result::ok) {
                held.push(stream);
            }
        });
        let listed = OriginPolicy::AllowList(vec![
            "https://App.Example:443".into(),
            "http://127.0.0.1:8080/".into(),
            "null".into(),
        ]);
        let with = |policy| WebSocketOptions::default().allowed_origins(policy);
        let server = common::builder()
            .websocket("/same", || Echo)
            .websocket_with_options("/listed", with(listed), |_| Ok(Accept::new(Echo)))
            .websocket_with_options("/any", with(OriginPolicy::Any), |_| Ok(Accept::new(Echo)))
            .websocket_with("/hooked", |_| {
                HOOKED.fetch_add(1, Ordering::SeqCst);
                Ok(Accept::new(Echo))
            })
            .websocket_protocol("/shout", Upper::default)
            .bridge("/bridge", backend_addr)
            .bridge_with_options(
                "/bridge-listed",
                backend_addr,
                with(OriginPolicy::AllowList(vec!["https://vnc.example".into()])),
            )
            // `/sj` has no WebSocket route: every upgrade under it is SockJS's.
            .sockjs("/sj", || Echo, SockJsOptions::default())
            .build()
            .expect("build")
            .start()
            .expect("start");
        let addr = server.local_addr();
        // Lives as long as the test process.
        std::mem::forget(server);
        addr
    })
}

/// The exact answer to a refused origin.
fn forbidden() -> String {
    refusal("403 Forbidden", &[], "origin not allowed")
}

/// Sends an RFC 6455 (`version` 13) or hybi (`7`, `8`) upgrade of `path` with `Host:
/// host` and the extra header lines `extra` (an origin); returns the stream and what
/// came back: the 101 head, or the whole refusal up to the server's close.
fn upgrade(path: &str, host: &str, version: u8, extra: &str) -> (TcpStream, String) {
    let mut stream = raw_connect(server());
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\
         {extra}\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    answer(stream)
}

/// The 101 head (the stream stays open), or everything up to the close.
fn answer(mut stream: TcpStream) -> (TcpStream, String) {
    let head = read_head(&mut stream);
    if head.starts_with("HTTP/1.1 101 ") {
        return (stream, head);
    }
    let rest = read_to_close(&mut stream);
    (stream, head + &rest)
}

/// An RFC 6455 upgrade of `path` addressed to the server's own address, with `Origin:
/// origin` (none when `None`): the status line's code, "101" or the exact refusal.
fn verdict(path: &str, origin: Option<&str>) -> String {
    let host = server().to_string();
    let extra = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let (mut stream, answer) = upgrade(path, &host, 13, &extra);
    match answer.starts_with("HTTP/1.1 101 ") {
        true => {
            // Open for real: a message comes back.
            assert_eq!(echo(&mut stream), "hi", "{path} {origin:?}");
            "101".into()
        }
        false => answer,
    }
}

/// Sends "hi" and returns the text that comes back.
fn echo(stream: &mut TcpStream) -> String {
    send_frame(stream, OpCode::Text, true, b"hi");
    match FrameReader::default().next(stream) {
        Received::Text(text) => text,
        other => panic!("expected the echo, got {other:?}"),
    }
}

#[test]
fn same_origin_is_the_default_and_accepts_the_pages_own_host_only() {
    let own = format!("http://{}", server());
    assert_eq!(verdict("/same", Some(&own)), "101");
    assert_eq!(verdict("/same", None), "101", "no Origin: not a browser");
    assert_eq!(verdict("/same", Some("http://evil.example")), forbidden());
    assert_eq!(verdict("/same", Some("null")), forbidden());
    // Same host, another port or scheme's port: another origin.
    let port = server().port();
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1));
    assert_eq!(verdict("/same", Some(&other_port)), forbidden());
    assert_eq!(
        verdict("/same", Some(&format!("https://127.0.0.1:{port}0"))),
        forbidden()
    );
    // Host names compare case-insensitively; a missing port is the scheme's default.
    let (_, head) = upgrade(
        "/same",
        &format!("LocalHost:{port}"),
        13,
        &format!("Origin: http://localhost:{port}\r\n"),
    );
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let (_, head) = upgrade(
        "/same",
        "chat.example",
        13,
        "Origin: http://Chat.Example:80\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let (_, head) = upgrade(
        "/same",
        "chat.example",
        13,
        "Origin: https://chat.example\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let (_, head) = upgrade(
        "/same",
        "chat.example:80",
        13,
        "Origin: https://chat.example\r\n",
    );
    assert_eq!(head, forbidden());
    // An Origin that is there but not UTF-8 is not "no Origin".
    let mut stream = raw_connect(server());
    let mut request = format!(
        "GET /same HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: ",
        server()
    )
    .into_bytes();
    request.extend_from_slice(b"http://\xff\xfe\r\n\r\n");
    stream.write_all(&request).expect("write");
    assert_eq!(answer(stream).1, forbidden());
}

#[test]
fn an_allow_list_accepts_its_origins_normalised_and_nothing_else() {
    for listed in [
        "https://app.example",
        "HTTPS://APP.EXAMPLE:443",
        "https://app.example:443",
        "http://127.0.0.1:8080",
        "null",
    ] {
        assert_eq!(verdict("/listed", Some(listed)), "101", "{listed}");
    }
    assert_eq!(verdict("/listed", None), "101", "no Origin: not a browser");
    for foreign in [
        "http://app.example",
        "https://app.example:8443",
        "https://evil.example",
        "http://127.0.0.1",
        "http://127.0.0.1:8081",
    ] {
        assert_eq!(verdict("/listed", Some(foreign)), forbidden(), "{foreign}");
    }
    // The server's own origin is not on the list.
    let own = format!("http://{}", server());
    assert_eq!(verdict("/listed", Some(&own)), forbidden());
}

#[test]
fn any_accepts_every_origin() {
    for origin in [None, Some("http://evil.example"), Some("null")] {
        assert_eq!(verdict("/any", origin), "101", "{origin:?}");
    }
}

#[test]
fn a_refused_origin_never_reaches_the_upgrade_hook() {
    // Other tests share the server but not `/hooked`.
    let before = HOOKED.load(Ordering::SeqCst);
    assert_eq!(verdict("/hooked", Some("http://evil.example")), forbidden());
    assert_eq!(HOOKED.load(Ordering::SeqCst), before);
    let own = format!("http://{}", server());
    assert_eq!(verdict("/hooked", Some(&own)), "101");
    assert_eq!(HOOKED.load(Ordering::SeqCst), before + 1);
}

#[test]
fn hybi_drafts_are_judged_by_sec_websocket_origin() {
    let host = server().to_string();
    for version in [7, 8] {
        let own = format!("Sec-WebSocket-Origin: http://{host}\r\n");
        let (mut stream, head) = upgrade("/same", &host, version, &own);
        assert!(head.starts_with("HTTP/1.1 101 "), "{version}: {head}");
        assert_eq!(echo(&mut stream), "hi");
        let foreign = "Sec-WebSocket-Origin: http://evil.example\r\n";
        assert_eq!(upgrade("/same", &host, version, foreign).1, forbidden());
        // `Sec-WebSocket-Origin` is the one that counts when both are sent.
        let both = format!("Origin: http://{host}\r\n{foreign}");
        assert_eq!(upgrade("/same", &host, version, &both).1, forbidden());
        // Without it, `Origin` is read.
        let plain = "Origin: http://evil.example\r\n";
        assert_eq!(upgrade("/same", &host, version, plain).1, forbidden());
        let (_, head) = upgrade("/same", &host, version, "");
        assert!(head.starts_with("HTTP/1.1 101 "), "{version}: {head}");
        let (_, head) = upgrade("/any", &host, version, foreign);
        assert!(head.starts_with("HTTP/1.1 101 "), "{version}: {head}");
    }
}

/// The hixie-76 draft's own example keys, body and answer.
const KEY1: &str = "4 @1  46546xW%0l 1 5";
const KEY2: &str = "12998 5 Y3 1  .P00";
const BODY: &[u8; 8] = b"^n:ds[4U";
const ANSWER: &[u8; 16] = b"8jKS'y:G*Co,Wxa-";

/// A hixie-76 upgrade of `/same` for `host` with the extra header lines `extra`
/// (the 8-byte body follows the head only when `body`).
fn hixie76(host: &str, extra: &str, body: bool) -> (TcpStream, String) {
    let mut stream = raw_connect(server());
    let mut request = format!(
        "GET /same HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\
         Sec-WebSocket-Key1: {KEY1}\r\nSec-WebSocket-Key2: {KEY2}\r\n{extra}\r\n"
    )
    .into_bytes();
    if body {
        request.extend_from_slice(BODY);
    }
    stream.write_all(&request).expect("write");
    answer(stream)
}

#[test]
fn hixie_drafts_are_judged_by_origin() {
    let host = server().to_string();
    let own = format!("Origin: http://{host}\r\n");
    let (mut stream, head) = hixie76(&host, &own, true);
    assert!(
        head.starts_with("HTTP/1.1 101 WebSocket Protocol Handshake\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Sec-WebSocket-Origin: http://{host}\r\n")),
        "{head}"
    );
    let mut challenge = [0u8; 16];
    stream
        .read_exact(&mut challenge)
        .expect("the challenge answer");
    assert_eq!(&challenge, ANSWER);
    // One text frame back and forth.
    stream.write_all(b"\x00hi\xff").expect("write");
    let mut frame = [0u8; 4];
    stream.read_exact(&mut frame).expect("echo");
    assert_eq!(&frame, b"\x00hi\xff");
    // Refused before anything of the 101 (the head alone: no body to drain).
    let foreign = "Origin: http://evil.example\r\n";
    assert_eq!(hixie76(&host, foreign, false).1, forbidden());
    // hixie-76 sent no Sec-WebSocket-Origin; one sent is not read.
    let odd = format!("Sec-WebSocket-Origin: http://{host}\r\n{foreign}");
    assert_eq!(hixie76(&host, &odd, false).1, forbidden());
    let (_, head) = hixie76(&host, "", true);
    assert!(head.starts_with("HTTP/1.1 101 "), "no Origin: {head}");

    // hixie-75: no keys, the same header.
    let hixie75 = |origin: &str| {
        let mut stream = raw_connect(server());
        let request = format!(
            "GET /same HTTP/1.1\r\nHost: {host}\r\nUpgrade: WebSocket\r\n\
             Connection: Upgrade\r\nOrigin: {origin}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("write");
        answer(stream).1
    };
    let head = hixie75(&format!("http://{host}"));
    assert!(
        head.starts_with("HTTP/1.1 101 Web Socket Protocol Handshake\r\n"),
        "{head}"
    );
    assert_eq!(hixie75("http://evil.example"), forbidden());
}

#[test]
fn protocol_and_bridge_routes_have_the_same_default() {
    let own = format!("Origin: http://{}\r\n", server());
    let foreign = "Origin: http://evil.example\r\n";
    let host = server().to_string();
    for path in ["/shout", "/bridge"] {
        let (_, head) = upgrade(path, &host, 13, &own);
        assert!(head.starts_with("HTTP/1.1 101 "), "{path}: {head}");
        let (_, head) = upgrade(path, &host, 13, "");
        assert!(head.starts_with("HTTP/1.1 101 "), "{path}: {head}");
        assert_eq!(upgrade(path, &host, 13, foreign).1, forbidden(), "{path}");
    }
    // The protocol really runs behind the same-origin check.
    let (mut stream, _) = upgrade("/shout", &host, 13, &own);
    send_frame(&mut stream, OpCode::Binary, true, b"hi\n");
    assert_eq!(
        FrameReader::default().next(&mut stream),
        Received::Binary(b"HI\n".to_vec())
    );
}

#[test]
fn a_bridge_with_options_follows_its_own_policy() {
    let host = server().to_string();
    let listed = "Origin: https://vnc.example\r\n";
    let (_, head) = upgrade("/bridge-listed", &host, 13, listed);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let (_, head) = upgrade("/bridge-listed", &host, 13, "");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // The page's own origin is not listed: the route's policy replaced same-origin.
    let own = format!("Origin: http://{}\r\n", server());
    assert_eq!(upgrade("/bridge-listed", &host, 13, &own).1, forbidden());
    // The legacy drafts stay refused whatever the options say.
    let key =
        "Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nSec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n";
    let mut stream = raw_connect(server());
    let request = format!(
        "GET /bridge-listed HTTP/1.1\r\nHost: {host}\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
         {key}{listed}\r\n^n:ds[4U"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let (_, answer) = answer(stream);
    assert_eq!(
        answer,
        refusal(
            "426 Upgrade Required",
            &["Sec-WebSocket-Version: 13, 8, 7"],
            "legacy WebSocket draft hixie-76 (hybi-00) refused on this path"
        )
    );
}

#[test]
fn sockjs_websockets_accept_any_origin() {
    let host = server().to_string();
    let foreign = "Origin: http://evil.example\r\n";
    // The raw endpoint and the `websocket` transport, from a foreign page.
    let (mut stream, head) = upgrade("/sj/websocket", &host, 13, foreign);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(echo(&mut stream), "hi");
    let (mut stream, head) = upgrade("/sj/000/origin/websocket", &host, 13, foreign);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(
        FrameReader::default().next(&mut stream),
        Received::Text("o".into())
    );
    send_frame(&mut stream, OpCode::Text, true, br#"["hi"]"#);
    assert_eq!(
        FrameReader::default().next(&mut stream),
        Received::Text(r#"a["hi"]"#.into())
    );
    let (_, head) = upgrade("/sj/websocket", &host, 13, "Origin: null\r\n");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
}

/// The status code of an RFC 6455 upgrade of `path` at `addr` with `Origin: origin`,
/// or the whole refusal.
fn serve_verdict(addr: SocketAddr, path: &str, origin: &str) -> String {
    let mut stream = raw_connect(addr);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Origin: {origin}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let (_, answer) = answer(stream);
    match answer.starts_with("HTTP/1.1 101 ") {
        true => "101".into(),
        false => answer,
    }
}

/// Runs `check` against `ringws serve args`, then stops the child this test started.
fn with_ringws(args: &[&str], check: impl FnOnce(SocketAddr)) {
    with_child(ringws_serve(args), check);
}

#[test]
fn ringws_serve_checks_origins_on_echo_and_chat() {
    // The default: same origin.
    with_ringws(&[], |addr| {
        let own = format!("http://{addr}");
        for path in ["/echo", "/chat"] {
            assert_eq!(serve_verdict(addr, path, &own), "101", "{path}");
            let foreign = serve_verdict(addr, path, "https://evil.example");
            assert_eq!(foreign, forbidden(), "{path}");
        }
        // SockJS keeps answering every origin.
        let sockjs = serve_verdict(addr, "/echo/websocket", "https://evil.example");
        assert_eq!(sockjs, "101");
    });
    with_ringws(
        &[
            "--allowed-origins",
            "https://app.example,http://127.0.0.1:9",
        ],
        |addr| {
            for path in ["/echo", "/chat"] {
                let listed = serve_verdict(addr, path, "HTTPS://app.example:443");
                assert_eq!(listed, "101", "{path}");
                let own = serve_verdict(addr, path, &format!("http://{addr}"));
                assert_eq!(own, forbidden(), "{path}");
            }
        },
    );
    with_ringws(&["--allowed-origins", "any"], |addr| {
        assert_eq!(serve_verdict(addr, "/chat", "https://evil.example"), "101");
    });
}

#[test]
fn ringws_serve_refuses_a_malformed_origin_list() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringws"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--allowed-origins",
            "example.com",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringws");
    // It must exit at once; a server that started anyway is stopped after 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let status = status.expect("ringws serve exits on a malformed --allowed-origins");
    assert!(!status.success());
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().expect("stderr");
    pipe.read_to_string(&mut stderr).expect("stderr");
    assert!(
        stderr.contains(r#"not an origin: "example.com""#),
        "{stderr}"
    );
}

#[test]
fn ringws_bridge_checks_origins() {
    let backend = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let to = backend.local_addr().expect("backend address").to_string();
    // Accepts and holds the bridge's connections until the test ends.
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in backend.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    let base = [
        "bridge",
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "1",
        "--to",
        &to,
    ];
    let start = |args: &[&str]| ringws_child(&base, args, "bridging ws://", "/ to tcp");
    // The default: same origin.
    with_child(start(&[]), |addr| {
        assert_eq!(serve_verdict(addr, "/", &format!("http://{addr}")), "101");
        assert_eq!(serve_verdict(addr, "/", "https://vnc.example"), forbidden());
    });
    with_child(
        start(&["--allowed-origins", "https://vnc.example"]),
        |addr| {
            assert_eq!(serve_verdict(addr, "/", "https://vnc.example"), "101");
            assert_eq!(
                serve_verdict(addr, "/", &format!("http://{addr}")),
                forbidden()
            );
        },
    );
}
