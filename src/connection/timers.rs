//! A connection's timers: one deadline per kind in a small fixed table, so that
//! [`Connection::on_timer`](super::Connection::on_timer) handles exactly the kinds that
//! are due instead of inferring which one fired from the phase and flags. The shard only
//! sees the earliest ([`Timers::next`]); a kind whose deadline moved later is looked at
//! when it is due, and one that fires early finds nothing due.

use std::time::Instant;

/// What a connection waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The request head (or the hixie-76 body) must arrive by then; on a kept-alive
    /// connection, the next request must begin by then.
    Handshake = 0,
    /// Our close frame went out: the peer's reply must arrive by then.
    Close = 1,
    /// The idle timeout looks at an open connection (ping, then 1001).
    Idle = 2,
    /// The SockJS `websocket` adaptor's heartbeat.
    Heartbeat = 3,
    /// A shutdown's limit for what the connection is in the middle of.
    Shutdown = 4,
    /// A static file's body: the peer must take some of it by then.
    FileStall = 5,
    /// permessage-deflate with context takeover: streams unused since then hibernate.
    Hibernate = 6,
}

impl Timer {
    const ALL: [Timer; 7] = [
        Timer::Handshake,
        Timer::Close,
        Timer::Idle,
        Timer::Heartbeat,
        Timer::Shutdown,
        Timer::FileStall,
        Timer::Hibernate,
    ];
}

/// One optional deadline per [`Timer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Timers {
    at: [Option<Instant>; Timer::ALL.len()],
}

impl Timers {
    /// Arms `timer` for `at` (replacing its earlier deadline).
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer as usize] = Some(at);
    }

    /// Arms `timer` for `at`, or keeps its earlier deadline if that comes first.
    pub(crate) fn set_earliest(&mut self, timer: Timer, at: Instant) {
        let slot = &mut self.at[timer as usize];
        *slot = Some(slot.map_or(at, |old| old.min(at)));
    }

    pub(crate) fn clear(&mut self, timer: Timer) {
        self.at[timer as usize] = None;
    }

    pub(crate) fn clear_all(&mut self) {
        self.at = Default::default();
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer as usize]
    }

    /// The earliest deadline of all.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// The kinds due at `now`, earliest first (each listed once).
    pub(crate) fn due(&self, now: Instant) -> Vec<Timer> {
        let mut due: Vec<(Instant, Timer)> = Timer::ALL
            .iter()
            .filter_map(|&timer| {
                self.get(timer)
                    .filter(|&at| at <= now)
                    .map(|at| (at, timer))
            })
            .collect();
        due.sort_by_key(|&(at, timer)| (at, timer as usize));
        due.into_iter().map(|(_, timer)| timer).collect()
    }

    /// Disarms `timer` if it is due at `now`; true when it was.
    pub(crate) fn take_due(&mut self, timer: Timer, now: Instant) -> bool {
        let slot = &mut self.at[timer as usize];
        if slot.is_some_and(|at| at <= now) {
            *slot = None;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn next_is_the_earliest_and_due_lists_only_what_passed() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        assert_eq!(timers.next(), None);
        timers.set(Timer::Idle, t0 + Duration::from_secs(5));
        timers.set(Timer::Close, t0 + Duration::from_secs(2));
        timers.set_earliest(Timer::Shutdown, t0 + Duration::from_secs(3));
        timers.set_earliest(Timer::Shutdown, t0 + Duration::from_secs(9));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(timers.due(t0 + Duration::from_secs(1)), vec![]);
        assert_eq!(
            timers.due(t0 + Duration::from_secs(3)),
            vec![Timer::Close, Timer::Shutdown]
        );
        assert!(!timers.take_due(Timer::Idle, t0 + Duration::from_secs(3)));
        assert!(timers.take_due(Timer::Close, t0 + Duration::from_secs(3)));
        assert_eq!(timers.get(Timer::Close), None);
        timers.clear_all();
        assert_eq!(timers.next(), None);
    }
}
