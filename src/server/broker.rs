//! The broker side of [`Builder`]: pub/sub across servers through Redis (the `redis`
//! feature; see [`crate::pubsub`] and [`BrokerMode`]).

use std::io;
use std::sync::Arc;

use super::Builder;
use crate::pubsub::{BrokerEvent, BrokerMode};
use crate::runtime::redis::{EventCallback, Settings};

/// What [`Builder::redis`] and [`Builder::on_broker_event`] collected.
#[derive(Default)]
pub(super) struct BrokerConfig {
    redis: Option<(String, BrokerMode)>,
    on_event: Option<EventCallback>,
}

impl BrokerConfig {
    /// The broker thread's settings (`None` without [`Builder::redis`]); a bad URL is
    /// an `InvalidInput` error.
    pub(super) fn settings(self) -> io::Result<Option<Settings>> {
        match self.redis {
            Some((url, mode)) => Settings::new(&url, mode, self.on_event).map(Some),
            None => Ok(None),
        }
    }
}

impl Builder {
    /// Shares pub/sub with every other server connected to the Redis server at `url`
    /// (`redis://[user:password@]host[:port][/db]`): a message published on any of
    /// them reaches the subscribers of all. `mode` chooses what crosses Redis and what
    /// is guaranteed: [`BrokerMode::PubSub`] (at most once, gaps reported) or
    /// [`BrokerMode::Streams`] (nothing lost across reconnects within the streams'
    /// retained length).
    ///
    /// What it uses in Redis: pub/sub mode publishes to the channel `ringws:<topic>` a
    /// payload of the node's random id (8 bytes, big-endian), a kind byte (`t` text, `b`
    /// binary) and the message's bytes; streams mode appends to the stream
    /// `ringws:s:<topic>` (`XADD .. MAXLEN ~ 10000`) entries with the fields `node` (16
    /// hex digits), `seq` (the node's publish count), `kind` and `data`.
    ///
    /// The server runs one more thread for the link; shards never wait on Redis. A
    /// server subscribes to a topic's channel (or reads its stream) only while it has a
    /// local subscriber, publishes what its own connections and handles publish, and
    /// never delivers its own messages twice. A Redis that cannot be reached at start
    /// is not an error: the link retries with backoff (50 ms doubling to 2 s) and says
    /// so through [`Builder::on_broker_event`]. A `url` that does not parse makes
    /// [`build`](Builder::build) fail with `InvalidInput`.
    ///
    /// ```no_run
    /// use ringws::pubsub::BrokerMode;
    /// use ringws::{Conn, Handler, Message, Server};
    ///
    /// struct Room;
    /// impl Handler for Room {
    ///     fn on_open(&mut self, conn: &mut Conn<'_>) {
    ///         conn.subscribe("room");
    ///     }
    ///     fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
    ///         conn.publish("room", message); // reaches "room" on every server
    ///     }
    /// }
    ///
    /// Server::builder()
    ///     .bind("0.0.0.0:9001")
    ///     .redis("redis://10.0.0.5:6379", BrokerMode::Streams)
    ///     .on_broker_event(|event| eprintln!("broker: {event:?}"))
    ///     .websocket("/room", || Room)
    ///     .build()?
    ///     .run()
    /// # ; Ok::<(), std::io::Error>(())
    /// ```
    pub fn redis(mut self, url: &str, mode: BrokerMode) -> Builder {
        self.broker.redis = Some((url.to_owned(), mode));
        self
    }

    /// Calls `f` with each [`BrokerEvent`] of the Redis link ([`Builder::redis`]):
    /// connected, disconnected (once per outage), a gap in a topic, publishes that
    /// could not be passed on. `f` runs on the broker thread: it should return quickly
    /// (a slow `f` delays the link, never a shard); a panic in it is caught and logged.
    pub fn on_broker_event(mut self, f: impl Fn(&BrokerEvent) + Send + Sync + 'static) -> Builder {
        self.broker.on_event = Some(Arc::new(f));
        self
    }
}
