//! `BENCH_QUICK=1`: every bench with small counts and short durations, to check that it
//! runs and writes its section, not to measure. A section written in quick mode says
//! so, so that its figures are not taken for a full run's.
//!
//! Include with `#[path = "common/quick.rs"] mod quick;`.
#![allow(dead_code, unreachable_pub)]

/// The environment variable that turns quick mode on (any value but empty or `0`).
pub const QUICK_VAR: &str = "BENCH_QUICK";

/// Whether this run is a quick one.
pub fn quick() -> bool {
    std::env::var_os(QUICK_VAR).is_some_and(|v| !v.is_empty() && v != "0")
}

/// `full` normally, `small` in quick mode.
pub fn pick<T>(full: T, small: T) -> T {
    if quick() {
        small
    } else {
        full
    }
}

/// Criterion's settings: `full` normally; in quick mode ten samples over a fraction of
/// a second.
pub fn criterion(full: criterion::Criterion) -> criterion::Criterion {
    if quick() {
        criterion::Criterion::default()
            .sample_size(10)
            .warm_up_time(std::time::Duration::from_millis(100))
            .measurement_time(std::time::Duration::from_millis(300))
    } else {
        full
    }
}

/// The paragraph a section opens with in quick mode; `None` in a full run.
pub fn notice() -> Option<String> {
    quick().then(|| {
        format!(
            "**Quick run ({QUICK_VAR}=1): counts and durations cut to check that the bench \
             works; these figures are not comparable with a full run's.**"
        )
    })
}
