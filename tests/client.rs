//! End-to-end runs against a real client (tokio-tungstenite) over loopback.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ringws::{Accept, CloseInitiator, CloseReason, Conn, ConnHandle, Handler, Message, Reject};
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
    match next_message(&mut client).await {
        WsMessage::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected the close echoed, got {other:?}"),
    }
}

/// Closes on "bye" and records every close reason it sees.
struct Closer(Arc<Mutex<Vec<CloseReason>>>);

impl Handler for Closer {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        if message == Message::Text("bye") {
            conn.close(4000, "asked to leave");
            // Sends after close are dropped, never sent behind the close frame.
            assert_eq!(conn.send_text("too late"), ringws::SendStatus::Dropped);
        }
    }
    fn on_close(&mut self, _conn: &mut Conn<'_>, reason: CloseReason) {
        self.0.lock().expect("lock").push(reason);
    }
}

#[tokio::test]
async fn server_initiated_close_completes_the_handshake() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&closes);
    let server = common::builder()
        .websocket("/close", move || Closer(Arc::clone(&seen)))
        .build()
        .expect("build")
        .start()
        .expect("start");
    let mut client = connect(&format!("ws://{}/close", server.local_addr())).await;
    client.send(WsMessage::text("bye")).await.expect("send");
    match next_message(&mut client).await {
        WsMessage::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4000);
            assert_eq!(frame.reason.as_str(), "asked to leave");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    // tungstenite answers the close; the server then reports it and drops the socket.
    assert!(tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .expect("socket closed")
        .is_none());
    for _ in 0..100 {
        if !closes.lock().expect("lock").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closes = closes.lock().expect("lock");
    assert_eq!(closes.len(), 1);
    assert_eq!(closes[0].code.0, 4000);
    assert_eq!(closes[0].initiator, CloseInitiator::Local);
}

#[tokio::test]
async fn upgrade_hook_sees_the_request_and_picks_a_subprotocol() {
    let server = common::builder()
        .websocket_with("/chat", |request| {
            if request.origin() != Some("https://good.example") {
                return Err(Reject::new(403, "origin not allowed"));
            }
            assert_eq!(request.query(), Some("room=1"));
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
}

/// Tells each client which shard owns it, and relays "to:<n>:<count>" as `count`
/// numbered messages sent from another thread through client n's `ConnHandle`.
struct Relay(Arc<Mutex<Vec<ConnHandle>>>);

impl Handler for Relay {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let mut handles = self.0.lock().expect("lock");
        conn.send_text(&format!(
            "you are {} on shard {}",
            handles.len(),
            conn.id().shard()
        ));
        handles.push(conn.handle());
    }
    fn on_message(&mut self, _conn: &mut Conn<'_>, message: Message<'_>) {
        let Message::Text(text) = message else { return };
        let mut parts = text.split(':').skip(1);
        let target: usize = parts.next().and_then(|n| n.parse().ok()).expect("target");
        let count: usize = parts.next().and_then(|n| n.parse().ok()).expect("count");
        let handle = self.0.lock().expect("lock")[target].clone();
        std::thread::spawn(move || {
            for i in 0..count {
                handle.send_text(&i.to_string()).expect("shard running");
            }
            handle.close(1000, "relay done").expect("shard running");
        });
    }
}

#[tokio::test]
async fn conn_handle_reaches_a_connection_on_another_shard_in_order() {
    let handles = Arc::new(Mutex::new(Vec::new()));
    let registry = Arc::clone(&handles);
    let server = common::builder()
        .shards(4)
        .websocket("/relay", move || Relay(Arc::clone(&registry)))
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
        let index: usize = greeting
            .split(' ')
            .nth(2)
            .and_then(|n| n.parse().ok())
            .expect("index");
        let shard = greeting.rsplit(' ').next().expect("shard").to_owned();
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
    match next_message(&mut receiver_client).await {
        WsMessage::Close(Some(frame)) => assert_eq!(frame.reason.as_str(), "relay done"),
        other => panic!("expected the relayed close, got {other:?}"),
    }
}

#[tokio::test]
async fn shutdown_closes_connections_with_going_away() {
    let server = common::echo_server();
    let mut client = connect(&format!("ws://{}/echo", server.local_addr())).await;
    client.send(WsMessage::text("x")).await.expect("send");
    assert_eq!(next_message(&mut client).await, WsMessage::text("x"));
    let stopper = std::thread::spawn(move || server.shutdown());
    match next_message(&mut client).await {
        WsMessage::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected 1001, got {other:?}"),
    }
    stopper.join().expect("join").expect("clean shutdown");
}

/// Panics on "boom", echoes anything else.
struct Fragile;

impl Handler for Fragile {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        assert_ne!(
            message,
            Message::Text("boom"),
            "handler bug triggered on purpose"
        );
        conn.send_binary(message.as_bytes());
    }
}

#[tokio::test]
async fn a_panicking_handler_fails_only_its_connection_with_1011() {
    let server = common::builder()
        .shards(1)
        .websocket("/fragile", || Fragile)
        .build()
        .expect("build")
        .start()
        .expect("start");
    let url = format!("ws://{}/fragile", server.local_addr());
    let mut bystander = connect(&url).await;
    let mut victim = connect(&url).await;
    victim.send(WsMessage::text("boom")).await.expect("send");
    match next_message(&mut victim).await {
        WsMessage::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Error),
        other => panic!("expected 1011, got {other:?}"),
    }
    bystander
        .send(WsMessage::binary(vec![1, 2, 3]))
        .await
        .expect("send");
    assert_eq!(
        next_message(&mut bystander).await,
        WsMessage::binary(vec![1, 2, 3])
    );
}
