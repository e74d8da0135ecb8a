//! Shared command-line handling and runtime setup for the peer echo servers.
//!
//! Each binary takes `--bind ADDR` (default `127.0.0.1:9002`) and `--threads N`
//! (default 1: a current-thread tokio runtime; N > 1: a multi-thread runtime with N
//! workers).

use std::net::SocketAddr;

/// Largest message (and frame) the peers accept: 64 MiB, as ringws' default.
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Parsed command line.
#[derive(Debug, Clone)]
pub struct Args {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Tokio worker threads (1 = current-thread runtime).
    pub threads: usize,
}

const USAGE: &str = "usage: [--bind 127.0.0.1:9002] [--threads N]";

impl Args {
    /// Parses `std::env::args()`, exiting with a usage line on error.
    pub fn from_env() -> Args {
        match Args::parse(std::env::args().skip(1)) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("{e}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }

    /// Parses the arguments after the program name.
    pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut args = Args {
            bind: "127.0.0.1:9002".parse().map_err(|e| format!("{e}"))?,
            threads: 1,
        };
        while let Some(a) = it.next() {
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (a, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or(format!("{name} needs a value"))
            };
            match name.as_str() {
                "--bind" => {
                    let v = value()?;
                    args.bind = v.parse().map_err(|e| format!("--bind {v}: {e}"))?;
                }
                "--threads" => {
                    let v = value()?;
                    args.threads = v.parse().map_err(|e| format!("--threads {v}: {e}"))?;
                    if args.threads == 0 {
                        return Err("--threads must be at least 1".into());
                    }
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(args)
    }

    /// The tokio runtime these arguments ask for.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        if self.threads == 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(self.threads)
                .enable_all()
                .build()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<Args, String> {
        Args::parse(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_and_flags() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.bind.to_string(), "127.0.0.1:9002");
        assert_eq!(a.threads, 1);
        let a = parse(&["--bind", "127.0.0.1:1234", "--threads=3"]).unwrap();
        assert_eq!(a.bind.port(), 1234);
        assert_eq!(a.threads, 3);
        assert!(parse(&["--threads", "0"]).is_err());
        assert!(parse(&["--nope"]).is_err());
        assert!(parse(&["--bind"]).is_err());
    }
}
