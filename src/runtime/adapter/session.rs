//! One adapter session as a local tokio task: what the peer sends goes into the
//! [`Connection`](crate::connection::Connection) (which calls the handler), what it
//! queues is written out, its deadline is a tokio sleep, and a wake-up from the
//! thread (a handle's post, a publication, a shutdown) makes it look again.

use std::rc::Rc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{SessionCell, SessionIo, Worker};
use crate::conn::SendBuf;
use crate::ConnId;

/// How much one read takes from the stream.
const READ_CHUNK: usize = 16 * 1024;

/// How long the end of a session waits for the stream's own shutdown (a TLS
/// `close_notify`, an HTTP/2 END_STREAM) before it drops it.
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the session in `cell` on `io` until it ends, then removes it from `worker`.
pub(super) async fn run(
    worker: Rc<Worker>,
    key: usize,
    id: ConnId,
    cell: Rc<SessionCell>,
    io: Box<dyn SessionIo + Send>,
) {
    let ctx = &worker.ctx;
    let (mut reader, mut writer) = tokio::io::split(io);
    let mut buf = vec![0u8; READ_CHUNK];
    // Bytes taken from the outbox and not yet written (counted as in flight there).
    let mut sending: Option<SendBuf> = None;
    let mut reading = true;
    // Written bytes the stream may still hold (TLS records rustls took but could not
    // send to a full socket): they leave only on a flush, which follows the writes.
    let mut unflushed = false;
    // Set once the connection wants to close with output still unwritten: a peer that
    // does not read gets until then (the close timeout), then the stream is dropped.
    let mut flush_deadline: Option<Instant> = None;
    loop {
        let (deadline, wants_read) = {
            let mut conn = cell.conn.borrow_mut();
            conn.end_if_overflowed(ctx);
            if conn.out.abandon {
                conn.out.clear_output();
                sending = None;
            }
            if sending.is_none() {
                sending = conn.out.take_output();
            }
            if conn.wants_close() {
                if sending.is_none() {
                    break;
                }
                let now = Instant::now();
                let limit = *flush_deadline.get_or_insert(now + ctx.config.close_timeout);
                if now >= limit {
                    break;
                }
            }
            let deadline = match (conn.deadline(), flush_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            (deadline, reading && conn.wants_read())
        };
        let sleep = deadline.map(|deadline| tokio::time::sleep_until(deadline.into()));
        tokio::select! {
            // Writes what was taken, else flushes what was written (both cancel-safe).
            written = async {
                match sending.as_deref() {
                    Some(bytes) => writer.write(bytes).await.map(Some),
                    None => writer.flush().await.map(|()| None),
                }
            }, if sending.is_some() || unflushed => {
                let mut conn = cell.conn.borrow_mut();
                match (written, sending.as_mut()) {
                    (Ok(None), _) => unflushed = false,
                    (Ok(Some(n)), Some(rest)) if n > 0 => {
                        unflushed = true;
                        rest.advance(n);
                        if rest.is_empty() {
                            sending = None;
                            conn.out.in_flight = 0;
                            conn.on_written(ctx, stamp(ctx));
                        } else {
                            conn.out.in_flight = rest.len();
                        }
                    }
                    _ => {
                        // The peer is gone: nothing more can be written.
                        conn.out.in_flight = 0;
                        conn.out.clear_output();
                        conn.transport_ended(ctx);
                        break;
                    }
                }
            }
            read = reader.read(&mut buf), if wants_read => {
                let mut conn = cell.conn.borrow_mut();
                match read {
                    Ok(0) => {
                        reading = false;
                        conn.on_eof(ctx);
                    }
                    Ok(n) => {
                        if let Some(data) = buf.get_mut(..n) {
                            conn.receive(data, ctx, stamp(ctx));
                        }
                    }
                    Err(_) => {
                        conn.transport_ended(ctx);
                        break;
                    }
                }
            }
            () = async { if let Some(sleep) = sleep { sleep.await } }, if deadline.is_some() => {
                cell.conn.borrow_mut().on_timer(ctx, stamp(ctx));
            }
            () = cell.wake.notified() => {}
        }
    }
    // A session that ended on a failure has heard about it; one that closed cleanly
    // ends its stream too (TLS close_notify, HTTP/2 END_STREAM).
    let _ = tokio::time::timeout(SHUTDOWN_WAIT, writer.shutdown()).await;
    cell.conn.borrow_mut().transport_ended(ctx);
    worker.remove(key, id);
}

/// Reads the clock for an event and gives it to the connection layer (which reads
/// none: a handler's publication is stamped with it).
fn stamp(ctx: &crate::connection::ShardContext) -> Instant {
    let now = Instant::now();
    ctx.now.set(now);
    now
}
