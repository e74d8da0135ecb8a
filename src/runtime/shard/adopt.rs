//! Connections another server upgraded and handed to this shard (the hyper adapter's
//! hand-off, `runtime/adapter/hand_off.rs`): the socket, the bytes that server read
//! past the request, the handshake's permessage-deflate agreement and a factory for
//! the handler arrive through the mailbox; the connection starts already open, and
//! the backend takes the socket from [`ShardCore::take_adopted`].

use std::fmt;
use std::os::fd::OwnedFd;
use std::time::Instant;

use bytes::Bytes;

use super::{Entry, Shard};
use crate::conn::{ConnId, Framing};
use crate::connection::Connection;
use crate::deflate_options::DeflateOptions;
use crate::handshake::DeflateAgreement;
use crate::runtime::adapter::HandlerFactory;
use crate::runtime::core::{Token, TokenKind};

/// An upgraded connection handed to a shard.
pub(crate) struct Adoption {
    /// The socket, in non-blocking mode.
    pub(crate) socket: std::net::TcpStream,
    /// Bytes the other server read past the upgrade request (the first frames).
    pub(crate) read_ahead: Bytes,
    pub(crate) factory: HandlerFactory,
    pub(crate) deflate: Option<(DeflateAgreement, DeflateOptions)>,
}

impl fmt::Debug for Adoption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adoption")
            .field("socket", &self.socket)
            .field("read_ahead", &self.read_ahead.len())
            .finish_non_exhaustive()
    }
}

impl Shard {
    /// Opens the handed-over connection here: its handler hears `on_open`, then the
    /// bytes read ahead; the backend starts reading the socket on its next turn.
    pub(super) fn adopt(&mut self, adoption: Adoption, now: Instant) {
        let Adoption {
            socket,
            read_ahead,
            factory,
            deflate,
        } = adoption;
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let token = Token::of_kind(TokenKind::Conn, self.conns.vacant_key(), generation);
        let id = ConnId {
            shard: self.ctx.shard,
            token,
        };
        let Some(mut conn) =
            Connection::open_with(id, Framing::Rfc6455, factory(), deflate, &self.ctx, now)
        else {
            return;
        };
        if self.shutting_down {
            conn.shutdown(&self.ctx, self.shutdown_deadline, now);
        }
        // Counted like an accepted connection (`on_closed` uncounts it); it is past its
        // handshake, so never pending.
        self.admitted += 1;
        self.conns.insert(Entry {
            tls: None,
            generation,
            conn,
            listed: false,
            delivered: false,
            armed: None,
            flush_deadline: None,
            pending: false,
            reading: true,
            held: 0,
        });
        if !read_ahead.is_empty() {
            let Shard { conns, ctx, .. } = self;
            if let Some(entry) = conns.get_mut(token) {
                let mut bytes = read_ahead.to_vec();
                entry.conn.receive(&mut bytes, ctx, now);
            }
        }
        self.touch(token);
        self.adopted.push((token, OwnedFd::from(socket)));
        self.run_work(now);
        self.check_budget();
    }
}
