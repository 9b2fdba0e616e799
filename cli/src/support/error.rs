//! The CLI's error type and exit codes. Messages never carry secrets, signatures or bodies.

use std::path::{Path, PathBuf};

use gemini_hooks::config::ConfigError;
use gemini_hooks::ports::StoreError;

/// Exit status of a command that ran but found a problem (verification failed, store error…).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status of a usage or configuration error.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line or its inputs are wrong.
    #[error("{0}")]
    Usage(String),
    /// Environment configuration is missing or invalid (names the variable).
    #[error("{0}{hint}", hint = .1.as_deref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    Config(ConfigError, Option<String>),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("local store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Http(String),
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::Config(..) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e, None)
    }
}
