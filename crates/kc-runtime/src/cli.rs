//! Command-line conventions shared by the service binaries.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command};

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

/// The settings that hold secrets, by clap argument id. Each, wherever a command has it,
/// gets a twin `--<flag>-file FILE` (env `<ENV>_FILE`) naming a file that holds the value,
/// so that Kubernetes Secrets are mounted as files rather than put in the environment.
pub const SECRET_SETTINGS: &[&str] = &["database_url", "client_secret", "smtp_password"];

/// `command` with the file twin of every [`SECRET_SETTINGS`] argument its subcommands
/// have. A required secret becomes required unless its twin is given.
pub fn with_secret_file_twins(mut command: Command) -> Command {
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in subcommands {
        command = command.mut_subcommand(name, |mut sub| {
            for &id in SECRET_SETTINGS {
                let Some(base) = sub.get_arguments().find(|arg| arg.get_id() == id) else {
                    continue;
                };
                let twin = twin_of(base);
                let required = base.is_required_set();
                let twin_id = twin.get_id().clone();
                sub = sub.arg(twin).mut_arg(id, |arg| {
                    if required {
                        arg.required(false).required_unless_present(twin_id)
                    } else {
                        arg
                    }
                });
            }
            sub
        });
    }
    command
}

/// The `--<flag>-file` argument of the secret `base`.
fn twin_of(base: &Arg) -> Arg {
    let id = base.get_id().as_str();
    let long = base.get_long().unwrap_or(id);
    let mut twin = Arg::new(format!("{id}_file"))
        .long(format!("{long}-file"))
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help(format!(
            "File holding the value of --{long} (a mounted Secret; one trailing newline is \
             ignored); excludes --{long}"
        ));
    if let Some(env) = base.get_env().and_then(|env| env.to_str()) {
        twin = twin.env(format!("{env}_FILE"));
    }
    twin
}

/// When `matches` (of a command made by [`with_secret_file_twins`]) holds file twins, the
/// argument vector to parse again: `argv` with each such secret read from its file and
/// appended as `--<flag>=<value>`. `None` when no twin was given. A secret given both ways
/// takes the command line's over the environment's; given both ways on the command line (or
/// both in the environment), or with a file that cannot be read or is empty, it fails; the
/// error names the setting and the file, never the value.
pub fn inline_secret_files(
    argv: &[OsString],
    matches: &ArgMatches,
) -> anyhow::Result<Option<Vec<OsString>>> {
    let Some((_, sub)) = matches.subcommand() else {
        return Ok(None);
    };
    let mut inlined = argv.to_vec();
    let mut any = false;
    for &id in SECRET_SETTINGS {
        let twin = format!("{id}_file");
        let Ok(Some(path)) = sub.try_get_one::<PathBuf>(&twin) else {
            continue;
        };
        let flag = id.replace('_', "-");
        // The command line overrides the environment, as for every flag; given both ways at
        // the same level the secret is ambiguous.
        match (sub.value_source(&twin), sub.value_source(id)) {
            (Some(ValueSource::EnvVariable), Some(ValueSource::CommandLine)) => continue,
            (Some(ValueSource::CommandLine), Some(ValueSource::EnvVariable)) => {}
            (Some(twin_source), Some(source)) if twin_source == source => {
                bail!("--{flag} and --{flag}-file exclude each other: give the secret one way")
            }
            _ => {}
        }
        let value = read_secret_file(&flag, path)?;
        inlined.push(format!("--{flag}={value}").into());
        any = true;
    }
    Ok(any.then_some(inlined))
}

/// The secret in `path`, without one trailing newline.
fn read_secret_file(flag: &str, path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--{flag}-file {}: cannot read it", path.display()))?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if value.is_empty() {
        bail!("--{flag}-file {}: the file is empty", path.display());
    }
    Ok(value.to_owned())
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

    /// A command like a service's: `serve` with a required secret and an optional one.
    fn service_command() -> Command {
        let serve = Command::new("serve")
            .arg(
                Arg::new("client_secret")
                    .long("client-secret")
                    .env("KC_TEST_CLIENT_SECRET")
                    .required(true)
                    .allow_hyphen_values(true),
            )
            .arg(
                Arg::new("smtp_password")
                    .long("smtp-password")
                    .env("KC_TEST_SMTP_PASSWORD"),
            )
            .arg(Arg::new("listen").long("listen"));
        with_secret_file_twins(Command::new("kc-test").subcommand(serve))
    }

    fn parse_with_files(args: &[&str]) -> anyhow::Result<ArgMatches> {
        let argv = argv(args);
        let matches = service_command().try_get_matches_from(&argv)?;
        match inline_secret_files(&argv, &matches)? {
            Some(inlined) => Ok(service_command().try_get_matches_from(inlined)?),
            None => Ok(matches),
        }
    }

    fn value<'a>(matches: &'a ArgMatches, id: &str) -> Option<&'a str> {
        let (_, serve) = matches.subcommand().unwrap();
        serve.get_one::<String>(id).map(String::as_str)
    }

    /// A new empty directory of this test process.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kc-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_secret_may_come_from_its_file_twin() {
        let dir = scratch_dir("twin");
        let secret = dir.join("client-secret");
        std::fs::write(&secret, "-s3cret\n").unwrap();
        let password = dir.join("smtp-password");
        std::fs::write(&password, "p=ss\r\n").unwrap();
        let matches = parse_with_files(&[
            "kc-test",
            "serve",
            "--client-secret-file",
            secret.to_str().unwrap(),
            &format!("--smtp-password-file={}", password.display()),
        ])
        .unwrap();
        assert_eq!(value(&matches, "client_secret"), Some("-s3cret"));
        assert_eq!(value(&matches, "smtp_password"), Some("p=ss"));

        // Without twins nothing changes; the required secret stays required.
        let matches = parse_with_files(&["kc-test", "serve", "--client-secret", "x"]).unwrap();
        assert_eq!(value(&matches, "client_secret"), Some("x"));
        assert_eq!(value(&matches, "smtp_password"), None);
        let missing = parse_with_files(&["kc-test", "serve", "--listen", "a"]).unwrap_err();
        assert!(missing.to_string().contains("--client-secret"), "{missing}");
    }

    #[test]
    fn a_secret_given_both_ways_or_an_unreadable_file_is_refused_without_the_value() {
        let dir = scratch_dir("refused");
        let secret = dir.join("client-secret");
        std::fs::write(&secret, "hunter2").unwrap();
        let both = parse_with_files(&[
            "kc-test",
            "serve",
            "--client-secret",
            "inline-value",
            "--client-secret-file",
            secret.to_str().unwrap(),
        ])
        .unwrap_err()
        .to_string();
        assert!(both.contains("exclude each other"), "{both}");
        assert!(
            !both.contains("hunter2") && !both.contains("inline-value"),
            "{both}"
        );

        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let missing = dir.join("missing");
        for (path, says) in [(&empty, "is empty"), (&missing, "cannot read")] {
            let error = parse_with_files(&[
                "kc-test",
                "serve",
                "--client-secret-file",
                path.to_str().unwrap(),
            ])
            .unwrap_err();
            let error = format!("{error:#}");
            assert!(
                error.contains("--client-secret-file") && error.contains(says),
                "{error}"
            );
        }
    }

    #[test]
    fn a_file_on_the_command_line_overrides_the_environment() {
        let dir = scratch_dir("precedence");
        let secret = dir.join("client-secret");
        std::fs::write(&secret, "from-file").unwrap();
        // The secret's variable is one every process has (`PATH`), so that the environment
        // holds it without the test writing to the environment.
        let command = with_secret_file_twins(
            Command::new("kc-test").subcommand(
                Command::new("serve").arg(
                    Arg::new("client_secret")
                        .long("client-secret")
                        .env("PATH")
                        .required(true),
                ),
            ),
        );
        let argv = argv(&[
            "kc-test",
            "serve",
            "--client-secret-file",
            secret.to_str().unwrap(),
        ]);
        let matches = command.clone().try_get_matches_from(&argv).unwrap();
        let inlined = inline_secret_files(&argv, &matches).unwrap().unwrap();
        let matches = command.try_get_matches_from(inlined).unwrap();
        assert_eq!(value(&matches, "client_secret"), Some("from-file"));
    }

    #[test]
    fn the_twin_is_in_the_help_with_its_environment_variable() {
        let mut command = service_command();
        let serve = command.find_subcommand_mut("serve").unwrap();
        let help = serve.render_long_help().to_string();
        assert!(help.contains("--client-secret-file <FILE>"), "{help}");
        assert!(help.contains("KC_TEST_CLIENT_SECRET_FILE"), "{help}");
        assert!(help.contains("--smtp-password-file <FILE>"), "{help}");
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
