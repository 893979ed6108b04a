//! Command-line conventions shared by the service binaries.

use std::ffi::OsString;

/// The process's command line with `serve` inserted as the command when the first argument
/// names none of `commands` (nor a help or version flag): `kc-<svc> --listen …` means
/// `kc-<svc> serve --listen …`.
pub fn argv_with_default_serve(commands: &[&str]) -> Vec<OsString> {
    with_default_serve(std::env::args_os().collect(), commands)
}

/// Parses a group of `clap` arguments (a service's `…Args`) from an argument vector whose
/// first item is the program name: how tests and tools build a service's settings the way
/// its binary would. A flag given twice takes its last value (so a test can override one of a
/// base set). Implemented for every [`clap::Args`].
pub trait ParseArgs: clap::Args + Sized {
    /// The arguments in `argv`, or clap's error naming the flag.
    fn parse_from<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        use clap::Parser;
        #[derive(Parser)]
        #[command(args_override_self = true)]
        struct Cli<A: clap::Args> {
            #[command(flatten)]
            args: A,
        }
        Cli::<Self>::try_parse_from(argv).map(|cli| cli.args)
    }
}

impl<A: clap::Args> ParseArgs for A {}

fn with_default_serve(mut argv: Vec<OsString>, commands: &[&str]) -> Vec<OsString> {
    let first = argv.get(1).and_then(|arg| arg.to_str()).unwrap_or("");
    let names_command = commands.contains(&first)
        || ["serve", "help", "-h", "--help", "-V", "--version"].contains(&first);
    if !names_command {
        argv.insert(1, "serve".into());
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn inserts_serve_only_without_a_command() {
        let commands = ["migrate"];
        assert_eq!(
            with_default_serve(argv(&["kc", "--listen", "x"]), &commands),
            argv(&["kc", "serve", "--listen", "x"])
        );
        assert_eq!(
            with_default_serve(argv(&["kc"]), &commands),
            argv(&["kc", "serve"])
        );
        for kept in [
            &["kc", "migrate"][..],
            &["kc", "--help"],
            &["kc", "serve", "-h"],
        ] {
            assert_eq!(with_default_serve(argv(kept), &commands), argv(kept));
        }
    }
}
