//! `new`: scaffolds a plugin and its config entry.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{load_config, Overrides};

/// `new`: scaffolds `plugins/NAME/` and prints (or, with `add`, appends to
/// the config) the entry the plugin needs. `led` defaults to the first LED
/// no other plugin is granted; the plugin it follows is the config's first
/// enabled plugin of the kind it derives from (see [`crate::scaffold`]).
pub fn new_plugin(
    config_path: PathBuf,
    name: &str,
    kind: crate::scaffold::Kind,
    led: Option<u8>,
    add: bool,
) -> anyhow::Result<()> {
    let config = load_config(&config_path, &Overrides::default())?;
    crate::config::rules::check_plugin_name(name).map_err(anyhow::Error::msg)?;
    if config.plugins.contains_key(name) {
        anyhow::bail!("{} already has [plugins.{name}]", config_path.display());
    }
    if led.is_some() && !kind.uses_led() {
        anyhow::bail!("--led: a {} plugin drives no LED", kind.config_kind());
    }
    let count = config.hardware.leds.count;
    let led = match led {
        Some(led) => led,
        None if !kind.uses_led() => 0,
        None => crate::scaffold::first_free_led(&config).ok_or_else(|| {
                anyhow::anyhow!(
                    "all {count} LEDs are granted to other plugins: raise hardware.leds.count in {} or choose one to share with --led N",
                    config_path.display()
                )
            })?,
    };
    let mut notes = Vec::new();
    let follows = match (
        kind.follows_kind(),
        crate::scaffold::followed(&config, kind),
    ) {
        (None, _) => String::new(),
        (Some(_), Some(other)) => other,
        (Some(wanted), None) => {
            notes.push(format!(
                "note: it follows the readings of a `{0}` plugin, and {1} has no enabled plugin of kind \"{0}\": set `follows` in its entry to a plugin whose readings have the fields it uses",
                wanted.name(),
                config_path.display()
            ));
            wanted.name().to_string()
        }
    };
    let mut enabled = true;
    if kind == crate::scaffold::Kind::Dashboard {
        if let Some((other, _)) = config
            .plugins
            .iter()
            .find(|(_, p)| p.enabled && p.kind() == crate::config::PluginKind::Dashboard)
        {
            enabled = false;
            notes.push(format!(
                "note: the host serves one dashboard and {} has `{other}` on, so [plugins.{name}] has enabled = false: to serve this one instead, set enabled = false in [plugins.{other}] and remove that line from [plugins.{name}]",
                config_path.display()
            ));
        }
    }
    let options = crate::scaffold::Options {
        led,
        follows,
        enabled,
    };
    let entry = crate::scaffold::config_entry(name, kind, &options);
    // With --add, check the resulting config before writing anything.
    let new_config = if add {
        let mut text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("cannot read {}", config_path.display()))?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&entry);
        crate::config::Config::parse(&text, &config_path)?;
        Some(text)
    } else {
        None
    };
    let made = crate::scaffold::create(&config.plugins_dir(), name, kind, &options)?;
    for file in &made.files {
        println!("created {}", file.display());
    }
    match new_config {
        Some(text) => {
            crate::fsutil::write_atomically(&config_path, text.as_bytes())
                .with_context(|| format!("cannot write {}", config_path.display()))?;
            println!("added [plugins.{name}] to {}", config_path.display());
        }
        None => println!(
            "\nadd this to {} (or run again with --add):\n\n{entry}",
            config_path.display()
        ),
    }
    for note in notes {
        println!("{note}");
    }
    println!(
        "next: edit {}/app.py (a running host loads each saved version by itself)\n      scripts/test-plugins.sh {}\n      the helpers and the test kit: docs/plugin-sdk.md",
        made.dir.display(),
        made.dir.display()
    );
    Ok(())
}
