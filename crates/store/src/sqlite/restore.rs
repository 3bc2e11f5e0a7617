//! A store restored from a backup: the claims that processes held on the original store are
//! let go in the copy.
//!
//! A backup taken while the server works holds its claims as they were: submissions being
//! processed (a worker's lease), messages handed to a consumer and not yet acknowledged (the
//! ack wait), webhook deliveries in progress, requests in flight under an idempotency key, and
//! the named leases of the relay and the warehouse writer. No process works on the restored
//! copy, so waiting for them to run out only delays it: the first server started on it would
//! sit idle for up to a lease's length. Each is released instead, as a crash of its holder is
//! handled, only at once: the work resumes after its last committed batch, the message is
//! redelivered, the delivery and the request may be taken again. Fencing tokens are kept, so
//! that they still only grow.

use crate::Result;
use sqlx::SqliteConnection;

/// What [`release_claims`] let go.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReleasedClaims {
    /// Submissions being processed, to resume after their last committed batch.
    pub submissions: u64,
    /// Broker messages in flight (or waiting out a nak's delay), due again now.
    pub messages: u64,
    /// Webhook deliveries, requests under an idempotency key, and named leases.
    pub other: u64,
}

/// Each claim: the table it lives in, and the statement that releases it (`?1`, where it
/// appears: now).
const RELEASES: &[(&str, Kind, &str)] = &[
    (
        "submissions",
        Kind::Submission,
        "UPDATE submissions SET lease_owner = NULL, lease_until = NULL \
         WHERE status = 'processing' AND (lease_owner IS NOT NULL OR lease_until IS NOT NULL)",
    ),
    (
        "broker_deliveries",
        Kind::Message,
        "UPDATE broker_deliveries SET visible_at = ?1 WHERE visible_at > ?1",
    ),
    (
        "webhook_deliveries",
        Kind::Other,
        "UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL \
         WHERE status = 'pending' AND lease_until > ?1",
    ),
    (
        "idempotency_keys",
        Kind::Other,
        "UPDATE idempotency_keys SET locked_until = ?1 \
         WHERE token IS NOT NULL AND locked_until > ?1",
    ),
    (
        "leases",
        Kind::Other,
        "UPDATE leases SET until = ?1 WHERE until > ?1",
    ),
    (
        "fenced_leases",
        Kind::Other,
        "UPDATE fenced_leases SET until = ?1 WHERE until > ?1",
    ),
];

#[derive(Clone, Copy)]
enum Kind {
    Submission,
    Message,
    Other,
}

/// Releases every claim held in a restored copy of the store, in one transaction. Run it on
/// the copy before any process opens it. A table the copy's schema does not have yet (a
/// backup of an older release) holds no claims of its kind.
pub async fn release_claims(conn: &mut SqliteConnection) -> Result<ReleasedClaims> {
    let now = super::now();
    let mut released = ReleasedClaims::default();
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for (table, kind, statement) in RELEASES {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)",
        )
        .bind(table)
        .fetch_one(&mut *tx)
        .await?;
        if !exists {
            continue;
        }
        let mut query = sqlx::query(statement);
        if statement.contains("?1") {
            query = query.bind(&now);
        }
        let n = query.execute(&mut *tx).await?.rows_affected();
        match kind {
            Kind::Submission => released.submissions += n,
            Kind::Message => released.messages += n,
            Kind::Other => released.other += n,
        }
    }
    tx.commit().await?;
    Ok(released)
}
