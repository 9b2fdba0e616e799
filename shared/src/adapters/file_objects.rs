//! The [`ObjectStore`] port on a directory: local mode's copies of generated videos, in the data
//! directory (`<data dir>/videos/<job>/<n>.mp4`). Each is written to a temporary file beside its
//! name and renamed once whole, so a copy that fails part-way never sits under the final name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::file_payloads::path_under;
use crate::ports::objects::{ObjectError, ObjectLocation, ObjectStore, ObjectUpload, StoredObject};

/// Tells apart the temporary files of copies running at once in this process.
static NEXT_UPLOAD: AtomicU64 = AtomicU64::new(0);

/// [`ObjectStore`] in a directory; keys are relative paths.
#[derive(Debug, Clone)]
pub struct FileObjectStore {
    root: PathBuf,
}

impl FileObjectStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

fn io_err(path: &Path, e: &std::io::Error) -> ObjectError {
    ObjectError::Unavailable(format!("{}: {e}", path.display()))
}

/// Longest path segment kept as it is. File systems stop at 255 bytes per name (NAME_MAX), while
/// a job id segment may be up to 512 (an S3 key takes it whole).
const MAX_SEGMENT_BYTES: usize = 200;

/// `key` with each segment longer than [`MAX_SEGMENT_BYTES`] cut to its first 160 bytes, `~`,
/// and 32 hex digits of its SHA-256: a name every file system takes, still distinct per key.
fn file_key(key: &str) -> String {
    use sha2::{Digest, Sha256};
    key.split('/')
        .map(|segment| {
            if segment.len() <= MAX_SEGMENT_BYTES {
                return segment.to_owned();
            }
            let mut cut = 160;
            while !segment.is_char_boundary(cut) {
                cut -= 1;
            }
            let digest = Sha256::digest(segment.as_bytes());
            format!("{}~{}", &segment[..cut], hex::encode(&digest[..16]))
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[async_trait]
impl ObjectStore for FileObjectStore {
    async fn begin(
        &self,
        key: &str,
        _content_type: &str,
    ) -> Result<Box<dyn ObjectUpload>, ObjectError> {
        let path = path_under(&self.root, &file_key(key))
            .ok_or_else(|| ObjectError::BadKey(key.into()))?;
        let Some(dir) = path.parent() else {
            return Err(ObjectError::BadKey(key.into()));
        };
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| io_err(dir, &e))?;
        let n = NEXT_UPLOAD.fetch_add(1, Ordering::Relaxed);
        let name = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let partial = dir.join(format!(".{name}.{}-{n}.partial", std::process::id()));
        let file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| io_err(&partial, &e))?;
        Ok(Box::new(FileUpload {
            file: Some(file),
            partial,
            path,
            bytes: 0,
        }))
    }
}

struct FileUpload {
    /// `None` once finished or aborted.
    file: Option<tokio::fs::File>,
    partial: PathBuf,
    path: PathBuf,
    bytes: u64,
}

impl FileUpload {
    fn file(&mut self) -> Result<&mut tokio::fs::File, ObjectError> {
        self.file
            .as_mut()
            .ok_or_else(|| ObjectError::Unavailable("the upload is over".into()))
    }
}

#[async_trait]
impl ObjectUpload for FileUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError> {
        let partial = self.partial.clone();
        self.file()?
            .write_all(&chunk)
            .await
            .map_err(|e| io_err(&partial, &e))?;
        self.bytes += chunk.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<StoredObject, ObjectError> {
        let partial = self.partial.clone();
        let mut file = self
            .file
            .take()
            .ok_or_else(|| ObjectError::Unavailable("the upload is over".into()))?;
        let done = async {
            file.flush().await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&partial, &self.path).await
        };
        if let Err(e) = done.await {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(io_err(&self.path, &e));
        }
        Ok(StoredObject {
            location: ObjectLocation::File {
                path: self.path.to_string_lossy().into_owned(),
            },
            bytes: self.bytes,
            etag: None,
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<(), ObjectError> {
        drop(self.file.take());
        match tokio::fs::remove_file(&self.partial).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&self.partial, &e)),
        }
    }
}

impl Drop for FileUpload {
    /// A copy dropped mid-way leaves no temporary file behind.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn temp_root() -> PathBuf {
        std::env::temp_dir().join(format!("gh-objects-{}", uuid::Uuid::new_v4()))
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_finished_copy_appears_whole_and_an_aborted_one_not_at_all() {
        let root = temp_root();
        let store = FileObjectStore::new(&root);
        let mut up = store.begin("videos/v1/1.mp4", "video/mp4").await.unwrap();
        up.write(Bytes::from_static(b"abc")).await.unwrap();
        up.write(Bytes::from_static(b"def")).await.unwrap();
        let dir = root.join("videos/v1");
        assert!(!dir.join("1.mp4").exists(), "not visible before finish");
        let done = up.finish().await.unwrap();
        assert_eq!(done.bytes, 6);
        assert_eq!(std::fs::read(dir.join("1.mp4")).unwrap(), b"abcdef");
        assert_eq!(files_in(&dir), ["1.mp4"]);

        let mut up = store.begin("videos/v1/2.mp4", "video/mp4").await.unwrap();
        up.write(Bytes::from_static(b"half")).await.unwrap();
        up.abort().await.unwrap();
        let mut up = store.begin("videos/v1/3.mp4", "video/mp4").await.unwrap();
        up.write(Bytes::from_static(b"dropped")).await.unwrap();
        drop(up);
        assert_eq!(
            files_in(&dir),
            ["1.mp4"],
            "no half copies, no temporary files"
        );

        // A job id segment longer than a file name may be: stored under a shortened, still
        // distinct name.
        let long = |tail: &str| {
            format!(
                "videos/models/veo/operations/{}{tail}/1.mp4",
                "o".repeat(500)
            )
        };
        let mut names = Vec::new();
        for key in [long("a"), long("b")] {
            let mut up = store.begin(&key, "video/mp4").await.unwrap();
            up.write(Bytes::from_static(b"v")).await.unwrap();
            let ObjectLocation::File { path } = up.finish().await.unwrap().location else {
                panic!("not a file");
            };
            assert!(
                Path::new(&path)
                    .components()
                    .all(|c| c.as_os_str().len() <= 255),
                "{path}"
            );
            assert_eq!(std::fs::read(&path).unwrap(), b"v");
            names.push(path);
        }
        assert_ne!(names[0], names[1]);

        for bad in ["../x.mp4", "/etc/x", ""] {
            assert!(matches!(
                store.begin(bad, "video/mp4").await.err(),
                Some(ObjectError::BadKey(_))
            ));
        }
        let _ = std::fs::remove_dir_all(root);
    }
}
