//! A shard's connection table: the [`ShardCore`] both backends drive.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Instant;

use slab::Slab;

use super::core::{ShardCore, Token};
use super::mailbox::Command;
use crate::conn::ConnId;
use crate::connection::{Connection, ShardContext};

/// Output buffers larger than this are not kept for reuse after they drain, so one big
/// message does not pin memory for the connection's whole life.
const MAX_RETAINED_OUT: usize = 256 * 1024;

struct Entry {
    generation: u32,
    conn: Connection,
    /// Already listed in `Shard::ready`.
    listed: bool,
    /// A buffer the backend handed back, kept to swap in at the next `take_send`.
    spare: Vec<u8>,
    /// The deadline this entry has in `Shard::timers`, so each is pushed once.
    armed: Option<Instant>,
}

pub(crate) struct Shard {
    ctx: ShardContext,
    conns: Slab<Entry>,
    next_generation: u32,
    ready: Vec<Token>,
    timers: BinaryHeap<Reverse<(Instant, Token)>>,
    shutting_down: bool,
}

impl Shard {
    pub(crate) fn new(ctx: ShardContext) -> Shard {
        Shard {
            ctx,
            conns: Slab::new(),
            next_generation: 0,
            ready: Vec::new(),
            timers: BinaryHeap::new(),
            shutting_down: false,
        }
    }

    fn entry(&mut self, token: Token) -> Option<&mut Entry> {
        self.conns
            .get_mut(token.index())
            .filter(|e| e.generation == token.generation())
    }

    /// Lists `token` as ready if its connection has output or wants closing, and arms
    /// its timer. Called after every call that may have changed a connection.
    fn touch(&mut self, token: Token) {
        let Some(entry) = self
            .conns
            .get_mut(token.index())
            .filter(|e| e.generation == token.generation())
        else {
            return;
        };
        let conn = &entry.conn;
        if !entry.listed && (!conn.out.queued.is_empty() || conn.wants_close()) {
            entry.listed = true;
            self.ready.push(token);
        }
        if let Some(deadline) = conn.deadline() {
            // A deadline that moved leaves a stale heap entry; the connection ignores it
            // when it fires early.
            if entry.armed != Some(deadline) {
                entry.armed = Some(deadline);
                self.timers.push(Reverse((deadline, token)));
            }
        }
    }

    fn run_command(&mut self, command: Command, now: Instant) {
        match command {
            Command::Frame { token, frame } => {
                if let Some(entry) = self.entry(token) {
                    entry.conn.send_encoded(&frame);
                    self.touch(token);
                }
            }
            Command::Close {
                token,
                code,
                reason,
            } => {
                let Shard { conns, ctx, .. } = self;
                if let Some(entry) = conns
                    .get_mut(token.index())
                    .filter(|e| e.generation == token.generation())
                {
                    entry.conn.close(code, &reason, ctx, now);
                    self.touch(token);
                }
            }
            Command::Shutdown => self.shutdown(),
        }
    }

    fn shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        tracing::debug!(
            shard = self.ctx.shard,
            open = self.conns.len(),
            "shard shutting down"
        );
        self.shutting_down = true;
        let tokens: Vec<Token> = self
            .conns
            .iter()
            .map(|(index, e)| Token::new(index as u32, e.generation))
            .collect();
        for token in tokens {
            if let Some(entry) = self.conns.get_mut(token.index()) {
                entry.conn.shutdown(&self.ctx);
            }
            self.touch(token);
        }
    }
}

impl ShardCore for Shard {
    fn on_accept(&mut self, peer: Option<SocketAddr>, now: Instant) -> Token {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let vacant = self.conns.vacant_entry();
        let token = Token::new(vacant.key() as u32, generation);
        let id = ConnId {
            shard: self.ctx.shard,
            token,
        };
        let mut conn = Connection::new(id, peer, &self.ctx.config, now);
        if self.shutting_down {
            conn.shutdown(&self.ctx);
        }
        vacant.insert(Entry {
            generation,
            conn,
            listed: false,
            spare: Vec::new(),
            armed: None,
        });
        self.touch(token);
        token
    }

    fn on_recv(&mut self, token: Token, data: &mut [u8], now: Instant) {
        let Shard { conns, ctx, .. } = self;
        if let Some(entry) = conns
            .get_mut(token.index())
            .filter(|e| e.generation == token.generation())
        {
            entry.conn.receive(data, ctx, now);
            self.touch(token);
        }
    }

    fn on_eof(&mut self, token: Token, _now: Instant) {
        let Shard { conns, ctx, .. } = self;
        if let Some(entry) = conns
            .get_mut(token.index())
            .filter(|e| e.generation == token.generation())
        {
            entry.conn.on_eof(ctx);
            self.touch(token);
        }
    }

    fn take_send(&mut self, token: Token) -> Option<Vec<u8>> {
        let entry = self.entry(token)?;
        let out = &mut entry.conn.out;
        if out.queued.is_empty() {
            return None;
        }
        let buf = std::mem::replace(&mut out.queued, std::mem::take(&mut entry.spare));
        out.in_flight = buf.len();
        Some(buf)
    }

    fn on_sent(&mut self, token: Token, mut buf: Vec<u8>, written: std::io::Result<usize>) {
        let Shard { conns, ctx, .. } = self;
        let Some(entry) = conns
            .get_mut(token.index())
            .filter(|e| e.generation == token.generation())
        else {
            return;
        };
        let out = &mut entry.conn.out;
        out.in_flight = 0;
        match written {
            Ok(n) if n < buf.len() => {
                // The rest goes out before anything queued since.
                buf.drain(..n);
                buf.extend_from_slice(&out.queued);
                out.queued.clear();
                entry.spare = std::mem::replace(&mut out.queued, buf);
            }
            Ok(_) => {
                buf.clear();
                if buf.capacity() <= MAX_RETAINED_OUT {
                    entry.spare = buf;
                }
            }
            Err(error) => {
                tracing::debug!(conn = %ConnId { shard: ctx.shard, token }, %error, "send failed");
                entry.conn.on_eof(ctx);
            }
        }
        entry.conn.on_written(ctx, Instant::now());
        self.touch(token);
    }

    fn wants_close(&self, token: Token) -> bool {
        match self.conns.get(token.index()) {
            Some(entry) if entry.generation == token.generation() => entry.conn.wants_close(),
            // Unknown tokens have nothing to keep a socket open for.
            _ => true,
        }
    }

    fn on_closed(&mut self, token: Token) {
        if self.entry(token).is_none() {
            return;
        }
        let mut entry = self.conns.remove(token.index());
        entry.conn.transport_ended(&self.ctx);
    }

    fn on_wake(&mut self, now: Instant) {
        let registry = std::sync::Arc::clone(&self.ctx.registry);
        let mailbox = registry.mailbox(self.ctx.shard as usize);
        mailbox.wake.drain();
        while let Some(command) = mailbox.pop() {
            self.run_command(command, now);
        }
    }

    fn on_timer(&mut self, now: Instant) {
        while let Some(Reverse((deadline, token))) = self.timers.peek().copied() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let Shard { conns, ctx, .. } = self;
            if let Some(entry) = conns
                .get_mut(token.index())
                .filter(|e| e.generation == token.generation())
            {
                if entry.armed == Some(deadline) {
                    entry.armed = None;
                }
                entry.conn.on_timer(ctx, now);
                self.touch(token);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((deadline, _))| *deadline)
    }

    fn drain_ready(&mut self, out: &mut Vec<Token>) {
        for token in self.ready.drain(..) {
            if let Some(entry) = self
                .conns
                .get_mut(token.index())
                .filter(|e| e.generation == token.generation())
            {
                entry.listed = false;
                out.push(token);
            }
        }
    }

    fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    fn is_finished(&self) -> bool {
        self.shutting_down && self.conns.is_empty()
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        self.ctx.registry.mailbox(self.ctx.shard as usize).stop();
    }
}
