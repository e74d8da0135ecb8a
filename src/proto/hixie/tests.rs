//! HixieDecoder tests: splits, UTF-8, limits, discarded frames, close.

use super::*;

fn limits(max: usize) -> Limits {
    Limits {
        max_frame_size: max,
        max_message_size: max,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Got {
    Text(String),
    Close,
    Error(u16),
}

/// Feeds `chunks` one after the other, collecting events until an error or the end.
fn run(dec: &mut HixieDecoder, chunks: &[&[u8]]) -> Vec<Got> {
    let mut got = Vec::new();
    for chunk in chunks {
        let mut pos = 0;
        loop {
            match dec.decode(&chunk[pos..]) {
                Ok((n, ev)) => {
                    pos += n;
                    match ev {
                        Some(HixieEvent::Text(t)) => got.push(Got::Text(t.to_owned())),
                        Some(HixieEvent::Close) => got.push(Got::Close),
                        None => {
                            assert!(dec.is_finished() || pos == chunk.len());
                            break;
                        }
                    }
                }
                Err(e) => {
                    got.push(Got::Error(e.code.0));
                    return got;
                }
            }
        }
    }
    got
}

const STREAM: &[u8] =
    b"\x00hello\xFF\x80\x02xy\x00caf\xC3\xA9 \xE2\x82\xAC\xFF\x81\x80\x01Z\x00\xFF\xFF\x00";

fn stream_events() -> Vec<Got> {
    vec![
        Got::Text("hello".into()),
        Got::Text("café €".into()),
        Got::Text(String::new()),
        Got::Close,
    ]
}

#[test]
fn whole_stream() {
    let mut dec = HixieDecoder::new(Limits::default());
    assert_eq!(run(&mut dec, &[STREAM]), stream_events());
    assert!(dec.is_finished());
    assert_eq!(dec.decode(b"\x00x\xFF").unwrap(), (0, None));
}

#[test]
fn split_at_every_byte_pair() {
    for i in 0..=STREAM.len() {
        for j in i..=STREAM.len() {
            let mut dec = HixieDecoder::new(Limits::default());
            let chunks = [&STREAM[..i], &STREAM[i..j], &STREAM[j..]];
            assert_eq!(run(&mut dec, &chunks), stream_events(), "split {i} {j}");
        }
    }
}

#[test]
fn byte_by_byte() {
    let chunks: Vec<&[u8]> = STREAM.chunks(1).collect();
    let mut dec = HixieDecoder::new(Limits::default());
    assert_eq!(run(&mut dec, &chunks), stream_events());
}

#[test]
fn whole_frame_is_zero_copy() {
    let wire = b"\x00abc\xFF";
    let mut dec = HixieDecoder::new(Limits::default());
    match dec.decode(wire) {
        Ok((5, Some(HixieEvent::Text(t)))) => assert_eq!(t.as_ptr(), wire[1..].as_ptr()),
        other => panic!("{other:?}"),
    }
    assert_eq!(dec.buffer_capacity(), 0);
}

#[test]
fn invalid_utf8_fails_fast() {
    // Whole frame.
    let mut dec = HixieDecoder::new(Limits::default());
    assert_eq!(run(&mut dec, &[b"\x00a\xC0b\xFF"]), [Got::Error(1007)]);
    // An impossible prefix fails before the frame ends.
    let mut dec = HixieDecoder::new(Limits::default());
    assert_eq!(run(&mut dec, &[b"\x00ok\xF4\x90"]), [Got::Error(1007)]);
    // A frame that ends mid-character.
    let mut dec = HixieDecoder::new(Limits::default());
    assert_eq!(run(&mut dec, &[b"\x00ok\xC3", b"\xFF"]), [Got::Error(1007)]);
    assert!(dec.is_finished());
}

#[test]
fn text_limit() {
    let mut dec = HixieDecoder::new(limits(4));
    assert_eq!(
        run(&mut dec, &[b"\x00abcd\xFF"]),
        [Got::Text("abcd".into())]
    );
    assert_eq!(run(&mut dec, &[b"\x00abcde\xFF"]), [Got::Error(1009)]);
    // Split: fails as soon as the fifth byte arrives, never buffering more.
    let mut dec = HixieDecoder::new(limits(4));
    assert_eq!(run(&mut dec, &[b"\x00ab", b"cde"]), [Got::Error(1009)]);
    assert!(dec.buffer_capacity() == 0);
    // The smaller of the two limits applies.
    let mut dec = HixieDecoder::new(Limits {
        max_frame_size: 2,
        max_message_size: 100,
    });
    assert_eq!(run(&mut dec, &[b"\x00abc\xFF"]), [Got::Error(1009)]);
}

#[test]
fn length_prefixed_frames_are_discarded_and_limited() {
    let mut dec = HixieDecoder::new(limits(200));
    let mut wire = vec![0x80, 0x81, 0x48]; // 200 bytes
    wire.extend_from_slice(&[0xAB; 200]);
    wire.extend_from_slice(b"\x00after\xFF");
    assert_eq!(run(&mut dec, &[&wire]), [Got::Text("after".into())]);
    // A declared length over the limit fails before any byte of it arrives.
    let mut dec = HixieDecoder::new(limits(200));
    assert_eq!(run(&mut dec, &[b"\x80\x81\x49"]), [Got::Error(1009)]);
    // A length that would overflow u64.
    let mut dec = HixieDecoder::new(limits(usize::MAX));
    let mut wire = vec![0x80];
    wire.extend_from_slice(&[0xFF; 12]);
    assert_eq!(run(&mut dec, &[&wire]), [Got::Error(1009)]);
    // Type 0xFF with a non-zero length is not a close: discarded.
    let mut dec = HixieDecoder::new(Limits::default());
    assert_eq!(
        run(&mut dec, &[b"\xFF\x01z\x00k\xFF"]),
        [Got::Text("k".into())]
    );
}

#[test]
fn other_sentinel_types_are_discarded() {
    let mut dec = HixieDecoder::new(Limits::default());
    assert_eq!(
        run(&mut dec, &[b"\x01\xC0\xC1junk\xFF\x00ok\xFF"]),
        [Got::Text("ok".into())]
    );
}

#[test]
fn large_assembled_buffer_is_released() {
    let mut dec = HixieDecoder::new(Limits::default());
    let big = vec![b'a'; 100_000];
    assert_eq!(dec.decode(b"\x00").unwrap(), (1, None));
    assert_eq!(dec.decode(&big).unwrap(), (big.len(), None));
    assert!(
        matches!(dec.decode(b"\xFF"), Ok((1, Some(HixieEvent::Text(t)))) if t.len() == 100_000)
    );
    assert_eq!(dec.decode(b"\x00").unwrap(), (1, None));
    assert_eq!(dec.buffer_capacity(), 0);
}

#[test]
fn encoders() {
    let mut out = Vec::new();
    encode_hixie_text(&mut out, "é");
    encode_hixie_close(&mut out);
    assert_eq!(out, b"\x00\xC3\xA9\xFF\xFF\x00");
}

#[test]
fn pseudo_random_input_never_panics() {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2000 {
        let len = (next() % 64) as usize;
        let data: Vec<u8> = (0..len)
            .map(|_| [0x00, 0xFF, 0x80, 0x81, b'a', 0xC3, 0xA9, 0x7F][(next() % 8) as usize])
            .collect();
        let split = (next() as usize) % (len + 1);
        let mut dec = HixieDecoder::new(limits(16));
        run(&mut dec, &[&data[..split], &data[split..]]);
    }
}
