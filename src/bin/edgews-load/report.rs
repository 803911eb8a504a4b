//! Results: latency histograms, the server's CPU and memory from /proc, and
//! the table or JSON output.

use hdrhistogram::Histogram;
use serde_json::{Map, Value};

/// Latencies in nanoseconds, 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// CPU time and resident memory of a process, from /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    /// utime + stime, in seconds.
    pub cpu_secs: f64,
    /// VmRSS in bytes.
    pub rss_bytes: u64,
    /// RssAnon in bytes: VmRSS without the pages of mapped files (the
    /// binary's code, which grows as new code paths first run) and shared
    /// memory. 0 when the kernel does not report it.
    pub anon_bytes: u64,
}

/// Reads /proc/PID/stat and /proc/PID/status.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line: 12 and 13 here.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |field: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    let rss_kb = kb("VmRSS:")?;
    Some(ProcSample {
        cpu_secs: ticks / clock_ticks_per_sec(),
        rss_bytes: rss_kb * 1024,
        anon_bytes: kb("RssAnon:").unwrap_or(0) * 1024,
    })
}

/// USER_HZ: 100 on Linux for every architecture we run on.
fn clock_ticks_per_sec() -> f64 {
    100.0
}

/// One run's figures.
#[derive(Default)]
pub struct Report {
    pub fields: Map<String, Value>,
}

impl Report {
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.fields.insert(key.to_owned(), value.into());
    }

    /// Adds p50/p99/p99.9/max latency in microseconds.
    pub fn latency(&mut self, h: &Histogram<u64>) {
        if h.is_empty() {
            return;
        }
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        self.set("latency_p50_us", us(0.5));
        self.set("latency_p99_us", us(0.99));
        self.set("latency_p999_us", us(0.999));
        self.set("latency_max_us", h.max() as f64 / 1000.0);
    }

    /// Adds the server's CPU use over the window and messages per CPU-second.
    pub fn server(&mut self, before: Option<ProcSample>, after: Option<ProcSample>, messages: u64) {
        if let (Some(b), Some(a)) = (before, after) {
            let cpu = a.cpu_secs - b.cpu_secs;
            self.set("server_cpu_s", round(cpu, 3));
            self.set("server_rss_bytes", a.rss_bytes);
            if cpu > 0.0 {
                self.set("msgs_per_server_cpu_s", round(messages as f64 / cpu, 0));
            }
        }
    }

    /// Prints one JSON object, or a two-column table.
    pub fn print(&self, as_json: bool) {
        if as_json {
            println!("{}", Value::Object(self.fields.clone()));
            return;
        }
        for (k, v) in &self.fields {
            let v = match v {
                Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() != 0.0) => {
                    format!("{:.1}", n.as_f64().unwrap_or_default())
                }
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("{k:>24}  {v}");
        }
    }
}

pub fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn percentiles_and_rounding() {
        let mut h = histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let mut r = Report::default();
        r.latency(&h);
        let p50 = r.fields["latency_p50_us"].as_f64().unwrap();
        assert!((499.0..=501.0).contains(&p50), "{p50}");
        assert_eq!(round(1.23456, 2), 1.23);
        r.server(
            Some(ProcSample {
                cpu_secs: 1.0,
                rss_bytes: 0,
                anon_bytes: 0,
            }),
            Some(ProcSample {
                cpu_secs: 3.0,
                rss_bytes: 10,
                anon_bytes: 0,
            }),
            1000,
        );
        assert_eq!(r.fields["msgs_per_server_cpu_s"], json!(500.0));
    }

    #[test]
    fn reads_our_own_process() {
        let s = sample(std::process::id()).expect("procfs");
        assert!(s.rss_bytes > 0);
    }
}
