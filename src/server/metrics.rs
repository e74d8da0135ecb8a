//! The metrics side of [`Builder`] and [`ServerHandle`] (see [`crate::metrics`]).

use std::sync::{Arc, OnceLock};

use super::{Builder, ServerHandle};
use crate::metrics::{prometheus, Counts, ServerStats};
use crate::route::HttpResponse;

impl Builder {
    /// Serves the server's metrics at `path` on its own port, in the Prometheus
    /// (OpenMetrics) text format: connections, upgrades, refusals by status, messages
    /// and bytes each way, frames by kind, closes by code, backpressure, drops, pauses,
    /// memory held, permessage-deflate bytes, pub/sub figures, and the handshake and
    /// publish-to-deliver latency histograms (the list: [`ServerStats`]). To serve
    /// them elsewhere (another listener, an axum app), use
    /// [`ServerHandle::metrics_text`].
    ///
    /// ```no_run
    /// # fn main() -> std::io::Result<()> {
    /// # struct Quiet;
    /// # impl ringws::Handler for Quiet {
    /// #     fn on_message(&mut self, _: &mut ringws::Conn<'_>, _: ringws::Message<'_>) {}
    /// # }
    /// ringws::Server::builder()
    ///     .websocket("/ws", || Quiet)
    ///     .metrics("/metrics")
    ///     .build()?
    ///     .run()
    /// # }
    /// ```
    pub fn metrics(self, path: &str) -> Builder {
        let handle: Arc<OnceLock<ServerHandle>> = Arc::default();
        let page = Arc::clone(&handle);
        let mut builder = self.http(path, move |_| match page.get() {
            Some(server) => HttpResponse::new(200, prometheus::CONTENT_TYPE, server.metrics_text()),
            // Asked before the server finished starting.
            None => HttpResponse::text(503, "the server is starting\n"),
        });
        builder.metrics_handles.push(handle);
        builder
    }
}

impl ServerHandle {
    /// The server's figures now, summed over the shards (each stores its own once per
    /// loop turn when they moved, so they may lag a turn behind).
    pub fn stats(&self) -> ServerStats {
        let mut counts = Counts::default();
        for shard in 0..self.registry.shards() {
            let mailbox = self.registry.mailbox(shard);
            let shard_counts = match mailbox.metrics.lock() {
                Ok(counts) => *counts,
                Err(poisoned) => *poisoned.into_inner(),
            };
            counts.add(&shard_counts);
        }
        let mut stats = ServerStats::from_counts(&counts);
        stats.memory_held = self.memory_held() as u64;
        stats.pubsub = self.pubsub_stats();
        stats
    }

    /// [`ServerHandle::stats`] in the Prometheus (OpenMetrics) text format, for a
    /// metrics route served elsewhere than [`Builder::metrics`]; its content type is
    /// `application/openmetrics-text; version=1.0.0; charset=utf-8`.
    pub fn metrics_text(&self) -> String {
        prometheus::render(self.stats())
    }
}
