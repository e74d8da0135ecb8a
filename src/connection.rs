//! One connection's state machine: HTTP request head → route → WebSocket upgrade (or an
//! HTTP answer) → frames → handler callbacks, and the close handshake.
//!
//! It does no I/O: the shard feeds it received bytes and the current time, and reads
//! back what to send ([`Connection::out`]), whether the socket should be closed
//! ([`Connection::wants_close`]) and when it next needs the time
//! ([`Connection::deadline`]).
//!
//! A connection is a thin wrapper (its id, the [`Outbox`], the [`Timers`], the rare
//! state) around its [`Stage`]: the HTTP [`Front`] (`front.rs`: requests, routes,
//! answers, upgrades, static files, SockJS dispatch; its own fields: the phase, the
//! keep-alive count, the `/info` seed, the shutdown's drain, the file being streamed),
//! then the open [`Session`] (`session.rs`: the inbound decoder, the handler and the
//! idle state; one receive loop for every framing, the close handshake, handler
//! callbacks), then `Ended`. The upgrade turns the front into a session
//! (`Connection::open`); [`Connection::open_with`] builds the session directly, with no
//! front. Clients of every
//! version share the session: RFC 6455 and hybi-07/08 frame through the [`Decoder`];
//! the legacy hixie-75/76 drafts have their own handshake (`hixie.rs`) and decoder,
//! behind the same [`Inbound::decode`]. Timers are one deadline per kind (`timers.rs`).
//! `pause.rs` holds input back while the handler or the output's backpressure pauses
//! it.

mod budget;
mod compression;
mod front;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod hixie;
mod lifecycle;
mod pause;
mod rare;
mod session;
mod sockjs;
mod static_file;
#[cfg(test)]
mod tests;
mod timers;

use session::close_reason;
pub(crate) use session::guard;
pub(crate) use timers::{Timer, Timers};

pub(crate) use budget::{budget_close_for, Held};
pub(crate) use compression::{Compression, DeflateTraffic, ShardCodecs};
#[cfg(feature = "test-hooks")]
pub(crate) use sockjs::owner_shard;
pub(crate) use sockjs::{
    run_session_events, SessionKey, SockJsOp, SockJsReply, SockJsRequest, WallClock,
};
#[cfg(test)]
pub(crate) use static_file::FILE_CHUNK;
pub(crate) use static_file::{FileAnswer, FileBody, FileRead};

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::{ConnId, OutLimits, Outbox};
use crate::handle::Post;
use crate::handler::{CloseInitiator, Handler};
use crate::metrics::ShardMetrics;
use crate::proto::{CloseCode, Decoder, HixieDecoder, Limits};
use crate::pubsub::hub::Hub;
use crate::pubsub::{ShardTopics, SlowSubscribers};
use crate::route::Routes;

/// Server-wide settings every connection reads.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) limits: Limits,
    pub(crate) out_limits: OutLimits,
    pub(crate) max_head_bytes: usize,
    /// The largest request body accepted (a larger one is answered 413).
    pub(crate) max_body_bytes: usize,
    /// How long a client may take to send its complete request head (and how long a
    /// kept-alive connection may stay idle between requests).
    pub(crate) handshake_timeout: Duration,
    /// How long we wait for the peer's close frame after sending ours.
    pub(crate) close_timeout: Duration,
    /// Every connection speaks TLS with this configuration (the runtime's `tls.rs`).
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// A WebSocket connection that received nothing for half of this is pinged, and
    /// closed with 1001 after all of it (`None`: never).
    pub(crate) idle_timeout: Option<Duration>,
    /// The connections one shard serves at once (`None`: no limit); the ones over it
    /// are answered 503 (see [`Connection::refuse`]).
    pub(crate) max_connections: Option<usize>,
    /// The connections one shard lets wait for their first request at once (`None`: no
    /// limit); past it the oldest is answered 408 (see [`Connection::evict`]).
    pub(crate) max_pending: Option<usize>,
    /// The bytes one shard may hold for its peers (its share of
    /// `Builder::memory_budget`; `usize::MAX`: no budget). See `runtime/shard/budget.rs`.
    pub(crate) memory_budget: usize,
    /// How long a shutdown waits for the peers' close replies, in nanoseconds (0: it
    /// does not wait). Set by `ServerHandle::shutdown_within` before it asks the shards.
    pub(crate) shutdown_grace: Arc<AtomicU64>,
    /// Set by `ServerHandle::restart_within`: the shards stop accepting (a successor
    /// holds the listeners) and the shutdown that follows says "server restarting".
    pub(crate) restarting: Arc<std::sync::atomic::AtomicBool>,
    /// What a subscriber that cannot keep up with its topics gets
    /// (`Builder::slow_subscribers`).
    pub(crate) slow_subscribers: SlowSubscribers,
    /// The reverse proxies whose forwarded client address the upgrade hook sees
    /// (`Builder::trusted_proxies`; empty: none).
    pub(crate) trusted_proxies: crate::http::TrustedProxies,
}

/// What every connection of a shard shares.
pub(crate) struct ShardContext {
    pub(crate) shard: u32,
    /// How many shards the server runs (SockJS sessions are owned by
    /// `owner_shard(.., shards)`).
    pub(crate) shards: usize,
    /// Where the handles of this shard's connections post (the runtime's mailbox
    /// registry, as a [`Post`]).
    pub(crate) poster: Arc<dyn Post>,
    pub(crate) routes: Arc<Routes>,
    pub(crate) config: Arc<Config>,
    /// The wall clock as the shard read it at its start (SockJS `Expires` dates); the
    /// connection layer reads no clock.
    pub(crate) wall: WallClock,
    /// The shard's topic table and the server's pub/sub hub (`Conn::subscribe`,
    /// `Conn::publish`).
    pub(crate) topics: ShardTopics,
    /// What the shard's permessage-deflate connections share (`compression.rs`).
    pub(crate) codecs: ShardCodecs,
    /// The shard's counters (`crate::metrics`).
    pub(crate) metrics: ShardMetrics,
    /// The time of the event being handled, as the runtime read it (the connection
    /// layer reads no clock; a handler's `Conn::publish` stamps its publication with it).
    pub(crate) now: std::cell::Cell<Instant>,
}

impl ShardContext {
    /// Shard `shard` of `shards`, whose handles post to `poster` (the runtime's mailbox
    /// registry; a fake in tests), started at `now`.
    pub(crate) fn new(
        shard: u32,
        shards: usize,
        poster: Arc<dyn Post>,
        routes: Arc<Routes>,
        config: Arc<Config>,
        hub: Arc<Hub>,
        now: Instant,
    ) -> ShardContext {
        ShardContext {
            shard,
            shards,
            poster,
            routes,
            config,
            wall: WallClock::default(),
            topics: ShardTopics::new(hub),
            codecs: ShardCodecs::default(),
            metrics: ShardMetrics::default(),
            now: std::cell::Cell::new(now),
        }
    }
}

#[cfg(any(test, feature = "fuzzing"))]
impl ShardContext {
    /// A context with no shard behind it (unit tests, `fuzzing`): one shard, `poster`
    /// standing for the mailboxes.
    pub(crate) fn standalone(
        routes: Routes,
        config: Config,
        poster: Arc<dyn Post>,
    ) -> ShardContext {
        let hub = Arc::new(Hub::new(1, Arc::clone(&poster)));
        // A test's clock reading: the fakes have no runtime to read it.
        let now = Instant::now();
        ShardContext::new(0, 1, poster, Arc::new(routes), Arc::new(config), hub, now)
    }
}

/// Where a connection is: its HTTP front, its open session, or ended.
// Open is the steady state and by far the largest; boxing it would add an indirection
// to every read to save memory only during the short HTTP phase.
#[allow(clippy::large_enum_variant)]
enum Stage {
    /// The HTTP front (`front.rs`): requests, routes, answers, upgrades, SockJS.
    Front(Front),
    /// The open session (`session.rs`): frames go through the decoder to the handler.
    Open(Session),
    /// The handler has been told the connection closed (or the last HTTP answer is
    /// queued); input is ignored.
    Ended,
}

/// The HTTP front of a connection: what only the phase before the upgrade needs.
struct Front {
    phase: FrontPhase,
    /// When the connection was accepted (the handshake latency's start).
    accepted: Instant,
    /// At least one HTTP request was answered on this (kept-alive) connection.
    requests_served: bool,
    /// The state of the `/info` entropy generator (seeded by the shard).
    seed: u32,
    /// The server is shutting down: the request in progress is answered with
    /// `Connection: close` and no other is read (see `lifecycle.rs`).
    draining: bool,
    /// A static file's body being streamed (`static_file.rs`): later requests wait.
    file: Option<Box<static_file::FileStream>>,
}

/// What the front is waiting for.
enum FrontPhase {
    /// Waiting for the request head; holds the bytes of a head split across reads.
    /// The peer's address lives in the phases that may still meet an upgrade request
    /// (for the upgrade hook), not in every open connection.
    Http {
        head: Vec<u8>,
        peer: Option<SocketAddr>,
    },
    /// hixie-76: the 101 head is queued; waiting for the 8 bytes after the request
    /// head (`have` of them so far) to answer the challenge and open.
    Hixie76Body {
        keys: (u32, u32),
        body: [u8; 8],
        have: usize,
        handler: Box<dyn Handler>,
    },
    /// A SockJS session request is with the session's owner shard: its reply (or, for
    /// a receiving request, its response bytes) comes back through
    /// [`Connection::sockjs_reply`]; later requests wait in `buffered`.
    SockJsWaiting {
        wait: sockjs::Wait,
        buffered: Vec<u8>,
        peer: Option<SocketAddr>,
    },
}

/// The open session of a connection, whatever its framing: the inbound decoder, the
/// handler and the idle timeout's state. Built by the upgrade, or directly
/// ([`Connection::open_with`]).
pub(crate) struct Session {
    inbound: Inbound,
    handler: Box<dyn Handler>,
    /// When the session last received bytes (for the idle timeout).
    last_received: Instant,
    /// The idle timeout's ping went out since `last_received`.
    idle_pinged: bool,
}

/// The receive side of an open connection: RFC 6455 frames or hixie frames, behind one
/// [`Inbound::decode`] that yields the same events (so one receive loop serves both).
enum Inbound {
    Rfc6455(Decoder),
    Hixie(HixieDecoder),
}

pub(crate) struct Connection {
    id: ConnId,
    stage: Stage,
    pub(crate) out: Outbox,
    wants_close: bool,
    /// One deadline per kind of timer (`timers.rs`).
    timers: Timers,
    /// Over the shard's connection limit at accept: the first request is answered 503,
    /// and the connection is never counted as admitted (an accept-time fact the shard
    /// reads after the connection ended, so it is not part of the [`Stage`]).
    refused: bool,
    /// What few connections need (SockJS, our close, a pause, a refused body).
    rare: Option<Box<rare::Rare>>,
}

impl Connection {
    pub(crate) fn new(
        id: ConnId,
        peer: Option<SocketAddr>,
        config: &Config,
        now: Instant,
    ) -> Connection {
        Connection {
            id,
            stage: Stage::Front(Front {
                phase: FrontPhase::Http {
                    head: Vec::new(),
                    peer,
                },
                accepted: now,
                requests_served: false,
                seed: 0,
                draining: false,
                file: None,
            }),
            out: Outbox::new(config.out_limits),
            wants_close: false,
            timers: {
                let mut timers = Timers::default();
                timers.set(Timer::Handshake, now + config.handshake_timeout);
                timers
            },
            refused: false,
            rare: None,
        }
    }

    /// Seeds the connection's `/info` entropy (randomness comes from the runtime).
    pub(crate) fn set_seed(&mut self, seed: u32) {
        if let Stage::Front(front) = &mut self.stage {
            front.seed = seed;
        }
    }

    /// The HTTP front, while the connection is in it.
    fn front(&self) -> Option<&Front> {
        match &self.stage {
            Stage::Front(front) => Some(front),
            _ => None,
        }
    }

    /// A static file's body is being streamed.
    fn file_streaming(&self) -> bool {
        self.front().is_some_and(|front| front.file.is_some())
    }

    /// The connection is an open session.
    fn is_open(&self) -> bool {
        matches!(self.stage, Stage::Open(_))
    }

    /// True when the socket should be closed once the queued bytes are written.
    pub(crate) fn wants_close(&self) -> bool {
        self.wants_close
    }

    /// When [`Connection::on_timer`] next has something to do.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Bytes arrived from the peer.
    pub(crate) fn receive(&mut self, data: &mut [u8], ctx: &ShardContext, now: Instant) {
        if let Stage::Open(session) = &mut self.stage {
            // The idle timer is not moved here: when it fires it looks at this.
            session.last_received = now;
            session.idle_pinged = false;
            if self.input_paused() || self.has_held() {
                // Reported after the pause, before the backend stopped reading (or
                // behind bytes kept then): kept, in order, for the resume.
                self.rare_mut().held.extend_from_slice(data);
                self.pump_held(ctx, now);
                return;
            }
        }
        match &self.stage {
            Stage::Front(front) => match front.phase {
                FrontPhase::Http { .. } => self.receive_http(data, ctx, now),
                FrontPhase::Hixie76Body { .. } => self.receive_hixie76_body(data, ctx, now),
                FrontPhase::SockJsWaiting { .. } => self.receive_while_waiting(data),
            },
            Stage::Open(_) => self.receive_frames(data, ctx, now),
            Stage::Ended => {}
        }
    }

    /// Bytes were written: owe the handler `on_drain` once the queue has fallen back,
    /// and hand it the input kept while the output was over the threshold.
    pub(crate) fn on_written(&mut self, ctx: &ShardContext, now: Instant) {
        self.file_progress(now);
        let out = &self.out;
        if out.drain_owed && out.buffered() <= out.limits.backpressure_threshold {
            self.out.drain_owed = false;
            self.with_handler(ctx, now, |handler, conn| handler.on_drain(conn));
        }
        self.pump_held(ctx, now);
    }

    /// The peer stopped sending (EOF) or the socket failed. A static file being sent
    /// is finished first (a send that fails ends it, see `on_send_failed`).
    pub(crate) fn on_eof(&mut self, ctx: &ShardContext) {
        if self.file_peer_done() {
            return;
        }
        self.transport_ended(ctx);
    }

    /// Time passed: handles each timer that is due at `now`, once, earliest first.
    pub(crate) fn on_timer(&mut self, ctx: &ShardContext, now: Instant) {
        for timer in self.timers.due(now) {
            // An earlier one may have ended the connection or disarmed this one.
            if self.timers.take_due(timer, now) {
                self.timer_fired(timer, ctx, now);
            }
        }
    }

    fn timer_fired(&mut self, timer: Timer, ctx: &ShardContext, now: Instant) {
        match timer {
            // A static file streams: stalled, or a shutdown's limit reached.
            Timer::FileStall | Timer::Shutdown if self.file_streaming() => {
                self.file_timer(ctx, now)
            }
            // Our close was not answered in time (or a shutdown's wait for it ended).
            Timer::Close | Timer::Shutdown if self.is_open() => {
                // (A shutdown deadline without a close under way is never armed.)
                if let Some(reason) = self.local_close_reason() {
                    self.end(reason, ctx);
                }
            }
            Timer::Idle => self.idle_timer(ctx, now),
            Timer::Heartbeat => self.heartbeat(ctx, now),
            Timer::Hibernate => self.hibernation_timer(ctx, now),
            Timer::Handshake | Timer::Shutdown => self.finish_http_timeout(ctx),
            Timer::Close | Timer::FileStall => {}
        }
    }

    /// The socket is gone (closed by the backend, or it failed): make sure the handler
    /// heard about it.
    pub(crate) fn transport_ended(&mut self, ctx: &ShardContext) {
        // The rest of a file being streamed has nowhere to go.
        if let Stage::Front(front) = &mut self.stage {
            front.file = None;
        }
        self.transport_ended_sockjs();
        let reason = self.local_close_reason().unwrap_or_else(|| {
            let reason = "connection ended without a close frame";
            close_reason(CloseInitiator::Transport, CloseCode::ABNORMAL, reason)
        });
        self.end(reason, ctx);
        self.wants_close = true;
    }
}
