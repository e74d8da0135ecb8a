//! One shard's topic table: topic → the shard's subscribers, subscriber → its topics.
//!
//! Plain data, owned by one shard thread: no locks, no atomics. A subscriber is the
//! token of a connection or of a SockJS session. Fan-out walks a topic's subscribers
//! as a dense `Vec`; unsubscribing swaps the last one into the hole (the position of
//! each subscriber is kept beside it), so both are O(1).

use std::collections::HashMap;
use std::sync::Arc;

use crate::conn::Token;

/// The shard's subscribers of one topic.
#[derive(Default)]
struct Topic {
    /// Dense, for the fan-out loop.
    subscribers: Vec<Token>,
    /// Where each subscriber sits in `subscribers`.
    position: HashMap<Token, usize>,
}

/// What a change to the table did to the topic's presence on this shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing changed (already subscribed, or not subscribed).
    None,
    /// The topic gained a subscriber; `first` when it had none on this shard.
    Added { first: bool },
    /// The topic lost a subscriber; `last` when it has none left on this shard.
    Removed { last: bool },
}

/// A shard's topic table.
#[derive(Default)]
pub(crate) struct TopicTable {
    topics: HashMap<Arc<str>, Topic>,
    /// Each subscriber's topics, to drop them all when it ends.
    by_subscriber: HashMap<Token, Vec<Arc<str>>>,
    /// Subscriber × topic pairs (kept as it changes: the shard reads it every turn).
    subscriptions: usize,
}

impl TopicTable {
    /// Subscribes `token` to `topic` (idempotent).
    pub(crate) fn subscribe(&mut self, token: Token, topic: &str) -> Change {
        if let Some((name, entry)) = self.topics.get_key_value(topic) {
            if entry.position.contains_key(&token) {
                return Change::None;
            }
            let name = Arc::clone(name);
            self.insert(token, name);
            return Change::Added { first: false };
        }
        let name: Arc<str> = Arc::from(topic);
        self.topics.insert(Arc::clone(&name), Topic::default());
        self.insert(token, name);
        Change::Added { first: true }
    }

    fn insert(&mut self, token: Token, name: Arc<str>) {
        if let Some(entry) = self.topics.get_mut(&name) {
            entry.position.insert(token, entry.subscribers.len());
            entry.subscribers.push(token);
        }
        self.by_subscriber.entry(token).or_default().push(name);
        self.subscriptions += 1;
    }

    /// Unsubscribes `token` from `topic` (idempotent).
    pub(crate) fn unsubscribe(&mut self, token: Token, topic: &str) -> Change {
        let change = self.remove_from_topic(token, topic);
        if change != Change::None {
            if let Some(topics) = self.by_subscriber.get_mut(&token) {
                topics.retain(|name| &**name != topic);
                if topics.is_empty() {
                    self.by_subscriber.remove(&token);
                }
            }
        }
        change
    }

    fn remove_from_topic(&mut self, token: Token, topic: &str) -> Change {
        let Some(entry) = self.topics.get_mut(topic) else {
            return Change::None;
        };
        let Some(at) = entry.position.remove(&token) else {
            return Change::None;
        };
        entry.subscribers.swap_remove(at);
        self.subscriptions -= 1;
        if let Some(&moved) = entry.subscribers.get(at) {
            entry.position.insert(moved, at);
        }
        let last = entry.subscribers.is_empty();
        if last {
            self.topics.remove(topic);
        }
        Change::Removed { last }
    }

    /// Drops every subscription of `token` (its connection or session ended); returns
    /// the topics it left.
    pub(crate) fn remove_subscriber(&mut self, token: Token) -> Vec<Arc<str>> {
        let Some(topics) = self.by_subscriber.remove(&token) else {
            return Vec::new();
        };
        for name in &topics {
            self.remove_from_topic(token, name);
        }
        topics
    }

    /// True when `token` is subscribed to `topic`.
    pub(crate) fn is_subscribed(&self, token: Token, topic: &str) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|entry| entry.position.contains_key(&token))
    }

    /// Copies `topic`'s subscribers into `out` (cleared first): the fan-out walks the
    /// copy, so delivering may change the table.
    pub(crate) fn subscribers_into(&self, topic: &str, out: &mut Vec<Token>) {
        out.clear();
        if let Some(entry) = self.topics.get(topic) {
            out.extend_from_slice(&entry.subscribers);
        }
    }

    /// How many of this shard's subscribers `topic` has.
    #[cfg(test)]
    pub(crate) fn count(&self, topic: &str) -> usize {
        self.topics
            .get(topic)
            .map_or(0, |entry| entry.subscribers.len())
    }

    /// Topics with at least one subscriber on this shard.
    pub(crate) fn topics(&self) -> usize {
        self.topics.len()
    }

    /// Subscriptions on this shard (subscriber × topic pairs).
    pub(crate) fn subscriptions(&self) -> usize {
        self.subscriptions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(i: u32) -> Token {
        Token::new(i, 1)
    }

    #[test]
    fn subscribing_is_idempotent_and_reports_the_first_subscriber() {
        let mut table = TopicTable::default();
        assert_eq!(table.subscribe(t(1), "news"), Change::Added { first: true });
        assert_eq!(table.subscribe(t(1), "news"), Change::None);
        assert_eq!(
            table.subscribe(t(2), "news"),
            Change::Added { first: false }
        );
        assert_eq!(table.count("news"), 2);
        assert!(table.is_subscribed(t(1), "news"));
        assert!(!table.is_subscribed(t(3), "news"));
        assert_eq!((table.topics(), table.subscriptions()), (1, 2));
    }

    #[test]
    fn unsubscribing_keeps_the_others_and_reports_the_last() {
        let mut table = TopicTable::default();
        for i in 0..5 {
            table.subscribe(t(i), "a");
        }
        assert_eq!(
            table.unsubscribe(t(0), "a"),
            Change::Removed { last: false }
        );
        assert_eq!(table.unsubscribe(t(0), "a"), Change::None);
        assert_eq!(table.unsubscribe(t(9), "a"), Change::None);
        assert_eq!(table.unsubscribe(t(0), "nothing"), Change::None);
        let mut out = Vec::new();
        table.subscribers_into("a", &mut out);
        out.sort();
        assert_eq!(out, [t(1), t(2), t(3), t(4)]);
        // The swapped-in subscriber can still be removed by its position.
        for i in [4, 2, 1] {
            assert_eq!(
                table.unsubscribe(t(i), "a"),
                Change::Removed { last: false }
            );
        }
        assert_eq!(table.unsubscribe(t(3), "a"), Change::Removed { last: true });
        assert_eq!((table.topics(), table.subscriptions()), (0, 0));
        table.subscribers_into("a", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_subscriber_that_ends_leaves_every_topic() {
        let mut table = TopicTable::default();
        table.subscribe(t(1), "a");
        table.subscribe(t(1), "b");
        table.subscribe(t(2), "b");
        let mut left = table.remove_subscriber(t(1));
        left.sort();
        assert_eq!(left, [Arc::from("a"), Arc::from("b")]);
        assert_eq!(table.count("b"), 1);
        assert_eq!(table.count("a"), 0);
        assert!(table.remove_subscriber(t(1)).is_empty());
        assert_eq!((table.topics(), table.subscriptions()), (1, 1));
    }
}
