//! The provided buffer ring: one page-aligned mmap slab for the ring entries and one for
//! the receive buffers, registered with the kernel as buffer group `bgid`. The kernel
//! picks a buffer for each multishot recv completion; the loop gives it back with
//! [`BufRing::recycle`] once the core is done with the bytes, and publishes the new
//! tail with [`BufRing::commit`] before the next submission.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

/// An anonymous private mapping, unmapped on drop (unless leaked).
pub(super) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mmap {
    /// Maps `len` bytes (rounded up to whole pages by the kernel), zeroed, page-aligned.
    pub(super) fn new(len: usize) -> io::Result<Mmap> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        // SAFETY: an anonymous private mapping with no address hint touches no existing
        // memory; the result is checked against MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mmap { ptr, len })
    }

    pub(super) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe exactly the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// A registered provided-buffer ring and its buffers.
pub(super) struct BufRing {
    ring: Mmap,
    bufs: Mmap,
    count: u16,
    size: u32,
    bgid: u16,
    /// Our copy of the tail; published to the kernel by `commit`.
    tail: u16,
    /// Set when operations may still be in flight at drop (an error path): the buffers
    /// are then leaked rather than unmapped, so a late kernel write cannot land on
    /// memory reused by something else.
    leak_on_drop: bool,
}

impl BufRing {
    /// Maps and registers a ring of `count` buffers of `size` bytes as group `bgid`.
    /// `count` is rounded down to a power of two (at most 32768). When registration
    /// fails with ENOMEM (RLIMIT_MEMLOCK), the count is halved and registration retried.
    pub(super) fn register(
        submitter: &Submitter<'_>,
        count: u16,
        size: u32,
        bgid: u16,
    ) -> io::Result<BufRing> {
        if size == 0 || count == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer_count and buffer_size must be positive",
            ));
        }
        let mut count = prev_power_of_two(count.min(32768));
        loop {
            match Self::try_register(submitter, count, size, bgid) {
                Ok(r) => return Ok(r),
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && count > 1 => {
                    tracing::warn!(
                        count,
                        "io_uring buffer ring registration hit ENOMEM (RLIMIT_MEMLOCK?); halving"
                    );
                    count /= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn try_register(
        submitter: &Submitter<'_>,
        count: u16,
        size: u32,
        bgid: u16,
    ) -> io::Result<BufRing> {
        let ring = Mmap::new(count as usize * std::mem::size_of::<BufRingEntry>())?;
        let bufs = Mmap::new(count as usize * size as usize)?;
        // SAFETY: `ring` is a page-aligned, zeroed mapping of `count` entries owned by
        // the returned BufRing, which unregisters it (or drops the io_uring first, see
        // the driver's field order) before unmapping it.
        unsafe {
            submitter.register_buf_ring_with_flags(ring.as_ptr() as u64, count, bgid, 0)?;
        }
        let mut r = BufRing {
            ring,
            bufs,
            count,
            size,
            bgid,
            tail: 0,
            leak_on_drop: false,
        };
        for bid in 0..count {
            r.recycle(bid);
        }
        r.commit();
        Ok(r)
    }

    /// Number of buffers in the ring.
    pub(super) fn count(&self) -> u16 {
        self.count
    }

    /// Size of each buffer.
    pub(super) fn buffer_size(&self) -> u32 {
        self.size
    }

    /// The buffer group id to put in recv SQEs.
    pub(super) fn bgid(&self) -> u16 {
        self.bgid
    }

    /// The first `len` bytes of buffer `bid`, or `None` if out of range.
    ///
    /// The caller must only ask for a buffer the kernel handed out in a completion and
    /// not yet recycled: the kernel does not write to it until it is back in the ring.
    pub(super) fn buffer_mut(&mut self, bid: u16, len: usize) -> Option<&mut [u8]> {
        if bid >= self.count || len > self.size as usize {
            return None;
        }
        let offset = bid as usize * self.size as usize;
        // SAFETY: `offset + len` lies inside the `bufs` mapping (checked above); the
        // kernel is done with this buffer (it was returned in a completion) and we hold
        // `&mut self`, so nothing else aliases it for the borrow's lifetime.
        Some(unsafe { std::slice::from_raw_parts_mut(self.bufs.as_ptr().add(offset), len) })
    }

    /// Puts buffer `bid` back at our tail (published by `commit`).
    pub(super) fn recycle(&mut self, bid: u16) {
        if bid >= self.count {
            return;
        }
        let mask = self.count - 1;
        let slot = (self.tail & mask) as usize;
        let base = self.ring.as_ptr().cast::<BufRingEntry>();
        // SAFETY: `slot < count`, so the entry lies inside the ring mapping. The kernel
        // only reads entries between its head and the published tail; this slot is past
        // the published tail, so it does not read it concurrently. The setters leave the
        // `resv` field (which doubles as the tail in entry 0) untouched.
        unsafe {
            let entry = &mut *base.add(slot);
            entry.set_addr(self.bufs.as_ptr().add(bid as usize * self.size as usize) as u64);
            entry.set_len(self.size);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes recycled buffers to the kernel.
    pub(super) fn commit(&mut self) {
        let base = self.ring.as_ptr().cast::<BufRingEntry>().cast_const();
        // SAFETY: the tail is a naturally aligned u16 inside entry 0 of our live mapping;
        // the kernel reads it concurrently, so it is written atomically with Release
        // ordering after the entries it publishes.
        unsafe {
            let tail = &*(BufRingEntry::tail(base) as *const AtomicU16);
            tail.store(self.tail, Ordering::Release);
        }
    }

    /// Leaks the mappings instead of unmapping them on drop (see `leak_on_drop`).
    pub(super) fn leak_on_drop(&mut self) {
        self.leak_on_drop = true;
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak_on_drop {
            let ring = std::mem::replace(&mut self.ring, dangling());
            let bufs = std::mem::replace(&mut self.bufs, dangling());
            std::mem::forget(ring);
            std::mem::forget(bufs);
        }
    }
}

/// A zero-length placeholder whose drop unmaps nothing harmful (munmap of length 0
/// fails with EINVAL and changes nothing).
fn dangling() -> Mmap {
    Mmap {
        ptr: NonNull::dangling(),
        len: 0,
    }
}

fn prev_power_of_two(n: u16) -> u16 {
    if n.is_power_of_two() {
        n
    } else {
        (n.next_power_of_two() / 2).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::prev_power_of_two;

    #[test]
    fn rounds_down_to_power_of_two() {
        assert_eq!(prev_power_of_two(1024), 1024);
        assert_eq!(prev_power_of_two(1000), 512);
        assert_eq!(prev_power_of_two(3), 2);
        assert_eq!(prev_power_of_two(1), 1);
    }
}
