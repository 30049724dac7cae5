//! The standard `process_*` series of the daemon itself (not its run children), named as the
//! Prometheus client libraries name them and read at scrape time: CPU from `getrusage`, memory
//! from `/proc/self/status`, descriptors from `/proc/self/fd` and `RLIMIT_NOFILE`, the start
//! time from `/proc/self/stat` and the boot time in `/proc/stat`. A value that cannot be read
//! is left out of the scrape rather than reported as 0.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads the process's figures on each scrape.
#[derive(Debug)]
pub(super) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(cpu) = cpu_seconds() {
            let counter = ConstCounter::new(cpu);
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(m)?;
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                status_kib(&status, "VmRSS:").map(|k| k * 1024.0),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                status_kib(&status, "VmSize:").map(|k| k * 1024.0),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                open_fds(),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                max_fds(),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                start_time(),
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            let m = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(m)?;
        }
        Ok(())
    }
}

/// User plus system CPU time of the process (its threads, not its children).
fn cpu_seconds() -> Option<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(secs(usage.user_time()) + secs(usage.system_time()))
}

/// A `Name:   1234 kB` line of `/proc/self/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

fn open_fds() -> Option<f64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as f64)
}

/// The soft `RLIMIT_NOFILE`.
fn max_fds() -> Option<f64> {
    use nix::sys::resource::{Resource, getrlimit};
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft as f64)
}

/// Boot time plus the process's start in clock ticks after boot (field 22 of `stat`).
fn start_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; field 22 is the 20th
    // after it.
    let after_comm = stat.rsplit_once(')')?.1;
    let ticks: f64 = after_comm.split_whitespace().nth(19)?.parse().ok()?;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&hz| hz > 0)?;
    Some(boot + ticks / hz as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_figures_are_read() {
        assert!(cpu_seconds().is_some_and(|c| c >= 0.0));
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let rss = status_kib(&status, "VmRSS:").unwrap();
        let size = status_kib(&status, "VmSize:").unwrap();
        assert!(rss > 0.0 && size >= rss, "{rss} {size}");
        assert!(open_fds().is_some_and(|n| n >= 3.0));
        assert!(max_fds().is_some_and(|n| n >= 3.0));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = start_time().unwrap();
        assert!(
            started <= now + 1.0 && started > now - 86_400.0 * 365.0,
            "{started}"
        );
        assert_eq!(status_kib("VmRSS:\t  1234 kB\n", "VmRSS:"), Some(1234.0));
        assert_eq!(status_kib("VmRSS: 12 MB\n", "VmRSS:"), None);
    }
}
