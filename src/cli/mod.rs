//! The command line: `wasi-python-host [OPTIONS]` runs the host, and one
//! file per subcommand (`precompile`, `check`, `probe`, `token`, `new`).
//! This file parses the arguments, dispatches, and holds what the commands
//! share: the config as the command line overrides it.

mod check;
mod new;
mod precompile;
mod probe;
mod run;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, ConfigError, HardwareMode};

const USAGE: &str = "usage: wasi-python-host [OPTIONS]                 run the host
       wasi-python-host precompile [OPTIONS] [--target TRIPLE] [--out DIR] [PLUGIN...]
                                                    compile the Python runtime (and component
                                                    plugins) into the artifact cache, or for
                                                    another machine (TRIPLE such as
                                                    aarch64-unknown-linux-gnu or
                                                    armv7-unknown-linux-gnueabihf) into DIR
                                                    (default precompiled/TRIPLE), named as
                                                    that machine's cache_dir expects
       wasi-python-host check [OPTIONS] NAME      load plugin NAME as the host would and say
                                                    whether it loads (SyntaxError, grants, ...)
       wasi-python-host check [OPTIONS] [--name NAME] PLUGIN.wasm
                                                    show a component's imports, exports and grants
       wasi-python-host check [OPTIONS]           validate the config file, and that it fits the
                                                    service's limits (compiles nothing)
       wasi-python-host probe [OPTIONS]           check the configured devices
       wasi-python-host token [OPTIONS]           print the control token (buzzer and other
                                                    control endpoints; browsers log in at /login)
       wasi-python-host new NAME [--kind sensor|automation|dashboard] [--led N] [--add] [--config PATH]
                                                    scaffold plugins/NAME with a test and its config entry

Runs Python plugins (Python source on a shared CPython compiled to
WebAssembly, one sandboxed instance per plugin) against the configured
hardware and serves the dashboard and JSON API. `probe` reads every configured sensor
once, checks the LED strip and buzzer drivers, prints what it found (or what
to fix) and exits 0 when every device answered, 1 otherwise.

options:
  --config PATH        host configuration (default: config/host.toml)
  --listen ADDR:PORT   HTTP address, overrides host.listen
  --hardware MODE      auto, sim or pi, overrides host.hardware
  --dev                accepted for older scripts; Python sources always hot-reload
  -h, --help           this text
  -V, --version        the version";

enum Command {
    Run,
    Precompile(precompile::PrecompileOptions),
    Check {
        target: Option<String>,
        name: Option<String>,
    },
    Probe,
    Token,
    New {
        name: Option<String>,
        kind: crate::scaffold::Kind,
        led: Option<u8>,
        add: bool,
    },
}

struct Args {
    command: Command,
    config: PathBuf,
    overrides: Overrides,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = args.peekable();
    let command = match args.peek().map(String::as_str) {
        Some("precompile") => {
            args.next();
            Command::Precompile(precompile::PrecompileOptions::default())
        }
        Some("check") => {
            args.next();
            Command::Check {
                target: None,
                name: None,
            }
        }
        Some("new") => {
            args.next();
            Command::New {
                name: None,
                kind: crate::scaffold::Kind::Sensor,
                led: None,
                add: false,
            }
        }
        Some("probe") => {
            args.next();
            Command::Probe
        }
        Some("token") => {
            args.next();
            Command::Token
        }
        Some(s) if !s.starts_with('-') => return Err(format!("unknown command `{s}`")),
        _ => Command::Run,
    };
    let mut parsed = Args {
        command,
        config: PathBuf::from("config/host.toml"),
        overrides: Overrides::default(),
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "-V" | "--version" => {
                println!("wasi-python-host {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "--config" => parsed.config = PathBuf::from(value("--config")?),
            // Once it rebuilt components on a source change; saving a
            // plugin's .py now reloads it in every mode.
            "--dev" if matches!(parsed.command, Command::Run) => {}
            "--listen" => {
                let v = value("--listen")?;
                parsed.overrides.listen = Some(v.parse().map_err(|_| {
                    format!("--listen: `{v}` is not an ADDR:PORT such as 127.0.0.1:3000")
                })?);
            }
            "--hardware" => {
                parsed.overrides.hardware = Some(
                    value("--hardware")?
                        .parse()
                        .map_err(|e| format!("--hardware: {e}"))?,
                )
            }
            "--target" if matches!(parsed.command, Command::Precompile(_)) => {
                let v = value("--target")?;
                if let Command::Precompile(o) = &mut parsed.command {
                    o.target = Some(v);
                }
            }
            "--out" if matches!(parsed.command, Command::Precompile(_)) => {
                let v = value("--out")?;
                if let Command::Precompile(o) = &mut parsed.command {
                    o.out = Some(PathBuf::from(v));
                }
            }
            "--name" if matches!(parsed.command, Command::Check { .. }) => {
                let v = value("--name")?;
                if let Command::Check { name, .. } = &mut parsed.command {
                    *name = Some(v);
                }
            }
            "--kind" | "--led" | "--add" if matches!(parsed.command, Command::New { .. }) => {
                let v = if flag == "--add" {
                    String::new()
                } else {
                    value(&flag)?
                };
                if let Command::New { kind, led, add, .. } = &mut parsed.command {
                    match flag.as_str() {
                        "--kind" => *kind = v.parse()?,
                        "--led" => {
                            *led = Some(
                                v.parse()
                                    .map_err(|_| format!("--led: `{v}` is not an LED index"))?,
                            )
                        }
                        _ => *add = true,
                    }
                }
            }
            other if !other.starts_with('-') => match &mut parsed.command {
                Command::New {
                    name: name @ None, ..
                } => *name = Some(other.to_string()),
                Command::Precompile(o) => o.names.push(other.to_string()),
                Command::Check {
                    target: target @ None,
                    ..
                } => *target = Some(other.to_string()),
                _ => return Err(format!("unexpected argument `{other}`")),
            },
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(Some(parsed))
}

/// Runs the command line `args` (without the program name) and says how
/// the process should exit.
pub fn main(args: impl Iterator<Item = String>) -> ExitCode {
    let args = match parse_args(args) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match args.command {
        Command::Run => run::run(args.config, args.overrides),
        Command::Precompile(options) => {
            precompile::precompile(args.config, args.overrides, &options)
        }
        Command::Check { target: None, .. } => check::check_config(args.config, args.overrides),
        Command::Check {
            target: Some(target),
            name,
        } => match check::check(args.config, args.overrides, &target, name) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::New { name: None, .. } => {
            eprintln!("error: new needs a plugin NAME\n\n{USAGE}");
            return ExitCode::from(2);
        }
        Command::New {
            name: Some(name),
            kind,
            led,
            add,
        } => new::new_plugin(args.config, &name, kind, led, add),
        Command::Token => token::print_token(args.config, args.overrides),
        Command::Probe => match probe::probe(args.config, args.overrides) {
            Ok(true) => return ExitCode::SUCCESS,
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: what failed and why, with every cause.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the command line can override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub hardware: Option<HardwareMode>,
}

/// Reads the config and applies command-line overrides.
pub fn load_config(path: &std::path::Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    let mut config = Config::load(path)?;
    if let Some(listen) = overrides.listen {
        config.host.listen = listen;
    }
    if let Some(hardware) = overrides.hardware {
        config.host.hardware = hardware;
    }
    Ok(config)
}
