//! Each peer binary echoes a text message and a 1 MiB binary message.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Kills the spawned peer (by its own handle, i.e. its PID) when the test ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(exe: &str, port: u16) -> Peer {
    let child = Command::new(exe)
        .args(["--bind", &format!("127.0.0.1:{port}"), "--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn peer");
    Peer(child)
}

async fn check_echo(exe: &str) {
    let port = free_port();
    let _peer = spawn(exe, port);
    let url = format!("ws://127.0.0.1:{port}/any/path");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ws = loop {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((ws, _)) => break ws,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{exe}: connect: {e}"),
        }
    };

    ws.send(Message::text("héllo, peer ✓")).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "héllo, peer ✓"),
        other => panic!("{exe}: expected text echo, got {other:?}"),
    }

    let big: Vec<u8> = (0..1usize << 20).map(|i| (i * 7 + i / 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Binary(b))) => assert!(b[..] == big[..], "{exe}: 1 MiB echo differs"),
        other => panic!("{exe}: expected binary echo, got {other:?}"),
    }

    ws.close(None).await.unwrap();
    // The peer answers the close; the stream then ends.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(m) = ws.next().await {
            if m.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{exe}: no close answer");
}

#[tokio::test]
async fn tungstenite_echoes() {
    check_echo(env!("CARGO_BIN_EXE_peer-tungstenite")).await;
}

#[tokio::test]
async fn fastwebsockets_echoes() {
    check_echo(env!("CARGO_BIN_EXE_peer-fastwebsockets")).await;
}

#[tokio::test]
async fn adapter_echoes() {
    check_echo(env!("CARGO_BIN_EXE_peer-adapter")).await;
}
