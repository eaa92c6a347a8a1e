//! The default command: runs the host until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::{load_config, Overrides};
use crate::app::Host;

/// Runs the host until SIGINT or SIGTERM.
pub fn run(config_path: PathBuf, overrides: Overrides) -> anyhow::Result<()> {
    let config = load_config(&config_path, &overrides)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .context("failed to install signal handlers")?;
    }
    let host = Host::start(config)?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(why) = host.failure() {
            // A bug: exit with an error, for the service manager to restart
            // the host, rather than serve while nothing polls or reloads.
            log::error!("{why}; shutting down");
            host.stop();
            log::info!("stopped: LEDs off, buzzer silent");
            anyhow::bail!("{why}");
        }
    }
    log::info!("shutting down");
    host.stop();
    log::info!("stopped: LEDs off, buzzer silent");
    Ok(())
}
