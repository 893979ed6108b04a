//! `kc import contacts FILE.csv [--dry-run]`: the rows of a CSV file through the gateway's
//! `ImportContacts` stream. The gateway does the work (each row with the rules and
//! permissions of the single calls); `kc` reads the file as it streams it, prints one line
//! per row as the answers come (a progress bar on stderr when it is a terminal), then a
//! summary, and ends with exit code 6 when any row was refused.
//!
//! The file's first line names its columns ([`COLUMNS`], in any order; `site_number`,
//! `email` and `role` are required, the others optional). `kc export contacts` writes the
//! same format.

use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use kc_proto::gateway::gateway_service_client::GatewayServiceClient;
use kc_proto::gateway::{self as pb};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::client::Context;
use crate::error::{CliError, ErrorKind, Result};
use crate::output::{self, Format, Render, View};

/// Examples of `kc import contacts`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  kc import contacts contacts.csv --dry-run
  kc import contacts contacts.csv
  kc import contacts contacts.csv --output json > result.json

The file (UTF-8, comma-separated, a header line):
  site_number,email,display_name,locale,role,phone,job_title,notification_email,software
  7350101,ana@dupont.example,Ana Lima,fr,secondary,+33 1 23 45 67 89,Acheteuse,,
  7350101,leo@dupont.example,Léo Roux,fr,site-user,,,,downloads-only";

/// The columns of the file, in the order `kc export contacts` writes them.
pub(crate) const COLUMNS: [&str; 17] = [
    "site_number",
    "email",
    "display_name",
    "locale",
    "role",
    "phone",
    "job_title",
    "notification_email",
    "software",
    "reporting",
    "entitlements",
    "account_management",
    "manage_access",
    "contact_updates",
    "account_documents",
    "support",
    "action",
];

/// The columns a file must have.
const REQUIRED: [&str; 3] = ["site_number", "email", "role"];

/// Rows per message of the stream.
const ROWS_PER_MESSAGE: usize = 200;

/// Messages read ahead of the gateway.
const MESSAGES_AHEAD: usize = 4;

/// `kc import …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ImportCommand {
    /// Import contacts from a CSV file: each row gives a person a role on a site (or, with
    /// action `remove`, takes it away), with its details and optionally its explicit tool
    /// and support levels. Rows that already hold are UNCHANGED: importing a file twice
    /// changes nothing. A refused row cites its rule (C5, C6, I1, T6…) and does not stop the
    /// others; the exit code is 6 when any row was refused.
    #[command(after_help = EXAMPLES)]
    Contacts {
        /// The CSV file.
        file: PathBuf,
        /// Check every row (permissions, rules that can be checked without writing) and
        /// write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// A row as the gateway reads it, from the file's text.
pub(crate) fn field_mut(row: &mut pb::ContactRow, column: usize) -> Option<&mut String> {
    Some(match column {
        0 => &mut row.site_number,
        1 => &mut row.email,
        2 => &mut row.display_name,
        3 => &mut row.locale,
        4 => &mut row.role,
        5 => &mut row.phone,
        6 => &mut row.job_title,
        7 => &mut row.notification_email,
        8 => &mut row.software,
        9 => &mut row.reporting,
        10 => &mut row.entitlements,
        11 => &mut row.account_management,
        12 => &mut row.manage_access,
        13 => &mut row.contact_updates,
        14 => &mut row.account_documents,
        15 => &mut row.support,
        16 => &mut row.action,
        _ => return None,
    })
}

/// The file's text of a row, in [`COLUMNS`] order.
pub(crate) fn record(row: &pb::ContactRow) -> [&str; 17] {
    [
        &row.site_number,
        &row.email,
        &row.display_name,
        &row.locale,
        &row.role,
        &row.phone,
        &row.job_title,
        &row.notification_email,
        &row.software,
        &row.reporting,
        &row.entitlements,
        &row.account_management,
        &row.manage_access,
        &row.contact_updates,
        &row.account_documents,
        &row.support,
        &row.action,
    ]
}

/// Which column of [`COLUMNS`] each column of the file is.
fn header_map(path: &Path, headers: &csv::StringRecord) -> Result<Vec<usize>> {
    let mut map = Vec::with_capacity(headers.len());
    for header in headers {
        let name = header.trim().to_ascii_lowercase();
        let at = COLUMNS
            .iter()
            .position(|column| *column == name)
            .ok_or_else(|| {
                CliError::usage(format!(
                    "{}: unknown column {header:?} (the columns: {})",
                    path.display(),
                    COLUMNS.join(", ")
                ))
            })?;
        if map.contains(&at) {
            return Err(CliError::usage(format!(
                "{}: the column {name} is there twice",
                path.display()
            )));
        }
        map.push(at);
    }
    for required in REQUIRED {
        if !map.iter().any(|at| COLUMNS[*at] == required) {
            return Err(CliError::usage(format!(
                "{}: the column {required} is missing",
                path.display()
            )));
        }
    }
    Ok(map)
}

/// A CSV reader of `path`.
fn reader(path: &Path) -> Result<csv::Reader<File>> {
    let file = File::open(path)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    Ok(csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(file))
}

/// Checks the whole file (its header and that every record reads) before anything is
/// sent; returns how many rows it holds.
fn check_file(path: &Path) -> Result<u64> {
    let mut reader = reader(path)?;
    let headers = reader.headers().map_err(|e| csv_error(path, &e))?.clone();
    header_map(path, &headers)?;
    let mut rows = 0;
    for record in reader.records() {
        record.map_err(|e| csv_error(path, &e))?;
        rows += 1;
    }
    Ok(rows)
}

fn csv_error(path: &Path, error: &csv::Error) -> CliError {
    CliError::usage(format!("{}: {error}", path.display()))
}

/// Reads the rows of `path` into messages of the stream (the options first), recording the
/// line of each row in `lines`. Runs on a blocking thread.
fn read_rows(
    path: &Path,
    dry_run: bool,
    lines: &Mutex<Vec<u64>>,
    messages: &mpsc::Sender<pb::ImportContactsRequest>,
) -> Result<()> {
    let mut reader = reader(path)?;
    let headers = reader.headers().map_err(|e| csv_error(path, &e))?.clone();
    let map = header_map(path, &headers)?;
    let options = pb::ImportContactsRequest {
        options: Some(pb::ImportOptions { dry_run }),
        rows: Vec::new(),
    };
    if messages.blocking_send(options).is_err() {
        return Ok(());
    }
    let mut batch = Vec::with_capacity(ROWS_PER_MESSAGE);
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, &e))?;
        let mut row = pb::ContactRow::default();
        for (value, column) in record.iter().zip(&map) {
            if let Some(field) = field_mut(&mut row, *column) {
                value.clone_into(field);
            }
        }
        let line = record.position().map_or(0, csv::Position::line);
        lines
            .lock()
            .map_err(|_| CliError::other("the line numbers were lost"))?
            .push(line);
        batch.push(row);
        if batch.len() == ROWS_PER_MESSAGE {
            let rows = std::mem::replace(&mut batch, Vec::with_capacity(ROWS_PER_MESSAGE));
            if messages
                .blocking_send(pb::ImportContactsRequest {
                    options: None,
                    rows,
                })
                .is_err()
            {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = messages.blocking_send(pb::ImportContactsRequest {
            options: None,
            rows: batch,
        });
    }
    Ok(())
}

/// The result of one row, as printed.
#[derive(Debug, Serialize)]
struct RowDoc {
    /// Line of the file.
    line: u64,
    /// APPLIED, UNCHANGED, REFUSED or VALID.
    outcome: String,
    /// The gRPC code name of a refusal.
    code: String,
    /// Why it was refused.
    message: String,
    /// The column at fault.
    field: String,
    /// The rule cited.
    rule: String,
    /// What was written (or, in a dry run, would be).
    changes: Vec<String>,
}

impl RowDoc {
    fn of(answer: pb::ImportContactsResponse, line: u64) -> Self {
        let outcome = pb::ImportOutcome::try_from(answer.outcome)
            .map(|o| {
                o.as_str_name()
                    .trim_start_matches("IMPORT_OUTCOME_")
                    .to_owned()
            })
            .unwrap_or_default();
        Self {
            line,
            outcome,
            code: answer.code,
            message: answer.message,
            field: answer.field,
            rule: answer.rule,
            changes: answer.changes,
        }
    }

    /// The row as one line of text.
    fn text(&self) -> String {
        let what = if self.outcome == "REFUSED" {
            let field = if self.field.is_empty() {
                String::new()
            } else {
                format!(" [{}]", self.field)
            };
            let done = if self.changes.is_empty() {
                String::new()
            } else {
                format!(" (done before: {})", self.changes.join("; "))
            };
            format!("{}{field}{done}", self.message)
        } else {
            self.changes.join("; ")
        };
        format!("line {:>5}  {:<9}  {what}", self.line, self.outcome)
            .trim_end()
            .to_owned()
    }
}

/// How many rows had each outcome.
#[derive(Debug, Default, Serialize)]
struct Summary {
    rows: u64,
    applied: u64,
    unchanged: u64,
    valid: u64,
    refused: u64,
}

impl Summary {
    fn add(&mut self, outcome: &str) {
        self.rows += 1;
        match outcome {
            "APPLIED" => self.applied += 1,
            "UNCHANGED" => self.unchanged += 1,
            "VALID" => self.valid += 1,
            _ => self.refused += 1,
        }
    }

    fn text(&self, dry_run: bool) -> String {
        let written = if dry_run {
            format!("{} valid (dry run: nothing written)", self.valid)
        } else {
            format!("{} applied", self.applied)
        };
        format!(
            "{} rows: {written}, {} unchanged, {} refused",
            self.rows, self.unchanged, self.refused
        )
    }
}

/// The whole import, for `--output json|yaml`.
#[derive(Debug, Serialize)]
struct ImportDoc {
    file: String,
    dry_run: bool,
    summary: Summary,
    rows: Vec<RowDoc>,
}

impl Render for ImportDoc {
    fn view(&self) -> View {
        let mut lines: Vec<String> = self.rows.iter().map(RowDoc::text).collect();
        lines.push(self.summary.text(self.dry_run));
        View::Text(lines.join("\n"))
    }
}

/// Runs `kc import …`.
pub(crate) async fn run(ctx: &mut Context, command: ImportCommand) -> Result<()> {
    match command {
        ImportCommand::Contacts { file, dry_run } => import_contacts(ctx, file, dry_run).await,
    }
}

async fn import_contacts(ctx: &mut Context, file: PathBuf, dry_run: bool) -> Result<()> {
    let total = check_file(&file)?;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (messages_tx, mut messages_rx) = mpsc::channel(MESSAGES_AHEAD);
    let reading = {
        let (file, lines) = (file.clone(), lines.clone());
        tokio::task::spawn_blocking(move || read_rows(&file, dry_run, &lines, &messages_tx))
    };
    let requests = futures::stream::poll_fn(move |cx| messages_rx.poll_recv(cx));
    let request = ctx.bearer(requests).await?;
    let channel = ctx.channel().await?;
    let mut answers = GatewayServiceClient::new(channel)
        .import_contacts(request)
        .await?
        .into_inner();

    let format = ctx.format();
    let bar = (format == Format::Table && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(total);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} rows  {per_sec}  eta {eta}")
        {
            bar.set_style(style);
        }
        bar
    });
    let mut summary = Summary::default();
    let mut rows = Vec::new();
    while let Some(answer) = answers.message().await? {
        let index = usize::try_from(answer.row_number - 1).unwrap_or(usize::MAX);
        let line = lines
            .lock()
            .map_err(|_| CliError::other("the line numbers were lost"))?
            .get(index)
            .copied()
            .unwrap_or(0);
        let row = RowDoc::of(answer, line);
        summary.add(&row.outcome);
        if format == Format::Table {
            let text = row.text();
            match &bar {
                Some(bar) => {
                    bar.suspend(|| println!("{text}"));
                    bar.inc(1);
                }
                None => println!("{text}"),
            }
        } else {
            rows.push(row);
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    reading
        .await
        .map_err(|e| CliError::other(format!("reading the file failed: {e}")))??;
    if format == Format::Table {
        println!("{}", summary.text(dry_run));
    } else {
        let refused = summary.refused;
        output::print(
            format,
            &ImportDoc {
                file: file.display().to_string(),
                dry_run,
                summary,
                rows,
            },
        )?;
        summary = Summary {
            refused,
            ..Summary::default()
        };
    }
    if summary.refused > 0 {
        return Err(CliError::new(
            ErrorKind::Refused,
            format!("{} of the rows were refused", summary.refused),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_has_a_field_and_round_trips() {
        let mut row = pb::ContactRow::default();
        for (at, column) in COLUMNS.iter().enumerate() {
            *field_mut(&mut row, at).expect("a field") = format!("{column}!");
        }
        assert!(field_mut(&mut row, COLUMNS.len()).is_none());
        for (at, value) in record(&row).iter().enumerate() {
            assert_eq!(*value, format!("{}!", COLUMNS[at]));
        }
    }

    #[test]
    fn a_file_names_known_columns_and_the_required_ones() {
        let path = Path::new("f.csv");
        let headers = csv::StringRecord::from(vec!["Email", "role", "site_number", "phone"]);
        assert_eq!(header_map(path, &headers).unwrap(), vec![1, 4, 0, 5]);
        let unknown = csv::StringRecord::from(vec!["site_number", "email", "role", "colour"]);
        assert!(
            header_map(path, &unknown)
                .unwrap_err()
                .message()
                .contains("colour")
        );
        let missing = csv::StringRecord::from(vec!["site_number", "email"]);
        assert!(
            header_map(path, &missing)
                .unwrap_err()
                .message()
                .contains("role")
        );
    }

    #[test]
    fn a_refused_row_prints_its_rule_and_column() {
        let row = RowDoc::of(
            pb::ImportContactsResponse {
                row_number: 3,
                outcome: pb::ImportOutcome::Refused as i32,
                code: "FAILED_PRECONDITION".into(),
                message: "rule C6: a site may have at most 4 secondary contacts".into(),
                field: "role".into(),
                rule: "C6".into(),
                changes: Vec::new(),
            },
            4,
        );
        assert_eq!(
            row.text(),
            "line     4  REFUSED    rule C6: a site may have at most 4 secondary contacts [role]"
        );
        let mut summary = Summary::default();
        summary.add("APPLIED");
        summary.add(&row.outcome);
        assert_eq!(
            summary.text(false),
            "2 rows: 1 applied, 0 unchanged, 1 refused"
        );
    }
}
