//! [`ConnHandle`]: reach a connection from any thread.
//!
//! A handle posts what it was asked ([`Outgoing`]: a message, a ping, a close, a pause
//! or resume) through a [`Post`]; whoever owns the connection (its shard) encodes it for
//! the connection's framing when it applies it. The handle knows nothing of shards: the
//! server's mailboxes implement [`Post`].

use std::fmt;
use std::sync::Arc;

use crate::conn::ConnId;
use crate::proto::{CloseCode, OpCode};
use crate::pubsub::hub::Publication;

/// What a [`ConnHandle`] asks of a connection, as owned data. Nothing is encoded yet:
/// the owner of the connection writes it in the connection's framing (an RFC 6455
/// frame, a hixie `0x00 … 0xFF` frame, a SockJS `a[...]` frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// A text message.
    Text(Arc<str>),
    /// A binary message (dropped for clients that cannot carry it).
    Binary(Arc<[u8]>),
    /// A ping; the payload is at most 125 bytes (cut by the handle).
    Ping(Arc<[u8]>),
    /// Start the close handshake.
    Close { code: CloseCode, reason: String },
    /// Stop giving the handler input (`Conn::pause_reading`).
    PauseReading,
    /// Undo a pause (`Conn::resume_reading`).
    ResumeReading,
}

impl Outgoing {
    /// The frame's opcode and payload for a text, binary or ping message; `None` for
    /// the commands that are not data (close, pause, resume).
    pub(crate) fn data(&self) -> Option<(OpCode, &[u8])> {
        match self {
            Outgoing::Text(text) => Some((OpCode::Text, text.as_bytes())),
            Outgoing::Binary(bytes) => Some((OpCode::Binary, bytes)),
            Outgoing::Ping(payload) => Some((OpCode::Ping, payload)),
            Outgoing::Close { .. } | Outgoing::PauseReading | Outgoing::ResumeReading => None,
        }
    }
}

/// Where handles post: delivers an [`Outgoing`] to the owner of connection `to`,
/// keeping the order of one poster's messages. The shards' mailboxes implement it
/// (a lock-free queue per shard plus a wake-up).
pub(crate) trait Post: Send + Sync {
    /// Hands `message` on for connection `to`; fails once its owner has stopped. (A
    /// connection that already closed under a running owner drops it silently.)
    fn post(&self, to: ConnId, message: Outgoing) -> Result<(), Stopped>;

    /// Hands a published message to `shard`, which delivers it to its subscribers of
    /// the topic; in order with this thread's other posts to that shard.
    fn post_publication(&self, shard: usize, publication: Arc<Publication>) -> Result<(), Stopped>;

    /// The server is shutting down: a poster whose connections are not the shards'
    /// (the hyper adapter's threads, members of the server's hub) closes them with
    /// 1001, waiting up to `grace` for the peers' replies. The shards hear it through
    /// their own command.
    fn shut_down(&self, grace: std::time::Duration) {
        let _ = grace;
    }
}

/// Posting failed: the connection's owner (its shard) has stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stopped;

/// A cloneable, `Send` reference to a connection. Messages posted through one handle
/// reach the connection in the order they were posted, whichever thread posts them and
/// whichever shard owns the connection. The message is copied once on the calling
/// thread; the owning shard encodes it for the connection's framing.
///
/// A connection that speaks a hixie draft gets a text message as `0x00 … 0xFF`; a
/// binary message or a ping to it is dropped silently, since the
/// drafts cannot carry them (on the shard, [`Conn::send_binary`](crate::Conn::send_binary)
/// says so with [`SendStatus::Unsupported`](crate::SendStatus::Unsupported)).
///
/// ```no_run
/// # fn example(handle: ringws::ConnHandle) {
/// std::thread::spawn(move || {
///     handle.send_text("tick").ok();
/// });
/// # }
/// ```
#[derive(Clone)]
pub struct ConnHandle {
    id: ConnId,
    poster: Arc<dyn Post>,
}

/// The connection's shard has stopped; nothing was sent. (A connection that already
/// closed on a running shard drops the message silently, like a send after close.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendError;

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the connection's shard has stopped")
    }
}

impl std::error::Error for SendError {}

impl fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnHandle").field("id", &self.id).finish()
    }
}

impl ConnHandle {
    pub(crate) fn new(id: ConnId, poster: Arc<dyn Post>) -> ConnHandle {
        ConnHandle { id, poster }
    }

    /// The connection this handle points to.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<(), SendError> {
        self.post(Outgoing::Text(Arc::from(text)))
    }

    /// Sends a binary message.
    pub fn send_binary(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.post(Outgoing::Binary(Arc::from(bytes)))
    }

    /// Sends a ping (payload cut to 125 bytes).
    pub fn ping(&self, payload: &[u8]) -> Result<(), SendError> {
        self.post(Outgoing::Ping(Arc::from(
            &payload[..payload.len().min(125)],
        )))
    }

    /// Starts the close handshake with `code` and `reason`.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), SendError> {
        self.post(Outgoing::Close {
            code: CloseCode(code),
            reason: reason.to_owned(),
        })
    }

    /// Resumes reading a connection that [`Conn::pause_reading`](crate::Conn::pause_reading)
    /// paused: the way a handler that handed a message to another thread lets the next
    /// one in once the work is done. The messages kept during the pause are delivered
    /// first, in order. Arrives in order with this thread's other commands (so a send
    /// posted before it goes out before the next message is handled).
    pub fn resume_reading(&self) -> Result<(), SendError> {
        self.post(Outgoing::ResumeReading)
    }

    /// Pauses reading a connection, as [`Conn::pause_reading`](crate::Conn::pause_reading)
    /// does on its shard. Messages the shard handles before this command arrives are
    /// still delivered.
    pub fn pause_reading(&self) -> Result<(), SendError> {
        self.post(Outgoing::PauseReading)
    }

    fn post(&self, message: Outgoing) -> Result<(), SendError> {
        self.poster
            .post(self.id, message)
            .map_err(|Stopped| SendError)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::conn::Token;

    /// Records what is posted; refuses everything once `stopped`.
    #[derive(Default)]
    struct Recorder {
        posted: Mutex<Vec<(ConnId, Outgoing)>>,
        stopped: bool,
    }

    impl Post for Recorder {
        fn post(&self, to: ConnId, message: Outgoing) -> Result<(), Stopped> {
            if self.stopped {
                return Err(Stopped);
            }
            self.posted.lock().map_err(|_| Stopped)?.push((to, message));
            Ok(())
        }

        fn post_publication(&self, _: usize, _: Arc<Publication>) -> Result<(), Stopped> {
            Err(Stopped)
        }
    }

    fn id() -> ConnId {
        ConnId {
            shard: 1,
            token: Token::new(3, 7),
        }
    }

    #[test]
    fn a_handle_posts_what_it_was_asked_in_order() {
        let recorder = Arc::new(Recorder::default());
        let handle = ConnHandle::new(id(), recorder.clone());
        let other = handle.clone();
        handle.send_text("hello").expect("text");
        handle.send_binary(&[0, 1, 2]).expect("binary");
        other.ping(&[7; 200]).expect("ping");
        handle.pause_reading().expect("pause");
        other.resume_reading().expect("resume");
        handle.close(4000, "bye").expect("close");
        let posted = recorder.posted.lock().expect("lock");
        assert!(posted.iter().all(|(to, _)| *to == id()));
        let messages: Vec<&Outgoing> = posted.iter().map(|(_, message)| message).collect();
        assert_eq!(
            messages,
            [
                &Outgoing::Text(Arc::from("hello")),
                &Outgoing::Binary(Arc::from(&[0u8, 1, 2][..])),
                // Cut to what a control frame may carry.
                &Outgoing::Ping(Arc::from(&[7u8; 125][..])),
                &Outgoing::PauseReading,
                &Outgoing::ResumeReading,
                &Outgoing::Close {
                    code: CloseCode(4000),
                    reason: "bye".to_owned()
                },
            ]
        );
    }

    #[test]
    fn a_stopped_owner_fails_every_post() {
        let recorder = Arc::new(Recorder {
            stopped: true,
            ..Recorder::default()
        });
        let handle = ConnHandle::new(id(), recorder.clone());
        assert_eq!(handle.send_text("x"), Err(SendError));
        assert_eq!(handle.close(1000, ""), Err(SendError));
        assert_eq!(handle.resume_reading(), Err(SendError));
        assert!(recorder.posted.lock().expect("lock").is_empty());
    }

    #[test]
    fn only_messages_and_pings_are_data() {
        assert_eq!(
            Outgoing::Text(Arc::from("hi")).data(),
            Some((OpCode::Text, &b"hi"[..]))
        );
        assert_eq!(
            Outgoing::Ping(Arc::from(&b"p"[..])).data(),
            Some((OpCode::Ping, &b"p"[..]))
        );
        assert_eq!(Outgoing::PauseReading.data(), None);
    }
}
