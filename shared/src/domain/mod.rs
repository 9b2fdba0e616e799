//! The domain: the rules of receiving and ingesting Gemini webhooks as plain data and pure
//! functions. No I/O, and no dependency on any other layer.

pub mod dedupe;
pub mod dedupe_keys;
pub mod envelope;
pub mod event;
pub mod gemini;
pub mod job_events;
pub mod jobs;
pub mod lines;
pub mod outputs;
pub mod results;
pub mod verify;
