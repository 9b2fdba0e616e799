//! Tuning of the consumer.

/// Tuning of the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumeSettings {
    /// Hand the rest of a file to a continuation message when less than this remains before the
    /// invocation deadline.
    pub deadline_margin_ms: i64,
    /// Lines longer than this become malformed rows instead of being held in memory.
    pub max_line_bytes: usize,
    /// Rows per store write (DynamoDB `BatchWriteItem` takes 25).
    pub rows_per_write: usize,
    /// Save a checkpoint at least this often, so a crash costs little re-work.
    pub checkpoint_every_lines: u64,
    /// Messages of one batch handled at once.
    pub max_concurrency: usize,
}

impl Default for ConsumeSettings {
    fn default() -> Self {
        Self {
            deadline_margin_ms: 20_000,
            max_line_bytes: 32 * 1024 * 1024,
            rows_per_write: 25,
            checkpoint_every_lines: 5_000,
            max_concurrency: 4,
        }
    }
}
