//! Per-service SockJS settings and the protocol flavour.

use std::time::Duration;

use crate::DeflateOptions;

/// sockjs-node's default `sockjs_url` (v0.3.24), loaded by the iframe page.
pub const DEFAULT_SOCKJS_URL: &str =
    "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js";

/// sockjs-node's `sockjs_url` of the 0.3 era (v0.3.9), a sockjs-client 0.3 build.
pub const LEGACY_SOCKJS_URL: &str = "https://d1fxtkz8shb9d2.cloudfront.net/sockjs-0.3.min.js";

/// Which edition of the SockJS protocol a service speaks.
///
/// The two differ only in details a client or the conformance suite can see; see the
/// module documentation of [`crate::sockjs`] for the full list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Flavour {
    /// SockJS protocol 0.3.3 (sockjs-node 0.3.9, sockjs-client 0.3.x).
    V0_3_3,
    /// The current protocol (sockjs-node 0.3.24, sockjs-client 1.x).
    #[default]
    Current,
}

impl Flavour {
    /// The `Cache-Control` value of responses that must never be cached.
    pub fn no_cache_value(self) -> &'static str {
        match self {
            Flavour::V0_3_3 => "no-store, no-cache, must-revalidate, max-age=0",
            Flavour::Current => "no-store, no-cache, no-transform, must-revalidate, max-age=0",
        }
    }

    /// The close code and reason a server uses when a client sends broken JSON over the
    /// `websocket` transport (the WebSocket is closed with them).
    pub fn broken_framing_close(self) -> (u16, &'static str) {
        match self {
            Flavour::V0_3_3 => (1002, "Broken framing."),
            Flavour::Current => (3000, "Broken framing."),
        }
    }

    /// Whether a WebSocket handshake with this `Sec-WebSocket-Version` is accepted.
    ///
    /// `None` is a hixie-75/76 handshake (no version header): accepted by both flavours
    /// on the session endpoint (`/<server>/<session>/websocket`). `raw` is the
    /// `/websocket` endpoint, which takes RFC 6455 only (versions 8 and 13) in both
    /// flavours. On the session endpoint 0.3.3 also takes hybi-07/08, the current
    /// flavour only 13.
    pub fn accepts_websocket_version(self, raw: bool, version: Option<&str>) -> bool {
        let version = version.map(str::trim);
        if raw {
            return matches!(version, Some("8" | "13"));
        }
        matches!(
            (self, version),
            (_, None) | (_, Some("13")) | (Flavour::V0_3_3, Some("7" | "8"))
        )
    }
}

/// The transports a service can turn off (WebSocket is [`SockJsOptions::websocket`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transports {
    /// `xhr` polling (and `xhr_send`).
    pub xhr_polling: bool,
    /// `xhr_streaming`.
    pub xhr_streaming: bool,
    /// `eventsource`.
    pub eventsource: bool,
    /// `htmlfile`.
    pub htmlfile: bool,
    /// `jsonp` polling (and `jsonp_send`).
    pub jsonp: bool,
}

impl Default for Transports {
    fn default() -> Self {
        Self::ALL
    }
}

impl Transports {
    /// Every transport on.
    pub const ALL: Transports = Transports {
        xhr_polling: true,
        xhr_streaming: true,
        eventsource: true,
        htmlfile: true,
        jsonp: true,
    };

    /// True when `xhr_send` is needed: any transport whose client sends with it.
    pub fn xhr_send(&self) -> bool {
        self.xhr_polling || self.xhr_streaming || self.eventsource || self.htmlfile
    }
}

/// The settings of one SockJS service. `Default` is sockjs-node's defaults.
///
/// ```
/// use std::time::Duration;
/// use ringws::sockjs::{Flavour, SockJsOptions};
///
/// let options = SockJsOptions::default()
///     .flavour(Flavour::V0_3_3)
///     .response_limit(4096)
///     .heartbeat_delay(Duration::from_secs(10))
///     .cookie_needed(true);
/// assert_eq!(options.get_response_limit(), 4096);
/// assert!(options.get_websocket());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockJsOptions {
    pub(crate) websocket: bool,
    pub(crate) cookie_needed: bool,
    pub(crate) heartbeat_delay: Duration,
    pub(crate) disconnect_delay: Duration,
    pub(crate) response_limit: usize,
    pub(crate) sockjs_url: String,
    pub(crate) transports: Transports,
    pub(crate) flavour: Flavour,
    pub(crate) max_body_bytes: usize,
    pub(crate) deflate: Option<DeflateOptions>,
}

/// The default [`SockJsOptions::max_body_bytes`]: 1 MiB, the same as the server's
/// plain HTTP body limit, so a service that does not set it behaves as before.
/// (sockjs-node reads a send body whole, with no limit.)
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

impl Default for SockJsOptions {
    fn default() -> Self {
        Self {
            websocket: true,
            cookie_needed: false,
            heartbeat_delay: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(5),
            response_limit: 128 * 1024,
            sockjs_url: DEFAULT_SOCKJS_URL.to_owned(),
            transports: Transports::ALL,
            flavour: Flavour::Current,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            deflate: None,
        }
    }
}

impl SockJsOptions {
    /// Turns the `websocket` transport and the raw `/websocket` endpoint on or off
    /// (default on; `/info` reports it).
    pub fn websocket(mut self, on: bool) -> Self {
        self.websocket = on;
        self
    }

    /// Sets the `JSESSIONID` cookie on session responses (default off; `/info` reports
    /// it as `cookie_needed`).
    pub fn cookie_needed(mut self, on: bool) -> Self {
        self.cookie_needed = on;
        self
    }

    /// How long an attached, idle receiver waits before it gets an `h` frame (25 s).
    pub fn heartbeat_delay(mut self, delay: Duration) -> Self {
        self.heartbeat_delay = delay;
        self
    }

    /// How long a session lives without a receiving request (5 s).
    pub fn disconnect_delay(mut self, delay: Duration) -> Self {
        self.disconnect_delay = delay;
        self
    }

    /// Bytes of frames (transport framing included) after which a streaming response
    /// is ended so the browser can free it (128 KiB). At least 1.
    pub fn response_limit(mut self, bytes: usize) -> Self {
        self.response_limit = bytes.max(1);
        self
    }

    /// The sockjs-client script the iframe page loads (sockjs-node's `sockjs_url`;
    /// default [`DEFAULT_SOCKJS_URL`], or [`LEGACY_SOCKJS_URL`] for 0.3.3), e.g.
    /// `/static/sockjs.min.js` to serve it from this server instead of a CDN. Use the
    /// same sockjs-client version as the pages that connect (sockjs-client refuses an
    /// iframe of another version). It is written HTML-escaped into the page's
    /// `<script src="...">`, and the page's ETag changes with it.
    pub fn sockjs_url(mut self, url: impl Into<String>) -> Self {
        self.sockjs_url = url.into();
        self
    }

    /// Which non-WebSocket transports are served (all by default); a disabled one
    /// answers 404.
    pub fn transports(mut self, transports: Transports) -> Self {
        self.transports = transports;
        self
    }

    /// The protocol flavour (default [`Flavour::Current`]). While `sockjs_url` is still
    /// a default, it follows the flavour: [`LEGACY_SOCKJS_URL`] (a sockjs-client 0.3
    /// build) for 0.3.3, [`DEFAULT_SOCKJS_URL`] for the current flavour.
    pub fn flavour(mut self, flavour: Flavour) -> Self {
        self.flavour = flavour;
        if self.sockjs_url == DEFAULT_SOCKJS_URL || self.sockjs_url == LEGACY_SOCKJS_URL {
            self.sockjs_url = match flavour {
                Flavour::V0_3_3 => LEGACY_SOCKJS_URL,
                Flavour::Current => DEFAULT_SOCKJS_URL,
            }
            .to_owned();
        }
        self
    }

    /// The largest request body the service reads (an `xhr_send` or `jsonp_send`
    /// batch of messages; default [`DEFAULT_MAX_BODY_BYTES`], 1 MiB). A request whose
    /// `Content-Length` is over it is answered `413` as soon as its head has arrived,
    /// before any of the body is buffered; its messages are not delivered and the
    /// session carries on. For the service's requests it takes the place of
    /// [`Builder::max_body_bytes`](crate::Builder::max_body_bytes), so it may be larger
    /// or smaller than that.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The largest request body the service reads.
    pub fn get_max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Accepts permessage-deflate on the `websocket` transport and the raw
    /// `/websocket` endpoint (off by default; see [`DeflateOptions`]). The HTTP
    /// transports are not compressed by the server.
    pub fn deflate(mut self, options: DeflateOptions) -> Self {
        self.deflate = Some(options);
        self
    }

    /// The permessage-deflate settings of the service's WebSocket transports.
    pub fn deflate_options(&self) -> Option<&DeflateOptions> {
        self.deflate.as_ref()
    }

    /// Whether WebSocket is on.
    pub fn get_websocket(&self) -> bool {
        self.websocket
    }

    /// Whether the `JSESSIONID` cookie is set.
    pub fn get_cookie_needed(&self) -> bool {
        self.cookie_needed
    }

    /// The heartbeat delay.
    pub fn get_heartbeat_delay(&self) -> Duration {
        self.heartbeat_delay
    }

    /// The disconnect delay.
    pub fn get_disconnect_delay(&self) -> Duration {
        self.disconnect_delay
    }

    /// The streaming response limit in bytes.
    pub fn get_response_limit(&self) -> usize {
        self.response_limit
    }

    /// The sockjs-client URL of the iframe page.
    pub fn get_sockjs_url(&self) -> &str {
        &self.sockjs_url
    }

    /// The enabled transports.
    pub fn get_transports(&self) -> Transports {
        self.transports
    }

    /// The flavour.
    pub fn get_flavour(&self) -> Flavour {
        self.flavour
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sockjs_node_defaults() {
        let o = SockJsOptions::default();
        assert!(o.websocket);
        assert!(!o.cookie_needed);
        assert_eq!(o.heartbeat_delay, Duration::from_secs(25));
        assert_eq!(o.disconnect_delay, Duration::from_secs(5));
        assert_eq!(o.response_limit, 131072);
        assert_eq!(o.sockjs_url, DEFAULT_SOCKJS_URL);
        assert_eq!(o.flavour, Flavour::Current);
        assert_eq!(o.transports, Transports::ALL);
        assert_eq!(o.max_body_bytes, 1 << 20);
        assert_eq!(o.clone().max_body_bytes(10).get_max_body_bytes(), 10);
        let old = o.clone().flavour(Flavour::V0_3_3);
        assert_eq!(old.sockjs_url, LEGACY_SOCKJS_URL);
        assert_eq!(old.flavour(Flavour::Current).sockjs_url, DEFAULT_SOCKJS_URL);
        let custom = SockJsOptions::default()
            .sockjs_url("/s.js")
            .flavour(Flavour::V0_3_3);
        assert_eq!(custom.sockjs_url, "/s.js");
    }

    #[test]
    fn websocket_versions_per_flavour() {
        for f in [Flavour::V0_3_3, Flavour::Current] {
            assert!(f.accepts_websocket_version(false, Some("13")));
            assert!(f.accepts_websocket_version(false, None));
            assert!(f.accepts_websocket_version(true, Some("8")));
            assert!(!f.accepts_websocket_version(true, None));
            assert!(!f.accepts_websocket_version(false, Some("12")));
        }
        assert!(Flavour::V0_3_3.accepts_websocket_version(false, Some("7")));
        assert!(Flavour::V0_3_3.accepts_websocket_version(false, Some("8")));
        assert!(!Flavour::Current.accepts_websocket_version(false, Some("7")));
        assert!(!Flavour::Current.accepts_websocket_version(false, Some("8")));
    }
}
