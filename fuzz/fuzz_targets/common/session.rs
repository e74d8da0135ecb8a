//! Drives one connection (`ringws::fuzzing::Session`: the HTTP front, then the open
//! session for RFC 6455 or hixie, or a session built already open) with operations decoded from the input: raw bytes,
//! masked frames, clock ticks, writes (whole or short), and handler actions (send, ping,
//! close, pause, resume, subscribe and publish) done at the next callback, or posted as
//! a handle (or the shard's pub/sub fan-out) would. Checks: no panic;
//! the output never goes past `max_buffered` (plus room for a close frame or an HTTP
//! head); once the connection wants to close and its output was written, nothing more
//! is ever queued; the handler hears nothing after `on_close`.
//!
//! The `session` target and the seed replay test (`tests/fuzz_seeds.rs`) share this body.

use std::time::Duration;

use ringws::fuzzing::{Action, Session, SessionLimits};

/// What may be queued beyond `max_buffered`: a close frame, a pong, an HTTP head.
const SLACK: usize = 2048;

/// The opening requests the first byte may choose (the fuzzer rarely finds one).
const PRELUDES: [&[u8]; 4] = [
    b"",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
Origin: http://x\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
Origin: http://x\r\nSec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n\
Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n\r\n^n:ds[4U",
];

/// The RFC 6455 request offering permessage-deflate (setup bits: front, 3 set,
/// prelude 1): the route accepts it, so compressed frames, the threshold, hibernation
/// and the live-stream budget are reachable.
const DEFLATE_PRELUDE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; \
client_max_window_bits\r\n\r\n";

/// A masked client frame.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![first];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Takes up to `n` bytes from the front of `rest`.
fn take(rest: &mut &[u8], n: usize) -> Vec<u8> {
    let n = n.min(rest.len());
    let (a, b) = rest.split_at(n);
    *rest = b;
    a.to_vec()
}

pub fn run(data: &[u8]) {
    let Some((&setup, mut rest)) = data.split_first() else {
        return;
    };
    let threshold = 256 << (setup >> 4 & 3);
    let limits = SessionLimits {
        backpressure_threshold: threshold,
        max_buffered: threshold * 4,
        pause_on_backpressure: setup & 0x40 != 0,
        close_on_limit: setup & 0x80 != 0,
    };
    let mut session = match setup & 4 {
        0 => Session::new(limits),
        // Built already open: no request at all (RFC 6455, or hixie-76 with bit 3).
        _ => Session::open(limits, setup & 8 != 0),
    };
    let prelude = match setup & 15 {
        9 => DEFLATE_PRELUDE,
        _ => PRELUDES[usize::from(setup & 3)],
    };
    session.receive(prelude);
    let mut finished = false;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let arg = take(&mut rest, 1).first().copied().unwrap_or(0);
        match op % 8 {
            0 | 1 => {
                let bytes = take(&mut rest, usize::from(arg));
                session.receive(&bytes);
            }
            2 => {
                let payload = take(&mut rest, usize::from(op >> 3) * 8);
                session.receive(&frame(arg, &payload));
            }
            3 => session.advance(Duration::from_millis(u64::from(arg) * 50)),
            // A whole write, or a short one of `arg × 37` bytes.
            4 if arg & 1 == 0 => {
                session.write();
            }
            4 => {
                session.write_part(usize::from(arg) * 37);
            }
            5 => session.act(Action::from_byte(arg, usize::from(op >> 3) * 64)),
            6 => session.post(Action::from_byte(arg, usize::from(op >> 3) * 64)),
            _ => {
                // A deadline may never be in the past once the timers ran.
                session.advance(Duration::ZERO);
                if let Some(deadline) = session.deadline() {
                    assert!(deadline > session.now(), "a due timer was left armed");
                }
            }
        }
        assert!(
            session.buffered() <= session.max_buffered() + SLACK,
            "{} bytes buffered, limit {}",
            session.buffered(),
            session.max_buffered()
        );
        if finished {
            assert_eq!(session.buffered(), 0, "output queued after the close");
        }
        // Written out after the end (a write may itself end the connection: the input
        // held during a pause goes through the decoder once the output drained).
        if session.wants_close() && op % 8 == 4 && session.buffered() == 0 {
            finished = true;
        }
        assert_eq!(session.callbacks_after_close(), 0);
    }
}
