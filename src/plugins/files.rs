//! Reading a plugin's files: its Python sources (and the shared ones), or
//! its component. Every file is checked before it is read — a regular file
//! (not a FIFO that would block, a directory, a device), no larger than a
//! documented limit — so a bad file costs an error message, never the
//! host's memory or a stuck loader.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::fsutil::{read_limited, FileError};

/// Largest component plugin file (a componentize-py component is ~18 MiB).
pub const MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;
/// Largest Python source file of a plugin.
pub const MAX_SOURCE_FILE_BYTES: u64 = 1024 * 1024;
/// Largest total of a plugin's Python sources, shared modules included.
pub const MAX_SOURCE_TOTAL_BYTES: u64 = 4 * 1024 * 1024;
/// Most modules a plugin may have, shared ones included.
pub const MAX_MODULES: usize = 64;

/// One Python module of a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The import name: the file's stem.
    pub name: String,
    /// `<plugin>/app.py` or `common/alerts.py`: how tracebacks name it.
    pub path: String,
    pub source: String,
}

/// A plugin's Python source: the modules of its folder, and the shared
/// modules of `common` its own do not shadow, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub modules: Vec<SourceFile>,
    /// First 12 hex digits of the SHA-256 of every module's path and
    /// source: the version users see.
    pub version: String,
}

/// Whether `file_name` is a module the host hands to a plugin: a `.py`
/// whose stem is a Python identifier, and not a test (`test_*.py`,
/// `conftest.py`: they run under pytest on the test kit, never in the host).
pub fn is_plugin_module(file_name: &str) -> bool {
    let Some(stem) = file_name.strip_suffix(".py") else {
        return false;
    };
    let mut chars = stem.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    identifier && !stem.starts_with("test_") && stem != "conftest"
}

/// Reads plugin `name`'s sources from `dir` (which must hold `app.py`) and
/// the shared modules from `common`.
pub fn read_sources(name: &str, dir: &Path, common: &Path) -> anyhow::Result<Sources> {
    let app = dir.join("app.py");
    match std::fs::metadata(&app) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "{} does not exist: a plugin is a folder with an app.py (`wasi-python-host new {name}` \
             makes one), or set `component = \"FILE.wasm\"` in [plugins.{name}] for a component \
             plugin",
            app.display()
        ),
        Err(e) => anyhow::bail!("cannot read {}: {e}", app.display()),
    }
    let mut modules: Vec<SourceFile> = Vec::new();
    let mut total: u64 = 0;
    for (folder, label) in [(dir, name), (common, "common")] {
        let entries = match std::fs::read_dir(folder) {
            Ok(entries) => entries,
            // No shared modules is fine; a missing plugin folder was caught above.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && folder == common => continue,
            Err(e) => anyhow::bail!("cannot list {}: {e}", folder.display()),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| is_plugin_module(n))
            .collect();
        names.sort();
        for file_name in names {
            let stem = file_name.trim_end_matches(".py").to_string();
            if modules.iter().any(|m| m.name == stem) {
                continue; // the plugin's own module shadows a shared one
            }
            if modules.len() >= MAX_MODULES {
                anyhow::bail!(
                    "plugin `{name}` has more than {MAX_MODULES} Python modules (its own and \
                     those of {})",
                    common.display()
                );
            }
            let path = folder.join(&file_name);
            let bytes = read_limited(&path, MAX_SOURCE_FILE_BYTES)?;
            total += bytes.len() as u64;
            if total > MAX_SOURCE_TOTAL_BYTES {
                anyhow::bail!(
                    "plugin `{name}`'s Python sources (with the shared ones) are more than {} KiB",
                    MAX_SOURCE_TOTAL_BYTES / 1024
                );
            }
            let source = String::from_utf8(bytes).map_err(|_| FileError::NotText(path.clone()))?;
            modules.push(SourceFile {
                name: stem,
                path: format!("{label}/{file_name}"),
                source,
            });
        }
    }
    modules.sort_by(|a, b| a.name.cmp(&b.name));
    let mut h = Sha256::new();
    for m in &modules {
        h.update(m.path.as_bytes());
        h.update([0]);
        h.update(m.source.as_bytes());
        h.update([0]);
    }
    let version = h.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Sources { modules, version })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp(tag: &str) -> PathBuf {
        let dir = crate::fsutil::test_dir(&format!("files-{tag}"));
        std::fs::create_dir_all(dir.join("p")).unwrap();
        std::fs::create_dir_all(dir.join("common")).unwrap();
        dir
    }

    #[test]
    fn which_files_are_modules() {
        for (name, yes) in [
            ("app.py", true),
            ("_helpers.py", true),
            ("sensor2.py", true),
            ("test_app.py", false),
            ("conftest.py", false),
            ("my-module.py", false),
            ("2fast.py", false),
            ("app.pyc", false),
            ("README.md", false),
            (".py", false),
        ] {
            assert_eq!(is_plugin_module(name), yes, "{name}");
        }
    }

    #[test]
    fn sources_are_the_plugins_then_the_shared_ones_and_versioned() {
        let dir = temp("sources");
        std::fs::write(dir.join("p/app.py"), "import helper\n").unwrap();
        std::fs::write(dir.join("p/helper.py"), "X = 1\n").unwrap();
        std::fs::write(dir.join("p/test_app.py"), "assert False\n").unwrap();
        std::fs::write(dir.join("common/helper.py"), "X = 2\n").unwrap();
        std::fs::write(dir.join("common/alerts.py"), "Y = 1\n").unwrap();
        let s = read_sources("p", &dir.join("p"), &dir.join("common")).unwrap();
        let paths: Vec<&str> = s.modules.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["common/alerts.py", "p/app.py", "p/helper.py"]);
        assert_eq!(s.version.len(), 12);
        // Any change to any module is a new version; a test file is not.
        std::fs::write(dir.join("p/test_app.py"), "assert True\n").unwrap();
        let same = read_sources("p", &dir.join("p"), &dir.join("common")).unwrap();
        assert_eq!(same.version, s.version);
        std::fs::write(dir.join("common/alerts.py"), "Y = 2\n").unwrap();
        let changed = read_sources("p", &dir.join("p"), &dir.join("common")).unwrap();
        assert_ne!(changed.version, s.version);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_files_are_refused_with_what_is_wrong() {
        let dir = temp("bad");
        let err = read_sources("p", &dir.join("p"), &dir.join("common")).unwrap_err();
        assert!(
            format!("{err:#}").contains("app.py does not exist"),
            "{err:#}"
        );
        std::fs::write(dir.join("p/app.py"), "x = 1\n").unwrap();
        // A FIFO where a module should be: refused at once, not a hang.
        let fifo = dir.join("p/pipe.py");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_sources("p", &dir.join("p"), &dir.join("common")).unwrap_err();
        assert!(format!("{err:#}").contains("is a FIFO"), "{err:#}");
        std::fs::remove_file(&fifo).unwrap();
        // A directory named like a module.
        std::fs::create_dir(dir.join("p/pkg.py")).unwrap();
        let err = read_sources("p", &dir.join("p"), &dir.join("common")).unwrap_err();
        assert!(format!("{err:#}").contains("is a directory"), "{err:#}");
        std::fs::remove_dir(dir.join("p/pkg.py")).unwrap();
        // Too large, checked before reading: a sparse file of 2 GiB.
        let big = std::fs::File::create(dir.join("p/big.py")).unwrap();
        big.set_len(2 << 30).unwrap();
        let err = read_sources("p", &dir.join("p"), &dir.join("common")).unwrap_err();
        assert!(
            format!("{err:#}").contains("larger than the 1024 KiB"),
            "{err:#}"
        );
        std::fs::remove_file(dir.join("p/big.py")).unwrap();
        std::fs::write(dir.join("p/latin.py"), b"x = '\xe9'\n").unwrap();
        let err = read_sources("p", &dir.join("p"), &dir.join("common")).unwrap_err();
        assert!(format!("{err:#}").contains("not UTF-8"), "{err:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_component_file_is_checked_before_it_is_read() {
        let dir = temp("component");
        let file = dir.join("p/p.wasm");
        let sparse = std::fs::File::create(&file).unwrap();
        sparse.set_len(2 << 30).unwrap();
        let err = read_limited(&file, MAX_COMPONENT_BYTES).unwrap_err();
        assert!(matches!(err, FileError::TooLarge { .. }), "{err}");
        assert!(read_limited(&dir.join("p/none.wasm"), 10)
            .unwrap_err()
            .not_found());
        use crate::runtime::check_component_header;
        assert!(check_component_header(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(check_component_header(b"\0asm\x01\0\0\0").is_err());
        assert!(check_component_header(b"").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
