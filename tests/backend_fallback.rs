//! io_uring refused (as by Docker's default seccomp profile): the seccomp helper really
//! refuses it, `ringws serve` falls back to epoll with the reason logged and serves, and
//! an explicit `--backend uring` fails with a clear error instead of a panic.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

#[path = "common/seccomp.rs"]
mod seccomp;
#[path = "common/skip.rs"]
mod skip;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

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
            skip::skip(format_args!("seccomp filters unavailable here: {e}"));
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

/// Starts `ringws serve` under the filter with `args`.
fn ringws_without_io_uring(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringws"));
    cmd.arg("serve")
        .args(args)
        .env_remove("RINGWS_BACKEND")
        .env("RUST_LOG", "info");
    // SAFETY: `deny_io_uring_setup` only calls prctl and seccomp, async-signal-safe.
    unsafe { cmd.pre_exec(seccomp::deny_io_uring_setup) };
    cmd
}

#[test]
fn serve_falls_back_to_epoll_when_io_uring_is_refused() {
    let mut child = ringws_without_io_uring(&["--bind", "127.0.0.1:0", "--shards", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringws");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut log = String::new();
    let mut addr = None;
    while addr.is_none() {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(rest) = line.split("serving ws://").nth(1) {
            addr = rest.split("/echo").next().map(str::to_owned);
        }
        log.push_str(&line);
    }
    let outcome = std::panic::catch_unwind(|| {
        let addr = addr
            .clone()
            .unwrap_or_else(|| panic!("server did not start:\n{log}"));
        assert!(
            log.contains("backend: epoll (io_uring unavailable: io_uring_setup refused"),
            "the fallback and its reason must be logged:\n{log}"
        );
        let mut stream = TcpStream::connect(addr.as_str()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let request = format!(
            "GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("write");
        // A masked "hi" right behind the handshake.
        stream
            .write_all(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2])
            .expect("write");
        let mut response = Vec::new();
        let mut byte = [0u8; 1];
        while !response.ends_with(&[0x81, 0x02, b'h', b'i']) {
            assert_eq!(stream.read(&mut byte).expect("read"), 1, "{response:?}");
            response.push(byte[0]);
        }
        assert!(response.starts_with(b"HTTP/1.1 101 "));
    });
    // Stop only the child this test started.
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn explicit_uring_backend_fails_cleanly_when_refused() {
    let output = ringws_without_io_uring(&["--bind", "127.0.0.1:0", "--backend", "uring"])
        .output()
        .expect("run ringws");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "must not start: {stderr}");
    assert!(
        stderr.contains("io_uring unavailable: io_uring_setup refused"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
