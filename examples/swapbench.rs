//! Swap time: a new version of a plugin's Python source to its first
//! successful `poll`, in one process, through the host's own loading path
//! (`plugins::load`: read and hash the sources, link the plugin's grants
//! against the shared runtime, instantiate it, load the Python under the
//! plugin's limits) and then the first call. No debounce, no scheduler:
//! `bench/reload.py` measures the whole way from a saved file to `/api`.
//!
//! Per engine — this machine's Cranelift code, and Pulley, the interpreter
//! an armv7 device runs (`pulley64` on a 64-bit workstation) — each round
//! saves a never-seen version of the plugin's `app.py` and times it (its
//! Python is compiled to bytecode inside the new instance), then times the
//! same version again (its bytecode cached, as after a restart, a
//! re-instantiation or `recycle = true`), so both see the same machine.
//! Prints one JSON object per (engine, source) with the median and spread
//! in ms, and the share of the time spent loading (the rest is the poll).
//!
//!     cargo run --release --example swapbench -- [--config config/host.toml] \
//!         [--cache DIR] [--runs N] [--engines native,pulley64] [--plugin dht22]
//!
//! The first use of an engine compiles the runtime for it into `--cache`
//! (tens of seconds, once).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use wasi_python_host::capabilities::HostServices;
use wasi_python_host::config::{Config, PluginKind};
use wasi_python_host::hardware::{Hardware, HardwareOptions, SimBackend};
use wasi_python_host::plugins::{self, Plugin, Registry};
use wasi_python_host::runtime::{EngineTarget, Runtime};

struct Args {
    config: PathBuf,
    cache: PathBuf,
    runs: usize,
    engines: Vec<String>,
    plugin: String,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        config: PathBuf::from("config/host.toml"),
        cache: std::env::temp_dir().join("whp-swapbench-cache"),
        runs: 30,
        engines: vec!["native".into(), "pulley64".into()],
        plugin: "dht22".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => a.config = value()?.into(),
            "--cache" => a.cache = value()?.into(),
            "--runs" => a.runs = value()?.parse()?,
            "--engines" => a.engines = value()?.split(',').map(str::to_string).collect(),
            "--plugin" => a.plugin = value()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// A copy of the config whose plugins live in `work` (so this program can
/// write new versions of them) and whose paths are absolute.
fn work_config(args: &Args, work: &Path) -> anyhow::Result<Config> {
    let shipped = Config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let plugins_dir = work.join("plugins");
    for dir in [args.plugin.as_str(), "common"] {
        let from = shipped.plugins_dir().join(dir);
        let to = plugins_dir.join(dir);
        std::fs::create_dir_all(&to)?;
        for entry in std::fs::read_dir(&from)? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.ends_with(".py") && !name.starts_with("test_") {
                std::fs::copy(&path, to.join(&*name))?;
            }
        }
    }
    // Absolute: the copy lives in another folder.
    let runtime = std::env::current_dir()?.join(shipped.runtime_file());
    let text = std::fs::read_to_string(&args.config)?;
    let text: String = text
        .lines()
        .map(|line| {
            let key = line.split('=').next().unwrap_or_default().trim();
            match key {
                "plugins_dir" => format!("plugins_dir = {:?}", plugins_dir.display().to_string()),
                "runtime" => format!("runtime = {:?}", runtime.display().to_string()),
                "state_dir" => format!(
                    "state_dir = {:?}\ncache_dir = {:?}",
                    work.join("state").display().to_string(),
                    args.cache.display().to_string()
                ),
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = work.join("host.toml");
    std::fs::write(&path, text)?;
    Config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The plugin's first call; true when it succeeded with a result.
fn first_call(plugin: &mut Plugin) -> bool {
    match plugin.kind {
        PluginKind::Dht22 => plugin
            .call(|i, l| i.poll_dht22(l))
            .is_some_and(|r| !r.is_empty()),
        PluginKind::Bme680 => plugin
            .call(|i, l| i.poll_bme680(l))
            .is_some_and(|r| !r.is_empty()),
        PluginKind::Sensor => plugin
            .call(|i, l| i.poll_sensor(l))
            .is_some_and(|r| !r.is_empty()),
        PluginKind::PiMonitor => plugin.call(|i, l| i.poll_pi_monitor(l)).is_some(),
        PluginKind::Automation | PluginKind::Dashboard => false,
    }
}

struct Timing {
    total: Vec<Duration>,
    load: Vec<Duration>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(engine: &str, source: &str, t: &mut Timing) {
    t.total.sort();
    t.load.sort();
    let median = |v: &[Duration]| ms(v[v.len() / 2]);
    println!(
        "{{\"engine\": \"{engine}\", \"source\": \"{source}\", \"n\": {}, \"median_ms\": {:.2}, \"min_ms\": {:.2}, \"max_ms\": {:.2}, \"p90_ms\": {:.2}, \"load_median_ms\": {:.2}}}",
        t.total.len(),
        median(&t.total),
        ms(t.total[0]),
        ms(t.total[t.total.len() - 1]),
        ms(t.total[(t.total.len() * 9 / 10).min(t.total.len() - 1)]),
        median(&t.load),
    );
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let work = std::env::temp_dir().join(format!("whp-swapbench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let config = work_config(&args, &work)?;
    let name = args.plugin.as_str();
    if config.component_file(name).is_some() || !config.plugins.contains_key(name) {
        anyhow::bail!("`{name}` must be a Python source plugin in the config");
    }
    let hw = &config.hardware;
    let hardware = Hardware::start(
        Box::new(SimBackend::new(
            hw.sim.seed,
            hw.sim.dht22_pins.clone(),
            hw.sim.bme680_addresses.clone(),
        )),
        HardwareOptions {
            led_count: hw.leds.count,
            brightness: hw.leds.brightness,
            request_timeout: config.request_timeout(),
            ..HardwareOptions::default()
        },
    )?;
    let app = config.plugin_dir(name).join("app.py");
    let original = std::fs::read_to_string(&app)?;
    for engine in &args.engines {
        let target = match engine.as_str() {
            "native" => None,
            t => Some(EngineTarget::for_triple(t)?),
        };
        let runtime = Arc::new(Runtime::with_target(&args.cache, target.as_ref())?);
        let services = HostServices::new(
            hardware.handle(),
            work.join("state").join(engine),
            runtime.interrupt(),
        );
        let registry = Registry::default();
        let load = || plugins::load(name, &config, &runtime, &services, &registry);
        // Warm-up: the runtime's artifact (compiled now if missing), the
        // shared modules' bytecode, the code pages of the load path.
        eprintln!("swapbench: {engine}: loading the runtime (compiles it once if not cached)");
        std::fs::write(&app, &original)?;
        for _ in 0..3 {
            let mut p = load()?;
            anyhow::ensure!(first_call(&mut p), "the unchanged plugin does not poll");
        }
        let mut fresh = Timing {
            total: Vec::new(),
            load: Vec::new(),
        };
        let mut cached = Timing {
            total: Vec::new(),
            load: Vec::new(),
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        for round in 0..args.runs {
            std::fs::write(
                &app,
                format!("{original}\n# swapbench {engine} {stamp} {round}\n"),
            )?;
            for timing in [&mut fresh, &mut cached] {
                let started = Instant::now();
                let mut plugin = load()?;
                let loaded = started.elapsed();
                anyhow::ensure!(
                    first_call(&mut plugin),
                    "the new version's first poll failed"
                );
                timing.total.push(started.elapsed());
                timing.load.push(loaded);
            }
        }
        report(engine, "new", &mut fresh);
        report(engine, "bytecode cached", &mut cached);
    }
    drop(hardware);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
