//! Built-in sample event bodies, shaped like Gemini's documented envelope (docs/gemini.md §3):
//! `type`, `version`, `timestamp`, `data`. They are samples: ids are marked as such.

use serde_json::{Map, Value, json};

/// Every event type Gemini documents, for help texts and validation hints.
pub const KNOWN_TYPES: [&str; 9] = [
    "batch.succeeded",
    "batch.failed",
    "batch.cancelled",
    "batch.expired",
    "interaction.requires_action",
    "interaction.completed",
    "interaction.failed",
    "interaction.cancelled",
    "video.generated",
];

/// A random sample job id for `event_type` (stable prefix so it is recognisable as a sample).
/// Batch ids name the state the event reports (`batches/sample-failed-…`), which is the state
/// the sample Gemini endpoint of `dev --sample-gemini` gives them.
pub fn sample_job_id(event_type: &str) -> String {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    if event_type.starts_with("interaction.") {
        format!("sample-interaction-{suffix}")
    } else if event_type.starts_with("video.") {
        format!("models/veo-3.0-generate-001/operations/sample-{suffix}")
    } else {
        match event_type.strip_prefix("batch.") {
            Some(state @ ("failed" | "expired" | "cancelled")) => {
                format!("batches/sample-{state}-{suffix}")
            }
            _ => format!("batches/sample-{suffix}"),
        }
    }
}

/// The sample event for `event_type` about `job_id`, with `user_metadata` placed in `data`.
pub fn sample_event(
    event_type: &str,
    job_id: &str,
    user_metadata: Option<&Value>,
    timestamp_rfc3339: &str,
) -> Value {
    let mut data = Map::new();
    let is_known = KNOWN_TYPES.contains(&event_type);
    if is_known {
        data.insert("id".into(), json!(job_id));
    }
    match event_type {
        "batch.succeeded" | "batch.completed" => {
            let file = job_id.rsplit('/').next().unwrap_or(job_id);
            data.insert(
                "output_file_uri".into(),
                json!(format!("files/{file}-results")),
            );
        }
        "batch.failed" => {
            data.insert("error_code".into(), json!(3));
            data.insert(
                "error_message".into(),
                json!("Sample failure: the input file contained invalid requests."),
            );
        }
        "interaction.failed" => {
            data.insert("error_code".into(), json!(13));
            data.insert(
                "error_message".into(),
                json!("Sample failure: internal error."),
            );
        }
        "video.generated" => {
            let name = job_id.rsplit('/').next().unwrap_or(job_id);
            data.insert(
                "output_file_uri".into(),
                json!(format!("files/{name}-video")),
            );
            data.insert("file_name".into(), json!(format!("files/{name}-video")));
        }
        _ => {}
    }
    if let Some(meta) = user_metadata {
        data.insert("user_metadata".into(), meta.clone());
    }
    json!({
        "type": event_type,
        "version": "v1",
        "timestamp": timestamp_rfc3339,
        "data": data,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use gemini_hooks::domain::event::{Event, EventType, JobKind};

    #[test]
    fn every_known_sample_parses_as_its_event_with_a_job() {
        for t in KNOWN_TYPES {
            let job = sample_job_id(t);
            let body = sample_event(t, &job, None, "2026-11-22T12:00:00Z").to_string();
            let (event, _) = Event::parse(body.as_bytes(), None).unwrap();
            assert!(!matches!(event.event_type, EventType::Unknown(_)), "{t}");
            assert_eq!(event.event_type.as_str(), t);
            assert!(event.job_id.is_some(), "{t}");
            if event.event_type.kind() == JobKind::Batch {
                assert!(event.job_id.unwrap().starts_with("batches/sample-"));
            }
        }
        // The sample endpoint reads the state from the id.
        assert!(sample_job_id("batch.failed").starts_with("batches/sample-failed-"));
        assert!(sample_job_id("batch.expired").starts_with("batches/sample-expired-"));
        assert!(!sample_job_id("batch.succeeded").contains("failed"));
    }

    #[test]
    fn failed_samples_carry_error_details_and_metadata_lands_in_data() {
        let meta = json!({"job_group": "exp"});
        let v = sample_event("batch.failed", "batches/x", Some(&meta), "t");
        assert_eq!(v["data"]["error_code"], 3);
        assert_eq!(v["data"]["user_metadata"]["job_group"], "exp");
        let (event, _) = Event::parse(v.to_string().as_bytes(), None).unwrap();
        assert_eq!(event.job_group(), Some("exp"));
    }

    #[test]
    fn unknown_type_is_sent_with_empty_data() {
        let v = sample_event("webhook.ping", "batches/x", None, "t");
        assert_eq!(v["type"], "webhook.ping");
        assert_eq!(v["data"], json!({}));
    }
}
