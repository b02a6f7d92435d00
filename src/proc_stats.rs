//! CPU and memory of a process and of the machine, from `/proc` (Linux), for benchmarks.

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on every Linux ABI).
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessStats {
    /// User + system CPU time so far.
    pub cpu_secs: f64,
    /// Peak resident memory (VmHWM) since the process started or its peak was last
    /// reset ([`reset_peak_rss`]).
    pub peak_rss_mib: f64,
    /// Resident memory now (VmRSS).
    pub rss_mib: f64,
}

impl ProcessStats {
    /// `None` when the process is gone or `/proc` is not there.
    pub fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces; the fields after it may not.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |field: &str| -> f64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        Some(Self {
            cpu_secs: (utime + stime) / TICKS_PER_SEC,
            peak_rss_mib: kib("VmHWM:") / 1024.0,
            rss_mib: kib("VmRSS:") / 1024.0,
        })
    }
}

/// Starts the process's peak resident memory afresh from what it holds now (Linux:
/// `5` written to `/proc/<pid>/clear_refs`), so a setup phase's peak is not counted as the
/// measured phase's. False when the kernel did not take it.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The machine's CPU counters (`/proc/stat`, first line).
#[derive(Clone, Copy, Debug, Default)]
pub struct MachineCpu {
    busy: u64,
    total: u64,
}

impl MachineCpu {
    pub fn read() -> Self {
        let line = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string))
            .unwrap_or_default();
        let values: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let total: u64 = values.iter().take(8).sum();
        // idle and iowait are the 4th and 5th.
        let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
        Self {
            busy: total.saturating_sub(idle),
            total,
        }
    }

    /// Share of all cores' time spent busy since `earlier` (every process, not only ours).
    pub fn busy_share_since(&self, earlier: &MachineCpu) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }
}

/// Time every runnable task of the machine was stalled on I/O (`/proc/pressure/io`, "full"),
/// in seconds since boot; `None` without pressure stall information.
pub fn io_full_stall_secs() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/pressure/io").ok()?;
    let full = text.lines().find(|l| l.starts_with("full"))?;
    let total = full
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?;
    Some(total.parse::<f64>().ok()? / 1_000_000.0)
}
