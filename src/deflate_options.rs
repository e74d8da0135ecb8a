//! How a WebSocket route compresses messages with permessage-deflate (RFC 7692): the
//! mode, what the server answers, and what it may hold in memory.

use std::time::Duration;

use crate::handshake::DeflateConfig;

/// permessage-deflate for a WebSocket route ([`WebSocketOptions::deflate`]) or a SockJS
/// service's `websocket` transport ([`SockJsOptions::deflate`]). Off unless set, like
/// uWebSockets and `ws`: compression costs CPU on every message and, with context
/// takeover, memory on every connection.
///
/// Two modes, each direction negotiated on its own (a client may ask for less
/// context than the server offers; RFC 7692 §7.1):
///
/// - [`no_context_takeover`](Self::no_context_takeover): every message is compressed
///   from a fresh window. The shard keeps one compressor per window size and one
///   decompressor, shared by all its connections: **no zlib memory per connection**.
///   Small messages compress little without history. A published message is compressed
///   once per shard for all such subscribers.
/// - [`context_takeover`](Self::context_takeover) (what `ringws serve --deflate` uses):
///   each connection keeps its window across messages, for the best ratio. Its zlib
///   streams are created on its first compressed message and **hibernate** after
///   [`hibernate_after`](Self::hibernate_after) without one: only the last 2^bits
///   bytes of each direction's history are kept (≈ 2 × 2^bits bytes, 64 KiB at 15 bits,
///   1 KiB at 9) and the streams are rebuilt from them on the next message, which the
///   peer cannot tell apart. A live stream pair costs ≈ 300–420 KiB (zlib-rs keeps a
///   fixed 128 KiB hash table); past [`max_live_streams`](Self::max_live_streams) on a
///   shard, a connection hibernates right after each message.
///
/// Window bits 8: raw deflate cannot compress with 8, so an offer of
/// `server_max_window_bits=8` is answered 8 and compressed with 9, whose output never
/// reaches back further than 256 bytes (as node's `ws` does); a client window of 8 is
/// inflated with 9.
///
/// ```
/// use ringws::{DeflateOptions, WebSocketOptions};
///
/// // Memory first: nothing per connection, 11-bit windows from clients.
/// let lean = DeflateOptions::no_context_takeover().client_max_window_bits(11);
/// let options = WebSocketOptions::default().deflate(lean);
/// assert!(options.deflate_options().is_some());
///
/// // Ratio first: context takeover, compress messages of 256 bytes or more.
/// let rich = DeflateOptions::context_takeover().threshold(256).level(6);
/// assert_eq!(rich.negotiation().server_max_window_bits, 15);
/// ```
///
/// [`WebSocketOptions::deflate`]: crate::WebSocketOptions::deflate
/// [`SockJsOptions::deflate`]: crate::sockjs::SockJsOptions::deflate
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateOptions {
    negotiation: DeflateConfig,
    level: u32,
    threshold: usize,
    hibernate_after: Duration,
    max_live_streams: usize,
}

/// The default [`DeflateOptions::threshold`]: messages under 64 bytes go out
/// uncompressed (their frame would barely shrink, if at all).
pub const DEFAULT_DEFLATE_THRESHOLD: usize = 64;

/// The default [`DeflateOptions::hibernate_after`].
pub const DEFAULT_HIBERNATE_AFTER: Duration = Duration::from_secs(10);

/// The default [`DeflateOptions::max_live_streams`] per shard (≈ 100 MiB of zlib state
/// at 15-bit windows).
pub const DEFAULT_MAX_LIVE_STREAMS: usize = 256;

impl DeflateOptions {
    /// Context takeover both ways with 15-bit windows (the plain `permessage-deflate`
    /// answer), zlib level 1, the default threshold, hibernation and stream budget.
    pub fn context_takeover() -> DeflateOptions {
        DeflateOptions {
            negotiation: DeflateConfig::default(),
            level: 1,
            threshold: DEFAULT_DEFLATE_THRESHOLD,
            hibernate_after: DEFAULT_HIBERNATE_AFTER,
            max_live_streams: DEFAULT_MAX_LIVE_STREAMS,
        }
    }

    /// A fresh window for every message both ways (answered as
    /// `server_no_context_takeover; client_no_context_takeover`): the shard's shared
    /// compressors and decompressor do all the work, nothing is kept per connection.
    pub fn no_context_takeover() -> DeflateOptions {
        DeflateOptions {
            negotiation: DeflateConfig {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                ..DeflateConfig::default()
            },
            ..DeflateOptions::context_takeover()
        }
    }

    /// The largest window the server compresses with, 8..=15 (clamped into it).
    pub fn server_max_window_bits(mut self, bits: u8) -> DeflateOptions {
        self.negotiation.server_max_window_bits = bits.clamp(8, 15);
        self
    }

    /// The largest window clients may compress with, 8..=15 (clamped into it), when
    /// they offer `client_max_window_bits` (browsers do).
    pub fn client_max_window_bits(mut self, bits: u8) -> DeflateOptions {
        self.negotiation.client_max_window_bits = bits.clamp(8, 15);
        self
    }

    /// zlib's compression level, 0..=9 (higher is taken as 9; default 1, the fastest
    /// that compresses).
    pub fn level(mut self, level: u32) -> DeflateOptions {
        self.level = level.min(9);
        self
    }

    /// Messages shorter than `bytes` are sent uncompressed (default
    /// [`DEFAULT_DEFLATE_THRESHOLD`]).
    pub fn threshold(mut self, bytes: usize) -> DeflateOptions {
        self.threshold = bytes;
        self
    }

    /// With context takeover, how long a connection goes without a compressed message
    /// before its zlib streams hibernate (default [`DEFAULT_HIBERNATE_AFTER`]; it
    /// happens between one and two such periods after the last message).
    pub fn hibernate_after(mut self, idle: Duration) -> DeflateOptions {
        self.hibernate_after = idle;
        self
    }

    /// With context takeover, how many zlib streams a shard keeps alive (default
    /// [`DEFAULT_MAX_LIVE_STREAMS`]); past it, connections hibernate after every
    /// message (bounded memory for the price of rebuilding a stream per message).
    pub fn max_live_streams(mut self, streams: usize) -> DeflateOptions {
        self.max_live_streams = streams;
        self
    }

    /// What the server answers an offer with (see [`DeflateConfig`]).
    pub fn negotiation(&self) -> &DeflateConfig {
        &self.negotiation
    }

    /// The zlib level.
    pub fn compression_level(&self) -> u32 {
        self.level
    }

    /// The size below which messages go out uncompressed.
    pub fn min_compressed_size(&self) -> usize {
        self.threshold
    }

    /// The idle time before a connection's streams hibernate.
    pub fn hibernation_delay(&self) -> Duration {
        self.hibernate_after
    }

    /// The per-shard budget of live zlib streams.
    pub fn live_stream_budget(&self) -> usize {
        self.max_live_streams
    }
}
