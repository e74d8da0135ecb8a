//! A connection driven by hand for the `session` fuzz target (`fuzz/fuzz_targets/`)
//! and its seed replay (`tests/fuzz_seeds.rs`): bytes in, a fake clock, the output
//! "written" on demand, and handler actions chosen by the caller. Public only as
//! `ringws::fuzzing` (hidden from the docs, behind the `fuzzing` feature); not an API.
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Config, Connection, ShardContext};
use crate::conn::{Conn, ConnId, Framing, Token};
use crate::handle::{Outgoing, Post, Stopped};
use crate::handler::{CloseReason, Handler, Message};
use crate::proto::{CloseCode, Limits};
use crate::pubsub::hub::Publication;
use crate::route::{Accept, HttpResponse, Route, Routes, WebSocketOptions};

/// Something the handler does (at its next callback, or posted as a handle would).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Sends a text (or binary) message of `len` bytes.
    Send { len: usize, binary: bool },
    /// Sends a ping.
    Ping,
    /// Starts the close handshake with this code.
    Close(u16),
    /// Pauses reading.
    Pause,
    /// Resumes reading.
    Resume,
    /// Publishes a text (or binary) message of `len` bytes to the topic `fz`: the
    /// handler subscribes and `publish_to_all`s it; a post delivers it to the
    /// connection as the shard's fan-out would.
    Publish { len: usize, binary: bool },
}

impl Action {
    /// An action from one byte and a length.
    pub fn from_byte(byte: u8, len: usize) -> Action {
        match byte % 8 {
            0 => Action::Send { len, binary: false },
            1 => Action::Send { len, binary: true },
            2 => Action::Ping,
            3 => Action::Close(1000 + u16::from(byte >> 3)),
            4 => Action::Pause,
            5 => Action::Resume,
            6 => Action::Publish { len, binary: false },
            _ => Action::Publish { len, binary: true },
        }
    }
}

/// The limits the fuzz target sets.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    pub backpressure_threshold: usize,
    pub max_buffered: usize,
    pub pause_on_backpressure: bool,
    pub close_on_limit: bool,
}

#[derive(Default)]
struct Shared {
    actions: VecDeque<Action>,
    closed: bool,
    callbacks_after_close: usize,
}

struct Actor {
    shared: Arc<Mutex<Shared>>,
}

impl Actor {
    fn act(&self, conn: &mut Conn<'_>) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if shared.closed {
            shared.callbacks_after_close += 1;
        }
        while let Some(action) = shared.actions.pop_front() {
            apply(action, conn);
        }
    }
}

fn apply(action: Action, conn: &mut Conn<'_>) {
    match action {
        Action::Send { len, binary: false } => {
            conn.send_text(&"x".repeat(len));
        }
        Action::Send { len, binary: true } => {
            conn.send_binary(&vec![0xA5; len]);
        }
        Action::Ping => {
            conn.ping(b"fz");
        }
        Action::Close(code) => conn.close(code, "fuzz"),
        Action::Pause => conn.pause_reading(),
        Action::Resume => conn.resume_reading(),
        Action::Publish { len, binary } => {
            conn.subscribe(TOPIC);
            let text = "y".repeat(len);
            let bytes = vec![0x3C; len];
            conn.publish_to_all(TOPIC, published(&text, &bytes, binary));
        }
    }
}

/// The topic the fuzzed handler publishes to.
const TOPIC: &str = "fz";

fn published<'a>(text: &'a str, bytes: &'a [u8], binary: bool) -> Message<'a> {
    match binary {
        true => Message::Binary(bytes),
        false => Message::Text(text),
    }
}

impl Handler for Actor {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        self.act(conn);
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, _message: Message<'_>) {
        self.act(conn);
    }

    fn on_pong(&mut self, conn: &mut Conn<'_>, _payload: &[u8]) {
        self.act(conn);
    }

    fn on_drain(&mut self, conn: &mut Conn<'_>) {
        self.act(conn);
    }

    fn on_close(&mut self, _conn: &mut Conn<'_>, _reason: CloseReason) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if shared.closed {
            shared.callbacks_after_close += 1;
        }
        shared.closed = true;
    }
}

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

/// One connection of a shard that is not there: `/ws` upgrades (every draft) to a
/// handler doing the queued [`Action`]s, `/http` answers a short text.
pub struct Session {
    conn: Connection,
    ctx: ShardContext,
    now: Instant,
    shared: Arc<Mutex<Shared>>,
}

impl Session {
    pub fn new(limits: SessionLimits) -> Session {
        let shared: Arc<Mutex<Shared>> = Arc::default();
        let hook_shared = Arc::clone(&shared);
        let mut routes = Routes::default();
        routes.insert(
            "/ws",
            Route::WebSocket {
                hook: Box::new(move |_| {
                    let shared = Arc::clone(&hook_shared);
                    Ok(Accept::new(Actor { shared }))
                }),
                // Deflate when offered: a low threshold, a budget of one live stream
                // and a hibernation the fuzzed clock reaches.
                options: WebSocketOptions::default().legacy_drafts(true).deflate(
                    crate::DeflateOptions::context_takeover()
                        .threshold(16)
                        .max_live_streams(1)
                        .hibernate_after(Duration::from_secs(2)),
                ),
            },
        );
        routes.insert(
            "/http",
            Route::Http(Box::new(|_| HttpResponse::text(200, "ok\n"))),
        );
        let mut config: Config = crate::server::default_config();
        config.limits = Limits {
            max_frame_size: 1 << 12,
            max_message_size: 1 << 14,
        };
        config.out_limits.backpressure_threshold = limits.backpressure_threshold;
        config.out_limits.max_buffered = limits.max_buffered;
        config.out_limits.pause_on_backpressure = limits.pause_on_backpressure;
        config.out_limits.close_on_limit = limits.close_on_limit;
        // Low enough that published messages of the fuzzed sizes take the shared path.
        config.out_limits.shared_send_min = 256;
        config.idle_timeout = Some(Duration::from_secs(10));
        config.handshake_timeout = Duration::from_secs(3);
        config.close_timeout = Duration::from_secs(2);
        let ctx = ShardContext::standalone(routes, config, Arc::new(NoPost));
        let now = Instant::now();
        let id = ConnId {
            shard: 0,
            token: Token::new(1, 1),
        };
        let conn = Connection::new(id, None, &ctx.config, now);
        Session {
            conn,
            ctx,
            now,
            shared,
        }
    }

    /// A session built already open (no request, no handshake): RFC 6455 frames, or
    /// hixie-76 ones.
    pub fn open(limits: SessionLimits, hixie: bool) -> Session {
        let mut session = Session::new(limits);
        let framing = match hixie {
            true => Framing::Hixie76,
            false => Framing::Rfc6455,
        };
        let handler = Box::new(Actor {
            shared: Arc::clone(&session.shared),
        });
        let id = session.conn.id;
        session.conn = Connection::open_with(id, framing, handler, None, &session.ctx, session.now)
            .expect("a wire framing");
        session
    }

    /// Bytes from the peer.
    pub fn receive(&mut self, bytes: &[u8]) {
        let mut bytes = bytes.to_vec();
        self.conn.receive(&mut bytes, &self.ctx, self.now);
    }

    /// The clock moves on by `by`; due timers fire.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.conn.on_timer(&self.ctx, self.now);
    }

    /// The handler does `action` at its next callback.
    pub fn act(&mut self, action: Action) {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .actions
            .push_back(action);
    }

    /// A handle posts `action` (as `ConnHandle` would, applied on the shard); a
    /// publish is delivered as the shard's fan-out does.
    pub fn post(&mut self, action: Action) {
        let message = match action {
            Action::Publish { len, binary } => {
                let text = "z".repeat(len);
                let bytes = vec![0xC3; len];
                let message = published(&text, &bytes, binary);
                let publication = Publication::new(TOPIC, message, None);
                self.conn.deliver(&publication, true, &self.ctx, self.now);
                return;
            }
            Action::Send { len, binary: false } => Outgoing::Text("x".repeat(len).into()),
            Action::Send { len, binary: true } => Outgoing::Binary(vec![0x5A; len].into()),
            Action::Ping => Outgoing::Ping(b"fz".to_vec().into()),
            Action::Close(code) => Outgoing::Close {
                code: CloseCode(code),
                reason: "fuzz".into(),
            },
            Action::Pause => Outgoing::PauseReading,
            Action::Resume => Outgoing::ResumeReading,
        };
        self.conn.posted(message, &self.ctx, self.now);
    }

    /// Writes everything queued, as the shard would (one send per chunk); returns the
    /// bytes written.
    pub fn write(&mut self) -> Vec<u8> {
        let mut written = Vec::new();
        while let Some(chunk) = self.conn.out.take_output() {
            written.extend_from_slice(&chunk);
            self.conn.out.in_flight = 0;
            self.conn.on_written(&self.ctx, self.now);
        }
        self.conn.on_written(&self.ctx, self.now);
        written
    }

    /// One send that the socket takes only `n` bytes of (a short write); the rest goes
    /// back to the front of the output. Returns the bytes written.
    pub fn write_part(&mut self, n: usize) -> Vec<u8> {
        let Some(mut chunk) = self.conn.out.take_output() else {
            return Vec::new();
        };
        let n = n.min(chunk.len());
        let written = chunk[..n].to_vec();
        if n < chunk.len() {
            chunk.advance(n);
            self.conn.out.unsent(chunk);
        } else {
            self.conn.out.in_flight = 0;
        }
        self.conn.on_written(&self.ctx, self.now);
        written
    }

    /// Bytes queued or in flight (what `max_buffered` counts).
    pub fn buffered(&self) -> usize {
        self.conn.out.buffered()
    }

    pub fn max_buffered(&self) -> usize {
        self.conn.out.limits.max_buffered
    }

    /// The socket should close once the output is written.
    pub fn wants_close(&self) -> bool {
        self.conn.wants_close()
    }

    /// When the connection next needs the time.
    pub fn deadline(&self) -> Option<Instant> {
        self.conn.deadline()
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// The handler heard `on_close`.
    pub fn handler_closed(&self) -> bool {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).closed
    }

    /// Callbacks the handler got after `on_close` (must stay 0).
    pub fn callbacks_after_close(&self) -> usize {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .callbacks_after_close
    }
}
