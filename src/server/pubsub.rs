//! The pub/sub side of [`Builder`] and [`ServerHandle`] (see [`crate::pubsub`]).

use std::sync::atomic::Ordering;

use super::{Builder, ServerHandle};
use crate::handle::SendError;
use crate::handler::Message;
use crate::pubsub::{PubSubStats, SlowSubscribers};

impl Builder {
    /// What happens to a subscriber that cannot keep up: a published message that
    /// would take its buffered output past [`Builder::max_buffered`] is dropped for it
    /// ([`SlowSubscribers::Drop`], the default) or it is closed with 1008 "slow
    /// subscriber" ([`SlowSubscribers::Close`]). Either way the publisher and the
    /// other subscribers go on unaffected.
    pub fn slow_subscribers(mut self, policy: SlowSubscribers) -> Builder {
        self.config.slow_subscribers = policy;
        self
    }
}

impl ServerHandle {
    /// Publishes `message` to every subscriber of `topic` (see [`crate::pubsub`]), from
    /// any thread: copied once, posted once to each shard with subscribers. Messages
    /// one thread publishes to a topic reach each subscriber in order, and in order
    /// with that thread's [`ConnHandle`](crate::ConnHandle) sends. Fails only once the
    /// server has stopped.
    ///
    /// ```no_run
    /// # fn example(server: ringws::ServerHandle) {
    /// std::thread::spawn(move || {
    ///     for tick in 0.. {
    ///         let text = format!("tick {tick}");
    ///         if server.publish("clock", ringws::Message::Text(&text)).is_err() {
    ///             break; // the server stopped
    ///         }
    ///         std::thread::sleep(std::time::Duration::from_secs(1));
    ///     }
    /// });
    /// # }
    /// ```
    pub fn publish(&self, topic: &str, message: Message<'_>) -> Result<(), SendError> {
        self.hub
            .publish(topic, message, None, Some(std::time::Instant::now()))
            .map_err(|_| SendError)
    }

    /// Subscribers of `topic` on this node, as the shards' counts stand: approximate
    /// while subscriptions change on other threads.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.hub.subscriber_count(topic)
    }

    /// The server's pub/sub figures, summed over the shards (each publishes its own
    /// once per loop turn, so they may lag a turn behind).
    pub fn pubsub_stats(&self) -> PubSubStats {
        let mut stats = PubSubStats::default();
        for shard in 0..self.registry.shards() {
            let counts = self.registry.mailbox(shard).fanout.load();
            stats.subscriptions += counts.subscriptions;
            stats.delivered += counts.delivered;
            stats.dropped += counts.dropped;
            stats.closed_slow += counts.closed_slow;
            stats.skipped += counts.skipped;
        }
        stats.topics = self.hub.topic_count();
        let hub = &self.hub.counters;
        stats.published = hub.published.load(Ordering::Relaxed);
        stats.from_broker = hub.from_broker.load(Ordering::Relaxed);
        stats.gaps = hub.gaps.load(Ordering::Relaxed);
        stats.broker_publish_failures = hub.broker_publish_failures.load(Ordering::Relaxed);
        stats
    }
}
