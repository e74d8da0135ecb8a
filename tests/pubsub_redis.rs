//! Pub/sub across two servers through a real `redis-server` (`Builder::redis`), in both
//! broker modes: messages cross nodes exactly once and in order per publisher, a node
//! holds a Redis subscription only while it has a local subscriber, and a Redis that is
//! killed and restarted mid-stream gives a reported gap (pub/sub mode) or loses nothing
//! (streams mode with `appendonly yes`). The backend follows RINGWS_BACKEND, so CI runs
//! these on io_uring and on epoll. Without `redis-server` they skip by the house rule
//! (`tests/common/skip.rs`).
#![cfg(feature = "redis")]

mod common;

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{builder, raw_upgrade, send_frame, FrameReader, Received};
use ringws::proto::OpCode;
use ringws::pubsub::{BrokerEvent, BrokerMode};
use ringws::{Conn, Handler, Message, RunningServer};

/// `sub T` subscribes and `unsub T` unsubscribes (both answer `ok`), `pub T DATA`
/// publishes to the others; a binary message is published to all on `bin`.
struct Node;

impl Handler for Node {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(bytes) => {
                conn.publish_to_all("bin", Message::Binary(bytes));
                return;
            }
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
            _ => {
                conn.send_text("?");
            }
        }
    }
}

type Events = Arc<Mutex<Vec<BrokerEvent>>>;

/// A server on `/node` linked to Redis at `url`, recording its broker events.
fn node(url: &str, mode: BrokerMode) -> (RunningServer, Events) {
    let events = Events::default();
    let record = Arc::clone(&events);
    let server = builder()
        .redis(url, mode)
        .on_broker_event(move |event| record.lock().unwrap().push(event.clone()))
        .websocket("/node", || Node)
        .build()
        .expect("build")
        .start()
        .expect("start");
    (server, events)
}

/// Waits (bounded) until `events` has `count` events that `matches`.
#[track_caller]
fn wait_events(events: &Events, count: usize, what: &str, matches: impl Fn(&BrokerEvent) -> bool) {
    let limit = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = events.lock().unwrap().iter().filter(|e| matches(e)).count();
        if seen >= count {
            return;
        }
        assert!(
            Instant::now() < limit,
            "no {what} event: {:?}",
            events.lock().unwrap()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn connected(event: &BrokerEvent) -> bool {
    matches!(event, BrokerEvent::Connected)
}

fn disconnected(event: &BrokerEvent) -> bool {
    matches!(event, BrokerEvent::Disconnected { .. })
}

/// A raw WebSocket client whose frames a thread of its own reads into a channel (so a
/// test can wait on it with a deadline).
struct Client {
    stream: TcpStream,
    frames: Receiver<Received>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = raw_upgrade(addr, "/node");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut reader = stream.try_clone().expect("clone");
        let (sender, frames) = mpsc::channel();
        thread::spawn(move || {
            let mut decoder = FrameReader::default();
            loop {
                let frame = decoder.next(&mut reader);
                let end = matches!(frame, Received::Eof | Received::Close(..));
                if sender.send(frame).is_err() || end {
                    break;
                }
            }
        });
        Client { stream, frames }
    }

    fn send(&mut self, text: &str) {
        send_frame(&mut self.stream, OpCode::Text, true, text.as_bytes());
    }

    /// Sends a `sub`/`unsub` command and waits for its `ok`.
    #[track_caller]
    fn command(&mut self, text: &str) {
        self.send(text);
        match self.frames.recv_timeout(Duration::from_secs(5)) {
            Ok(Received::Text(answer)) if answer == "ok" => {}
            other => panic!("{text}: {other:?}"),
        }
    }

    /// The next text message other than a probe, within `limit`.
    fn next_text(&self, limit: Duration) -> Option<String> {
        let until = Instant::now() + limit;
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            match self.frames.recv_timeout(left) {
                Ok(Received::Text(text)) if text.starts_with("probe:") => continue,
                Ok(Received::Text(text)) => return Some(text),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Publishes `probe:<tag>` with `publish` every 50 ms until `subscriber` hears one
/// (bounded): then the path from that publisher to that subscriber is set up. Other
/// probes are skipped; nothing but probes may arrive meanwhile.
#[track_caller]
fn sync(subscriber: &Client, tag: &str, mut publish: impl FnMut(&str)) {
    let probe = format!("probe:{tag}");
    let limit = Instant::now() + Duration::from_secs(10);
    loop {
        publish(&probe);
        let wait = Instant::now() + Duration::from_millis(50);
        while let Some(left) = wait.checked_duration_since(Instant::now()) {
            match subscriber.frames.recv_timeout(left) {
                Ok(Received::Text(text)) if text == probe => return,
                Ok(Received::Text(text)) if text.starts_with("probe:") => {}
                Ok(other) => panic!("only probes are published yet: {other:?}"),
                Err(_) => break,
            }
        }
        assert!(Instant::now() < limit, "no {probe} arrived through Redis");
    }
}

/// Reads until every one of `markers` arrived (bounded), returning the texts.
#[track_caller]
fn read_until(client: &Client, markers: &[&str], limit: Duration) -> Vec<String> {
    let until = Instant::now() + limit;
    let mut got = Vec::new();
    while !markers.iter().all(|m| got.iter().any(|g| g == m)) {
        let left = until.saturating_duration_since(Instant::now());
        match client.next_text(left) {
            Some(text) => got.push(text),
            None => panic!(
                "{markers:?} did not all arrive; got {} messages, the last {:?}",
                got.len(),
                got.last()
            ),
        }
    }
    got
}

/// The numbers of the messages `<prefix><n>` in `got`, which must be 0..n exactly once
/// and in order.
#[track_caller]
fn assert_sequence(got: &[String], prefix: &str, n: usize) {
    let numbers: Vec<usize> = got
        .iter()
        .filter_map(|text| text.strip_prefix(prefix))
        .map(|n| n.parse().expect("a number"))
        .collect();
    let expected: Vec<usize> = (0..n).collect();
    if numbers != expected {
        let wrong = numbers.iter().enumerate().find(|(i, n)| *i != **n);
        panic!(
            "{prefix}: {} of {n} messages, first out of place {wrong:?}",
            numbers.len()
        );
    }
}

/// A synchronous connection to the test's Redis, for looking at it from outside.
fn inspect(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url())
        .expect("url")
        .get_connection()
        .expect("connect to redis")
}

fn numsub(con: &mut redis::Connection, channel: &str) -> usize {
    let answer: Vec<(String, usize)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query(con)
        .expect("PUBSUB NUMSUB");
    answer.first().map_or(0, |(_, n)| *n)
}

/// Polls `PUBSUB NUMSUB channel` until it is `want` (bounded).
#[track_caller]
fn wait_numsub(con: &mut redis::Connection, channel: &str, want: usize) {
    let limit = Instant::now() + Duration::from_secs(10);
    loop {
        let now = numsub(con, channel);
        if now == want {
            return;
        }
        assert!(
            Instant::now() < limit,
            "{channel}: {now} subscribers, not {want}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Two nodes; a subscriber and a publishing client on each. What either publisher
/// publishes reaches both subscribers exactly once and in order (the publisher's own
/// node does not deliver its message again when Redis brings it back).
fn messages_cross_nodes(mode: BrokerMode) {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, a_events) = node(&redis.url(), mode);
    let (b, b_events) = node(&redis.url(), mode);
    wait_events(&a_events, 1, "Connected", connected);
    wait_events(&b_events, 1, "Connected", connected);
    let mut a_sub = Client::connect(a.local_addr());
    let mut b_sub = Client::connect(b.local_addr());
    let mut a_pub = Client::connect(a.local_addr());
    let mut b_pub = Client::connect(b.local_addr());
    a_sub.command("sub t");
    b_sub.command("sub t");
    // Another topic, on a client of its own (no order holds across topics).
    let mut b_bin = Client::connect(b.local_addr());
    b_bin.command("sub bin");
    sync(&b_sub, "a", |probe| a_pub.send(&format!("pub t {probe}")));
    sync(&a_sub, "b", |probe| b_pub.send(&format!("pub t {probe}")));
    if mode == BrokerMode::PubSub {
        let mut con = inspect(&redis);
        assert_eq!(numsub(&mut con, "ringws:t"), 2, "one subscription per node");
    }
    const N: usize = 300;
    for i in 0..N {
        a_pub.send(&format!("pub t a:{i}"));
        b_pub.send(&format!("pub t b:{i}"));
    }
    a_pub.send("pub t end:a");
    b_pub.send("pub t end:b");
    // Binary-safe: bytes that are not UTF-8, with CR LF and NUL.
    let bytes = [0u8, 0xff, b'\r', b'\n', 0, 0x80];
    send_frame(&mut a_pub.stream, OpCode::Binary, true, &bytes);
    for subscriber in [&a_sub, &b_sub] {
        let got = read_until(subscriber, &["end:a", "end:b"], Duration::from_secs(15));
        assert_sequence(&got, "a:", N);
        assert_sequence(&got, "b:", N);
    }
    match b_bin.frames.recv_timeout(Duration::from_secs(5)) {
        Ok(Received::Binary(got)) => assert_eq!(got, bytes),
        other => panic!("no binary message through Redis: {other:?}"),
    }
    if mode == BrokerMode::Streams {
        // A copy of an entry (what a batch sent again after a lost connection leaves
        // in the stream) and an entry not in our format are both dropped.
        let mut con = inspect(&redis);
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg("ringws:s:t")
            .arg("-")
            .arg("+")
            .query(&mut con)
            .expect("XRANGE");
        let copy = entries
            .ids
            .iter()
            .find(|entry| entry.get::<String>("data").as_deref() == Some("a:7"))
            .expect("a:7 is in the stream");
        let mut xadd = redis::cmd("XADD");
        xadd.arg("ringws:s:t").arg("*");
        for field in ["node", "seq", "kind", "data"] {
            let value: Vec<u8> = copy.get(field).expect(field);
            xadd.arg(field).arg(value);
        }
        let _: String = xadd.query(&mut con).expect("XADD a copy");
        let _: String = redis::cmd("XADD")
            .arg("ringws:s:t")
            .arg("*")
            .arg("foreign")
            .arg("entry")
            .query(&mut con)
            .expect("XADD a foreign entry");
        a_pub.send("pub t end:again");
        for subscriber in [&a_sub, &b_sub] {
            let got = read_until(subscriber, &["end:again"], Duration::from_secs(10));
            assert_eq!(got, ["end:again"], "a copy was delivered");
        }
    }
    for (server, name) in [(&a, "a"), (&b, "b")] {
        let stats = server.handle().pubsub_stats();
        assert!(stats.from_broker >= N as u64, "{name}: {stats:?}");
        assert_eq!(stats.gaps, 0, "{name}: {stats:?}");
        assert_eq!(stats.broker_publish_failures, 0, "{name}: {stats:?}");
    }
    drop((a_sub, b_sub, b_bin, a_pub, b_pub));
    a.shutdown().expect("shutdown a");
    b.shutdown().expect("shutdown b");
}

#[test]
fn pubsub_mode_crosses_nodes_exactly_once_in_order() {
    messages_cross_nodes(BrokerMode::PubSub);
}

#[test]
fn streams_mode_crosses_nodes_exactly_once_in_order() {
    messages_cross_nodes(BrokerMode::Streams);
}

/// A node holds a Redis subscription to a topic's channel only while it has a local
/// subscriber, one for any number of them, and drops it after the last one leaves.
#[test]
fn redis_channel_is_subscribed_only_while_there_is_a_local_subscriber() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (server, events) = node(&redis.url(), BrokerMode::PubSub);
    wait_events(&events, 1, "Connected", connected);
    let mut con = inspect(&redis);
    let channels = |con: &mut redis::Connection| -> Vec<String> {
        let mut names: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg("ringws:*")
            .query(con)
            .expect("PUBSUB CHANNELS");
        names.sort();
        names
    };
    assert!(channels(&mut con).is_empty(), "nothing subscribed yet");
    let mut first = Client::connect(server.local_addr());
    let mut second = Client::connect(server.local_addr());
    first.command("sub x");
    wait_numsub(&mut con, "ringws:x", 1);
    second.command("sub x");
    first.command("unsub x");
    // The link handles requests in order: once `y` is subscribed in Redis, whatever
    // the two changes above did to `x` is done too.
    first.command("sub y");
    wait_numsub(&mut con, "ringws:y", 1);
    assert_eq!(numsub(&mut con, "ringws:x"), 1, "x still has a subscriber");
    assert_eq!(channels(&mut con), ["ringws:x", "ringws:y"]);
    // The last subscriber of x goes away by closing.
    drop(second);
    wait_numsub(&mut con, "ringws:x", 0);
    assert_eq!(channels(&mut con), ["ringws:y"]);
    first.command("unsub y");
    wait_numsub(&mut con, "ringws:y", 0);
    assert!(channels(&mut con).is_empty());
    server.shutdown().expect("shutdown");
}

/// PubSub mode: Redis killed and restarted mid-stream. The subscribing node reports a
/// gap for its topic; publishes made during the outage are reported failed; messages
/// published after the reconnect arrive, in order.
#[test]
fn pubsub_mode_reports_a_gap_when_redis_restarts() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (a, a_events) = node(&redis.url(), BrokerMode::PubSub);
    let (b, b_events) = node(&redis.url(), BrokerMode::PubSub);
    wait_events(&a_events, 1, "Connected", connected);
    wait_events(&b_events, 1, "Connected", connected);
    let publisher = a.handle();
    let mut b_sub = Client::connect(b.local_addr());
    b_sub.command("sub t");
    sync(&b_sub, "a", |probe| {
        let _ = publisher.publish("t", Message::Text(probe));
    });
    for i in 0..50 {
        publisher
            .publish("t", Message::Text(&format!("before:{i}")))
            .expect("publish");
    }
    let got = read_until(&b_sub, &["before:49"], Duration::from_secs(10));
    assert_sequence(&got, "before:", 50);

    redis.kill();
    wait_events(&a_events, 1, "Disconnected", disconnected);
    wait_events(&b_events, 1, "Disconnected", disconnected);
    for i in 0..20 {
        publisher
            .publish("t", Message::Text(&format!("lost:{i}")))
            .expect("publish");
    }
    wait_events(
        &a_events,
        1,
        "PublishFailed",
        |event| matches!(event, BrokerEvent::PublishFailed { topic, .. } if topic == "t"),
    );
    redis.restart();
    wait_events(&b_events, 2, "Connected", connected);
    wait_events(
        &b_events,
        1,
        "Gap",
        |event| matches!(event, BrokerEvent::Gap { topic } if topic == "t"),
    );
    assert!(b.handle().pubsub_stats().gaps >= 1);
    assert!(a.handle().pubsub_stats().broker_publish_failures >= 20);
    wait_events(&a_events, 2, "Connected", connected);
    sync(&b_sub, "a", |probe| {
        let _ = publisher.publish("t", Message::Text(probe));
    });
    for i in 0..50 {
        publisher
            .publish("t", Message::Text(&format!("after:{i}")))
            .expect("publish");
    }
    let got = read_until(&b_sub, &["after:49"], Duration::from_secs(10));
    assert_sequence(&got, "after:", 50);
    assert!(
        got.iter().all(|text| !text.starts_with("lost:")),
        "a message published while Redis was down arrived"
    );
    drop(b_sub);
    a.shutdown().expect("shutdown a");
    b.shutdown().expect("shutdown b");
}

/// Streams mode, Redis with `appendonly yes` killed and restarted while a thread keeps
/// publishing on node A: every message reaches the subscribers on both nodes exactly
/// once and in order, those published during the outage included.
#[test]
fn streams_mode_loses_nothing_when_redis_restarts() {
    let Some(mut redis) =
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    else {
        return;
    };
    let (a, a_events) = node(&redis.url(), BrokerMode::Streams);
    let (b, b_events) = node(&redis.url(), BrokerMode::Streams);
    wait_events(&a_events, 1, "Connected", connected);
    wait_events(&b_events, 1, "Connected", connected);
    let mut a_sub = Client::connect(a.local_addr());
    let mut b_sub = Client::connect(b.local_addr());
    a_sub.command("sub t");
    b_sub.command("sub t");
    let probe = a.handle();
    sync(&b_sub, "a", |text| {
        let _ = probe.publish("t", Message::Text(text));
    });

    const N: usize = 2000;
    let published = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let handle = a.handle();
        let published = Arc::clone(&published);
        thread::spawn(move || {
            for i in 0..N {
                handle
                    .publish("t", Message::Text(&format!("s:{i}")))
                    .expect("publish");
                published.store(i + 1, Ordering::SeqCst);
                // Paced, so that the outage falls in the middle of the stream.
                thread::sleep(Duration::from_micros(500));
            }
        })
    };
    let wait_published = |count: usize| {
        let limit = Instant::now() + Duration::from_secs(10);
        while published.load(Ordering::SeqCst) < count {
            assert!(Instant::now() < limit, "the publisher is stuck");
            thread::sleep(Duration::from_millis(1));
        }
    };
    wait_published(N / 4);
    redis.kill();
    wait_events(&a_events, 1, "Disconnected", disconnected);
    let at_kill = published.load(Ordering::SeqCst);
    wait_published((at_kill + N / 4).min(N));
    redis.restart();
    publisher.join().expect("publisher");
    for (subscriber, name) in [(&a_sub, "a"), (&b_sub, "b")] {
        let last = format!("s:{}", N - 1);
        let got = read_until(subscriber, &[last.as_str()], Duration::from_secs(15));
        assert_sequence(&got, "s:", N);
        assert!(
            got.iter().all(|text| text.starts_with("s:")),
            "{name}: {got:?}"
        );
    }
    assert!(
        published.load(Ordering::SeqCst) == N && at_kill < N,
        "the outage fell inside the stream"
    );
    wait_events(&b_events, 1, "Disconnected", disconnected);
    let stats = a.handle().pubsub_stats();
    assert_eq!(stats.broker_publish_failures, 0, "{stats:?}");
    let gaps: Vec<BrokerEvent> = b_events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, BrokerEvent::Gap { .. }))
        .cloned()
        .collect();
    assert!(gaps.is_empty(), "{gaps:?}");
    // No duplicate trails the last message either.
    a_sub.send("sub end");
    assert_eq!(
        a_sub.next_text(Duration::from_secs(5)).as_deref(),
        Some("ok")
    );
    b_sub.send("sub end");
    assert_eq!(
        b_sub.next_text(Duration::from_secs(5)).as_deref(),
        Some("ok")
    );
    drop((a_sub, b_sub));
    a.shutdown().expect("shutdown a");
    b.shutdown().expect("shutdown b");
}

/// A URL that does not parse fails `build` with InvalidInput; an unreachable Redis does
/// not: the server runs, the link reports Disconnected, and shutdown stays prompt.
#[test]
fn a_bad_url_fails_build_and_an_unreachable_redis_does_not() {
    for url in [
        "not a url",
        "http://127.0.0.1:6379",
        "redis://127.0.0.1:notaport",
    ] {
        let error = builder()
            .redis(url, BrokerMode::PubSub)
            .websocket("/node", || Node)
            .build()
            .err()
            .unwrap_or_else(|| panic!("{url} was accepted"));
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{url}: {error}");
        assert!(error.to_string().contains("Redis URL"), "{error}");
    }
    // A port nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    for mode in [BrokerMode::PubSub, BrokerMode::Streams] {
        let (server, events) = node(&format!("redis://127.0.0.1:{port}"), mode);
        wait_events(&events, 1, "Disconnected", disconnected);
        // Subscribing and publishing still work locally.
        let mut sub = Client::connect(server.local_addr());
        let mut publisher = Client::connect(server.local_addr());
        sub.command("sub t");
        publisher.send("pub t local");
        assert_eq!(
            sub.next_text(Duration::from_secs(5)).as_deref(),
            Some("local")
        );
        drop((sub, publisher));
        let started = Instant::now();
        server.shutdown().expect("shutdown");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "shutdown took {:?}",
            started.elapsed()
        );
        assert!(
            !events.lock().unwrap().iter().any(connected),
            "connected to nothing?"
        );
    }
}

/// Streams mode: entries a node had not read yet are deleted while its link is down
/// (here in one transaction that adds an entry, deletes it and cuts every client
/// off): when the link is back the node reports a gap for the topic, and goes on
/// delivering what comes next.
#[test]
fn streams_mode_reports_a_gap_when_unread_entries_are_gone() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, a_events) = node(&redis.url(), BrokerMode::Streams);
    let (b, b_events) = node(&redis.url(), BrokerMode::Streams);
    wait_events(&a_events, 1, "Connected", connected);
    wait_events(&b_events, 1, "Connected", connected);
    let mut b_sub = Client::connect(b.local_addr());
    b_sub.command("sub t");
    let publisher = a.handle();
    sync(&b_sub, "a", |probe| {
        let _ = publisher.publish("t", Message::Text(probe));
    });
    let mut con = inspect(&redis);
    let far = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        + 60_000;
    let id = format!("{far}-0");
    let (_, _, _): (String, i64, redis::Value) = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg("ringws:s:t")
        .arg(&id)
        .arg("node")
        .arg("0000000000000001")
        .arg("seq")
        .arg(1)
        .arg("kind")
        .arg("t")
        .arg("data")
        .arg("never read")
        .cmd("XDEL")
        .arg("ringws:s:t")
        .arg(&id)
        .cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut con)
        .expect("MULTI: XADD, XDEL, CLIENT KILL");
    wait_events(
        &b_events,
        1,
        "Gap",
        |event| matches!(event, BrokerEvent::Gap { topic } if topic == "t"),
    );
    assert_eq!(b.handle().pubsub_stats().gaps, 1);
    wait_events(&b_events, 2, "Connected", connected);
    // A only publishes: its idle check (a PING each second) finds the cut and connects
    // again without waiting for a publish to fail.
    wait_events(&a_events, 1, "Disconnected", disconnected);
    wait_events(&a_events, 2, "Connected", connected);
    publisher
        .publish("t", Message::Text("next"))
        .expect("publish");
    assert_eq!(
        b_sub.next_text(Duration::from_secs(10)).as_deref(),
        Some("next")
    );
    drop(b_sub);
    a.shutdown().expect("shutdown a");
    b.shutdown().expect("shutdown b");
}
