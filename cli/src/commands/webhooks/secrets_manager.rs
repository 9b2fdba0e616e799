//! Webhook signing secrets in AWS Secrets Manager, stored as the comma-separated list the
//! receiver reads (`WEBHOOK_SIGNING_SECRETS` format, via `WEBHOOK_SIGNING_SECRETS_ARN`).
//!
//! Every value written parses with `parse_secret_list`, so a store can never leave the receiver
//! unable to start. Errors name the secret (an ARN or name is not sensitive), never its value.

use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use gemini_hooks::adapters::gemini::WebhookSecret;
use gemini_hooks::adapters::gemini::webhooks::{
    append_secret, keep_newest_secret, secret_list_entries, truncate_secret,
};
use gemini_hooks::domain::verify::standard::{SecretListError, parse_secret_list};

use super::args::StoreSecretArgs;
use crate::support::error::CliError;

/// Which secret to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Must already exist (ARN or name).
    Existing(String),
    /// Created if missing (name).
    CreateIfMissing(String),
}

impl Target {
    pub fn from_store_args(a: &StoreSecretArgs) -> Option<Self> {
        let arn = a.store_secret_arn.as_deref().map(str::trim);
        let name = a.store_secret_name.as_deref().map(str::trim);
        match (arn, name) {
            (Some(arn), _) if !arn.is_empty() => Some(Self::Existing(arn.to_owned())),
            (_, Some(name)) if !name.is_empty() => Some(Self::CreateIfMissing(name.to_owned())),
            _ => None,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Self::Existing(id) | Self::CreateIfMissing(id) => id,
        }
    }
}

/// How a new secret joins the stored list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// The new secret alone (a new webhook, or a rotation that revoked the old ones at once).
    Replace,
    /// Appended, keeping the old ones for the rotation's overlap.
    Append,
}

/// What a store did.
#[derive(Debug, Clone)]
pub struct Stored {
    pub arn: String,
    /// Secrets in the stored list now.
    pub entries: usize,
    pub created: bool,
    /// The list already was exactly this; nothing was written.
    pub unchanged: bool,
}

/// What a prune did.
#[derive(Debug, Clone)]
pub struct Pruned {
    pub arn: String,
    /// `whsec_...abcd` of the secret kept.
    pub kept: String,
    pub dropped: usize,
}

/// A secret as found: its ARN and current text value (`None`: no value stored yet).
struct Current {
    arn: String,
    value: Option<String>,
}

/// Secrets Manager access with the default AWS configuration chain (env, profile, role;
/// `AWS_ENDPOINT_URL` is honoured, which is how the tests reach moto).
pub struct SecretStore {
    client: Client,
}

impl SecretStore {
    pub async fn from_env() -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        Self {
            client: Client::new(&config),
        }
    }

    /// Checks, before anything changes at Gemini, that `target` can take the new secret: it
    /// exists (unless it may be created) and, for an append, already holds a valid list.
    pub async fn preflight(&self, target: &Target, update: Update) -> Result<(), CliError> {
        match (self.current(target.id()).await?, target) {
            (None, Target::Existing(id)) => Err(missing(id)),
            (Some(Current { value: Some(v), .. }), _) if update == Update::Append => {
                parse_secret_list(&v)
                    .map(drop)
                    .map_err(|e| invalid_stored(target.id(), &e))
            }
            _ => Ok(()),
        }
    }

    /// Writes `secret` into `target` as `update` says.
    pub async fn store(
        &self,
        target: &Target,
        secret: &WebhookSecret,
        update: Update,
    ) -> Result<Stored, CliError> {
        secret.check().map_err(|e| {
            CliError::Failed(format!(
                "Gemini returned a signing secret the receiver could not load ({e}); not stored"
            ))
        })?;
        let current = self.current(target.id()).await?;
        let existing = current.as_ref().and_then(|c| c.value.as_deref());
        let value = match (update, existing) {
            (Update::Append, Some(old)) => {
                append_secret(old, secret).map_err(|e| invalid_stored(target.id(), &e))?
            }
            _ => secret.expose().to_owned(),
        };
        let entries = secret_list_entries(&value).len();
        match (current, target) {
            (Some(c), _) if c.value.as_deref().map(str::trim) == Some(value.as_str()) => {
                Ok(Stored {
                    arn: c.arn,
                    entries,
                    created: false,
                    unchanged: true,
                })
            }
            (None, Target::Existing(id)) => Err(missing(id)),
            (None, Target::CreateIfMissing(name)) => {
                let arn = self.create(name, &value).await?;
                Ok(Stored {
                    arn,
                    entries,
                    created: true,
                    unchanged: false,
                })
            }
            (Some(c), _) => {
                self.put(&c.arn, &value).await?;
                Ok(Stored {
                    arn: c.arn,
                    entries,
                    created: false,
                    unchanged: false,
                })
            }
        }
    }

    /// Keeps only the newest (last) secret of the list in `id`.
    pub async fn prune(&self, id: &str) -> Result<Pruned, CliError> {
        let Some(current) = self.current(id).await? else {
            return Err(missing(id));
        };
        let Some(value) = current.value else {
            return Err(CliError::Failed(format!(
                "Secrets Manager secret `{id}` has no value yet; nothing to prune"
            )));
        };
        let (kept, dropped) = keep_newest_secret(&value).map_err(|e| invalid_stored(id, &e))?;
        if dropped > 0 {
            self.put(&current.arn, &kept).await?;
        }
        Ok(Pruned {
            arn: current.arn,
            kept: truncate_secret(&kept),
            dropped,
        })
    }

    /// `None` if there is no such secret.
    async fn current(&self, id: &str) -> Result<Option<Current>, CliError> {
        let described = match self.client.describe_secret().secret_id(id).send().await {
            Ok(d) => d,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(aws_error("describe", id, &e)),
        };
        let arn = described.arn().unwrap_or(id).to_owned();
        let value = match self.client.get_secret_value().secret_id(&arn).send().await {
            Ok(v) => match (v.secret_string(), v.secret_binary()) {
                (Some(s), _) => Some(s.to_owned()),
                (None, Some(_)) => {
                    return Err(CliError::Failed(format!(
                        "Secrets Manager secret `{id}` holds binary data; expected the \
                         comma-separated list of whsec_ secrets"
                    )));
                }
                (None, None) => None,
            },
            // A secret created without a value has no AWSCURRENT version yet.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                None
            }
            Err(e) => return Err(aws_error("read", id, &e)),
        };
        Ok(Some(Current { arn, value }))
    }

    async fn put(&self, arn: &str, value: &str) -> Result<(), CliError> {
        self.client
            .put_secret_value()
            .secret_id(arn)
            .secret_string(value)
            .send()
            .await
            .map(drop)
            .map_err(|e| aws_error("write", arn, &e))
    }

    /// Creates `name`; if someone else just created it, writes the value into it instead.
    async fn create(&self, name: &str, value: &str) -> Result<String, CliError> {
        let result = self
            .client
            .create_secret()
            .name(name)
            .description("Gemini webhook signing secrets (comma separated), see gemini-hooks")
            .secret_string(value)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out.arn().unwrap_or(name).to_owned()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_exists_exception()) =>
            {
                self.put(name, value).await?;
                Ok(name.to_owned())
            }
            Err(e) => Err(aws_error("create", name, &e)),
        }
    }
}

fn missing(id: &str) -> CliError {
    CliError::Failed(format!(
        "no Secrets Manager secret `{id}` (check the ARN and region, or use --store-secret-name \
         to create one)"
    ))
}

fn invalid_stored(id: &str, e: &SecretListError) -> CliError {
    CliError::Failed(format!(
        "Secrets Manager secret `{id}` does not hold a valid signing secret list ({e}); fix or \
         replace its value first"
    ))
}

fn aws_error<E: std::error::Error>(action: &str, id: &str, e: &E) -> CliError {
    CliError::Failed(format!(
        "Secrets Manager: cannot {action} `{id}`: {}",
        DisplayErrorContext(e)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_from_flags() {
        let args = |arn: Option<&str>, name: Option<&str>| StoreSecretArgs {
            store_secret_arn: arn.map(str::to_owned),
            store_secret_name: name.map(str::to_owned),
        };
        assert_eq!(Target::from_store_args(&args(None, None)), None);
        assert_eq!(
            Target::from_store_args(&args(Some(" arn:x "), None)),
            Some(Target::Existing("arn:x".into()))
        );
        assert_eq!(
            Target::from_store_args(&args(None, Some("hooks/secret"))),
            Some(Target::CreateIfMissing("hooks/secret".into()))
        );
        assert_eq!(Target::from_store_args(&args(Some(""), None)), None);
    }
}
