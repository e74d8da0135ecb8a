//! Ring construction with the best flags the kernel accepts.

use std::io;

use io_uring::IoUring;

/// Which setup flags the ring was built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SetupKind {
    /// `SINGLE_ISSUER | DEFER_TASKRUN | SUBMIT_ALL` (6.1+).
    DeferTaskrun,
    /// `COOP_TASKRUN | SUBMIT_ALL` (5.19+).
    CoopTaskrun,
    /// No optional flags.
    Plain,
}

impl SetupKind {
    pub(super) fn describe(self) -> &'static str {
        match self {
            SetupKind::DeferTaskrun => "SINGLE_ISSUER|DEFER_TASKRUN|SUBMIT_ALL",
            SetupKind::CoopTaskrun => "COOP_TASKRUN|SUBMIT_ALL",
            SetupKind::Plain => "plain",
        }
    }
}

/// Builds a ring of `entries` SQEs (CQ twice that), trying the best flags first and
/// falling back when the kernel refuses them with EINVAL. Any other error (EPERM from
/// seccomp, ENOSYS, ENOMEM) is returned as is.
pub(super) fn build(entries: u32) -> io::Result<(IoUring, SetupKind)> {
    let entries = entries.clamp(2, 32768);
    let cq = entries.saturating_mul(2);
    let attempts = [
        SetupKind::DeferTaskrun,
        SetupKind::CoopTaskrun,
        SetupKind::Plain,
    ];
    let mut last = None;
    for kind in attempts {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq).setup_clamp();
        match kind {
            SetupKind::DeferTaskrun => {
                b.setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_submit_all();
            }
            SetupKind::CoopTaskrun => {
                b.setup_coop_taskrun().setup_submit_all();
            }
            SetupKind::Plain => {}
        }
        match b.build(entries) {
            Ok(ring) => {
                tracing::debug!(entries, flags = kind.describe(), "io_uring ring set up");
                return Ok((ring, kind));
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(flags = kind.describe(), error = %e, "io_uring setup flags refused");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("io_uring setup failed")))
}
