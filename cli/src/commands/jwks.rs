//! `gemini-hooks jwks`: the JWKS of the local key that `send --dynamic` signs with.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::support::args::DataDirArg;
use crate::support::error::CliError;
use crate::support::keys::LocalKey;
use crate::support::output::line;

#[derive(Debug, Clone, Args)]
pub struct JwksArgs {
    /// RSA private key (PEM); default: the data directory's key, created if missing.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    #[command(flatten)]
    pub data: DataDirArg,
}

/// Runs `gemini-hooks jwks`: prints the JWKS, creating the key first if there is none.
pub fn run(args: JwksArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let (key, path, created) = LocalKey::resolve(args.key.as_deref(), &args.data.data_dir)?;
    if created {
        eprintln!("generated a local signing key at {}", path.display());
    }
    let text = serde_json::to_string_pretty(&key.jwks(key.kid()))
        .map_err(|e| CliError::Failed(format!("cannot encode the JWKS: {e}")))?;
    line(out, &text)
}
