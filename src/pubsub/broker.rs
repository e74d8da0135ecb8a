//! The link between a node's hub and a message broker that connects nodes (Redis).
//!
//! The hub calls a [`BrokerLink`] from any thread and must never wait on it: an
//! implementation queues the request for its own thread (the runtime's Redis link is
//! one thread with a current-thread tokio runtime) and returns. What the broker brings
//! from other nodes goes back through
//! [`Hub::deliver_remote`](super::hub::Hub::deliver_remote), which posts it to the
//! interested shards' mailboxes.

use std::sync::Arc;

use super::hub::Publication;

/// What the hub asks of a broker. Calls never block.
pub(crate) trait BrokerLink: Send + Sync {
    /// This node has its first subscriber of `topic`: start receiving it.
    fn subscribe(&self, topic: &Arc<str>);
    /// This node lost its last subscriber of `topic`: stop receiving it.
    fn unsubscribe(&self, topic: &Arc<str>);
    /// A message published on this node: pass it on to the other nodes (tagged so
    /// that this node does not deliver it twice).
    fn publish(&self, publication: &Arc<Publication>);
}

/// How messages travel between nodes through Redis
/// ([`Builder::redis`](crate::Builder::redis)).
///
/// Either way a node subscribes to a topic in Redis only while it has a local
/// subscriber, passes on what is published on it (tagged with its node id, so it does
/// not deliver its own messages twice), keeps each publisher's order per topic, and
/// reconnects by itself (backoff from 50 ms to 2 s). Up to 10,000 local publishes wait
/// for Redis; past that they fail ([`BrokerEvent::PublishFailed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BrokerMode {
    /// Redis pub/sub (`PUBLISH` / `SUBSCRIBE`): at most once. A message published
    /// while a node is cut off from Redis is lost for that node; when its link comes
    /// back the node reports a [`BrokerEvent::Gap`] for every topic it was subscribed to
    /// while cut off. Messages a node publishes while Redis is unreachable are not
    /// queued: they are counted as failed ([`BrokerEvent::PublishFailed`]).
    #[default]
    PubSub,
    /// Redis streams (`XADD` with a bounded length, each node reading with `XREAD`
    /// from its last id): nothing is lost across a node's reconnect, or a Redis
    /// restart when Redis persists its data (`appendonly yes`), as long as the missed
    /// messages are still within the stream's retained length. Messages published
    /// while Redis is unreachable wait in a bounded queue and are sent on reconnect (or
    /// reported failed past it), in order. Duplicates are dropped: entries read again
    /// by stream id, a batch sent again after a lost connection by the publishing
    /// node's sequence number. A gap is reported when, after a reconnect, Redis no
    /// longer holds entries this node had not read yet (trimmed, or the stream is
    /// gone; trimming is seen through `XINFO STREAM`'s `max-deleted-entry-id`, Redis 7
    /// and later). A new subscription starts at the stream's end.
    Streams,
}

/// What the broker link reports to the application
/// ([`Builder::on_broker_event`](crate::Builder::on_broker_event)), on the broker's
/// thread.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerEvent {
    /// The link to the broker is up (first connect or reconnect).
    Connected,
    /// The link to the broker went down, or could not be made; it is retried with
    /// backoff. Reported once per outage, not for every failed attempt.
    Disconnected {
        /// Why, as the client library said it.
        error: String,
    },
    /// Messages for `topic` may have been missed while the link was down (pub/sub
    /// mode, or streams mode when the stream no longer holds them).
    Gap {
        /// The topic that may have missed messages.
        topic: String,
    },
    /// Messages published on this node could not be handed to the broker (pub/sub
    /// mode while disconnected, either mode past the queue of 10,000 waiting
    /// messages, or a batch Redis refused); summed per topic and loop turn.
    PublishFailed {
        /// The topic they were published to.
        topic: String,
        /// How many.
        count: u64,
    },
}
