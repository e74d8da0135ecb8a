//! A shard's fan-out: a published message that reached this shard's mailbox goes to
//! each of the shard's subscribers of its topic (see `crate::pubsub`).
//!
//! The publication arrives encoded once (an RFC 6455 frame in a shared buffer); each
//! subscriber's connection queues it for its framing (`Connection::deliver`), and is
//! then touched like after any send, so all it got in this loop turn leaves in one
//! write. Nothing here takes a lock or touches an atomic per subscriber.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::sessions::Effects;
use super::Shard;
use crate::pubsub::hub::Publication;
use crate::pubsub::{Delivery, SlowSubscribers};
use crate::runtime::core::{Token, TokenKind};

/// The bytes of publications a shard queues for its subscribers before it touches them
/// (lists them for sending, recounts the memory budget), within one mailbox batch.
pub(crate) const TOUCH_AFTER_BYTES: usize = 1024 * 1024;

/// This shard's pub/sub counters (plain integers: only this thread writes them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FanoutCounts {
    pub(crate) delivered: u64,
    pub(crate) dropped: u64,
    pub(crate) closed_slow: u64,
    pub(crate) skipped: u64,
    pub(crate) topics: usize,
    pub(crate) subscriptions: usize,
}

impl FanoutCounts {
    fn count(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Queued => self.delivered += 1,
            Delivery::Dropped => self.dropped += 1,
            Delivery::Closed => self.closed_slow += 1,
            Delivery::Unsupported => self.skipped += 1,
            Delivery::NotOpen => {}
        }
    }
}

/// The counters as other threads read them (`ServerHandle::pubsub_stats`): stored by
/// the shard once per loop turn when they moved, summed on read.
#[derive(Debug, Default)]
pub(crate) struct FanoutFigures {
    delivered: AtomicU64,
    dropped: AtomicU64,
    closed_slow: AtomicU64,
    skipped: AtomicU64,
    topics: AtomicUsize,
    subscriptions: AtomicUsize,
}

impl FanoutFigures {
    pub(crate) fn store(&self, counts: &FanoutCounts) {
        self.delivered.store(counts.delivered, Ordering::Relaxed);
        self.dropped.store(counts.dropped, Ordering::Relaxed);
        self.closed_slow
            .store(counts.closed_slow, Ordering::Relaxed);
        self.skipped.store(counts.skipped, Ordering::Relaxed);
        self.topics.store(counts.topics, Ordering::Relaxed);
        self.subscriptions
            .store(counts.subscriptions, Ordering::Relaxed);
    }

    pub(crate) fn load(&self) -> FanoutCounts {
        FanoutCounts {
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            closed_slow: self.closed_slow.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            topics: self.topics.load(Ordering::Relaxed),
            subscriptions: self.subscriptions.load(Ordering::Relaxed),
        }
    }
}

impl Shard {
    /// Delivers `publication` to this shard's subscribers of its topic (but the
    /// publisher, when it is one of them).
    pub(super) fn deliver(&mut self, publication: Arc<Publication>, now: Instant) {
        if let Some(at) = publication.published_at() {
            self.ctx
                .metrics
                .publication_delivered(now.saturating_duration_since(at));
        }
        let mut subscribers = std::mem::take(&mut self.fanout);
        self.ctx
            .topics
            .subscribers_into(publication.topic(), &mut subscribers);
        let skip = publication
            .skip()
            .filter(|id| id.shard() == self.ctx.shard as usize)
            .map(|id| id.token);
        let close_slow = self.ctx.config.slow_subscribers == SlowSubscribers::Close;
        for &token in &subscribers {
            if Some(token) == skip {
                continue;
            }
            let delivery = if token.kind() == TokenKind::Session {
                let mut fx = Effects::default();
                let delivery =
                    self.sessions
                        .deliver(token, &publication, close_slow, &self.ctx, now, &mut fx);
                self.apply(fx);
                delivery
            } else {
                let Shard {
                    conns,
                    ctx,
                    out_pool,
                    ..
                } = self;
                let Some(entry) = conns.get_mut(token) else {
                    continue;
                };
                // Lend an idle subscriber a pooled buffer for its batch (`touch` takes it
                // back if nothing was queued), rather than growing a fresh one.
                out_pool.attach(&mut entry.conn.out.queued);
                // TLS encrypts per connection: only a plaintext socket can send the
                // shared bytes themselves.
                let share = entry.tls.is_none();
                let delivery = entry.conn.deliver(&publication, share, ctx, now);
                // Touched once for the whole batch of publications (`on_wake`), so a
                // subscriber that gets a hundred messages in a turn is looked at once.
                if !entry.delivered {
                    entry.delivered = true;
                    self.delivered.push(token);
                }
                if delivery == Delivery::Queued {
                    self.delivered_bytes += publication.frame().len();
                }
                delivery
            };
            self.fanout_counts.count(delivery);
        }
        self.fanout = subscribers;
        self.run_work(now);
    }

    /// Touches the connections that got publications since their last touch, once the
    /// bytes queued for them are over `bytes` (0: always): `on_wake` calls this after
    /// each command with [`TOUCH_AFTER_BYTES`] and at its end with 0, so the memory
    /// budget never lags the queues by more than that.
    pub(super) fn touch_delivered_over(&mut self, bytes: usize) {
        if self.delivered.is_empty() || self.delivered_bytes < bytes {
            return;
        }
        self.delivered_bytes = 0;
        let mut delivered = std::mem::take(&mut self.delivered);
        for &token in &delivered {
            if let Some(entry) = self.conns.get_mut(token) {
                entry.delivered = false;
                self.touch(token);
            }
        }
        delivered.clear();
        self.delivered = delivered;
    }

    /// A connection or session of this shard ended: it leaves its topics.
    pub(super) fn leave_topics(&mut self, token: Token) {
        self.ctx.topics.remove_subscriber(self.ctx.shard, token);
    }

    /// Stores this shard's counters for other threads when they moved.
    pub(super) fn publish_fanout_figures(&mut self) {
        let (topics, subscriptions) = self.ctx.topics.figures();
        self.fanout_counts.topics = topics;
        self.fanout_counts.subscriptions = subscriptions;
        if self.fanout_counts != self.fanout_published {
            self.fanout_published = self.fanout_counts;
            self.registry
                .mailbox(self.ctx.shard as usize)
                .fanout
                .store(&self.fanout_counts);
        }
    }
}
