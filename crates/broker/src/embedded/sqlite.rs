//! The embedded broker on SQLite: the file of the store, in WAL mode.
//!
//! SQLite has one writer at a time. Every write (publish, claim, settle, redrive) is one
//! `BEGIN IMMEDIATE` transaction, which takes the write lock at its start: another process
//! writing the same file makes it wait on the busy timeout rather than fail part-way, and
//! the transaction's reads see the latest commit. Within this process writes also queue on a
//! mutex, which is cheaper than SQLite's busy-waiting. Reads (the idle check, lag, dead
//! letters) use the pool and never block the writer.
//!
//! `synchronous = NORMAL`, as the store: a commit survives the process (a restart); a power
//! cut can lose the last commits to the file, the store's and the broker's alike, but never
//! an earlier commit while keeping a later one.
//!
//! Instants are stored as RFC 3339 text of fixed precision, so that text order is time order.

use super::*;
use chrono::SecondsFormat;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::path::Path;
use tokio::sync::{Mutex, MutexGuard};

const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct SqliteEngine {
    pool: SqlitePool,
    target: String,
    write: Mutex<()>,
}

/// A write transaction, holding this process's write turn until it ends.
struct Write<'a> {
    tx: Transaction<'static, Sqlite>,
    _turn: MutexGuard<'a, ()>,
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn now() -> String {
    instant(Utc::now())
}

fn after(delay: Duration) -> String {
    let delay = chrono::Duration::from_std(delay.min(MAX_DELAY)).unwrap_or(chrono::Duration::MAX);
    instant(Utc::now() + delay)
}

fn after_ms(ms: i64) -> String {
    after(Duration::from_millis(to_u64(ms)))
}

fn parse_instant(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| BrokerError::Invalid(format!("stored instant '{text}' is not valid: {e}")))
}

fn dead_letter_of(row: &SqliteRow) -> Result<DeadLetter> {
    Ok(DeadLetter {
        id: to_u64(row.try_get("id")?),
        group: row.try_get("group_name")?,
        subject: row.try_get("subject")?,
        message_id: row.try_get("message_id")?,
        payload: row.try_get("payload")?,
        headers: parse_headers(row.try_get("headers")?)?,
        deliveries: to_u32(row.try_get("deliveries")?),
        reason: row.try_get("reason")?,
        dead_at: parse_instant(row.try_get("dead_at")?)?,
    })
}

const DEAD_LETTER_COLUMNS: &str =
    "id, group_name, subject, message_id, payload, headers, deliveries, reason, dead_at";

impl SqliteEngine {
    pub(super) async fn open(path: &Path, backend: &Backend) -> Result<Self> {
        let target = backend.describe();
        if !path.exists() {
            return Err(not_migrated(&format!("{target} does not exist")));
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| BrokerError::Unavailable(format!("cannot open {target}: {e}")))?;
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN \
             ('broker_messages', 'broker_groups', 'broker_deliveries', 'broker_dead_letters')",
        )
        .fetch_one(&pool)
        .await?;
        if tables != 4 {
            pool.close().await;
            return Err(not_migrated(&target));
        }
        Ok(Self {
            pool,
            target,
            write: Mutex::new(()),
        })
    }

    async fn write(&self) -> Result<Write<'_>> {
        let turn = self.write.lock().await;
        // The `BEGIN` runs in a task of its own. A caller dropped while it waits (a select
        // whose other branch won, a timed-out request) would otherwise race SQLite's worker:
        // a `BEGIN` that succeeded after the caller stopped listening leaves a pooled
        // connection inside a transaction nobody owns, holding the write lock of the file,
        // store included, until that connection is used again. Here the transaction always
        // reaches a `Transaction`, whose drop rolls it back.
        let pool = self.pool.clone();
        let tx = tokio::spawn(async move { pool.begin_with("BEGIN IMMEDIATE").await })
            .await
            .map_err(|e| {
                BrokerError::Unavailable(format!("{}: cannot begin a write: {e}", self.target))
            })??;
        Ok(Write { tx, _turn: turn })
    }

    /// Whether `group` may have a message to claim: a delivery due, or any message past its
    /// cursor (claims move the cursor to the stream's end, so that this is one index probe).
    /// Plain reads, so that idle members take no write lock.
    async fn anything_due(&self, group: &str) -> Result<bool> {
        let due: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM broker_deliveries WHERE group_name = ? AND visible_at <= ?) \
             OR EXISTS (SELECT 1 FROM broker_groups g JOIN broker_messages m \
                        ON m.sequence >= g.next_sequence WHERE g.name = ?)",
        )
        .bind(group)
        .bind(now())
        .bind(group)
        .fetch_one(&self.pool)
        .await?;
        Ok(due)
    }

    async fn group(conn: &mut SqliteConnection, group: &str) -> Result<GroupRow> {
        let row = sqlx::query(
            "SELECT filter, next_sequence, ack_wait_ms, max_deliveries FROM broker_groups WHERE name = ?",
        )
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

    async fn message(conn: &mut SqliteConnection, sequence: i64, attempt: i64) -> Result<Message> {
        let row = sqlx::query(
            "SELECT subject, message_id, payload, headers, published_at FROM broker_messages \
             WHERE sequence = ?",
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
            published_at: parse_instant(row.try_get("published_at")?)?,
            attempt: to_u32(attempt),
        })
    }

    async fn publish_in(conn: &mut SqliteConnection, message: &Outgoing) -> Result<Published> {
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO broker_messages (subject, message_id, payload, headers, published_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING RETURNING sequence",
        )
        .bind(&message.subject)
        .bind(&message.id)
        .bind(&message.payload)
        .bind(headers_json(&message.headers))
        .bind(now())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(sequence) = inserted {
            return Ok(Published {
                sequence: to_u64(sequence),
                duplicate: false,
            });
        }
        let existing: i64 =
            sqlx::query_scalar("SELECT sequence FROM broker_messages WHERE message_id = ?")
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
        conn: &mut SqliteConnection,
        group: &str,
        sequence: i64,
        deliveries: i64,
        reason: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO broker_dead_letters \
             (group_name, sequence, subject, message_id, payload, headers, deliveries, reason, dead_at) \
             SELECT ?, sequence, subject, message_id, payload, headers, ?, ?, ? \
             FROM broker_messages WHERE sequence = ?",
        )
        .bind(group)
        .bind(deliveries)
        .bind(reason)
        .bind(now())
        .bind(sequence)
        .execute(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM broker_deliveries WHERE group_name = ? AND sequence = ?")
            .bind(group)
            .bind(sequence)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// One claim transaction (see the protocol in the module above). `Ok(Err(()))` when it
    /// committed progress (a dead letter, or a long scan) and the claim should go on.
    async fn claim_once(&self, group: &str) -> Result<Result<Option<Message>, ()>> {
        let mut w = self.write().await?;
        let conn = &mut *w.tx;
        let g = Self::group(conn, group).await?;

        let due = sqlx::query(
            "SELECT sequence, deliveries, last_reason FROM broker_deliveries \
             WHERE group_name = ? AND visible_at <= ? ORDER BY sequence LIMIT 1",
        )
        .bind(group)
        .bind(now())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = due {
            let sequence: i64 = row.try_get("sequence")?;
            let deliveries: i64 = row.try_get("deliveries")?;
            if g.exhausted(deliveries) {
                let last: Option<String> = row.try_get("last_reason")?;
                let reason = expiry_reason(g.ack_wait_ms, deliveries, last.as_deref());
                Self::bury(conn, group, sequence, deliveries, &reason).await?;
                w.tx.commit().await?;
                return Ok(Err(()));
            }
            sqlx::query(
                "UPDATE broker_deliveries SET deliveries = deliveries + 1, visible_at = ? \
                 WHERE group_name = ? AND sequence = ?",
            )
            .bind(after_ms(g.ack_wait_ms))
            .bind(group)
            .bind(sequence)
            .execute(&mut *conn)
            .await?;
            let message = Self::message(conn, sequence, deliveries + 1).await?;
            w.tx.commit().await?;
            return Ok(Ok(Some(message)));
        }

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
                 WHERE sequence >= ? AND (subject LIKE ? ESCAPE '\\' \
                      OR sequence = (SELECT MAX(sequence) FROM broker_messages)) \
                 ORDER BY sequence LIMIT ?",
            )
            .bind(cursor)
            .bind(&like)
            .bind(SCAN_BATCH)
            .fetch_all(&mut *conn)
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
            sqlx::query("UPDATE broker_groups SET next_sequence = ? WHERE name = ?")
                .bind(cursor)
                .bind(group)
                .execute(&mut *conn)
                .await?;
        }
        let Some(sequence) = found else {
            w.tx.commit().await?;
            return Ok(if more { Err(()) } else { Ok(None) });
        };
        sqlx::query(
            "INSERT INTO broker_deliveries (group_name, sequence, deliveries, visible_at) \
             VALUES (?, ?, 1, ?)",
        )
        .bind(group)
        .bind(sequence)
        .bind(after_ms(g.ack_wait_ms))
        .execute(&mut *conn)
        .await?;
        let message = Self::message(conn, sequence, 1).await?;
        w.tx.commit().await?;
        Ok(Ok(Some(message)))
    }
}

#[async_trait]
impl Engine for SqliteEngine {
    fn describe(&self) -> String {
        format!("embedded broker in {}", self.target)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn publish(&self, message: &Outgoing) -> Result<Published> {
        let mut w = self.write().await?;
        let published = Self::publish_in(&mut w.tx, message).await?;
        w.tx.commit().await?;
        Ok(published)
    }

    async fn publish_all(&self, messages: &[Outgoing]) -> Result<Vec<Published>> {
        let mut w = self.write().await?;
        let mut published = Vec::with_capacity(messages.len());
        for message in messages {
            published.push(Self::publish_in(&mut w.tx, message).await?);
        }
        w.tx.commit().await?;
        Ok(published)
    }

    async fn join(&self, config: &ConsumerConfig) -> Result<()> {
        let mut w = self.write().await?;
        let joined: Option<String> = sqlx::query_scalar(
            "INSERT INTO broker_groups (name, filter, ack_wait_ms, max_deliveries, created_at) \
             VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET ack_wait_ms = excluded.ack_wait_ms, \
             max_deliveries = excluded.max_deliveries WHERE filter = excluded.filter \
             RETURNING filter",
        )
        .bind(&config.group)
        .bind(&config.filter)
        .bind(millis(config.ack_wait))
        .bind(i64::from(config.max_deliveries))
        .bind(now())
        .fetch_optional(&mut *w.tx)
        .await?;
        if joined.is_none() {
            let existing: String =
                sqlx::query_scalar("SELECT filter FROM broker_groups WHERE name = ?")
                    .bind(&config.group)
                    .fetch_one(&mut *w.tx)
                    .await?;
            return Err(filter_conflict(&config.group, &existing, &config.filter));
        }
        w.tx.commit().await?;
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
        let mut w = self.write().await?;
        let conn = &mut *w.tx;
        let row = sqlx::query(
            "SELECT d.deliveries, g.ack_wait_ms, g.max_deliveries \
             FROM broker_deliveries d JOIN broker_groups g ON g.name = d.group_name \
             WHERE d.group_name = ? AND d.sequence = ?",
        )
        .bind(group)
        .bind(sequence)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            // Acknowledged or given up already.
            return Ok(());
        };
        let deliveries: i64 = row.try_get("deliveries")?;
        let stale = deliveries != i64::from(attempt);
        match how {
            Settle::Ack => {
                sqlx::query("DELETE FROM broker_deliveries WHERE group_name = ? AND sequence = ?")
                    .bind(group)
                    .bind(sequence)
                    .execute(&mut *conn)
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
                sqlx::query(
                    "UPDATE broker_deliveries SET visible_at = ? WHERE group_name = ? AND sequence = ?",
                )
                .bind(after_ms(row.try_get("ack_wait_ms")?))
                .bind(group)
                .bind(sequence)
                .execute(&mut *conn)
                .await?;
            }
            Settle::Nak { delay, reason } => {
                let max: i64 = row.try_get("max_deliveries")?;
                if max > 0 && deliveries >= max {
                    Self::bury(conn, group, sequence, deliveries, reason).await?;
                } else {
                    sqlx::query(
                        "UPDATE broker_deliveries SET visible_at = ?, last_reason = ? \
                         WHERE group_name = ? AND sequence = ?",
                    )
                    .bind(after(delay))
                    .bind(reason)
                    .bind(group)
                    .bind(sequence)
                    .execute(&mut *conn)
                    .await?;
                }
            }
            Settle::DeadLetter { reason } => {
                Self::bury(conn, group, sequence, deliveries, reason).await?;
            }
        }
        w.tx.commit().await?;
        Ok(())
    }

    async fn message_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM broker_messages")
            .fetch_one(&self.pool)
            .await?;
        Ok(to_u64(n))
    }

    async fn lag(&self, group: &str) -> Result<Lag> {
        // One read transaction: both counts from the same snapshot.
        let mut tx = self.pool.begin().await?;
        let g = Self::group(&mut tx, group).await?;
        let unacknowledged: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM broker_deliveries WHERE group_name = ?")
                .bind(group)
                .fetch_one(&mut *tx)
                .await?;
        let subjects: Vec<String> = sqlx::query_scalar(
            "SELECT subject FROM broker_messages WHERE sequence >= ? AND subject LIKE ? ESCAPE '\\'",
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
            "SELECT {DEAD_LETTER_COLUMNS} FROM broker_dead_letters WHERE id > ? ORDER BY id LIMIT ?"
        ))
        .bind(to_i64(after))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(dead_letter_of).collect()
    }

    async fn dead_letter(&self, id: u64) -> Result<Option<DeadLetter>> {
        let row = sqlx::query(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM broker_dead_letters WHERE id = ?"
        ))
        .bind(to_i64(id))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(dead_letter_of).transpose()
    }

    async fn redrive(&self, id: u64) -> Result<Option<Published>> {
        let mut w = self.write().await?;
        let row = sqlx::query(&format!(
            "DELETE FROM broker_dead_letters WHERE id = ? RETURNING {DEAD_LETTER_COLUMNS}"
        ))
        .bind(to_i64(id))
        .fetch_optional(&mut *w.tx)
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
        let published = Self::publish_in(&mut w.tx, &message).await?;
        w.tx.commit().await?;
        Ok(Some(published))
    }
}
