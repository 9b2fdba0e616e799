//! RS256 JWT verification against a JWKS (dynamic webhooks).
