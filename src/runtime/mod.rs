//! Shard threads and the I/O backends that drive them. The only layer that does I/O.
//!
//! Each shard is a thread with its own SO_REUSEPORT listeners (the HTTP one, then one
//! per raw TCP door), its own connections
//! ([`shard::Shard`]) and its own backend loop (io_uring or epoll); shards share nothing
//! on the hot path. Other threads reach a shard only through its mailbox.

#[cfg(feature = "hyper")]
pub(crate) mod adapter;
pub(crate) mod bridge;
#[cfg(test)]
mod contract_tests;
pub(crate) mod core;
pub(crate) mod epoll;
pub(crate) mod eventfd;
pub(crate) mod files;
pub(crate) mod link;
pub(crate) mod listen;
pub(crate) mod mailbox;
mod paged;
#[cfg(feature = "redis")]
pub(crate) mod redis;
pub(crate) mod reflector;
pub(crate) mod shard;
pub(crate) mod tls;
pub(crate) mod uring;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};

use crate::connection::Config;
use crate::route::Routes;
use crate::server::Backend;
use mailbox::Registry;

/// The environment variable that overrides the backend choice: `uring`, `epoll` or `auto`.
pub(crate) const BACKEND_ENV: &str = "RINGWS_BACKEND";

/// Picks the backend: the environment override first, then the builder's choice; `Auto`
/// probes io_uring and falls back to epoll with the reason logged. Asking for io_uring
/// where it is refused is an error rather than a silent fallback.
pub(crate) fn choose_backend(requested: Backend) -> io::Result<Backend> {
    let requested = match std::env::var(BACKEND_ENV) {
        Ok(value) => match value.trim().to_ascii_lowercase().as_str() {
            "uring" | "io_uring" | "io-uring" => Backend::Uring,
            "epoll" => Backend::Epoll,
            "auto" | "" => requested,
            other => {
                let message = format!("{BACKEND_ENV}={other}: expected uring, epoll or auto");
                return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
            }
        },
        Err(_) => requested,
    };
    match requested {
        Backend::Epoll => {
            tracing::info!("backend: epoll (chosen)");
            Ok(Backend::Epoll)
        }
        Backend::Uring => match probe_uring() {
            Ok(features) => {
                tracing::info!("backend: io_uring (chosen; {features})");
                Ok(Backend::Uring)
            }
            Err(reason) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring unavailable: {reason}"),
            )),
        },
        Backend::Auto => match probe_uring() {
            Ok(features) => {
                tracing::info!("backend: io_uring ({features})");
                Ok(Backend::Uring)
            }
            Err(reason) => {
                tracing::info!("backend: epoll (io_uring unavailable: {reason})");
                Ok(Backend::Epoll)
            }
        },
    }
}

/// Probes io_uring once per process, on a thread of its own: tearing down a ring queues
/// task work on the thread that created it, and that notification interrupts a blocking
/// system call of that thread with EINTR; the caller's thread (an application's main
/// thread, a test) must not inherit that.
fn probe_uring() -> Result<String, String> {
    static RESULT: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    RESULT
        .get_or_init(|| {
            std::thread::Builder::new()
                .name("ringws-uring-probe".into())
                .spawn(uring::probe)
                .map_err(|error| format!("could not start the probe thread: {error}"))?
                .join()
                .unwrap_or_else(|_| Err("the io_uring probe panicked".into()))
        })
        .clone()
}

/// Binds `shards` listeners to one address with SO_REUSEPORT, so the kernel spreads
/// incoming connections over the shards. Port 0 is resolved by the first bind and reused.
pub(crate) fn bind_listeners(addr: SocketAddr, shards: usize) -> io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::with_capacity(shards);
    let mut addr = addr;
    for _ in 0..shards {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Everything a shard thread needs.
pub(crate) struct ShardSpec {
    pub(crate) index: usize,
    /// Listeners `0..http_listeners` serve HTTP/WebSocket/SockJS; the others are the
    /// raw TCP doors, in the order they were added.
    pub(crate) listeners: Vec<TcpListener>,
    /// How many of `listeners` serve HTTP: one bound by the shard's server, or the
    /// shard's share of handed-over or socket-activated sockets (`listen::plan`).
    pub(crate) http_listeners: usize,
    pub(crate) backend: Backend,
    pub(crate) core_id: Option<core_affinity::CoreId>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) routes: Arc<Routes>,
    pub(crate) config: Arc<Config>,
    /// The server's pub/sub hub.
    pub(crate) hub: Arc<crate::pubsub::hub::Hub>,
    /// The protocols of `listeners[1..]`, in order.
    pub(crate) protocols: Arc<Vec<link::ProtocolFactory>>,
    /// Run the benchmark floor (`reflector::Reflector`) instead of the WebSocket shard.
    pub(crate) reflector: bool,
    /// The io_uring backend's settings (`Builder::recv_buffers`).
    pub(crate) uring: uring::UringOptions,
}

/// Starts a shard thread.
pub(crate) fn spawn_shard(spec: ShardSpec) -> io::Result<JoinHandle<io::Result<()>>> {
    std::thread::Builder::new()
        .name(format!("ringws-shard-{}", spec.index))
        .spawn(move || run_shard(spec))
}

fn run_shard(spec: ShardSpec) -> io::Result<()> {
    if let Some(core_id) = spec.core_id {
        if !core_affinity::set_for_current(core_id) {
            tracing::warn!(
                shard = spec.index,
                core = core_id.id,
                "could not pin shard to core"
            );
        }
    }
    let wake = &spec.registry.mailbox(spec.index).wake;
    let result = if spec.reflector {
        let floor = reflector::Reflector::new(spec.index, Arc::clone(&spec.registry));
        run_core(floor, spec.backend, spec.listeners, wake, &spec.uring)
    } else {
        let registry = Arc::clone(&spec.registry);
        let index = spec.index as u32;
        let mut shard =
            shard::Shard::with_registry(index, registry, spec.routes, spec.config, spec.hub);
        shard.set_protocols(spec.protocols);
        shard.set_http_listeners(spec.http_listeners);
        run_core(shard, spec.backend, spec.listeners, wake, &spec.uring)
    };
    if let Err(error) = &result {
        tracing::error!(shard = spec.index, %error, "shard stopped with an error");
    }
    spec.registry.mailbox(spec.index).stop();
    result
}

/// Drives `core` on the chosen backend until it has shut down.
fn run_core<C: core::ShardCore + 'static>(
    mut core: C,
    backend: Backend,
    listeners: Vec<TcpListener>,
    wake: &eventfd::EventFd,
    uring_options: &uring::UringOptions,
) -> io::Result<()> {
    match backend {
        Backend::Uring => uring::run(&mut core, listeners, wake, uring_options),
        _ => epoll::run(core, listeners, wake),
    }
}
