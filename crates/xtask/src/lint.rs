//! `cargo xtask lint`: formatting, clippy, the proto linter and the module-cycle check.

use std::process::{ExitCode, Stdio};

use anyhow::bail;
use tokio::process::Command;

use kc_bench::workspace;

use crate::modules;

/// Runs `cargo fmt --check`, clippy with warnings as errors, `buf lint` and the module-cycle
/// check ([`crate::modules`]); all of them, even after a failure, so that one run shows every
/// problem.
pub async fn run() -> anyhow::Result<ExitCode> {
    let mut failed = Vec::new();

    let mut fmt = workspace::cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    let mut clippy = workspace::cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);

    for (name, command) in [("cargo fmt", fmt), ("cargo clippy", clippy)] {
        let mut command = command;
        if !workspace::status(&mut command).await?.success() {
            failed.push(name);
        }
    }
    match buf().await {
        Ok(mut buf) => {
            buf.arg("lint").current_dir(workspace::root());
            if !workspace::status(&mut buf).await?.success() {
                failed.push("buf lint");
            }
        }
        Err(err) => {
            eprintln!("xtask: {err:#}");
            failed.push("buf lint");
        }
    }

    if !modules_acyclic()? {
        failed.push("module cycles");
    }

    if failed.is_empty() {
        eprintln!("xtask: lint passed");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("xtask: lint failed: {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// A command that runs buf: from `PATH`, else the one npm installed.
async fn buf() -> anyhow::Result<Command> {
    if workspace::on_path("buf") {
        return Ok(Command::new("buf"));
    }
    let npx_has_buf = Command::new("npx")
        .args(["--no-install", "buf", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success());
    if !npx_has_buf {
        bail!("buf is not installed: npm install -g @bufbuild/buf");
    }
    let mut command = Command::new("npx");
    command.args(["--no-install", "buf"]);
    Ok(command)
}

/// Whether no crate of the workspace has a module cycle; prints each cycle found.
fn modules_acyclic() -> anyhow::Result<bool> {
    let mut acyclic = true;
    for src in modules::crate_sources(&workspace::root())? {
        for cycle in modules::cycles(&src)? {
            let crate_dir = src.parent().unwrap_or(&src).display();
            let names: Vec<&str> = cycle
                .iter()
                .map(|module| if module.is_empty() { "(root)" } else { module })
                .collect();
            eprintln!(
                "xtask: module cycle in {crate_dir}: {}",
                names.join(" <-> ")
            );
            acyclic = false;
        }
    }
    Ok(acyclic)
}
