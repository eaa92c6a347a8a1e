//! What the loader hands to the thread that runs the plugins (the
//! scheduler): defined here, where the loader sends it, so that `plugins`
//! needs nothing of `scheduler`, which receives it.

use super::registry::Unloaded;
use super::Plugin;

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
    /// its new config), then report why to the registry: once the plugin is
    /// dropped, so no late outcome of its last call can overwrite it.
    Remove(String, Unloaded),
    /// The loader has gone through every configured plugin.
    LoadingDone,
    /// Nothing: lets the loader notice a stopped scheduler.
    Ping,
    Stop,
}
