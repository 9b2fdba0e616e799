//! Injected randomness: the owner tokens of dedupe claims. Tests use [`SequentialIds`] so
//! every run writes the same records.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Source of unique, unguessable ids.
pub trait IdSource: Send + Sync + std::fmt::Debug {
    fn new_id(&self) -> String;
}

/// Random v4 UUIDs (the operating system's RNG).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn new_id(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}

/// `<prefix>-1`, `<prefix>-2`, …: deterministic ids for tests.
#[derive(Debug, Default)]
pub struct SequentialIds {
    prefix: String,
    next: AtomicU64,
}

impl SequentialIds {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            next: AtomicU64::new(1),
        }
    }
}

impl IdSource for SequentialIds {
    fn new_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        format!("{}-{n}", self.prefix)
    }
}

/// Shared handle to an id source.
pub type SharedIds = Arc<dyn IdSource>;
