//! End-to-end runs against a real client (tokio-tungstenite) over loopback.

mod common;

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ringws::proto::CloseCode as Code;
use ringws::{
    Accept, CloseInitiator, CloseReason, Conn, ConnHandle, Handler, Message, Reject, SendStatus,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message as WsMessage};

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Client {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (client, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .expect("connect");
    client
}

async fn next_message(client: &mut Client) -> WsMessage {
    tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .expect("timed out waiting for a message")
        .expect("stream ended")
        .expect("websocket error")
}

/// The client's stream ends (after the close handshake) within 10 s, with nothing more.
async fn expect_end(client: &mut Client) {
    match tokio::time::timeout(Duration::from_secs(10), client.next()).await {
        Ok(None) => {}
        Ok(Some(other)) => panic!("expected the end of the stream, got {other:?}"),
        Err(_) => panic!("the stream did not end within 10 s"),
    }
}

/// The next thing a handler reported from its shard (the test thread asserts on it).
#[track_caller]
fn next_report<T>(reports: &Receiver<T>) -> T {
    reports
        .recv_timeout(Duration::from_secs(10))
        .expect("no report from the handler within 10 s")
}

fn close_reason(code: u16, reason: &str, initiator: CloseInitiator) -> CloseReason {
    CloseReason {
        code: Code(code),
        reason: reason.to_owned(),
        initiator,
    }
}

#[tokio::test]
async fn echoes_text_and_binary_of_every_length_class() {
    let server = common::echo_server();
    let mut client = connect(&format!("ws://{}/echo", server.local_addr())).await;
    for size in [0usize, 1, 125, 126, 65535, 65536, 1 << 20] {
        let text: String = (0..size)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        client
            .send(WsMessage::text(text.clone()))
            .await
            .expect("send text");
        assert_eq!(
            next_message(&mut client).await,
            WsMessage::text(text),
            "text of {size} bytes"
        );
        let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        client
            .send(WsMessage::binary(bytes.clone()))
            .await
            .expect("send binary");
        assert_eq!(
            next_message(&mut client).await,
            WsMessage::binary(bytes),
            "binary of {size} bytes"
        );
    }
    client.close(None).await.expect("close");
}

#[tokio::test]
async fn answers_pings_with_pongs() {
    let server = common::echo_server();
    let mut client = connect(&format!("ws://{}/echo", server.local_addr())).await;
    client
        .send(WsMessage::Ping(b"are you there".to_vec().into()))
        .await
        .expect("ping");
    assert_eq!(
        next_message(&mut client).await,
        WsMessage::Pong(b"are you there".to_vec().into())
    );
}

#[tokio::test]
async fn client_initiated_close_is_echoed() {
    let server = common::echo_server();
    let mut client = connect(&format!("ws://{}/echo", server.local_addr())).await;
    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: "leaving".into(),
    };
    client
        .send(WsMessage::Close(Some(frame)))
        .await
        .expect("close");
    // The code comes back; the reason is not echoed.
    let echoed = CloseFrame {
        code: CloseCode::Away,
        reason: "".into(),
    };
    assert_eq!(
        next_message(&mut client).await,
        WsMessage::Close(Some(echoed))
    );
    expect_end(&mut client).await;
}

/// What [`Closer`] saw on its shard, for the test thread to check.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// What a send right after `close` returned.
    SendAfterClose(SendStatus),
    Closed(CloseReason),
}

/// Closes on "bye" and reports what a send after that returned, and every close reason
/// it sees.
struct Closer(Sender<Seen>);

impl Handler for Closer {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        if message == Message::Text("bye") {
            conn.close(4000, "asked to leave");
            let status = conn.send_text("too late");
            let _ = self.0.send(Seen::SendAfterClose(status));
        }
    }
    fn on_close(&mut self, _conn: &mut Conn<'_>, reason: CloseReason) {
        let _ = self.0.send(Seen::Closed(reason));
    }
}

#[tokio::test]
async fn server_initiated_close_completes_the_handshake() {
    let (seen_tx, seen) = mpsc::channel();
    let server = common::builder()
        .websocket("/close", move || Closer(seen_tx.clone()))
        .build()
        .expect("build")
        .start()
        .expect("start");
    let mut client = connect(&format!("ws://{}/close", server.local_addr())).await;
    client.send(WsMessage::text("bye")).await.expect("send");
    // Sends after close are dropped, never sent behind the close frame.
    assert_eq!(
        next_report(&seen),
        Seen::SendAfterClose(SendStatus::Dropped)
    );
    let frame = CloseFrame {
        code: CloseCode::from(4000),
        reason: "asked to leave".into(),
    };
    assert_eq!(
        next_message(&mut client).await,
        WsMessage::Close(Some(frame))
    );
    // tungstenite answers the close; the server then reports it and drops the socket.
    expect_end(&mut client).await;
    assert_eq!(
        next_report(&seen),
        Seen::Closed(close_reason(4000, "asked to leave", CloseInitiator::Local))
    );
    // Once the server stopped (dropping every handler), nothing else was reported.
    server.shutdown().expect("clean shutdown");
    match seen.recv_timeout(Duration::from_secs(10)) {
        Err(RecvTimeoutError::Disconnected) => {}
        other => panic!("one report too many: {other:?}"),
    }
}

#[tokio::test]
async fn upgrade_hook_sees_the_request_and_picks_a_subprotocol() {
    // The hook reports the query it saw; the test thread checks it.
    let (queries_tx, queries) = mpsc::channel();
    let queries_tx = Mutex::new(queries_tx);
    // The hook checks the origin itself, so the route's own policy lets every one in.
    let any =
        ringws::WebSocketOptions::default().allowed_origins(ringws::handshake::OriginPolicy::Any);
    let server = common::builder()
        .websocket_with_options("/chat", any, move |request| {
            let query = request.query().map(str::to_owned);
            let _ = queries_tx.lock().expect("lock").send(query);
            if request.origin() != Some("https://good.example") {
                return Err(Reject::new(403, "origin not allowed"));
            }
            let chosen = request
                .protocols()
                .find(|p| *p == "chat.v2")
                .map(str::to_owned);
            let accept = Accept::new(common::Echo).header("X-Room", "1");
            Ok(match chosen {
                Some(protocol) => accept.protocol(protocol),
                None => accept,
            })
        })
        .build()
        .expect("build")
        .start()
        .expect("start");
    let url = format!("ws://{}/chat?room=1", server.local_addr());

    let mut request = url.as_str().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Origin", "https://good.example".parse().expect("header"));
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "chat.v1, chat.v2".parse().expect("header"),
    );
    let (mut client, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("accepted");
    assert_eq!(next_report(&queries).as_deref(), Some("room=1"));
    assert_eq!(response.headers()["Sec-WebSocket-Protocol"], "chat.v2");
    assert_eq!(response.headers()["X-Room"], "1");
    client.send(WsMessage::text("hi")).await.expect("send");
    assert_eq!(next_message(&mut client).await, WsMessage::text("hi"));

    let mut request = url.as_str().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Origin", "https://evil.example".parse().expect("header"));
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            let body = response.body().as_deref().unwrap_or_default();
            assert_eq!(String::from_utf8_lossy(body), "origin not allowed\n");
        }
        other => panic!("expected 403, got {other:?}"),
    }
    assert_eq!(next_report(&queries).as_deref(), Some("room=1"));
}

/// Tells each client which shard owns it, and relays "to:<n>:<count>" as `count`
/// numbered messages sent from another thread through client n's `ConnHandle`; that
/// thread reports how its posts went (the test thread asserts).
struct Relay {
    handles: Arc<Mutex<Vec<ConnHandle>>>,
    posts: Sender<Result<usize, String>>,
}

impl Handler for Relay {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let mut handles = self.handles.lock().expect("lock");
        conn.send_text(&format!(
            "you are {} on shard {}",
            handles.len(),
            conn.id().shard()
        ));
        handles.push(conn.handle());
    }
    fn on_message(&mut self, _conn: &mut Conn<'_>, message: Message<'_>) {
        let mut parts = message.as_bytes().split(|&b| b == b':').skip(1);
        let mut number = || {
            let part = std::str::from_utf8(parts.next()?).ok()?;
            part.parse::<usize>().ok()
        };
        let (Some(target), Some(count)) = (number(), number()) else {
            let _ = self.posts.send(Err(format!("bad request {message:?}")));
            return;
        };
        let Some(handle) = self.handles.lock().expect("lock").get(target).cloned() else {
            let _ = self.posts.send(Err(format!("no client {target}")));
            return;
        };
        let posts = self.posts.clone();
        std::thread::spawn(move || {
            let mut accepted = 0;
            for i in 0..count {
                if let Err(error) = handle.send_text(&i.to_string()) {
                    let _ = posts.send(Err(format!("message {i}: {error:?}")));
                    return;
                }
                accepted += 1;
            }
            let _ = posts.send(match handle.close(1000, "relay done") {
                Ok(()) => Ok(accepted + 1),
                Err(error) => Err(format!("close: {error:?}")),
            });
        });
    }
}

#[tokio::test]
async fn conn_handle_reaches_a_connection_on_another_shard_in_order() {
    let handles = Arc::new(Mutex::new(Vec::new()));
    let registry = Arc::clone(&handles);
    let (posts_tx, posts) = mpsc::channel();
    let server = common::builder()
        .shards(4)
        .websocket("/relay", move || Relay {
            handles: Arc::clone(&registry),
            posts: posts_tx.clone(),
        })
        .build()
        .expect("build")
        .start()
        .expect("start");
    let url = format!("ws://{}/relay", server.local_addr());
    // Connect until two clients sit on different shards (SO_REUSEPORT spreads them).
    let mut clients: Vec<(Client, usize, String)> = Vec::new();
    let (sender, receiver) = loop {
        assert!(clients.len() < 64, "every connection landed on one shard");
        let mut client = connect(&url).await;
        let WsMessage::Text(greeting) = next_message(&mut client).await else {
            panic!("no greeting")
        };
        // Clients are numbered in the order they opened, which is the order here.
        let index = clients.len();
        let shard = greeting
            .strip_prefix(&format!("you are {index} on shard "))
            .unwrap_or_else(|| panic!("greeting {greeting:?} for client {index}"))
            .to_owned();
        assert!(shard.parse::<usize>().is_ok_and(|s| s < 4), "{greeting}");
        if let Some(other) = clients.iter().position(|(_, _, s)| *s != shard) {
            break (other, (client, index, shard));
        }
        clients.push((client, index, shard));
    };
    let (sender_client, _, _) = &mut clients[sender];
    let (mut receiver_client, receiver_index, _) = receiver;
    sender_client
        .send(WsMessage::text(format!("to:{receiver_index}:2000")))
        .await
        .expect("send");
    for i in 0..2000 {
        assert_eq!(
            next_message(&mut receiver_client).await,
            WsMessage::text(i.to_string())
        );
    }
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "relay done".into(),
    };
    assert_eq!(
        next_message(&mut receiver_client).await,
        WsMessage::Close(Some(frame))
    );
    expect_end(&mut receiver_client).await;
    // Every post (2000 messages and the close) was accepted.
    assert_eq!(next_report(&posts), Ok(2001));
}

#[tokio::test]
async fn shutdown_closes_connections_with_going_away() {
    let server = common::echo_server();
    let mut client = connect(&format!("ws://{}/echo", server.local_addr())).await;
    client.send(WsMessage::text("x")).await.expect("send");
    assert_eq!(next_message(&mut client).await, WsMessage::text("x"));
    let stopper = std::thread::spawn(move || server.shutdown());
    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: "server shutting down".into(),
    };
    assert_eq!(
        next_message(&mut client).await,
        WsMessage::Close(Some(frame))
    );
    expect_end(&mut client).await;
    stopper.join().expect("join").expect("clean shutdown");
}

/// Panics on "boom" (on purpose), echoes anything else as binary; reports each close.
struct Fragile(Sender<CloseReason>);

impl Handler for Fragile {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        if message == Message::Text("boom") {
            panic!("handler bug triggered on purpose");
        }
        conn.send_binary(message.as_bytes());
    }
    fn on_close(&mut self, _conn: &mut Conn<'_>, reason: CloseReason) {
        let _ = self.0.send(reason);
    }
}

#[tokio::test]
async fn a_panicking_handler_fails_only_its_connection_with_1011() {
    let (closes_tx, closes) = mpsc::channel();
    let server = common::builder()
        .shards(1)
        .websocket("/fragile", move || Fragile(closes_tx.clone()))
        .build()
        .expect("build")
        .start()
        .expect("start");
    let url = format!("ws://{}/fragile", server.local_addr());
    let mut bystander = connect(&url).await;
    let mut victim = connect(&url).await;
    victim.send(WsMessage::text("boom")).await.expect("send");
    let frame = CloseFrame {
        code: CloseCode::Error,
        reason: "internal server error".into(),
    };
    assert_eq!(
        next_message(&mut victim).await,
        WsMessage::Close(Some(frame))
    );
    expect_end(&mut victim).await;
    // The handler hears of its own failure (once, from this side).
    assert_eq!(
        next_report(&closes),
        close_reason(1011, "internal server error", CloseInitiator::Local)
    );
    bystander
        .send(WsMessage::binary(vec![1, 2, 3]))
        .await
        .expect("send");
    assert_eq!(
        next_message(&mut bystander).await,
        WsMessage::binary(vec![1, 2, 3])
    );
    // The bystander is still open: no other close was reported.
    assert_eq!(closes.try_recv(), Err(mpsc::TryRecvError::Empty));
}
