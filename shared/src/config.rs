//! Typed configuration, one struct per function. Every environment variable name is defined
//! exactly once, here (the README's configuration table), and the template uses the same names.
//!
//! Missing or malformed required values fail at start-up with an error naming the variable;
//! nothing falls back silently.

use crate::adapters::jwks::{DEFAULT_JWKS_URL, JwksSettings};
use crate::domain::verify::jwt::{DEFAULT_MAX_AGE_SECS, JwtRules};
use crate::domain::verify::standard::{SigningSecret, parse_secret_list};
pub use crate::usecases::receive::ReceiveLimits;

/// Dynamic (JWT) verification: the claims policy and where the keys are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    pub rules: JwtRules,
    pub jwks: JwksSettings,
}

/// Environment variable names (contract).
pub mod env {
    pub const WEBHOOK_SIGNING_SECRETS: &str = "WEBHOOK_SIGNING_SECRETS";
    pub const WEBHOOK_SIGNING_SECRETS_ARN: &str = "WEBHOOK_SIGNING_SECRETS_ARN";
    pub const WEBHOOK_TOLERANCE_SECONDS: &str = "WEBHOOK_TOLERANCE_SECONDS";
    pub const WEBHOOK_JWKS_URL: &str = "WEBHOOK_JWKS_URL";
    pub const WEBHOOK_JWT_AUDIENCE: &str = "WEBHOOK_JWT_AUDIENCE";
    pub const WEBHOOK_JWT_ISSUER: &str = "WEBHOOK_JWT_ISSUER";
    pub const WEBHOOK_JWT_MAX_AGE_SECONDS: &str = "WEBHOOK_JWT_MAX_AGE_SECONDS";
    pub const WEBHOOK_MAX_BODY_BYTES: &str = "WEBHOOK_MAX_BODY_BYTES";
    pub const DEDUPE_TABLE: &str = "DEDUPE_TABLE";
    pub const DEDUPE_RETENTION_HOURS: &str = "DEDUPE_RETENTION_HOURS";
    pub const QUEUE_URL: &str = "QUEUE_URL";
    pub const RESULTS_TABLE: &str = "RESULTS_TABLE";
    pub const ROUTES: &str = "ROUTES";
    pub const GEMINI_API_KEY: &str = "GEMINI_API_KEY";
    pub const GEMINI_API_KEY_ARN: &str = "GEMINI_API_KEY_ARN";
    pub const GEMINI_API_BASE_URL: &str = "GEMINI_API_BASE_URL";
    pub const PAYLOAD_BUCKET: &str = "PAYLOAD_BUCKET";
    pub const CONSUMER_WRITES_IN_FLIGHT: &str = "CONSUMER_WRITES_IN_FLIGHT";
    pub const EVENT_BUS_NAME: &str = "EVENT_BUS_NAME";
    pub const RESULTS_RETENTION_DAYS: &str = "RESULTS_RETENTION_DAYS";
    pub const LATE_BATCH_HOURS: &str = "LATE_BATCH_HOURS";
    pub const OUTPUT_BUCKET: &str = "OUTPUT_BUCKET";

    /// Every name above, for checks that the template and the code agree (tests/template_env).
    pub const ALL: &[&str] = &[
        WEBHOOK_SIGNING_SECRETS,
        WEBHOOK_SIGNING_SECRETS_ARN,
        WEBHOOK_TOLERANCE_SECONDS,
        WEBHOOK_JWKS_URL,
        WEBHOOK_JWT_AUDIENCE,
        WEBHOOK_JWT_ISSUER,
        WEBHOOK_JWT_MAX_AGE_SECONDS,
        WEBHOOK_MAX_BODY_BYTES,
        DEDUPE_TABLE,
        DEDUPE_RETENTION_HOURS,
        QUEUE_URL,
        RESULTS_TABLE,
        ROUTES,
        GEMINI_API_KEY,
        GEMINI_API_KEY_ARN,
        GEMINI_API_BASE_URL,
        PAYLOAD_BUCKET,
        CONSUMER_WRITES_IN_FLIGHT,
        EVENT_BUS_NAME,
        RESULTS_RETENTION_DAYS,
        LATE_BATCH_HOURS,
        OUTPUT_BUCKET,
    ];
}

/// Defaults (the README's configuration table).
pub mod defaults {
    pub const TOLERANCE_SECONDS: u64 = crate::domain::verify::standard::DEFAULT_TOLERANCE_SECS;
    pub const MAX_BODY_BYTES: usize = crate::usecases::receive::DEFAULT_MAX_BODY_BYTES;
    pub const DEDUPE_RETENTION_HOURS: u64 = crate::usecases::receive::DEFAULT_RETENTION_HOURS;
    pub const CONSUMER_WRITES_IN_FLIGHT: usize = 4;
    /// Upper bound of `CONSUMER_WRITES_IN_FLIGHT`: past a few writes the byte budget, not the
    /// count, is what limits a message.
    pub const MAX_CONSUMER_WRITES_IN_FLIGHT: usize = 16;
    /// Longest `RESULTS_RETENTION_DAYS` (100 years; the template's `MaxValue`).
    pub const MAX_RESULTS_RETENTION_DAYS: u64 = 36_500;
    /// `LATE_BATCH_HOURS`: a nightly batch normally finishes well within this.
    pub const LATE_BATCH_HOURS: u64 = 6;
    /// Longest `LATE_BATCH_HOURS` (a week; the template's `MaxValue`). Gemini expires a batch
    /// that has not finished within about 48 hours, so more would never fire.
    pub const MAX_LATE_BATCH_HOURS: u64 = 168;
}

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("required environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    /// Neither static nor dynamic verification is configured: every delivery would get 401.
    #[error(
        "no way to verify deliveries: set WEBHOOK_SIGNING_SECRETS (or WEBHOOK_SIGNING_SECRETS_ARN) \
         for static webhooks and/or WEBHOOK_JWT_AUDIENCE for dynamic (JWT) webhooks"
    )]
    NoVerification,
    /// The secret named by a `*_ARN` variable could not be read at start-up.
    #[error("{name}: could not read secret: {reason}")]
    Secret { name: &'static str, reason: String },
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
    /// Dynamic (JWT) verification; `None` unless `WEBHOOK_JWT_AUDIENCE` is set, so a JWT
    /// delivery is then refused (`dynamic_not_configured`) whoever signed it.
    pub jwt: Option<JwtConfig>,
}

impl VerifierConfig {
    /// Reads the verification variables. Static secrets (`WEBHOOK_SIGNING_SECRETS`) and dynamic
    /// mode (`WEBHOOK_JWT_AUDIENCE`) are each optional, but at least one must be configured;
    /// `secrets_override` is a list already fetched elsewhere (Secrets Manager).
    pub fn from_env(env: &Env<'_>, secrets_override: Option<&str>) -> Result<Self, ConfigError> {
        Self::read(env, secrets_override, false)
    }

    /// `secrets_elsewhere`: the list comes from Secrets Manager after start-up, so
    /// `WEBHOOK_SIGNING_SECRETS` is neither required nor used (`secrets` stays `None` here).
    fn read(
        env: &Env<'_>,
        secrets_override: Option<&str>,
        secrets_elsewhere: bool,
    ) -> Result<Self, ConfigError> {
        // Read even when unused, so the template check sees every variable this may read.
        let plain = env.optional(env::WEBHOOK_SIGNING_SECRETS);
        let secrets_text = secrets_override
            .map(str::to_owned)
            .or(plain.filter(|_| !secrets_elsewhere));
        let secrets = secrets_text
            .map(|text| {
                parse_secret_list(&text).map_err(|e| ConfigError::Invalid {
                    name: env::WEBHOOK_SIGNING_SECRETS,
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let tolerance_secs =
            env.number(env::WEBHOOK_TOLERANCE_SECONDS, defaults::TOLERANCE_SECONDS)?;
        let jwt = match env.optional(env::WEBHOOK_JWT_AUDIENCE) {
            Some(list) => Some(jwt_settings(env, &list, tolerance_secs)?),
            None => None,
        };
        if secrets.is_none() && !secrets_elsewhere && jwt.is_none() {
            return Err(ConfigError::NoVerification);
        }
        Ok(Self {
            secrets,
            tolerance_secs,
            jwt,
        })
    }
}

/// Dynamic-mode settings for the audience list `audiences` (comma or whitespace separated).
fn jwt_settings(
    env: &Env<'_>,
    audiences: &str,
    tolerance_secs: u64,
) -> Result<JwtConfig, ConfigError> {
    let audiences: Vec<String> = audiences
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if audiences.is_empty() {
        return Err(ConfigError::Invalid {
            name: env::WEBHOOK_JWT_AUDIENCE,
            reason: "expected one or more audience values".into(),
        });
    }
    let jwks = JwksSettings::new(env.url(env::WEBHOOK_JWKS_URL, DEFAULT_JWKS_URL)?);
    let mut rules = JwtRules::new(audiences);
    rules.issuer = env.optional(env::WEBHOOK_JWT_ISSUER);
    rules.future_tolerance_secs = tolerance_secs;
    rules.max_age_secs = env.number(env::WEBHOOK_JWT_MAX_AGE_SECONDS, DEFAULT_MAX_AGE_SECS)?;
    if rules.max_age_secs == 0 {
        return Err(ConfigError::Invalid {
            name: env::WEBHOOK_JWT_MAX_AGE_SECONDS,
            reason: "must be greater than 0 (default 86700: Gemini's 24 h retries + 300 s)".into(),
        });
    }
    Ok(JwtConfig { rules, jwks })
}

/// `ROUTES`, parsed: `job_group` → results table name.
pub type RouteTables = std::collections::BTreeMap<String, String>;

/// Reads `ROUTES` (`{"<job_group>": "<table>", …}`); unset or empty means no routes.
pub fn route_tables(env: &Env<'_>) -> Result<RouteTables, ConfigError> {
    let Some(text) = env.optional(env::ROUTES) else {
        return Ok(RouteTables::new());
    };
    let invalid = |reason: String| ConfigError::Invalid {
        name: env::ROUTES,
        reason,
    };
    let map: std::collections::BTreeMap<String, serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| invalid(format!("expected a JSON object of group → table ({e})")))?;
    map.into_iter()
        .map(|(group, table)| {
            if !crate::domain::event::usable_job_group(&group) {
                return Err(invalid(format!(
                    "a group must be 1 to {} bytes long (`{:.40}…` is {} bytes)",
                    crate::domain::event::MAX_JOB_GROUP_BYTES,
                    group,
                    group.len()
                )));
            }
            let table = table
                .as_str()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    invalid(format!(
                        "the table of group `{group}` must be a non-empty string"
                    ))
                })?;
            Ok((group, table.to_owned()))
        })
        .collect()
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

/// Configuration of the receiver Lambda.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// With [`Self::signing_secrets_arn`] set, `verifier.secrets` is `None` until the wiring has
    /// read the secret.
    pub verifier: VerifierConfig,
    /// `WEBHOOK_SIGNING_SECRETS_ARN`: the list lives in Secrets Manager (and wins over
    /// `WEBHOOK_SIGNING_SECRETS`); read at start-up, refreshed on a TTL.
    pub signing_secrets_arn: Option<String>,
    pub limits: ReceiveLimits,
    pub dedupe_table: String,
    pub queue_url: String,
    /// `PAYLOAD_BUCKET`: where messages too large for SQS go (a pointer is queued instead).
    /// Without it, a delivery whose message does not fit SQS gets 413.
    pub payload_bucket: Option<String>,
}

impl ReceiverConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let signing_secrets_arn = env.optional(env::WEBHOOK_SIGNING_SECRETS_ARN);
        Ok(Self {
            verifier: VerifierConfig::read(env, None, signing_secrets_arn.is_some())?,
            signing_secrets_arn,
            limits: ReceiveLimits::from_env(env)?,
            dedupe_table: env.required(env::DEDUPE_TABLE)?,
            queue_url: env.required_url(env::QUEUE_URL)?,
            payload_bucket: env.optional(env::PAYLOAD_BUCKET),
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
        assert_eq!(c.verifier.secrets.as_ref().unwrap().len(), 1);
        assert!(
            c.verifier.jwt.is_none(),
            "dynamic mode is off without an audience"
        );
    }

    #[test]
    fn when_neither_secrets_nor_audience_should_refuse_naming_both() {
        for pairs in [
            vec![
                ("DEDUPE_TABLE", "t"),
                ("QUEUE_URL", "http://127.0.0.1:5000/123/q"),
            ],
            // A JWKS URL alone no longer turns dynamic mode on.
            vec![
                ("WEBHOOK_JWKS_URL", "http://127.0.0.1:1/jwks.json"),
                ("DEDUPE_TABLE", "t"),
                ("QUEUE_URL", "http://127.0.0.1:5000/123/q"),
            ],
        ] {
            let err = receiver(&pairs).unwrap_err();
            assert_eq!(err, ConfigError::NoVerification);
            let text = err.to_string();
            assert!(text.contains("WEBHOOK_SIGNING_SECRETS"), "{text}");
            assert!(text.contains("WEBHOOK_JWT_AUDIENCE"), "{text}");
        }
    }

    #[test]
    fn when_audience_set_should_turn_dynamic_mode_on_with_its_defaults() {
        let mut pairs = BASE.to_vec();
        pairs.push(("WEBHOOK_JWT_AUDIENCE", "https://hooks.example/a, other"));
        pairs.push(("WEBHOOK_TOLERANCE_SECONDS", "120"));
        let c = receiver(&pairs).unwrap();
        let jwt = c.verifier.jwt.unwrap();
        assert_eq!(jwt.rules.audiences, ["https://hooks.example/a", "other"]);
        assert_eq!(jwt.jwks.url, DEFAULT_JWKS_URL);
        assert_eq!(jwt.rules.max_age_secs, 86_700);
        assert_eq!(jwt.rules.future_tolerance_secs, 120);
        for (name, value) in [
            ("WEBHOOK_JWT_MAX_AGE_SECONDS", "0"),
            ("WEBHOOK_JWT_MAX_AGE_SECONDS", "a day"),
            ("WEBHOOK_JWT_AUDIENCE", " , "),
        ] {
            let mut bad = pairs.clone();
            bad.retain(|(k, _)| *k != name);
            bad.push((name, value));
            let err = receiver(&bad).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
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
        let jwt = c.verifier.jwt.unwrap();
        assert_eq!(jwt.rules.audiences, ["aud"]);
        assert_eq!(jwt.rules.issuer, None);
    }

    #[test]
    fn when_signing_secrets_arn_set_should_not_need_the_plain_list() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hooks-AbCdEf";
        let pairs = [
            ("WEBHOOK_SIGNING_SECRETS_ARN", arn),
            ("DEDUPE_TABLE", "t"),
            ("QUEUE_URL", "http://127.0.0.1:5000/123/q"),
        ];
        let c = receiver(&pairs).unwrap();
        assert_eq!(c.signing_secrets_arn.as_deref(), Some(arn));
        assert!(c.verifier.secrets.is_none());
        // The ARN wins over a plain list (which is then not even parsed).
        let mut pairs = pairs.to_vec();
        pairs.push(("WEBHOOK_SIGNING_SECRETS", "whsec_!!!"));
        let c = receiver(&pairs).unwrap();
        assert!(c.verifier.secrets.is_none());
        assert!(receiver(&BASE).unwrap().signing_secrets_arn.is_none());
    }

    #[test]
    fn when_url_invalid_should_name_variable() {
        let mut pairs = BASE.to_vec();
        pairs.push(("WEBHOOK_JWT_AUDIENCE", "aud"));
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
    pub api_key: ApiKeySource,
}

/// Where the Gemini API key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeySource {
    /// `GEMINI_API_KEY` (or a key passed in).
    Value(crate::adapters::gemini::ApiKey),
    /// `GEMINI_API_KEY_ARN`: the secret's `SecretString`, read once at cold start (a rotated
    /// key takes effect on the next cold start; Gemini keeps the old key valid meanwhile).
    SecretsManager { arn: String },
}

impl GeminiConfig {
    /// Reads `GEMINI_API_BASE_URL` and the key: `key_override` (fetched elsewhere), else
    /// `GEMINI_API_KEY_ARN` (wins when set), else `GEMINI_API_KEY`.
    pub fn from_env(env: &Env<'_>, key_override: Option<&str>) -> Result<Self, ConfigError> {
        // Both read even when one is unused, so the template check sees every variable.
        let arn = env.optional(env::GEMINI_API_KEY_ARN);
        let plain = env.optional(env::GEMINI_API_KEY);
        let api_key = match (key_override.map(str::trim), arn, plain) {
            (Some(k), _, _) if !k.is_empty() => ApiKeySource::Value(k.into()),
            (_, Some(arn), _) => ApiKeySource::SecretsManager { arn },
            (_, None, Some(k)) => ApiKeySource::Value(k.into()),
            (_, None, None) => return Err(ConfigError::Missing(env::GEMINI_API_KEY)),
        };
        Ok(Self {
            base_url: env.url(
                env::GEMINI_API_BASE_URL,
                crate::adapters::gemini::DEFAULT_BASE_URL,
            )?,
            api_key,
        })
    }

    /// Client settings with production retry defaults, around the resolved `api_key`.
    pub fn settings(
        &self,
        api_key: crate::adapters::gemini::ApiKey,
    ) -> crate::adapters::gemini::GeminiSettings {
        let mut s = crate::adapters::gemini::GeminiSettings::new(api_key);
        s.base_url = self.base_url.clone();
        s
    }
}

/// Reads `RESULTS_RETENTION_DAYS`: how long the results tables keep what the consumer writes.
/// Unset, empty or `0` keeps everything (no TTL).
pub fn results_retention(env: &Env<'_>) -> Result<Option<std::time::Duration>, ConfigError> {
    let days: u64 = env.number(env::RESULTS_RETENTION_DAYS, 0)?;
    if days > defaults::MAX_RESULTS_RETENTION_DAYS {
        return Err(ConfigError::Invalid {
            name: env::RESULTS_RETENTION_DAYS,
            reason: format!(
                "at most {} days (0 keeps results forever)",
                defaults::MAX_RESULTS_RETENTION_DAYS
            ),
        });
    }
    Ok((days > 0).then(|| std::time::Duration::from_secs(days * 86_400)))
}

/// Configuration of the consumer Lambda.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub results_table: String,
    /// `RESULTS_RETENTION_DAYS`: rows and job records written expire this long after their
    /// write (the results tables' TTL); `None` keeps them.
    pub results_retention: Option<std::time::Duration>,
    /// `ROUTES`: `job_group` → results table.
    pub routes: RouteTables,
    pub gemini: GeminiConfig,
    /// Where continuation messages go (the events queue itself).
    pub queue_url: String,
    /// `PAYLOAD_BUCKET`: where the receiver put messages too large for SQS.
    pub payload_bucket: Option<String>,
    /// `CONSUMER_WRITES_IN_FLIGHT`: row writes one message keeps in flight.
    pub writes_in_flight: usize,
    /// Downstream events (`EVENT_BUS_NAME`); `None` publishes none.
    pub events: Option<EventsConfig>,
    /// `OUTPUT_BUCKET`: where generated videos are copied; `None` keeps pointers to Gemini's
    /// files only (which expire after 48 hours).
    pub output_bucket: Option<String>,
}

/// `OUTPUT_BUCKET`, if set: an S3 bucket name (3–63 lowercase letters, digits, `.` and `-`,
/// starting and ending with a letter or digit), so a typo fails at start-up, not on the first
/// video.
fn output_bucket(env: &Env<'_>) -> Result<Option<String>, ConfigError> {
    let Some(bucket) = env.optional(env::OUTPUT_BUCKET) else {
        return Ok(None);
    };
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge(bucket.chars().next())
        && edge(bucket.chars().last());
    if !valid {
        return Err(ConfigError::Invalid {
            name: env::OUTPUT_BUCKET,
            reason: "not an S3 bucket name (3 to 63 lowercase letters, digits, '.' and '-', \
                     starting and ending with a letter or digit)"
                .into(),
        });
    }
    Ok(Some(bucket))
}

/// Where the consumer publishes downstream events, and where it claims them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// `EVENT_BUS_NAME`: the EventBridge bus (name or ARN).
    pub bus: String,
    /// `DEDUPE_TABLE`: each event is claimed there once (`usecases::consume`), under keys no
    /// delivery's `webhook-id` can take. Required with `EVENT_BUS_NAME`.
    pub dedupe_table: String,
}

impl EventsConfig {
    /// `None` without `EVENT_BUS_NAME`; with it, `DEDUPE_TABLE` is required.
    pub fn from_env(env: &Env<'_>) -> Result<Option<Self>, ConfigError> {
        let Some(bus) = env.optional(env::EVENT_BUS_NAME) else {
            return Ok(None);
        };
        Ok(Some(Self {
            bus,
            dedupe_table: env.required(env::DEDUPE_TABLE)?,
        }))
    }
}

impl ConsumerConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let writes_in_flight = env.number(
            env::CONSUMER_WRITES_IN_FLIGHT,
            defaults::CONSUMER_WRITES_IN_FLIGHT,
        )?;
        if !(1..=defaults::MAX_CONSUMER_WRITES_IN_FLIGHT).contains(&writes_in_flight) {
            return Err(ConfigError::Invalid {
                name: env::CONSUMER_WRITES_IN_FLIGHT,
                reason: format!(
                    "must be between 1 and {}",
                    defaults::MAX_CONSUMER_WRITES_IN_FLIGHT
                ),
            });
        }
        Ok(Self {
            results_table: env.required(env::RESULTS_TABLE)?,
            results_retention: results_retention(env)?,
            routes: route_tables(env)?,
            gemini: GeminiConfig::from_env(env, None)?,
            queue_url: env.required_url(env::QUEUE_URL)?,
            payload_bucket: env.optional(env::PAYLOAD_BUCKET),
            writes_in_flight,
            events: EventsConfig::from_env(env)?,
            output_bucket: output_bucket(env)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod consumer_config_tests {
    use super::*;
    use std::collections::HashMap;

    fn consumer(pairs: &[(&str, &str)]) -> Result<ConsumerConfig, ConfigError> {
        let map: HashMap<String, String> = [
            ("RESULTS_TABLE", "results"),
            ("QUEUE_URL", "http://127.0.0.1:5000/123/q"),
            ("GEMINI_API_KEY", "k"),
        ]
        .iter()
        .chain(pairs)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        ConsumerConfig::from_env(&Env::from_fn(|k| map.get(k).cloned()))
    }

    #[test]
    fn the_output_bucket_is_optional_and_must_be_a_bucket_name() {
        assert_eq!(consumer(&[]).unwrap().output_bucket, None);
        assert_eq!(
            consumer(&[("OUTPUT_BUCKET", " ")]).unwrap().output_bucket,
            None
        );
        assert_eq!(
            consumer(&[("OUTPUT_BUCKET", "my-stack-outputs.1")])
                .unwrap()
                .output_bucket
                .as_deref(),
            Some("my-stack-outputs.1")
        );
        for bad in ["s3://b", "ab", "Upper", "-edge", "edge-", "a_b"] {
            assert!(
                matches!(
                    consumer(&[("OUTPUT_BUCKET", bad)]),
                    Err(ConfigError::Invalid {
                        name: "OUTPUT_BUCKET",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn downstream_events_are_off_without_a_bus_and_need_the_dedupe_table_with_one() {
        assert_eq!(consumer(&[]).unwrap().events, None);
        assert_eq!(consumer(&[("EVENT_BUS_NAME", "  ")]).unwrap().events, None);
        assert_eq!(
            consumer(&[("EVENT_BUS_NAME", "jobs")]).unwrap_err(),
            ConfigError::Missing("DEDUPE_TABLE")
        );
        assert_eq!(
            consumer(&[("EVENT_BUS_NAME", "jobs"), ("DEDUPE_TABLE", "dedupe")])
                .unwrap()
                .events,
            Some(EventsConfig {
                bus: "jobs".into(),
                dedupe_table: "dedupe".into()
            })
        );
    }
}

/// Configuration of the reconciler Lambda.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// The consumer's default results table: a job finished there counts as handled.
    pub results_table: String,
    /// The consumer's `ROUTES`, so jobs routed to other tables are found too.
    /// `ROUTES`: `job_group` → results table.
    pub routes: RouteTables,
    /// Recovery ids are claimed here, like webhook ids, so no run enqueues one twice.
    pub dedupe_table: String,
    pub queue_url: String,
    pub gemini: GeminiConfig,
    /// `LATE_BATCH_HOURS`: a batch still pending or running this long after its creation is
    /// reported late; `None` (the variable set to 0) turns the check off.
    pub late_batch_after: Option<std::time::Duration>,
    /// `RESULTS_RETENTION_DAYS`, as the consumer reads it: batches that finished longer ago are
    /// not recovered (their job records may have expired).
    pub results_retention: Option<std::time::Duration>,
}

impl ReconcilerConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            results_table: env.required(env::RESULTS_TABLE)?,
            routes: route_tables(env)?,
            dedupe_table: env.required(env::DEDUPE_TABLE)?,
            queue_url: env.required_url(env::QUEUE_URL)?,
            gemini: GeminiConfig::from_env(env, None)?,
            late_batch_after: late_batch_after(env)?,
            results_retention: results_retention(env)?,
        })
    }
}

/// Reads `LATE_BATCH_HOURS`: unset or empty is the default (6), `0` turns the check off.
fn late_batch_after(env: &Env<'_>) -> Result<Option<std::time::Duration>, ConfigError> {
    let hours: u64 = env.number(env::LATE_BATCH_HOURS, defaults::LATE_BATCH_HOURS)?;
    if hours > defaults::MAX_LATE_BATCH_HOURS {
        return Err(ConfigError::Invalid {
            name: env::LATE_BATCH_HOURS,
            reason: format!(
                "at most {} hours (0 turns the late-batch check off)",
                defaults::MAX_LATE_BATCH_HOURS
            ),
        });
    }
    Ok((hours > 0).then(|| std::time::Duration::from_secs(hours * 3600)))
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
        assert!(c.routes.is_empty());
        assert_eq!(c.gemini.base_url, crate::adapters::gemini::DEFAULT_BASE_URL);
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

    #[test]
    fn late_batch_hours_default_zero_and_bad_values() {
        let hours = |h: u64| Some(std::time::Duration::from_secs(h * 3600));
        assert_eq!(reconciler(&BASE).unwrap().late_batch_after, hours(6));
        let with = |v: &'static str| {
            let mut pairs = BASE.to_vec();
            pairs.push(("LATE_BATCH_HOURS", v));
            reconciler(&pairs)
        };
        assert_eq!(with("").unwrap().late_batch_after, hours(6));
        assert_eq!(with(" 12 ").unwrap().late_batch_after, hours(12));
        assert_eq!(with("168").unwrap().late_batch_after, hours(168));
        assert_eq!(with("0").unwrap().late_batch_after, None);
        for bad in ["-1", "six", "1.5", "169"] {
            let err = with(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        name: "LATE_BATCH_HOURS",
                        ..
                    }
                ),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains("LATE_BATCH_HOURS"), "{err}");
        }
    }

    #[test]
    fn api_key_comes_from_the_arn_when_set_else_from_the_variable() {
        let c = reconciler(&BASE).unwrap();
        assert_eq!(c.gemini.api_key, ApiKeySource::Value("k".into()));
        let mut pairs: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| *k != "GEMINI_API_KEY")
            .collect();
        pairs.push(("GEMINI_API_KEY_ARN", "arn:aws:secretsmanager:x"));
        let c = reconciler(&pairs).unwrap();
        assert_eq!(
            c.gemini.api_key,
            ApiKeySource::SecretsManager {
                arn: "arn:aws:secretsmanager:x".into()
            }
        );
        pairs.push(("GEMINI_API_KEY", "k"));
        assert!(matches!(
            reconciler(&pairs).unwrap().gemini.api_key,
            ApiKeySource::SecretsManager { .. }
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod retention_config_tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    fn consumer(extra: &[(&str, &str)]) -> Result<ConsumerConfig, ConfigError> {
        let mut map: HashMap<String, String> = [
            ("RESULTS_TABLE", "results"),
            ("QUEUE_URL", "http://127.0.0.1:5000/123/q"),
            ("GEMINI_API_KEY", "k"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            map.insert((*k).to_owned(), (*v).to_owned());
        }
        ConsumerConfig::from_env(&Env::from_fn(|k| map.get(k).cloned()))
    }

    #[test]
    fn results_retention_is_off_unless_a_positive_number_of_days() {
        assert_eq!(consumer(&[]).unwrap().results_retention, None);
        for off in ["", " ", "0"] {
            let c = consumer(&[("RESULTS_RETENTION_DAYS", off)]).unwrap();
            assert_eq!(c.results_retention, None, "{off:?}");
        }
        let c = consumer(&[("RESULTS_RETENTION_DAYS", " 30 ")]).unwrap();
        assert_eq!(c.results_retention, Some(Duration::from_secs(30 * 86_400)));
        let c = consumer(&[("RESULTS_RETENTION_DAYS", "36500")]).unwrap();
        assert_eq!(
            c.results_retention,
            Some(Duration::from_secs(36_500 * 86_400))
        );
    }

    #[test]
    fn bad_results_retention_is_a_start_up_error_naming_the_variable() {
        for bad in ["-1", "7d", "1.5", "36501"] {
            let err = consumer(&[("RESULTS_RETENTION_DAYS", bad)]).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        name: "RESULTS_RETENTION_DAYS",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains("RESULTS_RETENTION_DAYS"), "{err}");
        }
    }
}
