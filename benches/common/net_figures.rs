//! Shared by the throughput and recovery benches: medians, ratios, the receiving
//! thread's and the process's CPU time, free ports, and the markdown section each bench writes to
//! `target/bench-results/<bench>.md` and prints.
//!
//! Include with `#[path = "common/net_figures.rs"] mod net_figures;`.
#![allow(dead_code, unreachable_pub)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// The median of `values` (the mean of the middle two for an even count), NaNs
/// left out; NaN when nothing is left.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The smallest and largest of `values`.
pub fn spread(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        })
}

/// `value / baseline` as a percentage, `—` when it cannot be computed.
pub fn percent(value: f64, baseline: f64) -> String {
    if value.is_finite() && baseline.is_finite() && baseline > 0.0 {
        format!("{:.1} %", 100.0 * value / baseline)
    } else {
        "—".to_owned()
    }
}

/// `value / baseline` as a factor (`×1.23`), `—` when it cannot be computed.
pub fn factor(value: f64, baseline: f64) -> String {
    if value.is_finite() && baseline.is_finite() && baseline > 0.0 {
        format!("×{:.2}", value / baseline)
    } else {
        "—".to_owned()
    }
}

/// A duration in milliseconds without decimals, `—` for none.
pub fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "—".to_owned(),
        |d| format!("{:.0}", d.as_secs_f64() * 1e3),
    )
}

/// A count with thin-space thousands separators.
pub fn thousands(n: f64) -> String {
    if !n.is_finite() {
        return "—".to_owned();
    }
    let digits = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    if n < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// CPU time the calling thread has had, from `/proc/thread-self/schedstat`
/// (nanoseconds, scheduler accounting); `None` where that file does not exist.
pub fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// A reading of the whole process's CPU time, for [`ProcessCpu::since`].
#[derive(Debug, Clone)]
pub struct ProcessCpu {
    /// `utime + stime` of `/proc/self/stat`: every thread, living or gone, in ticks.
    total: Duration,
    /// Each living thread's scheduler time (`/proc/self/task/<tid>/schedstat`, ns).
    threads: Vec<(u64, Duration)>,
}

impl ProcessCpu {
    /// The process's CPU time now; `None` where `/proc` cannot tell.
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name may hold spaces; the fields after it do not.
        let after = stat.get(stat.rfind(')')? + 2..)?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let mut threads = Vec::new();
        for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // A thread that ended since the listing has no file any more.
            let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
                continue;
            };
            if let Some(ns) = text.split_whitespace().next().and_then(|v| v.parse().ok()) {
                threads.push((tid, Duration::from_nanos(ns)));
            }
        }
        Some(Self {
            total: clock_tick().mul_f64(ticks as f64),
            threads,
        })
    }

    /// The CPU time the process used between `earlier` and this reading: the
    /// nanosecond accounting of the threads living now (a thread started meanwhile
    /// counts from zero), unless the tick accounting of the whole process says that
    /// threads gone meanwhile used more than two ticks, in which case that.
    pub fn since(&self, earlier: &Self) -> Duration {
        let precise: Duration = self
            .threads
            .iter()
            .map(|(tid, now)| {
                let before = earlier
                    .threads
                    .iter()
                    .find(|(t, _)| t == tid)
                    .map_or(Duration::ZERO, |(_, d)| *d);
                now.saturating_sub(before)
            })
            .sum();
        let coarse = self.total.saturating_sub(earlier.total);
        if coarse > precise + 2 * clock_tick() {
            coarse
        } else {
            precise
        }
    }
}

/// One clock tick (`getconf CLK_TCK`; 1/100 s, Linux's value, when it cannot be asked).
pub fn clock_tick() -> Duration {
    static TICK: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *TICK.get_or_init(|| {
        let per_sec = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(100);
        Duration::from_secs(1) / per_sec
    })
}

/// A UDP port free right now on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port on loopback")
}

/// Whether `program` is on the PATH.
pub fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// One bench's results: a markdown section, written to
/// `$CARGO_MANIFEST_DIR/target/bench-results/<bench>.md` and printed.
pub struct Section {
    bench: &'static str,
    text: String,
}

impl Section {
    /// A section titled `title` for the bench binary `bench`.
    pub fn new(bench: &'static str, title: &str) -> Self {
        Self {
            bench,
            text: format!("## {title}\n\n"),
        }
    }

    /// A paragraph.
    pub fn para(&mut self, text: &str) {
        let _ = writeln!(self.text, "{}\n", text.trim());
    }

    /// A table: a header row and the rows under it.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        let _ = writeln!(self.text, "| {} |", header.join(" | "));
        let _ = writeln!(
            self.text,
            "|{}",
            header.iter().map(|_| "---|").collect::<String>()
        );
        for row in rows {
            let _ = writeln!(self.text, "| {} |", row.join(" | "));
        }
        self.text.push('\n');
    }

    /// A line of the summary `scripts/bench.sh` collects into BENCHMARKS.md's target
    /// table: `figure | target | measured | met`, kept in an HTML comment so that the
    /// section itself reads cleanly.
    pub fn target(&mut self, figure: &str, target: &str, measured: &str, met: bool) {
        let _ = writeln!(
            self.text,
            "<!-- target: {figure} | {target} | {measured} | {} -->",
            if met { "yes" } else { "no" }
        );
    }

    /// Write the section to its file and print it.
    pub fn finish(self) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("bench-results");
        let path = dir.join(format!("{}.md", self.bench));
        match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &self.text)) {
            Ok(()) => eprintln!("results written to {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
        println!("{}", self.text);
    }
}
