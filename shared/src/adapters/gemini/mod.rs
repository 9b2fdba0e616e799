//! HTTP adapters for the Gemini API: [`client::GeminiClient`] implements the
//! [`crate::ports::gemini::GeminiApi`] port (retries, error classes, the streamed download);
//! [`webhooks::WebhookClient`] manages registered webhooks (the CLI's `webhooks` command) with
//! the same HTTP conventions.

pub mod client;
mod download;
mod http;
pub mod settings;
#[cfg(feature = "webhook-admin")]
mod webhook_model;
#[cfg(feature = "webhook-admin")]
pub mod webhooks;

pub use client::GeminiClient;
pub use settings::{ApiKey, GeminiSettings, RetryPolicy};
#[cfg(feature = "webhook-admin")]
pub use webhooks::{
    CreatedWebhook, NewWebhook, RevocationBehavior, Rotation, Webhook, WebhookClient, WebhookPage,
    WebhookSecret, WebhookState,
};

/// Production endpoint of the Gemini Developer API.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";
