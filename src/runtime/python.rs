//! The shared Python runtime component: CPython with the bindings of every
//! contract interface, built once from `runtime/` by
//! scripts/build-runtime.sh, compiled once per target, and instantiated
//! afresh for every plugin, which is then handed its Python source (see
//! [`super::Program`]).
//!
//! Where it comes from: on a machine that builds it, `host.runtime` names
//! the component file; its artifact is looked up in the cache by its
//! SHA-256, compiled when missing, and a pointer file in the cache,
//! `python-runtime-<engine tag>.digest`, records which digest is current.
//! A device gets the artifact and the pointer precompiled by the deploy
//! (`precompile --target`) and needs no component file at all: it never
//! reads 20 MiB to hash them, and never compiles.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use wasmtime::component::Component;

use super::bytecode::BytecodeCache;
use super::{cache_digest, EngineTarget, Runtime};

/// Largest runtime component the host reads (the real one is ~20 MiB).
pub const MAX_RUNTIME_BYTES: u64 = 256 * 1024 * 1024;

pub struct PythonRuntime {
    pub component: Component,
    /// SHA-256 (hex) of the runtime component: its identity.
    pub digest: String,
    /// Bytecode this runtime compiled, by module version.
    pub bytecode: Arc<BytecodeCache>,
}

/// The file in a cache folder naming the current runtime for `target`.
pub fn pointer_file(cache_dir: &Path, target: &EngineTarget) -> PathBuf {
    cache_dir.join(format!("python-runtime-{}.digest", target.tag()))
}

/// Loads the runtime: from `file` when it exists (compiling it once), else
/// from the precompiled artifact the pointer in the cache names.
pub fn load(runtime: &Runtime, file: &Path) -> anyhow::Result<PythonRuntime> {
    let started = Instant::now();
    let cache = runtime.cache();
    let pointer = pointer_file(cache.dir(), runtime.target());
    let (component, digest) = match read_component(file)? {
        Some(wasm) => {
            let digest = cache_digest(&wasm);
            let cached = cache.cached(runtime.engine(), &digest).ok().flatten();
            let component = match cached {
                Some(component) => component,
                None => {
                    log::info!(
                        "compiling the Python runtime {} for {} (once per runtime build)",
                        file.display(),
                        runtime.target().name
                    );
                    runtime.component(&wasm, &digest).with_context(|| {
                        format!("cannot compile the Python runtime {}", file.display())
                    })?
                }
            };
            if std::fs::read_to_string(&pointer).ok().as_deref() != Some(digest.as_str()) {
                if let Err(e) = crate::fsutil::write_atomically(&pointer, digest.as_bytes()) {
                    log::warn!(
                        "cannot record the current runtime in {}: {e}",
                        pointer.display()
                    );
                }
            }
            (component, digest)
        }
        None => {
            let digest = match std::fs::read_to_string(&pointer) {
                Ok(d) if is_digest(d.trim()) => d.trim().to_string(),
                _ => bail!(
                    "the Python runtime is missing: {} does not exist (build it with \
                     scripts/build-runtime.sh, or point host.runtime at it), and {} has no \
                     precompiled runtime for {} (scripts/deploy.sh installs one; or run \
                     `wasi-python-host precompile --target <triple> --out DIR` on the build \
                     machine and copy DIR's files there)",
                    file.display(),
                    cache.dir().display(),
                    runtime.target().name
                ),
            };
            let component = cache
                .cached(runtime.engine(), &digest)
                .with_context(|| {
                    format!(
                        "the precompiled Python runtime named by {} is unusable",
                        pointer.display()
                    )
                })?
                .with_context(|| {
                    format!(
                        "{} names Python runtime {}, but {} is missing: deploy it again",
                        pointer.display(),
                        &digest[..12],
                        cache.entry(&digest).display()
                    )
                })?;
            (component, digest)
        }
    };
    log::info!(
        "Python runtime {} ready in {} ms",
        &digest[..12],
        started.elapsed().as_millis()
    );
    Ok(PythonRuntime {
        component,
        bytecode: Arc::new(BytecodeCache::new(cache.dir(), &digest)),
        digest,
    })
}

/// The component in `file`, `None` when there is no such file.
fn read_component(file: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let wasm = match crate::fsutil::read_limited(file, MAX_RUNTIME_BYTES) {
        Ok(wasm) => wasm,
        Err(e) if e.not_found() => return Ok(None),
        Err(e) => return Err(e).context("cannot read the Python runtime"),
    };
    super::check_component_header(&wasm)
        .with_context(|| format!("{} is not the Python runtime", file.display()))?;
    // Read once to hash (and, once per runtime build, to compile): 20 MiB
    // that need not stay in the service's page cache.
    super::residency::evict_path(file);
    Ok(Some(wasm))
}

fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Compiles the runtime component in `file` for `target`'s `engine` into
/// `cache`'s folder and points that folder's pointer at it, so a device
/// that gets the folder's files runs it without compiling. Returns the
/// artifact and whether it was compiled now.
#[cfg(feature = "compiler")]
pub fn precompile_into(
    engine: &wasmtime::Engine,
    cache: &super::ArtifactCache,
    target: &EngineTarget,
    file: &Path,
) -> anyhow::Result<(PathBuf, bool)> {
    let wasm = read_component(file)?.with_context(|| {
        format!(
            "the Python runtime {} does not exist: build it with scripts/build-runtime.sh",
            file.display()
        )
    })?;
    let (artifact, fresh) = cache.precompile_into(engine, &wasm)?;
    crate::fsutil::write_atomically(
        &pointer_file(cache.dir(), target),
        cache_digest(&wasm).as_bytes(),
    )?;
    Ok((artifact, fresh))
}
