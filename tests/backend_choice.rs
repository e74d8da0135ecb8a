//! The backend a test run really runs on: `RINGWS_BACKEND=epoll` gets epoll, and the auto
//! choice gets io_uring wherever the kernel offers it, so the "auto" leg of `.ci/run`
//! cannot silently test epoll twice. Under `RINGWS_TEST_STRICT=1` a machine without
//! io_uring fails here instead of skipping.

mod common;

use ringws::Backend;

#[test]
fn the_run_gets_the_backend_it_asks_for() {
    let server = common::builder()
        .websocket("/echo", || common::Echo)
        .build()
        .expect("build");
    let chosen = server.backend();
    let asked = std::env::var("RINGWS_BACKEND").unwrap_or_default();
    match asked.as_str() {
        "epoll" => assert_eq!(chosen, Backend::Epoll),
        "uring" => assert_eq!(chosen, Backend::Uring),
        "" | "auto" => {
            if chosen == Backend::Uring {
                return;
            }
            assert_eq!(chosen, Backend::Epoll);
            // Auto fell back: fine only where the kernel really refuses a ring or is older
            // than the multishot operations ringws needs (6.0).
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
            let major: u32 = release
                .split('.')
                .next()
                .and_then(|m| m.trim().parse().ok())
                .unwrap_or(0);
            match io_uring::IoUring::new(8) {
                Ok(_) if major >= 6 => panic!(
                    "kernel {} creates io_uring instances, yet the auto choice ran epoll",
                    release.trim()
                ),
                Ok(_) => common::skip::skip(format_args!(
                    "kernel {} predates the io_uring operations ringws needs: the auto run tests epoll",
                    release.trim()
                )),
                Err(error) => common::skip::skip(format_args!(
                    "io_uring unavailable ({error}): the auto run tests epoll"
                )),
            }
        }
        other => panic!("unknown RINGWS_BACKEND={other:?}"),
    }
}

/// Strict mode really fails where io_uring is refused: this test re-executes the one
/// above under a seccomp filter that refuses `io_uring_setup` (as Docker's default
/// profile does), once strict (it must fail, naming the missing part) and once plain
/// (it must pass and say on stderr that it skipped).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn strict_mode_fails_the_auto_run_when_io_uring_is_refused() {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().expect("current_exe");
    for strict in [true, false] {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args([
            "--exact",
            "the_run_gets_the_backend_it_asks_for",
            "--test-threads=1",
        ])
        .env_remove("RINGWS_BACKEND")
        .env_remove(common::skip::STRICT_ENV);
        if strict {
            cmd.env(common::skip::STRICT_ENV, "1");
        }
        // SAFETY: `deny_io_uring_setup` only calls prctl and seccomp, async-signal-safe.
        unsafe { cmd.pre_exec(common::seccomp::deny_io_uring_setup) };
        let out = match cmd.output() {
            Ok(out) => out,
            Err(e) => {
                common::skip::skip(format_args!("cannot install a seccomp filter here: {e}"));
                return;
            }
        };
        let all = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if strict {
            assert!(!out.status.success(), "strict run passed:\n{all}");
            assert!(
                all.contains("RINGWS_TEST_STRICT=1 and a dependency is missing")
                    && all.contains("io_uring unavailable"),
                "{all}"
            );
        } else {
            assert!(out.status.success(), "plain run failed:\n{all}");
            assert!(
                all.contains("SKIPPED the_run_gets_the_backend_it_asks_for: io_uring unavailable"),
                "{all}"
            );
        }
    }
}
