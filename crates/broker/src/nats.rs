//! The NATS JetStream broker.
//!
//! One installation lives in a *namespace* (default `carrierhub`) so that several installations,
//! or test runs, can share one server. It owns two streams, created on connect if missing:
//!
//! - `<namespace>-messages`, subjects `<namespace>.>`: every published message, at
//!   `<namespace>.` + the caller's subject. File storage, because a published message must
//!   survive a restart of the server; limits retention, because every consumer group reads the
//!   whole stream (a group created later starts from the first message) and an ack by one group
//!   must not remove a message another still needs. De-duplication uses `Nats-Msg-Id` (the
//!   message id) within a window of two minutes, long enough to cover a publisher retrying
//!   after a lost ack. No age or size limit is set here: an operator may add them to the
//!   stream, and connecting never rewrites an existing stream's configuration.
//! - `<namespace>-dead-letters`, subjects `<namespace>-dead.<group>`: the dead letters, each a
//!   copy of the message with headers naming its group, original subject and id, deliveries
//!   and reason. A dead letter's id is its sequence in this stream; redriving one republishes
//!   the message under a new id and deletes the dead letter. (Its subjects are outside
//!   `<namespace>.>` because two streams may not share subjects.)
//!
//! A consumer group is a durable pull consumer on the messages stream: explicit acks,
//! `DeliverPolicy::All`, the group's `ack_wait`, its filter under the namespace. Each member
//! fetches one message at a time, so a member never holds a prefetched batch another member
//! could be working on. A delivery's `attempt` is the server's delivery count. A group's filter
//! is fixed when it is created; a member joining with another `ack_wait` updates the group's.
//! Acks, naks and progress reports wait for the server's confirmation, so a settled delivery
//! is known to be settled.
//!
//! `max_deliveries` is enforced here rather than by the server's `MaxDeliver`, which stops
//! delivering a message without a trace (only an advisory), where this broker's contract is
//! that such a message becomes a dead letter. The consumer has no server-side limit; a nak on
//! the last allowed delivery dead-letters the message with the nak's reason, and a message
//! that arrives with more deliveries than allowed (its members died before settling it) is
//! dead-lettered on arrival, before any member sees it. NATS does not keep a nak's reason, so
//! the reason then only says that it was not acknowledged within `ack_wait`.
//!
//! Caller headers travel as NATS headers. `Nats-*` names belong to the server (`Nats-Msg-Id`
//! carries the message id): a caller may not set them, and they are not returned.
//!
//! Only configuration fields a 2.9 server understands are sent (the client's `server_2_10`
//! and later features are off). Every call is bounded by a timeout, so while the server is
//! unreachable calls fail with [`BrokerError::Unavailable`] instead of hanging; the client
//! reconnects by itself once the server is back.

use crate::*;
use async_nats::header::{HeaderMap, HeaderName, HeaderValue, NATS_MESSAGE_ID};
use async_nats::jetstream::consumer::{pull, FromConsumer};
use async_nats::jetstream::{self, message::AckKind, stream};
use futures_util::StreamExt;
use std::future::{Future, IntoFuture};
use std::str::FromStr;

/// How long one request to the server (a JetStream API call, a publish's ack) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The bound on a whole operation, a little over a request, in case the client queues it
/// while it is reconnecting.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(8);
/// How long past its own wait a fetch may go unanswered before the server counts as gone.
const FETCH_GRACE: Duration = Duration::from_secs(2);
/// The longest wait one pull request asks the server for.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
/// The shortest wait a pull request asks the server for.
const MIN_FETCH_WAIT: Duration = Duration::from_millis(5);
/// The messages stream's de-duplication window.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

const DEFAULT_NAMESPACE: &str = "carrierhub";
/// Joins a redriven message's original id and the dead letter's id into its new id.
const REDRIVE_MARK: &str = "+redrive.";

// The headers a dead letter carries besides the message's own.
const DEAD_GROUP: &str = "Carrierhub-Dead-Group";
const DEAD_SUBJECT: &str = "Carrierhub-Dead-Subject";
const DEAD_MESSAGE_ID: &str = "Carrierhub-Dead-Message-Id";
const DEAD_DELIVERIES: &str = "Carrierhub-Dead-Deliveries";
const DEAD_REASON: &str = "Carrierhub-Dead-Reason";
const DEAD_HEADERS: [&str; 5] = [
    DEAD_GROUP,
    DEAD_SUBJECT,
    DEAD_MESSAGE_ID,
    DEAD_DELIVERIES,
    DEAD_REASON,
];

pub struct NatsBroker {
    shared: Arc<Shared>,
}

/// What the broker and its consumers and deliveries share: one connection.
struct Shared {
    client: async_nats::Client,
    js: jetstream::Context,
    /// The URL with any password masked, for logs.
    display_url: String,
    namespace: String,
    messages: stream::Stream,
    dead: stream::Stream,
}

impl NatsBroker {
    /// Connects to `url` with the default namespace `carrierhub`.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_namespaced(url, DEFAULT_NAMESPACE).await
    }

    /// Connects to `url`; streams and subjects are prefixed by `namespace`, so several
    /// installations (or tests) can share one server.
    pub async fn connect_namespaced(url: &str, namespace: &str) -> Result<Self> {
        if !is_name(namespace) {
            return Err(BrokerError::Invalid(format!(
                "invalid NATS namespace '{namespace}': use letters, digits, '-' and '_'"
            )));
        }
        let display_url = mask_password(url);
        let client = async_nats::ConnectOptions::new()
            .name(format!("carrierhub ({namespace})"))
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .event_callback({
                let display_url = display_url.clone();
                move |event| {
                    let display_url = display_url.clone();
                    async move {
                        match event {
                            async_nats::Event::Connected => {
                                tracing::info!(url = %display_url, "NATS connected")
                            }
                            async_nats::Event::Disconnected => {
                                tracing::warn!(url = %display_url, "NATS disconnected; reconnecting")
                            }
                            other => tracing::warn!(url = %display_url, event = %other, "NATS"),
                        }
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| unavailable(format!("cannot connect to NATS at {display_url}"), e))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());

        let messages = ensure_stream(
            &js,
            stream::Config {
                name: format!("{namespace}-messages"),
                description: Some(format!("CarrierHub messages ({namespace})")),
                subjects: vec![format!("{namespace}.>")],
                ..stream_defaults()
            },
        )
        .await?;
        let dead = ensure_stream(
            &js,
            stream::Config {
                name: format!("{namespace}-dead-letters"),
                description: Some(format!("CarrierHub dead letters ({namespace})")),
                subjects: vec![format!("{namespace}-dead.>")],
                ..stream_defaults()
            },
        )
        .await?;

        Ok(Self {
            shared: Arc::new(Shared {
                client,
                js,
                display_url,
                namespace: namespace.to_owned(),
                messages,
                dead,
            }),
        })
    }

    /// Deletes this namespace's streams and everything in them.
    pub async fn delete_namespace(&self) -> Result<()> {
        for name in [
            self.shared.messages.cached_info().config.name.clone(),
            self.shared.dead.cached_info().config.name.clone(),
        ] {
            match bounded(self.shared.js.delete_stream(&name)).await? {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        jetstream::context::DeleteStreamErrorKind::JetStream(ref js)
                            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                    ) => {}
                Err(e) => return Err(unavailable(format!("deleting stream {name}"), e)),
            }
        }
        Ok(())
    }
}

fn stream_defaults() -> stream::Config {
    stream::Config {
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: DUPLICATE_WINDOW,
        num_replicas: 1,
        ..Default::default()
    }
}

/// Gets the stream `config` names, creating it if missing (connecting never changes an
/// existing stream's configuration).
async fn ensure_stream(js: &jetstream::Context, config: stream::Config) -> Result<stream::Stream> {
    let name = config.name.clone();
    if let Some(found) = get_stream(js, &name).await? {
        return Ok(found);
    }
    match bounded(js.create_stream(config)).await? {
        Ok(created) => Ok(created),
        // Another process created it first.
        Err(create_error) => match get_stream(js, &name).await? {
            Some(found) => Ok(found),
            None => Err(unavailable(format!("creating stream {name}"), create_error)),
        },
    }
}

async fn get_stream(js: &jetstream::Context, name: &str) -> Result<Option<stream::Stream>> {
    match bounded(js.get_stream(name)).await? {
        Ok(found) => Ok(Some(found)),
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(unavailable(format!("reading stream {name}"), e)),
    }
}

impl Shared {
    fn message_subject(&self, subject: &str) -> String {
        format!("{}.{subject}", self.namespace)
    }

    fn dead_subject(&self, group: &str) -> String {
        format!("{}-dead.{group}", self.namespace)
    }

    /// The caller's subject of a subject in the messages stream.
    fn caller_subject<'a>(&self, subject: &'a str) -> &'a str {
        subject
            .strip_prefix(self.namespace.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(subject)
    }

    async fn publish(&self, message: Outgoing) -> Result<Published> {
        validate_subject(&message.subject)?;
        if message.id.is_empty() {
            return Err(BrokerError::Invalid("a message needs an id".into()));
        }
        let mut headers = caller_headers(&message.headers)?;
        headers.insert(NATS_MESSAGE_ID, header_value(&message.id)?);
        let subject = self.message_subject(&message.subject);
        let ack = bounded(async {
            let pending = self
                .js
                .publish_with_headers(subject, headers, message.payload.into())
                .await
                .map_err(publish_error)?;
            pending.await.map_err(publish_error)
        })
        .await??;
        Ok(Published {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    /// Publishes in order without waiting for each acknowledgement before sending the next:
    /// the messages go out back to back and the acks are collected afterwards, in order.
    async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<Vec<Published>> {
        let mut pending = Vec::with_capacity(messages.len());
        for message in messages {
            validate_subject(&message.subject)?;
            if message.id.is_empty() {
                return Err(BrokerError::Invalid("a message needs an id".into()));
            }
            let mut headers = caller_headers(&message.headers)?;
            headers.insert(NATS_MESSAGE_ID, header_value(&message.id)?);
            let subject = self.message_subject(&message.subject);
            let ack = bounded(self.js.publish_with_headers(
                subject,
                headers,
                message.payload.into(),
            ))
            .await?
            .map_err(publish_error)?;
            pending.push(ack);
        }
        let mut published = Vec::with_capacity(pending.len());
        for ack in pending {
            let ack = bounded(ack.into_future()).await?.map_err(publish_error)?;
            published.push(Published {
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            });
        }
        Ok(published)
    }

    /// Copies a message to the dead letters of `group`. Its `Nats-Msg-Id` is made of the group
    /// and the message's sequence, so dead-lettering it again (the original's TERM was lost and
    /// it came back) adds no second copy.
    async fn bury(&self, group: &str, held: &Held, deliveries: u32, reason: &str) -> Result<()> {
        let mut headers = caller_headers(&held.headers)?;
        headers.insert(
            NATS_MESSAGE_ID,
            header_value(&format!("{group}.{}", held.sequence))?,
        );
        headers.insert(DEAD_GROUP, header_value(group)?);
        headers.insert(DEAD_SUBJECT, header_value(&held.subject)?);
        headers.insert(DEAD_MESSAGE_ID, header_value(&held.id)?);
        headers.insert(DEAD_DELIVERIES, HeaderValue::from(deliveries));
        headers.insert(DEAD_REASON, header_value(&one_line(reason))?);
        let subject = self.dead_subject(group);
        bounded(async {
            let pending = self
                .js
                .publish_with_headers(subject, headers, held.payload.clone().into())
                .await
                .map_err(publish_error)?;
            pending.await.map_err(publish_error)
        })
        .await??;
        tracing::warn!(
            group,
            subject = held.subject,
            id = held.id,
            deliveries,
            reason,
            "message dead-lettered"
        );
        Ok(())
    }

    fn dead_letter_from(&self, message: jetstream::message::StreamMessage) -> DeadLetter {
        let get = |name: &str| {
            message
                .headers
                .get_last(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        let headers = returned_headers(&message.headers)
            .into_iter()
            .filter(|(name, _)| !DEAD_HEADERS.contains(&name.as_str()))
            .collect();
        DeadLetter {
            id: message.sequence,
            group: get(DEAD_GROUP),
            subject: get(DEAD_SUBJECT),
            message_id: get(DEAD_MESSAGE_ID),
            payload: message.payload.to_vec(),
            headers,
            deliveries: get(DEAD_DELIVERIES).parse().unwrap_or(0),
            reason: get(DEAD_REASON),
            dead_at: to_chrono(message.time),
        }
    }

    async fn get_dead(&self, id: u64) -> Result<Option<DeadLetter>> {
        match bounded(self.dead.get_raw_message(id)).await? {
            Ok(message) => Ok(Some(self.dead_letter_from(message))),
            Err(e) if matches!(e.kind(), stream::RawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(e) => Err(unavailable(format!("reading dead letter {id}"), e)),
        }
    }
}

#[async_trait]
impl Broker for NatsBroker {
    fn describe(&self) -> String {
        format!(
            "NATS JetStream at {} (namespace {})",
            self.shared.display_url, self.shared.namespace
        )
    }

    async fn ping(&self) -> Result<()> {
        let name = &self.shared.messages.cached_info().config.name;
        match get_stream(&self.shared.js, name).await? {
            Some(_) => Ok(()),
            None => Err(BrokerError::Unavailable(format!(
                "the stream {name} no longer exists"
            ))),
        }
    }

    async fn publish(&self, message: Outgoing) -> Result<Published> {
        self.shared.publish(message).await
    }

    async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<Vec<Published>> {
        self.shared.publish_all(messages).await
    }

    async fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        if !is_name(&config.group) {
            return Err(BrokerError::Invalid(format!(
                "invalid group name '{}': use letters, digits, '-' and '_'",
                config.group
            )));
        }
        validate_filter(&config.filter)?;
        if config.ack_wait.is_zero() {
            return Err(BrokerError::Invalid("ack_wait must be positive".into()));
        }
        let filter = self.shared.message_subject(&config.filter);
        let stream = &self.shared.messages;
        let wanted = pull::Config {
            durable_name: Some(config.group.clone()),
            description: Some(format!("CarrierHub group {}", config.group)),
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: config.ack_wait,
            // No server limit: see the module documentation.
            max_deliver: -1,
            filter_subject: filter.clone(),
            ..Default::default()
        };

        let existing = match bounded(stream.consumer_info(&config.group)).await? {
            Ok(info) => Some(info),
            Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => None,
            Err(e) => return Err(unavailable(format!("reading group {}", config.group), e)),
        };
        let consumer = match existing {
            Some(info) if info.config.filter_subject != filter => {
                return Err(filter_mismatch(
                    &self.shared,
                    &config,
                    &info.config.filter_subject,
                ))
            }
            Some(info) if info.config.ack_wait == config.ack_wait => {
                bounded(stream.get_consumer::<pull::Config>(&config.group))
                    .await?
                    .map_err(|e| unavailable(format!("joining group {}", config.group), e))?
            }
            // Same filter, another ack_wait: the joining member's setting wins.
            Some(info) => {
                let updated = pull::Config {
                    ack_wait: config.ack_wait,
                    ..pull::Config::try_from_consumer_config(info.config).map_err(|e| {
                        unavailable(format!("group {} is not a pull consumer", config.group), e)
                    })?
                };
                bounded(stream.create_consumer(updated))
                    .await?
                    .map_err(|e| unavailable(format!("updating group {}", config.group), e))?
            }
            None => match bounded(stream.create_consumer(wanted)).await? {
                Ok(created) => created,
                Err(create_error) => {
                    // Another member may have created the group first, perhaps with another
                    // filter: tell that apart from the server failing.
                    match bounded(stream.consumer_info(&config.group)).await? {
                        Ok(info) if info.config.filter_subject != filter => {
                            return Err(filter_mismatch(
                                &self.shared,
                                &config,
                                &info.config.filter_subject,
                            ))
                        }
                        Ok(_) => bounded(stream.get_consumer::<pull::Config>(&config.group))
                            .await?
                            .map_err(|e| {
                                unavailable(format!("joining group {}", config.group), e)
                            })?,
                        Err(_) => {
                            return Err(unavailable(
                                format!("creating group {}", config.group),
                                create_error,
                            ))
                        }
                    }
                }
            },
        };
        Ok(Box::new(NatsConsumer {
            shared: self.shared.clone(),
            consumer,
            group: config.group,
            max_deliveries: config.max_deliveries,
            ack_wait: config.ack_wait,
        }))
    }

    async fn message_count(&self) -> Result<u64> {
        let mut stream = self.shared.messages.clone();
        let info = bounded(stream.info())
            .await?
            .map_err(|e| unavailable("reading the messages stream", e))?;
        Ok(info.state.messages)
    }

    async fn lag(&self, group: &str) -> Result<Lag> {
        if !is_name(group) {
            return Err(BrokerError::NotFound(format!("no group '{group}'")));
        }
        match bounded(self.shared.messages.consumer_info(group)).await? {
            Ok(info) => Ok(Lag {
                pending: info.num_pending,
                unacknowledged: info.num_ack_pending as u64,
            }),
            Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => {
                Err(BrokerError::NotFound(format!("no group '{group}'")))
            }
            Err(e) => Err(unavailable(format!("reading group {group}"), e)),
        }
    }

    async fn dead_letters(&self, after: u64, limit: usize) -> Result<Vec<DeadLetter>> {
        let all = format!("{}-dead.>", self.shared.namespace);
        let mut letters = Vec::new();
        let mut from = after.saturating_add(1);
        while letters.len() < limit {
            let request = self
                .shared
                .dead
                .raw_message_builder()
                .sequence(from)
                .next_by_subject(all.clone())
                .send();
            match bounded(request).await? {
                Ok(message) => {
                    from = message.sequence + 1;
                    letters.push(self.shared.dead_letter_from(message));
                }
                Err(e) if matches!(e.kind(), stream::RawMessageErrorKind::NoMessageFound) => break,
                Err(e) => return Err(unavailable("reading dead letters", e)),
            }
        }
        Ok(letters)
    }

    async fn dead_letter(&self, id: u64) -> Result<Option<DeadLetter>> {
        self.shared.get_dead(id).await
    }

    async fn redrive(&self, id: u64) -> Result<Option<Published>> {
        let Some(letter) = self.shared.get_dead(id).await? else {
            return Ok(None);
        };
        // A new id, so the message is not taken for a duplicate of the one that died; the
        // same for every try of this redrive, so a retried redrive publishes it once. A
        // message redriven before keeps its original id in front, not a growing chain.
        let original = letter
            .message_id
            .split_once(REDRIVE_MARK)
            .map_or(letter.message_id.as_str(), |(original, _)| original);
        let published = self
            .shared
            .publish(Outgoing {
                subject: letter.subject,
                id: format!("{original}{REDRIVE_MARK}{id}"),
                payload: letter.payload,
                headers: letter.headers,
            })
            .await?;
        match bounded(self.shared.dead.delete_message(id)).await? {
            Ok(_) => {}
            // Redriven at the same time by someone else.
            Err(e)
                if matches!(
                    e.kind(),
                    stream::DeleteMessageErrorKind::JetStream(ref js)
                        if js.code() == 404 || js.error_code() == jetstream::ErrorCode::SEQUENCE_NOT_FOUND
                ) => {}
            Err(e) => return Err(unavailable(format!("deleting dead letter {id}"), e)),
        }
        Ok(Some(published))
    }
}

fn filter_mismatch(shared: &Shared, config: &ConsumerConfig, existing: &str) -> BrokerError {
    BrokerError::Invalid(format!(
        "group '{}' reads '{}'; it cannot be joined with the filter '{}'",
        config.group,
        shared.caller_subject(existing),
        config.filter
    ))
}

struct NatsConsumer {
    shared: Arc<Shared>,
    consumer: jetstream::consumer::PullConsumer,
    group: String,
    max_deliveries: u32,
    ack_wait: Duration,
}

impl NatsConsumer {
    /// One pull request for one message, answered by the server within `wait`.
    async fn fetch(&self, wait: Duration) -> Result<Option<jetstream::Message>> {
        if self.shared.client.connection_state() != async_nats::connection::State::Connected {
            return Err(BrokerError::Unavailable(format!(
                "not connected to NATS at {}",
                self.shared.display_url
            )));
        }
        let wait = wait.max(MIN_FETCH_WAIT);
        let fetched = tokio::time::timeout(wait + FETCH_GRACE, async {
            let mut batch = self
                .consumer
                .batch()
                .max_messages(1)
                .expires(wait)
                .messages()
                .await
                .map_err(|e| unavailable(format!("fetching for group {}", self.group), e))?;
            match batch.next().await {
                None => Ok(None),
                Some(Ok(message)) => Ok(Some(message)),
                Some(Err(e)) => Err(unavailable(format!("fetching for group {}", self.group), e)),
            }
        })
        .await;
        match fetched {
            Ok(result) => result,
            // The server did not even say that there was nothing.
            Err(_) => Err(BrokerError::Unavailable(format!(
                "NATS at {} did not answer a fetch for group {}",
                self.shared.display_url, self.group
            ))),
        }
    }
}

#[async_trait]
impl Consumer for NatsConsumer {
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>> {
        let started = tokio::time::Instant::now();
        loop {
            let remaining = wait.saturating_sub(started.elapsed());
            // A long wait is several pull requests, so none is held by the server for long.
            let Some(message) = self.fetch(remaining.min(MAX_FETCH_WAIT)).await? else {
                if remaining > MAX_FETCH_WAIT {
                    continue;
                }
                return Ok(None);
            };
            let info = message
                .info()
                .map_err(|e| unavailable("reading a delivery's metadata", e))?;
            let attempt = u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX);
            let sequence = info.stream_sequence;
            let published_at = to_chrono(info.published);
            let (message, acker) = message.split();
            let headers = returned_headers(message.headers.as_ref().unwrap_or(&HeaderMap::new()));
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get_last(NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_else(|| sequence.to_string());
            let held = Held {
                subject: self
                    .shared
                    .caller_subject(message.subject.as_str())
                    .to_owned(),
                id,
                payload: message.payload.to_vec(),
                headers,
                sequence,
                attempt,
            };
            let acker = NatsAcker {
                shared: self.shared.clone(),
                acker,
                group: self.group.clone(),
                max_deliveries: self.max_deliveries,
                held,
            };
            if self.max_deliveries > 0 && attempt > self.max_deliveries {
                // Its members died holding it, delivery after delivery.
                let deliveries = attempt - 1;
                let reason = format!(
                    "not acknowledged within ack_wait ({:?}) after {deliveries} deliveries",
                    self.ack_wait
                );
                acker.bury(deliveries, &reason).await?;
                continue;
            }
            let message = Message {
                subject: acker.held.subject.clone(),
                id: acker.held.id.clone(),
                payload: acker.held.payload.clone(),
                headers: acker.held.headers.clone(),
                sequence,
                published_at,
                attempt,
            };
            return Ok(Some(Delivery::new(message, Box::new(acker))));
        }
    }
}

/// What a delivery keeps of its message, to dead-letter it.
struct Held {
    /// The caller's subject.
    subject: String,
    id: String,
    payload: Vec<u8>,
    /// The caller's headers.
    headers: BTreeMap<String, String>,
    /// In the messages stream.
    sequence: u64,
    attempt: u32,
}

struct NatsAcker {
    shared: Arc<Shared>,
    acker: jetstream::message::Acker,
    group: String,
    max_deliveries: u32,
    held: Held,
}

impl NatsAcker {
    /// Sends `kind` and waits for the server to confirm it.
    async fn settle(&self, kind: AckKind) -> Result<()> {
        bounded(self.acker.double_ack_with(kind))
            .await?
            .map_err(|e| unavailable(format!("settling a delivery of group {}", self.group), e))
    }

    /// Dead-letters the message, then terminates its delivery.
    async fn bury(&self, deliveries: u32, reason: &str) -> Result<()> {
        self.shared
            .bury(&self.group, &self.held, deliveries, reason)
            .await?;
        self.settle(AckKind::Term).await
    }
}

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(&self) -> Result<()> {
        self.settle(AckKind::Ack).await
    }

    async fn nak(&self, delay: Duration, reason: &str) -> Result<()> {
        if self.max_deliveries > 0 && self.held.attempt >= self.max_deliveries {
            return self.bury(self.held.attempt, reason).await;
        }
        let delay = (!delay.is_zero()).then_some(delay);
        self.settle(AckKind::Nak(delay)).await
    }

    async fn progress(&self) -> Result<()> {
        self.settle(AckKind::Progress).await
    }

    async fn dead_letter(&self, reason: &str) -> Result<()> {
        self.bury(self.held.attempt, reason).await
    }
}

/// Bounds `operation` by [`OPERATION_TIMEOUT`].
async fn bounded<T>(operation: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(OPERATION_TIMEOUT, operation)
        .await
        .map_err(|_| BrokerError::Unavailable("NATS did not answer in time".into()))
}

fn unavailable(what: impl std::fmt::Display, error: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("{what}: {error}"))
}

fn publish_error(error: jetstream::context::PublishError) -> BrokerError {
    match error.kind() {
        jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
            BrokerError::Invalid(format!("message too large for NATS: {error}"))
        }
        _ => unavailable("publishing to NATS", error),
    }
}

/// The caller's headers as NATS headers. `Nats-*` names are the server's (de-duplication,
/// expectations): a caller may not set them.
fn caller_headers(headers: &BTreeMap<String, String>) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if is_server_header(name) {
            return Err(BrokerError::Invalid(format!(
                "header '{name}': names starting with 'Nats-' are reserved"
            )));
        }
        let header = HeaderName::from_str(name)
            .map_err(|e| BrokerError::Invalid(format!("header name '{name}': {e}")))?;
        map.insert(header, header_value(value)?);
    }
    Ok(map)
}

fn header_value(value: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(value)
        .map_err(|e| BrokerError::Invalid(format!("header value '{value}': {e}")))
}

/// The headers a message is returned with: all but the server's.
fn returned_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| !is_server_header(name.as_ref()))
        .filter_map(|(name, values)| {
            let value = values.last()?;
            Some((name.to_string(), value.as_str().to_owned()))
        })
        .collect()
}

fn is_server_header(name: &str) -> bool {
    name.get(..5)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("nats-"))
}

/// A header value holds one line.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// The client's timestamps are `time`'s (its `chrono` feature is off, to keep it lean).
fn to_chrono(time: async_nats::datetime::DateTime) -> DateTime<Utc> {
    let nanos = time.unix_timestamp_nanos();
    DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
}

/// Letters, digits, `-` and `_`: valid as a stream, consumer and subject token alike.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_token(token: &str) -> bool {
    !token.is_empty()
        && !token
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '>' | '.'))
}

fn validate_subject(subject: &str) -> Result<()> {
    if subject.split('.').all(is_token) {
        Ok(())
    } else {
        Err(BrokerError::Invalid(format!(
            "invalid subject '{subject}': dot-separated tokens without wildcards or whitespace"
        )))
    }
}

fn validate_filter(filter: &str) -> Result<()> {
    let tokens: Vec<&str> = filter.split('.').collect();
    let valid = tokens.iter().enumerate().all(|(i, token)| {
        *token == "*" || (*token == ">" && i == tokens.len() - 1) || is_token(token)
    });
    if valid {
        Ok(())
    } else {
        Err(BrokerError::Invalid(format!(
            "invalid filter '{filter}': dot-separated tokens, '*' for one token, a final '>' for the rest"
        )))
    }
}

/// `url` (one server or a comma-separated list) with passwords and tokens replaced by `***`.
fn mask_password(url: &str) -> String {
    url.split(',')
        .map(|server| {
            let (scheme, rest) = server.split_once("://").unwrap_or(("", server));
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let Some((credentials, host)) = authority.rsplit_once('@') else {
                return server.to_owned();
            };
            let scheme = if scheme.is_empty() {
                String::new()
            } else {
                format!("{scheme}://")
            };
            match credentials.split_once(':') {
                Some((user, _)) => format!("{scheme}{user}:***@{host}{path}"),
                // A token.
                None => format!("{scheme}***@{host}{path}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_password("nats://u:secret@host:4222"),
            "nats://u:***@host:4222"
        );
        assert_eq!(mask_password("nats://token@host"), "nats://***@host");
        assert_eq!(mask_password("nats://host:4222"), "nats://host:4222");
        assert_eq!(
            mask_password("nats://u:p@a:4222,nats://u:p@b:4222"),
            "nats://u:***@a:4222,nats://u:***@b:4222"
        );
    }

    #[test]
    fn subjects_and_filters() {
        assert!(validate_subject("events.policy.created.northwind").is_ok());
        assert!(validate_subject("events.*").is_err());
        assert!(validate_subject("events..a").is_err());
        assert!(validate_subject("events a").is_err());
        assert!(validate_filter("events.>").is_ok());
        assert!(validate_filter("events.*.created.*").is_ok());
        assert!(validate_filter("events.>.a").is_err());
        assert!(validate_filter("").is_err());
    }

    #[test]
    fn server_headers_are_recognised() {
        assert!(is_server_header("Nats-Msg-Id"));
        assert!(is_server_header("NATS-expected-stream"));
        assert!(!is_server_header("traceparent"));
        assert!(!is_server_header("Nat"));
    }
}
