//! The chat demo of `ringws serve`, built by the same function the command uses
//! (`src/bin/ringws/chat.rs`, included here): rooms are pub/sub topics; members start in
//! `lobby` and members on different shards all receive every message of their room,
//! arrivals, departures and renames are announced (the renamed or moved member told it
//! is them), `/join NAME` moves a member to another room (and refuses bad names), rooms
//! do not hear each other, text is relayed as JSON without HTML escaping, and the page
//! and icon are served.

#[path = "../src/bin/ringws/chat.rs"]
mod chat;
mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ringws::WebSocketOptions;
use ringws::{RunningServer, Server};
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn chat_server() -> RunningServer {
    // The default of `ringws serve --allowed-origins`; the clients here send no Origin.
    let builder = Server::builder().bind("127.0.0.1:0").shards(4);
    chat::add_chat(builder, WebSocketOptions::default())
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

async fn send(client: &mut Client, text: &str) {
    client.send(WsMessage::text(text)).await.expect("send");
}

/// Connects one member, reads its welcome (checked: it is guest-`guest`, in the
/// lobby) and returns it with its name and shard.
async fn connect(server: &RunningServer, guest: usize) -> (Client, String, usize) {
    let url = format!("ws://{}/chat", server.local_addr());
    let (mut client, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    let welcome = next_text(&mut client).await;
    let name = format!("guest-{guest}");
    let shard = number(&welcome, "shard");
    assert!(shard < 4, "{welcome}");
    assert_eq!(
        welcome,
        format!(r#"{{"type":"welcome","name":"{name}","shard":{shard},"room":"lobby"}}"#)
    );
    (client, name, shard)
}

/// Connects members until they sit on at least two shards (and there are at least
/// three of them); returns each with its name and shard. Each has read its welcome,
/// and the join of every member after it (in order: each join is published before
/// the next member connects, and a shard's mailbox is FIFO).
async fn members(server: &RunningServer) -> Vec<(Client, String, usize)> {
    let mut members: Vec<(Client, String, usize)> = Vec::new();
    let mut shards = BTreeSet::new();
    while members.len() < 3 || shards.len() < 2 {
        assert!(members.len() < 64, "64 members all landed on one shard");
        // Guests are numbered from 1 in the order they joined.
        let member = connect(server, members.len() + 1).await;
        shards.insert(member.2);
        members.push(member);
    }
    let joins: Vec<String> = members
        .iter()
        .map(|(_, name, shard)| {
            format!(r#"{{"type":"join","name":"{name}","shard":{shard},"room":"lobby"}}"#)
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
    send(sender, "hello, \"everyone\"").await;
    let want = format!(
        r#"{{"type":"message","from":"{sender_name}","shard":{sender_shard},"text":"hello, \"everyone\"","room":"lobby"}}"#
    );
    for (client, name, _) in &mut members {
        assert_eq!(next_text(client).await, want, "{name}");
    }
    // A second message, from the first member, arrives in order after the first.
    let (first_name, first_shard) = (members[0].1.clone(), members[0].2);
    send(&mut members[0].0, "second").await;
    let want = format!(
        r#"{{"type":"message","from":"{first_name}","shard":{first_shard},"text":"second","room":"lobby"}}"#
    );
    for (client, name, _) in &mut members {
        assert_eq!(next_text(client).await, want, "{name}");
    }
}

#[tokio::test]
async fn html_is_relayed_as_text_not_markup() {
    let server = chat_server();
    let mut members = members(&server).await;
    let (sender_name, sender_shard) = (members[0].1.clone(), members[0].2);
    send(
        &mut members[0].0,
        "<img src=x onerror=alert(1)> & <b>bold</b>",
    )
    .await;
    // Only JSON's escapes: no HTML entities, the page sets it as text.
    let want = format!(
        r#"{{"type":"message","from":"{sender_name}","shard":{sender_shard},"text":"<img src=x onerror=alert(1)> & <b>bold</b>","room":"lobby"}}"#
    );
    for (client, name, _) in &mut members {
        assert_eq!(next_text(client).await, want, "{name}");
    }
    let script = include_str!("../assets/chat/chat.js");
    assert!(script.contains("textContent"));
    assert!(!script.contains("innerHTML") && !script.contains("insertAdjacentHTML"));
}

#[tokio::test]
async fn renames_and_departures_are_announced() {
    let server = chat_server();
    let mut members = members(&server).await;
    let (mut leaver, leaver_name, _) = members.remove(0);
    send(&mut leaver, "/nick Ada").await;
    let nick = format!(r#"{{"type":"nick","from":"{leaver_name}","to":"Ada","room":"lobby"}}"#);
    for (client, name, _) in &mut members {
        assert_eq!(next_text(client).await, nick, "{name}");
    }
    // The renamed member's own copy says it is them (the page updates its name).
    assert_eq!(
        next_text(&mut leaver).await,
        format!(
            r#"{{"type":"nick","from":"{leaver_name}","to":"Ada","room":"lobby","self":true}}"#
        )
    );
    leaver.close(None).await.expect("close");
    let leave = r#"{"type":"leave","name":"Ada","room":"lobby"}"#;
    for (client, name, _) in &mut members {
        assert_eq!(next_text(client).await, leave, "{name}");
    }
    // A newcomer is welcomed to the lobby and the others hear of it.
    let (_late, name, shard) = connect(&server, members.len() + 2).await;
    let join = format!(r#"{{"type":"join","name":"{name}","shard":{shard},"room":"lobby"}}"#);
    for (client, member, _) in &mut members {
        assert_eq!(next_text(client).await, join, "{member}");
    }
}

#[tokio::test]
async fn rooms_keep_to_themselves() {
    let server = chat_server();
    let mut lobby = members(&server).await;
    // Two members move to the room "x", on whichever shards they sit.
    let (mut first, first_name, first_shard) = lobby.remove(0);
    let (mut second, second_name, second_shard) = lobby.remove(0);
    send(&mut first, "/join x").await;
    assert_eq!(
        next_text(&mut first).await,
        format!(
            r#"{{"type":"join","name":"{first_name}","shard":{first_shard},"room":"x","self":true}}"#
        )
    );
    let leave = format!(r#"{{"type":"leave","name":"{first_name}","room":"lobby"}}"#);
    for (client, name, _) in &mut lobby {
        assert_eq!(next_text(client).await, leave, "{name}");
    }
    assert_eq!(next_text(&mut second).await, leave, "{second_name}");
    // The second member's move is announced in both rooms.
    send(&mut second, "/join   x ").await;
    assert_eq!(
        next_text(&mut second).await,
        format!(
            r#"{{"type":"join","name":"{second_name}","shard":{second_shard},"room":"x","self":true}}"#
        )
    );
    assert_eq!(
        next_text(&mut first).await,
        format!(r#"{{"type":"join","name":"{second_name}","shard":{second_shard},"room":"x"}}"#)
    );
    let leave = format!(r#"{{"type":"leave","name":"{second_name}","room":"lobby"}}"#);
    for (client, name, _) in &mut lobby {
        assert_eq!(next_text(client).await, leave, "{name}");
    }
    // A line in the lobby reaches the lobby only...
    let (lobby_name, lobby_shard) = (lobby[0].1.clone(), lobby[0].2);
    send(&mut lobby[0].0, "lobby line").await;
    let want = format!(
        r#"{{"type":"message","from":"{lobby_name}","shard":{lobby_shard},"text":"lobby line","room":"lobby"}}"#
    );
    for (client, name, _) in &mut lobby {
        assert_eq!(next_text(client).await, want, "{name}");
    }
    // ... and one in x reaches x only: the next thing both members of x hear is it.
    send(&mut second, "x line").await;
    let want = format!(
        r#"{{"type":"message","from":"{second_name}","shard":{second_shard},"text":"x line","room":"x"}}"#
    );
    assert_eq!(next_text(&mut first).await, want, "{first_name}");
    assert_eq!(next_text(&mut second).await, want, "{second_name}");
    // Bad names and the same room are refused, to the one who asked only.
    let long = "r".repeat(65);
    for (line, reason) in [
        ("/join", "a room needs a name: /join NAME"),
        ("/join    ", "a room needs a name: /join NAME"),
        (
            &format!("/join {long}") as &str,
            "a room name is at most 64 bytes",
        ),
        ("/join a\u{1}b", "a room name has no control characters"),
        ("/join x", "you are in that room already"),
    ] {
        send(&mut first, line).await;
        assert_eq!(
            next_text(&mut first).await,
            format!(r#"{{"type":"error","text":"{reason}"}}"#),
            "{line:?}"
        );
    }
    // A name of 64 bytes (and any text) is a room; leaving x for it is announced in x
    // when the connection ends there too.
    let room = format!("é{}", "r".repeat(62));
    assert_eq!(room.len(), 64);
    send(&mut first, &format!("/join {room}")).await;
    assert_eq!(
        next_text(&mut first).await,
        format!(
            r#"{{"type":"join","name":"{first_name}","shard":{first_shard},"room":"{room}","self":true}}"#
        )
    );
    assert_eq!(
        next_text(&mut second).await,
        format!(r#"{{"type":"leave","name":"{first_name}","room":"x"}}"#)
    );
    send(&mut first, "/join x").await;
    assert_eq!(
        next_text(&mut first).await,
        format!(
            r#"{{"type":"join","name":"{first_name}","shard":{first_shard},"room":"x","self":true}}"#
        )
    );
    assert_eq!(
        next_text(&mut second).await,
        format!(r#"{{"type":"join","name":"{first_name}","shard":{first_shard},"room":"x"}}"#)
    );
    first.close(None).await.expect("close");
    assert_eq!(
        next_text(&mut second).await,
        format!(r#"{{"type":"leave","name":"{first_name}","room":"x"}}"#)
    );
    // Nothing of x reached the lobby: its next event is a lobby line.
    send(&mut lobby[0].0, "still here").await;
    let want = format!(
        r#"{{"type":"message","from":"{lobby_name}","shard":{lobby_shard},"text":"still here","room":"lobby"}}"#
    );
    for (client, name, _) in &mut lobby {
        assert_eq!(next_text(client).await, want, "{name}");
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
