//! Shared pieces of the benchmark binaries: argument parsing, peak-RSS reading, the timing loop
//! and table printing; child processes ([`child`]), the workload ([`workload`]), the consumer
//! under test ([`consumer`]) and the DynamoDB stand-in ([`standin`]).
//!
//! Benchmarks, not tests: nothing here runs under `cargo test`'s timing. Each binary prints a
//! table meant to be pasted into `docs/BENCHMARKS.md`, and every number in it comes from one run
//! of `scripts/bench.sh`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub mod child;
pub mod consumer;
pub mod standin;
pub mod workload;

/// Why a benchmark could not run or produced numbers that cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("usage: {0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

impl BenchError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// `--name value` pairs and bare positional words, in the order given.
#[derive(Debug, Default)]
pub struct Args {
    named: HashMap<String, String>,
    positional: Vec<String>,
}

impl Args {
    /// Parses `std::env::args()` minus the program name. Every `--flag` takes one value.
    pub fn from_env() -> Result<Self, BenchError> {
        Self::parse(std::env::args().skip(1))
    }

    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, BenchError> {
        let mut out = Self::default();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let (name, value) = match name.split_once('=') {
                    Some((n, v)) => (n.to_owned(), v.to_owned()),
                    None => {
                        let v = it
                            .next()
                            .ok_or_else(|| BenchError::Usage(format!("--{name} needs a value")))?;
                        (name.to_owned(), v)
                    }
                };
                out.named.insert(name, value);
            } else {
                out.positional.push(a);
            }
        }
        Ok(out)
    }

    pub fn positional(&self, i: usize) -> Option<&str> {
        self.positional.get(i).map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.named.get(name).map(String::as_str)
    }

    pub fn get_or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.get(name).unwrap_or(default)
    }

    /// A required named value.
    pub fn need(&self, name: &str) -> Result<&str, BenchError> {
        self.get(name)
            .ok_or_else(|| BenchError::Usage(format!("--{name} is required")))
    }

    /// A number, with `_` separators allowed (`1_000_000`).
    pub fn number(&self, name: &str, default: u64) -> Result<u64, BenchError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_number(v),
        }
    }
}

/// `1000000`, `1_000_000`, `1m`, `100k`.
pub fn parse_number(v: &str) -> Result<u64, BenchError> {
    let t = v.trim().replace('_', "").to_ascii_lowercase();
    let (digits, factor) = if let Some(d) = t.strip_suffix('m') {
        (d, 1_000_000)
    } else if let Some(d) = t.strip_suffix('k') {
        (d, 1_000)
    } else {
        (t.as_str(), 1)
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| BenchError::Usage(format!("`{v}` is not a count")))
}

/// A multi-threaded tokio runtime with I/O and timers, as the Lambda runs.
pub fn runtime() -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("cannot start the tokio runtime"))
}

/// A `/proc/self/status` field in kB (`VmHWM`, `VmRSS`); `None` off Linux.
///
/// VmHWM is the process's resident-set high-water mark, so it is only meaningful per process:
/// the ingest benchmark runs each measured ingest in a child of its own for that reason.
pub fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// User + system CPU time of this process (all threads) so far, in seconds; `None` off Linux.
///
/// Wall time on a shared 2-core machine depends on what else runs; CPU time per row does not, so
/// the ingest table reports both. `/proc` counts in USER_HZ ticks, which Linux fixes at 100/s.
pub fn proc_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the `(comm)` that may itself hold spaces; utime and stime are fields 14, 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Result of timing one operation.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Median over the samples of the mean time per call, in µs.
    pub median_us: f64,
    /// Fastest sample's mean time per call, in µs.
    pub min_us: f64,
    /// Calls per sample.
    pub iterations: u64,
    pub samples: usize,
}

/// Times `op` the way `timeit.autorange` + `repeat` does, so the Rust and Python numbers are
/// taken alike: grow the call count until one sample lasts at least `sample_time`, then take
/// `samples` samples and keep the median (and the minimum) per-call time.
pub fn time_op(samples: usize, sample_time: Duration, mut op: impl FnMut()) -> Timing {
    // Warm caches, the branch predictor and the allocator.
    for _ in 0..3 {
        op();
    }
    let mut n: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            op();
        }
        if t.elapsed() >= sample_time || n >= 1 << 40 {
            break;
        }
        n = n.saturating_mul(2);
    }
    let mut per_call: Vec<f64> = (0..samples.max(1))
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                op();
            }
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    Timing {
        median_us: per_call[per_call.len() / 2],
        min_us: per_call[0],
        iterations: n,
        samples: per_call.len(),
    }
}

/// A Markdown table padded for the terminal: the first `left` columns left-aligned (labels),
/// the rest right-aligned (numbers), so it can be pasted into the docs as is.
pub fn render_table(header: &[&str], left: usize, rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let parts: Vec<String> = (0..cols)
            .map(|i| {
                let c = cells.get(i).map_or("", String::as_str);
                if i < left {
                    format!(" {c:<w$} ", w = widths[i])
                } else {
                    format!(" {c:>w$} ", w = widths[i])
                }
            })
            .collect();
        format!("|{}|\n", parts.join("|"))
    };
    let head: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut out = line(&head);
    let rule: Vec<String> = (0..cols)
        .map(|i| {
            if i < left {
                "-".repeat(widths[i] + 2)
            } else {
                format!("{}:", "-".repeat(widths[i] + 1))
            }
        })
        .collect();
    out.push_str(&format!("|{}|\n", rule.join("|")));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// `1234567.8` → `1 234 568` (thin grouping keeps wide numbers readable in a terminal).
pub fn group(n: f64) -> String {
    let s = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Nearest-rank quantile (`q` in 0..=1) of unsorted samples; NaN for none. Used for latency
/// percentiles, where interpolating between two observed latencies would report one never seen.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = (q * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn numbers_accept_suffixes_and_separators() {
        assert_eq!(parse_number("1_000_000").unwrap(), 1_000_000);
        assert_eq!(parse_number("100k").unwrap(), 100_000);
        assert_eq!(parse_number("1m").unwrap(), 1_000_000);
        assert!(parse_number("ten").is_err());
    }

    #[test]
    fn args_take_values_inline_or_next() {
        let a = Args::parse(
            ["run", "--lines", "10", "--store=sqlite"]
                .iter()
                .map(|s| (*s).to_owned()),
        )
        .unwrap();
        assert_eq!(a.positional(0), Some("run"));
        assert_eq!(a.number("lines", 0).unwrap(), 10);
        assert_eq!(a.get("store"), Some("sqlite"));
        assert!(Args::parse(["--lines".to_owned()]).is_err());
    }

    #[test]
    fn grouping_and_tables() {
        assert_eq!(group(1_234_567.8), "1 234 568");
        assert_eq!(group(12.0), "12");
        let t = render_table(&["a", "bb"], 1, &[vec!["x".into(), "1".into()]]);
        assert_eq!(t, "| a | bb |\n|---|---:|\n| x |  1 |\n");
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let s: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        assert_eq!(quantile(&s, 0.5), 5.0);
        assert_eq!(quantile(&s, 0.9), 9.0);
        assert_eq!(quantile(&s, 0.99), 10.0);
        assert_eq!(quantile(&s, 0.0), 1.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn own_status_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(proc_status_kb("VmHWM").unwrap() > 0);
            assert!(proc_cpu_seconds().unwrap() >= 0.0);
        }
    }
}
