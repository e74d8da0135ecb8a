//! The shard's cap on pending handshakes, driven without a network.

use std::sync::Arc;
use std::time::Instant;

use super::Shard;
use crate::connection::ShardContext;
use crate::runtime::core::{ShardCore, Token};
use crate::runtime::mailbox::Registry;

fn shard(max_pending: Option<usize>) -> Shard {
    let mut config = crate::server::default_config();
    config.max_pending = max_pending;
    Shard::new(ShardContext {
        shard: 0,
        registry: Arc::new(Registry::new(1).expect("registry")),
        routes: Arc::default(),
        config: Arc::new(config),
    })
}

/// A complete request (answered 404, kept alive: no longer pending).
fn request(shard: &mut Shard, token: Token) {
    let mut bytes = b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    shard.on_recv(token, &mut bytes, Instant::now());
}

fn queued(shard: &Shard, token: Token) -> String {
    match shard.conns.get(token.index()) {
        Some(entry) => String::from_utf8_lossy(&entry.conn.out.queued).into_owned(),
        None => String::new(),
    }
}

#[test]
fn the_oldest_pending_connection_makes_room() {
    let mut s = shard(Some(2));
    let now = Instant::now();
    let t1 = s.on_accept(0, None, now);
    let t2 = s.on_accept(0, None, now);
    assert!(!s.wants_close(t1) && !s.wants_close(t2));
    let t3 = s.on_accept(0, None, now);
    assert!(s.wants_close(t1));
    assert!(
        queued(&s, t1).starts_with("HTTP/1.1 408 "),
        "{}",
        queued(&s, t1)
    );
    assert!(!s.wants_close(t2) && !s.wants_close(t3));
    // An answered connection no longer counts, and is never evicted.
    request(&mut s, t2);
    assert_eq!(s.pending, 1);
    let t4 = s.on_accept(0, None, now);
    assert!(!s.wants_close(t3) && !s.wants_close(t4));
    let t5 = s.on_accept(0, None, now);
    assert!(
        s.wants_close(t3),
        "t2 was skipped, t3 was the oldest pending"
    );
    assert!(!s.wants_close(t2) && !s.wants_close(t4) && !s.wants_close(t5));
    // Closed sockets leave the count.
    s.on_closed(t1);
    s.on_closed(t3);
    s.on_closed(t4);
    assert_eq!(s.pending, 1);
}

#[test]
fn the_order_queue_stays_bounded_and_no_limit_evicts_nothing() {
    let mut s = shard(Some(2));
    let now = Instant::now();
    let old = s.on_accept(0, None, now);
    for _ in 0..1000 {
        let token = s.on_accept(0, None, now);
        request(&mut s, token);
        s.on_closed(token);
        assert!(s.pending_order.len() <= 2 * 2 + 64 + 1);
    }
    assert!(
        !s.wants_close(old),
        "one pending connection is under the cap"
    );
    let mut s = shard(None);
    let tokens: Vec<Token> = (0..100).map(|_| s.on_accept(0, None, now)).collect();
    assert!(tokens.iter().all(|&t| !s.wants_close(t)));
    assert_eq!(s.pending, 100);
}
