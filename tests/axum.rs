//! The hyper/axum adapter end to end: an axum app on `127.0.0.1:0` (`axum::serve`)
//! with an ordinary JSON route and a ringws route mounted with `any(..)`, and a plain
//! ringws `Server` with the same handler, pass the same tests (one body each, run on
//! both fronts: `on_server::*` and `on_axum::*`): echo of text and binary, a 1 MiB
//! message in many fragments (a ping between them), ping/pong, a close from either
//! side, subprotocol choice, refused upgrades, invalid UTF-8, a `ConnHandle` used from
//! a `std::thread`, backpressure then `on_drain`, and the 1001 of a shutdown.
//! Then the adapter alone: upgrades that complete after its shutdown are closed 1001.
//! And one world: an adapter built with a running server's handle shares its topics,
//! and the server's shutdown closes the adapter's sessions too.
//! The server's backend follows RINGWS_BACKEND, so CI runs these on io_uring and epoll.

mod common;
#[path = "common/adapter.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use common::{send_frame, FrameReader, Received};
use futures_util::SinkExt;
use ringws::adapter::Adapter;
use ringws::proto::OpCode;
use ringws::{CloseInitiator, RunningServer};
use support::{
    closed, header, next_frame, next_text, opened, raw_request, raw_ws, status, upgrade_request,
    Client, Event, Probes, ServerRuntime, FLOOD_MESSAGE, FLOOD_MESSAGES, HEALTH, STEP, WS_PATH,
};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The backpressure threshold of both fronts: a flood crosses it at once.
const THRESHOLD: usize = 64 * 1024;

/// Which server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A ringws `Server` (2 shards), the subprotocol chosen in its `websocket_with` hook.
    Server,
    /// An axum app on `axum::serve`, the sessions on an adapter of 2 threads.
    Axum,
}

/// A server under test, as the shared test bodies see it.
struct Front {
    kind: Kind,
    addr: SocketAddr,
    events: UnboundedReceiver<Event>,
    server: Option<RunningServer>,
    adapter: Option<Adapter>,
    /// Declared last: the axum server's runtime goes after the adapter.
    _runtime: Option<ServerRuntime>,
}

impl Front {
    fn start(kind: Kind) -> Front {
        let (probes, events) = Probes::new();
        match kind {
            Kind::Server => {
                let server = support::server_builder(&probes)
                    .backpressure_threshold(THRESHOLD)
                    .build()
                    .expect("build")
                    .start()
                    .expect("start");
                Front {
                    kind,
                    addr: server.local_addr(),
                    events,
                    server: Some(server),
                    adapter: None,
                    _runtime: None,
                }
            }
            Kind::Axum => {
                let adapter = Adapter::builder()
                    .threads(2)
                    .backpressure_threshold(THRESHOLD)
                    .build()
                    .expect("adapter");
                let runtime = ServerRuntime::new();
                let addr = runtime.serve_axum(support::app(adapter.clone(), probes));
                Front {
                    kind,
                    addr,
                    events,
                    server: None,
                    adapter: Some(adapter),
                    _runtime: Some(runtime),
                }
            }
        }
    }

    fn url(&self) -> String {
        format!("ws://{}{WS_PATH}", self.addr)
    }

    /// The name every thread that runs a session here starts with.
    fn session_threads(&self) -> &'static str {
        match self.kind {
            Kind::Server => "ringws-shard-",
            Kind::Axum => "ringws-adapter-",
        }
    }

    /// Closes every session with 1001, giving the peers `grace` to answer.
    fn shutdown_within(&self, grace: Duration) {
        match (&self.server, &self.adapter) {
            (Some(server), _) => server.handle().shutdown_within(grace),
            (_, Some(adapter)) => adapter.shutdown_within(grace),
            _ => unreachable!("a front has a server or an adapter"),
        }
    }

    /// A tokio-tungstenite client (offering `protocols` when given), opened: its
    /// handler's `on_open` ran on a session thread of this front.
    async fn connect(&mut self, protocols: Option<&str>) -> (Client, Option<String>) {
        let mut request = self.url().into_client_request().expect("request");
        if let Some(protocols) = protocols {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                protocols.parse().expect("header value"),
            );
        }
        let (client, response) =
            tokio::time::timeout(STEP, tokio_tungstenite::connect_async(request))
                .await
                .expect("connected within the step")
                .expect("connect");
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .map(|value| value.to_str().expect("ASCII").to_owned());
        self.expect_open().await;
        (client, protocol)
    }

    /// Waits for a handler's `on_open` and checks where it runs.
    async fn expect_open(&mut self) {
        let (thread, shard) = opened(&mut self.events).await;
        assert!(
            thread.starts_with(self.session_threads()),
            "{:?}: the handler runs on {thread}",
            self.kind
        );
        if self.kind == Kind::Server {
            assert!(shard < 2, "shard {shard}");
        }
    }
}

/// Runs each shared test body on a ringws `Server` (`on_server::NAME`) and on axum
/// (`on_axum::NAME`).
macro_rules! on_both_fronts {
    ($($test:ident),* $(,)?) => {
        mod on_server {
            $(
                #[tokio::test]
                async fn $test() {
                    let mut front = super::Front::start(super::Kind::Server);
                    super::$test(&mut front).await;
                }
            )*
        }
        mod on_axum {
            $(
                #[tokio::test]
                async fn $test() {
                    let mut front = super::Front::start(super::Kind::Axum);
                    super::$test(&mut front).await;
                }
            )*
        }
    };
}

on_both_fronts!(
    health_route_and_echo_of_text_and_binary,
    a_mebibyte_in_fragments_is_echoed_whole,
    ping_is_answered_with_pong,
    client_initiated_close,
    handler_initiated_close_carries_code_and_reason,
    subprotocol_is_the_routes_best_one_the_client_offers,
    bad_upgrades_are_refused,
    invalid_utf8_text_closes_with_1007,
    conn_handle_sends_from_a_std_thread,
    backpressure_then_on_drain,
    shutdown_closes_with_1001,
);

async fn send(client: &mut Client, message: WsMessage) {
    tokio::time::timeout(STEP, client.send(message))
        .await
        .expect("sent within the step")
        .expect("send");
}

/// The close frame that must come next, then the end of the stream.
async fn expect_close_then_end(client: &mut Client, code: u16, reason: &str) {
    match next_frame(client).await {
        Some(WsMessage::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), code);
            assert_eq!(frame.reason.as_str(), reason);
        }
        other => panic!("expected close {code} {reason:?}, got {other:?}"),
    }
    // tokio-tungstenite has answered the close; the server ends the connection.
    match next_frame(client).await {
        None => {}
        other => panic!("expected the end of the stream, got {other:?}"),
    }
}

async fn health_route_and_echo_of_text_and_binary(front: &mut Front) {
    let addr = front.addr;
    let (head, body) = raw_request(
        addr,
        &format!("GET /api/health HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    );
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(header(&head, "content-type"), Some("application/json"));
    assert_eq!(body, HEALTH);

    let (mut client, _) = front.connect(None).await;
    send(&mut client, WsMessage::text("hello, ünïcode")).await;
    assert_eq!(next_text(&mut client).await, "hello, ünïcode");
    let bytes = vec![0u8, 1, 2, 0xfe, 0xff];
    send(&mut client, WsMessage::binary(bytes.clone())).await;
    match next_frame(&mut client).await {
        Some(WsMessage::Binary(echo)) => assert_eq!(echo.as_ref(), bytes.as_slice()),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    // The answer is made on the thread that owns the session.
    send(&mut client, WsMessage::text("where")).await;
    let place = next_text(&mut client).await;
    assert!(place.starts_with(front.session_threads()), "{place}");
}

async fn a_mebibyte_in_fragments_is_echoed_whole(front: &mut Front) {
    let mut ws = raw_ws(front.addr);
    front.expect_open().await;
    let mut reader = FrameReader::default();

    // Binary: 16 frames of 64 KiB, a ping between the first fragments.
    let payload: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let pieces: Vec<&[u8]> = payload.chunks(64 * 1024).collect();
    assert_eq!(pieces.len(), 16);
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        send_frame(&mut ws, opcode, i == pieces.len() - 1, piece);
        if i == 0 {
            send_frame(&mut ws, OpCode::Ping, true, b"between fragments");
        }
    }
    assert_eq!(
        reader.next(&mut ws),
        Received::Pong(b"between fragments".to_vec())
    );
    match reader.next(&mut ws) {
        Received::Binary(echo) => assert!(echo == payload, "the binary echo differs"),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    // The echo went past the 64 KiB backpressure threshold: the probe's `on_drain`
    // speaks once it is written (and the socket is read again only then).
    assert_eq!(reader.next(&mut ws), Received::Text("drained".into()));

    // Text: 1 MiB of two-byte characters cut at odd offsets, so characters are split
    // between frames.
    let text = "ü".repeat(1 << 19);
    let pieces: Vec<&[u8]> = text.as_bytes().chunks(100_001).collect();
    assert!(pieces.len() > 8);
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        send_frame(&mut ws, opcode, i == pieces.len() - 1, piece);
    }
    match reader.next(&mut ws) {
        Received::Text(echo) => assert!(
            echo == text,
            "the text echo differs: {} bytes, {} characters, first difference at {:?}",
            echo.len(),
            echo.chars().count(),
            echo.bytes().zip(text.bytes()).position(|(a, b)| a != b)
        ),
        other => panic!("expected the text echo, got {other:?}"),
    }
    assert_eq!(reader.next(&mut ws), Received::Text("drained".into()));
}

async fn ping_is_answered_with_pong(front: &mut Front) {
    let (mut client, _) = front.connect(None).await;
    send(&mut client, WsMessage::Ping(b"are you there?"[..].into())).await;
    match next_frame(&mut client).await {
        Some(WsMessage::Pong(payload)) => assert_eq!(payload.as_ref(), b"are you there?"),
        other => panic!("expected the pong, got {other:?}"),
    }
    // The connection goes on.
    send(&mut client, WsMessage::text("after the ping")).await;
    assert_eq!(next_text(&mut client).await, "after the ping");
}

async fn client_initiated_close(front: &mut Front) {
    let (mut client, _) = front.connect(None).await;
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "client done".into(),
    };
    tokio::time::timeout(STEP, client.close(Some(frame)))
        .await
        .expect("close sent within the step")
        .expect("close");
    // The reply echoes the code (a reply's reason is optional).
    expect_close_then_end(&mut client, 1000, "").await;
    let reason = closed(&mut front.events).await;
    assert_eq!(reason.code.0, 1000);
    assert_eq!(reason.reason, "client done");
    assert_eq!(reason.initiator, CloseInitiator::Peer);
}

async fn handler_initiated_close_carries_code_and_reason(front: &mut Front) {
    let (mut client, _) = front.connect(None).await;
    send(&mut client, WsMessage::text("close")).await;
    expect_close_then_end(&mut client, 4001, "handler says bye").await;
    let reason = closed(&mut front.events).await;
    assert_eq!(reason.code.0, 4001);
    assert_eq!(reason.initiator, CloseInitiator::Local);
}

async fn subprotocol_is_the_routes_best_one_the_client_offers(front: &mut Front) {
    use std::io::Write;
    let addr = front.addr;
    // (offer, chosen): the route's order wins ("chat" before "superchat").
    let cases = [
        (Some("superchat, chat"), Some("chat")),
        (Some("chat, superchat"), Some("chat")),
        (Some("superchat"), Some("superchat")),
        (Some("mqtt, superchat"), Some("superchat")),
        (Some("mqtt"), None),
        (None, None),
    ];
    for (offer, chosen) in cases {
        let extra = offer.map_or(String::new(), |offer| {
            format!("Sec-WebSocket-Protocol: {offer}\r\n")
        });
        let mut stream = common::raw_connect(addr);
        stream
            .write_all(upgrade_request(addr, true, &extra).as_bytes())
            .expect("write");
        let head = common::read_head(&mut stream);
        assert_eq!(status(&head), 101, "{offer:?}: {head}");
        assert_eq!(
            header(&head, "sec-websocket-protocol"),
            chosen,
            "{offer:?}: {head}"
        );
        front.expect_open().await;
    }
    // A real client agrees and talks.
    let (mut client, protocol) = front.connect(Some("superchat, chat")).await;
    assert_eq!(protocol.as_deref(), Some("chat"));
    send(&mut client, WsMessage::text("in chat")).await;
    assert_eq!(next_text(&mut client).await, "in chat");
}

async fn bad_upgrades_are_refused(front: &mut Front) {
    let addr = front.addr;
    // No key.
    let request = upgrade_request(addr, false, "Sec-WebSocket-Version: 13\r\n");
    let (head, body) = raw_request(addr, &request);
    assert_eq!(status(&head), 400, "{head}{body}");
    // A version the server does not speak: 426 naming 13.
    let request = format!(
        "GET {WS_PATH} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 12\r\n\r\n"
    );
    let (head, body) = raw_request(addr, &request);
    assert_eq!(status(&head), 426, "{head}{body}");
    let versions = header(&head, "sec-websocket-version").expect("Sec-WebSocket-Version");
    assert!(
        versions.split(',').any(|version| version.trim() == "13"),
        "{head}"
    );
    // A plain GET on the WebSocket route.
    let request = format!("GET {WS_PATH} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let (head, body) = raw_request(addr, &request);
    assert_eq!(status(&head), 426, "{head}{body}");
    // None of them opened a session.
    assert!(
        front.events.try_recv().is_err(),
        "a refused upgrade reached the handler"
    );
}

async fn invalid_utf8_text_closes_with_1007(front: &mut Front) {
    let mut ws = raw_ws(front.addr);
    front.expect_open().await;
    let mut reader = FrameReader::default();
    send_frame(&mut ws, OpCode::Text, true, &[b'o', b'k', 0xce, 0xff]);
    match reader.next(&mut ws) {
        Received::Close(Some(1007), _) => {}
        other => panic!("expected close 1007, got {other:?}"),
    }
    let reason = closed(&mut front.events).await;
    assert_eq!(reason.code.0, 1007);
    assert_eq!(reason.initiator, CloseInitiator::Local);
}

async fn conn_handle_sends_from_a_std_thread(front: &mut Front) {
    let (mut client, _) = front.connect(None).await;
    send(&mut client, WsMessage::text("handle")).await;
    assert_eq!(next_text(&mut client).await, "from a std thread");
    match next_frame(&mut client).await {
        Some(WsMessage::Binary(bytes)) => assert_eq!(bytes.as_ref(), &[1, 2, 3]),
        other => panic!("expected the handle's binary, got {other:?}"),
    }
}

async fn backpressure_then_on_drain(front: &mut Front) {
    // A small receive buffer (no autotuning): the flood cannot all sit in socket
    // buffers while the client does not read.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(32 * 1024).expect("SO_RCVBUF");
    let tcp = tokio::time::timeout(STEP, socket.connect(front.addr))
        .await
        .expect("connected within the step")
        .expect("connect");
    let (mut client, _) = tokio::time::timeout(
        STEP,
        tokio_tungstenite::client_async(front.url(), tokio_tungstenite::MaybeTlsStream::Plain(tcp)),
    )
    .await
    .expect("upgraded within the step")
    .expect("upgrade");
    front.expect_open().await;

    send(&mut client, WsMessage::text("flood")).await;
    let backpressure = support::event(&mut front.events, |event| match event {
        Event::Flooded { backpressure } => Some(backpressure),
        _ => None,
    })
    .await;
    assert!(backpressure, "8 MiB queued past a 64 KiB threshold");
    // Not reading: most of the flood stays queued, so no drain. (Sizes make this
    // hold however long the window is; the window only gives a bug time to show.)
    let early = tokio::time::timeout(Duration::from_millis(300), front.events.recv()).await;
    assert!(
        early.is_err(),
        "an event while the client does not read: {early:?}"
    );

    // Reading: everything arrives in order, then the drain's answer.
    for i in 0..FLOOD_MESSAGES {
        match next_frame(&mut client).await {
            Some(WsMessage::Binary(bytes)) => {
                assert_eq!(bytes.len(), FLOOD_MESSAGE, "message {i}");
                assert!(bytes.iter().all(|&b| b == i as u8), "message {i}");
            }
            other => panic!("expected flood message {i}, got {other:?}"),
        }
    }
    assert_eq!(next_text(&mut client).await, "flood queued");
    assert_eq!(next_text(&mut client).await, "drained");
    support::event(&mut front.events, |event| {
        matches!(event, Event::Drained).then_some(())
    })
    .await;
    // Reading goes on after the drain.
    send(&mut client, WsMessage::text("still here")).await;
    assert_eq!(next_text(&mut client).await, "still here");
}

async fn shutdown_closes_with_1001(front: &mut Front) {
    let (mut client, _) = front.connect(None).await;
    send(&mut client, WsMessage::text("before")).await;
    assert_eq!(next_text(&mut client).await, "before");
    front.shutdown_within(Duration::from_secs(5));
    match next_frame(&mut client).await {
        Some(WsMessage::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected close 1001, got {other:?}"),
    }
    // tokio-tungstenite answers; the server ends the connection.
    match next_frame(&mut client).await {
        None => {}
        other => panic!("expected the end of the stream, got {other:?}"),
    }
    let reason = closed(&mut front.events).await;
    assert_eq!(reason.code.0, 1001);
    assert_eq!(reason.initiator, CloseInitiator::Local);
}

/// One world: an adapter built with a running server's handle shares its pub/sub. A
/// session on an adapter thread and a connection on a shard subscribe to one topic;
/// what either publishes reaches the other (not itself), and so do `Adapter::publish`
/// and `ServerHandle::publish`.
#[tokio::test]
async fn adapter_sessions_and_shard_connections_share_topics() {
    let (probes, mut events) = Probes::new();
    let server = support::server_builder(&probes)
        .build()
        .expect("build")
        .start()
        .expect("start");
    let adapter = Adapter::builder()
        .server(&server.handle())
        .build()
        .expect("adapter");
    let runtime = ServerRuntime::new();
    let axum_addr = runtime.serve_axum(support::app(adapter.clone(), probes));

    let connect = |addr: SocketAddr| async move {
        let url = format!("ws://{addr}{WS_PATH}");
        let (client, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url))
            .await
            .expect("connected within the step")
            .expect("connect");
        client
    };
    let mut on_adapter = connect(axum_addr).await;
    let (thread, _) = opened(&mut events).await;
    assert!(thread.starts_with("ringws-adapter-"), "{thread}");
    let mut on_shard = connect(server.local_addr()).await;
    let (thread, shard) = opened(&mut events).await;
    assert!(thread.starts_with("ringws-shard-"), "{thread}");
    assert!(shard < 2);

    for client in [&mut on_adapter, &mut on_shard] {
        send(client, WsMessage::text("sub:news")).await;
        assert_eq!(next_text(client).await, "subscribed news");
    }
    assert_eq!(adapter.subscriber_count("news"), 2);
    assert_eq!(server.handle().subscriber_count("news"), 2);

    send(
        &mut on_adapter,
        WsMessage::text("pub:news:from the adapter"),
    )
    .await;
    assert_eq!(next_text(&mut on_shard).await, "from the adapter");
    send(&mut on_shard, WsMessage::text("pub:news:from a shard")).await;
    assert_eq!(next_text(&mut on_adapter).await, "from a shard");

    adapter
        .publish("news", ringws::Message::Text("by Adapter::publish"))
        .expect("publish");
    server
        .handle()
        .publish("news", ringws::Message::Binary(b"by ServerHandle::publish"))
        .expect("publish");
    for client in [&mut on_adapter, &mut on_shard] {
        assert_eq!(next_text(client).await, "by Adapter::publish");
        match next_frame(client).await {
            Some(WsMessage::Binary(bytes)) => {
                assert_eq!(bytes.as_ref(), b"by ServerHandle::publish")
            }
            other => panic!("expected the server's publication, got {other:?}"),
        }
        // Nothing else came first (a publisher does not hear itself).
        send(client, WsMessage::text("where")).await;
        let place = next_text(client).await;
        assert!(place.starts_with("ringws-"), "{place}");
    }

    // A session that ends leaves the topic.
    on_adapter.close(None).await.expect("close");
    while next_frame(&mut on_adapter).await.is_some() {}
    closed(&mut events).await;
    support::eventually("the closed session left the topic", || {
        adapter.subscriber_count("news") == 1
    })
    .await;
    drop(runtime);
}

/// An upgrade that completes after `Adapter::shutdown_within` is closed with 1001 as
/// soon as it opens, on every adapter thread (also one that had no session when the
/// shutdown came), until the adapter is dropped.
#[tokio::test]
async fn axum_upgrades_after_a_shutdown_are_closed_with_1001() {
    let mut front = Front::start(Kind::Axum);
    let (mut client, _) = front.connect(None).await;
    front.shutdown_within(Duration::from_secs(5));
    match next_frame(&mut client).await {
        Some(WsMessage::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected close 1001, got {other:?}"),
    }
    assert!(next_frame(&mut client).await.is_none());
    closed(&mut front.events).await;
    // Both threads (round robin) take late sessions.
    for late in 0..4 {
        let (mut client, _) = front.connect(None).await;
        match next_frame(&mut client).await {
            Some(WsMessage::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1001, "late session {late}");
                assert_eq!(frame.reason.as_str(), "server shutting down");
            }
            other => panic!("late session {late}: expected close 1001, got {other:?}"),
        }
        assert!(next_frame(&mut client).await.is_none());
        let reason = closed(&mut front.events).await;
        assert_eq!(reason.code.0, 1001);
    }
}

/// One world's shutdown: the server's shutdown closes the sessions of an adapter
/// built with its handle (1001), as it closes its own connections.
#[tokio::test]
async fn a_servers_shutdown_closes_its_adapters_sessions_with_1001() {
    let (probes, mut events) = Probes::new();
    let server = support::server_builder(&probes)
        .build()
        .expect("build")
        .start()
        .expect("start");
    let adapter = Adapter::builder()
        .threads(2)
        .server(&server.handle())
        .build()
        .expect("adapter");
    let runtime = ServerRuntime::new();
    let axum_addr = runtime.serve_axum(support::app(adapter.clone(), probes));
    let url = format!("ws://{axum_addr}{WS_PATH}");
    let (mut on_adapter, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url))
        .await
        .expect("connected within the step")
        .expect("connect");
    let (thread, _) = opened(&mut events).await;
    assert!(thread.starts_with("ringws-adapter-"), "{thread}");
    let url = format!("ws://{}{WS_PATH}", server.local_addr());
    let (mut on_shard, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url))
        .await
        .expect("connected within the step")
        .expect("connect");
    opened(&mut events).await;

    server.handle().shutdown_within(Duration::from_secs(5));
    for client in [&mut on_adapter, &mut on_shard] {
        match next_frame(client).await {
            Some(WsMessage::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1001),
            other => panic!("expected close 1001, got {other:?}"),
        }
        assert!(next_frame(client).await.is_none());
    }
    for _ in 0..2 {
        assert_eq!(closed(&mut events).await.code.0, 1001);
    }
    drop(runtime);
}
