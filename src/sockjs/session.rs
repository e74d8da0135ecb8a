//! The transport-agnostic session state machine: open frame, pending messages,
//! one receiver at a time, close frames, heartbeats and the disconnect delay.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::frame::{quote_into, write_array_frame, write_close_frame, HEARTBEAT_FRAME, OPEN_FRAME};
use super::options::SockJsOptions;

/// The frame a second receiver gets while one is attached; its response then ends
/// (the first receiver is left alone).
pub const ANOTHER_CONNECTION_STILL_OPEN: &[u8] = br#"c[2010,"Another connection still open"]"#;

/// An opaque id of one receiving request (or WebSocket), chosen by the server; it must
/// differ between requests that may overlap on one session (a connection id plus a
/// request counter, for instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReceiverId(pub u64);

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Created, no receiver yet (the open frame is not sent).
    Connecting,
    /// The open frame was sent; messages flow.
    Open,
    /// Closed by the application or by an interrupted receiver: every receiver gets the
    /// close frame until the session expires.
    Closing,
    /// Expired: the server forgets it.
    Closed,
}

/// Why a session stopped being open (given with [`SessionEvent::Closed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseCause {
    /// The application called [`Session::close`].
    Closed {
        /// The close code sent to the client.
        code: u16,
        /// The reason sent to the client.
        reason: String,
    },
    /// A receiving request (or the session's WebSocket) went away before its response
    /// ended: the client gets `c[1002,"Connection interrupted"]`.
    Interrupted,
    /// No receiver for the disconnect delay.
    TimedOut,
}

/// Something the application handler must hear about, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The session opened (its open frame went to the first receiver).
    Opened,
    /// A message from the client.
    Message(String),
    /// The session is no longer open; this is the last event.
    Closed(CloseCause),
}

/// The outcome of [`Session::attach`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// A new session: the receiver is attached, its first frame is `o`
    /// ([`Session::next_frame`]), and [`SessionEvent::Opened`] is queued.
    Opened,
    /// An open session: the receiver is attached; pending messages come next.
    Resumed,
    /// A closing or closed session: the receiver is attached only to get pending
    /// messages and then the close frame, after which the response ends.
    Closing,
    /// Another receiver is attached: write [`ANOTHER_CONNECTION_STILL_OPEN`] to this
    /// one and end its response; it is not attached.
    AnotherConnectionStillOpen,
}

/// What [`Session::on_timer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Nothing due.
    Idle,
    /// A heartbeat is due: flush with [`Session::next_frame`] (it yields `h`).
    Heartbeat,
    /// The session expired: drain its events, then forget it.
    Expired,
}

/// One frame to send to the attached receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The SockJS frame (`o`, `h`, `a[...]` or `c[...]`), not yet transport-encoded.
    pub bytes: &'a [u8],
    /// True for a close frame: after it the receiver is detached and its response
    /// must end (a WebSocket is closed with 1000 "Normal closure").
    pub is_close: bool,
}

/// One SockJS session, without I/O or clocks.
#[derive(Debug)]
pub struct Session {
    state: SessionState,
    receiver: Option<ReceiverId>,
    open_due: bool,
    heartbeat_due: bool,
    pending: Vec<u8>,
    close_frame: Vec<u8>,
    scratch: Vec<u8>,
    heartbeat_delay: Duration,
    disconnect_delay: Duration,
    heartbeat_at: Option<Instant>,
    disconnect_at: Option<Instant>,
    events: VecDeque<SessionEvent>,
}

impl Session {
    /// A new session in [`SessionState::Connecting`]; it expires if no receiver
    /// attaches within the disconnect delay.
    pub fn new(options: &SockJsOptions, now: Instant) -> Self {
        Self {
            state: SessionState::Connecting,
            receiver: None,
            open_due: false,
            heartbeat_due: false,
            pending: Vec::new(),
            close_frame: Vec::new(),
            scratch: Vec::new(),
            heartbeat_delay: options.heartbeat_delay,
            disconnect_delay: options.disconnect_delay,
            heartbeat_at: None,
            disconnect_at: Some(now + options.disconnect_delay),
            events: VecDeque::new(),
        }
    }

    /// The state.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// The attached receiver, if any.
    #[cfg(test)]
    pub fn receiver(&self) -> Option<ReceiverId> {
        self.receiver
    }

    /// True once the session expired: the server must forget it (drain
    /// [`poll_event`](Self::poll_event) first). A new request with the same session id
    /// then starts a new session.
    pub fn is_expired(&self) -> bool {
        self.state == SessionState::Closed
    }

    /// Attaches a receiving request (or the session's WebSocket). Then write the frames
    /// of [`next_frame`](Self::next_frame) until it gives `None` or the response ends.
    pub fn attach(&mut self, receiver: ReceiverId, now: Instant) -> Attached {
        match self.receiver {
            Some(current) if current != receiver => return Attached::AnotherConnectionStillOpen,
            _ => {}
        }
        let was_attached = self.receiver.is_some();
        self.receiver = Some(receiver);
        self.disconnect_at = None;
        match self.state {
            SessionState::Connecting => {
                self.state = SessionState::Open;
                self.open_due = true;
                self.events.push_back(SessionEvent::Opened);
                self.heartbeat_at = Some(now + self.heartbeat_delay);
                Attached::Opened
            }
            SessionState::Open => {
                if !was_attached {
                    self.heartbeat_at = Some(now + self.heartbeat_delay);
                }
                Attached::Resumed
            }
            SessionState::Closing | SessionState::Closed => Attached::Closing,
        }
    }

    /// The next frame for `receiver` (if it is the attached one): the open frame, then
    /// all pending messages as one `a[...]`, then the close frame of a closing session
    /// (which detaches the receiver), or a due heartbeat. `None`: nothing to send now;
    /// a streaming response waits, call again after [`send`](Self::send),
    /// [`close`](Self::close) or a [`Timer::Heartbeat`].
    pub fn next_frame(&mut self, receiver: ReceiverId, now: Instant) -> Option<Frame<'_>> {
        if self.receiver != Some(receiver) {
            return None;
        }
        self.scratch.clear();
        let mut is_close = false;
        if self.open_due {
            self.open_due = false;
            self.scratch.extend_from_slice(OPEN_FRAME);
        } else if !self.pending.is_empty() {
            write_array_frame(&mut self.scratch, &self.pending);
            self.pending.clear();
        } else if matches!(self.state, SessionState::Closing | SessionState::Closed) {
            self.scratch.extend_from_slice(&self.close_frame);
            is_close = true;
            self.receiver = None;
            self.heartbeat_at = None;
            self.heartbeat_due = false;
            if self.state == SessionState::Closing {
                self.disconnect_at = Some(now + self.disconnect_delay);
            }
        } else if self.heartbeat_due {
            self.scratch.extend_from_slice(HEARTBEAT_FRAME);
        } else {
            return None;
        }
        self.heartbeat_due = false;
        if !is_close {
            self.heartbeat_at = Some(now + self.heartbeat_delay);
        }
        Some(Frame {
            bytes: &self.scratch,
            is_close,
        })
    }

    /// Detaches `receiver` when its response ended or its connection went away;
    /// `interrupted` is true when it went away before the response ended (the
    /// session then closes with `c[1002,"Connection interrupted"]` and pending
    /// messages are dropped). The disconnect delay starts. Other ids are ignored.
    pub fn detach(&mut self, receiver: ReceiverId, interrupted: bool, now: Instant) {
        if self.receiver != Some(receiver) {
            return;
        }
        self.receiver = None;
        self.heartbeat_at = None;
        self.heartbeat_due = false;
        self.open_due = false;
        if self.state != SessionState::Closed {
            self.disconnect_at = Some(now + self.disconnect_delay);
        }
        if interrupted && self.state == SessionState::Open {
            self.pending.clear();
            self.begin_close(1002, "Connection interrupted", CloseCause::Interrupted);
        }
    }

    /// Queues a message for the client; `false` (dropped) unless the session is open.
    /// With a receiver attached, flush with [`next_frame`](Self::next_frame).
    pub fn send(&mut self, message: &str) -> bool {
        if self.state != SessionState::Open {
            return false;
        }
        if !self.pending.is_empty() {
            self.pending.push(b',');
        }
        quote_into(&mut self.pending, message);
        true
    }

    /// Number of bytes of queued, encoded messages.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Closes an open session with `code` and `reason` (sockjs-node's default is 1000
    /// "Normal closure"); `false` unless it was open. Queues
    /// [`SessionEvent::Closed`]; the attached receiver (flush with
    /// [`next_frame`](Self::next_frame)) and every later one get the close frame
    /// until the session expires.
    pub fn close(&mut self, code: u16, reason: &str) -> bool {
        if self.state != SessionState::Open {
            return false;
        }
        self.begin_close(
            code,
            reason,
            CloseCause::Closed {
                code,
                reason: reason.to_owned(),
            },
        );
        true
    }

    fn begin_close(&mut self, code: u16, reason: &str, cause: CloseCause) {
        self.state = SessionState::Closing;
        self.close_frame.clear();
        write_close_frame(&mut self.close_frame, code, reason);
        self.events.push_back(SessionEvent::Closed(cause));
    }

    /// Queues messages received from the client as [`SessionEvent::Message`]s; `false`
    /// (dropped) unless the session is open. The send request is answered as accepted
    /// either way.
    pub fn deliver<I: IntoIterator<Item = String>>(&mut self, messages: I) -> bool {
        if self.state != SessionState::Open {
            return false;
        }
        self.events
            .extend(messages.into_iter().map(SessionEvent::Message));
        true
    }

    /// The next event for the application handler.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// True while events wait for [`poll_event`](Self::poll_event) (an application
    /// that paused reading leaves them here).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// When [`on_timer`](Self::on_timer) must run next: the heartbeat of an attached
    /// receiver, or the expiry of a session without one.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.heartbeat_at, self.disconnect_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers at `now`: a heartbeat due for an attached, idle receiver
    /// (every heartbeat delay after its last frame), or the expiry of a session that
    /// had no receiver for the disconnect delay (an open one queues
    /// [`SessionEvent::Closed`] with [`CloseCause::TimedOut`]).
    pub fn on_timer(&mut self, now: Instant) -> Timer {
        if self.state == SessionState::Closed {
            return Timer::Idle;
        }
        if self.receiver.is_none() {
            if self.disconnect_at.is_some_and(|at| now >= at) {
                if self.state == SessionState::Open {
                    self.pending.clear();
                    self.begin_close(1000, "Normal closure", CloseCause::TimedOut);
                }
                self.state = SessionState::Closed;
                self.disconnect_at = None;
                return Timer::Expired;
            }
            return Timer::Idle;
        }
        if self.state == SessionState::Open && self.heartbeat_at.is_some_and(|at| now >= at) {
            self.heartbeat_due = true;
            self.heartbeat_at = Some(now + self.heartbeat_delay);
            return Timer::Heartbeat;
        }
        Timer::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn session(t0: Instant) -> Session {
        Session::new(&SockJsOptions::default(), t0)
    }

    fn frame(s: &mut Session, r: ReceiverId, now: Instant) -> Option<(Vec<u8>, bool)> {
        s.next_frame(r, now).map(|f| (f.bytes.to_vec(), f.is_close))
    }

    fn events(s: &mut Session) -> Vec<SessionEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    #[test]
    fn events_wait_until_polled() {
        let t0 = crate::test_support::t0();
        let mut s = session(t0);
        assert!(!s.has_events());
        s.attach(ReceiverId(1), t0);
        assert!(s.deliver(["a".to_owned()]));
        assert!(s.has_events());
        assert_eq!(s.poll_event(), Some(SessionEvent::Opened));
        assert!(s.has_events());
        assert_eq!(events(&mut s), vec![SessionEvent::Message("a".into())]);
        assert!(!s.has_events());
    }

    /// Protocol.test_simpleSession with an echo handler.
    #[test]
    fn xhr_polling_open_message_and_second_receiver() {
        let t0 = crate::test_support::t0();
        let mut s = session(t0);
        let r1 = ReceiverId(1);
        assert_eq!(s.attach(r1, t0), Attached::Opened);
        assert_eq!(frame(&mut s, r1, t0), Some((b"o".to_vec(), false)));
        s.detach(r1, false, t0);
        assert_eq!(events(&mut s), vec![SessionEvent::Opened]);

        // xhr_send ["a"], echoed by the handler.
        assert!(s.deliver(vec!["a".to_owned()]));
        for e in events(&mut s) {
            if let SessionEvent::Message(m) = e {
                assert!(s.send(&m));
            }
        }
        let r2 = ReceiverId(2);
        assert_eq!(s.attach(r2, t0 + S), Attached::Resumed);
        assert_eq!(
            frame(&mut s, r2, t0 + S),
            Some((br#"a["a"]"#.to_vec(), false))
        );
        s.detach(r2, false, t0 + S);

        // A waiting poll, then a second one: 2010 for the second, the first stays.
        let r3 = ReceiverId(3);
        let r4 = ReceiverId(4);
        assert_eq!(s.attach(r3, t0 + S), Attached::Resumed);
        assert_eq!(frame(&mut s, r3, t0 + S), None);
        assert_eq!(s.attach(r4, t0 + S), Attached::AnotherConnectionStillOpen);
        assert_eq!(
            ANOTHER_CONNECTION_STILL_OPEN,
            br#"c[2010,"Another connection still open"]"#
        );
        assert_eq!(s.receiver(), Some(r3));
        s.detach(r4, false, t0 + S); // ignored
        assert_eq!(s.receiver(), Some(r3));
        assert_eq!(s.state(), SessionState::Open);
    }

    /// Protocol.test_closeSession / JsonPolling.test_close: the close frame is served
    /// again and again until the session expires.
    #[test]
    fn closed_session_answers_go_away_until_expiry() {
        let t0 = crate::test_support::t0();
        let mut s = session(t0);
        let r1 = ReceiverId(1);
        s.attach(r1, t0);
        assert_eq!(frame(&mut s, r1, t0).unwrap().0, b"o");
        s.detach(r1, false, t0);
        assert_eq!(events(&mut s), vec![SessionEvent::Opened]);
        assert!(s.close(3000, "Go away!"));
        assert!(!s.close(3000, "again"));
        assert!(!s.send("late"));
        assert_eq!(
            events(&mut s),
            vec![SessionEvent::Closed(CloseCause::Closed {
                code: 3000,
                reason: "Go away!".into()
            })]
        );
        for i in 2..5u64 {
            let now = t0 + S * i as u32;
            let r = ReceiverId(i);
            assert_eq!(s.attach(r, now), Attached::Closing);
            assert_eq!(
                frame(&mut s, r, now),
                Some((br#"c[3000,"Go away!"]"#.to_vec(), true))
            );
            assert_eq!(s.receiver(), None);
            assert_eq!(s.deadline(), Some(now + 5 * S));
            s.detach(r, false, now); // no-op, already detached
        }
        assert_eq!(s.on_timer(t0 + 8 * S), Timer::Idle);
        assert_eq!(s.on_timer(t0 + 9 * S), Timer::Expired);
        assert!(s.is_expired());
        assert_eq!(events(&mut s), vec![]);
    }

    /// HandlingClose.test_close_frame: a streaming receiver gets o then the close
    /// frame when the handler closes at open.
    #[test]
    fn streaming_close_at_open() {
        let t0 = crate::test_support::t0();
        let mut s = session(t0);
        let r1 = ReceiverId(1);
        assert_eq!(s.attach(r1, t0), Attached::Opened);
        assert_eq!(frame(&mut s, r1, t0), Some((b"o".to_vec(), false)));
        assert_eq!(events(&mut s), vec![SessionEvent::Opened]);
        s.close(3000, "Go away!");
        assert_eq!(
            frame(&mut s, r1, t0),
            Some((br#"c[3000,"Go away!"]"#.to_vec(), true))
        );
        let r2 = ReceiverId(2);
        assert_eq!(s.attach(r2, t0), Attached::Closing);
        assert!(frame(&mut s, r2, t0).unwrap().1);
    }

    /// HandlingClose.test_abort_xhr_streaming / test_abort_xhr_polling.
    #[test]
    fn interrupted_receiver_closes_with_1002() {
        let t0 = crate::test_support::t0();
        let mut s = session(t0);
        let r1 = ReceiverId(1);
        s.attach(r1, t0);
        frame(&mut s, r1, t0);
        assert_eq!(
            s.attach(ReceiverId(2), t0),
            Attached::AnotherConnectionStillOpen
        );
        s.send("lost");
        s.detach(r1, true, t0 + S);
        assert_eq!(
            events(&mut s),
            vec![
                SessionEvent::Opened,
                SessionEvent::Closed(CloseCause::Interrupted)
            ]
        );
        let r3 = ReceiverId(3);
        assert_eq!(s.attach(r3, t0 + S), Attached::Closing);
        assert_eq!(
            frame(&mut s, r3, t0 + S),
            Some((br#"c[1002,"Connection interrupted"]"#.to_vec(), true))
        );
        assert!(!s.deliver(vec!["x".into()]));
    }

    /// Pending messages go out before the close frame of a session closed while no
    /// receiver was attached.
    #[test]
    fn pending_then_close() {
        let t0 = crate::test_support::t0();
        let mut s = session(t0);
        let r1 = ReceiverId(1);
        s.attach(r1, t0);
        frame(&mut s, r1, t0);
        s.detach(r1, false, t0);
        s.send("a");
        s.send("b\u{2028}");
        assert_eq!(s.pending_bytes(), "\"a\",\"b\\u2028\"".len());
        s.close(1000, "Normal closure");
        let r2 = ReceiverId(2);
        s.attach(r2, t0);
        assert_eq!(
            frame(&mut s, r2, t0),
            Some((br#"a["a","b\u2028"]"#.to_vec(), false))
        );
        assert_eq!(
            frame(&mut s, r2, t0),
            Some((br#"c[1000,"Normal closure"]"#.to_vec(), true))
        );
        assert_eq!(frame(&mut s, r2, t0), None);
    }

    #[test]
    fn heartbeats_with_injected_instants() {
        let t0 = crate::test_support::t0();
        let opts = SockJsOptions::default().heartbeat_delay(Duration::from_secs(25));
        let mut s = Session::new(&opts, t0);
        let r = ReceiverId(7);
        s.attach(r, t0);
        frame(&mut s, r, t0);
        assert_eq!(s.deadline(), Some(t0 + 25 * S));
        assert_eq!(s.on_timer(t0 + 24 * S), Timer::Idle);
        assert_eq!(s.on_timer(t0 + 25 * S), Timer::Heartbeat);
        assert_eq!(frame(&mut s, r, t0 + 25 * S), Some((b"h".to_vec(), false)));
        assert_eq!(frame(&mut s, r, t0 + 25 * S), None);
        assert_eq!(s.deadline(), Some(t0 + 50 * S));
        // A message postpones the next heartbeat.
        s.send("x");
        assert!(frame(&mut s, r, t0 + 40 * S).is_some());
        assert_eq!(s.on_timer(t0 + 50 * S), Timer::Idle);
        assert_eq!(s.deadline(), Some(t0 + 65 * S));
        assert_eq!(s.on_timer(t0 + 65 * S), Timer::Heartbeat);
        // Attached receivers never expire; no heartbeat while detached.
        assert_eq!(s.on_timer(t0 + 1000 * S), Timer::Heartbeat);
        s.detach(r, false, t0 + 1000 * S);
        assert_eq!(s.deadline(), Some(t0 + 1005 * S));
        assert_eq!(s.on_timer(t0 + 1004 * S), Timer::Idle);
    }

    #[test]
    fn disconnect_delay_expires_open_and_unattached_sessions() {
        let t0 = crate::test_support::t0();
        let mut never = session(t0);
        assert_eq!(never.deadline(), Some(t0 + 5 * S));
        assert_eq!(never.on_timer(t0 + 5 * S), Timer::Expired);
        assert_eq!(events(&mut never), vec![]);

        let mut s = session(t0);
        let r = ReceiverId(1);
        s.attach(r, t0);
        frame(&mut s, r, t0);
        s.detach(r, false, t0 + S);
        assert_eq!(s.on_timer(t0 + 5 * S), Timer::Idle);
        assert_eq!(s.on_timer(t0 + 6 * S), Timer::Expired);
        assert_eq!(
            events(&mut s),
            vec![
                SessionEvent::Opened,
                SessionEvent::Closed(CloseCause::TimedOut)
            ]
        );
        assert_eq!(s.on_timer(t0 + 60 * S), Timer::Idle);
        assert_eq!(s.deadline(), None);
    }

    /// XhrPolling.test_content_types: several sends batch into one frame.
    #[test]
    fn batched_messages() {
        let t0 = crate::test_support::t0();
        let mut s = session(t0);
        let r = ReceiverId(1);
        s.attach(r, t0);
        frame(&mut s, r, t0);
        s.detach(r, false, t0);
        for _ in 0..8 {
            s.send("a");
        }
        s.attach(ReceiverId(2), t0);
        assert_eq!(
            frame(&mut s, ReceiverId(2), t0).unwrap().0,
            format!("a[{}]", ["\"a\""; 8].join(",")).into_bytes()
        );
    }

    #[test]
    fn reattach_same_receiver_is_idempotent() {
        let t0 = crate::test_support::t0();
        let mut s = session(t0);
        let r = ReceiverId(1);
        assert_eq!(s.attach(r, t0), Attached::Opened);
        assert_eq!(s.attach(r, t0), Attached::Resumed);
        assert_eq!(frame(&mut s, r, t0).unwrap().0, b"o");
        assert_eq!(frame(&mut s, ReceiverId(9), t0), None);
    }
}
