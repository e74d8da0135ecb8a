//! The chat demo of `ringws serve`, built by the same function the command uses
//! (`src/bin/ringws/chat.rs`, included here): members on different shards all receive
//! every message, leaving members are announced, and the page is served.

#[path = "../src/bin/ringws/chat.rs"]
mod chat;
mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ringws::{RunningServer, Server};
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn chat_server() -> RunningServer {
    chat::add_chat(Server::builder().bind("127.0.0.1:0").shards(4))
        .build()
        .expect("build")
        .start()
        .expect("start")
}

/// The next text message, within 5 s.
async fn next_text(client: &mut Client) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("a message within 5 s")
            .expect("stream open")
            .expect("valid message");
        if let WsMessage::Text(text) = message {
            return text.to_string();
        }
    }
}

/// The next event of `kind`, skipping others (joins of later members, say).
async fn next_event(client: &mut Client, kind: &str) -> String {
    let tag = format!(r#""type":"{kind}""#);
    loop {
        let text = next_text(client).await;
        if text.contains(&tag) {
            return text;
        }
    }
}

/// A number field of a flat JSON object.
fn number(json: &str, field: &str) -> usize {
    let key = format!(r#""{field}":"#);
    let start = json.find(&key).expect(field) + key.len();
    let digits: String = json[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("a number")
}

/// A string field of a flat JSON object (no escapes in the values these tests use).
fn string(json: &str, field: &str) -> String {
    let key = format!(r#""{field}":""#);
    let start = json.find(&key).expect(field) + key.len();
    json[start..].split('"').next().unwrap_or("").to_owned()
}

/// Connects members until they sit on at least two shards (and there are at least
/// three of them); returns each with its name and shard.
async fn members(server: &RunningServer) -> Vec<(Client, String, usize)> {
    let url = format!("ws://{}/chat", server.local_addr());
    let mut members = Vec::new();
    let mut shards = BTreeSet::new();
    while members.len() < 3 || shards.len() < 2 {
        assert!(members.len() < 64, "64 members all landed on one shard");
        let (mut client, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("connect");
        let welcome = next_text(&mut client).await;
        assert!(welcome.contains(r#""type":"welcome""#), "{welcome}");
        assert_eq!(number(&welcome, "members"), members.len() + 1, "{welcome}");
        let shard = number(&welcome, "shard");
        shards.insert(shard);
        members.push((client, string(&welcome, "name"), shard));
    }
    members
}

#[tokio::test]
async fn every_member_on_every_shard_receives_each_message() {
    let server = chat_server();
    let mut members = members(&server).await;
    let (sender, sender_name, sender_shard) = members.last_mut().expect("members");
    let (sender_name, sender_shard) = (sender_name.clone(), *sender_shard);
    sender
        .send(WsMessage::text("hello, \"everyone\""))
        .await
        .expect("send");
    for (client, name, _) in &mut members {
        let message = next_event(client, "message").await;
        assert!(
            message.contains(r#""text":"hello, \"everyone\"""#),
            "{name}: {message}"
        );
        assert_eq!(string(&message, "from"), sender_name);
        assert_eq!(number(&message, "shard"), sender_shard);
    }
    // A second message, from the first member, arrives in order after the first.
    members[0]
        .0
        .send(WsMessage::text("second"))
        .await
        .expect("send");
    for (client, _, _) in &mut members {
        let message = next_event(client, "message").await;
        assert!(message.contains(r#""text":"second""#), "{message}");
    }
}

#[tokio::test]
async fn renames_and_departures_are_announced() {
    let server = chat_server();
    let mut members = members(&server).await;
    let (mut leaver, leaver_name, _) = members.remove(0);
    leaver
        .send(WsMessage::text("/nick Ada"))
        .await
        .expect("send");
    for (client, _, _) in &mut members {
        let nick = next_event(client, "nick").await;
        assert_eq!(string(&nick, "from"), leaver_name);
        assert_eq!(string(&nick, "to"), "Ada");
    }
    leaver.close(None).await.expect("close");
    for (client, _, _) in &mut members {
        let leave = next_event(client, "leave").await;
        assert_eq!(string(&leave, "name"), "Ada");
    }
    // The room no longer counts the one who left.
    let url = format!("ws://{}/chat", server.local_addr());
    let (mut late, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    let welcome = next_text(&mut late).await;
    assert_eq!(number(&welcome, "members"), members.len() + 1, "{welcome}");
}

#[test]
fn the_page_and_its_assets_are_served() {
    let server = chat_server();
    let get = |path: &str| {
        let mut stream = common::raw_connect(server.local_addr());
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("write");
        common::read_to_close(&mut stream)
    };
    let page = get("/");
    assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
    assert!(page.contains("Content-Type: text/html; charset=utf-8"));
    assert!(page.contains("<title>ringws chat</title>"));
    assert!(page.contains(r#"<script src="/chat.js">"#));
    let script = get("/chat.js");
    assert!(script.contains("Content-Type: text/javascript; charset=utf-8"));
    assert!(script.contains("new WebSocket("));
    assert!(get("/chat.css").contains("Content-Type: text/css; charset=utf-8"));
    assert!(get("/nothing-here").starts_with("HTTP/1.1 404 "));
}
