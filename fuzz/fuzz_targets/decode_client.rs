//! Feeds arbitrary bytes, split at a fuzz-chosen point, to a client-role decoder (the
//! one ringws's loadtest and outgoing connections use on server frames). It must never
//! panic, never loop, and consume every byte it is offered unless it reported an error
//! or a close.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringws::proto::{Decoder, Event, Limits, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let mut buf = rest.to_vec();
    let split = usize::from(split).min(buf.len());
    let (a, b) = buf.split_at_mut(split);
    let limits = Limits {
        max_frame_size: 1 << 16,
        max_message_size: 1 << 18,
    };
    let mut dec = Decoder::new(Role::Client, limits);
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
                Some(Event::Text(t)) => assert!(std::str::from_utf8(t.as_bytes()).is_ok()),
                Some(Event::Binary(b)) => assert!(b.len() <= 1 << 18),
                Some(Event::Ping(p) | Event::Pong(p)) => assert!(p.len() <= 125),
                Some(Event::Close(_)) => {}
                None if n == 0 || pos == len => break,
                None => {}
            }
        }
        if dec.is_finished() {
            return;
        }
        assert_eq!(pos, len, "unconsumed bytes without an event");
    }
});
