//! [`ServerStats`] in the Prometheus/OpenMetrics text format, through the
//! `prometheus-client` crate's encoder: the stats are read once per scrape (summed over
//! the shards) and handed to a `Collector`, so the crate's per-metric atomics are never
//! on the shards' path, and its encoder gets the format right (names, `_total`, label
//! escaping, cumulative `le` buckets, `# EOF`).

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{LatencyHistogram, ServerStats, LATENCY_BOUNDS_MICROS};

/// The content type of the page [`render`] writes.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The page for one scrape.
pub(crate) fn render(stats: ServerStats) -> String {
    let mut registry = Registry::with_prefix("ringws");
    registry.register_collector(Box::new(StatsCollector(stats)));
    let mut page = String::new();
    if prometheus_client::encoding::text::encode(&mut page, &registry).is_err() {
        // Writing to a String does not fail; keep whatever was written.
        tracing::warn!("metrics: the page could not be encoded");
    }
    page
}

#[derive(Debug)]
struct StatsCollector(ServerStats);

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A counter with one label, a sample per `(value, count)`.
fn counters<L: fmt::Display>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    samples: &[(L, u64)],
) -> fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in samples {
        let labels = [(label, value.to_string())];
        ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histogram(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    histogram: &LatencyHistogram,
) -> fmt::Result {
    let mut metric =
        e.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_MICROS
        .iter()
        .map(|&micros| micros as f64 / 1e6)
        .chain([f64::MAX])
        .zip(histogram.buckets)
        .collect();
    let sum = histogram.sum_micros as f64 / 1e6;
    metric.encode_histogram::<NoLabelSet>(sum, histogram.count(), &buckets, None)
}

impl Collector for StatsCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let s = &self.0;
        let e = &mut e;
        gauge(
            e,
            "connections_open",
            "Connections open (every kind).",
            s.connections_open,
        )?;
        gauge(
            e,
            "websockets_open",
            "WebSocket sessions open.",
            s.websockets_open,
        )?;
        gauge(
            e,
            "sockjs_sessions_open",
            "SockJS sessions open.",
            s.sockjs_sessions,
        )?;
        gauge(
            e,
            "tcp_streams_open",
            "Raw TCP streams and bridge links open.",
            s.tcp_streams,
        )?;
        counter(
            e,
            "connections_accepted",
            "Connections accepted.",
            s.accepted,
        )?;
        counter(
            e,
            "websocket_upgrades",
            "Connections upgraded to a WebSocket.",
            s.upgraded,
        )?;
        counter(
            e,
            "http_requests",
            "Plain HTTP requests answered.",
            s.http_requests,
        )?;
        let refusals: Vec<(String, u64)> = s
            .refusals
            .iter()
            .map(|&(status, n)| (status_label(status), n))
            .collect();
        counters(
            e,
            "refusals",
            "Requests refused, by HTTP status.",
            "status",
            &refusals,
        )?;
        counter(
            e,
            "messages_received",
            "Data messages received.",
            s.messages_received,
        )?;
        counter(
            e,
            "received_bytes",
            "Payload bytes received (inflated).",
            s.bytes_received,
        )?;
        counter(
            e,
            "messages_sent",
            "Data messages queued for peers.",
            s.messages_sent,
        )?;
        counter(
            e,
            "sent_bytes",
            "Payload bytes queued for peers (before compression).",
            s.bytes_sent,
        )?;
        counters(
            e,
            "frames_received",
            "Messages and control frames received, by kind.",
            "kind",
            &s.received_by_kind,
        )?;
        let closes: Vec<(String, u64)> = s
            .closes
            .iter()
            .map(|&(code, n)| (status_label(code), n))
            .collect();
        counters(
            e,
            "closes",
            "WebSocket sessions ended, by close code.",
            "code",
            &closes,
        )?;
        counter(
            e,
            "backpressure_events",
            "Sends past the backpressure threshold.",
            s.backpressure_events,
        )?;
        counter(
            e,
            "dropped_sends",
            "Sends dropped past max_buffered.",
            s.dropped_sends,
        )?;
        counter(
            e,
            "read_pauses",
            "Times a connection's reading was paused.",
            s.read_pauses,
        )?;
        gauge(
            e,
            "memory_held_bytes",
            "Bytes held for peers (the memory budget's figure).",
            s.memory_held,
        )?;
        counter(
            e,
            "deflate_received_wire_bytes",
            "Compressed bytes received.",
            s.deflate_received.0,
        )?;
        counter(
            e,
            "deflate_received_plain_bytes",
            "What the compressed bytes received inflated to.",
            s.deflate_received.1,
        )?;
        counter(
            e,
            "deflate_sent_plain_bytes",
            "Bytes compressed for sending.",
            s.deflate_sent.0,
        )?;
        counter(
            e,
            "deflate_sent_wire_bytes",
            "What the bytes compressed for sending became.",
            s.deflate_sent.1,
        )?;
        histogram(
            e,
            "handshake_latency",
            "From accept to the WebSocket upgrade's answer.",
            &s.handshake_latency,
        )?;
        histogram(
            e,
            "publish_latency",
            "From a publish to its arrival on a subscribing shard.",
            &s.publish_latency,
        )?;
        let p = &s.pubsub;
        gauge(
            e,
            "pubsub_topics",
            "Topics with a subscriber on this node.",
            p.topics as u64,
        )?;
        gauge(
            e,
            "pubsub_subscriptions",
            "Subscriptions on this node.",
            p.subscriptions as u64,
        )?;
        counter(
            e,
            "pubsub_published",
            "Messages published on this node.",
            p.published,
        )?;
        counter(
            e,
            "pubsub_from_broker",
            "Messages from other nodes through the broker.",
            p.from_broker,
        )?;
        counter(
            e,
            "pubsub_delivered",
            "Publications queued for subscribers.",
            p.delivered,
        )?;
        counter(
            e,
            "pubsub_dropped",
            "Publications dropped for slow subscribers.",
            p.dropped,
        )?;
        counter(
            e,
            "pubsub_closed_slow",
            "Subscribers closed for being slow.",
            p.closed_slow,
        )?;
        counter(
            e,
            "pubsub_broker_gaps",
            "Gaps the broker link reported.",
            p.gaps,
        )?;
        counter(
            e,
            "pubsub_broker_publish_failures",
            "Publishes the broker link could not pass on.",
            p.broker_publish_failures,
        )?;
        Ok(())
    }
}

/// A status or close code as a label: the number, or `other` for 0.
fn status_label(code: u16) -> String {
    match code {
        0 => "other".to_owned(),
        code => code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Counts, ShardMetrics};

    #[test]
    fn the_page_is_openmetrics_text() {
        let metrics = ShardMetrics::default();
        metrics.refused(403);
        metrics.upgraded(std::time::Duration::from_micros(700));
        metrics.closed(1000);
        let mut counts = Counts::default();
        counts.add(&metrics.snapshot());
        let mut stats = ServerStats::from_counts(&counts);
        stats.connections_open = 3;
        let page = render(stats);
        assert!(
            page.contains("# TYPE ringws_connections_open gauge\nringws_connections_open 3\n"),
            "{page}"
        );
        assert!(
            page.contains("ringws_refusals_total{status=\"403\"} 1\n"),
            "{page}"
        );
        assert!(
            page.contains("ringws_refusals_total{status=\"other\"} 0\n"),
            "{page}"
        );
        assert!(
            page.contains("ringws_closes_total{code=\"1000\"} 1\n"),
            "{page}"
        );
        assert!(
            page.contains("ringws_handshake_latency_seconds_bucket{le=\"0.001\"} 1\n"),
            "{page}"
        );
        assert!(
            page.contains("ringws_handshake_latency_seconds_bucket{le=\"0.0005\"} 0\n"),
            "{page}"
        );
        assert!(
            page.contains("ringws_handshake_latency_seconds_count 1\n"),
            "{page}"
        );
        assert!(page.ends_with("# EOF\n"), "{page}");
        // Every sample line is `name{labels} value`, with a known metric's name.
        for line in page.lines().filter(|line| !line.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect("a sample");
            assert!(name.starts_with("ringws_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
