//! The loader thread: first load, then hot reload of plugin files and of
//! the config file.
//!
//! inotify watches the folder of every plugin file and of the config file
//! (folders, not files: editors and `scp` replace files by renaming, which
//! a watch on the old inode would miss). Only finished writes count
//! (`IN_CLOSE_WRITE`, `IN_MOVED_TO`), and a burst of them is debounced until
//! the folder has been quiet for [`DEBOUNCE`]. A changed file is checked,
//! compiled (or taken from the artifact cache) and prepared here, off the
//! scheduler thread, and only then sent to the scheduler to be swapped in
//! between two calls. A file that is not a valid plugin is never loaded: the
//! running version stays and the error goes to the log and the plugin's
//! status; the next good write is picked up.
//!
//! A changed config is parsed and validated first; an invalid edit keeps
//! the running config. A valid one is applied plugin by plugin: disabled
//! plugins are unloaded, enabled ones loaded, and any plugin whose entry
//! changed (interval, limits, grants, settings, file) is reloaded.
//!
//! A component with no cached optimized artifact is loaded from its quick
//! (Winch) build and handed to the [`Optimizer`]; when the Cranelift build
//! is ready it comes back here as [`Event::Optimized`] and is sent to the
//! scheduler as [`Command::Upgrade`], which swaps it in between two calls.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use inotify::{Inotify, WatchDescriptor, WatchMask};

use super::optimize::{Optimized, Optimizer, Outcome};
use super::{build, load, version_of, Health, PluginStatus, Registry};
use crate::capabilities::HostServices;
use crate::config::Config;
use crate::runtime::Runtime;
use crate::scheduler::Command;

/// Quiet time after the last file event before acting on a burst.
pub const DEBOUNCE: Duration = Duration::from_millis(40);
/// Longest a steady stream of events can postpone acting.
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(3);

/// What wakes the loader up.
pub enum Event {
    /// A file in a watched folder was written or renamed into place.
    File(PathBuf),
    /// The background compile of an optimized build finished.
    Optimized(Optimized),
}

/// Called with the new config after a valid config change was applied to
/// the plugins (the MQTT service follows `[mqtt]` this way).
pub type ConfigHook = Box<dyn Fn(&Config) + Send>;

/// Everything the loader needs.
pub struct Loader {
    pub config: Config,
    pub runtime: std::sync::Arc<Runtime>,
    pub services: HostServices,
    pub registry: Registry,
    pub commands: Sender<Command>,
    /// The version of each plugin last handed to the scheduler.
    versions: HashMap<String, String>,
    /// Plugins last handed over as a quick build, with their component's
    /// SHA-256: they get the optimized build when it is ready.
    quick: HashMap<String, String>,
    /// The background compile of optimized builds (with a quick tier).
    optimizer: Option<Optimizer>,
    events: Receiver<Event>,
    events_tx: Sender<Event>,
    /// Set when the config file on disk is invalid, for `/healthz`.
    pub config_error: std::sync::Arc<std::sync::RwLock<Option<String>>>,
    hooks: Vec<ConfigHook>,
}

impl Loader {
    pub fn new(
        config: Config,
        runtime: std::sync::Arc<Runtime>,
        services: HostServices,
        registry: Registry,
        commands: Sender<Command>,
        config_error: std::sync::Arc<std::sync::RwLock<Option<String>>>,
    ) -> Loader {
        let (events_tx, events) = crossbeam_channel::unbounded();
        let optimizer = if runtime.has_quick_tier() {
            Optimizer::start(runtime.clone(), events_tx.clone())
                .inspect_err(|e| {
                    log::error!(
                        "cannot start the background compile thread: {e}; quick builds stay"
                    )
                })
                .ok()
        } else {
            None
        };
        Loader {
            config,
            runtime,
            services,
            registry,
            commands,
            versions: HashMap::new(),
            quick: HashMap::new(),
            optimizer,
            events,
            events_tx,
            config_error,
            hooks: Vec::new(),
        }
    }

    /// Adds a hook run after every valid config change.
    pub fn on_config_change(mut self, hook: ConfigHook) -> Loader {
        self.hooks.push(hook);
        self
    }

    /// Loads every enabled plugin, then watches for changes until the
    /// scheduler goes away.
    pub fn run(mut self) {
        self.register_configured();
        let names: Vec<String> = self.enabled().collect();
        for name in names {
            if !self.load_and_send(&name, false) {
                return;
            }
        }
        if self.commands.send(Command::LoadingDone).is_err() {
            return;
        }
        let watcher = match Watcher::start(&self.config, self.events_tx.clone()) {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                // Optimized builds still arrive, so keep going.
                log::error!("hot reload is off: cannot watch files with inotify: {e}");
                None
            }
        };
        self.watch(watcher);
    }

    fn enabled(&self) -> impl Iterator<Item = String> + '_ {
        self.config
            .plugins
            .iter()
            .filter(|(_, p)| p.enabled)
            .map(|(n, _)| n.clone())
    }

    /// Lists every configured plugin in the registry: loading or disabled.
    fn register_configured(&self) {
        if let Ok(mut registry) = self.registry.write() {
            registry.retain(|name, _| self.config.plugins.contains_key(name));
            for (name, p) in &self.config.plugins {
                let health = if p.enabled {
                    Health::Loading
                } else {
                    Health::Disabled
                };
                let entry = registry.entry(name.clone()).or_insert_with(|| {
                    PluginStatus::new(
                        name,
                        self.config.plugin_file(name).display().to_string(),
                        health,
                        p.interval_ms,
                    )
                });
                if !p.enabled {
                    entry.status = Health::Disabled;
                }
            }
        }
    }

    /// Loads `name` and hands it to the scheduler. Returns false when the
    /// scheduler has gone away.
    fn load_and_send(&mut self, name: &str, trial: bool) -> bool {
        let loaded = load(
            name,
            &self.config,
            &self.runtime,
            &self.services,
            &self.registry,
        );
        release_freed_memory();
        match loaded {
            Ok(loaded) => {
                let plugin = loaded.plugin;
                self.versions
                    .insert(name.to_string(), plugin.version.clone());
                let quick = plugin.tier.is_quick();
                let sent = self
                    .commands
                    .send(Command::Install {
                        plugin: Box::new(plugin),
                        trial,
                    })
                    .is_ok();
                if quick {
                    self.quick.insert(name.to_string(), loaded.digest.clone());
                    self.sync_wanted();
                    if let Some(o) = &mut self.optimizer {
                        o.request(&loaded.digest, loaded.wasm);
                    }
                } else {
                    self.forget_quick(name);
                }
                sent
            }
            Err(e) => {
                let running = self.versions.contains_key(name);
                let message = if running {
                    format!("reload failed, the running version stays: {e:#}")
                } else {
                    format!("{e:#}")
                };
                log::error!("plugin `{name}`: {message}");
                if let Ok(mut registry) = self.registry.write() {
                    if let Some(s) = registry.get_mut(name) {
                        if !running {
                            s.status = Health::LoadFailed;
                        }
                        s.last_error = message;
                        s.last_error_kind = Some(if running { "reload" } else { "load" });
                    }
                }
                true
            }
        }
    }

    /// Tells the optimizer which components are still wanted.
    fn sync_wanted(&self) {
        if let Some(o) = &self.optimizer {
            o.set_wanted(self.quick.values().cloned().collect());
        }
    }

    /// `name` no longer runs a quick build (replaced, disabled).
    fn forget_quick(&mut self, name: &str) {
        if self.quick.remove(name).is_some() {
            self.sync_wanted();
        }
    }

    /// An optimized build is ready (or failed): every plugin still running
    /// the quick build of that component gets it through the scheduler.
    fn optimized(&mut self, done: Optimized) {
        if let Some(o) = &mut self.optimizer {
            o.finished(&done.digest);
        }
        let mut names: Vec<String> = self
            .quick
            .iter()
            .filter(|(_, d)| **d == done.digest)
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        let tier = self.runtime.tier().as_str();
        match done.outcome {
            Outcome::Skipped(wasm) => {
                // Wanted again since it was skipped: ask again.
                if !names.is_empty() {
                    if let Some(o) = &mut self.optimizer {
                        o.request(&done.digest, wasm);
                    }
                }
            }
            Outcome::Failed(why) => {
                for name in names {
                    let message = format!(
                        "the optimized ({tier}) build of version {} failed, so the quick \
                         (winch) build keeps running: {why}",
                        &done.digest[..12]
                    );
                    log::error!("plugin `{name}`: {message}");
                    if let Ok(mut registry) = self.registry.write() {
                        if let Some(s) = registry.get_mut(&name) {
                            s.last_error = message;
                            s.last_error_kind = Some("optimize");
                        }
                    }
                    self.forget_quick(&name);
                }
            }
            Outcome::Ready(component) => {
                for name in names {
                    log::info!(
                        "plugin `{name}`: optimized ({tier}) build of version {} ready after {:.1} s",
                        &done.digest[..12],
                        done.took.as_secs_f64()
                    );
                    let built = build(
                        &name,
                        &self.config,
                        &self.runtime,
                        &self.services,
                        &self.registry,
                        &component,
                        self.runtime.tier(),
                        &done.digest,
                    );
                    match built {
                        Ok(plugin) => {
                            let _ = self.commands.send(Command::Upgrade(Box::new(plugin)));
                        }
                        Err(e) => log::error!(
                            "plugin `{name}`: the optimized ({tier}) build cannot be used, the \
                             quick (winch) build keeps running: {e:#}"
                        ),
                    }
                    self.forget_quick(&name);
                }
            }
        }
    }

    fn watch(&mut self, mut watcher: Option<Watcher>) {
        loop {
            let Some(burst) = next_burst(&self.events, &self.commands) else {
                return;
            };
            let changed = burst.files;
            if !changed.is_empty() {
                if let Some(w) = &mut watcher {
                    self.files_changed(&changed, w);
                }
            }
            for done in burst.optimized {
                self.optimized(done);
            }
        }
    }

    fn files_changed(&mut self, changed: &HashSet<PathBuf>, watcher: &mut Watcher) {
        let config_file = canonical(&self.config.source);
        if changed.iter().any(|p| Some(p) == config_file.as_ref()) {
            self.apply_config_change();
            watcher.rewatch(&self.config);
        }
        if self.config.dev {
            for name in self.changed_sources(changed) {
                self.rebuild(&name);
            }
        }
        let files = plugin_files(&self.config);
        for path in changed {
            for name in files.get(path).into_iter().flatten() {
                self.reload_file(name);
            }
        }
    }

    /// Plugins whose Python sources (a `.py` beside the component, not a
    /// test) are among `changed`.
    fn changed_sources(&self, changed: &HashSet<PathBuf>) -> Vec<String> {
        let mut names: Vec<String> = plugin_files(&self.config)
            .into_iter()
            .filter(|(file, _)| {
                changed.iter().any(|p| {
                    p.parent() == file.parent()
                        && p.extension().is_some_and(|x| x == "py")
                        && !p
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("test_"))
                })
            })
            .flat_map(|(_, names)| names)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// `--dev`: rebuilds plugin `name` with scripts/build-plugins.sh. The
    /// new component lands in the watched folder and is reloaded like any
    /// other new file; a failed build keeps the running version and puts
    /// the builder's message (a SyntaxError with its line) in the plugin's
    /// status, where the dashboard shows it.
    fn rebuild(&mut self, name: &str) {
        let file = self.config.plugin_file(name);
        let Some(dir) = file.parent() else { return };
        let Some(plugins) = dir.parent() else { return };
        let script = std::env::var_os("WHP_BUILD_PLUGINS")
            .map(PathBuf::from)
            .unwrap_or_else(|| plugins.join("..").join("scripts").join("build-plugins.sh"));
        log::info!(
            "plugin `{name}`: sources changed, rebuilding with {}",
            script.display()
        );
        let out = std::process::Command::new(&script)
            .arg("--dir")
            .arg(plugins)
            .arg(dir.file_name().unwrap_or_default())
            .output();
        let message = match out {
            Ok(out) if out.status.success() => {
                log::info!("plugin `{name}`: rebuilt");
                return;
            }
            Ok(out) => build_error(
                &String::from_utf8_lossy(&out.stdout),
                &String::from_utf8_lossy(&out.stderr),
            ),
            Err(e) => format!("cannot run {}: {e}", script.display()),
        };
        log::error!("plugin `{name}`: build failed, the running version stays: {message}");
        if let Ok(mut registry) = self.registry.write() {
            if let Some(s) = registry.get_mut(name) {
                s.last_error = format!("build failed, the running version stays: {message}");
                s.last_error_kind = Some("build");
            }
        }
    }

    fn reload_file(&mut self, name: &str) {
        let file = self.config.plugin_file(name);
        let Ok(bytes) = std::fs::read(&file) else {
            // Deleted or moved away: the running version stays.
            log::warn!(
                "plugin `{name}`: {} is gone; the running version stays",
                file.display()
            );
            return;
        };
        if self.versions.get(name) == Some(&version_of(&bytes)) {
            return;
        }
        log::info!("plugin `{name}`: {} changed, reloading", file.display());
        self.load_and_send(name, true);
    }

    fn apply_config_change(&mut self) {
        let new = match Config::load(&self.config.source) {
            Ok(c) => c,
            Err(e) => {
                log::error!("config change ignored, the running config stays: {e}");
                if let Ok(mut err) = self.config_error.write() {
                    *err = Some(e.to_string());
                }
                return;
            }
        };
        if let Ok(mut err) = self.config_error.write() {
            *err = None;
        }
        // Settings read only at start.
        let mut new = new;
        new.dev = self.config.dev;
        new.host.listen = self.config.host.listen;
        new.host.hardware = self.config.host.hardware;
        if new.host != self.config.host || new.hardware != self.config.hardware {
            log::warn!(
                "config change: [host] and [hardware] settings apply at the next start; plugin and [mqtt] changes apply now"
            );
        }
        let old = std::mem::replace(&mut self.config, new);
        self.register_configured();
        let mut names: Vec<&String> = old
            .plugins
            .keys()
            .chain(self.config.plugins.keys())
            .collect();
        names.sort();
        names.dedup();
        let names: Vec<String> = names.into_iter().cloned().collect();
        for name in names {
            let was = old.plugins.get(&name).filter(|p| p.enabled);
            let now = self.config.plugins.get(&name).filter(|p| p.enabled);
            match (was, now) {
                (Some(_), None) => {
                    log::info!("config change: plugin `{name}` disabled");
                    self.versions.remove(&name);
                    self.forget_quick(&name);
                    let _ = self.commands.send(Command::Remove(name.clone()));
                    if let Ok(mut registry) = self.registry.write() {
                        if let Some(s) = registry.get_mut(&name) {
                            s.status = Health::Disabled;
                        }
                    }
                }
                (None, Some(_)) => {
                    log::info!("config change: plugin `{name}` enabled");
                    self.load_and_send(&name, false);
                }
                (Some(a), Some(b))
                    if a != b || old.limits_for(&name) != self.config.limits_for(&name) =>
                {
                    log::info!("config change: plugin `{name}` reconfigured");
                    self.versions.remove(&name);
                    self.load_and_send(&name, false);
                }
                _ => {}
            }
        }
        for hook in &self.hooks {
            hook(&self.config);
        }
    }
}

/// Hands memory freed by a load (the 18 MiB component, Cranelift's working
/// set on a compile) back to the OS. glibc otherwise keeps freed memory in
/// the loading thread's malloc arena: measured, tens of MiB of RSS per
/// loaded plugin, the difference between fitting a Pi Zero or not.
pub(super) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The useful part of a failed build's output: the Python error with its
/// file and line when there is one, else the last lines.
fn build_error(stdout: &str, stderr: &str) -> String {
    let all = format!("{stdout}\n{stderr}");
    let lines: Vec<&str> = all
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    // componentize-py's own summary: "SyntaxError: ... (app.py, line 21)".
    if let Some(l) = lines
        .iter()
        .rev()
        .find(|l| l.contains("Error: ") && l.contains(", line "))
    {
        return l.trim().to_string();
    }
    if let Some(i) = lines
        .iter()
        .rposition(|l| l.trim_start().starts_with("File \""))
    {
        let location = lines[i].trim();
        let error = lines[i + 1..]
            .iter()
            .find(|l| l.contains("Error") || l.contains("error"))
            .map(|l| l.trim())
            .unwrap_or("");
        return format!("{location}: {error}");
    }
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

fn canonical(path: &Path) -> Option<PathBuf> {
    let dir = path.parent()?;
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    Some(std::fs::canonicalize(dir).ok()?.join(path.file_name()?))
}

/// Each enabled plugin's file (canonical path) → the plugins using it.
fn plugin_files(config: &Config) -> BTreeMap<PathBuf, Vec<String>> {
    let mut files: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for (name, p) in &config.plugins {
        if p.enabled {
            if let Some(path) = canonical(&config.plugin_file(name)) {
                files.entry(path).or_default().push(name.clone());
            }
        }
    }
    files
}

/// inotify on the folders that hold plugin files and the config file.
struct Watcher {
    watches: inotify::Watches,
    dirs: Arc<Mutex<HashMap<WatchDescriptor, PathBuf>>>,
}

impl Watcher {
    /// Starts watching; changed paths are sent to `tx`.
    fn start(config: &Config, tx: Sender<Event>) -> std::io::Result<Watcher> {
        let mut inotify = Inotify::init()?;
        let dirs: Arc<Mutex<HashMap<WatchDescriptor, PathBuf>>> = Arc::default();
        let mut watcher = Watcher {
            watches: inotify.watches(),
            dirs: dirs.clone(),
        };
        watcher.rewatch(config);
        // A blocking reader on its own thread; the loader waits on the
        // channel with timeouts (the debounce) instead of polling.
        std::thread::Builder::new()
            .name("inotify".into())
            .spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(events) = inotify.read_events_blocking(&mut buffer) {
                    for event in events {
                        let Some(name) = event.name else { continue };
                        let dir = dirs.lock().ok().and_then(|d| d.get(&event.wd).cloned());
                        if let Some(dir) = dir {
                            if tx.send(Event::File(dir.join(name))).is_err() {
                                return;
                            }
                        }
                    }
                }
            })?;
        Ok(watcher)
    }

    /// Watches every folder the config points at (again after a config
    /// change: new folders are added, known ones kept).
    fn rewatch(&mut self, config: &Config) {
        let mut wanted: HashSet<PathBuf> = HashSet::new();
        if let Some(p) = canonical(&config.source).and_then(|p| p.parent().map(Path::to_path_buf)) {
            wanted.insert(p);
        }
        for path in plugin_files(config).keys() {
            if let Some(dir) = path.parent() {
                wanted.insert(dir.to_path_buf());
            }
        }
        let Ok(mut dirs) = self.dirs.lock() else {
            return;
        };
        for dir in wanted {
            if dirs.values().any(|d| d == &dir) {
                continue;
            }
            match self
                .watches
                .add(&dir, WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO)
            {
                Ok(wd) => {
                    dirs.insert(wd, dir);
                }
                Err(e) => log::warn!("cannot watch {} for changes: {e}", dir.display()),
            }
        }
    }
}

/// What the loader acts on in one go.
struct Burst {
    files: HashSet<PathBuf>,
    optimized: Vec<Optimized>,
}

/// Waits for a burst of file changes and returns the changed paths once
/// the burst has been quiet for [`DEBOUNCE`]; a finished optimized build
/// is returned at once (with any file changes already seen). `None` when
/// the scheduler has gone away.
fn next_burst(events: &Receiver<Event>, commands: &Sender<Command>) -> Option<Burst> {
    let mut burst = Burst {
        files: HashSet::new(),
        optimized: Vec::new(),
    };
    loop {
        match events.recv_timeout(Duration::from_secs(5)) {
            Ok(Event::File(path)) => {
                burst.files.insert(path);
                break;
            }
            Ok(Event::Optimized(done)) => {
                burst.optimized.push(done);
                return Some(burst);
            }
            // Wake up now and then to notice a stopped scheduler.
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if let Err(crossbeam_channel::TrySendError::Disconnected(_)) =
                    commands.try_send(Command::Ping)
                {
                    return None;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return None,
        }
    }
    let started = Instant::now();
    while started.elapsed() < DEBOUNCE_MAX {
        match events.recv_timeout(DEBOUNCE) {
            Ok(Event::File(path)) => {
                burst.files.insert(path);
            }
            Ok(Event::Optimized(done)) => burst.optimized.push(done),
            Err(_) => break,
        }
    }
    Some(burst)
}
