//! ringws behind nginx, configured by the README's recipe (`docs/nginx/ringws.conf`,
//! the one copy: the test only puts its own ports in it), checked as a user sees it: a
//! WebSocket echo through nginx, SockJS streaming frames arriving as they happen (raw
//! xhr_streaming and eventsource requests, and node's sockjs-client 1.6.1 on both
//! transports against `ringws serve --trusted-proxy`), and the client address an
//! upgrade hook sees: forwarded by nginx (a trusted proxy), while a forged
//! `X-Forwarded-For` from any other peer is ignored.
//!
//! A negative control shows the echo check can fail: without the recipe's `Connection`
//! line no upgrade gets through. (`proxy_buffering off` has none here: nginx 1.22 passes
//! ringws's chunked streaming frames on at once even with buffering on; the line is for
//! slow clients, see the recipe.)
//!
//! nginx is started by the test itself in a temporary directory (config, logs, temp
//! files and pid there; `daemon off`), on 127.0.0.1, and stopped by its pid. The client
//! connects from 127.0.0.2 so that the address nginx forwards is told apart from
//! nginx's own (127.0.0.1). Without nginx the tests skip (`RINGWS_TEST_STRICT=1`: fail);
//! without node or npm the sockjs-client test does.
//!
//! Not tested through nginx: the SockJS protocol suite, which checks exact chunking and
//! headers that any proxy rewrites (sockjs-node fails the same tests through it).

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::deflate::{support_dir, Outside};
use common::serve::{ringws_serve, with_child};
use common::skip::skip;
use common::{read_head, send_frame, Echo, FrameReader, Received};
use ringws::http::TrustedProxies;
use ringws::proto::OpCode;
use ringws::sockjs::SockJsOptions;
use ringws::{Accept, Conn, Handler, Message, RunningServer};

/// The README's nginx configuration, as a user installs it.
const RECIPE: &str = include_str!("../docs/nginx/ringws.conf");

/// The address the clients connect from (nginx forwards it; nginx itself is 127.0.0.1).
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The nginx binary: `nginx` on the PATH or Debian's `/usr/sbin/nginx`.
fn nginx_binary() -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    for candidate in ["nginx", "/usr/sbin/nginx"] {
        match Command::new(candidate).arg("-v").output() {
            Ok(output) if output.status.success() => return Ok(PathBuf::from(candidate)),
            Ok(output) => tried.push(format!("{candidate}: {}", output.status)),
            Err(error) => tried.push(format!("{candidate}: {error}")),
        }
    }
    Err(format!(
        "nginx cannot run ({}); Debian: apt-get install nginx",
        tried.join("; ")
    ))
}

/// `text` with `from` (which must occur exactly once) replaced by `to`.
#[track_caller]
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} in the recipe");
    text.replacen(from, to, 1)
}

/// The recipe with the test's ports: nginx listens on 127.0.0.1:`listen`, ringws is
/// `upstream`; `edit` may change it further (a negative control).
fn recipe(listen: u16, upstream: SocketAddr) -> String {
    let text = replace_once(
        RECIPE,
        "proxy_pass http://127.0.0.1:8080;",
        &format!("proxy_pass http://{upstream};"),
    );
    replace_once(&text, "listen 80;", &format!("listen 127.0.0.1:{listen};"))
}

/// A free port on 127.0.0.1 (bound and released: nginx binds it next).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// An nginx master process started by the test, stopped (by its pid) on drop.
struct Nginx {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx with `site` (the recipe, ports filled in) included in a minimal
    /// `nginx.conf` whose logs, temp paths and pid are in a directory of its own.
    fn start(site: &str, listen: u16) -> Nginx {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let binary = nginx_binary().expect("checked by the caller");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "nginx-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tmp")).expect("nginx dir");
        let d = dir.display();
        std::fs::write(dir.join("ringws.conf"), site).expect("write site");
        let main = format!(
            "worker_processes 1;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             \x20   access_log {d}/access.log;\n\
             \x20   client_body_temp_path {d}/tmp/client_body;\n\
             \x20   proxy_temp_path {d}/tmp/proxy;\n\
             \x20   fastcgi_temp_path {d}/tmp/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/tmp/uwsgi;\n\
             \x20   scgi_temp_path {d}/tmp/scgi;\n\
             \x20   include {d}/ringws.conf;\n\
             }}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).expect("write nginx.conf");
        let child = Command::new(binary)
            .arg("-p")
            .arg(format!("{d}/"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-g")
            .arg(format!("daemon off; pid {d}/nginx.pid;"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).expect("stderr file"))
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], listen)),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(nginx.addr).is_ok() {
                return nginx;
            }
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}):\n{}", nginx.logs());
            }
            assert!(
                Instant::now() < deadline,
                "nginx does not listen on {}:\n{}",
                nginx.addr,
                nginx.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// nginx's own output and error log.
    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: nginx's fast shutdown, which stops its worker too (a SIGKILL would
        // leave the worker behind).
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory preconditions; the pid is our own child, not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Skips (or, strict, fails) when nginx cannot run here.
fn have_nginx() -> bool {
    match nginx_binary() {
        Ok(_) => true,
        Err(why) => {
            skip(why);
            false
        }
    }
}

/// `/who` tells the connection what its upgrade hook saw, then echoes.
struct Who(String);

impl Handler for Who {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        conn.send_text(&self.0);
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        Echo.on_message(conn, message);
    }
}

/// A server trusting `proxies`: `/who` (what the hook saw, then an echo) and the SockJS
/// echo service `/sockjs`.
fn server(proxies: &str) -> RunningServer {
    let proxies: TrustedProxies = proxies.parse().expect("proxies");
    common::builder()
        .trusted_proxies(proxies)
        .websocket_with("/who", |request| {
            let seen = format!(
                "peer={} tcp={}",
                request.peer_addr().expect("peer"),
                request.tcp_peer_addr().expect("tcp peer")
            );
            Ok(Accept::new(Who(seen)))
        })
        .sockjs("/sockjs", || Echo, SockJsOptions::default())
        .build()
        .expect("build")
        .start()
        .expect("start")
}

/// A blocking TCP connection from `source` to `to`, with a 10 s read timeout.
fn connect_from(source: IpAddr, to: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    socket
        .connect(&to.into())
        .unwrap_or_else(|e| panic!("connect {to}: {e}"));
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Upgrades `/who` on `to` from `source` with `extra` header lines; returns the socket
/// and the hook's view as (`peer`, `tcp peer`).
fn who(source: IpAddr, to: SocketAddr, extra: &[&str]) -> (TcpStream, SocketAddr, SocketAddr) {
    let mut stream = connect_from(source, to);
    let mut request = format!(
        "GET /who HTTP/1.1\r\nHost: {to}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "upgrade refused: {head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    let Received::Text(seen) = FrameReader::default().next(&mut stream) else {
        panic!("no first message from /who");
    };
    let (peer, tcp) = seen
        .strip_prefix("peer=")
        .and_then(|s| s.split_once(" tcp="))
        .unwrap_or_else(|| panic!("{seen:?}"));
    (stream, peer.parse().unwrap(), tcp.parse().unwrap())
}

#[test]
fn websocket_echo_through_nginx() {
    if !have_nginx() {
        return;
    }
    let ringws = server("127.0.0.1");
    let port = free_port();
    let nginx = Nginx::start(&recipe(port, ringws.local_addr()), port);
    // A browser's request: its Origin is nginx's address, which the same-origin check
    // compares with the Host nginx passes on.
    let origin = format!("Origin: http://{}", nginx.addr);
    let (mut stream, peer, tcp) = who(CLIENT, nginx.addr, &[&origin]);
    // The hook saw the client (the address nginx forwarded, port 0), not nginx.
    assert_eq!(peer, SocketAddr::new(CLIENT, 0));
    assert_eq!(tcp.ip(), IpAddr::from([127, 0, 0, 1]));
    assert_ne!(tcp.port(), 0);
    let mut reader = FrameReader::default();
    send_frame(&mut stream, OpCode::Text, true, "héllo, nginx".as_bytes());
    assert_eq!(
        reader.next(&mut stream),
        Received::Text("héllo, nginx".into())
    );
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    send_frame(&mut stream, OpCode::Binary, false, &big[..100_000]);
    send_frame(&mut stream, OpCode::Continuation, true, &big[100_000..]);
    assert_eq!(reader.next(&mut stream), Received::Binary(big));
    send_frame(&mut stream, OpCode::Ping, true, b"p");
    assert_eq!(reader.next(&mut stream), Received::Pong(b"p".to_vec()));
    send_frame(&mut stream, OpCode::Close, true, &[0x03, 0xe8]);
    assert_eq!(
        reader.next(&mut stream),
        Received::Close(Some(1000), String::new())
    );
    drop(nginx);
    ringws.shutdown().expect("shutdown");
}

#[test]
fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() {
    if !have_nginx() {
        return;
    }
    let forged = "X-Forwarded-For: 203.0.113.9";
    let trusting = server("127.0.0.1");
    let port = free_port();
    let nginx = Nginx::start(&recipe(port, trusting.local_addr()), port);
    // Through nginx: nginx appends the address it saw to the client's list
    // ("203.0.113.9, 127.0.0.2"); the right-most untrusted entry is the client.
    let (_, peer, tcp) = who(CLIENT, nginx.addr, &[forged]);
    assert_eq!(peer, SocketAddr::new(CLIENT, 0));
    assert_eq!(tcp.ip(), IpAddr::from([127, 0, 0, 1]));
    // Straight to ringws from an address that is not a trusted proxy: ignored.
    let (_, peer, tcp) = who(CLIENT, trusting.local_addr(), &[forged]);
    assert_eq!(peer, tcp);
    assert_eq!(tcp.ip(), CLIENT);
    // From the trusted address itself the header is believed: list only proxies.
    let (_, peer, _) = who([127, 0, 0, 1].into(), trusting.local_addr(), &[forged]);
    assert_eq!(peer, "203.0.113.9:0".parse().unwrap());
    // A server that trusts another network: 127.0.0.1 forging gets its own address.
    let other = server("10.0.0.0/8");
    let (_, peer, tcp) = who([127, 0, 0, 1].into(), other.local_addr(), &[forged]);
    assert_eq!(peer, tcp);
    assert_eq!(tcp.ip(), IpAddr::from([127, 0, 0, 1]));
    // And through nginx to it: nginx is not trusted there, so its address is the peer.
    let port = free_port();
    let untrusted = Nginx::start(&recipe(port, other.local_addr()), port);
    let (_, peer, tcp) = who(CLIENT, untrusted.addr, &[forged]);
    assert_eq!(peer, tcp);
    assert_eq!(tcp.ip(), IpAddr::from([127, 0, 0, 1]));
    drop((nginx, untrusted));
    trusting.shutdown().expect("shutdown");
    other.shutdown().expect("shutdown");
}

/// A raw HTTP/1.1 response read as it arrives: the head, then the body (de-chunked when
/// `Transfer-Encoding: chunked`).
struct Streamed {
    stream: TcpStream,
    head: String,
    chunked: bool,
    raw: Vec<u8>,
    body: Vec<u8>,
}

impl Streamed {
    /// Sends `request` on a new connection from [`CLIENT`] and reads the answer's head.
    fn request(to: SocketAddr, request: &str) -> Streamed {
        let mut stream = connect_from(CLIENT, to);
        stream.write_all(request.as_bytes()).expect("write");
        let head = read_head(&mut stream);
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        Streamed {
            stream,
            head,
            chunked,
            raw: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Moves the complete chunks of `raw` to `body`.
    fn dechunk(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return;
        }
        loop {
            let Some(line) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = std::str::from_utf8(&self.raw[..line]).expect("chunk size");
            let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("chunk size {size:?}"));
            if self.raw.len() < line + 2 + size + 2 {
                return;
            }
            let data = line + 2;
            self.body.extend_from_slice(&self.raw[data..data + size]);
            self.raw.drain(..data + size + 2);
        }
    }

    /// Reads until the body holds `want` after what was already taken; `false` when
    /// `limit` passes first (or the response ends).
    fn wait_for(&mut self, want: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = find(&self.body, want.as_bytes()) {
                self.body.drain(..at + want.len());
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.raw.extend_from_slice(&chunk[..n]);
                    self.dechunk();
                }
                Err(error) if common::is_timeout(&error) => return false,
                Err(error) => panic!("reading the stream: {error}"),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// POSTs `body` to `path` through `to` and returns the response head.
fn post(to: SocketAddr, path: &str, body: &str) -> String {
    let mut stream = connect_from(CLIENT, to);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {to}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    read_head(&mut stream)
}

/// What a streaming transport's frames look like on the wire.
struct Framing {
    transport: &'static str,
    method: &'static str,
    frame: fn(&str) -> String,
}

const STREAMING: [Framing; 2] = [
    Framing {
        transport: "xhr_streaming",
        method: "POST",
        frame: |frame| format!("{frame}\n"),
    },
    Framing {
        transport: "eventsource",
        method: "GET",
        frame: |frame| format!("data: {frame}\r\n\r\n"),
    },
];

/// Opens a SockJS streaming session through nginx and checks that each frame
/// arrives while the response is still open: the open frame, then the echo of a
/// message sent afterwards, then another.
fn stream_through(nginx: SocketAddr, framing: &Framing, session: &str) {
    let path = format!("/sockjs/000/{session}/{}", framing.transport);
    let request = format!(
        "{} {path} HTTP/1.1\r\nHost: {nginx}\r\nContent-Length: 0\r\n\r\n",
        framing.method
    );
    let mut stream = Streamed::request(nginx, &request);
    assert!(
        stream.head.starts_with("HTTP/1.1 200 "),
        "{path}: {}",
        stream.head
    );
    assert!(
        stream.wait_for(&(framing.frame)("o"), Duration::from_secs(5)),
        "{path}: no open frame through nginx within 5 s"
    );
    for message in ["first", "sécond"] {
        let sent = post(
            nginx,
            &format!("/sockjs/000/{session}/xhr_send"),
            &format!("[\"{message}\"]"),
        );
        assert!(sent.starts_with("HTTP/1.1 204 "), "xhr_send: {sent}");
        let frame = (framing.frame)(&format!("a[\"{message}\"]"));
        assert!(
            stream.wait_for(&frame, Duration::from_secs(5)),
            "{path}: {frame:?} did not arrive while the response was open (nginx held it?); \
             body so far: {:?}",
            String::from_utf8_lossy(&stream.body)
        );
    }
}

#[test]
fn sockjs_streaming_frames_pass_through_nginx_as_they_happen() {
    if !have_nginx() {
        return;
    }
    let ringws = server("127.0.0.1");
    let port = free_port();
    let nginx = Nginx::start(&recipe(port, ringws.local_addr()), port);
    for (i, framing) in STREAMING.iter().enumerate() {
        let session = format!("stream{i}");
        stream_through(nginx.addr, framing, &session);
    }
    drop(nginx);
    ringws.shutdown().expect("shutdown");
}

/// The negative control: without the recipe's `Connection` line nginx sends ringws
/// `Connection: close`, and no WebSocket gets through, so the echo test can fail.
#[test]
fn without_the_connection_header_no_websocket_gets_through() {
    if !have_nginx() {
        return;
    }
    let ringws = server("127.0.0.1");
    let port = free_port();
    let site = replace_once(
        &recipe(port, ringws.local_addr()),
        "proxy_set_header Connection $connection_upgrade;",
        "",
    );
    let nginx = Nginx::start(&site, port);
    let mut stream = connect_from(CLIENT, nginx.addr);
    let request = format!(
        "GET /who HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        nginx.addr
    );
    stream.write_all(request.as_bytes()).expect("write");
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    drop(nginx);
    ringws.shutdown().expect("shutdown");
}

/// The directory holding node's `sockjs-client` 1.6.1 package, installed with npm
/// under the target directory on first use.
fn node_sockjs_client() -> Outside<PathBuf> {
    static INSTALL: OnceLock<Mutex<Result<PathBuf, String>>> = OnceLock::new();
    let result = INSTALL.get_or_init(|| Mutex::new(install_sockjs_client()));
    match &*result.lock().unwrap() {
        Ok(path) => Outside::Ran(path.clone()),
        Err(why) => Outside::Missing(why.clone()),
    }
}

fn install_sockjs_client() -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("node-sockjs-client");
    let module = dir.join("node_modules").join("sockjs-client");
    let node = Command::new("node").arg("--version").output();
    if !node.as_ref().is_ok_and(|o| o.status.success()) {
        return Err(format!("node cannot run: {node:?}"));
    }
    let installed = |module: &Path| {
        std::fs::read_to_string(module.join("package.json"))
            .is_ok_and(|json| json.contains("\"version\": \"1.6.1\""))
    };
    if installed(&module) {
        return Ok(module);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let npm = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--silent",
            "sockjs-client@1.6.1",
        ])
        .current_dir(&dir)
        .output()
        .map_err(|e| format!("npm cannot run: {e}"))?;
    if !npm.status.success() || !installed(&module) {
        return Err(format!(
            "npm install sockjs-client@1.6.1 failed ({}): {}",
            npm.status,
            String::from_utf8_lossy(&npm.stderr)
        ));
    }
    Ok(module)
}

#[test]
fn sockjs_client_streams_through_nginx_to_ringws_serve() {
    if !have_nginx() {
        return;
    }
    let module = match node_sockjs_client() {
        Outside::Ran(module) => module,
        Outside::Missing(why) => return skip(why),
    };
    // The README's command line, on a port of its own.
    with_child(ringws_serve(&["--trusted-proxy", "127.0.0.1"]), |ringws| {
        let port = free_port();
        let nginx = Nginx::start(&recipe(port, ringws), port);
        for transport in ["xhr-streaming", "eventsource"] {
            let url = format!("http://{}/echo", nginx.addr);
            let output = Command::new("node")
                .arg(support_dir().join("sockjs_client_echo.js"))
                .arg(&url)
                .arg(transport)
                .env("SOCKJS_CLIENT", &module)
                .output()
                .expect("node runs");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success(),
                "{transport} through nginx failed ({}):\n{stdout}\n{stderr}\n{}",
                output.status,
                nginx.logs()
            );
            assert!(
                stdout.contains(&format!("transport={transport}\n")),
                "{stdout}"
            );
            assert!(stdout.contains("echoed=3\n"), "{stdout}");
            assert!(stdout.contains("close=1000\n"), "{stdout}");
        }
    });
}

#[test]
fn ringws_serve_refuses_a_bad_trusted_proxy() {
    let output = Command::new(env!("CARGO_BIN_EXE_ringws"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--trusted-proxy",
            "10.0.0.0/33",
        ])
        .output()
        .expect("ringws runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--trusted-proxy") && stderr.contains("10.0.0.0/33"),
        "{stderr}"
    );
}

/// The README shows the tested configuration itself, not a copy that could drift.
#[test]
fn the_readme_shows_the_tested_recipe() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    assert!(
        readme.contains(RECIPE),
        "README.md must show docs/nginx/ringws.conf verbatim (in an nginx code block)"
    );
}
