use super::*;
use crate::proto::encode::{encode_close, encode_frame};

/// An owned copy of an [`Event`].
#[derive(Debug, PartialEq, Eq, Clone)]
enum Ev {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
    Deflated(bool, Vec<u8>),
    Part(bool, Vec<u8>),
}

fn own(ev: Event<'_>) -> Ev {
    match ev {
        Event::Text(t) => Ev::Text(t.to_owned()),
        Event::Binary(b) => Ev::Binary(b.to_vec()),
        Event::Ping(b) => Ev::Ping(b.to_vec()),
        Event::Pong(b) => Ev::Pong(b.to_vec()),
        Event::Close(c) => Ev::Close(c.map(|c| (c.code.0, c.reason.to_owned()))),
        Event::Deflated { text, payload } => Ev::Deflated(text, payload.to_vec()),
        Event::DeflatedPart { text, payload } => Ev::Part(text, payload.to_vec()),
    }
}

/// The caller's loop over one input; events are pushed to `out`.
fn feed(dec: &mut Decoder, data: &mut [u8], out: &mut Vec<Ev>) -> Result<(), ProtocolError> {
    let len = data.len();
    let mut pos = 0;
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(
            calls <= 2 * data.len() + 2,
            "decode loop does not terminate"
        );
        let (n, ev) = dec.decode(&mut data[pos..])?;
        pos += n;
        assert!(pos <= len);
        match ev {
            Some(ev) => out.push(own(ev)),
            None if n == 0 || pos == len => break,
            None => {}
        }
    }
    assert_eq!(pos, data.len(), "every byte consumed");
    Ok(())
}

/// Feeds `wire` in chunks of `step` bytes (0 = one piece).
fn run(
    role: Role,
    limits: Limits,
    wire: &[u8],
    step: usize,
) -> (Vec<Ev>, Result<(), ProtocolError>) {
    let mut dec = Decoder::new(role, limits);
    let mut out = Vec::new();
    let step = if step == 0 { wire.len().max(1) } else { step };
    for chunk in wire.chunks(step) {
        let mut chunk = chunk.to_vec();
        if let Err(e) = feed(&mut dec, &mut chunk, &mut out) {
            assert_eq!(
                dec.decode(&mut [0x81, 0x00]),
                Ok((0, None)),
                "finished after error"
            );
            return (out, Err(e));
        }
    }
    (out, Ok(()))
}

fn key(i: usize) -> Option<[u8; 4]> {
    Some([i as u8 ^ 0x5A, 0x13, 0xC7, i as u8])
}

/// Frames as `sender` sends them (a client masks).
fn frame(sender: Role, op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mask = if sender == Role::Client {
        key(payload.len())
    } else {
        None
    };
    encode_frame(&mut out, op, fin, payload, mask);
    out
}

fn other(r: Role) -> Role {
    match r {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    }
}

fn text_of(len: usize) -> String {
    let mut s = String::new();
    for c in "aé€😀".chars().cycle() {
        if s.len() + c.len_utf8() > len {
            break;
        }
        s.push(c);
    }
    while s.len() < len {
        s.push('z');
    }
    s
}

#[test]
fn round_trip_sizes_both_roles() {
    for receiver in [Role::Server, Role::Client] {
        for len in [0, 1, 125, 126, 65535, 65536, 1 << 20] {
            let bin: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let txt = text_of(len);
            assert_eq!(txt.len(), len);
            let mut wire = frame(other(receiver), OpCode::Binary, true, &bin);
            wire.extend(frame(other(receiver), OpCode::Text, true, txt.as_bytes()));
            let want = vec![Ev::Binary(bin.clone()), Ev::Text(txt.clone())];
            let steps: &[usize] = if len <= 300 {
                &[
                    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
                ]
            } else {
                &[0, 1000, 65537]
            };
            for &step in steps {
                let (got, r) = run(receiver, Limits::default(), &wire, step);
                assert_eq!(r, Ok(()), "{receiver:?} {len} {step}");
                assert!(got == want, "{receiver:?} len {len} step {step}");
            }
        }
    }
}

#[test]
fn single_frame_is_zero_copy() {
    let mut wire = frame(Role::Client, OpCode::Binary, true, b"zero copy please");
    let range = wire.as_ptr_range();
    let mut dec = Decoder::new(Role::Server, Limits::default());
    let (n, ev) = dec.decode(&mut wire).unwrap();
    assert_eq!(n, 2 + 4 + 16);
    match ev {
        Some(Event::Binary(b)) => {
            assert_eq!(b, b"zero copy please");
            assert!(range.contains(&b.as_ptr()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dec.buffer_capacity(), 0);
}

#[test]
fn fragmented_text_with_ping_in_the_middle() {
    for receiver in [Role::Server, Role::Client] {
        let s = other(receiver);
        let mut wire = frame(s, OpCode::Text, false, "hé".as_bytes()[..2].as_ref());
        wire.extend(frame(s, OpCode::Continuation, false, &"hé".as_bytes()[2..]));
        wire.extend(frame(s, OpCode::Ping, true, b"p1"));
        wire.extend(frame(s, OpCode::Continuation, false, b""));
        wire.extend(frame(s, OpCode::Pong, true, b""));
        wire.extend(frame(s, OpCode::Continuation, true, "llo😀".as_bytes()));
        wire.extend(frame(s, OpCode::Text, false, b""));
        wire.extend(frame(s, OpCode::Continuation, true, b""));
        let mut close = Vec::new();
        let mask = if s == Role::Client { key(9) } else { None };
        encode_close(&mut close, Some(CloseCode::NORMAL), "done", mask);
        wire.extend(close);
        let want = vec![
            Ev::Ping(b"p1".to_vec()),
            Ev::Pong(vec![]),
            Ev::Text("héllo😀".into()),
            Ev::Text(String::new()),
            Ev::Close(Some((1000, "done".into()))),
        ];
        for step in 0..=wire.len() {
            let (got, r) = run(receiver, Limits::default(), &wire, step);
            assert_eq!(r, Ok(()));
            assert_eq!(got, want, "step {step}");
        }
    }
}

#[test]
fn in_message_tracks_fragments() {
    let mut dec = Decoder::new(Role::Server, Limits::default());
    let mut a = frame(Role::Client, OpCode::Binary, false, b"ab");
    assert_eq!(dec.decode(&mut a), Ok((8, None)));
    assert!(dec.in_message());
    let mut b = frame(Role::Client, OpCode::Continuation, true, b"c");
    let (_, ev) = dec.decode(&mut b).unwrap();
    assert_eq!(ev, Some(Event::Binary(b"abc")));
    assert!(!dec.in_message());
}

#[test]
fn close_finishes_decoder() {
    let mut wire = Vec::new();
    encode_close(&mut wire, None, "", key(0));
    wire.extend(frame(Role::Client, OpCode::Text, true, b"after"));
    let mut dec = Decoder::new(Role::Server, Limits::default());
    let (n, ev) = dec.decode(&mut wire).unwrap();
    assert_eq!((n, ev), (6, Some(Event::Close(None))));
    assert!(dec.is_finished());
    assert_eq!(dec.decode(&mut wire[6..]), Ok((0, None)));
}

fn expect_err(receiver: Role, wire: &[u8], code: CloseCode) {
    for step in [0, 1, 3, 7] {
        let (_, r) = run(receiver, Limits::default(), wire, step);
        assert_eq!(
            r.map_err(|e| e.code),
            Err(code),
            "step {step} wire {:x?}",
            &wire[..wire.len().min(16)]
        );
    }
}

#[test]
fn protocol_errors() {
    let c = Role::Client;
    let p = CloseCode::PROTOCOL_ERROR;
    // RSV bits
    for rsv in 1..8u8 {
        let mut w = frame(c, OpCode::Text, true, b"x");
        w[0] |= rsv << 4;
        expect_err(Role::Server, &w, p);
    }
    // reserved opcodes
    for op in (3..=7).chain(11..=15) {
        let mut w = frame(c, OpCode::Binary, true, b"x");
        w[0] = 0x80 | op;
        expect_err(Role::Server, &w, p);
    }
    // control frames: too long, fragmented
    expect_err(Role::Server, &frame(c, OpCode::Ping, true, &[0; 126]), p);
    expect_err(Role::Server, &frame(c, OpCode::Pong, false, b""), p);
    expect_err(Role::Server, &frame(c, OpCode::Close, false, b""), p);
    // continuation without a message; new message inside one
    expect_err(Role::Server, &frame(c, OpCode::Continuation, true, b"x"), p);
    let mut w = frame(c, OpCode::Text, false, b"a");
    w.extend(frame(c, OpCode::Binary, true, b"b"));
    expect_err(Role::Server, &w, p);
    let mut w = frame(c, OpCode::Binary, false, b"a");
    w.extend(frame(c, OpCode::Ping, true, b""));
    w.extend(frame(c, OpCode::Text, false, b"b"));
    expect_err(Role::Server, &w, p);
    // masking by role
    expect_err(
        Role::Server,
        &frame(Role::Server, OpCode::Text, true, b"x"),
        p,
    );
    expect_err(
        Role::Client,
        &frame(Role::Client, OpCode::Text, true, b"x"),
        p,
    );
    // 64-bit length with MSB set
    expect_err(
        Role::Server,
        &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
        p,
    );
    // close payloads
    expect_err(Role::Server, &frame(c, OpCode::Close, true, &[3]), p);
    expect_err(
        Role::Server,
        &frame(c, OpCode::Close, true, &[0x03, 0xED]),
        p,
    );
    expect_err(
        Role::Server,
        &frame(c, OpCode::Close, true, &[0x03, 0xE8, 0xFF]),
        CloseCode::INVALID_PAYLOAD,
    );
    // invalid text
    expect_err(
        Role::Server,
        &frame(c, OpCode::Text, true, b"ok\xC0\xAF"),
        CloseCode::INVALID_PAYLOAD,
    );
    let mut w = frame(c, OpCode::Text, false, b"ok\xCE");
    w.extend(frame(c, OpCode::Continuation, true, b""));
    expect_err(Role::Server, &w, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn size_limits() {
    let limits = Limits {
        max_frame_size: 100,
        max_message_size: 250,
    };
    let c = Role::Client;
    let (_, r) = run(
        Role::Server,
        limits,
        &frame(c, OpCode::Binary, true, &[0; 101]),
        0,
    );
    assert_eq!(r.unwrap_err().code, CloseCode::TOO_BIG);
    let (_, r) = run(
        Role::Server,
        limits,
        &frame(c, OpCode::Binary, true, &[0; 100]),
        0,
    );
    assert_eq!(r, Ok(()));
    let mut w = Vec::new();
    for op in [OpCode::Text, OpCode::Continuation, OpCode::Continuation] {
        w.extend(frame(c, op, false, &[b'a'; 90]));
    }
    let (got, r) = run(Role::Server, limits, &w, 0);
    assert_eq!(r.unwrap_err().code, CloseCode::TOO_BIG);
    assert!(got.is_empty());
    // control frames are not data: a ping between fragments does not count
    let mut w = frame(c, OpCode::Text, false, &[b'a'; 100]);
    w.extend(frame(c, OpCode::Ping, true, &[1; 125]));
    w.extend(frame(c, OpCode::Continuation, true, &[b'b'; 100]));
    let (got, r) = run(Role::Server, limits, &w, 0);
    assert_eq!(r, Ok(()));
    assert_eq!(got.len(), 2);
}

#[test]
fn huge_claim_never_allocates() {
    let claim = 1u64 << 62;
    let mut hdr = vec![0x82, 0xFF];
    hdr.extend_from_slice(&claim.to_be_bytes());
    hdr.extend_from_slice(&[1, 2, 3, 4]);
    let mut dec = Decoder::new(Role::Server, Limits::default());
    let e = dec.decode(&mut hdr.clone()).unwrap_err();
    assert_eq!(e.code, CloseCode::TOO_BIG);
    assert_eq!(dec.buffer_capacity(), 0);

    // Even with no limits, only what arrives is buffered.
    let unlimited = Limits {
        max_frame_size: usize::MAX,
        max_message_size: usize::MAX,
    };
    let mut dec = Decoder::new(Role::Server, unlimited);
    let mut data = hdr;
    data.extend_from_slice(&[0u8; 1000]);
    assert_eq!(dec.decode(&mut data), Ok((1014, None)));
    assert!(dec.in_message());
    // At most 64 KiB beyond the bytes that arrived, whatever the header claims.
    assert!(
        dec.buffer_capacity() <= 1000 + 64 * 1024,
        "{}",
        dec.buffer_capacity()
    );
}

#[test]
fn utf8_fails_fast() {
    let c = Role::Client;
    // a non-final fragment ending in F4 90 fails at once
    let mut dec = Decoder::new(Role::Server, Limits::default());
    let mut w = frame(c, OpCode::Text, false, b"abc\xF4\x90");
    assert_eq!(
        dec.decode(&mut w).unwrap_err().code,
        CloseCode::INVALID_PAYLOAD
    );
    // ...and so does the first part of a single frame split across calls
    let mut dec = Decoder::new(Role::Server, Limits::default());
    let mut w = frame(c, OpCode::Text, true, b"abc\xED\xA0\x80 and more");
    assert_eq!(
        dec.decode(&mut w[..11]).unwrap_err().code,
        CloseCode::INVALID_PAYLOAD
    );
    // 0xCE alone is fine until the message ends
    let mut dec = Decoder::new(Role::Server, Limits::default());
    let mut w = frame(c, OpCode::Text, false, b"ab\xCE");
    let l = w.len();
    assert_eq!(dec.decode(&mut w), Ok((l, None)));
    let mut w = frame(c, OpCode::Continuation, false, b"");
    let l = w.len();
    assert_eq!(dec.decode(&mut w), Ok((l, None)));
    let mut w = frame(c, OpCode::Continuation, true, b"\xBB!");
    assert_eq!(dec.decode(&mut w).unwrap().1, Some(Event::Text("abλ!")));
    let mut w = frame(c, OpCode::Text, false, b"ab\xCE");
    let l = w.len();
    assert_eq!(dec.decode(&mut w), Ok((l, None)));
    let mut w = frame(c, OpCode::Continuation, true, b"");
    assert_eq!(
        dec.decode(&mut w).unwrap_err().code,
        CloseCode::INVALID_PAYLOAD
    );
}

#[test]
fn large_buffer_is_released() {
    let c = Role::Client;
    let mut w = frame(c, OpCode::Binary, false, &[7; 100_000]);
    w.extend(frame(c, OpCode::Continuation, true, &[8; 100_000]));
    w.extend(frame(c, OpCode::Ping, true, b""));
    let mut dec = Decoder::new(Role::Server, Limits::default());
    let mut out = Vec::new();
    feed(&mut dec, &mut w, &mut out).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(dec.buffer_capacity(), 0);
}

#[test]
fn pseudo_random_garbage_never_panics() {
    let mut s = 0xDEAD_BEEF_u64;
    for _ in 0..2000 {
        let len = (s % 64) as usize;
        let mut data: Vec<u8> = (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect();
        for role in [Role::Server, Role::Client] {
            let mut dec = Decoder::new(
                role,
                Limits {
                    max_frame_size: 64,
                    max_message_size: 128,
                },
            );
            let mut out = Vec::new();
            let _ = feed(&mut dec, &mut data.clone(), &mut out);
        }
        data.clear();
    }
}

#[test]
fn long_header_split_at_every_byte() {
    let payload: Vec<u8> = (0..70_000).map(|i| i as u8).collect();
    let wire = frame(Role::Client, OpCode::Binary, true, &payload);
    assert_eq!(wire[1], 0xFF, "64-bit length form");
    for cut in 1..=16 {
        let mut dec = Decoder::new(Role::Server, Limits::default());
        let mut out = Vec::new();
        let (mut a, mut b) = (wire[..cut].to_vec(), wire[cut..].to_vec());
        feed(&mut dec, &mut a, &mut out).unwrap();
        assert!(out.is_empty());
        feed(&mut dec, &mut b, &mut out).unwrap();
        assert_eq!(out, vec![Ev::Binary(payload.clone())], "cut {cut}");
    }
}

#[test]
fn utf8_error_across_fragment_boundary() {
    let c = Role::Client;
    let mut dec = Decoder::new(Role::Server, Limits::default());
    let mut w = frame(c, OpCode::Text, false, b"ok\xF4");
    let l = w.len();
    assert_eq!(dec.decode(&mut w), Ok((l, None)));
    let mut p = frame(c, OpCode::Ping, true, b"");
    assert_eq!(dec.decode(&mut p).unwrap().1, Some(Event::Ping(b"")));
    let mut w = frame(c, OpCode::Continuation, false, b"\x90\x80\x80");
    assert_eq!(
        dec.decode(&mut w).unwrap_err().code,
        CloseCode::INVALID_PAYLOAD
    );
    assert!(dec.is_finished());
}

/// A masked client frame with RSV1 set when `rsv1`.
fn rsv_frame(op: OpCode, fin: bool, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = frame(Role::Client, op, fin, payload);
    if rsv1 {
        out[0] |= 0x40;
    }
    out
}

/// Feeds `wire` in `step`-byte chunks (0 = one piece) to a server decoder set up by
/// `setup`.
fn run_with(
    setup: fn(&mut Decoder),
    wire: &[u8],
    step: usize,
) -> (Vec<Ev>, Result<(), ProtocolError>) {
    let mut dec = Decoder::new(Role::Server, Limits::default());
    setup(&mut dec);
    let mut out = Vec::new();
    let step = if step == 0 { wire.len().max(1) } else { step };
    for chunk in wire.chunks(step) {
        let mut chunk = chunk.to_vec();
        if let Err(e) = feed(&mut dec, &mut chunk, &mut out) {
            return (out, Err(e));
        }
    }
    (out, Ok(()))
}

#[test]
fn rsv1_marks_a_compressed_message_only_when_accepted_and_only_on_its_first_frame() {
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let wire = rsv_frame(OpCode::Text, true, true, &hello);
    // Not negotiated: RSV1 is a reserved bit.
    let (_, result) = run(Role::Server, Limits::default(), &wire, 0);
    assert_eq!(result.unwrap_err().code.0, 1002);
    for step in [1, 3, wire.len()] {
        let (events, result) = run_with(Decoder::accept_compressed, &wire, step);
        result.unwrap();
        assert_eq!(events, [Ev::Deflated(true, hello.to_vec())], "step {step}");
    }
    // Fragmented: RSV1 on the first frame; a control frame between; the payload comes
    // whole, not validated as UTF-8 (it is compressed).
    let mut wire = rsv_frame(OpCode::Binary, false, true, &hello[..3]);
    wire.extend(frame(Role::Client, OpCode::Ping, true, b"p"));
    wire.extend(frame(Role::Client, OpCode::Continuation, true, &hello[3..]));
    let (events, result) = run_with(Decoder::accept_compressed, &wire, 0);
    result.unwrap();
    assert_eq!(
        events,
        [Ev::Ping(b"p".to_vec()), Ev::Deflated(false, hello.to_vec())]
    );
    // RSV1 on a continuation, on a control frame, RSV2: 1002.
    for bad in [
        {
            let mut w = rsv_frame(OpCode::Text, false, true, &hello[..3]);
            w.extend(rsv_frame(OpCode::Continuation, true, true, &hello[3..]));
            w
        },
        rsv_frame(OpCode::Ping, true, true, b"p"),
        {
            let mut w = frame(Role::Client, OpCode::Text, true, b"x");
            w[0] |= 0x20;
            w
        },
    ] {
        let (_, result) = run_with(Decoder::accept_compressed, &bad, 0);
        assert_eq!(result.unwrap_err().code.0, 1002);
    }
    // An uncompressed message next to compressed ones is still checked as UTF-8.
    let wire = rsv_frame(OpCode::Text, true, false, &[0xff]);
    let (_, result) = run_with(Decoder::accept_compressed, &wire, 0);
    assert_eq!(result.unwrap_err().code.0, 1007);
}

#[test]
fn streaming_hands_out_compressed_pieces_as_they_arrive() {
    let body: Vec<u8> = (0..40u8).collect();
    let mut wire = rsv_frame(OpCode::Text, false, true, &body[..25]);
    wire.extend(frame(Role::Client, OpCode::Ping, true, b"p"));
    wire.extend(frame(Role::Client, OpCode::Continuation, true, &body[25..]));
    for step in [1, 7, wire.len()] {
        let (events, result) = run_with(Decoder::stream_compressed, &wire, step);
        result.unwrap();
        // Whatever the cuts, the pieces put together are the payload, the last piece
        // comes as `Deflated`, the ping in its place.
        let mut joined = Vec::new();
        let mut saw_ping = false;
        for (i, event) in events.iter().enumerate() {
            match event {
                Ev::Part(true, piece) => joined.extend_from_slice(piece),
                Ev::Deflated(true, piece) => {
                    assert_eq!(i, events.len() - 1, "the last piece ends it");
                    joined.extend_from_slice(piece);
                }
                Ev::Ping(_) => saw_ping = true,
                other => panic!("step {step}: {other:?}"),
            }
        }
        assert!(saw_ping);
        assert_eq!(joined, body, "step {step}");
    }
    // A whole message in one input is one `Deflated`.
    let wire = rsv_frame(OpCode::Binary, true, true, &body);
    let (events, _) = run_with(Decoder::stream_compressed, &wire, 0);
    assert_eq!(events, [Ev::Deflated(false, body.clone())]);
    // An empty final continuation still ends the message.
    let mut wire = rsv_frame(OpCode::Binary, false, true, &body);
    wire.extend(frame(Role::Client, OpCode::Continuation, true, b""));
    let (events, _) = run_with(Decoder::stream_compressed, &wire, 0);
    assert_eq!(
        events,
        [
            Ev::Part(false, body.clone()),
            Ev::Deflated(false, Vec::new())
        ]
    );
}
