//! The broker thread's state machine: one task that owns the Redis connections, the
//! topics, the publish queue and the operations in flight (each a boxed future kept
//! across loop turns, so none is cancelled half-way), and reacts to whichever finishes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Msg, RedisError, RedisResult, RetryMethod, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::wire::{self, EntryId, Incoming};
use super::{EventCallback, Request, Settings, QUEUE_LIMIT};
use crate::pubsub::hub::{Hub, Publication};
use crate::pubsub::{BrokerEvent, BrokerMode};

/// The first wait before a reconnect; doubled on each failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A connect attempt's limit.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A command's limit (longer than [`streams::READ_BLOCK_MS`]).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Commands per pipelined batch (publishes, subscriptions).
const BATCH: usize = 1000;
/// Requests taken from the hub's channel per loop turn.
const REQUESTS_PER_TURN: usize = 1024;
/// How long the publishing connection may stay idle before a `PING` checks it (so a
/// connection Redis dropped is found and replaced before the next publish needs it).
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// How long a stopping link keeps sending queued publishes.
const STOP_FLUSH: Duration = Duration::from_secs(1);

mod streams;

type Op<T> = Pin<Box<dyn Future<Output = T>>>;

/// A local publish waiting for Redis, with the node's sequence number.
struct Outgoing {
    publication: Arc<Publication>,
    seq: u64,
}

/// What this node knows of a subscribed topic (streams mode).
#[derive(Default)]
struct Topic {
    /// The last stream id read; `None` until the stream's end is known.
    last: Option<EntryId>,
    /// False after a reconnect until the stream was checked for trimmed entries.
    checked: bool,
    /// The last `seq` delivered per publishing node (drops resent copies).
    seen: HashMap<u64, u64>,
}

/// What a finished control operation brought.
enum Control {
    /// `SUBSCRIBE` / `UNSUBSCRIBE` answered.
    Subscriptions(RedisResult<()>),
    /// The stream ends of newly subscribed topics (`XREVRANGE`).
    Ends(Vec<Arc<str>>, RedisResult<Vec<Value>>),
    /// `XINFO STREAM` per topic after a reconnect (`None`: no such stream).
    Checked(RedisResult<Vec<(Arc<str>, Option<Value>)>>),
}

/// A working link.
struct Connected {
    writer: MultiplexedConnection,
    /// PubSub mode: the subscription connection's command side.
    sink: Option<PubSubSink>,
    /// Streams mode: the `XREAD` connection.
    reader: Option<MultiplexedConnection>,
}

/// What a connect attempt yields (the pub/sub message stream kept apart).
type Connection = (Connected, Option<PubSubStream>);

pub(super) struct Link {
    hub: Arc<Hub>,
    client: redis::Client,
    mode: BrokerMode,
    on_event: Option<EventCallback>,
    node: u64,
    seq: u64,
    topics: HashMap<Arc<str>, Topic>,
    /// PubSub mode: topics wanted while the link was down (a gap each, on connect).
    missed: HashSet<Arc<str>>,
    /// PubSub mode: subscription changes to send, in order (`true`: subscribe).
    changes: VecDeque<(bool, Arc<str>)>,
    /// Streams mode: new topics whose stream end is to be asked for.
    fetch: Vec<Arc<str>>,
    /// Streams mode: topics to check for trimmed entries after a reconnect.
    check: Vec<Arc<str>>,
    pending: VecDeque<Outgoing>,
    in_flight: Vec<Outgoing>,
    /// Publish failures per topic, reported at the end of the loop turn.
    failed: HashMap<Arc<str>, u64>,
    connected: Option<Connected>,
    messages: Option<PubSubStream>,
    connect: Option<Op<RedisResult<Connection>>>,
    write: Option<Op<RedisResult<()>>>,
    control: Option<Op<Control>>,
    read: Option<Op<RedisResult<Option<StreamReadReply>>>>,
    retry_at: Option<Instant>,
    /// When the idle publishing connection is checked next.
    ping_at: Option<Instant>,
    backoff: Duration,
    /// An outage was reported and the link is not back yet.
    down: bool,
    /// Set once asked to stop: the deadline of the last flush.
    stopping: Option<Instant>,
}

/// Waits for the operation in `slot`, forever when there is none.
async fn finish<T>(slot: &mut Option<Op<T>>) -> T {
    match slot {
        Some(op) => op.await,
        None => std::future::pending().await,
    }
}

/// The next pub/sub message (`None`: the connection ended), forever when there is no
/// subscription connection.
async fn next_message(stream: &mut Option<PubSubStream>) -> Option<Msg> {
    use futures_core::Stream;
    match stream {
        Some(stream) => std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, forever when there is none.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// True for an error that says the connection (or the server) is not usable now, so
/// the link reconnects: anything but a permanent command error.
fn is_link_error(error: &RedisError) -> bool {
    !matches!(error.retry_method(), RetryMethod::NoRetry)
}

impl Link {
    pub(super) fn new(settings: Settings, hub: Arc<Hub>) -> Link {
        Link {
            hub,
            client: settings.client,
            mode: settings.mode,
            on_event: settings.on_event,
            node: settings.node,
            seq: 0,
            topics: HashMap::new(),
            missed: HashSet::new(),
            changes: VecDeque::new(),
            fetch: Vec::new(),
            check: Vec::new(),
            pending: VecDeque::new(),
            in_flight: Vec::new(),
            failed: HashMap::new(),
            connected: None,
            messages: None,
            connect: None,
            write: None,
            control: None,
            read: None,
            retry_at: Some(Instant::now()),
            ping_at: None,
            backoff: BACKOFF_MIN,
            down: false,
            stopping: None,
        }
    }

    /// The loop, until asked to stop (and the queued publishes left, or a second
    /// passed), or until every sender is gone.
    pub(super) async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        loop {
            if self.stopping.is_some() && (self.done_flushing() || self.connected.is_none()) {
                self.give_up_queue();
                self.report_failures();
                return;
            }
            self.start_operations();
            tokio::select! {
                request = requests.recv(), if self.stopping.is_none() => match request {
                    None => self.stopping = Some(Instant::now()),
                    Some(request) => {
                        self.handle(request);
                        for _ in 1..REQUESTS_PER_TURN {
                            match requests.try_recv() {
                                Ok(request) => self.handle(request),
                                Err(_) => break,
                            }
                        }
                    }
                },
                result = finish(&mut self.connect) => {
                    self.connect = None;
                    match result {
                        Ok(connection) => self.on_connected(connection),
                        Err(error) => self.on_lost(&error.to_string()),
                    }
                }
                result = finish(&mut self.write) => self.on_written(result),
                result = finish(&mut self.control) => self.on_control(result),
                result = finish(&mut self.read) => self.on_read(result),
                message = next_message(&mut self.messages) => match message {
                    Some(message) => self.on_message(&message),
                    None => self.on_lost("the subscription connection closed"),
                },
                () = until(self.retry_at), if self.connect.is_none() => {
                    self.retry_at = None;
                    self.start_connect();
                }
                () = until(self.ping_at), if self.write.is_none() => self.start_ping(),
                () = until(self.stopping) => self.stopping = Some(Instant::now()),
            }
            self.report_failures();
        }
    }

    fn done_flushing(&self) -> bool {
        let late = self.stopping.is_some_and(|at| Instant::now() >= at);
        late || (self.pending.is_empty() && self.write.is_none())
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Subscribe(topic) => {
                if self.topics.contains_key(&topic) {
                    return;
                }
                self.topics.insert(Arc::clone(&topic), Topic::default());
                match (&self.connected, self.mode) {
                    (None, BrokerMode::PubSub) => {
                        self.missed.insert(topic);
                    }
                    (None, BrokerMode::Streams) => {}
                    (Some(_), BrokerMode::PubSub) => self.changes.push_back((true, topic)),
                    (Some(_), BrokerMode::Streams) => self.fetch.push(topic),
                }
            }
            Request::Unsubscribe(topic) => {
                if self.topics.remove(&topic).is_none() {
                    return;
                }
                self.missed.remove(&topic);
                if self.connected.is_some() && self.mode == BrokerMode::PubSub {
                    self.changes.push_back((false, topic));
                }
            }
            Request::Publish(publication) => {
                self.seq += 1;
                let down = self.connected.is_none() && self.mode == BrokerMode::PubSub;
                if down || self.pending.len() >= QUEUE_LIMIT {
                    self.fail(publication.topic(), 1);
                } else {
                    self.pending.push_back(Outgoing {
                        publication,
                        seq: self.seq,
                    });
                }
            }
            Request::Stop => self.stopping = Some(Instant::now() + STOP_FLUSH),
        }
    }

    fn fail(&mut self, topic: &str, count: u64) {
        match self.failed.get_mut(topic) {
            Some(failed) => *failed += count,
            None => {
                self.failed.insert(Arc::from(topic), count);
            }
        }
    }

    fn report_failures(&mut self) {
        if self.failed.is_empty() {
            return;
        }
        for (topic, count) in std::mem::take(&mut self.failed) {
            self.hub
                .counters
                .broker_publish_failures
                .fetch_add(count, Ordering::Relaxed);
            self.emit(&BrokerEvent::PublishFailed {
                topic: topic.to_string(),
                count,
            });
        }
    }

    /// Whatever is still queued when the link stops fails.
    fn give_up_queue(&mut self) {
        let queued: Vec<Outgoing> = self
            .in_flight
            .drain(..)
            .chain(self.pending.drain(..))
            .collect();
        for out in queued {
            self.fail(out.publication.topic(), 1);
        }
    }

    fn emit(&self, event: &BrokerEvent) {
        if let Some(callback) = &self.on_event {
            let call = std::panic::AssertUnwindSafe(|| callback(event));
            if std::panic::catch_unwind(call).is_err() {
                tracing::error!("the broker event callback panicked on {event:?}");
            }
        }
    }

    fn gap(&self, topic: &str) {
        self.hub.counters.gaps.fetch_add(1, Ordering::Relaxed);
        self.emit(&BrokerEvent::Gap {
            topic: topic.to_owned(),
        });
    }

    fn start_connect(&mut self) {
        let client = self.client.clone();
        let mode = self.mode;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        self.connect = Some(Box::pin(async move {
            let writer = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            match mode {
                BrokerMode::PubSub => {
                    let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
                        .await
                        .map_err(|_| {
                            RedisError::from(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "connecting the subscription connection timed out",
                            ))
                        })??;
                    let (sink, stream) = pubsub.split();
                    let connected = Connected {
                        writer,
                        sink: Some(sink),
                        reader: None,
                    };
                    Ok((connected, Some(stream)))
                }
                BrokerMode::Streams => {
                    let reader = client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?;
                    let connected = Connected {
                        writer,
                        sink: None,
                        reader: Some(reader),
                    };
                    Ok((connected, None))
                }
            }
        }));
    }

    fn on_connected(&mut self, (connected, messages): Connection) {
        tracing::info!(mode = ?self.mode, "redis broker link connected");
        self.connected = Some(connected);
        self.messages = messages;
        self.ping_at = Some(Instant::now() + PING_INTERVAL);
        self.backoff = BACKOFF_MIN;
        self.down = false;
        self.emit(&BrokerEvent::Connected);
        // The hub's topics are the truth; requests still in the channel follow them.
        let wanted: HashSet<Arc<str>> = self.hub.topics().into_iter().collect();
        self.topics.retain(|topic, _| wanted.contains(topic));
        for topic in wanted {
            self.topics.entry(topic).or_default();
        }
        self.changes.clear();
        self.fetch.clear();
        self.check.clear();
        match self.mode {
            BrokerMode::PubSub => {
                let missed = std::mem::take(&mut self.missed);
                for topic in missed.iter().filter(|t| self.topics.contains_key(*t)) {
                    self.gap(topic);
                }
                let topics: Vec<Arc<str>> = self.topics.keys().cloned().collect();
                self.changes
                    .extend(topics.into_iter().map(|topic| (true, topic)));
            }
            BrokerMode::Streams => {
                for (topic, state) in &mut self.topics {
                    state.checked = false;
                    if state.last.is_some() {
                        self.check.push(Arc::clone(topic));
                    } else {
                        self.fetch.push(Arc::clone(topic));
                    }
                }
            }
        }
    }

    /// The link is down (or could not come up): drop the connections and what was in
    /// flight on them, report it once per outage, and retry after the backoff.
    fn on_lost(&mut self, error: &str) {
        let was_up = self.connected.take().is_some();
        self.messages = None;
        self.ping_at = None;
        self.write = None;
        self.control = None;
        self.read = None;
        self.connect = None;
        let in_flight = std::mem::take(&mut self.in_flight);
        match self.mode {
            BrokerMode::Streams => {
                for out in in_flight.into_iter().rev() {
                    self.pending.push_front(out);
                }
            }
            BrokerMode::PubSub => {
                let lost: Vec<Outgoing> = in_flight
                    .into_iter()
                    .chain(self.pending.drain(..))
                    .collect();
                for out in lost {
                    self.fail(out.publication.topic(), 1);
                }
                if was_up {
                    self.missed.extend(self.topics.keys().cloned());
                }
            }
        }
        if was_up || !self.down {
            tracing::warn!(%error, "redis broker link down");
            self.down = true;
            self.emit(&BrokerEvent::Disconnected {
                error: error.to_owned(),
            });
        }
        if self.stopping.is_none() {
            self.retry_at = Some(Instant::now() + self.backoff);
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Starts what the state calls for and is not running yet.
    fn start_operations(&mut self) {
        let Some(connected) = &self.connected else {
            return;
        };
        let connected = Connected {
            writer: connected.writer.clone(),
            sink: connected.sink.clone(),
            reader: connected.reader.clone(),
        };
        if self.write.is_none() && !self.pending.is_empty() {
            let count = self.pending.len().min(BATCH);
            self.in_flight = self.pending.drain(..count).collect();
            let mut pipe = redis::pipe();
            for out in &self.in_flight {
                match self.mode {
                    BrokerMode::PubSub => publish(&mut pipe, self.node, &out.publication),
                    BrokerMode::Streams => streams::xadd(&mut pipe, self.node, out),
                }
            }
            let mut writer = connected.writer.clone();
            self.write = Some(Box::pin(async move {
                pipe.query_async::<()>(&mut writer).await
            }));
        }
        if self.control.is_none() {
            self.control = self.next_control(&connected);
        }
        if self.read.is_none() && self.mode == BrokerMode::Streams {
            self.read = self.next_read(&connected);
        }
    }

    fn next_control(&mut self, connected: &Connected) -> Option<Op<Control>> {
        if let Some(sink) = &connected.sink {
            let &(subscribe, _) = self.changes.front()?;
            let mut channels = Vec::new();
            while let Some((kind, topic)) = self.changes.front() {
                if *kind != subscribe || channels.len() >= BATCH {
                    break;
                }
                channels.push(wire::channel(topic));
                self.changes.pop_front();
            }
            let mut sink = sink.clone();
            return Some(Box::pin(async move {
                let result = if subscribe {
                    sink.subscribe(channels).await
                } else {
                    sink.unsubscribe(channels).await
                };
                Control::Subscriptions(result)
            }));
        }
        self.next_stream_control(connected.writer.clone())
    }

    /// Checks the idle publishing connection: an error is handled as a lost link.
    fn start_ping(&mut self) {
        self.ping_at = None;
        let Some(connected) = &self.connected else {
            return;
        };
        let mut writer = connected.writer.clone();
        self.write = Some(Box::pin(async move {
            redis::cmd("PING").query_async::<()>(&mut writer).await
        }));
    }

    fn on_written(&mut self, result: RedisResult<()>) {
        self.write = None;
        match result {
            Ok(()) => {
                self.in_flight.clear();
                self.ping_at = Some(Instant::now() + PING_INTERVAL);
            }
            Err(error) if is_link_error(&error) => self.on_lost(&error.to_string()),
            Err(error) => {
                tracing::warn!(%error, "redis refused published messages");
                for out in std::mem::take(&mut self.in_flight) {
                    self.fail(out.publication.topic(), 1);
                }
            }
        }
    }

    fn on_control(&mut self, done: Control) {
        self.control = None;
        match done {
            Control::Subscriptions(Ok(())) => {}
            Control::Subscriptions(Err(error)) => self.on_lost(&error.to_string()),
            Control::Ends(_, Err(error)) | Control::Checked(Err(error)) => {
                self.on_lost(&error.to_string())
            }
            Control::Ends(topics, Ok(answers)) => self.on_ends(&topics, &answers),
            Control::Checked(Ok(answers)) => self.on_checked(answers),
        }
    }

    fn on_message(&mut self, message: &Msg) {
        let Some(topic) = wire::topic_of_channel(message.get_channel_name()) else {
            return;
        };
        let Some(incoming) = wire::decode_pubsub(message.get_payload_bytes()) else {
            return;
        };
        if incoming.node != self.node {
            deliver(&self.hub, topic, &incoming);
        }
    }
}

/// Adds the `PUBLISH` of `publication` (published by `node`) to `pipe`.
fn publish(pipe: &mut redis::Pipeline, node: u64, publication: &Publication) {
    let text = publication.text().is_some();
    pipe.cmd("PUBLISH")
        .arg(wire::channel(publication.topic()))
        .arg(wire::encode_pubsub(node, text, publication.payload()))
        .ignore();
}

/// Hands a message from another node to this node's subscribers.
fn deliver(hub: &Hub, topic: &str, incoming: &Incoming<'_>) {
    match Publication::remote(topic, incoming.text, incoming.data) {
        // Fails only once the server stopped.
        Some(publication) => {
            let _ = hub.deliver_remote(publication);
        }
        None => tracing::debug!(topic, "dropped a text message that is not UTF-8"),
    }
}
