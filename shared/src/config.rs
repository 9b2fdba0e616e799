//! Typed configuration, one struct per function. Every environment variable name is defined
//! exactly once, here (DESIGN §3), and the template uses the same names.
//!
//! Missing or malformed required values fail at start-up with an error naming the variable;
//! nothing falls back silently.

use crate::verify::jwks::{DEFAULT_JWKS_URL, JwtSettings};
use crate::verify::standard::{SigningSecret, parse_secret_list};

/// Environment variable names (contract).
pub mod env {
    pub const WEBHOOK_SIGNING_SECRETS: &str = "WEBHOOK_SIGNING_SECRETS";
    pub const WEBHOOK_SIGNING_SECRETS_ARN: &str = "WEBHOOK_SIGNING_SECRETS_ARN";
    pub const WEBHOOK_TOLERANCE_SECONDS: &str = "WEBHOOK_TOLERANCE_SECONDS";
    pub const WEBHOOK_JWKS_URL: &str = "WEBHOOK_JWKS_URL";
    pub const WEBHOOK_JWT_AUDIENCE: &str = "WEBHOOK_JWT_AUDIENCE";
    pub const WEBHOOK_JWT_ISSUER: &str = "WEBHOOK_JWT_ISSUER";
    pub const WEBHOOK_MAX_BODY_BYTES: &str = "WEBHOOK_MAX_BODY_BYTES";
    pub const DEDUPE_TABLE: &str = "DEDUPE_TABLE";
    pub const DEDUPE_RETENTION_HOURS: &str = "DEDUPE_RETENTION_HOURS";
    pub const QUEUE_URL: &str = "QUEUE_URL";
    pub const RESULTS_TABLE: &str = "RESULTS_TABLE";
    pub const ROUTES: &str = "ROUTES";
    pub const GEMINI_API_KEY: &str = "GEMINI_API_KEY";
    pub const GEMINI_API_KEY_ARN: &str = "GEMINI_API_KEY_ARN";
    pub const GEMINI_API_BASE_URL: &str = "GEMINI_API_BASE_URL";

    /// Every name above, for checks that the template and the code agree (tests/template_env).
    pub const ALL: &[&str] = &[
        WEBHOOK_SIGNING_SECRETS,
        WEBHOOK_SIGNING_SECRETS_ARN,
        WEBHOOK_TOLERANCE_SECONDS,
        WEBHOOK_JWKS_URL,
        WEBHOOK_JWT_AUDIENCE,
        WEBHOOK_JWT_ISSUER,
        WEBHOOK_MAX_BODY_BYTES,
        DEDUPE_TABLE,
        DEDUPE_RETENTION_HOURS,
        QUEUE_URL,
        RESULTS_TABLE,
        ROUTES,
        GEMINI_API_KEY,
        GEMINI_API_KEY_ARN,
        GEMINI_API_BASE_URL,
    ];
}

/// Defaults (DESIGN §3).
pub mod defaults {
    pub const TOLERANCE_SECONDS: u64 = 300;
    pub const MAX_BODY_BYTES: usize = 1024 * 1024;
    /// Gemini retries for 24 h; a week leaves room for manual redelivery and clock trouble.
    pub const DEDUPE_RETENTION_HOURS: u64 = 168;
}

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("required environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Reads variables through a lookup function so tests need not touch the process environment.
pub struct Env<'a> {
    lookup: Box<Lookup<'a>>,
}

type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

impl<'a> Env<'a> {
    /// The process environment.
    pub fn process() -> Env<'static> {
        Env {
            lookup: Box::new(|name| std::env::var(name).ok()),
        }
    }

    /// Any lookup (tests, the CLI's flags layered over the environment).
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Self {
            lookup: Box::new(lookup),
        }
    }

    /// A set value, with surrounding whitespace removed; empty counts as unset (SAM passes
    /// empty strings for optional parameters).
    pub fn optional(&self, name: &'static str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A value that must be set.
    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    /// An optional number with a default.
    pub fn number<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                reason: format!("expected a non-negative integer ({e})"),
            }),
        }
    }

    /// An optional absolute http(s) URL with a default.
    pub fn url(&self, name: &'static str, default: &str) -> Result<String, ConfigError> {
        validate_url(
            name,
            self.optional(name).unwrap_or_else(|| default.to_owned()),
        )
    }

    /// A required absolute http(s) URL.
    pub fn required_url(&self, name: &'static str) -> Result<String, ConfigError> {
        validate_url(name, self.required(name)?)
    }
}

fn validate_url(name: &'static str, value: String) -> Result<String, ConfigError> {
    match reqwest::Url::parse(&value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {
            Ok(value.trim_end_matches('/').to_owned())
        }
        Ok(_) => Err(ConfigError::Invalid {
            name,
            reason: "expected an http(s) URL".into(),
        }),
        Err(e) => Err(ConfigError::Invalid {
            name,
            reason: format!("not a URL ({e})"),
        }),
    }
}

/// How deliveries are verified: shared by the receiver and `gemini-hooks dev`.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Static signing secrets (rotation: several). `None` when only dynamic webhooks are used.
    pub secrets: Option<Vec<SigningSecret>>,
    pub tolerance_secs: u64,
    pub jwt: JwtSettings,
}

impl VerifierConfig {
    /// Reads the verification variables. `WEBHOOK_SIGNING_SECRETS` is required unless the
    /// operator explicitly configured dynamic-only use by setting `WEBHOOK_JWKS_URL`;
    /// `secrets_override` is a list already fetched elsewhere (Secrets Manager).
    pub fn from_env(env: &Env<'_>, secrets_override: Option<&str>) -> Result<Self, ConfigError> {
        let secrets_text = secrets_override
            .map(str::to_owned)
            .or_else(|| env.optional(env::WEBHOOK_SIGNING_SECRETS));
        let secrets = match secrets_text {
            Some(text) => Some(parse_secret_list(&text).map_err(|e| ConfigError::Invalid {
                name: env::WEBHOOK_SIGNING_SECRETS,
                reason: e.to_string(),
            })?),
            None if env.optional(env::WEBHOOK_JWKS_URL).is_some() => None,
            None => return Err(ConfigError::Missing(env::WEBHOOK_SIGNING_SECRETS)),
        };
        let mut jwt = JwtSettings::new(env.url(env::WEBHOOK_JWKS_URL, DEFAULT_JWKS_URL)?);
        jwt.audience = env.optional(env::WEBHOOK_JWT_AUDIENCE);
        jwt.issuer = env.optional(env::WEBHOOK_JWT_ISSUER);
        Ok(Self {
            secrets,
            tolerance_secs: env
                .number(env::WEBHOOK_TOLERANCE_SECONDS, defaults::TOLERANCE_SECONDS)?,
            jwt,
        })
    }
}

/// Receive-side limits shared by the receiver Lambda and local mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveLimits {
    pub max_body_bytes: usize,
    pub retention_hours: u64,
}

impl ReceiveLimits {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let max_body_bytes = env.number(env::WEBHOOK_MAX_BODY_BYTES, defaults::MAX_BODY_BYTES)?;
        if max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                name: env::WEBHOOK_MAX_BODY_BYTES,
                reason: "must be greater than 0".into(),
            });
        }
        let retention_hours = env.number(
            env::DEDUPE_RETENTION_HOURS,
            defaults::DEDUPE_RETENTION_HOURS,
        )?;
        if retention_hours == 0 {
            return Err(ConfigError::Invalid {
                name: env::DEDUPE_RETENTION_HOURS,
                reason: "must be at least 1 (Gemini retries for 24 h; 168 is the default)".into(),
            });
        }
        Ok(Self {
            max_body_bytes,
            retention_hours,
        })
    }
}

impl Default for ReceiveLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: defaults::MAX_BODY_BYTES,
            retention_hours: defaults::DEDUPE_RETENTION_HOURS,
        }
    }
}

/// Configuration of the receiver Lambda.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    pub verifier: VerifierConfig,
    pub limits: ReceiveLimits,
    pub dedupe_table: String,
    pub queue_url: String,
}

impl ReceiverConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            verifier: VerifierConfig::from_env(env, None)?,
            limits: ReceiveLimits::from_env(env)?,
            dedupe_table: env.required(env::DEDUPE_TABLE)?,
            queue_url: env.required_url(env::QUEUE_URL)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn receiver(pairs: &[(&str, &str)]) -> Result<ReceiverConfig, ConfigError> {
        let map = env_of(pairs);
        ReceiverConfig::from_env(&Env::from_fn(|k| map.get(k).cloned()))
    }

    const BASE: [(&str, &str); 3] = [
        ("WEBHOOK_SIGNING_SECRETS", SECRET),
        ("DEDUPE_TABLE", "t"),
        ("QUEUE_URL", "http://127.0.0.1:5000/123/q"),
    ];

    #[test]
    fn when_minimal_env_should_use_defaults() {
        let c = receiver(&BASE).unwrap();
        assert_eq!(c.verifier.tolerance_secs, 300);
        assert_eq!(c.limits.max_body_bytes, 1_048_576);
        assert_eq!(c.limits.retention_hours, 168);
        assert_eq!(c.verifier.jwt.jwks_url, DEFAULT_JWKS_URL);
        assert_eq!(c.verifier.secrets.as_ref().unwrap().len(), 1);
        assert_eq!(c.verifier.jwt.audience, None);
    }

    #[test]
    fn when_required_variable_missing_should_name_it() {
        for missing in ["WEBHOOK_SIGNING_SECRETS", "DEDUPE_TABLE", "QUEUE_URL"] {
            let pairs: Vec<_> = BASE
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = receiver(&pairs).unwrap_err();
            assert!(err.to_string().contains(missing), "{err}");
        }
    }

    #[test]
    fn when_secret_malformed_should_name_variable_not_secret() {
        let mut pairs = BASE.to_vec();
        pairs[0] = ("WEBHOOK_SIGNING_SECRETS", "whsec_!!!not-base64!!!");
        let err = receiver(&pairs).unwrap_err().to_string();
        assert!(err.contains("WEBHOOK_SIGNING_SECRETS"), "{err}");
        assert!(!err.contains("not-base64"), "{err}");
    }

    #[test]
    fn when_number_invalid_should_name_variable() {
        for (name, value) in [
            ("WEBHOOK_TOLERANCE_SECONDS", "five"),
            ("WEBHOOK_MAX_BODY_BYTES", "-1"),
            ("WEBHOOK_MAX_BODY_BYTES", "0"),
            ("DEDUPE_RETENTION_HOURS", "0"),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.push((name, value));
            let err = receiver(&pairs).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn when_dynamic_only_should_allow_missing_secrets() {
        let pairs = [
            ("WEBHOOK_JWKS_URL", "http://127.0.0.1:1/jwks.json"),
            ("WEBHOOK_JWT_AUDIENCE", "aud"),
            ("WEBHOOK_JWT_ISSUER", " "),
            ("DEDUPE_TABLE", "t"),
            ("QUEUE_URL", "http://127.0.0.1:5000/123/q"),
        ];
        let c = receiver(&pairs).unwrap();
        assert!(c.verifier.secrets.is_none());
        assert_eq!(c.verifier.jwt.audience.as_deref(), Some("aud"));
        assert_eq!(c.verifier.jwt.issuer, None);
    }

    #[test]
    fn when_url_invalid_should_name_variable() {
        let mut pairs = BASE.to_vec();
        pairs.push(("WEBHOOK_JWKS_URL", "ftp://x"));
        assert!(
            receiver(&pairs)
                .unwrap_err()
                .to_string()
                .contains("WEBHOOK_JWKS_URL")
        );
        let mut pairs = BASE.to_vec();
        pairs[2] = ("QUEUE_URL", "not a url");
        assert!(
            receiver(&pairs)
                .unwrap_err()
                .to_string()
                .contains("QUEUE_URL")
        );
    }
}

/// Gemini API access shared by the consumer, the reconciler and local mode.
#[derive(Debug, Clone)]
pub struct GeminiConfig {
    pub base_url: String,
    pub api_key: crate::gemini::ApiKey,
}

impl GeminiConfig {
    /// Reads `GEMINI_API_BASE_URL` and the key (`GEMINI_API_KEY`, or `key_override` fetched
    /// elsewhere, e.g. from Secrets Manager).
    pub fn from_env(env: &Env<'_>, key_override: Option<&str>) -> Result<Self, ConfigError> {
        let key = match key_override {
            Some(k) if !k.trim().is_empty() => k.trim().to_owned(),
            _ => env.required(env::GEMINI_API_KEY)?,
        };
        Ok(Self {
            base_url: env.url(env::GEMINI_API_BASE_URL, crate::gemini::DEFAULT_BASE_URL)?,
            api_key: crate::gemini::ApiKey::new(key),
        })
    }

    /// Client settings with production retry defaults.
    pub fn settings(&self) -> crate::gemini::GeminiSettings {
        let mut s = crate::gemini::GeminiSettings::new(self.api_key.clone());
        s.base_url = self.base_url.clone();
        s
    }
}

/// Configuration of the consumer Lambda.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub results_table: String,
    /// Raw `ROUTES` JSON (group → table), validated when the routes are built.
    pub routes: Option<String>,
    pub gemini: GeminiConfig,
    /// Where continuation messages go (the events queue itself).
    pub queue_url: String,
}

impl ConsumerConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            results_table: env.required(env::RESULTS_TABLE)?,
            routes: env.optional(env::ROUTES),
            gemini: GeminiConfig::from_env(env, None)?,
            queue_url: env.required_url(env::QUEUE_URL)?,
        })
    }
}

/// Configuration of the reconciler Lambda.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// The consumer's default results table: a job finished there counts as handled.
    pub results_table: String,
    /// The consumer's `ROUTES`, so jobs routed to other tables are found too.
    pub routes: Option<String>,
    /// Recovery ids are claimed here, like webhook ids, so no run enqueues one twice.
    pub dedupe_table: String,
    pub queue_url: String,
    pub gemini: GeminiConfig,
}

impl ReconcilerConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            results_table: env.required(env::RESULTS_TABLE)?,
            routes: env.optional(env::ROUTES),
            dedupe_table: env.required(env::DEDUPE_TABLE)?,
            queue_url: env.required_url(env::QUEUE_URL)?,
            gemini: GeminiConfig::from_env(env, None)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod reconciler_config_tests {
    use super::*;
    use std::collections::HashMap;

    const BASE: [(&str, &str); 4] = [
        ("RESULTS_TABLE", "results"),
        ("DEDUPE_TABLE", "dedupe"),
        ("QUEUE_URL", "http://127.0.0.1:5000/123/q"),
        ("GEMINI_API_KEY", "k"),
    ];

    fn reconciler(pairs: &[(&str, &str)]) -> Result<ReconcilerConfig, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ReconcilerConfig::from_env(&Env::from_fn(|k| map.get(k).cloned()))
    }

    #[test]
    fn when_minimal_env_should_use_defaults() {
        let c = reconciler(&BASE).unwrap();
        assert_eq!(c.results_table, "results");
        assert_eq!(c.dedupe_table, "dedupe");
        assert_eq!(c.routes, None);
        assert_eq!(c.gemini.base_url, crate::gemini::DEFAULT_BASE_URL);
    }

    #[test]
    fn when_required_variable_missing_should_name_it() {
        for missing in [
            "RESULTS_TABLE",
            "DEDUPE_TABLE",
            "QUEUE_URL",
            "GEMINI_API_KEY",
        ] {
            let pairs: Vec<_> = BASE
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = reconciler(&pairs).unwrap_err();
            assert!(err.to_string().contains(missing), "{err}");
        }
    }
}
