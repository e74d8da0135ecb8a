//! The pub/sub services of `ringws serve`:
//!
//! - `/broadcast`: every connection is subscribed to the topic `broadcast` when it
//!   opens, and every message it sends (text or binary) is published to all of them,
//!   the sender included: what uWebSockets' `benchmarks/broadcast_test.c` expects (N
//!   clients each send one message and each receives all N).
//! - `/pubsub`: a small JSON protocol over text messages (topics of the `/pubsub`
//!   service live apart from the chat's rooms and `/broadcast`):
//!
//!   | client sends                      | server answers                          |
//!   |-----------------------------------|-----------------------------------------|
//!   | `{"subscribe":"T"}`               | `{"subscribed":"T"}`                    |
//!   | `{"unsubscribe":"T"}`             | `{"unsubscribed":"T"}`                  |
//!   | `{"publish":"T","data":"TEXT"}`   | nothing; every other subscriber of T    |
//!   |                                   | receives TEXT as a text message, as is  |
//!   | anything else                     | `{"error":"REASON"}`, and stays open    |
//!
//!   Each command is a JSON object with exactly those keys, each value a string; a
//!   topic is 1 to 256 bytes. Subscribing twice or unsubscribing a topic one is not
//!   subscribed to is answered the same (nothing changes); a connection holds at most
//!   1024 topics. With `--redis`, both services reach the subscribers of every node.
//!
//! (tests/serve_pubsub.rs includes this file, so it uses the public API only.)

use ringws::{Accept, Builder, Conn, Handler, Message, WebSocketOptions};
use serde_json::Value;

/// The topic every `/broadcast` connection is subscribed to.
pub const BROADCAST_TOPIC: &str = "broadcast";
/// The prefix of the `/pubsub` service's topics.
pub const PUBSUB_TOPIC_PREFIX: &str = "pubsub/";
/// The longest `/pubsub` topic name, in bytes.
pub const MAX_TOPIC: usize = 256;
/// The most topics one `/pubsub` connection may be subscribed to at once.
pub const MAX_TOPICS: usize = 1024;

/// The `/pubsub` service's error reasons (the `REASON` of `{"error":"REASON"}`).
pub mod reason {
    /// A binary message.
    pub const BINARY: &str = "binary messages are not understood: send JSON text";
    /// A text message that is not JSON.
    pub const NOT_JSON: &str = "not JSON";
    /// JSON, but not an object.
    pub const NOT_OBJECT: &str = "not a JSON object";
    /// An object that is none of the three commands.
    pub const UNKNOWN: &str =
        r#"expected {"subscribe":T}, {"unsubscribe":T} or {"publish":T,"data":TEXT}"#;
    /// A topic that is not a string of 1 to 256 bytes.
    pub const TOPIC: &str = "a topic is a string of 1 to 256 bytes";
    /// A publish whose `data` is not a string.
    pub const DATA: &str = "data must be a string";
    /// A subscribe past the connection's limit.
    pub const TOO_MANY: &str = "too many topics: 1024 per connection";
}

/// Adds `/broadcast` and `/pubsub` (with the route `options`: browser origins,
/// compression) to `builder`.
pub fn add_pubsub_routes(builder: Builder, options: WebSocketOptions) -> Builder {
    builder
        .websocket_with_options("/broadcast", options.clone(), |_| {
            Ok(Accept::new(Broadcast))
        })
        .websocket_with_options("/pubsub", options, |_| Ok(Accept::new(PubSub::default())))
}

/// A `/broadcast` connection.
struct Broadcast;

impl Handler for Broadcast {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        conn.subscribe(BROADCAST_TOPIC);
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        conn.publish_to_all(BROADCAST_TOPIC, message);
    }
}

/// A `/pubsub` command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `{"subscribe":"T"}`.
    Subscribe(String),
    /// `{"unsubscribe":"T"}`.
    Unsubscribe(String),
    /// `{"publish":"T","data":"TEXT"}`.
    Publish {
        /// T.
        topic: String,
        /// TEXT.
        data: String,
    },
}

/// Reads a `/pubsub` command; the error is one of [`reason`]'s.
pub fn parse_command(text: &str) -> Result<Command, &'static str> {
    let value: Value = serde_json::from_str(text).map_err(|_| reason::NOT_JSON)?;
    let Value::Object(mut object) = value else {
        return Err(reason::NOT_OBJECT);
    };
    let topic = |value: Value| match value {
        Value::String(topic) if !topic.is_empty() && topic.len() <= MAX_TOPIC => Ok(topic),
        _ => Err(reason::TOPIC),
    };
    match object.len() {
        1 => {
            if let Some(value) = object.remove("subscribe") {
                return topic(value).map(Command::Subscribe);
            }
            if let Some(value) = object.remove("unsubscribe") {
                return topic(value).map(Command::Unsubscribe);
            }
            Err(reason::UNKNOWN)
        }
        2 => match (object.remove("publish"), object.remove("data")) {
            (Some(value), Some(data)) => {
                let topic = topic(value)?;
                let Value::String(data) = data else {
                    return Err(reason::DATA);
                };
                Ok(Command::Publish { topic, data })
            }
            _ => Err(reason::UNKNOWN),
        },
        _ => Err(reason::UNKNOWN),
    }
}

/// `{"KEY":"VALUE"}`, the value escaped as JSON.
fn answer(key: &str, value: &str) -> String {
    let mut object = serde_json::Map::new();
    object.insert(key.to_owned(), Value::String(value.to_owned()));
    Value::Object(object).to_string()
}

/// A `/pubsub` connection.
#[derive(Default)]
struct PubSub {
    /// Topics this connection is subscribed to.
    topics: usize,
}

impl PubSub {
    fn run(&mut self, conn: &mut Conn<'_>, command: Command) -> Result<(), &'static str> {
        match command {
            Command::Subscribe(name) => {
                let topic = format!("{PUBSUB_TOPIC_PREFIX}{name}");
                if !conn.is_subscribed(&topic) {
                    if self.topics >= MAX_TOPICS {
                        return Err(reason::TOO_MANY);
                    }
                    conn.subscribe(&topic);
                    self.topics += 1;
                }
                conn.send_text(&answer("subscribed", &name));
            }
            Command::Unsubscribe(name) => {
                if conn.unsubscribe(&format!("{PUBSUB_TOPIC_PREFIX}{name}")) {
                    self.topics -= 1;
                }
                conn.send_text(&answer("unsubscribed", &name));
            }
            Command::Publish { topic, data } => {
                conn.publish(
                    &format!("{PUBSUB_TOPIC_PREFIX}{topic}"),
                    Message::Text(&data),
                );
            }
        }
        Ok(())
    }
}

impl Handler for PubSub {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        let outcome = match message {
            Message::Text(text) => parse_command(text).and_then(|command| self.run(conn, command)),
            Message::Binary(_) => Err(reason::BINARY),
        };
        if let Err(reason) = outcome {
            conn.send_text(&answer("error", reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{answer, parse_command, reason, Command};

    #[test]
    fn commands_are_read_strictly() {
        assert_eq!(
            parse_command(r#"{"subscribe":"t"}"#),
            Ok(Command::Subscribe("t".into()))
        );
        assert_eq!(
            parse_command(r#" { "unsubscribe" : "a\"b" } "#),
            Ok(Command::Unsubscribe("a\"b".into()))
        );
        assert_eq!(
            parse_command(r#"{"data":"<b>x</b>","publish":"t"}"#),
            Ok(Command::Publish {
                topic: "t".into(),
                data: "<b>x</b>".into()
            })
        );
        let long = "t".repeat(257);
        for (text, why) in [
            ("", reason::NOT_JSON),
            ("subscribe t", reason::NOT_JSON),
            (r#"{"subscribe":"t"} x"#, reason::NOT_JSON),
            (r#"["subscribe","t"]"#, reason::NOT_OBJECT),
            ("{}", reason::UNKNOWN),
            (r#"{"subscribe":"t","x":1}"#, reason::UNKNOWN),
            (r#"{"publish":"t"}"#, reason::UNKNOWN),
            (r#"{"publish":"t","text":"x"}"#, reason::UNKNOWN),
            (r#"{"subscribe":""}"#, reason::TOPIC),
            (r#"{"subscribe":1}"#, reason::TOPIC),
            (&format!(r#"{{"subscribe":"{long}"}}"#), reason::TOPIC),
            (r#"{"publish":"t","data":1}"#, reason::DATA),
        ] {
            assert_eq!(parse_command(text), Err(why), "{text}");
        }
        assert!(parse_command(&format!(r#"{{"subscribe":"{}"}}"#, &long[1..])).is_ok());
    }

    #[test]
    fn answers_are_json() {
        assert_eq!(answer("subscribed", "a\"b"), r#"{"subscribed":"a\"b"}"#);
        assert_eq!(
            answer("error", reason::UNKNOWN),
            r#"{"error":"expected {\"subscribe\":T}, {\"unsubscribe\":T} or {\"publish\":T,\"data\":TEXT}"}"#
        );
    }
}
