//! Results of the benchmark: the printed table, the targets' verdicts and the JSON records.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::load::{Measurement, Settings};
use super::procfs::CpuUsage;
use super::scenarios::Check;
use crate::suite::Service;

/// One measured run: the baseline of a service, or a scenario.
pub struct Run {
    /// Name in the table: `baseline identity`, or the scenario's name.
    pub name: String,
    /// The service the calls went to.
    pub service: &'static Service,
    /// The gRPC method called, `package.Service/Method`.
    pub method: &'static str,
    /// What the load generator counted.
    pub measurement: Measurement,
    /// Peak RSS during the run (warm-up included) of each service process, by binary name;
    /// `None` when it could not be read.
    pub peak_rss_mib: BTreeMap<&'static str, Option<f64>>,
    /// CPU used during the measured window.
    pub cpu: CpuUsage,
    /// Calls per second of the service's baseline, for a scenario.
    pub baseline_rps: Option<f64>,
    /// Facts to print with the result.
    pub notes: Vec<String>,
}

impl Run {
    /// Calls per second relative to the baseline's.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline_rps
            .filter(|baseline| *baseline > 0.0)
            .map(|baseline| self.measurement.rps() / baseline)
    }

    /// Peak RSS of the service with short name `name`.
    fn rss_of(&self, name: &str) -> Option<f64> {
        let bin = Service::named(name).ok()?.bin;
        self.peak_rss_mib.get(bin).copied().flatten()
    }
}

/// Outcome of one check of a target.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckOutcome {
    /// What was checked, e.g. `p99 <= 15 ms`.
    pub check: String,
    /// The measured value, if there was one.
    pub actual: Option<f64>,
    /// Whether it held.
    pub pass: bool,
}

/// Checks `checks` against `run`. A value that could not be measured fails its check.
pub fn evaluate(checks: &[Check], run: &Run) -> Vec<CheckOutcome> {
    checks
        .iter()
        .map(|check| {
            let actual = match *check {
                Check::MinRatio(_) => run.ratio(),
                Check::MaxP99Ms(_) => run.measurement.quantile_ms(0.99),
                Check::MaxRssMib(name, _) => run.rss_of(name),
            };
            let pass = actual.is_some_and(|actual| match *check {
                Check::MinRatio(min) => actual >= min,
                Check::MaxP99Ms(max) | Check::MaxRssMib(_, max) => actual <= max,
            });
            CheckOutcome {
                check: describe(check),
                actual,
                pass,
            }
        })
        .collect()
}

/// A check as a phrase: `p99 <= 15 ms`.
pub fn describe(check: &Check) -> String {
    match *check {
        Check::MinRatio(min) => format!("ratio >= {min}"),
        Check::MaxP99Ms(max) => format!("p99 <= {max} ms"),
        Check::MaxRssMib(name, max) => {
            let bin = Service::named(name).map_or(name, |service| service.bin);
            format!("{bin} peak rss <= {max} MiB")
        }
    }
}

/// `value` with two decimals, or `-` when there is none.
pub fn fmt_ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{value:.2}"))
}

/// Calls per second: whole numbers from 100 up, one decimal below.
pub fn fmt_rps(rps: f64) -> String {
    if rps >= 100.0 {
        format!("{rps:.0}")
    } else {
        format!("{rps:.1}")
    }
}

/// A ratio with at least two significant digits, or `-` when there is none.
pub fn fmt_ratio(ratio: Option<f64>) -> String {
    match ratio {
        None => "-".to_owned(),
        Some(ratio) if ratio == 0.0 || ratio >= 0.1 => format!("{ratio:.2}"),
        Some(ratio) if ratio >= 0.001 => format!("{ratio:.4}"),
        Some(ratio) => format!("{ratio:.1e}"),
    }
}

/// A CPU percentage, or `-` when there is none.
fn fmt_percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{value:.0}"))
}

/// The table of `runs`, then their CPU use.
pub fn table(runs: &[Run]) -> String {
    let width = runs
        .iter()
        .map(|run| run.name.len())
        .max()
        .unwrap_or(0)
        .max("scenario".len());
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<width$}  {:>9}  {:>6}  {:>7}  {:>7}  {:>7}  {:>6}  peak rss MiB",
        "scenario", "calls/s", "ratio", "p50 ms", "p99 ms", "max ms", "errors"
    );
    for run in runs {
        let rss: Vec<String> = run
            .peak_rss_mib
            .iter()
            .map(|(bin, mib)| match mib {
                Some(mib) => format!("{bin} {mib:.1}"),
                None => format!("{bin} -"),
            })
            .collect();
        let m = &run.measurement;
        let _ = writeln!(
            text,
            "{:<width$}  {:>9}  {:>6}  {:>7}  {:>7}  {:>7}  {:>6}  {}",
            run.name,
            fmt_rps(m.rps()),
            if run.baseline_rps.is_some() {
                fmt_ratio(run.ratio())
            } else {
                "base".to_owned()
            },
            fmt_ms(m.quantile_ms(0.5)),
            fmt_ms(m.quantile_ms(0.99)),
            fmt_ms(m.max_ms()),
            m.error_count(),
            rss.join(", ")
        );
    }
    let _ = writeln!(text, "\ncpu during the measured window, % of one cpu:");
    for run in runs {
        let mut parts: Vec<String> = run
            .cpu
            .services
            .iter()
            .map(|(bin, percent)| format!("{bin} {}", fmt_percent(*percent)))
            .collect();
        parts.push(format!("postgres {}", fmt_percent(run.cpu.postgres)));
        parts.push(format!(
            "load generator {}",
            fmt_percent(run.cpu.load_generator)
        ));
        parts.push(format!("interrupts {}", fmt_percent(run.cpu.interrupts)));
        parts.push(format!("steal {}", fmt_percent(run.cpu.steal)));
        parts.push(format!("other {}", fmt_percent(run.cpu.other)));
        let _ = writeln!(text, "{:<width$}  {}", run.name, parts.join(", "));
    }
    text
}

/// The JSON record of `run`.
#[derive(Debug, serde::Serialize)]
struct Record<'a> {
    scenario: &'a str,
    service: &'a str,
    method: &'a str,
    settings: SettingsRecord,
    calls: u64,
    rps: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    errors: u64,
    errors_by_code: &'a BTreeMap<String, u64>,
    baseline_rps: Option<f64>,
    ratio: Option<f64>,
    peak_rss_mib: &'a BTreeMap<&'static str, Option<f64>>,
    cpu_percent: CpuRecord,
    target: Option<TargetRecord<'a>>,
    notes: &'a [String],
    nproc: usize,
    timestamp: String,
}

#[derive(Debug, serde::Serialize)]
struct SettingsRecord {
    duration_s: f64,
    warmup_s: f64,
    concurrency: usize,
    connections: usize,
}

#[derive(Debug, serde::Serialize)]
struct CpuRecord {
    services: BTreeMap<&'static str, Option<f64>>,
    postgres: Option<f64>,
    load_generator: Option<f64>,
    interrupts: Option<f64>,
    steal: Option<f64>,
    other: Option<f64>,
}

/// A scenario's target in its JSON record.
#[derive(Debug, serde::Serialize)]
pub struct TargetRecord<'a> {
    /// Whether every check held; `None` without a target.
    pub pass: Option<bool>,
    /// Why there is no target.
    pub none: Option<&'a str>,
    /// Each check.
    pub checks: &'a [CheckOutcome],
}

/// Writes the record of `run` to `path` as pretty JSON.
pub fn write_record(
    path: &Path,
    scenario: &str,
    run: &Run,
    settings: &Settings,
    target: Option<TargetRecord<'_>>,
) -> anyhow::Result<()> {
    let m = &run.measurement;
    let record = Record {
        scenario,
        service: run.service.name,
        method: run.method,
        settings: SettingsRecord {
            duration_s: settings.duration.as_secs_f64(),
            warmup_s: settings.warmup.as_secs_f64(),
            concurrency: settings.concurrency,
            connections: settings.connections,
        },
        calls: m.ok + m.error_count(),
        rps: m.rps(),
        p50_ms: m.quantile_ms(0.5),
        p99_ms: m.quantile_ms(0.99),
        max_ms: m.max_ms(),
        errors: m.error_count(),
        errors_by_code: &m.errors,
        baseline_rps: run.baseline_rps,
        ratio: run.ratio(),
        peak_rss_mib: &run.peak_rss_mib,
        cpu_percent: CpuRecord {
            services: run.cpu.services.iter().copied().collect(),
            postgres: run.cpu.postgres,
            load_generator: run.cpu.load_generator,
            interrupts: run.cpu.interrupts,
            steal: run.cpu.steal,
            other: run.cpu.other,
        },
        target,
        notes: &run.notes,
        nproc: std::thread::available_parallelism().map_or(1, usize::from),
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let text = serde_json::to_string_pretty(&record)?;
    std::fs::write(path, text + "\n").with_context(|| format!("could not write {}", path.display()))
}
