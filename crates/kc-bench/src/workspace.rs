//! Where things are in the workspace, and running tools in it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use anyhow::{Context, bail};
use tokio::process::Command;

/// The workspace root (the directory of the top-level `Cargo.toml`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("xtask lives in <root>/crates/xtask")
        .to_path_buf()
}

/// The Cargo target directory.
pub fn target_dir() -> PathBuf {
    kc_testkit::target_dir()
}

/// Directory of the binaries `cargo build --bins` builds (the dev profile).
pub fn bin_dir() -> PathBuf {
    target_dir().join("debug")
}

/// A `cargo` command (the one that runs xtask) in the workspace root.
///
/// Without the variables `cargo run` set for xtask itself (`CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR` and the like): build scripts such as ring's rerun when one of them
/// changes, so a build run from xtask would otherwise rebuild, and make the next build from a
/// shell rebuild again, ring and every crate above it (rustls, tonic, sqlx, the suite).
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(program);
    command.current_dir(root());
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            command.env_remove(name);
        }
    }
    command
}

/// Whether `name` is one of the variables `cargo run` sets for the program it runs (besides
/// `CARGO`, the cargo to use).
fn set_by_cargo_run(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || matches!(
            name,
            "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
        )
}

/// Prints `command` as it is about to run, then runs it with inherited output.
pub async fn status(command: &mut Command) -> anyhow::Result<ExitStatus> {
    let shown = show(command);
    eprintln!("xtask: running {shown}");
    command
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .with_context(|| format!("could not run {shown}"))
}

/// Like [`status`], but fails unless the command succeeds.
pub async fn check(command: &mut Command) -> anyhow::Result<()> {
    let status = status(command).await?;
    if !status.success() {
        bail!("{} failed ({status})", show(command));
    }
    Ok(())
}

/// `command` as a shell-like line, for messages.
pub fn show(command: &Command) -> String {
    let command = command.as_std();
    let program = Path::new(command.get_program());
    // `cargo`, not the toolchain's full path to it.
    let mut line = program
        .file_name()
        .unwrap_or(program.as_os_str())
        .to_string_lossy()
        .into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Whether `program` is an executable file in one of `PATH`'s directories.
pub fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// `PATH` extended with where the tests' tools live: pip's script directories (grpcurl comes
/// from pip) and `/usr/local/bin`, each added only when missing.
pub async fn tools_path() -> OsString {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&current).collect();
    let mut extra = Vec::new();
    let python = [
        ["-m", "site", "--user-base"].as_slice(),
        [
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ]
        .as_slice(),
    ];
    for (index, args) in python.into_iter().enumerate() {
        let Ok(output) = Command::new("python3")
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .await
        else {
            break;
        };
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if output.status.success() && !text.is_empty() {
            let dir = PathBuf::from(text);
            // The user base holds scripts in its bin/; sysconfig names the directory itself.
            extra.push(if index == 0 { dir.join("bin") } else { dir });
        }
    }
    extra.push(PathBuf::from("/usr/local/bin"));
    for dir in extra {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    std::env::join_paths(dirs).unwrap_or(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_cargo_does_not_inherit_what_cargo_run_set_for_xtask() {
        // cargo test and cargo nextest set these for a test as cargo run does for xtask.
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let command = cargo();
        let removed: Vec<String> = command
            .as_std()
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        assert!(
            removed.iter().any(|name| name == "CARGO_PKG_NAME"),
            "{removed:?}"
        );
        assert!(
            removed.iter().any(|name| name == "CARGO_MANIFEST_DIR"),
            "{removed:?}"
        );
        assert!(!removed.iter().any(|name| name == "CARGO" || name == "PATH"));
        assert!(!set_by_cargo_run("CARGO_TARGET_DIR") && !set_by_cargo_run("CARGO_HOME"));
    }
}
