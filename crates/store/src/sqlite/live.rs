//! Today's movements for the live view on SQLite (see `crate::live`); the same behaviour as
//! `postgres/live.rs`. Amounts are stored as exact decimal text, so rows are summed here,
//! not by SQLite (whose sums are floating point).

use super::*;
use crate::live::{LiveAmounts, LiveKey, LiveRange, LiveRow};

/// One row per movement of the events in a range: premium transactions, claim transactions
/// and new claims (each part fills its own columns). A claim is keyed by the policy version
/// current when its version was written.
const MOVEMENTS: &str = "\
WITH ev AS (
    SELECT o.event_type, o.subject_id, json_extract(o.payload, '$.version') AS version
      FROM outbox o
     WHERE o.published_seq > ?1 AND o.published_seq <= ?2
       AND o.created_at >= ?3 AND o.created_at < ?4
       AND (o.event_type LIKE 'policy.%' OR o.event_type LIKE 'claim.%')
)
SELECT pv.carrier_id AS carrier, pv.line_of_business AS line,
       json_extract(pv.record, '$.producer') AS book, t.currency AS currency,
       1 AS premium_transactions, t.amount AS premium_written, 0 AS claims_new,
       0 AS claim_transactions, '0' AS claims_incurred, '0' AS claims_paid
  FROM ev
  JOIN premium_transactions t ON t.policy_id = ev.subject_id AND t.policy_version = ev.version
  JOIN policy_versions pv ON pv.policy_id = t.policy_id AND pv.version = t.policy_version
 WHERE ev.event_type LIKE 'policy.%'
UNION ALL
SELECT cv.carrier_id, pv.line_of_business, json_extract(pv.record, '$.producer'), t.currency,
       0, '0', 0, 1, t.amount, CASE WHEN t.kind <> 'reserve_change' THEN t.amount ELSE '0' END
  FROM ev
  JOIN claim_transactions t ON t.claim_id = ev.subject_id AND t.claim_version = ev.version
  JOIN claim_versions cv ON cv.claim_id = t.claim_id AND cv.version = t.claim_version
  JOIN policy_versions pv ON pv.policy_id = cv.policy_id AND pv.valid_from <= cv.valid_from
   AND (pv.valid_to IS NULL OR pv.valid_to > cv.valid_from)
 WHERE ev.event_type LIKE 'claim.%'
UNION ALL
SELECT cv.carrier_id, pv.line_of_business, json_extract(pv.record, '$.producer'),
       json_extract(cv.record, '$.paid.currency'), 0, '0', 1, 0, '0', '0'
  FROM ev
  JOIN claim_versions cv ON cv.claim_id = ev.subject_id AND cv.version = ev.version
  JOIN policy_versions pv ON pv.policy_id = cv.policy_id AND pv.valid_from <= cv.valid_from
   AND (pv.valid_to IS NULL OR pv.valid_to > cv.valid_from)
 WHERE ev.event_type = 'claim.created'";

/// The range of positions in [`MOVEMENTS`], and the same not served by an index.
const SEQ_RANGE: &str = "o.published_seq > ?1 AND o.published_seq <= ?2";
const SEED_SEQ_RANGE: &str = "+o.published_seq > ?1 AND +o.published_seq <= ?2";

/// [`MOVEMENTS`] for `range`. A seed (every position up to `through`) finds the day's events
/// by `created_at` (index `outbox_created_at`): `+` keeps SQLite, which has no statistics to
/// weigh the two, off the positions' index, which would have it read the whole outbox. A
/// page of later positions reads those by their index.
fn movements_sql(range: &LiveRange) -> std::borrow::Cow<'static, str> {
    if range.after == 0 {
        MOVEMENTS.replacen(SEQ_RANGE, SEED_SEQ_RANGE, 1).into()
    } else {
        MOVEMENTS.into()
    }
}

fn amount(r: &SqliteRow, column: &str) -> Result<Decimal> {
    let text: String = r.try_get(column)?;
    Decimal::from_str(&text).map_err(|e| StoreError::Corrupt(format!("amount '{text}': {e}")))
}

impl SqliteStore {
    pub(super) async fn last_published_seq_impl(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(published_seq) FROM outbox")
                .fetch_one(&self.read)
                .await?
                .unwrap_or(0),
        )
    }

    pub(super) async fn live_movements_impl(&self, range: &LiveRange) -> Result<Vec<LiveRow>> {
        let sql = movements_sql(range);
        let rows = sqlx::query(&sql)
            .bind(range.after)
            .bind(range.through)
            .bind(instant(range.since))
            .bind(instant(range.until))
            .fetch_all(&self.read)
            .await?;
        let mut sums: BTreeMap<LiveKey, LiveAmounts> = BTreeMap::new();
        for r in &rows {
            let key = LiveKey {
                carrier: r.try_get("carrier")?,
                line_of_business: r.try_get("line")?,
                book: r.try_get("book")?,
                currency: r.try_get("currency")?,
            };
            let amounts = LiveAmounts {
                premium_transactions: r.try_get::<i64, _>("premium_transactions")? as u64,
                premium_written: amount(r, "premium_written")?,
                claims_new: r.try_get::<i64, _>("claims_new")? as u64,
                claim_transactions: r.try_get::<i64, _>("claim_transactions")? as u64,
                claims_incurred: amount(r, "claims_incurred")?,
                claims_paid: amount(r, "claims_paid")?,
            };
            sums.entry(key).or_default().add(&amounts);
        }
        Ok(sums
            .into_iter()
            .map(|(key, amounts)| LiveRow { key, amounts })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan SQLite makes for the movements of `range`, its steps' details joined.
    async fn plan(store: &SqliteStore, range: &LiveRange) -> String {
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {}", movements_sql(range)))
            .bind(range.after)
            .bind(range.through)
            .bind(instant(range.since))
            .bind(instant(range.until))
            .fetch_all(&store.read)
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.try_get::<String, _>("detail").unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn a_seed_reads_the_days_events_and_a_page_its_positions_by_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db"))
            .await
            .unwrap();
        let since = "2026-11-26T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let day = |after| LiveRange {
            after,
            through: 1_000_000,
            since,
            until: since + chrono::Duration::days(1),
        };
        assert_ne!(
            movements_sql(&day(0)),
            MOVEMENTS,
            "the seed's range is replaced"
        );
        let seed = plan(&store, &day(0)).await;
        assert!(seed.contains("outbox_created_at"), "{seed}");
        assert!(!seed.contains("outbox_published_seq"), "{seed}");
        let page = plan(&store, &day(995_000)).await;
        assert!(page.contains("outbox_published_seq"), "{page}");
    }
}
