//! Logging set-up shared by every binary: JSON lines when Lambda asks for them
//! (`LoggingConfig: JSON` sets `AWS_LAMBDA_LOG_FORMAT=JSON`) or when a CLI flag does, otherwise
//! human-readable. Level from `AWS_LAMBDA_LOG_LEVEL`, then `RUST_LOG`, default `info`.
//!
//! Metrics are CloudWatch Embedded Metric Format lines on stdout ([`EmfSink`], the Lambdas'
//! [`MetricSink`]).

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::ports::clock::{SharedClock, SystemClock};
use crate::ports::metrics::{
    DIM_FUNCTION, DIM_REASON, MetricPoint, MetricSink, Metrics, NAMESPACE,
};

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

// ---------------------------------------------------------------------------------------------
// Metrics: CloudWatch Embedded Metric Format (EMF)
// ---------------------------------------------------------------------------------------------
//
// Lambda forwards every stdout line to CloudWatch Logs, and CloudWatch Logs turns lines that
// follow the EMF specification into metrics: no agent, no PutMetricData call on the hot path, and
// the metric and its context stay in the same log event.

/// Writes each metric set as one CloudWatch Embedded Metric Format line.
pub struct EmfSink {
    function: String,
    out: Mutex<Box<dyn Write + Send>>,
    clock: SharedClock,
}

impl EmfSink {
    /// EMF lines to `writer`, with the `Function` dimension `function`.
    pub fn new(
        function: impl Into<String>,
        writer: impl Write + Send + 'static,
        clock: SharedClock,
    ) -> Self {
        Self {
            function: function.into(),
            out: Mutex::new(Box::new(writer)),
            clock,
        }
    }
}

impl MetricSink for EmfSink {
    fn emit(&self, point: &MetricPoint) {
        let line = document(point, &self.function, self.clock.now_ms()).to_string();
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        // A failing writer is ignored: metrics must never fail the work they describe.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }

    fn function(&self) -> &str {
        &self.function
    }
}

/// EMF lines on stdout for a Lambda function: the `Function` dimension is the function's name
/// (`AWS_LAMBDA_FUNCTION_NAME`), or `fallback` outside Lambda.
pub fn emf_stdout(fallback: &str) -> Metrics {
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .ok()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| fallback.to_owned());
    emf_metrics(function, std::io::stdout(), Arc::new(SystemClock))
}

/// EMF lines to any writer.
pub fn emf_metrics(
    function: impl Into<String>,
    writer: impl Write + Send + 'static,
    clock: SharedClock,
) -> Metrics {
    Metrics::with_sink(Arc::new(EmfSink::new(function, writer, clock)))
}

/// The EMF document of `point` for `function` at `timestamp_ms`.
fn document(point: &MetricPoint, function: &str, timestamp_ms: i64) -> Value {
    let mut dimension_sets = Vec::new();
    if point.reason.is_some() {
        dimension_sets.push(json!([DIM_FUNCTION, DIM_REASON]));
    }
    dimension_sets.push(json!([DIM_FUNCTION]));
    let definitions: Vec<Value> = point
        .values
        .iter()
        .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
        .collect();
    let mut root = point.properties.clone();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimension_sets,
                "Metrics": definitions,
            }],
        }),
    );
    root.insert(DIM_FUNCTION.into(), Value::from(function));
    if let Some(reason) = &point.reason {
        root.insert(DIM_REASON.into(), Value::from(reason.as_str()));
    }
    for (name, _, value) in &point.values {
        let number = if value.fract() == 0.0 && *value < 9.0e15 {
            // Whole numbers print without a trailing `.0`.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Value::from(*value as u64)
        } else {
            Value::from(*value)
        };
        root.insert((*name).to_owned(), number);
    }
    Value::Object(root)
}

/// An in-memory writer for EMF lines; clones share the buffer. For tests of every crate.
#[cfg(any(test, feature = "test-utils"))]
#[derive(Clone, Default)]
pub struct CapturedMetrics(Arc<Mutex<Vec<u8>>>);

#[cfg(any(test, feature = "test-utils"))]
impl CapturedMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// A [`Metrics`] handle writing here, with the given `Function` dimension and clock.
    pub fn metrics(&self, function: &str, clock: SharedClock) -> Metrics {
        emf_metrics(function, self.clone(), clock)
    }

    /// Every line written so far.
    pub fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Every line parsed and validated as EMF; an invalid line is an error naming it.
    pub fn documents(&self) -> Result<Vec<Value>, EmfError> {
        self.lines().iter().map(|l| validate_emf(l)).collect()
    }

    /// Sum of metric `name` over all lines, optionally only those with `Reason` = `reason`.
    /// Lines that are not valid EMF are skipped (use [`Self::documents`] to check them).
    pub fn sum(&self, name: &str, reason: Option<&str>) -> f64 {
        self.lines()
            .iter()
            .filter_map(|l| validate_emf(l).ok())
            .filter(|d| reason.is_none_or(|r| d.get(DIM_REASON).and_then(Value::as_str) == Some(r)))
            .filter_map(|d| d.get(name).and_then(Value::as_f64))
            .sum()
    }
}

#[cfg(any(test, feature = "test-utils"))]
impl Write for CapturedMetrics {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Why a line is not valid EMF.
#[cfg(any(test, feature = "test-utils"))]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid EMF line ({reason}): {line}")]
pub struct EmfError {
    pub reason: String,
    pub line: String,
}

/// Parses `line` and checks it against the EMF specification: a JSON object whose `_aws` holds a
/// numeric `Timestamp` and a non-empty `CloudWatchMetrics` list of directives, each with a
/// `Namespace`, dimension sets (1–30 names, each a top-level string member) and metric
/// definitions (each `Name` a top-level number or list of numbers, `Unit` a string if present).
#[cfg(any(test, feature = "test-utils"))]
pub fn validate_emf(line: &str) -> Result<Value, EmfError> {
    let fail = |reason: &str| EmfError {
        reason: reason.to_owned(),
        line: line.to_owned(),
    };
    let doc: Value = serde_json::from_str(line).map_err(|_| fail("not JSON"))?;
    let root = doc.as_object().ok_or_else(|| fail("not a JSON object"))?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or_else(|| fail("no `_aws` object"))?;
    if !aws.get("Timestamp").is_some_and(Value::is_i64) {
        return Err(fail("`_aws.Timestamp` is not an integer"));
    }
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| fail("`_aws.CloudWatchMetrics` is not a non-empty list"))?;
    for directive in directives {
        if !directive
            .get("Namespace")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty() && !n.starts_with("AWS/"))
        {
            return Err(fail("directive without a valid `Namespace`"));
        }
        let sets = directive
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or_else(|| fail("directive without `Dimensions`"))?;
        for set in sets {
            let names = set
                .as_array()
                .filter(|s| !s.is_empty() && s.len() <= 30)
                .ok_or_else(|| fail("a dimension set must list 1 to 30 names"))?;
            for name in names {
                let name = name
                    .as_str()
                    .ok_or_else(|| fail("dimension name is not a string"))?;
                if !root.get(name).is_some_and(Value::is_string) {
                    return Err(fail("dimension without a top-level string value"));
                }
            }
        }
        let metrics = directive
            .get("Metrics")
            .and_then(Value::as_array)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| fail("directive without metric definitions"))?;
        for m in metrics {
            let name = m
                .get("Name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| fail("metric definition without a `Name`"))?;
            if m.get("Unit").is_some_and(|u| !u.is_string()) {
                return Err(fail("metric `Unit` is not a string"));
            }
            let value_ok = match root.get(name) {
                Some(Value::Number(_)) => true,
                Some(Value::Array(items)) => {
                    !items.is_empty() && items.len() <= 100 && items.iter().all(Value::is_number)
                }
                _ => false,
            };
            if !value_ok {
                return Err(fail("metric without a top-level numeric value"));
            }
        }
    }
    Ok(doc)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ports::clock::ManualClock;
    use crate::ports::metrics::metric;

    const T: i64 = 1_795_000_000_123;

    fn captured() -> (CapturedMetrics, Metrics) {
        let cap = CapturedMetrics::new();
        let m = cap.metrics("gemini-hooks-receiver", Arc::new(ManualClock::at_ms(T)));
        (cap, m)
    }

    #[test]
    fn when_flushed_should_write_one_valid_emf_line() {
        let (cap, m) = captured();
        m.set()
            .count(metric::ROWS_INGESTED, 10)
            .count(metric::ERROR_ROWS, 2)
            .milliseconds(metric::INGEST_LAG, 1500)
            .property("job_id", "batches/x")
            .flush();
        let lines = cap.lines();
        assert_eq!(lines.len(), 1);
        let doc = validate_emf(&lines[0]).unwrap();
        let d = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["Timestamp"], T);
        assert_eq!(d["Namespace"], "GeminiHooks");
        assert_eq!(d["Dimensions"], json!([["Function"]]));
        assert_eq!(
            d["Metrics"],
            json!([
                {"Name": "RowsIngested", "Unit": "Count"},
                {"Name": "ErrorRows", "Unit": "Count"},
                {"Name": "IngestLag", "Unit": "Milliseconds"},
            ])
        );
        assert_eq!(doc["Function"], "gemini-hooks-receiver");
        assert_eq!(doc["RowsIngested"], 10);
        assert_eq!(doc["ErrorRows"], 2);
        assert_eq!(doc["IngestLag"], 1500);
        assert_eq!(doc["job_id"], "batches/x");
    }

    #[test]
    fn when_reason_given_should_publish_per_reason_and_total() {
        let (cap, m) = captured();
        m.set()
            .reason("signature_mismatch")
            .count(metric::DELIVERIES_REJECTED, 1)
            .flush();
        let doc = cap.documents().unwrap().remove(0);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function", "Reason"], ["Function"]])
        );
        assert_eq!(doc["Reason"], "signature_mismatch");
        assert_eq!(
            cap.sum(metric::DELIVERIES_REJECTED, Some("signature_mismatch")),
            1.0
        );
        assert_eq!(cap.sum(metric::DELIVERIES_REJECTED, Some("other")), 0.0);
    }

    #[test]
    fn when_name_repeats_should_sum_and_reserved_properties_are_ignored() {
        let (cap, m) = captured();
        m.set()
            .count(metric::ROWS_INGESTED, 2)
            .count(metric::ROWS_INGESTED, 3)
            .property("Function", "spoofed")
            .property("_aws", "x")
            .property(metric::ROWS_INGESTED, "x")
            .milliseconds(metric::INGEST_LAG, -5)
            .flush();
        let doc = cap.documents().unwrap().remove(0);
        assert_eq!(doc["RowsIngested"], 5);
        assert_eq!(doc["Function"], "gemini-hooks-receiver");
        assert_eq!(doc["IngestLag"], 0);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn when_empty_or_disabled_should_write_nothing() {
        let (cap, m) = captured();
        m.set().property("job_id", "x").flush();
        assert!(cap.lines().is_empty());
        let off = Metrics::disabled();
        assert!(!off.is_enabled());
        off.count(metric::DELIVERIES_ACCEPTED, 1);
        m.count(metric::DELIVERIES_ACCEPTED, 1);
        m.count(metric::DELIVERIES_DUPLICATE, 1);
        assert_eq!(cap.lines().len(), 2, "one line per flush");
        assert_eq!(cap.sum(metric::DELIVERIES_ACCEPTED, None), 1.0);
    }

    #[test]
    fn validator_rejects_what_cloudwatch_would_not_extract() {
        let good = json!({
            "_aws": {"Timestamp": T, "CloudWatchMetrics": [{"Namespace": "GeminiHooks",
                "Dimensions": [["Function"]], "Metrics": [{"Name": "A", "Unit": "Count"}]}]},
            "Function": "f", "A": 1
        });
        assert!(validate_emf(&good.to_string()).is_ok());
        fn remove(v: &mut Value, key: &str) {
            if let Some(o) = v.as_object_mut() {
                o.remove(key);
            }
        }
        type Mutation = (&'static str, fn(&mut Value));
        let mutations: Vec<Mutation> = vec![
            ("no timestamp", |v| remove(&mut v["_aws"], "Timestamp")),
            ("string timestamp", |v| {
                v["_aws"]["Timestamp"] = json!("now")
            }),
            ("no namespace", |v| {
                remove(&mut v["_aws"]["CloudWatchMetrics"][0], "Namespace");
            }),
            ("AWS/ namespace", |v| {
                v["_aws"]["CloudWatchMetrics"][0]["Namespace"] = json!("AWS/Lambda");
            }),
            ("empty directives", |v| {
                v["_aws"]["CloudWatchMetrics"] = json!([]);
            }),
            ("dimension value missing", |v| remove(v, "Function")),
            ("dimension value not a string", |v| v["Function"] = json!(3)),
            ("empty dimension set", |v| {
                v["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!([[]]);
            }),
            ("metric value missing", |v| remove(v, "A")),
            ("metric value not a number", |v| v["A"] = json!("1")),
            ("no metric definitions", |v| {
                v["_aws"]["CloudWatchMetrics"][0]["Metrics"] = json!([]);
            }),
        ];
        for (what, mutate) in mutations {
            let mut bad = good.clone();
            mutate(&mut bad);
            assert!(
                validate_emf(&bad.to_string()).is_err(),
                "{what} must be invalid"
            );
        }
        assert!(validate_emf("not json").is_err());
        assert!(validate_emf("[1]").is_err());
    }

    #[test]
    fn metric_names_are_unique() {
        let mut names = metric::ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), metric::ALL.len());
    }
}
