//! Cross-shard mailboxes: one lock-free MPSC queue plus an eventfd per shard.
//!
//! Any thread posts a [`Command`] to the shard that owns a connection; the shard's
//! backend sees the eventfd become readable and the shard drains its queue in one go.
//! Commands from one producer arrive in the order they were posted (the queue is FIFO),
//! which is what keeps messages sent through a `ConnHandle` in order.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crossbeam_queue::SegQueue;

use super::core::Token;
use super::eventfd::EventFd;
use crate::conn::ConnId;
use crate::connection::{SockJsReply, SockJsRequest};
use crate::handle::{Outgoing, Post, Stopped};
use crate::pubsub::hub::Publication;
use std::sync::Arc;

/// Work for a shard, posted from any thread.
#[derive(Debug)]
pub(crate) enum Command {
    /// What a `ConnHandle` asked of a connection (or SockJS session) of this shard:
    /// the shard encodes a message for the connection's framing when it applies it.
    Post { token: Token, message: Outgoing },
    /// A message published to a topic this shard has subscribers of.
    Publish(Arc<Publication>),
    /// A SockJS request for a session this shard owns.
    SockJs(SockJsRequest),
    /// A session owner's reply for a connection of this shard.
    SockJsReply { token: Token, reply: SockJsReply },
    /// Close every connection with 1001 and stop.
    Shutdown,
    /// A connection upgraded by a hyper server, handed to this shard.
    #[cfg(feature = "hyper")]
    Adopt(Box<super::shard::adopt::Adoption>),
}

/// One shard's mailbox.
#[derive(Debug)]
pub(crate) struct Mailbox {
    queue: SegQueue<Command>,
    pub(crate) wake: EventFd,
    /// Set when the shard has stopped: posts fail instead of piling up.
    stopped: AtomicBool,
    /// A wake-up is on its way (the eventfd was written and the shard has not taken
    /// its queue since): later posts need not write it again. A fan-out posting to a
    /// busy shard thousands of times a second costs one `write` per shard turn, not
    /// one per message.
    signaled: AtomicBool,
    /// The bytes the shard holds for its peers (its memory budget's figure), stored by
    /// the shard when it moved, once per batch of events (`ShardCore::drain_ready`),
    /// and read by `ServerHandle::memory_held`.
    held: AtomicUsize,
    /// The shard's pub/sub counters (`ServerHandle::pubsub_stats`).
    pub(crate) fanout: super::shard::topics::FanoutFigures,
    /// The shard's metrics as it last stored them (`ServerHandle::stats`).
    pub(crate) metrics: std::sync::Mutex<crate::metrics::Counts>,
}

/// The posting failed because the shard has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShardStopped;

impl Mailbox {
    fn new() -> io::Result<Mailbox> {
        Ok(Mailbox {
            queue: SegQueue::new(),
            wake: EventFd::new()?,
            stopped: AtomicBool::new(false),
            signaled: AtomicBool::new(false),
            held: AtomicUsize::new(0),
            fanout: Default::default(),
            metrics: Default::default(),
        })
    }

    /// Publishes the bytes the shard holds (called by the owning shard only).
    pub(crate) fn publish_held(&self, bytes: usize) {
        self.held.store(bytes, Ordering::Relaxed);
    }

    /// Takes the next command, if any (called by the owning shard only, after
    /// [`Mailbox::take_wake`]).
    pub(crate) fn pop(&self) -> Option<Command> {
        self.queue.pop()
    }

    /// The shard is about to take its queue (its backend drained the eventfd before
    /// `on_wake`): clears the pending wake-up, so the next post writes the eventfd
    /// again. (An exchange, not a
    /// store: it reads the flag a poster set after pushing, so that poster's command
    /// is visible to the pops that follow; a poster that comes after it sees the flag
    /// clear and wakes the shard again.)
    pub(crate) fn take_wake(&self) {
        self.signaled.swap(false, Ordering::AcqRel);
    }

    /// True once the shard has stopped (`ringws::handover` watches for the server's end).
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Marks the shard stopped; later posts fail.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        // Drop what was posted meanwhile: nobody will read it.
        while self.queue.pop().is_some() {}
    }
}

/// All shards' mailboxes, shared by every shard and every handle.
#[derive(Debug)]
pub(crate) struct Registry {
    mailboxes: Box<[Mailbox]>,
    /// SockJS requests handed to another shard's mailbox so far (tests read it).
    sockjs_handoffs: std::sync::atomic::AtomicUsize,
}

impl Registry {
    pub(crate) fn new(shards: usize) -> io::Result<Registry> {
        let mailboxes = (0..shards)
            .map(|_| Mailbox::new())
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Registry {
            mailboxes: mailboxes.into_boxed_slice(),
            sockjs_handoffs: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Counts one SockJS request handed to another shard.
    pub(crate) fn count_sockjs_handoff(&self) {
        self.sockjs_handoffs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// SockJS requests handed to another shard so far.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn sockjs_handoffs(&self) -> usize {
        self.sockjs_handoffs
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The bytes every shard holds for its peers, as last published (see
    /// `ServerHandle::memory_held`).
    pub(crate) fn memory_held(&self) -> usize {
        self.mailboxes
            .iter()
            .map(|mailbox| mailbox.held.load(Ordering::Relaxed))
            .fold(0, usize::saturating_add)
    }

    pub(crate) fn mailbox(&self, shard: usize) -> &Mailbox {
        &self.mailboxes[shard]
    }

    pub(crate) fn shards(&self) -> usize {
        self.mailboxes.len()
    }

    /// Posts `command` to `shard` and wakes it.
    pub(crate) fn post(&self, shard: usize, command: Command) -> Result<(), ShardStopped> {
        let mailbox = self.mailboxes.get(shard).ok_or(ShardStopped)?;
        if mailbox.stopped.load(Ordering::Acquire) {
            return Err(ShardStopped);
        }
        mailbox.queue.push(command);
        if !mailbox.signaled.swap(true, Ordering::AcqRel) {
            mailbox.wake.signal();
        }
        Ok(())
    }
}

/// A `ConnHandle` posts to the mailbox of the shard that owns its connection.
impl Post for Registry {
    fn post(&self, to: ConnId, message: Outgoing) -> Result<(), Stopped> {
        let command = Command::Post {
            token: to.token,
            message,
        };
        Registry::post(self, to.shard(), command).map_err(|ShardStopped| Stopped)
    }

    fn post_publication(&self, shard: usize, publication: Arc<Publication>) -> Result<(), Stopped> {
        Registry::post(self, shard, Command::Publish(publication)).map_err(|ShardStopped| Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_from_one_producer_arrive_in_order() {
        let registry = std::sync::Arc::new(Registry::new(2).expect("registry"));
        let producer = {
            let registry = registry.clone();
            std::thread::spawn(move || {
                for i in 0..1000u32 {
                    let to = ConnId {
                        shard: 1,
                        token: Token::new(i, 0),
                    };
                    let message = Outgoing::Text(i.to_string().into());
                    Post::post(&*registry, to, message).expect("post");
                }
            })
        };
        producer.join().expect("producer");
        let mailbox = registry.mailbox(1);
        assert!(mailbox.wake.drain());
        // One wake-up for the thousand posts.
        assert!(!mailbox.wake.drain());
        for i in 0..1000u32 {
            match mailbox.pop() {
                Some(Command::Post {
                    token,
                    message: Outgoing::Text(text),
                }) => {
                    assert_eq!(token, Token::new(i, 0));
                    assert_eq!(*text, i.to_string());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(mailbox.pop().is_none());
    }

    #[test]
    fn posting_to_a_stopped_shard_fails() {
        let registry = Registry::new(1).expect("registry");
        registry.mailbox(0).stop();
        assert_eq!(registry.post(0, Command::Shutdown), Err(ShardStopped));
        assert_eq!(registry.post(5, Command::Shutdown), Err(ShardStopped));
        let to = ConnId {
            shard: 0,
            token: Token::new(0, 0),
        };
        assert_eq!(
            Post::post(&registry, to, Outgoing::PauseReading),
            Err(Stopped)
        );
    }
}
