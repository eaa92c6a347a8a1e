//! Whether the config fits the service it runs in: the memory its plugins
//! may grow to and the threads its connections may take, against the
//! cgroup limits systemd set (`MemoryMax=`, `TasksMax=`). A config that
//! cannot hold is refused at start with what to change, instead of the
//! kernel killing the whole host when one plugin grows to its own limit,
//! or a thread spawn failing under load.

use std::path::{Path, PathBuf};

use crate::config::Config;

/// What the host needs besides its plugins' linear memories, as the
/// cgroup counts it (its heap, the runtime's code and shared image in the
/// page cache, the binary): measured on the emulated Pi Zero 2 W, with
/// margin (BENCHMARKS.md, "Device").
pub const HOST_BASELINE_MIB: u64 = 48;

/// Threads the host runs besides one per HTTP connection: main, hardware,
/// epoch ticker, loader, inotify, scheduler, MQTT, HTTP acceptor, the
/// buzzer's soft PWM, and slack for short-lived ones.
pub const FIXED_THREADS: u64 = 16;

/// The limits of the service's cgroup, when it has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_max_bytes: Option<u64>,
    pub pids_max: Option<u64>,
}

/// Checks `config` against `limits`; the error says what to change.
pub fn check(config: &Config, limits: Limits) -> Result<(), String> {
    let plugins_mib: u64 = config
        .plugins
        .iter()
        .filter(|(_, p)| p.enabled)
        .map(|(name, _)| u64::from(config.limits_for(name).memory_mb))
        .sum();
    let threads = FIXED_THREADS + config.host.http_max_connections as u64;
    fits(plugins_mib, threads, limits)
}

/// The rule itself: plugins' memory plus the host's baseline within the
/// memory limit, threads within the task limit.
pub fn fits(plugins_mib: u64, threads: u64, limits: Limits) -> Result<(), String> {
    if let Some(max) = limits.memory_max_bytes {
        let max_mib = max / (1024 * 1024);
        let need = plugins_mib + HOST_BASELINE_MIB;
        if need > max_mib {
            return Err(format!(
                "the enabled plugins may grow to {plugins_mib} MiB of memory (their \
                 limits.memory_mb) and the host needs ~{HOST_BASELINE_MIB} MiB besides: {need} MiB, \
                 more than this service's memory limit of {max_mib} MiB (systemd MemoryMax=, \
                 cgroup memory.max), so one plugin growing to its limit would get the whole host \
                 killed; lower limits.memory_mb (a Python plugin needs ~20) or raise MemoryMax="
            ));
        }
    }
    if let Some(max) = limits.pids_max {
        if threads > max {
            return Err(format!(
                "host.http_max_connections allows {} connections, a thread each, and the host \
                 runs up to {FIXED_THREADS} more: {threads} threads, more than this service's \
                 task limit of {max} (systemd TasksMax=, cgroup pids.max); lower \
                 host.http_max_connections or raise TasksMax=",
                threads - FIXED_THREADS
            ));
        }
    }
    Ok(())
}

/// The limits of this process's cgroup (v2; the memory limit also from a
/// v1 hierarchy). No file, `max` or an unreadable value: no limit.
pub fn current() -> Limits {
    let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") else {
        return Limits::default();
    };
    let root = Path::new("/sys/fs/cgroup");
    let mut limits = Limits::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        let path = path.trim_start_matches('/');
        let v2 = |file: &str| -> PathBuf { root.join(path).join(file) };
        if controllers.is_empty() {
            limits.memory_max_bytes = limits.memory_max_bytes.or(read_limit(&v2("memory.max")));
            limits.pids_max = limits.pids_max.or(read_limit(&v2("pids.max")));
        } else if controllers.split(',').any(|c| c == "memory") {
            let v1 = root.join("memory").join(path).join("memory.limit_in_bytes");
            limits.memory_max_bytes = limits.memory_max_bytes.or(read_limit(&v1));
        }
    }
    limits
}

fn read_limit(file: &Path) -> Option<u64> {
    let value: u64 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    // cgroup v1 says "no limit" with a huge number.
    (value < 1 << 60).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn what_fits_and_what_does_not() {
        let mem = |mib: u64| Limits {
            memory_max_bytes: Some(mib * MIB),
            pids_max: None,
        };
        let tasks = |n: u64| Limits {
            memory_max_bytes: None,
            pids_max: Some(n),
        };
        for (plugins_mib, threads, limits, ok) in [
            (256, 200, Limits::default(), true),
            // Four plugins at 64 MiB in a 128 MiB service: refused.
            (4 * 64, 20, mem(128), false),
            (4 * 20, 20, mem(128), true),
            (128 - HOST_BASELINE_MIB, 20, mem(128), true),
            (128 - HOST_BASELINE_MIB + 1, 20, mem(128), false),
            // 128 connections in a 64-task service: refused.
            (0, FIXED_THREADS + 128, tasks(64), false),
            (0, FIXED_THREADS + 48, tasks(64), true),
        ] {
            assert_eq!(
                fits(plugins_mib, threads, limits).is_ok(),
                ok,
                "{plugins_mib} MiB, {threads} threads, {limits:?}"
            );
        }
        let err = fits(256, 20, mem(128)).unwrap_err();
        assert!(
            err.contains("limits.memory_mb") && err.contains("MemoryMax="),
            "{err}"
        );
        let err = fits(0, 144, tasks(64)).unwrap_err();
        assert!(
            err.contains("http_max_connections") && err.contains("TasksMax="),
            "{err}"
        );
    }

    #[test]
    fn a_config_is_checked_with_its_own_limits() {
        let config = Config::parse(
            "[host]\nhttp_max_connections = 8\n[limits]\nmemory_mb = 32\n\
             [plugins.a]\nkind = \"sensor\"\n[plugins.b]\nkind = \"sensor\"\n\
             [plugins.b.limits]\nmemory_mb = 64\n[plugins.c]\nkind = \"sensor\"\nenabled = false\n",
            Path::new("host.toml"),
        )
        .unwrap();
        // 32 + 64 (c is disabled) + the baseline.
        let need = 96 + HOST_BASELINE_MIB;
        let at = |mib: u64| Limits {
            memory_max_bytes: Some(mib * MIB),
            pids_max: Some(FIXED_THREADS + 8),
        };
        assert!(check(&config, at(need)).is_ok());
        assert!(check(&config, at(need - 1)).is_err());
    }
}
