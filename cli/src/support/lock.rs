//! One `gemini-hooks dev` per data directory, enforced with an OS file lock.
//!
//! Two processes consuming one SQLite queue would each requeue the other's in-flight messages
//! on start and race on retries, so the second one refuses to start. The lock is the kernel's
//! (`flock` on Unix, `LockFileEx` on Windows): it goes away with the process, however it ends,
//! so a killed `dev` never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::support::error::CliError;

/// File name of the lock inside a data directory.
pub const LOCK_FILE_NAME: &str = "dev.lock";

/// Held for the life of a local pipeline; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Locks `data_dir` (creating it) or says which process holds it.
    pub fn acquire(data_dir: &Path) -> Result<Self, CliError> {
        std::fs::create_dir_all(data_dir).map_err(|e| CliError::io(data_dir, e))?;
        let path = data_dir.join(LOCK_FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| CliError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let pid = holder.trim();
                return Err(CliError::Failed(format!(
                    "{} is in use by another `gemini-hooks dev`{}: one dev per data directory. \
                     Stop that one, or pass another --data-dir",
                    data_dir.display(),
                    if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    }
                )));
            }
            Err(TryLockError::Error(e)) => return Err(CliError::io(&path, e)),
        }
        // Only the holder writes: who it is, for the message above.
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(|e| CliError::io(&path, e))?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("gemini-hooks-lock-{}", uuid::Uuid::new_v4()));
        let first = DataDirLock::acquire(&dir).unwrap();
        let err = DataDirLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            err.contains("in use by another `gemini-hooks dev`"),
            "{err}"
        );
        assert!(
            err.contains(&format!("(pid {})", std::process::id())),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(LOCK_FILE_NAME)).unwrap(),
            std::process::id().to_string()
        );
        drop(first);
        let again = DataDirLock::acquire(&dir);
        assert!(again.is_ok(), "{again:?}");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
