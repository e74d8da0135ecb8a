//! The adapter's hand-off (`AdapterBuilder::server(..).hand_off(true)`): a plain TCP
//! HTTP/1.1 upgrade accepted by axum (hyper-util's auto connection) or by hyper's own
//! HTTP/1.1 connection moves to one of a running ringws `Server`'s shards, with the
//! bytes hyper read past the request: a client that sends the upgrade request and its
//! first masked frame in one write is answered on a shard thread (`ringws-shard-*`),
//! and the connection goes on there (messages, ping, a `ConnHandle`, the close). The
//! same upgrade over TLS (hyper on tokio-rustls) cannot be handed off: it stays on the
//! adapter (`ringws-adapter-*`) and is served the same. The server's backend follows
//! RINGWS_BACKEND, so CI hands off to io_uring and to epoll shards.

mod common;
#[path = "common/adapter.rs"]
mod support;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::{read_head, send_frame, FrameReader, Received};
use futures_util::SinkExt;
use ringws::adapter::{Adapter, WebSocketUpgrade};
use ringws::proto::{encode_frame, OpCode};
use ringws::RunningServer;
use support::{
    closed, header, next_frame, next_text, opened, status, upgrade_request, Event, Probes,
    ServerRuntime, STEP,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The server's shards.
const SHARDS: usize = 2;

/// A ringws server, an adapter that hands off to it, and three listeners in front of
/// the adapter: axum (`axum::serve`), hyper's HTTP/1.1 connection, and the latter
/// over TLS.
struct World {
    events: UnboundedReceiver<Event>,
    axum_addr: SocketAddr,
    hyper_addr: SocketAddr,
    tls_addr: SocketAddr,
    /// The certificate the TLS listener presents.
    cert_der: Vec<u8>,
    // Dropped in this order: the listeners' runtime, the adapter, the server.
    _runtime: ServerRuntime,
    _adapter: Adapter,
    _server: RunningServer,
}

/// Answers a hyper request with the probe route (plain hyper, no axum).
async fn hyper_route(
    mut request: http::Request<hyper::body::Incoming>,
    adapter: Adapter,
    probes: Probes,
) -> Result<http::Response<http_body_util::Full<Bytes>>, Infallible> {
    Ok(
        match WebSocketUpgrade::from_request(&mut request, &adapter) {
            Ok(upgrade) => upgrade
                .protocols(support::PROTOCOLS)
                .on_upgrade(move || probes.handler()),
            Err(rejection) => rejection.into_response(),
        },
    )
}

/// Serves hyper HTTP/1.1 connections (with upgrades) on `listener`, each stream made
/// by `wrap` (plain TCP, or a TLS handshake).
fn serve_hyper<W, F, S>(
    runtime: &ServerRuntime,
    listener: std::net::TcpListener,
    adapter: Adapter,
    probes: Probes,
    wrap: W,
) where
    W: Fn(tokio::net::TcpStream) -> F + Send + 'static,
    F: std::future::Future<Output = Option<S>> + Send + 'static,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    listener.set_nonblocking(true).expect("non-blocking");
    runtime.handle().spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (adapter, probes) = (adapter.clone(), probes.clone());
            let stream = wrap(tcp);
            tokio::spawn(async move {
                let Some(stream) = stream.await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request| {
                    hyper_route(request, adapter.clone(), probes.clone())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
}

fn world() -> World {
    let (probes, events) = Probes::new();
    let server = support::server_builder(&probes)
        .shards(SHARDS)
        .build()
        .expect("build")
        .start()
        .expect("start");
    let adapter = Adapter::builder()
        .threads(2)
        .server(&server.handle())
        .hand_off(true)
        .build()
        .expect("adapter");
    let runtime = ServerRuntime::new();
    let axum_addr = runtime.serve_axum(support::app(adapter.clone(), probes.clone()));

    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let plain = bind();
    let hyper_addr = plain.local_addr().expect("addr");
    serve_hyper(
        &runtime,
        plain,
        adapter.clone(),
        probes.clone(),
        |tcp| async { Some(tcp) },
    );

    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let cert_der = certified.cert.der().to_vec();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone().into()], key.into())
        .expect("certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let tls = bind();
    let tls_addr = tls.local_addr().expect("addr");
    serve_hyper(&runtime, tls, adapter.clone(), probes, move |tcp| {
        let acceptor = acceptor.clone();
        async move { acceptor.accept(tcp).await.ok() }
    });

    World {
        events,
        axum_addr,
        hyper_addr,
        tls_addr,
        cert_der,
        _runtime: runtime,
        _adapter: adapter,
        _server: server,
    }
}

/// The upgrade request for the probe route and one masked text frame, as one buffer
/// (a client that does not wait for the 101).
fn request_and_frame(addr: SocketAddr, text: &str) -> Vec<u8> {
    let mut bytes = upgrade_request(addr, true, "").into_bytes();
    encode_frame(
        &mut bytes,
        OpCode::Text,
        true,
        text.as_bytes(),
        Some([0x12, 0x34, 0x56, 0x78]),
    );
    bytes
}

/// Checks a 101 answer to [`request_and_frame`].
fn check_switch(head: &str) {
    assert_eq!(status(head), 101, "{head}");
    assert_eq!(
        header(head, "sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
}

/// One connection through `addr` with its first frame in the upgrade's write: the
/// echo comes back from a shard, and the connection works there to its close.
/// Returns the shard.
async fn handed_off(world: &mut World, addr: SocketAddr, n: usize) -> usize {
    let mut ws = common::raw_connect(addr);
    let first = format!("first frame {n}");
    ws.write_all(&request_and_frame(addr, &first))
        .expect("one write: request and frame");
    check_switch(&read_head(&mut ws));
    let (thread, shard) = opened(&mut world.events).await;
    assert!(
        thread.starts_with("ringws-shard-"),
        "connection {n} through {addr} runs on {thread}"
    );
    assert!(shard < SHARDS, "shard {shard}");
    let mut reader = FrameReader::default();
    assert_eq!(reader.next(&mut ws), Received::Text(first));

    // The connection goes on on the shard.
    send_frame(&mut ws, OpCode::Text, true, b"where");
    let place = match reader.next(&mut ws) {
        Received::Text(place) => place,
        other => panic!("expected the handler's place, got {other:?}"),
    };
    assert_eq!(place, format!("{thread} {shard}"));
    send_frame(&mut ws, OpCode::Binary, true, &[9; 3000]);
    assert_eq!(reader.next(&mut ws), Received::Binary(vec![9; 3000]));
    send_frame(&mut ws, OpCode::Ping, true, b"on the shard");
    assert_eq!(
        reader.next(&mut ws),
        Received::Pong(b"on the shard".to_vec())
    );
    send_frame(&mut ws, OpCode::Text, true, b"handle");
    assert_eq!(
        reader.next(&mut ws),
        Received::Text("from a std thread".into())
    );
    assert_eq!(reader.next(&mut ws), Received::Binary(vec![1, 2, 3]));
    send_frame(&mut ws, OpCode::Close, true, &1000u16.to_be_bytes());
    assert_eq!(
        reader.next(&mut ws),
        Received::Close(Some(1000), String::new())
    );
    assert_eq!(reader.next(&mut ws), Received::Eof);
    let reason = closed(&mut world.events).await;
    assert_eq!(reason.code.0, 1000);
    shard
}

#[tokio::test]
async fn plain_tcp_upgrades_move_to_the_shards_with_the_first_frame() {
    let mut world = world();
    for addr in [world.axum_addr, world.hyper_addr] {
        // Consecutive hand-offs go round the shards: four reach both.
        let mut shards = BTreeSet::new();
        for n in 0..4 {
            shards.insert(handed_off(&mut world, addr, n).await);
        }
        assert_eq!(shards, (0..SHARDS).collect(), "through {addr}");
    }
}

#[tokio::test]
async fn a_tls_upgrade_stays_on_the_adapter() {
    let mut world = world();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(world.cert_der.clone().into())
        .expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(world.tls_addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio::time::timeout(
        STEP,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("TLS handshake within the step")
    .expect("TLS handshake");

    // The same single write as over plain TCP.
    let addr = world.tls_addr;
    tls.write_all(&request_and_frame(addr, "first over tls"))
        .await
        .expect("one write: request and frame");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(STEP, tls.read_u8())
            .await
            .expect("the answer within the step")
            .expect("the answer's head");
        head.push(byte);
    }
    check_switch(&String::from_utf8_lossy(&head));
    let (thread, _) = opened(&mut world.events).await;
    assert!(thread.starts_with("ringws-adapter-"), "{thread}");

    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(tls, Role::Client, None).await;
    assert_eq!(next_text(&mut ws).await, "first over tls");
    ws.send(WsMessage::text("where")).await.expect("send");
    let place = next_text(&mut ws).await;
    assert!(place.starts_with("ringws-adapter-"), "{place}");
    ws.send(WsMessage::binary(vec![7u8; 100_000]))
        .await
        .expect("send");
    match next_frame(&mut ws).await {
        Some(WsMessage::Binary(bytes)) => assert_eq!(bytes.as_ref(), &[7u8; 100_000][..]),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    ws.close(None).await.expect("close");
    match next_frame(&mut ws).await {
        Some(WsMessage::Close(_)) => {}
        other => panic!("expected the close reply, got {other:?}"),
    }
    let reason = closed(&mut world.events).await;
    assert_eq!(reason.code.0, 1005);
}
