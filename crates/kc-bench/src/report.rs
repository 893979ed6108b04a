//! Results of the benchmark: the printed table, the targets' verdicts and the JSON records.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::load::{Deliveries, Measurement, Settings};
use super::procfs::CpuUsage;
use super::scenarios::Check;
use crate::suite::Service;

/// One measured run: the baseline of a service, or a scenario.
pub(crate) struct Run {
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
    /// The rate calls were paced at (an open loop), when they were: their throughput is then
    /// the scenario's choice, not a measure, and has no ratio.
    pub paced: Option<f64>,
    /// What the calls set off, counted where it arrived, for scenarios that count it.
    pub deliveries: Option<Deliveries>,
    /// The load settings of the run.
    pub settings: Settings,
    /// Facts to print with the result.
    pub notes: Vec<String>,
}

impl Run {
    /// Calls per second relative to the baseline's; none for paced calls.
    pub(crate) fn ratio(&self) -> Option<f64> {
        if self.paced.is_some() {
            return None;
        }
        self.baseline_rps
            .filter(|baseline| *baseline > 0.0)
            .map(|baseline| self.measurement.rps() / baseline)
    }

    /// Deliveries per second relative to the baseline's calls per second.
    pub(crate) fn delivery_ratio(&self) -> Option<f64> {
        let deliveries = self.deliveries.as_ref()?;
        self.baseline_rps
            .filter(|baseline| *baseline > 0.0)
            .map(|baseline| deliveries.rate() / baseline)
    }

    /// Peak RSS of the service with short name `name`.
    fn rss_of(&self, name: &str) -> Option<f64> {
        let bin = Service::named(name).ok()?.bin;
        self.peak_rss_mib.get(bin).copied().flatten()
    }
}

/// Outcome of one check of a target.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct CheckOutcome {
    /// What was checked, e.g. `p99 <= 15 ms`.
    pub check: String,
    /// The measured value, if there was one.
    pub actual: Option<f64>,
    /// Whether it held; `None` when it could not be evaluated in this invocation (see
    /// `not_evaluated`), which is not a miss.
    pub pass: Option<bool>,
    /// Why it was not evaluated, e.g. the scenario it compares with was not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_evaluated: Option<String>,
    /// The measured value as printed, with its unit (`1523 calls/s`, `4.20 ms`).
    #[serde(skip)]
    pub shown: String,
}

impl CheckOutcome {
    /// Whether it was evaluated and missed.
    pub(crate) fn missed(&self) -> bool {
        self.pass == Some(false)
    }

    /// `p99 <= 15 ms: 4.20 ms ok`, or why it was not evaluated.
    pub(crate) fn phrase(&self) -> String {
        match (&self.not_evaluated, self.pass) {
            (Some(why), _) => format!("{}: not evaluated, {why}", self.check),
            (None, Some(true)) => format!("{}: {} ok", self.check, self.shown),
            (None, _) => format!("{}: {} MISS", self.check, self.shown),
        }
    }
}

/// Checks `checks` against `run`; `earlier` holds the runs this invocation made before it (for
/// checks that compare with another scenario). A value that could not be measured fails its
/// check; a comparison with a scenario that was not run is not evaluated.
pub(crate) fn evaluate(checks: &[Check], run: &Run, earlier: &[Run]) -> Vec<CheckOutcome> {
    checks
        .iter()
        .map(|check| {
            let p50 = run.measurement.quantile_ms(0.5);
            let (actual, shown) = match *check {
                Check::MinRatio(_) => (run.ratio(), fmt_ratio(run.ratio())),
                Check::MinRps(_) => {
                    let rps = run.measurement.rps();
                    (Some(rps), format!("{} calls/s", fmt_rps(rps)))
                }
                Check::MaxP99Ms(_) => {
                    let p99 = run.measurement.quantile_ms(0.99);
                    (p99, format!("{} ms", fmt_ms(p99)))
                }
                Check::MaxRssMib(name, _) => {
                    let rss = run.rss_of(name);
                    (rss, format!("{} MiB", fmt_mib(rss)))
                }
                Check::MinDeliveredPerSec(_) => match &run.deliveries {
                    Some(deliveries) => {
                        let rate = deliveries.rate();
                        (
                            Some(rate),
                            format!("{} {}/s", fmt_rps(rate), deliveries.unit),
                        )
                    }
                    None => (None, "nothing counted".to_owned()),
                },
                Check::MaxDeliveryP99Ms(_) => {
                    let p99 = run
                        .deliveries
                        .as_ref()
                        .and_then(|deliveries| deliveries.quantile_ms(0.99));
                    (p99, format!("{} ms", fmt_ms(p99)))
                }
                Check::MaxP50RatioTo(reference, _) => {
                    let Some(other) = earlier.iter().rev().find(|other| other.name == reference)
                    else {
                        return CheckOutcome {
                            check: describe(check),
                            actual: None,
                            pass: None,
                            not_evaluated: Some(format!(
                                "{reference} was not run in this invocation (run both: \
                                 `cargo xtask bench {reference} {}`)",
                                run.name
                            )),
                            shown: "-".to_owned(),
                        };
                    };
                    let other_p50 = other.measurement.quantile_ms(0.5);
                    let ratio = p50
                        .zip(other_p50)
                        .filter(|(_, other)| *other > 0.0)
                        .map(|(p50, other)| p50 / other);
                    let shown = format!(
                        "{} ({} ms vs {} ms)",
                        ratio.map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}x")),
                        fmt_ms(p50),
                        fmt_ms(other_p50)
                    );
                    (ratio, shown)
                }
            };
            let pass = actual.is_some_and(|actual| match *check {
                Check::MinRatio(min) | Check::MinRps(min) | Check::MinDeliveredPerSec(min) => {
                    actual >= min
                }
                Check::MaxP99Ms(max)
                | Check::MaxRssMib(_, max)
                | Check::MaxP50RatioTo(_, max)
                | Check::MaxDeliveryP99Ms(max) => actual <= max,
            });
            CheckOutcome {
                check: describe(check),
                actual,
                pass: Some(pass),
                not_evaluated: None,
                shown,
            }
        })
        .collect()
}

/// A check as a phrase: `p99 <= 15 ms`.
pub(crate) fn describe(check: &Check) -> String {
    match *check {
        Check::MinRatio(min) => format!("ratio >= {min}"),
        Check::MinRps(min) => format!("calls/s >= {min}"),
        Check::MaxP99Ms(max) => format!("p99 <= {max} ms"),
        Check::MaxRssMib(name, max) => {
            let bin = Service::named(name).map_or(name, |service| service.bin);
            format!("{bin} peak rss <= {max} MiB")
        }
        Check::MaxP50RatioTo(reference, max) => format!("p50 <= {max} x p50 of {reference}"),
        Check::MinDeliveredPerSec(min) => format!("delivered/s >= {min}"),
        Check::MaxDeliveryP99Ms(max) => format!("delivery p99 <= {max} ms"),
    }
}

/// MiB with one decimal, or `-` when there is none.
fn fmt_mib(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{value:.1}"))
}

/// `value` with two decimals, or `-` when there is none.
pub(crate) fn fmt_ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{value:.2}"))
}

/// Calls per second: whole numbers from 100 up, one decimal below.
pub(crate) fn fmt_rps(rps: f64) -> String {
    if rps >= 100.0 {
        format!("{rps:.0}")
    } else {
        format!("{rps:.1}")
    }
}

/// A ratio with at least two significant digits, or `-` when there is none.
pub(crate) fn fmt_ratio(ratio: Option<f64>) -> String {
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
pub(crate) fn table(runs: &[Run]) -> String {
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
            if run.paced.is_some() {
                "paced".to_owned()
            } else if run.baseline_rps.is_some() {
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
    let delivering: Vec<&Run> = runs.iter().filter(|run| run.deliveries.is_some()).collect();
    if !delivering.is_empty() {
        let _ = writeln!(
            text,
            "\nwhat the calls set off, counted where it arrived (latency: from the call):"
        );
        let _ = writeln!(
            text,
            "{:<width$}  {:>9}  {:>6}  {:>7}  {:>7}  {:>7}  {:>7}  counted",
            "scenario", "per s", "ratio", "p50 ms", "p99 ms", "max ms", "missing"
        );
        for run in delivering {
            let Some(deliveries) = &run.deliveries else {
                continue;
            };
            let _ = writeln!(
                text,
                "{:<width$}  {:>9}  {:>6}  {:>7}  {:>7}  {:>7}  {:>7}  {} {} {}",
                run.name,
                fmt_rps(deliveries.rate()),
                fmt_ratio(run.delivery_ratio()),
                fmt_ms(deliveries.quantile_ms(0.5)),
                fmt_ms(deliveries.quantile_ms(0.99)),
                fmt_ms(deliveries.max_ms()),
                deliveries.missing,
                deliveries.count,
                deliveries.unit,
                deliveries.counted_at
            );
        }
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
        for (name, percent) in &run.cpu.threads {
            parts.push(format!("{name} {}", fmt_percent(*percent)));
        }
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
    paced_rps: Option<f64>,
    deliveries: Option<DeliveriesRecord>,
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
struct DeliveriesRecord {
    unit: &'static str,
    counted_at: &'static str,
    count: u64,
    window_s: f64,
    per_second: f64,
    ratio: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    missing: u64,
}

#[derive(Debug, serde::Serialize)]
struct CpuRecord {
    services: BTreeMap<&'static str, Option<f64>>,
    postgres: Option<f64>,
    load_generator: Option<f64>,
    threads: BTreeMap<&'static str, Option<f64>>,
    interrupts: Option<f64>,
    steal: Option<f64>,
    other: Option<f64>,
}

/// A scenario's target in its JSON record.
#[derive(Debug, serde::Serialize)]
pub(crate) struct TargetRecord<'a> {
    /// Whether every check held.
    pub pass: bool,
    /// Each check.
    pub checks: &'a [CheckOutcome],
}

/// Writes the record of `run` to `path` as pretty JSON.
pub(crate) fn write_record(
    path: &Path,
    scenario: &str,
    run: &Run,
    target: Option<TargetRecord<'_>>,
) -> anyhow::Result<()> {
    let m = &run.measurement;
    let settings = &run.settings;
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
        paced_rps: run.paced,
        deliveries: run.deliveries.as_ref().map(|deliveries| DeliveriesRecord {
            unit: deliveries.unit,
            counted_at: deliveries.counted_at,
            count: deliveries.count,
            window_s: deliveries.window.as_secs_f64(),
            per_second: deliveries.rate(),
            ratio: run.delivery_ratio(),
            p50_ms: deliveries.quantile_ms(0.5),
            p99_ms: deliveries.quantile_ms(0.99),
            max_ms: deliveries.max_ms(),
            missing: deliveries.missing,
        }),
        peak_rss_mib: &run.peak_rss_mib,
        cpu_percent: CpuRecord {
            services: run.cpu.services.iter().copied().collect(),
            postgres: run.cpu.postgres,
            load_generator: run.cpu.load_generator,
            threads: run.cpu.threads.iter().copied().collect(),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hdrhistogram::Histogram;

    use super::*;
    use crate::procfs::CpuUsage;

    /// A run of `name` on contacts: 1,000 calls in 2 s, all at `latency_ms`.
    fn run(name: &str, latency_ms: u64, rss_mib: Option<f64>) -> Run {
        let mut latency = Histogram::new_with_bounds(1, 120_000_000, 3).unwrap();
        latency.record_n(latency_ms * 1000, 1000).unwrap();
        Run {
            name: name.to_owned(),
            service: Service::named("contacts").unwrap(),
            method: "keycontacts.contacts.v1.ContactRegistryService/ListSiteContacts",
            measurement: Measurement {
                window: Duration::from_secs(2),
                ok: 1000,
                errors: BTreeMap::new(),
                latency,
            },
            peak_rss_mib: BTreeMap::from([("kc-contacts", rss_mib)]),
            cpu: CpuUsage::default(),
            baseline_rps: Some(2000.0),
            paced: None,
            deliveries: None,
            settings: Settings {
                warmup: Duration::from_secs(3),
                duration: Duration::from_secs(2),
                concurrency: 64,
                connections: 4,
            },
            notes: Vec::new(),
        }
    }

    #[test]
    fn absolute_rates_and_ratios_are_checked() {
        let outcomes = evaluate(
            &[
                Check::MinRps(400.0),
                Check::MinRps(600.0),
                Check::MinRatio(0.25),
                Check::MaxP99Ms(15.0),
                Check::MaxRssMib("contacts", 64.0),
            ],
            &run("contacts.assign_contact", 4, Some(70.0)),
            &[],
        );
        let passes: Vec<Option<bool>> = outcomes.iter().map(|outcome| outcome.pass).collect();
        assert_eq!(
            passes,
            [Some(true), Some(false), Some(true), Some(true), Some(false)]
        );
        assert_eq!(outcomes[0].check, "calls/s >= 400");
        assert_eq!(outcomes[0].phrase(), "calls/s >= 400: 500 calls/s ok");
        assert_eq!(
            outcomes[4].phrase(),
            "kc-contacts peak rss <= 64 MiB: 70.0 MiB MISS"
        );
        assert!(outcomes[1].missed());
    }

    #[test]
    fn deliveries_are_checked_by_rate_and_latency() {
        let checks = [
            Check::MinDeliveredPerSec(500.0),
            Check::MaxDeliveryP99Ms(2000.0),
        ];
        // Without anything counted, both miss.
        let plain = run("notification.throughput", 4, Some(30.0));
        let outcomes = evaluate(&checks, &plain, &[]);
        assert!(outcomes.iter().all(CheckOutcome::missed));

        let mut latency = crate::load::latency_histogram().unwrap();
        latency.record_n(150_000, 99).unwrap();
        latency.record(3_000_000).unwrap();
        let mut counted = run("notification.latency", 4, Some(30.0));
        counted.paced = Some(100.0);
        counted.deliveries = Some(Deliveries {
            unit: "e-mails",
            counted_at: "accepted by the SMTP sink",
            count: 1200,
            window: Duration::from_secs(2),
            latency: Some(latency),
            missing: 0,
        });
        let outcomes = evaluate(&checks, &counted, &[]);
        assert_eq!(outcomes[0].pass, Some(true));
        assert_eq!(outcomes[0].phrase(), "delivered/s >= 500: 600 e-mails/s ok");
        assert_eq!(outcomes[1].pass, Some(true), "{}", outcomes[1].phrase());
        // A paced run has no ratio of calls, but its deliveries have one.
        assert_eq!(counted.ratio(), None);
        assert_eq!(counted.delivery_ratio(), Some(0.3));
        let text = table(&[counted]);
        assert!(text.contains("paced"), "{text}");
        assert!(
            text.contains("1200 e-mails accepted by the SMTP sink"),
            "{text}"
        );
    }

    #[test]
    fn an_unmeasured_value_fails_its_check() {
        let outcomes = evaluate(
            &[Check::MaxRssMib("contacts", 64.0)],
            &run("contacts.list_site_contacts", 2, None),
            &[],
        );
        assert_eq!(outcomes[0].pass, Some(false));
    }

    #[test]
    fn p50_is_compared_with_the_earlier_run_of_the_named_scenario() {
        let check = [Check::MaxP50RatioTo("contacts.list_site_contacts", 1.5)];
        let earlier = [
            run("baseline contacts", 1, Some(20.0)),
            run("contacts.list_site_contacts", 4, Some(20.0)),
        ];
        let at_scale = |ms| run("contacts.list_site_contacts_at_scale", ms, Some(20.0));
        let ok = evaluate(&check, &at_scale(5), &earlier);
        assert_eq!(ok[0].pass, Some(true));
        assert!((ok[0].actual.unwrap() - 1.25).abs() < 0.01);
        assert_eq!(
            ok[0].check,
            "p50 <= 1.5 x p50 of contacts.list_site_contacts"
        );
        assert!(ok[0].phrase().contains("1.25x (5.00 ms vs 4.00 ms) ok"));
        let slow = evaluate(&check, &at_scale(7), &earlier);
        assert_eq!(slow[0].pass, Some(false));
        assert!(slow[0].missed());
    }

    #[test]
    fn a_comparison_with_a_scenario_not_run_is_not_evaluated() {
        let check = [Check::MaxP50RatioTo("contacts.list_site_contacts", 1.5)];
        let earlier = [run("baseline contacts", 1, Some(20.0))];
        let outcome = &evaluate(
            &check,
            &run("contacts.list_site_contacts_at_scale", 5, Some(20.0)),
            &earlier,
        )[0];
        assert_eq!(outcome.pass, None);
        assert!(!outcome.missed());
        assert!(outcome.phrase().contains("not evaluated"));
        assert!(
            outcome
                .phrase()
                .contains("contacts.list_site_contacts was not run")
        );
    }
}
