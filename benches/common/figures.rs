//! Shared by the detection and scale benches: order statistics, readable durations,
//! markdown tables, and writing a bench's section to `target/bench-results/`.

#![allow(dead_code, unreachable_pub)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// The value at quantile `q` (0 to 1) of `values`, by nearest rank; NaN when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `values` (the mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The median of durations.
pub fn median_duration(values: &[Duration]) -> Duration {
    let secs: Vec<f64> = values.iter().map(Duration::as_secs_f64).collect();
    Duration::from_secs_f64(median(&secs).max(0.0))
}

/// A duration in seconds, written with a unit that keeps three significant figures.
pub fn secs(s: f64) -> String {
    if !s.is_finite() {
        return "—".to_owned();
    }
    let a = s.abs();
    let (v, unit) = if a >= 1.0 {
        (s, "s")
    } else if a >= 1e-3 {
        (s * 1e3, "ms")
    } else if a >= 1e-6 {
        (s * 1e6, "µs")
    } else {
        (s * 1e9, "ns")
    };
    format!("{} {unit}", sig3(v))
}

/// A duration, as [`secs`] writes it.
pub fn dur(d: Duration) -> String {
    secs(d.as_secs_f64())
}

/// `v` with three significant figures (integers above 100 as they are).
pub fn sig3(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "—".to_owned()
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        let decimals = (2.0 - a.log10().floor()).max(0.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// A ratio, as `1.23×`.
pub fn ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{}×", sig3(r))
    } else {
        "—".to_owned()
    }
}

/// A byte count, in KiB or MiB.
pub fn bytes(b: f64) -> String {
    if b.abs() >= 1024.0 * 1024.0 {
        format!("{} MiB", sig3(b / (1024.0 * 1024.0)))
    } else if b.abs() >= 1024.0 {
        format!("{} KiB", sig3(b / 1024.0))
    } else {
        format!("{b:.0} B")
    }
}

/// A markdown section being written.
#[derive(Debug, Default)]
pub struct Section {
    text: String,
}

impl Section {
    /// A section titled `title` (it starts with `## `).
    pub fn new(title: &str) -> Self {
        let mut s = Self::default();
        let _ = writeln!(s.text, "## {title}\n");
        s
    }

    /// A paragraph.
    pub fn para(&mut self, text: &str) {
        let _ = writeln!(self.text, "{}\n", text.trim());
    }

    /// A sub-heading.
    pub fn heading(&mut self, title: &str) {
        let _ = writeln!(self.text, "### {title}\n");
    }

    /// A table.
    pub fn table(&mut self, headers: &[&str], rows: &[Vec<String>]) {
        let _ = writeln!(self.text, "| {} |", headers.join(" | "));
        let rule: Vec<&str> = headers.iter().map(|_| "---").collect();
        let _ = writeln!(self.text, "|{}|", rule.join("|"));
        for row in rows {
            let _ = writeln!(self.text, "| {} |", row.join(" | "));
        }
        self.text.push('\n');
    }

    /// A line of the target table `scripts/bench.sh` collects into BENCHMARKS.md:
    /// `figure | target | measured | met`, in an HTML comment so the section reads
    /// cleanly.
    pub fn target(&mut self, figure: &str, target: &str, measured: &str, met: bool) {
        let met = if met { "yes" } else { "no" };
        let _ = writeln!(
            self.text,
            "<!-- target: {figure} | {target} | {measured} | {met} -->"
        );
    }

    /// Write the section to `target/bench-results/<bench>.md` under the package and
    /// print it.
    pub fn publish(&self, bench: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("bench-results");
        let path = dir.join(format!("{bench}.md"));
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, self.text.as_bytes()));
        println!("{}", self.text);
        match written {
            Ok(()) => println!("(written to {})", path.display()),
            Err(e) => eprintln!("could not write {}: {e}", path.display()),
        }
    }
}

/// Progress on stderr, so that stdout holds only the section.
pub fn progress(message: &str) {
    eprintln!("[{:>7.1}s] {message}", started().elapsed().as_secs_f64());
}

fn started() -> std::time::Instant {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    *START.get_or_init(std::time::Instant::now)
}
