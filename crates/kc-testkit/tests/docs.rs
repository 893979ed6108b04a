//! The documentation cannot drift from the code:
//! - each service README's configuration table lists exactly the long flags its binary's
//!   `serve --help` prints, with their environment variables and defaults, and the settings
//!   every service shares are described once, in kc-runtime's README;
//! - the rule catalog kept in the repository (`crates/kc-rights/DOMAIN.md`) is
//!   `../shared/DOMAIN.md` when that file is beside the clone, and holds every rule the source
//!   cites as `rule X9`;
//! - every relative link of the READMEs names a file of the repository, and a heading of it
//!   when it has an anchor.
//!
//! The binaries are those `cargo xtask test` builds first (`cargo build --bins` otherwise).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use kc_testkit::process::binary;

/// The service binaries, each documented in `crates/<binary>/README.md`.
const SERVICES: [&str; 5] = [
    "kc-identity",
    "kc-contacts",
    "kc-access",
    "kc-notification",
    "kc-gateway",
];

/// The README whose configuration table describes the settings every service shares.
const SHARED_SETTINGS: &str = "crates/kc-runtime/README.md";

/// The copy of the rule catalog inside the repository.
const CATALOG: &str = "crates/kc-rights/DOMAIN.md";

/// The repository's root (the workspace of this crate).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// One long flag as a binary's `--help` describes it.
#[derive(Debug, Default, Clone, PartialEq)]
struct HelpFlag {
    env: Option<String>,
    default: Option<String>,
}

/// The long flags `<service> serve --help` prints (without `--help`), each with the
/// environment variable and default it names.
fn help_flags(service: &str) -> BTreeMap<String, HelpFlag> {
    let output = Command::new(binary(service))
        .args(["serve", "--help"])
        .output()
        .unwrap_or_else(|error| panic!("{service} serve --help: {error}"));
    assert!(
        output.status.success(),
        "{service} serve --help failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse_help(&String::from_utf8(output.stdout).expect("--help prints UTF-8"))
}

/// Parses clap's long help: an option's line is indented less than its description's, and
/// the description ends with `[env: NAME=…]` and `[default: VALUE]` when the option has them.
fn parse_help(help: &str) -> BTreeMap<String, HelpFlag> {
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent > 0 && indent < 8 && text.starts_with('-') {
            current = text
                .split_whitespace()
                .find_map(|word| word.trim_end_matches(',').strip_prefix("--"))
                .map(str::to_owned);
            if let Some(name) = &current {
                flags.insert(name.clone(), HelpFlag::default());
            }
        } else if let Some(name) = &current {
            let flag = flags.get_mut(name).expect("inserted with its line");
            if let Some(env) = bracketed(text, "env") {
                flag.env = Some(env.split('=').next().unwrap_or_default().to_owned());
            } else if let Some(default) = bracketed(text, "default") {
                flag.default = Some(default.trim_matches('"').to_owned());
            }
        }
    }
    flags.remove("help");
    flags.remove("version");
    flags
}

/// `VALUE` of a help line `[key: VALUE]`.
fn bracketed<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.strip_prefix('[')?
        .strip_prefix(key)?
        .strip_prefix(": ")?
        .strip_suffix(']')
}

/// One row of a README's configuration table.
#[derive(Debug)]
struct Row {
    /// The long flags of its first cell (without `--`).
    flags: Vec<String>,
    /// The environment variables of its second cell; empty when it names none (a row that
    /// points at kc-runtime's README for settings described there).
    envs: BTreeSet<String>,
    /// Its third cell.
    default: String,
    /// The row as written, for messages.
    text: String,
}

/// The spans of `cell` between backticks.
fn code_spans(cell: &str) -> impl Iterator<Item = &str> {
    cell.split('`').skip(1).step_by(2)
}

/// The rows of the tables in section `## Configuration` of `readme` (header and separator
/// rows left out).
fn configuration_rows(readme: &str) -> Vec<Row> {
    let section: Vec<&str> = readme
        .lines()
        .skip_while(|line| line.trim() != "## Configuration")
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .collect();
    assert!(
        !section.is_empty(),
        "the README has no `## Configuration` section"
    );
    let mut rows = Vec::new();
    for (index, line) in section.iter().enumerate() {
        let is_header = section
            .get(index + 1)
            .is_some_and(|next| next.starts_with("|---") || next.starts_with("| ---"));
        if !line.starts_with('|') || line.starts_with("|---") || is_header {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let cell = |index: usize| cells.get(index).copied().unwrap_or_default();
        rows.push(Row {
            flags: code_spans(cell(1))
                .filter_map(|span| span.strip_prefix("--"))
                .map(str::to_owned)
                .collect(),
            envs: code_spans(cell(2))
                .filter(|span| {
                    !span.is_empty()
                        && span
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                })
                .map(str::to_owned)
                .collect(),
            default: cell(3).to_owned(),
            text: (*line).to_owned(),
        });
    }
    assert!(
        !rows.is_empty(),
        "the `## Configuration` section has no table"
    );
    rows
}

/// Checks that `row` says what `help` says of its flags: the same environment variables when
/// it names any, and, for a row of one flag with a default, that default.
fn check_row(row: &Row, help: &BTreeMap<String, HelpFlag>, errors: &mut Vec<String>) {
    let mut envs = BTreeSet::new();
    for flag in &row.flags {
        match help.get(flag) {
            None => errors.push(format!(
                "row names --{flag}, which the binary does not take: {}",
                row.text
            )),
            Some(described) => envs.extend(described.env.clone()),
        }
    }
    if !row.envs.is_empty() && row.envs != envs {
        errors.push(format!(
            "row gives the environment variables {:?}, the binary {:?}: {}",
            row.envs, envs, row.text
        ));
    }
    if let [flag] = row.flags.as_slice()
        && let Some(default) = help
            .get(flag)
            .and_then(|described| described.default.as_ref())
    {
        // An empty default is written `empty`.
        let written = if default.is_empty() {
            "empty".to_owned()
        } else {
            format!("`{default}`")
        };
        if !row.default.contains(&written) {
            errors.push(format!(
                "row of --{flag} does not give its default {written}: {}",
                row.text
            ));
        }
    }
}

#[test]
fn each_service_readme_lists_exactly_the_flags_of_its_binary() {
    let root = root();
    let helps: BTreeMap<&str, BTreeMap<String, HelpFlag>> = SERVICES
        .iter()
        .map(|service| (*service, help_flags(service)))
        .collect();
    let mut errors = Vec::new();

    // The shared settings: each row names flags some binary takes, as that binary says.
    let shared_rows = configuration_rows(&read(&root.join(SHARED_SETTINGS)));
    let mut shared = BTreeSet::new();
    for row in &shared_rows {
        for flag in &row.flags {
            shared.insert(flag.clone());
        }
        let Some(help) = row
            .flags
            .first()
            .and_then(|flag| helps.values().find(|help| help.contains_key(flag)))
        else {
            if let Some(flag) = row.flags.first() {
                errors.push(format!(
                    "{SHARED_SETTINGS}: no binary takes --{flag}: {}",
                    row.text
                ));
            }
            continue;
        };
        let before = errors.len();
        check_row(row, help, &mut errors);
        for error in &mut errors[before..] {
            *error = format!("{SHARED_SETTINGS}: {error}");
        }
    }

    for (service, help) in &helps {
        let path = format!("crates/{service}/README.md");
        let rows = configuration_rows(&read(&root.join(&path)));
        let mut listed = BTreeSet::new();
        for row in &rows {
            for flag in &row.flags {
                if !listed.insert(flag.clone()) {
                    errors.push(format!("{path}: --{flag} has two rows"));
                }
                if row.envs.is_empty() && !shared.contains(flag) {
                    errors.push(format!(
                        "{path}: --{flag} names no environment variable and has no row in \
                         {SHARED_SETTINGS}: {}",
                        row.text
                    ));
                }
            }
            let before = errors.len();
            check_row(row, help, &mut errors);
            for error in &mut errors[before..] {
                *error = format!("{path}: {error}");
            }
        }
        let taken: BTreeSet<String> = help.keys().cloned().collect();
        for missing in taken.difference(&listed) {
            errors.push(format!(
                "{path}: `{service} serve --help` lists --{missing}, which has no row"
            ));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn help_parsing_reads_flags_envs_and_defaults() {
    let help = "Options:\n      --listen <LISTEN>\n          Address, see `--other`\n          \n          [env: KC_LISTEN=]\n\n      --mail-from <MAIL_FROM>\n          The From\n          [env: KC_MAIL_FROM=]\n          [default: \"a <b@c>\"]\n\n      --database-url <URL>\n          [env: DATABASE_URL]\n  -h, --help\n          Print help\n";
    let flags = parse_help(help);
    assert_eq!(
        flags.keys().collect::<Vec<_>>(),
        ["database-url", "listen", "mail-from"]
    );
    assert_eq!(flags["listen"].env.as_deref(), Some("KC_LISTEN"));
    assert_eq!(flags["listen"].default, None);
    assert_eq!(flags["database-url"].env.as_deref(), Some("DATABASE_URL"));
    assert_eq!(flags["mail-from"].default.as_deref(), Some("a <b@c>"));
}

/// The rule ids the catalog defines: its bullets `- **C4 [seed]** …`.
fn catalog_rules(catalog: &str) -> BTreeSet<String> {
    catalog
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("- **"))
        .filter_map(|rest| rest.split([' ', '*']).next())
        .filter(|id| is_rule_id(id))
        .map(str::to_owned)
        .collect()
}

/// Whether `id` has the shape of a rule id: a capital letter, then digits.
fn is_rule_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && !chars.as_str().is_empty()
        && chars.all(|c| c.is_ascii_digit())
}

/// The ids `source` cites as `rule X9`, outside the items marked `#[cfg(test)]` (unit tests
/// may name ids that do not exist on purpose).
fn cited_rules(source: &str) -> BTreeSet<String> {
    let mut cited = BTreeSet::new();
    let mut skipping = false;
    let mut depth = 0i64;
    let mut opened = false;
    for line in source.lines() {
        if line.trim() == "#[cfg(test)]" {
            (skipping, depth, opened) = (true, 0, false);
            continue;
        }
        if skipping {
            for c in line.chars() {
                match c {
                    '{' => (depth, opened) = (depth + 1, true),
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if (opened && depth <= 0) || (!opened && line.trim_end().ends_with(';')) {
                skipping = false;
            }
            continue;
        }
        for (at, _) in line.match_indices("rule ") {
            let id: String = line[at + "rule ".len()..]
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            if is_rule_id(&id) {
                cited.insert(id);
            }
        }
    }
    cited
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
    {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn the_catalog_copy_is_domain_md() {
    let root = root();
    let copy = read(&root.join(CATALOG));
    let shared = root.join("../shared/DOMAIN.md");
    if shared.is_file() {
        assert!(
            read(&shared) == copy,
            "{CATALOG} differs from ../shared/DOMAIN.md: copy the shared file over it"
        );
    } else {
        eprintln!("../shared/DOMAIN.md is not beside this clone: only the rule ids are checked");
    }
    assert!(
        catalog_rules(&copy).len() >= 40,
        "{CATALOG} should define the suite's rules, found {:?}",
        catalog_rules(&copy)
    );
}

#[test]
fn every_rule_the_source_cites_is_in_the_catalog() {
    let root = root();
    let defined = catalog_rules(&read(&root.join(CATALOG)));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root.join("crates")).expect("crates/") {
        let src = entry.expect("a directory entry").path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    let mut cited = BTreeSet::new();
    let mut unknown = Vec::new();
    for file in &files {
        for id in cited_rules(&read(file)) {
            if !defined.contains(&id) {
                unknown.push(format!(
                    "{}: rule {id}",
                    file.strip_prefix(&root).unwrap_or(file).display()
                ));
            }
            cited.insert(id);
        }
    }
    assert!(
        cited.len() >= 10,
        "too few rules cited, the scan is broken: {cited:?}"
    );
    assert!(
        unknown.is_empty(),
        "rules cited but not in {CATALOG}:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn rule_citations_are_read_outside_unit_tests_only() {
    let source = "fn f() { bail!(\"rule C5: an STC\") }\n// rule T8 and rule X\n#[cfg(test)]\nmod tests {\n    fn g() { \"rule C60 {x}\"; }\n}\nconst A: &str = \"rule A3\";\n#[cfg(test)]\nuse x::y;\nconst B: &str = \"rule A4\";\n";
    assert_eq!(
        cited_rules(source).into_iter().collect::<Vec<_>>(),
        ["A3", "A4", "C5", "T8"]
    );
    assert_eq!(
        catalog_rules("- **C4 [seed]** text\n- **T10** x\n- **Customer**: y\n")
            .into_iter()
            .collect::<Vec<_>>(),
        ["C4", "T10"]
    );
}

/// The READMEs of the repository: the top one, deploy's, the cross-service tests' and each
/// crate's.
fn readmes(root: &Path) -> Vec<PathBuf> {
    let mut readmes = vec![
        root.join("README.md"),
        root.join("deploy/README.md"),
        root.join("tests/README.md"),
    ];
    for entry in std::fs::read_dir(root.join("crates")).expect("crates/") {
        let readme = entry.expect("a directory entry").path().join("README.md");
        if readme.is_file() {
            readmes.push(readme);
        }
    }
    readmes
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of the headings of a Markdown file (outside code blocks).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            anchors.insert(anchor(line.trim_start_matches('#')));
        }
    }
    anchors
}

/// The targets of the inline links `[text](target)` of a Markdown file, outside code.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        for (at, _) in line.match_indices("](") {
            let rest = &line[at + 2..];
            if let Some(end) = rest.find(')') {
                targets.push(rest[..end].to_owned());
            }
        }
    }
    targets
}

#[test]
fn readme_links_name_files_and_headings_of_the_repository() {
    let root = root();
    let mut errors = Vec::new();
    for readme in readmes(&root) {
        let text = read(&readme);
        let dir = readme.parent().expect("a README is in a directory");
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() {
                readme.clone()
            } else {
                dir.join(file)
            };
            let name = readme
                .strip_prefix(&root)
                .unwrap_or(&readme)
                .display()
                .to_string();
            match path.canonicalize() {
                Ok(path) if path.starts_with(&root) => {
                    if !fragment.is_empty()
                        && path.is_file()
                        && !anchors(&read(&path)).contains(fragment)
                    {
                        errors.push(format!("{name}: {target}: no such heading"));
                    }
                }
                Ok(_) => errors.push(format!("{name}: {target} is outside the repository")),
                Err(_) => errors.push(format!("{name}: {target} does not exist")),
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
