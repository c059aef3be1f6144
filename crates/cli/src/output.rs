//! What commands print: aligned tables with a header row, `key  value` lists, pretty JSON, and
//! notes on stderr. Text from the server is escaped so it cannot drive the terminal.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::error::CliError;

/// Columns are separated by this many spaces.
const GAP: usize = 2;

/// A table: a header row and rows of cells, each column as wide as its widest cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| (*h).to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Add a row; missing cells are empty, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.into_iter().map(|c| escape(&c)).collect();
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// The rendered table, one line per row, every line ending in `\n`, no trailing spaces.
    pub fn render(&self) -> String {
        let width = |cell: &String| cell.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(width).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str(&" ".repeat(GAP));
                }
                line.push_str(cell);
                line.push_str(&" ".repeat(w - width(cell)));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key  value` lines with the values aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let line = format!("{key:width$}{}{}", " ".repeat(GAP), escape(value));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Control characters shown as escapes (`\n`, `\u{1b}`), so a username or detail chosen by
/// someone else cannot break the layout or send terminal sequences.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// An RFC 3339 time from the server as `2025-01-31 09:00:00Z`; anything else as it is.
pub fn time(text: &str) -> String {
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Secs, true)
            .replacen('T', " ", 1),
        Err(_) => text.to_string(),
    }
}

/// `-` for an absent value.
pub fn or_dash(value: Option<&str>) -> String {
    value.map_or_else(|| "-".to_string(), str::to_string)
}

pub fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_string()
}

/// Write `text` to stdout.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(CliError::Output)
}

/// Write one line to stdout.
pub fn line(text: &str) -> Result<(), CliError> {
    print(&format!("{text}\n"))
}

/// `value` as pretty JSON on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Failed(format!("cannot encode the output: {e}")))?;
    line(&text)
}

/// A note for the person at the terminal (stderr), kept out of what scripts read on stdout.
pub fn note(text: &str) {
    eprintln!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_lines_have_no_trailing_space() {
        let mut table = Table::new(&["ID", "NAME", "ROLE"]);
        table.row(vec!["1".into(), "alice".into(), "owner".into()]);
        table.row(vec!["22".into(), "bob".into(), String::new()]);
        table.row(vec!["333".into(), "čarodějnice".into(), "viewer".into()]);
        assert_eq!(
            table.render(),
            "ID   NAME         ROLE\n\
             1    alice        owner\n\
             22   bob\n\
             333  čarodějnice  viewer\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        let table = Table::new(&["SLUG", "NAME"]);
        assert_eq!(table.render(), "SLUG  NAME\n");
    }

    #[test]
    fn short_rows_are_padded_and_long_rows_cut() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["x".into()]);
        table.row(vec!["1".into(), "2".into(), "3".into()]);
        assert_eq!(table.render(), "A  B\nx\n1  2\n");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut table = Table::new(&["USER"]);
        table.row(vec!["evil\n\u{1b}[2J".into()]);
        assert_eq!(table.render(), "USER\nevil\\n\\u{1b}[2J\n");
    }

    #[test]
    fn key_value_lists_align() {
        assert_eq!(
            key_values(&[("user", "alice".into()), ("superadmin", "no".into())]),
            "user        alice\nsuperadmin  no\n"
        );
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(
            time("2025-01-31T10:00:00.123+01:00"),
            "2025-01-31 09:00:00Z"
        );
        assert_eq!(time("not a time"), "not a time");
    }
}
