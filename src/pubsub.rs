//! Pub/sub: topics across shards, and across machines through Redis.
//!
//! A connection subscribes to topics by name ([`Conn::subscribe`](crate::Conn::subscribe));
//! a message published to a topic ([`Conn::publish`](crate::Conn::publish),
//! [`Conn::publish_to_all`](crate::Conn::publish_to_all),
//! [`ServerHandle::publish`](crate::ServerHandle::publish) from any thread) reaches every
//! subscriber of every shard, and with [`Builder::redis`](crate::Builder::redis) of every
//! node sharing the Redis server.
//!
//! - **Topics** are exact names: no wildcards or patterns in this version.
//! - **Every kind of connection with a [`Conn`](crate::Conn)** subscribes: RFC 6455 and
//!   hybi clients, hixie-75/76 clients (text only: a binary message to a hixie subscriber
//!   is skipped and counted in [`PubSubStats::skipped`]), SockJS sessions on every
//!   transport. A [`Protocol`](crate::Protocol) has no `Conn` and no topics.
//! - **Encoded once**: a publish becomes one RFC 6455 frame in a refcounted buffer,
//!   posted once to each shard with subscribers (the hub keeps which shards those are).
//!   On the shard, small messages are copied into each subscriber's batch for the loop
//!   turn (one write per connection per turn, the way uWebSockets corks); messages of
//!   [`SHARED_SEND_MIN`] bytes or more are not copied at all: every plaintext RFC 6455
//!   subscriber's send refers to the same buffer. Hixie and SockJS subscribers get
//!   their own framing of the payload; TLS encrypts per connection.
//! - **Ordering**: per publisher and topic, messages reach each subscriber in the order
//!   they were published; a [`Conn::send_text`](crate::Conn::send_text) (or a
//!   [`ConnHandle`](crate::ConnHandle) send) and a publish made by one thread reach a
//!   connection in the order they were made. There is no total order across
//!   publishers. (A publish from a handler travels through the mailbox of each shard
//!   it reaches, its own included, like a `ConnHandle` send does; so a subscriber on the
//!   publisher's own shard hears it after the callback returns.)
//! - **Slow subscribers** never slow a publisher or a shard. A published message that
//!   would take a subscriber's buffered output past
//!   [`Builder::max_buffered`](crate::Builder::max_buffered) is dropped for that
//!   subscriber and counted ([`SlowSubscribers::Drop`], the default, like uWebSockets'
//!   `maxBackpressure`), or the subscriber is closed with 1008 "slow subscriber"
//!   ([`SlowSubscribers::Close`]). Queued messages also count in the shard's
//!   [memory budget](crate::Builder::memory_budget), which closes the biggest holders
//!   first when the whole shard is over it. (A large message shared by many subscribers
//!   counts in full for each one that still holds it: the budget errs toward closing a
//!   slow subscriber early, never toward running out of memory.)
//! - **Subscriber counts** ([`ServerHandle::subscriber_count`](crate::ServerHandle::subscriber_count))
//!   are this node's, and approximate: each shard updates its count when a
//!   subscription changes, and a reader on another thread sees the counts as they stand;
//!   a connection in its close handshake (or a closed SockJS session until its
//!   disconnect delay ends) is still counted, though nothing more is delivered to it.
//!
//! ```no_run
//! use ringws::{Conn, Handler, Message, Server};
//!
//! /// Every message goes to everyone else in the room.
//! struct Room;
//!
//! impl Handler for Room {
//!     fn on_open(&mut self, conn: &mut Conn<'_>) {
//!         conn.subscribe("room");
//!     }
//!     fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
//!         conn.publish("room", message);
//!     }
//! }
//!
//! let server = Server::builder()
//!     .bind("127.0.0.1:9001")
//!     .websocket("/room", || Room)
//!     .build()?;
//! let handle = server.handle();
//! std::thread::spawn(move || handle.publish("room", ringws::Message::Text("server says hi")));
//! server.run()
//! # ; Ok::<(), std::io::Error>(())
//! ```

pub(crate) mod broker;
pub(crate) mod hub;
pub(crate) mod table;

pub use broker::{BrokerEvent, BrokerMode};

/// Published messages of this size (the whole frame) or more are shared by their
/// plaintext RFC 6455 subscribers rather than copied into each one's batch: a send of
/// its own per subscriber, but no copy. Below it, the copy into a batch that leaves in
/// one write is cheaper than an extra write. (uWebSockets draws the same line at 16 KiB.)
pub const SHARED_SEND_MIN: usize = 16 * 1024;

/// What happens to a subscriber that cannot keep up: a published message would take
/// its buffered output past [`Builder::max_buffered`](crate::Builder::max_buffered).
/// ([`Builder::slow_subscribers`](crate::Builder::slow_subscribers).)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SlowSubscribers {
    /// The message is dropped for that subscriber (counted in
    /// [`PubSubStats::dropped`]); the subscriber stays and gets later messages once it
    /// has caught up. The default.
    #[default]
    Drop,
    /// The subscriber is closed with 1008 "slow subscriber" (its handler hears that
    /// reason). The close frame replaces the unsent messages when nothing is
    /// half-written to the socket; a subscriber that stopped reading in the middle of
    /// a frame cannot be sent a clean close, so its socket is just closed.
    Close,
}

/// What became of a published message at one subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Queued for the subscriber.
    Queued,
    /// Dropped: the subscriber is behind ([`SlowSubscribers::Drop`]).
    Dropped,
    /// The subscriber is behind and is being closed ([`SlowSubscribers::Close`]).
    Closed,
    /// The subscriber's protocol cannot carry it (binary to hixie or SockJS).
    Unsupported,
    /// The subscriber is closing or gone: nothing to count.
    NotOpen,
}

/// The close code and reason of a subscriber closed by [`SlowSubscribers::Close`].
pub(crate) const SLOW_SUBSCRIBER: (crate::proto::CloseCode, &str) =
    (crate::proto::CloseCode(1008), "slow subscriber");

/// A snapshot of the server's pub/sub figures
/// ([`ServerHandle::pubsub_stats`](crate::ServerHandle::pubsub_stats)). Each shard
/// publishes its own figures once per loop turn; they are summed on read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PubSubStats {
    /// Topics with at least one subscriber on this node.
    pub topics: usize,
    /// Subscriptions on this node (subscriber × topic pairs).
    pub subscriptions: usize,
    /// Messages published on this node (by its connections and handles).
    pub published: u64,
    /// Messages that arrived from other nodes through the broker.
    pub from_broker: u64,
    /// Messages queued for subscribers.
    pub delivered: u64,
    /// Messages dropped for slow subscribers ([`SlowSubscribers::Drop`]).
    pub dropped: u64,
    /// Subscribers closed for being slow ([`SlowSubscribers::Close`]).
    pub closed_slow: u64,
    /// Messages a subscriber's protocol cannot carry (binary to hixie and SockJS
    /// clients), skipped.
    pub skipped: u64,
    /// Gaps the broker link reported (see [`BrokerEvent::Gap`]).
    pub gaps: u64,
    /// Messages published here that the broker link could not pass on.
    pub broker_publish_failures: u64,
}

/// A shard's side of pub/sub, in its `ShardContext`: its topic table (only its thread
/// touches it; a `RefCell` because handlers reach it through a shared context) and the
/// server's hub.
pub(crate) struct ShardTopics {
    table: std::cell::RefCell<table::TopicTable>,
    pub(crate) hub: std::sync::Arc<hub::Hub>,
}

impl ShardTopics {
    pub(crate) fn new(hub: std::sync::Arc<hub::Hub>) -> ShardTopics {
        ShardTopics {
            table: std::cell::RefCell::default(),
            hub,
        }
    }

    /// Subscribes `token` (a connection or session of shard `shard`) to `topic`; true
    /// when it was not subscribed yet.
    pub(crate) fn subscribe(&self, shard: u32, token: crate::conn::Token, topic: &str) -> bool {
        let Ok(mut table) = self.table.try_borrow_mut() else {
            return false;
        };
        let change = table.subscribe(token, topic);
        drop(table);
        self.hub.changed(shard, topic, change);
        change != table::Change::None
    }

    /// Unsubscribes `token` from `topic`; true when it was subscribed.
    pub(crate) fn unsubscribe(&self, shard: u32, token: crate::conn::Token, topic: &str) -> bool {
        let Ok(mut table) = self.table.try_borrow_mut() else {
            return false;
        };
        let change = table.unsubscribe(token, topic);
        drop(table);
        self.hub.changed(shard, topic, change);
        change != table::Change::None
    }

    /// True when `token` is subscribed to `topic`.
    pub(crate) fn is_subscribed(&self, token: crate::conn::Token, topic: &str) -> bool {
        self.table
            .try_borrow()
            .is_ok_and(|table| table.is_subscribed(token, topic))
    }

    /// Drops every subscription of `token`, whose connection or session ended.
    pub(crate) fn remove_subscriber(&self, shard: u32, token: crate::conn::Token) {
        let Ok(mut table) = self.table.try_borrow_mut() else {
            return;
        };
        let topics = table.remove_subscriber(token);
        drop(table);
        self.hub.removed(shard, topics);
    }

    /// Copies `topic`'s subscribers on this shard into `out` (see
    /// `TopicTable::subscribers_into`).
    pub(crate) fn subscribers_into(&self, topic: &str, out: &mut Vec<crate::conn::Token>) {
        match self.table.try_borrow() {
            Ok(table) => table.subscribers_into(topic, out),
            Err(_) => out.clear(),
        }
    }

    /// (topics, subscriptions) on this shard.
    pub(crate) fn figures(&self) -> (usize, usize) {
        self.table
            .try_borrow()
            .map_or((0, 0), |table| (table.topics(), table.subscriptions()))
    }
}

#[cfg(test)]
mod tests;
