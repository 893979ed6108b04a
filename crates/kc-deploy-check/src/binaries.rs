//! What a service binary accepts, read from its `--help` output: its subcommands, and for each
//! one the flags and environment variables (`[env: NAME=…]`) it takes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::process::Command;

/// Environment variables a service process reads outside its command line: they do not appear
/// in `--help`, and are accepted for every subcommand.
pub(crate) const PROCESS_ENV: &[(&str, &str)] = &[
    ("RUST_LOG", "log filter (kc-runtime telemetry)"),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTLP trace export (kc-runtime telemetry)",
    ),
    (
        "OTEL_SDK_DISABLED",
        "turns trace export off (kc-runtime telemetry)",
    ),
];

/// One (sub)command: its flags and environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandSpec {
    /// Long flags, with their dashes: `--listen`.
    pub flags: BTreeSet<String>,
    /// Environment variables: `KC_LISTEN`.
    pub env: BTreeSet<String>,
}

/// A binary's subcommands.
#[derive(Debug, Clone, Default)]
pub struct BinarySpec {
    /// Each subcommand (`help` excluded).
    pub commands: BTreeMap<String, CommandSpec>,
}

impl BinarySpec {
    /// Runs `binary --help` and `binary <command> --help` for each command.
    pub async fn load(bin: &str, binary: &Path) -> anyhow::Result<BinarySpec> {
        let top = help(binary, &[]).await?;
        let mut commands = BTreeMap::new();
        for command in parse_commands(&top) {
            if command == "help" {
                continue;
            }
            let text = help(binary, &[&command]).await?;
            commands.insert(command, parse_command(&text));
        }
        if commands.is_empty() {
            bail!("{bin} --help lists no commands; the manifests run its subcommands by name");
        }
        Ok(BinarySpec { commands })
    }
}

/// The output of `binary [command] --help`.
async fn help(binary: &Path, command: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(binary)
        .args(command)
        .arg("--help")
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("could not run {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "{} {} --help failed ({}): {}",
            binary.display(),
            command.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The command names of clap's `Commands:` section.
pub(crate) fn parse_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The long flags and `[env: …]` variables of a command's help.
pub(crate) fn parse_command(help: &str) -> CommandSpec {
    let mut spec = CommandSpec::default();
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') {
            // `-h, --help`, `--listen <LISTEN>`, `--database-url <DATABASE_URL>  Postgres …`
            for token in trimmed.split(|c: char| c == ',' || c.is_whitespace()) {
                if let Some(name) = token.strip_prefix("--") {
                    let name: String = name
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        spec.flags.insert(format!("--{name}"));
                    }
                } else if !token.starts_with('-') && !token.is_empty() {
                    break;
                }
            }
        }
        let mut rest = line;
        while let Some(start) = rest.find("[env: ") {
            let after = &rest[start + "[env: ".len()..];
            let end = after.find(['=', ']']).unwrap_or(after.len());
            let name = after[..end].trim();
            if !name.is_empty() {
                spec.env.insert(name.to_owned());
            }
            rest = &after[end..];
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: &str = "keycontacts identity service.\n\nUsage: kc-identity <COMMAND>\n\n\
        Commands:\n  serve                   Serve gRPC\n  migrate                 Run the \
        migrations\n  help                    Print this message\n\nOptions:\n  -h, --help\n";

    const SERVE: &str = "Serve gRPC\n\nUsage: kc-identity serve [OPTIONS] --database-url \
        <DATABASE_URL>\n\nOptions:\n      --listen <LISTEN>\n          Address to listen on\n\
        \x20         \n          [env: KC_LISTEN=]\n\n      --database-url <DATABASE_URL>\n\
        \x20         Postgres URL\n          \n          [env: DATABASE_URL]\n\n\
        \x20     --database-url-file <PATH>  Short help [env: DATABASE_URL_FILE=]\n\
        \x20 -h, --help\n          Print help (see a summary with '-h')\n";

    #[test]
    fn commands_come_from_the_commands_section() {
        assert_eq!(parse_commands(TOP), ["serve", "migrate", "help"]);
        assert!(parse_commands("Usage: x\n\nOptions:\n  -h, --help\n").is_empty());
    }

    #[test]
    fn flags_and_env_come_from_options() {
        let spec = parse_command(SERVE);
        assert_eq!(
            spec.flags.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "--database-url",
                "--database-url-file",
                "--help",
                "--listen"
            ]
        );
        assert_eq!(
            spec.env.iter().map(String::as_str).collect::<Vec<_>>(),
            ["DATABASE_URL", "DATABASE_URL_FILE", "KC_LISTEN"]
        );
    }
}
