//! `kc completion bash|zsh|fish`: the shell completion script on stdout.

use clap::Args;
use clap_complete::Shell;

use crate::error::{CliError, Result};

/// Examples of `kc completion`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  kc completion bash > ~/.local/share/bash-completion/completions/kc
  kc completion zsh > \"${fpath[1]}/_kc\"
  kc completion fish > ~/.config/fish/completions/kc.fish";

/// Arguments of `kc completion`.
#[derive(Debug, Args)]
pub(crate) struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: CompletionShell,
}

/// The shells kc writes completion for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CompletionShell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// `kc completion`.
pub(crate) fn run(args: &CompletionArgs) -> Result<()> {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut command = super::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "kc", &mut out);
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&out)
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::other(format!("cannot write the completion script: {e}")))
}
