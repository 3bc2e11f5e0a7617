//! Change events for readers (the event stream) and webhooks: subscriptions, their durable
//! delivery queue and its log.
//!
//! Architecture invariants:
//! - Events are read in the order the relay published them (`outbox.published_seq`, given in
//!   the transaction that marks them published, one publisher at a time), never by id alone:
//!   on PostgreSQL, ids are not committed in order, and a reader following ids could pass an
//!   event that commits later. A reader's position is the id of the last event it saw.
//! - A webhook's deliveries are queued in the same transaction that marks the events
//!   published, once per (webhook, event), with the webhook's filters and its creator's scope
//!   applied in that query: an event outside the scope is never queued.
//! - A delivery is claimed with a lease; a delivering process that dies leaves it to be
//!   claimed again when the lease runs out (at least once; receivers deduplicate by the
//!   event's id, which is the same on every attempt).

use crate::Scope;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// Which published events to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// The id of the last event the reader saw (`Last-Event-ID`): events published after it.
    /// `None`: from the first event. An id that names no published event is `NotFound`.
    pub after: Option<i64>,
    /// Only these types (`policy.created`, …); empty: every type.
    pub types: Vec<String>,
    /// Only these carriers; empty: every carrier (the scope still applies).
    pub carriers: Vec<String>,
    pub limit: u32,
}

/// Which past events a webhook is sent when it is created or enabled again (backfill).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backfill {
    /// The events published after this one (an event id, as `Last-Event-ID`); 0: every
    /// published event kept.
    AfterEvent(i64),
    /// The events that occurred (were written) at or after this instant.
    Since(DateTime<Utc>),
}

/// A webhook to create. The secret is made by the caller (`whsec_` + base64).
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub secret: String,
    /// Only these event types; empty: every type.
    pub event_types: Vec<String>,
    /// Only these carriers; empty: every carrier of the scope.
    pub carriers: Vec<String>,
    /// The creator's scope: the webhook never receives an event outside it.
    pub scope: Scope,
    pub description: Option<String>,
    /// The creator's subject (`key:…`, a token's subject, `development`).
    pub created_by: String,
}

/// A stored webhook. The secret is only serialised when the webhook is created.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    #[serde(skip)]
    pub secret: String,
    pub event_types: Vec<String>,
    pub carriers: Vec<String>,
    pub scope: Scope,
    pub description: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// When deliveries started failing without a success since.
    pub failing_since: Option<DateTime<Utc>>,
    /// When the webhook was disabled for failing too long; nothing is queued or sent then.
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: retried for the whole retry period without success.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// One attempt to deliver an event.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeliveryAttempt {
    pub attempt: u32,
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why the attempt failed (a connection error, a refused address, a non-2xx status).
    pub error: Option<String>,
    pub duration_ms: u64,
    /// When the delivery is tried again after this attempt (none when it succeeded or was
    /// given up).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// An event's delivery to one webhook, with its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: i64,
    pub event_id: i64,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub log: Vec<DeliveryAttempt>,
}

/// A delivery claimed for sending: where, with which secret, and what.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub webhook_id: i64,
    pub url: String,
    pub secret: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When the delivery was queued: retries stop a retry period after it.
    pub created_at: DateTime<Utc>,
    pub event: crate::OutboxEvent,
}

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed; try again at this instant.
    RetryAt(DateTime<Utc>),
    /// Failed, and no attempt follows.
    GiveUp,
}

/// One attempt's result, recorded in the delivery log.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub delivery_id: i64,
    /// The process that claimed the delivery.
    pub owner: String,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub outcome: AttemptOutcome,
    /// A webhook whose deliveries have failed, without a success, for this long is
    /// disabled.
    pub disable_after: Duration,
}
