//! Test helper: what a test does when a real part it needs is missing on this machine
//! (io_uring refused, redis-server not installed, seccomp filters unavailable).
//!
//! By default the test skips and says why on the process's real standard error, which
//! the test harness does not capture, so a skip is seen in every `cargo test` run.
//! With `RINGWS_TEST_STRICT=1` (set by `.ci/run`) a missing part fails the test instead:
//! CI must never go green on a run that silently tested less than it claims.
//!
//! Shared by the integration tests (`mod common`) and the library's unit tests
//! (`#[path]`), so there is one rule for both.
#![allow(dead_code)]

use std::fmt::Display;
use std::io::Write;

/// The variable that turns skips into failures.
pub const STRICT_ENV: &str = "RINGWS_TEST_STRICT";

/// True when `RINGWS_TEST_STRICT` is set to anything but `0` or the empty string.
pub fn strict() -> bool {
    std::env::var(STRICT_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A dependency of the calling test is missing: panics in strict mode, otherwise
/// prints `SKIPPED <test>: <why>` past the harness's capture and returns, so the
/// caller returns early.
#[track_caller]
pub fn skip(why: impl Display) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test thread>")
        .to_owned();
    if strict() {
        panic!("{STRICT_ENV}=1 and a dependency is missing, so {test} fails instead of skipping: {why}");
    }
    // Straight to fd 2: `eprintln!` would be captured and shown only on failure.
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test}: {why} (set {STRICT_ENV}=1 to fail instead)"
    );
}
