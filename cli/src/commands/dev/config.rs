//! How `dev` reads its configuration: the way the Lambdas do, one way. The flags that stand for
//! an environment variable (`--secret`, and what `--local-jwks` implies) become overrides keyed
//! by the `gemini_hooks::config::env` names, layered over the process environment, and the
//! library's own readers (`VerifierConfig`, `ReceiveLimits`, `GeminiConfig`, `route_tables`)
//! read the result, with the same validation and the same error messages. The flags that are
//! `dev`'s own (queue visibility, receive count, concurrency) stand for no variable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use gemini_hooks::adapters::gemini::ApiKey;
use gemini_hooks::config::{
    ApiKeySource, ConfigError, Env, GeminiConfig, ReceiveLimits, RouteTables, VerifierConfig, env,
    route_tables,
};
use gemini_hooks::domain::verify::standard::parse_secret_list;
use serde_json::Value;

use super::args::DevArgs;
use super::notify::NotifySetup;
use crate::support::args::LOCAL_AUDIENCE;
use crate::support::error::CliError;
use crate::support::keys::LocalKey;
use crate::support::sample_gemini::{self, SAMPLE_API_KEY};

/// The consumer's side of the configuration.
#[derive(Debug, Clone)]
pub struct ConsumerSetup {
    /// Where the Gemini API is and its key (always a value here: `dev` never reads AWS).
    pub gemini: GeminiConfig,
    pub routes: RouteTables,
}

impl ConsumerSetup {
    /// The bundled SAMPLE endpoint at `base_url` (`dev --sample-gemini`, `demo`).
    pub fn sample(base_url: String, routes: RouteTables) -> Self {
        Self {
            gemini: GeminiConfig {
                base_url,
                api_key: ApiKeySource::Value(ApiKey::new(SAMPLE_API_KEY)),
            },
            routes,
        }
    }

    /// The Gemini API key. `dev` reads it from `GEMINI_API_KEY` only (it hides
    /// `GEMINI_API_KEY_ARN` from the reader), so a Secrets Manager source is a usage error.
    pub(super) fn api_key(&self) -> Result<ApiKey, CliError> {
        match &self.gemini.api_key {
            ApiKeySource::Value(key) => Ok(key.clone()),
            ApiKeySource::SecretsManager { .. } => Err(CliError::Usage(format!(
                "`gemini-hooks dev` reads the Gemini API key from {}, not from {}",
                env::GEMINI_API_KEY,
                env::GEMINI_API_KEY_ARN
            ))),
        }
    }
}

/// Everything a local pipeline needs, already validated.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub data_dir: PathBuf,
    pub verifier: VerifierConfig,
    pub limits: ReceiveLimits,
    /// `None`: receive and queue only.
    pub consumer: Option<ConsumerSetup>,
    /// A JWKS to serve at `/.well-known/jwks.json` (`--local-jwks`).
    pub local_jwks: Option<Value>,
    pub visibility_ms: i64,
    pub max_receive_count: u32,
    pub concurrency: usize,
    /// `--notify-url`: where finished jobs' events are POSTed.
    pub notify: Option<NotifySetup>,
}

impl PipelineConfig {
    /// Reads the flags and the environment. `addr` is the bound address, which the local JWKS
    /// URL of `--local-jwks` names. With `--sample-gemini` this starts the sample endpoint.
    pub(super) async fn read(args: &DevArgs, addr: SocketAddr) -> Result<Self, CliError> {
        let mut overrides = Overrides::default();
        if let Some(secret) = secret_flag(args.secret.as_deref())? {
            overrides.set(env::WEBHOOK_SIGNING_SECRETS, secret);
        }
        let local_jwks = if args.local_jwks {
            let (key, path, created) = LocalKey::resolve(None, &args.data.data_dir)?;
            if created {
                tracing::info!(path = %path.display(), "generated a local dynamic-signing key");
            }
            overrides.set(
                env::WEBHOOK_JWKS_URL,
                format!("http://{addr}/.well-known/jwks.json"),
            );
            // Dynamic mode needs an audience; locally it is the one `send --dynamic` signs for,
            // unless the operator chose another.
            overrides.set_if_unset(env::WEBHOOK_JWT_AUDIENCE, LOCAL_AUDIENCE);
            Some(key.jwks(key.kid()))
        } else {
            None
        };
        // The key comes from GEMINI_API_KEY: `dev` does not call AWS, so the Lambdas'
        // GEMINI_API_KEY_ARN is not read here.
        overrides.unset(env::GEMINI_API_KEY_ARN);
        let env = overrides.over_process();
        let verifier = VerifierConfig::from_env(&env, None).map_err(secrets_hint)?;
        let limits = ReceiveLimits::from_env(&env)?;
        let notify = args
            .notify_url
            .as_deref()
            .map(|url| NotifySetup::resolve(url, &args.data.data_dir))
            .transpose()?;
        let consumer = if args.receive_only {
            None
        } else if args.sample_gemini {
            let (url, _) = sample_gemini::start().await?;
            Some(ConsumerSetup::sample(url, route_tables(&env)?))
        } else {
            Some(consumer_setup(&env)?)
        };
        Ok(Self {
            data_dir: args.data.data_dir.clone(),
            verifier,
            limits,
            consumer,
            local_jwks,
            visibility_ms: i64::try_from(args.visibility_timeout.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            max_receive_count: args.max_receive_count,
            concurrency: args.concurrency,
            notify,
        })
    }
}

/// Values that win over the process environment, keyed by the variable they stand for.
#[derive(Debug, Default)]
struct Overrides(HashMap<&'static str, String>);

impl Overrides {
    fn set(&mut self, name: &'static str, value: String) {
        self.0.insert(name, value);
    }

    /// Sets `name` unless the environment already gives it a (non-blank) value.
    fn set_if_unset(&mut self, name: &'static str, value: &str) {
        if Env::process().optional(name).is_none() {
            self.set(name, value.to_owned());
        }
    }

    /// Hides `name` from the readers: [`Env`] counts an empty value as unset.
    fn unset(&mut self, name: &'static str) {
        self.set(name, String::new());
    }

    /// The environment the readers see: these values first, then the process environment.
    fn over_process(self) -> Env<'static> {
        Env::from_fn(move |name| {
            self.0
                .get(name)
                .cloned()
                .or_else(|| std::env::var(name).ok())
        })
    }
}

/// Reads the consumer's variables (`GEMINI_API_KEY`, `GEMINI_API_BASE_URL`, `ROUTES`).
fn consumer_setup(env: &Env<'_>) -> Result<ConsumerSetup, CliError> {
    let gemini = GeminiConfig::from_env(env, None).map_err(|e| match e {
        ConfigError::Missing(_) => CliError::Config(
            e,
            Some(
                "the consumer fetches batch results with it; run with --receive-only to only \
                 receive and queue"
                    .into(),
            ),
        ),
        other => other.into(),
    })?;
    Ok(ConsumerSetup {
        gemini,
        routes: route_tables(env)?,
    })
}

fn secrets_hint(e: ConfigError) -> CliError {
    let hint = match &e {
        ConfigError::Missing(_) | ConfigError::NoVerification => Some(
            "export WEBHOOK_SIGNING_SECRETS=$(gemini-hooks secret) — or pass --secret — and use \
             the same value with `gemini-hooks send`",
        ),
        ConfigError::Invalid { name, .. } if *name == env::WEBHOOK_SIGNING_SECRETS => Some(
            "`gemini-hooks secret` prints a valid new one (whsec_ + base64 of 24 to 64 random \
             bytes)",
        ),
        _ => None,
    };
    CliError::Config(e, hint.map(str::to_owned))
}

/// `--secret`, checked on its own so an error names the flag, not the variable it overrides.
fn secret_flag(flag: Option<&str>) -> Result<Option<String>, CliError> {
    let Some(secret) = flag.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    parse_secret_list(secret).map_err(|e| {
        CliError::Usage(format!(
            "--secret: {e}\n  hint: `gemini-hooks secret` prints a valid new one"
        ))
    })?;
    Ok(Some(secret.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_and_an_unset_one_hides_the_variable() {
        let mut o = Overrides::default();
        o.set(env::ROUTES, r#"{"g":"t"}"#.into());
        o.unset(env::GEMINI_API_KEY_ARN);
        let env = o.over_process();
        assert_eq!(env.optional(env::ROUTES).as_deref(), Some(r#"{"g":"t"}"#));
        assert_eq!(env.optional(env::GEMINI_API_KEY_ARN), None);
    }
}
