//! The embedded broker: durable messages in the store's own database, SQLite or PostgreSQL.
//!
//! # Tables
//!
//! The store's migrations create them (`0007_broker.sql` for SQLite, `0004_broker.sql` for
//! PostgreSQL); opening the broker on a database without them fails and says to migrate.
//!
//! - `broker_messages`: the stream. `sequence` is the publish order, `message_id` the
//!   de-duplication id (unique, kept for ever), with the subject, payload, headers (JSON) and
//!   publish time. Messages are never updated.
//! - `broker_groups`: one row per durable consumer group: its filter (fixed when the group is
//!   created), its settings (`ack_wait_ms`, `max_deliveries`; the last member to join sets
//!   them) and its cursor `next_sequence`. Every message below the cursor that matches the
//!   filter has been handed out to the group.
//! - `broker_deliveries`: the group's messages handed out and not yet settled, one row per
//!   (group, sequence), with the number of deliveries so far, `visible_at` and the last nak's
//!   reason. Until `visible_at` the row is in flight (the ack wait) or waiting out a nak's
//!   delay; from then on it is due for redelivery. An ack deletes the row.
//! - `broker_dead_letters`: messages a group gave up on, each a copy of the message with the
//!   group, the deliveries made and the reason.
//! - `broker_stream` (PostgreSQL only): the sequence counter, see below.
//!
//! # Claim protocol
//!
//! A member asking for a message ([`Consumer::next`]) first checks, with plain reads, whether
//! its group has anything due at all, so that idle members polling do not take write locks.
//! If so, one write transaction claims a message:
//!
//! 1. **A redelivery first.** The group's delivery row with the lowest sequence whose
//!    `visible_at` has passed (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so that members claiming
//!    at once each take a different row and none waits for another). If its deliveries have
//!    reached the group's `max_deliveries`, the last delivery's ack wait ran out: the message
//!    becomes a dead letter ("not acknowledged within …") and the claim starts over. Otherwise
//!    the row's deliveries go up by one and `visible_at` becomes now + ack wait.
//! 2. **Else the next new message.** The group row is locked (PostgreSQL: `FOR UPDATE`, so
//!    two members never advance the cursor from the same value; SQLite: the transaction is
//!    `BEGIN IMMEDIATE`, the only writer), messages from the cursor on are scanned in sequence
//!    order for the first that matches the filter, a delivery row is inserted for it and the
//!    cursor moves past it. Messages that do not match are passed over for good: a claim that
//!    finds nothing moves the cursor to the end of the stream, so that an idle group's check
//!    above is a single index probe however many messages other groups read. (The scan reads
//!    only the subjects sharing the filter's literal prefix, through `LIKE`, and matches
//!    wildcards itself.)
//!
//! A delivery carries its attempt number (the row's deliveries when it was claimed). A nak,
//! progress report or dead-lettering whose attempt is no longer the row's (the ack wait ran
//! out and another member has the message now) changes nothing; an ack always removes the
//! row, since the work is done whoever did it. A nak on the group's last allowed delivery
//! makes the message a dead letter with the nak's reason.
//!
//! # Why the cursor never skips a message
//!
//! The cursor is only safe if a message with a lower sequence can never become visible after
//! one with a higher sequence. SQLite has a single writer, so commits are in sequence order.
//! On PostgreSQL, concurrent publishers taking numbers from an identity column could commit
//! 11 before 10; a member reading 11 then moves the cursor past 10 for ever. So publishers take
//! their sequence from the counter row `broker_stream` in their own transaction: the row lock
//! is held until commit, the next publisher waits for it, and sequences commit in order. The
//! price is that publishes to one database commit one at a time, which the embedded broker's
//! loads (change events, submissions) are far from feeling.
//!
//! # Dead letters
//!
//! A dead letter is a copy of the message with the group that gave up on it. [`Broker::redrive`]
//! deletes it and, in the same transaction, publishes the message again under a new id
//! (`<id>~redrive-<dead letter id>`): a new message at the end of the stream, which every
//! group whose filter matches receives, not only the one that gave up.
//!
//! # Waiting
//!
//! [`Consumer::next`] polls: every few tens of milliseconds at first, backing off to a tenth of
//! a second, until its wait runs out. A publish wakes the waiting members at once: those of
//! the same broker directly, and on PostgreSQL those of every process, through
//! `LISTEN`/`NOTIFY` on the channel `carrierhub_broker`. Redeliveries (an ack wait or a nak's
//! delay running out) are found by the polls.

mod postgres;
mod sqlite;

use crate::*;
use carrierhub_store::Backend;
use std::time::Instant;
use tokio::sync::Notify;

/// The first pause between two polls of an idle group; it grows by half each time.
const POLL_FIRST: Duration = Duration::from_millis(20);
/// The longest pause between two polls.
const POLL_MAX: Duration = Duration::from_millis(100);
/// Messages read at a time when looking for the next one matching a group's filter.
const SCAN_BATCH: i64 = 200;
/// Scan batches in one claim transaction; a longer scan commits its progress and goes on in
/// a new transaction, so that no transaction holds the group (or SQLite's write lock) long.
const SCAN_BATCHES_PER_CLAIM: usize = 10;
/// Delays, ack waits and waits are capped to this (about a hundred years), far below what either
/// database's timestamps can hold.
const MAX_DELAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The broker in the store's database. Cheap to share: clone the `Arc` it is used through.
pub struct EmbeddedBroker {
    engine: Arc<dyn Engine>,
    /// Wakes this broker's waiting members when a message may have arrived.
    news: Arc<Notify>,
}

impl EmbeddedBroker {
    /// Opens the broker in the store database `store_url` names (a SQLite path or a
    /// PostgreSQL URL); the store's migrations create its tables, and opening a database
    /// without them fails, saying so. On PostgreSQL a background task listens for other
    /// processes' publishes until the broker and its consumers are dropped.
    pub async fn open(store_url: &str) -> Result<Self> {
        let backend = Backend::parse(store_url);
        let news = Arc::new(Notify::new());
        let engine: Arc<dyn Engine> = match &backend {
            Backend::Sqlite(path) => Arc::new(sqlite::SqliteEngine::open(path, &backend).await?),
            Backend::Postgres(url) => {
                Arc::new(postgres::PgEngine::open(url, &backend, news.clone()).await?)
            }
        };
        Ok(Self { engine, news })
    }
}

/// What one backend does; the protocol above, in its SQL.
#[async_trait]
trait Engine: Send + Sync + 'static {
    fn describe(&self) -> String;
    async fn ping(&self) -> Result<()>;
    async fn publish(&self, message: &Outgoing) -> Result<Published>;
    /// Publishes several messages in order in one transaction.
    async fn publish_all(&self, messages: &[Outgoing]) -> Result<Vec<Published>>;
    /// Creates the group, or checks its filter and updates its settings.
    async fn join(&self, config: &ConsumerConfig) -> Result<()>;
    /// Claims the group's next message (a redelivery first), if any is due.
    async fn claim(&self, group: &str) -> Result<Option<Message>>;
    /// Settles delivery `attempt` of message `sequence` to `group`.
    async fn settle(&self, group: &str, sequence: u64, attempt: u32, how: Settle<'_>)
        -> Result<()>;
    async fn lag(&self, group: &str) -> Result<Lag>;
    async fn message_count(&self) -> Result<u64>;
    async fn dead_letters(&self, after: u64, limit: usize) -> Result<Vec<DeadLetter>>;
    async fn dead_letter(&self, id: u64) -> Result<Option<DeadLetter>>;
    async fn redrive(&self, id: u64) -> Result<Option<Published>>;
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy)]
enum Settle<'a> {
    Ack,
    Nak { delay: Duration, reason: &'a str },
    Progress,
    DeadLetter { reason: &'a str },
}

#[async_trait]
impl Broker for EmbeddedBroker {
    fn describe(&self) -> String {
        self.engine.describe()
    }

    async fn ping(&self) -> Result<()> {
        self.engine.ping().await
    }

    async fn publish(&self, message: Outgoing) -> Result<Published> {
        validate_subject(&message.subject)?;
        if message.id.trim().is_empty() {
            return Err(BrokerError::Invalid("a message needs an id".into()));
        }
        let published = self.engine.publish(&message).await?;
        self.news.notify_waiters();
        Ok(published)
    }

    /// One transaction for the whole batch: the relay's backlog goes out at the speed of
    /// inserts, not of commits.
    async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<Vec<Published>> {
        for message in &messages {
            validate_subject(&message.subject)?;
            if message.id.trim().is_empty() {
                return Err(BrokerError::Invalid("a message needs an id".into()));
            }
        }
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let published = self.engine.publish_all(&messages).await?;
        self.news.notify_waiters();
        Ok(published)
    }

    async fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        validate_group(&config.group)?;
        validate_filter(&config.filter)?;
        if config.ack_wait.is_zero() {
            return Err(BrokerError::Invalid(format!(
                "group '{}': the ack wait must be longer than zero",
                config.group
            )));
        }
        self.engine.join(&config).await?;
        Ok(Box::new(EmbeddedConsumer {
            engine: self.engine.clone(),
            news: self.news.clone(),
            group: Arc::from(config.group.as_str()),
        }))
    }

    async fn lag(&self, group: &str) -> Result<Lag> {
        self.engine.lag(group).await
    }

    async fn message_count(&self) -> Result<u64> {
        self.engine.message_count().await
    }

    async fn dead_letters(&self, after: u64, limit: usize) -> Result<Vec<DeadLetter>> {
        self.engine.dead_letters(after, limit).await
    }

    async fn dead_letter(&self, id: u64) -> Result<Option<DeadLetter>> {
        self.engine.dead_letter(id).await
    }

    async fn redrive(&self, id: u64) -> Result<Option<Published>> {
        let published = self.engine.redrive(id).await?;
        self.news.notify_waiters();
        Ok(published)
    }
}

struct EmbeddedConsumer {
    engine: Arc<dyn Engine>,
    news: Arc<Notify>,
    group: Arc<str>,
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    /// Polls until a message is claimed or `wait` runs out. Dropping the future part-way
    /// rolls back a claim not yet committed; one committed but not returned is delivered
    /// again after the ack wait, as if this member had died.
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>> {
        let deadline = Instant::now() + wait.min(MAX_DELAY);
        let mut pause = POLL_FIRST;
        loop {
            // Listening before the claim: a publish between the claim and the pause ends it.
            let news = self.news.notified();
            tokio::pin!(news);
            news.as_mut().enable();
            if let Some(message) = self.engine.claim(&self.group).await? {
                let acker = EmbeddedAcker {
                    engine: self.engine.clone(),
                    group: self.group.clone(),
                    sequence: message.sequence,
                    attempt: message.attempt,
                };
                return Ok(Some(Delivery::new(message, Box::new(acker))));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::select! {
                _ = tokio::time::sleep(pause.min(deadline - now)) => {
                    pause = (pause * 3 / 2).min(POLL_MAX);
                }
                _ = news => {}
            }
        }
    }
}

struct EmbeddedAcker {
    engine: Arc<dyn Engine>,
    group: Arc<str>,
    sequence: u64,
    attempt: u32,
}

impl EmbeddedAcker {
    async fn settle(&self, how: Settle<'_>) -> Result<()> {
        self.engine
            .settle(&self.group, self.sequence, self.attempt, how)
            .await
    }
}

#[async_trait]
impl Acker for EmbeddedAcker {
    async fn ack(&self) -> Result<()> {
        self.settle(Settle::Ack).await
    }
    async fn nak(&self, delay: Duration, reason: &str) -> Result<()> {
        self.settle(Settle::Nak { delay, reason }).await
    }
    async fn progress(&self) -> Result<()> {
        self.settle(Settle::Progress).await
    }
    async fn dead_letter(&self, reason: &str) -> Result<()> {
        self.settle(Settle::DeadLetter { reason }).await
    }
}

// ---- Shared by both backends ----

/// The group's settings and cursor, as a claim reads them.
struct GroupRow {
    filter: String,
    next_sequence: i64,
    ack_wait_ms: i64,
    max_deliveries: i64,
}

impl GroupRow {
    /// Whether a message delivered `deliveries` times has used up the group's deliveries.
    fn exhausted(&self, deliveries: i64) -> bool {
        self.max_deliveries > 0 && deliveries >= self.max_deliveries
    }
}

/// What a cursor scan found in one batch of messages `(sequence, subject)` read in sequence
/// order from the cursor on.
enum Scan {
    /// This message matches the filter.
    Found(i64),
    /// None matched; the cursor may move to this sequence (past the batch).
    Passed(i64),
    /// The batch was empty.
    End,
}

fn scan_batch(filter: &str, batch: &[(i64, String)]) -> Scan {
    match batch
        .iter()
        .find(|(_, subject)| subject_matches(filter, subject))
    {
        Some((sequence, _)) => Scan::Found(*sequence),
        None => match batch.last() {
            Some((sequence, _)) => Scan::Passed(sequence + 1),
            None => Scan::End,
        },
    }
}

/// A `LIKE` pattern matching every subject `filter` can match (and perhaps more): the
/// filter's literal tokens before its first wildcard. The exact match is
/// [`subject_matches`]; the pattern only lets the database skip the rest.
fn like_prefix(filter: &str) -> String {
    let mut literal = String::new();
    for token in filter.split('.') {
        if token == "*" || token == ">" {
            break;
        }
        literal.push_str(token);
        literal.push('.');
    }
    if !filter.split('.').any(|t| t == "*" || t == ">") {
        // No wildcard: the whole filter, without the dot added after its last token.
        literal.pop();
    }
    let mut pattern = String::with_capacity(literal.len() + 1);
    for c in literal.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The id a redriven dead letter is published under: the original id, marked, so that it is
/// not taken for a duplicate and can be traced back.
fn redrive_id(message_id: &str, dead_letter: u64) -> String {
    format!("{message_id}~redrive-{dead_letter}")
}

/// The reason a message whose last delivery's ack wait ran out is given up with.
fn expiry_reason(ack_wait_ms: i64, deliveries: i64, last_reason: Option<&str>) -> String {
    let wait = Duration::from_millis(ack_wait_ms.max(0) as u64);
    let mut reason = format!(
        "not acknowledged within {} after {deliveries} deliveries",
        human(wait)
    );
    if let Some(last) = last_reason {
        reason.push_str(&format!(" (an earlier delivery failed: {last})"));
    }
    reason
}

/// `30s`, `1500ms`: a duration as a person reads it.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.min(MAX_DELAY).as_millis()).unwrap_or(i64::MAX)
}

fn headers_json(headers: &BTreeMap<String, String>) -> String {
    serde_json::to_string(headers).expect("a map of strings is valid JSON")
}

fn parse_headers(json: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(json)
        .map_err(|e| BrokerError::Invalid(format!("stored message headers are not valid: {e}")))
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

fn to_u32(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn no_such_group(group: &str) -> BrokerError {
    BrokerError::NotFound(format!("no consumer group '{group}'"))
}

fn filter_conflict(group: &str, existing: &str, wanted: &str) -> BrokerError {
    BrokerError::Invalid(format!(
        "consumer group '{group}' reads '{existing}', not '{wanted}': a group's filter is fixed \
         when it is created; use another group name"
    ))
}

fn not_migrated(target: &str) -> BrokerError {
    BrokerError::Invalid(format!(
        "{target}: the broker's tables are missing (the store is not migrated to this release); \
         apply the store's migrations with `carrierhub migrate`"
    ))
}

fn validate_group(group: &str) -> Result<()> {
    if group.is_empty()
        || !group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(BrokerError::Invalid(format!(
            "consumer group name '{group}': use letters, digits, '-' and '_'"
        )));
    }
    Ok(())
}

fn valid_token(token: &str) -> bool {
    !token.is_empty() && !token.chars().any(char::is_whitespace)
}

fn validate_subject(subject: &str) -> Result<()> {
    if !subject
        .split('.')
        .all(|t| valid_token(t) && !t.contains(['*', '>']))
    {
        return Err(BrokerError::Invalid(format!(
            "subject '{subject}': dot-separated tokens without wildcards or whitespace"
        )));
    }
    Ok(())
}

fn validate_filter(filter: &str) -> Result<()> {
    let tokens: Vec<&str> = filter.split('.').collect();
    let valid = tokens.iter().enumerate().all(|(i, t)| {
        valid_token(t)
            && (*t == "*" || *t == ">" || !t.contains(['*', '>']))
            && (*t != ">" || i + 1 == tokens.len())
    });
    if !valid {
        return Err(BrokerError::Invalid(format!(
            "filter '{filter}': dot-separated tokens, '*' for one token and a final '>' for the rest"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_like_prefix_covers_what_the_filter_matches() {
        assert_eq!(like_prefix("events.>"), "events.%");
        assert_eq!(
            like_prefix("events.submission.received.*"),
            "events.submission.received.%"
        );
        assert_eq!(like_prefix("events.*.created"), "events.%");
        assert_eq!(like_prefix("a.b"), "a.b%");
        assert_eq!(like_prefix(">"), "%");
        assert_eq!(
            like_prefix("policy_updated.100%.*"),
            "policy\\_updated.100\\%.%"
        );
    }

    #[test]
    fn a_scan_finds_the_first_match_or_passes_the_batch() {
        let batch = vec![
            (4, "events.other".to_owned()),
            (7, "events.a.b".to_owned()),
            (9, "events.a.c".to_owned()),
        ];
        assert!(matches!(scan_batch("events.a.*", &batch), Scan::Found(7)));
        assert!(matches!(scan_batch("events.z.*", &batch), Scan::Passed(10)));
        assert!(matches!(scan_batch("events.>", &[]), Scan::End));
    }

    #[test]
    fn reasons_name_the_wait_and_the_deliveries() {
        assert_eq!(
            expiry_reason(2000, 3, None),
            "not acknowledged within 2s after 3 deliveries"
        );
        assert_eq!(
            expiry_reason(1500, 2, Some("timeout")),
            "not acknowledged within 1500ms after 2 deliveries (an earlier delivery failed: timeout)"
        );
        assert_eq!(redrive_id("m1", 7), "m1~redrive-7");
    }

    #[test]
    fn names_subjects_and_filters_are_checked() {
        assert!(validate_group("pipeline-workers_2").is_ok());
        assert!(validate_group("").is_err());
        assert!(validate_group("a.b").is_err());
        assert!(validate_subject("events.policy.created.acme").is_ok());
        for bad in ["", "events.", ".a", "a..b", "events.*", "events.>", "a b"] {
            assert!(validate_subject(bad).is_err(), "{bad}");
        }
        for good in ["events.>", "events.*.created.*", ">", "a.b"] {
            assert!(validate_filter(good).is_ok(), "{good}");
        }
        for bad in ["", "events.>.x", "events.a*", "a..b", "a. b"] {
            assert!(validate_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(Duration::from_secs(30)), "30s");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
        assert_eq!(human(Duration::ZERO), "0ms");
        assert_eq!(millis(Duration::MAX), millis(MAX_DELAY));
    }
}
