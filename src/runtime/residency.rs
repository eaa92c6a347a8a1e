//! How much of an artifact becomes resident: only the pages plugins use.
//!
//! The runtime's artifact (~40 MiB: ~20 MiB of compiled CPython, the ~13 MiB
//! pre-initialised memory image, metadata) is mapped from its file, and
//! every instance maps the image copy-on-write from the same file. How much
//! of that is resident is decided by the kernel's fault path more than by
//! what the plugins touch:
//!
//! * A read fault also maps the pages around it that are already in the
//!   page cache (fault-around, 64 KiB), and recent kernels map whole large
//!   folios. After one sequential read of the file (the checksum), the page
//!   cache holds all of it in large folios, so each fault mapped hundreds
//!   of KiB. Measured with four plugins: ~15 MiB of code and ~7 MiB of the
//!   image resident (PSS), and the whole 40 MiB file in the service's page
//!   cache, which its cgroup limit counts.
//! * A read fault on a page that is not cached reads ahead around it (128
//!   KiB by default) and maps what it read.
//!
//! So the host evicts an artifact from the page cache once it has read it
//! to check it ([`evict`]), and advises every mapping of it MADV_RANDOM
//! ([`track`], [`advise_mappings`]): a fault then reads and maps one page,
//! and what stays resident is what the plugins use. The price is a small
//! read per first touch of a page instead of one per 128 KiB, at start-up;
//! afterwards the pages stay mapped.
//!
//! Kernels from 6.16 on still read ahead 128 KiB on a fault in an
//! *executable* mapping whatever the advice, so there the compiled code's
//! page cache is larger than what runs (its residency is not: fault-around
//! maps at most 64 KiB of cached pages). That page cache is clean, and the
//! first thing reclaimed when the service nears its memory limit.
//!
//! Linux only; elsewhere these do nothing.

use std::fs::File;
use std::path::Path;
use std::sync::Mutex;

/// (device, inode) of every artifact file this process has mapped.
static ARTIFACTS: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

/// Drops `file`'s pages from the page cache (those no process maps).
pub fn evict(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a hint about a file descriptor we own; no memory access.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Evicts the file at `path` from the page cache (see [`evict`]).
pub fn evict_path(path: &Path) {
    if let Ok(file) = File::open(path) {
        evict(&file);
    }
}

/// Remembers that `path` (an artifact just mapped) is mapped by this
/// process, and advises its mappings.
pub fn track(path: &Path) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(path) {
            let id = (m.dev(), m.ino());
            let mut ids = ARTIFACTS.lock().expect("mapped artifacts lock");
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        advise_mappings();
    }
    #[cfg(not(target_os = "linux"))]
    let _ = path;
}

/// Advises MADV_RANDOM on every mapping of a tracked artifact: its code
/// and metadata, and each instance's memory image (wasmtime maps a new one
/// per instantiation, so this runs after each). Idempotent.
pub fn advise_mappings() {
    #[cfg(target_os = "linux")]
    {
        let ids = ARTIFACTS.lock().expect("mapped artifacts lock").clone();
        if ids.is_empty() {
            return;
        }
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return;
        };
        for (start, end) in maps.lines().filter_map(|l| mapping_of(l, &ids)) {
            // SAFETY: a paging hint on a range the kernel just listed as
            // mapped; it changes no contents. If another thread unmapped it
            // meanwhile the call fails (ENOMEM) or advises its successor,
            // both harmless.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_RANDOM);
            }
        }
    }
}

/// The address range of a `/proc/self/maps` line when it maps one of `ids`.
#[cfg(target_os = "linux")]
fn mapping_of(line: &str, ids: &[(u64, u64)]) -> Option<(usize, usize)> {
    // start-end perms offset major:minor inode path
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let dev = fields.nth(2)?;
    let inode: u64 = fields.next()?.parse().ok()?;
    if inode == 0 {
        return None;
    }
    let (major, minor) = dev.split_once(':')?;
    let (major, minor) = (
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    let dev = libc::makedev(major, minor);
    if !ids.contains(&(dev, inode)) {
        return None;
    }
    Some((
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_is_found_by_device_and_inode() {
        use std::os::unix::fs::MetadataExt;
        let path = std::env::current_exe().unwrap();
        let m = std::fs::metadata(&path).unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let found: Vec<_> = maps
            .lines()
            .filter_map(|l| mapping_of(l, &[(m.dev(), m.ino())]))
            .collect();
        assert!(!found.is_empty(), "the test binary maps itself:\n{maps}");
        assert!(found.iter().all(|(s, e)| s < e));
        assert!(maps
            .lines()
            .filter_map(|l| mapping_of(l, &[(m.dev(), m.ino() + 1)]))
            .next()
            .is_none());
    }
}
