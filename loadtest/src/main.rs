//! `ringws-loadtest`: load a WebSocket server (any `ws://` URL) with echo traffic,
//! handshakes or idle connections. See `ringws-loadtest <scenario> --help`.

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ringws_loadtest::client::{probe_deflate, DeflateRequest, Protocol};
use ringws_loadtest::target::Target;
use ringws_loadtest::{churn, connect, echo, fanout, idle, report};
use ringws_loadtest::{default_threads, ensure_nofile, parse_duration, HARD_CAP_GRACE};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A WebSocket load generator built on ringws's client role.
///
/// Every run stops by itself (duration or count, plus a hard cap 30 s later) and only
/// loads loopback targets (127.0.0.0/8, ::1, localhost) unless --i-own-the-target.
#[derive(Parser, Debug)]
#[command(name = "ringws-loadtest", version)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Echo round trips: each connection sends a message, waits for its echo (or keeps
    /// --inflight in flight) and repeats; reports msgs/s, MB/s and latency percentiles.
    Echo(EchoArgs),
    /// Handshake rate: workers loop on TCP connect, upgrade, close; reports
    /// handshakes/s and connect latency (TCP connect started to 101 received).
    Connect(ConnectArgs),
    /// Idle connections: open and hold many, pinging each (not over hixie-76, which has no
    /// ping); with --server-pid reports the server's RSS growth per connection.
    Idle(IdleArgs),
    /// Connection churn: workers loop on connect → upgrade → N checked echoes → close
    /// handshake → drop; reports cycles/s and, with --server-pid, the server's RSS and
    /// open fds before, right after and after --settle, to see whether they return to
    /// baseline.
    Churn(ChurnArgs),
    /// Pub/sub fan-out over a JSON pub/sub route (`ringws serve`'s /pubsub): subscribers
    /// on one topic (or many topics), publishers at a set total rate; reports
    /// deliveries/s, publish → deliver latency, messages lost, duplicated or out of
    /// order, and with --server-pid the server CPU per delivery.
    Fanout(FanoutArgs),
}

#[derive(Args, Debug)]
struct Common {
    /// The WebSocket URL to load (ws:// only).
    #[arg(long, default_value = "ws://127.0.0.1:8080/echo")]
    url: String,
    /// The wire protocol: rfc6455, or hixie76 (the legacy hixie-76/hybi-00 draft: text
    /// messages only, no ping/pong, close is 0xFF 0x00).
    #[arg(long, default_value = "rfc6455", value_parser = parse_protocol)]
    protocol: Protocol,
    /// Worker threads, each with its own current-thread tokio runtime
    /// (default: available cores / 2, at least 1).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object (scenario, url, settings, results) to stdout instead of the
    /// human summary; hides the progress bar.
    #[arg(long)]
    json: bool,
    /// Allow a target that is not a loopback address. Only load servers you own.
    #[arg(long)]
    i_own_the_target: bool,
}

#[derive(Args, Debug)]
struct EchoArgs {
    #[command(flatten)]
    common: Common,
    /// Connections, all open at once.
    #[arg(short = 'c', long, default_value_t = 100)]
    connections: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 20)]
    size: usize,
    /// Send binary messages (the default with rfc6455; refused with hixie76).
    #[arg(long, conflicts_with = "text")]
    binary: bool,
    /// Send text messages (ASCII payload; always so with --protocol hixie76).
    #[arg(long)]
    text: bool,
    /// Messages in flight per connection: 1 = send, wait for the echo, repeat (the
    /// uWebSockets load_test method); more = pipelined.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Measured time after the warmup (e.g. 10s, 500ms, 2m). Default 10s, or 300s as a
    /// cap when --messages is given.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after N measured messages in total (or at --duration, whichever is first).
    #[arg(long)]
    messages: Option<u64>,
    /// Time before measuring starts; messages sent during it are not counted.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Offer permessage-deflate (RFC 7692, `permessage-deflate; client_max_window_bits`)
    /// and compress every message sent; the server must agree (checked on one probe
    /// connection first) or the run is refused. Echoes are inflated before checking;
    /// the summary gives the wire and payload bytes each way.
    #[arg(long)]
    deflate: bool,
    /// zlib level (0-9) of the generator's own compression with --deflate.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=9))]
    deflate_level: u32,
    /// Payload content: alpha (`abc…` text, random binary) or json (JSON-like text
    /// records with varying numbers; implies --text).
    #[arg(long, default_value = "alpha")]
    payload: echo::PayloadKind,
    /// Distinct payloads each connection sends in turn (each echo checked against its
    /// own); more than 1 keeps deflate's context takeover from seeing one message over
    /// and over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4096))]
    variants: u64,
}

#[derive(Args, Debug)]
struct ConnectArgs {
    #[command(flatten)]
    common: Common,
    /// Concurrent workers, each with one connection at a time.
    #[arg(short = 'c', long, default_value_t = 10)]
    connections: usize,
    /// How long to run. Default 10s, or 300s as a cap when --count is given.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after N handshakes in total (or at --duration, whichever is first).
    #[arg(long)]
    count: Option<u64>,
    /// Offer permessage-deflate in every handshake; the server must agree (checked on
    /// one probe connection first) or the run is refused.
    #[arg(long)]
    deflate: bool,
}

#[derive(Args, Debug)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// Connections to open and hold.
    #[arg(short = 'c', long, default_value_t = 1000)]
    connections: usize,
    /// Connection attempts in progress at once while opening.
    #[arg(long, default_value_t = 256)]
    open_concurrency: usize,
    /// Send a ping on each connection this often (rfc6455 only: hixie76 has no ping,
    /// its connections are held without keepalive traffic and pongs are reported as 0).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    ping_interval: Duration,
    /// How long to hold the connections once all are open.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Longest time allowed for opening all connections.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    open_timeout: Duration,
    /// The server's process id: read its VmRSS from /proc/PID/status before opening and
    /// after all are open (plus 1 s), and report the growth per connection.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Args, Debug)]
struct ChurnArgs {
    #[command(flatten)]
    common: Common,
    /// Concurrent workers, each with one connection at a time.
    #[arg(short = 'c', long, default_value_t = 10)]
    connections: usize,
    /// Messages per connection, sent one at a time, each echo awaited and checked.
    #[arg(long, default_value_t = 10)]
    messages_per_conn: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Send text messages (ASCII payload; always so with --protocol hixie76) instead
    /// of binary.
    #[arg(long)]
    text: bool,
    /// How long to start new cycles. Default 10s, or 300s as a cap when --count is given.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after N cycles in total (or at --duration, whichever is first).
    #[arg(long)]
    count: Option<u64>,
    /// The server's process id: read its VmRSS (/proc/PID/status) and open fds
    /// (/proc/PID/fd) before the run, right after it and after --settle.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Wait this long after the run before the last RSS/fd sample (with --server-pid).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    settle: Duration,
}

#[derive(Args, Debug)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Where the publishers connect (default: --url); another node of a cluster
    /// (e.g. a second `ringws serve --redis`) for cross-node latency.
    #[arg(long)]
    publish_url: Option<String>,
    /// Subscriber connections; subscriber i subscribes to topic i % --topics.
    #[arg(short = 'c', long, default_value_t = 1000)]
    subscribers: usize,
    /// Publisher connections (not subscribed to anything).
    #[arg(long, default_value_t = 10)]
    publishers: usize,
    /// Topics (1: everyone on one topic; e.g. 1000 with -c 10000: 10 per topic).
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Messages published per second, all publishers together (open loop: the route
    /// does not acknowledge publishes). Deliveries/s = rate × subscribers per topic.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Bytes of data per message (at least 40: publisher, sequence, send time, padding).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Published and checked for loss, not measured.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Wait after every subscription is acknowledged before publishing (a broker's
    /// subscription may lag the acknowledgement).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    settle: Duration,
    /// Longest wait for the last deliveries after publishing stops.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain: Duration,
    /// Longest time for opening and subscribing all connections.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    open_timeout: Duration,
    /// A server process whose CPU time (/proc/PID/stat utime + stime) is read at the
    /// start and end of the measured window; repeat for several (two nodes, Redis).
    #[arg(long)]
    server_pid: Vec<u32>,
}

/// The last-resort stop: exits the process if the run outlives its hard cap.
fn watchdog(cap: Duration) {
    let _ = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            std::thread::sleep(cap);
            eprintln!("ringws-loadtest: hard cap of {cap:?} reached, exiting");
            std::process::exit(3);
        });
}

fn progress_bar(json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    s.parse()
}

fn prepare(common: &Common, connections: usize) -> Result<(Target, usize), String> {
    let target = Target::parse(&common.url)?;
    target.check_allowed(common.i_own_the_target)?;
    if let Some(note) = ensure_nofile(connections as u64 + 100) {
        eprintln!("ringws-loadtest: {note}");
    }
    Ok((
        target,
        common.threads.unwrap_or_else(default_threads).max(1),
    ))
}

fn run(cli: Cli) -> Result<u64, String> {
    match cli.scenario {
        Scenario::Echo(a) => {
            let protocol = a.common.protocol;
            if protocol == Protocol::Hixie76 && a.binary {
                return Err(
                    "--binary with --protocol hixie76: hixie-76 has text messages \
                            only; drop --binary (payloads are text)"
                        .into(),
                );
            }
            if protocol == Protocol::Hixie76 && a.deflate {
                return Err("--deflate needs --protocol rfc6455".into());
            }
            let (target, threads) = prepare(&a.common, a.connections)?;
            let duration = a.duration.unwrap_or(if a.messages.is_some() {
                Duration::from_secs(300)
            } else {
                Duration::from_secs(10)
            });
            let deflate = a.deflate.then_some(DeflateRequest {
                level: a.deflate_level,
            });
            if let Some(req) = deflate {
                // One connection first: a server that does not do permessage-deflate
                // gets a clear refusal, not a run of handshake errors.
                probe_deflate(&target, req.level).map_err(|e| format!("--deflate: {e}"))?;
            }
            let opts = echo::EchoOptions {
                target,
                protocol,
                connections: a.connections,
                size: a.size,
                text: (a.text && !a.binary)
                    || protocol == Protocol::Hixie76
                    || a.payload == echo::PayloadKind::Json,
                inflight: a.inflight.max(1),
                duration,
                messages: a.messages,
                warmup: a.warmup,
                threads,
                deflate,
                payload: a.payload,
                variants: a.variants as usize,
            };
            watchdog(opts.warmup + opts.duration + HARD_CAP_GRACE + Duration::from_secs(5));
            let bar = progress_bar(a.common.json);
            let r = echo::run(&opts, &bar);
            if a.common.json {
                report::print_json("echo", &a.common.url, &opts.settings(), &r);
            } else {
                println!(
                    "echo {} ({protocol}, {} connections, {} B {}{}, inflight {}{})",
                    a.common.url,
                    opts.connections,
                    opts.size,
                    if opts.text { "text" } else { "binary" },
                    if opts.payload == echo::PayloadKind::Json {
                        " json"
                    } else {
                        ""
                    },
                    opts.inflight,
                    if opts.deflate.is_some() {
                        ", permessage-deflate"
                    } else {
                        ""
                    }
                );
                println!("{}", r.summary());
            }
            Ok(r.errors.total())
        }
        Scenario::Connect(a) => {
            let (target, threads) = prepare(&a.common, a.connections)?;
            let duration = a.duration.unwrap_or(if a.count.is_some() {
                Duration::from_secs(300)
            } else {
                Duration::from_secs(10)
            });
            let deflate = a.deflate.then_some(DeflateRequest { level: 1 });
            if a.deflate {
                if a.common.protocol == Protocol::Hixie76 {
                    return Err("--deflate needs --protocol rfc6455".into());
                }
                probe_deflate(&target, 1).map_err(|e| format!("--deflate: {e}"))?;
            }
            let opts = connect::ConnectOptions {
                target,
                protocol: a.common.protocol,
                concurrency: a.connections,
                duration,
                count: a.count,
                threads,
                deflate,
            };
            watchdog(opts.duration + HARD_CAP_GRACE + Duration::from_secs(5));
            let bar = progress_bar(a.common.json);
            let r = connect::run(&opts, &bar);
            if a.common.json {
                report::print_json("connect", &a.common.url, &opts.settings(), &r);
            } else {
                println!(
                    "connect {} ({}, {} workers)",
                    a.common.url, opts.protocol, opts.concurrency
                );
                println!("{}", r.summary());
            }
            Ok(r.errors.total())
        }
        Scenario::Idle(a) => {
            let (target, threads) = prepare(&a.common, a.connections)?;
            let opts = idle::IdleOptions {
                target,
                protocol: a.common.protocol,
                connections: a.connections,
                open_concurrency: a.open_concurrency,
                ping_interval: a.ping_interval,
                duration: a.duration,
                open_timeout: a.open_timeout,
                server_pid: a.server_pid,
                threads,
            };
            watchdog(opts.hard_cap() + Duration::from_secs(5));
            let bar = progress_bar(a.common.json);
            let r = idle::run(&opts, &bar);
            if a.common.json {
                report::print_json("idle", &a.common.url, &opts.settings(), &r);
            } else {
                println!(
                    "idle {} ({}, {} connections)",
                    a.common.url, opts.protocol, opts.connections
                );
                println!("{}", r.summary());
            }
            Ok(r.errors.total())
        }
        Scenario::Churn(a) => {
            let (target, threads) = prepare(&a.common, a.connections)?;
            let duration = a.duration.unwrap_or(if a.count.is_some() {
                Duration::from_secs(300)
            } else {
                Duration::from_secs(10)
            });
            let protocol = a.common.protocol;
            let opts = churn::ChurnOptions {
                target,
                protocol,
                concurrency: a.connections,
                messages_per_conn: a.messages_per_conn,
                size: a.size,
                text: a.text || protocol == Protocol::Hixie76,
                duration,
                count: a.count,
                server_pid: a.server_pid,
                settle: a.settle,
                threads,
            };
            watchdog(opts.hard_cap() + Duration::from_secs(5));
            let bar = progress_bar(a.common.json);
            let r = churn::run(&opts, &bar);
            if a.common.json {
                report::print_json("churn", &a.common.url, &opts.settings(), &r);
            } else {
                println!(
                    "churn {} ({}, {} workers, {} x {} B {} per connection)",
                    a.common.url,
                    opts.protocol,
                    opts.concurrency,
                    opts.messages_per_conn,
                    opts.size,
                    if opts.text { "text" } else { "binary" }
                );
                println!("{}", r.summary());
            }
            Ok(r.errors.total())
        }
        Scenario::Fanout(a) => {
            let (target, threads) = prepare(&a.common, a.subscribers + a.publishers)?;
            let publish_target = match &a.publish_url {
                Some(url) => {
                    let t = Target::parse(url)?;
                    t.check_allowed(a.common.i_own_the_target)?;
                    t
                }
                None => target.clone(),
            };
            if !(a.rate > 0.0 && a.rate.is_finite()) {
                return Err("--rate must be a positive number of messages per second".into());
            }
            let opts = fanout::FanoutOptions {
                target,
                publish_target,
                subscribers: a.subscribers,
                publishers: a.publishers.max(1),
                topics: a.topics.max(1),
                rate: a.rate,
                size: a.size.max(fanout::MIN_SIZE),
                settle: a.settle,
                warmup: a.warmup,
                duration: a.duration,
                drain: a.drain,
                open_timeout: a.open_timeout,
                server_pids: a.server_pid.clone(),
                threads,
            };
            watchdog(opts.hard_cap() + Duration::from_secs(5));
            let bar = progress_bar(a.common.json);
            let r = fanout::run(&opts, &bar);
            if a.common.json {
                report::print_json("fanout", &a.common.url, &opts.settings(), &r);
            } else {
                println!(
                    "fanout {} ({} subscribers on {} topic(s), {} publishers at {} msgs/s, {} B)",
                    a.common.url,
                    opts.subscribers,
                    opts.topics,
                    opts.publishers,
                    opts.rate,
                    opts.size
                );
                println!("{}", r.summary());
            }
            Ok(r.errors.total() + r.lost + r.duplicated + r.out_of_order)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(0) => ExitCode::SUCCESS,
        // Errors were counted and reported; a script can tell from the exit status.
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ringws-loadtest: {e}");
            ExitCode::from(2)
        }
    }
}
