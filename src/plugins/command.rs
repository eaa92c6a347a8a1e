//! What the loader hands to the thread that runs the plugins (the
//! scheduler): defined here, where the loader sends it, so that `plugins`
//! needs nothing of `scheduler`, which receives it.

use std::collections::BTreeMap;

use super::{Plugin, PluginStatus};

/// Messages to the scheduler thread.
pub enum Command {
    /// A plugin compiled and prepared off the scheduler thread, ready to
    /// swap in between two calls. With `trial`, the version it replaces is
    /// kept until the new one has made `scheduler::TRIAL_CALLS` good calls,
    /// and comes back if the new one fails first.
    Install {
        plugin: Box<Plugin>,
        trial: bool,
    },
    /// Unload a plugin (disabled or removed in the config, or refused under
    /// its new config), then update the registry with the function: it runs
    /// once the plugin is dropped, so no late outcome of its last call can
    /// overwrite what it publishes (or bring back a removed plugin's entry).
    Remove(String, AfterRemove),
    /// The loader has gone through every configured plugin.
    LoadingDone,
    /// Nothing: lets the loader notice a stopped scheduler.
    Ping,
    Stop,
}

/// Updates the registry after a plugin was unloaded (see [`Command::Remove`]).
pub type AfterRemove = Box<dyn FnOnce(&mut BTreeMap<String, PluginStatus>) + Send>;
