//! Chat rooms on pub/sub topics: `/join NAME` moves a connection to another room,
//! anything else is said to everyone else in its room, and a thread announces the time
//! to the lobby every ten seconds through `ServerHandle::publish`. With a Redis URL as
//! the second argument, every process started this way shares the rooms.
//!
//! ```sh
//! cargo run --release --example rooms -- 127.0.0.1:9001 [redis://127.0.0.1:6379]
//! ```

use std::time::{Duration, SystemTime};

use ringws::{Conn, Handler, Message, Server};

/// One member: the room it is in.
struct Member {
    room: String,
}

impl Handler for Member {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        conn.subscribe(&self.room);
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text(line) if line.starts_with("/join ") => {
                let room = line["/join ".len()..].trim();
                if room.is_empty() {
                    conn.send_text("a room needs a name");
                    return;
                }
                conn.unsubscribe(&self.room);
                self.room = room.to_owned();
                conn.subscribe(&self.room);
                conn.send_text(&format!("you are in {}", self.room));
            }
            message => conn.publish(&self.room, message),
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let mut builder = Server::builder()
        .bind(addr.as_str())
        .websocket("/", || Member {
            room: "lobby".to_owned(),
        });
    if let Some(url) = args.next() {
        builder = builder.redis(&url, ringws::pubsub::BrokerMode::PubSub);
    }
    let server = builder.build()?;
    let handle = server.handle();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(10));
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let text = format!("the time is {now} (seconds since 1970)");
        if handle.publish("lobby", Message::Text(&text)).is_err() {
            break; // the server stopped
        }
    });
    println!("rooms on ws://{addr}/");
    server.run()
}
