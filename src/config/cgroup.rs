//! The memory limit of the cgroup this process runs in (cgroup v2): `memory.max` of its own
//! cgroup and of each ancestor, the smallest. Under systemd that is the unit's `MemoryMax=`
//! (or its slice's); `validate-config` runs as the unit's `ExecStartPre`, so it reads the same
//! limit `serve` will live under.

use std::path::{Path, PathBuf};

/// Where the cgroup files are: `/proc/self/cgroup` and the cgroup2 mount.
#[derive(Debug, Clone)]
pub(crate) struct CgroupFs {
    /// The process's cgroup membership (`0::/system.slice/x.service`).
    pub(crate) membership: PathBuf,
    /// The cgroup2 mount point.
    pub(crate) root: PathBuf,
}

/// A memory limit in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemoryMax {
    /// Bytes.
    pub(crate) bytes: u64,
    /// The file it was read from.
    pub(crate) file: PathBuf,
}

/// A test build reads the cgroup2 mount point from this variable (release builds never do).
#[cfg(feature = "testing")]
pub(crate) const ENV_TEST_ROOT: &str = "HUBWORKER_TEST_CGROUP_ROOT";

impl CgroupFs {
    /// This process's: `/proc/self/cgroup` and `/sys/fs/cgroup`.
    pub(crate) fn system() -> CgroupFs {
        #[cfg(feature = "testing")]
        let root = std::env::var_os(ENV_TEST_ROOT)
            .map_or_else(|| PathBuf::from("/sys/fs/cgroup"), PathBuf::from);
        #[cfg(not(feature = "testing"))]
        let root = PathBuf::from("/sys/fs/cgroup");
        CgroupFs {
            membership: PathBuf::from("/proc/self/cgroup"),
            root,
        }
    }

    /// The smallest `memory.max` on the way from this process's cgroup to the root; `None`
    /// when there is none (`max` everywhere, cgroup v1, or no cgroup files at all).
    pub(crate) fn memory_max(&self) -> Option<MemoryMax> {
        let membership = std::fs::read_to_string(&self.membership).ok()?;
        let path = membership
            .lines()
            .find_map(|l| l.strip_prefix("0::"))?
            .trim()
            .trim_start_matches('/');
        let mut dir = Some(Path::new(path));
        let mut smallest: Option<MemoryMax> = None;
        while let Some(d) = dir {
            let file = self.root.join(d).join("memory.max");
            if let Some(bytes) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                && smallest.as_ref().is_none_or(|s| bytes < s.bytes)
            {
                smallest = Some(MemoryMax { bytes, file });
            }
            dir = d.parent();
        }
        smallest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_limit_on_the_way_up_wins_and_max_means_none() {
        let dir = tempfile::tempdir().unwrap();
        let membership = dir.path().join("cgroup");
        std::fs::write(&membership, "0::/system.slice/hubworker@1.service\n").unwrap();
        let root = dir.path().join("fs");
        let unit = root.join("system.slice/hubworker@1.service");
        std::fs::create_dir_all(&unit).unwrap();
        let fs = CgroupFs {
            membership: membership.clone(),
            root: root.clone(),
        };
        assert_eq!(fs.memory_max(), None);
        std::fs::write(unit.join("memory.max"), "max\n").unwrap();
        assert_eq!(fs.memory_max(), None);
        std::fs::write(unit.join("memory.max"), "8589934592\n").unwrap();
        assert_eq!(
            fs.memory_max(),
            Some(MemoryMax {
                bytes: 8 << 30,
                file: unit.join("memory.max")
            })
        );
        std::fs::write(root.join("system.slice/memory.max"), "4294967296\n").unwrap();
        assert_eq!(fs.memory_max().map(|m| m.bytes), Some(4 << 30));
        // cgroup v1 only (no `0::` line): no limit known.
        std::fs::write(&membership, "4:memory:/x\n").unwrap();
        assert_eq!(fs.memory_max(), None);
    }
}
