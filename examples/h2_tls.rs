//! HTTPS with HTTP/2 and HTTP/1.1 on one port, and an echo WebSocket reachable over
//! both: an RFC 8441 extended CONNECT on an `h2` connection, the classic `Upgrade` on
//! an `http/1.1` one. Plain hyper (hyper-util's auto builder) behind rustls, the
//! sessions run by `ringws::adapter`.
//!
//! ```text
//! cargo run --features hyper --example h2_tls -- 127.0.0.1:3443
//! curl -k --http2 https://127.0.0.1:3443/
//! chromium --ignore-certificate-errors https://127.0.0.1:3443/
//! ```
//!
//! The certificate is self-signed and made at start (like `tls_echo`), so clients must
//! be told to accept it (`-k`, `--ignore-certificate-errors`). The page at `/` opens
//! `wss://<host>/echo` and shows the echo; a browser that loaded it over HTTP/2 sends
//! the WebSocket on that same connection (RFC 8441), which DevTools shows as a
//! CONNECT stream. `/echo` answers 426 to a request that is no WebSocket.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use ringws::adapter::{Adapter, WebSocketUpgrade};
use ringws::{Conn, Handler, Message};
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The page: which protocol it came over, and an echo through the WebSocket.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>ringws over HTTP/2</title>
<p>page loaded over <b id="proto">?</b>; WebSocket: <b id="state">connecting</b></p>
<form id="form"><input id="text" value="hello over h2" size="40"> <button>send</button></form>
<pre id="log"></pre>
<script>
const log = (line) => { document.getElementById('log').textContent += line + '\n'; };
const nav = performance.getEntriesByType('navigation')[0];
document.getElementById('proto').textContent = nav ? nav.nextHopProtocol : '?';
const ws = new WebSocket('wss://' + location.host + '/echo');
const state = document.getElementById('state');
ws.onopen = () => { state.textContent = 'open'; ws.send('first message'); };
ws.onmessage = (event) => log('echo: ' + event.data);
ws.onclose = (event) => { state.textContent = 'closed (' + event.code + ')'; };
document.getElementById('form').onsubmit = (event) => {
  event.preventDefault();
  ws.send(document.getElementById('text').value);
};
</script>
"#;

/// Echoes every message back.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }
}

/// The routes. The same `/echo` code serves both HTTP versions: `from_request` reads
/// an HTTP/1.1 `GET` + `Upgrade` or an HTTP/2 `CONNECT` with `:protocol` websocket,
/// and `on_upgrade` answers 101 or 200 accordingly.
async fn route(
    adapter: Adapter,
    mut request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match request.uri().path() {
        "/echo" => match WebSocketUpgrade::from_request(&mut request, &adapter) {
            Ok(upgrade) => upgrade.on_upgrade(|| Echo),
            Err(rejection) => rejection.into_response(),
        },
        "/" => {
            let mut response = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
            let html = HeaderValue::from_static("text/html; charset=utf-8");
            response.headers_mut().insert(header::CONTENT_TYPE, html);
            response
        }
        _ => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    })
}

/// rustls with a fresh self-signed certificate, offering `h2` before `http/1.1`:
/// browsers only speak HTTP/2 when ALPN selects it (there is no h2 upgrade over TLS).
fn tls_config() -> std::io::Result<ServerConfig> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3443".to_owned());
    // Default options: same-origin, which the page served here is.
    let adapter = Adapter::builder().threads(2).build()?;
    let acceptor = TlsAcceptor::from(Arc::new(tls_config()?));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on https://{}", listener.local_addr()?);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                // Out of descriptors and the like: this connection fails, not the server.
                Err(error) => {
                    eprintln!("accept: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => break,
        };
        let (acceptor, adapter) = (acceptor.clone(), adapter.clone());
        tokio::spawn(async move {
            // A client that never finishes its handshake must not hold a task forever.
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
            let Ok(Ok(tls)) = handshake.await else {
                return;
            };
            // The auto builder tells the versions apart by the HTTP/2 preface, which an
            // `h2` client sends at once after ALPN chose it.
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // RFC 8441 §3: without SETTINGS_ENABLE_CONNECT_PROTOCOL a client never sends
            // a WebSocket over HTTP/2 (browsers open a separate HTTP/1.1 connection).
            builder.http2().enable_connect_protocol();
            let service = service_fn(move |request| route(adapter.clone(), request));
            // `with_upgrades`: hyper hands the upgraded HTTP/1.1 connection over.
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(error) = connection.await {
                eprintln!("connection: {error}");
            }
        });
    }
    // Ctrl-C: every WebSocket gets a 1001 close and up to a second for its reply. The
    // runtime must live through that second, as hyper's tasks carry the HTTP/2 frames.
    adapter.shutdown_within(Duration::from_secs(1));
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}
