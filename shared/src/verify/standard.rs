//! Standard Webhooks (static) verification.
