//! "Write your first plugin", followed step by step as plugins/README.md
//! tells it: scaffold with `new --add` while the host runs, test the logic
//! without WebAssembly, build, and see the reading in /api — no restart.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{base_config, reading, table, temp_dir, wait_until, TestHost, BIN, ROOT};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the command runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn scaffold_test_build_and_see_it_in_the_api_without_a_restart() {
    let dir = temp_dir("first-plugin");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let mut config = base_config(&dir);
    // The new plugin goes to this host's own plugins folder; the shipped
    // ones keep running from the repository.
    table(&mut config, &["host"])
        .insert("plugins_dir".into(), plugins.display().to_string().into());
    for name in ["dht22", "bme680", "pi_monitor", "dashboard"] {
        let file = Path::new(ROOT)
            .join("plugins")
            .join(name)
            .join(format!("{name}.wasm"));
        table(&mut config, &["plugins", name])
            .insert("file".into(), file.display().to_string().into());
    }
    let host = TestHost::start_in(&dir, config);

    // 1. Scaffold, adding the config entry to the running host's config.
    let out = run(Command::new(BIN)
        .args(["new", "greenhouse", "--kind", "sensor", "--add", "--config"])
        .arg(&host.config_path));
    assert!(out.contains("added [plugins.greenhouse]"), "{out}");
    let app = plugins.join("greenhouse/app.py");
    assert!(app.exists() && plugins.join("greenhouse/test_app.py").exists());
    // The host saw the new entry; the plugin is not built yet.
    wait_until(
        "the host to notice the new entry",
        Duration::from_secs(20),
        || {
            host.log()
                .contains("config change: plugin `greenhouse` enabled")
                .then_some(())
        },
    );

    // 2. Its own tests pass without WebAssembly.
    let out = run(
        Command::new(Path::new(ROOT).join("scripts/test-plugins.sh"))
            .arg(plugins.join("greenhouse")),
    );
    assert!(out.contains("2 passed"), "{out}");

    // 3. Build it; the running host loads it by itself.
    run(
        Command::new(Path::new(ROOT).join("scripts/build-plugins.sh"))
            .arg("--dir")
            .arg(&plugins)
            .arg("greenhouse"),
    );
    let api = host.wait_api("the greenhouse reading", Duration::from_secs(90), |a| {
        reading(a, "greenhouse").is_some()
    });
    let r = reading(&api, "greenhouse").unwrap();
    assert_eq!(r["plugin"], "greenhouse");
    assert!(r["temperature"].as_f64().unwrap() > 10.0, "{r}");
    // Its LED (the first free one, 3) shows its level.
    assert_eq!(api["leds"][3]["g"], 255, "{}", api["leds"]);
}
