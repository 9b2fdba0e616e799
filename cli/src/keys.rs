//! The local RSA key that signs dynamic-webhook JWTs (`send --dynamic`), and its JWKS
//! (`gemini-hooks jwks`, `dev --local-jwks`). Only for local use: it stands in for Gemini's key.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey, LineEnding};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::CliError;

/// File name of the generated key inside the data directory.
pub const KEY_FILE_NAME: &str = "dynamic-signing-key.pem";
/// Size of generated keys; what Gemini's JWKS uses.
const KEY_BITS: usize = 2048;

/// A private RSA key with its key id.
pub struct LocalKey {
    private: RsaPrivateKey,
    pem: String,
    kid: String,
}

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn key_err(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Key(format!("{what}: {e}"))
}

impl LocalKey {
    /// A fresh key from the OS RNG.
    pub fn generate() -> Result<Self, CliError> {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, KEY_BITS)
            .map_err(|e| key_err("cannot generate an RSA key", e))?;
        Self::from_private(private)
    }

    /// Parses a PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`) PEM.
    pub fn from_pem(text: &str) -> Result<Self, CliError> {
        let private = RsaPrivateKey::from_pkcs1_pem(text)
            .or_else(|_| RsaPrivateKey::from_pkcs8_pem(text))
            .map_err(|_| {
                CliError::Key(
                    "not an RSA private key in PEM (PKCS#1 `BEGIN RSA PRIVATE KEY` or PKCS#8 \
                     `BEGIN PRIVATE KEY`)"
                        .into(),
                )
            })?;
        Self::from_private(private)
    }

    fn from_private(private: RsaPrivateKey) -> Result<Self, CliError> {
        let pem = private
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|e| key_err("cannot encode the key", e))?
            .to_string();
        let kid = thumbprint(&RsaPublicKey::from(&private));
        Ok(Self { private, pem, kid })
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
        Self::from_pem(&text).map_err(|e| CliError::Key(format!("{}: {e}", path.display())))
    }

    /// `--key FILE` if given, else the data directory's key, generated on first use. Returns
    /// the key, its path and whether it was just created.
    pub fn resolve(key: Option<&Path>, data_dir: &Path) -> Result<(Self, PathBuf, bool), CliError> {
        if let Some(path) = key {
            return Ok((Self::load(path)?, path.to_path_buf(), false));
        }
        let path = data_dir.join(KEY_FILE_NAME);
        if path.exists() {
            return Ok((Self::load(&path)?, path, false));
        }
        std::fs::create_dir_all(data_dir).map_err(|e| CliError::io(data_dir, e))?;
        let key = Self::generate()?;
        write_private(&path, key.pem.as_bytes())?;
        Ok((key, path, true))
    }

    /// RFC 7638 thumbprint, used as the default `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK (`kty`, `kid`, `alg`, `use`, `n`, `e`) under `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        public_jwk(&RsaPublicKey::from(&self.private), kid)
    }

    /// A JWKS holding this key's public JWK.
    pub fn jwks(&self, kid: &str) -> Value {
        json!({ "keys": [self.jwk(kid)] })
    }

    /// A compact RS256 JWT over `claims` with `kid` in the header.
    pub fn sign_jwt(&self, kid: &str, claims: &Value) -> Result<String, CliError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        let key = EncodingKey::from_rsa_pem(self.pem.as_bytes())
            .map_err(|e| key_err("cannot use the key for signing", e))?;
        jsonwebtoken::encode(&header, claims, &key).map_err(|e| key_err("cannot sign the JWT", e))
    }
}

/// The public JWK of any RSA PEM: private (PKCS#1/#8) or public (PKCS#1 / SPKI).
pub fn public_jwk_from_pem(text: &str) -> Result<Value, CliError> {
    if let Ok(key) = LocalKey::from_pem(text) {
        return Ok(key.jwk(&key.kid));
    }
    let public = RsaPublicKey::from_public_key_pem(text)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(text))
        .map_err(|_| CliError::Key("not an RSA key in PEM (private or public)".into()))?;
    let kid = thumbprint(&public);
    Ok(public_jwk(&public, &kid))
}

fn public_jwk(public: &RsaPublicKey, kid: &str) -> Value {
    json!({
        "kty": "RSA",
        "kid": kid,
        "alg": "RS256",
        "use": "sig",
        "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    })
}

/// RFC 7638: SHA-256 over the canonical JSON of the required members, base64url.
fn thumbprint(public: &RsaPublicKey) -> String {
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Writes a private key readable by the owner only (where the OS supports modes).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| CliError::io(path, e))?;
    file.write_all(bytes).map_err(|e| CliError::io(path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, jwk::Jwk};

    const FIXTURE: &str = include_str!("../../tests/fixtures/test-rsa-1.pem");

    #[test]
    fn signed_jwt_verifies_with_the_printed_jwk() {
        let key = LocalKey::from_pem(FIXTURE).unwrap();
        let token = key
            .sign_jwt(key.kid(), &json!({"sub": "x", "iat": 1}))
            .unwrap();
        let jwk: Jwk = serde_json::from_value(key.jwk(key.kid())).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(
            &token,
            &DecodingKey::from_jwk(&jwk).unwrap(),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "x");
        assert_eq!(data.header.kid.as_deref(), Some(key.kid()));
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint_and_public_pem_gives_the_same_jwk() {
        let key = LocalKey::from_pem(FIXTURE).unwrap();
        assert_eq!(key.kid().len(), 43, "base64url of 32 bytes");
        let public = rsa::pkcs8::EncodePublicKey::to_public_key_pem(
            &RsaPublicKey::from(&key.private),
            LineEnding::LF,
        )
        .unwrap();
        assert_eq!(public_jwk_from_pem(&public).unwrap(), key.jwk(key.kid()));
        assert!(public_jwk_from_pem("not a key").is_err());
    }
}
