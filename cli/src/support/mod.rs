//! Helpers that several commands share: errors and exit codes, output, the data directory
//! (layout, lock, local signing key), logging, sample data and the sample Gemini endpoint, and
//! where `results`/`export` read (the local store, a DynamoDB table, a stack's outputs).

pub mod args;
pub mod error;
pub mod jsonfmt;
pub mod keys;
pub mod layout;
pub mod lock;
pub mod logging;
pub mod output;
pub mod sample_gemini;
pub mod samples;
pub mod source;
pub mod stack;
pub mod util;
