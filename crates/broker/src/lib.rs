//! The message broker: one durable stream of messages (change events, and the submissions
//! waiting to be processed) read by named consumer groups, with explicit acknowledgement,
//! redelivery and dead letters. Two implementations pass the same conformance suite
//! (`tests/conformance.rs`):
//!
//! - [`EmbeddedBroker`]: tables in the store's own database (SQLite or PostgreSQL); the
//!   default, so one process needs no other service, and messages survive restarts.
//! - [`NatsBroker`]: NATS JetStream, for API replicas and workers on several machines.
//!
//! [`open_broker`] picks one from a URL.
//!
//! Semantics every implementation keeps:
//! - **Subjects** are dot-separated tokens (`events.policy.updated.northwind`). A consumer's
//!   filter may end in `>` (any further tokens) and use `*` for one token, as in NATS.
//! - **De-duplication:** a message carries an id; publishing an id the stream already holds
//!   is a no-op reported as `duplicate` (NATS keeps ids for its duplicate window; the
//!   embedded broker for ever).
//! - **Consumer groups** are durable and named. Every group sees every message matching its
//!   filter; within a group each message goes to one member at a time. Delivery is in publish
//!   order; a message redelivered after a failure may come after later ones.
//! - **At least once:** a delivery not acknowledged within the group's `ack_wait` (the
//!   member died) is delivered again; [`Delivery::progress`] extends the wait for a long job.
//!   Exactly-once *effects* are the consumer's part: it commits its result together with the
//!   message's id, so a redelivery finds the work done.
//! - **Dead letters:** a message delivered `max_deliveries` times without an ack, or that its
//!   consumer declares unprocessable, moves to the dead-letter list with the reason. It never
//!   blocks the messages behind it. [`Broker::redrive`] publishes it again.

mod embedded;
mod nats;
mod subject;
pub mod testing;

pub use embedded::EmbeddedBroker;
pub use nats::NatsBroker;
pub use subject::subject_matches;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached or answered with an error; worth retrying.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Dot-separated; must not contain wildcards or whitespace.
    pub subject: String,
    /// De-duplication id: publishing the same id again is a no-op.
    pub id: String,
    pub payload: Vec<u8>,
    /// Carried with the message (e.g. `traceparent`).
    pub headers: BTreeMap<String, String>,
}

impl Outgoing {
    pub fn new(subject: impl Into<String>, id: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            subject: subject.into(),
            id: id.into(),
            payload,
            headers: BTreeMap::new(),
        }
    }
}

/// What publishing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The stream's sequence number of the message (of the earlier one for a duplicate).
    pub sequence: u64,
    /// The id had been published before; nothing was added.
    pub duplicate: bool,
}

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub id: String,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    /// The stream's sequence number.
    pub sequence: u64,
    pub published_at: DateTime<Utc>,
    /// 1 on the first delivery to this group, 2 on the first redelivery, …
    pub attempt: u32,
}

/// A durable consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// The group's durable name: letters, digits, `-` and `_`.
    pub group: String,
    /// Which subjects the group reads (`events.>`, `events.submission.received.*`).
    pub filter: String,
    /// How long a delivery may go unacknowledged before it is delivered again.
    pub ack_wait: Duration,
    /// Deliveries before a message becomes a dead letter; 0 means no limit.
    pub max_deliveries: u32,
}

impl ConsumerConfig {
    pub fn new(group: impl Into<String>, filter: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            filter: filter.into(),
            ack_wait: Duration::from_secs(30),
            max_deliveries: 5,
        }
    }
}

/// A dead letter: a message its group gave up on, with why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    /// The dead letter's own id (for `show` and `redrive`).
    pub id: u64,
    pub group: String,
    pub subject: String,
    pub message_id: String,
    #[serde(skip)]
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    /// Deliveries made before it was given up.
    pub deliveries: u32,
    pub reason: String,
    pub dead_at: DateTime<Utc>,
}

/// How far behind a consumer group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Lag {
    /// Matching messages not yet delivered to the group.
    pub pending: u64,
    /// Delivered and not yet acknowledged.
    pub unacknowledged: u64,
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// For logs: the broker and where it is (passwords masked).
    fn describe(&self) -> String;
    /// Whether the broker answers; for readiness checks.
    async fn ping(&self) -> Result<()>;
    /// Publishes durably: when this returns, the message survives a restart of the broker.
    async fn publish(&self, message: Outgoing) -> Result<Published>;
    /// Publishes several messages in order; an implementation may pipeline them. On an
    /// error, a prefix of them may be published: publishing them again is safe (their ids
    /// de-duplicate).
    async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<Vec<Published>> {
        let mut published = Vec::with_capacity(messages.len());
        for m in messages {
            published.push(self.publish(m).await?);
        }
        Ok(published)
    }
    /// Joins (creating it if new) the durable group `config.group`. A group's filter is
    /// fixed when the group is created; joining with another filter is an error.
    async fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>>;
    async fn lag(&self, group: &str) -> Result<Lag>;
    /// How many messages the stream holds (dead letters not included).
    async fn message_count(&self) -> Result<u64>;
    /// Dead letters, oldest first, from `after` (an id) on.
    async fn dead_letters(&self, after: u64, limit: usize) -> Result<Vec<DeadLetter>>;
    async fn dead_letter(&self, id: u64) -> Result<Option<DeadLetter>>;
    /// Publishes a dead letter again to its subject (with a new id, so it is not taken for a
    /// duplicate) and removes it from the list. `None` when there is no such dead letter.
    async fn redrive(&self, id: u64) -> Result<Option<Published>>;
}

/// A member of a consumer group.
#[async_trait]
pub trait Consumer: Send {
    /// The next message for this member, waiting up to `wait` for one.
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>>;
}

/// The acknowledgement side of a delivery, implemented by each broker.
#[async_trait]
pub trait Acker: Send + Sync {
    async fn ack(&self) -> Result<()>;
    async fn nak(&self, delay: Duration, reason: &str) -> Result<()>;
    async fn progress(&self) -> Result<()>;
    async fn dead_letter(&self, reason: &str) -> Result<()>;
}

/// A message handed to one member of a group, to be settled exactly one way.
pub struct Delivery {
    pub message: Message,
    acker: Box<dyn Acker>,
}

impl Delivery {
    pub fn new(message: Message, acker: Box<dyn Acker>) -> Self {
        Self { message, acker }
    }

    /// Done: the message is not delivered to this group again.
    pub async fn ack(self) -> Result<()> {
        self.acker.ack().await
    }

    /// Failed for now: deliver it again after `delay` (or dead-letter it, when this was the
    /// group's last allowed delivery). `reason` becomes the dead letter's reason.
    pub async fn nak(self, delay: Duration, reason: &str) -> Result<()> {
        self.acker.nak(delay, reason).await
    }

    /// Still working: restarts the group's `ack_wait` for this delivery.
    pub async fn progress(&self) -> Result<()> {
        self.acker.progress().await
    }

    /// Never processable: moves it to the dead letters now.
    pub async fn dead_letter(self, reason: &str) -> Result<()> {
        self.acker.dead_letter(reason).await
    }
}

/// Retry delay after `attempt` failed deliveries: exponential from `base`, capped at `max`,
/// with full jitter in its upper half so a crowd of retries spreads out.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let ceiling = exp.min(max);
    let half = ceiling / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// Opens the broker a URL names: `nats://host:port[?namespace=NAME]` (JetStream; the
/// namespace defaults to `carrierhub`), or else the embedded broker in the store database
/// `store_url` names.
pub async fn open_broker(broker_url: Option<&str>, store_url: &str) -> Result<Arc<dyn Broker>> {
    match broker_url {
        Some(url) if url.starts_with("nats://") || url.starts_with("tls://") => {
            // `?namespace=NAME` keeps several installations apart on one server.
            match url.split_once("?namespace=") {
                Some((server, namespace)) => {
                    Ok(Arc::new(NatsBroker::connect_namespaced(server, namespace).await?))
                }
                None => Ok(Arc::new(NatsBroker::connect(url).await?)),
            }
        }
        Some(other) => Err(BrokerError::Invalid(format!(
            "unsupported broker URL '{other}': use nats://host:port, or no URL for the embedded broker"
        ))),
        None => Ok(Arc::new(EmbeddedBroker::open(store_url).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        for attempt in 1..30 {
            let d = backoff(attempt, base, max);
            let ceiling = (base * 2u32.pow((attempt - 1).min(16))).min(max);
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
        }
    }
}
