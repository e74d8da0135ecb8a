//! Running the `ringws` binary: `ringws serve` (or `bridge`) as a child process, and
//! the address it reports.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// `ringws serve` with `args`, and the address it reports (within 20 s).
pub fn ringws_serve(args: &[&str]) -> (Child, Result<SocketAddr, String>) {
    let base = ["serve", "--bind", "127.0.0.1:0", "--shards", "1"];
    ringws_child(&base, args, "serving ws://", "/echo")
}

/// Starts `ringws base args` and reads its address from the log line holding
/// `marker` ADDR `end`.
pub fn ringws_child(
    base: &[&str],
    args: &[&str],
    marker: &str,
    end: &str,
) -> (Child, Result<SocketAddr, String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringws"))
        .args(base)
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringws");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let (lines_tx, lines) = mpsc::channel();
    // Keeps the pipe drained for the life of the child.
    thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            return (
                child,
                Err(format!("no address from ringws {base:?}:\n{log}")),
            );
        };
        if let Some(rest) = line.split(marker).nth(1) {
            if let Some(addr) = rest.split(end).next().and_then(|a| a.parse().ok()) {
                return (child, Ok(addr));
            }
        }
        log.push_str(&line);
        log.push('\n');
    }
}

/// Runs `check` against a started child's address, then stops the child (only it: the
/// one the test started), failing with its log when it reported no address.
pub fn with_child(
    (mut child, addr): (Child, Result<SocketAddr, String>),
    check: impl FnOnce(SocketAddr),
) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check(addr.unwrap_or_else(|log| panic!("{log}")))
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
