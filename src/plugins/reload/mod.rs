//! The loader thread: first load, then hot reload of plugin sources,
//! component plugins and the config file.
//!
//! inotify watches the folder of every plugin (its Python source, or its
//! component), the shared modules' folder and the config file's folder
//! (folders, not files: editors and `scp` replace files by renaming, which
//! a watch on the old inode would miss), and the plugins folder, for the
//! same reason one level up: a plugin folder made after its config entry,
//! or swapped whole (`rm -rf` then `cp -r`, `mv` aside then `mv` in), is
//! watched anew at its path. The watch starts before the first
//! load and the config is compared with what was read at start, so an edit
//! made while the host is starting is never lost. Only finished writes,
//! renames and deletions count, and a burst of them is debounced until the
//! folder has been quiet for [`DEBOUNCE`].
//!
//! A changed plugin is loaded here, off the scheduler thread — for a source
//! plugin that is a fresh instance of the shared Python runtime importing
//! the new source, milliseconds, with no compiler involved — and only then
//! sent to the scheduler to be swapped in between two calls, on trial. A
//! version that does not load (a SyntaxError, an import it may not make)
//! never replaces the running one: the error, with its file and line, goes
//! to the log and the plugin's status, and is cleared when the source is
//! fixed (also when the fix restores the running text).
//!
//! A changed config is applied only once the file has stayed the same for
//! [`CONFIG_SETTLE`] (a save in several writes, or a slow copy, is not read
//! half-way), and only if it is valid: an invalid, empty or truncated file,
//! or a deleted one, keeps the running config, and `/healthz` says why. A valid one is
//! applied plugin by plugin; every plugin it removes, disables, enables or
//! reconfigures is logged by name. A plugin that cannot load under its new
//! config (a grant taken away that its source imports, a limit it cannot
//! start in) is stopped and shows why: the version loaded under the old
//! config must not go on with what the new one took away.

mod debounce;
pub mod plan;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use super::registry::{Configured, Problem, Unloaded};
use super::{files, load, LoadFailure, Registry};
use crate::capabilities::HostServices;
use crate::config::Config;
use crate::plugins::Command;
use crate::runtime::Runtime;
use debounce::{Burst, Settling};
pub use debounce::{CONFIG_SETTLE, DEBOUNCE, DEBOUNCE_MAX};
use plan::{Change, Layout, Origin};

/// What wakes the loader up: a file in a watched folder was written,
/// renamed into place or removed.
pub struct FileEvent(PathBuf);

/// What became of a version the loader loaded.
enum Sent {
    /// Handed to the scheduler, which installs it between two calls.
    Installing,
    /// It did not load; the registry has the reason.
    Refused(Problem),
    /// The scheduler has gone away: the host is stopping.
    SchedulerGone,
}

/// Called with the new config after a valid config change was applied to
/// the plugins (the MQTT service follows `[mqtt]` this way).
pub type ConfigHook = Box<dyn Fn(&Config) + Send>;

/// Everything the loader needs.
pub struct Loader {
    pub config: Config,
    pub runtime: Arc<Runtime>,
    pub services: HostServices,
    pub registry: Registry,
    pub commands: Sender<Command>,
    /// The version of each plugin last handed to the scheduler.
    versions: HashMap<String, String>,
    events: Receiver<FileEvent>,
    events_tx: Sender<FileEvent>,
    /// Set while the config file on disk is unusable, for `/healthz`.
    pub config_error: Arc<std::sync::RwLock<Option<String>>>,
    hooks: Vec<ConfigHook>,
}

impl Loader {
    pub fn new(
        config: Config,
        runtime: Arc<Runtime>,
        services: HostServices,
        registry: Registry,
        commands: Sender<Command>,
        config_error: Arc<std::sync::RwLock<Option<String>>>,
    ) -> Loader {
        let (events_tx, events) = crossbeam_channel::unbounded();
        Loader {
            config,
            runtime,
            services,
            registry,
            commands,
            versions: HashMap::new(),
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

    /// Watches the files, loads every enabled plugin, then reloads on
    /// changes until the scheduler goes away.
    pub fn run(mut self) {
        // Watch first: whatever changes from here on is seen.
        let watcher = match Watcher::start(&self.config, self.events_tx.clone()) {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                log::error!("hot reload is off: cannot watch files with inotify: {e}");
                None
            }
        };
        self.register_configured();
        let names: Vec<String> = self.enabled().collect();
        for name in names {
            if let Sent::SchedulerGone = self.load_and_send(&name, false) {
                return;
            }
        }
        if self.commands.send(Command::LoadingDone).is_err() {
            return;
        }
        let Some(mut watcher) = watcher else {
            return;
        };
        // The config was read before the watch began: an edit in between
        // has no event, so compare.
        if self.config_changed_on_disk() {
            log::info!("config changed while the host was starting");
            self.apply_config_change(&mut watcher);
        }
        loop {
            let Some(changed) = next_burst(&self.events, &self.commands) else {
                return;
            };
            self.files_changed(&changed, &mut watcher);
        }
    }

    fn enabled(&self) -> impl Iterator<Item = String> + '_ {
        self.config
            .plugins
            .iter()
            .filter(|(_, p)| p.enabled)
            .map(|(n, _)| n.clone())
    }

    fn config_changed_on_disk(&self) -> bool {
        std::fs::read_to_string(&self.config.source)
            .is_ok_and(|text| crate::config::text_digest(&text) != self.config.text_digest)
    }

    /// Lists every configured plugin in the registry: loading or disabled.
    fn register_configured(&self) {
        let configured: Vec<Configured> = self
            .config
            .plugins
            .iter()
            .map(|(name, p)| Configured {
                name: name.clone(),
                file: self.config.plugin_origin(name).display().to_string(),
                enabled: p.enabled,
                interval_ms: p.interval_ms,
            })
            .collect();
        self.registry.configured(&configured);
    }

    /// Records a load error in the plugin's status: the running version (if
    /// any) stays.
    fn set_error(&self, name: &str, problem: Problem) {
        if self.versions.contains_key(name) {
            self.registry.reload_failed(name, problem);
        } else {
            self.registry.load_failed(name, problem);
        }
    }

    /// Loads `name` and hands it to the scheduler.
    fn load_and_send(&mut self, name: &str, trial: bool) -> Sent {
        let started = Instant::now();
        let loaded = load(
            name,
            &self.config,
            &self.runtime,
            &self.services,
            &self.registry,
        );
        release_freed_memory();
        match loaded {
            Ok(plugin) => {
                log::debug!(
                    "plugin `{name}`: version {} ready to swap in {} ms",
                    plugin.version,
                    started.elapsed().as_millis()
                );
                self.versions
                    .insert(name.to_string(), plugin.version.clone());
                let sent = self.commands.send(Command::Install {
                    plugin: Box::new(plugin),
                    trial,
                });
                if sent.is_ok() {
                    Sent::Installing
                } else {
                    Sent::SchedulerGone
                }
            }
            Err(e) => {
                let running = self.versions.contains_key(name);
                let (detail, kind) = match e.downcast_ref::<LoadFailure>() {
                    Some(LoadFailure(f)) => (f.detail.clone(), f.kind.as_str()),
                    None => (String::new(), "load"),
                };
                let message = if running {
                    format!("reload failed, the running version stays: {e:#}")
                } else {
                    format!("{e:#}")
                };
                log::error!("plugin `{name}`: {message}");
                if !detail.is_empty() {
                    log::error!("plugin `{name}` traceback:\n{detail}");
                }
                let problem = Problem {
                    kind: if running { "reload" } else { kind },
                    message,
                    detail,
                };
                self.set_error(name, problem.clone());
                Sent::Refused(problem)
            }
        }
    }

    fn files_changed(&mut self, changed: &HashSet<PathBuf>, watcher: &mut Watcher) {
        if plan::config_changed(changed, canonical(&self.config.source).as_deref()) {
            self.apply_config_change(watcher);
        }
        // Under the config just applied, if it changed.
        let affected = plan::affected(changed, &self.layout());
        // A source plugin's folder (or `common/`) that appeared, went or
        // was swapped for another (`rm -rf` then `cp -r`, `mv` aside then
        // `mv` in, or made after its config entry): its watch moves to the
        // folder now at that path.
        for dir in &affected.rewatch {
            watcher.watch_again(dir);
        }
        for name in affected.reload {
            self.reload(&name);
        }
    }

    /// Where the plugins folder, `common/` and every enabled plugin are on
    /// disk now (canonical paths).
    fn layout(&self) -> Layout {
        Layout {
            plugins_dir: canonical_dir(&self.config.plugins_dir()),
            common_dir: canonical_dir(&self.config.common_dir()),
            plugins: self
                .enabled()
                .map(|name| {
                    let origin = match self.config.component_file(&name) {
                        Some(file) => Origin::Component(canonical(&file)),
                        None => Origin::Source(canonical_dir(&self.config.plugin_dir(&name))),
                    };
                    (name, origin)
                })
                .collect(),
        }
    }

    /// A file of plugin `name` changed: load the new version on trial,
    /// unless it is the running one.
    fn reload(&mut self, name: &str) {
        let version = match self.version_on_disk(name) {
            Ok(v) => v,
            Err(e) => {
                // Deleted, unreadable, too large: the running version stays.
                let message = format!("{e:#}; the running version stays");
                log::warn!("plugin `{name}`: {message}");
                self.set_error(
                    name,
                    Problem {
                        kind: "reload",
                        message,
                        detail: String::new(),
                    },
                );
                return;
            }
        };
        if self.versions.get(name) == Some(&version) {
            // Back to the running text: an error about another version no
            // longer applies.
            self.clear_reload_error(name);
            return;
        }
        log::info!("plugin `{name}`: changed, loading version {version}");
        self.load_and_send(name, true);
    }

    /// The version of plugin `name` as it is on disk now.
    fn version_on_disk(&self, name: &str) -> anyhow::Result<String> {
        match self.config.component_file(name) {
            Some(file) => {
                let bytes = crate::fsutil::read_limited(&file, files::MAX_COMPONENT_BYTES)?;
                Ok(crate::runtime::cache_digest(&bytes)[..12].to_string())
            }
            None => Ok(files::read_sources(
                name,
                &self.config.plugin_dir(name),
                &self.config.common_dir(),
            )?
            .version),
        }
    }

    /// Stops the running version of plugin `name`; once the scheduler has
    /// dropped it, the registry learns `why`.
    fn unload(&mut self, name: &str, why: Unloaded) {
        self.versions.remove(name);
        let _ = self.commands.send(Command::Remove(name.to_string(), why));
    }

    fn clear_reload_error(&self, name: &str) {
        if self.registry.reload_undone(name) {
            log::info!("plugin `{name}`: the running version's source is back; error cleared");
        }
    }

    fn report_config_error(&self, message: String) {
        log::error!("config change ignored, the running config stays: {message}");
        *self.config_error.write().expect("config error lock") = Some(message);
    }

    /// Applies the config file on disk, once it has settled, if it is valid.
    fn apply_config_change(&mut self, watcher: &mut Watcher) {
        let path = self.config.source.clone();
        let text = match settled_text(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.report_config_error(format!(
                    "{} was deleted; restore it (the host keeps running the config it read last)",
                    path.display()
                ));
                return;
            }
            Err(e) => {
                self.report_config_error(format!("cannot read {}: {e}", path.display()));
                return;
            }
        };
        let mut new = match Config::parse(&text, &path) {
            Ok(c) => c,
            Err(e) => {
                self.report_config_error(e.to_string());
                return;
            }
        };
        *self.config_error.write().expect("config error lock") = None;
        if new.text_digest == self.config.text_digest {
            return;
        }
        if plan::keep_start_settings(&self.config, &mut new) {
            log::warn!(
                "config change: [host] and [hardware] settings apply at the next start; plugin and [mqtt] changes apply now"
            );
        }
        let old = std::mem::replace(&mut self.config, new);
        self.register_configured();
        watcher.rewatch(&self.config);
        for change in plan::plugin_changes(&old, &self.config) {
            match change {
                Change::Removed(name) => {
                    log::warn!(
                        "config change: plugin `{name}` removed (no [plugins.{name}] any more)"
                    );
                    self.unload(&name, Unloaded::Removed);
                }
                Change::Disabled(name) => {
                    log::warn!("config change: plugin `{name}` disabled (enabled = false)");
                    self.unload(&name, Unloaded::Disabled);
                }
                Change::Enabled(name) => {
                    log::info!("config change: plugin `{name}` enabled");
                    self.load_and_send(&name, false);
                }
                Change::Reconfigured(name) => {
                    log::info!("config change: plugin `{name}` reconfigured");
                    self.versions.remove(&name);
                    if let Sent::Refused(why) = self.load_and_send(&name, false) {
                        // Refused under its new config (a revoked grant, a
                        // lower limit): the version loaded under the old one
                        // must not go on with what was taken away. Its status
                        // shows why.
                        self.unload(&name, Unloaded::Refused(why));
                    }
                }
            }
        }
        for hook in &self.hooks {
            hook(&self.config);
        }
    }
}

/// The file's text once it has stayed the same for [`CONFIG_SETTLE`] (at
/// most [`DEBOUNCE_MAX`]; then the latest text).
fn settled_text(path: &Path) -> std::io::Result<String> {
    let mut settling = Settling::new(std::fs::read_to_string(path)?, Instant::now());
    loop {
        std::thread::sleep(CONFIG_SETTLE);
        let again = std::fs::read_to_string(path)?;
        if let Some(text) = settling.read_again(again, Instant::now()) {
            return Ok(text);
        }
    }
}

/// Hands memory freed by a load back to the OS. glibc otherwise keeps freed
/// memory in the loading thread's malloc arena: measured, tens of MiB of RSS
/// after a component compile, the difference between fitting a Pi Zero 2 W
/// or not.
pub(super) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn canonical_dir(dir: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(dir).ok()
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

/// Every folder the host watches for `config`: the config file's, the
/// plugins folder, the shared modules', and each enabled plugin's (its
/// source folder, or its component's folder).
fn watched_dirs(config: &Config) -> BTreeMap<PathBuf, ()> {
    let mut dirs = BTreeMap::new();
    if let Some(p) = canonical(&config.source).and_then(|p| p.parent().map(Path::to_path_buf)) {
        dirs.insert(p, ());
    }
    if let Some(common) = canonical_dir(&config.common_dir()) {
        dirs.insert(common, ());
    }
    // For plugin folders that appear, go or are swapped (their own watch
    // follows the old folder, or ends with it).
    if let Some(plugins) = canonical_dir(&config.plugins_dir()) {
        dirs.insert(plugins, ());
    }
    for (name, p) in &config.plugins {
        if !p.enabled {
            continue;
        }
        let dir = match config.component_file(name) {
            Some(file) => canonical(&file).and_then(|f| f.parent().map(Path::to_path_buf)),
            None => canonical_dir(&config.plugin_dir(name)),
        };
        if let Some(dir) = dir {
            dirs.insert(dir, ());
        }
    }
    dirs
}

/// inotify on the folders that hold plugin files and the config file.
struct Watcher {
    watches: inotify::Watches,
    dirs: Arc<Mutex<HashMap<WatchDescriptor, PathBuf>>>,
}

impl Watcher {
    /// Starts watching; changed paths are sent to `tx`.
    fn start(config: &Config, tx: Sender<FileEvent>) -> anyhow::Result<Watcher> {
        let mut inotify = Inotify::init().context("inotify_init")?;
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
                        if event.mask.contains(EventMask::IGNORED) {
                            // The folder is gone (or its watch was moved):
                            // a folder made at its path is watched anew.
                            dirs.lock().expect("watch table lock").remove(&event.wd);
                            continue;
                        }
                        // A new file is acted on once written (CLOSE_WRITE);
                        // a new folder at once.
                        if event.mask.contains(EventMask::CREATE)
                            && !event.mask.contains(EventMask::ISDIR)
                        {
                            continue;
                        }
                        let Some(name) = event.name else { continue };
                        let dir = dirs
                            .lock()
                            .expect("watch table lock")
                            .get(&event.wd)
                            .cloned();
                        if let Some(dir) = dir {
                            if tx.send(FileEvent(dir.join(name))).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
            .context("cannot start the inotify thread")?;
        Ok(watcher)
    }

    /// Watches every folder the config points at (again after a config
    /// change: new folders are added, known ones kept).
    fn rewatch(&mut self, config: &Config) {
        let mut dirs = self.dirs.lock().expect("watch table lock");
        for dir in watched_dirs(config).into_keys() {
            if dirs.values().any(|d| d == &dir) {
                continue;
            }
            match self.watches.add(&dir, WATCH_MASK) {
                Ok(wd) => {
                    dirs.insert(wd, dir);
                }
                Err(e) => log::warn!("cannot watch {} for changes: {e}", dir.display()),
            }
        }
    }

    /// Watches the folder now at `dir` (if there is one) instead of the
    /// one watched under that name before, which may have been moved away.
    fn watch_again(&mut self, dir: &Path) {
        let mut dirs = self.dirs.lock().expect("watch table lock");
        let old: Vec<WatchDescriptor> = dirs
            .iter()
            .filter(|(_, d)| d.as_path() == dir)
            .map(|(wd, _)| wd.clone())
            .collect();
        for wd in old {
            dirs.remove(&wd);
            // Fails when the folder is gone, and its watch with it.
            let _ = self.watches.remove(wd);
        }
        if dir.is_dir() {
            match self.watches.add(dir, WATCH_MASK) {
                Ok(wd) => {
                    dirs.insert(wd, dir.to_path_buf());
                }
                Err(e) => log::warn!("cannot watch {} for changes: {e}", dir.display()),
            }
        }
    }
}

/// Finished writes, renames and deletions; a new folder (new files wait for
/// their CLOSE_WRITE, see the reader thread).
const WATCH_MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE)
    .union(WatchMask::CREATE);

/// Waits for a burst of file changes and returns the changed paths once
/// the burst has been quiet for [`DEBOUNCE`]. `None` when the scheduler has
/// gone away.
fn next_burst(
    events: &Receiver<FileEvent>,
    commands: &Sender<Command>,
) -> Option<HashSet<PathBuf>> {
    let mut burst = loop {
        match events.recv_timeout(Duration::from_secs(5)) {
            Ok(FileEvent(path)) => break Burst::start(path, Instant::now()),
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
    };
    while let Some(quiet) = burst.quiet_wait(Instant::now()) {
        match events.recv_timeout(quiet) {
            Ok(FileEvent(path)) => burst.add(path),
            Err(_) => break,
        }
    }
    Some(burst.into_paths())
}
