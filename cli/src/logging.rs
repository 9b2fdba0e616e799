//! Logging for the CLI: like `gemini_hooks::adapters::telemetry` (stderr, JSON or text, `RUST_LOG`
//! wins), but with a default level per command, so tools stay quiet and `dev` talks.

use gemini_hooks::adapters::telemetry::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber on stderr; stdout stays the command's own output.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
