//! The io_uring backend: one ring per shard thread, multishot accept, multishot recv
//! from a provided buffer ring, sends submitted once per loop turn, the mailbox eventfd
//! read in the ring. Generic over [`ShardCore`], following the calling protocol in
//! `runtime::core`.
//!
//! Files: `ring` (setup flags and fallback), `bufring` (the mmap-backed provided buffer
//! ring), `ops` (`user_data` encoding), `driver` (the event loop).

mod bufring;
mod driver;
mod ops;
mod ring;
#[cfg(test)]
mod tests;

use std::io;
use std::net::TcpListener;

use io_uring::{opcode, IoUring, Probe};

use self::bufring::BufRing;
use self::driver::Driver;
use crate::runtime::core::ShardCore;
use crate::runtime::eventfd::EventFd;

/// The buffer group id of each shard's provided buffer ring (one group per ring).
const BGID: u16 = 0;

/// Options the shard passes in.
#[derive(Clone, Debug)]
pub(crate) struct UringOptions {
    /// Submission queue size (the completion queue is twice as large).
    pub entries: u32,
    /// Provided receive buffers per shard; a power of two (rounded down otherwise),
    /// halved at start while RLIMIT_MEMLOCK refuses the registration.
    pub buffer_count: u16,
    /// Size of each receive buffer in bytes.
    pub buffer_size: u32,
}

impl Default for UringOptions {
    fn default() -> Self {
        UringOptions {
            entries: 4096,
            // 16 MiB per shard, in buffers big enough for a 16 KiB message and its
            // header, so one that size arrives in one buffer and reaches the handler
            // without a copy (16 KiB buffers split it in two: 30% more user CPU per
            // message, BENCHMARKS.md). A small read touches one page of its buffer.
            buffer_count: 512,
            buffer_size: 32 * 1024,
        }
    }
}

/// Can this process use io_uring with the features we need? `Ok` with a description of
/// what is available, or `Err` with a human-readable reason. Never panics.
pub(crate) fn probe() -> Result<String, String> {
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .map(|s| s.trim().to_owned());
    if sysctl.as_deref() == Some("2") {
        return Err("io_uring is disabled by sysctl kernel.io_uring_disabled=2".into());
    }
    let restricted = sysctl.as_deref() == Some("1");
    let ring = match IoUring::new(8) {
        Ok(r) => r,
        Err(e) => {
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::ENOSYS) => {
                    let why = if restricted {
                        "kernel.io_uring_disabled=1 and not in kernel.io_uring_group"
                    } else {
                        "seccomp or container policy?"
                    };
                    format!("io_uring_setup refused: {e} ({why})")
                }
                _ => format!("io_uring_setup failed: {e}"),
            })
        }
    };
    let release = kernel_release();
    match parse_version(&release) {
        Some(v) if v >= (6, 0) => {}
        Some(_) => {
            return Err(format!(
                "kernel {release} is older than 6.0: no multishot recv"
            ));
        }
        None => return Err(format!("cannot parse kernel release {release:?}")),
    }
    if !ring.params().is_feature_ext_arg() {
        return Err("io_uring lacks IORING_FEAT_EXT_ARG (timed waits)".into());
    }
    let mut p = Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut p) {
        return Err(format!("io_uring opcode probe failed: {e}"));
    }
    let required = [
        ("ACCEPT", opcode::AcceptMulti::CODE),
        ("RECV", opcode::RecvMulti::CODE),
        ("SEND", opcode::Send::CODE),
        ("READ", opcode::Read::CODE),
        ("POLL_ADD", opcode::PollAdd::CODE),
        ("ASYNC_CANCEL", opcode::AsyncCancel::CODE),
        ("CONNECT", opcode::Connect::CODE),
    ];
    let missing: Vec<&str> = required
        .iter()
        .filter(|(_, code)| !p.is_supported(*code))
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        return Err(format!("io_uring lacks opcodes: {}", missing.join(", ")));
    }
    match BufRing::register(&ring.submitter(), 8, 4096, BGID) {
        Ok(bufs) => {
            let _ = ring.submitter().unregister_buf_ring(bufs.bgid());
            drop(bufs);
        }
        Err(e) => return Err(format!("provided buffer ring registration failed: {e}")),
    }
    drop(ring);
    let setup = match ring::build(8) {
        Ok((_, kind)) => kind.describe(),
        Err(e) => return Err(format!("io_uring setup with flags failed: {e}")),
    };
    Ok(format!(
        "io_uring on Linux {release}: setup {setup}, multishot accept and recv, \
         provided buffer ring, timed waits{}",
        if restricted {
            " (kernel.io_uring_disabled=1, allowed for this process)"
        } else {
            ""
        }
    ))
}

/// Runs one shard's event loop on the current thread until `core.is_finished()`.
///
/// Every socket the loop accepted or connected is closed when it returns, on success
/// and on error. The core sees `listeners[i]`'s connections as accepted on listener `i`.
pub(crate) fn run<C: ShardCore>(
    core: &mut C,
    listeners: Vec<TcpListener>,
    wake: &EventFd,
    opts: &UringOptions,
) -> io::Result<()> {
    let (ring, setup) = ring::build(opts.entries)?;
    if !ring.params().is_feature_ext_arg() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring lacks IORING_FEAT_EXT_ARG (kernel older than 5.11)",
        ));
    }
    let bufs = BufRing::register(&ring.submitter(), opts.buffer_count, opts.buffer_size, BGID)?;
    let mut driver = Driver::new(ring, setup, bufs, &listeners, wake);
    let result = driver.run(core);
    drop(driver);
    drop(listeners);
    result
}

fn kernel_release() -> String {
    // SAFETY: utsname is plain old data; uname fills it and we read NUL-terminated fields.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}
