//! Where a secret's current text comes from (AWS Secrets Manager in the Lambdas).

use async_trait::async_trait;

/// Why a secret could not be read. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("{0}")]
    Unavailable(String),
    #[error("the secret has no SecretString (binary secrets are not supported)")]
    NotText,
    #[error("the secret's value is empty")]
    Empty,
}

/// Where a secret's current text comes from.
#[async_trait]
pub trait SecretSource: Send + Sync + std::fmt::Debug {
    /// The current value, trimmed.
    async fn fetch(&self) -> Result<String, SecretError>;
}
