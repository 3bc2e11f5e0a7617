//! The embedded broker on PostgreSQL: the store's database, shared by every process (API
//! replicas, workers on other machines) that opens it.
//!
//! Transactions are `READ COMMITTED`; what keeps concurrent members apart is row locks:
//! - publishers take the next sequence from the counter row `broker_stream`, locked until
//!   they commit, so sequences become visible in order (see the module above);
//! - members claiming a redelivery lock the delivery row with `FOR UPDATE SKIP LOCKED`: each
//!   takes a different one, and none waits behind another;
//! - members taking a new message lock the group row `FOR UPDATE` before reading its cursor:
//!   a second member waits for the first to commit and then reads the cursor it left, so no
//!   message is handed out twice and none is passed over;
//! - settling locks the delivery row, so a nak and a concurrent redelivery of the same row
//!   happen one after the other.
//!
//! A publish also sends `NOTIFY carrierhub_broker` (on commit); each broker listens on a
//! connection of its own and wakes its waiting members.
//!
//! Times are the database server's (`now()`), the one clock all the machines share.

use super::*;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};
use std::str::FromStr;
use tokio::task::JoinHandle;

/// The channel publishers notify on commit, and every broker on the database listens to.
const CHANNEL: &str = "carrierhub_broker";

/// How long connecting, or waiting for a pooled connection, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct PgEngine {
    pool: PgPool,
    target: String,
    /// Listens for publishes by any process; ends with the engine.
    listener: JoinHandle<()>,
}

impl Drop for PgEngine {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Wakes `news`'s waiters on every notification on [`CHANNEL`], for as long as it runs. The
/// connection is its own (outside the pool) and reconnects after a failure; notifications
/// missed meanwhile are made up for by the members' polls.
async fn listen(options: PgConnectOptions, news: Arc<Notify>) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    loop {
        let Err(error) = listen_until_error(&pool, &news).await;
        tracing::debug!(%error, "broker notifications interrupted; polling meanwhile");
        news.notify_waiters();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen_until_error(
    pool: &PgPool,
    news: &Notify,
) -> Result<std::convert::Infallible, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    loop {
        listener.recv().await?;
        news.notify_waiters();
    }
}

fn dead_letter_of(row: &PgRow) -> Result<DeadLetter> {
    Ok(DeadLetter {
        id: to_u64(row.try_get("id")?),
        group: row.try_get("group_name")?,
        subject: row.try_get("subject")?,
        message_id: row.try_get("message_id")?,
        payload: row.try_get("payload")?,
        headers: parse_headers(row.try_get("headers")?)?,
        deliveries: to_u32(row.try_get("deliveries")?),
        reason: row.try_get("reason")?,
        dead_at: row.try_get("dead_at")?,
    })
}

const DEAD_LETTER_COLUMNS: &str =
    "id, group_name, subject, message_id, payload, headers::text AS headers, deliveries, reason, dead_at";

impl PgEngine {
    pub(super) async fn open(url: &str, backend: &Backend, news: Arc<Notify>) -> Result<Self> {
        let target = backend.describe();
        let unavailable = |e: sqlx::Error| BrokerError::Unavailable(format!("{target}: {e}"));
        let options = PgConnectOptions::from_str(url)
            .map_err(unavailable)?
            .application_name("carrierhub-broker");
        // One connection first, so that an unreachable server or a wrong database is named at
        // once (the pool would retry until its timeout and then say only that).
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| unavailable(sqlx::Error::PoolTimedOut))?
            .map_err(unavailable)?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        let migrated: bool = sqlx::query_scalar(
            "SELECT to_regclass('broker_stream') IS NOT NULL \
             AND to_regclass('broker_messages') IS NOT NULL \
             AND to_regclass('broker_groups') IS NOT NULL \
             AND to_regclass('broker_deliveries') IS NOT NULL \
             AND to_regclass('broker_dead_letters') IS NOT NULL",
        )
        .fetch_one(&pool)
        .await?;
        if !migrated {
            pool.close().await;
            return Err(not_migrated(&target));
        }
        let listener = tokio::spawn(listen(options, news));
        Ok(Self {
            pool,
            target,
            listener,
        })
    }

    /// Whether `group` may have a message to claim: a delivery due, or any message past its
    /// cursor (claims move the cursor to the stream's end, so that this is one index probe).
    /// Plain reads, so that idle members take no locks.
    async fn anything_due(&self, group: &str) -> Result<bool> {
        let due: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM broker_deliveries WHERE group_name = $1 AND visible_at <= now()) \
             OR EXISTS (SELECT 1 FROM broker_groups g JOIN broker_messages m \
                        ON m.sequence >= g.next_sequence WHERE g.name = $1)",
        )
        .bind(group)
        .fetch_one(&self.pool)
        .await?;
        Ok(due)
    }

    /// The group's row; with `lock`, locked until the transaction ends (the cursor's owner).
    async fn group(conn: &mut PgConnection, group: &str, lock: bool) -> Result<GroupRow> {
        let sql = if lock {
            "SELECT filter, next_sequence, ack_wait_ms, max_deliveries FROM broker_groups \
             WHERE name = $1 FOR UPDATE"
        } else {
            "SELECT filter, next_sequence, ack_wait_ms, max_deliveries FROM broker_groups \
             WHERE name = $1"
        };
        let row = sqlx::query(sql)
            .bind(group)
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| no_such_group(group))?;
        Ok(GroupRow {
            filter: row.try_get("filter")?,
            next_sequence: row.try_get("next_sequence")?,
            ack_wait_ms: row.try_get("ack_wait_ms")?,
            max_deliveries: row.try_get("max_deliveries")?,
        })
    }

    async fn message(conn: &mut PgConnection, sequence: i64, attempt: i64) -> Result<Message> {
        let row = sqlx::query(
            "SELECT subject, message_id, payload, headers::text AS headers, published_at \
             FROM broker_messages WHERE sequence = $1",
        )
        .bind(sequence)
        .fetch_one(conn)
        .await?;
        Ok(Message {
            subject: row.try_get("subject")?,
            id: row.try_get("message_id")?,
            payload: row.try_get("payload")?,
            headers: parse_headers(row.try_get("headers")?)?,
            sequence: to_u64(sequence),
            published_at: row.try_get("published_at")?,
            attempt: to_u32(attempt),
        })
    }

    /// Publishes in the caller's transaction. The counter row stays locked until that
    /// transaction ends: publishers commit in sequence order. On a duplicate the caller may
    /// roll back (the sequence taken is then given back); committing leaves a gap, which no
    /// reader minds.
    async fn publish_in(conn: &mut PgConnection, message: &Outgoing) -> Result<Published> {
        let sequence: i64 = sqlx::query_scalar(
            "UPDATE broker_stream SET last_sequence = last_sequence + 1 RETURNING last_sequence",
        )
        .fetch_one(&mut *conn)
        .await?;
        // Every publisher holds the counter row while it inserts, so an earlier message with
        // this id is committed by now, and the conflict is decided without waiting.
        let inserted = sqlx::query(
            "INSERT INTO broker_messages (sequence, subject, message_id, payload, headers, published_at) \
             VALUES ($1, $2, $3, $4, $5::jsonb, clock_timestamp()) \
             ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(sequence)
        .bind(&message.subject)
        .bind(&message.id)
        .bind(&message.payload)
        .bind(headers_json(&message.headers))
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            // Delivered to the listeners when (and if) the transaction commits.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(&mut *conn)
                .await?;
            return Ok(Published {
                sequence: to_u64(sequence),
                duplicate: false,
            });
        }
        let existing: i64 =
            sqlx::query_scalar("SELECT sequence FROM broker_messages WHERE message_id = $1")
                .bind(&message.id)
                .fetch_one(&mut *conn)
                .await?;
        Ok(Published {
            sequence: to_u64(existing),
            duplicate: true,
        })
    }

    /// Moves the group's delivery of `sequence` to the dead letters.
    async fn bury(
        conn: &mut PgConnection,
        group: &str,
        sequence: i64,
        deliveries: i64,
        reason: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO broker_dead_letters \
             (group_name, sequence, subject, message_id, payload, headers, deliveries, reason, dead_at) \
             SELECT $1, sequence, subject, message_id, payload, headers, $2, $3, now() \
             FROM broker_messages WHERE sequence = $4",
        )
        .bind(group)
        .bind(deliveries)
        .bind(reason)
        .bind(sequence)
        .execute(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM broker_deliveries WHERE group_name = $1 AND sequence = $2")
            .bind(group)
            .bind(sequence)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// One claim transaction (see the protocol in the module above). `Ok(Err(()))` when it
    /// committed progress (a dead letter, or a long scan) and the claim should go on.
    async fn claim_once(&self, group: &str) -> Result<Result<Option<Message>, ()>> {
        let mut tx = self.pool.begin().await?;
        let g = Self::group(&mut tx, group, false).await?;

        let due = sqlx::query(
            "SELECT sequence, deliveries, last_reason FROM broker_deliveries \
             WHERE group_name = $1 AND visible_at <= now() \
             ORDER BY sequence LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .bind(group)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = due {
            let sequence: i64 = row.try_get("sequence")?;
            let deliveries: i64 = row.try_get("deliveries")?;
            if g.exhausted(deliveries) {
                let last: Option<String> = row.try_get("last_reason")?;
                let reason = expiry_reason(g.ack_wait_ms, deliveries, last.as_deref());
                Self::bury(&mut tx, group, sequence, deliveries, &reason).await?;
                tx.commit().await?;
                return Ok(Err(()));
            }
            sqlx::query(
                "UPDATE broker_deliveries SET deliveries = deliveries + 1, \
                 visible_at = now() + $1::float8 * interval '1 millisecond' \
                 WHERE group_name = $2 AND sequence = $3",
            )
            .bind(g.ack_wait_ms as f64)
            .bind(group)
            .bind(sequence)
            .execute(&mut *tx)
            .await?;
            let message = Self::message(&mut tx, sequence, deliveries + 1).await?;
            tx.commit().await?;
            return Ok(Ok(Some(message)));
        }

        // The cursor: locked, and read again (another member may have moved it since).
        let g = Self::group(&mut tx, group, true).await?;
        let like = like_prefix(&g.filter);
        let mut cursor = g.next_sequence;
        let mut found = None;
        let mut more = false;
        for _ in 0..SCAN_BATCHES_PER_CLAIM {
            // The candidates, and the stream's last message whatever its subject: a scan that
            // finds nothing then moves the cursor to the end of the stream (in one statement,
            // so the last message is the last of what this statement sees).
            let batch: Vec<(i64, String)> = sqlx::query_as(
                "SELECT sequence, subject FROM broker_messages \
                 WHERE sequence >= $1 AND (subject LIKE $2 ESCAPE '\\' \
                      OR sequence = (SELECT MAX(sequence) FROM broker_messages)) \
                 ORDER BY sequence LIMIT $3",
            )
            .bind(cursor)
            .bind(&like)
            .bind(SCAN_BATCH)
            .fetch_all(&mut *tx)
            .await?;
            match scan_batch(&g.filter, &batch) {
                Scan::Found(sequence) => {
                    found = Some(sequence);
                    cursor = sequence + 1;
                    break;
                }
                Scan::Passed(next) => cursor = next,
                Scan::End => break,
            }
            more = batch.len() as i64 == SCAN_BATCH;
            if !more {
                break;
            }
        }
        if cursor != g.next_sequence {
            sqlx::query("UPDATE broker_groups SET next_sequence = $1 WHERE name = $2")
                .bind(cursor)
                .bind(group)
                .execute(&mut *tx)
                .await?;
        }
        let Some(sequence) = found else {
            tx.commit().await?;
            return Ok(if more { Err(()) } else { Ok(None) });
        };
        sqlx::query(
            "INSERT INTO broker_deliveries (group_name, sequence, deliveries, visible_at) \
             VALUES ($1, $2, 1, now() + $3::float8 * interval '1 millisecond')",
        )
        .bind(group)
        .bind(sequence)
        .bind(g.ack_wait_ms as f64)
        .execute(&mut *tx)
        .await?;
        let message = Self::message(&mut tx, sequence, 1).await?;
        tx.commit().await?;
        Ok(Ok(Some(message)))
    }
}

#[async_trait]
impl Engine for PgEngine {
    fn describe(&self) -> String {
        format!("embedded broker in {}", self.target)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn publish(&self, message: &Outgoing) -> Result<Published> {
        // A duplicate found without a lock (the common case of a relay publishing again)
        // needs no write.
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT sequence FROM broker_messages WHERE message_id = $1")
                .bind(&message.id)
                .fetch_optional(&self.pool)
                .await?;
        if let Some(sequence) = existing {
            return Ok(Published {
                sequence: to_u64(sequence),
                duplicate: true,
            });
        }
        let mut tx = self.pool.begin().await?;
        let published = Self::publish_in(&mut tx, message).await?;
        if published.duplicate {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(published)
    }

    async fn publish_all(&self, messages: &[Outgoing]) -> Result<Vec<Published>> {
        // One transaction holds the counter row for the batch, so the batch's messages take
        // consecutive sequences (a duplicate inside it leaves a gap, which groups skip).
        let mut tx = self.pool.begin().await?;
        let mut published = Vec::with_capacity(messages.len());
        for message in messages {
            published.push(Self::publish_in(&mut tx, message).await?);
        }
        tx.commit().await?;
        Ok(published)
    }

    async fn join(&self, config: &ConsumerConfig) -> Result<()> {
        let joined: Option<String> = sqlx::query_scalar(
            "INSERT INTO broker_groups (name, filter, ack_wait_ms, max_deliveries, created_at) \
             VALUES ($1, $2, $3, $4, now()) \
             ON CONFLICT (name) DO UPDATE SET ack_wait_ms = excluded.ack_wait_ms, \
             max_deliveries = excluded.max_deliveries WHERE broker_groups.filter = excluded.filter \
             RETURNING filter",
        )
        .bind(&config.group)
        .bind(&config.filter)
        .bind(millis(config.ack_wait))
        .bind(i64::from(config.max_deliveries))
        .fetch_optional(&self.pool)
        .await?;
        if joined.is_none() {
            let existing: String =
                sqlx::query_scalar("SELECT filter FROM broker_groups WHERE name = $1")
                    .bind(&config.group)
                    .fetch_one(&self.pool)
                    .await?;
            return Err(filter_conflict(&config.group, &existing, &config.filter));
        }
        Ok(())
    }

    async fn claim(&self, group: &str) -> Result<Option<Message>> {
        if !self.anything_due(group).await? {
            return Ok(None);
        }
        loop {
            if let Ok(claimed) = self.claim_once(group).await? {
                return Ok(claimed);
            }
        }
    }

    async fn settle(
        &self,
        group: &str,
        sequence: u64,
        attempt: u32,
        how: Settle<'_>,
    ) -> Result<()> {
        let sequence = to_i64(sequence);
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT d.deliveries, g.ack_wait_ms, g.max_deliveries \
             FROM broker_deliveries d JOIN broker_groups g ON g.name = d.group_name \
             WHERE d.group_name = $1 AND d.sequence = $2 FOR UPDATE OF d",
        )
        .bind(group)
        .bind(sequence)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            // Acknowledged or given up already.
            return Ok(());
        };
        let deliveries: i64 = row.try_get("deliveries")?;
        let stale = deliveries != i64::from(attempt);
        match how {
            Settle::Ack => {
                sqlx::query(
                    "DELETE FROM broker_deliveries WHERE group_name = $1 AND sequence = $2",
                )
                .bind(group)
                .bind(sequence)
                .execute(&mut *tx)
                .await?;
            }
            _ if stale => {
                tracing::debug!(
                    group,
                    sequence,
                    attempt,
                    deliveries,
                    ?how,
                    "ignored: the message was delivered again since"
                );
            }
            Settle::Progress => {
                let ack_wait_ms: i64 = row.try_get("ack_wait_ms")?;
                sqlx::query(
                    "UPDATE broker_deliveries SET visible_at = now() + $1::float8 * interval '1 millisecond' \
                     WHERE group_name = $2 AND sequence = $3",
                )
                .bind(ack_wait_ms as f64)
                .bind(group)
                .bind(sequence)
                .execute(&mut *tx)
                .await?;
            }
            Settle::Nak { delay, reason } => {
                let max: i64 = row.try_get("max_deliveries")?;
                if max > 0 && deliveries >= max {
                    Self::bury(&mut tx, group, sequence, deliveries, reason).await?;
                } else {
                    sqlx::query(
                        "UPDATE broker_deliveries \
                         SET visible_at = now() + $1::float8 * interval '1 millisecond', last_reason = $2 \
                         WHERE group_name = $3 AND sequence = $4",
                    )
                    .bind(millis(delay) as f64)
                    .bind(reason)
                    .bind(group)
                    .bind(sequence)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            Settle::DeadLetter { reason } => {
                Self::bury(&mut tx, group, sequence, deliveries, reason).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn message_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM broker_messages")
            .fetch_one(&self.pool)
            .await?;
        Ok(to_u64(n))
    }

    async fn lag(&self, group: &str) -> Result<Lag> {
        // One snapshot for both counts.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let g = Self::group(&mut tx, group, false).await?;
        let unacknowledged: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM broker_deliveries WHERE group_name = $1")
                .bind(group)
                .fetch_one(&mut *tx)
                .await?;
        let subjects: Vec<String> = sqlx::query_scalar(
            "SELECT subject FROM broker_messages WHERE sequence >= $1 AND subject LIKE $2 ESCAPE '\\'",
        )
        .bind(g.next_sequence)
        .bind(like_prefix(&g.filter))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Lag {
            pending: subjects
                .iter()
                .filter(|s| subject_matches(&g.filter, s))
                .count() as u64,
            unacknowledged: to_u64(unacknowledged),
        })
    }

    async fn dead_letters(&self, after: u64, limit: usize) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM broker_dead_letters WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(to_i64(after))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(dead_letter_of).collect()
    }

    async fn dead_letter(&self, id: u64) -> Result<Option<DeadLetter>> {
        let row = sqlx::query(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM broker_dead_letters WHERE id = $1"
        ))
        .bind(to_i64(id))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(dead_letter_of).transpose()
    }

    async fn redrive(&self, id: u64) -> Result<Option<Published>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "DELETE FROM broker_dead_letters WHERE id = $1 RETURNING {DEAD_LETTER_COLUMNS}"
        ))
        .bind(to_i64(id))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let letter = dead_letter_of(&row)?;
        let message = Outgoing {
            subject: letter.subject,
            id: redrive_id(&letter.message_id, letter.id),
            payload: letter.payload,
            headers: letter.headers,
        };
        let published = Self::publish_in(&mut tx, &message).await?;
        tx.commit().await?;
        Ok(Some(published))
    }
}
