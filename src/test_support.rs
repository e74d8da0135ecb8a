//! Helpers for the library's own unit tests.
//!
//! The skip rule is the integration tests' one (`tests/common/skip.rs`), included here so
//! a missing io_uring or seccomp fails a unit test under `RINGWS_TEST_STRICT=1` exactly as
//! it fails an integration test.

#[path = "../tests/common/skip.rs"]
mod skip;

pub(crate) use skip::skip;

mod self_test {
    use super::skip::{skip, STRICT_ENV};

    // The one test of the strict switch itself: it runs its checks in a child process so
    // that setting the variable cannot leak into tests running beside it.
    #[test]
    fn skip_panics_only_in_strict_mode() {
        const CHILD: &str = "RINGWS_SKIP_SELF_TEST_CHILD";
        if let Ok(mode) = std::env::var(CHILD) {
            let outcome = std::panic::catch_unwind(|| skip("a part is missing"));
            match mode.as_str() {
                "strict" => assert!(outcome.is_err(), "strict mode must fail"),
                _ => assert!(outcome.is_ok(), "a plain run must skip"),
            }
            println!("child ok: {mode}");
            return;
        }
        let exe = std::env::current_exe().expect("current_exe");
        let name = module_path!().split_once("::").map_or("", |(_, rest)| rest);
        let name = format!("{name}::skip_panics_only_in_strict_mode");
        for (mode, strict_value) in [("strict", Some("1")), ("plain", None), ("plain", Some("0"))] {
            let mut cmd = std::process::Command::new(&exe);
            cmd.args(["--exact", &name, "--nocapture", "--test-threads=1"])
                .env(CHILD, mode)
                .env_remove(STRICT_ENV);
            if let Some(value) = strict_value {
                cmd.env(STRICT_ENV, value);
            }
            let out = cmd.output().expect("run the child");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains(&format!("child ok: {mode}")),
                "{mode} ({strict_value:?}): {}\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A starting instant for the sans-I/O layers' unit tests: the code under test reads no
/// clock (`now` is passed in), so the tests pick one here, the only place they read it.
pub(crate) fn t0() -> std::time::Instant {
    std::time::Instant::now()
}
