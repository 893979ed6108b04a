//! Command-line conventions shared by the service binaries.

use std::ffi::OsString;

/// The process's command line with `serve` inserted as the command when the first argument
/// names none of `commands` (nor a help or version flag): `kc-<svc> --listen …` means
/// `kc-<svc> serve --listen …`.
pub fn argv_with_default_serve(commands: &[&str]) -> Vec<OsString> {
    with_default_serve(std::env::args_os().collect(), commands)
}

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
