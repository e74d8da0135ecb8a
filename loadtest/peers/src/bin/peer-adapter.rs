//! Echo server on ringws's hyper adapter (`ringws::adapter`, feature `hyper`): a plain
//! hyper 1 HTTP/1.1 server, as `peer-fastwebsockets` runs it, whose upgrades run a
//! ringws `Handler` on the adapter's own session thread(s).
//!
//! `peer-adapter [--bind 127.0.0.1:9002] [--threads N]`
//!
//! Runtime shape: hyper's accept loop and connections (up to the upgrade) on the tokio
//! runtime `--threads` asks for (1: current-thread, N: multi-thread with N workers),
//! exactly as the other peers; the sessions on `Adapter::builder().threads(N)` (each a
//! current-thread runtime with a `LocalSet`). The upgraded socket stays registered with
//! hyper's runtime, whose I/O driver wakes the session thread.
//!
//! Echoes text and binary messages on any path (max message 64 MiB, ringws's own
//! limits and close handling, any origin, no permessage-deflate).

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use ringws::adapter::{Adapter, WebSocketUpgrade};
use ringws::handshake::OriginPolicy;
use ringws::{Conn, Handler, Message, WebSocketOptions};
use ringws_peers::{Args, MAX_MESSAGE_SIZE};
use tokio::net::{TcpListener, TcpStream};

/// Echoes every message back, as `ringws serve`'s `/echo` does.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }
}

async fn serve(adapter: Adapter, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let service = service_fn(move |mut request: Request<Incoming>| {
        let response = match WebSocketUpgrade::from_request(&mut request, &adapter) {
            Ok(upgrade) => upgrade.on_upgrade(|| Echo),
            Err(rejection) => rejection.into_response(),
        };
        async move { Ok::<Response<Full<Bytes>>, std::convert::Infallible>(response) }
    });
    let _ = http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades()
        .await;
}

fn main() -> std::io::Result<()> {
    let args = Args::from_env();
    let options = WebSocketOptions::default().allowed_origins(OriginPolicy::Any);
    let runtime = args.runtime()?;
    let adapter = Adapter::builder()
        .threads(args.threads)
        .max_message_size(MAX_MESSAGE_SIZE)
        .max_frame_size(MAX_MESSAGE_SIZE)
        .websocket_options(options)
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(args.bind).await?;
        eprintln!(
            "peer-adapter listening on {} ({} thread(s) + {} adapter thread(s))",
            listener.local_addr()?,
            args.threads,
            args.threads
        );
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(serve(adapter.clone(), stream));
        }
    })
}
