//! An axum application with ringws WebSocket routes: the same `Handler`s `ringws serve`
//! runs, mounted on axum routes with `any(..)` so each serves HTTP/1.1 upgrades and
//! HTTP/2 extended CONNECTs (RFC 8441) alike.
//!
//! ```text
//! cargo run --release --features axum --example axum_app -- 127.0.0.1:3000
//! ```
//!
//! Routes: `/api/health` (an ordinary JSON route), `/echo` (echoes every message) and
//! `/chat` (the chat rooms of `ringws serve`, JSON events; see `src/bin/ringws/chat.rs`).
//! `axum::serve` speaks HTTP/1.1 and cleartext HTTP/2 with prior knowledge on the same
//! port and advertises the extended CONNECT. Ctrl-C stops accepting, then closes every
//! WebSocket with 1001 (axum's graceful shutdown does not reach upgraded connections:
//! the adapter's own shutdown does).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::Router;
use ringws::adapter::{Adapter, WebSocketUpgrade};
use ringws::handshake::OriginPolicy;
use ringws::{Conn, Handler, Message, WebSocketOptions};

#[allow(dead_code)] // the example mounts the rooms itself, not through `add_chat`
#[path = "../src/bin/ringws/chat.rs"]
mod chat;

/// Echoes every message back.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }
}

#[derive(Clone)]
struct AppState {
    adapter: Adapter,
    guests: Arc<AtomicU64>,
}

impl axum::extract::FromRef<AppState> for Adapter {
    fn from_ref(state: &AppState) -> Adapter {
        state.adapter.clone()
    }
}

async fn health() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], r#"{"status":"ok"}"#)
}

async fn echo(upgrade: WebSocketUpgrade) -> impl IntoResponse {
    upgrade.on_upgrade(|| Echo)
}

async fn chat_room(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> impl IntoResponse {
    let guests = Arc::clone(&state.guests);
    upgrade.on_upgrade(move || chat::member(guests))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    // Any origin: the example is reached from test clients and other pages alike.
    let options = WebSocketOptions::default()
        .allowed_origins(OriginPolicy::Any)
        .deflate(ringws::DeflateOptions::no_context_takeover());
    let adapter = Adapter::builder()
        .threads(2)
        .websocket_options(options)
        .build()?;
    let state = AppState {
        adapter: adapter.clone(),
        guests: Arc::new(AtomicU64::new(0)),
    };
    let app = Router::new()
        .route("/api/health", get(health))
        .route("/echo", any(echo))
        .route("/chat", any(chat_room))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            adapter.shutdown_within(Duration::from_secs(2));
        })
        .await
}
