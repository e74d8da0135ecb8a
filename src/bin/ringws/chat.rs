//! The chat demo of `ringws serve`: a page at `/` (embedded from `assets/chat/`, so the
//! binary is self-contained) and WebSocket rooms at `/chat`. A member starts in the room
//! `lobby`; `/join NAME` moves it to the room NAME, `/nick NAME` renames it, and any
//! other text line is said to its room, as JSON, to every member of the room, the
//! sender included.
//!
//! Rooms are pub/sub topics (`chat/NAME`, see `ringws::pubsub`): a member subscribes to
//! its room's topic and every event of the room is published there, so members on every
//! shard (and, with `ringws serve --redis`, on every node sharing the Redis server) hear
//! it. There is no shared list of members; the order of events is pub/sub's (each
//! member's own events reach the others in the order it caused them). No event carries
//! a member count: it could not be honest across nodes. Events sent to members (one
//! JSON object per message, strings escaped but never HTML-escaped: the page shows
//! them as text):
//!
//! - `{"type":"welcome","name":"guest-1","shard":0,"room":"lobby"}` to a new member;
//! - `{"type":"join","name":..,"shard":..,"room":..}` to the room's others when a
//!   member arrives, with `"self":true` added in the copy a member that used `/join`
//!   gets; `{"type":"leave","name":..,"room":..}` when one leaves the room (`/join`
//!   elsewhere, or its connection ends);
//! - `{"type":"nick","from":..,"to":..,"room":..}` after `/nick NAME`, with
//!   `"self":true` added in the copy the renamed member gets;
//! - `{"type":"message","from":..,"shard":..,"text":..,"room":..}`;
//! - `{"type":"error","text":..}` to the one member whose `/join` was refused (a room
//!   name is 1 to 64 bytes, no control characters), or who is in that room already.
//!
//! (tests/chat.rs includes this file, so it uses the public API only.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ringws::{Accept, Builder, Conn, Handler, HttpResponse, Message, WebSocketOptions};

const INDEX: &str = include_str!("../../../assets/chat/index.html");
const SCRIPT: &str = include_str!("../../../assets/chat/chat.js");
const STYLE: &str = include_str!("../../../assets/chat/chat.css");
const ICON: &str = include_str!("../../../assets/chat/favicon.svg");

/// The longest chat line relayed, in bytes (longer ones are dropped).
const MAX_LINE: usize = 4096;
/// The longest name kept, in characters.
const MAX_NAME: usize = 32;
/// The longest room name, in bytes.
pub const MAX_ROOM: usize = 64;
/// The room every member starts in.
pub const LOBBY: &str = "lobby";
/// The prefix of the rooms' topics, so that a room cannot be another service's topic.
pub const ROOM_TOPIC_PREFIX: &str = "chat/";

/// Adds the chat page (`/`, `/chat.js`, `/chat.css`, the icon `/favicon.svg`, and an
/// empty `204` for `/favicon.ico`, which browsers ask for on every page; any other
/// path not taken by a longer route gets 404) and the rooms (`/chat`, accepting the
/// browser origins and the compression `options` allow) to `builder`.
pub fn add_chat(builder: Builder, options: WebSocketOptions) -> Builder {
    let guests = Arc::new(AtomicU64::new(0));
    builder
        .http("/", |request| match request.path() {
            "/" | "/index.html" => HttpResponse::new(200, "text/html; charset=utf-8", INDEX),
            "/chat.js" => HttpResponse::new(200, "text/javascript; charset=utf-8", SCRIPT),
            "/chat.css" => HttpResponse::new(200, "text/css; charset=utf-8", STYLE),
            "/favicon.svg" => HttpResponse::new(200, "image/svg+xml", ICON),
            "/favicon.ico" => HttpResponse::new(204, "", ""),
            other => HttpResponse::text(404, format!("no route for {other}\n")),
        })
        .websocket_with_options("/chat", options, move |_| {
            Ok(Accept::new(Member::new(Arc::clone(&guests))))
        })
}

/// A chat member's handler, for servers that mount the rooms themselves (the axum
/// example): `guests` numbers the guests of the process.
#[allow(dead_code)] // `ringws serve` mounts the rooms through `add_chat`
pub fn member(guests: Arc<AtomicU64>) -> impl Handler {
    Member::new(guests)
}

/// The topic of room `room`.
fn topic(room: &str) -> String {
    format!("{ROOM_TOPIC_PREFIX}{room}")
}

/// Why `room` cannot be a room's name, if it cannot.
fn room_error(room: &str) -> Option<&'static str> {
    if room.is_empty() {
        Some("a room needs a name: /join NAME")
    } else if room.len() > MAX_ROOM {
        Some("a room name is at most 64 bytes")
    } else if room.chars().any(char::is_control) {
        Some("a room name has no control characters")
    } else {
        None
    }
}

/// One member's connection.
struct Member {
    /// Numbers the guests of this process (`guest-N`).
    guests: Arc<AtomicU64>,
    name: String,
    room: String,
}

impl Member {
    fn new(guests: Arc<AtomicU64>) -> Member {
        Member {
            guests,
            name: String::new(),
            room: LOBBY.to_owned(),
        }
    }

    /// Publishes `event` (a JSON object without its closing brace) to the room's
    /// others, with the room added.
    fn tell_others(&self, conn: &mut Conn<'_>, event: &str) {
        let room = json_string(&self.room);
        conn.publish(
            &topic(&self.room),
            Message::Text(&format!(r#"{event},"room":{room}}}"#)),
        );
    }

    /// Enters `self.room`: subscribes and announces the arrival to the others; returns
    /// the join event (without its closing brace).
    fn enter(&self, conn: &mut Conn<'_>) -> String {
        conn.subscribe(&topic(&self.room));
        let (name, shard) = (json_string(&self.name), conn.id().shard());
        let join = format!(r#"{{"type":"join","name":{name},"shard":{shard}"#);
        self.tell_others(conn, &join);
        join
    }

    /// Leaves `self.room`: unsubscribes and announces the departure to the others.
    fn leave(&self, conn: &mut Conn<'_>) {
        conn.unsubscribe(&topic(&self.room));
        let name = json_string(&self.name);
        self.tell_others(conn, &format!(r#"{{"type":"leave","name":{name}"#));
    }

    fn join(&mut self, conn: &mut Conn<'_>, room: &str) {
        let refusal = if room == self.room {
            Some("you are in that room already")
        } else {
            room_error(room)
        };
        if let Some(reason) = refusal {
            let reason = json_string(reason);
            conn.send_text(&format!(r#"{{"type":"error","text":{reason}}}"#));
            return;
        }
        self.leave(conn);
        self.room = room.to_owned();
        let join = self.enter(conn);
        let room = json_string(&self.room);
        conn.send_text(&format!(r#"{join},"room":{room},"self":true}}"#));
    }

    fn rename(&mut self, conn: &mut Conn<'_>, name: &str) {
        let name: String = name
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_NAME)
            .collect();
        if name.is_empty() {
            return;
        }
        let old = std::mem::replace(&mut self.name, name);
        let (from, to) = (json_string(&old), json_string(&self.name));
        let event = format!(r#"{{"type":"nick","from":{from},"to":{to}"#);
        self.tell_others(conn, &event);
        let room = json_string(&self.room);
        conn.send_text(&format!(r#"{event},"room":{room},"self":true}}"#));
    }
}

impl Handler for Member {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let number = self.guests.fetch_add(1, Ordering::Relaxed) + 1;
        self.name = format!("guest-{number}");
        let shard = conn.id().shard();
        let (name, room) = (json_string(&self.name), json_string(&self.room));
        // The welcome is queued before the arrival is published: the new member hears
        // of itself first.
        conn.send_text(&format!(
            r#"{{"type":"welcome","name":{name},"shard":{shard},"room":{room}}}"#
        ));
        self.enter(conn);
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        if text.len() > MAX_LINE {
            return;
        }
        if let Some(name) = text.strip_prefix("/nick ") {
            self.rename(conn, name.trim());
            return;
        }
        if let Some(room) = text.strip_prefix("/join ") {
            self.join(conn, room.trim());
            return;
        }
        if text.trim() == "/join" {
            self.join(conn, "");
            return;
        }
        let (from, text, room) = (
            json_string(&self.name),
            json_string(text),
            json_string(&self.room),
        );
        let shard = conn.id().shard();
        conn.publish_to_all(
            &topic(&self.room),
            Message::Text(&format!(
                r#"{{"type":"message","from":{from},"shard":{shard},"text":{text},"room":{room}}}"#
            )),
        );
    }

    fn on_close(&mut self, conn: &mut Conn<'_>, _reason: ringws::CloseReason) {
        self.leave(conn);
    }
}

/// `text` as a JSON string literal, quotes included.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Control characters, and the two separators JavaScript once refused.
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("hi"), r#""hi""#);
        assert_eq!(
            json_string("a\"b\\c\nd\u{1}\u{2028}é"),
            r#""a\"b\\c\nd\u0001\u2028é""#
        );
    }
}
