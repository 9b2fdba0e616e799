//! Metrics as the use cases emit them: named counts and durations with an optional `Reason`
//! dimension and searchable properties, flushed together. Where they go is the [`MetricSink`]'s
//! business (CloudWatch Embedded Metric Format lines on stdout in the Lambdas:
//! `adapters::telemetry`; nowhere in local mode).

use std::sync::Arc;

use serde_json::{Map, Value};

/// CloudWatch namespace of every metric (contract: the template's alarms and dashboard use it).
pub const NAMESPACE: &str = "GeminiHooks";
/// Dimension naming the emitting function (its Lambda function name, so several stacks in one
/// account never mix and alarms can reference `!Ref <Function>`).
pub const DIM_FUNCTION: &str = "Function";
/// Dimension with a stable reason code (rejections, message failures).
pub const DIM_REASON: &str = "Reason";

/// Metric names (the template's alarms and dashboard use the same strings).
pub mod metric {
    /// Receiver: first valid delivery, durably enqueued.
    pub const DELIVERIES_ACCEPTED: &str = "DeliveriesAccepted";
    /// Receiver: valid delivery whose id was already enqueued.
    pub const DELIVERIES_DUPLICATE: &str = "DeliveriesDuplicate";
    /// Receiver: any non-2xx answer, with a `Reason` dimension (the error code).
    pub const DELIVERIES_REJECTED: &str = "DeliveriesRejected";
    /// Receiver: a verified delivery reused an enqueued id with another body (answered as a
    /// duplicate; nothing enqueued).
    pub const DELIVERIES_CONFLICTING: &str = "DeliveriesConflicting";
    /// Receiver: the queue refused a verified, claimed delivery (answered 503).
    pub const ENQUEUE_FAILURES: &str = "EnqueueFailures";
    /// Consumer: rows written for a finished job (all statuses).
    pub const ROWS_INGESTED: &str = "RowsIngested";
    /// Consumer: rows holding a per-request `error` line.
    pub const ERROR_ROWS: &str = "ErrorRows";
    /// Consumer: lines that could not be parsed.
    pub const MALFORMED_ROWS: &str = "MalformedRows";
    pub const JOBS_SUCCEEDED: &str = "JobsSucceeded";
    pub const JOBS_FAILED: &str = "JobsFailed";
    pub const JOBS_EXPIRED: &str = "JobsExpired";
    pub const JOBS_CANCELLED: &str = "JobsCancelled";
    /// Consumer: milliseconds from the receiver accepting the event to the results being stored.
    pub const INGEST_LAG: &str = "IngestLag";
    /// Consumer: a queue message was left for redelivery, with a `Reason` dimension. The consumer
    /// reports partial batch failures, so Lambda's own `Errors` metric never sees these.
    pub const MESSAGES_FAILED: &str = "MessagesFailed";
    /// Consumer: an event the Gemini API contradicts (another state, or no such job in this
    /// project): logged and counted, never recorded. Forged or stale events show up here.
    pub const EVENTS_CONTRADICTED: &str = "EventsContradicted";
    /// Consumer: a downstream event (`Gemini Job Finished`) was published.
    pub const EVENTS_PUBLISHED: &str = "EventsPublished";
    /// Consumer: publishing a downstream event failed; the message is retried.
    pub const EVENT_PUBLISH_FAILURES: &str = "EventPublishFailures";
    /// Consumer: rows a re-ingest (`gemini-hooks reingest`) wrote again.
    pub const ROWS_REWRITTEN: &str = "RowsRewritten";
    /// Consumer: a generated video was copied into the output store (`OUTPUT_BUCKET`).
    pub const VIDEOS_STORED: &str = "VideosStored";
    /// Reconciler: finished batches examined in the look-back window.
    pub const BATCHES_SCANNED: &str = "BatchesScanned";
    /// Reconciler: a finished batch no webhook had reported was enqueued (a missed delivery).
    pub const BATCHES_RECOVERED: &str = "BatchesRecovered";
    /// Reconciler: a batch could not be checked or enqueued in this run.
    pub const RECONCILE_FAILURES: &str = "ReconcileFailures";
    /// Reconciler: registered webhooks Gemini set to `disabled_due_to_failed_deliveries` (it
    /// stopped delivering to them). Emitted on every run whose webhook check worked, 0 included,
    /// so its alarm returns to OK once the webhook is enabled again.
    pub const WEBHOOKS_DISABLED: &str = "WebhooksDisabled";
    /// Reconciler: the webhook list could not be read in this run (1) or could (0); the reason
    /// is the `webhook_check_error` property. The rest of the run is unaffected.
    pub const WEBHOOK_CHECKS_FAILED: &str = "WebhookChecksFailed";
    /// Reconciler: batches still pending or running `LATE_BATCH_HOURS` after their creation.
    /// Emitted on every run while the check is on, 0 included.
    pub const BATCHES_LATE: &str = "BatchesLate";

    /// Every metric name, for checks that the template only references metrics that exist.
    pub const ALL: &[&str] = &[
        DELIVERIES_ACCEPTED,
        DELIVERIES_DUPLICATE,
        DELIVERIES_REJECTED,
        DELIVERIES_CONFLICTING,
        ENQUEUE_FAILURES,
        ROWS_INGESTED,
        ERROR_ROWS,
        MALFORMED_ROWS,
        JOBS_SUCCEEDED,
        JOBS_FAILED,
        JOBS_EXPIRED,
        JOBS_CANCELLED,
        INGEST_LAG,
        MESSAGES_FAILED,
        EVENTS_CONTRADICTED,
        EVENTS_PUBLISHED,
        EVENT_PUBLISH_FAILURES,
        ROWS_REWRITTEN,
        VIDEOS_STORED,
        BATCHES_SCANNED,
        BATCHES_RECOVERED,
        RECONCILE_FAILURES,
        WEBHOOKS_DISABLED,
        WEBHOOK_CHECKS_FAILED,
        BATCHES_LATE,
    ];
}

/// Unit of a metric value (the subset of CloudWatch units this project uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

/// One flushed set of values, with the dimensions and properties they share.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// The `Reason` dimension, when set: values are published per reason and in total.
    pub reason: Option<String>,
    pub values: Vec<(&'static str, Unit, f64)>,
    /// Searchable, non-dimension fields (e.g. `job_id`).
    pub properties: Map<String, Value>,
}

/// Where flushed metric sets go.
pub trait MetricSink: Send + Sync {
    /// Writes one set; a failing sink must not fail the work it describes.
    fn emit(&self, point: &MetricPoint);
    /// The `Function` dimension this sink stamps on every set (for `Debug`).
    fn function(&self) -> &str;
}

/// A handle to emit metrics through. Cheap to clone; a disabled handle (the default, used by
/// local mode whose stdout belongs to the CLI) does nothing.
#[derive(Clone, Default)]
pub struct Metrics {
    sink: Option<Arc<dyn MetricSink>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("function", &self.sink.as_ref().map(|s| s.function()))
            .finish()
    }
}

impl Metrics {
    /// Emits nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Emits through `sink`.
    pub fn with_sink(sink: Arc<dyn MetricSink>) -> Self {
        Self { sink: Some(sink) }
    }

    pub fn is_enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Starts a set of values that [`MetricSet::flush`] emits together.
    pub fn set(&self) -> MetricSet {
        MetricSet {
            metrics: self.clone(),
            point: MetricPoint {
                reason: None,
                values: Vec::new(),
                properties: Map::new(),
            },
        }
    }

    /// One count, on its own.
    pub fn count(&self, name: &'static str, value: u64) {
        self.set().count(name, value).flush();
    }
}

/// Values flushed together, sharing the same dimensions.
#[must_use = "a metric set does nothing until flushed"]
pub struct MetricSet {
    metrics: Metrics,
    point: MetricPoint,
}

impl MetricSet {
    /// Adds the `Reason` dimension; the values are then published both per reason and in total
    /// (dimension sets `[Function, Reason]` and `[Function]`).
    pub fn reason(mut self, reason: &str) -> Self {
        self.point.reason = Some(reason.to_owned());
        self
    }

    /// Adds a count (summed if the name is already in the set).
    pub fn count(self, name: &'static str, value: u64) -> Self {
        // Counts stay far below 2^53, where f64 is exact.
        #[allow(clippy::cast_precision_loss)]
        self.value(name, Unit::Count, value as f64)
    }

    /// Adds a duration in milliseconds (negative durations, from clock skew, become 0).
    pub fn milliseconds(self, name: &'static str, ms: i64) -> Self {
        #[allow(clippy::cast_precision_loss)]
        self.value(name, Unit::Milliseconds, ms.max(0) as f64)
    }

    fn value(mut self, name: &'static str, unit: Unit, value: f64) -> Self {
        match self.point.values.iter_mut().find(|(n, _, _)| *n == name) {
            Some(existing) => existing.2 += value,
            None => self.point.values.push((name, unit, value)),
        }
        self
    }

    /// Adds a searchable, non-dimension field (e.g. `job_id`). Never pass secrets or bodies.
    /// Keys that would clash with the EMF structure, a dimension or a metric are ignored.
    pub fn property(mut self, key: &str, value: impl Into<Value>) -> Self {
        let reserved = key == "_aws"
            || key == DIM_FUNCTION
            || key == DIM_REASON
            || self.point.values.iter().any(|(n, _, _)| *n == key);
        if !reserved {
            self.point.properties.insert(key.to_owned(), value.into());
        }
        self
    }

    /// Emits the set. Nothing is emitted for an empty set or a disabled handle.
    pub fn flush(self) {
        if let Some(sink) = &self.metrics.sink
            && !self.point.values.is_empty()
        {
            sink.emit(&self.point);
        }
    }
}
