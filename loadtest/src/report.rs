//! Counters, latency histograms, the human summary and the JSON report.

use crate::client::ConnError;
use crate::deflate::{DeflateAnswer, DeflateCounts};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Highest latency the histograms track, in µs (60 s); longer ones are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// A latency histogram in microseconds (1 µs .. 60 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Records `d` in µs, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    record_n(h, d, 1);
}

/// Records `count` samples of `d` in µs, clamped into the histogram's range.
pub fn record_n(h: &mut Histogram<u64>, d: Duration, count: u64) {
    let us = (d.as_micros() as u64).clamp(1, MAX_LATENCY_US);
    h.saturating_record_n(us, count);
}

/// Errors by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// TCP connect failures.
    pub connect: u64,
    /// Upgrade refused or malformed answers.
    pub handshake: u64,
    /// Protocol violations by the server, or wrong echoes.
    pub protocol: u64,
    /// Connections the server closed while in use.
    pub closed: u64,
    /// Read or write failures.
    pub io: u64,
    /// Connect, handshake or close timeouts.
    pub timeout: u64,
}

impl Errors {
    /// Counts one error.
    pub fn count(&mut self, e: &ConnError) {
        match e {
            ConnError::Connect(_) => self.connect += 1,
            ConnError::Handshake(_) => self.handshake += 1,
            ConnError::Protocol(_) => self.protocol += 1,
            ConnError::Closed(_) => self.closed += 1,
            ConnError::Io(_) => self.io += 1,
            ConnError::Timeout(_) => self.timeout += 1,
        }
    }

    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.handshake += o.handshake;
        self.protocol += o.protocol;
        self.closed += o.closed;
        self.io += o.io;
        self.timeout += o.timeout;
    }

    /// All errors.
    pub fn total(&self) -> u64 {
        self.connect + self.handshake + self.protocol + self.closed + self.io + self.timeout
    }
}

/// What one worker thread measured; merged at the end.
#[derive(Debug)]
pub struct Stats {
    /// Latencies in µs (per message for echo, per handshake for connect/idle).
    pub hist: Histogram<u64>,
    /// Messages echoed and counted (echo).
    pub messages: u64,
    /// Payload bytes echoed and counted (echo).
    pub bytes: u64,
    /// Successful handshakes.
    pub handshakes: u64,
    /// Pongs received (idle).
    pub pongs: u64,
    /// Errors by kind.
    pub errors: Errors,
    /// The first few error messages, for the summary.
    pub samples: Vec<String>,
    /// The thread hit the hard cap.
    pub timed_out: bool,
    /// permessage-deflate traffic of the connections that used it (echo `--deflate`).
    pub deflate: DeflateCounts,
    /// What the server agreed to (the first deflate connection's answer).
    pub deflate_answer: Option<DeflateAnswer>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            hist: new_histogram(),
            messages: 0,
            bytes: 0,
            handshakes: 0,
            pongs: 0,
            errors: Errors::default(),
            samples: Vec::new(),
            timed_out: false,
            deflate: DeflateCounts::default(),
            deflate_answer: None,
        }
    }
}

impl Stats {
    /// Counts an error and keeps its text if fewer than 5 are kept.
    pub fn error(&mut self, e: &ConnError, live: &Live) {
        self.errors.count(e);
        live.errors.fetch_add(1, Relaxed);
        if self.samples.len() < 5 {
            self.samples.push(e.to_string());
        }
    }

    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &Stats) {
        // Both histograms have the same bounds, so `add` cannot fail.
        let _ = self.hist.add(&o.hist);
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.handshakes += o.handshakes;
        self.pongs += o.pongs;
        self.errors.add(&o.errors);
        for s in &o.samples {
            if self.samples.len() < 5 {
                self.samples.push(s.clone());
            }
        }
        self.timed_out |= o.timed_out;
        self.deflate.merge(&o.deflate);
        if self.deflate_answer.is_none() {
            self.deflate_answer = o.deflate_answer;
        }
    }
}

/// Counters shared by all threads while running, for the progress bar.
#[derive(Debug, Default)]
pub struct Live {
    /// Messages counted so far.
    pub messages: AtomicU64,
    /// Handshakes completed so far.
    pub handshakes: AtomicU64,
    /// Connections currently open.
    pub open: AtomicU64,
    /// Connection attempts that failed.
    pub failed: AtomicU64,
    /// Errors so far.
    pub errors: AtomicU64,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl Latency {
    /// The percentiles of `h`.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }

    /// `p50 .. µs  p99 .. µs  p99.9 .. µs  max .. µs`.
    pub fn line(&self) -> String {
        format!(
            "p50 {} µs  p99 {} µs  p99.9 {} µs  max {} µs  (mean {:.1} µs, n={})",
            self.p50_us, self.p99_us, self.p999_us, self.max_us, self.mean_us, self.count
        )
    }
}

/// The `--json` output: one object per run.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a, S: Serialize, R: Serialize> {
    /// `echo`, `connect`, `idle` or `churn`.
    pub scenario: &'a str,
    /// The target URL.
    pub url: &'a str,
    /// The options the run used.
    pub settings: &'a S,
    /// What it measured.
    pub results: &'a R,
}

/// Prints the JSON report on one line to stdout.
pub fn print_json<S: Serialize, R: Serialize>(
    scenario: &str,
    url: &str,
    settings: &S,
    results: &R,
) {
    let report = JsonReport {
        scenario,
        url,
        settings,
        results,
    };
    match serde_json::to_string(&report) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("ringws-loadtest: cannot encode the JSON report: {e}"),
    }
}

/// The error line of a human summary, then one `e.g.` line per sample.
pub fn errors_block(e: &Errors, samples: &[String]) -> String {
    let mut s = errors_line(e);
    for sample in samples {
        s.push_str(&format!("\n  e.g. {sample}"));
    }
    s
}

/// The error line of a human summary.
fn errors_line(e: &Errors) -> String {
    format!(
        "errors: {} (connect {}, handshake {}, protocol {}, closed {}, io {}, timeout {})",
        e.total(),
        e.connect,
        e.handshake,
        e.protocol,
        e.closed,
        e.io,
        e.timeout
    )
}

/// Seconds as f64 for JSON.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_percentiles() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for us in 1..=1000u64 {
            record(&mut a.hist, Duration::from_micros(us));
        }
        record(&mut b.hist, Duration::from_secs(3600));
        b.errors.closed = 2;
        a.merge(&b);
        let l = Latency::of(&a.hist);
        assert_eq!(l.count, 1001);
        assert!((499..=501).contains(&l.p50_us), "{l:?}");
        assert!(l.max_us >= MAX_LATENCY_US && l.max_us < MAX_LATENCY_US + MAX_LATENCY_US / 100);
        assert_eq!(a.errors.total(), 2);
        assert_eq!(Latency::of(&new_histogram()), Latency::default());
    }
}
