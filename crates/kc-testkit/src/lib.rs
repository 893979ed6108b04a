//! Test support for keycontacts: a throwaway Postgres cluster with a fresh database per test,
//! services spawned on `127.0.0.1:0`, test tokens and fixtures.

#![warn(missing_docs, unreachable_pub)]

pub mod checks;
pub mod codes;
pub mod fixtures;
pub mod grpc;
pub mod identity;
pub mod metrics;
pub mod otlp;
pub mod outbox;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod secrets;
pub mod service;
pub mod smtp;
pub mod tokens;

pub use postgres::{ClusterOptions, PgCluster, TestDatabase, test_database};
pub use service::{Restartable, SpawnedService, ready_channel, spawn_service};

use std::path::{Path, PathBuf};

/// The Cargo target directory of this workspace.
///
/// Found from `CARGO_TARGET_DIR`, else by walking up from the running executable to the directory
/// Cargo marked with `CACHEDIR.TAG`, else by walking up from `CARGO_MANIFEST_DIR` (or the
/// current directory) to the first directory holding a `target` directory. Falls back to
/// `<temp dir>/keycontacts-target` when none of these applies.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        return std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(dir));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| find_ancestor(&exe, |dir| dir.join("CACHEDIR.TAG").is_file()))
    {
        return dir;
    }
    let starts = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        std::env::current_dir().ok(),
    ];
    for start in starts.into_iter().flatten() {
        if let Some(dir) = find_ancestor(&start, |dir| dir.join("target").is_dir()) {
            return dir.join("target");
        }
    }
    std::env::temp_dir().join("keycontacts-target")
}

/// The first of `start` and its ancestors for which `accept` holds.
fn find_ancestor(start: &Path, accept: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| accept(dir))
        .map(Path::to_path_buf)
}
