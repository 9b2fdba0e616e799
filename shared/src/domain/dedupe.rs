//! The dedupe lease of the receiver: a Powertools-style record per claimed id (`PENDING` →
//! `ENQUEUED`, owner-guarded, with a lease for takeover after a crash and a TTL).

use serde::{Deserialize, Serialize};

/// State of a dedupe record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DedupeStatus {
    /// Claimed by a request that has not enqueued yet; protected by a lease.
    Pending,
    /// Durably enqueued: every later delivery of this id is a duplicate.
    Enqueued,
}

impl DedupeStatus {
    /// The stored string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Enqueued => "ENQUEUED",
        }
    }

    /// Parses the stored string.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Self::Pending),
            "ENQUEUED" => Some(Self::Enqueued),
            _ => None,
        }
    }
}

/// One remembered webhook id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupeRecord {
    pub webhook_id: String,
    pub status: DedupeStatus,
    /// Random per request; only the owner may complete or release.
    pub owner: String,
    /// Epoch ms after which a PENDING claim may be taken over (its holder is presumed dead).
    pub lease_until_ms: i64,
    /// Epoch seconds after which the record counts as absent (also the TTL attribute).
    pub expires_at: i64,
    /// Hex SHA-256 of the delivery body, to catch a reused id with another body.
    pub body_sha256: String,
}

/// Everything a claim writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub webhook_id: String,
    pub owner: String,
    pub body_sha256: String,
    pub now_ms: i64,
    pub lease_until_ms: i64,
    pub expires_at: i64,
}

impl ClaimRequest {
    /// The PENDING record this claim writes.
    pub fn record(&self) -> DedupeRecord {
        DedupeRecord {
            webhook_id: self.webhook_id.clone(),
            status: DedupeStatus::Pending,
            owner: self.owner.clone(),
            lease_until_ms: self.lease_until_ms,
            expires_at: self.expires_at,
            body_sha256: self.body_sha256.clone(),
        }
    }

    /// Whether an existing record may be overwritten by this claim: it is expired, or it is
    /// PENDING and its lease is dead. Adapters without conditional writes use this rule; DynamoDB
    /// evaluates the same rule as a condition expression.
    pub fn may_take_over(&self, existing: &DedupeRecord) -> bool {
        existing.expires_at < self.now_ms.div_euclid(1000)
            || (existing.status == DedupeStatus::Pending && existing.lease_until_ms < self.now_ms)
    }
}

/// Result of a claim attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The caller now owns the id.
    Claimed,
    /// Someone else holds a live record; it is returned from the same call.
    Existing(DedupeRecord),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claim(now_ms: i64) -> ClaimRequest {
        ClaimRequest {
            webhook_id: "id".into(),
            owner: "me".into(),
            body_sha256: "h".into(),
            now_ms,
            lease_until_ms: now_ms + 30_000,
            expires_at: now_ms / 1000 + 3600,
        }
    }

    fn record(status: DedupeStatus, lease_until_ms: i64, expires_at: i64) -> DedupeRecord {
        DedupeRecord {
            webhook_id: "id".into(),
            status,
            owner: "other".into(),
            lease_until_ms,
            expires_at,
            body_sha256: "h".into(),
        }
    }

    #[test]
    fn when_lease_alive_should_not_take_over() {
        let c = claim(1_700_000_000_000);
        assert!(!c.may_take_over(&record(
            DedupeStatus::Pending,
            1_700_000_000_001,
            1_800_000_000
        )));
    }

    #[test]
    fn when_lease_dead_should_take_over_pending_but_not_enqueued() {
        let c = claim(1_700_000_000_000);
        assert!(c.may_take_over(&record(
            DedupeStatus::Pending,
            1_699_999_999_999,
            1_800_000_000
        )));
        assert!(!c.may_take_over(&record(
            DedupeStatus::Enqueued,
            1_699_999_999_999,
            1_800_000_000
        )));
    }

    #[test]
    fn when_record_expired_should_take_over_any_status() {
        let c = claim(1_700_000_000_000);
        assert!(c.may_take_over(&record(DedupeStatus::Enqueued, 0, 1_699_999_999)));
        assert!(!c.may_take_over(&record(DedupeStatus::Enqueued, 0, 1_700_000_000)));
    }

    #[test]
    fn status_round_trips() {
        for s in [DedupeStatus::Pending, DedupeStatus::Enqueued] {
            assert_eq!(DedupeStatus::parse(s.as_str()).unwrap(), s);
        }
        assert_eq!(DedupeStatus::parse("COMPLETED"), None);
    }
}
