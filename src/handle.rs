//! [`ConnHandle`]: reach a connection from any thread.

use std::fmt;
use std::sync::Arc;

use crate::conn::ConnId;
use crate::proto::encode::encode_frame;
use crate::proto::{CloseCode, OpCode};
use crate::runtime::mailbox::{Command, Registry};

/// A cloneable, `Send` reference to a connection. Messages posted through one handle
/// reach the connection in the order they were posted, whichever thread posts them and
/// whichever shard owns the connection. Frames are encoded on the calling thread, so the
/// owning shard only copies them into the connection's queue.
///
/// A connection that speaks a hixie draft gets a text message re-encoded by its shard
/// (`0x00 … 0xFF`); a binary message or a ping to it is dropped silently, since the
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
    registry: Arc<Registry>,
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
    pub(crate) fn new(id: ConnId, registry: Arc<Registry>) -> ConnHandle {
        ConnHandle { id, registry }
    }

    /// The connection this handle points to.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<(), SendError> {
        self.send_frame(OpCode::Text, text.as_bytes())
    }

    /// Sends a binary message.
    pub fn send_binary(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.send_frame(OpCode::Binary, bytes)
    }

    /// Sends a ping (payload cut to 125 bytes).
    pub fn ping(&self, payload: &[u8]) -> Result<(), SendError> {
        self.send_frame(OpCode::Ping, &payload[..payload.len().min(125)])
    }

    /// Starts the close handshake with `code` and `reason`.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), SendError> {
        let command = Command::Close {
            token: self.id.token,
            code: CloseCode(code),
            reason: reason.to_owned(),
        };
        self.registry
            .post(self.id.shard(), command)
            .map_err(|_| SendError)
    }

    /// Resumes reading a connection that [`Conn::pause_reading`](crate::Conn::pause_reading)
    /// paused: the way a handler that handed a message to another thread lets the next
    /// one in once the work is done. The messages kept during the pause are delivered
    /// first, in order. Arrives in order with this thread's other commands (so a send
    /// posted before it goes out before the next message is handled).
    pub fn resume_reading(&self) -> Result<(), SendError> {
        self.post_pause(false)
    }

    /// Pauses reading a connection, as [`Conn::pause_reading`](crate::Conn::pause_reading)
    /// does on its shard. Messages the shard handles before this command arrives are
    /// still delivered.
    pub fn pause_reading(&self) -> Result<(), SendError> {
        self.post_pause(true)
    }

    fn post_pause(&self, pause: bool) -> Result<(), SendError> {
        let command = Command::Pause {
            token: self.id.token,
            pause,
        };
        self.registry
            .post(self.id.shard(), command)
            .map_err(|_| SendError)
    }

    fn send_frame(&self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        let mut frame = Vec::with_capacity(payload.len() + 10);
        encode_frame(&mut frame, opcode, true, payload, None);
        let command = Command::Frame {
            token: self.id.token,
            frame,
        };
        self.registry
            .post(self.id.shard(), command)
            .map_err(|_| SendError)
    }
}
