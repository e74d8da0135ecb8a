//! permessage-deflate on a connection driven by hand: the answer to an offer, echoes
//! compressed both ways with and without context takeover, the threshold, hibernation
//! by timer and by the live-stream budget (the history surviving it), inflate bombs and
//! bad text, and published messages compressed once per shard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::{Config, Connection, ShardContext};
use crate::conn::{Conn, ConnId, Framing, OutLimits, Outbox, Token};
use crate::handle::{Outgoing, Post, Stopped};
use crate::handler::{Handler, Message};
use crate::handshake::{negotiate, DeflateConfig};
use crate::proto::{
    apply_mask, Decoder, Event, FrameHeader, MessageDeflater, MessageInflater, OpCode, Role,
};
use crate::pubsub::hub::Publication;
use crate::route::{Accept, Route, Routes, WebSocketOptions};
use crate::DeflateOptions;

use super::{Compression, ShardCodecs};

struct NoPost;

impl Post for NoPost {
    fn post(&self, _to: ConnId, _message: Outgoing) -> Result<(), Stopped> {
        Ok(())
    }

    fn post_publication(&self, _shard: usize, _p: Arc<Publication>) -> Result<(), Stopped> {
        Ok(())
    }
}

/// Echoes every message.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }
}

/// A client of one connection: it compresses what it sends and inflates what it gets,
/// keeping context unless told otherwise.
struct Client {
    conn: Connection,
    ctx: ShardContext,
    now: Instant,
    decoder: Decoder,
    deflater: MessageDeflater,
    inflater: MessageInflater,
    /// The 101 response's head.
    answer: String,
    /// How many server messages arrived compressed.
    compressed: usize,
}

fn config() -> Config {
    let mut config = crate::server::default_config();
    config.limits.max_message_size = 1 << 20;
    config
}

impl Client {
    /// Connects to a route with `options`, offering `offer` (nothing when empty).
    fn connect(options: DeflateOptions, offer: &str, config: Config) -> Client {
        let mut routes = Routes::default();
        routes.insert(
            "/z",
            Route::WebSocket {
                hook: Box::new(|_| Ok(Accept::new(Echo))),
                options: WebSocketOptions::default().deflate(options),
            },
        );
        let ctx = ShardContext::standalone(routes, config, Arc::new(NoPost));
        let now = Instant::now();
        let id = ConnId {
            shard: 0,
            token: Token::new(1, 1),
        };
        let conn = Connection::new(id, None, &ctx.config, now);
        let mut client = Client {
            conn,
            ctx,
            now,
            decoder: Decoder::new(Role::Client, crate::proto::Limits::default()),
            deflater: MessageDeflater::new(15, 1, false),
            inflater: MessageInflater::new(15, false),
            answer: String::new(),
            compressed: 0,
        };
        let mut request = "GET /z HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n"
            .to_owned();
        if !offer.is_empty() {
            request.push_str(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
            client.decoder.accept_compressed();
        }
        request.push_str("\r\n");
        client.recv(request.as_bytes());
        let out = client.take_output();
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response")
            + 4;
        client.answer = String::from_utf8(out[..end].to_vec()).expect("ASCII head");
        assert!(
            client.answer.starts_with("HTTP/1.1 101"),
            "{}",
            client.answer
        );
        assert_eq!(end, out.len(), "nothing after the 101");
        client
    }

    fn recv(&mut self, bytes: &[u8]) {
        let mut bytes = bytes.to_vec();
        self.conn.receive(&mut bytes, &self.ctx, self.now);
    }

    fn take_output(&mut self) -> Vec<u8> {
        let out = std::mem::take(&mut self.conn.out.queued);
        self.conn.on_written(&self.ctx, self.now);
        out
    }

    /// Sends `text`, compressed by the client.
    fn send_compressed(&mut self, opcode: OpCode, payload: &[u8]) {
        let mut body = Vec::new();
        self.deflater.compress(payload, &mut body);
        self.send_raw(true, 0b100, opcode, &body);
    }

    /// Sends one masked frame with the given RSV bits.
    fn send_raw(&mut self, fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) {
        let frame = masked_frame(fin, rsv, opcode, payload);
        self.recv(&frame);
    }
}

/// One masked client frame with the given RSV bits.
fn masked_frame(fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    {
        let key = [1, 2, 3, 4];
        let header = FrameHeader {
            fin,
            rsv,
            opcode: opcode as u8,
            mask: Some(key),
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; FrameHeader::MAX_LEN];
        let len = header.write(&mut head);
        let mut frame = head[..len].to_vec();
        let start = frame.len();
        frame.extend_from_slice(payload);
        apply_mask(&mut frame[start..], key, 0);
        frame
    }
}

impl Client {
    /// The server's frames since the last call: messages as `text:…`/`binary:N`
    /// (inflated when they came compressed), closes as `close:CODE`.
    fn frames(&mut self) -> Vec<String> {
        let mut wire = self.take_output();
        let mut frames = Vec::new();
        let mut pos = 0;
        while pos < wire.len() {
            let (used, event) = self.decoder.decode(&mut wire[pos..]).expect("valid frames");
            pos += used;
            let frame = match event {
                Some(Event::Text(text)) => format!("text:{text}"),
                Some(Event::Binary(bytes)) => format!("binary:{}", bytes.len()),
                Some(Event::Deflated { text, payload }) => {
                    self.compressed += 1;
                    let mut plain = Vec::new();
                    self.inflater
                        .decompress(payload, true, usize::MAX / 2, &mut plain)
                        .expect("the server's message inflates");
                    match text {
                        true => format!("text:{}", String::from_utf8(plain).expect("UTF-8")),
                        false => format!("binary:{}", plain.len()),
                    }
                }
                Some(Event::Close(frame)) => format!("close:{}", frame.map_or(1005, |f| f.code.0)),
                Some(other) => format!("{other:?}"),
                None if used == 0 => break,
                None => continue,
            };
            frames.push(frame);
        }
        frames
    }

    fn compression(&self) -> &Compression {
        self.conn
            .out
            .compression
            .as_deref()
            .expect("deflate agreed")
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.conn.on_timer(&self.ctx, self.now);
    }
}

const OFFER: &str = "permessage-deflate; client_max_window_bits";

fn sentence(n: usize) -> String {
    // Over the default 64-byte threshold.
    format!("{{\"seq\":{n},\"text\":\"the quick brown fox jumps over the lazy dog\",\"ok\":true}}")
}

#[test]
fn an_offer_is_answered_and_messages_echo_compressed_with_context_takeover() {
    let mut client = Client::connect(DeflateOptions::context_takeover(), OFFER, config());
    assert!(
        client
            .answer
            .contains("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
        "{}",
        client.answer
    );
    for n in 0..3 {
        let text = sentence(n);
        client.send_compressed(OpCode::Text, text.as_bytes());
        let frames = client.frames();
        assert_eq!(frames, [format!("text:{text}")]);
    }
    assert_eq!(client.compressed, 3);
    // Both directions keep a stream of their own.
    assert_eq!(client.compression().live_streams(), 2);
    assert_eq!(client.ctx.codecs.live_streams(), 2);
    // Binary too, and the empty message.
    client.send_compressed(OpCode::Binary, &[7; 300]);
    assert_eq!(client.frames(), ["binary:300"]);
    client.send_compressed(OpCode::Text, b"");
    assert_eq!(client.frames(), ["text:"]);
}

#[test]
fn without_an_offer_rsv1_is_a_protocol_error() {
    let mut client = Client::connect(DeflateOptions::context_takeover(), "", config());
    assert!(!client.answer.contains("Extensions"), "{}", client.answer);
    assert!(client.conn.out.compression.is_none());
    client.send_compressed(OpCode::Text, b"Hello");
    let frames = client.frames();
    assert_eq!(frames, ["close:1002"]);
}

#[test]
fn messages_under_the_threshold_go_out_uncompressed() {
    let options = DeflateOptions::context_takeover().threshold(100);
    let mut client = Client::connect(options, OFFER, config());
    client.send_compressed(OpCode::Text, b"short");
    assert_eq!(client.frames(), ["text:short"]);
    assert_eq!(client.compressed, 0);
    let long = "x".repeat(100);
    client.send_compressed(OpCode::Text, long.as_bytes());
    assert_eq!(client.frames(), [format!("text:{long}")]);
    assert_eq!(client.compressed, 1);
}

#[test]
fn idle_streams_hibernate_and_the_history_survives() {
    let delay = Duration::from_secs(5);
    let options = DeflateOptions::context_takeover().hibernate_after(delay);
    let mut client = Client::connect(options, OFFER, config());
    let text = sentence(1).repeat(20);
    client.send_compressed(OpCode::Text, text.as_bytes());
    assert_eq!(client.frames(), [format!("text:{text}")]);
    let live = client.compression().held_bytes();
    assert_eq!(client.compression().live_streams(), 2);

    // One delay: the timer finds the streams used since it was armed; a second one
    // finds them idle.
    client.advance(delay);
    assert_eq!(client.compression().live_streams(), 2);
    client.advance(delay);
    assert_eq!(client.compression().live_streams(), 0);
    assert_eq!(client.ctx.codecs.live_streams(), 0);
    let idle = client.compression().held_bytes();
    assert!(
        idle <= 2 * (32 << 10),
        "{idle} bytes held while hibernating"
    );
    assert!(live > 100 * idle / 10, "live {live}, idle {idle}");

    // The next messages refer back to the first: both sides rebuilt from history.
    for _ in 0..2 {
        client.send_compressed(OpCode::Text, text.as_bytes());
        assert_eq!(client.frames(), [format!("text:{text}")]);
    }
    assert_eq!(client.compressed, 3);
}

#[test]
fn over_the_live_stream_budget_a_connection_hibernates_after_each_message() {
    let options = DeflateOptions::context_takeover().max_live_streams(0);
    let mut client = Client::connect(options, OFFER, config());
    for n in 0..4 {
        let text = sentence(n % 2).repeat(5);
        client.send_compressed(OpCode::Text, text.as_bytes());
        assert_eq!(client.frames(), [format!("text:{text}")]);
        assert_eq!(client.compression().live_streams(), 0);
        assert_eq!(client.ctx.codecs.live_streams(), 0);
    }
}

#[test]
fn without_context_takeover_the_connection_holds_nothing() {
    let options = DeflateOptions::no_context_takeover();
    let mut client = Client::connect(options, OFFER, config());
    assert!(
        client
            .answer
            .contains("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        "{}",
        client.answer
    );
    client.deflater = MessageDeflater::new(15, 1, true);
    client.inflater = MessageInflater::new(15, true);
    for n in 0..3 {
        let text = sentence(n);
        client.send_compressed(OpCode::Text, text.as_bytes());
        assert_eq!(client.frames(), [format!("text:{text}")]);
    }
    assert_eq!(client.compressed, 3);
    assert_eq!(client.compression().held_bytes(), 0);
    assert_eq!(client.ctx.codecs.live_streams(), 0);
}

#[test]
fn the_live_count_falls_when_the_connection_goes() {
    let mut client = Client::connect(DeflateOptions::context_takeover(), OFFER, config());
    client.send_compressed(OpCode::Text, sentence(0).as_bytes());
    client.frames();
    assert_eq!(client.ctx.codecs.live_streams(), 2);
    let Client { conn, ctx, .. } = client;
    drop(conn);
    assert_eq!(ctx.codecs.live_streams(), 0);
}

#[test]
fn an_inflate_bomb_is_closed_with_1009_and_bad_data_with_1007() {
    let mut client = Client::connect(DeflateOptions::context_takeover(), OFFER, config());
    // 4 MiB of zeros against a 1 MiB limit: a few KiB on the wire.
    client.send_compressed(OpCode::Binary, &vec![0; 4 << 20]);
    assert_eq!(client.frames(), ["close:1009"]);

    let mut client = Client::connect(DeflateOptions::context_takeover(), OFFER, config());
    client.send_raw(true, 0b100, OpCode::Text, &[0xff, 0xff, 0xff]);
    assert_eq!(client.frames(), ["close:1007"]);

    // Inflated text that is not UTF-8.
    let mut client = Client::connect(DeflateOptions::context_takeover(), OFFER, config());
    client.send_compressed(OpCode::Text, &[b'a', 0xc3, 0x28, b'b']);
    assert_eq!(client.frames(), ["close:1007"]);
}

#[test]
fn rsv1_on_a_continuation_or_a_control_frame_is_a_protocol_error() {
    let mut client = Client::connect(DeflateOptions::context_takeover(), OFFER, config());
    client.send_raw(false, 0, OpCode::Text, b"a");
    client.send_raw(true, 0b100, OpCode::Continuation, b"b");
    assert_eq!(client.frames(), ["close:1002"]);

    let mut client = Client::connect(DeflateOptions::context_takeover(), OFFER, config());
    client.send_raw(true, 0b100, OpCode::Ping, b"p");
    assert_eq!(client.frames(), ["close:1002"]);

    let mut client = Client::connect(DeflateOptions::context_takeover(), OFFER, config());
    client.send_raw(true, 0b010, OpCode::Text, b"p");
    assert_eq!(client.frames(), ["close:1002"]);
}

#[test]
fn a_fragmented_compressed_message_is_inflated_whole() {
    let mut client = Client::connect(DeflateOptions::context_takeover(), OFFER, config());
    let text = sentence(7).repeat(30);
    let mut body = Vec::new();
    client.deflater.compress(text.as_bytes(), &mut body);
    let (first, rest) = body.split_at(body.len() / 3);
    client.send_raw(false, 0b100, OpCode::Text, first);
    client.send_raw(true, 0, OpCode::Ping, b"between");
    client.send_raw(true, 0, OpCode::Continuation, rest);
    let frames = client.frames();
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[1], format!("text:{text}"));
}

/// An outbox for a publication's subscriber with `agreement` reached on `offer`.
fn subscriber(offer: &str, options: DeflateOptions, codecs: &ShardCodecs) -> Outbox {
    let limits = config().out_limits;
    let mut out = Outbox::new(OutLimits {
        max_buffered: 1 << 24,
        ..limits
    });
    out.framing = Framing::Rfc6455;
    let agreement = negotiate([offer], options.negotiation()).expect("agreed");
    out.compression = Some(Box::new(Compression::new(agreement, options, codecs)));
    out
}

#[test]
fn a_publication_is_compressed_once_per_shard_for_no_context_takeover_subscribers() {
    let codecs = ShardCodecs::default();
    let nct = DeflateOptions::no_context_takeover();
    let mut first = subscriber(OFFER, nct, &codecs);
    let mut second = subscriber(OFFER, nct, &codecs);
    let takeover = DeflateOptions::context_takeover();
    let mut own = subscriber(OFFER, takeover, &codecs);
    let mut own_inflater = MessageInflater::new(15, false);
    for n in 0..3 {
        let text = sentence(n).repeat(4);
        let publication = Publication::new("t", Message::Text(&text), None);
        for out in [&mut first, &mut second, &mut own] {
            out.send_published(&publication, false, false, &codecs);
        }
        // The two no-context-takeover subscribers queue the same bytes, from one
        // compression (the cache holds one frame for the publication).
        assert_eq!(first.queued, second.queued);
        assert_eq!(codecs.published.borrow().1.len(), 1);
        let decoded = decode_one(&mut first.queued, &mut MessageInflater::new(15, true));
        assert_eq!(decoded, text);
        second.queued.clear();
        // The context-takeover subscriber compressed its own copy, in its context.
        assert_eq!(decode_one(&mut own.queued, &mut own_inflater), text);
    }
    // A different window size is a second frame for the same publication.
    let mut small = subscriber(
        "permessage-deflate; server_max_window_bits=10",
        nct,
        &codecs,
    );
    let text = sentence(9).repeat(4);
    let publication = Publication::new("t", Message::Text(&text), None);
    first.send_published(&publication, false, false, &codecs);
    small.send_published(&publication, false, false, &codecs);
    assert_eq!(codecs.published.borrow().1.len(), 2);
    assert_eq!(
        decode_one(&mut small.queued, &mut MessageInflater::new(10, true)),
        text
    );
    let _ = DeflateConfig::default();
}

/// Decodes the one compressed text frame in `wire` (and empties it).
fn decode_one(wire: &mut Vec<u8>, inflater: &mut MessageInflater) -> String {
    let mut decoder = Decoder::new(Role::Client, crate::proto::Limits::default());
    decoder.accept_compressed();
    let (used, event) = decoder.decode(wire).expect("a valid frame");
    let Some(Event::Deflated {
        text: true,
        payload,
    }) = event
    else {
        panic!("not a compressed text frame: {event:?}");
    };
    let mut plain = Vec::new();
    inflater
        .decompress(payload, true, usize::MAX / 2, &mut plain)
        .expect("inflates");
    assert_eq!(used, wire.len());
    wire.clear();
    String::from_utf8(plain).expect("UTF-8")
}

#[test]
fn a_compressed_message_split_across_reads_is_inflated_as_it_comes() {
    for options in [
        DeflateOptions::context_takeover(),
        DeflateOptions::no_context_takeover(),
    ] {
        let mut client = Client::connect(options, OFFER, config());
        let nct = options.negotiation().client_no_context_takeover;
        client.deflater = MessageDeflater::new(15, 1, nct);
        client.inflater = MessageInflater::new(15, nct);
        for round in 0..2 {
            let text = sentence(round).repeat(50);
            let mut body = Vec::new();
            client.deflater.compress(text.as_bytes(), &mut body);
            let mut wire = masked_frame(false, 0b100, OpCode::Text, &body[..body.len() / 2]);
            wire.extend(masked_frame(
                true,
                0,
                OpCode::Continuation,
                &body[body.len() / 2..],
            ));
            // Every read cuts a frame somewhere.
            for piece in wire.chunks(7) {
                client.recv(piece);
            }
            assert_eq!(client.frames(), [format!("text:{text}")]);
            assert_eq!(client.compression().partial_bytes(), 0);
        }
        // Without context takeover the inflater lent for the message went with it.
        if nct {
            assert_eq!(client.ctx.codecs.live_streams(), 0);
        }
    }
}

#[test]
fn bad_text_in_a_compressed_message_fails_at_the_piece_that_shows_it() {
    let mut client = Client::connect(DeflateOptions::context_takeover(), OFFER, config());
    let mut bad = sentence(0).into_bytes();
    bad.extend_from_slice(&[0xc3, 0x28]);
    bad.extend(sentence(1).repeat(10).into_bytes());
    let mut body = Vec::new();
    client.deflater.compress(&bad, &mut body);
    // The first fragment carries all of it; the message never ends.
    client.send_raw(false, 0b100, OpCode::Text, &body);
    assert_eq!(client.frames(), ["close:1007"]);
}

#[test]
fn a_bomb_in_pieces_is_closed_with_1009_holding_at_most_the_limit() {
    let mut client = Client::connect(DeflateOptions::context_takeover(), OFFER, config());
    let mut body = Vec::new();
    client.deflater.compress(&vec![0; 16 << 20], &mut body);
    let mut held = 0;
    for (sent, piece) in body.chunks(1024).enumerate() {
        let rsv = if sent == 0 { 0b100 } else { 0 };
        client.send_raw(false, rsv, opcode(sent), piece);
        held = held.max(client.compression().partial_bytes());
        if client.conn.wants_close() {
            break;
        }
    }
    assert_eq!(client.frames(), ["close:1009"]);
    // The 1 MiB limit, plus one inflate step at most.
    assert!(held <= (1 << 20) + (16 << 10) + 1, "{held} bytes held");
}

fn opcode(sent: usize) -> OpCode {
    if sent == 0 {
        OpCode::Text
    } else {
        OpCode::Continuation
    }
}

#[test]
fn a_session_built_open_with_an_agreement_compresses_and_inflates() {
    // The handshake happened elsewhere (an adapter for another HTTP server): the
    // agreement it answered comes in with the handler.
    let mut client = Client::connect(DeflateOptions::context_takeover(), OFFER, config());
    let options = DeflateOptions::context_takeover();
    let agreement = negotiate([OFFER], options.negotiation()).expect("agreed");
    let id = ConnId {
        shard: 0,
        token: Token::new(2, 1),
    };
    client.conn = Connection::open_with(
        id,
        Framing::Rfc6455,
        Box::new(Echo),
        Some((agreement, options)),
        &client.ctx,
        client.now,
    )
    .expect("an RFC 6455 session");
    for n in 0..3 {
        let text = sentence(n).repeat(3);
        let mut body = Vec::new();
        client.deflater.compress(text.as_bytes(), &mut body);
        // Cut in two reads: the pieces are inflated as they come.
        let frame = masked_frame(true, 0b100, OpCode::Text, &body);
        let (first, rest) = frame.split_at(frame.len() / 2);
        client.recv(first);
        client.recv(rest);
        assert_eq!(client.frames(), [format!("text:{text}")]);
    }
    assert_eq!(client.compressed, 3);
}
