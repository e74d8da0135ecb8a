//! RFC 8441 in a browser: `examples/h2_tls.rs` (hyper over rustls, ALPN `h2` and
//! `http/1.1`, the ringws adapter on `/echo`) runs as a child process; Chromium, told to
//! accept its self-signed certificate, loads the page over HTTP/2 (the navigation's
//! `nextHopProtocol`) and echoes through `wss://…/echo`. Chromium's net log then shows
//! that WebSocket as an extended CONNECT (`:protocol: websocket`) on an HTTP/2 session.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::websocket::echo_script;
use crate::{goto, run_js, runtime, with_browsers, work_dir};

/// How long building the example may take (it may compile the crate with its features).
const BUILD_LIMIT: Duration = Duration::from_secs(420);

/// Builds `examples/h2_tls.rs` with cargo (the one running these tests) and returns its
/// executable.
fn build_example() -> PathBuf {
    let cargo = std::env::var("CARGO")
        .ok()
        .or_else(|| option_env!("CARGO").map(str::to_owned))
        .unwrap_or_else(|| "cargo".to_owned());
    // The features and profile this test binary was built with, so that cargo reuses
    // the library it built already (a different set would compile the crate again).
    let features: Vec<&str> = [
        ("cli", cfg!(feature = "cli")),
        ("redis", cfg!(feature = "redis")),
        ("fuzzing", cfg!(feature = "fuzzing")),
        ("test-hooks", cfg!(feature = "test-hooks")),
        ("hyper", true),
        ("axum", cfg!(feature = "axum")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let mut command = Command::new(&cargo);
    command
        .args([
            "build",
            "--example",
            "h2_tls",
            "--no-default-features",
            "--features",
        ])
        .arg(features.join(","))
        .arg("--message-format=json-render-diagnostics");
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let mut child = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cargo} cannot run: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut executable = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if message["reason"] == "compiler-artifact" && message["target"]["name"] == "h2_tls" {
                if let Some(path) = message["executable"].as_str() {
                    executable = Some(PathBuf::from(path));
                }
            }
        }
        executable
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let deadline = Instant::now() + BUILD_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for cargo") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cargo build --example h2_tls took over {BUILD_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let executable = reader.join().expect("reader");
    let errors = errors.join().expect("reader");
    assert!(
        status.success(),
        "cargo build --example h2_tls failed ({status}):\n{errors}"
    );
    executable.unwrap_or_else(|| panic!("cargo named no h2_tls executable:\n{errors}"))
}

/// The example process, killed when dropped.
struct Example(Child);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the example on an ephemeral port; its address from the line it prints
/// (`listening on https://ADDR`), within 20 s.
fn start_example(executable: &Path) -> (Example, SocketAddr) {
    let mut child = Command::new(executable)
        .arg("127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the h2_tls example");
    let (lines_tx, lines) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let lines_tx = lines_tx.clone();
        // Keeps the pipes drained for the life of the child.
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
    }
    let example = Example(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            panic!("the h2_tls example printed no https address within 20 s:\n{log}");
        };
        if let Some(rest) = line.split("https://").nth(1) {
            let addr = rest
                .trim_end_matches('/')
                .split(['/', ' '])
                .next()
                .unwrap_or("");
            if let Ok(addr) = addr.parse() {
                return (example, addr);
            }
        }
        log.push_str(&line);
        log.push('\n');
    }
}

#[test]
fn websocket_over_http2_in_the_browser() {
    if crate::driver().is_none() {
        return;
    }
    let executable = build_example();
    let (example, addr) = start_example(&executable);
    let net_log = work_dir().join(format!("h2-netlog-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&net_log);
    let args = [
        "--ignore-certificate-errors".to_owned(),
        format!("--log-net-log={}", net_log.display()),
        "--net-log-capture-mode=Everything".to_owned(),
    ];
    runtime().block_on(with_browsers(
        1,
        &args,
        Duration::from_secs(90),
        move |clients| async move {
            let page = &clients[0];
            goto(page, &format!("https://{addr}/")).await;
            let protocol = crate::eval(
                page,
                "performance.getEntriesByType('navigation')[0].nextHopProtocol",
            )
            .await;
            assert_eq!(protocol, "h2", "the page did not come over HTTP/2");
            let url = format!("wss://{addr}{ECHO_PATH}?{MARK}");
            let result = run_js(page, &echo_script(&url)).await;
            crate::websocket::check_echo(&result);
        },
    ));
    drop(example);
    // The browser has exited (its session closed), so the net log is complete JSON.
    let text = std::fs::read_to_string(&net_log)
        .unwrap_or_else(|e| panic!("no net log at {}: {e}", net_log.display()));
    let log: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the net log {} is not JSON: {e}", net_log.display()));
    check_net_log(&log, &format!("{ECHO_PATH}?{MARK}"));
    eprintln!(
        "the WebSocket to {ECHO_PATH}?{MARK} was an RFC 8441 extended CONNECT on an HTTP/2 session"
    );
    let _ = std::fs::remove_file(&net_log);
}

/// The example's WebSocket route.
const ECHO_PATH: &str = "/echo";
/// A query that tells this test's WebSocket from the example page's own in the net log.
const MARK: &str = "browser-test";

/// Asserts that Chromium's net log `log` shows `path` requested as an extended CONNECT
/// (`:method: CONNECT`, `:protocol: websocket`) on an HTTP/2 session and answered 200 on
/// that stream, and never as an HTTP/1.1 request.
#[track_caller]
fn check_net_log(log: &Value, path: &str) {
    let types = log["constants"]["logEventTypes"]
        .as_object()
        .expect("the net log's event types");
    let type_id = |name: &str| types.get(name).and_then(Value::as_u64).unwrap_or(u64::MAX);
    let (send, receive) = (
        type_id("HTTP2_SESSION_SEND_HEADERS"),
        type_id("HTTP2_SESSION_RECV_HEADERS"),
    );
    let events = log["events"].as_array().expect("the net log's events");
    let headers = |event: &Value| -> Vec<String> {
        event["params"]["headers"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|h| h.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let connect = events
        .iter()
        .find(|event| {
            let headers = headers(event);
            event["type"].as_u64() == Some(send)
                && headers.iter().any(|h| h == ":method: CONNECT")
                && headers.iter().any(|h| h == ":protocol: websocket")
                && headers.iter().any(|h| *h == format!(":path: {path}"))
        })
        .unwrap_or_else(|| {
            panic!("no extended CONNECT for {path} on an HTTP/2 session in the net log")
        });
    let (session, stream) = (&connect["source"]["id"], &connect["params"]["stream_id"]);
    let answered = events.iter().any(|event| {
        event["type"].as_u64() == Some(receive)
            && &event["source"]["id"] == session
            && &event["params"]["stream_id"] == stream
            && headers(event).iter().any(|h| h == ":status: 200")
    });
    assert!(
        answered,
        "no 200 on HTTP/2 stream {stream} for the CONNECT to {path}"
    );
    // Nor was it (also) tried over HTTP/1.1.
    assert!(
        !events.iter().any(|event| {
            event["params"]["line"]
                .as_str()
                .is_some_and(|line| line.contains(path))
        }),
        "{path} was requested over HTTP/1.1 too"
    );
}
