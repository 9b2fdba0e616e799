//! The Gemini webhook event envelope (docs/gemini.md §3): `type`, `version`, `timestamp`, `data`.
//!
//! The envelope is "thin": it names a job and the consumer fetches the truth from the API. Parsing
//! is tolerant on purpose — an unknown but validly signed type is kept, never bounced, because a
//! non-2xx answer makes Gemini retry it for 24 hours for nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Every event type Gemini documents, plus a catch-all that keeps the original string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventType {
    BatchSucceeded,
    BatchFailed,
    BatchCancelled,
    BatchExpired,
    InteractionRequiresAction,
    InteractionCompleted,
    InteractionFailed,
    InteractionCancelled,
    VideoGenerated,
    Unknown(String),
}

impl EventType {
    /// Maps the wire string; `batch.completed` (cookbook, old translated docs) is an alias of
    /// `batch.succeeded`.
    pub fn parse(s: &str) -> Self {
        match s {
            "batch.succeeded" | "batch.completed" => Self::BatchSucceeded,
            "batch.failed" => Self::BatchFailed,
            "batch.cancelled" => Self::BatchCancelled,
            "batch.expired" => Self::BatchExpired,
            "interaction.requires_action" => Self::InteractionRequiresAction,
            "interaction.completed" => Self::InteractionCompleted,
            "interaction.failed" => Self::InteractionFailed,
            "interaction.cancelled" => Self::InteractionCancelled,
            "video.generated" => Self::VideoGenerated,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// The canonical wire name (aliases collapse to the documented name).
    pub fn as_str(&self) -> &str {
        match self {
            Self::BatchSucceeded => "batch.succeeded",
            Self::BatchFailed => "batch.failed",
            Self::BatchCancelled => "batch.cancelled",
            Self::BatchExpired => "batch.expired",
            Self::InteractionRequiresAction => "interaction.requires_action",
            Self::InteractionCompleted => "interaction.completed",
            Self::InteractionFailed => "interaction.failed",
            Self::InteractionCancelled => "interaction.cancelled",
            Self::VideoGenerated => "video.generated",
            Self::Unknown(s) => s,
        }
    }

    /// Which family of job the event is about.
    pub fn kind(&self) -> JobKind {
        match self {
            Self::BatchSucceeded
            | Self::BatchFailed
            | Self::BatchCancelled
            | Self::BatchExpired => JobKind::Batch,
            Self::InteractionRequiresAction
            | Self::InteractionCompleted
            | Self::InteractionFailed
            | Self::InteractionCancelled => JobKind::Interaction,
            Self::VideoGenerated => JobKind::Video,
            Self::Unknown(s) if s.starts_with("batch.") => JobKind::Batch,
            Self::Unknown(s) if s.starts_with("interaction.") => JobKind::Interaction,
            Self::Unknown(s) if s.starts_with("video.") => JobKind::Video,
            Self::Unknown(_) => JobKind::Other,
        }
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::parse(&s))
    }
}

/// The family of long-running job an event refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Batch,
    Interaction,
    Video,
    Other,
}

/// Why a verified body is not a usable event (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("event must be a JSON object")]
    NotObject,
    #[error("event has no string `type` field")]
    MissingType,
    #[error("event field `{0}` has the wrong type")]
    WrongFieldType(&'static str),
    #[error("event is nested more than {limit} levels deep")]
    TooDeep { limit: usize },
}

/// Deepest nesting of arrays/objects accepted in an event. serde_json refuses documents deeper
/// than 128 levels, and the queue envelope wraps the event one level deeper, so an event near
/// that limit would be accepted here and then be unreadable for the consumer (dead-lettered).
/// Gemini's events are about four levels deep; 64 leaves room for any `user_metadata`.
pub const MAX_EVENT_DEPTH: usize = 64;

/// A parsed, normalised event. The original JSON is kept beside it by the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Canonical type (aliases resolved).
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The type string exactly as received (e.g. `batch.completed`).
    pub received_type: String,
    pub version: Option<String>,
    /// RFC 3339 event time from the envelope (not the delivery attempt time).
    pub timestamp: Option<String>,
    /// Normalised job id: `batches/<id>` for batch events, `interactions/<id>` for interactions.
    pub job_id: Option<String>,
    pub data: Value,
    /// Caller metadata from `webhook_config.user_metadata`, wherever the delivery carried it.
    pub user_metadata: Option<Value>,
}

/// A verified delivery's event, and whether its content is covered by the signature.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDelivery {
    pub event: Event,
    /// The JSON the event was read from: the verified claims when they carry the event,
    /// otherwise the body.
    pub raw: Value,
    /// `false` when the event came from a body the signature does not cover (a dynamic delivery
    /// whose claims hold no event and no matching body digest): such an event is a hint, and the
    /// consumer acts on it only through what the Gemini API confirms.
    pub bound: bool,
}

impl Event {
    /// Parses an event from verified body bytes (static deliveries: the body is signed).
    /// Returns the event and the JSON it was read from.
    pub fn parse(
        body: &[u8],
        claims: Option<&Map<String, Value>>,
    ) -> Result<(Self, Value), EventError> {
        let parsed = Self::parse_delivery(body, claims, claims.is_none(), true)?;
        Ok((parsed.event, parsed.raw))
    }

    /// Parses the event of a verified delivery. `claims` are the verified JWT claims of a
    /// dynamic delivery; `body_signed` says whether the body bytes are covered by the signature;
    /// `claims_exclusive` whether the token was minted for this endpoint alone.
    ///
    /// Signed data wins: when the claims carry the event (`type` present) they *are* the event;
    /// `user_metadata` comes from the claims whenever they have it, and from the body only when
    /// the body is signed (an unbound body could otherwise route a job to another table). For an
    /// unbound body, the claims' metadata pairs with a job the body named: it is used only when
    /// no other endpoint could have replayed the token here with a body of its choosing.
    pub fn parse_delivery(
        body: &[u8],
        claims: Option<&Map<String, Value>>,
        body_signed: bool,
        claims_exclusive: bool,
    ) -> Result<ParsedDelivery, EventError> {
        let (raw, bound) = match claims.filter(|c| c.get("type").is_some_and(Value::is_string)) {
            Some(c) => (Value::Object(c.clone()), true),
            None => (
                serde_json::from_slice(body).map_err(|e| EventError::NotJson(e.to_string()))?,
                body_signed,
            ),
        };
        let mut event = Self::from_value(&raw, claims)?;
        if !bound {
            event.user_metadata = claims.filter(|_| claims_exclusive).and_then(metadata_of);
        }
        Ok(ParsedDelivery { event, raw, bound })
    }

    /// Builds the normalised event from a JSON envelope.
    pub fn from_value(
        raw: &Value,
        claims: Option<&Map<String, Value>>,
    ) -> Result<Self, EventError> {
        let obj = raw.as_object().ok_or(EventError::NotObject)?;
        if depth(raw) > MAX_EVENT_DEPTH {
            return Err(EventError::TooDeep {
                limit: MAX_EVENT_DEPTH,
            });
        }
        let received_type = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or(EventError::MissingType)?
            .to_owned();
        let event_type = EventType::parse(&received_type);
        let version = optional_string(obj, "version")?;
        let timestamp = optional_string(obj, "timestamp")?;
        let data = obj.get("data").cloned().unwrap_or(Value::Null);
        if !(data.is_object() || data.is_null()) {
            return Err(EventError::WrongFieldType("data"));
        }
        let job_id = data
            .get("id")
            .or_else(|| data.get("name"))
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(|id| normalize_job_id(event_type.kind(), id));
        // Verified claims win over the JSON the event was read from. Where Gemini puts
        // `user_metadata` is undocumented, so every known place is searched.
        let user_metadata = claims.and_then(metadata_of).or_else(|| metadata_of(obj));
        Ok(Self {
            event_type,
            received_type,
            version,
            timestamp,
            job_id,
            data,
            user_metadata,
        })
    }

    /// `user_metadata.job_group`, used for routing and as an SQS message attribute; see
    /// [`usable_job_group`].
    pub fn job_group(&self) -> Option<&str> {
        self.user_metadata
            .as_ref()
            .and_then(|m| m.get("job_group"))
            .and_then(Value::as_str)
            .filter(|g| usable_job_group(g))
    }
}

/// Longest `job_group` that routes. A group names a table in `ROUTES`; a longer one (a few
/// hundred KB fit in a signed body) would ride along on every queue message, continuation and
/// downstream event and push them past SQS's and EventBridge's 256 KiB, so it is not a group:
/// the job goes to the default table and the text stays in `user_metadata`.
pub const MAX_JOB_GROUP_BYTES: usize = 256;

/// Whether `group` can be a routing group: non-empty and at most [`MAX_JOB_GROUP_BYTES`].
pub fn usable_job_group(group: &str) -> bool {
    !group.is_empty() && group.len() <= MAX_JOB_GROUP_BYTES
}

/// The `user_metadata` an event JSON itself holds (`data.user_metadata`, else top level).
pub fn metadata_in(event: &Value) -> Option<Value> {
    event.as_object().and_then(metadata_of)
}

/// `data.user_metadata`, else top-level `user_metadata`, of an event-shaped object.
fn metadata_of(obj: &Map<String, Value>) -> Option<Value> {
    obj.get("data")
        .and_then(|d| d.get("user_metadata"))
        .or_else(|| obj.get("user_metadata"))
        .filter(|v| !v.is_null())
        .cloned()
}

/// Nesting depth of `value` (a scalar is 0, `[]` is 1), computed without recursion so a deep
/// value cannot exhaust the stack.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}

fn optional_string(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, EventError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(EventError::WrongFieldType(field)),
    }
}

/// Normalises a job id into its kind's namespace, so an event of one kind can never touch
/// another kind's job: batch ids get the `batches/` prefix (the docs show `batch_123`, real
/// resource names are `batches/{id}`), interactions `interactions/`, videos `videos/` (in front of
/// whatever the event named, e.g. `videos/models/veo-3/operations/abc`). A full URL is cut back to
/// its resource name for batches and interactions. Other kinds are kept as given.
pub fn normalize_job_id(kind: JobKind, id: &str) -> String {
    let id = id.trim();
    let prefix = match kind {
        JobKind::Batch => "batches/",
        JobKind::Interaction => "interactions/",
        JobKind::Video => {
            return if id.starts_with(VIDEO_PREFIX) {
                id.to_owned()
            } else {
                format!("{VIDEO_PREFIX}{id}")
            };
        }
        JobKind::Other => return id.to_owned(),
    };
    if let Some(pos) = id.find(prefix) {
        let rest = &id[pos + prefix.len()..];
        let rest = rest.split(['?', '#', ':']).next().unwrap_or(rest);
        return format!("{prefix}{rest}");
    }
    format!("{prefix}{id}")
}

/// Whether `job_id` (already normalised) is a name the consumer may look up, store and ask the
/// API about: `batches/<plain id>`, `interactions/<plain id>`, or `videos/` followed by an
/// operation name or a plain id. Anything else (a path, `..`, a few KB of text) can only come
/// from a forged or broken event.
pub fn is_usable_job_id(kind: JobKind, job_id: &str) -> bool {
    use crate::domain::gemini::{is_name, is_operation_name, is_plain_id};
    match kind {
        JobKind::Batch => is_name(job_id, "batches/"),
        JobKind::Interaction => is_name(job_id, "interactions/"),
        JobKind::Video => job_id
            .strip_prefix(VIDEO_PREFIX)
            .is_some_and(|rest| is_operation_name(rest) || is_plain_id(rest)),
        JobKind::Other => false,
    }
}

/// Namespace of video jobs (the id the event named follows).
pub const VIDEO_PREFIX: &str = "videos/";

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn when_every_documented_type_should_map_and_round_trip() {
        for s in [
            "batch.succeeded",
            "batch.failed",
            "batch.cancelled",
            "batch.expired",
            "interaction.requires_action",
            "interaction.completed",
            "interaction.failed",
            "interaction.cancelled",
            "video.generated",
        ] {
            let t = EventType::parse(s);
            assert!(!matches!(t, EventType::Unknown(_)), "{s}");
            assert_eq!(t.as_str(), s);
        }
    }

    #[test]
    fn when_batch_completed_should_alias_succeeded_and_keep_received_type() {
        let body = br#"{"type":"batch.completed","data":{"id":"abc"}}"#;
        let (e, _) = Event::parse(body, None).unwrap();
        assert_eq!(e.event_type, EventType::BatchSucceeded);
        assert_eq!(e.received_type, "batch.completed");
        assert_eq!(e.job_id.as_deref(), Some("batches/abc"));
    }

    #[test]
    fn when_unknown_type_should_keep_it() {
        let (e, raw) = Event::parse(br#"{"type":"webhook.ping","data":{}}"#, None).unwrap();
        assert_eq!(e.event_type, EventType::Unknown("webhook.ping".into()));
        assert_eq!(e.event_type.kind(), JobKind::Other);
        assert_eq!(raw["type"], "webhook.ping");
    }

    #[test]
    fn when_batch_id_has_or_lacks_prefix_should_normalise() {
        assert_eq!(
            normalize_job_id(JobKind::Batch, "batch_123"),
            "batches/batch_123"
        );
        assert_eq!(
            normalize_job_id(JobKind::Batch, "batches/abc"),
            "batches/abc"
        );
        assert_eq!(
            normalize_job_id(
                JobKind::Batch,
                "https://generativelanguage.googleapis.com/v1beta/batches/abc?x=1"
            ),
            "batches/abc"
        );
        assert_eq!(
            normalize_job_id(JobKind::Interaction, "i-1"),
            "interactions/i-1"
        );
        assert_eq!(
            normalize_job_id(JobKind::Video, "models/veo/operations/x"),
            "videos/models/veo/operations/x"
        );
        // Kinds never share a namespace: a video or interaction naming a batch is not the batch.
        assert_eq!(
            normalize_job_id(JobKind::Video, "batches/abc"),
            "videos/batches/abc"
        );
        assert_eq!(normalize_job_id(JobKind::Video, "videos/x"), "videos/x");
        assert_eq!(
            normalize_job_id(JobKind::Interaction, "batches/abc"),
            "interactions/batches/abc"
        );
        for (kind, id, usable) in [
            (JobKind::Batch, "batches/abc", true),
            (JobKind::Batch, "batches/victim/phantom", false),
            (JobKind::Batch, "batches/a b", false),
            (JobKind::Interaction, "interactions/interactions/x", false),
            (JobKind::Video, "videos/models/veo/operations/o1", true),
            (
                JobKind::Video,
                "videos/models/veo/operations/../../batches/x",
                false,
            ),
            (JobKind::Video, "videos/v-1", true),
        ] {
            assert_eq!(is_usable_job_id(kind, id), usable, "{id}");
        }
        assert!(!is_usable_job_id(
            JobKind::Batch,
            &format!("batches/{}", "a".repeat(3000))
        ));
        for (kind, id) in [
            (JobKind::Batch, "batches/abc"),
            (JobKind::Interaction, "interactions/batches/abc"),
            (JobKind::Video, "videos/batches/abc"),
        ] {
            assert_eq!(normalize_job_id(kind, id), id, "idempotent");
        }
    }

    #[test]
    fn when_user_metadata_in_data_top_or_claims_should_find_it() {
        let in_data =
            json!({"type":"batch.succeeded","data":{"id":"a","user_metadata":{"job_group":"exp"}}});
        let e = Event::from_value(&in_data, None).unwrap();
        assert_eq!(e.job_group(), Some("exp"));

        let top =
            json!({"type":"batch.succeeded","data":{"id":"a"},"user_metadata":{"job_group":"top"}});
        assert_eq!(
            Event::from_value(&top, None).unwrap().job_group(),
            Some("top")
        );

        let mut claims = Map::new();
        claims.insert("user_metadata".into(), json!({"job_group":"jwt"}));
        let plain = json!({"type":"batch.succeeded","data":{"id":"a"}});
        assert_eq!(
            Event::from_value(&plain, Some(&claims))
                .unwrap()
                .job_group(),
            Some("jwt")
        );
    }

    #[test]
    fn when_event_only_in_jwt_claims_and_body_empty_should_use_claims() {
        let mut claims = Map::new();
        claims.insert("type".into(), json!("batch.failed"));
        claims.insert(
            "data".into(),
            json!({"id":"z","error_code":3,"error_message":"bad"}),
        );
        let (e, raw) = Event::parse(b"", Some(&claims)).unwrap();
        assert_eq!(e.event_type, EventType::BatchFailed);
        assert_eq!(e.job_id.as_deref(), Some("batches/z"));
        assert_eq!(raw["data"]["error_code"], 3);
    }

    #[test]
    fn when_body_is_not_an_event_should_say_why() {
        assert!(matches!(
            Event::parse(b"not json", None),
            Err(EventError::NotJson(_))
        ));
        assert_eq!(
            Event::parse(b"[1,2]", None).unwrap_err(),
            EventError::NotObject
        );
        assert_eq!(
            Event::parse(b"{}", None).unwrap_err(),
            EventError::MissingType
        );
        assert_eq!(
            Event::parse(br#"{"type":5}"#, None).unwrap_err(),
            EventError::MissingType
        );
        assert_eq!(
            Event::parse(br#"{"type":"batch.failed","data":"x"}"#, None).unwrap_err(),
            EventError::WrongFieldType("data")
        );
        assert_eq!(
            Event::parse(br#"{"type":"batch.failed","version":1}"#, None).unwrap_err(),
            EventError::WrongFieldType("version")
        );
        assert!(matches!(
            Event::parse(b"", None),
            Err(EventError::NotJson(_))
        ));
    }

    /// An event whose `deep` field nests `levels` arrays (the event object itself adds one).
    fn nested(levels: usize) -> String {
        format!(
            r#"{{"type":"batch.succeeded","data":{{"id":"x"}},"deep":{}{}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        )
    }

    #[test]
    fn when_nested_beyond_the_limit_should_be_refused_and_anything_accepted_should_fit_an_envelope()
    {
        use crate::domain::envelope::{
            EventSummary, QueueEnvelope, SignatureMode, WebhookEnvelope,
        };
        let deepest = nested(MAX_EVENT_DEPTH - 1);
        let (event, raw) = Event::parse(deepest.as_bytes(), None).unwrap();
        let message = QueueEnvelope::Webhook(WebhookEnvelope {
            webhook_id: "w".into(),
            received_at_ms: 0,
            signature_mode: SignatureMode::Static,
            bound: true,
            event: EventSummary::from(&event),
            raw_event: raw,
            user_metadata: None,
        })
        .to_message()
        .unwrap();
        assert!(QueueEnvelope::from_body(&message.body).is_ok());
        assert_eq!(
            Event::parse(nested(MAX_EVENT_DEPTH).as_bytes(), None).unwrap_err(),
            EventError::TooDeep {
                limit: MAX_EVENT_DEPTH
            }
        );
        // Up to serde_json's own limit, which must refuse (not overflow the stack) beyond it.
        assert!(matches!(
            Event::parse(nested(126).as_bytes(), None),
            Err(EventError::TooDeep { .. })
        ));
        let hostile = "[".repeat(100_000);
        assert!(matches!(
            Event::parse(hostile.as_bytes(), None),
            Err(EventError::NotJson(_))
        ));
        let mut claims = Map::new();
        claims.insert("type".into(), json!("batch.succeeded"));
        let mut deep = json!(1);
        for _ in 0..MAX_EVENT_DEPTH {
            deep = json!([deep]);
        }
        claims.insert("deep".into(), deep);
        assert!(matches!(
            Event::parse(b"", Some(&claims)),
            Err(EventError::TooDeep { .. })
        ));
    }
}
