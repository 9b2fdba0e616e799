//! What lives in a data directory: the main SQLite store, one SQLite file per `ROUTES` table,
//! and the local dynamic-signing key.

use std::path::{Path, PathBuf};

use gemini_hooks::adapters::sqlite::DB_FILE_NAME;

use crate::error::CliError;

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
