//! Moving a plain TCP upgrade from hyper to a running server's shard: the socket is
//! taken out of hyper's upgraded stream (with the bytes hyper read past the request)
//! and posted to a shard's mailbox, where it becomes an ordinary shard connection
//! (`runtime/shard/adopt.rs`), served by the shard's backend (io_uring or epoll).

use std::sync::atomic::{AtomicUsize, Ordering};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::HandlerFactory;
use crate::deflate_options::DeflateOptions;
use crate::handshake::DeflateAgreement;
use crate::runtime::mailbox::Command;
use crate::runtime::shard::adopt::Adoption;
use crate::server::ServerHandle;

/// What goes back to the adapter when the stream cannot be handed off.
type Back = (
    Upgraded,
    HandlerFactory,
    Option<(DeflateAgreement, DeflateOptions)>,
);

/// The shard the next hand-off goes to (round robin over the process).
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// Hands `upgraded` to one of `server`'s shards when it is a plain TCP socket (hyper's
/// own HTTP/1.1 connection, or hyper-util's auto connection as axum serves it); gives
/// everything back otherwise (TLS, or a shard that stopped before it could take it).
pub(super) fn to_shard(
    server: &ServerHandle,
    upgraded: Upgraded,
    factory: HandlerFactory,
    deflate: Option<(DeflateAgreement, DeflateOptions)>,
) -> Result<(), Back> {
    let (io, read_ahead) = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => (parts.io, parts.read_buf),
        // hyper-util's auto server (axum's) keeps the socket behind its `Rewind`.
        Err(upgraded) => {
            match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>(upgraded)
            {
                Ok(parts) => (parts.io, parts.read_buf),
                Err(upgraded) => return Err((upgraded, factory, deflate)),
            }
        }
    };
    let socket = match io.into_inner().into_std() {
        Ok(socket) => socket,
        // Deregistering from tokio failed: the socket is lost with the connection.
        Err(error) => {
            tracing::warn!(%error, "hand-off: the socket could not leave tokio");
            return Ok(());
        }
    };
    let adoption = Adoption {
        socket,
        read_ahead,
        factory,
        deflate,
    };
    let shards = server.registry.shards().max(1);
    let shard = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % shards;
    if let Err(_stopped) = server
        .registry
        .post(shard, Command::Adopt(Box::new(adoption)))
    {
        // The server stopped: the connection ends (its socket closes with the command).
        tracing::debug!(shard, "hand-off: the shard has stopped");
    }
    Ok(())
}
