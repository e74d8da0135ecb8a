//! Static files and HTTP prefix routes: content types, validators (304), HEAD, ranges,
//! index pages and redirects, 405, every directory-escape refusal (all answered 404),
//! and user handlers on prefixes next to exact and WebSocket routes.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{raw_connect, read_to_close};
use ringws::{HttpResponse, RunningServer};

/// A served tree under the system temp dir, removed on drop:
/// `<base>/site` is served, `<base>/outside` is what escapes would reach.
struct Tree {
    base: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "ringws-static-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        let site = base.join("site");
        for dir in ["site/docs", "site/empty", "outside"] {
            std::fs::create_dir_all(base.join(dir)).expect("mkdir");
        }
        let files: [(&str, &[u8]); 6] = [
            ("site/index.html", b"<h1>home</h1>"),
            ("site/digits.txt", b"0123456789"),
            ("site/docs/index.html", b"<h1>docs</h1>"),
            ("site/a b.txt", b"spaced"),
            ("outside/secret.txt", b"top secret"),
            ("site/empty.bin", b""),
        ];
        for (path, contents) in files {
            std::fs::write(base.join(path), contents).expect("write");
        }
        let symlink = |target: &Path, link: &str| {
            std::os::unix::fs::symlink(target, site.join(link)).expect("symlink")
        };
        symlink(&base.join("outside/secret.txt"), "escape.txt");
        symlink(&base.join("outside"), "escape_dir");
        symlink(Path::new("digits.txt"), "link.txt");
        symlink(Path::new("docs"), "linkdir");
        Tree { base }
    }

    fn site(&self) -> PathBuf {
        self.base.join("site")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn server(tree: &Tree) -> RunningServer {
    common::builder()
        .static_files("/files", tree.site())
        .websocket("/files/ws", || common::Echo)
        .http("/files/api/", |request| {
            HttpResponse::text(200, format!("api {}", request.path()))
        })
        .http("/status", |_| HttpResponse::text(200, "ok"))
        .http("/api/", |request| {
            let body = format!(
                "{} {} {}",
                request.method(),
                request.path(),
                request.body().len()
            );
            HttpResponse::text(200, body).header("X-Handler", "api")
        })
        .build()
        .expect("build")
        .start()
        .expect("start")
}

/// A response: status, head (lines), body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(": ")?;
            n.eq_ignore_ascii_case(name).then_some(v)
        })
    }
}

/// Sends `method target` with `headers` (and `Connection: close`), reads to the close.
fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Answer {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    raw_request(addr, head.as_bytes())
}

/// Sends `bytes` (one request that ends with the close), reads the answer to the close,
/// and checks what every answer must have: a whole head, the status line with its own
/// reason phrase, and exactly the body its `Content-Length` announces (none for HEAD).
fn raw_request(addr: SocketAddr, bytes: &[u8]) -> Answer {
    let mut stream = raw_connect(addr);
    stream.write_all(bytes).expect("write");
    let response = read_to_close(&mut stream);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no whole response head: {response:?}"));
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head:?}"));
    let status_line = format!("HTTP/1.1 {status} {}", ringws::http::status_text(status));
    assert_eq!(head.lines().next(), Some(status_line.as_str()), "{head}");
    let answer = Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    };
    let announced = answer
        .header("Content-Length")
        .map(|v| v.parse::<usize>().expect("a numeric Content-Length"));
    let expected = match bytes.starts_with(b"HEAD ") {
        true => 0,
        false => announced.unwrap_or(0),
    };
    assert_eq!(answer.body.len(), expected, "{response:?}");
    answer
}

fn get(addr: SocketAddr, target: &str) -> Answer {
    request(addr, "GET", target, &[])
}

#[test]
fn content_types_by_extension() {
    let tree = Tree::new();
    let cases = [
        ("x.html", "text/html; charset=utf-8"),
        ("x.css", "text/css; charset=utf-8"),
        ("x.js", "text/javascript; charset=utf-8"),
        ("x.mjs", "text/javascript; charset=utf-8"),
        ("x.json", "application/json"),
        ("x.svg", "image/svg+xml"),
        ("x.png", "image/png"),
        ("x.jpg", "image/jpeg"),
        ("x.jpeg", "image/jpeg"),
        ("x.gif", "image/gif"),
        ("x.webp", "image/webp"),
        ("x.ico", "image/x-icon"),
        ("x.txt", "text/plain; charset=utf-8"),
        ("x.wasm", "application/wasm"),
        ("x.woff2", "font/woff2"),
        ("x.js.map", "application/json"),
        ("x.xml", "application/xml"),
        ("x.pdf", "application/pdf"),
        ("x.unknown", "application/octet-stream"),
        ("noextension", "application/octet-stream"),
    ];
    for (name, _) in cases {
        std::fs::write(tree.site().join(name), name).expect("write");
    }
    let server = server(&tree);
    for (name, content_type) in cases {
        let answer = get(server.local_addr(), &format!("/files/{name}"));
        assert_eq!(answer.status, 200, "{name}: {}", answer.head);
        assert_eq!(answer.header("Content-Type"), Some(content_type), "{name}");
        assert_eq!(answer.body, name);
    }
}

#[test]
fn etag_and_last_modified_give_304() {
    let tree = Tree::new();
    let server = server(&tree);
    let addr = server.local_addr();
    let first = get(addr, "/files/digits.txt");
    assert_eq!((first.status, first.body.as_str()), (200, "0123456789"));
    assert_eq!(first.header("Accept-Ranges"), Some("bytes"));
    let etag = first.header("ETag").expect("ETag").to_owned();
    assert!(etag.starts_with("\"a-") && etag.ends_with('"'), "{etag}");
    let modified = first
        .header("Last-Modified")
        .expect("Last-Modified")
        .to_owned();
    assert!(modified.ends_with(" GMT"), "{modified}");

    let again = request(
        addr,
        "GET",
        "/files/digits.txt",
        &[("If-None-Match", &etag)],
    );
    assert_eq!(again.status, 304, "{}", again.head);
    assert_eq!(again.body, "");
    assert_eq!(again.header("ETag"), Some(etag.as_str()));
    assert_eq!(again.header("Content-Length"), None);
    let other = request(
        addr,
        "GET",
        "/files/digits.txt",
        &[("If-None-Match", "\"other\"")],
    );
    assert_eq!((other.status, other.body.as_str()), (200, "0123456789"));

    let since = request(
        addr,
        "GET",
        "/files/digits.txt",
        &[("If-Modified-Since", &modified)],
    );
    assert_eq!(
        (since.status, since.body.as_str()),
        (304, ""),
        "{}",
        since.head
    );
    assert_eq!(since.header("Last-Modified"), Some(modified.as_str()));
    let old = "Thu, 01 Jan 1970 00:00:00 GMT";
    let stale = request(
        addr,
        "GET",
        "/files/digits.txt",
        &[("If-Modified-Since", old)],
    );
    assert_eq!((stale.status, stale.body.as_str()), (200, "0123456789"));

    // A changed file gets a new tag.
    std::fs::write(tree.site().join("digits.txt"), "01234567890").expect("write");
    let changed = request(
        addr,
        "GET",
        "/files/digits.txt",
        &[("If-None-Match", &etag)],
    );
    assert_eq!(
        (changed.status, changed.body.as_str()),
        (200, "01234567890")
    );
    let new_etag = changed.header("ETag").expect("ETag");
    assert_ne!(new_etag, etag.as_str());
    assert!(new_etag.starts_with("\"b-"), "{new_etag}");
}

#[test]
fn head_sends_headers_only() {
    let tree = Tree::new();
    let server = server(&tree);
    let get = get(server.local_addr(), "/files/digits.txt");
    let answer = request(server.local_addr(), "HEAD", "/files/digits.txt", &[]);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Content-Length"), Some("10"));
    assert_eq!(answer.header("ETag"), get.header("ETag"));
    assert_eq!(
        answer.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(answer.body, "");
    // A user handler's HEAD also announces its body's length.
    let answer = request(server.local_addr(), "HEAD", "/status", &[]);
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    assert_eq!(answer.header("Content-Length"), Some("2"));
}

#[test]
fn single_ranges_multiple_ranges_and_unsatisfiable() {
    let tree = Tree::new();
    let server = server(&tree);
    let addr = server.local_addr();
    let range = |value: &str| request(addr, "GET", "/files/digits.txt", &[("Range", value)]);
    for (value, body, content_range) in [
        ("bytes=2-5", "2345", "bytes 2-5/10"),
        ("bytes=7-", "789", "bytes 7-9/10"),
        ("bytes=-3", "789", "bytes 7-9/10"),
        ("bytes=8-100", "89", "bytes 8-9/10"),
    ] {
        let answer = range(value);
        assert_eq!(answer.status, 206, "{value}: {}", answer.head);
        assert_eq!(answer.body, body, "{value}");
        assert_eq!(answer.header("Content-Range"), Some(content_range));
        assert_eq!(
            answer.header("Content-Length"),
            Some(&*body.len().to_string())
        );
    }
    for value in ["bytes=10-", "bytes=20-30", "bytes=-0"] {
        let answer = range(value);
        assert_eq!(answer.status, 416, "{value}: {}", answer.head);
        assert_eq!(answer.header("Content-Range"), Some("bytes */10"));
    }
    let answer = range("bytes=0-1,4-5");
    assert_eq!((answer.status, answer.body.as_str()), (200, "0123456789"));
    assert_eq!(answer.header("Content-Range"), None);
    let empty = request(addr, "GET", "/files/empty.bin", &[("Range", "bytes=0-")]);
    assert_eq!(empty.status, 416);
    assert_eq!(empty.header("Content-Range"), Some("bytes */0"));
}

#[test]
fn if_range_serves_the_range_only_while_the_validator_is_current() {
    let tree = Tree::new();
    let server = server(&tree);
    let addr = server.local_addr();
    let first = get(addr, "/files/digits.txt");
    let etag = first.header("ETag").expect("ETag").to_owned();
    let modified = first
        .header("Last-Modified")
        .expect("Last-Modified")
        .to_owned();
    let ranged = |condition: &str| {
        request(
            addr,
            "GET",
            "/files/digits.txt",
            &[("Range", "bytes=2-5"), ("If-Range", condition)],
        )
    };
    // Current: the range, exactly.
    for condition in [etag.as_str(), modified.as_str()] {
        let answer = ranged(condition);
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (206, "2345"),
            "If-Range: {condition}: {}",
            answer.head
        );
        assert_eq!(answer.header("Content-Range"), Some("bytes 2-5/10"));
        assert_eq!(answer.header("Content-Length"), Some("4"));
    }
    // Not current (another tag, a weak tag, an older date): the whole file, 200.
    let weak = format!("W/{etag}");
    for condition in ["\"0-0\"", weak.as_str(), "Thu, 01 Jan 1970 00:00:00 GMT"] {
        let answer = ranged(condition);
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "0123456789"),
            "If-Range: {condition}: {}",
            answer.head
        );
        assert_eq!(answer.header("Content-Range"), None);
        assert_eq!(answer.header("Content-Length"), Some("10"));
    }
    // The file changed: the tag the client holds is stale, so the whole new file.
    std::fs::write(tree.site().join("digits.txt"), "9876543210!").expect("write");
    let answer = ranged(&etag);
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "9876543210!"),
        "{}",
        answer.head
    );
    assert_eq!(answer.header("Content-Range"), None);
    assert_ne!(answer.header("ETag"), Some(etag.as_str()));
}

#[test]
fn index_html_and_the_slash_redirect() {
    let tree = Tree::new();
    let server = server(&tree);
    let addr = server.local_addr();
    let root = get(addr, "/files/");
    assert_eq!((root.status, root.body.as_str()), (200, "<h1>home</h1>"));
    assert_eq!(
        root.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let docs = get(addr, "/files/docs/");
    assert_eq!((docs.status, docs.body.as_str()), (200, "<h1>docs</h1>"));
    let redirect = get(addr, "/files/docs?x=1");
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("Location"), Some("/files/docs/?x=1"));
    let bare = get(addr, "/files");
    assert_eq!(bare.status, 301);
    assert_eq!(bare.header("Location"), Some("/files/"));
    assert_eq!(get(addr, "/files/empty/").status, 404);
    assert_eq!(get(addr, "/files/digits.txt/").status, 404);
    assert_eq!(get(addr, "/files/missing.txt").status, 404);
    assert_eq!(get(addr, "/files/a%20b.txt").body, "spaced");
}

#[test]
fn other_methods_get_405() {
    let tree = Tree::new();
    let server = server(&tree);
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let answer = request(server.local_addr(), method, "/files/digits.txt", &[]);
        assert_eq!(answer.status, 405, "{method}");
        assert_eq!(answer.header("Allow"), Some("GET, HEAD"));
    }
}

#[test]
fn every_escape_is_refused_with_404() {
    let tree = Tree::new();
    let server = server(&tree);
    let addr = server.local_addr();
    for target in [
        "/files/../outside/secret.txt",
        "/files/docs/../../outside/secret.txt",
        "/files/%2e%2e/outside/secret.txt",
        "/files/%2E%2E/outside/secret.txt",
        "/files/%2f../outside/secret.txt",
        "/files/docs%2f..%2f..%2foutside%2fsecret.txt",
        "/files/digits.txt%00.html",
        "/files/..%5coutside%5csecret.txt",
        "/files/..\\outside\\secret.txt",
        "/files//etc/passwd",
        "/files/%2fetc%2fpasswd",
        "/files/escape.txt",
        "/files/escape_dir/secret.txt",
        "/files/escape_dir/",
        "/files/%zz",
    ] {
        let answer = get(addr, target);
        assert_eq!(answer.status, 404, "{target}: {}", answer.head);
        assert!(!answer.body.contains("secret"), "{target}");
    }
    // A raw NUL never gets past the request parser.
    let answer = raw_request(
        addr,
        b"GET /files/digits.txt\0.html HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(answer.status, 400, "{}", answer.head);
}

#[test]
fn symlinks_inside_the_root_are_followed() {
    let tree = Tree::new();
    let server = server(&tree);
    let link = get(server.local_addr(), "/files/link.txt");
    assert_eq!((link.status, link.body.as_str()), (200, "0123456789"));
    let dir = get(server.local_addr(), "/files/linkdir/");
    assert_eq!((dir.status, dir.body.as_str()), (200, "<h1>docs</h1>"));
}

#[test]
fn a_missing_directory_fails_the_build() {
    let error = common::builder()
        .static_files("/", "/nonexistent/ringws/dir")
        .build()
        .err()
        .expect("build fails");
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn a_file_above_the_cap_gets_413_but_a_range_within_it_is_served() {
    let tree = Tree::new();
    let server = common::builder()
        .static_files("/", tree.site())
        .max_static_file_size(5)
        .build()
        .expect("build")
        .start()
        .expect("start");
    let addr = server.local_addr();
    assert_eq!(get(addr, "/digits.txt").status, 413);
    let whole = get(addr, "/digits.txt");
    assert_eq!(whole.body, "file too large to serve\n");
    let range = request(addr, "GET", "/digits.txt", &[("Range", "bytes=0-4")]);
    assert_eq!((range.status, range.body.as_str()), (206, "01234"));
    assert_eq!(range.header("Content-Range"), Some("bytes 0-4/10"));
    let over = request(addr, "GET", "/digits.txt", &[("Range", "bytes=0-5")]);
    assert_eq!(over.status, 413);
}

#[test]
fn user_handlers_on_prefixes_exact_paths_and_websockets_share_the_tree() {
    let tree = Tree::new();
    let server = server(&tree);
    let addr = server.local_addr();
    // `/api/` is a prefix: every path below it, with the request body.
    let answer = request(addr, "POST", "/api/users/7", &[("Content-Length", "0")]);
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "POST /api/users/7 0")
    );
    assert_eq!(answer.header("X-Handler"), Some("api"));
    let mut stream = raw_connect(addr);
    stream
        .write_all(
            b"PUT /api/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
        )
        .expect("write");
    let answer = read_to_close(&mut stream);
    assert!(
        answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\nPUT /api/x 3"),
        "{answer}"
    );
    assert_eq!(get(addr, "/api/").body, "GET /api/ 0");
    // ...but not the prefix without its slash, and `/status` is exact.
    assert_eq!(get(addr, "/api").status, 404);
    assert_eq!(get(addr, "/status").body, "ok");
    assert_eq!(get(addr, "/status/x").status, 404);
    // The longest prefix wins over the static directory.
    assert_eq!(get(addr, "/files/api/v1").body, "api /files/api/v1");
    // An exact WebSocket route below the static prefix keeps its upgrades.
    let mut ws = common::raw_upgrade(addr, "/files/ws");
    common::send_frame(&mut ws, ringws::proto::OpCode::Text, true, b"still echoing");
    assert_eq!(
        common::FrameReader::default().next(&mut ws),
        common::Received::Text("still echoing".into())
    );
}

#[test]
fn keep_alive_serves_several_files_on_one_connection() {
    let tree = Tree::new();
    let server = server(&tree);
    let mut stream = raw_connect(server.local_addr());
    stream
        .write_all(
            b"GET /files/digits.txt HTTP/1.1\r\nHost: x\r\n\r\n\
              HEAD /files/docs/ HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /files/link.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .expect("write");
    let all = read_to_close(&mut stream);
    // Three answers in order, each framed by its Content-Length (none sent for HEAD),
    // only the last one closing.
    let mut rest = all.as_str();
    for (body, length, close) in [
        ("0123456789", "10", false),
        ("", "13", false),
        ("0123456789", "10", true),
    ] {
        let (head, after) = rest.split_once("\r\n\r\n").expect("a whole head");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
        let announced = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "));
        assert_eq!(announced, Some(length), "{all}");
        assert_eq!(head.contains("Connection: close"), close, "{all}");
        assert!(after.starts_with(body), "{all}");
        rest = &after[body.len()..];
    }
    assert_eq!(rest, "", "{all}");
}

/// Files far larger than the old 64 MiB cap: sparse, with an 8-byte marker (its own
/// offset, little-endian) at each of [`MARKS`] and zeros elsewhere.
const LARGE: u64 = 80 << 20;
const MARKS: [u64; 4] = [0, (1 << 20) + 3, 40 << 20, LARGE - 8];

fn large_file(tree: &Tree) -> &'static str {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::create(tree.site().join("large.bin")).expect("create");
    file.set_len(LARGE).expect("set_len");
    for mark in MARKS {
        file.seek(SeekFrom::Start(mark)).expect("seek");
        file.write_all(&mark.to_le_bytes()).expect("mark");
    }
    "/large.bin"
}

/// The byte of the large file at `offset`.
fn large_byte(offset: u64) -> u8 {
    MARKS
        .iter()
        .find(|&&mark| (mark..mark + 8).contains(&offset))
        .map_or(0, |&mark| mark.to_le_bytes()[(offset - mark) as usize])
}

/// One shard, so the transfer and the other requests share its thread.
fn one_shard_server(tree: &Tree) -> RunningServer {
    common::builder()
        .shards(1)
        .static_files("/", tree.site())
        .http("/status", |_| HttpResponse::text(200, "ok"))
        .build()
        .expect("build")
        .start()
        .expect("start")
}

/// Reads exactly `len` body bytes starting at file offset `from`, checking each.
fn read_large_body(stream: &mut std::net::TcpStream, from: u64, len: u64) {
    use std::io::Read;
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = from;
    let end = from + len;
    while at < end {
        let want = buf.len().min((end - at) as usize);
        let n = stream.read(&mut buf[..want]).expect("body");
        assert!(n > 0, "the body ended at {at} of {end}");
        for (i, &byte) in buf[..n].iter().enumerate() {
            let offset = at + i as u64;
            if byte != large_byte(offset) {
                panic!("byte {offset}: {byte} instead of {}", large_byte(offset));
            }
        }
        at += n as u64;
    }
}

#[test]
fn a_file_above_the_old_cap_streams_with_bounded_memory_while_the_shard_serves_others() {
    let tree = Tree::new();
    let path = large_file(&tree);
    let server = one_shard_server(&tree);
    let addr = server.local_addr();
    let mut stream = raw_connect(addr);
    // A request pipelined behind the file is answered after all of it.
    let requests = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\n\r\nGET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(requests.as_bytes()).expect("write");
    let head = common::read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nContent-Length: {LARGE}\r\n")),
        "{head}"
    );
    read_large_body(&mut stream, 0, 2 << 20);
    // The reader pauses: the shard answers others meanwhile and holds a few chunks of
    // the file, not the file.
    let mut held = 0;
    for _ in 0..20 {
        assert_eq!(get(addr, "/status").body, "ok");
        held = held.max(server.memory_held());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(held < 1 << 20, "held {held} bytes for a paused reader");
    read_large_body(&mut stream, 2 << 20, LARGE - (2 << 20));
    let rest = read_to_close(&mut stream);
    assert!(
        rest.starts_with("HTTP/1.1 200 OK\r\n") && rest.ends_with("\r\n\r\nok"),
        "{rest}"
    );
}

#[test]
fn a_range_in_the_middle_of_a_large_file() {
    let tree = Tree::new();
    let path = large_file(&tree);
    let server = one_shard_server(&tree);
    // A few bytes around a marker (checked byte by byte: they are not UTF-8).
    let (start, end) = (MARKS[2] - 4, MARKS[2] + 11);
    let mut stream = raw_connect(server.local_addr());
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nRange: bytes={start}-{end}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("write");
    let head = common::read_head(&mut stream);
    assert!(
        head.starts_with("HTTP/1.1 206 Partial Content\r\n"),
        "{head}"
    );
    let content_range = format!("\r\nContent-Range: bytes {start}-{end}/{LARGE}\r\n");
    assert!(head.contains(&content_range), "{head}");
    let expected: Vec<u8> = (start..=end).map(large_byte).collect();
    assert_eq!(common::read_bytes_to_close(&mut stream), expected);
    // A range of many chunks, from an odd offset.
    let mut stream = raw_connect(server.local_addr());
    let (start, len) = (MARKS[1] - 5, 3 << 20);
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nRange: bytes={start}-{}\r\n\r\n",
        start + len - 1
    );
    stream.write_all(head.as_bytes()).expect("write");
    let head = common::read_head(&mut stream);
    assert!(
        head.starts_with("HTTP/1.1 206 Partial Content\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nContent-Length: {len}\r\n")),
        "{head}"
    );
    read_large_body(&mut stream, start, len);
    assert_eq!(read_to_close(&mut stream), "");
}

#[test]
fn a_client_that_leaves_mid_file_frees_what_it_held() {
    let tree = Tree::new();
    let path = large_file(&tree);
    let server = one_shard_server(&tree);
    let addr = server.local_addr();
    for _ in 0..3 {
        let mut stream = raw_connect(addr);
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("write");
        common::read_head(&mut stream);
        read_large_body(&mut stream, 0, 1 << 20);
        drop(stream);
    }
    let limit = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.memory_held() > 0 {
        assert!(
            std::time::Instant::now() < limit,
            "still held: {}",
            server.memory_held()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(get(addr, "/status").body, "ok");
}

#[test]
fn a_client_that_stops_sending_still_gets_the_whole_file_and_its_pipelined_answers() {
    let tree = Tree::new();
    let contents: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(tree.site().join("mid.bin"), &contents).expect("write");
    let server = one_shard_server(&tree);
    let mut stream = raw_connect(server.local_addr());
    stream
        .write_all(
            b"GET /mid.bin HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /status HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .expect("write");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let all = common::read_bytes_to_close(&mut stream);
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&all[..split]);
    assert!(head.contains("\r\nContent-Length: 700000\r\n"), "{head}");
    assert!(all[split..].starts_with(&contents), "the body differs");
    let rest = String::from_utf8_lossy(&all[split + contents.len()..]);
    assert!(
        rest.starts_with("HTTP/1.1 200 OK\r\n") && rest.ends_with("\r\n\r\nok"),
        "{rest}"
    );
}
