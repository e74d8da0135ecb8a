//! Output buffers shared by a shard's connections.
//!
//! A connection holds an output buffer only while it has something to send: the shard
//! lends one when bytes arrive for it (an answer usually follows), the buffer goes to
//! the backend with the send, and comes back here when the send completes or when the
//! connection's queue is found empty. An idle connection therefore holds no buffer,
//! and its memory is its state alone (BENCHMARKS.md, idle connections), for the price
//! of a pop and a push on a busy turn. The pool is bounded in bytes, so a burst of big
//! messages does not pin memory once it is over.

/// Most bytes of buffer capacity the pool keeps; past it, returned buffers are freed.
const MAX_POOLED_BYTES: usize = 4 * 1024 * 1024;
/// Buffers larger than this are freed rather than pooled.
const MAX_POOLED_CAPACITY: usize = 256 * 1024;
/// A new buffer's capacity, and the smallest one pooled: paths that queue into a
/// connection without a lent buffer (timers, handles, replies) allocate exactly what
/// they write, and such slivers would only be reallocated by whoever borrows them.
const MIN_POOLED_CAPACITY: usize = 4096;

/// A shard's free output buffers (empty, with capacity).
#[derive(Default)]
pub(crate) struct OutPool {
    free: Vec<Vec<u8>>,
    /// Sum of the capacities in `free`.
    bytes: usize,
}

impl OutPool {
    /// An empty buffer, with capacity when the pool has one.
    pub(crate) fn lend(&mut self) -> Vec<u8> {
        match self.free.pop() {
            Some(buf) => {
                self.bytes -= buf.capacity();
                buf
            }
            None => Vec::with_capacity(MIN_POOLED_CAPACITY),
        }
    }

    /// Takes a buffer back (its contents are dropped); frees it when the pool is full
    /// or the buffer is too small or too big to be worth keeping.
    pub(crate) fn give_back(&mut self, mut buf: Vec<u8>) {
        let capacity = buf.capacity();
        if !(MIN_POOLED_CAPACITY..=MAX_POOLED_CAPACITY).contains(&capacity)
            || self.bytes + capacity > MAX_POOLED_BYTES
        {
            return;
        }
        buf.clear();
        self.bytes += capacity;
        self.free.push(buf);
    }

    /// Gives an output queue with no buffer one from the pool.
    pub(crate) fn attach(&mut self, queued: &mut Vec<u8>) {
        if queued.capacity() == 0 {
            *queued = self.lend();
        }
    }

    /// Takes the buffer of an empty output queue back into the pool.
    pub(crate) fn detach(&mut self, queued: &mut Vec<u8>) {
        if queued.is_empty() && queued.capacity() > 0 {
            self.give_back(std::mem::take(queued));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_queue_holds_no_buffer_and_a_busy_one_reuses_the_pool() {
        let mut pool = OutPool::default();
        let mut queued = Vec::new();
        pool.attach(&mut queued);
        queued.extend_from_slice(b"hello");
        pool.detach(&mut queued); // not empty: kept
        assert_eq!(queued, b"hello");
        let sent = std::mem::take(&mut queued);
        let capacity = sent.capacity();
        pool.give_back(sent);
        assert_eq!(queued.capacity(), 0, "idle: no buffer");
        pool.attach(&mut queued);
        assert_eq!(queued.capacity(), capacity, "the pooled buffer came back");
        assert!(queued.is_empty());
        pool.detach(&mut queued);
        assert_eq!(queued.capacity(), 0);
        assert_eq!(pool.bytes, capacity);
    }

    #[test]
    fn slivers_are_not_pooled_and_a_new_buffer_has_room() {
        let mut pool = OutPool::default();
        pool.give_back(b"a ping".to_vec());
        assert!(pool.free.is_empty());
        assert!(pool.lend().capacity() >= MIN_POOLED_CAPACITY);
    }

    #[test]
    fn the_pool_is_bounded_in_bytes_and_frees_big_buffers() {
        let mut pool = OutPool::default();
        pool.give_back(Vec::with_capacity(MAX_POOLED_CAPACITY + 1));
        assert!(pool.free.is_empty());
        for _ in 0..(MAX_POOLED_BYTES / MAX_POOLED_CAPACITY) + 3 {
            pool.give_back(Vec::with_capacity(MAX_POOLED_CAPACITY));
        }
        assert!(pool.bytes <= MAX_POOLED_BYTES);
        assert_eq!(pool.free.len(), MAX_POOLED_BYTES / MAX_POOLED_CAPACITY);
        let lent = pool.lend();
        assert!(lent.capacity() >= MAX_POOLED_CAPACITY);
        assert_eq!(pool.bytes, MAX_POOLED_BYTES - lent.capacity());
    }
}
