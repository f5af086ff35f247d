//! A size-limited disk for a run's data directory, and filling it: what a `disk_full`
//! fault needs. The data directory becomes a tmpfs of the profile's `data_size` (Linux,
//! as root); filling writes one file until the disk says it is full.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Whether `dir` is a mount point (listed in /proc/self/mounts).
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .any(|m| Path::new(m) == dir)
}

/// Mounts a tmpfs of `size` bytes on `dir` (which must exist).
pub fn mount(dir: &Path, size: u64) -> Result<()> {
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("size={size}"))
        .arg("tmpfs")
        .arg(dir)
        .output()
        .context("cannot run `mount`")?;
    if !out.status.success() {
        bail!(
            "cannot mount a {} tmpfs on {} for the disk_full fault (it needs root): {}",
            bytesize::ByteSize(size),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Unmounts `dir`.
pub fn unmount(dir: &Path) -> Result<()> {
    let out = Command::new("umount")
        .arg(dir)
        .output()
        .context("cannot run `umount`")?;
    if !out.status.success() {
        bail!(
            "cannot unmount {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Writes `path` until its disk is full; the bytes it took.
pub fn fill(path: &Path) -> Result<u64> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let chunk = vec![0u8; 1 << 20];
    let mut took = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => took += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => return Err(e).with_context(|| format!("cannot fill {}", path.display())),
        }
    }
    // A write short of its chunk took the last space; the next one fails.
    Ok(took)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_a_mount_point_and_a_fresh_directory_is_not() {
        assert!(is_mounted(Path::new("/")));
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mounted(dir.path()));
    }
}
