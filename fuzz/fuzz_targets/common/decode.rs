//! The body shared by the `decode` (server role) and `decode_client` (client role)
//! targets: arbitrary bytes, split at a fuzz-chosen point (the first byte), go to a
//! decoder of the given role (the first byte's top two bits at 2 or 3: one that
//! accepts compressed messages, whole or in pieces). It must never panic, never loop, consume every byte it
//! is offered unless it reported an error or a close, and only hand out text that is
//! UTF-8, messages within the limit and control payloads of at most 125 bytes.

use ringws::proto::{Decoder, Event, Limits, Role};

const LIMITS: Limits = Limits {
    max_frame_size: 1 << 16,
    max_message_size: 1 << 18,
};

pub fn run(role: Role, data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let mut buf = rest.to_vec();
    let split = usize::from(split).min(buf.len());
    let (a, b) = buf.split_at_mut(split);
    let mut dec = Decoder::new(role, LIMITS);
    match data[0] >> 6 {
        2 => dec.accept_compressed(),
        3 => dec.stream_compressed(),
        _ => {}
    }
    let mut compressed = 0;
    for part in [a, b] {
        let len = part.len();
        let mut pos = 0;
        loop {
            let (n, ev) = match dec.decode(&mut part[pos..]) {
                Ok(r) => r,
                Err(_) => return,
            };
            pos += n;
            assert!(pos <= len);
            match ev {
                Some(Event::Text(t)) => {
                    assert!(t.len() <= LIMITS.max_message_size);
                    assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                }
                Some(Event::Binary(b)) => assert!(b.len() <= LIMITS.max_message_size),
                Some(Event::Ping(p) | Event::Pong(p)) => assert!(p.len() <= 125),
                Some(Event::Deflated { payload, .. } | Event::DeflatedPart { payload, .. }) => {
                    // A compressed message's pieces stay within the limit too.
                    compressed += payload.len();
                    assert!(compressed <= LIMITS.max_message_size);
                    if matches!(ev, Some(Event::Deflated { .. })) {
                        compressed = 0;
                    }
                }
                Some(_) => {}
                None if n == 0 || pos == len => break,
                None => {}
            }
        }
        if dec.is_finished() {
            return;
        }
        assert_eq!(pos, len, "unconsumed bytes without an event");
    }
}
