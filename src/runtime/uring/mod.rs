#![allow(dead_code, unused, clippy::all)]
use super::core::ShardCore;
use super::eventfd::EventFd;
pub(crate) struct UringOptions {
    _x: u8,
}
impl Default for UringOptions {
    fn default() -> Self {
        UringOptions { _x: 0 }
    }
}
pub(crate) fn probe() -> Result<String, String> {
    Err("not built yet".into())
}
pub(crate) fn run<C: ShardCore>(
    core: &mut C,
    listener: std::net::TcpListener,
    wake: &EventFd,
    opts: &UringOptions,
) -> std::io::Result<()> {
    Err(std::io::Error::other("x"))
}
