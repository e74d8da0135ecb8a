//! The pub/sub services of `ringws serve` (`src/bin/ringws/routes.rs`, included here):
//! `/broadcast` (each message to every client, the sender included, on a 2-shard
//! server) and the `/pubsub` JSON protocol, answer by answer; and, with a real
//! `redis-server`, two `ringws serve` processes sharing the chat's rooms, `/broadcast`
//! and `/pubsub` through `--redis`, in both `--redis-mode`s.
#![cfg(feature = "cli")]

mod common;
#[path = "../src/bin/ringws/routes.rs"]
mod routes;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{raw_upgrade, send_frame, Received};
use ringws::proto::{Decoder, Event, Limits, OpCode, Role};
use ringws::RunningServer;
use ringws::WebSocketOptions;

fn pubsub_server() -> RunningServer {
    routes::add_pubsub_routes(common::builder(), WebSocketOptions::default())
        .build()
        .expect("build")
        .start()
        .expect("start")
}

/// A raw client of one route, with reads bounded in time that tell silence from a
/// close.
struct Client {
    stream: TcpStream,
    decoder: Decoder,
    buffer: Vec<u8>,
    start: usize,
}

impl Client {
    fn connect(addr: SocketAddr, path: &str) -> Client {
        Client {
            stream: raw_upgrade(addr, path),
            decoder: Decoder::new(Role::Client, Limits::default()),
            buffer: Vec::new(),
            start: 0,
        }
    }

    fn send(&mut self, text: &str) {
        send_frame(&mut self.stream, OpCode::Text, true, text.as_bytes());
    }

    fn send_binary(&mut self, bytes: &[u8]) {
        send_frame(&mut self.stream, OpCode::Binary, true, bytes);
    }

    /// The next message, close frame or end of the connection (pings and pongs
    /// skipped) within `limit`, or None when nothing came.
    #[track_caller]
    fn next_within(&mut self, limit: Duration) -> Option<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let (consumed, event) = self
                .decoder
                .decode(&mut self.buffer[self.start..])
                .expect("server sent a valid frame");
            self.start += consumed;
            match event {
                Some(Event::Text(text)) => return Some(Received::Text(text.to_owned())),
                Some(Event::Binary(bytes)) => return Some(Received::Binary(bytes.to_vec())),
                Some(Event::Close(frame)) => {
                    return Some(frame.map_or(Received::Close(None, String::new()), |f| {
                        Received::Close(Some(f.code.0), f.reason.to_owned())
                    }))
                }
                Some(
                    Event::Ping(_)
                    | Event::Pong(_)
                    | Event::Deflated { .. }
                    | Event::DeflatedPart { .. },
                )
                | None => {}
            }
            if consumed > 0 {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.buffer.drain(..self.start);
            self.start = 0;
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Some(Received::Eof),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(error) if common::is_timeout(&error) => return None,
                Err(error) if common::is_close(&error) => return Some(Received::Eof),
                Err(error) => panic!("read failed: {error}"),
            }
        }
    }

    /// The next message, within 10 s.
    #[track_caller]
    fn next(&mut self) -> Received {
        self.next_within(Duration::from_secs(10))
            .expect("a message within 10 s")
    }

    #[track_caller]
    fn next_text(&mut self) -> String {
        match self.next() {
            Received::Text(text) => text,
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Reads text messages until one equals `want`, within 10 s; returns the ones
    /// before it.
    #[track_caller]
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn skip_to(&mut self, want: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left) {
                Some(Received::Text(text)) if text == want => return skipped,
                Some(Received::Text(text)) => skipped.push(text),
                Some(other) => panic!("expected text, got {other:?}"),
                None => panic!("no {want:?} within 10 s; got {skipped:?}"),
            }
        }
    }

    /// Sends `command` and checks the answer.
    #[track_caller]
    fn ask(&mut self, command: &str, answer: &str) {
        self.send(command);
        assert_eq!(self.next_text(), answer, "{command}");
    }

    /// Nothing arrives for `window`.
    #[track_caller]
    fn expect_silence(&mut self, window: Duration) {
        if let Some(message) = self.next_within(window) {
            panic!("expected silence, got {message:?}");
        }
    }
}

/// Polls `done` every 5 ms until it holds, for at most 10 s.
#[track_caller]
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn broadcast_reaches_every_client_the_sender_included() {
    let server = pubsub_server();
    let handle = server.handle();
    const N: usize = 16;
    let mut clients: Vec<Client> = (0..N)
        .map(|_| Client::connect(server.local_addr(), "/broadcast"))
        .collect();
    wait_until("every client subscribed", || {
        handle.subscriber_count(routes::BROADCAST_TOPIC) == N
    });
    // Each sends one message (text and binary alike) before anyone reads: as
    // uWebSockets' broadcast_test does, each then waits for all N.
    let mut want = BTreeSet::new();
    for (i, client) in clients.iter_mut().enumerate() {
        if i % 2 == 0 {
            client.send(&format!("text {i}"));
            want.insert(format!("{:?}", Received::Text(format!("text {i}"))));
        } else {
            let bytes = format!("binary {i}").into_bytes();
            client.send_binary(&bytes);
            want.insert(format!("{:?}", Received::Binary(bytes)));
        }
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let got: BTreeSet<String> = (0..N).map(|_| format!("{:?}", client.next())).collect();
        assert_eq!(got, want, "client {i}");
        client.expect_silence(Duration::from_millis(20));
    }
    // Every message went through the hub: N publishes of N deliveries.
    let stats = handle.pubsub_stats();
    assert_eq!(stats.published, N as u64, "{stats:?}");
}

#[test]
fn the_pubsub_protocol_answers_exactly() {
    let server = pubsub_server();
    let addr = server.local_addr();
    let (mut a, mut b, mut c) = (
        Client::connect(addr, "/pubsub"),
        Client::connect(addr, "/pubsub"),
        Client::connect(addr, "/pubsub"),
    );
    a.ask(r#"{"subscribe":"t"}"#, r#"{"subscribed":"t"}"#);
    // Again: nothing changes, the same answer.
    a.ask(r#"{"subscribe":"t"}"#, r#"{"subscribed":"t"}"#);
    b.ask(r#"{ "subscribe" : "t" }"#, r#"{"subscribed":"t"}"#);
    // A topic name is any string; the answer escapes it as JSON.
    b.ask(r#"{"subscribe":"qu\"ote"}"#, r#"{"subscribed":"qu\"ote"}"#);
    // C, not a subscriber, publishes: both subscribers get the data as is.
    c.send(r#"{"publish":"t","data":"<b>hi</b> \"there\""}"#);
    for client in [&mut a, &mut b] {
        assert_eq!(client.next_text(), r#"<b>hi</b> "there""#);
    }
    // A subscriber publishes: every other subscriber gets it, not the publisher (whose
    // next message is the answer to its next command).
    a.send(r#"{"data":"from a","publish":"t"}"#);
    assert_eq!(b.next_text(), "from a");
    a.ask(r#"{"unsubscribe":"t"}"#, r#"{"unsubscribed":"t"}"#);
    c.send(r#"{"publish":"t","data":"after"}"#);
    assert_eq!(b.next_text(), "after");
    // Not subscribed any more: the same answer, and "after" never came.
    a.ask(r#"{"unsubscribe":"t"}"#, r#"{"unsubscribed":"t"}"#);
    c.send(r#"{"publish":"qu\"ote","data":"quoted"}"#);
    assert_eq!(b.next_text(), "quoted");
    // Topics of /pubsub are not /broadcast's.
    a.ask(
        r#"{"subscribe":"broadcast"}"#,
        r#"{"subscribed":"broadcast"}"#,
    );
    let mut broadcaster = Client::connect(addr, "/broadcast");
    wait_until("the broadcaster subscribed", || {
        server.handle().subscriber_count(routes::BROADCAST_TOPIC) == 1
    });
    broadcaster.send("to /broadcast only");
    assert_eq!(broadcaster.next_text(), "to /broadcast only");
    // Errors, each answered, the connection kept.
    let long = "t".repeat(257);
    let errors: Vec<(String, &str)> = vec![
        ("".into(), routes::reason::NOT_JSON),
        ("subscribe t".into(), routes::reason::NOT_JSON),
        (r#"{"subscribe":"t"}{}"#.into(), routes::reason::NOT_JSON),
        (r#"["subscribe","t"]"#.into(), routes::reason::NOT_OBJECT),
        ("42".into(), routes::reason::NOT_OBJECT),
        ("{}".into(), routes::reason::UNKNOWN),
        (r#"{"subscribe":"t","x":1}"#.into(), routes::reason::UNKNOWN),
        (r#"{"publish":"t"}"#.into(), routes::reason::UNKNOWN),
        (
            r#"{"publish":"t","data":"x","x":1}"#.into(),
            routes::reason::UNKNOWN,
        ),
        (r#"{"subscribe":""}"#.into(), routes::reason::TOPIC),
        (r#"{"unsubscribe":null}"#.into(), routes::reason::TOPIC),
        (
            format!(r#"{{"subscribe":"{long}"}}"#),
            routes::reason::TOPIC,
        ),
        (
            r#"{"publish":"t","data":{"x":1}}"#.into(),
            routes::reason::DATA,
        ),
    ];
    for (command, reason) in &errors {
        a.ask(
            command,
            &format!(r#"{{"error":"{}"}}"#, reason.replace('"', "\\\"")),
        );
    }
    assert_eq!(
        routes::reason::UNKNOWN,
        r#"expected {"subscribe":T}, {"unsubscribe":T} or {"publish":T,"data":TEXT}"#
    );
    a.send_binary(b"{\"subscribe\":\"t\"}");
    assert_eq!(
        a.next_text(),
        r#"{"error":"binary messages are not understood: send JSON text"}"#
    );
    // Nothing of /broadcast reached A's "broadcast", and A still works.
    a.ask(
        &format!(r#"{{"subscribe":"{}"}}"#, &long[1..]),
        &format!(r#"{{"subscribed":"{}"}}"#, &long[1..]),
    );
    c.send(r#"{"publish":"broadcast","data":"pubsub's own"}"#);
    assert_eq!(a.next_text(), "pubsub's own");
}

#[test]
fn a_pubsub_connection_holds_at_most_1024_topics() {
    let server = pubsub_server();
    let mut a = Client::connect(server.local_addr(), "/pubsub");
    for i in 0..routes::MAX_TOPICS {
        a.send(&format!(r#"{{"subscribe":"{i}"}}"#));
    }
    for i in 0..routes::MAX_TOPICS {
        assert_eq!(a.next_text(), format!(r#"{{"subscribed":"{i}"}}"#));
    }
    a.ask(
        r#"{"subscribe":"one more"}"#,
        r#"{"error":"too many topics: 1024 per connection"}"#,
    );
    // Subscribed already: still answered; after an unsubscribe there is room again.
    a.ask(r#"{"subscribe":"7"}"#, r#"{"subscribed":"7"}"#);
    a.ask(r#"{"unsubscribe":"7"}"#, r#"{"unsubscribed":"7"}"#);
    a.ask(
        r#"{"subscribe":"one more"}"#,
        r#"{"subscribed":"one more"}"#,
    );
}

/// A `ringws serve` process (the built binary) on a free loopback port; killed (by
/// its PID) when dropped.
struct Node {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Node {
    /// Starts `ringws serve --redis URL --redis-mode MODE` with two shards.
    #[cfg(feature = "redis")]
    fn start(url: &str, mode: &str) -> Node {
        Node::start_with(&["--redis", url, "--redis-mode", mode])
    }

    /// Starts `ringws serve` with two shards and `extra` arguments, and waits (at most
    /// 20 s) for the address in its log.
    fn start_with(extra: &[&str]) -> Node {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringws"))
            .args(["serve", "--bind", "127.0.0.1:0", "--shards", "2"])
            .args(extra)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringws");
        // Its log is read on a thread of its own (which also keeps the pipe drained),
        // so that waiting for the address is bounded.
        let stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("[ringws] {line}");
                let _ = lines_tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut log = String::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = lines.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ringws serve did not start:\n{log}");
            };
            if let Some(addr) = line
                .split("serving ws://")
                .nth(1)
                .and_then(|rest| rest.split("/echo").next())
                .and_then(|addr| addr.parse().ok())
            {
                break addr;
            }
            log.push_str(&line);
            log.push('\n');
        };
        Node { child, addr }
    }

    fn client(&self, path: &str) -> Client {
        Client::connect(self.addr, path)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Only the child this test started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `from` sends `probe(i)` for i = 0, 1, ... (every 50 ms, at most 10 s) until `to`
/// receives a text containing `tag`: the receiving node's link to Redis carries the
/// topic from then on. (More probes may still be on their way; one publisher's
/// messages arrive in order, so they all come before its next message.)
#[cfg(feature = "redis")]
#[track_caller]
fn warm_up(from: &mut Client, to: &mut Client, tag: &str, probe: impl Fn(usize) -> String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0.. {
        assert!(
            Instant::now() < deadline,
            "nothing crossed the nodes within 10 s"
        );
        from.send(&probe(i));
        while let Some(message) = to.next_within(Duration::from_millis(50)) {
            if let Received::Text(text) = message {
                if text.contains(tag) {
                    return;
                }
            }
        }
    }
}

/// A chat message event as `ringws serve` sends it.
#[cfg(feature = "redis")]
fn chat_message(from: &str, shard: usize, text: &str, room: &str) -> String {
    format!(
        r#"{{"type":"message","from":"{from}","shard":{shard},"text":"{text}","room":"{room}"}}"#
    )
}

/// The `"shard"` of a chat event.
#[cfg(feature = "redis")]
fn shard_of(event: &str) -> usize {
    let start = event.find(r#""shard":"#).expect("shard") + r#""shard":"#.len();
    event[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("a shard")
}

/// Two `ringws serve` processes sharing one Redis server in `mode`: the chat's rooms,
/// `/broadcast` and `/pubsub` reach the clients of both.
#[cfg(feature = "redis")]
fn two_nodes_share(mode: &str) {
    let Some(redis) = common::redis::RedisServer::start() else {
        return;
    };
    let (one, two) = (
        Node::start(&redis.url(), mode),
        Node::start(&redis.url(), mode),
    );

    // The chat: a room spans both nodes (each node numbers its own guests).
    let (mut a, mut b) = (one.client("/chat"), two.client("/chat"));
    let welcome_a = a.next_text();
    let welcome_b = b.next_text();
    let (shard_a, shard_b) = (shard_of(&welcome_a), shard_of(&welcome_b));
    assert_eq!(
        welcome_a,
        format!(r#"{{"type":"welcome","name":"guest-1","shard":{shard_a},"room":"lobby"}}"#)
    );
    warm_up(&mut b, &mut a, "probe b", |i| format!("probe b {i}"));
    warm_up(&mut a, &mut b, "probe a", |i| format!("probe a {i}"));
    a.send("/nick alice");
    a.skip_to(r#"{"type":"nick","from":"guest-1","to":"alice","room":"lobby","self":true}"#);
    b.skip_to(r#"{"type":"nick","from":"guest-1","to":"alice","room":"lobby"}"#);
    b.send("/nick bob");
    a.skip_to(r#"{"type":"nick","from":"guest-1","to":"bob","room":"lobby"}"#);
    b.skip_to(r#"{"type":"nick","from":"guest-1","to":"bob","room":"lobby","self":true}"#);
    a.send("hello from one");
    let hello = chat_message("alice", shard_a, "hello from one", "lobby");
    b.skip_to(&hello);
    a.skip_to(&hello);
    b.send("hello from <two>");
    let hello = chat_message("bob", shard_b, "hello from <two>", "lobby");
    a.skip_to(&hello);
    b.skip_to(&hello);
    // Both move to the room x; a lobby member on node two hears nothing of x.
    let mut lobby = two.client("/chat");
    lobby.next_text();
    a.send("/join x");
    a.skip_to(&format!(
        r#"{{"type":"join","name":"alice","shard":{shard_a},"room":"x","self":true}}"#
    ));
    b.skip_to(r#"{"type":"leave","name":"alice","room":"lobby"}"#);
    b.send("/join x");
    b.skip_to(&format!(
        r#"{{"type":"join","name":"bob","shard":{shard_b},"room":"x","self":true}}"#
    ));
    warm_up(&mut a, &mut b, "x probe a", |i| format!("x probe a {i}"));
    warm_up(&mut b, &mut a, "x probe b", |i| format!("x probe b {i}"));
    a.send("in x");
    let in_x = chat_message("alice", shard_a, "in x", "x");
    b.skip_to(&in_x);
    a.skip_to(&in_x);
    // The lobby member's next line from the lobby comes with nothing of x before it.
    let mut lobby_one = one.client("/chat");
    let shard_lobby_one = shard_of(&lobby_one.next_text());
    warm_up(&mut lobby_one, &mut lobby, "lobby probe", |i| {
        format!("lobby probe {i}")
    });
    lobby_one.send("lobby line");
    let skipped = lobby.skip_to(&chat_message(
        "guest-2",
        shard_lobby_one,
        "lobby line",
        "lobby",
    ));
    assert!(
        skipped.iter().all(|text| !text.contains(r#""room":"x""#)),
        "{skipped:?}"
    );
    // A member leaving x on node two is announced to x on node one.
    drop(b);
    a.skip_to(r#"{"type":"leave","name":"bob","room":"x"}"#);

    // /broadcast: three clients on each node each send one message; each receives all
    // six, its own included.
    let mut clients: Vec<Client> = (0..6)
        .map(|i| if i < 3 { &one } else { &two }.client("/broadcast"))
        .collect();
    let (first, rest) = clients.split_at_mut(3);
    warm_up(&mut first[0], &mut rest[0], "probe one", |i| {
        format!("probe one {i}")
    });
    warm_up(&mut rest[0], &mut first[0], "probe two", |i| {
        format!("probe two {i}")
    });
    // Settle: once each client has both nodes' markers, no probe is still on its way
    // (one publisher's messages arrive in order).
    clients[0].send("marker one");
    clients[3].send("marker two");
    for client in &mut clients {
        let mut seen = 0;
        while seen < 2 {
            match client.next() {
                Received::Text(text) if text.starts_with("marker") => seen += 1,
                Received::Text(text) if text.starts_with("probe") => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let mut want = BTreeSet::new();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(&format!("message {i}"));
        want.insert(format!("message {i}"));
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let got: BTreeSet<String> = (0..6)
            .map(|_| match client.next() {
                Received::Text(text) => text,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(got, want, "client {i}");
        client.expect_silence(Duration::from_millis(50));
    }

    // /pubsub: a subscriber on each node; a publisher on node two.
    let (mut sub_one, mut sub_two, mut publisher) = (
        one.client("/pubsub"),
        two.client("/pubsub"),
        two.client("/pubsub"),
    );
    sub_one.ask(r#"{"subscribe":"t"}"#, r#"{"subscribed":"t"}"#);
    sub_two.ask(r#"{"subscribe":"t"}"#, r#"{"subscribed":"t"}"#);
    warm_up(&mut publisher, &mut sub_one, "probe", |i| {
        format!(r#"{{"publish":"t","data":"probe {i}"}}"#)
    });
    publisher.send(r#"{"publish":"t","data":"across \"nodes\""}"#);
    sub_one.skip_to(r#"across "nodes""#);
    sub_two.skip_to(r#"across "nodes""#);
    // And back: the subscriber on node one publishes; the one on node two hears it,
    // the publisher itself does not.
    warm_up(&mut sub_one, &mut sub_two, "probe back", |i| {
        format!(r#"{{"publish":"t","data":"probe back {i}"}}"#)
    });
    sub_one.send(r#"{"publish":"t","data":"from one"}"#);
    sub_two.skip_to("from one");
    sub_one.send(r#"{"unsubscribe":"t"}"#);
    sub_one.skip_to(r#"{"unsubscribed":"t"}"#);
    publisher.send(r#"{"publish":"t","data":"after"}"#);
    sub_two.skip_to("after");
    sub_one.send(r#"{"unsubscribe":"t"}"#);
    let skipped = sub_one.skip_to(r#"{"unsubscribed":"t"}"#);
    assert!(!skipped.iter().any(|text| text == "after"), "{skipped:?}");
}

#[cfg(feature = "redis")]
#[test]
fn two_serve_processes_share_through_redis_pubsub() {
    two_nodes_share("pubsub");
}

#[cfg(feature = "redis")]
#[test]
fn two_serve_processes_share_through_redis_streams() {
    two_nodes_share("streams");
}

/// `--slow-subscribers close` reaches the server: a subscriber that does not read is
/// closed with 1008 "slow subscriber" once 16 MiB wait for it; with the default
/// (`drop`) it stays open and gets what fitted.
#[test]
fn slow_subscribers_flag_chooses_drop_or_close() {
    for (flag, closed) in [("close", true), ("drop", false)] {
        let node = Node::start_with(&["--slow-subscribers", flag]);
        let mut slow = node.client("/pubsub");
        slow.ask(r#"{"subscribe":"t"}"#, r#"{"subscribed":"t"}"#);
        let mut publisher = node.client("/pubsub");
        // 40 messages of 1 MiB: more than 16 MiB plus what the sockets hold.
        let data = "x".repeat(1 << 20);
        let command = format!(r#"{{"publish":"t","data":"{data}"}}"#);
        for _ in 0..40 {
            publisher.send(&command);
        }
        // The publisher is never slowed or closed: it still answers.
        publisher.ask(r#"{"subscribe":"u"}"#, r#"{"subscribed":"u"}"#);
        let mut received = 0;
        let outcome = loop {
            match slow.next_within(Duration::from_secs(2)) {
                Some(Received::Text(text)) => {
                    assert_eq!(text.len(), data.len());
                    received += 1;
                    assert!(received <= 40);
                }
                other => break other,
            }
        };
        eprintln!("--slow-subscribers {flag}: {received} of 40, then {outcome:?}");
        if closed {
            // The close frame, or the end of the connection when a frame was
            // half-written as it went over (no close frame can follow it).
            assert!(
                outcome == Some(Received::Close(Some(1008), "slow subscriber".into()))
                    || outcome == Some(Received::Eof),
                "{outcome:?} after {received} messages"
            );
            assert!(received < 40, "{received} of 40 arrived");
        } else {
            assert_eq!(outcome, None, "after {received} messages");
            assert!((1..40).contains(&received), "{received} of 40 arrived");
            slow.ask(r#"{"subscribe":"v"}"#, r#"{"subscribed":"v"}"#);
        }
    }
}

#[cfg(feature = "redis")]
#[test]
fn a_bad_redis_url_is_refused_clearly() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringws"))
        .args(["serve", "--bind", "127.0.0.1:0", "--redis", "http://x"])
        .output()
        .expect("run ringws");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--redis"), "{stderr}");
    assert!(stderr.contains("redis://"), "{stderr}");
}
