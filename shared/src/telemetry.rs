//! Logging set-up shared by every binary: JSON lines when Lambda asks for them
//! (`LoggingConfig: JSON` sets `AWS_LAMBDA_LOG_FORMAT=JSON`) or when a CLI flag does, otherwise
//! human-readable. Level from `AWS_LAMBDA_LOG_LEVEL`, then `RUST_LOG`, default `info`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    /// JSON when the Lambda runtime environment asks for it.
    pub fn from_lambda_env() -> Self {
        match std::env::var("AWS_LAMBDA_LOG_FORMAT") {
            Ok(v) if v.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Text,
        }
    }
}

/// Installs the global subscriber, writing to stderr (Lambda sends it to CloudWatch like stdout,
/// and the CLI keeps stdout for its own output). Later calls are ignored.
pub fn init_logging(format: LogFormat) {
    let filter = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|level| EnvFilter::new(level.to_ascii_lowercase()))
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_target(false)
            .try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}
