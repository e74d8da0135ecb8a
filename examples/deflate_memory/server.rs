//! The measured server: a one-shard echo server in a child process.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use ringws::{Accept, Conn, DeflateOptions, Handler, Message, Server, WebSocketOptions};

use super::*;

// ---------------------------------------------------------------------------------
// The server (child process)
// ---------------------------------------------------------------------------------

pub(crate) struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }
}

pub(crate) fn rss() -> isize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<isize>().ok())
        .unwrap_or(0);
    kib * 1024
}

pub(crate) fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of glibc's arenas to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `--serve MODE BUDGET HIBERNATE_MS`: runs the echo server, prints `ADDR a`, then
/// answers each `sample` / `trim` line on stdin with `heap rss`; ends at EOF.
pub(crate) fn serve(args: &[String]) -> std::io::Result<()> {
    let [mode, budget, hibernate_ms] = args else {
        return Err(std::io::Error::other(USAGE));
    };
    let budget: usize = budget.parse().map_err(std::io::Error::other)?;
    let hibernate = Duration::from_millis(hibernate_ms.parse().map_err(std::io::Error::other)?);
    let deflate = match mode.as_str() {
        "off" => None,
        "no-context-takeover" => Some(DeflateOptions::no_context_takeover()),
        "takeover" => Some(DeflateOptions::context_takeover()),
        "takeover-9" => Some(
            DeflateOptions::context_takeover()
                .server_max_window_bits(9)
                .client_max_window_bits(9),
        ),
        _ => return Err(std::io::Error::other(USAGE)),
    };
    let mut options = WebSocketOptions::default();
    if let Some(deflate) = deflate {
        options = options.deflate(deflate.hibernate_after(hibernate).max_live_streams(budget));
    }
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .shards(1)
        .websocket_with_options("/echo", options, |_| Ok(Accept::new(Echo)))
        .build()?
        .start()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ADDR {}", server.local_addr())?;
    out.flush()?;
    let mut line = String::new();
    let stdin = std::io::stdin();
    while {
        line.clear();
        stdin.read_line(&mut line)? > 0
    } {
        if line.trim() == "trim" {
            trim();
        }
        // Let the shard finish what it was doing.
        std::thread::sleep(Duration::from_millis(300));
        writeln!(out, "{} {}", HEAP.load(Relaxed), rss())?;
        out.flush()?;
    }
    server.shutdown()
}

/// The parent's handle on a `--serve` child.
pub(crate) struct ServerProcess {
    pub(crate) child: Child,
    pub(crate) input: ChildStdin,
    pub(crate) output: BufReader<ChildStdout>,
    pub(crate) addr: SocketAddr,
}

impl ServerProcess {
    pub(crate) fn spawn(row: Row, hibernate_ms: u64) -> std::io::Result<ServerProcess> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "--serve".to_string(),
                row.mode.to_string(),
                row.budget.to_string(),
                hibernate_ms.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let input = child.stdin.take().expect("piped stdin");
        let mut output = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        output.read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("ADDR ")
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("server said {line:?}")))?;
        Ok(ServerProcess {
            child,
            input,
            output,
            addr,
        })
    }

    /// The server's (heap, RSS) after it settled; `trim` first runs `malloc_trim(0)`.
    pub(crate) fn sample(&mut self, command: &str) -> std::io::Result<(isize, isize)> {
        writeln!(self.input, "{command}")?;
        self.input.flush()?;
        let mut line = String::new();
        self.output.read_line(&mut line)?;
        let mut numbers = line.split_whitespace().map(str::parse::<isize>);
        match (numbers.next(), numbers.next()) {
            (Some(Ok(heap)), Some(Ok(rss))) => Ok((heap, rss)),
            _ => Err(std::io::Error::other(format!("server said {line:?}"))),
        }
    }

    pub(crate) fn stop(self) -> std::io::Result<()> {
        let ServerProcess {
            mut child, input, ..
        } = self;
        drop(input);
        child.wait()?;
        Ok(())
    }
}
