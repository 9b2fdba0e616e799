//! Small helpers shared by the commands: the clock, input files, text.

use std::io::Read;
use std::path::Path;

use crate::support::error::CliError;

/// Wall-clock Unix seconds.
pub fn now_secs() -> i64 {
    gemini_hooks::ports::clock::Clock::now_secs(&gemini_hooks::ports::clock::SystemClock)
}

/// Wall-clock Unix milliseconds.
pub fn now_ms() -> i64 {
    gemini_hooks::ports::clock::Clock::now_ms(&gemini_hooks::ports::clock::SystemClock)
}

/// `2026-11-22T12:00:00Z` for Unix seconds (or the number itself if out of range).
pub fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(
        || secs.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// Local-time-free, human form of epoch milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    rfc3339(ms.div_euclid(1000))
}

/// Reads a file, or stdin for `-`, as raw bytes.
pub fn read_input(path: &Path) -> Result<Vec<u8>, CliError> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| CliError::io(path, e))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| CliError::io(path, e))
}

/// Shortens `text` to at most `max` characters, on one line.
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut short: String = flat.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_flattens_and_truncates() {
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
