//! What the benchmark reads from `/proc`: peak memory and CPU time of processes, and the
//! machine's CPU time.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow};

/// Clock ticks per second of `/proc/<pid>/stat` and `/proc/stat` (`USER_HZ`, which Linux
/// fixes at 100 for user space on every architecture it supports).
const TICKS_PER_SECOND: u64 = 100;

/// Peak resident set size (`VmHWM`) of process `pid`, in MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    let kib = status_kib(&status, "VmHWM").ok_or_else(|| anyhow!("no VmHWM line in {path}"))?;
    Ok(kib as f64 / 1024.0)
}

/// Resets the peak resident set size of process `pid` to its current one, so that the next
/// [`peak_rss_mib`] covers only what happens from now on. Returns whether the kernel allowed it.
pub(crate) fn reset_peak_rss(pid: u32) -> bool {
    // "5" resets the peak RSS (Linux 4.0 and later).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The value, in KiB, of the `key:` line of a `/proc/<pid>/status` text.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// CPU time of one process (all its threads), and of its reaped children when `children`.
pub(crate) fn cpu_time(pid: u32, children: bool) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    let fields = stat_fields(&stat).ok_or_else(|| anyhow!("unexpected format of {path}"))?;
    let ticks = if children {
        fields.utime + fields.stime + fields.cutime + fields.cstime
    } else {
        fields.utime + fields.stime
    };
    Ok(ticks_to_duration(ticks))
}

/// CPU time of thread `tid` of this process.
pub(crate) fn own_thread_cpu_time(tid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{}/task/{tid}/stat", std::process::id());
    let stat = std::fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    let fields = stat_fields(&stat).ok_or_else(|| anyhow!("unexpected format of {path}"))?;
    Ok(ticks_to_duration(fields.utime + fields.stime))
}

/// The id of the calling thread (its directory under `/proc/<pid>/task/`).
pub(crate) fn current_thread_id() -> anyhow::Result<u32> {
    let link =
        std::fs::read_link("/proc/thread-self").context("could not read /proc/thread-self")?;
    link.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.parse().ok())
        .ok_or_else(|| anyhow!("unexpected /proc/thread-self: {}", link.display()))
}

/// CPU time of process `pid`, its reaped children and its living children: for the
/// postmaster, the whole Postgres server.
pub(crate) fn tree_cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let mut total = cpu_time(pid, true)?;
    let entries = std::fs::read_dir("/proc").context("could not read /proc")?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(child) = name.to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        // A process may exit between listing and reading: skip it.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(fields) = stat_fields(&stat)
            && fields.ppid == pid
            && child != pid
        {
            total += ticks_to_duration(fields.utime + fields.stime);
        }
    }
    Ok(total)
}

/// The main process of a Postgres server: the first line of `postmaster.pid` in `data_dir`.
pub(crate) fn postmaster_pid(data_dir: &Path) -> anyhow::Result<u32> {
    let path = data_dir.join("postmaster.pid");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("could not read {}", path.display()))?;
    text.lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| anyhow!("no pid in {}", path.display()))
}

/// The machine's CPU time so far, summed over its CPUs (`/proc/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MachineCpu {
    /// Running processes: user, nice and system time.
    pub tasks: Duration,
    /// Handling interrupts: irq and softirq time (loopback networking lands here).
    pub interrupts: Duration,
    /// Taken by the hypervisor for other guests.
    pub steal: Duration,
}

/// The machine's CPU time so far.
pub(crate) fn machine_cpu() -> anyhow::Result<MachineCpu> {
    let text = std::fs::read_to_string("/proc/stat").context("could not read /proc/stat")?;
    parse_machine_cpu(&text).ok_or_else(|| anyhow!("unexpected format of /proc/stat"))
}

fn parse_machine_cpu(text: &str) -> Option<MachineCpu> {
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let value = |index: usize| values.get(index).copied().unwrap_or(0);
    if values.len() < 4 {
        return None;
    }
    Some(MachineCpu {
        tasks: ticks_to_duration(value(0) + value(1) + value(2)),
        interrupts: ticks_to_duration(value(5) + value(6)),
        steal: ticks_to_duration(value(7)),
    })
}

/// The processes whose CPU time a run reports.
#[derive(Debug, Clone)]
pub(crate) struct Watched {
    /// The services' processes, by binary name.
    pub services: Vec<(&'static str, u32)>,
    /// The Postgres server's postmaster, when known.
    pub postmaster: Option<u32>,
    /// Threads of this process that serve the services rather than load them (e.g. the SMTP
    /// sink), by name: reported apart from the load generator.
    pub threads: Vec<(&'static str, u32)>,
}

/// CPU times at one moment; a value is `None` when it could not be read.
#[derive(Debug, Clone)]
pub(crate) struct CpuSnapshot {
    wall: std::time::Instant,
    services: Vec<Option<Duration>>,
    postgres: Option<Duration>,
    load_generator: Option<Duration>,
    threads: Vec<Option<Duration>>,
    machine: Option<MachineCpu>,
}

/// CPU used between two snapshots, each in percent of one CPU (so up to 100 × CPUs).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CpuUsage {
    /// Each service, by binary name.
    pub services: Vec<(&'static str, Option<f64>)>,
    /// The Postgres server, all its processes.
    pub postgres: Option<f64>,
    /// This process but its [`Watched::threads`]: the load generator.
    pub load_generator: Option<f64>,
    /// Each of [`Watched::threads`], by name.
    pub threads: Vec<(&'static str, Option<f64>)>,
    /// Interrupt handling (irq and softirq), mostly the loopback network between them.
    pub interrupts: Option<f64>,
    /// Time the hypervisor gave to other guests: a disturbance.
    pub steal: Option<f64>,
    /// Processes other than the above: unrelated work that disturbs the figures.
    pub other: Option<f64>,
}

impl Watched {
    /// Their CPU times now.
    pub(crate) fn snapshot(&self) -> CpuSnapshot {
        CpuSnapshot {
            wall: std::time::Instant::now(),
            services: self
                .services
                .iter()
                .map(|(_, pid)| cpu_time(*pid, false).ok())
                .collect(),
            postgres: self.postmaster.and_then(|pid| tree_cpu_time(pid).ok()),
            load_generator: cpu_time(std::process::id(), false).ok(),
            threads: self
                .threads
                .iter()
                .map(|(_, tid)| own_thread_cpu_time(*tid).ok())
                .collect(),
            machine: machine_cpu().ok(),
        }
    }

    /// What they used from `start` to `end`.
    pub(crate) fn usage(&self, start: &CpuSnapshot, end: &CpuSnapshot) -> CpuUsage {
        let wall = end.wall.saturating_duration_since(start.wall).as_secs_f64();
        let percent = |from: Option<Duration>, to: Option<Duration>| match (from, to) {
            (Some(from), Some(to)) if wall > 0.0 => {
                Some(to.saturating_sub(from).as_secs_f64() / wall * 100.0)
            }
            _ => None,
        };
        let services: Vec<(&'static str, Option<f64>)> = self
            .services
            .iter()
            .zip(start.services.iter().zip(&end.services))
            .map(|((name, _), (from, to))| (*name, percent(*from, *to)))
            .collect();
        let postgres = percent(start.postgres, end.postgres);
        let process = percent(start.load_generator, end.load_generator);
        let threads: Vec<(&'static str, Option<f64>)> = self
            .threads
            .iter()
            .zip(start.threads.iter().zip(&end.threads))
            .map(|((name, _), (from, to))| (*name, percent(*from, *to)))
            .collect();
        let in_threads: Option<f64> = threads.iter().map(|(_, percent)| *percent).sum();
        let load_generator = process
            .zip(in_threads)
            .map(|(process, in_threads)| (process - in_threads).max(0.0));
        let machine = |field: fn(&MachineCpu) -> Duration| {
            percent(
                start.machine.as_ref().map(field),
                end.machine.as_ref().map(field),
            )
        };
        let tasks = machine(|cpu| cpu.tasks);
        let known: Option<f64> = services
            .iter()
            .map(|(_, percent)| *percent)
            .chain([postgres, process])
            .sum();
        let other = tasks
            .zip(known)
            .map(|(tasks, known)| (tasks - known).max(0.0));
        CpuUsage {
            services,
            postgres,
            load_generator,
            threads,
            interrupts: machine(|cpu| cpu.interrupts),
            steal: machine(|cpu| cpu.steal),
            other,
        }
    }
}

/// The fields of `/proc/<pid>/stat` the benchmark uses.
#[derive(Debug, PartialEq, Eq)]
struct StatFields {
    ppid: u32,
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

fn stat_fields(stat: &str) -> Option<StatFields> {
    // The command name (field 2) is in parentheses and may itself hold spaces or parentheses:
    // the fields that follow start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is at index n - 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<i64>().ok();
    let ticks = |n: usize| field(n).map(|value| u64::try_from(value).unwrap_or(0));
    Some(StatFields {
        ppid: u32::try_from(field(4)?).ok()?,
        utime: ticks(14)?,
        stime: ticks(15)?,
        cutime: ticks(16)?,
        cstime: ticks(17)?,
    })
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        let status = "Name:\tkc-identity\nVmPeak:\t  100 kB\nVmHWM:\t   20480 kB\nVmRSS:\t 10 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(20480));
        assert_eq!(status_kib(status, "VmRSS"), Some(10));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn stat_fields_survive_odd_command_names() {
        let stat = "1234 (tokio (rt) x) S 77 1234 1234 0 -1 4194560 1 0 0 0 250 50 7 3 20 0 4 0";
        assert_eq!(
            stat_fields(stat),
            Some(StatFields {
                ppid: 77,
                utime: 250,
                stime: 50,
                cutime: 7,
                cstime: 3,
            })
        );
        assert_eq!(stat_fields("garbage"), None);
    }

    #[test]
    fn machine_cpu_splits_tasks_interrupts_and_steal() {
        let text = "cpu  100 10 50 800 50 3 7 20 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n";
        assert_eq!(
            parse_machine_cpu(text),
            Some(MachineCpu {
                tasks: Duration::from_millis(1600),
                interrupts: Duration::from_millis(100),
                steal: Duration::from_millis(200),
            })
        );
        assert_eq!(parse_machine_cpu("intr 1 2 3\n"), None);
    }

    #[test]
    fn own_process_is_readable() {
        assert!(peak_rss_mib(std::process::id()).unwrap() > 0.0);
        cpu_time(std::process::id(), false).unwrap();
        machine_cpu().unwrap();
    }

    #[test]
    fn own_threads_are_readable() {
        let main = current_thread_id().unwrap();
        own_thread_cpu_time(main).unwrap();
        let other = std::thread::spawn(|| current_thread_id().unwrap())
            .join()
            .unwrap();
        assert_ne!(main, other);
    }
}
