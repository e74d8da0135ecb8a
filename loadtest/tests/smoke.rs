//! End to end: each scenario against an in-process ringws echo server.

use indicatif::ProgressBar;
use ringws::{Conn, Handler, Message, RunningServer, Server};
use ringws_loadtest::client::Protocol;
use ringws_loadtest::target::Target;
use ringws_loadtest::{churn, connect, echo, idle};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

/// The churn test counts the process's open descriptors before and after its run (the
/// server is in-process): it runs alone, the other tests share this lock among
/// themselves.
static FD_COUNT: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    FD_COUNT
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }
}

fn server() -> (RunningServer, Target) {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .shards(1)
        .websocket("/echo", || Echo)
        .build()
        .expect("build")
        .start()
        .expect("start");
    let url = format!("ws://{}/echo", server.local_addr());
    let target = Target::parse(&url).expect("url");
    (server, target)
}

#[test]
fn echo_scenario() {
    let _shared = shared();
    let (server, target) = server();
    for text in [false, true] {
        let opts = echo::EchoOptions {
            target: target.clone(),
            protocol: Protocol::Rfc6455,
            connections: 4,
            size: 20,
            text,
            inflight: 2,
            duration: Duration::from_millis(800),
            messages: None,
            warmup: Duration::from_millis(200),
            threads: 2,
            deflate: None,
            payload: echo::PayloadKind::Alpha,
            variants: 1,
        };
        let r = echo::run(&opts, &ProgressBar::hidden());
        assert!(r.messages > 0, "{r:?}");
        assert_eq!(r.errors.total(), 0, "{r:?}");
        assert_eq!(r.connections_established, 4);
        assert_eq!(r.bytes, r.messages * 20);
        assert!(
            r.latency.count == r.messages && r.latency.p50_us > 0,
            "{r:?}"
        );
        assert!(!r.hard_cap_hit);
    }
    // A message budget stops the run early.
    let opts = echo::EchoOptions {
        target: target.clone(),
        protocol: Protocol::Rfc6455,
        connections: 2,
        size: 1000,
        text: false,
        inflight: 4,
        duration: Duration::from_secs(20),
        messages: Some(500),
        warmup: Duration::ZERO,
        threads: 1,
        deflate: None,
        payload: echo::PayloadKind::Alpha,
        variants: 1,
    };
    let r = echo::run(&opts, &ProgressBar::hidden());
    assert_eq!(r.messages, 500, "{r:?}");
    assert_eq!(r.errors.total(), 0, "{r:?}");
    assert!(r.elapsed_s < 10.0, "{r:?}");
    server.shutdown().expect("shutdown");
}

#[test]
fn connect_scenario() {
    let _shared = shared();
    let (server, target) = server();
    let opts = connect::ConnectOptions {
        target,
        protocol: Protocol::Rfc6455,
        concurrency: 2,
        duration: Duration::from_secs(10),
        count: Some(20),
        threads: 1,
        deflate: None,
    };
    let r = connect::run(&opts, &ProgressBar::hidden());
    assert_eq!(r.handshakes, 20, "{r:?}");
    assert_eq!(r.errors.total(), 0, "{r:?}");
    assert_eq!(r.connect_latency.count, 20);
    assert!(r.elapsed_s < 10.0, "{r:?}");
    server.shutdown().expect("shutdown");
}

#[test]
fn idle_scenario() {
    let _shared = shared();
    let (server, target) = server();
    let opts = idle::IdleOptions {
        target,
        protocol: Protocol::Rfc6455,
        connections: 10,
        open_concurrency: 4,
        ping_interval: Duration::from_millis(100),
        duration: Duration::from_millis(500),
        open_timeout: Duration::from_secs(10),
        server_pid: Some(std::process::id()),
        threads: 2,
    };
    let r = idle::run(&opts, &ProgressBar::hidden());
    assert_eq!(r.opened, 10, "{r:?}");
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(r.open_at_end, 10, "{r:?}");
    assert_eq!(r.errors.total(), 0, "{r:?}");
    assert!(r.pongs > 0, "{r:?}");
    assert!(r.server_rss_before.is_some() && r.server_rss_per_conn.is_some());
    server.shutdown().expect("shutdown");
}

#[test]
fn unreachable_server_counts_errors() {
    let _shared = shared();
    // Bind then drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let target = Target::parse(&format!("ws://127.0.0.1:{port}/echo")).expect("url");
    let opts = echo::EchoOptions {
        target,
        protocol: Protocol::Rfc6455,
        connections: 3,
        size: 20,
        text: false,
        inflight: 1,
        duration: Duration::from_millis(200),
        messages: None,
        warmup: Duration::ZERO,
        threads: 1,
        deflate: None,
        payload: echo::PayloadKind::Alpha,
        variants: 1,
    };
    let r = echo::run(&opts, &ProgressBar::hidden());
    assert_eq!(r.messages, 0);
    assert_eq!(r.errors.connect, 3, "{r:?}");
}

/// The in-process ringws server accepts hixie-76 on its websocket routes by default.
#[test]
fn hixie76_echo_and_connect() {
    let _shared = shared();
    let (server, target) = server();
    let opts = echo::EchoOptions {
        target: target.clone(),
        protocol: Protocol::Hixie76,
        connections: 4,
        size: 20,
        text: true,
        inflight: 2,
        duration: Duration::from_secs(1),
        messages: None,
        warmup: Duration::ZERO,
        threads: 2,
        deflate: None,
        payload: echo::PayloadKind::Alpha,
        variants: 1,
    };
    let r = echo::run(&opts, &ProgressBar::hidden());
    assert!(r.messages > 0, "{r:?}");
    assert_eq!(r.errors.total(), 0, "{r:?}");
    assert_eq!(r.connections_established, 4);
    assert_eq!(r.bytes, r.messages * 20);

    let opts = connect::ConnectOptions {
        target: target.clone(),
        protocol: Protocol::Hixie76,
        concurrency: 2,
        duration: Duration::from_secs(10),
        count: Some(10),
        threads: 1,
        deflate: None,
    };
    let r = connect::run(&opts, &ProgressBar::hidden());
    assert!(r.handshakes > 0, "{r:?}");
    assert_eq!(r.handshakes, 10, "{r:?}");
    assert_eq!(r.errors.total(), 0, "{r:?}");

    // Idle over hixie-76: held without pings, so no pongs.
    let opts = idle::IdleOptions {
        target: target.clone(),
        protocol: Protocol::Hixie76,
        connections: 4,
        open_concurrency: 4,
        ping_interval: Duration::from_millis(50),
        duration: Duration::from_millis(300),
        open_timeout: Duration::from_secs(10),
        server_pid: None,
        threads: 1,
    };
    let r = idle::run(&opts, &ProgressBar::hidden());
    assert_eq!((r.opened, r.open_at_end), (4, 4), "{r:?}");
    assert_eq!(r.errors.total(), 0, "{r:?}");
    assert_eq!(r.pongs, 0, "{r:?}");

    // Binary cannot travel over hixie-76: each connection reports a protocol error.
    let opts = echo::EchoOptions {
        target,
        protocol: Protocol::Hixie76,
        connections: 2,
        size: 20,
        text: false,
        inflight: 1,
        duration: Duration::from_millis(200),
        messages: None,
        warmup: Duration::ZERO,
        threads: 1,
        deflate: None,
        payload: echo::PayloadKind::Alpha,
        variants: 1,
    };
    let r = echo::run(&opts, &ProgressBar::hidden());
    assert_eq!((r.messages, r.errors.protocol), (0, 2), "{r:?}");
    server.shutdown().expect("shutdown");
}

#[test]
fn churn_scenario() {
    let _alone = FD_COUNT
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (server, target) = server();
    let opts = churn::ChurnOptions {
        target: target.clone(),
        protocol: Protocol::Rfc6455,
        concurrency: 4,
        messages_per_conn: 10,
        size: 64,
        text: true,
        duration: Duration::from_secs(20),
        count: Some(12),
        server_pid: None,
        // The server closes each socket when its client's close arrives; a loaded machine
        // may need a moment for the last ones.
        settle: Duration::from_secs(1),
        threads: 2,
    };
    // A cycle budget stops the run early; text messages work too. This run also lets the
    // shard finish starting (it creates its io_uring instance on its own thread), so the
    // descriptor count below compares like with like.
    let r = churn::run(&opts, &ProgressBar::hidden());
    assert_eq!((r.cycles, r.attempts), (12, 12), "{r:?}");
    assert_eq!(r.errors.total(), 0, "{r:?}");
    assert!(r.server.is_none());
    assert!(r.elapsed_s < 10.0, "{r:?}");

    // A timed run with the server sampled: every descriptor it opened is closed again.
    let opts = churn::ChurnOptions {
        text: false,
        duration: Duration::from_secs(1),
        count: None,
        server_pid: Some(std::process::id()),
        ..opts
    };
    let r = churn::run(&opts, &ProgressBar::hidden());
    assert!(r.cycles > 0, "{r:?}");
    assert_eq!(r.errors.total(), 0, "{r:?}");
    assert_eq!(r.messages, r.cycles * 10, "{r:?}");
    assert_eq!(r.cycles, r.attempts, "{r:?}");
    assert_eq!(r.cycle_latency.count, r.cycles);
    assert!(!r.hard_cap_hit);
    let u = r.server.as_ref().expect("server samples");
    assert!(
        u.before.rss_bytes.is_some() && u.before.fds.is_some(),
        "{u:?}"
    );
    assert_eq!(u.fds_back_to_baseline, Some(true), "{u:?}");
    assert!(r.summary().contains("cycles/s"));
    server.shutdown().expect("shutdown");
}

/// `echo --deflate` against ringws with permessage-deflate in both modes: every echo
/// comes back compressed and verified; a server without deflate is refused.
#[test]
fn echo_with_deflate() {
    use ringws::{Accept, DeflateOptions, WebSocketOptions};
    use ringws_loadtest::client::{probe_deflate, DeflateRequest};
    let _shared = shared();
    for (deflate, nct) in [
        (DeflateOptions::context_takeover(), false),
        (DeflateOptions::no_context_takeover(), true),
    ] {
        let server = Server::builder()
            .bind("127.0.0.1:0")
            .shards(1)
            .websocket_with_options(
                "/echo",
                WebSocketOptions::default().deflate(deflate),
                |_req| Ok(Accept::new(Echo)),
            )
            .build()
            .expect("build")
            .start()
            .expect("start");
        let target = Target::parse(&format!("ws://{}/echo", server.local_addr())).unwrap();
        let answer = probe_deflate(&target, 1).expect("agreed");
        assert_eq!(answer.server_no_context_takeover, nct);
        for (size, inflight) in [(125, 1), (5000, 4)] {
            let opts = echo::EchoOptions {
                target: target.clone(),
                protocol: Protocol::Rfc6455,
                connections: 3,
                size,
                text: true,
                inflight,
                duration: Duration::from_secs(20),
                messages: Some(200),
                warmup: Duration::ZERO,
                threads: 1,
                deflate: Some(DeflateRequest { level: 1 }),
                payload: echo::PayloadKind::Json,
                variants: 7,
            };
            let r = echo::run(&opts, &ProgressBar::hidden());
            assert_eq!(r.errors.total(), 0, "{r:?}");
            assert!(r.messages >= 200, "{r:?}");
            let d = r.deflate.as_ref().expect("deflate report");
            assert_eq!(d.counts.compressed_received, d.counts.messages_received);
            assert!(d.counts.messages_received >= 200, "{d:?}");
            assert!(d.ratio_sent > 0.0 && d.ratio_sent < 1.0, "{d:?}");
            assert!(d.ratio_received > 0.0 && d.ratio_received < 1.0, "{d:?}");
        }
        server.shutdown().expect("shutdown");
    }
    // No deflate on the route: the probe says so.
    let (server, target) = server();
    let err = probe_deflate(&target, 1).unwrap_err();
    assert!(err.contains("did not agree"), "{err}");
    server.shutdown().expect("shutdown");
}
