//! The server-wide side of pub/sub: which shards want a topic, publishing to them, and
//! the broker link to other nodes.
//!
//! Each shard keeps its own subscribers (`table.rs`); the hub only keeps, per topic, how
//! many subscribers each shard has. A publish reads that (one striped-lock read in a
//! `DashMap`, per publish, never per delivery), encodes the message once as an RFC 6455
//! frame in a refcounted buffer, and posts the same `Arc<Publication>` once to each
//! interested shard's mailbox. The hub is shared by the shards, the `ServerHandle`s and
//! the broker thread; it does no I/O itself (posting goes through [`Post`], the broker
//! through [`BrokerLink`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::broker::BrokerLink;
use super::table::Change;
use crate::conn::ConnId;
use crate::handle::{Post, Stopped};
use crate::handler::Message;
use crate::proto::encode::encode_frame;
use crate::proto::OpCode;

/// The next [`Publication`]'s sequence number (0 is never used: a shard's empty
/// compression cache holds it).
static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

/// One published message, encoded once for every subscriber of every shard.
#[derive(Debug)]
pub(crate) struct Publication {
    topic: Box<str>,
    /// The message as one unmasked RFC 6455 frame (header and payload): server frames
    /// are the same for every client, so every RFC 6455 subscriber sends these bytes.
    frame: Bytes,
    /// The frame header's length; the payload follows it.
    header: usize,
    text: bool,
    /// Unique per publication in this process: the key under which a shard keeps the
    /// message compressed once for its permessage-deflate subscribers.
    seq: u64,
    /// The publishing connection, which does not get its own message
    /// ([`Conn::publish`](crate::Conn::publish)).
    skip: Option<ConnId>,
    /// When it was published, as the publisher's thread read the clock (for the
    /// publish-to-deliver latency; `None` for messages from other nodes).
    published_at: Option<std::time::Instant>,
}

impl Publication {
    /// Encodes `message` for `topic`: the payload is copied once, into the frame.
    pub(crate) fn new(topic: &str, message: Message<'_>, skip: Option<ConnId>) -> Publication {
        let (opcode, payload, text) = match message {
            Message::Text(text) => (OpCode::Text, text.as_bytes(), true),
            Message::Binary(bytes) => (OpCode::Binary, bytes, false),
        };
        let mut frame = Vec::with_capacity(payload.len() + 10);
        encode_frame(&mut frame, opcode, true, payload, None);
        let header = frame.len() - payload.len();
        Publication {
            topic: topic.into(),
            frame: Bytes::from(frame),
            header,
            text,
            seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
            skip,
            published_at: None,
        }
    }

    /// A message another node published, as the broker brought it: `None` when a text
    /// message is not valid UTF-8 (the broker link drops it).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis link only
    pub(crate) fn remote(topic: &str, text: bool, payload: &[u8]) -> Option<Publication> {
        let message = if text {
            Message::Text(simdutf8::basic::from_utf8(payload).ok()?)
        } else {
            Message::Binary(payload)
        };
        Some(Publication::new(topic, message, None))
    }

    /// The topic published to.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// The whole RFC 6455 frame (shared: cloning it copies nothing).
    pub(crate) fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// Text or Binary.
    pub(crate) fn opcode(&self) -> OpCode {
        if self.text {
            OpCode::Text
        } else {
            OpCode::Binary
        }
    }

    /// Its number, unique in this process.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The message's payload.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.frame[self.header..]
    }

    /// The message, as a handler would see it.
    #[cfg(test)]
    pub(crate) fn message(&self) -> Message<'_> {
        match self.text() {
            Some(text) => Message::Text(text),
            None => Message::Binary(self.payload()),
        }
    }

    /// The text of a text message; `None` for a binary one.
    pub(crate) fn text(&self) -> Option<&str> {
        // Built from a `&str` (or checked on the way in from a broker): valid UTF-8.
        self.text
            .then(|| std::str::from_utf8(self.payload()).ok())
            .flatten()
    }

    /// When it was published (`None` for a message from another node).
    pub(crate) fn published_at(&self) -> Option<std::time::Instant> {
        self.published_at
    }

    /// The connection that published it and does not receive it, if any.
    pub(crate) fn skip(&self) -> Option<ConnId> {
        self.skip
    }
}

/// Makes `counts` long enough to hold member `member` (a member that joined after the
/// topic's counts were made).
fn grow_to(counts: &mut Box<[u32]>, member: usize) {
    if counts.len() <= member {
        let mut grown = counts.to_vec();
        grown.resize(member + 1, 0);
        *counts = grown.into_boxed_slice();
    }
}

/// Counters of the whole server's pub/sub, kept where they are cheap to keep: publishes
/// and broker events here (per publish, not per delivery); deliveries, drops and skips
/// on each shard, summed on read.
#[derive(Debug, Default)]
pub(crate) struct HubCounters {
    pub(crate) published: AtomicU64,
    pub(crate) from_broker: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) broker_publish_failures: AtomicU64,
}

/// The server-wide pub/sub state (one per `Server`, or per adapter without one).
///
/// Its members are the server's shards (`0..shards`, posted through `post`) and any
/// threads that joined later ([`Hub::join`]: the hyper adapter's workers), numbered
/// after the shards and posted through their own [`Post`].
pub(crate) struct Hub {
    shards: usize,
    /// Members that joined after the shards (index `i` is member `shards + i`).
    joined: std::sync::RwLock<Vec<Arc<dyn Post>>>,
    /// Per topic, the subscribers each shard has (index = shard). A topic is here while
    /// any shard has a subscriber.
    interest: DashMap<Arc<str>, Box<[u32]>>,
    post: Arc<dyn Post>,
    broker: OnceLock<Arc<dyn BrokerLink>>,
    pub(crate) counters: HubCounters,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("shards", &self.shards)
            .field("topics", &self.interest.len())
            .finish()
    }
}

impl Hub {
    /// The hub of a server with `shards` shards, whose mailboxes are `post`.
    pub(crate) fn new(shards: usize, post: Arc<dyn Post>) -> Hub {
        Hub {
            shards,
            joined: std::sync::RwLock::new(Vec::new()),
            interest: DashMap::new(),
            post,
            broker: OnceLock::new(),
            counters: HubCounters::default(),
        }
    }

    /// Adds a member that is not one of the server's shards (an adapter worker thread),
    /// whose publications go through `post`: returns its number, which it uses as its
    /// shard number in [`Hub::changed`] and in its connections' ids.
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))] // the hyper adapter's only
    pub(crate) fn join(&self, post: Arc<dyn Post>) -> u32 {
        let mut joined = self
            .joined
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        joined.push(post);
        (self.shards + joined.len() - 1) as u32
    }

    /// The server shuts down: so do the members that joined it (their sessions get
    /// 1001 like the shards' connections).
    pub(crate) fn shut_down_joined(&self, grace: std::time::Duration) {
        let joined = self
            .joined
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        for member in joined.iter() {
            member.shut_down(grace);
        }
    }

    /// How many members the hub has: shards and joined threads.
    fn members(&self) -> usize {
        self.shards + self.joined.read().map_or(0, |joined| joined.len())
    }

    /// Connects the hub to a broker (once, before the server starts).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis link only
    pub(crate) fn set_broker(&self, link: Arc<dyn BrokerLink>) {
        let _ = self.broker.set(link);
    }

    /// A shard's topic table changed: keeps the per-shard counts, and tells the broker
    /// when the node gains its first subscriber of `topic` or loses its last. The
    /// broker hears of one topic's changes in the order they happened (they are made
    /// under the topic's entry lock).
    pub(crate) fn changed(&self, shard: u32, topic: &str, change: Change) {
        let shard = shard as usize;
        match change {
            Change::None => {}
            Change::Added { .. } => {
                if let Some(mut counts) = self.interest.get_mut(topic) {
                    grow_to(&mut counts, shard);
                    if let Some(count) = counts.get_mut(shard) {
                        *count += 1;
                    }
                    return;
                }
                let name: Arc<str> = Arc::from(topic);
                match self.interest.entry(Arc::clone(&name)) {
                    Entry::Occupied(mut entry) => {
                        grow_to(entry.get_mut(), shard);
                        if let Some(count) = entry.get_mut().get_mut(shard) {
                            *count += 1;
                        }
                    }
                    Entry::Vacant(entry) => {
                        let members = self.members().max(shard + 1);
                        let mut counts = vec![0u32; members].into_boxed_slice();
                        if let Some(count) = counts.get_mut(shard) {
                            *count = 1;
                        }
                        if let Some(broker) = self.broker.get() {
                            broker.subscribe(&name);
                        }
                        entry.insert(counts);
                    }
                }
            }
            Change::Removed { .. } => {
                let Entry::Occupied(mut entry) = self.interest.entry(Arc::from(topic)) else {
                    return;
                };
                if let Some(count) = entry.get_mut().get_mut(shard) {
                    *count = count.saturating_sub(1);
                }
                if entry.get().iter().all(|&count| count == 0) {
                    let (name, _) = entry.remove_entry();
                    if let Some(broker) = self.broker.get() {
                        broker.unsubscribe(&name);
                    }
                }
            }
        }
    }

    /// Several subscriptions of one shard ended at once (a connection closed).
    pub(crate) fn removed(&self, shard: u32, topics: impl IntoIterator<Item = Arc<str>>) {
        for topic in topics {
            self.changed(shard, &topic, Change::Removed { last: false });
        }
    }

    /// Publishes `message` to `topic`'s subscribers on every shard (but `skip`), and to
    /// the broker for the other nodes; `at` is when (the publisher's clock reading,
    /// for the publish-to-deliver latency). Fails only when the server has stopped.
    pub(crate) fn publish(
        &self,
        topic: &str,
        message: Message<'_>,
        skip: Option<ConnId>,
        at: Option<std::time::Instant>,
    ) -> Result<(), Stopped> {
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        let broker = self.broker.get();
        let interested = self.interest.contains_key(topic);
        if !interested && broker.is_none() {
            return Ok(());
        }
        let mut publication = Publication::new(topic, message, skip);
        publication.published_at = at;
        let publication = Arc::new(publication);
        if let Some(broker) = broker {
            broker.publish(&publication);
        }
        self.deliver(publication)
    }

    /// Posts `publication` once to each shard that has subscribers of its topic: a
    /// message published here, or one the broker brought from another node.
    pub(crate) fn deliver(&self, publication: Arc<Publication>) -> Result<(), Stopped> {
        let mut shards = [0u64; 4];
        let mut many = Vec::new();
        {
            let Some(counts) = self.interest.get(publication.topic()) else {
                return Ok(());
            };
            for (shard, &count) in counts.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                match shards.get_mut(shard / 64) {
                    Some(word) => *word |= 1 << (shard % 64),
                    None => many.push(shard),
                }
            }
        }
        let mut result = Ok(());
        let small = shards.iter().enumerate().flat_map(|(word, bits)| {
            (0..64)
                .filter(move |bit| bits & (1 << bit) != 0)
                .map(move |bit| word * 64 + bit)
        });
        for shard in small.chain(many) {
            let posted = if shard < self.shards {
                self.post.post_publication(shard, Arc::clone(&publication))
            } else {
                let joined = self
                    .joined
                    .read()
                    .unwrap_or_else(|poison| poison.into_inner());
                joined
                    .get(shard - self.shards)
                    .map_or(Err(Stopped), |post| {
                        post.post_publication(shard, Arc::clone(&publication))
                    })
            };
            if posted.is_err() {
                result = Err(Stopped);
            }
        }
        result
    }

    /// A message from another node (see [`Publication::remote`]): delivered to this
    /// node's subscribers, never passed back to the broker.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis link only
    pub(crate) fn deliver_remote(&self, publication: Publication) -> Result<(), Stopped> {
        self.counters.from_broker.fetch_add(1, Ordering::Relaxed);
        self.deliver(Arc::new(publication))
    }

    /// Subscribers of `topic` on this node: the shards' counts as they stand (a
    /// subscription made on another thread a moment ago may not be counted yet).
    pub(crate) fn subscriber_count(&self, topic: &str) -> usize {
        self.interest
            .get(topic)
            .map_or(0, |counts| counts.iter().map(|&count| count as usize).sum())
    }

    /// How many topics have a subscriber on this node.
    pub(crate) fn topic_count(&self) -> usize {
        self.interest.len()
    }

    /// Topics with at least one subscriber on this node (for a broker that reconnects
    /// and subscribes again).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis link only
    pub(crate) fn topics(&self) -> Vec<Arc<str>> {
        self.interest
            .iter()
            .map(|entry| Arc::clone(entry.key()))
            .collect()
    }
}
