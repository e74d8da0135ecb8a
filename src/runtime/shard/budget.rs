//! The shard's memory budget (`Builder::memory_budget`): the bytes it holds for its
//! peers, counted, and the policy that keeps them under its share.
//!
//! **Accounting.** Each connection reports what it holds (`Connection::held`: assembly
//! buffers, input kept during a pause, queued output, a request being read) and each
//! SockJS session its queues; the shard remembers the figure it last counted for each
//! (`Entry::held`) and moves its total by the difference whenever it recounts one
//! (after every call that may change it), and subtracts the last figure when the
//! connection is removed. The total is a plain integer of the shard: no atomics per
//! message, no scan in the common path. It is published for
//! `ServerHandle::memory_held` with one relaxed store per batch of events (in
//! `drain_ready`: once per loop turn on io_uring, once per connection task's wake-up
//! on epoll), and only when it moved.
//!
//! **Policy** ([`choose`]). Over the high-water mark (¾ of the share) the shard pauses
//! reading on the connections with the most incoming bytes, largest first, until the
//! paused ones hold the excess; under the low-water mark (½) it resumes them all. Over
//! the whole share it closes the largest holders, largest first, until it is back under
//! the high-water mark. A connection that stays paused for the close timeout is
//! closed too (the shard could not get under the low-water mark, so its message could
//! not complete). The victim scan is O(connections) and runs only when the total has
//! grown by [`Budget::step`] since the last one, so a shard that stays over its mark
//! does not rescan on every read.

use std::cmp::Reverse;

/// The shard's figures.
#[derive(Debug)]
pub(crate) struct Budget {
    /// The shard's share of the budget (`usize::MAX`: none).
    limit: usize,
    /// The bytes held now.
    held: usize,
    /// Connections paused by the budget.
    paused: usize,
    /// No victim scan until `held` is over this (see [`Budget::wants_scan`]).
    scan_mark: usize,
    /// The figure last published.
    published: usize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Budget {
        Budget {
            limit,
            held: 0,
            paused: 0,
            scan_mark: 0,
            published: 0,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// ¾ of the share: over it, reading pauses.
    pub(crate) fn high_water(&self) -> usize {
        high_water(self.limit)
    }

    /// ½ of the share: under it, paused connections are read again.
    pub(crate) fn low_water(&self) -> usize {
        self.limit / 2
    }

    /// How much the total must grow between two victim scans: 1/64 of the share, at
    /// least 64 KiB. (It is also how far past a mark the total can go before the scan
    /// that acts on it, on top of the one read that crossed it.)
    pub(crate) fn step(&self) -> usize {
        (self.limit / 64).max(64 * 1024)
    }

    /// A holder's figure changed from `old` to `new`.
    pub(crate) fn recount(&mut self, old: usize, new: usize) {
        debug_assert!(self.held >= old, "budget: {old} removed from {}", self.held);
        self.held = self.held.saturating_sub(old).saturating_add(new);
        if self.held <= self.high_water() {
            self.scan_mark = 0;
        } else {
            self.scan_mark = self.scan_mark.min(self.held.saturating_add(self.step()));
        }
    }

    /// True when victims should be looked for: over the high-water mark, and grown by a
    /// step since the last scan.
    pub(crate) fn wants_scan(&self) -> bool {
        self.held > self.high_water() && self.held > self.scan_mark
    }

    /// A scan ran at the current total.
    pub(crate) fn scanned(&mut self) {
        self.scan_mark = self.held.saturating_add(self.step());
    }

    /// True when the paused connections should be read again: back under the
    /// low-water mark.
    pub(crate) fn wants_resume(&self) -> bool {
        self.paused > 0 && self.held <= self.low_water()
    }

    pub(crate) fn paused(&self) -> usize {
        self.paused
    }

    pub(crate) fn count_pause(&mut self) {
        self.paused += 1;
    }

    pub(crate) fn count_resume(&mut self) {
        debug_assert!(self.paused > 0);
        self.paused = self.paused.saturating_sub(1);
    }

    /// The figure to publish, when it changed since the last one.
    pub(crate) fn take_unpublished(&mut self) -> Option<usize> {
        (self.published != self.held).then(|| {
            self.published = self.held;
            self.held
        })
    }
}

pub(crate) fn high_water(limit: usize) -> usize {
    limit - limit / 4
}

/// One holder as the policy sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Holder<K> {
    pub(crate) key: K,
    pub(crate) incoming: usize,
    pub(crate) outgoing: usize,
    /// Paused by the budget already.
    pub(crate) paused: bool,
    /// The budget may pause it (an open WebSocket not closing).
    pub(crate) pausable: bool,
    /// A close would free something.
    pub(crate) closable: bool,
}

impl<K> Holder<K> {
    fn total(&self) -> usize {
        self.incoming.saturating_add(self.outgoing)
    }
}

/// What to do with a holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pause,
    Close,
}

/// Chooses the victims for a shard holding `held` bytes against `limit`: over the
/// limit, closes the largest holders (incoming and output together) until the rest is
/// under the high-water mark; then, while still over it, pauses the holders with the
/// most incoming bytes (not paused yet, pausable, holding some) until the paused ones'
/// incoming bytes cover the excess. Holders that hold nothing are never chosen.
pub(crate) fn choose<K: Copy>(
    limit: usize,
    held: usize,
    holders: &mut [Holder<K>],
) -> Vec<(K, Verdict)> {
    let high = high_water(limit);
    let mut verdicts = Vec::new();
    let mut left = held;
    let mut closed = vec![false; holders.len()];
    let mut order: Vec<usize> = (0..holders.len()).collect();
    if held > limit {
        order.sort_unstable_by_key(|&i| Reverse(holders[i].total()));
        for &i in &order {
            if left <= high {
                break;
            }
            let holder = &holders[i];
            if !holder.closable || holder.total() == 0 {
                continue;
            }
            left = left.saturating_sub(holder.total());
            closed[i] = true;
            verdicts.push((holder.key, Verdict::Close));
        }
    }
    if left > high {
        let excess = left - high;
        let mut covered: usize = (0..holders.len())
            .filter(|&i| holders[i].paused && !closed[i])
            .map(|i| holders[i].incoming)
            .fold(0, usize::saturating_add);
        order.sort_unstable_by_key(|&i| Reverse(holders[i].incoming));
        for &i in &order {
            if covered >= excess {
                break;
            }
            let holder = &holders[i];
            if closed[i] || holder.paused || !holder.pausable || holder.incoming == 0 {
                continue;
            }
            covered = covered.saturating_add(holder.incoming);
            verdicts.push((holder.key, Verdict::Pause));
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(key: u32, incoming: usize, outgoing: usize) -> Holder<u32> {
        Holder {
            key,
            incoming,
            outgoing,
            paused: false,
            pausable: true,
            closable: true,
        }
    }

    #[test]
    fn marks_are_three_quarters_and_half() {
        let budget = Budget::new(64);
        assert_eq!((budget.high_water(), budget.low_water()), (48, 32));
        assert_eq!(
            Budget::new(usize::MAX).high_water(),
            usize::MAX - usize::MAX / 4
        );
    }

    #[test]
    fn under_the_high_water_mark_nobody_is_chosen() {
        let mut holders = [holder(1, 40, 0), holder(2, 8, 0)];
        assert!(choose(64, 48, &mut holders).is_empty());
    }

    #[test]
    fn over_the_high_water_mark_the_largest_incoming_are_paused_until_they_cover_the_excess() {
        // 60 held, high water 48: an excess of 12. The 10 and the 5 cover it; the
        // small ones (an honest client, an idle one) are left alone.
        let mut holders = [
            holder(1, 1, 0),
            holder(2, 5, 0),
            holder(3, 10, 0),
            holder(4, 0, 0),
            holder(5, 4, 30),
        ];
        let verdicts = choose(64, 60, &mut holders);
        assert_eq!(verdicts, [(3, Verdict::Pause), (2, Verdict::Pause)]);
    }

    #[test]
    fn connections_already_paused_count_toward_the_excess() {
        let mut holders = [holder(1, 10, 0), holder(2, 8, 0), holder(3, 6, 0)];
        holders[0].paused = true;
        // Excess 12: the paused 10 and the next largest, 8.
        assert_eq!(choose(64, 60, &mut holders), [(2, Verdict::Pause)]);
        holders[1].paused = true;
        assert!(choose(64, 60, &mut holders).is_empty());
    }

    #[test]
    fn holders_that_cannot_pause_or_hold_no_input_are_skipped() {
        let mut holders = [holder(1, 20, 0), holder(2, 0, 20), holder(3, 3, 0)];
        holders[0].pausable = false;
        assert_eq!(choose(64, 60, &mut holders), [(3, Verdict::Pause)]);
    }

    #[test]
    fn over_the_limit_the_largest_holders_are_closed_first_down_to_the_high_water_mark() {
        // 80 held, limit 64, high water 48: close 20 (output) and 16 (input): 44 left.
        let mut holders = [
            holder(1, 1, 0),
            holder(2, 16, 0),
            holder(3, 0, 20),
            holder(4, 12, 0),
            holder(5, 2, 1),
        ];
        let verdicts = choose(64, 80, &mut holders);
        assert_eq!(verdicts, [(3, Verdict::Close), (2, Verdict::Close)]);
    }

    #[test]
    fn a_close_that_leaves_the_shard_over_the_high_water_mark_pauses_too() {
        let mut holders = [holder(1, 10, 0), holder(2, 9, 0), holder(3, 0, 8)];
        holders[0].closable = false; // already closing, nothing to free
                                     // 70 held: close the 9 and the 8 (53 left, 5 over 48), then pause the 10.
        let verdicts = choose(64, 70, &mut holders);
        assert_eq!(
            verdicts,
            [
                (2, Verdict::Close),
                (3, Verdict::Close),
                (1, Verdict::Pause)
            ]
        );
    }

    #[test]
    fn scans_wait_for_a_step_of_growth_and_resume_waits_for_the_low_water_mark() {
        let mib = 1024 * 1024;
        let mut budget = Budget::new(64 * mib);
        assert_eq!(budget.step(), mib);
        budget.recount(0, 40 * mib);
        assert!(!budget.wants_scan());
        budget.recount(0, 9 * mib); // 49 MiB: over 48
        assert!(budget.wants_scan());
        budget.scanned();
        budget.count_pause();
        budget.recount(0, mib / 2);
        assert!(!budget.wants_scan(), "grown by less than a step");
        budget.recount(0, mib);
        assert!(budget.wants_scan());
        budget.scanned();
        // Hysteresis: under the high-water mark but over the low one, still paused.
        budget.recount(10 * mib, 0);
        assert!(!budget.wants_scan());
        assert!(!budget.wants_resume());
        budget.recount(8 * mib, 0); // 32.5 MiB
        assert!(!budget.wants_resume());
        budget.recount(mib, 0); // 31.5 MiB
        assert!(budget.wants_resume());
        budget.count_resume();
        assert!(!budget.wants_resume());
        // Back over the high-water mark: a scan at once, whatever the last mark was.
        budget.recount(0, 17 * mib);
        assert!(budget.wants_scan());
    }

    #[test]
    fn publishing_happens_only_when_the_figure_moved() {
        let mut budget = Budget::new(100);
        assert_eq!(budget.take_unpublished(), None);
        budget.recount(0, 7);
        assert_eq!(budget.take_unpublished(), Some(7));
        assert_eq!(budget.take_unpublished(), None);
        budget.recount(7, 0);
        assert_eq!(budget.take_unpublished(), Some(0));
    }
}
