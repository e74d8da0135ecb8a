//! Native WebSocket from the page's JavaScript against in-process ringws servers: echo
//! of text and of ArrayBuffers from 0 B to 1 MiB (every length class of the frame
//! header), closes both ways, permessage-deflate agreed with the browser, and wss.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringws::{
    Accept, Builder, CloseInitiator, Conn, DeflateOptions, Handler, HttpResponse, Message,
    RunningServer, WebSocketOptions,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{builder, Echo};
use crate::{goto, js_string, run_js, runtime, with_browsers, BLANK_PAGE};

/// `/` answers [`BLANK_PAGE`], anything else not routed an empty 204 (the favicon).
pub fn with_page(builder: Builder) -> Builder {
    builder.http("/", |request| {
        if request.path() == "/" {
            HttpResponse::new(200, "text/html; charset=utf-8", BLANK_PAGE)
        } else {
            HttpResponse::new(204, "", "")
        }
    })
}

fn start(builder: Builder) -> RunningServer {
    let server = builder.build().expect("build");
    eprintln!("backend: {:?}", server.backend());
    server.start().expect("start")
}

/// JavaScript for the page scripts: `open(url)` resolves to an open WebSocket (binary
/// as ArrayBuffer) with `ws.next()` (the next message), `ws.closed` (the close event as
/// `{code, reason, clean}`); `pattern(size, seed)` makes deterministic bytes and
/// `compare(got, want)` returns -1 when equal, else where they differ (-2: not an
/// ArrayBuffer, -3: another length).
pub const PRELUDE: &str = r#"
const open = (url) => new Promise((resolve, reject) => {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const inbox = [];
  let waiting = null;
  ws.onmessage = (event) => {
    if (waiting) { const w = waiting; waiting = null; w(event.data); } else inbox.push(event.data);
  };
  ws.next = () => inbox.length ? Promise.resolve(inbox.shift())
    : new Promise((r, j) => { waiting = r; setTimeout(() => j(new Error('no message within 30 s')), 30000); });
  ws.closed = new Promise((r) => ws.addEventListener('close',
    (e) => r({ code: e.code, reason: e.reason, clean: e.wasClean })));
  ws.onopen = () => resolve(ws);
  ws.onerror = () => reject(new Error('WebSocket error on ' + url));
});
const pattern = (size, seed) => {
  const data = new Uint8Array(size);
  let x = (seed * 2654435761 + size) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    data[i] = x & 255;
  }
  return data;
};
const compare = (got, want) => {
  if (!(got instanceof ArrayBuffer)) return -2;
  const g = new Uint8Array(got);
  if (g.length !== want.length) return -3;
  for (let i = 0; i < g.length; i++) if (g[i] !== want[i]) return i;
  return -1;
};
"#;

/// Text with one-, two-, three- and four-byte UTF-8 (and a JavaScript surrogate pair).
const TEXT: &str = "hello ✓ é ü ß 日本語 🎉 \"quoted\" \\ </script>";
/// The ArrayBuffer sizes echoed: empty, tiny, each side of the 7-bit/16-bit/64-bit
/// length boundaries, and 1 MiB.
const SIZES: [u64; 7] = [0, 1, 125, 126, 65535, 65536, 1 << 20];
/// The reason the page closes with.
const PAGE_REASON: &str = "bye from the page ✓";
/// The close the server sends on `close-me`.
const SERVER_CODE: u16 = 4001;
const SERVER_REASON: &str = "server says bye ✓";

/// What [`Recorder`] saw.
#[derive(Default)]
struct Seen {
    texts: Vec<String>,
    closes: Vec<(u16, String, CloseInitiator)>,
}

/// Echoes, records texts and closes; `close-me` makes it close with 4001.
struct Recorder(Arc<Mutex<Seen>>);

impl Handler for Recorder {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text("close-me") => conn.close(SERVER_CODE, SERVER_REASON),
            Message::Text(text) => {
                self.0.lock().unwrap().texts.push(text.to_owned());
                conn.send_text(text);
            }
            Message::Binary(bytes) => {
                conn.send_binary(bytes);
            }
        }
    }

    fn on_close(&mut self, _conn: &mut Conn<'_>, reason: ringws::CloseReason) {
        let mut seen = self.0.lock().unwrap();
        seen.closes
            .push((reason.code.0, reason.reason, reason.initiator));
    }
}

/// The page's echo script for `url`: the text, every size, then `close(4000, ..)`.
pub fn echo_script(url: &str) -> String {
    format!(
        "{PRELUDE}
const ws = await open({url});
ws.send({text});
const text = await ws.next();
const binary = [];
for (const size of {sizes:?}) {{
  const data = pattern(size, 7);
  ws.send(data.buffer);
  const got = await ws.next();
  binary.push({{ size, length: got.byteLength, mismatch: compare(got, data) }});
}}
ws.close(4000, {reason});
const closed = await ws.closed;
return {{ text, binary, closed, protocol: ws.protocol, extensions: ws.extensions }};",
        url = js_string(url),
        text = js_string(TEXT),
        sizes = SIZES,
        reason = js_string(PAGE_REASON),
    )
}

/// Checks what [`echo_script`] returned.
#[track_caller]
pub fn check_echo(result: &Value) {
    assert_eq!(result["text"], TEXT, "the text echo: {result}");
    let binary = result["binary"].as_array().expect("binary results");
    assert_eq!(binary.len(), SIZES.len(), "{result}");
    for (entry, size) in binary.iter().zip(SIZES) {
        assert_eq!(entry["size"], size, "{entry}");
        assert_eq!(entry["length"], size, "echo of {size} B: {entry}");
        assert_eq!(entry["mismatch"], -1, "echo of {size} B differs: {entry}");
    }
    // The server answered the page's close with the same code.
    let closed = &result["closed"];
    assert_eq!(closed["code"], 4000, "{closed}");
    assert_eq!(closed["clean"], true, "{closed}");
}

/// Waits up to 10 s for the recorder to see a close.
async fn first_close(seen: &Arc<Mutex<Seen>>) -> (u16, String, CloseInitiator) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(close) = seen.lock().unwrap().closes.first().cloned() {
            return close;
        }
        assert!(
            Instant::now() < deadline,
            "the handler saw no close within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn websocket_echo_and_closes() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = start(with_page(builder()).websocket("/echo", {
        let seen = Arc::clone(&seen);
        move || Recorder(Arc::clone(&seen))
    }));
    let addr = server.local_addr();
    runtime().block_on(with_browsers(
        1,
        &[],
        Duration::from_secs(90),
        move |clients| async move {
            let page = &clients[0];
            goto(page, &format!("http://{addr}/")).await;
            let started = Instant::now();
            let result = run_js(page, &echo_script(&format!("ws://{addr}/echo"))).await;
            check_echo(&result);
            eprintln!("echo of text and {SIZES:?} B in {:?}", started.elapsed());
            // The handler got the text's exact bytes, and the page's close code and reason.
            assert_eq!(seen.lock().unwrap().texts, [TEXT]);
            let (code, reason, initiator) = first_close(&seen).await;
            assert_eq!((code, reason.as_str()), (4000, PAGE_REASON));
            assert_eq!(initiator, CloseInitiator::Peer);

            // A close from the server reaches the page with its code and reason.
            let script = format!(
                "{PRELUDE}
const ws = await open({url});
ws.send('close-me');
return await ws.closed;",
                url = js_string(&format!("ws://{addr}/echo"))
            );
            let closed = run_js(page, &script).await;
            assert_eq!(closed["code"], SERVER_CODE, "{closed}");
            assert_eq!(closed["reason"], SERVER_REASON, "{closed}");
            assert_eq!(closed["clean"], true, "{closed}");
        },
    ));
    drop(server);
}

/// One proxied TCP connection: the first bytes each way and the byte counts.
#[derive(Default, Clone, Debug)]
struct Proxied {
    /// Browser to server: the first 4 KiB, and the total.
    up_head: Vec<u8>,
    up: u64,
    /// Server to browser.
    down_head: Vec<u8>,
    down: u64,
}

/// A TCP proxy in front of `upstream` that records every connection's first bytes and
/// counts what crosses it, so the test sees the wire without a packet capture.
async fn counting_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<Proxied>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let addr = listener.local_addr().expect("proxy address");
    let connections = Arc::new(Mutex::new(Vec::<Proxied>::new()));
    let all = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((browser, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let index = {
                let mut all = all.lock().unwrap();
                all.push(Proxied::default());
                all.len() - 1
            };
            let (browser_read, browser_write) = browser.into_split();
            let (server_read, server_write) = server.into_split();
            for (mut from, mut to, up) in [
                (browser_read, server_write, true),
                (server_read, browser_write, false),
            ] {
                let all = Arc::clone(&all);
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        let n = match from.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        {
                            let mut all = all.lock().unwrap();
                            let record = &mut all[index];
                            let (head, count) = if up {
                                (&mut record.up_head, &mut record.up)
                            } else {
                                (&mut record.down_head, &mut record.down)
                            };
                            let room = 4096usize.saturating_sub(head.len()).min(n);
                            head.extend_from_slice(&buffer[..room]);
                            *count += n as u64;
                        }
                        if to.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown().await;
                });
            }
        }
    });
    (addr, connections)
}

/// The value of header `name` in an HTTP head (case-insensitive), if any.
fn header_value(head: &[u8], name: &str) -> Option<String> {
    let head = String::from_utf8_lossy(head);
    let head = head.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    head.split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim().to_owned())
}

#[test]
fn permessage_deflate_with_the_browser() {
    let offers = Arc::new(Mutex::new(Vec::<Option<String>>::new()));
    let record = {
        let offers = Arc::clone(&offers);
        move |request: &ringws::UpgradeRequest<'_, '_>| {
            let offer = request
                .header("Sec-WebSocket-Extensions")
                .map(str::to_owned);
            offers.lock().unwrap().push(offer);
            Ok(Accept::new(Echo))
        }
    };
    let deflate = WebSocketOptions::default().deflate(DeflateOptions::context_takeover());
    let server = start(
        with_page(builder())
            .websocket_with_options("/deflate", deflate, record)
            .websocket("/plain", || Echo),
    );
    let upstream = server.local_addr();
    let done = runtime().block_on(async move {
        let (proxy, wire) = counting_proxy(upstream).await;
        let checked = Arc::clone(&wire);
        let ran = with_browsers(1, &[], Duration::from_secs(90), move |clients| async move {
            let page = &clients[0];
            goto(page, &format!("http://{proxy}/")).await;
            // A megabyte of text that compresses well (and is not one repeated byte), and
            // 512 KiB of bytes with a short period.
            let script = format!(
                "{PRELUDE}
const ws = await open('ws://' + location.host + '/deflate');
const words = ['deflate ', 'window ', 'browser ', 'chromium ', 'ringws ', 'frame ', 'ü✓ '];
let text = '';
for (let i = 0; text.length < (1 << 20); i++) text += words[(i * 7 + (i >> 3)) % words.length] + (i % 100);
const bytes = new Uint8Array(512 * 1024).map((_, i) => (i % 251) ^ ((i >> 12) & 7));
ws.send(text);
const textEcho = await ws.next();
ws.send(bytes.buffer);
const bytesEcho = await ws.next();
const extensions = ws.extensions;
ws.close(1000);
await ws.closed;
const plain = await open('ws://' + location.host + '/plain');
plain.send('x');
const plainEcho = await plain.next();
const plainExtensions = plain.extensions;
plain.close(1000);
await plain.closed;
return {{ extensions, plainExtensions, plainEcho,
  textBytes: new TextEncoder().encode(text).length, textSame: textEcho === text,
  binaryBytes: bytes.length, binaryMismatch: compare(bytesEcho, bytes) }};"
            );
            let result = run_js(page, &script).await;
            eprintln!("deflate page: {result}");
            let extensions = result["extensions"].as_str().expect("extensions").to_owned();
            assert!(
                extensions.starts_with("permessage-deflate"),
                "not agreed: {result}"
            );
            assert_eq!(result["textSame"], true, "{result}");
            assert_eq!(result["binaryMismatch"], -1, "{result}");
            assert_eq!(result["plainExtensions"], "", "{result}");
            assert_eq!(result["plainEcho"], "x", "{result}");

            // On the wire: the server's 101 agreed what the page says, and both
            // directions carried far fewer bytes than the messages.
            let connections = checked.lock().unwrap().clone();
            let ws = connections
                .iter()
                .find(|c| c.up_head.starts_with(b"GET /deflate "))
                .expect("the /deflate connection went through the proxy");
            assert!(ws.down_head.starts_with(b"HTTP/1.1 101 "), "{:?}", String::from_utf8_lossy(&ws.down_head));
            assert_eq!(
                header_value(&ws.down_head, "Sec-WebSocket-Extensions").as_deref(),
                Some(extensions.as_str())
            );
            let plain_bytes = result["textBytes"].as_u64().unwrap() + result["binaryBytes"].as_u64().unwrap();
            eprintln!(
                "deflate: {plain_bytes} B of messages each way; on the wire {} B up, {} B down",
                ws.up, ws.down
            );
            assert!(ws.up < plain_bytes / 4, "browser to server: {} B for {plain_bytes}", ws.up);
            assert!(ws.down < plain_bytes / 4, "server to browser: {} B for {plain_bytes}", ws.down);
            let plain = connections
                .iter()
                .find(|c| c.up_head.starts_with(b"GET /plain "))
                .expect("the /plain connection went through the proxy");
            assert_eq!(header_value(&plain.down_head, "Sec-WebSocket-Extensions"), None);
        })
        .await;
        drop(wire);
        ran
    });
    if done {
        // What Chromium offered, as the route's hook saw it.
        let offers = offers.lock().unwrap();
        assert_eq!(offers.len(), 1, "{offers:?}");
        let offer = offers[0].as_deref().unwrap_or_default();
        assert!(
            offer.contains("permessage-deflate"),
            "the browser offered {offer:?}"
        );
        eprintln!("Chromium offered: {offer}");
    }
    drop(server);
}

#[test]
fn wss_with_a_self_signed_certificate() {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).expect("rcgen");
    let server = start(
        with_page(builder())
            .tls(certified.cert.pem(), certified.key_pair.serialize_pem())
            .websocket("/echo", || Echo),
    );
    let addr = server.local_addr();
    let args = ["--ignore-certificate-errors".to_owned()];
    runtime().block_on(with_browsers(
        1,
        &args,
        Duration::from_secs(90),
        move |clients| async move {
            let page = &clients[0];
            goto(page, &format!("https://{addr}/")).await;
            let nav = crate::eval(
            page,
            "[location.protocol, performance.getEntriesByType('navigation')[0].nextHopProtocol]",
        )
        .await;
            assert_eq!(nav, serde_json::json!(["https:", "http/1.1"]));
            let result = run_js(page, &echo_script(&format!("wss://{addr}/echo"))).await;
            check_echo(&result);
        },
    ));
    drop(server);
}
