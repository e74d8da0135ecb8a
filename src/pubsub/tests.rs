//! Unit tests of the hub: per-shard interest counts, the broker told of the node's
//! first and last subscriber of a topic, and posting a publication once per interested
//! shard (fakes for `Post` and `BrokerLink` record the calls).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::broker::BrokerLink;
use super::hub::{Hub, Publication};
use super::table::Change;
use super::ShardTopics;
use crate::conn::{ConnId, Token};
use crate::handle::{Outgoing, Post, Stopped};
use crate::handler::Message;

/// Records every publication posted, as (shard, topic, payload).
#[derive(Default)]
struct FakePost {
    posted: Mutex<Vec<(usize, String, Vec<u8>)>>,
    stopped: AtomicBool,
}

impl FakePost {
    fn take(&self) -> Vec<(usize, String, Vec<u8>)> {
        std::mem::take(&mut *self.posted.lock().unwrap())
    }
    fn shards(&self) -> Vec<usize> {
        self.take().into_iter().map(|(shard, _, _)| shard).collect()
    }
}

impl Post for FakePost {
    fn post(&self, _to: ConnId, _message: Outgoing) -> Result<(), Stopped> {
        panic!("the hub never posts a connection message");
    }
    fn post_publication(&self, shard: usize, publication: Arc<Publication>) -> Result<(), Stopped> {
        self.posted.lock().unwrap().push((
            shard,
            publication.topic().to_owned(),
            publication.payload().to_vec(),
        ));
        if self.stopped.load(Ordering::Relaxed) {
            Err(Stopped)
        } else {
            Ok(())
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Call {
    Subscribe(String),
    Unsubscribe(String),
    Publish(String, Vec<u8>),
}

#[derive(Default)]
struct FakeBroker {
    calls: Mutex<Vec<Call>>,
}

impl FakeBroker {
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl BrokerLink for FakeBroker {
    fn subscribe(&self, topic: &Arc<str>) {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Subscribe(topic.to_string()));
    }
    fn unsubscribe(&self, topic: &Arc<str>) {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Unsubscribe(topic.to_string()));
    }
    fn publish(&self, publication: &Arc<Publication>) {
        self.calls.lock().unwrap().push(Call::Publish(
            publication.topic().to_owned(),
            publication.payload().to_vec(),
        ));
    }
}

fn hub(shards: usize) -> (Arc<Hub>, Arc<FakePost>) {
    let post = Arc::new(FakePost::default());
    let hub = Arc::new(Hub::new(shards, Arc::clone(&post) as Arc<dyn Post>));
    (hub, post)
}

fn with_broker(shards: usize) -> (Arc<Hub>, Arc<FakePost>, Arc<FakeBroker>) {
    let (hub, post) = hub(shards);
    let broker = Arc::new(FakeBroker::default());
    hub.set_broker(Arc::clone(&broker) as Arc<dyn BrokerLink>);
    (hub, post, broker)
}

const ADDED: Change = Change::Added { first: false };
const REMOVED: Change = Change::Removed { last: false };

#[test]
fn interest_is_counted_per_shard_and_summed() {
    let (hub, post) = hub(4);
    assert_eq!(hub.subscriber_count("t"), 0);
    hub.changed(0, "t", Change::Added { first: true });
    hub.changed(3, "t", Change::Added { first: true });
    hub.changed(3, "t", ADDED);
    hub.changed(1, "u", Change::Added { first: true });
    hub.changed(2, "t", Change::None);
    assert_eq!(hub.subscriber_count("t"), 3);
    assert_eq!(hub.subscriber_count("u"), 1);
    assert_eq!(hub.topic_count(), 2);
    let mut topics: Vec<String> = hub.topics().iter().map(|t| t.to_string()).collect();
    topics.sort();
    assert_eq!(topics, ["t", "u"]);

    hub.publish("t", Message::Text("x"), None, None).unwrap();
    let mut shards = post.shards();
    shards.sort();
    assert_eq!(shards, [0, 3], "posted once per interested shard");

    hub.changed(3, "t", REMOVED);
    hub.changed(3, "t", Change::Removed { last: true });
    assert_eq!(hub.subscriber_count("t"), 1);
    hub.publish("t", Message::Text("y"), None, None).unwrap();
    assert_eq!(post.shards(), [0]);
    // A removal for a shard with no count does not go below zero nor touch the others.
    hub.changed(2, "t", REMOVED);
    assert_eq!(hub.subscriber_count("t"), 1);
    hub.changed(0, "t", Change::Removed { last: true });
    assert_eq!(hub.subscriber_count("t"), 0);
    assert_eq!(hub.topic_count(), 1);
    hub.publish("t", Message::Text("z"), None, None).unwrap();
    assert!(post.take().is_empty());
    // Removing from an unknown topic is harmless.
    hub.changed(0, "nothing", REMOVED);
    assert_eq!(hub.topic_count(), 1);
}

#[test]
fn the_broker_hears_of_the_nodes_first_and_last_subscriber_only() {
    let (hub, _post, broker) = with_broker(3);
    hub.changed(0, "t", Change::Added { first: true });
    assert_eq!(broker.take(), [Call::Subscribe("t".into())]);
    hub.changed(0, "t", ADDED);
    hub.changed(2, "t", Change::Added { first: true });
    assert_eq!(broker.take(), []);
    hub.changed(0, "t", REMOVED);
    hub.changed(0, "t", Change::Removed { last: true });
    assert_eq!(broker.take(), [], "shard 2 still has one");
    hub.changed(2, "t", Change::Removed { last: true });
    assert_eq!(broker.take(), [Call::Unsubscribe("t".into())]);
    // Again from nothing: subscribe again.
    hub.changed(1, "t", Change::Added { first: true });
    assert_eq!(broker.take(), [Call::Subscribe("t".into())]);
    // A connection that closes leaves all its topics at once.
    hub.changed(1, "u", Change::Added { first: true });
    assert_eq!(broker.take(), [Call::Subscribe("u".into())]);
    hub.removed(1, [Arc::from("t"), Arc::from("u")]);
    assert_eq!(
        broker.take(),
        [Call::Unsubscribe("t".into()), Call::Unsubscribe("u".into())]
    );
    assert_eq!(hub.topic_count(), 0);
}

#[test]
fn a_publish_goes_to_the_broker_even_without_local_interest() {
    let (hub, post, broker) = with_broker(2);
    hub.publish("t", Message::Binary(&[1, 2]), None, None)
        .unwrap();
    assert_eq!(broker.take(), [Call::Publish("t".into(), vec![1, 2])]);
    assert!(post.take().is_empty());
    hub.changed(1, "t", Change::Added { first: true });
    broker.take();
    hub.publish("t", Message::Text("a"), None, None).unwrap();
    assert_eq!(broker.take(), [Call::Publish("t".into(), b"a".to_vec())]);
    assert_eq!(post.take(), [(1, "t".to_owned(), b"a".to_vec())]);
    // From another node: delivered here, never handed back to the broker.
    let remote = Publication::remote("t", true, b"r").unwrap();
    hub.deliver_remote(remote).unwrap();
    assert_eq!(broker.take(), []);
    assert_eq!(post.take(), [(1, "t".to_owned(), b"r".to_vec())]);
    assert!(Publication::remote("t", true, &[0xff]).is_none());
    let counters = &hub.counters;
    assert_eq!(counters.published.load(Ordering::Relaxed), 2);
    assert_eq!(counters.from_broker.load(Ordering::Relaxed), 1);
}

#[test]
fn deliver_posts_once_to_every_interested_shard_past_64_and_256() {
    let shards = 300;
    let (hub, post) = hub(shards);
    let interested = [0, 1, 63, 64, 65, 127, 128, 200, 255, 256, 257, 299];
    for &shard in &interested {
        hub.changed(shard, "t", Change::Added { first: true });
    }
    // A second subscriber on a shard does not make a second post.
    hub.changed(64, "t", ADDED);
    hub.changed(299, "t", ADDED);
    assert_eq!(hub.subscriber_count("t"), interested.len() + 2);
    let publication = Arc::new(Publication::new("t", Message::Text("m"), None));
    hub.deliver(Arc::clone(&publication)).unwrap();
    let mut shards_posted = post.shards();
    shards_posted.sort();
    assert_eq!(shards_posted, interested.map(|s| s as usize));
    // No subscriber of the topic anywhere: nothing posted.
    let other = Arc::new(Publication::new("other", Message::Text("m"), None));
    hub.deliver(other).unwrap();
    assert!(post.take().is_empty());
    // A stopped shard makes the publish fail, but every shard is still posted to.
    post.stopped.store(true, Ordering::Relaxed);
    assert_eq!(hub.deliver(publication), Err(Stopped));
    assert_eq!(post.take().len(), interested.len());
}

/// Counts the allocations made on this thread while `COUNTING` is set.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        pub(super) static COUNTING: Cell<bool> = const { Cell::new(false) };
        pub(super) static COUNT: Cell<usize> = const { Cell::new(0) };
    }

    pub(super) struct Counting;

    // SAFETY: forwards to the system allocator; the bookkeeping only touches
    // const-initialised thread-locals (no allocation, no destructor).
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = COUNTING.try_with(|on| {
                if on.get() {
                    let _ = COUNT.try_with(|count| count.set(count.get() + 1));
                }
            });
            // SAFETY: the caller's layout, passed on.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: allocated by `alloc` above with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = COUNTING.try_with(|on| {
                if on.get() {
                    let _ = COUNT.try_with(|count| count.set(count.get() + 1));
                }
            });
            // SAFETY: as `alloc`.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// Allocations `f` made on this thread.
    pub(super) fn allocations(f: impl FnOnce()) -> usize {
        COUNT.with(|count| count.set(0));
        COUNTING.with(|on| on.set(true));
        f();
        COUNTING.with(|on| on.set(false));
        COUNT.with(|count| count.get())
    }
}

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

#[test]
fn a_publish_nobody_wants_allocates_nothing_and_posts_nothing() {
    let (hub, post) = hub(4);
    hub.changed(2, "other", Change::Added { first: true });
    let payload = vec![5u8; 4096];
    let made = counting::allocations(|| {
        for _ in 0..10 {
            hub.publish("t", Message::Binary(&payload), None, None)
                .unwrap();
            hub.publish("t", Message::Text("hello"), None, None)
                .unwrap();
        }
    });
    assert_eq!(made, 0, "no interest and no broker: nothing allocated");
    assert!(post.take().is_empty());
    assert_eq!(hub.counters.published.load(Ordering::Relaxed), 20);
    // With interest, one publish allocates the frame and its Arc, not one per shard.
    for shard in [0, 1, 3] {
        hub.changed(shard, "t", Change::Added { first: true });
    }
    // (The fake Post's own recording allocates; count with a Post that does not.)
    let quiet = Arc::new(QuietPost);
    let quiet_hub = Hub::new(4, quiet as Arc<dyn Post>);
    for shard in [0, 1, 3] {
        quiet_hub.changed(shard, "t", Change::Added { first: true });
    }
    let one = |hub: &Hub| {
        counting::allocations(|| {
            hub.publish("t", Message::Binary(&payload), None, None)
                .unwrap();
        })
    };
    let to_three = one(&quiet_hub);
    let single = Hub::new(4, Arc::new(QuietPost) as Arc<dyn Post>);
    single.changed(2, "t", Change::Added { first: true });
    let to_one = one(&single);
    // Measured: 4 = the frame's Vec, the `Bytes` header `Bytes::from` adds when the
    // Vec's capacity exceeds its length, the topic's `Box<str>`, the `Arc`.
    assert_eq!(to_three, to_one, "allocations do not grow with the shards");
    assert!(to_three <= 4, "{to_three} allocations for one publish");
}

/// A `Post` that keeps nothing (so that it allocates nothing itself).
struct QuietPost;

impl Post for QuietPost {
    fn post(&self, _to: ConnId, _message: Outgoing) -> Result<(), Stopped> {
        Ok(())
    }
    fn post_publication(
        &self,
        _shard: usize,
        _publication: Arc<Publication>,
    ) -> Result<(), Stopped> {
        Ok(())
    }
}

#[test]
fn publications_are_encoded_once_as_rfc6455_frames() {
    let text = Publication::new("t", Message::Text("hé"), None);
    assert_eq!(&text.frame()[..], [0x81, 3, b'h', 0xc3, 0xa9]);
    assert_eq!(text.payload(), "hé".as_bytes());
    assert_eq!(text.text(), Some("hé"));
    assert_eq!(text.skip(), None);
    let big = vec![9u8; 70_000];
    let id = ConnId {
        shard: 1,
        token: Token::new(5, 2),
    };
    let binary = Publication::new("t", Message::Binary(&big), Some(id));
    assert_eq!(binary.frame()[..2], [0x82, 127]);
    assert_eq!(binary.frame().len(), 10 + big.len());
    assert_eq!(binary.payload(), &big[..]);
    assert_eq!(binary.text(), None);
    assert_eq!(binary.skip(), Some(id));
    assert!(matches!(binary.message(), Message::Binary(b) if b.len() == 70_000));
}

#[test]
fn shard_topics_report_changes_to_the_hub() {
    let (hub, _post, broker) = with_broker(2);
    let topics = ShardTopics::new(Arc::clone(&hub));
    let (a, b) = (Token::new(1, 1), Token::new(2, 1));
    assert!(topics.subscribe(1, a, "t"));
    assert!(!topics.subscribe(1, a, "t"), "already subscribed");
    assert!(topics.subscribe(1, b, "t"));
    assert!(topics.subscribe(1, a, "u"));
    assert_eq!(hub.subscriber_count("t"), 2);
    assert!(topics.is_subscribed(a, "t") && !topics.is_subscribed(b, "u"));
    assert_eq!(topics.figures(), (2, 3));
    assert_eq!(
        broker.take(),
        [Call::Subscribe("t".into()), Call::Subscribe("u".into())]
    );
    assert!(topics.unsubscribe(1, b, "t"));
    assert!(!topics.unsubscribe(1, b, "t"));
    assert_eq!(hub.subscriber_count("t"), 1);
    topics.remove_subscriber(1, a);
    assert_eq!(
        (hub.subscriber_count("t"), hub.subscriber_count("u")),
        (0, 0)
    );
    assert_eq!(topics.figures(), (0, 0));
    let mut calls = broker.take();
    calls.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        calls,
        [Call::Unsubscribe("t".into()), Call::Unsubscribe("u".into())]
    );
}
