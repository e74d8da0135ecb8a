//! A shard's connection table: the [`ShardCore`] both backends drive.
//!
//! Memory per connection is kept to its state: the table grows in fixed pages
//! (`runtime/paged.rs`, no doubling copies), rarely used state is boxed on first use
//! (`connection/rare.rs`), and output buffers are lent from a shard-wide pool only while
//! a connection has something to send (`shard/out_pool.rs`). Receive buffers are the
//! backend's (io_uring: the provided ring, `Builder::recv_buffers`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

#[cfg(feature = "hyper")]
pub(crate) mod adopt;
pub(crate) mod budget;
mod metrics;
mod out_pool;
mod sessions;
#[cfg(test)]
mod static_file_tests;
#[cfg(test)]
mod tests;
pub(crate) mod topics;

use budget::{Budget, Holder, Verdict};
use out_pool::OutPool;

use super::paged::PagedSlab;

use super::core::{FileRead, SendBuf, ShardCore, Token, TokenKind};
use super::link::{ProtocolFactory, Streams};
use super::mailbox::{Command, Registry};
use super::tls::{Received, TlsSession};
use crate::conn::ConnId;
use crate::connection::{Config, Connection, ShardContext, SockJsReply, SockJsRequest, WallClock};
use crate::handle::Post;
use crate::pubsub::hub::Hub;
use crate::route::Routes;
use sessions::{Effects, SessionTable};
use std::sync::Arc;

/// Output buffers larger than this are not kept for reuse after they drain, so one big
/// message does not pin memory for the connection's whole life.
const MAX_RETAINED_OUT: usize = 256 * 1024;

struct Entry {
    generation: u32,
    conn: Connection,
    /// Already listed in `Shard::ready`.
    listed: bool,
    /// Got published messages since its last `touch` (listed in `Shard::delivered`).
    delivered: bool,
    /// The deadline this entry has in `Shard::timers`, so each is pushed once.
    armed: Option<Instant>,
    /// The TLS session on a TLS listener: `conn` sees plaintext, the backend ciphertext.
    tls: Option<Box<TlsSession>>,
    /// When the connection first wanted closing plus the close timeout: its output is
    /// abandoned if it has not drained by then (a peer that never reads).
    flush_deadline: Option<Instant>,
    /// Counted in `Shard::pending` (has not finished its first request).
    pending: bool,
    /// The connection's last `wants_read` answer the backend was told about (listed
    /// in `ready` when it changes, so the backend stops or restarts reading).
    reading: bool,
    /// The bytes this connection counts in `Shard::budget` (`Connection::held`, as
    /// last recounted by `touch`).
    held: usize,
}

/// The connection table. Every lookup goes through [`Conns::get`] / [`Conns::get_mut`],
/// which check the token: a connection token whose slot holds an entry of the same
/// generation (a stale token, or a stream's or session's, finds nothing).
#[derive(Default)]
struct Conns(PagedSlab<Entry>);

impl Conns {
    fn get(&self, token: Token) -> Option<&Entry> {
        if token.kind() != TokenKind::Conn {
            return None;
        }
        self.0
            .get(token.key())
            .filter(|e| e.generation == token.generation())
    }

    fn get_mut(&mut self, token: Token) -> Option<&mut Entry> {
        if token.kind() != TokenKind::Conn {
            return None;
        }
        self.0
            .get_mut(token.key())
            .filter(|e| e.generation == token.generation())
    }

    /// Takes the entry `token` names out of the table.
    fn remove(&mut self, token: Token) -> Option<Entry> {
        self.get(token)?;
        self.0.remove(token.key())
    }

    fn insert(&mut self, entry: Entry) -> usize {
        self.0.insert(entry)
    }

    fn vacant_key(&self) -> usize {
        self.0.vacant_key()
    }

    /// The live entries with their tokens.
    fn iter(&self) -> impl Iterator<Item = (Token, &Entry)> + '_ {
        self.0
            .iter()
            .map(|(key, e)| (Token::of_kind(TokenKind::Conn, key, e.generation), e))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub(crate) struct Shard {
    ctx: ShardContext,
    /// The shards' mailboxes: hand-overs to other shards, this shard's own queue.
    registry: Arc<Registry>,
    conns: Conns,
    next_generation: u32,
    ready: Vec<Token>,
    timers: BinaryHeap<Reverse<(Instant, Token)>>,
    shutting_down: bool,
    /// The SockJS sessions this shard owns ([`TokenKind::Session`] tokens).
    sessions: SessionTable,
    /// SockJS requests and replies to run on this shard before the loop turn ends.
    work: VecDeque<Work>,
    /// xorshift64 state: seeds for the connections' `/info` entropy.
    rng: u64,
    /// Decrypted bytes of the current `on_recv` (TLS only): one buffer for the shard,
    /// lent to one connection's `receive` at a time.
    plain: Vec<u8>,
    /// Output buffers lent to connections while they have something to send.
    out_pool: OutPool,
    /// Raw TCP streams and bridge links ([`TokenKind::Stream`] tokens).
    streams: Streams,
    /// WebSocket/HTTP connections open and under the connection limit.
    admitted: usize,
    /// The grace deadline of the shutdown in progress, if it has one.
    shutdown_deadline: Option<Instant>,
    /// How many of the backend's first listeners serve HTTP (more than one when a shard
    /// serves several handed-over or socket-activated sockets); the raw TCP doors follow.
    http_listeners: usize,
    /// The clock as read for the event being handled: the backend's reading for its
    /// loop turn where it passes one, read once on entry where it does not
    /// (`on_sent`, `on_closed`). Connection-level decisions use this, not the clock.
    now: Instant,
    /// Connections that have not finished their first request (`Entry::pending`).
    pending: usize,
    /// The pending connections, oldest first; entries that stopped pending (or whose
    /// connection is gone) are skipped when met, and swept when they pile up.
    pending_order: VecDeque<Token>,
    /// The memory budget: the bytes held for peers and its policy (`shard/budget.rs`).
    budget: Budget,
    /// The part of `budget`'s figure the SockJS sessions hold, as last recounted.
    sessions_held: usize,
    /// Static file chunks the connections asked for, for the backend
    /// (`ShardCore::take_file_reads`).
    file_reads: Vec<FileRead>,
    /// The subscribers of the publication being delivered (kept for its capacity).
    fanout: Vec<Token>,
    /// Connections that got published messages and are not touched yet, and the bytes
    /// queued for them meanwhile (`topics.rs`: one `touch` per subscriber per batch of
    /// publications, not per publication).
    delivered: Vec<Token>,
    delivered_bytes: usize,
    /// Pub/sub counters, and what was last stored for other threads (`topics.rs`).
    fanout_counts: topics::FanoutCounts,
    fanout_published: topics::FanoutCounts,
    /// Sockets handed over with their connections, for the backend
    /// (`ShardCore::take_adopted`; the hyper adapter's hand-off, `shard/adopt.rs`).
    adopted: Vec<(Token, std::os::fd::OwnedFd)>,
    /// What `publish_metrics` last stored (`shard/metrics.rs`): the gauges, the codecs'
    /// traffic, and whether a store is still owed.
    metrics_gauges: (u64, u64, u64),
    metrics_traffic: crate::connection::DeflateTraffic,
    metrics_unpublished: bool,
}

/// SockJS work for this shard: a request for a session it owns, or a reply for one of
/// its connections.
enum Work {
    Request(SockJsRequest),
    Reply(Token, SockJsReply),
}

impl Shard {
    /// Shard `shard` of the server whose mailboxes are `registry`.
    pub(crate) fn with_registry(
        shard: u32,
        registry: Arc<Registry>,
        routes: Arc<Routes>,
        config: Arc<Config>,
        hub: Arc<Hub>,
    ) -> Shard {
        let poster: Arc<dyn Post> = registry.clone();
        let now = Instant::now();
        let ctx = ShardContext::new(shard, registry.shards(), poster, routes, config, hub, now);
        Shard::new(ctx, registry)
    }

    /// A one-shard server's shard with its own mailbox and hub (unit tests).
    #[cfg(test)]
    pub(crate) fn standalone(routes: Arc<Routes>, config: Arc<Config>) -> Shard {
        let registry = Arc::new(Registry::new(1).expect("registry"));
        let poster: Arc<dyn Post> = registry.clone();
        let hub = Arc::new(Hub::new(1, poster));
        Shard::with_registry(0, registry, routes, config, hub)
    }

    pub(crate) fn new(mut ctx: ShardContext, registry: Arc<Registry>) -> Shard {
        let now = Instant::now();
        let wall = SystemTime::now();
        ctx.wall = WallClock::new(now, wall);
        let nanos = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let rng = (nanos ^ (u64::from(ctx.shard) << 40) ^ (&ctx as *const _ as u64)) | 1;
        let sessions = SessionTable::new(ctx.config.out_limits);
        let streams = Streams::new(ctx.shard, ctx.config.out_limits);
        let budget = Budget::new(ctx.config.memory_budget);
        Shard {
            fanout: Vec::new(),
            delivered: Vec::new(),
            delivered_bytes: 0,
            fanout_counts: topics::FanoutCounts::default(),
            fanout_published: topics::FanoutCounts::default(),
            adopted: Vec::new(),
            metrics_gauges: (0, 0, 0),
            metrics_traffic: crate::connection::DeflateTraffic::default(),
            metrics_unpublished: false,
            budget,
            sessions_held: 0,
            file_reads: Vec::new(),
            streams,
            sessions,
            work: VecDeque::new(),
            rng,
            plain: Vec::new(),
            out_pool: OutPool::default(),
            ctx,
            registry,
            conns: Conns::default(),
            next_generation: 0,
            ready: Vec::new(),
            timers: BinaryHeap::new(),
            shutting_down: false,
            admitted: 0,
            shutdown_deadline: None,
            http_listeners: 1,
            now,
            pending: 0,
            pending_order: VecDeque::new(),
        }
    }

    /// The protocols of the shard's raw TCP listeners (listener `i + 1` serves `[i]`).
    /// The backend's listeners `0..n` serve HTTP; the doors follow (`runtime/listen.rs`).
    pub(crate) fn set_http_listeners(&mut self, n: usize) {
        self.http_listeners = n.max(1);
    }

    pub(crate) fn set_protocols(&mut self, protocols: std::sync::Arc<Vec<ProtocolFactory>>) {
        self.streams.set_protocols(protocols);
    }

    /// Applies what bridge links left for their WebSocket connections.
    fn run_pumps(&mut self) {
        for ws in self.streams.take_pumps() {
            let Some(bridge) = self.streams.bridge(ws) else {
                continue;
            };
            let Shard { conns, ctx, .. } = self;
            if let Some(entry) = conns.get_mut(ws) {
                super::bridge::pump(&bridge, &mut entry.conn, ctx);
                self.touch(ws);
            }
        }
    }

    /// Lists `token` as ready if its connection has output or wants closing, and arms
    /// its timer. Called after every call that may have changed a connection.
    fn touch(&mut self, token: Token) {
        let Some(entry) = self.conns.get_mut(token) else {
            return;
        };
        if entry.conn.has_sockjs_requests() {
            let requests = entry.conn.take_sockjs_requests();
            self.dispatch(requests);
        }
        let Some(entry) = self.conns.get_mut(token) else {
            return;
        };
        if entry.pending && !entry.conn.is_pending() {
            entry.pending = false;
            self.pending -= 1;
        }
        entry.conn.end_if_overflowed(&self.ctx);
        if let Some(read) = entry.conn.take_file_read() {
            // The next chunk of a static file: its queue has room for it.
            self.file_reads.push(read);
        }
        self.out_pool.detach(&mut entry.conn.out.queued);
        let tls_output = entry.tls.as_ref().is_some_and(|tls| tls.has_output());
        let conn = &entry.conn;
        self.streams.touched(token, conn.out.buffered());
        let held = conn.held().total();
        if held != entry.held {
            self.budget.recount(entry.held, held);
            entry.held = held;
        }
        let reading = conn.wants_read();
        let read_changed = reading != entry.reading;
        entry.reading = reading;
        if !entry.listed
            && (conn.out.has_output() || tls_output || conn.wants_close() || read_changed)
        {
            entry.listed = true;
            self.ready.push(token);
        }
        if let Some(deadline) = conn.deadline() {
            // A deadline that moved leaves a stale heap entry; the connection ignores it
            // when it fires early.
            if entry.armed != Some(deadline) {
                entry.armed = Some(deadline);
                self.timers.push(Reverse((deadline, token)));
            }
        }
        if conn.wants_close() && entry.flush_deadline.is_none() {
            // From now on the peer has the close timeout (or, shutting down, the
            // grace if longer) to take what is still queued.
            let timeout = self.now + self.ctx.config.close_timeout;
            let deadline = self.shutdown_deadline.map_or(timeout, |d| d.max(timeout));
            entry.flush_deadline = Some(deadline);
            self.timers.push(Reverse((deadline, token)));
        }
    }

    fn run_command(&mut self, command: Command, now: Instant) {
        match command {
            // A handle's message, close, pause or resume: encoded for the connection's
            // framing (or the session's) here, on the owning shard.
            Command::Post { token, message } if token.kind() == TokenKind::Session => {
                let mut fx = Effects::default();
                self.sessions
                    .posted(token, message, &self.ctx, now, &mut fx);
                self.apply(fx);
            }
            Command::Post { token, message } => {
                let Shard { conns, ctx, .. } = self;
                if let Some(entry) = conns.get_mut(token) {
                    entry.conn.posted(message, ctx, now);
                    self.touch(token);
                }
            }
            Command::Publish(publication) => self.deliver(publication, now),
            #[cfg(feature = "hyper")]
            Command::Adopt(adoption) => self.adopt(*adoption, now),
            Command::SockJs(request) => self.work.push_back(Work::Request(request)),
            Command::SockJsReply { token, reply } => self.work.push_back(Work::Reply(token, reply)),
            Command::Shutdown if self.shutting_down => self.shutdown(now),
            Command::Shutdown => {
                self.shutdown(now);
                let mut fx = Effects::default();
                self.sessions.shutdown(&self.ctx, now, &mut fx);
                self.apply(fx);
            }
        }
    }

    /// Sends connections' SockJS requests to their sessions' owners (this shard's work
    /// queue, or another shard's mailbox).
    fn dispatch(&mut self, requests: Vec<(usize, SockJsRequest)>) {
        for (owner, request) in requests {
            if owner == self.ctx.shard as usize {
                self.work.push_back(Work::Request(request));
            } else {
                self.registry.count_sockjs_handoff();
                // A stopped shard is shutting down: its sessions are gone anyway.
                let _ = self.registry.post(owner, Command::SockJs(request));
            }
        }
    }

    /// Runs the SockJS work queued by this loop turn's events, including the work it
    /// queues in turn (a reply resumes a connection, which may ask again).
    fn run_work(&mut self, now: Instant) {
        while let Some(work) = self.work.pop_front() {
            match work {
                Work::Request(request) => {
                    let mut fx = Effects::default();
                    self.sessions.handle(request, &self.ctx, now, &mut fx);
                    self.apply(fx);
                }
                Work::Reply(token, reply) => {
                    let Shard { conns, ctx, .. } = self;
                    if let Some(entry) = conns.get_mut(token) {
                        entry.conn.sockjs_reply(reply, ctx, now);
                        self.touch(token);
                    }
                }
            }
        }
    }

    /// Arms the session timers and routes the replies of a session table call, and
    /// recounts what the sessions hold (every session table call ends here).
    fn apply(&mut self, fx: Effects) {
        let held = self.sessions.held();
        if held != self.sessions_held {
            self.budget.recount(self.sessions_held, held);
            self.sessions_held = held;
        }
        for (deadline, token) in fx.timers {
            self.timers.push(Reverse((deadline, token)));
        }
        for token in fx.ended {
            self.leave_topics(token);
        }
        for (shard, token, reply) in fx.replies {
            if shard == self.ctx.shard {
                self.work.push_back(Work::Reply(token, reply));
            } else {
                let command = Command::SockJsReply { token, reply };
                let _ = self.registry.post(shard as usize, command);
            }
        }
    }

    fn next_seed(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 32) as u32
    }

    /// Makes room for one more pending connection under `Config::max_pending`: the
    /// oldest pending connections are evicted (answered 408 and closed).
    fn make_pending_room(&mut self) {
        let Some(max) = self.ctx.config.max_pending else {
            return;
        };
        while self.pending >= max {
            let Some(token) = self.pending_order.pop_front() else {
                return;
            };
            let Some(entry) = self.conns.get_mut(token).filter(|e| e.pending) else {
                continue;
            };
            entry.pending = false;
            entry.conn.evict();
            self.pending -= 1;
            self.touch(token);
        }
        // Connections that stopped pending stay listed until met: sweep them when they
        // outnumber the pending ones, so the queue stays within twice the limit.
        if self.pending_order.len() > 2 * max.max(self.pending) + 64 {
            let conns = &self.conns;
            self.pending_order
                .retain(|&token| conns.get(token).is_some_and(|e| e.pending));
        }
    }

    /// Applies the memory budget's policy (`shard/budget.rs`) when the figure crossed
    /// a mark: resumes the connections it paused once under the low-water mark, and
    /// looks for victims to pause or close over the high-water mark. A comparison or
    /// two when there is nothing to do; called after every event.
    fn check_budget(&mut self) {
        if !self.budget.wants_resume() && !self.budget.wants_scan() {
            return;
        }
        let now = self.now;
        if self.budget.wants_resume() {
            self.resume_budget_paused(now);
        }
        if self.budget.wants_scan() {
            self.budget.scanned();
            let mut holders = Vec::new();
            for (token, e) in self.conns.iter() {
                if e.held == 0 {
                    continue;
                }
                let held = e.conn.held();
                holders.push(Holder {
                    key: token,
                    incoming: held.incoming,
                    outgoing: held.outgoing,
                    paused: e.conn.is_budget_paused(),
                    pausable: e.conn.budget_pausable(),
                    closable: e.conn.budget_closable(),
                });
            }
            self.sessions.budget_holders(&mut holders);
            let verdicts = budget::choose(self.budget.limit(), self.budget.held(), &mut holders);
            if !verdicts.is_empty() {
                tracing::debug!(
                    shard = self.ctx.shard,
                    held = self.budget.held(),
                    limit = self.budget.limit(),
                    victims = verdicts.len(),
                    "memory budget: over the high-water mark"
                );
            }
            for (token, verdict) in verdicts {
                match verdict {
                    Verdict::Pause => self.budget_pause(token, now),
                    Verdict::Close => self.budget_close(token, now),
                }
            }
        }
        // Closes and resumes may have queued SockJS work (detaches, deliveries).
        self.run_work(now);
    }

    /// Stops reading `token` for the budget; it is closed if still paused after the
    /// close timeout (see `on_timer`).
    fn budget_pause(&mut self, token: Token, now: Instant) {
        let Some(entry) = self.conns.get_mut(token) else {
            return;
        };
        if !entry.conn.budget_pausable() {
            return;
        }
        entry.conn.budget_pause(now);
        self.budget.count_pause();
        let stall = now + self.ctx.config.close_timeout;
        self.timers.push(Reverse((stall, token)));
        self.touch(token);
    }

    /// Closes a connection or a SockJS session for the budget, freeing what it holds.
    fn budget_close(&mut self, token: Token, now: Instant) {
        if token.kind() == TokenKind::Session {
            let mut fx = Effects::default();
            self.sessions
                .close_for_budget(token, &self.ctx, now, &mut fx);
            self.apply(fx);
            return;
        }
        let Shard { conns, ctx, .. } = self;
        if let Some(entry) = conns.get_mut(token) {
            entry.conn.close_for_budget(ctx);
            self.touch(token);
        }
    }

    /// Back under the low-water mark: every connection the budget paused is read again.
    fn resume_budget_paused(&mut self, now: Instant) {
        let tokens: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, e)| e.conn.is_budget_paused())
            .map(|(token, _)| token)
            .collect();
        for token in tokens {
            let Shard { conns, ctx, .. } = self;
            if let Some(entry) = conns.get_mut(token) {
                entry.conn.budget_resume(ctx, now);
                self.budget.count_resume();
                self.touch(token);
            }
        }
        debug_assert_eq!(self.budget.paused(), 0, "budget: paused count out of step");
    }

    /// Publishes the budget's figure for `ServerHandle::memory_held` (a relaxed store,
    /// only when it moved).
    fn publish_held(&mut self) {
        if let Some(held) = self.budget.take_unpublished() {
            self.registry
                .mailbox(self.ctx.shard as usize)
                .publish_held(held);
        }
    }

    /// Stops accepting and closes every connection with 1001; open WebSocket
    /// connections wait for their peers' close replies until the configured grace.
    /// Called again (a second shutdown request), it only brings the connections'
    /// deadline forward to the new grace, or closes them at once for no grace.
    fn shutdown(&mut self, now: Instant) {
        let grace = self.ctx.config.shutdown_grace.load(Ordering::Relaxed);
        let deadline = (grace > 0).then(|| now + std::time::Duration::from_nanos(grace));
        tracing::debug!(
            shard = self.ctx.shard,
            open = self.conns.len(),
            ?deadline,
            "shard shutting down"
        );
        self.shutdown_deadline = deadline;
        if !self.shutting_down {
            self.shutting_down = true;
            self.streams.shutdown();
        }
        let tokens: Vec<Token> = self.conns.iter().map(|(token, _)| token).collect();
        for token in tokens {
            if let Some(entry) = self.conns.get_mut(token) {
                entry.conn.shutdown(&self.ctx, deadline, now);
                if let (Some(flush), Some(deadline)) = (entry.flush_deadline, deadline) {
                    // Output already on its way out may take the whole grace.
                    if flush < deadline {
                        entry.flush_deadline = Some(deadline);
                        self.timers.push(Reverse((deadline, token)));
                    }
                }
                // Reading again for the peer's close reply: what a paused handler left.
                entry.conn.pump_held(&self.ctx, now);
            }
            self.touch(token);
        }
    }
}

impl ShardCore for Shard {
    fn on_accept(&mut self, listener: usize, peer: Option<SocketAddr>, now: Instant) -> Token {
        self.set_now(now);
        self.ctx.metrics.accepted();
        if listener >= self.http_listeners {
            return self.streams.on_accept(listener - self.http_listeners);
        }
        self.make_pending_room();
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let seed = self.next_seed();
        let token = Token::of_kind(TokenKind::Conn, self.conns.vacant_key(), generation);
        let id = ConnId {
            shard: self.ctx.shard,
            token,
        };
        let mut conn = Connection::new(id, peer, &self.ctx.config, now);
        conn.set_seed(seed);
        let max = self.ctx.config.max_connections;
        let admitted = max.is_none_or(|max| self.admitted < max);
        if admitted {
            self.admitted += 1;
        } else {
            conn.refuse();
        }
        if self.shutting_down {
            conn.shutdown(&self.ctx, None, now);
        }
        let tls = match &self.ctx.config.tls {
            None => None,
            Some(config) => match TlsSession::new(config) {
                Ok(session) => Some(Box::new(session)),
                Err(error) => {
                    tracing::warn!(conn = %id, %error, "could not start a TLS session");
                    conn.on_eof(&self.ctx);
                    None
                }
            },
        };
        self.conns.insert(Entry {
            tls,
            generation,
            conn,
            listed: false,
            delivered: false,
            armed: None,
            flush_deadline: None,
            pending: true,
            reading: true,
            held: 0,
        });
        self.pending += 1;
        self.pending_order.push_back(token);
        self.touch(token);
        token
    }

    fn take_connects(&mut self, out: &mut Vec<(Token, SocketAddr)>) {
        self.streams.take_connects(out);
    }

    fn take_file_reads(&mut self, out: &mut Vec<FileRead>) {
        out.append(&mut self.file_reads);
    }

    fn take_adopted(&mut self, out: &mut Vec<(Token, std::os::fd::OwnedFd)>) {
        out.append(&mut self.adopted);
    }

    fn on_file_read(&mut self, token: Token, result: std::io::Result<Vec<u8>>, now: Instant) {
        self.set_now(now);
        let Shard { conns, ctx, .. } = self;
        // A connection closed meanwhile: the bytes just go.
        if let Some(entry) = conns.get_mut(token) {
            entry.conn.file_read_done(result, ctx, now);
            self.touch(token);
            self.run_work(now);
            self.check_budget();
        }
    }

    fn on_connected(&mut self, token: Token, result: std::io::Result<()>, now: Instant) {
        self.set_now(now);
        self.streams.on_connected(token, result);
        self.run_pumps();
    }

    fn wants_read(&self, token: Token) -> bool {
        if token.kind() == TokenKind::Stream {
            return self.streams.wants_read(token);
        }
        let conn_reads = self.conns.get(token).is_none_or(|e| e.conn.wants_read());
        conn_reads && self.streams.ws_wants_read(token)
    }

    fn on_recv(&mut self, token: Token, data: &mut [u8], now: Instant) {
        self.set_now(now);
        if token.kind() == TokenKind::Stream {
            self.streams.on_recv(token, data);
            self.run_pumps();
            return;
        }
        let Shard {
            conns,
            ctx,
            plain,
            out_pool,
            ..
        } = self;
        let Some(entry) = conns.get_mut(token) else {
            return;
        };
        // An answer usually follows: lend the connection a buffer for it (`touch` takes
        // it back if nothing was queued).
        out_pool.attach(&mut entry.conn.out.queued);
        match entry.tls.as_mut() {
            None => entry.conn.receive(data, ctx, now),
            Some(tls) => {
                plain.clear();
                let received = tls.receive(data, plain);
                if !plain.is_empty() {
                    entry.conn.receive(plain, ctx, now);
                }
                if received != Received::Open {
                    entry.conn.on_eof(ctx);
                }
                if plain.capacity() > MAX_RETAINED_OUT {
                    *plain = Vec::new();
                }
            }
        }
        self.touch(token);
        self.run_work(now);
        // Here as well as in `drain_ready`: io_uring reports a whole batch of reads
        // before the turn ends, which could take a shard far past its marks.
        self.check_budget();
    }

    fn on_eof(&mut self, token: Token, now: Instant) {
        self.set_now(now);
        if token.kind() == TokenKind::Stream {
            self.streams.on_eof(token, None);
            self.run_pumps();
            return;
        }
        let Shard { conns, ctx, .. } = self;
        if let Some(entry) = conns.get_mut(token) {
            entry.conn.on_eof(ctx);
            self.touch(token);
            self.run_work(now);
        }
    }

    fn take_send(&mut self, token: Token) -> Option<SendBuf> {
        if token.kind() == TokenKind::Stream {
            return self.streams.take_send(token).map(SendBuf::Owned);
        }
        let entry = self.conns.get_mut(token)?;
        if entry.conn.out.abandon {
            entry.conn.out.clear_output();
            return None;
        }
        if let Some(tls) = entry.tls.as_mut() {
            // Plaintext in, records out; `close_notify` follows the last plaintext.
            let mut buf = self.out_pool.lend();
            let close = entry.conn.wants_close();
            entry.conn.out.flatten();
            tls.seal(&mut entry.conn.out.queued, close, &mut buf);
            if buf.is_empty() {
                self.out_pool.give_back(buf);
                return None;
            }
            entry.conn.out.in_flight = buf.len();
            return Some(SendBuf::Owned(buf));
        }
        // The queue is left with no buffer: an idle connection holds none (out_pool.rs).
        entry.conn.out.take_output()
    }

    fn on_sent(&mut self, token: Token, buf: SendBuf, written: std::io::Result<usize>) {
        self.set_now(Instant::now());
        if token.kind() == TokenKind::Stream {
            self.streams.on_sent(token, buf.into_vec(), written);
            self.run_pumps();
            return;
        }
        let Shard {
            conns,
            ctx,
            out_pool,
            ..
        } = self;
        let Some(entry) = conns.get_mut(token) else {
            if let SendBuf::Owned(buf) = buf {
                out_pool.give_back(buf);
            }
            return;
        };
        let out = &mut entry.conn.out;
        out.in_flight = 0;
        match written {
            Ok(n) if n < buf.len() && entry.tls.is_some() => {
                // Ciphertext cannot rejoin the plaintext queue: the session keeps it.
                let mut buf = buf.into_vec();
                buf.drain(..n);
                out.in_flight = buf.len();
                if let Some(tls) = entry.tls.as_mut() {
                    tls.unsent(buf);
                }
            }
            Ok(n) if n < buf.len() => {
                // The rest goes out before anything queued since.
                let mut rest = buf;
                rest.advance(n);
                if let Some(spare) = out.unsent(rest) {
                    out_pool.give_back(spare);
                }
            }
            Ok(_) => {
                if let SendBuf::Owned(buf) = buf {
                    out_pool.give_back(buf);
                }
            }
            Err(error) => {
                tracing::debug!(conn = %ConnId { shard: ctx.shard, token }, %error, "send failed");
                if let Some(tls) = entry.tls.as_mut() {
                    tls.socket_failed();
                }
                entry.conn.on_send_failed(ctx);
            }
        }
        let now = self.now;
        entry.conn.on_written(ctx, now);
        self.touch(token);
        // A bridged WebSocket that drained may take the backend bytes it had no room for.
        self.run_pumps();
        self.run_work(now);
        self.check_budget();
    }

    fn abandon_output(&self, token: Token) -> bool {
        self.conns.get(token).is_some_and(|e| e.conn.out.abandon)
    }

    fn wants_close(&self, token: Token) -> bool {
        if token.kind() == TokenKind::Stream {
            return self.streams.wants_close(token);
        }
        match self.conns.get(token) {
            // Over TLS, only once `close_notify` (or an alert) was handed to the backend.
            // An abandoned output has no `close_notify` to wait for.
            Some(entry) => {
                entry.conn.wants_close()
                    && (entry.conn.out.abandon
                        || entry.tls.as_ref().is_none_or(|tls| tls.close_queued()))
            }
            // Unknown tokens have nothing to keep a socket open for.
            _ => true,
        }
    }

    fn on_closed(&mut self, token: Token) {
        self.set_now(Instant::now());
        if token.kind() == TokenKind::Stream {
            self.streams.on_closed(token);
            self.run_pumps();
            return;
        }
        self.streams.ws_gone(token);
        let Some(mut entry) = self.conns.remove(token) else {
            return;
        };
        // Whatever it held goes with it.
        self.budget.recount(entry.held, 0);
        if entry.conn.is_budget_paused() {
            self.budget.count_resume();
        }
        debug_assert!(
            !self.conns.is_empty() || self.budget.held() == self.sessions_held,
            "budget: {} bytes counted with no connection left ({} in sessions)",
            self.budget.held(),
            self.sessions_held
        );
        // Counted in `admitted` unless refused (over the connection limit).
        if !entry.conn.is_refused() {
            self.admitted -= 1;
        }
        if entry.pending {
            self.pending -= 1;
        }
        entry.conn.transport_ended(&self.ctx);
        self.leave_topics(token);
        if entry.conn.has_sockjs_requests() {
            let requests = entry.conn.take_sockjs_requests();
            self.dispatch(requests);
            self.run_work(self.now);
        }
    }

    fn on_wake(&mut self, now: Instant) {
        self.set_now(now);
        let registry = std::sync::Arc::clone(&self.registry);
        let mailbox = registry.mailbox(self.ctx.shard as usize);
        mailbox.take_wake();
        while let Some(command) = mailbox.pop() {
            self.run_command(command, now);
            // Per command: handles may have posted far more than the budget at once
            // (publications are recounted at least every `TOUCH_AFTER_BYTES`).
            self.touch_delivered_over(topics::TOUCH_AFTER_BYTES);
            self.check_budget();
        }
        self.touch_delivered_over(0);
        self.run_work(now);
    }

    fn on_timer(&mut self, now: Instant) {
        self.set_now(now);
        while let Some(Reverse((deadline, token))) = self.timers.peek().copied() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            if token.kind() == TokenKind::Session {
                let mut fx = Effects::default();
                self.sessions
                    .on_timer(token, deadline, &self.ctx, now, &mut fx);
                self.apply(fx);
                continue;
            }
            let Shard {
                conns, ctx, budget, ..
            } = self;
            if let Some(entry) = conns.get_mut(token) {
                if entry.armed == Some(deadline) {
                    entry.armed = None;
                }
                if entry.flush_deadline.is_some_and(|flush| flush <= now) && !entry.conn.out.abandon
                {
                    tracing::debug!(conn = %ConnId { shard: ctx.shard, token }, "peer took no output within the close timeout; abandoning it");
                    entry.conn.out.abandon = true;
                    entry.listed = false;
                }
                entry.conn.on_timer(ctx, now);
                let stall = ctx.config.close_timeout;
                if !budget.wants_resume()
                    && entry
                        .conn
                        .budget_paused_since()
                        .is_some_and(|since| since + stall <= now)
                {
                    // Paused by the budget for the whole close timeout: the shard never
                    // got back under its low-water mark, so the message it holds cannot
                    // complete. Free it.
                    entry.conn.close_for_budget(ctx);
                }
                self.touch(token);
            }
        }
        self.run_work(now);
        self.check_budget();
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((deadline, _))| *deadline)
    }

    fn drain_ready(&mut self, out: &mut Vec<Token>) {
        self.publish_metrics();
        self.check_budget();
        self.publish_held();
        self.publish_fanout_figures();
        if self.streams.has_ready() {
            self.run_pumps();
            self.streams.drain_ready(out);
        }
        for token in self.ready.drain(..) {
            if let Some(entry) = self.conns.get_mut(token) {
                entry.listed = false;
                out.push(token);
            }
        }
    }

    fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    fn accepting(&self) -> bool {
        // A restart stops accepting before it shuts down (`ServerHandle::restart_within`).
        !self.shutting_down && !self.ctx.config.restarting.load(Ordering::Relaxed)
    }

    fn is_finished(&self) -> bool {
        self.shutting_down && self.conns.is_empty() && self.streams.is_empty()
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        // What the shard held goes with it.
        self.registry
            .mailbox(self.ctx.shard as usize)
            .publish_held(0);
        self.registry.mailbox(self.ctx.shard as usize).stop();
    }
}
