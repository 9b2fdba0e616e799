//! The JSON envelope the receiver (and the reconciler) put on the queue for the consumer.
//!
//! It carries the normalised event *and* the original event JSON, so the consumer never has to
//! re-derive anything and nothing the sender said is lost. The body of the delivery itself is
//! not kept: the event is the JSON it contained.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::event::{Event, EventType, JobKind};

/// Version of the envelope layout; bump on incompatible changes.
pub const ENVELOPE_VERSION: u32 = 1;

/// SQS message attribute with the canonical event type.
pub const ATTR_EVENT_TYPE: &str = "event_type";
/// SQS message attribute with `user_metadata.job_group` (absent when there is none).
pub const ATTR_JOB_GROUP: &str = "job_group";
/// SQS message attribute with the kind of message (`webhook`, `continuation`, …).
pub const ATTR_MESSAGE_KIND: &str = "message_kind";

/// How a delivery was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureMode {
    /// Standard Webhooks HMAC with a project signing secret.
    Static,
    /// RS256 JWT verified against the JWKS.
    Dynamic,
    /// Made by the reconciler for a batch no webhook reported.
    Synthetic,
}

/// The normalised part of an event, without the `data` payload (that stays in `raw_event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSummary {
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub received_type: String,
    pub kind: JobKind,
    pub version: Option<String>,
    pub timestamp: Option<String>,
    pub job_id: Option<String>,
}

impl From<&Event> for EventSummary {
    fn from(e: &Event) -> Self {
        Self {
            event_type: e.event_type.clone(),
            received_type: e.received_type.clone(),
            kind: e.event_type.kind(),
            version: e.version.clone(),
            timestamp: e.timestamp.clone(),
            job_id: e.job_id.clone(),
        }
    }
}

/// A verified webhook delivery, as queued.
///
/// On the wire the event is carried once: `user_metadata` is written only when it is not what
/// `raw_event` itself holds (it came from the JWT claims), else `metadata_in_event` says where to
/// find it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "WireWebhook", into = "WireWebhook")]
pub struct WebhookEnvelope {
    pub webhook_id: String,
    /// Epoch ms at which the receiver accepted the delivery (for ingest-lag metrics).
    pub received_at_ms: i64,
    pub signature_mode: SignatureMode,
    /// Whether the event is covered by the signature. An unbound event (a dynamic delivery
    /// whose token says nothing about the body) is only a hint: the consumer acts on it solely
    /// through what the Gemini API confirms. Envelopes from before this field were bound.
    #[serde(default = "bound_by_default")]
    pub bound: bool,
    pub event: EventSummary,
    /// The event JSON exactly as the sender's body (or JWT claims) held it.
    pub raw_event: Value,
    /// The metadata the receiver established (signed data first): the one source the consumer
    /// reads `user_metadata` and `job_group` from.
    pub user_metadata: Option<Value>,
}

fn bound_by_default() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// [`WebhookEnvelope`] as serialised.
#[derive(Serialize, Deserialize)]
struct WireWebhook {
    webhook_id: String,
    received_at_ms: i64,
    signature_mode: SignatureMode,
    #[serde(default = "bound_by_default")]
    bound: bool,
    event: EventSummary,
    raw_event: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "is_false")]
    metadata_in_event: bool,
}

impl From<WebhookEnvelope> for WireWebhook {
    fn from(w: WebhookEnvelope) -> Self {
        let in_event = w.user_metadata.is_some()
            && w.user_metadata == crate::domain::event::metadata_in(&w.raw_event);
        Self {
            webhook_id: w.webhook_id,
            received_at_ms: w.received_at_ms,
            signature_mode: w.signature_mode,
            bound: w.bound,
            event: w.event,
            raw_event: w.raw_event,
            user_metadata: if in_event { None } else { w.user_metadata },
            metadata_in_event: in_event,
        }
    }
}

impl From<WireWebhook> for WebhookEnvelope {
    fn from(w: WireWebhook) -> Self {
        let user_metadata = if w.metadata_in_event {
            crate::domain::event::metadata_in(&w.raw_event)
        } else {
            w.user_metadata
        };
        Self {
            webhook_id: w.webhook_id,
            received_at_ms: w.received_at_ms,
            signature_mode: w.signature_mode,
            bound: w.bound,
            event: w.event,
            raw_event: w.raw_event,
            user_metadata,
        }
    }
}

impl WebhookEnvelope {
    /// `user_metadata.job_group`, used for routing.
    pub fn job_group(&self) -> Option<&str> {
        self.user_metadata
            .as_ref()
            .and_then(|m| m.get("job_group"))
            .and_then(Value::as_str)
            .filter(|g| crate::domain::event::usable_job_group(g))
    }

    /// The full event, rebuilt from the raw JSON (so `data` has one source of truth), with the
    /// envelope's `user_metadata` (never re-derived from the raw JSON).
    pub fn event(&self) -> Event {
        let mut event = Event::from_value(&self.raw_event, None).unwrap_or_else(|_| Event {
            event_type: self.event.event_type.clone(),
            received_type: self.event.received_type.clone(),
            version: self.event.version.clone(),
            timestamp: self.event.timestamp.clone(),
            job_id: self.event.job_id.clone(),
            data: self.raw_event.get("data").cloned().unwrap_or(Value::Null),
            user_metadata: None,
        });
        event.user_metadata = self.user_metadata.clone();
        event
    }
}

/// Everything the consumer can find on the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueueEnvelope {
    Webhook(WebhookEnvelope),
    /// The rest of a results file, handed over when an invocation ran out of time.
    Continuation(Continuation),
    /// A message too large for the queue, kept in the payload store; this points at it.
    Stored(StoredPayload),
    /// Rewrite a finished batch's rows from its results (`gemini-hooks reingest`).
    Reingest(ReingestRequest),
}

/// Re-ingest the results of the batch `job_id`: every row rewritten in place (rows are keyed, so
/// a replay converges), the job's state and downstream event untouched. Only this system's
/// operators enqueue it: the receiver wraps every delivery as a [`WebhookEnvelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReingestRequest {
    pub job_id: String,
    /// Routing group, so the rows land in the job's table.
    pub job_group: Option<String>,
    pub request_id: String,
    pub requested_at_ms: i64,
    /// 0 for the request, then 1, 2, … for each hand-over of a pass that ran out of time.
    #[serde(default)]
    pub part: u32,
}

/// Where a queued message's body was put because it did not fit the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPayload {
    /// Key in the payload store (`payloads/<sha256>.json`).
    pub key: String,
    /// Hex SHA-256 of the stored body: what was read back is what was sent.
    pub sha256: String,
    pub bytes: u64,
    /// The kind of the message it holds (`webhook`, `continuation`).
    pub holds: String,
}

impl StoredPayload {
    /// The pointer to `message`'s body, stored under its content hash.
    pub fn for_message(message: &OutgoingMessage) -> Self {
        let sha256 = crate::domain::verify::sha256_hex(message.body.as_bytes());
        let holds = message
            .attributes
            .iter()
            .find(|(k, _)| k == ATTR_MESSAGE_KIND)
            .map_or_else(|| "webhook".to_owned(), |(_, v)| v.clone());
        Self {
            key: format!("payloads/{sha256}.json"),
            sha256,
            bytes: u64::try_from(message.body.len()).unwrap_or(u64::MAX),
            holds,
        }
    }

    /// The small message that goes on the queue instead: the pointer as body, and the original
    /// attributes (routing and metrics still see them) with `message_kind` = `stored`.
    pub fn pointer_message(
        &self,
        original: &OutgoingMessage,
    ) -> Result<OutgoingMessage, serde_json::Error> {
        let mut message = QueueEnvelope::Stored(self.clone()).to_message()?;
        message.attributes = original
            .attributes
            .iter()
            .filter(|(k, _)| k != ATTR_MESSAGE_KIND)
            .cloned()
            .chain(std::iter::once((
                ATTR_MESSAGE_KIND.to_owned(),
                "stored".to_owned(),
            )))
            .collect();
        Ok(message)
    }
}

/// Resume ingesting `file` for `job_id` from `byte_offset` (an HTTP `Range` request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Continuation {
    pub job_id: String,
    pub file: String,
    pub byte_offset: u64,
    pub lines: u64,
    /// The delivery that started the ingest (logs).
    pub webhook_id: Option<String>,
    /// Routing group, so the rest lands in the same table.
    pub job_group: Option<String>,
    /// 1 for the first hand-over, then 2, 3, …
    pub part: u32,
}

impl QueueEnvelope {
    /// Short name of the message kind (message attribute, logs).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Webhook(_) => "webhook",
            Self::Continuation(_) => "continuation",
            Self::Stored(_) => "stored",
            Self::Reingest(_) => "reingest",
        }
    }

    /// Serialises the envelope with its message attributes.
    pub fn to_message(&self) -> Result<OutgoingMessage, serde_json::Error> {
        let mut body = serde_json::to_value(self)?;
        if let Value::Object(map) = &mut body {
            map.insert("envelope_version".into(), Value::from(ENVELOPE_VERSION));
        }
        let mut attributes = vec![(ATTR_MESSAGE_KIND.to_owned(), self.kind_name().to_owned())];
        match self {
            Self::Webhook(w) => {
                attributes.push((
                    ATTR_EVENT_TYPE.to_owned(),
                    w.event.event_type.as_str().to_owned(),
                ));
                if let Some(group) = w.job_group() {
                    attributes.push((ATTR_JOB_GROUP.to_owned(), group.to_owned()));
                }
            }
            Self::Continuation(c) => {
                attributes.push((ATTR_EVENT_TYPE.to_owned(), "batch.succeeded".to_owned()));
                if let Some(group) = c
                    .job_group
                    .as_deref()
                    .filter(|g| crate::domain::event::usable_job_group(g))
                {
                    attributes.push((ATTR_JOB_GROUP.to_owned(), group.to_owned()));
                }
            }
            Self::Reingest(r) => {
                if let Some(group) = r
                    .job_group
                    .as_deref()
                    .filter(|g| crate::domain::event::usable_job_group(g))
                {
                    attributes.push((ATTR_JOB_GROUP.to_owned(), group.to_owned()));
                }
            }
            Self::Stored(_) => {}
        }
        Ok(OutgoingMessage {
            body: sqs_safe_json(serde_json::to_string(&body)?),
            attributes: attributes
                .into_iter()
                .map(|(k, v)| (k, sqs_safe_text(&v)))
                .collect(),
        })
    }

    /// Parses a queue message body.
    pub fn from_body(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }
}

/// One message for the events queue: a JSON body and string attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    pub attributes: Vec<(String, String)>,
}

impl OutgoingMessage {
    /// Size as SQS counts it (body plus attribute names, types and values).
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.len() + "String".len())
                .sum::<usize>()
    }
}

/// Whether SQS accepts `c` in a message body or attribute value
/// (`#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`). SQS refuses the whole
/// message otherwise, which the receiver would answer with 503 on every retry of that delivery.
fn sqs_allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Serialised JSON with every character SQS refuses written as a `\uXXXX` escape. serde_json
/// already escapes control characters; U+FFFE and U+FFFF it writes raw. Such characters can only
/// occur inside JSON strings, where the escape means the same character, so the parsed value is
/// unchanged.
fn sqs_safe_json(json: String) -> String {
    if json.chars().all(sqs_allowed) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if sqs_allowed(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        }
    }
    out
}

/// An attribute value with characters SQS refuses replaced by U+FFFD (attributes are labels for
/// routing and metrics; the exact text stays in the body).
fn sqs_safe_text(text: &str) -> String {
    text.chars()
        .map(|c| if sqs_allowed(c) { c } else { '\u{FFFD}' })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn when_webhook_envelope_serialised_should_round_trip_with_attributes() {
        let raw =
            json!({"type":"batch.completed","data":{"id":"x","user_metadata":{"job_group":"exp"}}});
        let event = Event::from_value(&raw, None).unwrap();
        let env = QueueEnvelope::Webhook(WebhookEnvelope {
            webhook_id: "msg_1".into(),
            received_at_ms: 1_700_000_000_000,
            signature_mode: SignatureMode::Static,
            bound: true,
            event: EventSummary::from(&event),
            raw_event: raw.clone(),
            user_metadata: event.user_metadata.clone(),
        });
        let msg = env.to_message().unwrap();
        let back = QueueEnvelope::from_body(&msg.body).unwrap();
        assert_eq!(back, env);
        let v: Value = serde_json::from_str(&msg.body).unwrap();
        assert_eq!(v["kind"], "webhook");
        assert_eq!(v["event"]["type"], "batch.succeeded");
        assert_eq!(v["event"]["received_type"], "batch.completed");
        assert_eq!(v["event"]["job_id"], "batches/x");
        assert_eq!(v["envelope_version"], 1);
        assert!(
            msg.attributes
                .contains(&("event_type".into(), "batch.succeeded".into()))
        );
        assert!(msg.attributes.contains(&("job_group".into(), "exp".into())));
        let QueueEnvelope::Webhook(w) = back else {
            panic!("expected a webhook envelope");
        };
        assert_eq!(w.event().data["id"], "x");
    }

    #[test]
    fn when_event_holds_characters_sqs_refuses_should_escape_them_and_round_trip() {
        let raw = json!({
            "type": "batch.succeeded\u{FFFF}",
            "data": {"id": "x\u{FFFE}", "user_metadata": {"job_group": "g\u{1}\u{FFFF}"}},
            "note": "tab\tnul\u{0}bmp\u{D7FF}astral\u{1F600}"
        });
        let event = Event::from_value(&raw, None).unwrap();
        let env = QueueEnvelope::Webhook(WebhookEnvelope {
            webhook_id: "msg_1".into(),
            received_at_ms: 1,
            signature_mode: SignatureMode::Static,
            bound: true,
            event: EventSummary::from(&event),
            raw_event: raw.clone(),
            user_metadata: event.user_metadata.clone(),
        });
        let msg = env.to_message().unwrap();
        assert!(msg.body.chars().all(sqs_allowed), "{}", msg.body);
        for (k, v) in &msg.attributes {
            assert!(v.chars().all(sqs_allowed), "{k}={v:?}");
        }
        assert!(
            msg.attributes
                .contains(&("job_group".into(), "g\u{FFFD}\u{FFFD}".into()))
        );
        assert_eq!(QueueEnvelope::from_body(&msg.body).unwrap(), env);
    }
}
