//! A connection driven by hand, with no shard, socket or clock: bytes in, the queued
//! bytes out, a fake `now` for the timers, and a fake `Post` for handles. Covers the
//! HTTP front (handshake, 408) and the open session (messages whole, fragmented and
//! interleaved with control frames, close both ways, idle ping then 1001, the close
//! timeout, pause/resume, backpressure then drain).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Config, Connection, Inbound, Session, ShardContext, Stage, Timer};
use crate::conn::{Conn, ConnId, Framing, Token};
use crate::handle::{Outgoing, Post, Stopped};
use crate::handler::{CloseReason, Handler, Message};
use crate::proto::{Decoder, Event, OpCode, Role};
use crate::route::{Accept, Route, Routes, WebSocketOptions};

/// A `Post` that keeps nothing (no shard behind it).
struct NoPost;

impl Post for NoPost {
    fn post(&self, _to: ConnId, _message: Outgoing) -> Result<(), Stopped> {
        Ok(())
    }

    fn post_publication(
        &self,
        _shard: usize,
        _publication: Arc<crate::pubsub::hub::Publication>,
    ) -> Result<(), Stopped> {
        Ok(())
    }
}

type Log = Arc<Mutex<Vec<String>>>;

/// A handler that logs its callbacks and obeys a few text commands.
struct Probe {
    log: Log,
}

impl Handler for Probe {
    fn on_open(&mut self, _conn: &mut Conn<'_>) {
        self.log.lock().unwrap().push("open".into());
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        let text = match message {
            Message::Text(text) => text.to_owned(),
            Message::Binary(bytes) => format!("binary:{}", bytes.len()),
        };
        self.log.lock().unwrap().push(format!("message:{text}"));
        match text.as_str() {
            "close" => conn.close(1000, "bye"),
            "pause" => conn.pause_reading(),
            "flood" => {
                let big = vec![0u8; 64 * 1024];
                let status = conn.send_binary(&big);
                self.log.lock().unwrap().push(format!("sent:{status:?}"));
            }
            _ => {
                conn.send_text(&text);
            }
        }
    }

    fn on_drain(&mut self, _conn: &mut Conn<'_>) {
        self.log.lock().unwrap().push("drain".into());
    }

    fn on_close(&mut self, _conn: &mut Conn<'_>, reason: CloseReason) {
        let line = format!(
            "close:{}:{}:{:?}",
            reason.code.0, reason.reason, reason.initiator
        );
        self.log.lock().unwrap().push(line);
    }
}

struct Harness {
    conn: Connection,
    ctx: ShardContext,
    now: Instant,
    log: Log,
    /// The server's output not yet looked at.
    wire: Vec<u8>,
    client: Decoder,
}

fn config() -> Config {
    let mut config = crate::server::default_config();
    config.idle_timeout = Some(Duration::from_secs(10));
    config.handshake_timeout = Duration::from_secs(3);
    config.close_timeout = Duration::from_secs(2);
    config.out_limits.backpressure_threshold = 16 * 1024;
    config
}

impl Harness {
    fn new(config: Config) -> Harness {
        let log: Log = Arc::default();
        let hook_log = Arc::clone(&log);
        let mut routes = Routes::default();
        routes.insert(
            "/ws",
            Route::WebSocket {
                hook: Box::new(move |_| {
                    Ok(Accept::new(Probe {
                        log: Arc::clone(&hook_log),
                    }))
                }),
                options: WebSocketOptions::default(),
            },
        );
        let limits = config.limits;
        let ctx = ShardContext::standalone(routes, config, Arc::new(NoPost));
        let now = Instant::now();
        let id = ConnId {
            shard: 0,
            token: Token::new(1, 1),
        };
        let conn = Connection::new(id, None, &ctx.config, now);
        Harness {
            conn,
            ctx,
            now,
            log,
            wire: Vec::new(),
            client: Decoder::new(Role::Client, limits),
        }
    }

    /// Bytes from the peer.
    fn recv(&mut self, bytes: &[u8]) {
        let mut bytes = bytes.to_vec();
        self.conn.receive(&mut bytes, &self.ctx, self.now);
    }

    /// Writes everything queued (as the shard would), reporting it written.
    fn write(&mut self) {
        let queued = std::mem::take(&mut self.conn.out.queued);
        self.wire.extend_from_slice(&queued);
        self.conn.on_written(&self.ctx, self.now);
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.conn.on_timer(&self.ctx, self.now);
        self.write();
    }

    fn log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    /// The frames written since the last call, as `opcode:payload` strings.
    fn frames(&mut self) -> Vec<String> {
        self.write();
        let mut wire = std::mem::take(&mut self.wire);
        let mut frames = Vec::new();
        let mut pos = 0;
        while pos < wire.len() {
            let (used, event) = self.client.decode(&mut wire[pos..]).expect("server frames");
            pos += used;
            match event {
                Some(Event::Text(text)) => frames.push(format!("text:{text}")),
                Some(Event::Binary(bytes)) => frames.push(format!("binary:{}", bytes.len())),
                Some(Event::Ping(payload)) => {
                    frames.push(format!("ping:{}", String::from_utf8_lossy(payload)))
                }
                Some(Event::Pong(payload)) => {
                    frames.push(format!("pong:{}", String::from_utf8_lossy(payload)))
                }
                Some(Event::Close(frame)) => frames.push(match frame {
                    Some(frame) => format!("close:{}:{}", frame.code.0, frame.reason),
                    None => "close".into(),
                }),
                Some(Event::Deflated { text, payload }) => {
                    frames.push(format!("deflated:{text}:{}", payload.len()))
                }
                Some(Event::DeflatedPart { .. }) => unreachable!("not streaming"),
                None if used == 0 => break,
                None => {}
            }
        }
        frames
    }

    /// The upgrade, checked: 101 out, the handler opened.
    fn open(&mut self) {
        self.recv(UPGRADE);
        self.write();
        let head = String::from_utf8(std::mem::take(&mut self.wire)).expect("head");
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        assert_eq!(self.log(), ["open"]);
        assert_eq!(self.conn.timers.get(Timer::Handshake), None);
        assert!(self.conn.timers.get(Timer::Idle).is_some());
    }
}

const UPGRADE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn text(payload: &str) -> Vec<u8> {
    frame(true, OpCode::Text as u8, payload.as_bytes())
}

fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    frame(true, OpCode::Close as u8, &payload)
}

#[test]
fn messages_whole_fragmented_and_interleaved_then_the_peer_closes() {
    let mut h = Harness::new(config());
    h.open();
    h.recv(&text("hello"));
    assert_eq!(h.log(), ["message:hello"]);
    assert_eq!(h.frames(), ["text:hello"]);
    // A fragmented message with a ping between its fragments, split across reads.
    let mut bytes = frame(false, OpCode::Text as u8, b"frag");
    bytes.extend(frame(true, OpCode::Ping as u8, b"p"));
    bytes.extend(frame(true, OpCode::Continuation as u8, b"mented"));
    let (a, b) = bytes.split_at(7);
    h.recv(a);
    h.recv(b);
    assert_eq!(h.log(), ["message:fragmented"]);
    assert_eq!(h.frames(), ["pong:p", "text:fragmented"]);
    h.recv(&close(1000, "done"));
    assert_eq!(h.frames(), ["close:1000:"]);
    assert_eq!(h.log(), ["close:1000:done:Peer"]);
    assert!(h.conn.wants_close());
    assert_eq!(h.conn.deadline(), None);
    // After the close nothing more is sent.
    h.recv(&text("late"));
    assert!(h.frames().is_empty());
    assert!(h.log().is_empty());
}

#[test]
fn the_handler_closes_and_the_peer_answers() {
    let mut h = Harness::new(config());
    h.open();
    h.recv(&text("close"));
    assert_eq!(h.frames(), ["close:1000:bye"]);
    assert_eq!(h.conn.timers.get(Timer::Idle), None);
    assert_eq!(
        h.conn.timers.get(Timer::Close),
        Some(h.now + Duration::from_secs(2))
    );
    // The peer's data after our close is dropped; its close ends it.
    h.recv(&text("ignored"));
    h.recv(&close(1000, ""));
    assert!(h.frames().is_empty());
    assert_eq!(h.log(), ["message:close", "close:1000:bye:Local"]);
    assert!(h.conn.wants_close());
}

#[test]
fn a_close_never_answered_ends_at_the_close_timeout() {
    let mut h = Harness::new(config());
    h.open();
    h.recv(&text("close"));
    assert_eq!(h.frames(), ["close:1000:bye"]);
    h.log();
    h.advance(Duration::from_millis(1999));
    assert!(!h.conn.wants_close());
    h.advance(Duration::from_millis(1));
    assert_eq!(h.log(), ["close:1000:bye:Local"]);
    assert!(h.conn.wants_close());
}

#[test]
fn an_idle_peer_is_pinged_then_closed_with_1001() {
    let mut h = Harness::new(config());
    h.open();
    h.advance(Duration::from_secs(4));
    assert!(h.frames().is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(h.frames(), ["ping:"]);
    h.advance(Duration::from_secs(5));
    assert_eq!(h.frames(), ["close:1001:idle timeout"]);
    assert_eq!(h.log(), ["close:1001:idle timeout:Local"]);
    assert!(h.conn.wants_close());
}

#[test]
fn bytes_received_put_the_idle_close_off() {
    let mut h = Harness::new(config());
    h.open();
    h.advance(Duration::from_secs(5));
    assert_eq!(h.frames(), ["ping:"]);
    h.recv(&frame(true, OpCode::Pong as u8, b""));
    // The ping was answered: the timer counts again from the pong (pinged again after
    // half the timeout, closed after all of it).
    h.advance(Duration::from_secs(5));
    assert_eq!(h.frames(), ["ping:"]);
    assert!(!h.conn.wants_close());
    h.advance(Duration::from_secs(4));
    assert!(!h.conn.wants_close());
    h.advance(Duration::from_secs(1));
    assert!(h.conn.wants_close());
}

#[test]
fn a_head_not_received_in_time_is_answered_408() {
    let mut h = Harness::new(config());
    h.recv(b"GET /ws HTTP/1.1\r\nHost: x\r\n");
    h.advance(Duration::from_secs(2));
    assert!(h.wire.is_empty());
    h.advance(Duration::from_secs(1));
    let answer = String::from_utf8(std::mem::take(&mut h.wire)).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(h.conn.wants_close());
    assert_eq!(h.conn.deadline(), None);
}

#[test]
fn input_waits_while_paused_and_flows_on_resume() {
    let mut h = Harness::new(config());
    h.open();
    let mut bytes = text("pause");
    bytes.extend(text("one"));
    h.recv(&bytes);
    h.recv(&text("two"));
    assert_eq!(h.log(), ["message:pause"]);
    assert!(!h.conn.wants_read());
    // The handler's pause keeps the idle close away.
    h.advance(Duration::from_secs(30));
    assert!(h.frames().iter().all(|f| f != "close:1001:idle timeout"));
    let (ctx, now) = (&h.ctx, h.now);
    h.conn.set_read_paused(false, ctx, now);
    assert_eq!(h.log(), ["message:one", "message:two"]);
    assert!(h.conn.wants_read());
}

#[test]
fn backpressure_then_drain() {
    let mut h = Harness::new(config());
    h.open();
    h.recv(&text("flood"));
    assert_eq!(h.log(), ["message:flood", "sent:Backpressure"]);
    assert!(h.conn.out.drain_owed);
    h.write();
    assert_eq!(h.log(), ["drain"]);
    assert_eq!(h.frames(), ["binary:65536"]);
}

#[test]
fn the_timers_are_one_per_kind() {
    let mut h = Harness::new(config());
    let start = h.now;
    assert_eq!(h.conn.deadline(), Some(start + Duration::from_secs(3)));
    h.open();
    assert_eq!(h.conn.deadline(), Some(start + Duration::from_secs(5)));
    let (ctx, now) = (&h.ctx, h.now);
    h.conn
        .shutdown(ctx, Some(now + Duration::from_secs(1)), now);
    assert_eq!(h.frames(), ["close:1001:server shutting down"]);
    assert_eq!(h.conn.timers.get(Timer::Idle), None);
    assert_eq!(h.conn.deadline(), Some(start + Duration::from_secs(1)));
    h.advance(Duration::from_secs(1));
    assert_eq!(h.log(), ["close:1001:server shutting down:Local"]);
}

#[test]
fn a_session_built_open_needs_no_request() {
    let mut h = Harness::new(config());
    let id = ConnId {
        shard: 0,
        token: Token::new(2, 1),
    };
    let handler = Box::new(Probe {
        log: Arc::clone(&h.log),
    });
    let open = Connection::open_with(id, Framing::Rfc6455, handler, None, &h.ctx, h.now);
    h.conn = open.expect("a wire framing");
    assert_eq!(h.log(), ["open"]);
    assert_eq!(h.conn.timers.get(Timer::Handshake), None);
    h.recv(&text("hi"));
    assert_eq!(h.frames(), ["text:hi"]);
    h.recv(&text("close"));
    h.recv(&close(1000, ""));
    assert_eq!(h.frames(), ["close:1000:bye"]);
    assert_eq!(
        h.log(),
        ["message:hi", "message:close", "close:1000:bye:Local"]
    );
    // hixie framing, same interface.
    let handler = Box::new(Probe {
        log: Arc::clone(&h.log),
    });
    h.conn =
        Connection::open_with(id, Framing::Hixie76, handler, None, &h.ctx, h.now).expect("hixie");
    h.log();
    h.recv(b"\x00hel");
    h.recv(b"lo\xff\xff\x00");
    assert_eq!(h.log(), ["message:hello", "close:1005::Peer"]);
    h.write();
    assert_eq!(h.wire, b"\x00hello\xff\xff\x00");
    assert!(Connection::open_with(
        id,
        Framing::SockJs,
        Box::new(Probe { log: h.log.clone() }),
        None,
        &h.ctx,
        h.now
    )
    .is_none());
}

#[test]
fn a_session_built_directly_is_driven_without_a_front() {
    let mut h = Harness::new(config());
    let id = ConnId {
        shard: 0,
        token: Token::new(3, 1),
    };
    let inbound = Inbound::Rfc6455(Decoder::new(Role::Server, h.ctx.config.limits));
    let handler = Box::new(Probe {
        log: Arc::clone(&h.log),
    });
    let session = Session::new(inbound, handler, h.now);
    h.conn = Connection::from_session(id, Framing::Rfc6455, session, None, &h.ctx, h.now);
    assert!(matches!(h.conn.stage, Stage::Open(_)));
    assert_eq!(h.log(), ["open"]);
    assert!(!h.conn.is_pending() && !h.conn.is_refused() && h.conn.wants_read());
    assert_eq!(h.conn.timers.get(Timer::Handshake), None);
    // The session's own idle timer: ping at half the timeout, 1001 at all of it.
    assert_eq!(h.conn.deadline(), Some(h.now + Duration::from_secs(5)));
    h.recv(&text("hi"));
    assert_eq!(h.frames(), ["text:hi"]);
    h.advance(Duration::from_secs(5));
    assert_eq!(h.frames(), ["ping:"]);
    h.advance(Duration::from_secs(5));
    assert_eq!(h.frames(), ["close:1001:idle timeout"]);
    assert_eq!(h.log(), ["message:hi", "close:1001:idle timeout:Local"]);
    assert!(matches!(h.conn.stage, Stage::Ended) && h.conn.wants_close());
}

const HIXIE76: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
Origin: http://x\r\nSec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n\
Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n\r\n";

/// A route that takes the hixie drafts too.
fn legacy_harness() -> Harness {
    let mut h = Harness::new(config());
    let log = Arc::clone(&h.log);
    let mut routes = Routes::default();
    routes.insert(
        "/ws",
        Route::WebSocket {
            hook: Box::new(move |_| {
                let log = Arc::clone(&log);
                Ok(Accept::new(Probe { log }))
            }),
            options: WebSocketOptions::default().legacy_drafts(true),
        },
    );
    h.ctx = ShardContext::standalone(routes, config(), Arc::new(NoPost));
    h
}

#[test]
fn a_hixie76_client_goes_through_the_same_session() {
    let mut h = legacy_harness();
    h.recv(HIXIE76);
    // The 101 head is out; the challenge waits for the 8 body bytes.
    assert!(h.log().is_empty());
    let mut bytes = b"^n:ds[4U".to_vec();
    bytes.extend_from_slice(b"\x00hi\xff");
    h.recv(&bytes);
    assert_eq!(h.log(), ["open", "message:hi"]);
    h.write();
    let wire = std::mem::take(&mut h.wire);
    assert!(wire.starts_with(b"HTTP/1.1 101"));
    assert!(wire.ends_with(b"8jKS'y:G*Co,Wxa-\x00hi\xff"), "{wire:?}");
    h.recv(b"\xff\x00");
    assert_eq!(h.log(), ["close:1005::Peer"]);
    h.write();
    assert_eq!(h.wire, b"\xff\x00");
}

#[test]
fn a_hixie76_body_not_received_in_time_just_closes() {
    let mut h = legacy_harness();
    h.recv(HIXIE76);
    h.write();
    h.wire.clear();
    h.advance(Duration::from_secs(3));
    // The 101 head is out: no HTTP answer is possible.
    assert!(h.wire.is_empty());
    assert!(h.conn.wants_close());
    assert!(h.log().is_empty());
}

#[test]
fn a_kept_alive_connection_that_stays_idle_closes_quietly() {
    let mut h = Harness::new(config());
    h.recv(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
    h.write();
    let answer = String::from_utf8(std::mem::take(&mut h.wire)).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(!h.conn.wants_close());
    assert_eq!(h.conn.deadline(), Some(h.now + Duration::from_secs(3)));
    h.advance(Duration::from_secs(3));
    assert!(h.wire.is_empty());
    assert!(h.conn.wants_close());
}
