//! What the host publishes about each plugin, and the only code that
//! changes it.
//!
//! Two threads report here: the loader (a plugin is configured, fails to
//! load, its reload fails or is undone) and the scheduler (a version is
//! installed or rolled back, a call succeeds or fails, a plugin is
//! quarantined or unloaded). Each report is one named transition of
//! [`Registry`]; the map behind it is private, so what a status can go
//! through is read here, in one place. Readers (HTTP, `/metrics`, MQTT, the
//! dashboard's snapshot) get copies.
//!
//! A report about a plugin the registry does not list (its config entry
//! was removed meanwhile) is dropped, so a late outcome of a removed
//! plugin's last call cannot bring its entry back. Only
//! [`Registry::installed`] adds a missing entry: what runs is always shown.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use super::histogram::{self, Histogram};
use crate::clock::unix_time_ms;
use crate::failure::PluginFailure;

/// Where a plugin is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Loading,
    Running,
    /// The last call failed; it will be retried after a backoff.
    Failed,
    /// Failed too often; not called until reloaded or re-enabled.
    Quarantined,
    /// The component could not be loaded (missing file, refused grants).
    LoadFailed,
    Disabled,
}

/// What the host publishes about one plugin. Only [`Registry`] makes or
/// changes one; what readers get is a copy.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub name: String,
    /// The entry point the plugin serves (`dht22-logic`, `dashboard`, ...).
    pub kind: Option<&'static str>,
    pub status: Health,
    /// Its folder of Python source, or its component file.
    pub file: String,
    /// First 12 hex digits of the SHA-256 of its sources (or component).
    pub version: String,
    /// "python" (source on the shared runtime) or "component".
    pub source: Option<&'static str>,
    pub loaded_at_ms: u64,
    pub calls: u64,
    pub failures: u64,
    pub failures_by_kind: BTreeMap<&'static str, u64>,
    pub last_error: String,
    pub last_error_kind: Option<&'static str>,
    /// Python traceback of the last failure, if any.
    pub last_error_detail: String,
    pub last_call_ms: Option<u64>,
    pub last_call_duration_us: u64,
    pub last_call_fuel: u64,
    pub denied_calls: u64,
    pub interval_ms: u64,
    /// How late the last scheduled call started, and the worst so far: how
    /// much other plugins delayed this one.
    pub last_start_delay_us: u64,
    pub max_start_delay_us: u64,
    /// Fuel used by every call so far.
    pub fuel_used_total: u64,
    /// Versions installed after the first (hot reloads and rollbacks).
    pub reloads: u64,
    /// Python modules compiled from source by this plugin's loads so far.
    /// A load that finds its bytecode cached (a restart, a new instance
    /// after a failure, `recycle = true`) adds nothing.
    pub python_compiles: u64,
    /// Linear memory of the live instance; 0 when there is none.
    pub instance_memory_bytes: u64,
    /// Durable writes of its state store so far (a call's changes are
    /// written at most once, and at most once per 5 s).
    pub state_writes: u64,
    /// Call durations by call kind (`poll`, `render`), for `/metrics`.
    #[serde(skip)]
    pub call_seconds: BTreeMap<&'static str, Histogram>,
    /// How late scheduled polls started, for `/metrics`.
    #[serde(skip)]
    pub start_delay_seconds: Histogram,
}

impl PluginStatus {
    fn new(name: &str, file: String, status: Health, interval_ms: u64) -> PluginStatus {
        PluginStatus {
            name: name.to_string(),
            kind: None,
            status,
            file,
            version: String::new(),
            source: None,
            loaded_at_ms: 0,
            calls: 0,
            failures: 0,
            failures_by_kind: BTreeMap::new(),
            last_error: String::new(),
            last_error_kind: None,
            last_error_detail: String::new(),
            last_call_ms: None,
            last_call_duration_us: 0,
            last_call_fuel: 0,
            denied_calls: 0,
            interval_ms,
            last_start_delay_us: 0,
            max_start_delay_us: 0,
            fuel_used_total: 0,
            reloads: 0,
            python_compiles: 0,
            instance_memory_bytes: 0,
            state_writes: 0,
            call_seconds: BTreeMap::new(),
            start_delay_seconds: Histogram::new(histogram::START_DELAY_SECONDS),
        }
    }

    fn set_error(&mut self, problem: Problem) {
        self.last_error = problem.message;
        self.last_error_kind = Some(problem.kind);
        self.last_error_detail = problem.detail;
    }

    fn clear_error(&mut self) {
        self.last_error.clear();
        self.last_error_kind = None;
        self.last_error_detail.clear();
    }
}

/// A plugin as the config lists it (see [`Registry::configured`]).
#[derive(Debug, Clone)]
pub struct Configured {
    pub name: String,
    /// Its folder of Python source, or its component file.
    pub file: String,
    pub enabled: bool,
    pub interval_ms: u64,
}

/// A version of a plugin that became the running one.
#[derive(Debug, Clone)]
pub struct Version {
    pub kind: &'static str,
    pub version: String,
    /// "python" or "component".
    pub source: &'static str,
    pub file: String,
    pub interval_ms: u64,
}

/// An error to show as the plugin's last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `load`, `reload`, `rollback`, or a failure kind (`trap`, ...).
    pub kind: &'static str,
    pub message: String,
    /// A traceback, if any.
    pub detail: String,
}

impl From<&PluginFailure> for Problem {
    fn from(f: &PluginFailure) -> Problem {
        Problem {
            kind: f.kind.as_str(),
            message: f.message.clone(),
            detail: f.detail.clone(),
        }
    }
}

/// What one finished call did (see [`Registry::called`]).
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// `poll`, `run` or `render`.
    pub kind: &'static str,
    pub duration: Duration,
    pub fuel: u64,
    /// Linear memory of the instance kept for the next call; 0 when none.
    pub memory_bytes: u64,
    /// Calls refused by its grants so far.
    pub denied: u64,
    /// Durable writes of its state store so far.
    pub state_writes: u64,
}

/// Why a plugin was unloaded (see [`Registry::unloaded`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unloaded {
    /// Its config entry is gone: so is its status.
    Removed,
    /// `enabled = false`.
    Disabled,
    /// It cannot load under its new config: the running version stopped,
    /// and its status shows why.
    Refused(Problem),
}

/// Every plugin's published status, by name. Cloning shares it.
#[derive(Clone, Default)]
pub struct Registry {
    plugins: Arc<RwLock<BTreeMap<String, PluginStatus>>>,
}

impl Registry {
    /// A copy of every plugin's status, by name.
    pub fn snapshot(&self) -> Vec<PluginStatus> {
        self.read(|plugins| plugins.values().cloned().collect())
    }

    /// Looks at every status without copying (for comparisons that must be
    /// cheap, such as `/api`'s cache check).
    pub fn read<R>(&self, f: impl FnOnce(&BTreeMap<String, PluginStatus>) -> R) -> R {
        f(&self.plugins.read().expect("plugin registry lock"))
    }

    /// Changes the status of `name`, if it is listed.
    fn update(&self, name: &str, f: impl FnOnce(&mut PluginStatus)) {
        if let Some(s) = self
            .plugins
            .write()
            .expect("plugin registry lock")
            .get_mut(name)
        {
            f(s);
        }
    }

    // The loader's reports.

    /// The config now lists exactly `plugins`: others are dropped, new ones
    /// are `loading` (or `disabled`), and a disabled one is `disabled`
    /// whatever it was. A listed plugin otherwise keeps its status until
    /// the outcome of its load is reported.
    pub fn configured(&self, plugins: &[Configured]) {
        let mut registry = self.plugins.write().expect("plugin registry lock");
        registry.retain(|name, _| plugins.iter().any(|p| &p.name == name));
        for p in plugins {
            let health = if p.enabled {
                Health::Loading
            } else {
                Health::Disabled
            };
            let entry = registry.entry(p.name.clone()).or_insert_with(|| {
                PluginStatus::new(&p.name, p.file.clone(), health, p.interval_ms)
            });
            if !p.enabled {
                entry.status = Health::Disabled;
            }
        }
    }

    /// A plugin with no running version could not be loaded.
    pub fn load_failed(&self, name: &str, problem: Problem) {
        self.update(name, |s| {
            s.status = Health::LoadFailed;
            s.set_error(problem);
        });
    }

    /// A new version could not be loaded; the running one stays, and so
    /// does its health.
    pub fn reload_failed(&self, name: &str, problem: Problem) {
        self.update(name, |s| s.set_error(problem));
    }

    /// The running version's source is back: a failed reload's error no
    /// longer applies. Returns whether there was one.
    pub fn reload_undone(&self, name: &str) -> bool {
        let mut cleared = false;
        self.update(name, |s| {
            if s.last_error_kind == Some("reload") {
                s.clear_error();
                cleared = true;
            }
        });
        cleared
    }

    /// Loading a version compiled `modules` Python modules from source
    /// (reported by the loader for a first load, by the scheduler for a
    /// new instance).
    pub fn compiled(&self, name: &str, modules: u64) {
        if modules > 0 {
            self.update(name, |s| s.python_compiles += modules);
        }
    }

    // The scheduler's reports.

    /// `version` is the running one now.
    pub fn installed(&self, name: &str, version: Version) {
        let mut registry = self.plugins.write().expect("plugin registry lock");
        let s = registry.entry(name.to_string()).or_insert_with(|| {
            PluginStatus::new(name, String::new(), Health::Loading, version.interval_ms)
        });
        if !s.version.is_empty() {
            s.reloads += 1;
        }
        s.kind = Some(version.kind);
        s.status = Health::Running;
        s.version = version.version;
        s.source = Some(version.source);
        s.loaded_at_ms = unix_time_ms();
        s.file = version.file;
        s.interval_ms = version.interval_ms;
        s.clear_error();
    }

    /// A new version failed on its first calls and `version`, the one it
    /// replaced, runs again; `why` (with the failing version's traceback)
    /// stays visible.
    pub fn rolled_back(&self, name: &str, version: Version, why: Problem) {
        self.installed(name, version);
        self.update(name, |s| s.set_error(why));
    }

    /// A scheduled call started `delay` after it was due.
    pub fn started_late(&self, name: &str, delay: Duration) {
        let us = delay.as_micros() as u64;
        self.update(name, |s| {
            s.last_start_delay_us = us;
            s.max_start_delay_us = s.max_start_delay_us.max(us);
            s.start_delay_seconds.observe(delay.as_secs_f64());
        });
    }

    /// A call finished, well or not (its failure is reported next).
    pub fn called(&self, name: &str, call: Call) {
        self.update(name, |s| {
            s.calls += 1;
            s.last_call_ms = Some(unix_time_ms());
            s.last_call_duration_us = call.duration.as_micros() as u64;
            s.last_call_fuel = call.fuel;
            s.fuel_used_total += call.fuel;
            s.instance_memory_bytes = call.memory_bytes;
            s.call_seconds
                .entry(call.kind)
                .or_insert_with(|| Histogram::new(histogram::CALL_SECONDS))
                .observe(call.duration.as_secs_f64());
            s.denied_calls = call.denied;
            s.state_writes = call.state_writes;
        });
    }

    /// A call succeeded after failures. The last error stays, for the
    /// record, until a new version is installed.
    pub fn recovered(&self, name: &str) {
        self.update(name, |s| s.status = Health::Running);
    }

    /// A call (or making an instance for it) failed; it is retried after a
    /// backoff.
    pub fn call_failed(&self, name: &str, failure: &PluginFailure) {
        self.failed(name, failure, Health::Failed);
    }

    /// A call failed once too often: not called again until reloaded or
    /// re-enabled.
    pub fn quarantined(&self, name: &str, failure: &PluginFailure) {
        self.failed(name, failure, Health::Quarantined);
    }

    fn failed(&self, name: &str, failure: &PluginFailure, health: Health) {
        let kind = failure.kind.as_str();
        self.update(name, |s| {
            s.failures += 1;
            *s.failures_by_kind.entry(kind).or_insert(0) += 1;
            s.status = health;
            s.set_error(failure.into());
        });
    }

    /// The plugin's running version was dropped (reported once it is, so
    /// no late outcome of its last call can overwrite this).
    pub fn unloaded(&self, name: &str, why: Unloaded) {
        match why {
            Unloaded::Removed => {
                self.plugins
                    .write()
                    .expect("plugin registry lock")
                    .remove(name);
            }
            Unloaded::Disabled => self.update(name, |s| s.status = Health::Disabled),
            Unloaded::Refused(problem) => self.load_failed(name, problem),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;

    const NAME: &str = "p";

    /// One report, as the tables below spell it.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        Configured { enabled: bool },
        NotConfigured,
        LoadFailed,
        ReloadFailed,
        ReloadUndone,
        Compiled(u64),
        Installed(&'static str),
        RolledBack(&'static str),
        StartedLate(u64),
        Called,
        Recovered,
        CallFailed,
        Quarantined,
        Removed,
        Disabled,
        Refused,
    }

    fn problem(kind: &'static str) -> Problem {
        Problem {
            kind,
            message: format!("{kind} message"),
            detail: format!("{kind} detail"),
        }
    }

    fn version(v: &str) -> Version {
        Version {
            kind: "sensor",
            version: v.to_string(),
            source: "python",
            file: format!("plugins/{NAME}"),
            interval_ms: 2000,
        }
    }

    fn apply(registry: &Registry, step: Step) {
        let trap = PluginFailure {
            kind: FailureKind::Trap,
            message: "trap message".into(),
            detail: "trap detail".into(),
        };
        match step {
            Step::Configured { enabled } => registry.configured(&[Configured {
                name: NAME.into(),
                file: format!("plugins/{NAME}"),
                enabled,
                interval_ms: 1000,
            }]),
            Step::NotConfigured => registry.configured(&[]),
            Step::LoadFailed => registry.load_failed(NAME, problem("load")),
            Step::ReloadFailed => registry.reload_failed(NAME, problem("reload")),
            Step::ReloadUndone => {
                registry.reload_undone(NAME);
            }
            Step::Compiled(n) => registry.compiled(NAME, n),
            Step::Installed(v) => registry.installed(NAME, version(v)),
            Step::RolledBack(v) => registry.rolled_back(NAME, version(v), problem("rollback")),
            Step::StartedLate(ms) => registry.started_late(NAME, Duration::from_millis(ms)),
            Step::Called => registry.called(
                NAME,
                Call {
                    kind: "poll",
                    duration: Duration::from_micros(250),
                    fuel: 10,
                    memory_bytes: 4096,
                    denied: 1,
                    state_writes: 2,
                },
            ),
            Step::Recovered => registry.recovered(NAME),
            Step::CallFailed => registry.call_failed(NAME, &trap),
            Step::Quarantined => registry.quarantined(NAME, &trap),
            Step::Removed => registry.unloaded(NAME, Unloaded::Removed),
            Step::Disabled => registry.unloaded(NAME, Unloaded::Disabled),
            Step::Refused => registry.unloaded(NAME, Unloaded::Refused(problem("load"))),
        }
    }

    /// What a table row expects of the status after its steps.
    #[derive(Debug, PartialEq)]
    struct Seen {
        status: Health,
        calls: u64,
        failures: u64,
        reloads: u64,
        error: Option<&'static str>,
        version: String,
    }

    fn seen(
        status: Health,
        (calls, failures, reloads): (u64, u64, u64),
        error: Option<&'static str>,
        version: &'static str,
    ) -> Option<Seen> {
        Some(Seen {
            status,
            calls,
            failures,
            reloads,
            error,
            version: version.to_string(),
        })
    }

    #[test]
    fn transitions() {
        use Health as H;
        use Step::*;
        let on = Configured { enabled: true };
        let off = Configured { enabled: false };
        #[rustfmt::skip]
        let table: &[(&str, &[Step], Option<Seen>)] = &[
            ("configured and enabled: loading", &[on], seen(H::Loading, (0, 0, 0), None, "")),
            ("configured and disabled", &[off], seen(H::Disabled, (0, 0, 0), None, "")),
            ("disabled in a later config", &[on, Installed("v1"), off], seen(H::Disabled, (0, 0, 0), None, "v1")),
            ("enabled again: disabled until a version is installed", &[off, on], seen(H::Disabled, (0, 0, 0), None, "")),
            ("dropped from the config", &[on, Installed("v1"), NotConfigured], None),
            ("first version installed", &[on, Installed("v1")], seen(H::Running, (0, 0, 0), None, "v1")),
            ("a reload counts", &[on, Installed("v1"), Installed("v2")], seen(H::Running, (0, 0, 1), None, "v2")),
            ("installing clears the last error", &[on, Installed("v1"), CallFailed, Installed("v2")], seen(H::Running, (0, 1, 1), None, "v2")),
            ("nothing runs and it cannot load", &[on, LoadFailed], seen(H::LoadFailed, (0, 0, 0), Some("load"), "")),
            ("a failed reload keeps the running version", &[on, Installed("v1"), ReloadFailed], seen(H::Running, (0, 0, 0), Some("reload"), "v1")),
            ("the running source is back", &[on, Installed("v1"), ReloadFailed, ReloadUndone], seen(H::Running, (0, 0, 0), None, "v1")),
            ("only a reload error is undone", &[on, Installed("v1"), CallFailed, ReloadUndone], seen(H::Failed, (0, 1, 0), Some("trap"), "v1")),
            ("a good call", &[on, Installed("v1"), Called], seen(H::Running, (1, 0, 0), None, "v1")),
            ("a failed call", &[on, Installed("v1"), Called, CallFailed], seen(H::Failed, (1, 1, 0), Some("trap"), "v1")),
            ("recovered: the error stays for the record", &[on, Installed("v1"), CallFailed, Called, Recovered], seen(H::Running, (1, 1, 0), Some("trap"), "v1")),
            ("quarantined", &[on, Installed("v1"), CallFailed, Quarantined], seen(H::Quarantined, (0, 2, 0), Some("trap"), "v1")),
            ("rolled back", &[on, Installed("v1"), Installed("v2"), CallFailed, RolledBack("v1")], seen(H::Running, (0, 1, 2), Some("rollback"), "v1")),
            ("unloaded: removed", &[on, Installed("v1"), Removed], None),
            ("unloaded: disabled", &[on, Installed("v1"), Disabled], seen(H::Disabled, (0, 0, 0), None, "v1")),
            ("unloaded: refused by its new config", &[on, Installed("v1"), Refused], seen(H::LoadFailed, (0, 0, 0), Some("load"), "v1")),
            ("a late report of a removed plugin is dropped", &[on, Installed("v1"), NotConfigured, Called, CallFailed, Disabled], None),
            ("a report before the config lists it is dropped", &[Called, LoadFailed, ReloadFailed, Compiled(3)], None),
            ("what runs is shown even if unlisted", &[Installed("v1")], seen(H::Running, (0, 0, 0), None, "v1")),
            ("re-added while its removal was pending", &[on, Installed("v1"), NotConfigured, on, Removed, Installed("v2")], seen(H::Running, (0, 0, 0), None, "v2")),
        ];
        for (case, steps, want) in table {
            let registry = Registry::default();
            for &step in *steps {
                apply(&registry, step);
            }
            let got = registry.snapshot().into_iter().next().map(|s| Seen {
                status: s.status,
                calls: s.calls,
                failures: s.failures,
                reloads: s.reloads,
                error: s.last_error_kind,
                version: s.version,
            });
            assert_eq!(&got, want, "{case}: {steps:?}");
        }
    }

    #[test]
    fn errors_carry_message_and_detail() {
        let registry = Registry::default();
        apply(&registry, Step::Configured { enabled: true });
        apply(&registry, Step::Installed("v1"));
        apply(&registry, Step::RolledBack("v1"));
        let s = &registry.snapshot()[0];
        assert_eq!(s.last_error, "rollback message");
        assert_eq!(s.last_error_detail, "rollback detail");
        apply(&registry, Step::Installed("v2"));
        let s = &registry.snapshot()[0];
        assert_eq!(
            (s.last_error.as_str(), s.last_error_detail.as_str()),
            ("", "")
        );
    }

    #[test]
    fn counters() {
        let registry = Registry::default();
        for step in [
            Step::Configured { enabled: true },
            Step::Compiled(3),
            Step::Compiled(0),
            Step::Installed("v1"),
            Step::Compiled(2),
            Step::StartedLate(5),
            Step::StartedLate(1),
            Step::Called,
            Step::Called,
            Step::CallFailed,
        ] {
            apply(&registry, step);
        }
        let s = &registry.snapshot()[0];
        assert_eq!(s.python_compiles, 5);
        assert_eq!((s.last_start_delay_us, s.max_start_delay_us), (1000, 5000));
        assert_eq!(s.start_delay_seconds.count(), 2);
        assert_eq!((s.calls, s.fuel_used_total, s.last_call_fuel), (2, 20, 10));
        assert_eq!(s.call_seconds["poll"].count(), 2);
        assert_eq!((s.denied_calls, s.state_writes), (1, 2));
        assert_eq!(s.instance_memory_bytes, 4096);
        assert_eq!(s.failures_by_kind.get("trap"), Some(&1));
        assert!(s.last_call_ms.is_some());
        assert_eq!(s.interval_ms, 2000, "the installed version's interval");
        assert_eq!(s.file, format!("plugins/{NAME}"));
    }

    #[test]
    fn configured_keeps_the_listed_in_order() {
        let registry = Registry::default();
        let listed = |names: &[&str]| -> Vec<Configured> {
            names
                .iter()
                .map(|n| Configured {
                    name: n.to_string(),
                    file: String::new(),
                    enabled: true,
                    interval_ms: 1000,
                })
                .collect()
        };
        registry.configured(&listed(&["b", "a", "c"]));
        registry.installed("a", version("v1"));
        registry.configured(&listed(&["a", "d"]));
        let names: Vec<(String, Health)> = registry
            .snapshot()
            .into_iter()
            .map(|s| (s.name, s.status))
            .collect();
        assert_eq!(
            names,
            [
                ("a".to_string(), Health::Running),
                ("d".to_string(), Health::Loading)
            ]
        );
    }
}
