//! `gemini-hooks verify`: verify a captured delivery offline and explain, in plain words, the
//! first check that fails.
//!
//! The verdict is the library's own (`WebhookVerifier`, the same code as the receiver); this
//! command only adds the diagnosis around it: which header is missing, how far outside the window
//! the timestamp is, which secret formats were tried, whether the body was re-serialised.
//!
//! - [`capture`]: the captured headers and body, and the flags, read into a [`capture::Input`];
//! - [`keys`]: where the keys of dynamic (JWT) deliveries come from;
//! - [`diagnose`] (with [`mismatch`] for static signatures): the verdict and its explanation.

use std::io::Write;

use crate::support::error::{CliError, EXIT_FAILURE};
use crate::support::output::line;

mod args;
mod capture;
mod diagnose;
mod keys;
mod mismatch;

pub use args::{LONG_ABOUT, VerifyArgs};
use diagnose::diagnose;

/// Runs `gemini-hooks verify`; returns whether the delivery verified.
pub async fn run(args: VerifyArgs, out: &mut dyn Write) -> Result<bool, CliError> {
    let input = capture::read(&args, out)?;
    let http = gemini_hooks::wiring::http_client()
        .map_err(|e| CliError::Failed(format!("cannot build the HTTP client: {e}")))?;
    let report = diagnose(&input, http).await;
    line(out, &report.headline)?;
    for d in &report.details {
        line(out, &format!("  {d}"))?;
    }
    Ok(report.verified)
}

/// Exit status for a finished verification.
pub fn exit_status(verified: bool) -> u8 {
    if verified { 0 } else { EXIT_FAILURE }
}
