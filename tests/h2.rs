//! WebSocket over HTTP/2 (RFC 8441) through `ringws::adapter`: an axum server on
//! cleartext HTTP/2 with prior knowledge, and a plain hyper server behind rustls with
//! ALPN `h2` and `http/1.1`, both driven by an `h2` client that writes RFC 6455 frames
//! into the extended CONNECT stream itself and decodes the replies.
//!
//! Checked: the server's SETTINGS advertise the extended CONNECT; an upgrade is answered
//! 200 without `sec-websocket-accept` and echoes (past the 64 KiB flow-control window,
//! both ways); the close handshake ends the stream; two WebSockets and a GET share one
//! connection at the same time; a foreign `:protocol` is refused with 400, a missing or
//! unsupported version with 426; a client RST_STREAM ends the session with 1006 and
//! only that stream; the adapter's shutdown closes with 1001 and ends the stream; over
//! TLS the same echo on `h2`, and an HTTP/1.1 upgrade on `http/1.1`, on one listener,
//! whose large echo reaches a slow reader whole (the session flushes rustls).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use common::Received;
use futures_util::{SinkExt, StreamExt};
use h2::client::SendRequest;
use h2::{Reason, RecvStream, SendStream};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use ringws::adapter::{Adapter, WebSocketUpgrade};
use ringws::proto::{encode_frame, Decoder, Event, Limits, OpCode, Role};
use ringws::{CloseInitiator, CloseReason, Conn, Handler, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::tungstenite;

/// Every network step is bounded, so a server bug fails a test instead of hanging it.
const STEP: Duration = Duration::from_secs(10);

/// The client's masking key (RFC 6455 §5.3: a client masks every frame).
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Echoes every message and reports how its session ended.
struct Echo {
    closed: mpsc::UnboundedSender<CloseReason>,
}

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }

    fn on_close(&mut self, _: &mut Conn<'_>, reason: CloseReason) {
        let _ = self.closed.send(reason);
    }
}

/// A running server and the `on_close` reports of its sessions.
struct TestServer {
    addr: SocketAddr,
    adapter: Adapter,
    closed: mpsc::UnboundedReceiver<CloseReason>,
}

impl TestServer {
    /// The next session's end, as its handler saw it.
    async fn next_close(&mut self) -> CloseReason {
        timeout(STEP, self.closed.recv())
            .await
            .expect("a session's on_close in time")
            .expect("the adapter is running")
    }

    /// Asserts that no session ended (or ever opened and ended) so far.
    async fn expect_no_close(&mut self) {
        // A session that ends hears about it at once: a short wait is enough.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(reason) = self.closed.try_recv() {
            panic!("unexpected session end: {reason}");
        }
    }
}

fn adapter() -> Adapter {
    Adapter::builder().threads(2).build().expect("adapter")
}

// ---------------------------------------------------------------------------------
// The cleartext server: axum, which serves HTTP/1.1 and h2c with prior knowledge and
// enables the extended CONNECT.

#[derive(Clone)]
struct AppState {
    adapter: Adapter,
    closed: mpsc::UnboundedSender<CloseReason>,
}

impl FromRef<AppState> for Adapter {
    fn from_ref(state: &AppState) -> Adapter {
        state.adapter.clone()
    }
}

async fn echo_route(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> impl IntoResponse {
    let closed = state.closed.clone();
    upgrade
        .protocols(["chat"])
        .on_upgrade(move || Echo { closed })
}

async fn axum_server() -> TestServer {
    let (tx, closed) = mpsc::unbounded_channel();
    let adapter = adapter();
    let state = AppState {
        adapter: adapter.clone(),
        closed: tx,
    };
    let app = Router::new()
        .route("/echo", any(echo_route))
        .route("/plain", get(|| async { "plain over h2" }))
        .with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TestServer {
        addr,
        adapter,
        closed,
    }
}

// ---------------------------------------------------------------------------------
// The h2 client side.

/// An HTTP/2 client connection over `io` (its connection task runs on its own).
async fn h2_client<T>(io: T) -> SendRequest<Bytes>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = timeout(STEP, h2::client::handshake(io))
        .await
        .expect("h2 handshake in time")
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A cleartext HTTP/2 client (prior knowledge) whose server has advertised the
/// extended CONNECT (its SETTINGS arrive after the handshake: waited for, bounded).
async fn h2c_client(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = timeout(STEP, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let client = h2_client(tcp).await;
    wait_for_extended_connect(&client).await;
    client
}

async fn wait_for_extended_connect(client: &SendRequest<Bytes>) {
    timeout(STEP, async {
        while !client.is_extended_connect_protocol_enabled() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("SETTINGS_ENABLE_CONNECT_PROTOCOL from the server");
}

/// Sends an extended CONNECT for `/echo` with `:protocol` `protocol` and the headers
/// given; returns the response and the request stream (left open).
async fn extended_connect(
    client: &SendRequest<Bytes>,
    authority: &str,
    protocol: &str,
    headers: &[(&str, &str)],
) -> (Response<RecvStream>, SendStream<Bytes>) {
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("{authority}/echo"))
        .extension(h2::ext::Protocol::from(protocol));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(()).expect("request");
    let mut client = timeout(STEP, client.clone().ready())
        .await
        .expect("stream capacity in time")
        .expect("connection usable");
    let (response, send) = client.send_request(request, false).expect("send CONNECT");
    let response = timeout(STEP, response)
        .await
        .expect("CONNECT answered in time")
        .expect("CONNECT response");
    (response, send)
}

/// Opens a WebSocket on `/echo` with `chat` offered, asserting the RFC 8441 answer.
async fn open_websocket(client: &SendRequest<Bytes>, authority: &str) -> H2WebSocket {
    let (response, send) = extended_connect(
        client,
        authority,
        "websocket",
        &[
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "superchat, chat"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "{response:?}");
    let headers = response.headers();
    // RFC 8441 §5: no key, so no accept; the subprotocol is agreed as over HTTP/1.1.
    assert!(headers.get("sec-websocket-accept").is_none(), "{headers:?}");
    assert!(headers.get("upgrade").is_none(), "{headers:?}");
    assert!(headers.get("content-length").is_none(), "{headers:?}");
    assert_eq!(
        headers.get("sec-websocket-protocol").map(|v| v.as_bytes()),
        Some(&b"chat"[..])
    );
    H2WebSocket {
        send,
        recv: response.into_body(),
        decoder: Decoder::new(Role::Client, Limits::default()),
        buffer: Vec::new(),
        start: 0,
    }
}

/// A GET on the same connection: (status, body).
async fn get_plain(client: &SendRequest<Bytes>, authority: &str) -> (StatusCode, String) {
    let request = Request::get(format!("{authority}/plain"))
        .body(())
        .expect("request");
    let mut client = timeout(STEP, client.clone().ready())
        .await
        .expect("stream capacity in time")
        .expect("connection usable");
    let (response, _) = client.send_request(request, true).expect("send GET");
    let response = timeout(STEP, response)
        .await
        .expect("GET answered in time")
        .expect("GET response");
    let status = response.status();
    (status, read_body(response.into_body()).await)
}

/// A response body to its end.
async fn read_body(mut body: RecvStream) -> String {
    let mut data = Vec::new();
    while let Some(chunk) = timeout(STEP, body.data()).await.expect("body in time") {
        let chunk = chunk.expect("body data");
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&data).into_owned()
}

/// A WebSocket on an HTTP/2 stream, spoken by hand: masked frames out, client-role
/// decoding in.
struct H2WebSocket {
    send: SendStream<Bytes>,
    recv: RecvStream,
    decoder: Decoder,
    buffer: Vec<u8>,
    start: usize,
}

impl H2WebSocket {
    /// Writes one whole masked frame as DATA (h2 queues it past the window).
    fn send(&mut self, opcode: OpCode, payload: &[u8]) {
        let mut out = Vec::new();
        encode_frame(&mut out, opcode, true, payload, Some(MASK));
        self.send
            .send_data(Bytes::from(out), false)
            .expect("send DATA");
    }

    fn send_close(&mut self, code: u16, reason: &str) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.send(OpCode::Close, &payload);
    }

    /// The next message, pong or close; `Eof` when the server ended its side of the
    /// stream (END_STREAM, or RST_STREAM NO_ERROR after it, RFC 9113 §8.1). Silence
    /// past STEP, or any other reset, fails the test.
    async fn next(&mut self) -> Received {
        loop {
            let (consumed, event) = self
                .decoder
                .decode(&mut self.buffer[self.start..])
                .expect("server sent a valid frame");
            self.start += consumed;
            let received = match event {
                Some(Event::Text(text)) => Some(Received::Text(text.to_owned())),
                Some(Event::Binary(bytes)) => Some(Received::Binary(bytes.to_vec())),
                Some(Event::Pong(bytes)) => Some(Received::Pong(bytes.to_vec())),
                Some(Event::Ping(_)) | None => None,
                Some(Event::Close(frame)) => {
                    Some(frame.map_or(Received::Close(None, String::new()), |f| {
                        Received::Close(Some(f.code.0), f.reason.to_owned())
                    }))
                }
                Some(Event::Deflated { .. } | Event::DeflatedPart { .. }) => {
                    panic!("compressed frame without permessage-deflate")
                }
            };
            if let Some(received) = received {
                return received;
            }
            if consumed == 0 {
                self.buffer.drain(..self.start);
                self.start = 0;
                match timeout(STEP, self.recv.data())
                    .await
                    .expect("a frame or the stream's end in time")
                {
                    None => return Received::Eof,
                    Some(Ok(chunk)) => {
                        let _ = self.recv.flow_control().release_capacity(chunk.len());
                        self.buffer.extend_from_slice(&chunk);
                    }
                    Some(Err(error)) if error.reason() == Some(Reason::NO_ERROR) => {
                        assert!(self.buffer.is_empty(), "reset inside a frame: {error}");
                        return Received::Eof;
                    }
                    Some(Err(error)) => panic!("the server reset the stream: {error}"),
                }
            }
        }
    }

    /// Echo round trip of a text message.
    async fn echo_text(&mut self, text: &str) {
        self.send(OpCode::Text, text.as_bytes());
        assert_eq!(self.next().await, Received::Text(text.to_owned()));
    }

    /// The close handshake from the client: the server answers 1000 and ends the
    /// stream; then the client ends its side.
    async fn close(mut self) {
        self.send_close(1000, "bye");
        // (The server echoes the code; the reason is its own, empty.)
        let reply = self.next().await;
        assert!(matches!(reply, Received::Close(Some(1000), _)), "{reply:?}");
        assert_eq!(self.next().await, Received::Eof);
        let _ = self.send.send_data(Bytes::new(), true);
    }
}

// ---------------------------------------------------------------------------------
// Cleartext HTTP/2 (prior knowledge) against axum.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_settings_advertise_extended_connect() {
    let server = axum_server().await;
    let tcp = timeout(STEP, TcpStream::connect(server.addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let client = h2_client(tcp).await;
    // The server's SETTINGS come first on its side of the connection: once a response
    // has arrived they have been read, and the extended CONNECT must be on.
    let authority = format!("http://{}", server.addr);
    assert_eq!(
        get_plain(&client, &authority).await,
        (StatusCode::OK, "plain over h2".to_owned())
    );
    assert!(client.is_extended_connect_protocol_enabled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_extended_connect_upgrades_and_echoes() {
    let mut server = axum_server().await;
    let client = h2c_client(server.addr).await;
    let authority = format!("http://{}", server.addr);
    let mut ws = open_websocket(&client, &authority).await;
    ws.echo_text("hello over h2").await;
    ws.send(OpCode::Binary, &[0, 1, 2, 255]);
    assert_eq!(ws.next().await, Received::Binary(vec![0, 1, 2, 255]));
    // Past the 64 KiB initial windows: the server must release what it reads and the
    // client what it gets, or this stalls.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(OpCode::Binary, &big);
    assert_eq!(ws.next().await, Received::Binary(big));
    ws.send(OpCode::Ping, b"p");
    assert_eq!(ws.next().await, Received::Pong(b"p".to_vec()));
    ws.echo_text("still there").await;
    ws.close().await;
    let reason = server.next_close().await;
    assert_eq!(reason.code.0, 1000, "{reason}");
    assert_eq!(reason.initiator, CloseInitiator::Peer, "{reason}");
    // The connection outlives the WebSocket.
    assert_eq!(get_plain(&client, &authority).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_two_websockets_and_a_get_share_one_connection() {
    let mut server = axum_server().await;
    let client = h2c_client(server.addr).await;
    let authority = format!("http://{}", server.addr);
    let mut a = open_websocket(&client, &authority).await;
    let mut b = open_websocket(&client, &authority).await;
    // Both queued before either is read: the streams must not block each other.
    a.send(OpCode::Text, b"to a");
    b.send(OpCode::Text, b"to b");
    assert_eq!(b.next().await, Received::Text("to b".into()));
    assert_eq!(a.next().await, Received::Text("to a".into()));
    // A plain request while both WebSockets are open, on the same connection.
    let (status, body) = get_plain(&client, &authority).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "plain over h2"));
    // A large message on one does not hold up the other.
    let big = vec![b'x'; 150_000];
    a.send(OpCode::Binary, &big);
    b.echo_text("small on b").await;
    assert_eq!(a.next().await, Received::Binary(big));
    a.echo_text("a again").await;
    // Closing one leaves the other open.
    a.close().await;
    assert_eq!(server.next_close().await.code.0, 1000);
    b.echo_text("b after a closed").await;
    b.close().await;
    assert_eq!(server.next_close().await.code.0, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_foreign_protocol_is_refused_with_400() {
    let mut server = axum_server().await;
    let client = h2c_client(server.addr).await;
    let authority = format!("http://{}", server.addr);
    let (response, _send) = extended_connect(
        &client,
        &authority,
        "webtransport",
        &[("sec-websocket-version", "13")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = read_body(response.into_body()).await;
    assert_eq!(body, "extended CONNECT :protocol is not websocket\n");
    server.expect_no_close().await;
    // The refusal ended one stream, not the connection.
    let mut ws = open_websocket(&client, &authority).await;
    ws.echo_text("after a refusal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_missing_or_wrong_version_is_refused_with_426() {
    let mut server = axum_server().await;
    let client = h2c_client(server.addr).await;
    let authority = format!("http://{}", server.addr);
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], "missing Sec-WebSocket-Version\n"),
        (
            &[("sec-websocket-version", "8")],
            "unsupported Sec-WebSocket-Version\n",
        ),
        (
            &[("sec-websocket-version", "12")],
            "unsupported Sec-WebSocket-Version\n",
        ),
    ];
    for (headers, reason) in cases {
        let (response, _send) = extended_connect(&client, &authority, "websocket", headers).await;
        assert_eq!(
            response.status(),
            StatusCode::UPGRADE_REQUIRED,
            "{headers:?}"
        );
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-version")
                .map(|v| v.as_bytes()),
            Some(&b"13"[..])
        );
        assert_eq!(read_body(response.into_body()).await, reason);
    }
    server.expect_no_close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_client_reset_ends_the_session_with_1006() {
    let mut server = axum_server().await;
    let client = h2c_client(server.addr).await;
    let authority = format!("http://{}", server.addr);
    let mut ws = open_websocket(&client, &authority).await;
    let mut other = open_websocket(&client, &authority).await;
    // The session is open (its handler answered) before the reset.
    ws.echo_text("before the reset").await;
    other.echo_text("bystander").await;
    ws.send.send_reset(Reason::CANCEL);
    let reason = server.next_close().await;
    assert_eq!(reason.code.0, 1006, "{reason}");
    assert_eq!(reason.initiator, CloseInitiator::Transport, "{reason}");
    // Only that stream ended: the other WebSocket and the connection go on.
    other.echo_text("after the reset").await;
    assert_eq!(get_plain(&client, &authority).await.0, StatusCode::OK);
    server.expect_no_close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_adapter_shutdown_closes_with_1001_and_ends_the_stream() {
    let mut server = axum_server().await;
    let client = h2c_client(server.addr).await;
    let authority = format!("http://{}", server.addr);
    let mut ws = open_websocket(&client, &authority).await;
    ws.echo_text("before the shutdown").await;
    server.adapter.shutdown_within(STEP);
    let close = ws.next().await;
    assert!(matches!(close, Received::Close(Some(1001), _)), "{close:?}");
    ws.send_close(1001, "");
    // The server's close handshake is complete: it ends its side of the stream.
    assert_eq!(ws.next().await, Received::Eof);
    let reason = server.next_close().await;
    assert_eq!(reason.code.0, 1001, "{reason}");
    assert_eq!(reason.initiator, CloseInitiator::Local, "{reason}");
    // The HTTP/2 connection itself is axum's, not the adapter's: it still serves.
    assert_eq!(get_plain(&client, &authority).await.0, StatusCode::OK);
}

// ---------------------------------------------------------------------------------
// TLS with ALPN: a plain hyper server (hyper-util's auto builder, extended CONNECT on)
// serving both HTTP/2 and HTTP/1.1 on one listener.

struct Pki {
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

fn pki() -> Pki {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).expect("rcgen");
    Pki {
        cert_der: certified.cert.der().to_vec(),
        key_der: certified.key_pair.serialize_der(),
    }
}

/// The hyper service: `/echo` upgrades (either version), `/plain` answers.
async fn route(
    adapter: Adapter,
    closed: mpsc::UnboundedSender<CloseReason>,
    mut request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match request.uri().path() {
        "/echo" => match WebSocketUpgrade::from_request(&mut request, &adapter) {
            Ok(upgrade) => upgrade
                .protocols(["chat"])
                .on_upgrade(move || Echo { closed }),
            Err(rejection) => rejection.into_response(),
        },
        "/plain" => Response::new(Full::new(Bytes::from_static(b"plain over tls"))),
        _ => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    })
}

async fn tls_server(pki: &Pki) -> TestServer {
    tls_server_with(pki, None).await
}

/// [`tls_server`] with its accepted sockets' send buffer set to `send_buffer` bytes.
async fn tls_server_with(pki: &Pki, send_buffer: Option<usize>) -> TestServer {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key_der.clone()));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert_der.clone().into()], key)
        .expect("certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (tx, closed) = mpsc::unbounded_channel();
    let adapter = adapter();
    let server_adapter = adapter.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if let Some(bytes) = send_buffer {
                socket2::SockRef::from(&tcp)
                    .set_send_buffer_size(bytes)
                    .expect("SO_SNDBUF");
            }
            let (acceptor, adapter, tx) = (acceptor.clone(), server_adapter.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(Ok(tls)) = timeout(STEP, acceptor.accept(tcp)).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request| {
                    route(adapter.clone(), tx.clone(), request)
                });
                let mut builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                builder.http2().enable_connect_protocol();
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = builder.serve_connection_with_upgrades(io, service).await;
            });
        }
    });
    TestServer {
        addr,
        adapter,
        closed,
    }
}

/// A TLS client trusting the test certificate, offering only `alpn` (which the server
/// must select).
async fn tls_client(
    addr: SocketAddr,
    pki: &Pki,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    tls_client_with(addr, pki, alpn, None).await
}

/// [`tls_client`] with its socket's receive buffer set to `receive_buffer` bytes.
async fn tls_client_with(
    addr: SocketAddr,
    pki: &Pki,
    alpn: &[u8],
    receive_buffer: Option<u32>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots
        .add(pki.cert_der.clone().into())
        .expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    }
    let tcp = timeout(STEP, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = timeout(
        STEP,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("TLS handshake in time")
    .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    tls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_h2_extended_connect_echoes() {
    let pki = pki();
    let mut server = tls_server(&pki).await;
    let tls = tls_client(server.addr, &pki, b"h2").await;
    let client = h2_client(tls).await;
    wait_for_extended_connect(&client).await;
    let authority = "https://localhost";
    assert_eq!(
        get_plain(&client, authority).await,
        (StatusCode::OK, "plain over tls".to_owned())
    );
    let mut ws = open_websocket(&client, authority).await;
    ws.echo_text("hello over h2 and tls").await;
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    ws.send(OpCode::Binary, &big);
    assert_eq!(ws.next().await, Received::Binary(big));
    ws.close().await;
    let reason = server.next_close().await;
    assert_eq!(reason.code.0, 1000, "{reason}");
    // A second WebSocket on the same TLS connection, ended by a reset this time.
    let mut ws = open_websocket(&client, authority).await;
    ws.echo_text("second").await;
    ws.send.send_reset(Reason::CANCEL);
    assert_eq!(server.next_close().await.code.0, 1006);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_http11_upgrade_on_the_same_listener() {
    let pki = pki();
    let mut server = tls_server(&pki).await;
    let tls = tls_client(server.addr, &pki, b"http/1.1").await;
    let request =
        tungstenite::client::IntoClientRequest::into_client_request("wss://localhost/echo")
            .expect("request");
    let (mut ws, response) = timeout(STEP, tokio_tungstenite::client_async(request, tls))
        .await
        .expect("upgrade in time")
        .expect("upgrade");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(response.headers().contains_key("sec-websocket-accept"));
    ws.send(tungstenite::Message::text("hello over http/1.1 and tls"))
        .await
        .expect("send");
    let echoed = timeout(STEP, ws.next())
        .await
        .expect("echo in time")
        .expect("a message")
        .expect("a frame");
    assert_eq!(
        echoed,
        tungstenite::Message::text("hello over http/1.1 and tls")
    );
    let close = tungstenite::protocol::CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "bye".into(),
    };
    ws.close(Some(close)).await.expect("close");
    // The close handshake completes: the server answers and the stream ends.
    timeout(STEP, async {
        while let Some(message) = ws.next().await {
            if message.is_err() {
                break;
            }
        }
    })
    .await
    .expect("the connection ends after the close");
    let reason = server.next_close().await;
    assert_eq!(reason.code.0, 1000, "{reason}");
    assert_eq!(reason.initiator, CloseInitiator::Peer, "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_http11_large_echo_to_a_slow_reader_arrives_whole() {
    // The server's TLS writes meet a full socket (a small send buffer, a client that
    // reads slowly), so rustls keeps records buffered past a write that reported the
    // bytes taken: the session must flush them, or the end of the message never leaves
    // the server (it stalled ~60 KiB short before the session flushed).
    let pki = pki();
    let mut server = tls_server_with(&pki, Some(8192)).await;
    // A small receive buffer (no autotuning): the socket fills after a few records.
    let mut tls = tls_client_with(server.addr, &pki, b"http/1.1", Some(32 * 1024)).await;
    let request = "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
    timeout(STEP, tls.write_all(request.as_bytes()))
        .await
        .expect("request in time")
        .expect("request");
    let mut data = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = timeout(STEP, tls.read(&mut chunk))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "connection ended in the answer");
        data.extend_from_slice(&chunk[..n]);
    };
    assert!(
        data.starts_with(b"HTTP/1.1 101 "),
        "{:?}",
        String::from_utf8_lossy(&data)
    );
    data.drain(..head_end);
    let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 249) as u8).collect();
    let mut frame = Vec::new();
    encode_frame(&mut frame, OpCode::Binary, true, &big, Some(MASK));
    timeout(STEP, tls.write_all(&frame))
        .await
        .expect("sent in time")
        .expect("send");
    let mut decoder = Decoder::new(Role::Client, Limits::default());
    let (mut received, mut start) = (0usize, 0usize);
    loop {
        let (consumed, event) = decoder.decode(&mut data[start..]).expect("valid frame");
        start += consumed;
        match event {
            Some(Event::Binary(echoed)) => {
                assert!(echoed == &big[..], "echo differs");
                break;
            }
            None if consumed == 0 => {}
            None => continue,
            other => panic!("unexpected {other:?}"),
        }
        // Slowly: 16 KiB a millisecond, far below what the server can write.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let n = timeout(STEP, tls.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("stalled after {received} bytes of the echo"))
            .expect("read");
        assert!(n > 0, "connection ended after {received} bytes");
        received += n;
        data.extend_from_slice(&chunk[..n]);
    }
    drop(tls);
    assert_eq!(server.next_close().await.code.0, 1006);
}
