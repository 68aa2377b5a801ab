//! The standard `process_*` values, read from /proc on each scrape.

/// Linux reports CPU times in USER_HZ ticks, fixed at 100 for user space on
/// every architecture Linux supports today.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    pub start_time_seconds: f64,
    pub open_fds: f64,
    pub max_fds: Option<f64>,
}

impl ProcessStats {
    /// Reads this process's figures; what cannot be read stays 0 (a
    /// locked-down /proc must not fail a scrape).
    pub fn read() -> ProcessStats {
        let mut stats = ProcessStats::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            let boot_time = boot_time();
            if let Some(fields) = parse_stat(&stat) {
                stats.cpu_seconds = (fields.utime + fields.stime) / TICKS_PER_SECOND;
                stats.start_time_seconds = boot_time + fields.start_ticks / TICKS_PER_SECOND;
                stats.virtual_bytes = fields.vsize;
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            stats.resident_bytes = parse_rss(&status).unwrap_or(0.0);
        }
        stats.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as f64;
        stats.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| parse_max_fds(&s));
        stats
    }
}

/// The boot time does not change while we run, and /proc/stat is costly to
/// read (the kernel formats counters of every CPU and interrupt): read once.
fn boot_time() -> f64 {
    static BOOT_TIME: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *BOOT_TIME.get_or_init(|| {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_boot_time(&s))
            .unwrap_or(0.0)
    })
}

struct StatFields {
    utime: f64,
    stime: f64,
    start_ticks: f64,
    vsize: f64,
}

/// Fields of /proc/self/stat after the command name (which may hold spaces
/// and parentheses, so split after the last `)`).
fn parse_stat(stat: &str) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15,
    // starttime 22, vsize 23 (1-based, proc(5)).
    let get = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    Some(StatFields {
        utime: get(14)?,
        stime: get(15)?,
        start_ticks: get(22)?,
        vsize: get(23)?,
    })
}

fn parse_boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn parse_rss(status: &str) -> Option<f64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024.0)
}

fn parse_max_fds(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_the_name_parses() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 1 0 500 1048576 300 18446744073709551615";
        let f = parse_stat(stat).unwrap();
        assert_eq!(
            (f.utime, f.stime, f.start_ticks, f.vsize),
            (150.0, 50.0, 500.0, 1048576.0)
        );
    }

    #[test]
    fn status_limits_and_boot_time_parse() {
        assert_eq!(
            parse_rss("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2048.0 * 1024.0)
        );
        assert_eq!(
            parse_max_fds("Limit Soft Hard Units\nMax open files            1024                 4096                 files\n"),
            Some(1024.0)
        );
        assert_eq!(parse_boot_time("cpu 1 2\nbtime 1700000000\n"), Some(1.7e9));
    }

    #[test]
    fn reading_this_process_gives_plausible_figures() {
        let p = ProcessStats::read();
        assert!(p.resident_bytes > 0.0);
        assert!(p.open_fds >= 1.0);
        assert!(p.start_time_seconds > 1.6e9);
    }
}
