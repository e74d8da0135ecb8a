//! The chat demo of `ringws serve`, built by the same function the command uses
//! (`src/bin/ringws/chat.rs`, included here): members on different shards all receive
//! every message, arrivals, departures and renames are announced with the room's
//! count (and the renamed member told it is them), and the page and icon are served.

#[path = "../src/bin/ringws/chat.rs"]
mod chat;
mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ringws::handshake::OriginPolicy;
use ringws::{RunningServer, Server};
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn chat_server() -> RunningServer {
    // The default of `ringws serve --allowed-origins`; the clients here send no Origin.
    let builder = Server::builder().bind("127.0.0.1:0").shards(4);
    chat::add_chat(builder, OriginPolicy::SameOrigin)
        .build()
        .expect("build")
        .start()
        .expect("start")
}

/// The next text message, within 10 s (pings and pongs are skipped; anything else
/// fails the test).
async fn next_text(client: &mut Client) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("a message within 10 s")
            .expect("stream open")
            .expect("valid message");
        match message {
            WsMessage::Text(text) => return text.to_string(),
            WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
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

/// Connects members until they sit on at least two shards (and there are at least
/// three of them); returns each with its name and shard. Each has read its welcome,
/// and the join of every member after it (in order: each join is broadcast before
/// the next member connects, and a shard's mailbox is FIFO).
async fn members(server: &RunningServer) -> Vec<(Client, String, usize)> {
    let url = format!("ws://{}/chat", server.local_addr());
    let mut members: Vec<(Client, String, usize)> = Vec::new();
    let mut shards = BTreeSet::new();
    while members.len() < 3 || shards.len() < 2 {
        assert!(members.len() < 64, "64 members all landed on one shard");
        let (mut client, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("connect");
        let welcome = next_text(&mut client).await;
        // Guests are numbered from 1 in the order they joined.
        let name = format!("guest-{}", members.len() + 1);
        let shard = number(&welcome, "shard");
        assert!(shard < 4, "{welcome}");
        assert_eq!(
            welcome,
            format!(
                r#"{{"type":"welcome","name":"{name}","shard":{shard},"members":{}}}"#,
                members.len() + 1
            )
        );
        shards.insert(shard);
        members.push((client, name, shard));
    }
    // Each join carries the count with the newcomer.
    let joins: Vec<String> = members
        .iter()
        .enumerate()
        .map(|(i, (_, name, shard))| {
            let count = i + 1;
            format!(r#"{{"type":"join","name":"{name}","shard":{shard},"members":{count}}}"#)
        })
        .collect();
    for (i, (client, name, _)) in members.iter_mut().enumerate() {
        for join in &joins[i + 1..] {
            assert_eq!(&next_text(client).await, join, "{name}");
        }
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
    let want = format!(
        r#"{{"type":"message","from":"{sender_name}","shard":{sender_shard},"text":"hello, \"everyone\""}}"#
    );
    for (client, name, _) in &mut members {
        assert_eq!(next_text(client).await, want, "{name}");
    }
    // A second message, from the first member, arrives in order after the first.
    let (first_name, first_shard) = (members[0].1.clone(), members[0].2);
    members[0]
        .0
        .send(WsMessage::text("second"))
        .await
        .expect("send");
    let want = format!(
        r#"{{"type":"message","from":"{first_name}","shard":{first_shard},"text":"second"}}"#
    );
    for (client, name, _) in &mut members {
        assert_eq!(next_text(client).await, want, "{name}");
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
    let nick = format!(r#"{{"type":"nick","from":"{leaver_name}","to":"Ada"}}"#);
    for (client, name, _) in &mut members {
        assert_eq!(next_text(client).await, nick, "{name}");
    }
    // The renamed member's own copy says it is them (the page updates its name).
    assert_eq!(
        next_text(&mut leaver).await,
        format!(r#"{{"type":"nick","from":"{leaver_name}","to":"Ada","self":true}}"#)
    );
    leaver.close(None).await.expect("close");
    let leave = format!(
        r#"{{"type":"leave","name":"Ada","members":{}}}"#,
        members.len()
    );
    for (client, name, _) in &mut members {
        assert_eq!(next_text(client).await, leave, "{name}");
    }
    // The room no longer counts the one who left.
    let url = format!("ws://{}/chat", server.local_addr());
    let (mut late, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    let welcome = next_text(&mut late).await;
    let (name, shard) = (
        format!("guest-{}", members.len() + 2),
        number(&welcome, "shard"),
    );
    assert_eq!(
        welcome,
        format!(
            r#"{{"type":"welcome","name":"{name}","shard":{shard},"members":{}}}"#,
            members.len() + 1
        )
    );
    // And the others hear of the newcomer, with the count.
    let count = members.len() + 1;
    let join = format!(r#"{{"type":"join","name":"{name}","shard":{shard},"members":{count}}}"#);
    for (client, member, _) in &mut members {
        assert_eq!(next_text(client).await, join, "{member}");
    }
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
    let response = |status: &str, content_type: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    // The assets, byte for byte, from the files the binary embeds.
    let page = include_str!("../assets/chat/index.html");
    assert!(page.contains(r#"<script src="/chat.js">"#));
    let html = "text/html; charset=utf-8";
    assert_eq!(get("/"), response("200 OK", html, page));
    assert_eq!(get("/index.html"), response("200 OK", html, page));
    assert_eq!(
        get("/chat.js"),
        response(
            "200 OK",
            "text/javascript; charset=utf-8",
            include_str!("../assets/chat/chat.js")
        )
    );
    assert_eq!(
        get("/chat.css"),
        response(
            "200 OK",
            "text/css; charset=utf-8",
            include_str!("../assets/chat/chat.css")
        )
    );
    // The icon the page links, and an explicit empty answer where browsers look for
    // one on their own (no 404 in the console).
    let icon = include_str!("../assets/chat/favicon.svg");
    assert!(page.contains(r#"<link rel="icon" href="/favicon.svg" type="image/svg+xml">"#));
    assert_eq!(
        get("/favicon.svg"),
        response("200 OK", "image/svg+xml", icon)
    );
    assert_eq!(
        get("/favicon.ico"),
        "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(
        get("/nothing-here"),
        response(
            "404 Not Found",
            "text/plain; charset=utf-8",
            "no route for /nothing-here\n"
        )
    );
}
