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
    /// Send a write once this many bytes of rows are pending, even if fewer than
    /// `rows_per_write` (a result line can be megabytes).
    pub flush_bytes: usize,
    /// Bytes of rows held in memory at once, pending or being written, across every message of
    /// the consumer; a message waits for room (after sending what it holds).
    pub bytes_in_flight: usize,
    /// Store writes of one message in flight at once (`CONSUMER_WRITES_IN_FLIGHT`).
    pub writes_in_flight: usize,
    /// Every call to the Gemini API, the store or the queue must finish this long before the
    /// invocation deadline; past that it is dropped and the message retried alone. It covers
    /// saving a checkpoint, sending a continuation and answering.
    pub deadline_reserve_ms: i64,
}

impl Default for ConsumeSettings {
    fn default() -> Self {
        Self {
            deadline_margin_ms: 20_000,
            max_line_bytes: 32 * 1024 * 1024,
            rows_per_write: 25,
            checkpoint_every_lines: 5_000,
            max_concurrency: 4,
            flush_bytes: 4 * 1024 * 1024,
            bytes_in_flight: 32 * 1024 * 1024,
            writes_in_flight: 4,
            deadline_reserve_ms: 5_000,
        }
    }
}
