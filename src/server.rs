//! [`Server`]: build, bind, run in the foreground or background, shut down.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::conn::OutLimits;
use crate::connection::Config;
use crate::handler::Handler;
use crate::http::Request;
use crate::proto::Limits;
use crate::protocol::{Protocol, ProtocolHandler};
use crate::pubsub::hub::Hub;
use crate::pubsub::SlowSubscribers;
use crate::route::{
    Accept, HttpResponse, PrefixRoute, Reject, Route, Routes, UpgradeRequest, WebSocketOptions,
};
use crate::runtime::files::StaticDir;
use crate::runtime::mailbox::{Command, Registry};
use crate::runtime::{self, ShardSpec};
use crate::sockjs::SockJsOptions;

/// The default of [`Builder::idle_timeout`].
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Which I/O backend the shards run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// io_uring where the kernel allows it, epoll otherwise (the reason is logged).
    #[default]
    Auto,
    /// io_uring (multishot accept and recv, provided buffer rings); an error if refused.
    Uring,
    /// epoll, through a tokio current-thread runtime per shard.
    Epoll,
}

/// Configures a [`Server`]: address, shards, backend, limits and routes.
///
/// The `RINGWS_BACKEND` environment variable (`uring`, `epoll`, `auto`) overrides
/// [`Builder::backend`], so an operator can switch backends without a rebuild.
pub struct Builder {
    addr: io::Result<SocketAddr>,
    /// [`Builder::listeners`]: sockets to serve instead of binding `addr`.
    listeners: Option<Vec<TcpListener>>,
    shards: Option<usize>,
    backend: Backend,
    pin_cores: bool,
    reflector: bool,
    /// [`Builder::recv_buffers`] (io_uring backend only).
    uring: runtime::uring::UringOptions,
    routes: Routes,
    config: Config,
    /// The first error of a route that could not be set up (reported by `build`).
    route_error: Option<io::Error>,
    max_static_file_size: u64,
    /// The TLS configuration from [`Builder::tls`], or why it could not be made.
    tls: Option<io::Result<Arc<rustls::ServerConfig>>>,
    /// Raw TCP doors: address and protocol factory, in order.
    tcp: Vec<(io::Result<SocketAddr>, runtime::link::ProtocolFactory)>,
    /// [`Builder::max_connections`], for the whole server.
    max_connections: Option<usize>,
    /// [`Builder::max_pending_handshakes`], for the whole server (`None`: the default,
    /// [`DEFAULT_MAX_PENDING_HANDSHAKES`] per shard; `Some(0)`: no limit).
    max_pending_handshakes: Option<usize>,
    /// [`Builder::memory_budget`], for the whole server (`None`: the default,
    /// `default_memory_budget()`; `Some(0)`: no budget).
    memory_budget: Option<usize>,
    /// [`Builder::redis`] and [`Builder::on_broker_event`].
    #[cfg(feature = "redis")]
    broker: broker::BrokerConfig,
    /// The handles the [`Builder::metrics`] routes read, filled by `build`.
    metrics_handles: Vec<Arc<std::sync::OnceLock<ServerHandle>>>,
}

/// The default [`Builder::max_pending_handshakes`], per shard: 1024 connections that
/// have not finished their first request. With the 16 KiB request head limit that
/// bounds what partial heads can hold at 16 MiB per shard.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 1024;

/// The memory budget used when the physical memory cannot be read: 1 GiB.
pub(crate) const FALLBACK_MEMORY_BUDGET: usize = 1024 * 1024 * 1024;

/// The default [`Builder::memory_budget`]: a quarter of the machine's physical memory
/// (`sysconf(_SC_PHYS_PAGES) × sysconf(_SC_PAGESIZE) / 4`), or
/// [`FALLBACK_MEMORY_BUDGET`] when the system does not say.
pub(crate) fn default_memory_budget() -> usize {
    // SAFETY: sysconf has no preconditions; it reads a system value or returns -1.
    let (pages, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    match (usize::try_from(pages), usize::try_from(page_size)) {
        (Ok(pages), Ok(size)) if pages > 0 && size > 0 => pages.saturating_mul(size) / 4,
        _ => FALLBACK_MEMORY_BUDGET,
    }
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            addr: Ok(SocketAddr::from(([127, 0, 0, 1], 8080))),
            listeners: None,
            shards: None,
            backend: Backend::Auto,
            pin_cores: false,
            reflector: false,
            uring: runtime::uring::UringOptions::default(),
            tcp: Vec::new(),
            max_connections: None,
            max_pending_handshakes: None,
            memory_budget: None,
            routes: Routes::default(),
            route_error: None,
            max_static_file_size: crate::runtime::files::DEFAULT_MAX_FILE_SIZE,
            config: Config {
                limits: Limits::default(),
                out_limits: OutLimits {
                    backpressure_threshold: 256 * 1024,
                    max_buffered: 16 * 1024 * 1024,
                    pause_on_backpressure: true,
                    close_on_limit: false,
                    shared_send_min: crate::pubsub::SHARED_SEND_MIN,
                },
                max_head_bytes: 16 * 1024,
                max_body_bytes: 1024 * 1024,
                handshake_timeout: Duration::from_secs(10),
                close_timeout: Duration::from_secs(5),
                tls: None,
                idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
                max_connections: None,
                max_pending: Some(DEFAULT_MAX_PENDING_HANDSHAKES),
                memory_budget: usize::MAX,
                shutdown_grace: Arc::default(),
                restarting: Arc::default(),
                slow_subscribers: SlowSubscribers::Drop,
                trusted_proxies: crate::http::TrustedProxies::new(),
            },
            tls: None,
            #[cfg(feature = "redis")]
            broker: broker::BrokerConfig::default(),
            metrics_handles: Vec::new(),
        }
    }
}

/// The default server-wide settings (for unit tests of the shard, `fuzzing`, and the
/// hyper adapter's defaults).
#[cfg(any(test, feature = "fuzzing", feature = "hyper"))]
pub(crate) fn default_config() -> Config {
    Builder::default().config
}

impl Builder {
    /// The address to listen on (default `127.0.0.1:8080`; port 0 picks a free port).
    pub fn bind(mut self, addr: impl ToSocketAddrs) -> Builder {
        self.addr = addr.to_socket_addrs().and_then(|mut addrs| {
            addrs.next().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
            })
        });
        self
    }

    /// Serves these listening sockets instead of binding [`Builder::bind`]'s address:
    /// sockets from systemd ([`handover::listen_fds`](crate::handover::listen_fds)) or
    /// from a predecessor ([`handover::take_listeners`](crate::handover::take_listeners)),
    /// or bound by the application. Each must be a listening TCP socket. With at least as
    /// many sockets as shards, shard `j` accepts from every socket `i` with
    /// `i % shards == j`; with fewer, shard `j` accepts from socket `j % sockets`
    /// (through a duplicated descriptor), so every socket is served whatever the shard
    /// count. [`Server::local_addr`] is the first socket's address. The raw TCP doors
    /// ([`Builder::tcp`]) still bind their own addresses.
    ///
    /// ```
    /// let socket = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let addr = socket.local_addr()?;
    /// struct Quiet;
    /// impl ringws::Handler for Quiet {
    ///     fn on_message(&mut self, _: &mut ringws::Conn<'_>, _: ringws::Message<'_>) {}
    /// }
    /// let server = ringws::Server::builder()
    ///     .listeners(vec![socket])
    ///     .websocket("/", || Quiet)
    ///     .build()?;
    /// assert_eq!(server.local_addr(), addr);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listeners(mut self, listeners: Vec<TcpListener>) -> Builder {
        self.listeners = Some(listeners);
        self
    }

    /// The number of shard threads (default: the available cores).
    pub fn shards(mut self, shards: usize) -> Builder {
        self.shards = Some(shards.max(1));
        self
    }

    /// The I/O backend (default [`Backend::Auto`]).
    pub fn backend(mut self, backend: Backend) -> Builder {
        self.backend = backend;
        self
    }

    /// Pins shard `i` to core `i` (off by default: pinning helps on dedicated machines
    /// and hurts on shared ones).
    pub fn pin_cores(mut self, pin: bool) -> Builder {
        self.pin_cores = pin;
        self
    }

    /// The largest frame payload accepted (default 16 MiB); bigger frames close with 1009.
    pub fn max_frame_size(mut self, bytes: usize) -> Builder {
        self.config.limits.max_frame_size = bytes;
        self
    }

    /// The largest message accepted (default 64 MiB); bigger messages close with 1009.
    pub fn max_message_size(mut self, bytes: usize) -> Builder {
        self.config.limits.max_message_size = bytes;
        self
    }

    /// Queued outgoing bytes above which sends report backpressure (default 256 KiB).
    pub fn backpressure_threshold(mut self, bytes: usize) -> Builder {
        self.config.out_limits.backpressure_threshold = bytes;
        self
    }

    /// Queued outgoing bytes above which sends are dropped (default 16 MiB).
    pub fn max_buffered(mut self, bytes: usize) -> Builder {
        self.config.out_limits.max_buffered = bytes;
        self
    }

    /// Stops reading a connection while its queued outgoing bytes are over the
    /// [backpressure threshold](Builder::backpressure_threshold), and reads it again
    /// once they fall back under it (when `on_drain` is called). Default **true**:
    /// without it a peer that sends requests and never reads the answers makes the
    /// handler queue answers until `max_buffered` (16 MiB per connection by default)
    /// and then lose them; with it the peer's own socket buffers fill instead and it
    /// is slowed down, as TCP slows a sender, so a connection holds about the
    /// threshold. Bytes already received when it starts are kept and handled after
    /// the drain: nothing is lost. (It counts toward the idle timeout: a peer that
    /// takes none of the output for all of it is closed.) Turn it off for handlers
    /// whose input should keep flowing while their output backs up (a handler that
    /// checks [`SendStatus`](crate::SendStatus) and sheds load itself). Applies to
    /// WebSocket connections (and the protocols and SockJS `websocket` sessions served
    /// over them) and to raw TCP connections ([`Builder::tcp`]). uWebSockets'
    /// `WebSocketBehavior` has no such option (it keeps reading).
    pub fn pause_reading_on_backpressure(mut self, pause: bool) -> Builder {
        self.config.out_limits.pause_on_backpressure = pause;
        self
    }

    /// Closes a connection whose send would take its queued outgoing bytes over
    /// [`Builder::max_buffered`], instead of dropping just that message (default
    /// false, like uWebSockets' `closeOnBackpressureLimit`). A peer that reads too
    /// slowly then loses the connection rather than silently missing messages. The
    /// send answers [`SendStatus::Dropped`](crate::SendStatus::Dropped), the handler's
    /// `on_close` reports 1008 "backpressure limit" (initiated locally), the messages
    /// still queued are thrown away, the peer gets the close frame when nothing was
    /// half-written to its socket, and the socket closes without waiting for a reply
    /// (a part already in the socket is abandoned). A SockJS session closes with
    /// `c[1008,"backpressure limit"]`.
    pub fn close_on_backpressure_limit(mut self, close: bool) -> Builder {
        self.config.out_limits.close_on_limit = close;
        self
    }

    /// The largest request head accepted (default 16 KiB); bigger heads get 431.
    pub fn max_head_bytes(mut self, bytes: usize) -> Builder {
        self.config.max_head_bytes = bytes;
        self
    }

    /// The largest request body accepted (default 1 MiB); bigger bodies get 413.
    pub fn max_body_bytes(mut self, bytes: usize) -> Builder {
        self.config.max_body_bytes = bytes;
        self
    }

    /// How long a client may take to send its request head, and how long a kept-alive
    /// HTTP connection may idle between requests (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Builder {
        self.config.handshake_timeout = timeout;
        self
    }

    /// How long to wait for the peer's close frame after sending ours (default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Builder {
        self.config.close_timeout = timeout;
        self
    }

    /// How long a WebSocket connection may receive nothing (default 120 s, as in
    /// uWebSockets; `Duration::ZERO` disables it). After half of it without a byte from
    /// the peer the server sends a ping (an empty payload; the handler sees the pong
    /// in `on_pong`); anything received, a pong included, starts the wait again. After
    /// all of it, the connection is closed with 1001 "idle timeout" without waiting
    /// for the peer's close reply. hixie clients, which have no ping, are just closed;
    /// the SockJS `websocket` transport has its own heartbeat instead.
    pub fn idle_timeout(mut self, timeout: Duration) -> Builder {
        self.config.idle_timeout = (!timeout.is_zero()).then_some(timeout);
        self
    }

    /// The io_uring backend's receive buffers, per shard: `count` buffers (a power of
    /// two, rounded down; at least 2) of `size` bytes (at least 1024) each, registered
    /// with the kernel as a provided-buffer ring. Default 512 × 32 KiB = 16 MiB per
    /// shard. Every socket of a shard reads into this ring and each buffer goes back as
    /// soon as its bytes are handled, so the ring bounds receive memory per shard, not
    /// per connection: a busy shard touches all of it. A smaller ring saves memory on a
    /// server of mostly idle connections; when more reads complete in one loop turn
    /// than there are free buffers, the kernel ends those receives with `ENOBUFS` and
    /// the shard re-arms them (more system calls, no data lost). The ring is halved at
    /// start while `RLIMIT_MEMLOCK` refuses it. The epoll backend ignores this.
    ///
    /// ```
    /// let builder = ringws::Server::builder().recv_buffers(256, 16 * 1024); // 4 MiB per shard
    /// # drop(builder);
    /// ```
    pub fn recv_buffers(mut self, count: u16, size: u32) -> Builder {
        self.uring.buffer_count = count.max(2);
        self.uring.buffer_size = size.max(1024);
        self
    }

    /// The most WebSocket and HTTP connections served at once (default: no limit; 0
    /// also means no limit). Each shard takes `ceil(n / shards)` of them, counting the
    /// connections it accepted; past its share a connection is still accepted, and its
    /// request (an upgrade or plain HTTP) is answered `503 Service Unavailable` ("too
    /// many connections") before it is closed. A slot is free again once a connection's
    /// socket is closed. Raw TCP doors ([`Builder::tcp`]) are not counted.
    pub fn max_connections(mut self, n: usize) -> Builder {
        self.max_connections = (n > 0).then_some(n);
        self
    }

    /// How many connections at once may still be waiting for their first request (a
    /// WebSocket upgrade, hixie-76's 8-byte body, an HTTP request or a TLS handshake)
    /// for the whole server, `ceil(n / shards)` per shard; 0 means no limit. Default:
    /// [`DEFAULT_MAX_PENDING_HANDSHAKES`] (1024) per shard.
    ///
    /// Without it a flood of silent TCP connections is bounded only by
    /// [`Builder::handshake_timeout`]. When a shard accepts a connection over its share,
    /// its **oldest** pending connection is answered `408 Request Timeout` and closed,
    /// rather than the new one refused: a real client sends its request within a round
    /// trip or two, so it is never the oldest for long, while refusing new connections
    /// would let the flood lock every real client out until the handshake timeout.
    /// Connections that finished their first request (open WebSockets, kept-alive
    /// HTTP) are not counted; [`Builder::max_connections`] bounds those.
    pub fn max_pending_handshakes(mut self, n: usize) -> Builder {
        self.max_pending_handshakes = Some(n);
        self
    }

    /// The most bytes the server holds for its peers, all shards together, each shard
    /// taking `bytes / shards` (default: a quarter of the physical memory, from
    /// `sysconf(_SC_PHYS_PAGES)` × `_SC_PAGESIZE`, or 1 GiB where the system does not
    /// say; 0: no budget). Per-connection limits
    /// ([`Builder::max_message_size`], [`Builder::max_buffered`]) bound one peer; this
    /// bounds their sum, which many peers together would otherwise take past the
    /// machine's memory.
    ///
    /// Counted, per shard: the assembly buffers of incomplete incoming messages, bytes
    /// received and kept unhandled during a pause, queued outgoing bytes, SockJS
    /// sessions' queued messages (both ways), and request heads and bodies being read.
    /// Not counted: the shard's fixed buffers (receive ring, output pool, TLS), raw TCP
    /// streams and bridge links (each bounded by `max_buffered`), and commands in
    /// flight between threads. [`ServerHandle::memory_held`] gives the figure.
    ///
    /// The policy, per shard:
    /// - over the **high-water mark** (¾ of the shard's share), the connections
    ///   holding the most incoming bytes stop being read, largest first, until the
    ///   paused ones hold at least the excess (a pause of its own, independent of the
    ///   handler's and the backpressure pause); small and idle connections are not
    ///   paused;
    /// - back under the **low-water mark** (½), they are all read again;
    /// - a connection still paused by the budget after the
    ///   [close timeout](Builder::close_timeout) (the shard did not get under the
    ///   low-water mark meanwhile, so its message cannot complete) is closed as below;
    /// - over the **whole share**, the largest holders are closed, largest first, until
    ///   the shard is back under the high-water mark: 1009 "message too big for the
    ///   server's memory" for one that holds mostly incoming bytes (its assembly buffer
    ///   is dropped), 1008 "output over the server's memory budget" for one that holds
    ///   mostly queued output (its queued output is thrown away, as with
    ///   [`Builder::close_on_backpressure_limit`]). The handler's `on_close` reports
    ///   the code and reason (initiated locally); the socket closes without waiting
    ///   for a reply. A request being read is answered 503; a SockJS session is closed
    ///   with `c[1008,...]`/`c[1009,...]` and its queue freed at its next poll or when
    ///   it expires.
    ///
    /// ```
    /// let builder = ringws::Server::builder().memory_budget(512 * 1024 * 1024);
    /// # drop(builder);
    /// ```
    pub fn memory_budget(mut self, bytes: usize) -> Builder {
        self.memory_budget = Some(bytes);
        self
    }

    /// The reverse proxies in front of the server (addresses and CIDR networks; none by
    /// default). When a connection comes from one of them, the client address an
    /// upgrade hook sees ([`UpgradeRequest::peer_addr`]) is the one the proxy forwarded
    /// in `X-Forwarded-For` (or RFC 7239 `Forwarded`, with
    /// [`TrustedProxies::header`](crate::http::TrustedProxies::header)): the right-most
    /// address that is not itself a trusted proxy, port 0 unless the header gave one.
    /// From any other peer the headers are ignored, and a header that cannot be read
    /// leaves the TCP peer ([`UpgradeRequest::tcp_peer_addr`] is always that). The rule
    /// in full: [`TrustedProxies`](crate::http::TrustedProxies).
    ///
    /// ```
    /// use ringws::http::TrustedProxies;
    ///
    /// let proxies: TrustedProxies = "127.0.0.1, 10.0.0.0/8".parse().expect("addresses");
    /// let builder = ringws::Server::builder().trusted_proxies(proxies);
    /// # drop(builder);
    /// ```
    pub fn trusted_proxies(mut self, proxies: crate::http::TrustedProxies) -> Builder {
        self.config.trusted_proxies = proxies;
        self
    }

    /// Serves WebSocket connections on `path`, one handler per connection from `factory`.
    pub fn websocket<H, F>(self, path: &str, factory: F) -> Builder
    where
        H: Handler,
        F: Fn() -> H + Send + Sync + 'static,
    {
        self.websocket_with(path, move |_| Ok(Accept::new(factory())))
    }

    /// Serves WebSocket connections on `path`, with a hook that sees each upgrade request
    /// (headers, origin, subprotocols, query) and accepts it with a handler or rejects it
    /// with an HTTP status. Every version is accepted: RFC 6455, hybi-07/08, hixie-76
    /// and hixie-75 ([`WebSocketOptions::default`]).
    pub fn websocket_with<F>(self, path: &str, hook: F) -> Builder
    where
        F: Fn(&UpgradeRequest<'_, '_>) -> Result<Accept, Reject> + Send + Sync + 'static,
    {
        self.websocket_with_options(path, WebSocketOptions::default(), hook)
    }

    /// Like [`Builder::websocket_with`], with per-route [`WebSocketOptions`] (such as
    /// refusing the legacy hixie drafts).
    ///
    /// ```
    /// use ringws::{Accept, Conn, Handler, Message, Server, WebSocketOptions};
    ///
    /// struct Quiet;
    /// impl Handler for Quiet {
    ///     fn on_message(&mut self, _conn: &mut Conn<'_>, _message: Message<'_>) {}
    /// }
    ///
    /// let builder = Server::builder().websocket_with_options(
    ///     "/modern",
    ///     WebSocketOptions::default().legacy_drafts(false),
    ///     |_| Ok(Accept::new(Quiet)),
    /// );
    /// # let _ = builder;
    /// ```
    pub fn websocket_with_options<F>(
        mut self,
        path: &str,
        options: WebSocketOptions,
        hook: F,
    ) -> Builder
    where
        F: Fn(&UpgradeRequest<'_, '_>) -> Result<Accept, Reject> + Send + Sync + 'static,
    {
        let hook = Box::new(hook);
        self.routes.insert(path, Route::WebSocket { hook, options });
        self
    }

    /// Answers plain HTTP requests with `respond`, which gets the request with its body
    /// ([`Request::body`]); the connection is kept alive as the client asks, and a HEAD
    /// request gets the head alone (with the body's `Content-Length`).
    ///
    /// The rule: a `path` ending in `/` is a **prefix** and serves every path that starts
    /// with it (`"/api/"` serves `/api/` and `/api/users/7`, not `/api`; `"/"` serves
    /// whatever no other route takes); any other `path` is **exact** (`"/status"`
    /// serves `/status` only). Exact routes (HTTP or WebSocket) come first, then SockJS
    /// services, then the longest matching prefix among HTTP and static prefixes. A
    /// WebSocket upgrade on an HTTP path is answered the same way.
    ///
    /// ```
    /// use ringws::{HttpResponse, Server};
    ///
    /// let builder = Server::builder()
    ///     .http("/status", |_| HttpResponse::text(200, "ok\n"))
    ///     .http("/api/", |request| {
    ///         let answer = format!("{} {}\n", request.method(), request.path());
    ///         HttpResponse::text(200, answer)
    ///     });
    /// # let _ = builder;
    /// ```
    pub fn http<F>(mut self, path: &str, respond: F) -> Builder
    where
        F: Fn(&Request<'_>) -> HttpResponse + Send + Sync + 'static,
    {
        if path.ends_with('/') {
            let route = PrefixRoute::Http(Box::new(respond));
            self.routes.insert_prefix(path, route);
        } else {
            self.routes.insert(path, Route::Http(Box::new(respond)));
        }
        self
    }

    /// Serves the files under `dir` for request paths starting with `prefix` (a `/` is
    /// appended to `prefix` when it lacks one; `/static` itself is redirected to
    /// `/static/`). The file is the path after the prefix, percent-decoded, below `dir`.
    ///
    /// - GET and HEAD (others get 405 with `Allow: GET, HEAD`); content types by
    ///   extension; `ETag` (size and mtime) with `If-None-Match`, `Last-Modified` with
    ///   `If-Modified-Since` (→ 304); single `Range: bytes=` ranges (→ 206, or 416
    ///   with `Content-Range: bytes */len`; several ranges get the whole file);
    /// - a directory is served by its `index.html`, and a directory path without its
    ///   final `/` is redirected (301) to the `/` form;
    /// - **no escape**: `..` segments (also as `%2e%2e` or behind `%2f`), NUL bytes,
    ///   backslashes, empty segments (an absolute path) and anything whose canonical
    ///   path lies outside `dir` (a symlink leading out) are answered **404**, like a
    ///   missing file. Symlinks that stay inside `dir` are followed.
    ///
    /// Bodies are streamed: the file is read through the runtime (io_uring reads, or a
    /// small blocking pool on epoll) a chunk at a time, the next chunk only once the
    /// connection's output has drained, so a shard never blocks on the disk and a large
    /// file costs a connection a few hundred KiB at most. Bodies above
    /// [`Builder::max_static_file_size`] (no limit by default) get 413. Routing: as prefixes of
    /// [`Builder::http`]. `build` fails when `dir` is not a readable directory.
    ///
    /// ```no_run
    /// use ringws::Server;
    ///
    /// fn main() -> std::io::Result<()> {
    ///     Server::builder()
    ///         .bind("127.0.0.1:8080")
    ///         .static_files("/", "./public")
    ///         .build()?
    ///         .run()
    /// }
    /// ```
    pub fn static_files(mut self, prefix: &str, dir: impl AsRef<std::path::Path>) -> Builder {
        let prefix = if prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        match StaticDir::new(dir.as_ref()) {
            Ok(dir) => self
                .routes
                .insert_prefix(&prefix, PrefixRoute::Static(Box::new(dir))),
            Err(error) => {
                self.route_error.get_or_insert(error);
            }
        }
        self
    }

    /// The largest body a static route serves, a whole file or a range (default: no
    /// limit, since bodies are streamed); a larger one is answered 413.
    pub fn max_static_file_size(mut self, bytes: u64) -> Builder {
        self.max_static_file_size = bytes;
        self
    }

    /// Serves a SockJS service under `prefix` (e.g. `/chat`): `/info`, the iframe page,
    /// every transport (websocket, xhr, xhr_streaming, eventsource, htmlfile, jsonp and
    /// their send halves) and the raw `/websocket` endpoint. Each session gets a handler
    /// from `factory`; the same [`Handler`] serves WebSocket and SockJS clients (a
    /// session has text messages only: `send_binary` and `ping` answer
    /// [`SendStatus::Unsupported`](crate::SendStatus::Unsupported)).
    ///
    /// Any number of services may share the port; a request goes to the exact-path
    /// routes first, then to the service with the longest matching prefix. An exact
    /// WebSocket route on the prefix itself (say `.websocket("/echo", ..)` next to
    /// `.sockjs("/echo", ..)`) keeps the WebSocket upgrades of `/echo`; every other
    /// request on `/echo` (the greeting) goes to the SockJS service.
    ///
    /// Sessions span several TCP connections, which may land on different shards: a
    /// session lives on the shard its id hashes to, and the other shards hand its
    /// requests and responses over through their mailboxes.
    ///
    /// ```
    /// use ringws::sockjs::SockJsOptions;
    /// use ringws::{Conn, Handler, Message, Server};
    ///
    /// struct Echo;
    /// impl Handler for Echo {
    ///     fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
    ///         if let Message::Text(text) = message {
    ///             conn.send_text(text);
    ///         }
    ///     }
    /// }
    ///
    /// let builder = Server::builder().sockjs("/echo", || Echo, SockJsOptions::default());
    /// # let _ = builder;
    /// ```
    pub fn sockjs<H, F>(mut self, prefix: &str, factory: F, options: SockJsOptions) -> Builder
    where
        H: Handler,
        F: Fn() -> H + Send + Sync + 'static,
    {
        let factory = Box::new(move || Box::new(factory()) as Box<dyn Handler>);
        self.routes.insert_sockjs(prefix, options, factory);
        self
    }

    /// Serves every connection over TLS (`wss://`, `https://`, SockJS over https):
    /// `cert_chain_pem` is the PEM certificate chain, leaf first; `private_key_pem` the
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). TLS 1.2 and 1.3 (rustls with the ring
    /// provider), ALPN `http/1.1`. A server is all-TLS or all-plain: every shard's
    /// listener on the bound address speaks TLS once this is set.
    ///
    /// A certificate or key that cannot be used makes [`Builder::build`] fail with an
    /// `InvalidInput` error saying what is wrong.
    ///
    /// ```no_run
    /// use ringws::{Conn, Handler, Message, Server};
    ///
    /// struct Echo;
    /// impl Handler for Echo {
    ///     fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
    ///         if let Message::Text(text) = message {
    ///             conn.send_text(text);
    ///         }
    ///     }
    /// }
    ///
    /// fn main() -> std::io::Result<()> {
    ///     let cert = std::fs::read("cert.pem")?;
    ///     let key = std::fs::read("key.pem")?;
    ///     Server::builder()
    ///         .bind("0.0.0.0:8443")
    ///         .tls(cert, key)
    ///         .websocket("/echo", || Echo)
    ///         .build()?
    ///         .run()
    /// }
    /// ```
    pub fn tls(
        mut self,
        cert_chain_pem: impl AsRef<[u8]>,
        private_key_pem: impl AsRef<[u8]>,
    ) -> Builder {
        let config = runtime::tls::server_config(cert_chain_pem.as_ref(), private_key_pem.as_ref());
        self.tls = Some(config);
        self
    }

    /// Like [`Builder::tls`], reading the PEM certificate chain and private key from
    /// files; a file that cannot be read makes [`Builder::build`] fail naming its path.
    pub fn tls_files(
        mut self,
        cert_chain_path: impl AsRef<std::path::Path>,
        private_key_path: impl AsRef<std::path::Path>,
    ) -> Builder {
        let config =
            runtime::tls::server_config_files(cert_chain_path.as_ref(), private_key_path.as_ref());
        self.tls = Some(config);
        self
    }

    /// Serves a byte-stream [`Protocol`] on a raw TCP listener at `addr` (same shards,
    /// one SO_REUSEPORT listener per shard), one protocol value per connection from
    /// `factory`. Several may be added; [`Server::tcp_addrs`] gives their bound addresses
    /// in the order they were added.
    ///
    /// ```
    /// use ringws::{Protocol, Server, Transport};
    ///
    /// struct Echo;
    /// impl Protocol for Echo {
    ///     fn data_received(&mut self, transport: &mut Transport<'_>, data: &[u8]) {
    ///         transport.write(data);
    ///     }
    /// }
    ///
    /// let builder = Server::builder()
    ///     .tcp("127.0.0.1:0", || Echo)
    ///     .websocket_protocol("/echo", || Echo);
    /// # let _ = builder;
    /// ```
    pub fn tcp<P, F>(mut self, addr: impl ToSocketAddrs, factory: F) -> Builder
    where
        P: Protocol,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let addr = addr.to_socket_addrs().and_then(|mut addrs| {
            addrs.next().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
            })
        });
        let factory: runtime::link::ProtocolFactory =
            Arc::new(move || Box::new(factory()) as Box<dyn Protocol>);
        self.tcp.push((addr, factory));
        self
    }

    /// Serves a byte-stream [`Protocol`] over WebSocket on `path`: every message's bytes
    /// (binary or text) are stream data, and [`Transport::write`](crate::Transport::write)
    /// sends binary messages.
    pub fn websocket_protocol<P, F>(self, path: &str, factory: F) -> Builder
    where
        P: Protocol,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.websocket(path, move || ProtocolHandler::new(factory()))
    }

    /// Serves a byte-stream [`Protocol`] as a SockJS service under `prefix`; SockJS
    /// carries text, so written bytes are sent as text (invalid UTF-8 replaced).
    pub fn sockjs_protocol<P, F>(self, prefix: &str, factory: F, options: SockJsOptions) -> Builder
    where
        P: Protocol,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.sockjs(prefix, move || ProtocolHandler::new(factory()), options)
    }

    /// Bridges WebSocket connections on `path` to the TCP service at `backend`
    /// (websockify's job): each connection opens its own TCP connection and bytes are
    /// copied both ways, in order, with backpressure on both sides. The subprotocols
    /// `binary` (binary messages) and `base64` (text messages carrying base64) are
    /// negotiated from `Sec-WebSocket-Protocol`; without either, binary. A backend that
    /// refuses closes the WebSocket with 1011 `backend unavailable: <reason>`; a backend
    /// that closes closes it with 1000 `backend closed`.
    ///
    /// ```
    /// let builder = ringws::Server::builder()
    ///     .bind("127.0.0.1:8080")
    ///     .bridge("/", "127.0.0.1:6379".parse().expect("address"));
    /// # let _ = builder;
    /// ```
    ///
    /// The route has the default [`WebSocketOptions`] (same-origin, see
    /// [`WebSocketOptions::allowed_origins`]) without the legacy drafts;
    /// [`Builder::bridge_with_options`] chooses others (a noVNC page served from another
    /// origin needs its origin listed).
    pub fn bridge(self, path: &str, backend: SocketAddr) -> Builder {
        self.bridge_with_options(path, backend, WebSocketOptions::default())
    }

    /// [`Builder::bridge`] with the route's [`WebSocketOptions`] (its origin policy, for
    /// one). The legacy drafts are always refused: their text-only framing cannot carry
    /// the bridge's binary stream.
    ///
    /// ```
    /// use ringws::handshake::OriginPolicy;
    /// use ringws::WebSocketOptions;
    ///
    /// let vnc_page = OriginPolicy::AllowList(vec!["https://vnc.example".into()]);
    /// let builder = ringws::Server::builder().bind("127.0.0.1:6080").bridge_with_options(
    ///     "/",
    ///     "127.0.0.1:5900".parse().expect("address"),
    ///     WebSocketOptions::default().allowed_origins(vnc_page),
    /// );
    /// # let _ = builder;
    /// ```
    pub fn bridge_with_options(
        self,
        path: &str,
        backend: SocketAddr,
        options: WebSocketOptions,
    ) -> Builder {
        self.websocket_with_options(path, options.legacy_drafts(false), move |request| {
            Ok(runtime::bridge::accept(request, backend))
        })
    }

    /// Benchmark floor only: instead of routes and handlers, every shard answers the
    /// handshake on any path and reflects each frame back unmasked, unvalidated. It shows
    /// what the kernel and the backend cost alone; never deploy it. The load generator's
    /// `peer-floor` (`loadtest/peers`) serves it.
    pub fn frame_reflector(mut self) -> Builder {
        self.reflector = true;
        self
    }

    /// Chooses the backend and binds the listeners (one per shard), or takes those of
    /// [`Builder::listeners`].
    pub fn build(mut self) -> io::Result<Server> {
        let addr = self.addr;
        let given = self.listeners.take();
        if let Some(error) = self.route_error.take() {
            return Err(error);
        }
        #[cfg(feature = "redis")]
        let broker = std::mem::take(&mut self.broker).settings()?;
        self.routes
            .set_max_static_file_size(self.max_static_file_size);
        if let Some(tls) = self.tls.take() {
            self.config.tls = Some(tls?);
        }
        if self.routes.is_empty() && !self.reflector && self.tcp.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no routes: add a websocket, sockjs or http route",
            ));
        }
        let shards = self
            .shards
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        self.config.max_connections = self.max_connections.map(|n| n.div_ceil(shards));
        if let Some(n) = self.max_pending_handshakes {
            self.config.max_pending = (n > 0).then(|| n.div_ceil(shards));
        }
        self.config.memory_budget = match self.memory_budget.unwrap_or_else(default_memory_budget) {
            0 => usize::MAX,
            total => (total / shards).max(1),
        };
        let backend = runtime::choose_backend(self.backend)?;
        let listeners = match given {
            Some(listeners) => runtime::listen::adopt(listeners)?,
            None => runtime::bind_listeners(addr?, shards)?,
        };
        let local_addr = listeners[0].local_addr()?;
        let mut doors = Vec::with_capacity(self.tcp.len());
        let mut protocols = Vec::with_capacity(self.tcp.len());
        for (addr, factory) in self.tcp {
            doors.push(runtime::bind_listeners(addr?, shards)?);
            protocols.push(factory);
        }
        let tcp_addrs = doors
            .iter()
            .map(|door| door[0].local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        let registry = Arc::new(Registry::new(shards)?);
        let poster: Arc<dyn crate::handle::Post> = registry.clone();
        let hub = Arc::new(Hub::new(shards, poster));
        Ok(Server {
            hub,
            #[cfg(feature = "redis")]
            broker,
            doors,
            tcp_addrs,
            protocols: Arc::new(protocols),
            listeners,
            shards,
            local_addr,
            backend,
            pin_cores: self.pin_cores,
            reflector: self.reflector,
            uring: self.uring,
            registry,
            routes: Arc::new(self.routes),
            config: Arc::new(self.config),
        })
        .inspect(|server| {
            // The metrics routes read the server they belong to.
            for slot in &self.metrics_handles {
                let _ = slot.set(server.handle());
            }
        })
    }
}

/// A bound WebSocket server, ready to run.
///
/// ```no_run
/// use ringws::{Conn, Handler, Message, Server};
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
///         match message {
///             Message::Text(text) => conn.send_text(text),
///             Message::Binary(bytes) => conn.send_binary(bytes),
///         };
///     }
/// }
///
/// fn main() -> std::io::Result<()> {
///     Server::builder().bind("127.0.0.1:8080").websocket("/echo", || Echo).build()?.run()
/// }
/// ```
pub struct Server {
    /// The HTTP listening sockets (one per shard when bound here; any number when
    /// given, spread over the shards at start by `runtime::listen::spread`).
    listeners: Vec<TcpListener>,
    shards: usize,
    /// Per raw TCP door, one listener per shard.
    doors: Vec<Vec<TcpListener>>,
    tcp_addrs: Vec<SocketAddr>,
    protocols: Arc<Vec<runtime::link::ProtocolFactory>>,
    local_addr: SocketAddr,
    backend: Backend,
    pin_cores: bool,
    reflector: bool,
    uring: runtime::uring::UringOptions,
    registry: Arc<Registry>,
    routes: Arc<Routes>,
    config: Arc<Config>,
    hub: Arc<Hub>,
    /// The Redis link's settings ([`Builder::redis`]); its thread starts with the shards.
    #[cfg(feature = "redis")]
    broker: Option<runtime::redis::Settings>,
}

impl Server {
    /// Starts configuring a server.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The address the server listens on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound addresses of the raw TCP doors ([`Builder::tcp`]), in the order they
    /// were added.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// The backend the shards will run on ([`Backend::Uring`] or [`Backend::Epoll`]).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A handle that shuts the server down from any thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            registry: Arc::clone(&self.registry),
            config: Arc::clone(&self.config),
            hub: Arc::clone(&self.hub),
        }
    }

    /// Runs the shards and blocks until the server is shut down through a
    /// [`ServerHandle`]; returns the first shard error, if any.
    pub fn run(self) -> io::Result<()> {
        self.start()?.join()
    }

    /// Runs the shards on background threads.
    pub fn start(self) -> io::Result<RunningServer> {
        let core_ids = if self.pin_cores {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let handle = self.handle();
        let per_shard = runtime::listen::spread(self.listeners, self.shards)?;
        // The broker link is in place before any shard can subscribe or publish.
        #[cfg(feature = "redis")]
        let broker = match self.broker {
            Some(settings) => Some(runtime::redis::start(settings, &self.hub)?),
            None => None,
        };
        let mut threads = Vec::with_capacity(per_shard.len());
        let mut doors: Vec<_> = self.doors.into_iter().map(Vec::into_iter).collect();
        for (index, mut listeners) in per_shard.into_iter().enumerate() {
            let http_listeners = listeners.len();
            listeners.extend(doors.iter_mut().filter_map(Iterator::next));
            let spec = ShardSpec {
                index,
                listeners,
                http_listeners,
                protocols: Arc::clone(&self.protocols),
                backend: self.backend,
                core_id: (!core_ids.is_empty()).then(|| core_ids[index % core_ids.len()]),
                registry: Arc::clone(&self.registry),
                routes: Arc::clone(&self.routes),
                config: Arc::clone(&self.config),
                hub: Arc::clone(&self.hub),
                reflector: self.reflector,
                uring: self.uring.clone(),
            };
            match runtime::spawn_shard(spec) {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    handle.shutdown();
                    return Err(error);
                }
            }
        }
        tracing::info!(addr = %self.local_addr, shards = threads.len(), backend = ?self.backend, "listening");
        Ok(RunningServer {
            tcp_addrs: self.tcp_addrs,
            local_addr: self.local_addr,
            handle,
            threads,
            #[cfg(feature = "redis")]
            broker,
        })
    }
}

/// Shuts a server down from any thread: every shard stops accepting, closes its
/// connections with 1001 (going away) and stops.
#[derive(Clone, Debug)]
pub struct ServerHandle {
    pub(crate) registry: Arc<Registry>,
    pub(crate) config: Arc<Config>,
    pub(crate) hub: Arc<Hub>,
}

impl ServerHandle {
    /// The bytes the server holds for its peers now, summed over the shards: what
    /// [`Builder::memory_budget`] counts (incomplete incoming messages, input kept
    /// during pauses, queued output, SockJS session queues, requests being read). Each
    /// shard publishes its own figure (a relaxed store, no per-message atomics) after
    /// each batch of events when it moved, so this may lag a loop turn behind; it is 0
    /// once every connection is gone.
    ///
    /// ```no_run
    /// # fn main() -> std::io::Result<()> {
    /// # struct Quiet;
    /// # impl ringws::Handler for Quiet {
    /// #     fn on_message(&mut self, _: &mut ringws::Conn<'_>, _: ringws::Message<'_>) {}
    /// # }
    /// let server = ringws::Server::builder()
    ///     .memory_budget(256 * 1024 * 1024)
    ///     .websocket("/", || Quiet)
    ///     .build()?
    ///     .start()?;
    /// println!("{} bytes held for peers", server.handle().memory_held());
    /// # Ok(())
    /// # }
    /// ```
    pub fn memory_held(&self) -> usize {
        self.registry.memory_held()
    }

    /// Asks every shard to shut down at once, without waiting for the peers' close
    /// replies (each WebSocket gets its 1001 close frame, then its socket is closed);
    /// returns at once. [`ServerHandle::shutdown_within`] is the graceful form; after
    /// it, this closes the connections still waiting for their peers at once.
    pub fn shutdown(&self) {
        self.shutdown_within(Duration::ZERO);
    }

    /// Asks every shard to shut down gracefully; returns at once. Each shard stops
    /// accepting, sends close 1001 "server shutting down" to every WebSocket
    /// (SockJS sessions get `c[1001,...]`, also on polling requests that wait on
    /// another shard), closes idle HTTP connections at once, writes what was queued
    /// (a response, a static file) and waits for the peers' close replies; a request
    /// half received is still read and answered with `Connection: close`. A
    /// connection whose peer has not answered when `grace` has passed is closed
    /// anyway. A shard stops once all its connections are closed, so the server stops
    /// within about `grace` (or the close timeout, if a peer is slow to take output
    /// queued before then and that is longer). The sessions of a hyper adapter built
    /// with this server (`AdapterBuilder::server`, feature `hyper`) are closed the same
    /// way.
    pub fn shutdown_within(&self, grace: Duration) {
        let nanos = u64::try_from(grace.as_nanos()).unwrap_or(u64::MAX);
        self.config
            .shutdown_grace
            .store(nanos, std::sync::atomic::Ordering::Relaxed);
        for shard in 0..self.registry.shards() {
            // A shard that already stopped has nothing left to shut down.
            let _ = self.registry.post(shard, Command::Shutdown);
        }
        // Threads that joined the server's pub/sub (the hyper adapter's) close theirs.
        self.hub.shut_down_joined(grace);
    }

    /// Hands the server's work to a successor that accepts from the same listening
    /// sockets ([`handover`](crate::handover)); returns at once. Every shard stops
    /// accepting now without closing its listeners' queues: connections still queued
    /// are the successor's to accept (a connection the kernel handed this server
    /// while the stop took effect is served). The open connections are served on for
    /// `grace`; then the server shuts down as [`ServerHandle::shutdown_within`]`(grace)`
    /// does, with the reason "server restarting": close 1001 "server restarting" to every
    /// WebSocket, `c[1001,"Server restarting"]` to every SockJS session, and at most
    /// `grace` more for the peers' close replies. Without a successor holding the
    /// sockets, queued connections are lost when the server's listeners close.
    /// `grace` zero shuts down at once.
    pub fn restart_within(&self, grace: Duration) {
        self.config
            .restarting
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for shard in 0..self.registry.shards() {
            // An empty wake-up: the shard's backend looks at `ShardCore::accepting`.
            self.registry.mailbox(shard).wake.signal();
        }
        if grace.is_zero() {
            self.shutdown_within(grace);
            return;
        }
        let handle = self.clone();
        let later = std::thread::Builder::new()
            .name("ringws-restart".into())
            .spawn(move || {
                std::thread::sleep(grace);
                handle.shutdown_within(grace);
            });
        if let Err(error) = later {
            tracing::warn!(%error, "no thread for the restart's grace; shutting down now");
            self.shutdown_within(grace);
        }
    }
}

/// A server running on background threads. Dropping it shuts it down and waits.
pub struct RunningServer {
    local_addr: SocketAddr,
    tcp_addrs: Vec<SocketAddr>,
    handle: ServerHandle,
    threads: Vec<JoinHandle<io::Result<()>>>,
    /// The Redis link's thread, stopped once the shards have stopped.
    #[cfg(feature = "redis")]
    broker: Option<runtime::redis::BrokerThread>,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that shuts the server down from any thread.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// The bound addresses of the raw TCP doors, in the order they were added.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// The bytes the server holds for its peers now ([`ServerHandle::memory_held`]).
    pub fn memory_held(&self) -> usize {
        self.handle.memory_held()
    }

    /// How many SockJS requests this server's shards handed to another shard so far
    /// (the `test-hooks` feature: tests only).
    #[cfg(feature = "test-hooks")]
    pub fn sockjs_handoffs(&self) -> usize {
        self.handle.registry.sockjs_handoffs()
    }

    /// Shuts the server down without waiting for the peers' close replies
    /// ([`ServerHandle::shutdown`]) and waits for every shard to finish.
    pub fn shutdown(self) -> io::Result<()> {
        self.handle.shutdown();
        self.join()
    }

    /// Shuts the server down gracefully ([`ServerHandle::shutdown_within`]): peers
    /// have until `grace` to answer the close 1001; returns once every shard finished.
    pub fn shutdown_within(self, grace: Duration) -> io::Result<()> {
        self.handle.shutdown_within(grace);
        self.join()
    }

    /// Waits until the server stops (after a [`ServerHandle::shutdown`]).
    pub fn join(mut self) -> io::Result<()> {
        self.join_threads()
    }

    fn join_threads(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for thread in self.threads.drain(..) {
            let outcome = thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a shard thread panicked")));
            if result.is_ok() {
                result = outcome;
            }
        }
        #[cfg(feature = "redis")]
        if let Some(mut broker) = self.broker.take() {
            broker.stop();
        }
        result
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.handle.shutdown();
            let _ = self.join_threads();
        }
    }
}

#[cfg(test)]
mod defaults_tests;

#[cfg(feature = "redis")]
mod broker;
pub mod handover;
mod metrics;
mod pubsub;
