//! What a server counts: per-shard counters and latency histograms, kept by the shard's
//! own thread in plain integers (no atomic or lock per event), published once per loop
//! turn when they moved, and summed over the shards on read
//! ([`ServerHandle::stats`](crate::ServerHandle::stats)); `prometheus.rs` renders them
//! in the Prometheus/OpenMetrics text format for a `/metrics` route.
//!
//! Latencies are fixed-bucket histograms (the bounds of [`LATENCY_BOUNDS_MICROS`]): what
//! Prometheus stores and aggregates, and what per-shard arrays sum into exactly.

pub(crate) mod prometheus;

use std::cell::RefCell;
use std::time::Duration;

/// The HTTP statuses refusals are counted under (others count as `0`, "other").
pub const REFUSAL_STATUSES: [u16; 9] = [400, 403, 404, 408, 413, 426, 431, 503, 0];
/// The close codes closes are counted under (others count as `0`, "other"; 1005 is a
/// close without a code, 1006 a connection that ended without one).
pub const CLOSE_CODES: [u16; 12] = [
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 0,
];
/// The upper bounds of the latency buckets, in microseconds (a last bucket holds
/// everything above).
pub const LATENCY_BOUNDS_MICROS: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    5_000_000,
];

/// A latency histogram: how many observations fell in each bucket of
/// [`LATENCY_BOUNDS_MICROS`] (one more bucket for what is above the last bound), and
/// their sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative): `buckets[i]` counts those of at most
    /// `LATENCY_BOUNDS_MICROS[i]` µs and more than the bound before; the last one,
    /// those above every bound.
    pub buckets: [u64; LATENCY_BOUNDS_MICROS.len() + 1],
    /// The sum of the observations, in microseconds.
    pub sum_micros: u64,
}

impl LatencyHistogram {
    /// Counts one observation.
    pub(crate) fn observe(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(LATENCY_BOUNDS_MICROS.len());
        if let Some(count) = self.buckets.get_mut(bucket) {
            *count += 1;
        }
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// How many observations there were.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn add(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }
}

/// One shard's counters (and, summed over the shards, the server's): what
/// [`ServerStats`] shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Gauges the shard sets when it publishes its counts: its admitted connections,
    /// SockJS sessions, raw TCP streams.
    pub(crate) connections_open: u64,
    pub(crate) sockjs_sessions: u64,
    pub(crate) tcp_streams: u64,
    pub(crate) accepted: u64,
    pub(crate) upgraded: u64,
    pub(crate) websockets_open: u64,
    pub(crate) http_requests: u64,
    pub(crate) refused: [u64; REFUSAL_STATUSES.len()],
    pub(crate) messages_in: u64,
    pub(crate) bytes_in: u64,
    pub(crate) messages_out: u64,
    pub(crate) bytes_out: u64,
    /// Text, binary, ping, pong, close received.
    pub(crate) received_by_kind: [u64; 5],
    pub(crate) closes: [u64; CLOSE_CODES.len()],
    pub(crate) backpressure: u64,
    pub(crate) dropped: u64,
    pub(crate) read_pauses: u64,
    pub(crate) deflate_in_wire: u64,
    pub(crate) deflate_in_plain: u64,
    pub(crate) deflate_out_plain: u64,
    pub(crate) deflate_out_wire: u64,
    pub(crate) handshake_latency: LatencyHistogram,
    pub(crate) publish_latency: LatencyHistogram,
}

/// What was received, for [`ShardMetrics::received`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Received {
    Text,
    Binary,
    Ping,
    Pong,
    Close,
}

impl Counts {
    /// Adds `other`'s counts to these (summing the shards).
    pub(crate) fn add(&mut self, other: &Counts) {
        self.connections_open += other.connections_open;
        self.sockjs_sessions += other.sockjs_sessions;
        self.tcp_streams += other.tcp_streams;
        self.accepted += other.accepted;
        self.upgraded += other.upgraded;
        self.websockets_open += other.websockets_open;
        self.http_requests += other.http_requests;
        add_all(&mut self.refused, &other.refused);
        self.messages_in += other.messages_in;
        self.bytes_in += other.bytes_in;
        self.messages_out += other.messages_out;
        self.bytes_out += other.bytes_out;
        add_all(&mut self.received_by_kind, &other.received_by_kind);
        add_all(&mut self.closes, &other.closes);
        self.backpressure += other.backpressure;
        self.dropped += other.dropped;
        self.read_pauses += other.read_pauses;
        self.deflate_in_wire += other.deflate_in_wire;
        self.deflate_in_plain += other.deflate_in_plain;
        self.deflate_out_plain += other.deflate_out_plain;
        self.deflate_out_wire += other.deflate_out_wire;
        self.handshake_latency.add(&other.handshake_latency);
        self.publish_latency.add(&other.publish_latency);
    }
}

fn add_all(mine: &mut [u64], theirs: &[u64]) {
    for (mine, theirs) in mine.iter_mut().zip(theirs) {
        *mine += theirs;
    }
}

/// One shard's counters, in its `ShardContext`: only its thread touches them (a
/// `RefCell` because the connection layer reaches them through the shared context).
#[derive(Debug, Default)]
pub(crate) struct ShardMetrics {
    counts: RefCell<Counts>,
    /// Something was counted since [`ShardMetrics::take_changed`] last looked.
    changed: std::cell::Cell<bool>,
}

impl ShardMetrics {
    fn with(&self, f: impl FnOnce(&mut Counts)) {
        if let Ok(mut counts) = self.counts.try_borrow_mut() {
            f(&mut counts);
            self.changed.set(true);
        }
    }

    /// Whether anything was counted since the last call.
    pub(crate) fn take_changed(&self) -> bool {
        self.changed.replace(false)
    }

    /// The counts as they stand.
    pub(crate) fn snapshot(&self) -> Counts {
        self.counts.try_borrow().map(|c| *c).unwrap_or_default()
    }

    /// A connection was accepted.
    pub(crate) fn accepted(&self) {
        self.with(|c| c.accepted += 1);
    }

    /// A connection became a WebSocket, `latency` after it was accepted.
    pub(crate) fn upgraded(&self, latency: Duration) {
        self.with(|c| {
            c.upgraded += 1;
            c.handshake_latency.observe(latency);
        });
    }

    /// A WebSocket session started (`true`) or ended (`false`).
    pub(crate) fn websocket_open(&self, open: bool) {
        self.with(|c| match open {
            true => c.websockets_open += 1,
            false => c.websockets_open = c.websockets_open.saturating_sub(1),
        });
    }

    /// A plain HTTP request was answered.
    pub(crate) fn http_request(&self) {
        self.with(|c| c.http_requests += 1);
    }

    /// A request was refused with `status`.
    pub(crate) fn refused(&self, status: u16) {
        let index = index_of(&REFUSAL_STATUSES, status);
        self.with(|c| c.refused[index] += 1);
    }

    /// Something arrived from a peer: a message of `bytes` (data) or a control frame.
    pub(crate) fn received(&self, kind: Received, bytes: usize) {
        self.with(|c| {
            c.received_by_kind[kind as usize] += 1;
            if matches!(kind, Received::Text | Received::Binary) {
                c.messages_in += 1;
                c.bytes_in += bytes as u64;
            }
        });
    }

    /// A session ended with `code` (sent or received; 1006 without a close frame).
    pub(crate) fn closed(&self, code: u16) {
        let index = index_of(&CLOSE_CODES, code);
        self.with(|c| c.closes[index] += 1);
    }

    /// A send of `bytes` was answered `status`: queued (maybe past the backpressure
    /// threshold) or dropped.
    pub(crate) fn send_status(&self, status: crate::SendStatus, bytes: usize) {
        use crate::SendStatus::{Backpressure, Dropped, Queued, Unsupported};
        self.with(|c| match status {
            Queued => {
                c.messages_out += 1;
                c.bytes_out += bytes as u64;
            }
            Backpressure => {
                c.messages_out += 1;
                c.bytes_out += bytes as u64;
                c.backpressure += 1;
            }
            Dropped => c.dropped += 1,
            Unsupported => {}
        });
    }

    /// A connection's reading was paused (by its handler or its output's backpressure).
    pub(crate) fn read_paused(&self) {
        self.with(|c| c.read_pauses += 1);
    }

    /// A publication reached this shard `latency` after it was published.
    pub(crate) fn publication_delivered(&self, latency: Duration) {
        self.with(|c| c.publish_latency.observe(latency));
    }
}

/// `value`'s position in `table` (whose last entry, 0, stands for "other").
fn index_of(table: &[u16], value: u16) -> usize {
    table
        .iter()
        .position(|&entry| entry == value)
        .unwrap_or(table.len() - 1)
}

/// The server's figures, summed over its shards ([`ServerHandle::stats`]); each shard
/// publishes its own once per loop turn, so they may lag a turn behind.
///
/// ```no_run
/// # fn example(handle: ringws::ServerHandle) {
/// let stats = handle.stats();
/// println!(
///     "{} WebSockets open, {} messages in, {} refused with 403",
///     stats.websockets_open,
///     stats.messages_received,
///     stats.refused(403)
/// );
/// # }
/// ```
///
/// [`ServerHandle::stats`]: crate::ServerHandle::stats
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections open now (every kind, over the shards' connection limits' count).
    pub connections_open: u64,
    /// Connections accepted since the start.
    pub accepted: u64,
    /// Connections upgraded to a WebSocket since the start.
    pub upgraded: u64,
    /// WebSocket sessions open now (all versions, SockJS's `websocket` transport too).
    pub websockets_open: u64,
    /// SockJS sessions open now.
    pub sockjs_sessions: u64,
    /// Raw TCP streams and bridge links open now.
    pub tcp_streams: u64,
    /// Plain HTTP requests answered (static files and routes).
    pub http_requests: u64,
    /// Requests refused, by status ([`REFUSAL_STATUSES`]; 0: another status).
    pub refusals: Vec<(u16, u64)>,
    /// Data messages received from peers.
    pub messages_received: u64,
    /// Their payload bytes (after inflating).
    pub bytes_received: u64,
    /// Data messages queued for peers (sends, handle posts, publications).
    pub messages_sent: u64,
    /// Their payload bytes (before compressing).
    pub bytes_sent: u64,
    /// What arrived, by kind: `text`, `binary`, `ping`, `pong`, `close`.
    pub received_by_kind: Vec<(&'static str, u64)>,
    /// Sessions ended, by close code ([`CLOSE_CODES`]; 0: another code).
    pub closes: Vec<(u16, u64)>,
    /// Sends that took a connection's output past its backpressure threshold.
    pub backpressure_events: u64,
    /// Sends dropped past `max_buffered`.
    pub dropped_sends: u64,
    /// Times a connection's reading was paused.
    pub read_pauses: u64,
    /// Bytes held for peers now (the memory budget's figure).
    pub memory_held: u64,
    /// Compressed bytes received, and what they inflated to.
    pub deflate_received: (u64, u64),
    /// Bytes compressed for sending, and what they compressed to.
    pub deflate_sent: (u64, u64),
    /// From accept to the upgrade's answer.
    pub handshake_latency: LatencyHistogram,
    /// From a publish to its arrival on each subscribing shard.
    pub publish_latency: LatencyHistogram,
    /// The pub/sub figures.
    pub pubsub: crate::pubsub::PubSubStats,
}

impl ServerStats {
    /// Requests refused with `status` (0: statuses not listed in [`REFUSAL_STATUSES`]).
    pub fn refused(&self, status: u16) -> u64 {
        self.refusals
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }

    /// Sessions closed with `code` (0: codes not listed in [`CLOSE_CODES`]).
    pub fn closed(&self, code: u16) -> u64 {
        self.closes
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(0, |(_, n)| *n)
    }

    /// The stats of summed counts (the caller adds memory and pub/sub figures).
    pub(crate) fn from_counts(counts: &Counts) -> ServerStats {
        const KINDS: [&str; 5] = ["text", "binary", "ping", "pong", "close"];
        ServerStats {
            connections_open: counts.connections_open,
            sockjs_sessions: counts.sockjs_sessions,
            tcp_streams: counts.tcp_streams,
            accepted: counts.accepted,
            upgraded: counts.upgraded,
            websockets_open: counts.websockets_open,
            http_requests: counts.http_requests,
            refusals: REFUSAL_STATUSES
                .iter()
                .copied()
                .zip(counts.refused)
                .collect(),
            messages_received: counts.messages_in,
            bytes_received: counts.bytes_in,
            messages_sent: counts.messages_out,
            bytes_sent: counts.bytes_out,
            received_by_kind: KINDS.iter().copied().zip(counts.received_by_kind).collect(),
            closes: CLOSE_CODES.iter().copied().zip(counts.closes).collect(),
            backpressure_events: counts.backpressure,
            dropped_sends: counts.dropped,
            read_pauses: counts.read_pauses,
            deflate_received: (counts.deflate_in_wire, counts.deflate_in_plain),
            deflate_sent: (counts.deflate_out_plain, counts.deflate_out_wire),
            handshake_latency: counts.handshake_latency,
            publish_latency: counts.publish_latency,
            ..ServerStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_their_buckets() {
        let mut histogram = LatencyHistogram::default();
        histogram.observe(Duration::from_micros(50));
        histogram.observe(Duration::from_micros(51));
        histogram.observe(Duration::from_secs(60));
        assert_eq!(histogram.buckets[0], 1);
        assert_eq!(histogram.buckets[1], 1);
        assert_eq!(histogram.buckets[LATENCY_BOUNDS_MICROS.len()], 1);
        assert_eq!(histogram.count(), 3);
        assert_eq!(histogram.sum_micros, 60_000_101);
    }

    #[test]
    fn shards_sum_into_the_servers_figures() {
        let (a, b) = (ShardMetrics::default(), ShardMetrics::default());
        a.refused(403);
        b.refused(403);
        b.refused(418);
        a.closed(1000);
        b.closed(4000);
        a.received(Received::Text, 5);
        b.received(Received::Ping, 0);
        let mut total = a.snapshot();
        total.add(&b.snapshot());
        let stats = ServerStats::from_counts(&total);
        assert_eq!(stats.refused(403), 2);
        assert_eq!(stats.refused(0), 1);
        assert_eq!((stats.closed(1000), stats.closed(0)), (1, 1));
        assert_eq!((stats.messages_received, stats.bytes_received), (1, 5));
        assert!(stats.received_by_kind.contains(&("ping", 1)));
    }

    #[test]
    fn the_open_gauge_never_underflows() {
        let metrics = ShardMetrics::default();
        metrics.websocket_open(false);
        metrics.websocket_open(true);
        assert_eq!(metrics.snapshot().websockets_open, 1);
    }
}
