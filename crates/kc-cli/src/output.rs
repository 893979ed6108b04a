//! How answers are printed: aligned tables (the default), one JSON document, or YAML.
//!
//! Each command builds a serializable document of its own (plain structs with stable field
//! names, never the prost messages themselves) and says how it looks as a table. JSON and
//! YAML print the document; the table view is for people and may change.

use std::io::Write;

use clap::ValueEnum;
use serde::Serialize;

use crate::error::{CliError, Result};

/// The output format, `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document, for scripts.
    Json,
    /// The same document as YAML.
    Yaml,
}

/// What a document looks like in the table format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// Rows under a header line.
    Table {
        /// Column titles.
        headers: Vec<&'static str>,
        /// One row per item, as many cells as headers.
        rows: Vec<Vec<String>>,
    },
    /// `field  value` lines, for one object.
    Fields(Vec<(&'static str, String)>),
    /// Several views one after the other, each under its title.
    Sections(Vec<(String, View)>),
    /// Free text.
    Text(String),
}

impl View {
    /// A table with these headers and rows.
    pub fn table(headers: Vec<&'static str>, rows: Vec<Vec<String>>) -> Self {
        View::Table { headers, rows }
    }

    /// Renders the view as text, ending with a line break.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        match self {
            View::Table { headers, rows } => {
                let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
                let all: Vec<&Vec<String>> = std::iter::once(&header).chain(rows).collect();
                aligned(&all, out);
            }
            View::Fields(fields) => {
                let rows: Vec<Vec<String>> = fields
                    .iter()
                    .map(|(name, value)| vec![format!("{name}:"), value.clone()])
                    .collect();
                aligned(&rows.iter().collect::<Vec<_>>(), out);
            }
            View::Sections(sections) => {
                for (i, (title, view)) in sections.iter().enumerate() {
                    if i > 0 {
                        out.push('\n');
                    }
                    if !title.is_empty() {
                        out.push_str(title);
                        out.push('\n');
                    }
                    view.render_into(out);
                }
            }
            View::Text(text) => {
                out.push_str(text);
                if !text.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
    }
}

/// Columns padded to their widest cell (in characters), two spaces apart, no trailing
/// blanks.
fn aligned(rows: &[&Vec<String>], out: &mut String) {
    let columns = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let cell = cell.replace(['\n', '\r', '\t'], " ");
            line.push_str(&cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// A document a command prints.
pub trait Render: Serialize {
    /// How it looks in the table format.
    fn view(&self) -> View;
}

/// Prints `document` to stdout in `format`.
pub fn print<T: Render>(format: Format, document: &T) -> Result<()> {
    let text = to_string(format, document)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .or_else(|e| {
            // A closed pipe (`kc sites | head -1`) is not an error of the command.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(CliError::from(e))
            }
        })
}

/// `document` as text in `format`.
pub fn to_string<T: Render>(format: Format, document: &T) -> Result<String> {
    match format {
        Format::Table => Ok(document.view().render()),
        Format::Json => serde_json::to_string_pretty(document)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| CliError::other(format!("cannot encode the answer as JSON: {e}"))),
        Format::Yaml => serde_yaml_ng::to_string(document)
            .map_err(|e| CliError::other(format!("cannot encode the answer as YAML: {e}"))),
    }
}

/// Empty text shown as `-` in tables.
pub fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

/// `yes` or `no`.
pub fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell_in_characters() {
        let view = View::table(
            vec!["NUMBER", "NAME"],
            vec![
                vec!["7350101".into(), "Paris".into()],
                vec!["1".into(), "Évry".into()],
            ],
        );
        assert_eq!(
            view.render(),
            "NUMBER   NAME\n7350101  Paris\n1        Évry\n"
        );
    }

    #[test]
    fn fields_align_their_values() {
        let view = View::Fields(vec![("id", "1".into()), ("number", "7350101".into())]);
        assert_eq!(view.render(), "id:      1\nnumber:  7350101\n");
    }

    #[test]
    fn sections_are_apart_and_untitled_ones_have_no_title_line() {
        let view = View::Sections(vec![
            (String::new(), View::Fields(vec![("a", "1".into())])),
            (
                "Rows:".into(),
                View::table(vec!["X"], vec![vec!["y".into()]]),
            ),
        ]);
        assert_eq!(view.render(), "a:  1\n\nRows:\nX\ny\n");
    }

    #[test]
    fn an_empty_table_keeps_its_header() {
        let view = View::table(vec!["A", "B"], vec![]);
        assert_eq!(view.render(), "A  B\n");
    }
}
