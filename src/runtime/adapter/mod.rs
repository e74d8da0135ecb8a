//! The same [`Handler`] inside hyper and axum (features `hyper`, `axum`): WebSocket
//! upgrades on hyper requests over HTTP/1.1 and HTTP/2 (RFC 8441), run by the sans-I/O
//! session on tokio.
//!
//! `Handler` is not `Send` (a shard calls it from its own thread, never from another),
//! so the adapter keeps that promise the same way: it runs sessions on a small set of
//! its own threads, each a current-thread tokio runtime with a `LocalSet`, and a
//! session stays on the thread that made its handler. A session is one local task:
//! read → [`Connection`] → handler → write, timers from the connection's deadline on
//! tokio's clock. [`ConnHandle`](crate::ConnHandle)s and publications reach a thread
//! through its channel (its [`Post`]). Each thread joins the pub/sub hub — its own, or
//! the one of the [`Server`](crate::Server) it was built with — so adapter sessions and
//! shard connections share topics. A plain TCP HTTP/1.1 upgrade can instead be handed
//! to that server's shards (`hand_off.rs`).

#[cfg(feature = "axum")]
mod axum;
mod hand_off;
mod session;
#[cfg(test)]
mod tests;
mod upgrade;

pub use upgrade::{UpgradeRejection, WebSocketUpgrade};

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;
use tokio::sync::{mpsc, Notify};

use crate::connection::{Config, Connection, ShardContext};
use crate::deflate_options::DeflateOptions;
use crate::handle::{Outgoing, Post, Stopped};
use crate::handler::{Handler, Message};
use crate::handshake::DeflateAgreement;
use crate::pubsub::hub::{Hub, Publication};
use crate::route::{Routes, WebSocketOptions};
use crate::server::ServerHandle;
use crate::{ConnId, SendError};

/// Makes a session's handler on the thread that will run it.
pub(crate) type HandlerFactory = Box<dyn FnOnce() -> Box<dyn Handler> + Send>;

/// The byte stream a session runs on (hyper's upgraded connection, as tokio I/O).
pub(crate) trait SessionIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> SessionIo for T {}

/// What an adapter thread is asked.
enum WorkerMessage {
    /// Run a session on this upgraded stream.
    Open(Box<OpenSession>),
    /// A handle's command for one of this thread's sessions.
    Post(ConnId, Outgoing),
    /// A publication for this thread's subscribers of its topic.
    Publish(Arc<Publication>),
    /// Close every session with 1001, waiting up to the grace for the peers' replies.
    Shutdown(Duration),
    /// The adapter is gone: shut down, and end the thread once its sessions ended.
    Stop,
}

struct OpenSession {
    io: Box<dyn SessionIo + Send>,
    factory: HandlerFactory,
    deflate: Option<(DeflateAgreement, DeflateOptions)>,
}

/// An adapter thread's [`Post`]: its channel.
struct WorkerPost(mpsc::UnboundedSender<WorkerMessage>);

impl Post for WorkerPost {
    fn post(&self, to: ConnId, message: Outgoing) -> Result<(), Stopped> {
        self.0
            .send(WorkerMessage::Post(to, message))
            .map_err(|_| Stopped)
    }

    fn post_publication(&self, _: usize, publication: Arc<Publication>) -> Result<(), Stopped> {
        self.0
            .send(WorkerMessage::Publish(publication))
            .map_err(|_| Stopped)
    }

    fn shut_down(&self, grace: Duration) {
        let _ = self.0.send(WorkerMessage::Shutdown(grace));
    }
}

/// Runs ringws sessions for WebSocket upgrades a hyper or axum server accepted.
///
/// Cheap to clone (an `Arc`): put it in the axum state or the hyper service. It owns
/// its threads (see [`AdapterBuilder::threads`]); dropping the last clone shuts its
/// sessions down (1001) and lets the threads end with them.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// let adapter = ringws::adapter::Adapter::builder()
///     .threads(2)
///     .idle_timeout(std::time::Duration::from_secs(60))
///     .build()?;
/// # drop(adapter);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Adapter {
    inner: Arc<AdapterInner>,
}

impl fmt::Debug for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adapter")
            .field("threads", &self.inner.workers.len())
            .field("hand_off", &self.inner.hand_off.is_some())
            .finish()
    }
}

struct AdapterInner {
    workers: Vec<mpsc::UnboundedSender<WorkerMessage>>,
    next: AtomicUsize,
    options: WebSocketOptions,
    hub: Arc<Hub>,
    /// The server plain TCP upgrades are handed to (`AdapterBuilder::hand_off`).
    hand_off: Option<ServerHandle>,
}

impl Drop for AdapterInner {
    fn drop(&mut self) {
        for worker in &self.workers {
            let _ = worker.send(WorkerMessage::Stop);
        }
    }
}

/// Configures an [`Adapter`]: its threads, the sessions' limits and timeouts, the
/// default route options, and the [`Server`](crate::Server) it shares pub/sub with.
pub struct AdapterBuilder {
    threads: usize,
    config: Config,
    options: WebSocketOptions,
    server: Option<ServerHandle>,
    hand_off: bool,
}

impl fmt::Debug for AdapterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdapterBuilder")
            .field("threads", &self.threads)
            .field("hand_off", &self.hand_off)
            .finish_non_exhaustive()
    }
}

impl Adapter {
    /// An adapter with the defaults: one thread, the limits and timeouts of
    /// [`Server::builder`](crate::Server::builder), same-origin routes, no deflate.
    pub fn new() -> std::io::Result<Adapter> {
        Adapter::builder().build()
    }

    /// Configures an adapter.
    pub fn builder() -> AdapterBuilder {
        AdapterBuilder {
            threads: 1,
            config: crate::server::default_config(),
            options: WebSocketOptions::default(),
            server: None,
            hand_off: false,
        }
    }

    /// Publishes `message` to `topic`'s subscribers: the adapter's sessions and, when
    /// built with [`AdapterBuilder::server`], the server's connections (and the other
    /// nodes, through its broker).
    pub fn publish(&self, topic: &str, message: Message<'_>) -> Result<(), SendError> {
        self.inner
            .hub
            .publish(topic, message, None, Some(Instant::now()))
            .map_err(|Stopped| SendError)
    }

    /// Subscribers of `topic` in this process (adapter sessions and, with a server,
    /// its connections), as counted now.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.inner.hub.subscriber_count(topic)
    }

    /// Closes every adapter session with 1001 "server shutting down" and waits up to
    /// `grace` for each peer's close reply before closing its connection; returns at
    /// once. Sessions upgraded later are closed the same way as soon as they open.
    /// (axum's `with_graceful_shutdown` does not reach upgraded connections: call this
    /// from the same signal. Sessions handed off to a server end with its shutdown.)
    pub fn shutdown_within(&self, grace: Duration) {
        for worker in &self.inner.workers {
            let _ = worker.send(WorkerMessage::Shutdown(grace));
        }
    }

    /// [`shutdown_within`](Adapter::shutdown_within) without waiting for replies.
    pub fn shutdown(&self) {
        self.shutdown_within(Duration::ZERO);
    }
}

impl AdapterInner {
    /// Hands the upgraded stream to a shard (plain TCP over HTTP/1.1, when the adapter
    /// hands off) or to the next adapter thread.
    fn open(
        &self,
        upgraded: hyper::upgrade::Upgraded,
        http2: bool,
        factory: HandlerFactory,
        deflate: Option<(DeflateAgreement, DeflateOptions)>,
    ) {
        let (upgraded, factory, deflate) = match (&self.hand_off, http2) {
            (Some(server), false) => match hand_off::to_shard(server, upgraded, factory, deflate) {
                Ok(()) => return,
                // Not a plain TCP socket (TLS): it stays on the adapter.
                Err(back) => back,
            },
            _ => (upgraded, factory, deflate),
        };
        let io = Box::new(hyper_util::rt::TokioIo::new(upgraded));
        let worker = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let open = OpenSession {
            io,
            factory,
            deflate,
        };
        // A stopped thread drops the stream (the client sees the connection end).
        let _ = self.workers[worker].send(WorkerMessage::Open(Box::new(open)));
    }
}

impl AdapterBuilder {
    /// How many threads run sessions (default 1); each runs many.
    pub fn threads(mut self, threads: usize) -> AdapterBuilder {
        self.threads = threads.max(1);
        self
    }

    /// The options of routes that do not set their own
    /// ([`WebSocketUpgrade::options`]): origin policy, permessage-deflate.
    pub fn websocket_options(mut self, options: WebSocketOptions) -> AdapterBuilder {
        self.options = options;
        self
    }

    /// The largest message accepted (1009 past it), as
    /// [`Builder::max_message_size`](crate::Builder::max_message_size).
    pub fn max_message_size(mut self, bytes: usize) -> AdapterBuilder {
        self.config.limits.max_message_size = bytes;
        self
    }

    /// The largest frame accepted, as
    /// [`Builder::max_frame_size`](crate::Builder::max_frame_size).
    pub fn max_frame_size(mut self, bytes: usize) -> AdapterBuilder {
        self.config.limits.max_frame_size = bytes;
        self
    }

    /// Queued output past which the handler hears `on_drain` later, as
    /// [`Builder::backpressure_threshold`](crate::Builder::backpressure_threshold).
    pub fn backpressure_threshold(mut self, bytes: usize) -> AdapterBuilder {
        self.config.out_limits.backpressure_threshold = bytes;
        self
    }

    /// Queued output past which sends are refused, as
    /// [`Builder::max_buffered`](crate::Builder::max_buffered).
    pub fn max_buffered(mut self, bytes: usize) -> AdapterBuilder {
        self.config.out_limits.max_buffered = bytes;
        self
    }

    /// How long a close waits for the peer's reply, as
    /// [`Builder::close_timeout`](crate::Builder::close_timeout).
    pub fn close_timeout(mut self, timeout: Duration) -> AdapterBuilder {
        self.config.close_timeout = timeout;
        self
    }

    /// Pings a quiet session after half of `timeout` and closes it (1001) after all of
    /// it, as [`Builder::idle_timeout`](crate::Builder::idle_timeout).
    pub fn idle_timeout(mut self, timeout: Duration) -> AdapterBuilder {
        self.config.idle_timeout = (!timeout.is_zero()).then_some(timeout);
        self
    }

    /// Shares pub/sub with `server` (one world: adapter sessions and the server's
    /// connections subscribe and publish to the same topics, and the server's broker
    /// carries both) and takes its limits and timeouts. The server's shutdown then
    /// closes the adapter's sessions too (1001, with the same grace).
    pub fn server(mut self, server: &ServerHandle) -> AdapterBuilder {
        self.config = (*server.config).clone();
        self.server = Some(server.clone());
        self
    }

    /// With [`server`](AdapterBuilder::server): moves each plain TCP HTTP/1.1 upgrade
    /// to one of the server's shards (the socket and the bytes hyper read past the
    /// request), where it becomes an ordinary shard connection, io_uring included.
    /// TLS connections and HTTP/2 streams stay on the adapter.
    pub fn hand_off(mut self, hand_off: bool) -> AdapterBuilder {
        self.hand_off = hand_off;
        self
    }

    /// Starts the adapter's threads.
    pub fn build(self) -> std::io::Result<Adapter> {
        let hub = match &self.server {
            Some(server) => Arc::clone(&server.hub),
            None => Arc::new(Hub::new(0, Arc::new(NoShards))),
        };
        let config = Arc::new(self.config);
        let routes = Arc::new(Routes::default());
        let mut workers = Vec::with_capacity(self.threads);
        for index in 0..self.threads {
            let (tx, rx) = mpsc::unbounded_channel();
            let poster: Arc<dyn Post> = Arc::new(WorkerPost(tx.clone()));
            let member = hub.join(Arc::clone(&poster));
            let hub = Arc::clone(&hub);
            let config = Arc::clone(&config);
            let routes = Arc::clone(&routes);
            std::thread::Builder::new()
                .name(format!("ringws-adapter-{index}"))
                .spawn(move || {
                    let now = Instant::now();
                    let ctx = ShardContext::new(member, 1, poster, routes, config, hub, now);
                    run_worker(ctx, rx);
                })?;
            workers.push(tx);
        }
        let hand_off = if self.hand_off { self.server } else { None };
        Ok(Adapter {
            inner: Arc::new(AdapterInner {
                workers,
                next: AtomicUsize::new(0),
                options: self.options,
                hub,
                hand_off,
            }),
        })
    }
}

/// The hub of an adapter without a server has no shards to post to.
struct NoShards;

impl Post for NoShards {
    fn post(&self, _: ConnId, _: Outgoing) -> Result<(), Stopped> {
        Err(Stopped)
    }

    fn post_publication(&self, _: usize, _: Arc<Publication>) -> Result<(), Stopped> {
        Err(Stopped)
    }
}

/// One adapter thread's state, shared by its tasks (one thread: `Rc`, `RefCell`).
pub(crate) struct Worker {
    pub(crate) ctx: ShardContext,
    sessions: RefCell<Slab<Rc<SessionCell>>>,
    next_generation: Cell<u32>,
    /// Set by a shutdown: the deadline for the peers' replies (`None`: no wait).
    shutdown: Cell<Option<Option<Instant>>>,
    /// The adapter was dropped: the thread ends with its last session.
    stopped: Cell<bool>,
    /// Told when the last session ended.
    emptied: Notify,
}

/// A session as its thread keeps it: the connection, and the wake-up of its task.
pub(crate) struct SessionCell {
    pub(crate) conn: RefCell<Connection>,
    pub(crate) wake: Notify,
    generation: u32,
}

impl Worker {
    /// The session `id` names, if it is still there.
    fn session(&self, id: ConnId) -> Option<Rc<SessionCell>> {
        let sessions = self.sessions.borrow();
        let cell = sessions.get(id.token.index())?;
        (cell.generation == id.token.generation()).then(|| Rc::clone(cell))
    }

    /// A session ended: it leaves its topics and the table.
    pub(crate) fn remove(&self, key: usize, id: ConnId) {
        self.ctx.topics.remove_subscriber(self.ctx.shard, id.token);
        let mut sessions = self.sessions.borrow_mut();
        sessions.try_remove(key);
        if sessions.is_empty() {
            self.emptied.notify_waiters();
        }
    }
}

/// An adapter thread: a current-thread runtime whose `LocalSet` runs the sessions.
fn run_worker(ctx: ShardContext, rx: mpsc::UnboundedReceiver<WorkerMessage>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "adapter thread: no tokio runtime");
            return;
        }
    };
    let worker = Rc::new(Worker {
        ctx,
        sessions: RefCell::new(Slab::new()),
        next_generation: Cell::new(0),
        shutdown: Cell::new(None),
        stopped: Cell::new(false),
        emptied: Notify::new(),
    });
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(worker, rx));
}

/// Takes the thread's messages until a stop (the adapter dropped) has ended every session.
async fn serve(worker: Rc<Worker>, mut rx: mpsc::UnboundedReceiver<WorkerMessage>) {
    loop {
        // Only a stop (the adapter dropped) ends the thread: after a shutdown it stays
        // to close the sessions that open later with 1001.
        let message = if worker.stopped.get() && worker.sessions.borrow().is_empty() {
            // Stopped and empty: end unless something arrives right away.
            match rx.try_recv() {
                Ok(message) => message,
                Err(_) => return,
            }
        } else {
            let emptied = worker.emptied.notified();
            tokio::select! {
                message = rx.recv() => match message {
                    Some(message) => message,
                    None => return,
                },
                () = emptied, if worker.stopped.get() => continue,
            }
        };
        let now = Instant::now();
        worker.ctx.now.set(now);
        match message {
            WorkerMessage::Open(open) => start_session(&worker, *open, now),
            WorkerMessage::Post(id, outgoing) => {
                if let Some(cell) = worker.session(id) {
                    cell.conn.borrow_mut().posted(outgoing, &worker.ctx, now);
                    cell.wake.notify_one();
                }
            }
            WorkerMessage::Publish(publication) => deliver(&worker, &publication, now),
            WorkerMessage::Shutdown(grace) => shut_down(&worker, grace, now),
            WorkerMessage::Stop => {
                worker.stopped.set(true);
                shut_down(&worker, Duration::ZERO, now);
            }
        }
    }
}

/// Closes every session of the thread with 1001 (and those that open later).
fn shut_down(worker: &Worker, grace: Duration, now: Instant) {
    let deadline = (!grace.is_zero()).then(|| now + grace);
    worker.shutdown.set(Some(deadline));
    let cells: Vec<Rc<SessionCell>> = worker
        .sessions
        .borrow()
        .iter()
        .map(|(_, cell)| Rc::clone(cell))
        .collect();
    for cell in cells {
        cell.conn.borrow_mut().shutdown(&worker.ctx, deadline, now);
        cell.wake.notify_one();
    }
}

/// Builds the session (its handler's `on_open` runs here) and spawns its task.
fn start_session(worker: &Rc<Worker>, open: OpenSession, now: Instant) {
    let generation = worker.next_generation.get().wrapping_add(1);
    worker.next_generation.set(generation);
    let entry = worker.sessions.borrow_mut().vacant_key();
    let id = ConnId {
        shard: worker.ctx.shard,
        token: crate::conn::Token::new(entry as u32, generation),
    };
    let handler = (open.factory)();
    let Some(mut conn) = Connection::open_with(
        id,
        crate::conn::Framing::Rfc6455,
        handler,
        open.deflate,
        &worker.ctx,
        now,
    ) else {
        return;
    };
    if let Some(deadline) = worker.shutdown.get() {
        conn.shutdown(&worker.ctx, deadline, now);
    }
    let cell = Rc::new(SessionCell {
        conn: RefCell::new(conn),
        wake: Notify::new(),
        generation,
    });
    worker.sessions.borrow_mut().insert(Rc::clone(&cell));
    tokio::task::spawn_local(session::run(Rc::clone(worker), entry, id, cell, open.io));
}

/// A publication for this thread's subscribers of its topic.
fn deliver(worker: &Worker, publication: &Publication, now: Instant) {
    let mut subscribers = Vec::new();
    worker
        .ctx
        .topics
        .subscribers_into(publication.topic(), &mut subscribers);
    let skip = publication.skip();
    for token in subscribers {
        let id = ConnId {
            shard: worker.ctx.shard,
            token,
        };
        if Some(id) == skip {
            continue;
        }
        if let Some(cell) = worker.session(id) {
            cell.conn
                .borrow_mut()
                .deliver(publication, true, &worker.ctx, now);
            cell.wake.notify_one();
        }
    }
}
