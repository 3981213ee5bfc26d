//! CPU time and resident memory of a process, read from `/proc`.
//!
//! Rates are reported per server core-second, so both the server's CPU time (pass its
//! PID) and the generator's own are sampled at the edges of the measured window.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context as _};

/// Clock ticks per second in `/proc/PID/stat`; Linux fixes USER_HZ at 100 for user space.
const TICKS_PER_SEC: u64 = 100;

/// Which process to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pid {
    /// The generator itself.
    SelfProcess,
    /// Another process, by id.
    Id(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::SelfProcess => "/proc/self".to_owned(),
            Pid::Id(id) => format!("/proc/{id}"),
        }
    }
}

/// User plus system CPU time consumed so far by every thread of the process, dead or alive.
pub(crate) fn cpu_time(pid: Pid) -> anyhow::Result<Duration> {
    let path = format!("{}/stat", pid.dir());
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_cpu_ticks(&stat)
        .map(|ticks| Duration::from_millis(ticks * 1000 / TICKS_PER_SEC))
        .with_context(|| format!("parsing {path}"))
}

/// Extracts `utime + stime` (fields 14 and 15) from a `/proc/PID/stat` line.
fn parse_cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    // The command name (field 2) may contain spaces and parentheses; the fields we need
    // follow its last closing parenthesis.
    let after_name = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("no ')' in stat line")?;
    let mut fields = after_name.split_ascii_whitespace();
    // Field 3 (state) is the first after the name; utime is field 14.
    let utime: u64 = fields.nth(11).context("no utime")?.parse()?;
    let stime: u64 = fields.next().context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Resident set size in KiB (`VmRSS` in `/proc/PID/status`).
pub(crate) fn rss_kib(pid: Pid) -> anyhow::Result<u64> {
    let path = format!("{}/status", pid.dir());
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("parsing {path}"))
}

fn parse_vm_rss(status: &str) -> anyhow::Result<u64> {
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let kib = rest.trim().trim_end_matches("kB").trim();
            return Ok(kib.parse()?);
        }
    }
    bail!("no VmRSS line")
}

/// Per-thread CPU time of a process in nanoseconds, from `/proc/PID/task/*/schedstat`
/// (nanosecond resolution, where `/proc/PID/stat` only counts 10 ms ticks).
fn thread_cpu_ns(pid: Pid) -> Option<HashMap<u64, u64>> {
    let dir = format!("{}/task", pid.dir());
    let mut threads = HashMap::new();
    for entry in std::fs::read_dir(dir).ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        // A thread may exit between listing and reading; it then simply is not counted.
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        let ns = text.split_ascii_whitespace().next()?.parse().ok()?;
        threads.insert(tid, ns);
    }
    Some(threads)
}

/// CPU time of one process at one instant: per thread when the kernel offers it, else the
/// process total.
#[derive(Debug, Clone)]
struct ProcessCpu {
    threads: Option<HashMap<u64, u64>>,
    total: Duration,
}

impl ProcessCpu {
    fn take(pid: Pid) -> anyhow::Result<Self> {
        Ok(Self {
            threads: thread_cpu_ns(pid),
            total: cpu_time(pid)?,
        })
    }

    /// CPU seconds between `earlier` and `self`. Per-thread sums keep nanosecond precision
    /// (a thread born in between counts from zero); without them, 10 ms ticks.
    fn since(&self, earlier: &ProcessCpu) -> f64 {
        if let (Some(now), Some(then)) = (&self.threads, &earlier.threads) {
            let ns: u64 = now
                .iter()
                .map(|(tid, ns)| ns.saturating_sub(then.get(tid).copied().unwrap_or(0)))
                .sum();
            return ns as f64 / 1e9;
        }
        self.total.saturating_sub(earlier.total).as_secs_f64()
    }
}

/// Busy CPU time of the whole machine so far (all cores, every process), from the first
/// line of `/proc/stat`: everything but idle and iowait.
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy(&stat)
}

fn parse_machine_busy(stat: &str) -> Option<Duration> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user].
    let busy: u64 = ticks.iter().take(8).sum::<u64>() - ticks.get(3)? - ticks.get(4)?;
    Some(Duration::from_millis(busy * 1000 / TICKS_PER_SEC))
}

/// CPU time of the generator, (when known) the server and the whole machine at one instant.
#[derive(Debug, Clone)]
pub(crate) struct CpuSample {
    generator: ProcessCpu,
    server: Option<ProcessCpu>,
    machine: Option<Duration>,
}

/// CPU seconds spent between two samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSpent {
    /// By the generator.
    pub(crate) generator: f64,
    /// By the server, when its PID is known.
    pub(crate) server: Option<f64>,
    /// By everything on the machine, when /proc/stat is readable.
    pub(crate) machine: Option<f64>,
}

impl CpuSample {
    /// Samples both processes now.
    pub(crate) fn take(server: Option<u32>) -> anyhow::Result<Self> {
        Ok(Self {
            generator: ProcessCpu::take(Pid::SelfProcess)?,
            server: server.map(|id| ProcessCpu::take(Pid::Id(id))).transpose()?,
            machine: machine_busy(),
        })
    }

    /// CPU seconds used between `earlier` and `self`.
    pub(crate) fn since(&self, earlier: &CpuSample) -> CpuSpent {
        CpuSpent {
            generator: self.generator.since(&earlier.generator),
            server: match (&self.server, &earlier.server) {
                (Some(now), Some(then)) => Some(now.since(then)),
                _ => None,
            },
            machine: match (self.machine, earlier.machine) {
                (Some(now), Some(then)) => Some(now.saturating_sub(then).as_secs_f64()),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_name() {
        let line = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 500 0 0 0 \
                    250 75 0 0 20 0 3 0 100 1000000 300 18446744073709551615";
        assert_eq!(parse_cpu_ticks(line).unwrap(), 325);
    }

    #[test]
    fn parses_machine_busy() {
        let stat = "cpu  100 5 50 1000 20 3 7 0 0 0\ncpu0 50 0 25 500 10 1 3 0 0 0\n";
        assert_eq!(parse_machine_busy(stat), Some(Duration::from_millis(1650)));
        assert_eq!(parse_machine_busy("intr 1 2 3\n"), None);
    }

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t    5432 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status).unwrap(), 5432);
        assert!(parse_vm_rss("Name:\tx\n").is_err());
    }

    #[test]
    fn reads_own_process() {
        assert!(rss_kib(Pid::SelfProcess).unwrap() > 0);
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_time(Pid::SelfProcess).unwrap() > Duration::ZERO);
    }

    #[test]
    fn per_thread_sampling_sees_a_busy_thread() {
        let before = CpuSample::take(Some(std::process::id())).unwrap();
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0u64);
        }
        let after = CpuSample::take(Some(std::process::id())).unwrap();
        let spent = after.since(&before);
        let (generator, server) = (spent.generator, spent.server.unwrap());
        assert!(spent.machine.is_some());
        assert!(generator > 0.0, "{generator}");
        assert!(server > 0.0, "{server}");
        assert!(
            after.generator.threads.is_some(),
            "schedstat is readable here"
        );
    }
}
