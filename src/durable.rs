//! Directory entries that survive a power loss.
//!
//! A file's contents are durable once the file is fsynced, but its name (a creation, a rename,
//! a removal) only once the directory holding it is fsynced as well: until then a power loss
//! may take the file away, or bring back the old one, whatever was synced inside it. So every
//! create, rename or removal that later state depends on is followed by [`sync_entry`] (or
//! [`sync_dir`] of its directory) before anything depends on it, and a directory the node
//! creates is made with [`create_dir_all`], which also syncs each new directory's parent.
//!
//! # Fault injection (debug builds only)
//! `REDRAFT_TEST_SKIP_DIR_FSYNC=<name>[,<name>…]` makes [`sync_entry`] and [`create_dir_all`]
//! skip the fsync that makes an entry of one of those names durable (e.g. `sm.redb`). The
//! power-loss tests use it to show that their lazy filesystem catches a missing fsync; release
//! builds do not read it.

use std::fs::File;
use std::io;
use std::path::Path;

/// Makes the entries of directory `dir` (files created, renamed or removed in it) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes the directory entry of `path` durable: fsyncs the directory holding it.
pub fn sync_entry(path: &Path) -> io::Result<()> {
    if skipped_in_test(path) {
        return Ok(());
    }
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

/// Creates `dir` and any missing ancestors, each one durable in its parent when this returns.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        // Made meanwhile by someone else: still made durable below.
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(err) => return Err(err),
    }
    sync_entry(dir)
}

/// Whether a test asked (`REDRAFT_TEST_SKIP_DIR_FSYNC`) to skip making `path`'s entry durable.
fn skipped_in_test(path: &Path) -> bool {
    #[cfg(debug_assertions)]
    if let (Ok(names), Some(name)) = (
        std::env::var("REDRAFT_TEST_SKIP_DIR_FSYNC"),
        path.file_name().and_then(|n| n.to_str()),
    ) {
        return names.split(',').any(|skipped| skipped == name);
    }
    let _ = path;
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_dir_all_makes_every_missing_ancestor() {
        let root = tempfile::tempdir().expect("temp dir");
        let deep = root.path().join("a/b/c");
        create_dir_all(&deep).expect("create");
        assert!(deep.is_dir());
        // Again on an existing directory: nothing to do.
        create_dir_all(&deep).expect("create again");
        sync_entry(&deep.join("absent")).expect("sync the directory of an absent entry");
    }
}
