//! What the loader does about a change: which plugins a changed config
//! adds, removes, disables or reconfigures, and which plugins a batch of
//! changed files (and folders) is about.
//!
//! Pure: the configs are parsed data, and the paths on disk come in already
//! canonical, so the rules are tested without files or a running host.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::plugins::files;

/// What a config change does to one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Enabled before, and its `[plugins.NAME]` table is gone: unloaded,
    /// and its status dropped.
    Removed(String),
    /// `enabled = false` now: unloaded, its status kept as disabled.
    Disabled(String),
    /// Enabled now and not before (new, or `enabled = true` again): loaded.
    Enabled(String),
    /// Enabled before and now, and its table or the limits it runs with
    /// changed: loaded again under the new config (and stopped if it
    /// cannot load under it).
    Reconfigured(String),
}

/// The plugin changes from `old` to `new`, in name order. A plugin that is
/// disabled in both is left alone, whatever changed in its table.
pub fn plugin_changes(old: &Config, new: &Config) -> Vec<Change> {
    let names: BTreeSet<&String> = old.plugins.keys().chain(new.plugins.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let before = old.plugins.get(name);
            let after = new.plugins.get(name);
            let was = before.filter(|p| p.enabled);
            let now = after.filter(|p| p.enabled);
            let name = name.clone();
            match (was, now) {
                (Some(_), None) if after.is_none() => Some(Change::Removed(name)),
                (Some(_), None) => Some(Change::Disabled(name)),
                (None, Some(_)) => Some(Change::Enabled(name)),
                (Some(a), Some(b)) if a != b || old.limits_for(&name) != new.limits_for(&name) => {
                    Some(Change::Reconfigured(name))
                }
                _ => None,
            }
        })
        .collect()
}

/// Keeps in `new` the settings read only at start (the listen address and
/// the hardware backend, which the command line may have set) from `old`.
/// Returns whether other `[host]` or `[hardware]` settings changed: those
/// apply at the next start.
pub fn keep_start_settings(old: &Config, new: &mut Config) -> bool {
    new.host.listen = old.host.listen;
    new.host.hardware = old.host.hardware;
    new.host != old.host || new.hardware != old.hardware
}

/// What an enabled plugin is loaded from, as a canonical path (`None`: not
/// there now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A component file.
    Component(Option<PathBuf>),
    /// A folder of Python source.
    Source(Option<PathBuf>),
}

/// Where things are on disk now, as canonical paths (`None`: not there).
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub plugins_dir: Option<PathBuf>,
    pub common_dir: Option<PathBuf>,
    /// Every enabled plugin with what it is loaded from.
    pub plugins: Vec<(String, Origin)>,
}

/// What a batch of changed paths means.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Affected {
    /// Folders in the plugins folder that appeared, went or were swapped:
    /// their watch moves to whatever is at that path now.
    pub rewatch: Vec<PathBuf>,
    /// Plugins to reload, in name order.
    pub reload: Vec<String>,
}

/// Whether the config file (canonical) is among the changed paths.
pub fn config_changed(changed: &HashSet<PathBuf>, config_file: Option<&Path>) -> bool {
    config_file.is_some_and(|file| changed.contains(file))
}

/// The plugins the changed paths are about: a source plugin for a module
/// of its own folder, every source plugin for a module of `common/`, a
/// component plugin for its file; and for a folder in the plugins folder
/// (made, removed, swapped whole), the source plugin of that name, or every
/// source plugin for `common`.
pub fn affected(changed: &HashSet<PathBuf>, layout: &Layout) -> Affected {
    let sources: Vec<&String> = layout
        .plugins
        .iter()
        .filter(|(_, origin)| matches!(origin, Origin::Source(_)))
        .map(|(name, _)| name)
        .collect();
    let mut rewatch = Vec::new();
    let mut reload = BTreeSet::new();
    for path in changed {
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let dir = path.parent();
        if layout.plugins_dir.is_some() && dir == layout.plugins_dir.as_deref() {
            // The plugins whose folder it is; `common` is watched even
            // when no source plugin is enabled.
            let folder_of: Option<Vec<&String>> = if file_name == "common" {
                Some(sources.clone())
            } else {
                sources
                    .iter()
                    .find(|n| n.as_str() == file_name)
                    .map(|&n| vec![n])
            };
            if let Some(names) = folder_of {
                rewatch.push(path.clone());
                reload.extend(names.into_iter().cloned());
            }
        }
        let in_common = dir.is_some() && dir == layout.common_dir.as_deref();
        for (name, origin) in &layout.plugins {
            let hit = match origin {
                Origin::Component(file) => file.as_ref() == Some(path),
                Origin::Source(None) => false,
                Origin::Source(Some(plugin_dir)) => {
                    files::is_plugin_module(file_name)
                        && (dir == Some(plugin_dir.as_path()) || in_common)
                }
            };
            if hit {
                reload.insert(name.clone());
            }
        }
    }
    rewatch.sort();
    Affected {
        rewatch,
        reload: reload.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(plugins: &str) -> Config {
        with_host("", plugins)
    }

    /// A config with `host` in its `[host]` table (listening on port 8080
    /// unless it says otherwise).
    fn with_host(host: &str, rest: &str) -> Config {
        let listen = if host.contains("listen") {
            ""
        } else {
            "listen = \"127.0.0.1:8080\"\n"
        };
        Config::parse(
            &format!("[host]\n{listen}{host}\n{rest}"),
            Path::new("/etc/whp/host.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    const BASE: &str = "\
[plugins.a]\nkind = \"sensor\"\n\
[plugins.b]\nkind = \"sensor\"\n\
[plugins.c]\nkind = \"sensor\"\nenabled = false\n";

    #[test]
    fn a_config_change_removes_disables_enables_and_reconfigures_plugins_by_name() {
        let removed = Change::Removed;
        let disabled = Change::Disabled;
        let enabled = Change::Enabled;
        let reconfigured = Change::Reconfigured;
        let cases: Vec<(&str, String, Vec<Change>)> = vec![
            ("nothing", BASE.into(), vec![]),
            ("a comment is no change", format!("# hello\n{BASE}"), vec![]),
            (
                "b removed",
                BASE.replace("[plugins.b]\nkind = \"sensor\"\n", ""),
                vec![removed("b".into())],
            ),
            (
                "b disabled",
                BASE.replace(
                    "[plugins.b]\nkind = \"sensor\"\n",
                    "[plugins.b]\nkind = \"sensor\"\nenabled = false\n",
                ),
                vec![disabled("b".into())],
            ),
            (
                "c enabled again, d new",
                BASE.replace("enabled = false\n", "") + "[plugins.d]\nkind = \"sensor\"\n",
                vec![enabled("c".into()), enabled("d".into())],
            ),
            (
                "a new plugin that is disabled is only listed",
                format!("{BASE}[plugins.d]\nkind = \"sensor\"\nenabled = false\n"),
                vec![],
            ),
            (
                "a disabled plugin's table changed",
                BASE.replace("enabled = false\n", "enabled = false\ninterval_ms = 5000\n"),
                vec![],
            ),
            (
                "a's interval",
                BASE.replacen(
                    "[plugins.a]\nkind = \"sensor\"\n",
                    "[plugins.a]\nkind = \"sensor\"\ninterval_ms = 5000\n",
                    1,
                ),
                vec![reconfigured("a".into())],
            ),
            (
                "b's grants",
                BASE.replace(
                    "[plugins.b]\nkind = \"sensor\"\n",
                    "[plugins.b]\nkind = \"sensor\"\n[plugins.b.grants]\ninterfaces = [\"log\"]\n",
                ),
                vec![reconfigured("b".into())],
            ),
            (
                "the host's limits reach every enabled plugin",
                format!("{BASE}[limits]\nfuel = 50000000\n"),
                vec![reconfigured("a".into()), reconfigured("b".into())],
            ),
        ];
        let old = config(BASE);
        for (what, text, want) in cases {
            assert_eq!(plugin_changes(&old, &config(&text)), want, "{what}");
        }
    }

    #[test]
    fn the_listen_address_and_hardware_backend_stay_and_other_host_settings_wait_for_a_restart() {
        let old = config(BASE);
        // (the new [host] lines, the rest, whether a restart is wanted)
        let cases = [
            ("", "", false),
            ("listen = \"0.0.0.0:80\"", "", false),
            ("hardware = \"pi\"", "", false),
            ("state_dir = \"/var/lib/elsewhere\"", "", true),
            ("", "[hardware]\nrequest_timeout_ms = 500\n", true),
        ];
        for (host, rest, restart) in cases {
            let mut new = with_host(host, &format!("{rest}{BASE}"));
            assert_eq!(
                keep_start_settings(&old, &mut new),
                restart,
                "{host} {rest}"
            );
            assert_eq!(
                new.host.listen, old.host.listen,
                "{host}: kept from the start"
            );
            assert_eq!(
                new.host.hardware, old.host.hardware,
                "{host}: kept from the start"
            );
        }
    }

    fn paths(list: &[&str]) -> HashSet<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    fn layout() -> Layout {
        let some = |p: &str| Some(PathBuf::from(p));
        Layout {
            plugins_dir: some("/p"),
            common_dir: some("/p/common"),
            plugins: vec![
                ("dht".into(), Origin::Source(some("/p/dht"))),
                ("dash".into(), Origin::Source(some("/p/dash"))),
                // Configured, but its folder is not there (yet).
                ("late".into(), Origin::Source(None)),
                ("comp".into(), Origin::Component(some("/c/comp.wasm"))),
            ],
        }
    }

    #[test]
    fn a_changed_file_reloads_the_plugins_it_belongs_to() {
        let all_sources = vec!["dash", "dht", "late"];
        let cases: Vec<(&[&str], Vec<&str>)> = vec![
            (&["/p/dht/app.py"], vec!["dht"]),
            (&["/p/dht/app.py", "/p/dash/view.py"], vec!["dash", "dht"]),
            // Not a module the host hands over.
            (&["/p/dht/test_app.py"], vec![]),
            (&["/p/dht/conftest.py"], vec![]),
            (&["/p/dht/notes.txt"], vec![]),
            (&["/p/dht/.app.py.swp"], vec![]),
            // A shared module: every source plugin whose folder is there.
            (&["/p/common/alerts.py"], vec!["dash", "dht"]),
            // A component plugin: its own file only.
            (&["/c/comp.wasm"], vec!["comp"]),
            (&["/c/other.wasm"], vec![]),
            (&["/elsewhere/app.py"], vec![]),
        ];
        for (changed, want) in cases {
            let got = affected(&paths(changed), &layout());
            assert_eq!(got.reload, want, "{changed:?}");
            assert!(got.rewatch.is_empty(), "{changed:?}");
        }
        // A folder swapped under the plugins folder: watched again, and
        // reloaded (also one whose folder was missing until now).
        let cases: Vec<(&[&str], Vec<&str>)> = vec![
            (&["/p/dht"], vec!["dht"]),
            (&["/p/late"], vec!["late"]),
            (&["/p/common"], all_sources),
            // Not a plugin's folder (nor a component's).
            (&["/p/other"], vec![]),
            (&["/p/comp"], vec![]),
        ];
        for (changed, want) in cases {
            let got = affected(&paths(changed), &layout());
            assert_eq!(got.reload, want, "{changed:?}");
            let rewatch: Vec<PathBuf> = if want.is_empty() {
                vec![]
            } else {
                vec![changed[0].into()]
            };
            assert_eq!(got.rewatch, rewatch, "{changed:?}");
        }
    }

    #[test]
    fn a_swapped_common_folder_is_watched_again_even_with_no_source_plugin() {
        let layout = Layout {
            plugins: vec![(
                "comp".into(),
                Origin::Component(Some("/c/comp.wasm".into())),
            )],
            ..layout()
        };
        let got = affected(&paths(&["/p/common"]), &layout);
        assert_eq!(got.rewatch, vec![PathBuf::from("/p/common")]);
        assert!(got.reload.is_empty());
    }

    #[test]
    fn without_a_plugins_folder_only_files_count() {
        let layout = Layout {
            plugins_dir: None,
            ..layout()
        };
        let got = affected(&paths(&["/p/dht", "/p/dht/app.py"]), &layout);
        assert_eq!(got.reload, vec!["dht"]);
        assert!(got.rewatch.is_empty());
    }

    #[test]
    fn the_config_file_counts_only_as_itself() {
        let file = Path::new("/etc/whp/host.toml");
        assert!(config_changed(
            &paths(&["/etc/whp/host.toml", "/p/x.py"]),
            Some(file)
        ));
        assert!(!config_changed(
            &paths(&["/etc/whp/other.toml"]),
            Some(file)
        ));
        assert!(!config_changed(&paths(&["/etc/whp/host.toml"]), None));
    }
}
