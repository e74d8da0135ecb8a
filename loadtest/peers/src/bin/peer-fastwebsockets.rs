//! Echo server on fastwebsockets (hyper 1 upgrade), as in its own echo example.
//!
//! `peer-fastwebsockets [--bind 127.0.0.1:9002] [--threads N]`
//!
//! Echoes text and binary messages on any path (max message 64 MiB), fragments
//! reassembled by `FragmentCollector`, with auto close and auto pong on.

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use ringws_peers::{Args, MAX_MESSAGE_SIZE};
use tokio::net::{TcpListener, TcpStream};

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_max_message_size(MAX_MESSAGE_SIZE);
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn upgrade_request(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        // Errors (peer gone, protocol violation) just end the connection.
        let _ = tokio::task::unconstrained(echo(fut)).await;
    });
    Ok(response)
}

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let _ = http1::Builder::new()
        .serve_connection(io, service_fn(upgrade_request))
        .with_upgrades()
        .await;
}

fn main() -> std::io::Result<()> {
    let args = Args::from_env();
    args.runtime()?.block_on(async move {
        let listener = TcpListener::bind(args.bind).await?;
        eprintln!(
            "peer-fastwebsockets listening on {} ({} thread(s))",
            listener.local_addr()?,
            args.threads
        );
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(serve(stream));
        }
    })
}
