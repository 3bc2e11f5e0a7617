//! Change events for readers and webhooks on SQLite (see `crate::webhooks`); the same
//! behaviour as `postgres/events.rs`.

use super::*;

pub(super) fn event_from_row(r: &SqliteRow) -> Result<OutboxEvent> {
    Ok(OutboxEvent {
        id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        carrier: r.try_get("carrier_id")?,
        subject_id: r.try_get("subject_id")?,
        payload: serde_json::from_str(&r.try_get::<String, _>("payload")?)
            .map_err(|e| StoreError::Corrupt(format!("outbox payload: {e}")))?,
        created_at: ts(&r.try_get::<String, _>("event_created_at")?)?,
        traceparent: r.try_get("traceparent")?,
        published_seq: r.try_get("published_seq")?,
    })
}

pub(super) const EVENT_COLUMNS: &str =
    "o.id AS event_id, o.event_type, o.carrier_id, o.subject_id, \
                             o.payload, o.created_at AS event_created_at, o.traceparent, \
                             o.published_seq";

/// The scope of events (`o` is the outbox): its carriers; under a book restriction only the
/// events of policies in the books and of their claims (submissions span books).
fn push_event_scope(q: &mut QueryBuilder<'_, Sqlite>, scope: &Scope) {
    push_carriers(q, scope, "o.carrier_id");
    if let Some(books) = scope.book_list() {
        if books.is_empty() {
            q.push(" AND 0");
            return;
        }
        q.push(
            " AND ((o.event_type LIKE 'policy.%' AND EXISTS (SELECT 1 FROM policies p \
             WHERE p.id = o.subject_id",
        );
        push_in(q, "p.producer", books.clone());
        q.push(
            ")) OR (o.event_type LIKE 'claim.%' AND EXISTS (SELECT 1 FROM claims c \
             JOIN policies p ON p.id = c.policy_id WHERE c.id = o.subject_id",
        );
        push_in(q, "p.producer", books);
        q.push(")))");
    }
}

/// `AND column IN (ids)` (nothing matches an empty list).
fn push_ids(q: &mut QueryBuilder<'_, Sqlite>, column: &str, ids: &[i64]) {
    if ids.is_empty() {
        q.push(" AND 0");
        return;
    }
    q.push(format!(" AND {column} IN ("));
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    q.push(")");
}

/// `AND column IN (values)` unless `values` is empty (no filter).
fn push_filter(q: &mut QueryBuilder<'_, Sqlite>, column: &str, values: &[String]) {
    if !values.is_empty() {
        push_in(q, column, values.to_vec());
    }
}

fn json_list(text: &str, what: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("webhook {what}: {e}")))
}

fn webhook_from_row(r: &SqliteRow) -> Result<Webhook> {
    Ok(Webhook {
        id: r.try_get("id")?,
        url: r.try_get("url")?,
        secret: r.try_get("secret")?,
        event_types: json_list(&r.try_get::<String, _>("event_types")?, "event types")?,
        carriers: json_list(&r.try_get::<String, _>("carriers")?, "carriers")?,
        scope: serde_json::from_str(&r.try_get::<String, _>("scope")?)
            .map_err(|e| StoreError::Corrupt(format!("webhook scope: {e}")))?,
        description: r.try_get("description")?,
        created_by: r.try_get("created_by")?,
        created_at: ts(&r.try_get::<String, _>("created_at")?)?,
        failing_since: opt_ts(r.try_get("failing_since")?)?,
        disabled_at: opt_ts(r.try_get("disabled_at")?)?,
        disabled_reason: r.try_get("disabled_reason")?,
    })
}

/// Queues the deliveries of newly published events (`ids`) to every enabled webhook that
/// wants them, its filters and scope applied in the query.
async fn queue_deliveries(conn: &mut SqliteConnection, ids: &[i64], at: &str) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let rows = sqlx::query("SELECT * FROM webhooks WHERE disabled_at IS NULL")
        .fetch_all(&mut *conn)
        .await?;
    let webhooks = rows
        .iter()
        .map(webhook_from_row)
        .collect::<Result<Vec<_>>>()?;
    for webhook in webhooks {
        for chunk in ids.chunks(500) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT OR IGNORE INTO webhook_deliveries \
                 (webhook_id, event_id, status, next_attempt_at, created_at) SELECT ",
            );
            q.push_bind(webhook.id)
                .push(", o.id, 'pending', ")
                .push_bind(at.to_owned())
                .push(", ")
                .push_bind(at.to_owned())
                .push(" FROM outbox o WHERE 1");
            push_ids(&mut q, "o.id", chunk);
            push_filter(&mut q, "o.event_type", &webhook.event_types);
            push_filter(&mut q, "o.carrier_id", &webhook.carriers);
            push_event_scope(&mut q, &webhook.scope);
            q.push(" ORDER BY o.published_seq");
            q.build().execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// Marks `ids` published in publication order and queues their deliveries; the body of
/// `Store::mark_events_published`.
pub(super) async fn mark_published(conn: &mut SqliteConnection, ids: &[i64]) -> Result<()> {
    let at = now();
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(published_seq), 0) FROM outbox")
        .fetch_one(&mut *conn)
        .await?;
    let mut newly = Vec::with_capacity(ids.len());
    for id in ids {
        let done = sqlx::query(
            "UPDATE outbox SET published_at = ?, published_seq = ? \
             WHERE id = ? AND published_at IS NULL",
        )
        .bind(&at)
        .bind(seq + 1)
        .bind(id)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 1 {
            seq += 1;
            newly.push(id);
        }
    }
    queue_deliveries(conn, &newly, &at).await
}

/// Deliveries with their attempts and event types, in the order of `ids`' rows.
async fn deliveries(
    conn: &mut SqliteConnection,
    mut q: QueryBuilder<'_, Sqlite>,
) -> Result<Vec<Delivery>> {
    let rows = q.build().fetch_all(&mut *conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let status: String = r.try_get("status")?;
        out.push(Delivery {
            id: r.try_get("id")?,
            webhook_id: r.try_get("webhook_id")?,
            event_id: r.try_get("event_id")?,
            event_type: r.try_get("event_type")?,
            status: DeliveryStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("delivery status '{status}'")))?,
            attempts: r.try_get::<i64, _>("attempts")? as u32,
            next_attempt_at: opt_ts(r.try_get("next_attempt_at")?)?,
            created_at: ts(&r.try_get::<String, _>("created_at")?)?,
            delivered_at: opt_ts(r.try_get("delivered_at")?)?,
            last_status_code: r
                .try_get::<Option<i64>, _>("last_status")?
                .map(|s| s as u16),
            last_error: r.try_get("last_error")?,
            log: Vec::new(),
        });
    }
    if out.is_empty() {
        return Ok(out);
    }
    let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM webhook_attempts WHERE 1");
    let ids: Vec<i64> = out.iter().map(|d| d.id).collect();
    push_ids(&mut q, "delivery_id", &ids);
    q.push(" ORDER BY delivery_id, attempt, id");
    let attempts = q.build().fetch_all(&mut *conn).await?;
    let mut by_delivery: HashMap<i64, Vec<DeliveryAttempt>> = HashMap::new();
    for r in &attempts {
        by_delivery
            .entry(r.try_get("delivery_id")?)
            .or_default()
            .push(DeliveryAttempt {
                attempt: r.try_get::<i64, _>("attempt")? as u32,
                at: ts(&r.try_get::<String, _>("at")?)?,
                status_code: r
                    .try_get::<Option<i64>, _>("status_code")?
                    .map(|s| s as u16),
                error: r.try_get("error")?,
                duration_ms: r.try_get::<i64, _>("duration_ms")? as u64,
                next_attempt_at: opt_ts(r.try_get("next_attempt_at")?)?,
            });
    }
    for d in &mut out {
        d.log = by_delivery.remove(&d.id).unwrap_or_default();
    }
    Ok(out)
}

fn delivery_query<'a>() -> QueryBuilder<'a, Sqlite> {
    QueryBuilder::new(
        "SELECT d.*, o.event_type FROM webhook_deliveries d JOIN outbox o ON o.id = d.event_id \
         WHERE 1",
    )
}

/// The owner filter of webhook lookups.
fn push_owner(q: &mut QueryBuilder<'_, Sqlite>, owner: Option<&str>) {
    if let Some(owner) = owner {
        q.push(" AND created_by = ").push_bind(owner.to_owned());
    }
}

impl SqliteStore {
    pub(super) async fn list_events_impl(
        &self,
        scope: &Scope,
        filter: &EventFilter,
    ) -> Result<Vec<OutboxEvent>> {
        let after_seq = match filter.after {
            None => 0,
            Some(id) => sqlx::query_scalar::<_, Option<i64>>(
                "SELECT published_seq FROM outbox WHERE id = ?",
            )
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .flatten()
            .ok_or_else(|| StoreError::NotFound(format!("no published event has id {id}")))?,
        };
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {EVENT_COLUMNS} FROM outbox o WHERE o.published_seq > "
        ));
        q.push_bind(after_seq);
        push_filter(&mut q, "o.event_type", &filter.types);
        push_filter(&mut q, "o.carrier_id", &filter.carriers);
        push_event_scope(&mut q, scope);
        q.push(" ORDER BY o.published_seq LIMIT ")
            .push_bind(i64::from(filter.limit.max(1)));
        let rows = q.build().fetch_all(&self.read).await?;
        rows.iter().map(event_from_row).collect()
    }

    pub(super) async fn last_published_event_impl(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM outbox WHERE published_seq IS NOT NULL \
             ORDER BY published_seq DESC LIMIT 1",
        )
        .fetch_optional(&self.read)
        .await?)
    }

    pub(super) async fn create_webhook_impl(&self, w: &NewWebhook) -> Result<Webhook> {
        let w = w.clone();
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let row = sqlx::query(
                    "INSERT INTO webhooks (url, secret, event_types, carriers, scope, \
                     description, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                     RETURNING *",
                )
                .bind(&w.url)
                .bind(&w.secret)
                .bind(serde_json::to_string(&w.event_types).expect("json"))
                .bind(serde_json::to_string(&w.carriers).expect("json"))
                .bind(serde_json::to_string(&w.scope).expect("json"))
                .bind(&w.description)
                .bind(&w.created_by)
                .bind(now())
                .fetch_one(&mut *conn)
                .await?;
                webhook_from_row(&row)
            })
        })
        .await
    }

    pub(super) async fn list_webhooks_impl(&self, owner: Option<&str>) -> Result<Vec<Webhook>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM webhooks WHERE 1");
        push_owner(&mut q, owner);
        q.push(" ORDER BY id");
        let rows = q.build().fetch_all(&self.read).await?;
        rows.iter().map(webhook_from_row).collect()
    }

    pub(super) async fn get_webhook_impl(
        &self,
        id: i64,
        owner: Option<&str>,
    ) -> Result<Option<Webhook>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM webhooks WHERE id = ");
        q.push_bind(id);
        push_owner(&mut q, owner);
        let row = q.build().fetch_optional(&self.read).await?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    pub(super) async fn enable_webhook_impl(
        &self,
        id: i64,
        owner: Option<&str>,
    ) -> Result<Option<Webhook>> {
        let owner = owner.map(str::to_owned);
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let mut q = QueryBuilder::<Sqlite>::new(
                    "UPDATE webhooks SET disabled_at = NULL, disabled_reason = NULL, \
                     failing_since = NULL WHERE id = ",
                );
                q.push_bind(id);
                push_owner(&mut q, owner.as_deref());
                q.push(" RETURNING *");
                let Some(row) = q.build().fetch_optional(&mut *conn).await? else {
                    return Ok(None);
                };
                sqlx::query(
                    "UPDATE webhook_deliveries SET next_attempt_at = ?, lease_owner = NULL, \
                     lease_until = NULL WHERE webhook_id = ? AND status = 'pending'",
                )
                .bind(now())
                .bind(id)
                .execute(&mut *conn)
                .await?;
                webhook_from_row(&row).map(Some)
            })
        })
        .await
    }

    pub(super) async fn backfill_webhook_impl(&self, id: i64, from: Backfill) -> Result<u64> {
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let Some(row) =
                    sqlx::query("SELECT * FROM webhooks WHERE id = ? AND disabled_at IS NULL")
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?
                else {
                    return Ok(0);
                };
                let webhook = webhook_from_row(&row)?;
                let at = now();
                let mut q = QueryBuilder::<Sqlite>::new(
                    "INSERT OR IGNORE INTO webhook_deliveries \
                     (webhook_id, event_id, status, next_attempt_at, created_at) SELECT ",
                );
                q.push_bind(webhook.id)
                    .push(", o.id, 'pending', ")
                    .push_bind(at.clone())
                    .push(", ")
                    .push_bind(at)
                    .push(" FROM outbox o WHERE o.published_seq IS NOT NULL");
                match from {
                    Backfill::AfterEvent(0) => {}
                    Backfill::AfterEvent(event) => {
                        let seq = sqlx::query_scalar::<_, Option<i64>>(
                            "SELECT published_seq FROM outbox WHERE id = ?",
                        )
                        .bind(event)
                        .fetch_optional(&mut *conn)
                        .await?
                        .flatten()
                        .ok_or_else(|| {
                            StoreError::NotFound(format!("no published event has id {event}"))
                        })?;
                        q.push(" AND o.published_seq > ").push_bind(seq);
                    }
                    Backfill::Since(t) => {
                        q.push(" AND o.created_at >= ").push_bind(instant(t));
                    }
                }
                push_filter(&mut q, "o.event_type", &webhook.event_types);
                push_filter(&mut q, "o.carrier_id", &webhook.carriers);
                push_event_scope(&mut q, &webhook.scope);
                q.push(" ORDER BY o.published_seq");
                Ok(q.build().execute(&mut *conn).await?.rows_affected())
            })
        })
        .await
    }

    pub(super) async fn delete_webhook_impl(&self, id: i64, owner: Option<&str>) -> Result<bool> {
        let owner = owner.map(str::to_owned);
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let mut q = QueryBuilder::<Sqlite>::new("DELETE FROM webhooks WHERE id = ");
                q.push_bind(id);
                push_owner(&mut q, owner.as_deref());
                Ok(q.build().execute(&mut *conn).await?.rows_affected() == 1)
            })
        })
        .await
    }

    pub(super) async fn claim_deliveries_impl(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<DueDelivery>> {
        let owner = owner.to_owned();
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let now = now();
                let until = instant(Utc::now() + lease);
                let ids: Vec<i64> = sqlx::query_scalar(
                    "UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ? \
                     WHERE id IN (SELECT d.id FROM webhook_deliveries d \
                       JOIN webhooks w ON w.id = d.webhook_id \
                       WHERE d.status = 'pending' AND d.next_attempt_at <= ? \
                         AND (d.lease_until IS NULL OR d.lease_until <= ?) \
                         AND w.disabled_at IS NULL \
                       ORDER BY d.next_attempt_at, d.id LIMIT ?) \
                     RETURNING id",
                )
                .bind(&owner)
                .bind(&until)
                .bind(&now)
                .bind(&now)
                .bind(limit as i64)
                .fetch_all(&mut *conn)
                .await?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = QueryBuilder::<Sqlite>::new(format!(
                    "SELECT d.id, d.webhook_id, d.attempts, d.created_at, w.url, w.secret, \
                     {EVENT_COLUMNS} FROM webhook_deliveries d \
                     JOIN webhooks w ON w.id = d.webhook_id JOIN outbox o ON o.id = d.event_id \
                     WHERE 1"
                ));
                push_ids(&mut q, "d.id", &ids);
                q.push(" ORDER BY d.next_attempt_at, d.id");
                let rows = q.build().fetch_all(&mut *conn).await?;
                rows.iter()
                    .map(|r| {
                        Ok(DueDelivery {
                            id: r.try_get("id")?,
                            webhook_id: r.try_get("webhook_id")?,
                            url: r.try_get("url")?,
                            secret: r.try_get("secret")?,
                            attempts: r.try_get::<i64, _>("attempts")? as u32,
                            created_at: ts(&r.try_get::<String, _>("created_at")?)?,
                            event: event_from_row(r)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    pub(super) async fn record_delivery_attempt_impl(&self, result: &AttemptResult) -> Result<()> {
        let result = result.clone();
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let Some(row) = sqlx::query(
                    "SELECT attempts, webhook_id, lease_owner FROM webhook_deliveries \
                     WHERE id = ? AND status = 'pending'",
                )
                .bind(result.delivery_id)
                .fetch_optional(&mut *conn)
                .await?
                else {
                    return Ok(());
                };
                let attempt = row.try_get::<i64, _>("attempts")? + 1;
                let webhook: i64 = row.try_get("webhook_id")?;
                let holder: Option<String> = row.try_get("lease_owner")?;
                let now_t = Utc::now();
                let at = instant(now_t);
                let (status, next) = match result.outcome {
                    AttemptOutcome::Delivered => ("delivered", None),
                    AttemptOutcome::RetryAt(t) => ("pending", Some(instant(t))),
                    AttemptOutcome::GiveUp => ("failed", None),
                };
                sqlx::query(
                    "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, \
                     duration_ms, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(result.delivery_id)
                .bind(attempt)
                .bind(&at)
                .bind(result.status_code.map(i64::from))
                .bind(&result.error)
                .bind(result.duration_ms as i64)
                .bind(&next)
                .execute(&mut *conn)
                .await?;
                // Another process took the delivery over after this one's lease ran out: its
                // attempt is logged, and the other one decides what happens next (unless
                // this one delivered).
                if holder.as_deref().is_some_and(|h| h != result.owner) && status != "delivered"
                {
                    return Ok(());
                }
                sqlx::query(
                    "UPDATE webhook_deliveries SET attempts = ?, status = ?, next_attempt_at = ?, \
                     lease_owner = NULL, lease_until = NULL, last_status = ?, last_error = ?, \
                     delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END \
                     WHERE id = ?",
                )
                .bind(attempt)
                .bind(status)
                .bind(&next)
                .bind(result.status_code.map(i64::from))
                .bind(&result.error)
                .bind(status)
                .bind(&at)
                .bind(result.delivery_id)
                .execute(&mut *conn)
                .await?;
                if status == "delivered" {
                    sqlx::query("UPDATE webhooks SET failing_since = NULL WHERE id = ?")
                        .bind(webhook)
                        .execute(&mut *conn)
                        .await?;
                } else {
                    let cutoff = instant(
                        now_t
                            - chrono::Duration::from_std(result.disable_after)
                                .unwrap_or(chrono::Duration::MAX),
                    );
                    sqlx::query(
                        "UPDATE webhooks SET failing_since = COALESCE(failing_since, ?) WHERE id = ?",
                    )
                    .bind(&at)
                    .bind(webhook)
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query(
                        "UPDATE webhooks SET disabled_at = ?, disabled_reason = ? \
                         WHERE id = ? AND disabled_at IS NULL AND failing_since <= ?",
                    )
                    .bind(&at)
                    .bind(format!(
                        "every delivery failed for {}s; the last: {}",
                        result.disable_after.as_secs(),
                        result.error.as_deref().unwrap_or("no answer")
                    ))
                    .bind(webhook)
                    .bind(&cutoff)
                    .execute(&mut *conn)
                    .await?;
                }
                Ok(())
            })
        })
        .await
    }

    pub(super) async fn list_deliveries_impl(
        &self,
        webhook: i64,
        page: &PageRequest,
    ) -> Result<Page<Delivery>> {
        let mut q = delivery_query();
        q.push(" AND d.webhook_id = ").push_bind(webhook);
        if let Some(after) = page.after_id {
            q.push(" AND d.id > ").push_bind(after);
        }
        q.push(" ORDER BY d.id LIMIT ")
            .push_bind(i64::from(page.limit) + 1);
        let mut conn = self.read.acquire().await?;
        let items = deliveries(&mut conn, q).await?;
        Ok(page_of(items, page.limit, |d| d.id))
    }

    pub(super) async fn redeliver_impl(
        &self,
        webhook: i64,
        delivery: i64,
    ) -> Result<Option<Delivery>> {
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, \
                     lease_owner = NULL, lease_until = NULL WHERE id = ? AND webhook_id = ?",
                )
                .bind(now())
                .bind(delivery)
                .bind(webhook)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(None);
                }
                let mut q = delivery_query();
                q.push(" AND d.id = ").push_bind(delivery);
                Ok(deliveries(conn, q).await?.pop())
            })
        })
        .await
    }
}
