//! sockjs-client 1.6.1 (installed with npm under the target directory on first use,
//! served by the test server under `/static/`, and named as the services' `sockjs_url`
//! so the iframe transports load this copy, not a CDN) on every transport it has, each
//! echoing messages through a ringws SockJS service. The `xdr-*` transports need IE's
//! `XDomainRequest`: in Chromium sockjs-client must find them unavailable (close 2000
//! "All transports failed" with no session made) rather than the test skipping them.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ringws::sockjs::SockJsOptions;
use ringws::HttpResponse;
use serde_json::Value;

use crate::common::{builder, Echo};
use crate::{goto, js_string, run_js, runtime, with_browsers};

/// The version under test (sockjs-client refuses an iframe page of another version).
const VERSION: &str = "1.6.1";
/// Where the test server serves the script, and the services' `sockjs_url`.
const SCRIPT_URL: &str = "/static/sockjs.min.js";

/// Every transport of sockjs-client 1.6.1 (its `transport-list.js`), in its order.
const TRANSPORTS: [&str; 11] = [
    "websocket",
    "xhr-streaming",
    "xdr-streaming",
    "eventsource",
    "iframe-eventsource",
    "htmlfile",
    "iframe-htmlfile",
    "xhr-polling",
    "xdr-polling",
    "iframe-xhr-polling",
    "jsonp-polling",
];

/// The transports that need `XDomainRequest` (IE 8–9 only).
const XDR: [&str; 2] = ["xdr-streaming", "xdr-polling"];

/// The page: sockjs-client from this server.
const PAGE: &str =
    "<!doctype html><meta charset=\"utf-8\"><title>ringws sockjs-client test</title>\
<script src=\"/static/sockjs.min.js\"></script><p>sockjs-client\n";

/// The directory holding sockjs-client's `dist/` build, installed with npm under the
/// target directory on first use (as tests/common/deflate.rs installs node's `ws`).
fn sockjs_client_dist() -> Result<PathBuf, String> {
    static INSTALL: OnceLock<Mutex<Result<PathBuf, String>>> = OnceLock::new();
    let result = INSTALL.get_or_init(|| Mutex::new(install_sockjs_client()));
    result.lock().unwrap().clone()
}

fn install_sockjs_client() -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sockjs-client");
    let package = dir.join("node_modules").join("sockjs-client");
    let dist = package.join("dist");
    let installed = |package: &PathBuf| {
        std::fs::read_to_string(package.join("package.json"))
            .is_ok_and(|json| json.contains(&format!("\"version\": \"{VERSION}\"")))
    };
    if installed(&package) && dist.join("sockjs.min.js").is_file() {
        return Ok(dist);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let npm = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent"])
        .arg(format!("sockjs-client@{VERSION}"))
        .current_dir(&dir)
        .output()
        .map_err(|e| format!("npm cannot run: {e}"))?;
    if !npm.status.success() || !installed(&package) || !dist.join("sockjs.min.js").is_file() {
        return Err(format!(
            "npm install sockjs-client@{VERSION} failed ({}): {}",
            npm.status,
            String::from_utf8_lossy(&npm.stderr)
        ));
    }
    Ok(dist)
}

/// The messages each transport echoes: non-ASCII, what would end an htmlfile's
/// `<script>`, the separators JavaScript once refused, and 10 KB.
fn messages() -> Vec<String> {
    vec![
        "hello ✓ é ü 日本語 🎉".to_owned(),
        "a \"quoted\" \\ </script><!-- \u{2028} \u{2029} line".to_owned(),
        "0123456789".repeat(1000),
    ]
}

/// The page script that connects to `service` with `transport` only, echoes
/// [`messages`] and closes; returns the transport used, the messages received and the
/// close event.
fn transport_script(service: &str, transport: &str) -> String {
    let messages = serde_json::to_string(&messages()).expect("json");
    format!(
        "const transport = {transport};
const messages = {messages};
const sock = new SockJS(location.origin + {service}, null, {{ transports: [transport] }});
return await new Promise((resolve, reject) => {{
  const got = [];
  let used = null;
  const timer = setTimeout(() => reject(new Error(transport + ': not done within 20 s; readyState '
    + sock.readyState + ', received ' + got.length)), 20000);
  sock.onopen = () => {{ used = sock.transport; for (const m of messages) sock.send(m); }};
  sock.onmessage = (event) => {{ got.push(event.data); if (got.length === messages.length) sock.close(); }};
  sock.onclose = (event) => {{
    clearTimeout(timer);
    resolve({{ used, got, code: event.code, reason: event.reason }});
  }};
}});",
        transport = js_string(transport),
        service = js_string(service),
    )
}

#[test]
fn sockjs_client_on_every_transport() {
    let sessions = Arc::new(AtomicUsize::new(0));
    // sockjs-client is installed (and the server started) only where a browser is
    // there to use it.
    let server = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let setup = {
        let sessions = Arc::clone(&sessions);
        let server = Arc::clone(&server);
        move || {
            let dir = sockjs_client_dist().unwrap_or_else(|why| panic!("{why}"));
            let options = SockJsOptions::default().sockjs_url(SCRIPT_URL);
            let running = builder()
                .static_files("/static/", &dir)
                .http("/", |request| {
                    if request.path() == "/" {
                        HttpResponse::new(200, "text/html; charset=utf-8", PAGE)
                    } else {
                        HttpResponse::new(204, "", "")
                    }
                })
                .sockjs("/echo", || Echo, options.clone())
                .sockjs(
                    "/xdr",
                    move || {
                        sessions.fetch_add(1, Ordering::Relaxed);
                        Echo
                    },
                    options,
                )
                .build()
                .expect("build")
                .start()
                .expect("start");
            let addr = running.local_addr();
            *server.lock().unwrap() = Some(running);
            addr
        }
    };
    runtime().block_on(with_browsers(
        1,
        &[],
        Duration::from_secs(240),
        move |clients| async move {
            let addr = tokio::task::spawn_blocking(setup)
                .await
                .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
            eprintln!(
                "sockjs-client installed and the server started after {:?}",
                started.elapsed()
            );
            let page = &clients[0];
            goto(page, &format!("http://{addr}/")).await;
            let version = crate::eval(page, "typeof SockJS === 'function' && SockJS.version").await;
            assert_eq!(
                version, VERSION,
                "sockjs-client did not load from {SCRIPT_URL}"
            );
            // The iframe page names the local copy.
            let iframe = run_js(
                page,
                "return await (await fetch(location.origin + '/echo/iframe.html')).text();",
            )
            .await;
            let iframe = iframe.as_str().expect("the iframe page");
            assert!(
                iframe.contains(&format!("src=\"{SCRIPT_URL}\"")),
                "the iframe page does not load {SCRIPT_URL}: {iframe}"
            );
            let expected: Vec<Value> = messages().into_iter().map(Value::String).collect();
            for transport in TRANSPORTS {
                let begun = Instant::now();
                if XDR.contains(&transport) {
                    let result = run_js(page, &transport_script("/xdr", transport)).await;
                    let xdr = crate::eval(page, "typeof XDomainRequest").await;
                    assert_eq!(xdr, "undefined", "Chromium has XDomainRequest now");
                    assert_eq!(result["used"], Value::Null, "{transport} opened: {result}");
                    assert_eq!(result["code"], 2000, "{transport}: {result}");
                    assert_eq!(
                        result["reason"], "All transports failed",
                        "{transport}: {result}"
                    );
                    assert_eq!(
                        sessions.load(Ordering::Relaxed),
                        0,
                        "{transport} made a session"
                    );
                    eprintln!(
                        "{transport}: unavailable in Chromium (no XDomainRequest), as expected"
                    );
                    continue;
                }
                let result = run_js(page, &transport_script("/echo", transport)).await;
                assert_eq!(result["used"], transport, "{result}");
                assert_eq!(result["got"], Value::Array(expected.clone()), "{transport}");
                assert_eq!(result["code"], 1000, "{transport}: {result}");
                eprintln!("{transport}: echoed in {:?}", begun.elapsed());
            }
        },
    ));
    drop(server);
}
