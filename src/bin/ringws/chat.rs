//! The chat demo of `ringws serve`: a page at `/` (embedded from `assets/chat/`, so the
//! binary is self-contained) and a WebSocket room at `/chat` where every text message
//! a member sends is broadcast, as JSON, to every member, the sender included.
//!
//! Members live on whichever shard accepted them; the room is a shared list of
//! [`ConnHandle`]s, and a broadcast posts to each member's owning shard through its
//! mailbox, under the room's lock, so every member gets the events in the same order.
//! Events sent to members (one JSON object per message; `members` is the count after
//! the event):
//!
//! - `{"type":"welcome","name":"guest-1","shard":0,"members":1}` to a new member;
//! - `{"type":"join","name":..,"shard":..,"members":..}` to the others, and
//!   `{"type":"leave","name":..,"members":..}`;
//! - `{"type":"nick","from":..,"to":..}` after `/nick NAME`, with `"self":true` added
//!   in the copy the renamed member gets;
//! - `{"type":"message","from":..,"shard":..,"text":..}`.
//!
//! (tests/chat.rs includes this file, so it uses the public API only.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ringws::handshake::OriginPolicy;
use ringws::{
    Accept, Builder, Conn, ConnHandle, ConnId, Handler, HttpResponse, Message, WebSocketOptions,
};

const INDEX: &str = include_str!("../../../assets/chat/index.html");
const SCRIPT: &str = include_str!("../../../assets/chat/chat.js");
const STYLE: &str = include_str!("../../../assets/chat/chat.css");
const ICON: &str = include_str!("../../../assets/chat/favicon.svg");

/// The longest chat line relayed, in bytes (longer ones are dropped).
const MAX_LINE: usize = 4096;
/// The longest name kept, in characters.
const MAX_NAME: usize = 32;

/// Adds the chat page (`/`, `/chat.js`, `/chat.css`, the icon `/favicon.svg`, and an
/// empty `204` for `/favicon.ico`, which browsers ask for on every page; any other
/// path not taken by a longer route gets 404) and the room (`/chat`, accepting the
/// browser origins `origins` allows) to `builder`.
pub fn add_chat(builder: Builder, origins: OriginPolicy) -> Builder {
    let room = Arc::new(Room::default());
    let options = WebSocketOptions::default().allowed_origins(origins);
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
            Ok(Accept::new(Member::new(Arc::clone(&room))))
        })
}

/// Everyone in the chat, on every shard.
#[derive(Default)]
struct Room {
    members: Mutex<Vec<ConnHandle>>,
    joined: AtomicU64,
}

// Events are posted under the room's lock (a post only queues on a lock-free mailbox),
// so each member's mailbox gets them in the order the room changed: the counts a
// member sees follow one another.
impl Room {
    /// Adds a member and tells the others, with the new count (returned).
    fn join(&self, handle: ConnHandle, name: &str, shard: usize) -> usize {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let count = members.len() + 1;
        let event = format!(r#"{{"type":"join","name":{name},"shard":{shard},"members":{count}}}"#);
        send_all(&members, &event, None);
        members.push(handle);
        count
    }

    /// Removes a member and tells the others, with the new count.
    fn leave(&self, id: ConnId, name: &str) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.retain(|member| member.id() != id);
        let count = members.len();
        let event = format!(r#"{{"type":"leave","name":{name},"members":{count}}}"#);
        send_all(&members, &event, None);
    }

    /// Sends `text` to every member (through each owner shard's mailbox); the member
    /// `own.0` gets `own.1` instead.
    fn broadcast(&self, text: &str, own: Option<(ConnId, &str)>) {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        send_all(&members, text, own);
    }
}

fn send_all(members: &[ConnHandle], text: &str, own: Option<(ConnId, &str)>) {
    for member in members {
        let text = match own {
            Some((id, own_text)) if member.id() == id => own_text,
            _ => text,
        };
        // A member whose shard stopped is leaving anyway.
        let _ = member.send_text(text);
    }
}

/// One member's connection.
struct Member {
    room: Arc<Room>,
    name: String,
}

impl Member {
    fn new(room: Arc<Room>) -> Member {
        Member {
            room,
            name: String::new(),
        }
    }
}

impl Handler for Member {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let number = self.room.joined.fetch_add(1, Ordering::Relaxed) + 1;
        self.name = format!("guest-{number}");
        let shard = conn.id().shard();
        let name = json_string(&self.name);
        let members = self.room.join(conn.handle(), &name, shard);
        conn.send_text(&format!(
            r#"{{"type":"welcome","name":{name},"shard":{shard},"members":{members}}}"#
        ));
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        if text.len() > MAX_LINE {
            return;
        }
        if let Some(name) = text.strip_prefix("/nick ") {
            let name: String = name
                .trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_NAME)
                .collect();
            if !name.is_empty() {
                let old = std::mem::replace(&mut self.name, name);
                let (from, to) = (json_string(&old), json_string(&self.name));
                let event = format!(r#"{{"type":"nick","from":{from},"to":{to}}}"#);
                let own = format!(r#"{{"type":"nick","from":{from},"to":{to},"self":true}}"#);
                self.room.broadcast(&event, Some((conn.id(), &own)));
            }
            return;
        }
        let (from, text) = (json_string(&self.name), json_string(text));
        let shard = conn.id().shard();
        self.room.broadcast(
            &format!(r#"{{"type":"message","from":{from},"shard":{shard},"text":{text}}}"#),
            None,
        );
    }

    fn on_close(&mut self, conn: &mut Conn<'_>, _reason: ringws::CloseReason) {
        self.room.leave(conn.id(), &json_string(&self.name));
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
