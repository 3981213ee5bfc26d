//! The scenarios, and what they share: the measured window, CPU and memory sampling, and
//! opening many connections with bounded concurrency.

pub(crate) mod chat;
pub(crate) mod echo;
pub(crate) mod fanout;
pub(crate) mod idle;
pub(crate) mod storm;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::hist::Histogram;
use crate::procfs::{self, CpuSample, Pid};
use crate::report::{Errors, Report};
use crate::session::{Session, Target};

/// What every scenario needs from the command line.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    /// Where to connect.
    pub(crate) target: Target,
    /// The server's process id, for CPU and memory.
    pub(crate) server_pid: Option<u32>,
    /// The server's name in the report.
    pub(crate) label: String,
    /// Load before measuring.
    pub(crate) warmup: Duration,
    /// The measured window.
    pub(crate) duration: Duration,
}

/// The measured window of a timed run: `[from, to)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Measuring starts (after the warm-up).
    pub(crate) from: Instant,
    /// Measuring ends; senders stop here.
    pub(crate) to: Instant,
}

impl Window {
    /// A window starting after `warmup` from now.
    pub(crate) fn after(warmup: Duration, duration: Duration) -> Self {
        let from = Instant::now() + warmup;
        Self {
            from,
            to: from + duration,
        }
    }

    /// Whether `t` falls inside the window.
    pub(crate) fn contains(&self, t: Instant) -> bool {
        t >= self.from && t < self.to
    }
}

/// CPU and memory over a window, sampled by a task of its own at the window's edges.
#[derive(Debug)]
pub(crate) struct Usage {
    /// Seconds between the two samples.
    pub(crate) wall_s: f64,
    /// Generator CPU seconds.
    pub(crate) gen_cpu_s: f64,
    /// Server CPU seconds.
    pub(crate) server_cpu_s: Option<f64>,
    /// Server RSS at the end, KiB.
    pub(crate) server_rss_kib: Option<u64>,
    /// CPU seconds used by every other process on the machine: other people's work on a
    /// shared machine, which makes a run noisy.
    pub(crate) other_cpu_s: Option<f64>,
}

impl Usage {
    /// Samples at `window.from` and `window.to`.
    pub(crate) async fn over(window: Window, server_pid: Option<u32>) -> anyhow::Result<Self> {
        tokio::time::sleep_until(window.from.into()).await;
        let start = Self::begin(server_pid)?;
        tokio::time::sleep_until(window.to.into()).await;
        start.end()
    }

    /// Takes the first sample now.
    pub(crate) fn begin(server_pid: Option<u32>) -> anyhow::Result<UsageStart> {
        Ok(UsageStart {
            at: Instant::now(),
            cpu: CpuSample::take(server_pid)?,
            server_pid,
        })
    }

    /// Copies the figures into a report.
    pub(crate) fn fill(&self, report: &mut Report) {
        report.window_s = self.wall_s;
        report.gen_cpu_s = self.gen_cpu_s;
        report.server_cpu_s = self.server_cpu_s;
        report.server_rss_kib = self.server_rss_kib;
        if self.wall_s > 0.0 {
            report.metric("gen_cpu_util", self.gen_cpu_s / self.wall_s);
            if let Some(cpu) = self.server_cpu_s {
                report.metric("server_cpu_util", cpu / self.wall_s);
            }
            if let Some(cpu) = self.other_cpu_s {
                report.metric("other_cpu_util", cpu / self.wall_s);
            }
        }
    }
}

/// The first half of a [`Usage`] measurement.
#[derive(Debug)]
pub(crate) struct UsageStart {
    at: Instant,
    cpu: CpuSample,
    server_pid: Option<u32>,
}

impl UsageStart {
    /// Takes the second sample now.
    pub(crate) fn end(self) -> anyhow::Result<Usage> {
        let cpu = CpuSample::take(self.server_pid)?;
        let spent = cpu.since(&self.cpu);
        let ours = spent.generator + spent.server.unwrap_or(0.0);
        Ok(Usage {
            wall_s: self.at.elapsed().as_secs_f64(),
            gen_cpu_s: spent.generator,
            server_cpu_s: spent.server,
            // Only meaningful when the server's share is known; ticks make it coarse (10 ms).
            other_cpu_s: spent
                .machine
                .filter(|_| spent.server.is_some())
                .map(|m| (m - ours).max(0.0)),
            server_rss_kib: self
                .server_pid
                .map(|id| procfs::rss_kib(Pid::Id(id)))
                .transpose()?,
        })
    }
}

/// Records latency percentiles under `p50_us`, `p99_us` and `max_us`.
pub(crate) fn latency_metrics(report: &mut Report, hist: &Histogram) {
    report.metric("latency_samples", hist.len() as f64);
    for (name, q) in [("p50_us", 0.5), ("p99_us", 0.99), ("max_us", 1.0)] {
        if let Some(us) = hist.quantile_us(q) {
            report.metric(name, us);
        }
    }
}

/// Outcome of opening many connections.
#[derive(Debug, Default)]
pub(crate) struct Opened {
    /// The sessions that completed the handshake, in completion order, with their index.
    pub(crate) sessions: Vec<(usize, Session)>,
    /// Connect-to-101 time of each success.
    pub(crate) handshake: Histogram,
    /// Failures (also pushed to the error list).
    pub(crate) failed: u64,
    /// From the first connect to the last completion.
    pub(crate) elapsed: Duration,
}

/// Opens `count` connections, at most `concurrency` handshakes at a time; `resource(i)`
/// names the resource of the `i`-th.
pub(crate) async fn open_many(
    target: &Target,
    count: usize,
    concurrency: usize,
    resource: impl Fn(usize) -> String + 'static,
    errors: &Rc<Errors>,
) -> Opened {
    let start = Instant::now();
    let next = Rc::new(Cell::new(0usize));
    let resource = Rc::new(resource);
    let mut workers = Vec::new();
    for _ in 0..concurrency.min(count) {
        let (target, next, resource, errors) = (
            target.clone(),
            next.clone(),
            resource.clone(),
            errors.clone(),
        );
        workers.push(tokio::task::spawn_local(async move {
            let mut mine = Opened::default();
            loop {
                let i = next.get();
                if i >= count {
                    break;
                }
                next.set(i + 1);
                let t = Instant::now();
                match Session::open(&target, i, &resource(i)).await {
                    Ok(s) => {
                        mine.handshake.record(t.elapsed());
                        mine.sessions.push((i, s));
                    }
                    Err(e) => {
                        mine.failed += 1;
                        errors.push(format!("connection {i}: {e:#}"));
                    }
                }
            }
            mine
        }));
    }
    let mut all = Opened::default();
    for w in workers {
        match w.await {
            Ok(mine) => {
                all.sessions.extend(mine.sessions);
                all.handshake.merge(&mine.handshake);
                all.failed += mine.failed;
            }
            Err(e) => errors.push(format!("opener task: {e}")),
        }
    }
    all.elapsed = start.elapsed();
    all
}
