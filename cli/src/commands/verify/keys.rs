//! Where `verify` finds the keys of dynamic (JWT) deliveries: a JWKS file (`--jwks FILE`), an
//! RSA key (`--key FILE`), both read into a fixed key set with no network, or a JWKS URL
//! (`--jwks-url`, default Gemini's), fetched like the receiver does.

use std::sync::Arc;

use gemini_hooks::adapters::jwks::{DEFAULT_JWKS_URL, JwksSettings, StaticJwks};
use gemini_hooks::config::JwtConfig;
use gemini_hooks::domain::verify::jwt::JwtRules;
use gemini_hooks::ports::keys::KeySource;
use serde_json::Value;

use super::args::VerifyArgs;
use crate::support::error::CliError;
use crate::support::keys::public_jwk_from_pem;
use crate::support::util::read_input;

/// How dynamic deliveries are checked: the claims policy and where the keys are.
#[derive(Debug, Clone)]
pub struct JwtInput {
    pub rules: JwtRules,
    pub keys: Keys,
}

/// Where `verify` finds the JWT keys.
#[derive(Debug, Clone)]
pub enum Keys {
    /// A JWKS endpoint (`--jwks-url`, default Gemini's).
    Url(String),
    /// A fixed set read from a file (`--jwks FILE`, `--key FILE`): no network.
    Static(StaticJwks),
}

impl Keys {
    pub(super) fn describe(&self) -> String {
        match self {
            Self::Url(url) => format!("the JWKS at {url}"),
            Self::Static(set) => set.describe(),
        }
    }

    /// The fixed key set, if any; `None` leaves the verifier to fetch [`Self::settings`]'s URL.
    pub(super) fn fixed(&self) -> Option<Arc<dyn KeySource>> {
        match self {
            Self::Url(_) => None,
            Self::Static(set) => Some(Arc::new(set.clone())),
        }
    }

    /// Where the verifier fetches keys when they are not fixed.
    fn settings(&self) -> JwksSettings {
        match self {
            Self::Url(url) => JwksSettings::new(url.clone()),
            Self::Static(_) => JwksSettings::new(DEFAULT_JWKS_URL),
        }
    }
}

impl JwtInput {
    /// The dynamic-mode configuration the composition root builds a verifier from.
    pub(super) fn config(&self) -> JwtConfig {
        JwtConfig {
            rules: self.rules.clone(),
            jwks: self.keys.settings(),
        }
    }
}

/// Reads `--jwks FILE`, else `--key FILE`, else `--jwks-url`, and the claims policy
/// (`--audience`, `--issuer`, `--tolerance`).
pub(super) fn jwt_input(args: &VerifyArgs) -> Result<JwtInput, CliError> {
    let keys = if let Some(path) = &args.jwks {
        let text = read_input(path)?;
        let is_jwks = serde_json::from_slice::<Value>(&text)
            .ok()
            .is_some_and(|v| v.get("keys").is_some_and(Value::is_array));
        if !is_jwks {
            return Err(CliError::Usage(format!(
                "{}: not a JWKS (`{{\"keys\": [...]}}`)",
                path.display()
            )));
        }
        Keys::Static(
            StaticJwks::from_json(&text, format!("the JWKS file {}", path.display()))
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?,
        )
    } else if let Some(path) = &args.key {
        let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
        let jwk = public_jwk_from_pem(&text)
            .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
        let set = serde_json::json!({ "keys": [jwk] }).to_string();
        Keys::Static(
            StaticJwks::from_json(set.as_bytes(), format!("the key {}", path.display()))
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?,
        )
    } else {
        Keys::Url(
            args.jwks_url
                .clone()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_JWKS_URL.to_owned()),
        )
    };
    let audiences = args
        .audience
        .iter()
        .flat_map(|a| a.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    let mut rules = JwtRules::new(audiences);
    rules.issuer = args.issuer.clone().filter(|a| !a.trim().is_empty());
    rules.future_tolerance_secs = args.tolerance;
    Ok(JwtInput { rules, keys })
}
