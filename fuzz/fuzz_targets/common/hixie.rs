//! Feeds arbitrary bytes, split at a fuzz-chosen point, to a hixie-75/76 decoder with
//! small limits. It must never panic, never loop, consume every byte it is offered
//! unless it reported an event, an error or a close, and only ever return valid UTF-8
//! within the limit.
//!
//! The `hixie` target and the seed replay test (`tests/fuzz_seeds.rs`) share this body.

use ringws::proto::{HixieDecoder, HixieEvent, Limits};

pub fn run(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(rest.len());
    let (a, b) = rest.split_at(split);
    let limits = Limits {
        max_frame_size: 1 << 12,
        max_message_size: 1 << 10,
    };
    let mut dec = HixieDecoder::new(limits);
    for part in [a, b] {
        let mut pos = 0;
        loop {
            let (n, ev) = match dec.decode(&part[pos..]) {
                Ok(r) => r,
                Err(_) => return,
            };
            pos += n;
            assert!(pos <= part.len());
            match ev {
                Some(HixieEvent::Text(t)) => {
                    assert!(t.len() <= 1 << 10);
                    assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                }
                Some(HixieEvent::Close) => return,
                None => break,
            }
        }
        assert_eq!(pos, part.len(), "unconsumed bytes without an event");
    }
}
