//! Shard threads and the I/O backends that drive them. The only layer that does I/O.

pub(crate) mod core;
pub(crate) mod eventfd;
pub(crate) mod uring;
