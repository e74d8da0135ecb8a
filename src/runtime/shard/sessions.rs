//! The SockJS sessions a shard owns (shard state, beside its connection table): the
//! owner side of the connection layer's SockJS dispatch (`connection/sockjs.rs`). The
//! sessions that hash to this shard (`owner_shard`) live here with their handlers,
//! attached receivers and timers; connections (of any shard) send [`SockJsRequest`]s
//! and get [`SockJsReply`]s with transport-encoded bytes, which their shard copies out
//! as they are. The handlers are driven by the connection layer's
//! [`run_session_events`]; `ConnHandle` posts to a session arrive here (their tokens
//! are of [`TokenKind::Session`]).

use std::collections::HashMap;
use std::time::Instant;

use slab::Slab;

use super::budget::Holder;
use crate::conn::{ConnId, OutLimits, Outbox};
use crate::connection::{
    budget_close_for, run_session_events, Held, SessionKey, ShardContext, SockJsOp, SockJsReply,
    SockJsRequest,
};
use crate::handle::Outgoing;
use crate::handler::Handler;
use crate::proto::CloseCode;
use crate::pubsub::hub::Publication;
use crate::pubsub::{Delivery, SLOW_SUBSCRIBER};
use crate::route::SockJsService;
use crate::runtime::core::{Token, TokenKind};
use crate::sockjs::{
    Attached, Flow, HttpReceiver, ReceiverId, Session, SessionState, Timer,
    ANOTHER_CONNECTION_STILL_OPEN,
};

/// The text of a message a `ConnHandle` posted to a session, which goes out as a
/// SockJS message (`a["..."]`); `None` for what SockJS cannot carry (binary messages,
/// pings), which is dropped, and for the commands that are not messages.
fn posted_text(message: &Outgoing) -> Option<&str> {
    match message {
        Outgoing::Text(text) => Some(text),
        _ => None,
    }
}

/// An attached receiving request.
struct Receiver {
    id: ReceiverId,
    rx: HttpReceiver,
    shard: u32,
    token: Token,
}

struct Slot {
    key: SessionKey,
    generation: u32,
    session: Session,
    handler: Box<dyn Handler>,
    out: Outbox,
    receiver: Option<Receiver>,
    /// A second receiving request, held until `.1` before it is answered 2010: the
    /// attached receiver's abort may be on its way on another socket (often another
    /// shard), and if it lands first this request gets the session's close instead.
    contender: Option<(Receiver, Instant)>,
    armed: Option<Instant>,
    /// Send requests (their connections' shard and token) not answered yet because
    /// the handler paused reading with their messages still waiting: the client's
    /// next send waits behind the answer, as a paused socket holds back a WebSocket.
    held_sends: Vec<(u32, Token)>,
    /// Bytes of the messages delivered to the session since its event queue was last
    /// found empty: an upper bound of what waits in it (a paused handler's input).
    inbox: usize,
    /// The bytes this session counts in [`SessionTable::held`] (the memory budget).
    counted: usize,
}

impl Slot {
    /// True while the handler paused reading and messages wait in the session.
    fn holds_input(&self) -> bool {
        self.out.read_paused && !self.out.closed && self.session.has_events()
    }

    /// Answers the held send requests (the session takes input again, or is gone).
    fn release_sends(&mut self, fx: &mut Effects) {
        for (shard, token) in self.held_sends.drain(..) {
            fx.replies
                .push((shard, token, SockJsReply::Sent { found: true }));
        }
    }
}

/// How long a second receiving request waits for a possible abort of the first.
const CONTENDER_HOLD: std::time::Duration = std::time::Duration::from_millis(25);

/// What the shard must do after a session table call.
#[derive(Default)]
pub(crate) struct Effects {
    /// Replies for connections: (their shard, their token, the reply).
    pub(crate) replies: Vec<(u32, Token, SockJsReply)>,
    /// Timers to arm: (deadline, session token).
    pub(crate) timers: Vec<(Instant, Token)>,
    /// Sessions that ended and were forgotten: their topics are left.
    pub(crate) ended: Vec<Token>,
}

/// The sessions a shard owns.
pub(crate) struct SessionTable {
    slots: Slab<Slot>,
    /// The bytes the sessions hold for their clients (queued output, input waiting for
    /// a paused handler): the sum of the slots' `counted`, for the shard's memory
    /// budget.
    held: usize,
    by_key: HashMap<SessionKey, usize>,
    next_generation: u32,
    limits: OutLimits,
    /// The server shut the sessions down: a receiving request that arrives later gets
    /// [`SHUTTING_DOWN`] and no session is made.
    shut: bool,
}

/// The close frame of every session at shutdown.
const SHUTTING_DOWN: &[u8] = br#"c[1001,"Server shutting down"]"#;
/// The close frame of every session at the shutdown of a restart.
const RESTARTING: &[u8] = br#"c[1001,"Server restarting"]"#;

/// The close frame and reason of the shutdown under way (a restart says so).
fn shutdown_close(ctx: &ShardContext) -> (&'static [u8], &'static str) {
    if ctx
        .config
        .restarting
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        (RESTARTING, "Server restarting")
    } else {
        (SHUTTING_DOWN, "Server shutting down")
    }
}

impl SessionTable {
    /// The sessions this shard owns now.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn new(limits: OutLimits) -> SessionTable {
        SessionTable {
            slots: Slab::new(),
            held: 0,
            by_key: HashMap::new(),
            next_generation: 0,
            limits,
            shut: false,
        }
    }

    fn token(index: usize, generation: u32) -> Token {
        Token::of_kind(TokenKind::Session, index, generation)
    }

    fn slot_of(&self, token: Token) -> Option<usize> {
        let index = token.key();
        self.slots
            .get(index)
            .filter(|s| s.generation == token.generation())
            .map(|_| index)
    }

    fn create(
        &mut self,
        key: SessionKey,
        service: &SockJsService,
        now: Instant,
        fx: &mut Effects,
    ) -> usize {
        if let Some(old) = self.by_key.remove(&key) {
            fx.ended.push(Self::token(old, self.slots[old].generation));
            let mut old = self.slots.remove(old);
            self.held = self.held.saturating_sub(old.counted);
            old.release_sends(fx);
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let index = self.slots.insert(Slot {
            key: key.clone(),
            generation,
            session: Session::new(&service.options, now),
            handler: (service.factory)(),
            out: Outbox::sockjs(self.limits),
            receiver: None,
            contender: None,
            armed: None,
            held_sends: Vec::new(),
            inbox: 0,
            counted: 0,
        });
        self.by_key.insert(key, index);
        index
    }

    /// Runs a connection's request.
    pub(crate) fn handle(
        &mut self,
        request: SockJsRequest,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        let SockJsRequest {
            key,
            from_shard,
            from,
            op,
        } = request;
        let Some(service) = ctx.routes.sockjs_service(key.service).cloned() else {
            return;
        };
        let existing = self
            .by_key
            .get(&key)
            .copied()
            .filter(|&i| !self.slots[i].session.is_expired());
        let index = match op {
            SockJsOp::Send(messages) => {
                let Some(index) = existing else {
                    let found = false;
                    fx.replies
                        .push((from_shard, from, SockJsReply::Sent { found }));
                    return;
                };
                let slot = &mut self.slots[index];
                let bytes = messages
                    .iter()
                    .map(String::len)
                    .fold(0, usize::saturating_add);
                if slot.session.deliver(messages) {
                    slot.inbox = slot.inbox.saturating_add(bytes);
                }
                slot.held_sends.push((from_shard, from));
                self.run_and_flush(index, ctx, now, fx);
                index
            }
            SockJsOp::Attach { receiver, rx } if self.shut => {
                // Handed over before this shard's shutdown, arrived after it.
                let late = Receiver {
                    id: receiver,
                    rx,
                    shard: from_shard,
                    token: from,
                };
                answer(late, shutdown_close(ctx).0, fx);
                return;
            }
            SockJsOp::Attach { receiver, rx } => {
                let index = match existing {
                    Some(index) => index,
                    None => self.create(key, &service, now, fx),
                };
                let slot = &mut self.slots[index];
                if slot.session.attach(receiver, now) == Attached::AnotherConnectionStillOpen {
                    let contender = Receiver {
                        id: receiver,
                        rx,
                        shard: from_shard,
                        token: from,
                    };
                    let until = now + CONTENDER_HOLD;
                    if let Some((older, _)) = slot.contender.replace((contender, until)) {
                        refuse(older, fx);
                    }
                    fx.timers.push((until, Self::token(index, slot.generation)));
                    return;
                }
                slot.receiver = Some(Receiver {
                    id: receiver,
                    rx,
                    shard: from_shard,
                    token: from,
                });
                self.flush(index, now, fx);
                self.run_and_flush(index, ctx, now, fx);
                index
            }
            SockJsOp::Detach { receiver } => {
                let Some(index) = existing else {
                    return;
                };
                let slot = &mut self.slots[index];
                if slot
                    .contender
                    .as_ref()
                    .is_some_and(|(c, _)| c.id == receiver)
                {
                    // The held request's own connection went away.
                    slot.contender = None;
                    return;
                }
                slot.session.detach(receiver, true, now);
                if slot.receiver.as_ref().is_some_and(|r| r.id == receiver) {
                    slot.receiver = None;
                }
                self.run_and_flush(index, ctx, now, fx);
                self.promote_contender(index, ctx, now, fx);
                index
            }
        };
        self.arm(index, fx);
    }

    fn run_and_flush(&mut self, index: usize, ctx: &ShardContext, now: Instant, fx: &mut Effects) {
        let slot = &mut self.slots[index];
        let id = ConnId {
            shard: ctx.shard,
            token: Self::token(index, slot.generation),
        };
        run_session_events(
            &mut slot.session,
            slot.handler.as_mut(),
            &mut slot.out,
            id,
            ctx,
        );
        if !slot.holds_input() {
            slot.release_sends(fx);
        }
        self.flush(index, now, fx);
    }

    /// Writes the session's frames to its attached receiver, if any.
    fn flush(&mut self, index: usize, now: Instant, fx: &mut Effects) {
        let slot = &mut self.slots[index];
        let Some(receiver) = &mut slot.receiver else {
            return;
        };
        let mut bytes = Vec::new();
        let mut end = false;
        while let Some(frame) = slot.session.next_frame(receiver.id, now) {
            if receiver.rx.write_frame(&mut bytes, frame.bytes) == Flow::End {
                end = true;
                break;
            }
        }
        if end {
            slot.session.detach(receiver.id, false, now);
        }
        if !bytes.is_empty() || end {
            let output = SockJsReply::Output {
                receiver: receiver.id,
                bytes,
                end,
            };
            fx.replies.push((receiver.shard, receiver.token, output));
        }
        if end {
            slot.receiver = None;
        }
    }

    /// The attached receiver is gone: a held second request takes its place (it gets
    /// the session's close frame if the first one's abort closed the session).
    fn promote_contender(
        &mut self,
        index: usize,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        let slot = &mut self.slots[index];
        if slot.receiver.is_some() {
            return;
        }
        let Some((contender, _)) = slot.contender.take() else {
            return;
        };
        if slot.session.attach(contender.id, now) == Attached::AnotherConnectionStillOpen {
            refuse(contender, fx);
            return;
        }
        slot.receiver = Some(contender);
        self.flush(index, now, fx);
        self.run_and_flush(index, ctx, now, fx);
    }

    /// Arms the session's timer and recounts what it holds (every call that changes a
    /// session ends here).
    fn arm(&mut self, index: usize, fx: &mut Effects) {
        self.recount(index);
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if let Some(deadline) = slot.session.deadline() {
            if slot.armed != Some(deadline) {
                slot.armed = Some(deadline);
                fx.timers
                    .push((deadline, Self::token(index, slot.generation)));
            }
        }
    }

    /// A session's timer fired: a heartbeat, or its expiry.
    pub(crate) fn on_timer(
        &mut self,
        token: Token,
        deadline: Instant,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        let Some(index) = self.slot_of(token) else {
            return;
        };
        let slot = &mut self.slots[index];
        if slot.armed == Some(deadline) {
            slot.armed = None;
        }
        if slot
            .contender
            .as_ref()
            .is_some_and(|(_, until)| *until <= now)
        {
            if slot.receiver.is_some() {
                if let Some((contender, _)) = slot.contender.take() {
                    refuse(contender, fx);
                }
            } else {
                self.promote_contender(index, ctx, now, fx);
            }
        }
        let slot = &mut self.slots[index];
        match slot.session.on_timer(now) {
            Timer::Idle => {}
            Timer::Heartbeat => self.flush(index, now, fx),
            Timer::Expired => {
                self.run_and_flush(index, ctx, now, fx);
                fx.ended
                    .push(Self::token(index, self.slots[index].generation));
                let slot = self.slots.remove(index);
                self.held = self.held.saturating_sub(slot.counted);
                self.by_key.remove(&slot.key);
                return;
            }
        }
        self.arm(index, fx);
    }

    /// What a `ConnHandle` posted for a session: a text message goes out as a SockJS
    /// message, binary messages and pings are dropped (SockJS carries text only), a
    /// close, pause or resume is applied.
    pub(crate) fn posted(
        &mut self,
        token: Token,
        message: Outgoing,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        match message {
            Outgoing::Close { code, reason } => self.close(token, code, &reason, ctx, now, fx),
            Outgoing::PauseReading => self.set_read_paused(token, true, ctx, now, fx),
            Outgoing::ResumeReading => self.set_read_paused(token, false, ctx, now, fx),
            message => {
                if let Some(text) = posted_text(&message) {
                    self.send_text(token, text, ctx, now, fx);
                }
            }
        }
    }

    /// A message published to a topic the session subscribes to: its text goes out as
    /// a SockJS message; a binary one cannot. Over `max_buffered` it is dropped, or with
    /// `close_slow` the session is closed with 1008 "slow subscriber".
    pub(crate) fn deliver(
        &mut self,
        token: Token,
        publication: &Publication,
        close_slow: bool,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) -> Delivery {
        let Some(index) = self.slot_of(token) else {
            return Delivery::NotOpen;
        };
        let slot = &mut self.slots[index];
        if slot.session.state() != SessionState::Open {
            return Delivery::NotOpen;
        }
        let Some(text) = publication.text() else {
            return Delivery::Unsupported;
        };
        let on_limit = close_slow.then_some(SLOW_SUBSCRIBER);
        self.send_limited(index, text, on_limit, ctx, now, fx)
    }

    /// A `ConnHandle` sent a text message to a session.
    fn send_text(
        &mut self,
        token: Token,
        text: &str,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        let Some(index) = self.slot_of(token) else {
            return;
        };
        // A handle's sends are held to `max_buffered` like the handler's own.
        let on_limit = self
            .limits
            .close_on_limit
            .then_some(crate::conn::BACKPRESSURE_LIMIT);
        self.send_limited(index, text, on_limit, ctx, now, fx);
    }

    /// Queues `text` on session `index` unless it would take the session's pending
    /// bytes over `max_buffered`: then it is dropped, or with `on_limit` the session
    /// closes with that code and reason.
    fn send_limited(
        &mut self,
        index: usize,
        text: &str,
        on_limit: Option<(CloseCode, &str)>,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) -> Delivery {
        let slot = &mut self.slots[index];
        if slot.session.pending_bytes() + text.len() > self.limits.max_buffered {
            let Some((code, reason)) = on_limit else {
                return Delivery::Dropped;
            };
            slot.session.close(code.0, reason);
            self.run_and_flush(index, ctx, now, fx);
            self.arm(index, fx);
            return Delivery::Closed;
        }
        slot.session.send(text);
        self.flush(index, now, fx);
        self.arm(index, fx);
        Delivery::Queued
    }

    /// The server shuts down: every open session closes with 1001 (its handler hears
    /// `on_close`, an attached receiver gets the close frame) and is forgotten.
    pub(crate) fn shutdown(&mut self, ctx: &ShardContext, now: Instant, fx: &mut Effects) {
        self.shut = true;
        let indices: Vec<usize> = self.slots.iter().map(|(i, _)| i).collect();
        let (frame, reason) = shutdown_close(ctx);
        for index in indices {
            // A receiving request held as a contender gets the close too.
            if let Some((contender, _)) = self.slots[index].contender.take() {
                answer(contender, frame, fx);
            }
            self.slots[index].session.close(1001, reason);
            self.run_and_flush(index, ctx, now, fx);
            fx.ended
                .push(Self::token(index, self.slots[index].generation));
        }
        self.slots.clear();
        self.by_key.clear();
        self.held = 0;
    }

    /// A `ConnHandle` paused or resumed a session's handler: on a resume, the messages
    /// it kept are delivered.
    fn set_read_paused(
        &mut self,
        token: Token,
        paused: bool,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        let Some(index) = self.slot_of(token) else {
            return;
        };
        self.slots[index].out.read_paused = paused;
        self.run_and_flush(index, ctx, now, fx);
        self.arm(index, fx);
    }

    /// A `ConnHandle` closed a session.
    fn close(
        &mut self,
        token: Token,
        code: CloseCode,
        reason: &str,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        let Some(index) = self.slot_of(token) else {
            return;
        };
        self.slots[index].session.close(code.0, reason);
        self.run_and_flush(index, ctx, now, fx);
        self.arm(index, fx);
    }
}

impl SessionTable {
    /// The bytes the sessions hold for their clients (the shard's memory budget).
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Recounts what session `index` holds: its queued output and the input waiting
    /// for its handler.
    fn recount(&mut self, index: usize) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if !slot.session.has_events() {
            slot.inbox = 0;
        }
        let now = slot.session.pending_bytes().saturating_add(slot.inbox);
        self.held = self.held.saturating_sub(slot.counted).saturating_add(now);
        slot.counted = now;
    }

    /// The open sessions holding something, for the budget's choice of victims.
    pub(crate) fn budget_holders(&self, out: &mut Vec<Holder<Token>>) {
        for (index, slot) in self.slots.iter() {
            if slot.counted == 0 || slot.session.state() != SessionState::Open {
                continue;
            }
            out.push(Holder {
                key: Self::token(index, slot.generation),
                incoming: slot.inbox,
                outgoing: slot.session.pending_bytes(),
                paused: false,
                pausable: false,
                closable: true,
            });
        }
    }

    /// The shard is over its memory budget and this session is among the largest
    /// holders: it closes with `c[1009,...]` or `c[1008,...]` (see
    /// `connection::budget_close_for`), its handler hears `on_close`, and its queued
    /// output goes at its next poll (which gets what was queued, then the close) or
    /// when it expires; the input waiting for a paused handler is delivered first.
    pub(crate) fn close_for_budget(
        &mut self,
        token: Token,
        ctx: &ShardContext,
        now: Instant,
        fx: &mut Effects,
    ) {
        let Some(index) = self.slot_of(token) else {
            return;
        };
        let slot = &mut self.slots[index];
        let held = Held {
            incoming: slot.inbox,
            outgoing: slot.session.pending_bytes(),
        };
        let error = budget_close_for(held);
        tracing::debug!(session = ?slot.key, code = error.code.0, "memory budget: closing a SockJS session");
        slot.session.close(error.code.0, error.reason);
        self.run_and_flush(index, ctx, now, fx);
        self.arm(index, fx);
    }
}

/// Answers a receiving request that found another one attached:
/// `c[2010,"Another connection still open"]`, ending its response.
fn refuse(receiver: Receiver, fx: &mut Effects) {
    answer(receiver, ANOTHER_CONNECTION_STILL_OPEN, fx);
}

/// Answers a receiving request that is not attached with a close `frame`, ending its
/// response.
fn answer(mut receiver: Receiver, frame: &[u8], fx: &mut Effects) {
    let mut bytes = Vec::new();
    receiver.rx.write_frame(&mut bytes, frame);
    let output = SockJsReply::Output {
        receiver: receiver.id,
        bytes,
        end: true,
    };
    fx.replies.push((receiver.shard, receiver.token, output));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// What a session sends its receiver after the messages posted by a handle.
    fn sent_after(posted: Vec<Outgoing>) -> Option<Vec<u8>> {
        let now = Instant::now();
        let mut session = Session::new(&Default::default(), now);
        let receiver = ReceiverId(1);
        session.attach(receiver, now);
        let open = session.next_frame(receiver, now).map(|f| f.bytes.to_vec());
        assert_eq!(open.as_deref(), Some(&b"o"[..]));
        for message in &posted {
            if let Some(text) = posted_text(message) {
                session.send(text);
            }
        }
        session.next_frame(receiver, now).map(|f| f.bytes.to_vec())
    }

    #[test]
    fn posted_text_messages_are_a_sockjs_array_frame() {
        let text = |t: &str| Outgoing::Text(Arc::from(t));
        assert_eq!(
            sent_after(vec![text("say \"hi\"")]).as_deref(),
            Some(&br#"a["say \"hi\""]"#[..])
        );
        assert_eq!(
            sent_after(vec![text("one"), text("two")]).as_deref(),
            Some(&br#"a["one","two"]"#[..])
        );
    }

    #[test]
    fn what_sockjs_cannot_carry_is_dropped_and_commands_are_not_messages() {
        let posted = vec![
            Outgoing::Binary(Arc::from(&b"b"[..])),
            Outgoing::Ping(Arc::from(&b"p"[..])),
            Outgoing::Close {
                code: CloseCode(1000),
                reason: String::new(),
            },
            Outgoing::PauseReading,
            Outgoing::ResumeReading,
        ];
        assert_eq!(sent_after(posted), None);
    }
}
