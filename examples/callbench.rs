//! Plugin call overhead, limits on against limits off, in one process.
//!
//! Loads the shipped plugins' Python source through the library's own
//! runtime (the shared Python runtime, artifact cache, capability linker,
//! `Prepared`/`Instance`, simulated hardware) into two Engines — the host's (fuel metering + epoch interruption, the ticker
//! running) and a baseline Engine with neither — and calls `poll` on each
//! sensor plugin and `render` on the dashboard in a loop, alternating the
//! two Engines in rounds so machine noise hits both alike. Prints one JSON
//! object per (plugin, mode) with the median, p99, mean and fuel per call.
//!
//!     cargo run --example callbench -- --config config/host.toml [--iters N] [--cache DIR]
//!
//! `bench/all.py` runs it and compares with the same Python run by CPython.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use wasi_python_host::capabilities::{self, HostServices, PluginShared};
use wasi_python_host::config::{Config, PluginKind};
use wasi_python_host::contract::dashboard::{PluginInfo, Snapshot};
use wasi_python_host::contract::types::Rgb;
use wasi_python_host::hardware::{Hardware, HardwareOptions, SimBackend};
use wasi_python_host::plugins::files;
use wasi_python_host::runtime::{Instance, Prepared, Program, Runtime};
use wasmtime::component::Component;
use wasmtime::Engine;

struct Args {
    config: PathBuf,
    cache: PathBuf,
    iters: usize,
    plugins: Vec<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        config: PathBuf::from("config/host.toml"),
        cache: std::env::temp_dir().join("whp-callbench-cache"),
        iters: 2000,
        plugins: vec![
            "dht22".into(),
            "bme680".into(),
            "pi_monitor".into(),
            "dashboard".into(),
        ],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => a.config = value()?.into(),
            "--cache" => a.cache = value()?.into(),
            "--iters" => a.iters = value()?.parse()?,
            "--plugins" => a.plugins = value()?.split(',').map(str::to_string).collect(),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// The baseline Engine's component: compiled once, then kept next to the
/// host's artifacts under its own name (the host's cache only holds
/// artifacts for its own Engine settings).
fn unmetered_component(
    engine: &Engine,
    cache: &std::path::Path,
    bytes: &[u8],
) -> anyhow::Result<Component> {
    let digest = wasi_python_host::runtime::cache_digest(bytes);
    let path = cache.join(format!("unmetered-{}.cwasm", &digest[..16]));
    if path.exists() {
        // SAFETY: this program wrote the file with the same Engine settings.
        if let Ok(c) = unsafe { Component::deserialize_file(engine, &path) } {
            return Ok(c);
        }
    }
    eprintln!(
        "callbench: compiling {} for the limits-off Engine",
        path.display()
    );
    let artifact = engine.precompile_component(bytes)?;
    std::fs::create_dir_all(cache)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &artifact)?;
    std::fs::rename(&tmp, &path)?;
    Ok(unsafe { Component::deserialize_file(engine, &path)? })
}

struct Contender {
    mode: &'static str,
    prepared: Prepared,
    instance: Instance,
    /// Calls that failed (the instance is then replaced, as the host does).
    failures: u64,
}

fn call_once(
    instance: &mut Instance,
    kind: PluginKind,
    limits: &wasi_python_host::config::Limits,
    snapshot: &Snapshot,
) -> anyhow::Result<()> {
    let r = match kind {
        PluginKind::Dht22 => instance.poll_dht22(limits).map(drop),
        PluginKind::Bme680 => instance.poll_bme680(limits).map(drop),
        PluginKind::PiMonitor => instance.poll_pi_monitor(limits).map(drop),
        PluginKind::Sensor => instance.poll_sensor(limits).map(drop),
        PluginKind::Automation => instance.run_automation(limits, &snapshot.readings),
        PluginKind::Dashboard => instance.render(limits, snapshot).map(drop),
    };
    r.map_err(|f| anyhow::anyhow!("{}: {}\n{}", f.kind.as_str(), f.message, f.detail))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// A snapshot like the scheduler's: one reading per sensor, system stats,
/// three LEDs, four plugins.
fn snapshot() -> Snapshot {
    use wasi_python_host::contract::types::{
        AlertLevel, Bme680Reading, Dht22Reading, FollowedReading, PiStats,
    };
    use wasi_python_host::readings::SensorReading;
    let mut snapshot = Snapshot {
        readings: Vec::new(),
        dht22: vec![Dht22Reading {
            sensor_id: "dht22-gpio-4".into(),
            temperature: 21.5,
            humidity: 40.9,
            timestamp_ms: 1_737_073_200_000,
            alert: AlertLevel::Ok,
            message: String::new(),
        }],
        bme680: vec![Bme680Reading {
            sensor_id: "bme680-i2c-0x77".into(),
            temperature: 22.1,
            humidity: 38.5,
            pressure: 1013.2,
            gas_resistance: 150.5,
            iaq_score: 35,
            timestamp_ms: 1_737_073_200_000,
            alert: AlertLevel::Ok,
            message: "air excellent".into(),
        }],
        system: Some(PiStats {
            cpu_temp_c: 48.2,
            ram_used_mb: 210,
            ram_total_mb: 427,
            uptime_s: 3600,
            load_1m: 0.3,
            timestamp_ms: 1_737_073_200_000,
            alert: AlertLevel::Ok,
            message: String::new(),
        }),
        leds: vec![Rgb { r: 0, g: 255, b: 0 }; 3],
        buzzer_active: false,
        plugins: ["dht22", "bme680", "pi_monitor", "dashboard"]
            .iter()
            .map(|n| PluginInfo {
                name: n.to_string(),
                status: "running".into(),
                last_error: String::new(),
                calls: 12,
                failures: 0,
            })
            .collect(),
        hardware: "sim".into(),
        last_update_ms: 1_737_073_200_000,
    };
    // Every reading again as the generic record, as the scheduler sends it.
    let dht22 = snapshot
        .dht22
        .iter()
        .map(|r| SensorReading::from_dht22(r.clone(), "dht22"));
    let bme680 = snapshot
        .bme680
        .iter()
        .map(|r| SensorReading::from_bme680(r.clone(), "bme680"));
    snapshot.readings = dht22
        .chain(bme680)
        .map(|r| FollowedReading {
            plugin: r.plugin.clone(),
            reading: r.to_generic(),
        })
        .collect();
    snapshot
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let config = Config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let hw = &config.hardware;
    let backend = SimBackend::new(
        hw.sim.seed,
        hw.sim.dht22_pins.clone(),
        hw.sim.bme680_addresses.clone(),
    );
    let hardware = Hardware::start(
        Box::new(backend),
        HardwareOptions {
            led_count: hw.leds.count,
            brightness: hw.leds.brightness,
            request_timeout: config.request_timeout(),
            ..HardwareOptions::default()
        },
    )?;
    let state_dir = std::env::temp_dir().join(format!("whp-callbench-{}", std::process::id()));
    std::fs::create_dir_all(&state_dir)?;
    // The host's Engine: fuel + epoch, with its ticker thread.
    let runtime = Arc::new(Runtime::new(&args.cache)?);
    let services = HostServices::new(hardware.handle(), state_dir.clone(), runtime.interrupt());
    // The baseline: the same defaults without fuel metering or epoch checks.
    let bare = Engine::new(&wasmtime::Config::new()).map_err(anyhow::Error::from)?;
    let snapshot = snapshot();
    let python = runtime.python(&config.runtime_file())?;
    let runtime_wasm = std::fs::read(config.runtime_file()).with_context(|| {
        format!(
            "{}: build it with scripts/build-runtime.sh",
            config.runtime_file().display()
        )
    })?;
    let bare_runtime = unmetered_component(&bare, &args.cache, &runtime_wasm)?;

    for name in &args.plugins {
        let plugin_config = config
            .plugins
            .get(name)
            .with_context(|| format!("plugin `{name}` is not in {}", args.config.display()))?;
        let sources = files::read_sources(name, &config.plugin_dir(name), &config.common_dir())?;
        let limits = config.limits_for(name);
        let shared = PluginShared::new(name, plugin_config, limits, &services)?;
        let mut contenders = Vec::new();
        for (mode, engine) in [("limits_on", runtime.engine()), ("limits_off", &bare)] {
            let component = if mode == "limits_on" {
                &python.component
            } else {
                &bare_runtime
            };
            let linker = capabilities::linker(engine, name, &plugin_config.grants, component)?;
            let program = Program::new(
                name,
                sources
                    .modules
                    .iter()
                    .map(|m| (m.name.clone(), m.path.clone(), m.source.clone())),
                plugin_config
                    .grants
                    .interfaces
                    .iter()
                    .map(|i| i.name().to_string())
                    .collect(),
                python.bytecode.clone(),
            );
            let mut prepared = Prepared::new(
                linker
                    .instantiate_pre(component)
                    .map_err(anyhow::Error::from)?,
                plugin_config.kind(),
                Some(program),
            )?;
            let instance = prepared
                .instantiate(shared.context(&services), &limits.first_load())
                .map_err(|f| anyhow::anyhow!("{}: {}", f.message, f.detail))?;
            let kind = prepared.kind;
            let c = Contender {
                mode,
                prepared,
                instance,
                failures: 0,
            };
            contenders.push((c, kind, Vec::new(), 0u64));
        }
        // Warm up: the first calls dirty CPython's memory and fill caches.
        for (c, kind, _, _) in &mut contenders {
            for _ in 0..20 {
                if call_once(&mut c.instance, *kind, &limits, &snapshot).is_err() {
                    c.instance = c
                        .prepared
                        .instantiate(shared.context(&services), &limits)
                        .map_err(|f| anyhow::anyhow!("{}", f.message))?;
                }
            }
        }
        // Alternate rounds so both modes see the same machine.
        let round = 50.min(args.iters.max(1));
        let mut done = 0;
        while done < args.iters {
            for (c, kind, times, fuel) in &mut contenders {
                for _ in 0..round {
                    let t = Instant::now();
                    let r = call_once(&mut c.instance, *kind, &limits, &snapshot);
                    times.push(t.elapsed());
                    if let Err(e) = r {
                        // A busy machine can time out a hardware request
                        // or a deadline: count it and go on like the host.
                        eprintln!("callbench: {name} ({}) failed: {e}", c.mode);
                        c.failures += 1;
                        c.instance = c
                            .prepared
                            .instantiate(shared.context(&services), &limits)
                            .map_err(|f| anyhow::anyhow!("{}", f.message))?;
                    } else {
                        *fuel = c.instance.last_fuel;
                    }
                }
            }
            done += round;
        }
        let call = if name == "dashboard" {
            "render"
        } else {
            "poll"
        };
        for (c, _, times, fuel) in &mut contenders {
            times.sort();
            let mean = times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len() as f64;
            println!(
                "{{\"plugin\": \"{name}\", \"call\": \"{call}\", \"mode\": \"{}\", \"n\": {}, \"median_us\": {:.2}, \"p99_us\": {:.2}, \"mean_us\": {:.2}, \"fuel\": {fuel}, \"memory_bytes\": {}, \"failures\": {}}}",
                c.mode,
                times.len(),
                percentile(times, 0.5),
                percentile(times, 0.99),
                mean * 1e6,
                c.instance.memory_bytes(),
                c.failures,
            );
        }
    }
    drop(hardware);
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(())
}
