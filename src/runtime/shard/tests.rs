//! The shard's cap on pending handshakes, driven without a network.

use std::sync::Arc;
use std::time::Instant;

use super::Shard;
use crate::runtime::core::{ShardCore, Token};

fn shard(max_pending: Option<usize>) -> Shard {
    let mut config = crate::server::default_config();
    config.max_pending = max_pending;
    Shard::standalone(Arc::default(), Arc::new(config))
}

/// A complete request (answered 404, kept alive: no longer pending).
fn request(shard: &mut Shard, token: Token) {
    let mut bytes = b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    shard.on_recv(token, &mut bytes, Instant::now());
}

fn queued(shard: &Shard, token: Token) -> String {
    match shard.conns.get(token) {
        Some(entry) => String::from_utf8_lossy(&entry.conn.out.queued).into_owned(),
        None => String::new(),
    }
}

#[test]
fn the_oldest_pending_connection_makes_room() {
    let mut s = shard(Some(2));
    let now = Instant::now();
    let t1 = s.on_accept(0, None, now);
    let t2 = s.on_accept(0, None, now);
    assert!(!s.wants_close(t1) && !s.wants_close(t2));
    let t3 = s.on_accept(0, None, now);
    assert!(s.wants_close(t1));
    assert!(
        queued(&s, t1).starts_with("HTTP/1.1 408 "),
        "{}",
        queued(&s, t1)
    );
    assert!(!s.wants_close(t2) && !s.wants_close(t3));
    // An answered connection no longer counts, and is never evicted.
    request(&mut s, t2);
    assert_eq!(s.pending, 1);
    let t4 = s.on_accept(0, None, now);
    assert!(!s.wants_close(t3) && !s.wants_close(t4));
    let t5 = s.on_accept(0, None, now);
    assert!(
        s.wants_close(t3),
        "t2 was skipped, t3 was the oldest pending"
    );
    assert!(!s.wants_close(t2) && !s.wants_close(t4) && !s.wants_close(t5));
    // Closed sockets leave the count.
    s.on_closed(t1);
    s.on_closed(t3);
    s.on_closed(t4);
    assert_eq!(s.pending, 1);
}

#[test]
fn the_order_queue_stays_bounded_and_no_limit_evicts_nothing() {
    let mut s = shard(Some(2));
    let now = Instant::now();
    let old = s.on_accept(0, None, now);
    for _ in 0..1000 {
        let token = s.on_accept(0, None, now);
        request(&mut s, token);
        s.on_closed(token);
        assert!(s.pending_order.len() <= 2 * 2 + 64 + 1);
    }
    assert!(
        !s.wants_close(old),
        "one pending connection is under the cap"
    );
    let mut s = shard(None);
    let tokens: Vec<Token> = (0..100).map(|_| s.on_accept(0, None, now)).collect();
    assert!(tokens.iter().all(|&t| !s.wants_close(t)));
    assert_eq!(s.pending, 100);
}

// The memory budget, driven without a network: a 1 MiB budget (high water 768 KiB, low
// water 512 KiB, scans every 64 KiB), echo connections on `/`.

const KIB: usize = 1024;

struct Echo;

impl crate::Handler for Echo {
    fn on_message(&mut self, conn: &mut crate::Conn<'_>, message: crate::Message<'_>) {
        conn.send_binary(message.as_bytes());
    }
}

fn budget_shard(budget: usize) -> Shard {
    use crate::route::{Accept, Route, Routes, WebSocketOptions};
    let mut config = crate::server::default_config();
    config.memory_budget = budget;
    let mut routes = Routes::default();
    routes.insert(
        "/",
        Route::WebSocket {
            hook: Box::new(|_| Ok(Accept::new(Echo))),
            options: WebSocketOptions::default(),
        },
    );
    Shard::standalone(Arc::new(routes), Arc::new(config))
}

/// An accepted connection, upgraded (its 101 answer taken as sent).
fn open_ws(s: &mut Shard, now: Instant) -> Token {
    let token = s.on_accept(0, None, now);
    let mut request = b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    s.on_recv(token, &mut request, now);
    let answer = s.take_send(token).expect("the 101 answer");
    assert!(answer.starts_with(b"HTTP/1.1 101 "));
    let len = answer.len();
    s.on_sent(token, answer, Ok(len));
    token
}

/// One masked binary frame of `len` bytes: a first fragment (`fin` false) or a whole
/// message.
fn frame(len: usize, fin: bool) -> Vec<u8> {
    let mut out = Vec::new();
    crate::proto::encode_frame(
        &mut out,
        crate::proto::OpCode::Binary,
        fin,
        &vec![7u8; len],
        Some([1, 2, 3, 4]),
    );
    out
}

/// Sends the first `len` bytes of a fragment of `total` bytes (its header included).
fn send_part(s: &mut Shard, token: Token, total: usize, len: usize, now: Instant) {
    let mut bytes = frame(total, false);
    bytes.truncate(len);
    s.on_recv(token, &mut bytes, now);
}

fn queued_bytes(s: &Shard, token: Token) -> Vec<u8> {
    s.conns
        .get(token)
        .map(|entry| entry.conn.out.queued.clone())
        .unwrap_or_default()
}

fn counted(s: &Shard) -> usize {
    s.conns
        .iter()
        .map(|(_, e)| e.conn.held().total())
        .sum::<usize>()
        + s.sessions.held()
}

#[test]
fn the_budget_counts_what_connections_hold_and_nothing_once_they_are_gone() {
    let mut s = budget_shard(usize::MAX);
    let now = Instant::now();
    let a = open_ws(&mut s, now);
    let b = open_ws(&mut s, now);
    assert_eq!(s.budget.held(), 0, "idle open connections hold nothing");
    // 50 KiB of a 100 KiB frame: its assembly buffer (the frame, reserved ahead).
    send_part(&mut s, a, 100 * KIB, 50 * KIB, now);
    assert!((100 * KIB..=114 * KIB).contains(&s.budget.held()));
    let assembly = s.budget.held();
    // A whole message echoed and not written yet: queued output.
    let mut whole = frame(30 * KIB, true);
    s.on_recv(b, &mut whole, now);
    assert_eq!(s.budget.held(), assembly + 30 * KIB + 4);
    assert_eq!(s.budget.held(), counted(&s));
    // Written: the output no longer counts.
    let out = s.take_send(b).expect("the echo");
    let len = out.len();
    s.on_sent(b, out, Ok(len));
    assert_eq!(s.budget.held(), counted(&s));
    s.on_closed(a);
    s.on_closed(b);
    assert_eq!(s.budget.held(), 0);
    let mut published = Vec::new();
    s.drain_ready(&mut published);
    assert_eq!(s.registry.memory_held(), 0);
}

#[test]
fn over_the_high_water_mark_the_largest_senders_pause_and_resume_under_the_low_one() {
    let mut s = budget_shard(1024 * KIB);
    let now = Instant::now();
    let big = open_ws(&mut s, now);
    let mid = open_ws(&mut s, now);
    let honest = open_ws(&mut s, now);
    // Assembly buffers reserved 64 KiB ahead: 414 + 314 KiB, under 768 KiB.
    send_part(&mut s, big, 500 * KIB, 350 * KIB, now);
    send_part(&mut s, mid, 500 * KIB, 250 * KIB, now);
    assert!(s.wants_read(big) && s.wants_read(mid));
    // Over 768 KiB: the biggest sender alone covers the excess.
    send_part(&mut s, honest, 200 * KIB, 100 * KIB, now);
    assert!(s.budget.held() > s.budget.high_water());
    assert!(!s.wants_read(big), "the largest sender is paused");
    assert!(s.wants_read(mid) && s.wants_read(honest));
    // Under the high-water mark but over the low one: still paused.
    s.on_closed(honest);
    assert!(s.budget.held() > s.budget.low_water());
    let mut ready = Vec::new();
    s.drain_ready(&mut ready);
    assert!(!s.wants_read(big));
    // Under the low-water mark: read again.
    s.on_closed(mid);
    s.drain_ready(&mut ready);
    assert!(s.wants_read(big));
    assert_eq!(s.budget.paused(), 0);
    s.on_closed(big);
    assert_eq!(s.budget.held(), 0);
}

/// The close frame `code` `reason` as the server sends it.
fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut out = Vec::new();
    crate::proto::encode::encode_close(&mut out, Some(crate::proto::CloseCode(code)), reason, None);
    out
}

#[test]
fn a_sender_paused_for_the_close_timeout_is_closed_with_1009() {
    let mut s = budget_shard(1024 * KIB);
    let now = Instant::now();
    let big = open_ws(&mut s, now);
    let honest = open_ws(&mut s, now);
    send_part(&mut s, big, 1000 * KIB, 900 * KIB, now);
    assert!(!s.wants_read(big));
    assert!(!s.wants_close(big));
    let close_timeout = s.ctx.config.close_timeout;
    s.on_timer(now + close_timeout / 2);
    assert!(
        !s.wants_close(big),
        "paused, not closed, before the close timeout"
    );
    s.on_timer(Instant::now() + close_timeout);
    assert!(s.wants_close(big));
    assert_eq!(
        queued_bytes(&s, big),
        close_frame(1009, "message too big for the server's memory")
    );
    // The assembly buffer went with the close.
    assert_eq!(s.conns.get(big).map(|e| e.conn.held().incoming), Some(0));
    assert!(!s.wants_close(honest) && s.wants_read(honest));
    s.on_closed(big);
    s.on_closed(honest);
    assert_eq!(s.budget.held(), 0);
}

#[test]
fn over_the_budget_the_largest_output_holders_are_closed_with_1008() {
    let mut s = budget_shard(1024 * KIB);
    let now = Instant::now();
    let honest = open_ws(&mut s, now);
    let readers: Vec<Token> = (0..4).map(|_| open_ws(&mut s, now)).collect();
    let mut small = frame(10, true);
    s.on_recv(honest, &mut small, now);
    // Echoes of 300 KiB that nobody takes: 1200 KiB of output, over the whole budget.
    for (i, &token) in readers.iter().enumerate() {
        let mut whole = frame(300 * KIB + i * KIB, true);
        s.on_recv(token, &mut whole, now);
    }
    let closed: Vec<Token> = readers
        .iter()
        .copied()
        .filter(|&t| s.wants_close(t))
        .collect();
    // The two largest (303 and 302 KiB) bring it back under 768 KiB.
    assert_eq!(closed, [readers[2], readers[3]]);
    for &token in &closed {
        assert_eq!(
            queued_bytes(&s, token),
            close_frame(1008, "output over the server's memory budget")
        );
    }
    assert!(!s.wants_close(honest));
    assert!(s.budget.held() <= s.budget.high_water());
    for token in readers.into_iter().chain([honest]) {
        s.on_closed(token);
    }
    assert_eq!(s.budget.held(), 0);
}

/// Answers `big` with 800 KiB of text, anything else with itself.
struct Loud;

impl crate::Handler for Loud {
    fn on_message(&mut self, conn: &mut crate::Conn<'_>, message: crate::Message<'_>) {
        match message {
            crate::Message::Text("big") => conn.send_text(&"x".repeat(800 * KIB)),
            crate::Message::Text(text) => conn.send_text(text),
            crate::Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }
}

fn sockjs_shard(budget: usize) -> Shard {
    let mut config = crate::server::default_config();
    config.memory_budget = budget;
    let mut routes = crate::route::Routes::default();
    routes.insert_sockjs(
        "/s",
        crate::sockjs::SockJsOptions::default(),
        Box::new(|| Box::new(Loud) as Box<dyn crate::Handler>),
    );
    Shard::standalone(Arc::new(routes), Arc::new(config))
}

/// One HTTP request on a new connection; returns the connection and its answer.
fn http(s: &mut Shard, path: &str, body: &str, now: Instant) -> (Token, String) {
    let token = s.on_accept(0, None, now);
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
    s.on_recv(token, &mut request, now);
    let answer = queued(s, token);
    if let Some(out) = s.take_send(token) {
        let len = out.len();
        s.on_sent(token, out, Ok(len));
    }
    (token, answer)
}

#[test]
fn sockjs_sessions_count_their_queues_and_are_closed_over_the_budget() {
    let mut s = sockjs_shard(1024 * KIB);
    let now = Instant::now();
    let (poll, answer) = http(&mut s, "/s/000/abc/xhr", "", now);
    assert!(answer.contains("\r\no\n"), "{answer}");
    // Sent with no poll attached: the answer waits in the session.
    let (send, answer) = http(&mut s, "/s/000/abc/xhr_send", r#"["hi"]"#, now);
    assert!(answer.starts_with("HTTP/1.1 204 "), "{answer}");
    assert!(s.sessions.held() > 0);
    assert_eq!(s.budget.held(), counted(&s));
    let (poll2, answer) = http(&mut s, "/s/000/abc/xhr", "", now);
    assert!(answer.contains("a[\"hi\"]\n"), "{answer}");
    assert_eq!(s.sessions.held(), 0);
    // 800 KiB waiting: over the high-water mark, but a session is not paused.
    let (send2, _) = http(&mut s, "/s/000/abc/xhr_send", r#"["big"]"#, now);
    assert!(s.budget.held() > s.budget.high_water());
    assert!(s.sessions.held() < 1024 * KIB);
    // 1600 KiB: over the whole budget. The session is closed with 1008; its queue
    // goes to the next poll, whose answer is then the largest holder, still over the
    // budget: it is dropped for a 503. The poll after that gets the close.
    let (send3, _) = http(&mut s, "/s/000/abc/xhr_send", r#"["big"]"#, now);
    assert!(s.budget.held() > s.budget.limit());
    let (poll3, answer) = http(&mut s, "/s/000/abc/xhr", "", now);
    assert_eq!(
        answer,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 32\r\nConnection: close\r\n\r\nover the server's memory budget\n"
    );
    assert!(s.budget.held() < s.budget.high_water());
    let (poll4, answer) = http(&mut s, "/s/000/abc/xhr", "", now);
    assert!(
        answer.contains("c[1008,\"output over the server's memory budget\"]\n"),
        "{answer}"
    );
    assert_eq!(s.sessions.held(), 0);
    for token in [poll, send, poll2, send2, send3, poll3, poll4] {
        s.on_closed(token);
    }
    assert_eq!(s.budget.held(), 0);
}
