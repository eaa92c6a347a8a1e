//! `precompile`: compiles the Python runtime and component plugins into the
//! artifact cache, for this machine or another.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{load_config, Overrides};
use crate::config::Config;
use crate::runtime::Runtime;

/// What `precompile` was asked for.
#[derive(Debug, Clone, Default)]
pub struct PrecompileOptions {
    /// Component plugins to compile besides the runtime; empty means every
    /// enabled one.
    pub names: Vec<String>,
    /// Build artifacts for another machine (`aarch64-unknown-linux-gnu`,
    /// `armv7-unknown-linux-gnueabihf`, `pulley32`) instead of this one.
    pub target: Option<String>,
    /// Write there instead of the config's `cache_dir`.
    pub out: Option<PathBuf>,
}

/// Compiles the shared Python runtime and the enabled component plugins
/// (or those named) into the artifact cache, so the next start compiles
/// nothing. Prints one line per artifact. Source plugins need no compiling.
///
/// With a target, compiles for that machine's engine into `out` (default:
/// `precompiled/<target>`) under the names its cache looks up: copy the
/// folder's files into the device's `cache_dir` and it loads them without
/// compiling (needed by a runtime-only build).
pub fn precompile(
    config_path: PathBuf,
    overrides: Overrides,
    options: &PrecompileOptions,
) -> anyhow::Result<()> {
    let config = load_config(&config_path, &overrides)?;
    let names = &options.names;
    for name in names {
        match config.plugins.get(name) {
            None => anyhow::bail!("plugin `{name}` is not in {}", config_path.display()),
            Some(p) if p.component.is_none() => anyhow::bail!(
                "plugin `{name}` is Python source: it needs no compiling (the runtime runs it)"
            ),
            Some(_) => {}
        }
    }
    let components: Vec<(String, PathBuf)> = config
        .plugins
        .iter()
        .filter(|(name, plugin)| names.contains(name) || (names.is_empty() && plugin.enabled))
        .filter_map(|(name, _)| Some((name.clone(), config.component_file(name)?)))
        .collect();
    if let Some(target) = &options.target {
        let out = options
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("precompiled").join(target));
        return precompile_for_target(&config, target, &out, components);
    }
    let cache_dir = options.out.clone().unwrap_or_else(|| config.cache_dir());
    let runtime = Runtime::new(&cache_dir)?;
    let started = std::time::Instant::now();
    let python = runtime.python(&config.runtime_file())?;
    println!(
        "python runtime {}: ready in {:.2} s ({})",
        &python.digest[..12],
        started.elapsed().as_secs_f64(),
        config.runtime_file().display()
    );
    for (name, file) in components {
        let started = std::time::Instant::now();
        let bytes = crate::fsutil::read_limited(&file, crate::plugins::files::MAX_COMPONENT_BYTES)?;
        let (_, source) = runtime
            .cache()
            .load_or_compile_with_source(runtime.engine(), &bytes)
            .with_context(|| format!("failed to load plugin {}", file.display()))?;
        let how = match source {
            crate::runtime::CacheSource::Cache => "already cached",
            crate::runtime::CacheSource::Compiled => "compiled",
        };
        println!(
            "{name}: {how} in {:.2} s ({})",
            started.elapsed().as_secs_f64(),
            file.display()
        );
    }
    Ok(())
}

#[cfg(feature = "compiler")]
fn precompile_for_target(
    config: &Config,
    triple: &str,
    out: &std::path::Path,
    components: Vec<(String, PathBuf)>,
) -> anyhow::Result<()> {
    use crate::runtime::{engine_for, ArtifactCache, EngineTarget};
    let target = EngineTarget::for_triple(triple)?;
    let engine = engine_for(&target).with_context(|| format!("precompiling for `{triple}`"))?;
    let cache = ArtifactCache::new(out, &target)
        .with_context(|| format!("failed to create {}", out.display()))?;
    println!(
        "precompiling for {triple}: {} -> {}",
        target.descriptor(),
        out.display()
    );
    let missing_backend = |e: anyhow::Error, what: &str| {
        // A backend missing from this build shows up at the first compile.
        e.context(format!(
            "failed to compile {what} for {triple} (a host built without \
             `--features precompile-all-targets` only compiles for itself and Pulley)"
        ))
    };
    let started = std::time::Instant::now();
    let runtime_file = config.runtime_file();
    let (path, fresh) =
        crate::runtime::python::precompile_into(&engine, &cache, &target, &runtime_file)
            .map_err(|e| missing_backend(e, "the Python runtime"))?;
    report("python runtime", fresh, started, &path);
    for (name, file) in components {
        let started = std::time::Instant::now();
        let bytes = crate::fsutil::read_limited(&file, crate::plugins::files::MAX_COMPONENT_BYTES)?;
        let (path, fresh) = cache
            .precompile_into(&engine, &bytes)
            .map_err(|e| missing_backend(e, &format!("plugin {}", file.display())))?;
        report(&name, fresh, started, &path);
    }
    Ok(())
}

/// One line per artifact `precompile --target` wrote or found.
#[cfg(feature = "compiler")]
fn report(what: &str, fresh: bool, started: std::time::Instant, path: &std::path::Path) {
    println!(
        "{what}: {} in {:.2} s -> {}",
        if fresh {
            "compiled"
        } else {
            "already precompiled"
        },
        started.elapsed().as_secs_f64(),
        path.file_name().unwrap_or_default().to_string_lossy()
    );
}

#[cfg(not(feature = "compiler"))]
fn precompile_for_target(
    _config: &Config,
    triple: &str,
    _out: &std::path::Path,
    _components: Vec<(String, PathBuf)>,
) -> anyhow::Result<()> {
    anyhow::bail!(
        "cannot precompile for `{triple}`: this is a runtime-only build (no compiler); \
         precompile on a build machine with a host built with `--features precompile-all-targets`"
    )
}
