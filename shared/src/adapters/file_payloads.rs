//! The [`PayloadStore`] port on a directory: local mode's large messages, next to its SQLite
//! store.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::ports::payloads::{PayloadError, PayloadStore};

/// [`PayloadStore`] in a directory; keys are relative paths (`payloads/<sha256>.json`).
#[derive(Debug, Clone)]
pub struct FilePayloadStore {
    root: PathBuf,
}

impl FilePayloadStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file of `key`; only plain relative names (no `..`, no absolute paths).
    fn path(&self, key: &str) -> Result<PathBuf, PayloadError> {
        path_under(&self.root, key)
            .ok_or_else(|| PayloadError::Unavailable(format!("not a payload key: {key}")))
    }
}

/// `root/key` when `key` is a plain relative name (no `..`, no absolute path, not empty), so no
/// key can reach outside `root`. Shared by the local stores of the data directory.
pub(crate) fn path_under(root: &Path, key: &str) -> Option<PathBuf> {
    let relative = Path::new(key);
    let plain = relative
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    (!key.is_empty() && plain).then(|| root.join(relative))
}

fn io_err(path: &Path, e: &std::io::Error) -> PayloadError {
    PayloadError::Unavailable(format!("{}: {e}", path.display()))
}

#[async_trait]
impl PayloadStore for FilePayloadStore {
    async fn put(&self, key: &str, body: &[u8]) -> Result<(), PayloadError> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io_err(dir, &e))?;
        }
        // Written aside and renamed, so a reader never sees half a payload.
        let partial = path.with_extension("partial");
        tokio::fs::write(&partial, body)
            .await
            .map_err(|e| io_err(&partial, &e))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|e| io_err(&path, &e))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PayloadError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, &e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), PayloadError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path, &e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn payloads_round_trip_and_keys_cannot_escape_the_directory() {
        let dir = std::env::temp_dir().join(format!("gh-payloads-{}", uuid::Uuid::new_v4()));
        let store = FilePayloadStore::new(&dir);
        store.put("payloads/a.json", b"{}").await.unwrap();
        assert_eq!(
            store.get("payloads/a.json").await.unwrap(),
            Some(b"{}".to_vec())
        );
        store.delete("payloads/a.json").await.unwrap();
        store.delete("payloads/a.json").await.unwrap();
        assert_eq!(store.get("payloads/a.json").await.unwrap(), None);
        for bad in ["../x", "/etc/passwd", "", "payloads/../../x"] {
            assert!(store.put(bad, b"x").await.is_err(), "{bad}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
