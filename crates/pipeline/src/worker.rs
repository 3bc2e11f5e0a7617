//! The pipeline's consumers: the worker, which processes submissions as their
//! `submission.received` events arrive through the broker, and (in `relay.rs`) the outbox
//! relay, which publishes the events.
//!
//! Exactly-once effects: the broker delivers at least once; a submission's batches commit
//! with its progress (`committed_through`) and the message id, so a redelivered message
//! resumes after the last committed record, and one for a finished submission is
//! acknowledged without doing anything.
//!
//! Order: a carrier's submissions are processed in the order they arrived (a later delivery
//! updates what an earlier one created). A worker given a submission whose predecessor is
//! unfinished hands it back with a short delay.
//!
//! Failures: a transient error (the database or broker away) is retried with exponential
//! backoff and jitter. Every claim counts an attempt; a submission claimed `max_attempts`
//! times without finishing (its workers died or failed each time) is marked failed and its
//! message dead-lettered with the reason, so it never blocks the carrier's later ones.

use crate::{NoProgress, Pipeline, PipelineError};
use carrierhub_broker::{backoff, Broker, ConsumerConfig, Delivery};
use carrierhub_store::SubmissionClaim;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The consumer group of the workers.
pub const WORKER_GROUP: &str = "pipeline";
/// The messages workers consume.
pub const SUBMISSIONS_FILTER: &str = "events.submission.received.*";

/// How workers behave; the defaults suit production.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Submissions one process works on at once.
    pub concurrency: usize,
    /// A delivery not acknowledged (or kept alive) for this long is redelivered.
    pub ack_wait: Duration,
    /// Claims of a submission before it is given up and dead-lettered.
    pub max_attempts: u32,
    /// First retry delay after a transient error; doubles per attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 2,
            ack_wait: Duration::from_secs(30),
            max_attempts: 10,
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
        }
    }
}

/// The body of a `submission.received` message (the relay's event envelope).
#[derive(Debug, serde::Deserialize)]
struct ReceivedEvent {
    data: ReceivedData,
}

#[derive(Debug, serde::Deserialize)]
struct ReceivedData {
    submission_id: i64,
}

#[derive(Clone)]
pub struct Worker {
    pipeline: Pipeline,
    broker: Arc<dyn Broker>,
    config: WorkerConfig,
    owner: String,
}

impl Worker {
    pub fn new(pipeline: Pipeline, broker: Arc<dyn Broker>, config: WorkerConfig) -> Self {
        Self {
            pipeline,
            broker,
            config,
            owner: format!(
                "worker-{}-{}",
                std::process::id(),
                chrono::Utc::now().timestamp_micros()
            ),
        }
    }

    /// Consumes submissions with `concurrency` members of the workers' group; never returns.
    pub async fn run(self) {
        self.run_until(CancellationToken::new()).await
    }

    /// As [`Worker::run`], until `stop` is cancelled: then no member takes another message,
    /// and each settles the one in hand (the pipeline, given the same token, stops that
    /// submission after the batch being committed, and the message is handed back for the
    /// next worker to resume); returns when all have.
    pub async fn run_until(self, stop: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for slot in 0..self.config.concurrency.max(1) {
            let worker = self.clone();
            let stop = stop.clone();
            tasks.spawn(async move { worker.consume(slot, stop).await });
        }
        while tasks.join_next().await.is_some() {}
        tracing::info!("workers stopped");
    }

    async fn consume(self, slot: usize, stop: CancellationToken) {
        let owner = format!("{}-{slot}", self.owner);
        let mut failures = 0;
        while !stop.is_cancelled() {
            let config = ConsumerConfig {
                ack_wait: self.config.ack_wait,
                // Attempts are counted by the store, per claim: a delivery handed back
                // because an earlier submission goes first is not a failure.
                max_deliveries: 0,
                ..ConsumerConfig::new(WORKER_GROUP, SUBMISSIONS_FILTER)
            };
            let mut consumer = match self.broker.consumer(config).await {
                Ok(c) => c,
                Err(e) => {
                    failures += 1;
                    let delay = backoff(failures, self.config.retry_base, self.config.retry_max);
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot join the workers' group");
                    sleep_unless(delay, &stop).await;
                    continue;
                }
            };
            failures = 0;
            loop {
                // Waiting for a message ends with the shutdown; a message fetched but not yet
                // handed over is redelivered after its ack wait, which the store makes
                // harmless.
                let next = tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    next = consumer.next(Duration::from_secs(5)) => next,
                };
                match next {
                    Ok(Some(delivery)) => {
                        let span = delivery_span(&delivery);
                        self.handle(delivery, &owner).instrument(span).await
                    }
                    Ok(None) => {}
                    Err(e) => {
                        failures += 1;
                        let delay =
                            backoff(failures, self.config.retry_base, self.config.retry_max);
                        tracing::warn!(error = %e, retry_in = ?delay, "cannot fetch from the broker");
                        sleep_unless(delay, &stop).await;
                        if failures > 3 {
                            break; // join again: the consumer may be gone with the server
                        }
                    }
                }
            }
        }
    }

    async fn handle(&self, delivery: Delivery, owner: &str) {
        let message_id = delivery.message.id.clone();
        let attempt = delivery.message.attempt;
        let id = match serde_json::from_slice::<ReceivedEvent>(&delivery.message.payload) {
            Ok(event) => event.data.submission_id,
            Err(e) => {
                let reason = format!("not a submission.received event: {e}");
                tracing::error!(message_id, %reason, "dead-lettering an unreadable message");
                metrics::counter!("carrierhub_dead_letters_total", "group" => WORKER_GROUP)
                    .increment(1);
                settle(delivery.dead_letter(&reason).await);
                return;
            }
        };
        let store = self.pipeline.store().clone();
        match store.earlier_unfinished_submission(id).await {
            Ok(None) => {}
            Ok(Some(earlier)) => {
                tracing::debug!(
                    submission_id = id,
                    earlier,
                    "waiting for an earlier submission"
                );
                let delay = backoff(
                    attempt.min(4),
                    Duration::from_millis(250),
                    self.config.retry_max,
                );
                settle(
                    delivery
                        .nak(delay, "waiting for an earlier submission of the carrier")
                        .await,
                );
                return;
            }
            Err(e) => return self.retry(delivery, &e.to_string()).await,
        }

        // Keep the delivery alive while the submission is processed.
        let keep_alive = self.config.ack_wait / 3;
        let work = self.pipeline.process_message(
            id,
            owner,
            Some(&message_id),
            self.config.max_attempts,
            Arc::new(NoProgress),
        );
        tokio::pin!(work);
        let mut ticker = tokio::time::interval(keep_alive);
        ticker.tick().await;
        // The keep-alive runs beside the work, never instead of it: the work may be inside a
        // store transaction that the broker's write (on the same database, for the embedded
        // broker) must wait for, so the work has to keep being polled meanwhile.
        let result = 'work: loop {
            tokio::select! {
                result = &mut work => break 'work result,
                _ = ticker.tick() => {
                    let keep = delivery.progress();
                    tokio::pin!(keep);
                    tokio::select! {
                        result = &mut work => break 'work result,
                        kept = &mut keep => {
                            if let Err(e) = kept {
                                tracing::warn!(submission_id = id, error = %e, "cannot extend the delivery");
                            }
                        }
                    }
                }
            }
        };
        match result {
            Ok(Processed::Finished(done)) => {
                tracing::debug!(
                    submission_id = id,
                    status = done.status.as_str(),
                    "acknowledged"
                );
                settle(delivery.ack().await)
            }
            Ok(Processed::Interrupted) => {
                // Shutting down after a committed batch: deliver it again at once, to
                // whichever worker is (or starts) next; it resumes after that batch.
                settle(
                    delivery
                        .nak(Duration::ZERO, "interrupted by a shutdown")
                        .await,
                )
            }
            Ok(Processed::Held) => {
                // Another worker has it (a redelivery raced a live worker): look again later.
                settle(
                    delivery
                        .nak(self.config.ack_wait / 2, "held by another worker")
                        .await,
                )
            }
            Err(ProcessFailure { error, attempts }) => {
                if attempts >= self.config.max_attempts {
                    let reason = format!(
                        "submission {id} given up after {attempts} attempts; last error: {error}"
                    );
                    tracing::error!(submission_id = id, %reason, "dead-lettering");
                    match store.finish_submission(id, owner, Some(&reason)).await {
                        Ok(done) => {
                            crate::count_submission(&done.carrier, done.status.as_str());
                            metrics::counter!("carrierhub_dead_letters_total", "group" => WORKER_GROUP)
                                .increment(1);
                            settle(delivery.dead_letter(&reason).await)
                        }
                        Err(e) => self.retry(delivery, &e.to_string()).await,
                    }
                } else {
                    self.retry(delivery, &error).await
                }
            }
        }
    }

    async fn retry(&self, delivery: Delivery, error: &str) {
        let attempt = delivery.message.attempt;
        let delay = backoff(attempt, self.config.retry_base, self.config.retry_max);
        metrics::counter!("carrierhub_pipeline_retries_total").increment(1);
        tracing::warn!(
            message_id = delivery.message.id,
            attempt,
            retry_in = ?delay,
            error,
            "processing failed; retrying"
        );
        settle(delivery.nak(delay, error).await)
    }
}

/// Sleeps for `delay`, or less when `stop` is cancelled meanwhile.
async fn sleep_unless(delay: Duration, stop: &CancellationToken) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(delay) => {}
    }
}

/// The span of one delivery's processing: a child of the span that published the message
/// (its `traceparent` header), so the submission's trace runs from its upload on.
fn delivery_span(delivery: &Delivery) -> tracing::Span {
    let span = tracing::info_span!(
        "process_submission",
        otel.kind = "consumer",
        message_id = %delivery.message.id,
        attempt = delivery.message.attempt,
    );
    let traceparent = delivery
        .message
        .headers
        .get(carrierhub_store::trace::TRACEPARENT)
        .map(String::as_str);
    carrierhub_store::trace::set_parent(&span, traceparent);
    span
}

fn settle(result: carrierhub_broker::Result<()>) {
    // A settlement that does not reach the broker is redelivered after the ack wait; the
    // store makes the repeat harmless.
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot settle a delivery; it will be redelivered");
    }
}

/// What processing a submission's message came to.
pub enum Processed {
    /// Completed or failed (a permanent failure, recorded on the submission).
    Finished(Box<carrierhub_store::Submission>),
    /// Another worker holds it.
    Held,
    /// Stopped by the shutdown after a committed batch; the claim is released.
    Interrupted,
}

/// A transient failure, after the submission was claimed `attempts` times.
pub struct ProcessFailure {
    pub error: String,
    pub attempts: u32,
}

impl Pipeline {
    /// Processes submission `id` for a broker message, as worker `owner`. A submission
    /// claimed more than `max_attempts` times is not processed again (its workers died each
    /// time, which no error reports): it is a failure with its attempts, for the caller to give
    /// up on.
    pub async fn process_message(
        &self,
        id: i64,
        owner: &str,
        message_id: Option<&str>,
        max_attempts: u32,
        progress: Arc<dyn crate::Progress>,
    ) -> Result<Processed, ProcessFailure> {
        let claimed = match self.store().claim_submission(id, owner, self.lease).await {
            Ok(SubmissionClaim::Claimed(s)) => s,
            Ok(SubmissionClaim::Finished(s)) => return Ok(Processed::Finished(Box::new(s))),
            Ok(SubmissionClaim::Held { .. }) => return Ok(Processed::Held),
            Err(e) => {
                return Err(ProcessFailure {
                    error: e.to_string(),
                    attempts: 0,
                })
            }
        };
        let attempts = claimed.attempts;
        if attempts > max_attempts {
            return Err(ProcessFailure {
                error: format!(
                    "claimed {} times without finishing: its workers died or stalled each time",
                    attempts - 1
                ),
                attempts,
            });
        }
        match self.run_claimed(claimed, owner, message_id, progress).await {
            Ok(done) => Ok(Processed::Finished(Box::new(done))),
            Err(PipelineError::Busy(_)) => Ok(Processed::Held),
            Err(PipelineError::Interrupted(_)) => Ok(Processed::Interrupted),
            Err(e) => Err(ProcessFailure {
                error: e.to_string(),
                attempts,
            }),
        }
    }
}
