//! What is read of the server's process tree (/proc: RSS, CPU time, memory maps) and of the
//! kernel (socket and slab memory), and of the machine (`sh`).

use std::process::Command;
use std::time::{Duration, Instant};

/// `pid` and its descendants.
pub(crate) fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(fields) = stat_fields(p)
                && let Some(pp) = fields.get(1).and_then(|s| s.parse().ok())
            {
                parents.push((p, pp));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// The memory maps (/proc/PID/maps) of `pid` and its descendants, one after the other.
pub(crate) fn maps(pid: u32) -> String {
    tree(pid)
        .iter()
        .map(|p| std::fs::read_to_string(format!("/proc/{p}/maps")).unwrap_or_default())
        .collect()
}

/// The fields of /proc/PID/stat after the command name (field 3 onwards).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Resident memory of the server's process tree, KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    tree(pid)
        .iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// CPU time (utime + stime) of the server's process tree, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    tree(pid)
        .iter()
        .filter_map(|&p| {
            let f = stat_fields(p)?;
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

/// Kernel TCP socket memory, pages (/proc/net/sockstat `TCP: … mem N`).
pub(crate) fn sockstat_pages() -> u64 {
    std::fs::read_to_string("/proc/net/sockstat")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.iter()
                .position(|x| *x == "mem")
                .and_then(|i| w.get(i + 1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Kernel slab memory, KiB (/proc/meminfo `Slab:`): socket, file and epoll structures.
pub(crate) fn slab_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Slab:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Waits until the server's CPU time stops growing (its backlog is drained), at most `max`.
pub(crate) fn settle(pid: u32, max: Duration) {
    let start = Instant::now();
    let mut last = cpu_ticks(pid);
    while start.elapsed() < max {
        std::thread::sleep(Duration::from_millis(400));
        let now = cpu_ticks(pid);
        if now.saturating_sub(last) <= 2 {
            return;
        }
        last = now;
    }
}

/// The RSS of `pid` once it has held still (within 1 %, or 64 KiB) for `window`, read every
/// 0.5 s from `from` on; the last reading at `until` if it never does.
pub(crate) fn steady_rss(pid: u32, from: Instant, window: Duration, until: Instant) -> u64 {
    std::thread::sleep(from.saturating_duration_since(Instant::now()));
    let mut readings: Vec<(Instant, u64)> = Vec::new();
    loop {
        let (now, rss) = (Instant::now(), rss_kib(pid));
        readings.push((now, rss));
        let recent: Vec<u64> = readings
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= window)
            .map(|(_, r)| *r)
            .collect();
        let spread = recent.iter().max().unwrap_or(&0) - recent.iter().min().unwrap_or(&0);
        let held = now.duration_since(readings[0].0) >= window && spread <= (rss / 100).max(64);
        if held || now >= until {
            return rss;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Server CPU-s per million deliveries, from `cpu_s` of server CPU over `delivered` events;
/// NaN under 0.2 s (20 ticks), where the CPU time is too coarse to divide.
pub(crate) fn cpu_s_per_million(cpu_s: f64, delivered: u64) -> f64 {
    if delivered > 0 && cpu_s >= 0.2 {
        cpu_s / delivered as f64 * 1e6
    } else {
        f64::NAN
    }
}

/// The trimmed stdout of `cmd args`, or `?`.
pub(crate) fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}
