//! The local RSA key that signs dynamic-webhook JWTs (`send --dynamic`), and its JWKS
//! (`gemini-hooks jwks`, `dev --local-jwks`). Only for local use: it stands in for Gemini's key.

use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKey};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::error::CliError;

/// File name of the generated key inside the data directory.
pub const KEY_FILE_NAME: &str = "dynamic-signing-key.pem";
/// Size of generated keys; what Gemini's JWKS uses.
const KEY_SIZE: KeySize = KeySize::Rsa2048;
/// PEM labels: PKCS#8 (what we write), PKCS#1 (`openssl genrsa -traditional`, and keys written
/// by earlier versions), and the two public forms (SPKI, PKCS#1).
const PKCS8_PRIVATE: &str = "PRIVATE KEY";
const PKCS1_PRIVATE: &str = "RSA PRIVATE KEY";
const SPKI_PUBLIC: &str = "PUBLIC KEY";
const PKCS1_PUBLIC: &str = "RSA PUBLIC KEY";

/// A private RSA key with its key id.
pub struct LocalKey {
    pair: KeyPair,
    /// PKCS#8 DER, what the key file holds.
    pkcs8: Vec<u8>,
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
    /// A fresh key from the OS RNG (inside aws-lc).
    pub fn generate() -> Result<Self, CliError> {
        let pair =
            KeyPair::generate(KEY_SIZE).map_err(|e| key_err("cannot generate an RSA key", e))?;
        Self::from_pair(pair)
    }

    /// Parses a PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`) PEM.
    pub fn from_pem(text: &str) -> Result<Self, CliError> {
        let not_a_key = || {
            CliError::Key(
                "not an RSA private key in PEM (PKCS#1 `BEGIN RSA PRIVATE KEY` or PKCS#8 \
                 `BEGIN PRIVATE KEY`)"
                    .into(),
            )
        };
        let block = pem::parse(text).map_err(|_| not_a_key())?;
        let pair = match block.tag() {
            PKCS8_PRIVATE => KeyPair::from_pkcs8(block.contents()),
            PKCS1_PRIVATE => KeyPair::from_der(block.contents()),
            _ => return Err(not_a_key()),
        }
        .map_err(|_| not_a_key())?;
        Self::from_pair(pair)
    }

    fn from_pair(pair: KeyPair) -> Result<Self, CliError> {
        let pkcs8: Pkcs8V1Der<'static> = pair
            .as_der()
            .map_err(|e| key_err("cannot encode the key", e))?;
        let kid = thumbprint(pair.public_key());
        Ok(Self {
            pkcs8: pkcs8.as_ref().to_vec(),
            pair,
            kid,
        })
    }

    /// The key as a PKCS#8 PEM (what a generated key file holds).
    pub fn to_pem(&self) -> String {
        pem::encode_config(
            &pem::Pem::new(PKCS8_PRIVATE, self.pkcs8.clone()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
        Self::from_pem(&text).map_err(|e| CliError::Key(format!("{}: {e}", path.display())))
    }

    /// The data directory's key file (it may not exist yet).
    pub fn default_path(data_dir: &Path) -> PathBuf {
        data_dir.join(KEY_FILE_NAME)
    }

    /// `--key FILE` if given, else the data directory's key, generated on first use. Returns
    /// the key, its path and whether it was just created.
    pub fn resolve(key: Option<&Path>, data_dir: &Path) -> Result<(Self, PathBuf, bool), CliError> {
        if let Some(path) = key {
            return Ok((Self::load(path)?, path.to_path_buf(), false));
        }
        let path = Self::default_path(data_dir);
        if path.exists() {
            return Ok((Self::load(&path)?, path, false));
        }
        std::fs::create_dir_all(data_dir).map_err(|e| CliError::io(data_dir, e))?;
        let key = Self::generate()?;
        write_private(&path, key.to_pem().as_bytes())?;
        Ok((key, path, true))
    }

    /// RFC 7638 thumbprint, used as the default `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK (`kty`, `kid`, `alg`, `use`, `n`, `e`) under `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        public_jwk(self.pair.public_key(), kid)
    }

    /// A JWKS holding this key's public JWK.
    pub fn jwks(&self, kid: &str) -> Value {
        json!({ "keys": [self.jwk(kid)] })
    }

    /// A compact RS256 JWT over `claims` with `kid` in the header (RFC 7515 §3.1).
    pub fn sign_jwt(&self, kid: &str, claims: &Value) -> Result<String, CliError> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|e| key_err("cannot sign the JWT", e))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The public JWK of any RSA PEM: private (PKCS#1/#8) or public (PKCS#1 / SPKI).
pub fn public_jwk_from_pem(text: &str) -> Result<Value, CliError> {
    if let Ok(key) = LocalKey::from_pem(text) {
        return Ok(key.jwk(&key.kid));
    }
    let not_a_key = || CliError::Key("not an RSA key in PEM (private or public)".into());
    let block = pem::parse(text).map_err(|_| not_a_key())?;
    if !matches!(block.tag(), SPKI_PUBLIC | PKCS1_PUBLIC) {
        return Err(not_a_key());
    }
    // `from_der` reads both RFC 8017 (PKCS#1) and RFC 5280 (SPKI) encodings.
    let public = PublicKey::from_der(block.contents()).map_err(|_| not_a_key())?;
    let kid = thumbprint(&public);
    Ok(public_jwk(&public, &kid))
}

fn n_and_e(public: &PublicKey) -> (String, String) {
    (
        URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    )
}

fn public_jwk(public: &PublicKey, kid: &str) -> Value {
    let (n, e) = n_and_e(public);
    json!({
        "kty": "RSA",
        "kid": kid,
        "alg": "RS256",
        "use": "sig",
        "n": n,
        "e": e,
    })
}

/// RFC 7638: SHA-256 over the canonical JSON of the required members, base64url.
fn thumbprint(public: &PublicKey) -> String {
    let (n, e) = n_and_e(public);
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Writes a private key readable by the owner only (where the OS supports modes).
/// Writes a new file readable by its owner only (keys, secrets); never overwrites one.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
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
    use aws_lc_rs::encoding::PublicKeyX509Der;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::Jwk};

    const FIXTURE: &str = include_str!("../../../tests/fixtures/test-rsa-1.pem");

    fn verify(token: &str, jwk: &Value) -> jsonwebtoken::TokenData<Value> {
        let jwk: Jwk = serde_json::from_value(jwk.clone()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
            .unwrap()
    }

    #[test]
    fn signed_jwt_verifies_with_the_printed_jwk() {
        let key = LocalKey::from_pem(FIXTURE).unwrap();
        let token = key
            .sign_jwt(key.kid(), &json!({"sub": "x", "iat": 1}))
            .unwrap();
        let data = verify(&token, &key.jwk(key.kid()));
        assert_eq!(data.claims["sub"], "x");
        assert_eq!(data.header.kid.as_deref(), Some(key.kid()));
        assert_eq!(data.header.alg, Algorithm::RS256);
    }

    #[test]
    fn a_generated_key_round_trips_through_its_pkcs8_pem() {
        let key = LocalKey::generate().unwrap();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let again = LocalKey::from_pem(&pem).unwrap();
        assert_eq!(again.kid(), key.kid());
        // A token from the reloaded key verifies with the first key's JWK.
        let token = again.sign_jwt("k", &json!({"iat": 1})).unwrap();
        assert_eq!(verify(&token, &key.jwk("k")).claims["iat"], 1);
        assert_ne!(LocalKey::generate().unwrap().kid(), key.kid());
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint_and_public_pem_gives_the_same_jwk() {
        let key = LocalKey::from_pem(FIXTURE).unwrap();
        assert_eq!(key.kid().len(), 43, "base64url of 32 bytes");
        let spki: PublicKeyX509Der<'static> = key.pair.public_key().as_der().unwrap();
        let public = pem::encode(&pem::Pem::new(SPKI_PUBLIC, spki.as_ref().to_vec()));
        assert_eq!(public_jwk_from_pem(&public).unwrap(), key.jwk(key.kid()));
        let pkcs1 = pem::encode(&pem::Pem::new(
            PKCS1_PUBLIC,
            key.pair.public_key().as_ref().to_vec(),
        ));
        assert_eq!(public_jwk_from_pem(&pkcs1).unwrap(), key.jwk(key.kid()));
        assert!(public_jwk_from_pem("not a key").is_err());
        assert!(
            LocalKey::from_pem(&public).is_err(),
            "a public key cannot sign"
        );
    }

    #[test]
    fn fixture_jwk_has_a_2048_bit_modulus_and_exponent_65537() {
        let key = LocalKey::from_pem(FIXTURE).unwrap();
        assert_eq!(key.jwk("k")["e"], "AQAB");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(key.jwk("k")["n"].as_str().unwrap())
                .unwrap()
                .len(),
            256
        );
    }
}
