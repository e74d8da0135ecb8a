//! A shard's side of the metrics (`crate::metrics`): the clock reading the connection
//! layer stamps events with, and the counts published for other threads once per loop
//! turn when they moved (a `try_lock` on the shard's own slot in its mailbox, which
//! only `ServerHandle::stats` reads; never a lock or an atomic per event).

use std::time::Instant;

use super::Shard;

impl Shard {
    /// The time of the event being handled: the shard's and its connections'.
    pub(super) fn set_now(&mut self, now: Instant) {
        self.now = now;
        self.ctx.now.set(now);
    }

    /// Stores this shard's counts (and its gauges) in its mailbox when they moved.
    pub(super) fn publish_metrics(&mut self) {
        let gauges = (
            self.admitted as u64,
            self.sessions.len() as u64,
            self.streams.len() as u64,
        );
        let traffic = self.ctx.codecs.traffic();
        let changed = self.ctx.metrics.take_changed()
            || gauges != self.metrics_gauges
            || traffic != self.metrics_traffic;
        if !changed && !self.metrics_unpublished {
            return;
        }
        let mut counts = self.ctx.metrics.snapshot();
        (
            counts.connections_open,
            counts.sockjs_sessions,
            counts.tcp_streams,
        ) = gauges;
        counts.deflate_in_wire = traffic.in_wire;
        counts.deflate_in_plain = traffic.in_plain;
        counts.deflate_out_plain = traffic.out_plain;
        counts.deflate_out_wire = traffic.out_wire;
        self.metrics_gauges = gauges;
        self.metrics_traffic = traffic;
        let mailbox = self.registry.mailbox(self.ctx.shard as usize);
        // A reader holds the slot for a copy: try again next turn rather than wait.
        match mailbox.metrics.try_lock() {
            Ok(mut slot) => {
                *slot = counts;
                self.metrics_unpublished = false;
            }
            Err(_) => self.metrics_unpublished = true,
        }
    }
}
