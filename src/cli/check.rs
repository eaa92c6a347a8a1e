//! `check`: the config file alone, a configured plugin loaded as the host
//! would, or a component file's imports, exports and grants.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{load_config, Overrides};
use crate::capabilities::HostServices;
use crate::config::{self, Config};
use crate::hardware::{Hardware, HardwareOptions, SimBackend};
use crate::runtime::Runtime;

/// `check` without a plugin: validates the config file alone, as the
/// service would read it, and checks it against this process's cgroup
/// limits (`budget`), and prints what it would run. Compiles nothing, opens
/// no device and writes no file, so the deploy can run it on the device
/// with a new binary before switching to it.
pub fn check_config(config_path: PathBuf, overrides: Overrides) -> anyhow::Result<()> {
    let config = load_config(&config_path, &overrides)?;
    crate::budget::check(&config, crate::budget::current())
        .map_err(|why| anyhow::anyhow!("{}: {why}", config_path.display()))?;
    let enabled: Vec<&str> = config
        .plugins
        .iter()
        .filter(|(_, p)| p.enabled)
        .map(|(name, _)| name.as_str())
        .collect();
    println!(
        "config ok: {}: listen {}, hardware {}, {} plugin(s) enabled: {}",
        config_path.display(),
        config.host.listen,
        config.host.hardware,
        enabled.len(),
        enabled.join(", ")
    );
    Ok(())
}

/// `check`: shows what a plugin is and whether the host would load it,
/// without starting the host. `target` names a configured plugin (its
/// source is loaded into the shared runtime exactly as the host would, on
/// simulated hardware: a SyntaxError or an ungranted import shows here), or
/// a component file. Returns the verdict.
pub fn check(
    config_path: PathBuf,
    overrides: Overrides,
    target: &str,
    name: Option<String>,
) -> anyhow::Result<bool> {
    let config = load_config(&config_path, &overrides)?;
    let file = std::path::Path::new(target);
    if config.plugins.contains_key(target) && name.is_none() {
        return check_plugin(&config, target);
    }
    if !target.ends_with(".wasm") {
        anyhow::bail!(
            "`{target}` is neither a plugin in {} nor a component file (.wasm)",
            config_path.display()
        );
    }
    let name = name.unwrap_or_else(|| {
        file.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin")
            .to_string()
    });
    let runtime = Runtime::new(&config.cache_dir())?;
    let bytes = crate::fsutil::read_limited(file, crate::plugins::files::MAX_COMPONENT_BYTES)?;
    println!("file:     {} ({} KiB)", file.display(), bytes.len() / 1024);
    let component = runtime
        .cache()
        .load_or_compile(runtime.engine(), &bytes)
        .with_context(|| format!("{} is not a loadable WebAssembly component", file.display()))?;
    let report = crate::capabilities::describe(runtime.engine(), &component);
    println!("imports:");
    for i in &report.imports {
        println!("  {i}");
    }
    println!("exports:");
    for e in &report.exports {
        println!("  {e}");
    }
    let Some(plugin) = config.plugins.get(&name) else {
        println!("config:   {} has no [plugins.{name}]: it would not be loaded (use --name to pick the entry)", config_path.display());
        return Ok(false);
    };
    print_grants(&config, &name);
    let missing =
        crate::capabilities::ungranted_imports(runtime.engine(), &component, &plugin.grants);
    let exports = crate::runtime::check_exports(runtime.engine(), &component, plugin.kind());
    if !missing.is_empty() {
        println!(
            "verdict:  refused: imports {} without a grant; to allow, set in [plugins.{name}.grants]: {}",
            missing.join(", "),
            plugin.grants.interfaces_line(&missing)
        );
        Ok(false)
    } else if let Err(e) = exports {
        println!("verdict:  refused: {e:#}");
        Ok(false)
    } else {
        println!("verdict:  loads as `{name}`");
        Ok(true)
    }
}

fn print_grants(config: &Config, name: &str) {
    let Some(plugin) = config.plugins.get(name) else {
        return;
    };
    let g = &plugin.grants;
    println!(
        "kind:     {} (entry point `{}`)",
        plugin.kind().name(),
        plugin.kind().interface()
    );
    println!(
        "grants in [plugins.{name}.grants] of {}:",
        config.source.display()
    );
    println!(
        "  interfaces      = {:?}",
        g.interfaces.iter().map(|i| i.name()).collect::<Vec<_>>()
    );
    println!("  dht22_pins      = {:?}", g.dht22_pins);
    println!("  i2c_addresses   = {:?}", g.i2c_addresses);
    println!("  leds            = {:?}", g.leds);
    println!("  state_quota     = {:?}", g.state_quota_bytes);
    println!("  follows         = {:?}", g.follows);
    println!("  sensor_ids      = {:?}", g.sensor_ids);
    if matches!(
        plugin.kind(),
        config::PluginKind::Sensor | config::PluginKind::Dht22 | config::PluginKind::Bme680
    ) {
        println!(
            "sensor ids it may report: {}",
            crate::config::ownership::owned(config, name).describe()
        );
    }
}

/// `check NAME`: loads a configured plugin as the host would.
fn check_plugin(config: &Config, name: &str) -> anyhow::Result<bool> {
    println!(
        "plugin:   {name} ({})",
        config.plugin_origin(name).display()
    );
    if config.component_file(name).is_none() {
        let sources = crate::plugins::files::read_sources(
            name,
            &config.plugin_dir(name),
            &config.common_dir(),
        )?;
        println!("version:  {}", sources.version);
        println!("modules:");
        for m in &sources.modules {
            println!("  {:<20} {} ({} bytes)", m.name, m.path, m.source.len());
        }
    }
    print_grants(config, name);
    // Simulated hardware and a throwaway state folder: checking must not
    // touch devices or the plugin's real state.
    let mut hardware = Hardware::start(
        Box::new(SimBackend::new(
            config.hardware.sim.seed,
            config.hardware.sim.dht22_pins.clone(),
            config.hardware.sim.bme680_addresses.clone(),
        )),
        HardwareOptions::default(),
    )?;
    let scratch =
        std::env::temp_dir().join(format!("wasi-python-host-check-{}", std::process::id()));
    let runtime = Runtime::new(&config.cache_dir())?;
    let services = HostServices::new(hardware.handle(), scratch.clone(), runtime.interrupt());
    let registry = crate::plugins::Registry::default();
    let started = std::time::Instant::now();
    let loaded = crate::plugins::load(name, config, &runtime, &services, &registry);
    let verdict = match loaded {
        Ok(plugin) => {
            println!(
                "verdict:  loads as `{name}` (version {}, {} ms)",
                plugin.version,
                started.elapsed().as_millis()
            );
            true
        }
        Err(e) => {
            println!("verdict:  refused: {e:#}");
            if let Some(crate::plugins::LoadFailure(f)) = e.downcast_ref() {
                if !f.detail.is_empty() {
                    println!("{}", f.detail);
                }
            }
            false
        }
    };
    drop(services);
    hardware.shutdown();
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(verdict)
}
