//! The reconcile use case: the insurance poll behind the webhooks (ARCHITECTURE.md).
//!
//! Pages through `GET /v1beta/batches`; every batch that finished inside the look-back window,
//! longer ago than the grace period, and that has no finished job record gets a synthetic event
//! on the same queue the receiver feeds. Its id is deterministic (`reconcile:<batch>:<state>`)
//! and claimed through the dedupe table like a webhook id, so overlapping or repeated runs never
//! enqueue it twice. A recovery means a webhook was missed: it is logged as a warning and
//! counted in the `BatchesRecovered` metric.
//!
//! Each run also gives two early warnings, before anything is missed: the registered webhooks
//! Gemini disabled after failed deliveries (`GET /v1/webhooks`, metric `WebhooksDisabled`), and
//! the batches still pending or running long after their creation (`BatchesLate`, from the same
//! batch list). Failing to read the webhooks never fails the run: it is logged and counted
//! (`WebhookChecksFailed`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Map, Value, json};

use crate::domain::dedupe_keys;
use crate::domain::envelope::{EventSummary, QueueEnvelope, SignatureMode, WebhookEnvelope};
use crate::domain::event::{Event, EventType};
use crate::domain::gemini::{BatchOperation, BatchState, WebhookSummary};
use crate::domain::verify::sha256_hex;
use crate::ports::StoreError;
use crate::ports::clock::SharedClock;
use crate::ports::gemini::{GeminiApi, GeminiError};
use crate::ports::metrics::{Metrics, metric};
use crate::usecases::enqueue_once::{EnqueueOnce, OnceOutcome, OnceRequest};
use crate::usecases::routes::Routes;

/// Prefix of every synthetic webhook id.
pub const RECONCILE_ID_PREFIX: &str = "reconcile:";

const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

/// `page_size` of each webhook list call (a project has a handful of webhooks).
const WEBHOOK_PAGE_SIZE: u32 = 50;
/// Webhook list calls per run at most, so a server that keeps sending tokens cannot hold a run.
const MAX_WEBHOOK_PAGES: u32 = 20;

/// How far back and how patiently to look. Read from the scheduled event's input so operators
/// tune it in the schedule, not through more environment variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileOptions {
    /// Batches that finished longer ago than this are not examined. It must exceed Gemini's
    /// 24-hour retry horizon plus the schedule interval, or a missed delivery can slip through.
    pub look_back_ms: i64,
    /// Batches that finished more recently than this are left to their webhook (and its retries).
    pub grace_ms: i64,
    /// `pageSize` of each list call.
    pub page_size: u32,
    /// Upper bound on list calls per run, so a huge project cannot make a run endless.
    pub max_pages: u32,
    /// Candidates checked (store lookups and enqueues) at once.
    pub concurrency: usize,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        Self {
            look_back_ms: 72 * HOUR_MS,
            grace_ms: 30 * MINUTE_MS,
            page_size: 100,
            max_pages: 100,
            concurrency: 8,
        }
    }
}

impl ReconcileOptions {
    /// Reads `look_back_hours`, `grace_minutes`, `page_size` and `max_pages` from the event: at the
    /// top level (an EventBridge `Input`, or a manual invoke) or under `detail`. Missing keys keep
    /// their defaults; a present but invalid value is an error, never silently replaced.
    pub fn from_event(event: &Value) -> Result<Self, ReconcileError> {
        let mut o = Self::default();
        let lookup = |key: &str| {
            event
                .get(key)
                .or_else(|| event.get("detail").and_then(|d| d.get(key)))
                .filter(|v| !v.is_null())
        };
        let read = |key: &'static str, min: u64, max: u64| -> Result<Option<u64>, ReconcileError> {
            let Some(v) = lookup(key) else {
                return Ok(None);
            };
            let n = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            match n {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ReconcileError::Input(format!(
                    "`{key}` must be an integer from {min} to {max}"
                ))),
            }
        };
        // Results files are kept for six weeks: looking further back cannot recover anything.
        if let Some(h) = read("look_back_hours", 1, 6 * 7 * 24)? {
            o.look_back_ms = i64::try_from(h).unwrap_or(i64::MAX).saturating_mul(HOUR_MS);
        }
        if let Some(m) = read("grace_minutes", 0, 24 * 60)? {
            o.grace_ms = i64::try_from(m)
                .unwrap_or(i64::MAX)
                .saturating_mul(MINUTE_MS);
        }
        if let Some(n) = read("page_size", 1, 1000)? {
            o.page_size = u32::try_from(n).unwrap_or(1000);
        }
        if let Some(n) = read("max_pages", 1, 10_000)? {
            o.max_pages = u32::try_from(n).unwrap_or(10_000);
        }
        if o.grace_ms >= o.look_back_ms {
            return Err(ReconcileError::Input(
                "`grace_minutes` must be shorter than `look_back_hours`".into(),
            ));
        }
        Ok(o)
    }
}

/// Why a run could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The scheduled event's options are invalid.
    #[error("invalid reconciler input: {0}")]
    Input(String),
    /// Listing batches failed; nothing after the failing page was examined.
    #[error("listing batches failed: {0}")]
    List(#[from] GeminiError),
}

/// What one run saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// List calls made.
    pub pages: u32,
    /// Batches listed, whatever their state.
    pub listed: u64,
    /// Batches not finished yet (pending, running, unknown states).
    pub not_finished: u64,
    /// Finished batches without any usable finish time.
    pub undated: u64,
    /// Finished longer ago than the look-back window.
    pub outside_window: u64,
    /// Finished within the grace period: their webhook may still arrive.
    pub too_recent: u64,
    /// Finished batches examined against the job records.
    pub scanned: u64,
    /// Already recorded as finished by the consumer.
    pub handled: u64,
    /// A job record is being worked on (updated within the grace period).
    pub in_progress: u64,
    /// Synthetic events enqueued by this run (batch names).
    pub recovered: Vec<String>,
    /// Recovered by an earlier (or concurrent) run; not enqueued again.
    pub already_recovered: u64,
    /// Batches that could not be checked or enqueued (store or queue errors).
    pub failures: u64,
    /// `max_pages` was reached before the last page.
    pub truncated: bool,
    /// Batches pending or running longer than the late threshold (names, each once).
    pub late: Vec<String>,
    /// What the webhook check found, or why it could not look.
    pub webhooks: WebhookCheck,
}

/// The registered webhooks as this run saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookCheck {
    /// The list was read: how many webhooks, and the ids of those Gemini disabled after failed
    /// deliveries.
    Checked { listed: u64, disabled: Vec<String> },
    /// The list could not be read; a stable reason code (`forbidden`, `not_found`, …).
    Failed { reason: &'static str },
}

impl Default for WebhookCheck {
    fn default() -> Self {
        Self::Checked {
            listed: 0,
            disabled: Vec::new(),
        }
    }
}

/// Where a finished batch stands on our side.
#[derive(Debug, Clone, PartialEq)]
enum Standing {
    Handled,
    InProgress,
    /// No finished record: recover it, routed like the record we found (if any).
    Missing {
        user_metadata: Option<Value>,
    },
}

/// Per-candidate result, folded into the report.
enum Checked {
    Handled,
    InProgress,
    Recovered(String),
    AlreadyRecovered,
    Failed,
}

/// The reconcile use case with its ports.
pub struct Reconciler {
    gemini: Arc<dyn GeminiApi>,
    routes: Routes,
    once: EnqueueOnce,
    clock: SharedClock,
    metrics: Metrics,
    /// A pending or running batch older than this is late; `None` turns the check off.
    late_after_ms: Option<i64>,
    /// The results tables' retention (`RESULTS_RETENTION_DAYS`), when they have one.
    retention_ms: Option<i64>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler").finish_non_exhaustive()
    }
}

impl Reconciler {
    /// `routes` are the results stores the consumer writes to (a job counts as handled if any of
    /// them has it finished); `once` claims recovery ids in the dedupe table and enqueues.
    pub fn new(
        gemini: Arc<dyn GeminiApi>,
        routes: Routes,
        once: EnqueueOnce,
        clock: SharedClock,
        metrics: Metrics,
    ) -> Self {
        Self {
            gemini,
            routes,
            once,
            clock,
            metrics,
            late_after_ms: None,
            retention_ms: None,
        }
    }

    /// The results tables' retention (`RESULTS_RETENTION_DAYS`; `None` keeps everything). A
    /// batch that finished longer ago than this is never recovered: its job record may have
    /// expired, and "no record" would then resurrect its rows and send its event again.
    #[must_use]
    pub fn with_results_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention_ms = nonzero_ms(retention);
        self
    }

    /// Reports batches still pending or running this long after their `createTime`
    /// (`LATE_BATCH_HOURS`); `None` or zero turns the check off (the default).
    #[must_use]
    pub fn with_late_batch_after(mut self, after: Option<Duration>) -> Self {
        self.late_after_ms = nonzero_ms(after);
        self
    }

    /// One reconcile pass, with the webhook check alongside. Per-batch failures are counted in
    /// the report (the others still get their chance); a failed batch list call ends the pass
    /// with an error; a failed webhook list never does. Metrics are emitted either way.
    pub async fn run(&self, options: &ReconcileOptions) -> Result<ReconcileReport, ReconcileError> {
        let mut report = ReconcileReport::default();
        // Independent reads: a failing webhook list must not delay or fail the batch scan.
        let (webhooks, result) =
            futures::join!(self.check_webhooks(), self.scan(options, &mut report));
        report.webhooks = webhooks;
        let mut set = self
            .metrics
            .set()
            .count(metric::BATCHES_SCANNED, report.scanned)
            .count(metric::BATCHES_RECOVERED, len_u64(&report.recovered))
            .count(
                metric::RECONCILE_FAILURES,
                report.failures + u64::from(result.is_err()),
            )
            .property("pages", report.pages)
            .property("listed", report.listed);
        match &report.webhooks {
            WebhookCheck::Checked { listed, disabled } => {
                set = set
                    .count(metric::WEBHOOKS_DISABLED, len_u64(disabled))
                    .count(metric::WEBHOOK_CHECKS_FAILED, 0)
                    .property("webhooks_listed", *listed);
            }
            // No `WebhooksDisabled` at all: an unknown count is not a 0 (the alarm keeps its
            // state while the check cannot look).
            WebhookCheck::Failed { reason } => {
                set = set
                    .count(metric::WEBHOOK_CHECKS_FAILED, 1)
                    .property("webhook_check_error", *reason);
            }
        }
        // A 0 only from a complete listing (no failed page, not cut at `max_pages`); late
        // batches seen before the listing stopped are real.
        let complete = result.is_ok() && !report.truncated;
        if self.late_after_ms.is_some() && (complete || !report.late.is_empty()) {
            set = set.count(metric::BATCHES_LATE, len_u64(&report.late));
        }
        set.flush();
        result.map(|()| report)
    }

    /// Reads every registered webhook (bounded pages) and reports those Gemini disabled after
    /// failed deliveries. Never fails: a read error becomes [`WebhookCheck::Failed`].
    async fn check_webhooks(&self) -> WebhookCheck {
        let mut listed = 0_u64;
        let mut disabled = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_WEBHOOK_PAGES {
            let page = match self
                .gemini
                .list_webhooks(WEBHOOK_PAGE_SIZE, token.as_deref())
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    let reason = webhook_error_reason(&e);
                    tracing::warn!(
                        error = %e,
                        reason,
                        "could not read the registered webhooks; a webhook Gemini disabled would \
                         go unnoticed by this run (the batch reconcile is unaffected)"
                    );
                    return WebhookCheck::Failed { reason };
                }
            };
            listed += len_u64(&page.webhooks);
            for w in page.webhooks.iter().filter(|w| w.is_disabled_by_gemini()) {
                if !disabled.contains(&w.id) {
                    warn_disabled(w);
                    disabled.push(w.id.clone());
                }
            }
            match page.next_page_token {
                Some(t) if token.as_deref() != Some(t.as_str()) => token = Some(t),
                // The last page, or a server repeating its token (which would loop forever).
                _ => return WebhookCheck::Checked { listed, disabled },
            }
        }
        tracing::warn!(
            pages = MAX_WEBHOOK_PAGES,
            "stopped listing webhooks at the page limit; later webhooks were not checked"
        );
        WebhookCheck::Checked { listed, disabled }
    }

    async fn scan(
        &self,
        options: &ReconcileOptions,
        report: &mut ReconcileReport,
    ) -> Result<(), ReconcileError> {
        let now_ms = self.clock.now_ms();
        let options = &self.within_retention(options);
        let mut token: Option<String> = None;
        // A batch can show up on two pages when new ones shift the list: report it once.
        let mut late_seen = HashSet::new();
        loop {
            if report.pages >= options.max_pages {
                report.truncated = true;
                tracing::warn!(
                    pages = report.pages,
                    "stopped listing at max_pages; older batches were not examined"
                );
                return Ok(());
            }
            let page = self
                .gemini
                .list_batches(options.page_size, token.as_deref())
                .await?;
            report.pages += 1;
            report.listed += u64::try_from(page.operations.len()).unwrap_or(u64::MAX);
            let mut candidates = Vec::new();
            for op in page.operations {
                if let Some(after_ms) = self.late_after_ms
                    && let Some(age_ms) = late_age_ms(&op, now_ms, after_ms)
                    && late_seen.insert(op.name.clone())
                {
                    tracing::warn!(
                        job_id = %op.name,
                        state = op.state.as_str(),
                        created_at = op.create_time.as_deref().unwrap_or(""),
                        hours_since_created = age_ms / HOUR_MS,
                        late_after_hours = after_ms / HOUR_MS,
                        "batch is still not finished long after its creation (late)"
                    );
                    report.late.push(op.name.clone());
                }
                match classify(&op, now_ms, options) {
                    Verdict::NotFinished => report.not_finished += 1,
                    Verdict::Undated => report.undated += 1,
                    Verdict::OutsideWindow => report.outside_window += 1,
                    Verdict::TooRecent => report.too_recent += 1,
                    Verdict::Candidate => candidates.push(op),
                }
            }
            report.scanned += u64::try_from(candidates.len()).unwrap_or(u64::MAX);
            let checked: Vec<Checked> = futures::stream::iter(candidates)
                .map(|op| self.check(op, now_ms, options))
                .buffer_unordered(options.concurrency.max(1))
                .collect()
                .await;
            for c in checked {
                match c {
                    Checked::Handled => report.handled += 1,
                    Checked::InProgress => report.in_progress += 1,
                    Checked::Recovered(name) => report.recovered.push(name),
                    Checked::AlreadyRecovered => report.already_recovered += 1,
                    Checked::Failed => report.failures += 1,
                }
            }
            match page.next_page_token {
                Some(t) if token.as_deref() != Some(t.as_str()) => token = Some(t),
                // No next page, or a server repeating its token (which would loop forever).
                _ => return Ok(()),
            }
        }
    }

    /// `options` with the look-back cut to the results tables' retention (less an hour for the
    /// clocks of Gemini and AWS to disagree). A job record is written after its batch finished
    /// and expires `retention` after its last write, so every batch inside this window that was
    /// handled still has its record.
    fn within_retention(&self, options: &ReconcileOptions) -> ReconcileOptions {
        let Some(retention_ms) = self.retention_ms else {
            return *options;
        };
        let window_ms = retention_ms.saturating_sub(HOUR_MS).max(0);
        if window_ms >= options.look_back_ms {
            return *options;
        }
        tracing::warn!(
            look_back_hours = options.look_back_ms / HOUR_MS,
            checked_hours = window_ms / HOUR_MS,
            "the results tables keep job records for less than the look-back \
             (RESULTS_RETENTION_DAYS): only batches that finished within the retention are \
             checked, so a webhook missed longer ago is not recovered"
        );
        ReconcileOptions {
            look_back_ms: window_ms,
            grace_ms: options.grace_ms.min(window_ms),
            ..*options
        }
    }

    async fn check(&self, op: BatchOperation, now_ms: i64, options: &ReconcileOptions) -> Checked {
        let span = tracing::info_span!("reconcile", job_id = %op.name, state = op.state.as_str());
        tracing::Instrument::instrument(self.check_inner(op, now_ms, options), span).await
    }

    async fn check_inner(
        &self,
        op: BatchOperation,
        now_ms: i64,
        options: &ReconcileOptions,
    ) -> Checked {
        let user_metadata = match self.standing(&op.name, now_ms, options.grace_ms).await {
            Ok(Standing::Handled) => return Checked::Handled,
            Ok(Standing::InProgress) => return Checked::InProgress,
            Ok(Standing::Missing { user_metadata }) => user_metadata,
            Err(e) => {
                tracing::error!(error = %e, "could not read the job record; will try next run");
                return Checked::Failed;
            }
        };
        let id = recovery_id(&op);
        let message = match synthetic_envelope(&op, &id, user_metadata, now_ms).to_message() {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "could not build the synthetic event");
                return Checked::Failed;
            }
        };
        // Claimed under a key no delivery's webhook-id can take (a space is never in one), so a
        // delivery sent with a `reconcile:` id cannot stop this recovery.
        let key = dedupe_keys::recovery(&op.name, op.state.as_str());
        let body_sha256 = sha256_hex(key.as_bytes());
        let request = OnceRequest {
            id: &key,
            body_sha256: &body_sha256,
            message: &message,
            deadline_ms: None,
            lease_ms: 60_000,
            // Remembered for longer than the batch stays in the window, so no later run
            // (whatever happened to the first recovery) enqueues it again.
            retention_secs: options
                .look_back_ms
                .saturating_add(24 * HOUR_MS)
                .div_euclid(1000),
        };
        match self.once.enqueue(&request).await {
            Ok(OnceOutcome::Enqueued { .. }) => {
                tracing::warn!(
                    webhook_id = %id,
                    finished_at = op.end_time.as_deref().or(op.update_time.as_deref()).unwrap_or(""),
                    "recovered a finished batch that no webhook reported: enqueued a synthetic event"
                );
                Checked::Recovered(op.name)
            }
            Ok(OnceOutcome::AlreadyEnqueued | OnceOutcome::InFlight { .. }) => {
                tracing::info!(webhook_id = %id, "already recovered by another run");
                Checked::AlreadyRecovered
            }
            Ok(OnceOutcome::BodyMismatch) => {
                tracing::error!(webhook_id = %id, "recovery id already used for something else");
                Checked::Failed
            }
            Err(e) => {
                tracing::error!(error = %e, "could not enqueue the recovery; will try next run");
                Checked::Failed
            }
        }
    }

    /// Looks the job up in every results store (default first, then each routed group).
    async fn standing(
        &self,
        job_id: &str,
        now_ms: i64,
        grace_ms: i64,
    ) -> Result<Standing, StoreError> {
        let mut found = None;
        for (_, store) in self.routes.stores() {
            let Some(job) = store.load_job(job_id).await? else {
                continue;
            };
            if job.state.is_terminal() {
                return Ok(Standing::Handled);
            }
            if job.updated_at_ms > now_ms.saturating_sub(grace_ms) {
                return Ok(Standing::InProgress);
            }
            found.get_or_insert(job);
        }
        Ok(Standing::Missing {
            user_metadata: found.and_then(|job| {
                job.user_metadata.or_else(|| {
                    job.job_group
                        .map(|g| Value::Object(Map::from_iter([("job_group".into(), json!(g))])))
                })
            }),
        })
    }
}

fn len_u64<T>(items: &[T]) -> u64 {
    u64::try_from(items.len()).unwrap_or(u64::MAX)
}

/// The one line an operator needs per disabled webhook: which one (never its secrets, nor a
/// query string that might hold a token) and how to bring it back.
fn warn_disabled(w: &WebhookSummary) {
    tracing::error!(
        webhook_id = %w.id,
        webhook_name = w.name.as_deref().unwrap_or(""),
        webhook_uri = %w.loggable_uri(),
        state = w.state.as_ref().map_or("", |s| s.as_str()),
        "Gemini disabled this webhook after failed deliveries: no events reach it until it is \
         enabled again (fix the endpoint, then `gemini-hooks webhooks enable <id>`)"
    );
}

/// A stable code for why the webhook list could not be read (the `webhook_check_error`
/// property): the key lacks the permission, the API has no WebhookService here, or it failed.
fn webhook_error_reason(e: &GeminiError) -> &'static str {
    match e {
        GeminiError::Fatal {
            status: 401 | 403, ..
        } => "forbidden",
        GeminiError::NotFound { .. } => "not_found",
        GeminiError::Fatal { .. } => "rejected",
        GeminiError::Transient { .. }
        | GeminiError::Stream(_)
        | GeminiError::Unconfirmed { .. } => "unavailable",
        GeminiError::Decode(_) => "bad_response",
        GeminiError::Invalid(_) => "invalid_request",
    }
}

/// A threshold in milliseconds; zero or none means off.
fn nonzero_ms(after: Option<Duration>) -> Option<i64> {
    after
        .filter(|d| !d.is_zero())
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How long ago a batch still pending or running was created, if longer than `after_ms`.
/// Without a readable `createTime` there is nothing to measure: not late.
fn late_age_ms(op: &BatchOperation, now_ms: i64, after_ms: i64) -> Option<i64> {
    if !op.state.is_in_progress() {
        return None;
    }
    let age_ms = now_ms.saturating_sub(op.created_at_ms()?);
    (age_ms > after_ms).then_some(age_ms)
}

/// How a listed batch relates to this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    NotFinished,
    Undated,
    OutsideWindow,
    TooRecent,
    Candidate,
}

fn classify(op: &BatchOperation, now_ms: i64, options: &ReconcileOptions) -> Verdict {
    if !op.state.is_terminal() {
        return Verdict::NotFinished;
    }
    let Some(finished_ms) = finished_at_ms(op) else {
        return Verdict::Undated;
    };
    if finished_ms < now_ms.saturating_sub(options.look_back_ms) {
        Verdict::OutsideWindow
    } else if finished_ms > now_ms.saturating_sub(options.grace_ms) {
        Verdict::TooRecent
    } else {
        Verdict::Candidate
    }
}

/// `endTime`, else `updateTime` (a finished batch no longer changes), as epoch ms.
fn finished_at_ms(op: &BatchOperation) -> Option<i64> {
    [op.end_time.as_deref(), op.update_time.as_deref()]
        .into_iter()
        .flatten()
        .find_map(|t| chrono::DateTime::parse_from_rfc3339(t.trim()).ok())
        .map(|t| t.timestamp_millis())
}

/// The event type a webhook would have carried for this terminal state.
fn event_type(state: &BatchState) -> EventType {
    match state {
        BatchState::Failed => EventType::BatchFailed,
        BatchState::Expired => EventType::BatchExpired,
        BatchState::Cancelled => EventType::BatchCancelled,
        _ => EventType::BatchSucceeded,
    }
}

/// `reconcile:batches/<id>:<STATE>`: the same for every run that sees this batch finished. It
/// names the synthetic event in logs and on the job record; the dedupe claim itself is
/// [`dedupe_keys::recovery`].
pub fn recovery_id(op: &BatchOperation) -> String {
    format!("{RECONCILE_ID_PREFIX}{}:{}", op.name, op.state.as_str())
}

/// The event the receiver would have enqueued, marked [`SignatureMode::Synthetic`].
fn synthetic_envelope(
    op: &BatchOperation,
    id: &str,
    user_metadata: Option<Value>,
    now_ms: i64,
) -> QueueEnvelope {
    let mut data = Map::new();
    data.insert("id".into(), json!(op.name));
    if let Some(err) = &op.error {
        data.insert("error_code".into(), json!(err.code));
        data.insert("error_message".into(), json!(err.message));
    }
    if let Some(m) = &user_metadata {
        data.insert("user_metadata".into(), m.clone());
    }
    let raw_event = json!({
        "type": event_type(&op.state).as_str(),
        "version": "v1",
        "timestamp": op.end_time.as_deref().or(op.update_time.as_deref()),
        "data": data,
        "source": "reconciler",
    });
    let event = Event::from_value(&raw_event, None).unwrap_or_else(|_| Event {
        event_type: event_type(&op.state),
        received_type: event_type(&op.state).as_str().to_owned(),
        version: Some("v1".into()),
        timestamp: None,
        job_id: Some(op.name.clone()),
        data: raw_event.get("data").cloned().unwrap_or(Value::Null),
        user_metadata: user_metadata.clone(),
    });
    QueueEnvelope::Webhook(WebhookEnvelope {
        webhook_id: id.to_owned(),
        received_at_ms: now_ms,
        signature_mode: SignatureMode::Synthetic,
        // Built from the API's own answer, so it is as trustworthy as a signed event.
        bound: true,
        event: EventSummary::from(&event),
        raw_event,
        user_metadata: event.user_metadata,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000_000;

    fn op(state: &str, end: Option<&str>, update: Option<&str>) -> BatchOperation {
        let mut metadata = json!({"state": state});
        if let Some(e) = end {
            metadata["endTime"] = json!(e);
        }
        if let Some(u) = update {
            metadata["updateTime"] = json!(u);
        }
        BatchOperation::from_value(&json!({"name": "batches/b1", "metadata": metadata})).unwrap()
    }

    fn rfc3339(ms: i64) -> String {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn classify_uses_window_grace_and_state() {
        let o = ReconcileOptions::default();
        let at = |ago_ms: i64| rfc3339(NOW - ago_ms);
        let cases = [
            (
                op("BATCH_STATE_RUNNING", None, Some(&at(HOUR_MS))),
                Verdict::NotFinished,
            ),
            (op("JOB_STATE_PENDING", None, None), Verdict::NotFinished),
            (op("BATCH_STATE_SUCCEEDED", None, None), Verdict::Undated),
            (
                op("BATCH_STATE_SUCCEEDED", Some(&at(HOUR_MS)), None),
                Verdict::Candidate,
            ),
            (
                op("BATCH_STATE_FAILED", None, Some(&at(HOUR_MS))),
                Verdict::Candidate,
            ),
            (
                op("BATCH_STATE_EXPIRED", Some(&at(5 * MINUTE_MS)), None),
                Verdict::TooRecent,
            ),
            (
                op("BATCH_STATE_CANCELLED", Some(&at(73 * HOUR_MS)), None),
                Verdict::OutsideWindow,
            ),
            (
                op(
                    "BATCH_STATE_SUCCEEDED",
                    Some("garbage"),
                    Some(&at(2 * HOUR_MS)),
                ),
                Verdict::Candidate,
            ),
        ];
        for (i, (batch, want)) in cases.iter().enumerate() {
            assert_eq!(classify(batch, NOW, &o), *want, "case {i}");
        }
    }

    fn created(state: &str, create: Option<&str>) -> BatchOperation {
        let mut metadata = json!({"state": state});
        if let Some(c) = create {
            metadata["createTime"] = json!(c);
        }
        BatchOperation::from_value(&json!({"name": "batches/b1", "metadata": metadata})).unwrap()
    }

    #[test]
    fn late_means_in_progress_and_created_longer_ago_than_the_threshold() {
        let after = 6 * HOUR_MS;
        let at = |ago_ms: i64| rfc3339(NOW - ago_ms);
        let cases = [
            (
                created("BATCH_STATE_RUNNING", Some(&at(7 * HOUR_MS))),
                Some(7 * HOUR_MS),
            ),
            (
                created("JOB_STATE_PENDING", Some(&at(30 * HOUR_MS))),
                Some(30 * HOUR_MS),
            ),
            // Exactly at the threshold is not late yet.
            (created("BATCH_STATE_RUNNING", Some(&at(6 * HOUR_MS))), None),
            (created("BATCH_STATE_RUNNING", Some(&at(HOUR_MS))), None),
            // Finished (whatever its age), or a state we do not know: not late.
            (
                created("BATCH_STATE_SUCCEEDED", Some(&at(30 * HOUR_MS))),
                None,
            ),
            (
                created("BATCH_STATE_EXPIRED", Some(&at(50 * HOUR_MS))),
                None,
            ),
            (created("BATCH_STATE_PAUSED", Some(&at(30 * HOUR_MS))), None),
            // Nothing to measure.
            (created("BATCH_STATE_RUNNING", None), None),
            (created("BATCH_STATE_RUNNING", Some("yesterday")), None),
            // Created "in the future" (clock skew): not late.
            (created("BATCH_STATE_RUNNING", Some(&at(-HOUR_MS))), None),
        ];
        for (i, (batch, want)) in cases.iter().enumerate() {
            assert_eq!(late_age_ms(batch, NOW, after), *want, "case {i}");
        }
        // The same batch becomes late as the (injected) time passes.
        let b = created("BATCH_STATE_RUNNING", Some(&at(5 * HOUR_MS)));
        assert_eq!(late_age_ms(&b, NOW, after), None);
        assert_eq!(late_age_ms(&b, NOW + 2 * HOUR_MS, after), Some(7 * HOUR_MS));
    }

    #[test]
    fn late_threshold_zero_or_none_turns_the_check_off() {
        assert_eq!(nonzero_ms(None), None);
        assert_eq!(nonzero_ms(Some(Duration::ZERO)), None);
        assert_eq!(
            nonzero_ms(Some(Duration::from_secs(6 * 3600))),
            Some(6 * HOUR_MS)
        );
    }

    #[test]
    fn webhook_read_failures_have_stable_reasons() {
        let fatal = |status| GeminiError::Fatal {
            status,
            message: String::new(),
        };
        assert_eq!(webhook_error_reason(&fatal(403)), "forbidden");
        assert_eq!(webhook_error_reason(&fatal(401)), "forbidden");
        assert_eq!(webhook_error_reason(&fatal(400)), "rejected");
        assert_eq!(
            webhook_error_reason(&GeminiError::NotFound {
                what: "webhooks list".into()
            }),
            "not_found"
        );
        assert_eq!(
            webhook_error_reason(&GeminiError::Transient {
                what: String::new(),
                attempts: 3,
                last: String::new()
            }),
            "unavailable"
        );
        assert_eq!(
            webhook_error_reason(&GeminiError::Decode(String::new())),
            "bad_response"
        );
    }

    #[test]
    fn options_from_event_top_level_detail_and_errors() {
        assert_eq!(
            ReconcileOptions::from_event(&json!({"detail": {}})).unwrap(),
            ReconcileOptions::default()
        );
        let o = ReconcileOptions::from_event(
            &json!({"look_back_hours": 48, "grace_minutes": "10", "page_size": 5}),
        )
        .unwrap();
        assert_eq!(o.look_back_ms, 48 * HOUR_MS);
        assert_eq!(o.grace_ms, 10 * MINUTE_MS);
        assert_eq!(o.page_size, 5);
        let o = ReconcileOptions::from_event(&json!({"detail": {"max_pages": 3}})).unwrap();
        assert_eq!(o.max_pages, 3);
        for bad in [
            json!({"look_back_hours": 0}),
            json!({"look_back_hours": "many"}),
            json!({"page_size": 5000}),
            json!({"grace_minutes": -1}),
            json!({"look_back_hours": 1, "grace_minutes": 60}),
        ] {
            let err = ReconcileOptions::from_event(&bad).unwrap_err().to_string();
            assert!(err.contains("invalid reconciler input"), "{bad}: {err}");
        }
    }

    #[test]
    fn synthetic_event_matches_the_state_and_is_deterministic() {
        let mut failed = op("BATCH_STATE_FAILED", Some("2026-11-18T10:00:00Z"), None);
        failed.error = Some(crate::domain::gemini::RpcStatus {
            code: Some(13),
            message: "internal".into(),
            status: None,
        });
        let id = recovery_id(&failed);
        assert_eq!(id, "reconcile:batches/b1:FAILED");
        let meta = json!({"job_group": "exp", "run": 7});
        let a = synthetic_envelope(&failed, &id, Some(meta.clone()), NOW);
        let b = synthetic_envelope(&failed, &id, Some(meta.clone()), NOW);
        assert_eq!(a, b);
        let msg = a.to_message().unwrap();
        assert!(msg.attributes.contains(&("job_group".into(), "exp".into())));
        let QueueEnvelope::Webhook(w) = a else {
            panic!("webhook envelope expected");
        };
        assert_eq!(w.signature_mode, SignatureMode::Synthetic);
        assert_eq!(w.event.event_type, EventType::BatchFailed);
        assert_eq!(w.event.job_id.as_deref(), Some("batches/b1"));
        assert_eq!(w.user_metadata, Some(meta));
        assert_eq!(w.raw_event["data"]["error_message"], "internal");
        assert_eq!(w.raw_event["timestamp"], "2026-11-18T10:00:00Z");
        for (state, t) in [
            ("BATCH_STATE_SUCCEEDED", "batch.succeeded"),
            ("BATCH_STATE_EXPIRED", "batch.expired"),
            ("BATCH_STATE_CANCELLED", "batch.cancelled"),
        ] {
            let o = op(state, Some("2026-11-18T10:00:00Z"), None);
            let QueueEnvelope::Webhook(w) = synthetic_envelope(&o, &recovery_id(&o), None, NOW)
            else {
                panic!("webhook envelope expected");
            };
            assert_eq!(w.event.event_type.as_str(), t);
            assert_eq!(w.user_metadata, None);
        }
    }
}
