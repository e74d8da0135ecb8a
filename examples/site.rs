//! A web site that also speaks WebSocket: static files under `/`, a handler under
//! `/api/`, an exact `/health` route and a WebSocket echo on `/ws`.
//!
//! Run it with `cargo run --example site -- ./public` (the directory to serve; default
//! `.`), then open <http://127.0.0.1:9002/>.

use ringws::{Conn, Handler, HttpResponse, Message, Server};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        if let Message::Text(text) = message {
            conn.send_text(text);
        }
    }
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    Server::builder()
        .bind("127.0.0.1:9002")
        .static_files("/", &dir) // GET/HEAD, ETag/304, ranges, index.html, no escapes
        .http("/api/", |request| {
            // Ends in `/`: a prefix, every path below it (with the request body).
            let (method, path) = (request.method(), request.path());
            let body = format!("{method} {path}: {} bytes\n", request.body().len());
            HttpResponse::text(200, body)
        })
        .http("/health", |_| HttpResponse::text(200, "ok\n")) // exact path
        .websocket("/ws", || Echo)
        .build()?
        .run()
}
