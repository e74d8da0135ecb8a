//! The fuzz targets' bodies, compiled with the workspace and run over every committed
//! seed (`fuzz/seeds/<target>/`): the fuzz crate lives outside the workspace (it needs
//! nightly and sanitizers), so without this its targets could rot unseen. Each target in
//! `fuzz/fuzz_targets/` is a one-line wrapper around the same `run` used here.

#[path = "../fuzz/fuzz_targets/common/decode.rs"]
mod decode;
#[path = "../fuzz/fuzz_targets/common/deflate_offer.rs"]
mod deflate_offer;
#[path = "../fuzz/fuzz_targets/common/handshake.rs"]
mod handshake;
#[path = "../fuzz/fuzz_targets/common/hixie.rs"]
mod hixie;
#[path = "../fuzz/fuzz_targets/common/http_request.rs"]
mod http_request;
#[path = "../fuzz/fuzz_targets/common/inflate.rs"]
mod inflate;
#[path = "../fuzz/fuzz_targets/common/session.rs"]
mod session;
#[path = "../fuzz/fuzz_targets/common/sockjs_body.rs"]
mod sockjs_body;

use std::path::Path;

use ringws::proto::Role;

/// Runs `body` over every seed of `target`; a target without seeds fails.
fn replay(target: &str, body: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("seed entry").path())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    for seed in seeds {
        let data = std::fs::read(&seed).expect("read seed");
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "{target} fails on {}", seed.display());
    }
}

#[test]
fn decode_seeds() {
    replay("decode", |data| decode::run(Role::Server, data));
}

#[test]
fn decode_client_seeds() {
    replay("decode_client", |data| decode::run(Role::Client, data));
}

#[test]
fn deflate_offer_seeds() {
    replay("deflate_offer", deflate_offer::run);
}

#[test]
fn handshake_seeds() {
    replay("handshake", handshake::run);
}

#[test]
fn hixie_seeds() {
    replay("hixie", hixie::run);
}

#[test]
fn http_request_seeds() {
    replay("http_request", http_request::run);
}

#[test]
fn sockjs_body_seeds() {
    replay("sockjs_body", sockjs_body::run);
}

#[test]
fn inflate_seeds() {
    replay("inflate", inflate::run);
}

#[test]
fn session_seeds() {
    replay("session", session::run);
}

/// The handshake target's answer check catches what it is there for: a CR or LF from
/// the input inside a header line, a bare LF, a head never ended, a wrong length.
#[test]
fn the_handshake_answer_check_catches_split_headers() {
    let good = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno";
    handshake::check_answer(good);
    let bad: [&[u8]; 5] = [
        b"HTTP/1.1 400 Bad Request\r\nX-Reason: a\rb\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 400 Bad Request\r\nX-Reason: a\nInjected: 1\r\n\r\n",
        b"HTTP/1.1 400 Bad Request\r\nX-Reason: a\r\n",
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nno",
        b"HTTP/1.1 400 Bad Request\r\nX Reason: a\r\n\r\n",
    ];
    for answer in bad {
        let caught = std::panic::catch_unwind(|| handshake::check_answer(answer));
        assert!(
            caught.is_err(),
            "not caught: {:?}",
            String::from_utf8_lossy(answer)
        );
    }
}
