//! Writing a file so that readers and power cuts see either its old or its
//! new content, never a torn one; one implementation for every file the
//! host replaces (plugin state, artifacts and their checksums, the runtime
//! pointer, the control token and browser sessions, a config rewritten by
//! `new --add`).
//!
//! The recipe: a temporary file in the same folder, named after the target
//! and this process (`.<name>.tmp<pid>`), written and fsynced, renamed over
//! the target, then the folder fsynced so the rename itself survives a
//! power cut. A host killed mid-write leaves its temporary file behind;
//! [`remove_leftover_temps`] deletes those at the next start.
//!
//! And reading a file the host did not write (a plugin's sources or
//! component, the Python runtime) with [`read_limited`]: a regular file of
//! at most a documented size, or an error message, never the host's memory
//! or a stuck reader.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically and durably (see the module doc).
/// A new file gets the default permissions (0666 less the umask); the
/// folder is created if missing.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, None)
}

/// [`write_atomically`], readable and writable by the owner only (0600)
/// from the moment the temporary file exists: for secrets.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, Some(0o600))
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let dir = folder_of(path);
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{}{}", temp_prefix(path), std::process::id()));
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        if let Some(mode) = mode {
            options.mode(mode);
        }
        let mut file = options.open(&tmp)?;
        if let Some(mode) = mode {
            // A temporary file left by an earlier failed write of this
            // process keeps the mode it was created with; set it anyway.
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The new content is in place either way; a folder that cannot be
    // opened for the sync (a filesystem without directory fsync) only
    // weakens the power-cut guarantee, so the write still succeeded.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The folder `path` is in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."))
}

/// The temporary name [`write_atomically`] gives `path` while writing it,
/// without the writer's process id.
fn temp_prefix(path: &Path) -> String {
    format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    )
}

/// Deletes the temporary files of `path` that an earlier process left when
/// it was killed mid-write (this process's own may be in use). Returns how
/// many went, and logs it.
pub fn remove_leftover_temps(path: &Path) -> usize {
    let prefix = temp_prefix(path);
    let ours = format!("{prefix}{}", std::process::id());
    let Ok(entries) = std::fs::read_dir(folder_of(path)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let pid_part = name.strip_prefix(prefix.as_str());
        if pid_part.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && name != ours
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    if removed > 0 {
        log::info!(
            "removed {removed} temporary file(s) of {} left by a host that stopped mid-write",
            path.display()
        );
    }
    removed
}

/// Why a plugin file could not be read.
#[derive(Debug)]
pub enum FileError {
    NotFound(PathBuf),
    /// Something other than a regular file (a directory, a FIFO, ...).
    NotAFile(PathBuf, &'static str),
    TooLarge {
        path: PathBuf,
        bytes: u64,
        limit: u64,
    },
    NotText(PathBuf),
    Io(PathBuf, std::io::Error),
}

impl FileError {
    pub fn not_found(&self) -> bool {
        matches!(self, FileError::NotFound(_))
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::NotFound(p) => write!(f, "{} does not exist", p.display()),
            FileError::NotAFile(p, what) => {
                write!(f, "{} is a {what}, not a regular file", p.display())
            }
            FileError::TooLarge { path, bytes, limit } => write!(
                f,
                "{} is {} KiB, larger than the {} KiB a plugin file may be",
                path.display(),
                bytes.div_ceil(1024),
                limit / 1024
            ),
            FileError::NotText(p) => write!(f, "{} is not UTF-8 text", p.display()),
            FileError::Io(p, e) => write!(f, "cannot read {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for FileError {}

/// Reads `path` whole if it is a regular file of at most `limit` bytes.
/// Opened without blocking (a FIFO in its place must not hang the loader)
/// and checked on the open handle, so a swap between check and read cannot
/// slip a larger or special file in.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let io = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            FileError::NotFound(path.to_path_buf())
        } else {
            FileError::Io(path.to_path_buf(), e)
        }
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "directory"
        } else if ft.is_fifo() {
            "FIFO"
        } else if ft.is_socket() {
            "socket"
        } else {
            "device"
        };
        return Err(FileError::NotAFile(path.to_path_buf(), what));
    }
    if meta.len() > limit {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            bytes: meta.len(),
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            bytes: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// A fresh, empty folder for one unit test, `whp-<tag>-<pid>` in the
/// system's temporary folder (emptied when an earlier run left it).
#[cfg(test)]
pub(crate) fn test_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("whp-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary folder for a test");
    dir
}

/// The names in folder `dir`, sorted: what a test expects to find there.
#[cfg(test)]
pub(crate) fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temporary_file() {
        let dir = test_dir("fsutil-replace");
        let path = dir.join("sub").join("f.json");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(file_names(path.parent().unwrap()), ["f.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_the_old_content_and_no_temporary_file() {
        let dir = test_dir("fsutil-fail");
        let path = dir.join("f");
        write_atomically(&path, b"old").unwrap();
        // Renaming a file over a non-empty folder fails after the
        // temporary file was written.
        let blocked = dir.join("blocked");
        std::fs::create_dir_all(blocked.join("inside")).unwrap();
        assert!(write_atomically(&blocked, b"new").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(file_names(&dir), ["blocked", "f"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_private_write_is_owner_only_even_over_a_stale_temporary_file() {
        let dir = test_dir("fsutil-private");
        let path = dir.join("secret");
        // What an earlier failed write of this process could leave: our
        // own temporary name, world-readable.
        let stale = dir.join(format!(".secret.tmp{}", std::process::id()));
        std::fs::write(&stale, b"x").unwrap();
        std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"token").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"token");
        // Replacing a world-readable file makes it private too.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"token2").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(file_names(&dir), ["secret"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn leftover_temporary_files_of_other_processes_are_removed() {
        let dir = test_dir("fsutil-leftover");
        let path = dir.join("p.json");
        let ours = format!(".p.json.tmp{}", std::process::id());
        for name in [
            ".p.json.tmp1",
            ".p.json.tmp4194304",
            ours.as_str(),
            ".p.json.tmpfoo",
            ".p.json.tmp",
            ".q.json.tmp12",
            "p.json",
        ] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        assert_eq!(remove_leftover_temps(&path), 2);
        let mut expected = vec![".p.json.tmp", ".p.json.tmpfoo", ".q.json.tmp12", "p.json"];
        expected.push(&ours);
        expected.sort();
        assert_eq!(file_names(&dir), expected);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
