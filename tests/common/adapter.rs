//! Shared by the adapter's end-to-end tests (`tests/axum.rs`, `tests/hand_off.rs`),
//! which include it with `#[path]` so the other test binaries do not build axum: the
//! probe handler both a ringws `Server` and an axum app run, the app itself (a JSON
//! route and the probe on `any(..)`), an axum server on its own runtime, and the
//! client helpers (tokio-tungstenite, raw HTTP answers). Every wait is bounded.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use ringws::adapter::{Adapter, WebSocketUpgrade};
use ringws::{CloseReason, Conn, Handler, Message, SendStatus};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// What a test waits for at most, for any one step.
pub const STEP: Duration = Duration::from_secs(10);

/// The WebSocket route, on both fronts.
pub const WS_PATH: &str = "/ws";

/// The subprotocols the route speaks, best first.
pub const PROTOCOLS: [&str; 2] = ["chat", "superchat"];

/// The answer of `/api/health`.
pub const HEALTH: &str = r#"{"status":"ok"}"#;

/// The flood's messages (`flood`): sizes that no loopback socket buffers with a
/// small receive buffer can take in without the client reading.
pub const FLOOD_MESSAGE: usize = 64 * 1024;
pub const FLOOD_MESSAGES: usize = 128;

/// What a probe handler tells the test, from whichever thread runs it.
#[derive(Debug)]
pub enum Event {
    /// `on_open`: the thread that runs the handler and the connection's shard.
    Open { thread: String, shard: usize },
    /// A `flood` was queued; true when a send answered `Backpressure`.
    Flooded { backpressure: bool },
    /// `on_drain` was called.
    Drained,
    /// `on_close`.
    Closed(CloseReason),
}

/// Makes probe handlers that report to one channel (the test's receiver).
#[derive(Clone)]
pub struct Probes {
    events: mpsc::UnboundedSender<Event>,
}

impl Probes {
    pub fn new() -> (Probes, mpsc::UnboundedReceiver<Event>) {
        let (events, rx) = mpsc::unbounded_channel();
        (Probes { events }, rx)
    }

    pub fn handler(&self) -> Probe {
        Probe {
            events: self.events.clone(),
        }
    }
}

/// The handler under test, the same on a shard and on an adapter thread. It echoes
/// every message, except the text commands:
/// - `close`: closes with 4001 "handler says bye";
/// - `handle`: a `std::thread` sends "from a std thread" and a binary `[1, 2, 3]`
///   through the connection's `ConnHandle`;
/// - `flood`: queues [`FLOOD_MESSAGES`] binary messages of [`FLOOD_MESSAGE`] bytes
///   (message `i` filled with `i as u8`), then the text "flood queued";
///   `on_drain` answers "drained";
/// - `where`: answers "THREAD SHARD";
/// - `sub:TOPIC`: subscribes, answers "subscribed TOPIC";
/// - `pub:TOPIC:TEXT`: publishes TEXT to TOPIC (not to itself).
pub struct Probe {
    events: mpsc::UnboundedSender<Event>,
}

fn thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed>")
        .to_owned()
}

impl Handler for Probe {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let _ = self.events.send(Event::Open {
            thread: thread_name(),
            shard: conn.id().shard(),
        });
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text("close") => conn.close(4001, "handler says bye"),
            Message::Text("handle") => {
                let handle = conn.handle();
                std::thread::spawn(move || {
                    handle.send_text("from a std thread").expect("send_text");
                    handle.send_binary(&[1, 2, 3]).expect("send_binary");
                });
            }
            Message::Text("flood") => {
                let mut backpressure = false;
                for i in 0..FLOOD_MESSAGES {
                    match conn.send_binary(&vec![i as u8; FLOOD_MESSAGE]) {
                        SendStatus::Backpressure => backpressure = true,
                        SendStatus::Queued => {}
                        other => panic!("flood message {i}: {other:?}"),
                    }
                }
                conn.send_text("flood queued");
                let _ = self.events.send(Event::Flooded { backpressure });
            }
            Message::Text("where") => {
                let answer = format!("{} {}", thread_name(), conn.id().shard());
                conn.send_text(&answer);
            }
            Message::Text(text) if text.starts_with("sub:") => {
                let topic = &text["sub:".len()..];
                assert!(conn.subscribe(topic), "subscribed twice to {topic}");
                conn.send_text(&format!("subscribed {topic}"));
            }
            Message::Text(text) if text.starts_with("pub:") => {
                let (topic, said) = text["pub:".len()..].split_once(':').expect("pub:T:X");
                conn.publish(topic, Message::Text(said));
            }
            Message::Text(text) => {
                conn.send_text(text);
            }
            Message::Binary(bytes) => {
                conn.send_binary(bytes);
            }
        }
    }

    fn on_drain(&mut self, conn: &mut Conn<'_>) {
        let _ = self.events.send(Event::Drained);
        conn.send_text("drained");
    }

    fn on_close(&mut self, _conn: &mut Conn<'_>, reason: CloseReason) {
        let _ = self.events.send(Event::Closed(reason));
    }
}

/// The first subprotocol of [`PROTOCOLS`] the client offered (the rule of the
/// adapter's `WebSocketUpgrade::protocols`, which the server's hook follows too).
pub fn choose_protocol<'a>(offered: impl Iterator<Item = &'a str>) -> Option<&'static str> {
    let offered: Vec<&str> = offered.collect();
    PROTOCOLS.into_iter().find(|p| offered.contains(p))
}

/// The ringws server of the tests: `/api/health` and the probe on [`WS_PATH`],
/// speaking [`PROTOCOLS`] (chosen in the `websocket_with` hook).
pub fn server_builder(probes: &Probes) -> ringws::Builder {
    let probes = probes.clone();
    crate::common::builder()
        .http("/api/health", |_| {
            ringws::HttpResponse::new(200, "application/json", HEALTH)
        })
        .websocket_with(WS_PATH, move |request| {
            let accept = ringws::Accept::new(probes.handler());
            Ok(match choose_protocol(request.protocols()) {
                Some(protocol) => accept.protocol(protocol),
                None => accept,
            })
        })
}

/// The axum app's state: the adapter (the extractor takes it by `FromRef`) and the
/// probes.
#[derive(Clone)]
pub struct AppState {
    pub adapter: Adapter,
    pub probes: Probes,
}

impl axum::extract::FromRef<AppState> for Adapter {
    fn from_ref(state: &AppState) -> Adapter {
        state.adapter.clone()
    }
}

async fn health() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], HEALTH)
}

async fn probe_route(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    let probes = state.probes.clone();
    upgrade
        .protocols(PROTOCOLS)
        .on_upgrade(move || probes.handler())
        .into_response()
}

/// The axum app: an ordinary JSON route and the probe mounted with `any(..)`.
pub fn app(adapter: Adapter, probes: Probes) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route(WS_PATH, any(probe_route))
        .with_state(AppState { adapter, probes })
}

/// A tokio runtime of its own for a server under test (so the test's blocking raw
/// clients never stall it); shut down in the background when dropped.
pub struct ServerRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl ServerRuntime {
    pub fn new() -> ServerRuntime {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        ServerRuntime {
            runtime: Some(runtime),
        }
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.as_ref().expect("runtime").handle().clone()
    }

    /// Serves `app` with `axum::serve` on a fresh `127.0.0.1:0` listener.
    pub fn serve_axum(&self, app: Router) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("local addr");
        self.handle().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("axum::serve");
        });
        addr
    }
}

impl Default for ServerRuntime {
    fn default() -> Self {
        ServerRuntime::new()
    }
}

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The next event `wanted` picks (others are skipped), within [`STEP`].
pub async fn event<T>(
    events: &mut mpsc::UnboundedReceiver<Event>,
    mut wanted: impl FnMut(Event) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("the awaited handler event within the step")
            .expect("the probes are alive");
        if let Some(found) = wanted(event) {
            return found;
        }
    }
}

/// The next `on_open`: (thread name, shard).
pub async fn opened(events: &mut mpsc::UnboundedReceiver<Event>) -> (String, usize) {
    event(events, |event| match event {
        Event::Open { thread, shard } => Some((thread, shard)),
        _ => None,
    })
    .await
}

/// The next `on_close`.
pub async fn closed(events: &mut mpsc::UnboundedReceiver<Event>) -> CloseReason {
    event(events, |event| match event {
        Event::Closed(reason) => Some(reason),
        _ => None,
    })
    .await
}

pub type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next message of any kind (pings and pongs included), within [`STEP`];
/// `None` when the stream ended.
pub async fn next_frame<S>(client: &mut S) -> Option<WsMessage>
where
    S: futures_util::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    use futures_util::StreamExt;
    tokio::time::timeout(STEP, client.next())
        .await
        .expect("a frame or the end within the step")
        .map(|message| message.expect("a valid message"))
}

/// The next text message (anything else fails).
pub async fn next_text<S>(client: &mut S) -> String
where
    S: futures_util::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    match next_frame(client).await {
        Some(WsMessage::Text(text)) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// A header of an HTTP response head, by case-insensitive name (hyper writes them in
/// lower case, ringws capitalised).
pub fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The status code of an HTTP response head.
pub fn status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// Sends `request` on a fresh raw connection and reads the answer: head and body
/// (`Content-Length`; the connection may stay open).
pub fn raw_request(addr: SocketAddr, request: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = crate::common::raw_connect(addr);
    stream.write_all(request.as_bytes()).expect("write");
    let head = crate::common::read_head(&mut stream);
    let length: usize = header(&head, "content-length")
        .unwrap_or_else(|| panic!("a Content-Length in {head:?}"))
        .parse()
        .expect("length");
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("the body");
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// An upgrade request for [`WS_PATH`] with `extra` header lines (each ending in
/// `\r\n`), without or with the usual key and version.
pub fn upgrade_request(addr: SocketAddr, key_and_version: bool, extra: &str) -> String {
    let key = if key_and_version {
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    } else {
        ""
    };
    format!(
        "GET {WS_PATH} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\n{key}{extra}\r\n"
    )
}

/// A raw WebSocket on [`WS_PATH`]: the upgrade answered 101 with the right accept key
/// (header names in any case).
pub fn raw_ws(addr: SocketAddr) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = crate::common::raw_connect(addr);
    stream
        .write_all(upgrade_request(addr, true, "").as_bytes())
        .expect("write");
    let head = crate::common::read_head(&mut stream);
    assert_eq!(status(&head), 101, "{head}");
    assert_eq!(
        header(&head, "sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    stream
}

/// Waits (polling, within [`STEP`]) until `condition` holds.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within the step: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
