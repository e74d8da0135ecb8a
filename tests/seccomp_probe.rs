//! Checks the seccomp helper used to simulate a container that refuses io_uring: the
//! test binary re-executes itself under the filter and the child checks that
//! `io_uring_setup` fails with EPERM while other system calls still work.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

#[path = "common/seccomp.rs"]
mod seccomp;

use std::os::unix::process::CommandExt;
use std::process::Command;

const CHILD_ENV: &str = "RINGWS_SECCOMP_CHILD";
const TEST_NAME: &str = "seccomp_filter_refuses_io_uring_setup";

#[test]
fn seccomp_filter_refuses_io_uring_setup() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // Child, under the filter: the raw system call and the io-uring crate both see EPERM.
        let mut params = [0u8; 120]; // struct io_uring_params
                                     // SAFETY: io_uring_setup(1, params) with a zeroed, large enough params struct.
        let r = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
        let errno = std::io::Error::last_os_error().raw_os_error();
        assert_eq!(
            (r, errno),
            (-1, Some(libc::EPERM)),
            "raw io_uring_setup not refused"
        );
        let e = io_uring::IoUring::new(8)
            .err()
            .expect("IoUring::new must fail");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        // Everything else still works.
        assert!(std::fs::metadata("/").is_ok());
        println!("child: io_uring_setup -> EPERM");
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1");
    // SAFETY: `deny_io_uring_setup` only calls prctl and seccomp, async-signal-safe.
    unsafe { cmd.pre_exec(seccomp::deny_io_uring_setup) };
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            eprintln!("skipping: seccomp filters unavailable here: {e}");
            return;
        }
        Err(e) => panic!("spawning the child under seccomp failed: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("child: io_uring_setup -> EPERM"),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
