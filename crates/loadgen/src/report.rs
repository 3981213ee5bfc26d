//! The result of one run: a JSON line for scripts and a small table for people.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// How many error messages a report keeps verbatim; the rest are only counted.
const KEPT_ERRORS: usize = 8;

/// Errors seen during a run: counted, the first few kept as text.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    count: RefCell<(u64, Vec<String>)>,
}

impl Errors {
    /// Counts one error.
    pub(crate) fn push(&self, message: impl Into<String>) {
        let mut inner = self.count.borrow_mut();
        inner.0 += 1;
        if inner.1.len() < KEPT_ERRORS {
            inner.1.push(message.into());
        }
    }

    /// Counts `n` errors of one kind.
    pub(crate) fn push_n(&self, n: u64, message: impl Into<String>) {
        if n > 0 {
            let mut inner = self.count.borrow_mut();
            inner.0 += n;
            if inner.1.len() < KEPT_ERRORS {
                inner.1.push(message.into());
            }
        }
    }

    fn take(&self) -> (u64, Vec<String>) {
        std::mem::take(&mut *self.count.borrow_mut())
    }
}

/// One run's outcome. Serialised as a single JSON line on stdout.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// `echo`, `fanout`, `idle` or `storm`.
    pub(crate) scenario: &'static str,
    /// The label given with `--label` (which server this was).
    pub(crate) server: String,
    /// The name given with `--tag` (which case of a suite this was).
    pub(crate) tag: String,
    /// The scenario's parameters, as given.
    pub(crate) params: serde_json::Value,
    /// Length of the measured window in seconds.
    pub(crate) window_s: f64,
    /// CPU seconds the generator used in the window.
    pub(crate) gen_cpu_s: f64,
    /// CPU seconds the server used in the window (needs `--server-pid`).
    pub(crate) server_cpu_s: Option<f64>,
    /// Server resident memory at the end of the window, KiB.
    pub(crate) server_rss_kib: Option<u64>,
    /// The scenario's figures (rates, latencies, memory).
    pub(crate) metrics: BTreeMap<&'static str, f64>,
    /// Errors seen: protocol violations, lost or duplicated messages, failed connections.
    pub(crate) errors: u64,
    /// The first few errors, verbatim.
    pub(crate) error_samples: Vec<String>,
}

impl Report {
    /// A report with no figures yet.
    pub(crate) fn new(scenario: &'static str, server: &str, params: serde_json::Value) -> Self {
        Self {
            scenario,
            server: server.to_owned(),
            tag: String::new(),
            params,
            window_s: 0.0,
            gen_cpu_s: 0.0,
            server_cpu_s: None,
            server_rss_kib: None,
            metrics: BTreeMap::new(),
            errors: 0,
            error_samples: Vec::new(),
        }
    }

    /// Records a figure.
    pub(crate) fn metric(&mut self, name: &'static str, value: f64) {
        self.metrics.insert(name, value);
    }

    /// Records `count / window` and, when the server's CPU is known, `count` per server
    /// core-second, under `<name>_per_s` and `<name>_per_server_core_s`.
    pub(crate) fn rate(&mut self, per_s: &'static str, per_core_s: &'static str, count: f64) {
        if self.window_s > 0.0 {
            self.metric(per_s, count / self.window_s);
        }
        if let Some(cpu) = self.server_cpu_s.filter(|c| *c > 0.0) {
            self.metric(per_core_s, count / cpu);
        }
    }

    /// Moves the collected errors into the report.
    pub(crate) fn take_errors(&mut self, errors: &Errors) {
        let (n, samples) = errors.take();
        self.errors += n;
        self.error_samples.extend(samples);
    }

    /// The JSON line.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }

    /// A human-readable table.
    pub(crate) fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} against {} ({})",
            self.scenario, self.server, self.params
        );
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "  {k:<34} {v:>16}");
        };
        row("window_s", format!("{:.2}", self.window_s));
        for (k, v) in &self.metrics {
            row(k, human(*v));
        }
        row("gen_cpu_s", format!("{:.2}", self.gen_cpu_s));
        if let Some(cpu) = self.server_cpu_s {
            row("server_cpu_s", format!("{cpu:.2}"));
        }
        if let Some(rss) = self.server_rss_kib {
            row("server_rss_kib", rss.to_string());
        }
        row("errors", self.errors.to_string());
        for e in &self.error_samples {
            let _ = writeln!(out, "    ! {e}");
        }
        out
    }
}

fn human(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_use_window_and_server_cpu() {
        let mut r = Report::new("echo", "x", serde_json::json!({"conns": 1}));
        r.window_s = 2.0;
        r.server_cpu_s = Some(0.5);
        r.rate("msgs_per_s", "msgs_per_server_core_s", 1000.0);
        assert_eq!(r.metrics["msgs_per_s"], 500.0);
        assert_eq!(r.metrics["msgs_per_server_core_s"], 2000.0);
        let line = r.to_json();
        assert!(!line.contains('\n'));
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["metrics"]["msgs_per_s"], 500.0);
    }

    #[test]
    fn errors_are_counted_and_sampled() {
        let e = Errors::default();
        for i in 0..20 {
            e.push(format!("e{i}"));
        }
        e.push_n(0, "nothing");
        e.push_n(5, "five");
        let mut r = Report::new("idle", "x", serde_json::Value::Null);
        r.take_errors(&e);
        assert_eq!(r.errors, 25);
        assert_eq!(r.error_samples.len(), KEPT_ERRORS);
        assert_eq!(e.take().0, 0);
    }
}
