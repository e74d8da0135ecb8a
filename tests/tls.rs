//! TLS end to end: a self-signed certificate made at test time, tokio-rustls clients
//! trusting it, and HTTP, WebSocket (small and 1 MiB messages), SockJS and the hixie
//! location over TLS 1.3, HTTP and WebSocket over TLS 1.2 (a client that offers only
//! it); bad certificates and keys, and a client that sends no ClientHello.
//! The backend follows RINGWS_BACKEND, so CI runs these on io_uring and on epoll.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ringws::sockjs::SockJsOptions;
use ringws::{HttpResponse, RunningServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Every network step of a test is bounded, so a server bug fails instead of hanging.
const STEP: Duration = Duration::from_secs(20);

struct Pki {
    cert_pem: String,
    key_pem: String,
    cert_der: Vec<u8>,
}

fn pki() -> Pki {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).expect("rcgen");
    Pki {
        cert_pem: certified.cert.pem(),
        key_pem: certified.key_pair.serialize_pem(),
        cert_der: certified.cert.der().to_vec(),
    }
}

/// A TLS server with `/hello` (HTTP), `/echo` (WebSocket) and `/sock` (SockJS).
fn server(pki: &Pki) -> RunningServer {
    common::builder()
        .tls(&pki.cert_pem, &pki.key_pem)
        .http("/hello", |_| HttpResponse::text(200, "hello over tls"))
        .websocket("/echo", || common::Echo)
        .sockjs("/sock", || common::Echo, SockJsOptions::default())
        .build()
        .expect("build")
        .start()
        .expect("start")
}

/// A client with the default protocol versions (TLS 1.3 is negotiated).
async fn connect(server: &RunningServer, pki: &Pki) -> TlsStream<TcpStream> {
    let tls = connect_with(server, pki, rustls::DEFAULT_VERSIONS).await;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    tls
}

/// A client that offers only `versions`, trusting the test certificate, with ALPN
/// `http/1.1` (which the server must select).
async fn connect_with(
    server: &RunningServer,
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots
        .add(pki.cert_der.clone().into())
        .expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = tokio::time::timeout(
        STEP,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls
}

/// Reads one response with a Content-Length body: (head, body).
async fn response(tls: &mut TlsStream<TcpStream>) -> (String, String) {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end + 4]).into_owned();
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked")
            {
                if let Some(body) = dechunk(&data[end + 4..]) {
                    return (head, body);
                }
            } else if data.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&data[end + 4..end + 4 + length]);
                return (head, body.into_owned());
            }
        }
        let n = tokio::time::timeout(STEP, tls.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection ended in a response: {data:?}");
        data.extend_from_slice(&chunk[..n]);
    }
}

/// The body of a complete chunked message, or `None` while it is incomplete.
fn dechunk(mut data: &[u8]) -> Option<String> {
    let mut body = Vec::new();
    loop {
        let line = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line]).ok()?.trim(), 16).ok()?;
        data = &data[line + 2..];
        if size == 0 {
            return data
                .starts_with(b"\r\n")
                .then(|| String::from_utf8_lossy(&body).into_owned());
        }
        body.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// The exact head of the `/hello` answer.
fn hello_head(close: bool) -> String {
    let close = if close { "Connection: close\r\n" } else { "" };
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 14\r\n{close}\r\n"
    )
}

/// Sends a close frame and expects the server's close reply (echoing `code`), then the
/// end of the stream with `close_notify` (anything else, or an error, fails).
async fn close_cleanly(ws: &mut WebSocket, code: Option<u16>) {
    let frame = code.map(|code| CloseFrame {
        code: code.into(),
        reason: "".into(),
    });
    ws.close(frame).await.expect("close");
    let reply = tokio::time::timeout(STEP, ws.next())
        .await
        .expect("close reply in time");
    match reply {
        Some(Ok(Message::Close(frame))) => {
            assert_eq!(frame.map(|f| u16::from(f.code)), code);
        }
        other => panic!("expected the close reply, got {other:?}"),
    }
    match tokio::time::timeout(STEP, ws.next())
        .await
        .expect("the end in time")
    {
        None => {}
        other => panic!("expected the clean end, got {other:?}"),
    }
}

type WebSocket = tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>;

#[tokio::test]
async fn tls_1_2_is_negotiated_and_carries_http_and_websocket() {
    let pki = pki();
    let server = server(&pki);
    let mut tls = connect_with(&server, &pki, &[&rustls::version::TLS12]).await;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    tls.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let (head, body) = response(&mut tls).await;
    assert_eq!(head, hello_head(false));
    assert_eq!(body, "hello over tls");

    let tls = connect_with(&server, &pki, &[&rustls::version::TLS12]).await;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let (mut ws, response) = tokio_tungstenite::client_async("wss://localhost/echo", tls)
        .await
        .expect("upgrade");
    assert_eq!(response.status(), 101);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
    for message in [Message::text("over tls 1.2"), Message::binary(big)] {
        ws.send(message.clone()).await.expect("send");
        let echoed = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("echo in time")
            .expect("a message")
            .expect("no error");
        assert_eq!(echoed, message);
    }
    close_cleanly(&mut ws, Some(1000)).await;
}

#[tokio::test]
async fn https_get_keeps_alive_then_closes_with_close_notify() {
    let pki = pki();
    let server = server(&pki);
    let mut tls = connect(&server, &pki).await;
    tls.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let (head, body) = response(&mut tls).await;
    assert_eq!(head, hello_head(false));
    assert_eq!(body, "hello over tls");
    tls.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let (head, body) = response(&mut tls).await;
    assert_eq!(head, hello_head(true));
    assert_eq!(body, "hello over tls");
    // A clean end: rustls reports a missing close_notify as an error.
    let mut rest = Vec::new();
    tokio::time::timeout(STEP, tls.read_to_end(&mut rest))
        .await
        .expect("close in time")
        .expect("the server ends with close_notify");
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn websocket_echo_over_tls_small_and_one_mebibyte() {
    let pki = pki();
    let server = server(&pki);
    let tls = connect(&server, &pki).await;
    let (mut ws, response) = tokio_tungstenite::client_async("wss://localhost/echo", tls)
        .await
        .expect("upgrade");
    assert_eq!(response.status(), 101);
    let small = "0123456789".to_owned();
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    for message in [Message::text(small), Message::binary(big)] {
        ws.send(message.clone()).await.expect("send");
        let echoed = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("echo in time")
            .expect("a message")
            .expect("no error");
        assert_eq!(echoed, message);
    }
    // The server answers the close frame, then ends the TLS session cleanly.
    close_cleanly(&mut ws, None).await;
}

#[tokio::test]
async fn sockjs_info_and_xhr_over_tls() {
    let pki = pki();
    let server = server(&pki);
    let mut tls = connect(&server, &pki).await;
    tls.write_all(b"GET /sock/info HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let (head, body) = response(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let entropy = body
        .strip_prefix(r#"{"websocket":true,"origins":["*:*"],"cookie_needed":false,"entropy":"#)
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or_else(|| panic!("{body}"));
    assert!(entropy.parse::<u32>().is_ok(), "{body}");
    let open =
        "POST /sock/000/tlssession/xhr HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n";
    tls.write_all(open.as_bytes()).await.expect("write");
    let (head, body) = response(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, "o\n");
}

#[tokio::test]
async fn hixie_location_says_wss() {
    let pki = pki();
    let server = server(&pki);
    let mut tls = connect(&server, &pki).await;
    let request = "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: WebSocket\r\n\
                   Connection: Upgrade\r\nOrigin: https://localhost\r\n\r\n";
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(STEP, tls.read_u8())
            .await
            .expect("head in time")
            .expect("read");
        head.push(byte);
    }
    assert_eq!(
        String::from_utf8_lossy(&head),
        "HTTP/1.1 101 Web Socket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
         Connection: Upgrade\r\nWebSocket-Origin: https://localhost\r\n\
         WebSocket-Location: wss://localhost/echo\r\n\r\n"
    );
}

#[test]
fn bad_certificate_or_key_fails_build_with_a_clear_error() {
    let pki = pki();
    let build = |cert: &str, key: &str| {
        common::builder()
            .tls(cert, key)
            .http("/", |_| HttpResponse::text(200, "x"))
            .build()
            .err()
            .map(|error| (error.kind(), error.to_string()))
    };
    let (kind, message) = build("not a pem", &pki.key_pem).expect("a bad certificate fails");
    assert_eq!(kind, std::io::ErrorKind::InvalidInput);
    assert!(
        message.starts_with("TLS certificate chain: no CERTIFICATE block"),
        "{message}"
    );
    let (kind, message) = build(&pki.cert_pem, "not a pem").expect("a bad key fails");
    assert_eq!(kind, std::io::ErrorKind::InvalidInput);
    assert!(message.starts_with("TLS private key: "), "{message}");
    // A key that does not belong to the certificate.
    let other = pki_key_only();
    let (kind, message) = build(&pki.cert_pem, &other).expect("a mismatched key fails");
    assert_eq!(kind, std::io::ErrorKind::InvalidInput);
    assert!(
        message.starts_with("TLS certificate and private key: "),
        "{message}"
    );
    let error = common::builder()
        .tls_files("/nonexistent/cert.pem", "/nonexistent/key.pem")
        .http("/", |_| HttpResponse::text(200, "x"))
        .build()
        .err()
        .expect("a missing file fails");
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    assert!(
        error
            .to_string()
            .starts_with("TLS certificate file /nonexistent/cert.pem: "),
        "{error}"
    );
}

fn pki_key_only() -> String {
    pki().key_pem
}

#[tokio::test]
async fn garbage_instead_of_a_client_hello_is_closed_and_the_server_goes_on() {
    let pki = pki();
    let server = server(&pki);
    let addr = server.local_addr();
    let closed = tokio::task::spawn_blocking(move || {
        let mut raw = common::raw_connect(addr);
        raw.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("write");
        // At most an alert comes back, then the end of the stream (a read timeout
        // fails the test).
        common::read_bytes_to_close(&mut raw)
    })
    .await;
    let answer = closed.expect("closed, not timed out");
    // One fatal decode_error alert record (TLS 1.2 record version), then the close.
    assert_eq!(answer, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]);
    // The server still serves TLS clients.
    let mut tls = connect(&server, &pki).await;
    tls.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let (_, body) = response(&mut tls).await;
    assert_eq!(body, "hello over tls");
}

#[tokio::test]
async fn shutdown_closes_wss_with_1001_then_close_notify() {
    let pki = pki();
    let server = server(&pki);
    let tls = connect(&server, &pki).await;
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/echo", tls)
        .await
        .expect("upgrade");
    ws.send(Message::text("before")).await.expect("send");
    let echoed = tokio::time::timeout(STEP, ws.next())
        .await
        .expect("echo in time");
    assert_eq!(
        echoed.expect("a message").expect("no error"),
        Message::text("before")
    );
    let stopping = tokio::task::spawn_blocking(move || server.shutdown());
    // Exactly the close frame, then the end of the TLS session with close_notify
    // (rustls reports a missing one as an error).
    match tokio::time::timeout(STEP, ws.next())
        .await
        .expect("close in time")
    {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1001);
            assert_eq!(frame.reason.as_str(), "server shutting down");
        }
        other => panic!("expected the 1001 close frame, got {other:?}"),
    }
    match tokio::time::timeout(STEP, ws.next())
        .await
        .expect("the end in time")
    {
        None => {}
        other => panic!("expected the clean end, got {other:?}"),
    }
    stopping.await.expect("join").expect("shutdown");
}

#[tokio::test]
async fn a_large_static_file_streams_whole_and_exact_over_tls() {
    const LEN: usize = 20 << 20;
    let pattern = |i: usize| (i % 251) as u8 ^ (i >> 16) as u8;
    let dir = std::env::temp_dir().join(format!("ringws-tls-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let content: Vec<u8> = (0..LEN).map(pattern).collect();
    std::fs::write(dir.join("big.bin"), &content).expect("file");
    let pki = pki();
    let server = common::builder()
        .tls(&pki.cert_pem, &pki.key_pem)
        .static_files("/files/", &dir)
        .build()
        .expect("build")
        .start()
        .expect("start");
    let mut tls = connect(&server, &pki).await;
    tls.write_all(b"GET /files/big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    // Everything to the end of the TLS session (the server closes after the body).
    let mut data = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), tls.read_to_end(&mut data))
        .await
        .expect("the whole file in time")
        .expect("read");
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&data[..end + 4]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nContent-Length: {LEN}\r\n")),
        "{head}"
    );
    let body = &data[end + 4..];
    assert_eq!(body.len(), LEN);
    if let Some(at) = (0..LEN).find(|&i| body[i] != content[i]) {
        panic!("byte {at} differs: {} != {}", body[at], content[at]);
    }
    server.shutdown().expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
