//! The consumer under test, built in one place: the library's [`Consumer`] with the real
//! [`GeminiClient`] and the real [`DynamoDbResultsStore`], pointed at local endpoints.
//!
//! Knobs given are set from [`Knobs`]; everything else stays at `ConsumeSettings::default()`,
//! which is what the Lambda runs with (`wiring::aws_consumer`).

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use gemini_hooks::adapters::aws::dynamodb_results::DynamoDbResultsStore;
use gemini_hooks::adapters::gemini::{GeminiClient, GeminiSettings};
use gemini_hooks::ports::ResultsStore;
use gemini_hooks::ports::clock::SystemClock;
use gemini_hooks::usecases::consume::{ConsumeSettings, Consumer};
use gemini_hooks::usecases::routes::Routes;
use gemini_hooks_tests::fake_gemini::FakeGemini;

use crate::{Args, BenchError};

/// The results table the consumer writes to (the stand-in serves any name).
pub const TABLE: &str = "gemini-hooks-results-bench";

/// Consumer settings a benchmark run may change; `None` keeps the library's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Knobs {
    /// `--rows-per-write`: rows per `put_rows` call (`ConsumeSettings::rows_per_write`).
    pub rows_per_write: Option<u64>,
    /// `--max-concurrency`: messages of one batch handled at once
    /// (`ConsumeSettings::max_concurrency`).
    pub max_concurrency: Option<u64>,
    /// `--writes-in-flight`: `BatchWriteItem` calls in flight at once
    /// (`ConsumeSettings::writes_in_flight`, `CONSUMER_WRITES_IN_FLIGHT` in the Lambda).
    pub writes_in_flight: Option<u64>,
}

impl Knobs {
    const NAMES: [&'static str; 3] = ["rows-per-write", "max-concurrency", "writes-in-flight"];

    pub fn from_args(args: &Args) -> Result<Self, BenchError> {
        let get = |name: &str| -> Result<Option<u64>, BenchError> {
            match args.get(name) {
                None | Some("") => Ok(None),
                Some(v) => crate::parse_number(v).map(Some),
            }
        };
        Ok(Self {
            rows_per_write: get(Self::NAMES[0])?,
            max_concurrency: get(Self::NAMES[1])?,
            writes_in_flight: get(Self::NAMES[2])?,
        })
    }

    /// The same knobs as arguments for a child process.
    pub fn to_args(&self) -> Vec<String> {
        let values = [
            self.rows_per_write,
            self.max_concurrency,
            self.writes_in_flight,
        ];
        Self::NAMES
            .iter()
            .zip(values)
            .filter_map(|(name, v)| v.map(|v| [format!("--{name}"), v.to_string()]))
            .flatten()
            .collect()
    }
}

fn usize_of(v: u64, name: &str) -> Result<usize, BenchError> {
    usize::try_from(v)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| BenchError::Usage(format!("--{name} must be a positive count")))
}

/// The settings the measured consumer runs with: the library's defaults, changed only by the
/// knobs given.
pub fn consume_settings(knobs: &Knobs) -> Result<ConsumeSettings, BenchError> {
    let defaults = ConsumeSettings::default();
    let settings = ConsumeSettings {
        rows_per_write: match knobs.rows_per_write {
            Some(n) => usize_of(n, "rows-per-write")?,
            None => defaults.rows_per_write,
        },
        max_concurrency: match knobs.max_concurrency {
            Some(n) => usize_of(n, "max-concurrency")?,
            None => defaults.max_concurrency,
        },
        writes_in_flight: match knobs.writes_in_flight {
            Some(n) => usize_of(n, "writes-in-flight")?,
            None => defaults.writes_in_flight,
        },
        ..defaults
    };
    Ok(settings)
}

/// A DynamoDB client for the endpoint at `url`: static dummy credentials, `us-east-1`, otherwise
/// the SDK's defaults (what the Lambda gets from `aws_config::defaults`).
pub async fn dynamodb_client(url: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

/// The consumer under test and the store it writes to.
pub struct UnderTest {
    pub consumer: Arc<Consumer>,
    pub store: Arc<dyn ResultsStore>,
    pub settings: ConsumeSettings,
}

/// The real consumer: the Gemini client on the fake Gemini API at `gemini_url`, the DynamoDB
/// results adapter on the endpoint at `dynamodb_url`. No metrics (their EMF lines would go to
/// stdout, where the measured child prints its result) and no continuation queue (no deadline).
pub async fn dynamodb_consumer(
    gemini_url: &str,
    dynamodb_url: &str,
    knobs: &Knobs,
) -> Result<UnderTest, BenchError> {
    let settings = consume_settings(knobs)?;
    let mut gemini = GeminiSettings::new(FakeGemini::API_KEY);
    gemini.base_url = gemini_url.to_owned();
    let http = gemini_hooks::wiring::http_client()
        .map_err(|e| BenchError::Failed(format!("HTTP client: {e}")))?;
    let store: Arc<dyn ResultsStore> = Arc::new(DynamoDbResultsStore::new(
        dynamodb_client(dynamodb_url).await,
        TABLE,
    ));
    let consumer = Consumer::new(
        Arc::new(GeminiClient::new(gemini, http)),
        Routes::single(Arc::clone(&store)),
        Arc::new(crate::workload::NoQueue),
        Arc::new(SystemClock),
        settings,
    );
    Ok(UnderTest {
        consumer: Arc::new(consumer),
        store,
        settings,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn knobs_round_trip_through_arguments() {
        let args = Args::parse(
            ["--rows-per-write", "100", "--max-concurrency=2", "--x", "1"]
                .iter()
                .map(|s| (*s).to_owned()),
        )
        .unwrap();
        let knobs = Knobs::from_args(&args).unwrap();
        assert_eq!(knobs.rows_per_write, Some(100));
        assert_eq!(knobs.max_concurrency, Some(2));
        assert_eq!(knobs.writes_in_flight, None);
        let again = Knobs::from_args(&Args::parse(knobs.to_args()).unwrap()).unwrap();
        assert_eq!(again, knobs);
        let settings = consume_settings(&knobs).unwrap();
        assert_eq!(settings.rows_per_write, 100);
        assert_eq!(settings.max_concurrency, 2);
        assert_eq!(
            settings.checkpoint_every_lines,
            ConsumeSettings::default().checkpoint_every_lines
        );
    }

    #[test]
    fn an_empty_knob_keeps_the_default() {
        let args = Args::parse(["--writes-in-flight", ""].iter().map(|s| (*s).to_owned())).unwrap();
        assert_eq!(Knobs::from_args(&args).unwrap(), Knobs::default());
    }
}
