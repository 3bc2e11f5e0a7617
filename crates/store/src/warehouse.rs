//! The conditions of the warehouse's reads ([`crate::Store::warehouse_rows`]), shared by both
//! backends: each backend gives its SQL for a list parameter and for the month of a date.

use crate::types::{WarehouseMonths, WarehouseSelection};

/// How a backend spells what the conditions need. Parameters are written `?`; the
/// PostgreSQL backend numbers them.
pub(crate) struct Dialect {
    /// A subquery of the ids of a JSON array parameter.
    pub ids: &'static str,
    /// A subquery of the texts of a JSON array parameter.
    pub texts: &'static str,
    /// `YYYY-MM` of the effective date in the record of policy version `v`.
    pub policy_month: &'static str,
    /// `YYYY-MM` of the loss date in the record of claim version `{}` (an alias).
    pub claim_month: &'static str,
    /// `YYYY-MM` of premium transaction `t`'s effective date.
    pub premium_month: &'static str,
}

/// The condition, after the carrier's, of one of the four reads, and its parameters in order.
#[derive(Debug, Default)]
pub(crate) struct Condition {
    pub sql: String,
    pub params: Vec<String>,
}

/// The conditions of the reads of policy versions (`v`, policies `p`), claim versions (`v`,
/// claims `c`), premium transactions (`t`) and claim transactions (`t`), in that order.
pub(crate) fn conditions(d: &Dialect, carrier: &str, sel: &WarehouseSelection) -> [Condition; 4] {
    let json_ids = |ids: &[i64]| serde_json::to_string(ids).expect("ids serialise");
    let json_texts = |t: &[String]| serde_json::to_string(t).expect("texts serialise");
    let cond = |sql: String, params: Vec<String>| Condition { sql, params };
    let claim_month = |alias: &str| d.claim_month.replace("{}", alias);
    match sel {
        WarehouseSelection::All => [
            cond("TRUE".into(), vec![]),
            cond("TRUE".into(), vec![]),
            cond("TRUE".into(), vec![]),
            cond("TRUE".into(), vec![]),
        ],
        WarehouseSelection::Records { policies, claims } => {
            let (p, c) = (json_ids(policies), json_ids(claims));
            let ids = d.ids;
            [
                cond(format!("v.policy_id IN {ids}"), vec![p.clone()]),
                cond(
                    format!("(v.claim_id IN {ids} OR COALESCE(v.policy_id, c.policy_id) IN {ids})"),
                    vec![c.clone(), p.clone()],
                ),
                cond(format!("t.policy_id IN {ids}"), vec![p.clone()]),
                cond(
                    format!(
                        "(t.claim_id IN {ids} OR t.claim_id IN (SELECT x.claim_id \
                         FROM claim_versions x JOIN claims y ON y.id = x.claim_id \
                         WHERE COALESCE(x.policy_id, y.policy_id) IN {ids}))"
                    ),
                    vec![c, p],
                ),
            ]
        }
        WarehouseSelection::Months(m) => {
            let WarehouseMonths {
                policies,
                premium_transactions,
                claims,
                claim_transactions,
            } = m;
            let mut claim_months = claims.clone();
            claim_months.extend(claim_transactions.iter().cloned());
            let (pm, tm, cm, xm) = (
                json_texts(policies),
                json_texts(premium_transactions),
                json_texts(&claim_months),
                json_texts(claim_transactions),
            );
            let texts = d.texts;
            let policy_month = d.policy_month;
            let premium_month = d.premium_month;
            let x_month = claim_month("x");
            [
                // The versions of the months, and every version of the policies the
                // transactions and claims of the months refer to.
                cond(
                    format!(
                        "({policy_month} IN {texts} \
                         OR v.policy_id IN (SELECT t.policy_id FROM premium_transactions t \
                            JOIN policies q ON q.id = t.policy_id \
                            WHERE q.carrier_id = ? AND {premium_month} IN {texts}) \
                         OR v.policy_id IN (SELECT COALESCE(x.policy_id, y.policy_id) \
                            FROM claim_versions x JOIN claims y ON y.id = x.claim_id \
                            WHERE y.carrier_id = ? AND {x_month} IN {texts}))"
                    ),
                    vec![
                        pm,
                        carrier.to_owned(),
                        tm.clone(),
                        carrier.to_owned(),
                        cm.clone(),
                    ],
                ),
                cond(format!("{} IN {texts}", claim_month("v")), vec![cm]),
                cond(format!("{premium_month} IN {texts}"), vec![tm]),
                cond(
                    format!(
                        "EXISTS (SELECT 1 FROM claim_versions x WHERE x.claim_id = t.claim_id \
                         AND x.version = t.claim_version AND {x_month} IN {texts})"
                    ),
                    vec![xm],
                ),
            ]
        }
    }
}
