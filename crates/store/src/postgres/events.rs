//! Change events for readers and webhooks on PostgreSQL (see `crate::webhooks`); the same
//! behaviour as `sqlite/events.rs`.
//!
//! Publication order: the transaction that marks events published first takes a
//! transaction-level advisory lock, so two of them (a relay that lost its lease and its
//! successor) never interleave, and numbers the events after the highest number committed.
//! A reader therefore never sees a number before every lower one is committed.

use super::*;

/// The advisory lock that serialises the numbering of published events.
const PUBLISH_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext('carrierhub.outbox.published_seq'))";

pub(super) const EVENT_COLUMNS: &str =
    "o.id AS event_id, o.event_type, o.carrier_id, o.subject_id, \
                             o.payload, o.created_at AS event_created_at, o.traceparent, \
                             o.published_seq";

pub(super) fn event_from_row(r: &PgRow) -> Result<OutboxEvent> {
    Ok(OutboxEvent {
        id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        carrier: r.try_get("carrier_id")?,
        subject_id: r.try_get("subject_id")?,
        payload: r.try_get("payload")?,
        created_at: r.try_get("event_created_at")?,
        traceparent: r.try_get("traceparent")?,
        published_seq: r.try_get("published_seq")?,
    })
}

/// The scope of events (`o` is the outbox): its carriers; under a book restriction only the
/// events of policies in the books and of their claims (submissions span books).
fn push_event_scope(q: &mut QueryBuilder<'_, Postgres>, scope: &Scope) {
    push_carriers(q, scope, "o.carrier_id");
    if let Some(books) = scope.book_list() {
        q.push(
            " AND ((o.event_type LIKE 'policy.%' AND EXISTS (SELECT 1 FROM policies p \
             WHERE p.id = o.subject_id AND p.producer = ANY(",
        )
        .push_bind(books.clone())
        .push(
            "))) OR (o.event_type LIKE 'claim.%' AND EXISTS (SELECT 1 FROM claims c \
             JOIN policies p ON p.id = c.policy_id WHERE c.id = o.subject_id \
             AND p.producer = ANY(",
        )
        .push_bind(books)
        .push("))))");
    }
}

/// `AND column = ANY(values)` unless `values` is empty (no filter).
fn push_filter(q: &mut QueryBuilder<'_, Postgres>, column: &str, values: &[String]) {
    if !values.is_empty() {
        q.push(format!(" AND {column} = ANY("))
            .push_bind(values.to_vec())
            .push(")");
    }
}

fn webhook_from_row(r: &PgRow) -> Result<Webhook> {
    let Json(scope): Json<Scope> = r
        .try_get("scope")
        .map_err(|e| StoreError::Corrupt(format!("webhook scope: {e}")))?;
    Ok(Webhook {
        id: r.try_get("id")?,
        url: r.try_get("url")?,
        secret: r.try_get("secret")?,
        event_types: r.try_get("event_types")?,
        carriers: r.try_get("carriers")?,
        scope,
        description: r.try_get("description")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        failing_since: r.try_get("failing_since")?,
        disabled_at: r.try_get("disabled_at")?,
        disabled_reason: r.try_get("disabled_reason")?,
    })
}

/// Deliveries (rows of `q`) with their attempts.
async fn deliveries(
    conn: &mut PgConnection,
    mut q: QueryBuilder<'_, Postgres>,
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
            attempts: r.try_get::<i32, _>("attempts")? as u32,
            next_attempt_at: r.try_get("next_attempt_at")?,
            created_at: r.try_get("created_at")?,
            delivered_at: r.try_get("delivered_at")?,
            last_status_code: r
                .try_get::<Option<i32>, _>("last_status")?
                .map(|s| s as u16),
            last_error: r.try_get("last_error")?,
            log: Vec::new(),
        });
    }
    if out.is_empty() {
        return Ok(out);
    }
    let ids: Vec<i64> = out.iter().map(|d| d.id).collect();
    let attempts = sqlx::query(
        "SELECT * FROM webhook_attempts WHERE delivery_id = ANY($1) \
         ORDER BY delivery_id, attempt, id",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_delivery: HashMap<i64, Vec<DeliveryAttempt>> = HashMap::new();
    for r in &attempts {
        by_delivery
            .entry(r.try_get("delivery_id")?)
            .or_default()
            .push(DeliveryAttempt {
                attempt: r.try_get::<i32, _>("attempt")? as u32,
                at: r.try_get("at")?,
                status_code: r
                    .try_get::<Option<i32>, _>("status_code")?
                    .map(|s| s as u16),
                error: r.try_get("error")?,
                duration_ms: r.try_get::<i64, _>("duration_ms")? as u64,
                next_attempt_at: r.try_get("next_attempt_at")?,
            });
    }
    for d in &mut out {
        d.log = by_delivery.remove(&d.id).unwrap_or_default();
    }
    Ok(out)
}

fn delivery_query<'a>() -> QueryBuilder<'a, Postgres> {
    QueryBuilder::new(
        "SELECT d.*, o.event_type FROM webhook_deliveries d JOIN outbox o ON o.id = d.event_id \
         WHERE TRUE",
    )
}

fn push_owner(q: &mut QueryBuilder<'_, Postgres>, owner: Option<&str>) {
    if let Some(owner) = owner {
        q.push(" AND created_by = ").push_bind(owner.to_owned());
    }
}

impl PgStore {
    pub(super) async fn mark_published(&self, ids: &[i64]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(PUBLISH_LOCK).execute(&mut *tx).await?;
        let newly: Vec<i64> = sqlx::query_scalar(
            "WITH base AS (SELECT COALESCE(MAX(published_seq), 0) AS m FROM outbox), \
             todo AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM outbox \
                      WHERE id = ANY($1) AND published_at IS NULL) \
             UPDATE outbox o SET published_at = clock_timestamp(), published_seq = base.m + todo.n \
             FROM base, todo WHERE o.id = todo.id RETURNING o.id",
        )
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
        if !newly.is_empty() {
            let rows = sqlx::query("SELECT * FROM webhooks WHERE disabled_at IS NULL")
                .fetch_all(&mut *tx)
                .await?;
            for webhook in rows.iter().map(webhook_from_row) {
                let webhook = webhook?;
                let mut q = QueryBuilder::<Postgres>::new(
                    "INSERT INTO webhook_deliveries (webhook_id, event_id, status, next_attempt_at) \
                     SELECT ",
                );
                q.push_bind(webhook.id)
                    .push(", o.id, 'pending', clock_timestamp() FROM outbox o WHERE o.id = ANY(")
                    .push_bind(newly.clone())
                    .push(")");
                push_filter(&mut q, "o.event_type", &webhook.event_types);
                push_filter(&mut q, "o.carrier_id", &webhook.carriers);
                push_event_scope(&mut q, &webhook.scope);
                q.push(" ORDER BY o.published_seq ON CONFLICT (webhook_id, event_id) DO NOTHING");
                q.build().execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn list_events_impl(
        &self,
        scope: &Scope,
        filter: &EventFilter,
    ) -> Result<Vec<OutboxEvent>> {
        let after_seq = match filter.after {
            None => 0,
            Some(id) => sqlx::query_scalar::<_, Option<i64>>(
                "SELECT published_seq FROM outbox WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .flatten()
            .ok_or_else(|| StoreError::NotFound(format!("no published event has id {id}")))?,
        };
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT {EVENT_COLUMNS} FROM outbox o WHERE o.published_seq > "
        ));
        q.push_bind(after_seq);
        push_filter(&mut q, "o.event_type", &filter.types);
        push_filter(&mut q, "o.carrier_id", &filter.carriers);
        push_event_scope(&mut q, scope);
        q.push(" ORDER BY o.published_seq LIMIT ")
            .push_bind(i64::from(filter.limit.max(1)));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    pub(super) async fn last_published_event_impl(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM outbox WHERE published_seq IS NOT NULL \
             ORDER BY published_seq DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(super) async fn create_webhook_impl(&self, w: &NewWebhook) -> Result<Webhook> {
        let row = sqlx::query(
            "INSERT INTO webhooks (url, secret, event_types, carriers, scope, description, \
             created_by) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
        )
        .bind(&w.url)
        .bind(&w.secret)
        .bind(&w.event_types)
        .bind(&w.carriers)
        .bind(Json(&w.scope))
        .bind(&w.description)
        .bind(&w.created_by)
        .fetch_one(&self.pool)
        .await?;
        webhook_from_row(&row)
    }

    pub(super) async fn list_webhooks_impl(&self, owner: Option<&str>) -> Result<Vec<Webhook>> {
        let mut q = QueryBuilder::<Postgres>::new("SELECT * FROM webhooks WHERE TRUE");
        push_owner(&mut q, owner);
        q.push(" ORDER BY id");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(webhook_from_row).collect()
    }

    pub(super) async fn get_webhook_impl(
        &self,
        id: i64,
        owner: Option<&str>,
    ) -> Result<Option<Webhook>> {
        let mut q = QueryBuilder::<Postgres>::new("SELECT * FROM webhooks WHERE id = ");
        q.push_bind(id);
        push_owner(&mut q, owner);
        let row = q.build().fetch_optional(&self.pool).await?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    pub(super) async fn enable_webhook_impl(
        &self,
        id: i64,
        owner: Option<&str>,
    ) -> Result<Option<Webhook>> {
        let mut tx = self.pool.begin().await?;
        let mut q = QueryBuilder::<Postgres>::new(
            "UPDATE webhooks SET disabled_at = NULL, disabled_reason = NULL, \
             failing_since = NULL WHERE id = ",
        );
        q.push_bind(id);
        push_owner(&mut q, owner);
        q.push(" RETURNING *");
        let Some(row) = q.build().fetch_optional(&mut *tx).await? else {
            tx.commit().await?;
            return Ok(None);
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = clock_timestamp(), \
             lease_owner = NULL, lease_until = NULL WHERE webhook_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        webhook_from_row(&row).map(Some)
    }

    pub(super) async fn backfill_webhook_impl(&self, id: i64, from: Backfill) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query("SELECT * FROM webhooks WHERE id = $1 AND disabled_at IS NULL")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            tx.commit().await?;
            return Ok(0);
        };
        let webhook = webhook_from_row(&row)?;
        let mut q = QueryBuilder::<Postgres>::new(
            "INSERT INTO webhook_deliveries (webhook_id, event_id, status, next_attempt_at) SELECT ",
        );
        q.push_bind(webhook.id).push(
            ", o.id, 'pending', clock_timestamp() FROM outbox o WHERE o.published_seq IS NOT NULL",
        );
        match from {
            Backfill::AfterEvent(0) => {}
            Backfill::AfterEvent(event) => {
                let seq = sqlx::query_scalar::<_, Option<i64>>(
                    "SELECT published_seq FROM outbox WHERE id = $1",
                )
                .bind(event)
                .fetch_optional(&mut *tx)
                .await?
                .flatten()
                .ok_or_else(|| {
                    StoreError::NotFound(format!("no published event has id {event}"))
                })?;
                q.push(" AND o.published_seq > ").push_bind(seq);
            }
            Backfill::Since(t) => {
                q.push(" AND o.created_at >= ").push_bind(t);
            }
        }
        push_filter(&mut q, "o.event_type", &webhook.event_types);
        push_filter(&mut q, "o.carrier_id", &webhook.carriers);
        push_event_scope(&mut q, &webhook.scope);
        q.push(" ORDER BY o.published_seq ON CONFLICT (webhook_id, event_id) DO NOTHING");
        let queued = q.build().execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(queued)
    }

    pub(super) async fn delete_webhook_impl(&self, id: i64, owner: Option<&str>) -> Result<bool> {
        let mut q = QueryBuilder::<Postgres>::new("DELETE FROM webhooks WHERE id = ");
        q.push_bind(id);
        push_owner(&mut q, owner);
        Ok(q.build().execute(&self.pool).await?.rows_affected() == 1)
    }

    pub(super) async fn claim_deliveries_impl(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<DueDelivery>> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE webhook_deliveries SET lease_owner = $1, lease_until = clock_timestamp() + $2 \
             WHERE id IN (SELECT d.id FROM webhook_deliveries d \
               JOIN webhooks w ON w.id = d.webhook_id \
               WHERE d.status = 'pending' AND d.next_attempt_at <= clock_timestamp() \
                 AND (d.lease_until IS NULL OR d.lease_until <= clock_timestamp()) \
                 AND w.disabled_at IS NULL \
               ORDER BY d.next_attempt_at, d.id LIMIT $3 FOR UPDATE OF d SKIP LOCKED) \
             RETURNING id",
        )
        .bind(owner)
        .bind(lease_interval(lease))
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT d.id, d.webhook_id, d.attempts, d.created_at, w.url, w.secret, \
             {EVENT_COLUMNS} FROM webhook_deliveries d \
             JOIN webhooks w ON w.id = d.webhook_id JOIN outbox o ON o.id = d.event_id \
             WHERE d.id = ANY($1) ORDER BY d.next_attempt_at, d.id"
        ))
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(DueDelivery {
                    id: r.try_get("id")?,
                    webhook_id: r.try_get("webhook_id")?,
                    url: r.try_get("url")?,
                    secret: r.try_get("secret")?,
                    attempts: r.try_get::<i32, _>("attempts")? as u32,
                    created_at: r.try_get("created_at")?,
                    event: event_from_row(r)?,
                })
            })
            .collect()
    }

    pub(super) async fn record_delivery_attempt_impl(&self, result: &AttemptResult) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query(
            "SELECT attempts, webhook_id, lease_owner FROM webhook_deliveries \
             WHERE id = $1 AND status = 'pending' FOR UPDATE",
        )
        .bind(result.delivery_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(());
        };
        let attempt = row.try_get::<i32, _>("attempts")? + 1;
        let webhook: i64 = row.try_get("webhook_id")?;
        let holder: Option<String> = row.try_get("lease_owner")?;
        let (status, next) = match result.outcome {
            AttemptOutcome::Delivered => ("delivered", None),
            AttemptOutcome::RetryAt(t) => ("pending", Some(t)),
            AttemptOutcome::GiveUp => ("failed", None),
        };
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, duration_ms, \
             next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(result.delivery_id)
        .bind(attempt)
        .bind(result.status_code.map(i32::from))
        .bind(&result.error)
        .bind(result.duration_ms as i64)
        .bind(next)
        .execute(&mut *tx)
        .await?;
        // Another process took the delivery over after this one's lease ran out: its attempt
        // is logged, and the other one decides what happens next (unless this one delivered).
        if holder.as_deref().is_some_and(|h| h != result.owner) && status != "delivered" {
            tx.commit().await?;
            return Ok(());
        }
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = $1, status = $2, next_attempt_at = $3, \
             lease_owner = NULL, lease_until = NULL, last_status = $4, last_error = $5, \
             delivered_at = CASE WHEN $2 = 'delivered' THEN clock_timestamp() ELSE delivered_at END \
             WHERE id = $6",
        )
        .bind(attempt)
        .bind(status)
        .bind(next)
        .bind(result.status_code.map(i32::from))
        .bind(&result.error)
        .bind(result.delivery_id)
        .execute(&mut *tx)
        .await?;
        if status == "delivered" {
            sqlx::query("UPDATE webhooks SET failing_since = NULL WHERE id = $1")
                .bind(webhook)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "UPDATE webhooks SET failing_since = COALESCE(failing_since, clock_timestamp()) \
                 WHERE id = $1",
            )
            .bind(webhook)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE webhooks SET disabled_at = clock_timestamp(), disabled_reason = $2 \
                 WHERE id = $1 AND disabled_at IS NULL \
                   AND failing_since <= clock_timestamp() - $3",
            )
            .bind(webhook)
            .bind(format!(
                "every delivery failed for {}s; the last: {}",
                result.disable_after.as_secs(),
                result.error.as_deref().unwrap_or("no answer")
            ))
            .bind(lease_interval(result.disable_after))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
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
        let mut conn = self.pool.acquire().await?;
        let items = deliveries(&mut conn, q).await?;
        Ok(page_of(items, page.limit, |d| d.id))
    }

    pub(super) async fn redeliver_impl(
        &self,
        webhook: i64,
        delivery: i64,
    ) -> Result<Option<Delivery>> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = clock_timestamp(), \
             lease_owner = NULL, lease_until = NULL WHERE id = $1 AND webhook_id = $2",
        )
        .bind(delivery)
        .bind(webhook)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(None);
        }
        let mut q = delivery_query();
        q.push(" AND d.id = ").push_bind(delivery);
        let found = deliveries(&mut tx, q).await?.pop();
        tx.commit().await?;
        Ok(found)
    }
}
