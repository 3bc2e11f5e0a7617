//! The outbox relay: publishes the change events the store wrote in the same transactions
//! as the changes (the transactional outbox), in order, to the broker.
//!
//! Each event's message id is `event-<outbox id>`, so an event published again (the relay
//! died between the broker's acknowledgement and marking it published) is recognised by
//! the broker as a duplicate. One relay publishes at a time (a lease in the store); others
//! stand by and take over when its lease expires.

use carrierhub_broker::{Broker, Outgoing};
use carrierhub_store::{trace, OutboxEvent, Store};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

const LEASE_NAME: &str = "outbox-relay";
const LEASE: Duration = Duration::from_secs(15);
const BATCH: usize = 500;

#[derive(Clone)]
pub struct Relay {
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    wake: Arc<Notify>,
    owner: String,
    /// How often to look at the outbox when nobody in this process says it changed.
    poll: Duration,
    /// Counts the events this relay published: readers of events and the webhook deliverer
    /// in this process wait on it rather than poll.
    published: Arc<watch::Sender<u64>>,
}

/// The subject an event is published on: `events.<type>.<carrier>`, e.g.
/// `events.policy.updated.northwind`.
pub fn event_subject(event: &OutboxEvent) -> String {
    format!("events.{}.{}", event.event_type, event.carrier)
}

/// The message body of an event: an envelope with its id, type, carrier and time, and the
/// event's own data.
pub fn event_message(event: &OutboxEvent) -> Outgoing {
    let id = format!("event-{}", event.id);
    let body = serde_json::json!({
        "id": id,
        "type": event.event_type,
        "carrier": event.carrier,
        "subject_id": event.subject_id,
        "occurred_at": event.created_at,
        "data": event.payload,
    });
    Outgoing::new(event_subject(event), id, body.to_string().into_bytes())
}

/// The messages of `events`, each carrying the trace context of its event on, as its
/// `traceparent` header: one `publish_events` span per trace the events belong to, a child of
/// the span that wrote them (kept open by the caller while it publishes). Events written
/// without a trace context go without one.
fn traced_messages(events: &[OutboxEvent]) -> (Vec<Outgoing>, Vec<tracing::Span>) {
    let mut spans: HashMap<&str, (tracing::Span, Option<String>, u64)> = HashMap::new();
    let messages = events
        .iter()
        .map(|event| {
            let mut message = event_message(event);
            if let Some(received) = event.traceparent.as_deref() {
                let (_, header, count) = spans.entry(received).or_insert_with(|| {
                    let span = tracing::info_span!(
                        "publish_events",
                        otel.kind = "producer",
                        events = tracing::field::Empty,
                    );
                    trace::set_parent(&span, Some(received));
                    let header = trace::forward(&span, Some(received));
                    (span, header, 0)
                });
                *count += 1;
                if let Some(header) = header {
                    message
                        .headers
                        .insert(trace::TRACEPARENT.to_owned(), header.clone());
                }
            }
            message
        })
        .collect();
    let spans = spans
        .into_values()
        .map(|(span, _, count)| {
            span.record("events", count);
            span
        })
        .collect();
    (messages, spans)
}

impl Relay {
    pub fn new(store: Arc<dyn Store>, broker: Arc<dyn Broker>) -> Self {
        Self {
            store,
            broker,
            wake: Arc::new(Notify::new()),
            owner: format!(
                "relay-{}-{}",
                std::process::id(),
                chrono::Utc::now().timestamp_micros()
            ),
            poll: Duration::from_millis(200),
            published: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Looks at the outbox this often when nobody in this process says it changed (default
    /// 200 ms; other processes' writes wait up to this long).
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll.max(Duration::from_millis(1));
        self
    }

    /// Changes each time this relay has published events (marked them published, and so
    /// queued their webhook deliveries).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Tells the relay the outbox has new events (in-process writers call this, so events
    /// go out at once rather than at the next poll).
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Publishes what is in the outbox now; returns how many events went out. `Ok(0)` also
    /// when another relay holds the lease.
    pub async fn publish_pending(&self) -> relay_error::Result<usize> {
        if !self
            .store
            .take_lease(LEASE_NAME, &self.owner, LEASE)
            .await?
        {
            return Ok(0);
        }
        let mut total = 0;
        loop {
            let events = self.store.unpublished_events(BATCH).await?;
            if events.is_empty() {
                return Ok(total);
            }
            let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
            let (messages, _spans) = traced_messages(&events);
            let published = self.broker.publish_all(messages).await?;
            let duplicates = published.iter().filter(|p| p.duplicate).count();
            self.store.mark_events_published(&ids).await?;
            self.published.send_modify(|n| *n += ids.len() as u64);
            metrics::counter!("carrierhub_events_published_total")
                .increment((ids.len() - duplicates) as u64);
            total += ids.len();
            // Renew the lease between batches: a long backlog must not lose it mid-way.
            if !self
                .store
                .take_lease(LEASE_NAME, &self.owner, LEASE)
                .await?
            {
                return Ok(total);
            }
        }
    }

    /// Gives the relay's lease up (it ends now) if this relay holds it, so that another
    /// relay (a server's) takes over at once instead of when it runs out: what `carrierhub
    /// warehouse sync` does once it published the pending events.
    pub async fn release(&self) -> relay_error::Result<()> {
        self.store
            .take_lease(LEASE_NAME, &self.owner, Duration::ZERO)
            .await?;
        Ok(())
    }

    /// Publishes events as they are written; never returns.
    pub async fn run(self) {
        self.run_until(CancellationToken::new()).await
    }

    /// As [`Relay::run`], until `stop` is cancelled: a publication under way finishes (its
    /// events are marked published), then it returns. What is left is published by the
    /// next relay.
    pub async fn run_until(self, stop: CancellationToken) {
        let mut failures = 0u32;
        while !stop.is_cancelled() {
            match self.publish_pending().await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    let delay = carrierhub_broker::backoff(
                        failures,
                        Duration::from_millis(200),
                        Duration::from_secs(30),
                    );
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot publish the outbox");
                    let _ = tokio::time::timeout(delay, stop.cancelled()).await;
                    continue;
                }
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::timeout(self.poll, self.wake.notified()) => {}
            }
        }
        tracing::info!("relay stopped");
    }
}

pub mod relay_error {
    /// Either side of the relay failing: the store or the broker.
    #[derive(Debug, thiserror::Error)]
    pub enum Error {
        #[error(transparent)]
        Store(#[from] carrierhub_store::StoreError),
        #[error(transparent)]
        Broker(#[from] carrierhub_broker::BrokerError),
    }
    pub type Result<T> = std::result::Result<T, Error>;
}
