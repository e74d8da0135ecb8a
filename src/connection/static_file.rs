//! A static file's body, streamed: after the head is queued, the connection asks the
//! runtime for the file one chunk at a time ([`Connection::take_file_read`], a
//! [`FileRead`] the shard hands to the backend) and queues each chunk that comes back
//! ([`Connection::file_read_done`]). The next chunk is asked for only once the output
//! queue has drained below a chunk (or the backpressure threshold, if lower), so a
//! connection holds at most about two chunks whatever the file's size, and a peer that
//! reads slowly only slows its own transfer. No I/O here: the shard carries the
//! requests and the answers.
//!
//! While the body streams the connection reads nothing more (pipelined requests wait
//! in the socket, or in `head` for the few bytes already received) and answers them, in
//! order, once the last chunk is queued. A peer that takes nothing for the handshake
//! timeout has the transfer cut (the socket closes after what was queued); a shutdown
//! lets the body finish within its grace (at least the close timeout); a socket that
//! failed drops the rest at once.

use std::time::Instant;

use super::{Connection, Front, FrontPhase, ShardContext, Stage, Timer};

/// Bytes asked for per read.
pub(crate) const FILE_CHUNK: usize = 128 * 1024;

/// The bytes of a static answer's body: `len` bytes of `file` from `offset`, read by
/// the runtime chunk by chunk.
#[derive(Debug)]
pub(crate) struct FileBody {
    pub(crate) file: std::sync::Arc<std::fs::File>,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// A static answer (`route::StaticFiles::serve`): the response, the `Content-Length` to
/// announce (`None` for a 304, which announces none), and for a GET of a non-empty file
/// or range the body to stream after the head (`response.body` is then empty).
pub(crate) struct FileAnswer {
    pub(crate) response: crate::route::HttpResponse,
    pub(crate) length: Option<u64>,
    pub(crate) body: Option<FileBody>,
}

/// A read of a regular file the core asks the backend for (a static file's body, one
/// chunk at a time): `len` bytes of `file` from `offset`, for connection `token`. The
/// backend does it off the core's thread of control (io_uring: an `IORING_OP_READ`;
/// epoll: a small blocking pool) and answers with one [`ShardCore::on_file_read`].
#[derive(Debug)]
pub(crate) struct FileRead {
    pub(crate) token: crate::conn::Token,
    /// Shared with the connection, so the descriptor stays open while the read is in
    /// flight even if the connection is gone by then.
    pub(crate) file: std::sync::Arc<std::fs::File>,
    pub(crate) offset: u64,
    pub(crate) len: usize,
}

impl FileRead {
    /// The longest read a backend does at once (longer ones come back short).
    pub(crate) const MAX_LEN: usize = 1 << 30;

    /// A zeroed buffer of the length to read (at most [`FileRead::MAX_LEN`]).
    pub(crate) fn buffer(&self) -> Vec<u8> {
        vec![0; self.len.min(Self::MAX_LEN)]
    }
}

/// The state of a body being streamed.
pub(crate) struct FileStream {
    body: FileBody,
    /// A read was handed out and has not come back.
    reading: bool,
    /// The connection stays open after the body (as the head announced).
    keep_alive: bool,
    /// The peer closed its sending side meanwhile: it is told so after the body and
    /// the requests it sent before.
    peer_done: bool,
    /// When the peer last took a chunk (a chunk came back to be queued).
    progress: Instant,
    /// A shutdown's limit: the transfer is cut at this instant.
    cutoff: Option<Instant>,
}

impl Connection {
    /// Streams `body` after the head just queued; `keep_alive` as the head announced.
    pub(super) fn start_file(
        &mut self,
        body: FileBody,
        keep_alive: bool,
        ctx: &ShardContext,
        now: Instant,
    ) {
        let Stage::Front(front) = &mut self.stage else {
            return;
        };
        // The request is answered: the connection no longer counts as pending.
        front.requests_served = true;
        front.file = Some(Box::new(FileStream {
            body,
            reading: false,
            keep_alive,
            peer_done: false,
            progress: now,
            cutoff: None,
        }));
        // The request's own timer is done; the body's stall timer takes over.
        self.timers.clear(Timer::Handshake);
        self.timers
            .set(Timer::FileStall, now + ctx.config.handshake_timeout);
    }

    /// The next chunk to read, when the body has more and the output queue has room
    /// for it. At most one read is out at a time.
    pub(crate) fn take_file_read(&mut self) -> Option<FileRead> {
        let Stage::Front(Front {
            file: Some(stream), ..
        }) = &mut self.stage
        else {
            return None;
        };
        let room = self.out.limits.backpressure_threshold.min(FILE_CHUNK);
        if stream.reading || stream.body.len == 0 || self.out.buffered() > room {
            return None;
        }
        let len = usize::try_from(stream.body.len).map_or(FILE_CHUNK, |n| n.min(FILE_CHUNK));
        stream.reading = true;
        Some(FileRead {
            token: self.id.token,
            file: std::sync::Arc::clone(&stream.body.file),
            offset: stream.body.offset,
            len,
        })
    }

    /// Bytes were written: the peer is taking the body (see `file_timer`).
    pub(super) fn file_progress(&mut self, now: Instant) {
        if let Some(stream) = self.file_mut() {
            stream.progress = now;
        }
    }

    /// The bytes of a chunk being read (the memory budget counts them as output).
    pub(super) fn file_bytes_reading(&self) -> usize {
        match self.front().and_then(|front| front.file.as_ref()) {
            Some(stream) if stream.reading => {
                usize::try_from(stream.body.len).map_or(FILE_CHUNK, |n| n.min(FILE_CHUNK))
            }
            _ => 0,
        }
    }

    /// A chunk asked for with [`Connection::take_file_read`] came back: queue it, and
    /// once the body is complete answer what was pipelined behind it.
    pub(crate) fn file_read_done(
        &mut self,
        result: std::io::Result<Vec<u8>>,
        ctx: &ShardContext,
        now: Instant,
    ) {
        let Stage::Front(Front {
            file: Some(stream), ..
        }) = &mut self.stage
        else {
            return; // the transfer was cut meanwhile
        };
        stream.reading = false;
        let mut bytes = match result {
            Ok(bytes) if !bytes.is_empty() => bytes,
            Ok(_) => {
                // Shorter than its size said: the Content-Length cannot be kept.
                tracing::debug!(conn = %self.id, "static file shrank while being sent");
                self.cut_file();
                return;
            }
            Err(error) => {
                tracing::debug!(conn = %self.id, %error, "static file read failed");
                self.cut_file();
                return;
            }
        };
        let max = usize::try_from(stream.body.len).unwrap_or(usize::MAX);
        bytes.truncate(max);
        let n = bytes.len();
        stream.body.offset += n as u64;
        stream.body.len -= n as u64;
        stream.progress = now;
        if self.out.queued.is_empty() && self.out.queued.capacity() < bytes.capacity() {
            // The usual case (the queue drained before the read was asked for): the
            // chunk becomes the queue, no copy.
            self.out.queued = bytes;
        } else {
            self.out.queued.extend_from_slice(&bytes);
        }
        if stream.body.len == 0 {
            self.finish_file(ctx, now);
        }
    }

    /// The whole body is queued: the request is done; answer what waits behind it.
    fn finish_file(&mut self, ctx: &ShardContext, now: Instant) {
        let Stage::Front(front) = &mut self.stage else {
            return;
        };
        let Some(stream) = front.file.take() else {
            return;
        };
        let waiting = match &mut front.phase {
            FrontPhase::Http { head, .. } => std::mem::take(head),
            _ => Vec::new(),
        };
        self.finish_http(stream.keep_alive, ctx, now);
        if !waiting.is_empty() {
            let mut waiting = waiting;
            self.receive(&mut waiting, ctx, now);
        }
        if stream.peer_done {
            self.on_eof(ctx);
        }
    }

    /// The body cannot be completed: close after what was queued (the peer sees a body
    /// shorter than announced), answering nothing more.
    fn cut_file(&mut self) {
        self.stop_file();
        self.close_after_response();
    }

    /// The peer closed its sending side while a body streams: finish the body (and
    /// the requests already received), then end. False when no body streams.
    pub(super) fn file_peer_done(&mut self) -> bool {
        match self.file_mut() {
            Some(stream) => {
                stream.peer_done = true;
                true
            }
            None => false,
        }
    }

    /// Sending failed: the rest of the body has nowhere to go.
    pub(crate) fn on_send_failed(&mut self, ctx: &ShardContext) {
        self.stop_file();
        self.on_eof(ctx);
    }

    /// The shutdown: the body may finish until `deadline` (at least the close timeout
    /// from now); the connection closes after it. Called again, it only brings the
    /// limit forward.
    pub(super) fn drain_file(
        &mut self,
        ctx: &ShardContext,
        deadline: Option<Instant>,
        now: Instant,
    ) {
        let Stage::Front(Front {
            file: Some(stream), ..
        }) = &mut self.stage
        else {
            return;
        };
        let floor = now + ctx.config.close_timeout;
        let until = deadline.map_or(floor, |d| d.max(floor));
        let cutoff = stream.cutoff.map_or(until, |c| c.min(until));
        stream.cutoff = Some(cutoff);
        stream.keep_alive = false;
        self.timers.set_earliest(Timer::Shutdown, cutoff);
    }

    /// The connection's deadline passed while a body streams: cut a transfer the peer
    /// stopped taking (nothing for the handshake timeout) or that a shutdown's limit
    /// ended, otherwise wait again.
    pub(super) fn file_timer(&mut self, ctx: &ShardContext, now: Instant) {
        let Some(stream) = self.front().and_then(|front| front.file.as_ref()) else {
            return;
        };
        let (stalled_at, cutoff) = (
            stream.progress + ctx.config.handshake_timeout,
            stream.cutoff,
        );
        if stalled_at <= now {
            tracing::debug!(conn = %self.id, "peer took none of a static file for the handshake timeout");
            self.cut_file();
            return;
        }
        if cutoff.is_some_and(|cutoff| cutoff <= now) {
            tracing::debug!(conn = %self.id, "static file not sent before the shutdown's limit");
            self.cut_file();
            return;
        }
        self.timers.set(Timer::FileStall, stalled_at);
        if let Some(cutoff) = cutoff {
            self.timers.set(Timer::Shutdown, cutoff);
        }
    }

    /// The memory budget closes this connection: a body streaming is given up. True
    /// when one was.
    pub(super) fn stop_file(&mut self) -> bool {
        match &mut self.stage {
            Stage::Front(front) => front.file.take().is_some(),
            _ => false,
        }
    }

    /// The body being streamed, if any.
    fn file_mut(&mut self) -> Option<&mut FileStream> {
        match &mut self.stage {
            Stage::Front(front) => front.file.as_deref_mut(),
            _ => None,
        }
    }
}
