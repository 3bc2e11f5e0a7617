//! Today's movements for the live view on PostgreSQL (see `crate::live`); the same
//! behaviour as `sqlite/live.rs`, summed in the database.

use super::*;
use crate::live::{LiveAmounts, LiveKey, LiveRange, LiveRow};

/// The movements of the events in a range, summed per key: premium transactions, claim
/// transactions and new claims (each part fills its own columns). A claim is keyed by the
/// policy version current when its version was written.
const MOVEMENTS: &str = "\
WITH ev AS (
    SELECT o.event_type, o.subject_id, (o.payload ->> 'version')::bigint AS version
      FROM outbox o
     WHERE o.published_seq > $1 AND o.published_seq <= $2
       AND o.created_at >= $3 AND o.created_at < $4
       AND (o.event_type LIKE 'policy.%' OR o.event_type LIKE 'claim.%')
)
SELECT pv.carrier_id AS carrier, pv.line_of_business AS line, pv.record ->> 'producer' AS book,
       t.currency AS currency, COUNT(*)::bigint AS premium_transactions,
       SUM(t.amount) AS premium_written, 0::bigint AS claims_new,
       0::bigint AS claim_transactions, 0::numeric AS claims_incurred, 0::numeric AS claims_paid
  FROM ev
  JOIN premium_transactions t ON t.policy_id = ev.subject_id AND t.policy_version = ev.version
  JOIN policy_versions pv ON pv.policy_id = t.policy_id AND pv.version = t.policy_version
 WHERE ev.event_type LIKE 'policy.%'
 GROUP BY 1, 2, 3, 4
UNION ALL
SELECT cv.carrier_id, pv.line_of_business, pv.record ->> 'producer', t.currency,
       0, 0, 0, COUNT(*)::bigint, SUM(t.amount),
       SUM(CASE WHEN t.kind <> 'reserve_change' THEN t.amount ELSE 0 END)
  FROM ev
  JOIN claim_transactions t ON t.claim_id = ev.subject_id AND t.claim_version = ev.version
  JOIN claim_versions cv ON cv.claim_id = t.claim_id AND cv.version = t.claim_version
  JOIN policy_versions pv ON pv.policy_id = cv.policy_id AND pv.valid_from <= cv.valid_from
   AND (pv.valid_to IS NULL OR pv.valid_to > cv.valid_from)
 WHERE ev.event_type LIKE 'claim.%'
 GROUP BY 1, 2, 3, 4
UNION ALL
SELECT cv.carrier_id, pv.line_of_business, pv.record ->> 'producer',
       cv.record -> 'paid' ->> 'currency', 0, 0, COUNT(*)::bigint, 0, 0, 0
  FROM ev
  JOIN claim_versions cv ON cv.claim_id = ev.subject_id AND cv.version = ev.version
  JOIN policy_versions pv ON pv.policy_id = cv.policy_id AND pv.valid_from <= cv.valid_from
   AND (pv.valid_to IS NULL OR pv.valid_to > cv.valid_from)
 WHERE ev.event_type = 'claim.created'
 GROUP BY 1, 2, 3, 4";

impl PgStore {
    pub(super) async fn last_published_seq_impl(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(published_seq) FROM outbox")
                .fetch_one(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    pub(super) async fn live_movements_impl(&self, range: &LiveRange) -> Result<Vec<LiveRow>> {
        let rows = sqlx::query(MOVEMENTS)
            .bind(range.after)
            .bind(range.through)
            .bind(range.since)
            .bind(range.until)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LiveRow {
                    key: LiveKey {
                        carrier: r.try_get("carrier")?,
                        line_of_business: r.try_get("line")?,
                        book: r.try_get("book")?,
                        currency: r.try_get("currency")?,
                    },
                    amounts: LiveAmounts {
                        premium_transactions: r.try_get::<i64, _>("premium_transactions")? as u64,
                        premium_written: r.try_get("premium_written")?,
                        claims_new: r.try_get::<i64, _>("claims_new")? as u64,
                        claim_transactions: r.try_get::<i64, _>("claim_transactions")? as u64,
                        claims_incurred: r.try_get("claims_incurred")?,
                        claims_paid: r.try_get("claims_paid")?,
                    },
                })
            })
            .collect()
    }
}
