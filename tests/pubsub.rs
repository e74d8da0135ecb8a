//! Pub/sub end to end: subscribers on every shard, publishes from every shard and from
//! other threads, ordering, large shared frames, every framing.

mod common;

use std::net::TcpStream;

use common::{builder, raw_upgrade, send_frame, FrameReader, Received};
use ringws::proto::OpCode;
use ringws::{Conn, Handler, Message, RunningServer};

/// `sub T` subscribes and answers `ok`, `pub T DATA` publishes to others, `all T DATA`
/// publishes to all, `say DATA` sends to itself.
struct Commands;

impl Handler for Commands {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        let mut parts = text.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("sub"), Some(topic), None) => {
                conn.subscribe(topic);
                conn.send_text("ok");
            }
            (Some("unsub"), Some(topic), None) => {
                conn.unsubscribe(topic);
                conn.send_text("ok");
            }
            (Some("pub"), Some(topic), Some(data)) => conn.publish(topic, Message::Text(data)),
            (Some("all"), Some(topic), Some(data)) => {
                conn.publish_to_all(topic, Message::Text(data))
            }
            (Some("big"), Some(topic), Some(size)) => {
                let size: usize = size.parse().unwrap_or(0);
                conn.publish(topic, Message::Binary(&vec![7u8; size]));
            }
            (Some("say"), Some(data), None) => {
                conn.send_text(data);
            }
            _ => {}
        }
    }
}

fn server(shards: usize) -> RunningServer {
    builder()
        .shards(shards)
        .websocket("/ps", || Commands)
        .build()
        .expect("build")
        .start()
        .expect("start")
}

fn client(server: &RunningServer) -> (TcpStream, FrameReader) {
    (
        raw_upgrade(server.local_addr(), "/ps"),
        FrameReader::default(),
    )
}

fn say(stream: &mut TcpStream, text: &str) {
    send_frame(stream, OpCode::Text, true, text.as_bytes());
}

fn subscribe(stream: &mut TcpStream, reader: &mut FrameReader, topic: &str) {
    say(stream, &format!("sub {topic}"));
    assert_eq!(reader.next(stream), Received::Text("ok".into()));
}

#[test]
fn a_publish_reaches_every_subscriber_but_the_publisher() {
    let server = server(2);
    let mut clients: Vec<_> = (0..6).map(|_| client(&server)).collect();
    for (stream, reader) in &mut clients {
        subscribe(stream, reader, "news");
    }
    assert_eq!(server.handle().subscriber_count("news"), 6);
    let (publisher, _) = &mut clients[0];
    say(publisher, "pub news hello");
    say(publisher, "say mine");
    for (stream, reader) in &mut clients[1..] {
        assert_eq!(reader.next(stream), Received::Text("hello".into()));
    }
    let (publisher, reader) = &mut clients[0];
    assert_eq!(reader.next(publisher), Received::Text("mine".into()));
    server
        .handle()
        .publish("news", Message::Text("from outside"))
        .expect("publish");
    for (stream, reader) in &mut clients {
        assert_eq!(reader.next(stream), Received::Text("from outside".into()));
    }
    say(&mut clients[1].0, "big news 100000");
    for (i, (stream, reader)) in clients.iter_mut().enumerate() {
        if i != 1 {
            assert_eq!(reader.next(stream), Received::Binary(vec![7u8; 100000]));
        }
    }
}
