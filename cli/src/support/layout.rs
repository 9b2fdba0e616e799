//! What lives in a data directory: the main SQLite store, one SQLite file per `ROUTES` table,
//! and the local dynamic-signing key.

use std::path::{Path, PathBuf};

use gemini_hooks::adapters::sqlite::{DB_FILE_NAME, SqliteStore};

use crate::support::error::CliError;

/// The main store: dedupe lease, queue, dead letters, default results table.
pub fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DB_FILE_NAME)
}

/// The SQLite file standing in for the DynamoDB results table `table` of a `ROUTES` group.
pub fn table_path(data_dir: &Path, table: &str) -> Result<PathBuf, CliError> {
    let ok = !table.is_empty()
        && table.len() <= 255
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !table.starts_with('.');
    if !ok {
        return Err(CliError::Usage(format!(
            "table name `{table}` must be 1-255 characters of A-Z a-z 0-9 _ - . (as DynamoDB \
             allows), not starting with a dot"
        )));
    }
    Ok(data_dir.join(format!("results-{table}.sqlite3")))
}

/// Opens an existing store; never creates one where there is none.
pub fn open_existing(path: PathBuf) -> Result<SqliteStore, CliError> {
    if !path.is_file() {
        return Err(CliError::Usage(format!(
            "no local store at {} — run `gemini-hooks dev` (or `gemini-hooks demo`) first, or \
             pass --data-dir",
            path.display()
        )));
    }
    Ok(SqliteStore::open(path)?)
}

/// The routed results tables (`ROUTES`) that have a file in `data_dir`, by table name.
pub fn routed_tables(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("results-")?
                        .strip_suffix(".sqlite3")
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_cannot_escape_the_data_dir() {
        assert!(table_path(Path::new("d"), "exp-1.v2").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(table_path(Path::new("d"), bad).is_err(), "{bad}");
        }
    }
}
