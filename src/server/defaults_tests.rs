//! Pins README's "Limits and defaults" table to the code: for every row, the default
//! the table states and the value the builder (or the options, or the `ringws` binary's
//! flags) really uses. A change on either side alone fails here.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Builder, Server, DEFAULT_MAX_PENDING_HANDSHAKES};
use crate::route::WebSocketOptions;
use crate::sockjs::{SockJsOptions, DEFAULT_MAX_BODY_BYTES};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

const README: &str = include_str!("../../README.md");
const BIN: &str = include_str!("../bin/ringws.rs");

/// The rows of the table: the limit, the method, the `ringws serve` flag, the ringws
/// default (the uWebSockets column left out).
fn table_rows() -> Vec<[String; 4]> {
    let table = README
        .split("## Limits and defaults")
        .nth(1)
        .expect("README has a \"Limits and defaults\" section");
    table
        .lines()
        .take_while(|line| !line.starts_with("## "))
        .filter(|line| line.starts_with('|') && !line.starts_with("|---"))
        .skip(1) // the header
        .map(|line| {
            // `\|` is a pipe inside a cell.
            let cells: Vec<String> = line
                .replace("\\|", "\u{0}")
                .split('|')
                .map(|cell| cell.trim().replace('\u{0}', "|"))
                .collect();
            [1, 2, 3, 4].map(|i| cells.get(i).cloned().unwrap_or_default())
        })
        .collect()
}

/// The row whose "Builder method" cell starts with `method` (in backticks).
fn row(method: &str) -> [String; 4] {
    let key = format!("`{method}`");
    let rows: Vec<[String; 4]> = table_rows()
        .into_iter()
        .filter(|cells| cells[1].starts_with(&key))
        .collect();
    assert_eq!(rows.len(), 1, "one README row for {key}: {rows:?}");
    rows.into_iter().next().expect("one row")
}

/// The rows the tests below pin, by the start of their "Builder method" cell.
const PINNED: [&str; 20] = [
    "max_message_size",
    "memory_budget",
    "max_frame_size",
    "idle_timeout",
    "max_connections",
    "backpressure_threshold",
    "max_buffered",
    "pause_reading_on_backpressure",
    "close_on_backpressure_limit",
    "slow_subscribers",
    "max_head_bytes",
    "max_body_bytes",
    "max_static_file_size",
    "handshake_timeout",
    "close_timeout",
    "RunningServer::shutdown_within",
    "SockJsOptions::heartbeat_delay",
    "max_pending_handshakes",
    "SockJsOptions::max_body_bytes",
    "recv_buffers(count, size)",
];

#[test]
fn every_row_of_the_table_is_pinned() {
    let rows = table_rows();
    for cells in &rows {
        assert!(
            PINNED
                .iter()
                .any(|method| cells[1].starts_with(&format!("`{method}`"))),
            "a README row no test pins: {cells:?}"
        );
    }
    assert_eq!(rows.len(), PINNED.len(), "{rows:?}");
}

/// The README's "ringws default" of `method`'s row.
fn readme_default(method: &str) -> String {
    row(method)[3].clone()
}

/// The `default_value`/`default_value_t` of every `ringws` flag field named `field`
/// (the `#[arg(...)]` line above the field), one per subcommand that has it.
fn bin_defaults(field: &str) -> Vec<String> {
    let lines: Vec<&str> = BIN.lines().collect();
    let declaration = format!("{field}: ");
    let found: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.trim_start().starts_with(&declaration))
        .map(|(i, _)| {
            let arg = lines[..i]
                .iter()
                .rev()
                .find(|line| line.trim_start().starts_with("#[arg("))
                .expect("an #[arg] above the field");
            let value = arg
                .split_once("default_value")
                .map(|(_, rest)| rest)
                .expect("a default value")
                .trim_start_matches("_t")
                .trim_start()
                .trim_start_matches('=')
                .trim_start();
            let value = match value.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next().unwrap_or_default(),
                None => value.split([',', ')']).next().unwrap_or_default(),
            };
            value.trim().to_owned()
        })
        .collect();
    assert!(!found.is_empty(), "no ringws flag field {field}");
    found
}

#[test]
fn readme_limits_and_defaults_match_the_builder() {
    let b = Builder::default();
    let c = &b.config;

    assert_eq!(readme_default("max_message_size"), "64 MiB (1009)");
    assert_eq!(c.limits.max_message_size, 64 * MIB);
    let budget = row("memory_budget");
    assert_eq!(budget[3], "¼ of physical memory");
    assert!(budget[2].contains("`--memory-budget BYTES`"), "{budget:?}");
    assert!(BIN.contains("memory_budget: Option<usize>,"));
    assert!(BIN.contains("builder.memory_budget(bytes)"));
    assert_eq!(b.memory_budget, None);
    // SAFETY: sysconf has no preconditions.
    let phys = unsafe {
        libc::sysconf(libc::_SC_PHYS_PAGES) as usize * libc::sysconf(libc::_SC_PAGESIZE) as usize
    };
    assert_eq!(super::default_memory_budget(), phys / 4);
    assert_eq!(readme_default("max_frame_size"), "16 MiB (1009)");
    assert_eq!(c.limits.max_frame_size, 16 * MIB);

    let idle = row("idle_timeout");
    assert_eq!(idle[3], "120 s");
    assert!(idle[2].contains("`--idle-timeout 120s`"), "{idle:?}");
    assert_eq!(c.idle_timeout, Some(Duration::from_secs(120)));
    assert_eq!(bin_defaults("idle_timeout"), ["120s"]);

    assert_eq!(readme_default("max_connections"), "no limit");
    assert_eq!(b.max_connections, None);
    assert_eq!(c.max_connections, None);

    assert_eq!(readme_default("backpressure_threshold"), "256 KiB");
    assert_eq!(c.out_limits.backpressure_threshold, 256 * KIB);
    assert_eq!(readme_default("max_buffered"), "16 MiB");
    assert_eq!(c.out_limits.max_buffered, 16 * MIB);
    let pause = row("pause_reading_on_backpressure");
    assert_eq!(pause[3], "on");
    assert!(c.out_limits.pause_on_backpressure);
    assert_eq!(bin_defaults("pause_on_backpressure"), ["true"]);
    assert_eq!(readme_default("close_on_backpressure_limit"), "off");
    assert!(!c.out_limits.close_on_limit);
    let slow = row("slow_subscribers");
    assert_eq!(slow[3], "drop");
    assert!(
        slow[2].contains("`--slow-subscribers drop|close`"),
        "{slow:?}"
    );
    assert_eq!(c.slow_subscribers, crate::pubsub::SlowSubscribers::Drop);
    assert_eq!(bin_defaults("slow_subscribers"), ["SlowArg::Drop"]);

    assert_eq!(readme_default("max_head_bytes"), "16 KiB (431)");
    assert_eq!(c.max_head_bytes, 16 * KIB);
    assert_eq!(readme_default("max_body_bytes"), "1 MiB (413)");
    assert_eq!(c.max_body_bytes, MIB);
    assert_eq!(
        readme_default("max_static_file_size"),
        "no limit (413 when set)"
    );
    assert_eq!(b.max_static_file_size, u64::MAX);
    assert_eq!(readme_default("handshake_timeout"), "10 s (408)");
    assert_eq!(c.handshake_timeout, Duration::from_secs(10));
    assert_eq!(readme_default("close_timeout"), "5 s");
    assert_eq!(c.close_timeout, Duration::from_secs(5));

    // `shutdown()` waits for no close reply (a grace of 0); `ringws` waits 5 s.
    let shutdown = row("RunningServer::shutdown_within");
    assert_eq!(shutdown[3], "`shutdown()`: no wait; `ringws`: 5 s");
    assert!(
        shutdown[2].contains("`--shutdown-timeout 5s`"),
        "{shutdown:?}"
    );
    assert_eq!(c.shutdown_grace.load(Ordering::Relaxed), 0);
    let registry =
        std::sync::Arc::new(crate::runtime::mailbox::Registry::new(1).expect("registry"));
    let handle = super::ServerHandle {
        hub: std::sync::Arc::new(crate::pubsub::hub::Hub::new(1, registry.clone())),
        registry,
        config: std::sync::Arc::new(c.clone()),
    };
    handle.shutdown_within(Duration::from_secs(7));
    handle.shutdown();
    assert_eq!(handle.config.shutdown_grace.load(Ordering::Relaxed), 0);
    // (serve and bridge both have the flag.)
    assert_eq!(bin_defaults("shutdown_timeout"), ["5s", "5s"]);

    assert_eq!(readme_default("max_pending_handshakes"), "1024 per shard");
    assert_eq!(DEFAULT_MAX_PENDING_HANDSHAKES, 1024);
    assert_eq!(b.max_pending_handshakes, None);
    assert_eq!(c.max_pending, Some(1024));

    let ring = row("recv_buffers(count, size)");
    assert_eq!(
        ring[3],
        "512 × 32 KiB = 16 MiB (a 16 KiB message fits one buffer)"
    );
    assert!(
        ring[2].contains("`--recv-buffers 512 --recv-buffer-size 32768`"),
        "{ring:?}"
    );
    assert_eq!(b.uring.buffer_count, 512);
    assert_eq!(b.uring.buffer_size, 32 * KIB as u32);
    assert_eq!(bin_defaults("recv_buffers"), ["512"]);
    assert_eq!(bin_defaults("recv_buffer_size"), ["32 * 1024"]);

    // README: the shard count defaults to "the available cores".
    assert_eq!(b.shards, None);
}

#[test]
fn readme_sockjs_defaults_match_the_options() {
    let o = SockJsOptions::default();
    assert_eq!(
        readme_default("SockJsOptions::heartbeat_delay"),
        "25 s / 5 s / 128 KiB"
    );
    assert_eq!(o.heartbeat_delay, Duration::from_secs(25));
    assert_eq!(o.disconnect_delay, Duration::from_secs(5));
    assert_eq!(o.response_limit, 128 * KIB);

    let body = row("SockJsOptions::max_body_bytes");
    assert_eq!(body[3], "1 MiB");
    assert!(body[2].contains("`--sockjs-max-body`"), "{body:?}");
    assert_eq!(DEFAULT_MAX_BODY_BYTES, MIB);
    assert_eq!(o.max_body_bytes, MIB);
    assert_eq!(
        bin_defaults("sockjs_max_body"),
        ["ringws::sockjs::DEFAULT_MAX_BODY_BYTES"]
    );
}

#[test]
fn legacy_drafts_are_accepted_by_default() {
    // README "Supported versions": legacy drafts are "accepted by default".
    assert!(README.contains("They are **accepted by default**"));
    assert!(WebSocketOptions::default().accepts_legacy_drafts());
}

/// A handler for the build below.
struct Quiet;

impl crate::Handler for Quiet {
    fn on_message(&mut self, _conn: &mut crate::Conn<'_>, _message: crate::Message<'_>) {}
}

fn built(configure: impl FnOnce(Builder) -> Builder) -> Server {
    configure(Server::builder().bind("127.0.0.1:0").shards(3))
        .websocket("/", || Quiet)
        .build()
        .expect("build")
}

#[test]
fn built_servers_use_the_documented_defaults_and_zero_means_none() {
    // What `build` hands the shards, for the rows whose value depends on it.
    let server = built(|b| b);
    assert_eq!(server.config.idle_timeout, Some(Duration::from_secs(120)));
    assert_eq!(server.config.max_connections, None);
    // 1024 per shard, whatever the shard count.
    assert_eq!(server.config.max_pending, Some(1024));
    // The memory budget is split among the shards.
    assert_eq!(
        server.config.memory_budget,
        super::default_memory_budget() / 3
    );

    // `Duration::ZERO` disables the idle timeout (not the default, not "at once"),
    // also after another value; 0 connections / 0 pending mean no limit.
    let server = built(|b| {
        b.idle_timeout(Duration::from_secs(1))
            .idle_timeout(Duration::ZERO)
            .max_connections(0)
            .max_pending_handshakes(0)
    });
    assert_eq!(server.config.idle_timeout, None);
    assert_eq!(server.config.max_connections, None);
    assert_eq!(server.config.max_pending, None);
    let server = built(|b| b.memory_budget(0));
    assert_eq!(server.config.memory_budget, usize::MAX, "0: no budget");

    // Server-wide limits are shared among shards: ceil(n / shards) each.
    let server = built(|b| b.max_connections(7).max_pending_handshakes(5));
    assert_eq!(server.config.max_connections, Some(3));
    assert_eq!(server.config.max_pending, Some(2));
    let server = built(|b| b.memory_budget(96 * MIB));
    assert_eq!(server.config.memory_budget, 32 * MIB);
}
