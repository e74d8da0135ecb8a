//! Streams mode: the `XADD` of a publish, the stream ends of new subscriptions, the
//! check for trimmed entries after a reconnect, and reading with `XREAD`.

use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::{Pipeline, RedisResult, Value};

use super::{deliver, is_link_error, Connected, Control, Link, Op, Outgoing, BATCH};
use crate::runtime::redis::wire::{self, EntryId};
use crate::runtime::redis::STREAM_MAXLEN;

/// How long an `XREAD` waits for entries, so that new subscriptions join soon.
pub(super) const READ_BLOCK_MS: u64 = 100;
/// Entries per stream per `XREAD`.
const READ_COUNT: usize = 1000;

/// Adds the `XADD` of `out` (published by `node`) to `pipe`.
pub(super) fn xadd(pipe: &mut Pipeline, node: u64, out: &Outgoing) {
    let publication = &out.publication;
    let kind = if publication.text().is_some() {
        wire::TEXT
    } else {
        wire::BINARY
    };
    pipe.cmd("XADD")
        .arg(wire::stream_key(publication.topic()))
        .arg("MAXLEN")
        .arg("~")
        .arg(STREAM_MAXLEN)
        .arg("*")
        .arg("node")
        .arg(wire::node_field(node))
        .arg("seq")
        .arg(out.seq)
        .arg("kind")
        .arg(&[kind])
        .arg("data")
        .arg(publication.payload())
        .ignore();
}

impl Link {
    /// After a reconnect, `XINFO STREAM` for each topic that had been read (one at a
    /// time: a missing stream is an error answer); else the ends of new topics'
    /// streams (`XREVRANGE .. COUNT 1`, pipelined).
    pub(super) fn next_stream_control(
        &mut self,
        mut writer: MultiplexedConnection,
    ) -> Option<Op<Control>> {
        if !self.check.is_empty() {
            let topics = std::mem::take(&mut self.check);
            return Some(Box::pin(async move {
                let mut answers = Vec::with_capacity(topics.len());
                for topic in topics {
                    let answer = redis::cmd("XINFO")
                        .arg("STREAM")
                        .arg(wire::stream_key(&topic))
                        .query_async::<Value>(&mut writer)
                        .await;
                    match answer {
                        Ok(info) => answers.push((topic, Some(info))),
                        Err(error) if is_link_error(&error) => return Control::Checked(Err(error)),
                        // "ERR no such key": the stream is gone.
                        Err(_) => answers.push((topic, None)),
                    }
                }
                Control::Checked(Ok(answers))
            }));
        }
        if self.fetch.is_empty() {
            return None;
        }
        let count = self.fetch.len().min(BATCH);
        let topics: Vec<Arc<str>> = self.fetch.drain(..count).collect();
        let mut pipe = redis::pipe();
        for topic in &topics {
            pipe.cmd("XREVRANGE")
                .arg(wire::stream_key(topic))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
        }
        Some(Box::pin(async move {
            let answers = pipe.query_async::<Vec<Value>>(&mut writer).await;
            Control::Ends(topics, answers)
        }))
    }

    /// New topics start reading after their stream's last entry.
    pub(super) fn on_ends(&mut self, topics: &[Arc<str>], answers: &[Value]) {
        for (topic, answer) in topics.iter().zip(answers) {
            if let Some(state) = self.topics.get_mut(topic) {
                if state.last.is_none() {
                    state.last = Some(wire::last_entry_id(answer).unwrap_or_default());
                    state.checked = true;
                }
            }
        }
    }

    /// A gap for each topic whose stream lost entries after the last one read.
    pub(super) fn on_checked(&mut self, answers: Vec<(Arc<str>, Option<Value>)>) {
        for (topic, info) in answers {
            let Some(state) = self.topics.get_mut(&topic) else {
                continue;
            };
            let last = state.last.unwrap_or_default();
            let trimmed = match &info {
                None => last != EntryId::ZERO,
                Some(info) => {
                    wire::max_deleted_entry_id(info).is_some_and(|deleted| deleted.after(last))
                }
            };
            state.checked = true;
            if trimmed {
                self.gap(&topic);
            }
        }
    }

    /// One `XREAD` of every topic that is ready, from its last id.
    pub(super) fn next_read(
        &self,
        connected: &Connected,
    ) -> Option<Op<RedisResult<Option<StreamReadReply>>>> {
        let reader = connected.reader.as_ref()?;
        let ready: Vec<(String, EntryId)> = self
            .topics
            .iter()
            .filter(|(_, state)| state.checked)
            .filter_map(|(topic, state)| Some((wire::stream_key(topic), state.last?)))
            .collect();
        if ready.is_empty() {
            return None;
        }
        let mut command = redis::cmd("XREAD");
        command
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(READ_BLOCK_MS)
            .arg("STREAMS");
        for (key, _) in &ready {
            command.arg(key);
        }
        for (_, last) in &ready {
            command.arg(last.to_string());
        }
        let mut reader = reader.clone();
        Some(Box::pin(async move {
            command
                .query_async::<Option<StreamReadReply>>(&mut reader)
                .await
        }))
    }

    /// Delivers what an `XREAD` brought: entries after the topic's last id, not this
    /// node's own, not a copy of one delivered already (by node and `seq`).
    pub(super) fn on_read(&mut self, result: RedisResult<Option<StreamReadReply>>) {
        self.read = None;
        let reply = match result {
            Ok(Some(reply)) => reply,
            Ok(None) => return,
            Err(error) => return self.on_lost(&error.to_string()),
        };
        for key in reply.keys {
            let Some(topic) = wire::topic_of_stream(&key.key) else {
                continue;
            };
            let Some(state) = self.topics.get_mut(topic) else {
                continue;
            };
            let (true, Some(mut last)) = (state.checked, state.last) else {
                continue;
            };
            for entry in &key.ids {
                let Some(id) = EntryId::parse(&entry.id) else {
                    continue;
                };
                if !id.after(last) {
                    continue;
                }
                last = id;
                state.last = Some(id);
                let Some(incoming) = wire::decode_entry(&entry.map) else {
                    continue;
                };
                if incoming.node == self.node {
                    continue;
                }
                let seen = state.seen.entry(incoming.node).or_default();
                if incoming.seq <= *seen {
                    continue;
                }
                *seen = incoming.seq;
                deliver(&self.hub, topic, &incoming);
            }
        }
    }
}
