//! Echo server on tokio-tungstenite: the idiomatic read-then-write loop per connection.
//!
//! `peer-tungstenite [--bind 127.0.0.1:9002] [--threads N]`
//!
//! Echoes text and binary messages on any path (max message 64 MiB). Replies are
//! `feed`-ed and flushed once the read side has nothing more ready, so a pipelining
//! client gets batched writes, as it would from ringws. Pings are answered by
//! tungstenite itself; a close is answered and ends the connection.

use futures_util::{FutureExt, SinkExt, StreamExt};
use ringws_peers::{Args, MAX_MESSAGE_SIZE};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE));
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    loop {
        // Take the next message if it is already there; otherwise flush what was fed
        // so far, then wait for it.
        let next = match ws.next().now_or_never() {
            Some(next) => next,
            None => {
                if ws.flush().await.is_err() {
                    return;
                }
                ws.next().await
            }
        };
        match next {
            Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                if ws.feed(msg).await.is_err() {
                    return;
                }
            }
            // Ping (pong queued by tungstenite), pong, close (reply queued by
            // tungstenite; the stream ends after it is sent), raw frames.
            Some(Ok(_)) => {}
            // Send what was already fed (echoes of earlier messages, the close
            // answer) before dropping the connection.
            Some(Err(_)) | None => {
                let _ = ws.flush().await;
                return;
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::from_env();
    args.runtime()?.block_on(async move {
        let listener = TcpListener::bind(args.bind).await?;
        eprintln!(
            "peer-tungstenite listening on {} ({} thread(s))",
            listener.local_addr()?,
            args.threads
        );
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(serve(stream));
        }
    })
}
