//! Routing inside one SockJS service (the service prefix already stripped).

use super::frame::form_decode;
use super::options::SockJsOptions;

/// A session transport, the last segment of `/<server>/<session>/<transport>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// `websocket`: SockJS framing over a WebSocket (GET + upgrade).
    WebSocket,
    /// `xhr`: xhr polling (POST).
    Xhr,
    /// `xhr_send`: messages from the client for xhr, xhr_streaming, eventsource and
    /// htmlfile (POST).
    XhrSend,
    /// `xhr_streaming` (POST).
    XhrStreaming,
    /// `eventsource` (GET).
    EventSource,
    /// `htmlfile` (GET, `?c=callback`).
    HtmlFile,
    /// `jsonp`: jsonp polling (GET, `?c=callback`).
    Jsonp,
    /// `jsonp_send`: messages from the client for jsonp (POST, form or text).
    JsonpSend,
}

impl TransportKind {
    /// The transport for a path segment (`"xhr_streaming"`...).
    pub fn from_name(name: &str) -> Option<TransportKind> {
        Some(match name {
            "websocket" => TransportKind::WebSocket,
            "xhr" => TransportKind::Xhr,
            "xhr_send" => TransportKind::XhrSend,
            "xhr_streaming" => TransportKind::XhrStreaming,
            "eventsource" => TransportKind::EventSource,
            "htmlfile" => TransportKind::HtmlFile,
            "jsonp" => TransportKind::Jsonp,
            "jsonp_send" => TransportKind::JsonpSend,
            _ => return None,
        })
    }

    /// The method a request for this transport uses (`GET` or `POST`).
    pub fn method(self) -> &'static str {
        match self {
            TransportKind::WebSocket
            | TransportKind::EventSource
            | TransportKind::HtmlFile
            | TransportKind::Jsonp => "GET",
            TransportKind::Xhr
            | TransportKind::XhrSend
            | TransportKind::XhrStreaming
            | TransportKind::JsonpSend => "POST",
        }
    }

    /// The `Allow` value of a 405 for this transport: sockjs-node's methods in its
    /// dispatch order (`POST, OPTIONS` for the xhr family, else the single method).
    pub fn allow(self) -> &'static str {
        match self {
            TransportKind::Xhr | TransportKind::XhrSend | TransportKind::XhrStreaming => {
                "POST, OPTIONS"
            }
            other => other.method(),
        }
    }

    /// True for the xhr family, which answers CORS preflights (`OPTIONS`).
    pub fn has_preflight(self) -> bool {
        matches!(
            self,
            TransportKind::Xhr | TransportKind::XhrSend | TransportKind::XhrStreaming
        )
    }

    fn enabled(self, options: &SockJsOptions) -> bool {
        let t = &options.transports;
        match self {
            TransportKind::WebSocket => options.websocket,
            TransportKind::Xhr => t.xhr_polling,
            TransportKind::XhrSend => t.xhr_send(),
            TransportKind::XhrStreaming => t.xhr_streaming,
            TransportKind::EventSource => t.eventsource,
            TransportKind::HtmlFile => t.htmlfile,
            TransportKind::Jsonp | TransportKind::JsonpSend => t.jsonp,
        }
    }
}

/// What a request within a service is for, given its method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `GET /` (or the bare prefix): [`write_greeting`](super::write_greeting).
    Greeting,
    /// `GET /info`: [`write_info`](super::write_info).
    Info,
    /// `GET /iframe.html`, `/iframe-<version>.html`: [`write_iframe`](super::write_iframe).
    Iframe,
    /// `GET /websocket`: a raw WebSocket (no SockJS framing), upgrade it.
    RawWebSocket,
    /// A session request `/<server_id>/<session_id>/<transport>` with the transport's
    /// method.
    Session {
        /// The load-balancer part, ignored by the server.
        server_id: &'a str,
        /// The session key.
        session_id: &'a str,
        /// Which transport.
        transport: TransportKind,
    },
    /// An `OPTIONS` CORS preflight on `/info` or an xhr transport:
    /// [`write_preflight`](super::write_preflight) with these methods.
    Preflight {
        /// The `Access-Control-Allow-Methods` value (`OPTIONS, GET` or `OPTIONS, POST`).
        allow_methods: &'static str,
    },
    /// A known path with another method: [`write_method_not_allowed`](super::write_method_not_allowed).
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: &'static str,
    },
    /// Anything else, or a disabled transport: [`write_not_found`](super::write_not_found).
    NotFound,
}

/// Routes a request inside a service. `path` is what follows the service prefix
/// (empty or starting with `/`), without the query.
///
/// Paths follow sockjs-node's dispatch: one trailing `/` is allowed (not on the
/// greeting, which is only `""` and `/`), server and session ids are non-empty and
/// contain neither `/` nor `.`, and the iframe page is `/iframe[0-9a-z._-]*.html`.
pub fn route<'a>(method: &str, path: &'a str, options: &SockJsOptions) -> Endpoint<'a> {
    if path.is_empty() || path == "/" {
        return only("GET", method, Endpoint::Greeting, "GET");
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    match trimmed {
        "/info" => {
            return match method {
                "GET" => Endpoint::Info,
                "OPTIONS" => Endpoint::Preflight {
                    allow_methods: "OPTIONS, GET",
                },
                _ => Endpoint::MethodNotAllowed {
                    allow: "OPTIONS, GET",
                },
            };
        }
        "/websocket" => {
            if !options.websocket {
                return Endpoint::NotFound;
            }
            return only("GET", method, Endpoint::RawWebSocket, "GET");
        }
        _ => {}
    }
    if is_iframe(trimmed) {
        return only("GET", method, Endpoint::Iframe, "GET");
    }
    let Some(rest) = trimmed.strip_prefix('/') else {
        return Endpoint::NotFound;
    };
    let mut parts = rest.split('/');
    let (Some(server_id), Some(session_id), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Endpoint::NotFound;
    };
    let valid_id = |id: &str| !id.is_empty() && !id.contains('.');
    if !valid_id(server_id) || !valid_id(session_id) {
        return Endpoint::NotFound;
    }
    let Some(transport) = TransportKind::from_name(name) else {
        return Endpoint::NotFound;
    };
    if !transport.enabled(options) {
        return Endpoint::NotFound;
    }
    if method == transport.method() {
        Endpoint::Session {
            server_id,
            session_id,
            transport,
        }
    } else if method == "OPTIONS" && transport.has_preflight() {
        Endpoint::Preflight {
            allow_methods: "OPTIONS, POST",
        }
    } else {
        Endpoint::MethodNotAllowed {
            allow: transport.allow(),
        }
    }
}

fn only<'a>(
    expected: &str,
    method: &str,
    endpoint: Endpoint<'a>,
    allow: &'static str,
) -> Endpoint<'a> {
    if method == expected {
        endpoint
    } else {
        Endpoint::MethodNotAllowed { allow }
    }
}

fn is_iframe(path: &str) -> bool {
    path.strip_prefix("/iframe")
        .and_then(|p| p.strip_suffix(".html"))
        .is_some_and(|mid| {
            mid.bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'z' | b'-' | b'.' | b'_'))
        })
}

/// The first value of query parameter `name`, percent and `+` decoded (invalid UTF-8
/// is replaced with U+FFFD). `None` when the parameter is absent.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k.as_bytes()) == name.as_bytes())
            .then(|| String::from_utf8_lossy(&form_decode(v.as_bytes())).into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o() -> SockJsOptions {
        SockJsOptions::default()
    }

    #[test]
    fn greeting_and_not_found_from_the_suite() {
        assert_eq!(route("GET", "", &o()), Endpoint::Greeting);
        assert_eq!(route("GET", "/", &o()), Endpoint::Greeting);
        for p in ["/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/"] {
            assert_eq!(route("GET", p, &o()), Endpoint::NotFound, "{p}");
        }
        assert_eq!(
            route("POST", "/", &o()),
            Endpoint::MethodNotAllowed { allow: "GET" }
        );
    }

    #[test]
    fn iframe_urls_from_the_suite() {
        for p in [
            "/iframe.html",
            "/iframe-a.html",
            "/iframe-.html",
            "/iframe-0.1.2.html",
            "/iframe-0.1.2abc-dirty.2144.html",
        ] {
            assert_eq!(route("GET", p, &o()), Endpoint::Iframe, "{p}");
        }
        for p in [
            "/iframe.htm",
            "/iframe",
            "/IFRAME.HTML",
            "/IFRAME",
            "/iframe.HTML",
            "/iframe.xml",
            "/iframe-/.html",
        ] {
            assert_eq!(route("GET", p, &o()), Endpoint::NotFound, "{p}");
        }
    }

    #[test]
    fn info_and_preflights() {
        assert_eq!(route("GET", "/info", &o()), Endpoint::Info);
        assert_eq!(route("GET", "/info/", &o()), Endpoint::Info);
        assert_eq!(
            route("OPTIONS", "/info", &o()),
            Endpoint::Preflight {
                allow_methods: "OPTIONS, GET"
            }
        );
        assert_eq!(
            route("POST", "/info", &o()),
            Endpoint::MethodNotAllowed {
                allow: "OPTIONS, GET"
            }
        );
        for t in ["xhr", "xhr_send", "xhr_streaming"] {
            assert_eq!(
                route("OPTIONS", &format!("/abc/abc/{t}"), &o()),
                Endpoint::Preflight {
                    allow_methods: "OPTIONS, POST"
                }
            );
            assert_eq!(
                route("GET", &format!("/abc/abc/{t}"), &o()),
                Endpoint::MethodNotAllowed {
                    allow: "POST, OPTIONS"
                }
            );
        }
        assert_eq!(
            route("OPTIONS", "/a/b/jsonp", &o()),
            Endpoint::MethodNotAllowed { allow: "GET" }
        );
    }

    #[test]
    fn session_paths_from_the_suite() {
        for (server, session) in [
            ("a", "a1"),
            ("_", "_1"),
            ("1", "1"),
            ("abcdefgh_i-j%20", "abcdefg_i-j%201"),
        ] {
            assert_eq!(
                route("POST", &format!("/{server}/{session}/xhr"), &o()),
                Endpoint::Session {
                    server_id: server,
                    session_id: session,
                    transport: TransportKind::Xhr
                }
            );
        }
        for s in ["//", "/a./a", "/a/a.", "/./.", "/", "///"] {
            for m in ["GET", "POST"] {
                assert_eq!(
                    route(m, &format!("{s}/xhr"), &o()),
                    Endpoint::NotFound,
                    "{m} {s}"
                );
            }
        }
        assert_eq!(
            route("GET", "/0/0/eventsource/", &o()),
            Endpoint::Session {
                server_id: "0",
                session_id: "0",
                transport: TransportKind::EventSource
            }
        );
        assert_eq!(route("GET", "/0/0/nope", &o()), Endpoint::NotFound);
        assert_eq!(route("GET", "/0/0/0/xhr", &o()), Endpoint::NotFound);
    }

    #[test]
    fn websocket_routes() {
        assert_eq!(route("GET", "/websocket", &o()), Endpoint::RawWebSocket);
        assert_eq!(
            route("POST", "/0/0/websocket", &o()),
            Endpoint::MethodNotAllowed { allow: "GET" }
        );
        let off = o().websocket(false);
        assert_eq!(route("GET", "/websocket", &off), Endpoint::NotFound);
        assert_eq!(route("GET", "/0/0/websocket", &off), Endpoint::NotFound);
    }

    #[test]
    fn disabled_transports() {
        let t = super::super::Transports {
            jsonp: false,
            xhr_polling: false,
            ..Default::default()
        };
        let opts = o().transports(t);
        assert_eq!(route("GET", "/0/0/jsonp", &opts), Endpoint::NotFound);
        assert_eq!(route("POST", "/0/0/jsonp_send", &opts), Endpoint::NotFound);
        assert_eq!(route("POST", "/0/0/xhr", &opts), Endpoint::NotFound);
        assert!(matches!(
            route("POST", "/0/0/xhr_send", &opts),
            Endpoint::Session { .. }
        ));
    }

    #[test]
    fn query_params() {
        assert_eq!(
            query_param(Some("c=%63allback"), "c").as_deref(),
            Some("callback")
        );
        assert_eq!(query_param(Some("callback=x"), "c"), None);
        assert_eq!(query_param(Some("c"), "c").as_deref(), Some(""));
        assert_eq!(query_param(Some("c=a+b&c=d"), "c").as_deref(), Some("a b"));
    }
}
