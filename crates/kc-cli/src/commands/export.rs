//! `kc export contacts --customer N [--file FILE]`: the contacts of a customer's sites (or
//! of named sites) from the gateway's `ExportContacts` stream, as the CSV file `kc import
//! contacts` reads: importing an export changes nothing.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use kc_proto::gateway::gateway_service_client::GatewayServiceClient;
use kc_proto::gateway::{self as pb};

use super::import::{COLUMNS, record};
use crate::client::Context;
use crate::error::{CliError, Result};

/// Examples of `kc export contacts`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  kc export contacts --customer 7350001 --file dupont.csv
  kc export contacts --site 7350101 --site 7350102 > two-sites.csv
  kc export contacts --customer 7350001 | kc import contacts /dev/stdin --dry-run";

/// `kc export …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ExportCommand {
    /// Export the contacts of a customer's sites, or of named sites, as CSV: one row per
    /// contact role, with the person's explicit levels when you may view access. The sites
    /// you may not read are left out (named ones are refused).
    #[command(after_help = EXAMPLES)]
    Contacts {
        /// Every site of this customer number you may read.
        #[arg(
            long,
            value_name = "NUMBER",
            conflicts_with = "sites",
            required_unless_present = "sites"
        )]
        customer: Option<String>,
        /// These sites, by number (repeat).
        #[arg(long = "site", value_name = "NUMBER")]
        sites: Vec<String>,
        /// Write the CSV to this file instead of stdout (`--output` is the format of the
        /// other commands' answers).
        #[arg(long, short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// Runs `kc export …`.
pub(crate) async fn run(ctx: &mut Context, command: ExportCommand) -> Result<()> {
    match command {
        ExportCommand::Contacts {
            customer,
            sites,
            file,
        } => {
            let request = pb::ExportContactsRequest {
                customer_number: customer.unwrap_or_default(),
                site_numbers: sites,
            };
            let out: Box<dyn Write> = match &file {
                Some(path) => Box::new(std::fs::File::create(path).map_err(|e| {
                    CliError::usage(format!("cannot write {}: {e}", path.display()))
                })?),
                None => Box::new(std::io::stdout().lock()),
            };
            export_contacts(ctx, request, out).await
        }
    }
}

/// Streams the export into `out` as CSV, the header first.
async fn export_contacts(
    ctx: &mut Context,
    request: pb::ExportContactsRequest,
    out: Box<dyn Write>,
) -> Result<()> {
    let request = ctx.bearer(request).await?;
    let channel = ctx.channel().await?;
    let mut rows = GatewayServiceClient::new(channel)
        .export_contacts(request)
        .await?
        .into_inner();
    let mut writer = csv::Writer::from_writer(out);
    let write_error = |e: csv::Error| CliError::other(format!("cannot write the CSV: {e}"));
    writer.write_record(COLUMNS).map_err(write_error)?;
    while let Some(answer) = rows.message().await? {
        if let Some(row) = answer.row {
            writer.write_record(record(&row)).map_err(write_error)?;
        }
    }
    writer
        .flush()
        .map_err(|e| CliError::other(format!("cannot write the CSV: {e}")))
}
