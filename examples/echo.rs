//! The smallest ringws server: echo every WebSocket message on `/echo`.
//!
//! Run it with `cargo run --release --example echo`, then connect a client to
//! `ws://127.0.0.1:9001/echo`.

use ringws::{Conn, Handler, Message, Server};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }
}

fn main() -> std::io::Result<()> {
    Server::builder()
        .bind("127.0.0.1:9001")
        .websocket("/echo", || Echo)
        .build()?
        .run()
}
