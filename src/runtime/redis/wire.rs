//! What ringws writes to Redis and reads back: channel and stream names, the pub/sub
//! payload, the stream entry's fields, stream ids (see the module docs of
//! [`super`] for the format). Pure functions, no I/O.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;

use redis::Value;

/// The prefix of a topic's pub/sub channel: `ringws:<topic>`.
pub(super) const CHANNEL_PREFIX: &str = "ringws:";
/// The prefix of a topic's stream key: `ringws:s:<topic>`.
pub(super) const STREAM_PREFIX: &str = "ringws:s:";

/// The kind byte of a text message.
pub(super) const TEXT: u8 = b't';
/// The kind byte of a binary message.
pub(super) const BINARY: u8 = b'b';

/// The pub/sub channel of `topic`.
pub(super) fn channel(topic: &str) -> String {
    format!("{CHANNEL_PREFIX}{topic}")
}

/// The topic of a pub/sub channel, if it is one of ours.
pub(super) fn topic_of_channel(channel: &str) -> Option<&str> {
    channel.strip_prefix(CHANNEL_PREFIX)
}

/// The stream key of `topic`.
pub(super) fn stream_key(topic: &str) -> String {
    format!("{STREAM_PREFIX}{topic}")
}

/// The topic of a stream key, if it is one of ours.
pub(super) fn topic_of_stream(key: &str) -> Option<&str> {
    key.strip_prefix(STREAM_PREFIX)
}

/// A pub/sub message: the publishing node's id (8 bytes, big-endian), the kind byte
/// ([`TEXT`] or [`BINARY`]), then the payload as published.
pub(super) fn encode_pubsub(node: u64, text: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&node.to_be_bytes());
    out.push(if text { TEXT } else { BINARY });
    out.extend_from_slice(payload);
    out
}

/// A message as one node passed it to the others.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Incoming<'a> {
    /// The publishing node.
    pub(super) node: u64,
    /// The node's sequence number of the message (streams only; 0 in pub/sub).
    pub(super) seq: u64,
    /// A text message (else binary).
    pub(super) text: bool,
    /// The payload as published.
    pub(super) data: &'a [u8],
}

/// Reads a pub/sub message; `None` when it is not in our format.
pub(super) fn decode_pubsub(message: &[u8]) -> Option<Incoming<'_>> {
    let (node, rest) = message.split_first_chunk::<8>()?;
    let (&kind, data) = rest.split_first()?;
    let text = match kind {
        TEXT => true,
        BINARY => false,
        _ => return None,
    };
    Some(Incoming {
        node: u64::from_be_bytes(*node),
        seq: 0,
        text,
        data,
    })
}

/// The `node` field of a stream entry: the node id as 16 lowercase hex digits.
pub(super) fn node_field(node: u64) -> String {
    format!("{node:016x}")
}

/// Reads a stream entry's fields (`node`, `seq`, `kind`, `data`); `None` when it is not
/// in our format.
pub(super) fn decode_entry(fields: &HashMap<String, Value>) -> Option<Incoming<'_>> {
    let bytes = |name: &str| match fields.get(name)? {
        Value::BulkString(bytes) => Some(bytes.as_slice()),
        _ => None,
    };
    let node = u64::from_str_radix(std::str::from_utf8(bytes("node")?).ok()?, 16).ok()?;
    let seq = std::str::from_utf8(bytes("seq")?).ok()?.parse().ok()?;
    let text = match bytes("kind")? {
        [TEXT] => true,
        [BINARY] => false,
        _ => return None,
    };
    Some(Incoming {
        node,
        seq,
        text,
        data: bytes("data")?,
    })
}

/// A stream entry id, `<milliseconds>-<sequence>`, ordered as Redis orders them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct EntryId {
    ms: u64,
    seq: u64,
}

impl EntryId {
    /// `0-0`: before every entry.
    pub(super) const ZERO: EntryId = EntryId { ms: 0, seq: 0 };

    /// Parses `ms-seq` (or a bare `ms`).
    pub(super) fn parse(text: &str) -> Option<EntryId> {
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        Some(EntryId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// Parses an id Redis answered as a string value.
    pub(super) fn from_value(value: &Value) -> Option<EntryId> {
        match value {
            Value::BulkString(bytes) => EntryId::parse(std::str::from_utf8(bytes).ok()?),
            Value::SimpleString(text) => EntryId::parse(text),
            _ => None,
        }
    }

    /// Compares with another id (for readability at call sites).
    pub(super) fn after(self, other: EntryId) -> bool {
        self.cmp(&other) == Ordering::Greater
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// The id of the last entry in an `XREVRANGE key + - COUNT 1` answer: `0-0` for an
/// empty or missing stream.
pub(super) fn last_entry_id(answer: &Value) -> Option<EntryId> {
    match answer {
        Value::Array(entries) => match entries.first() {
            None => Some(EntryId::ZERO),
            Some(Value::Array(entry)) => EntryId::from_value(entry.first()?),
            Some(_) => None,
        },
        Value::Nil => Some(EntryId::ZERO),
        _ => None,
    }
}

/// The `max-deleted-entry-id` of an `XINFO STREAM` answer (Redis 7.0 and later): the
/// largest id trimmed or deleted from the stream. `None` when the answer lacks it.
pub(super) fn max_deleted_entry_id(answer: &Value) -> Option<EntryId> {
    let pairs: Vec<(&Value, &Value)> = match answer {
        Value::Array(items) => items
            .chunks_exact(2)
            .map(|pair| (&pair[0], &pair[1]))
            .collect(),
        Value::Map(items) => items.iter().map(|(k, v)| (k, v)).collect(),
        _ => return None,
    };
    pairs.into_iter().find_map(|(key, value)| {
        let name = match key {
            Value::BulkString(bytes) => bytes.as_slice(),
            Value::SimpleString(text) => text.as_bytes(),
            _ => return None,
        };
        (name == b"max-deleted-entry-id")
            .then(|| EntryId::from_value(value))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &[u8]) -> Value {
        Value::BulkString(text.to_vec())
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(channel("a:b"), "ringws:a:b");
        assert_eq!(topic_of_channel("ringws:a:b"), Some("a:b"));
        assert_eq!(topic_of_channel("other"), None);
        assert_eq!(stream_key("news"), "ringws:s:news");
        assert_eq!(topic_of_stream("ringws:s:news"), Some("news"));
        assert_eq!(topic_of_stream("ringws:news"), None);
    }

    #[test]
    fn pubsub_payload_is_binary_safe() {
        let payload = [0u8, 255, 10, 13, 0];
        let wire = encode_pubsub(0x0102_0304_0506_0708, false, &payload);
        assert_eq!(&wire[..9], &[1, 2, 3, 4, 5, 6, 7, 8, b'b']);
        let incoming = decode_pubsub(&wire).expect("ours");
        assert_eq!(incoming.node, 0x0102_0304_0506_0708);
        assert!(!incoming.text);
        assert_eq!(incoming.data, payload);
        let text = encode_pubsub(7, true, "héllo".as_bytes());
        let incoming = decode_pubsub(&text).expect("ours");
        assert!(incoming.text);
        assert_eq!(incoming.data, "héllo".as_bytes());
        assert_eq!(
            decode_pubsub(&encode_pubsub(7, true, b""))
                .expect("empty")
                .data,
            b""
        );
        assert_eq!(decode_pubsub(b"short"), None);
        assert_eq!(decode_pubsub(b"12345678x"), None);
    }

    #[test]
    fn stream_entries_are_read_back() {
        let mut fields = HashMap::new();
        fields.insert("node".to_owned(), bulk(node_field(0xabc).as_bytes()));
        fields.insert("seq".to_owned(), bulk(b"42"));
        fields.insert("kind".to_owned(), bulk(b"b"));
        fields.insert("data".to_owned(), bulk(&[0, 1, 2]));
        let incoming = decode_entry(&fields).expect("ours");
        assert_eq!(
            incoming,
            Incoming {
                node: 0xabc,
                seq: 42,
                text: false,
                data: &[0, 1, 2]
            }
        );
        fields.insert("kind".to_owned(), bulk(b"x"));
        assert_eq!(decode_entry(&fields), None);
        fields.remove("kind");
        assert_eq!(decode_entry(&fields), None);
    }

    #[test]
    fn entry_ids_order_like_redis() {
        let a = EntryId::parse("1700000000000-5").expect("id");
        let b = EntryId::parse("1700000000000-12").expect("id");
        let c = EntryId::parse("1700000000001").expect("id");
        assert!(b.after(a) && c.after(b) && !a.after(a));
        assert_eq!(a.to_string(), "1700000000000-5");
        assert_eq!(EntryId::parse("x-1"), None);
        assert_eq!(EntryId::ZERO.to_string(), "0-0");
    }

    #[test]
    fn stream_answers_are_parsed() {
        assert_eq!(last_entry_id(&Value::Array(vec![])), Some(EntryId::ZERO));
        let entry = Value::Array(vec![bulk(b"5-1"), Value::Array(vec![])]);
        assert_eq!(
            last_entry_id(&Value::Array(vec![entry])),
            EntryId::parse("5-1")
        );
        let info = Value::Array(vec![
            bulk(b"length"),
            Value::Int(3),
            bulk(b"max-deleted-entry-id"),
            bulk(b"9-2"),
        ]);
        assert_eq!(max_deleted_entry_id(&info), EntryId::parse("9-2"));
        assert_eq!(max_deleted_entry_id(&Value::Array(vec![])), None);
    }
}
