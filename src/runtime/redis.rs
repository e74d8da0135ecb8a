//! The Redis broker link: pub/sub between nodes (servers) that share a Redis server
//! ([`Builder::redis`](crate::Builder::redis)).
//!
//! One thread per `Server` (`ringws-redis`), running a current-thread tokio runtime
//! with the `redis` crate. The hub reaches it through [`RedisLink`], whose calls push a
//! request onto an unbounded channel and return at once: a shard never waits on Redis.
//! Messages from other nodes go back through [`Hub::deliver_remote`], which posts them to
//! the shards' mailboxes like any publish.
//!
//! # What goes to Redis
//!
//! Each `Server` draws a random 64-bit node id. A topic is a channel or a stream key
//! named after it; topic names are used as they are (binary-safe, no escaping).
//!
//! - [`BrokerMode::PubSub`]: channel `ringws:<topic>`; each message is
//!   `PUBLISH ringws:<topic> <payload>` where the payload is the node id (8 bytes,
//!   big-endian), one kind byte (`t` text, `b` binary), then the message's bytes. A node
//!   `SUBSCRIBE`s to a topic's channel while it has a local subscriber (never a pattern).
//! - [`BrokerMode::Streams`]: stream `ringws:s:<topic>`; each message is
//!   `XADD ringws:s:<topic> MAXLEN ~ 10000 * node <16 hex digits> seq <n> kind <t|b>
//!   data <bytes>`, `seq` counting the node's publishes from 1. A node reads the
//!   streams of its subscribed topics with `XREAD COUNT 1000 BLOCK 100` from the last id
//!   it has seen per topic; a new subscription starts at the stream's end as it stands
//!   when the link learns of it (`XREVRANGE .. COUNT 1`).
//!
//! A node drops what it reads with its own node id: its own subscribers already had
//! the message from the hub.
//!
//! # Guarantees, as built
//!
//! - **Order**: one connection publishes, commands leave in the order the hub handed
//!   them over (pipelined in batches), so per publisher and topic the other nodes
//!   deliver in publishing order; a resend after a reconnect keeps that order.
//! - **PubSub**: at most once. A message another node publishes while this node's link
//!   is down is lost for it; when the link comes back it reports a
//!   [`BrokerEvent::Gap`] for every topic it was subscribed to while down (counted in
//!   `gaps`). Local publishes that cannot be handed to Redis (link down, a batch that
//!   failed, more than [`QUEUE_LIMIT`] waiting) are counted in
//!   `broker_publish_failures` and reported as [`BrokerEvent::PublishFailed`].
//! - **Streams**: nothing is lost across a node's or Redis's restart as long as Redis
//!   kept the entries (`appendonly yes` for a Redis restart) and the stream's
//!   [`STREAM_MAXLEN`] retained them. While Redis is unreachable a node holds its
//!   publishes in a queue of [`QUEUE_LIMIT`] messages and sends them in order when the
//!   link is back (past the limit they fail, as above). A batch cut off by a lost
//!   connection is sent again; readers drop the copies by (node id, `seq`), and
//!   re-read entries by stream id. A gap is reported when, after a reconnect, the
//!   stream no longer holds entries after the last one this node read (its
//!   `max-deleted-entry-id` (Redis 7) is past it, or the stream is gone).
//! - **Never blocks a shard**; reads continuously (the subscription connection is
//!   drained by its own task, so Redis's 32 MiB pub/sub output limit is not hit by a
//!   slow reader here); reconnects with backoff from 50 ms doubling to 2 s and then
//!   subscribes again to [`Hub::topics`]. Stopping the server stops the thread within
//!   about [`STOP_LIMIT`] (queued publishes get up to a second to leave).
//!
//! [`BrokerEvent`]s ([`Builder::on_broker_event`](crate::Builder::on_broker_event)) are
//! called on the broker thread: `Connected` on each connect, `Disconnected` once per
//! outage (the first failed attempt, or the loss of a working link).

mod link;
mod wire;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::pubsub::broker::BrokerLink;
use crate::pubsub::hub::{Hub, Publication};
use crate::pubsub::{BrokerEvent, BrokerMode};

/// How many entries a topic's stream keeps (`XADD .. MAXLEN ~`; Redis may keep a few
/// more).
pub(crate) const STREAM_MAXLEN: usize = 10_000;

/// How many local publishes may wait for Redis (while it is unreachable, or slow):
/// past it they fail.
pub(crate) const QUEUE_LIMIT: usize = 10_000;

/// How long the thread may take to stop once asked (a backstop: it normally stops
/// as soon as its queued publishes left, or at once when Redis is unreachable).
pub(crate) const STOP_LIMIT: Duration = Duration::from_secs(2);

/// The application's broker event callback.
pub(crate) type EventCallback = Arc<dyn Fn(&BrokerEvent) + Send + Sync>;

/// What the broker thread needs: checked by `Builder::build`, used by `Server::start`.
pub(crate) struct Settings {
    client: redis::Client,
    mode: BrokerMode,
    on_event: Option<EventCallback>,
    node: u64,
}

impl Settings {
    /// Checks `url`: a bad one is an `InvalidInput` error. Nothing is connected yet.
    pub(crate) fn new(
        url: &str,
        mode: BrokerMode,
        on_event: Option<EventCallback>,
    ) -> io::Result<Settings> {
        let client = redis::Client::open(url).map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad Redis URL for Builder::redis: {error}"),
            )
        })?;
        Ok(Settings {
            client,
            mode,
            on_event,
            node: node_id(),
        })
    }
}

/// A random node id: the process's random hash keys over the time, the process id and
/// a counter (two servers in one process differ).
fn node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(now);
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// What the hub (and the server's stop) asks of the broker thread.
enum Request {
    Subscribe(Arc<str>),
    Unsubscribe(Arc<str>),
    Publish(Arc<Publication>),
    Stop,
}

/// The hub's side of the link: every call is a push onto the thread's channel.
struct RedisLink {
    requests: mpsc::UnboundedSender<Request>,
}

impl BrokerLink for RedisLink {
    fn subscribe(&self, topic: &Arc<str>) {
        let _ = self.requests.send(Request::Subscribe(Arc::clone(topic)));
    }

    fn unsubscribe(&self, topic: &Arc<str>) {
        let _ = self.requests.send(Request::Unsubscribe(Arc::clone(topic)));
    }

    fn publish(&self, publication: &Arc<Publication>) {
        let _ = self
            .requests
            .send(Request::Publish(Arc::clone(publication)));
    }
}

/// The running broker thread; stopping it (or dropping this) ends it within about
/// [`STOP_LIMIT`].
pub(crate) struct BrokerThread {
    requests: mpsc::UnboundedSender<Request>,
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the broker thread for `hub` and connects the hub to it. Redis being
/// unreachable is not an error: the thread keeps trying.
pub(crate) fn start(settings: Settings, hub: &Arc<Hub>) -> io::Result<BrokerThread> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (requests, receiver) = mpsc::unbounded_channel();
    let stop = Arc::new(Notify::new());
    let hub_of_link = Arc::clone(hub);
    let hard_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("ringws-redis".into())
        .spawn(move || {
            let link = link::Link::new(settings, hub_of_link);
            runtime.block_on(async move {
                let run = link.run(receiver);
                tokio::pin!(run);
                let backstop = async {
                    hard_stop.notified().await;
                    tokio::time::sleep(STOP_LIMIT).await;
                };
                tokio::select! {
                    () = &mut run => {}
                    () = backstop => tracing::warn!("redis broker link: stopped by its time limit"),
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(200));
        })?;
    hub.set_broker(Arc::new(RedisLink {
        requests: requests.clone(),
    }));
    Ok(BrokerThread {
        requests,
        stop,
        thread: Some(thread),
    })
}

impl BrokerThread {
    /// Asks the thread to stop and waits for it (bounded by [`STOP_LIMIT`]).
    pub(crate) fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let _ = self.requests.send(Request::Stop);
        self.stop.notify_one();
        if thread.join().is_err() {
            tracing::error!("redis broker thread panicked");
        }
    }
}

impl Drop for BrokerThread {
    fn drop(&mut self) {
        self.stop();
    }
}
