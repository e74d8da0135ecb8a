//! A WebSocket upgrade on a hyper request: the checks ringws's own handshake makes
//! (through the same sans-I/O functions), the answer (101 over HTTP/1.1, 200 over
//! HTTP/2), and taking the upgraded stream once hyper has written it.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode, Uri, Version};
use http_body_util::Full;

use super::{Adapter, HandlerFactory};
use crate::deflate_options::DeflateOptions;
use crate::handler::Handler;
use crate::handshake::{self, AcceptKey, DeflateAgreement};
use crate::http::{HttpError, Request};
use crate::route::WebSocketOptions;

/// 426: a hixie draft asked the adapter, which speaks RFC 6455 and hybi-07/08 only.
const ERR_LEGACY: HttpError = HttpError::new(
    426,
    "legacy WebSocket drafts are served by ringws's own listener only",
);
/// 500: `on_upgrade` was called outside a tokio runtime.
const ERR_NO_RUNTIME: HttpError =
    HttpError::new(500, "the WebSocket upgrade needs a tokio runtime");
/// 426: a plain request on a WebSocket route (the shards' front answers the same).
const ERR_WEBSOCKET_ONLY: HttpError =
    HttpError::new(426, "this path serves WebSocket connections only");
/// 400: the request's connection cannot be upgraded (hyper gave no upgrade handle).
const ERR_NOT_UPGRADABLE: HttpError = HttpError::new(400, "this connection cannot be upgraded");

/// A WebSocket upgrade request checked on a hyper (or axum) request, not answered yet.
///
/// Made by [`WebSocketUpgrade::from_request`] (or extracted by axum, feature `axum`),
/// which refuses what ringws's own handshake refuses with the same status and reason.
/// [`WebSocketUpgrade::on_upgrade`] then answers: 101 Switching Protocols over
/// HTTP/1.1, 200 over HTTP/2 (an RFC 8441 extended CONNECT), with the chosen
/// subprotocol and permessage-deflate agreement, and runs the [`Handler`] the factory
/// makes on one of the adapter's threads (or on a shard of the server it hands off to).
///
/// ```no_run
/// # struct Echo;
/// # impl ringws::Handler for Echo {
/// #     fn on_message(&mut self, conn: &mut ringws::Conn<'_>, m: ringws::Message<'_>) {}
/// # }
/// use ringws::adapter::{Adapter, WebSocketUpgrade};
///
/// async fn serve(
///     adapter: Adapter,
///     mut request: http::Request<hyper::body::Incoming>,
/// ) -> http::Response<http_body_util::Full<bytes::Bytes>> {
///     match WebSocketUpgrade::from_request(&mut request, &adapter) {
///         Ok(upgrade) => upgrade.protocols(["chat"]).on_upgrade(|| Echo),
///         Err(rejection) => rejection.into_response(),
///     }
/// }
/// ```
pub struct WebSocketUpgrade {
    adapter: Adapter,
    head: Head,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    options: WebSocketOptions,
    /// The subprotocols the route speaks, best first.
    supported: Vec<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("version", &self.head.version)
            .field("uri", &self.head.uri)
            .finish_non_exhaustive()
    }
}

/// What the checks read of the request.
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    /// HTTP/2's `:protocol` (hyper's `ext::Protocol`).
    protocol: Option<String>,
}

/// A request refused before the upgrade: answered with its status and reason, like
/// ringws's own listener answers it (`Sec-WebSocket-Version: 13` on a 426).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeRejection {
    status: u16,
    reason: String,
}

impl UpgradeRejection {
    fn from_error(error: &HttpError) -> UpgradeRejection {
        UpgradeRejection {
            status: error.status,
            reason: error.reason.to_owned(),
        }
    }

    /// The HTTP status the request is answered with (400, 403, 426...).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Why, as the answer's body says it.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The answer: the status, the reason as plain text, `Connection: close` over
    /// HTTP/1.1 and `Sec-WebSocket-Version: 13` on a 426.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(format!("{}\n", self.reason))));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.status == 426 {
            headers.insert(
                http::header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        response
    }
}

impl std::fmt::Display for UpgradeRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for UpgradeRejection {}

/// What the checks found: how to answer and how to frame.
struct Checked {
    /// `Sec-WebSocket-Accept` (HTTP/1.1 only).
    accept: Option<AcceptKey>,
    /// The subprotocols the client offered, in order.
    offered: Vec<String>,
    deflate: Option<(DeflateAgreement, DeflateOptions)>,
}

impl Head {
    /// Runs ringws's handshake checks on the request: the same functions, errors and
    /// order as the shards' front (validation, legacy drafts, origin, then
    /// permessage-deflate).
    fn check(&self, options: &WebSocketOptions) -> Result<Checked, HttpError> {
        let authority = self.uri.authority().map(|authority| authority.as_str());
        let mut headers: Vec<httparse::Header<'_>> = self
            .headers
            .iter()
            .map(|(name, value)| httparse::Header {
                name: name.as_str(),
                value: value.as_bytes(),
            })
            .collect();
        // HTTP/2 has `:authority` where HTTP/1.1 has `Host` (RFC 9113 §8.3.1).
        if !self.headers.contains_key(http::header::HOST) {
            if let Some(authority) = authority {
                headers.push(httparse::Header {
                    name: "Host",
                    value: authority.as_bytes(),
                });
            }
        }
        let target = self.uri.path_and_query().map_or("/", |path| path.as_str());
        let minor = match self.version {
            Version::HTTP_10 | Version::HTTP_09 => 0,
            _ => 1,
        };
        let request = Request::from_parts(self.method.as_str(), target, minor, &headers);
        let plain = if self.version == Version::HTTP_2 {
            self.method != Method::CONNECT
        } else {
            !handshake::is_websocket_request(&request)
        };
        if plain {
            return Err(ERR_WEBSOCKET_ONLY);
        }
        let upgrade = if self.version == Version::HTTP_2 {
            handshake::validate_extended_connect(&request, self.protocol.as_deref())?
        } else {
            handshake::validate_upgrade(&request)?
        };
        if upgrade.version.is_hixie() {
            return Err(ERR_LEGACY);
        }
        handshake::check_origin(options.origin_policy(), &request, &upgrade)?;
        let deflate = options.deflate_options().and_then(|deflate| {
            handshake::negotiate_request(&request, deflate.negotiation())
                .map(|agreement| (agreement, *deflate))
        });
        Ok(Checked {
            accept: (!upgrade.key.is_empty()).then(|| AcceptKey::new(upgrade.key.as_bytes())),
            offered: upgrade.protocols().map(str::to_owned).collect(),
            deflate,
        })
    }
}

impl WebSocketUpgrade {
    /// Checks `request` as a WebSocket upgrade for `adapter`: an HTTP/1.1 `GET` with
    /// `Upgrade: websocket`, `Connection: upgrade`, a key and version 13 (or 8, 7),
    /// or an HTTP/2 extended `CONNECT` with `:protocol` `websocket` and version 13;
    /// the rest (origin, extensions) is checked by
    /// [`on_upgrade`](WebSocketUpgrade::on_upgrade) with the route's options. Takes the
    /// request's upgrade handle: answer it with `on_upgrade`'s response.
    pub fn from_request<B>(
        request: &mut http::Request<B>,
        adapter: &Adapter,
    ) -> Result<WebSocketUpgrade, UpgradeRejection> {
        let on_upgrade = request
            .extensions_mut()
            .remove::<hyper::upgrade::OnUpgrade>();
        let protocol = request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .map(|protocol| protocol.as_str().to_owned());
        let head = Head {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
            protocol,
        };
        WebSocketUpgrade::new(adapter, head, on_upgrade)
    }

    /// [`from_request`](WebSocketUpgrade::from_request) on a request's head (what
    /// axum's extractors get).
    pub fn from_parts(
        parts: &mut http::request::Parts,
        adapter: &Adapter,
    ) -> Result<WebSocketUpgrade, UpgradeRejection> {
        let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
        let protocol = parts
            .extensions
            .get::<hyper::ext::Protocol>()
            .map(|protocol| protocol.as_str().to_owned());
        let head = Head {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            protocol,
        };
        WebSocketUpgrade::new(adapter, head, on_upgrade)
    }

    fn new(
        adapter: &Adapter,
        head: Head,
        on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Result<WebSocketUpgrade, UpgradeRejection> {
        // The request's form (not yet the route's policies, which the options set).
        let any_origin = WebSocketOptions::default().allowed_origins(handshake::OriginPolicy::Any);
        head.check(&any_origin)
            .map_err(|error| UpgradeRejection::from_error(&error))?;
        Ok(WebSocketUpgrade {
            adapter: adapter.clone(),
            head,
            on_upgrade,
            options: adapter.inner.options.clone(),
            supported: Vec::new(),
            headers: Vec::new(),
        })
    }

    /// The route's options (origin policy, permessage-deflate), in place of the
    /// adapter's ([`AdapterBuilder::websocket_options`](super::AdapterBuilder::websocket_options)).
    pub fn options(mut self, options: WebSocketOptions) -> WebSocketUpgrade {
        self.options = options;
        self
    }

    /// The subprotocols the route speaks, best first: the answer names the first the
    /// client offered too (none when there is no common one, as RFC 6455 allows).
    pub fn protocols<I, P>(mut self, protocols: I) -> WebSocketUpgrade
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.supported = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The subprotocols the client offered, in its order.
    pub fn offered_protocols(&self) -> Vec<&str> {
        self.head
            .headers
            .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .take(1)
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(',').map(str::trim).filter(|p| !p.is_empty()))
            .collect()
    }

    /// An extra header on the answer (a cookie, say).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> WebSocketUpgrade {
        self.headers.push((name, value));
        self
    }

    /// Answers the upgrade and, once hyper has switched the connection, runs the
    /// handler `factory` makes on the thread that owns the session (an adapter thread,
    /// or a shard of the server it hands plain TCP upgrades to). Returns the answer
    /// for the service to return: 101 (HTTP/1.1) or 200 (HTTP/2), or a refusal (403
    /// for a refused origin). Call it inside a tokio runtime (hyper's service is).
    pub fn on_upgrade<H, F>(self, factory: F) -> Response<Full<Bytes>>
    where
        H: Handler,
        F: FnOnce() -> H + Send + 'static,
    {
        let checked = match self.head.check(&self.options) {
            Ok(checked) => checked,
            Err(error) => return UpgradeRejection::from_error(&error).into_response(),
        };
        let Some(on_upgrade) = self.on_upgrade else {
            return UpgradeRejection::from_error(&ERR_NOT_UPGRADABLE).into_response();
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return UpgradeRejection::from_error(&ERR_NO_RUNTIME).into_response();
        };
        let protocol = self
            .supported
            .iter()
            .find(|supported| checked.offered.iter().any(|offered| offered == *supported))
            .cloned();
        let mut response = Response::new(Full::new(Bytes::new()));
        // RFC 8441 §5: a 2xx answers the extended CONNECT.
        *response.status_mut() = match checked.accept {
            Some(_) => StatusCode::SWITCHING_PROTOCOLS,
            None => StatusCode::OK,
        };
        let headers = response.headers_mut();
        if let Some(accept) = checked.accept {
            headers.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(
                http::header::CONNECTION,
                HeaderValue::from_static("Upgrade"),
            );
            if let Ok(value) = HeaderValue::from_str(accept.as_str()) {
                headers.insert(http::header::SEC_WEBSOCKET_ACCEPT, value);
            }
        }
        if let Some(value) = protocol
            .as_deref()
            .and_then(|protocol| HeaderValue::from_str(protocol).ok())
        {
            headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
        }
        if let Some(value) = checked
            .deflate
            .as_ref()
            .and_then(|(agreement, _)| HeaderValue::from_str(&agreement.response_value()).ok())
        {
            headers.insert(http::header::SEC_WEBSOCKET_EXTENSIONS, value);
        }
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        let factory: HandlerFactory = Box::new(move || Box::new(factory()));
        let adapter = Arc::clone(&self.adapter.inner);
        let http2 = self.head.version == Version::HTTP_2;
        let deflate = checked.deflate;
        runtime.spawn(async move {
            // Resolves once hyper has written the answer; fails when the client left.
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            adapter.open(upgraded, http2, factory, deflate);
        });
        response
    }
}
