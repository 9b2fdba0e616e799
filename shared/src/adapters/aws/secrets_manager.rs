//! The [`SecretSource`] port on AWS Secrets Manager: a secret's current `SecretString`.

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::DisplayErrorContext;

use crate::ports::secrets::{SecretError, SecretSource};

/// A secret's `SecretString` in AWS Secrets Manager (its current version).
#[derive(Clone)]
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    arn: String,
}

impl std::fmt::Debug for SecretsManagerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The ARN names the secret for logs; the client adds only noise.
        f.debug_tuple("SecretsManager").field(&self.arn).finish()
    }
}

impl SecretsManagerSource {
    pub fn new(client: aws_sdk_secretsmanager::Client, arn: impl Into<String>) -> Self {
        Self {
            client,
            arn: arn.into(),
        }
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn fetch(&self) -> Result<String, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.arn)
            .send()
            .await
            .map_err(|e| SecretError::Unavailable(DisplayErrorContext(&e).to_string()))?;
        let text = out.secret_string().ok_or(SecretError::NotText)?.trim();
        if text.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(text.to_owned())
    }
}
