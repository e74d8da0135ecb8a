//! Routes: which path is served by which WebSocket handler or HTTP responder, and the
//! types an upgrade hook sees and returns.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::connection::FileAnswer;
use crate::deflate_options::DeflateOptions;
use crate::handler::Handler;
use crate::handshake::{OriginPolicy, Upgrade, Version};
use crate::http::Request;
use crate::sockjs::SockJsOptions;

/// A WebSocket upgrade request as the route's upgrade hook sees it: the path, query,
/// headers, origin and offered subprotocols, before anything is answered.
pub struct UpgradeRequest<'r, 'b> {
    pub(crate) request: &'r Request<'b>,
    pub(crate) upgrade: &'r Upgrade<'b>,
    /// The client's address: `tcp_peer`, or what a trusted proxy forwarded.
    pub(crate) peer: Option<SocketAddr>,
    /// The TCP connection's peer.
    pub(crate) tcp_peer: Option<SocketAddr>,
}

impl<'b> UpgradeRequest<'_, 'b> {
    /// The request path, without the query.
    pub fn path(&self) -> &'b str {
        self.request.path()
    }

    /// The query string after `?`, if any.
    pub fn query(&self) -> Option<&'b str> {
        self.request.query()
    }

    /// The first header with this name (case-insensitive), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&'b str> {
        self.request.header_str(name)
    }

    /// The origin the client claims (`Origin`, or `Sec-WebSocket-Origin` for hybi-07/08).
    /// The route's [`OriginPolicy`] (see [`WebSocketOptions::allowed_origins`]) has
    /// already accepted it when the hook runs; a hook that checks origins itself sets
    /// [`OriginPolicy::Any`]. A hixie client's origin is echoed in the 101 answer.
    pub fn origin(&self) -> Option<&'b str> {
        self.upgrade.origin()
    }

    /// The subprotocols the client offers, in its order of preference.
    pub fn protocols(&self) -> impl Iterator<Item = &'b str> + '_ {
        self.upgrade.protocols()
    }

    /// The WebSocket protocol version the client speaks (hixie-75/76 included, when the
    /// route accepts legacy drafts).
    pub fn version(&self) -> Version {
        self.upgrade.version
    }

    /// The client's address, when the backend knows it: the TCP connection's peer
    /// ([`UpgradeRequest::tcp_peer_addr`]), unless that peer is one of the
    /// [`Builder::trusted_proxies`](crate::Builder::trusted_proxies): then the address
    /// the proxy forwarded in `X-Forwarded-For` (or `Forwarded`), port 0 unless it gave
    /// one (the rule: [`TrustedProxies`](crate::http::TrustedProxies)).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The TCP connection's peer (a proxy's address, behind one), whatever the headers
    /// say.
    pub fn tcp_peer_addr(&self) -> Option<SocketAddr> {
        self.tcp_peer
    }

    /// The whole parsed request.
    pub fn request(&self) -> &Request<'b> {
        self.request
    }
}

/// An upgrade hook's yes: the handler for the connection, plus an optional subprotocol
/// and extra response headers.
///
/// ```
/// use ringws::{Accept, Conn, Handler, Message};
///
/// struct Chat;
/// impl Handler for Chat {
///     fn on_message(&mut self, _conn: &mut Conn<'_>, _message: Message<'_>) {}
/// }
///
/// let accept = Accept::new(Chat).protocol("chat.v1").header("X-Server", "ringws");
/// # let _ = accept;
/// ```
pub struct Accept {
    pub(crate) handler: Box<dyn Handler>,
    pub(crate) protocol: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
}

impl Accept {
    /// Accepts the connection with `handler`.
    pub fn new(handler: impl Handler) -> Accept {
        Accept {
            handler: Box::new(handler),
            protocol: None,
            headers: Vec::new(),
        }
    }

    /// Answers with this subprotocol (it should be one the client offered).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Accept {
        self.protocol = Some(protocol.into());
        self
    }

    /// Adds a header to the 101 response.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Accept {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// An upgrade hook's no: the HTTP status and a reason, sent as the response body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub(crate) status: u16,
    pub(crate) reason: String,
}

impl Reject {
    /// Rejects with `status` (e.g. 403) and a human-readable reason.
    pub fn new(status: u16, reason: impl Into<String>) -> Reject {
        Reject {
            status,
            reason: reason.into(),
        }
    }
}

/// A plain HTTP answer from an HTTP route.
///
/// ```
/// let page = ringws::HttpResponse::text(200, "hello\n");
/// # let _ = page;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    /// A response with a body of the given content type.
    pub fn new(
        status: u16,
        content_type: impl Into<String>,
        body: impl Into<Vec<u8>>,
    ) -> HttpResponse {
        HttpResponse {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> HttpResponse {
        HttpResponse::new(
            status,
            "text/plain; charset=utf-8",
            body.into().into_bytes(),
        )
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> HttpResponse {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Per-route WebSocket settings, for
/// [`Builder::websocket_with_options`](crate::Builder::websocket_with_options).
///
/// `legacy_drafts` (default **true**): accept the hixie-76 (hybi-00) and hixie-75
/// drafts. They carry no masking and no binary messages; a route that refuses them
/// answers such a request with `426 Upgrade Required` and
/// `Sec-WebSocket-Version: 13, 8, 7`, the reason naming the draft. The hybi-07/08
/// drafts frame as RFC 6455 and are always accepted.
///
/// `allowed_origins` (default [`OriginPolicy::SameOrigin`]): which browser origins may
/// connect (cross-site WebSocket hijacking). The policy runs before the upgrade hook:
/// a refused origin is answered `403 Forbidden` (`origin not allowed`, with
/// `Connection: close`) and never reaches user code. A request with no origin header
/// (not a browser) passes every policy. SockJS services do not use these options: they
/// answer any origin, with CORS headers.
///
/// `deflate` (off by default): permessage-deflate, see [`DeflateOptions`].
///
/// ```
/// use ringws::handshake::OriginPolicy;
/// use ringws::WebSocketOptions;
///
/// let strict = WebSocketOptions::default().legacy_drafts(false);
/// assert!(!strict.accepts_legacy_drafts());
/// assert!(WebSocketOptions::default().accepts_legacy_drafts());
///
/// assert_eq!(WebSocketOptions::default().origin_policy(), &OriginPolicy::SameOrigin);
/// let listed = WebSocketOptions::default().allowed_origins(OriginPolicy::AllowList(vec![
///     "https://example.com".into(),
///     "http://127.0.0.1:8080".into(),
/// ]));
/// assert!(listed.origin_policy().allows(Some("https://example.com"), Some("ws.example.com")));
/// let open = WebSocketOptions::default().allowed_origins(OriginPolicy::Any);
/// # let _ = open;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSocketOptions {
    legacy_drafts: bool,
    origins: OriginPolicy,
    deflate: Option<DeflateOptions>,
}

impl Default for WebSocketOptions {
    fn default() -> WebSocketOptions {
        WebSocketOptions {
            legacy_drafts: true,
            origins: OriginPolicy::SameOrigin,
            deflate: None,
        }
    }
}

impl WebSocketOptions {
    /// Accept (true, the default) or refuse (false) hixie-76 and hixie-75 clients.
    pub fn legacy_drafts(mut self, accept: bool) -> WebSocketOptions {
        self.legacy_drafts = accept;
        self
    }

    /// Whether hixie-76 and hixie-75 clients are accepted.
    pub fn accepts_legacy_drafts(&self) -> bool {
        self.legacy_drafts
    }

    /// Which origins may connect (default [`OriginPolicy::SameOrigin`]); others get
    /// `403 Forbidden` before the upgrade hook runs.
    pub fn allowed_origins(mut self, policy: OriginPolicy) -> WebSocketOptions {
        self.origins = policy;
        self
    }

    /// The origin policy of the route.
    pub fn origin_policy(&self) -> &OriginPolicy {
        &self.origins
    }

    /// Accepts permessage-deflate offers (RFC 7692) with `options` (off by default);
    /// see [`DeflateOptions`] for the modes and their memory.
    pub fn deflate(mut self, options: DeflateOptions) -> WebSocketOptions {
        self.deflate = Some(options);
        self
    }

    /// The route's permessage-deflate settings, when it accepts the extension.
    pub fn deflate_options(&self) -> Option<&DeflateOptions> {
        self.deflate.as_ref()
    }
}

/// Decides a WebSocket upgrade: runs on the shard that accepted the connection.
pub(crate) type UpgradeFn = dyn Fn(&UpgradeRequest<'_, '_>) -> Result<Accept, Reject> + Send + Sync;
/// Answers a plain HTTP request.
pub(crate) type HttpFn = dyn Fn(&Request<'_>) -> HttpResponse + Send + Sync;

/// What serves one path.
pub(crate) enum Route {
    WebSocket {
        hook: Box<UpgradeFn>,
        options: WebSocketOptions,
    },
    Http(Box<HttpFn>),
}

/// What serves every path below a prefix.
pub(crate) enum PrefixRoute {
    /// A user handler ([`Builder::http`](crate::Builder::http) with a path ending in `/`).
    Http(Box<HttpFn>),
    /// A directory ([`Builder::static_files`](crate::Builder::static_files)).
    Static(Box<dyn StaticFiles>),
}

/// A served directory as the routes see it. Answering opens and `fstat`s files, so the
/// implementation lives in the runtime (`StaticDir`, its `files.rs`); the connection
/// only asks it and streams the [`FileAnswer`]'s body.
pub(crate) trait StaticFiles: Send + Sync {
    /// Answers `request`, whose path is `rest` below the route's prefix (`None`: the
    /// prefix itself without its final `/`).
    fn serve(&self, request: &Request<'_>, rest: Option<&str>) -> FileAnswer;
    /// Sets the largest body served (a whole file or a range).
    fn set_max_file_size(&mut self, bytes: u64);
}

/// Makes the handler of one SockJS session (or raw `/websocket` connection).
pub(crate) type HandlerFactory = dyn Fn() -> Box<dyn Handler> + Send + Sync;

/// One SockJS service: its prefix, options, handler factory and precomputed iframe page.
pub(crate) struct SockJsService {
    /// Its position in [`Routes`], part of every session key.
    pub(crate) index: u32,
    pub(crate) prefix: String,
    pub(crate) options: SockJsOptions,
    pub(crate) factory: Box<HandlerFactory>,
    /// The iframe page and its ETag ([`crate::sockjs::iframe_page`]).
    pub(crate) iframe: (String, String),
}

/// The server's routes: exact paths first, then SockJS services by longest prefix,
/// then HTTP and static prefixes by longest prefix.
#[derive(Default)]
pub(crate) struct Routes {
    entries: Vec<(String, Route)>,
    sockjs: Vec<Arc<SockJsService>>,
    /// Prefixes ending in `/`.
    prefixes: Vec<(String, PrefixRoute)>,
}

impl Routes {
    /// Adds (or replaces) the route for `path`.
    pub(crate) fn insert(&mut self, path: &str, route: Route) {
        self.entries.retain(|(p, _)| p != path);
        self.entries.push((path.to_owned(), route));
    }

    /// The route for `path`, if any.
    pub(crate) fn find(&self, path: &str) -> Option<&Route> {
        self.entries
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, route)| route)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.sockjs.is_empty() && self.prefixes.is_empty()
    }

    /// Adds (or replaces) the route for every path starting with `prefix`, which ends
    /// with `/`.
    pub(crate) fn insert_prefix(&mut self, prefix: &str, route: PrefixRoute) {
        self.prefixes.retain(|(p, _)| p != prefix);
        self.prefixes.push((prefix.to_owned(), route));
    }

    /// The prefix route with the longest prefix matching `path`, and the rest of the
    /// path after the prefix. A static directory also matches its prefix without the
    /// final `/` (`/static` for `/static/`), with no rest: that path is redirected.
    pub(crate) fn find_prefix<'p>(&self, path: &'p str) -> Option<(&PrefixRoute, Option<&'p str>)> {
        self.prefixes
            .iter()
            .filter_map(|(prefix, route)| match path.strip_prefix(prefix.as_str()) {
                Some(rest) => Some((prefix.len(), route, Some(rest))),
                None => {
                    let bare = prefix.strip_suffix('/').filter(|bare| !bare.is_empty())?;
                    let redirect = path == bare && matches!(route, PrefixRoute::Static(_));
                    redirect.then_some((prefix.len(), route, None))
                }
            })
            .max_by_key(|(len, _, _)| *len)
            .map(|(_, route, rest)| (route, rest))
    }

    /// Sets the body cap of every static directory.
    pub(crate) fn set_max_static_file_size(&mut self, bytes: u64) {
        for (_, route) in &mut self.prefixes {
            if let PrefixRoute::Static(dir) = route {
                dir.set_max_file_size(bytes);
            }
        }
    }

    /// Adds (or replaces) the SockJS service under `prefix` (no trailing `/`).
    pub(crate) fn insert_sockjs(
        &mut self,
        prefix: &str,
        options: SockJsOptions,
        factory: Box<HandlerFactory>,
    ) {
        let prefix = prefix.trim_end_matches('/').to_owned();
        let iframe = crate::sockjs::iframe_page(&options);
        let service = SockJsService {
            index: 0,
            prefix,
            options,
            factory,
            iframe,
        };
        match self.sockjs.iter().position(|s| s.prefix == service.prefix) {
            Some(i) => {
                let index = self.sockjs[i].index;
                self.sockjs[i] = Arc::new(SockJsService { index, ..service });
            }
            None => {
                let index = self.sockjs.len() as u32;
                self.sockjs
                    .push(Arc::new(SockJsService { index, ..service }));
            }
        }
    }

    /// The SockJS service whose prefix is the longest one matching `path` (`path` is
    /// the prefix itself or starts with `prefix/`), and the rest of the path.
    pub(crate) fn find_sockjs<'p>(&self, path: &'p str) -> Option<(&Arc<SockJsService>, &'p str)> {
        self.sockjs
            .iter()
            .filter_map(|service| {
                let rest = path.strip_prefix(service.prefix.as_str())?;
                (rest.is_empty() || rest.starts_with('/')).then_some((service, rest))
            })
            .max_by_key(|(service, _)| service.prefix.len())
    }

    /// The SockJS service with this index.
    pub(crate) fn sockjs_service(&self, index: u32) -> Option<&Arc<SockJsService>> {
        self.sockjs.get(index as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_prefix() -> PrefixRoute {
        PrefixRoute::Http(Box::new(|_| HttpResponse::text(200, "")))
    }

    fn static_dir() -> PrefixRoute {
        /// Routing never asks a directory anything.
        struct NoFiles;
        impl StaticFiles for NoFiles {
            fn serve(&self, _: &Request<'_>, _: Option<&str>) -> FileAnswer {
                unreachable!("routing only")
            }
            fn set_max_file_size(&mut self, _: u64) {}
        }
        PrefixRoute::Static(Box::new(NoFiles))
    }

    fn rest_of<'p>(routes: &Routes, path: &'p str) -> Option<Option<&'p str>> {
        routes.find_prefix(path).map(|(_, rest)| rest)
    }

    #[test]
    fn the_longest_prefix_wins() {
        let mut routes = Routes::default();
        routes.insert_prefix("/", http_prefix());
        routes.insert_prefix("/static/", static_dir());
        routes.insert_prefix("/static/api/", http_prefix());
        let kind = |path| match routes.find_prefix(path) {
            Some((PrefixRoute::Http(_), _)) => "http",
            Some((PrefixRoute::Static(_), _)) => "static",
            None => "none",
        };
        assert_eq!(kind("/"), "http");
        assert_eq!(kind("/other"), "http");
        assert_eq!(kind("/static/a.css"), "static");
        assert_eq!(kind("/static/api/x"), "http");
        assert_eq!(kind("/static/api"), "static");
        assert_eq!(rest_of(&routes, "/static/a/b.css"), Some(Some("a/b.css")));
        assert_eq!(rest_of(&routes, "/static/api/x"), Some(Some("x")));
    }

    #[test]
    fn a_static_prefix_without_its_slash_is_a_redirect_and_http_prefixes_need_it() {
        let mut routes = Routes::default();
        routes.insert_prefix("/static/", static_dir());
        routes.insert_prefix("/api/", http_prefix());
        assert_eq!(rest_of(&routes, "/static"), Some(None));
        assert_eq!(rest_of(&routes, "/static/"), Some(Some("")));
        assert_eq!(rest_of(&routes, "/api"), None);
        assert_eq!(rest_of(&routes, "/apix"), None);
        assert_eq!(rest_of(&routes, "/staticx"), None);
        // Replacing a prefix keeps one entry.
        routes.insert_prefix("/api/", http_prefix());
        assert_eq!(routes.prefixes.len(), 2);
    }
}
