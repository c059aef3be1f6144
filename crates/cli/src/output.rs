//! What commands print: aligned tables with a header row, `key  value` lists, pretty JSON, and
//! notes on stderr. Text from the server is escaped so it cannot drive the terminal. Files
//! that may hold a secret (a wg-quick file) are written 0600 with [`PrivateFile`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use watchgrid_clientkit::files::{create_private, temp_path};
use watchgrid_clientkit::text::io_text;

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

/// A multi-line text (a configuration file) with its line breaks and tabs kept and every
/// other control character escaped, as [`escape`] does.
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
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

/// A file that will hold a secret, such as a wg-quick file with its private key.
///
/// [`PrivateFile::create`] makes a temporary file, mode 0600, next to the target before the
/// request that produces the secret: an unwritable directory then fails before anything
/// changes on the server, and the secret is never lost to it. [`PrivateFile::commit`] writes
/// the content and renames the temporary file over the target, so the target is 0600 from
/// its first byte even when it existed before. Dropped without a commit, the temporary file
/// is removed.
#[derive(Debug)]
pub struct PrivateFile {
    path: PathBuf,
    temp: PathBuf,
    file: Option<fs::File>,
}

impl PrivateFile {
    pub fn create(path: &Path) -> Result<PrivateFile, CliError> {
        let failed =
            |why: String| CliError::Failed(format!("cannot write {}: {why}", path.display()));
        if path.is_dir() {
            return Err(failed("it is a directory".to_string()));
        }
        let name = path
            .file_name()
            .ok_or_else(|| failed("not a file name".to_string()))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let temp = temp_path(dir, &name.to_string_lossy());
        let file = create_private(&temp).map_err(|e| failed(io_text(&e)))?;
        Ok(PrivateFile {
            path: path.to_path_buf(),
            temp,
            file: Some(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `bytes` and move the file into place. If only the rename fails, the content is
    /// left in the temporary file, which the error names.
    pub fn commit(mut self, bytes: &[u8]) -> Result<(), CliError> {
        let failed =
            |why: String| CliError::Failed(format!("cannot write {}: {why}", self.path.display()));
        let mut file = self
            .file
            .take()
            .ok_or_else(|| failed("already written".to_string()))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| failed(io_text(&e)))?;
        drop(file);
        if let Err(e) = fs::rename(&self.temp, &self.path) {
            let kept = std::mem::take(&mut self.temp);
            return Err(failed(format!(
                "{}; the content is in {} (mode 0600)",
                io_text(&e),
                kept.display()
            )));
        }
        self.temp = PathBuf::new();
        Ok(())
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_private_file_is_written_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.conf");
        let file = PrivateFile::create(&path).unwrap();
        // Until the commit only the temporary file exists, already 0600.
        let pending = names(dir.path());
        assert_eq!(pending.len(), 1);
        assert!(pending[0].starts_with(".phone.conf."), "{pending:?}");
        assert_eq!(mode(&dir.path().join(&pending[0])), 0o600);

        file.commit(b"[Interface]\nPrivateKey = k\n").unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "[Interface]\nPrivateKey = k\n"
        );
        assert_eq!(mode(&path), 0o600);
        assert_eq!(names(dir.path()), ["phone.conf"]);
    }

    #[test]
    fn an_existing_readable_file_is_replaced_by_a_private_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.conf");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        PrivateFile::create(&path).unwrap().commit(b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn an_uncommitted_private_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.conf");
        drop(PrivateFile::create(&path).unwrap());
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn a_private_file_that_cannot_be_written_fails_before_any_content() {
        let dir = tempfile::tempdir().unwrap();
        let err = PrivateFile::create(dir.path()).unwrap_err();
        assert!(err.one_line().ends_with("it is a directory"), "{err}");
        let missing = dir.path().join("no").join("such").join("phone.conf");
        let err = PrivateFile::create(&missing).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(
            err.one_line()
                .starts_with(&format!("cannot write {}: ", missing.display())),
            "{err}"
        );
    }

    #[test]
    fn a_failed_rename_keeps_the_content_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.conf");
        let file = PrivateFile::create(&path).unwrap();
        // A directory appears at the target between create and commit.
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), "").unwrap();
        let err = file.commit(b"secret").unwrap_err().one_line();
        assert!(err.contains("the content is in "), "{err}");
        let kept: Vec<String> = names(dir.path())
            .into_iter()
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert_eq!(kept.len(), 1, "{err}");
        let kept = dir.path().join(&kept[0]);
        assert_eq!(fs::read_to_string(&kept).unwrap(), "secret");
        assert_eq!(mode(&kept), 0o600);
    }

    #[test]
    fn configuration_text_keeps_its_lines() {
        assert_eq!(
            escape_text("[Interface]\n\tAddress = x\u{1b}[2J\n"),
            "[Interface]\n\tAddress = x\\u{1b}[2J\n"
        );
    }

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
