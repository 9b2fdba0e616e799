//! Dynamic-webhook test support: RSA test keys (fixtures), RS256 token signing and a JWKS
//! served by a real local HTTP server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::signature::KeyPair as _;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The two fixture keys.
pub const KEY_1_PEM: &str = include_str!("../fixtures/test-rsa-1.pem");
pub const KEY_2_PEM: &str = include_str!("../fixtures/test-rsa-2.pem");

/// A signing key with its key id.
#[derive(Clone)]
pub struct TestSigner {
    pub kid: String,
    pem: String,
}

impl TestSigner {
    pub fn new(kid: &str, pem: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            pem: pem.to_owned(),
        }
    }

    /// The public JWK of this key (`kty`, `n`, `e`, `kid`, `alg`, `use`).
    pub fn jwk(&self) -> Value {
        let public = public_key(&self.pem);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        json!({
            "kty": "RSA",
            "kid": self.kid,
            "alg": "RS256",
            "use": "sig",
            "n": b64.encode(public.modulus().big_endian_without_leading_zero()),
            "e": b64.encode(public.exponent().big_endian_without_leading_zero()),
        })
    }

    /// A compact RS256 JWT over `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        let key = match EncodingKey::from_rsa_pem(self.pem.as_bytes()) {
            Ok(k) => k,
            Err(e) => panic!("fixture key must load: {e}"),
        };
        match jsonwebtoken::encode(&header, claims, &key) {
            Ok(t) => t,
            Err(e) => panic!("signing failed: {e}"),
        }
    }
}

/// The public key of a PKCS#1 (`BEGIN RSA PRIVATE KEY`) fixture.
pub fn public_key(pkcs1_pem: &str) -> aws_lc_rs::rsa::PublicKey {
    let block = match pem::parse(pkcs1_pem) {
        Ok(b) => b,
        Err(e) => panic!("fixture key must be PEM: {e}"),
    };
    match aws_lc_rs::rsa::KeyPair::from_der(block.contents()) {
        Ok(pair) => pair.public_key().clone(),
        Err(e) => panic!("fixture key must parse: {e}"),
    }
}

/// The SPKI (`BEGIN PUBLIC KEY`) PEM of a PKCS#1 fixture's public key.
pub fn public_key_pem(pkcs1_pem: &str) -> String {
    use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
    let spki: PublicKeyX509Der<'static> = match public_key(pkcs1_pem).as_der() {
        Ok(d) => d,
        Err(e) => panic!("public key must encode: {e}"),
    };
    pem::encode_config(
        &pem::Pem::new("PUBLIC KEY", spki.as_ref().to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

#[derive(Clone, Default)]
struct JwksState {
    jwks: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

/// A JWKS endpoint on 127.0.0.1.
#[derive(Clone)]
pub struct JwksServer {
    url: String,
    state: JwksState,
}

impl JwksServer {
    /// Serves a JWKS holding the public keys of `signers`.
    pub async fn start(signers: &[&TestSigner]) -> Self {
        let state = JwksState::default();
        let app = Router::new()
            .route("/.well-known/jwks.json", get(serve_jwks))
            .with_state(state.clone());
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("addr: {e}"),
        };
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let server = Self {
            url: format!("http://{addr}/.well-known/jwks.json"),
            state,
        };
        server.set_keys(signers);
        server
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Replaces the served keys (rotation).
    pub fn set_keys(&self, signers: &[&TestSigner]) {
        let keys: Vec<Value> = signers.iter().map(|s| s.jwk()).collect();
        if let Ok(mut guard) = self.state.jwks.lock() {
            *guard = json!({ "keys": keys });
        }
    }

    /// How many times the JWKS was fetched.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
}

async fn serve_jwks(State(state): State<JwksState>) -> axum::Json<Value> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let body = state.jwks.lock().map(|g| g.clone()).unwrap_or(Value::Null);
    axum::Json(body)
}

/// Dynamic verification against the JWKS at `url` for `audiences`, with the default rules: what
/// the receiver builds from `WEBHOOK_JWKS_URL` and `WEBHOOK_JWT_AUDIENCE`.
pub fn http_dynamic(
    url: &str,
    audiences: &[&str],
) -> gemini_hooks::usecases::verify::DynamicVerifier {
    use gemini_hooks::adapters::jwks::{HttpJwks, JwksSettings};
    use gemini_hooks::domain::verify::jwt::JwtRules;
    gemini_hooks::usecases::verify::DynamicVerifier {
        rules: JwtRules::new(audiences.iter().map(|a| (*a).to_owned()).collect()),
        keys: Arc::new(HttpJwks::new(
            JwksSettings::new(url),
            reqwest::Client::new(),
        )),
    }
}
