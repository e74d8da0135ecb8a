//! The `ringws` command: `ringws serve` runs a chat page at `/` with its WebSocket rooms
//! at `/chat` (see `chat.rs`), an echo server on `/echo` with a short page at `/help`
//! that tells a person how to connect, the pub/sub services `/broadcast` and `/pubsub`
//! (see `routes.rs`; with `--redis`, shared by every node on the Redis server), the four SockJS services the SockJS protocol
//! suites expect (`/echo`, `/close`, `/disabled_websocket_echo`, `/cookie_needed_echo`)
//! and, with `--static DIR`, the files of DIR under `/static/`. `ringws bridge` bridges
//! WebSocket connections to a TCP service (websockify's job).

#[path = "ringws/chat.rs"]
mod chat;
#[path = "ringws/routes.rs"]
mod routes;

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use ringws::pubsub::SlowSubscribers;
use ringws::sockjs::{Flavour, SockJsOptions};
use ringws::{Backend, Conn, Handler, HttpResponse, Message, Server};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ringws",
    version,
    about = "WebSocket server engine on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a chat page at / (WebSocket rooms at /chat), a WebSocket echo endpoint at
    /// /echo, the pub/sub services /broadcast and /pubsub, and a help page at /help.
    Serve(ServeArgs),
    /// Bridge WebSocket connections to a TCP service: each connection opens its own TCP
    /// connection to --to and bytes are copied both ways (subprotocols `binary` and
    /// `base64`).
    Bridge(BridgeArgs),
}

#[derive(clap::Args)]
struct BridgeArgs {
    /// Address to listen on for WebSocket clients.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The TCP service to bridge to.
    #[arg(long)]
    to: std::net::SocketAddr,
    /// The WebSocket path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Shard threads (default: available cores).
    #[arg(long)]
    shards: Option<usize>,
    /// I/O backend; RINGWS_BACKEND overrides it.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
    /// On SIGINT/SIGTERM, how long peers have to answer the close 1001 before their
    /// connections are closed anyway (`5s`, `500ms`, `1m`; `0` closes at once).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    /// Browser origins the bridge accepts: `same`, `any`, or a comma-separated list
    /// (e.g. the origin of the page that embeds noVNC). Others get 403; clients that
    /// send no Origin are always accepted.
    #[arg(
        long,
        default_value = "same",
        value_name = "any|same|ORIGIN[,ORIGIN...]"
    )]
    allowed_origins: ringws::handshake::OriginPolicy,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: String,
    /// Shard threads (default: available cores).
    #[arg(long)]
    shards: Option<usize>,
    /// I/O backend; RINGWS_BACKEND overrides it.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
    /// Pin shard i to core i.
    #[arg(long)]
    pin_cores: bool,
    /// Largest message accepted, in bytes (default 64 MiB).
    #[arg(long)]
    max_message_size: Option<usize>,
    /// Most WebSocket/HTTP connections at once (shared among shards); past it, requests
    /// are answered 503 (default: no limit).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Most connections at once still waiting for their first request (shared among
    /// shards); past it the oldest is answered 408 and closed (default: 1024 per shard;
    /// 0: no limit).
    #[arg(long)]
    max_pending_handshakes: Option<usize>,
    /// Most bytes held for peers (incomplete messages, queued output, SockJS queues),
    /// all shards together; over ¾ the biggest senders are paused, over all of it the
    /// biggest holders closed (default: ¼ of physical memory; 0: no budget).
    #[arg(long, value_name = "BYTES")]
    memory_budget: Option<usize>,
    /// io_uring receive buffers per shard, a power of two: every socket of the shard
    /// reads into them (memory per shard = this × --recv-buffer-size)
    #[arg(long, default_value_t = 512)]
    recv_buffers: u16,
    /// Size of each io_uring receive buffer in bytes
    #[arg(long, default_value_t = 32 * 1024)]
    recv_buffer_size: u32,
    /// A WebSocket peer that sends nothing is pinged after half of this and closed
    /// with 1001 after all of it (`120s`, `0` disables).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// On SIGINT/SIGTERM, how long peers have to answer the close 1001 before their
    /// connections are closed anyway (`5s`, `500ms`, `1m`; `0` closes at once).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    /// Restarts that drop nobody: if a `ringws serve` answers on the Unix socket PATH,
    /// take its listening sockets (--bind is then unused), serve them, and let it go:
    /// it stops accepting, serves its connections for --shutdown-timeout, closes them
    /// with 1001 "server restarting" (peers have --shutdown-timeout more to answer)
    /// and exits. Then listen on PATH for this process's own successor. Start every
    /// generation with the same flags.
    #[arg(long, value_name = "PATH")]
    handover: Option<PathBuf>,
    /// Stop reading a connection while its queued output is over the backpressure
    /// threshold (256 KiB), until it drains (`false` keeps reading).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pause_on_backpressure: bool,
    /// Close a connection (1008 "backpressure limit") whose queued output would go over
    /// 16 MiB, instead of dropping the message (uWebSockets' closeOnBackpressureLimit).
    #[arg(long)]
    close_on_backpressure_limit: bool,
    /// The SockJS protocol flavour of the SockJS services (0.3.3: sockjs-node 0.3.9 and
    /// the v0.3.3 suite; current: sockjs-node 0.3.24 and the main suite).
    #[arg(long, value_enum, default_value_t = FlavourArg::Current)]
    sockjs_flavour: FlavourArg,
    /// Largest SockJS send body (`xhr_send`, `jsonp_send`) in bytes; a larger one is
    /// answered 413 and its messages dropped (default 1 MiB).
    #[arg(long, default_value_t = ringws::sockjs::DEFAULT_MAX_BODY_BYTES)]
    sockjs_max_body: usize,
    /// The sockjs-client script the SockJS iframe page loads (default: sockjs-node's CDN
    /// URL for the flavour), e.g. `/static/sockjs.min.js` with `--static DIR` holding
    /// the same sockjs-client build as the pages that connect.
    #[arg(long, value_name = "URL")]
    sockjs_url: Option<String>,
    /// Serve the files of this directory under /static/.
    #[arg(long = "static", value_name = "DIR")]
    static_dir: Option<PathBuf>,
    /// Browser origins the WebSocket routes (/echo, /chat) accept: `same` (the page's
    /// host and port must be the request's Host), `any`, or a comma-separated list
    /// (`https://example.com,http://127.0.0.1:8080`). Others get 403; clients that
    /// send no Origin (not browsers) are always accepted; SockJS accepts any origin.
    #[arg(
        long,
        default_value = "same",
        value_name = "any|same|ORIGIN[,ORIGIN...]"
    )]
    allowed_origins: ringws::handshake::OriginPolicy,
    /// A reverse proxy in front of the server: an address or CIDR network
    /// (`127.0.0.1`, `10.0.0.0/8`, `fd00::/8`); repeat the flag for several. From such
    /// a peer the client's address is the right-most address in X-Forwarded-For that is
    /// not a trusted proxy (or the `for=` of Forwarded, with --proxy-header forwarded);
    /// from any other peer those headers are ignored.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxies: Vec<ringws::http::Cidr>,
    /// The header the trusted proxies write the client's address into (only that one is
    /// read).
    #[arg(
        long,
        default_value = "x-forwarded-for",
        value_name = "x-forwarded-for|forwarded",
        requires = "trusted_proxies"
    )]
    proxy_header: ringws::http::ForwardedHeader,
    /// What happens to a pub/sub subscriber (chat, /broadcast, /pubsub) whose queued
    /// output would go over 16 MiB: `drop` skips the message for it, `close` closes it
    /// with 1008 "slow subscriber".
    #[arg(long, value_enum, default_value_t = SlowArg::Drop)]
    slow_subscribers: SlowArg,
    /// Accept permessage-deflate (RFC 7692) on every WebSocket route and SockJS's
    /// websocket transport, with context takeover and 15-bit windows; idle connections'
    /// zlib streams hibernate after 10 s (off by default, as compression costs CPU).
    #[arg(long)]
    deflate: bool,
    /// Which permessage-deflate mode to use (implies --deflate): `context-takeover`
    /// (best ratio, zlib streams per active connection) or `no-context-takeover`
    /// (every message on its own, nothing kept per connection).
    #[arg(long, value_enum)]
    deflate_mode: Option<DeflateModeArg>,
    /// zlib level of what the server compresses, 0..=9 (with --deflate or
    /// --deflate-mode; default 1, the fastest that compresses).
    #[arg(long, value_name = "0-9", value_parser = clap::value_parser!(u32).range(0..=9))]
    deflate_level: Option<u32>,
    /// Share pub/sub (the chat's rooms, /broadcast, /pubsub) with every `ringws serve`
    /// linked to the Redis server at this URL (`redis://[user:password@]HOST[:PORT][/DB]`).
    /// An unreachable Redis is retried with backoff; a URL that is not a Redis URL is
    /// refused.
    #[cfg(feature = "redis")]
    #[arg(long, value_name = "URL", value_parser = parse_redis_url)]
    redis: Option<String>,
    /// How messages cross Redis: `pubsub` (PUBLISH/SUBSCRIBE, at most once) or `streams`
    /// (Redis streams: nothing lost across a reconnect while the stream retains it).
    #[cfg(feature = "redis")]
    #[arg(long, value_enum, default_value_t = RedisModeArg::Pubsub, requires = "redis")]
    redis_mode: RedisModeArg,
    /// Serve the server's metrics at this path, in the Prometheus (OpenMetrics) text
    /// format (e.g. `--metrics /metrics`; off by default).
    #[arg(long, value_name = "PATH")]
    metrics: Option<String>,
}

#[cfg(feature = "redis")]
#[derive(Clone, Copy, ValueEnum)]
enum RedisModeArg {
    Pubsub,
    Streams,
}

/// Checks that `text` is a Redis URL the client library accepts.
#[cfg(feature = "redis")]
fn parse_redis_url(text: &str) -> Result<String, String> {
    redis::IntoConnectionInfo::into_connection_info(text)
        .map(|_| text.to_owned())
        .map_err(|error| {
            format!("not a Redis URL ({error}); expected redis://[user:password@]HOST[:PORT][/DB]")
        })
}

#[derive(Clone, Copy, ValueEnum)]
enum DeflateModeArg {
    ContextTakeover,
    NoContextTakeover,
}

#[derive(Clone, Copy, ValueEnum)]
enum SlowArg {
    Drop,
    Close,
}

#[derive(Clone, Copy, ValueEnum)]
enum FlavourArg {
    #[value(name = "0.3.3")]
    V033,
    Current,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Auto,
    Uring,
    Epoll,
}

/// Sends every message back as it came.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }
}

/// Closes every SockJS session at once with 3000 "Go away!" (the suites' `/close`).
struct GoAway;

impl Handler for GoAway {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        conn.close(3000, "Go away!");
    }

    fn on_message(&mut self, _conn: &mut Conn<'_>, _message: Message<'_>) {}
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Serve(args) => serve(args),
        Command::Bridge(args) => bridge(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ringws: {error}");
            ExitCode::FAILURE
        }
    }
}

fn backend(arg: BackendArg) -> Backend {
    match arg {
        BackendArg::Auto => Backend::Auto,
        BackendArg::Uring => Backend::Uring,
        BackendArg::Epoll => Backend::Epoll,
    }
}

fn bridge(args: BridgeArgs) -> io::Result<()> {
    let signals = shutdown_signals();
    let mut builder = Server::builder()
        .bind(args.listen.as_str())
        .backend(backend(args.backend))
        .bridge_with_options(
            &args.path,
            args.to,
            ringws::WebSocketOptions::default().allowed_origins(args.allowed_origins),
        );
    if let Some(shards) = args.shards {
        builder = builder.shards(shards);
    }
    let server = builder.build()?;
    let backend = server.backend();
    let running = server.start()?;
    eprintln!(
        "ringws: bridging ws://{}{} to tcp://{} ({backend:?} backend); Ctrl-C stops",
        running.local_addr(),
        args.path,
        args.to
    );
    let handle = running.handle();
    let grace = args.shutdown_timeout;
    std::thread::spawn(move || shut_down_on_signals(&signals, &handle, grace));
    running.join()
}

fn serve(args: ServeArgs) -> io::Result<()> {
    let backend = backend(args.backend);
    // Block SIGINT/SIGTERM before any shard thread starts, so they all inherit the mask
    // and this thread alone receives the signals, with sigwait below.
    let signals = shutdown_signals();
    // Sockets from systemd (socket activation: LISTEN_FDS), taken before any thread
    // starts as they change the environment; then a running predecessor's (--handover),
    // which come first when there are both.
    let activated = ringws::handover::listen_fds()?;
    let mut predecessor = match &args.handover {
        Some(path) => ringws::handover::take_listeners(path)?,
        None => None,
    };
    let mut builder = Server::builder()
        .bind(args.bind.as_str())
        .backend(backend)
        .pin_cores(args.pin_cores);
    if let Some(old) = predecessor.as_mut() {
        builder = builder.listeners(old.take_listeners());
    } else if !activated.is_empty() {
        builder = builder.listeners(activated);
    }
    if let Some(shards) = args.shards {
        builder = builder.shards(shards);
    }
    if let Some(bytes) = args.max_message_size {
        builder = builder.max_message_size(bytes);
    }
    if let Some(n) = args.max_connections {
        builder = builder.max_connections(n);
    }
    if let Some(n) = args.max_pending_handshakes {
        builder = builder.max_pending_handshakes(n);
    }
    if let Some(bytes) = args.memory_budget {
        builder = builder.memory_budget(bytes);
    }
    if !args.trusted_proxies.is_empty() {
        let proxies = ringws::http::TrustedProxies::new().header(args.proxy_header);
        let proxies = args
            .trusted_proxies
            .iter()
            .fold(proxies, |p, &net| p.with(net));
        builder = builder.trusted_proxies(proxies);
    }
    builder = builder.recv_buffers(args.recv_buffers, args.recv_buffer_size);
    if let Some(path) = &args.metrics {
        builder = builder.metrics(path);
    }
    builder = builder
        .idle_timeout(args.idle_timeout)
        .pause_reading_on_backpressure(args.pause_on_backpressure)
        .close_on_backpressure_limit(args.close_on_backpressure_limit)
        .slow_subscribers(match args.slow_subscribers {
            SlowArg::Drop => SlowSubscribers::Drop,
            SlowArg::Close => SlowSubscribers::Close,
        });
    let flavour = match args.sockjs_flavour {
        FlavourArg::V033 => Flavour::V0_3_3,
        FlavourArg::Current => Flavour::Current,
    };
    let mut options = SockJsOptions::default()
        .flavour(flavour)
        .max_body_bytes(args.sockjs_max_body);
    if let Some(url) = &args.sockjs_url {
        options = options.sockjs_url(url.as_str());
    }
    if let Some(dir) = &args.static_dir {
        builder = builder.static_files("/static/", dir);
    }
    let mut origins = ringws::WebSocketOptions::default().allowed_origins(args.allowed_origins);
    let deflate = match (args.deflate, args.deflate_mode) {
        (_, Some(DeflateModeArg::NoContextTakeover)) => {
            Some(ringws::DeflateOptions::no_context_takeover())
        }
        (true, _) | (_, Some(DeflateModeArg::ContextTakeover)) => {
            Some(ringws::DeflateOptions::context_takeover())
        }
        (false, None) => None,
    };
    let deflate = deflate.map(|deflate| match args.deflate_level {
        Some(level) => deflate.level(level),
        None => deflate,
    });
    if let Some(deflate) = deflate {
        origins = origins.deflate(deflate);
        options = options.deflate(deflate);
    }
    let builder = chat::add_chat(builder, origins.clone());
    let builder = routes::add_pubsub_routes(builder, origins.clone());
    #[cfg(feature = "redis")]
    let builder = match &args.redis {
        Some(url) => {
            let mode = match args.redis_mode {
                RedisModeArg::Pubsub => ringws::pubsub::BrokerMode::PubSub,
                RedisModeArg::Streams => ringws::pubsub::BrokerMode::Streams,
            };
            builder
                .redis(url, mode)
                // The link logs its connects and outages itself; gaps and lost
                // publishes are the application's to report.
                .on_broker_event(|event| match event {
                    ringws::pubsub::BrokerEvent::Connected
                    | ringws::pubsub::BrokerEvent::Disconnected { .. } => {}
                    event => tracing::warn!(?event, "redis broker"),
                })
        }
        None => builder,
    };
    // The SockJS services the protocol suites expect. `/echo` is also the plain
    // WebSocket echo: an upgrade of `/echo` itself goes to the WebSocket route, every
    // other request under `/echo` to the SockJS service.
    let server = builder
        .sockjs("/echo", || Echo, options.clone().response_limit(4096))
        .sockjs("/close", || GoAway, options.clone())
        .sockjs(
            "/disabled_websocket_echo",
            || Echo,
            options.clone().websocket(false),
        )
        .sockjs("/cookie_needed_echo", || Echo, options.cookie_needed(true))
        .websocket_with_options("/echo", origins, |_| Ok(ringws::Accept::new(Echo)))
        .http("/help", |_| {
            HttpResponse::text(
                200,
                "ringws: a WebSocket echo server.\n\
                 Open / in a browser for the chat demo (its WebSocket rooms are /chat;\n\
                 /join NAME changes rooms, /nick NAME names you).\n\
                 Connect a WebSocket client to /echo on this host and port, for example:\n\
                 \n    websocat ws://HOST:PORT/echo\n\n\
                 Every text or binary message is sent back unchanged. Clients of every\n\
                 version are served: RFC 6455, hybi-07/08, hixie-76 (hybi-00) and hixie-75.\n\
                 \n\
                 SockJS services: /echo (echo, streaming responses end at 4096 bytes),\n\
                 /close (closes each session with 3000 \"Go away!\"),\n\
                 /disabled_websocket_echo (echo without the websocket transport) and\n\
                 /cookie_needed_echo (echo with the JSESSIONID cookie).\n\
                 \n\
                 Pub/sub: ws://HOST:PORT/broadcast sends every message to every\n\
                 /broadcast client, the sender included. ws://HOST:PORT/pubsub speaks\n\
                 JSON: {\"subscribe\":\"T\"} -> {\"subscribed\":\"T\"},\n\
                 {\"unsubscribe\":\"T\"} -> {\"unsubscribed\":\"T\"},\n\
                 {\"publish\":\"T\",\"data\":\"TEXT\"} -> TEXT, as is, to every other\n\
                 subscriber of T; anything else -> {\"error\":\"REASON\"}.\n",
            )
        })
        .build()?;
    let backend = server.backend();
    let successors = match &args.handover {
        Some(path) => Some(ringws::handover::Handover::bind(path, &server)?),
        None => None,
    };
    let running = server.start()?;
    let answering = match successors {
        Some(successors) => Some(successors.spawn(running.handle(), args.shutdown_timeout)?),
        None => None,
    };
    if let Some(old) = predecessor {
        let pid = old.pid();
        match old.release() {
            Ok(()) => eprintln!("ringws: took over from process {pid}, which now drains"),
            Err(error) => tracing::warn!(pid, %error, "the previous server did not confirm"),
        }
    }
    eprintln!(
        "ringws: chat at http://{0}/, help at http://{0}/help; serving ws://{0}/echo, ws://{0}/broadcast, ws://{0}/pubsub and SockJS /echo, /close, /disabled_websocket_echo, /cookie_needed_echo ({backend:?} backend); Ctrl-C stops",
        running.local_addr()
    );
    #[cfg(feature = "redis")]
    if args.redis.is_some() {
        let mode = match args.redis_mode {
            RedisModeArg::Pubsub => "pubsub",
            RedisModeArg::Streams => "streams",
        };
        eprintln!(
            "ringws: pub/sub (chat rooms, /broadcast, /pubsub) shared through Redis ({mode} mode)"
        );
    }
    if let Some(dir) = &args.static_dir {
        eprintln!(
            "ringws: the files of {} at http://{}/static/",
            dir.display(),
            running.local_addr()
        );
    }
    let handle = running.handle();
    let grace = args.shutdown_timeout;
    std::thread::spawn(move || shut_down_on_signals(&signals, &handle, grace));
    let result = running.join();
    // The hand-over thread sees the stop within a fraction of a second and removes its
    // socket file (unless a successor's replaced it).
    if let Some(thread) = answering {
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    result
}

/// Parses a duration: a number with `ms`, `s`, `m` or `h` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (try 5s, 500ms, 1m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// Waits for SIGINT/SIGTERM, then shuts down gracefully (peers have `grace` to answer
/// the close 1001); a second signal closes every connection at once.
fn shut_down_on_signals(signals: &libc::sigset_t, handle: &ringws::ServerHandle, grace: Duration) {
    wait_for_signal(signals);
    tracing::info!(
        ?grace,
        "signal received, shutting down (a second signal: at once)"
    );
    handle.shutdown_within(grace);
    wait_for_signal(signals);
    tracing::info!("second signal received, closing every connection now");
    handle.shutdown();
}

/// Blocks SIGINT and SIGTERM in this thread (and the threads it spawns later).
fn shutdown_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it, and
    // pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits until one of the blocked signals arrives.
fn wait_for_signal(set: &libc::sigset_t) {
    let mut signal = 0;
    // SAFETY: `set` was initialised by shutdown_signals; `signal` is a live c_int.
    unsafe {
        libc::sigwait(set, &mut signal);
    }
}
