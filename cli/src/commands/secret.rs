//! `gemini-hooks secret`: a new random `whsec_` signing secret.

use std::io::Write;

use gemini_hooks::domain::verify::standard::SigningSecret;

use crate::support::error::CliError;
use crate::support::output::line;

/// Runs `gemini-hooks secret`.
pub fn run(out: &mut dyn Write) -> Result<(), CliError> {
    line(out, &SigningSecret::generate().to_whsec())
}
