//! Flags and defaults that several commands share.

use std::path::PathBuf;

use clap::Args;

/// Default data directory of `dev`, `results`, `send --dynamic` and `jwks`.
pub const DEFAULT_DATA_DIR: &str = ".gemini-hooks";
/// Default address of `dev` and default target of `send`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9000";
pub const DEFAULT_URL: &str = "http://127.0.0.1:9000/";
/// `aud` of the tokens `send --dynamic` signs, and the audience `dev --local-jwks` accepts
/// unless WEBHOOK_JWT_AUDIENCE says otherwise.
pub const LOCAL_AUDIENCE: &str = "gemini-hooks-local";

#[derive(Debug, Clone, Args)]
pub struct DataDirArg {
    /// Directory of the local store (SQLite file) and the local signing key.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}
