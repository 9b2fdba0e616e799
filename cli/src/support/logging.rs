//! Logging for the CLI: like `gemini_hooks::adapters::telemetry` (stderr, JSON or text, `RUST_LOG`
//! wins), but with a default level per command, so tools stay quiet and `dev` talks.

use std::io::IsTerminal;

use gemini_hooks::adapters::telemetry::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber on stderr; stdout stays the command's own output.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: a log redirected to a file or a pipe
        // must stay plain text (NO_COLOR is honoured too).
        .with_ansi(colours(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
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

/// Whether to colour the log: only on a terminal, and never with `NO_COLOR` set (no-color.org).
fn colours(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(colours(true, Some("".into())));
        assert!(!colours(true, Some("1".into())));
        assert!(!colours(false, None));
    }
}
