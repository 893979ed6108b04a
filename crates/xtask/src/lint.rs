//! `cargo xtask lint`: formatting, clippy and the proto linter.

use std::process::{ExitCode, Stdio};

use anyhow::bail;
use tokio::process::Command;

use kc_bench::workspace;

/// Runs `cargo fmt --check`, clippy with warnings as errors, and `buf lint`; all of them, even
/// after a failure, so that one run shows every problem.
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
