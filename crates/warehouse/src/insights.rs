//! Insurance metrics over the warehouse's tables: written, in-force and earned premium,
//! incurred losses, loss ratio, claim frequency and severity, loss-development triangles.
//! The definitions are in docs/insights.md; this module implements exactly those.
//!
//! Invariants:
//! - Every number comes from SQL run by [`QueryEngine::collect`] within the caller's scope:
//!   the scope is applied inside the table providers, never by editing SQL text. The filters
//!   a caller asks for (`carrier`, `line`, `book`) narrow that scope further, as literals.
//! - DataFusion selects, joins and sums; the parts that depend on calendar periods (buckets by
//!   month, quarter or year, pro-rata days, development ages) are done here on the few rows
//!   those sums leave, in exact decimals.
//! - Knowledge time: a metric reads the policy and claim versions recorded at or before
//!   `known_at` (their `valid_from`) and the transactions recorded then (`recorded_at`), so
//!   a later correction never changes an answer given for an earlier `known_at`.

use crate::query::{QueryEngine, QueryError};
use carrierhub_store::Scope;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use std::collections::BTreeMap;

/// Days in a policy-year of exposure.
pub const DAYS_PER_YEAR: i64 = 365;
/// The most periods one answer may have (buckets, or accident periods × development ages).
pub const MAX_PERIODS: i64 = 1200;

/// Calendar periods to group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grain {
    Month,
    Quarter,
    Year,
}

impl Grain {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "month" => Some(Self::Month),
            "quarter" => Some(Self::Quarter),
            "year" => Some(Self::Year),
            _ => None,
        }
    }

    /// The period's number: consecutive periods have consecutive numbers.
    pub fn index(self, d: NaiveDate) -> i64 {
        let (y, m) = (d.year() as i64, d.month0() as i64);
        match self {
            Self::Month => y * 12 + m,
            Self::Quarter => y * 4 + m / 3,
            Self::Year => y,
        }
    }

    /// The first day of period `index`.
    pub fn start(self, index: i64) -> NaiveDate {
        let (y, m0) = match self {
            Self::Month => (index.div_euclid(12), index.rem_euclid(12)),
            Self::Quarter => (index.div_euclid(4), index.rem_euclid(4) * 3),
            Self::Year => (index, 0),
        };
        NaiveDate::from_ymd_opt(y as i32, m0 as u32 + 1, 1).expect("a valid month")
    }

    /// `2025-03`, `2025-Q1`, `2025`.
    pub fn label(self, index: i64) -> String {
        let d = self.start(index);
        match self {
            Self::Month => format!("{:04}-{:02}", d.year(), d.month()),
            Self::Quarter => format!("{:04}-Q{}", d.year(), d.month0() / 3 + 1),
            Self::Year => format!("{:04}", d.year()),
        }
    }
}

/// A dimension to group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Carrier,
    Line,
    Book,
}

impl Dim {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "carrier" => Some(Self::Carrier),
            "line" => Some(Self::Line),
            "book" => Some(Self::Book),
            _ => None,
        }
    }
}

/// What every metric is narrowed to and grouped by.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Only this carrier (within the caller's scope).
    pub carrier: Option<String>,
    /// Only this line of business (its canonical code).
    pub line: Option<String>,
    /// Only this book (producer code).
    pub book: Option<String>,
    /// The dimensions the answer is broken down by (it always is by currency).
    pub group_by: Vec<Dim>,
    /// Read what was recorded at or before this instant.
    pub known_at: DateTime<Utc>,
}

/// Days `[from, to]`, both included, optionally in buckets of `grain`.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub grain: Option<Grain>,
}

impl Period {
    /// The buckets: `(label, first day, last day)`, each clipped to the period.
    pub fn buckets(&self) -> Result<Vec<(Option<String>, i64, i64)>, QueryError> {
        let (lo, hi) = (day(self.from), day(self.to));
        let Some(g) = self.grain else {
            return Ok(vec![(None, lo, hi)]);
        };
        let (first, last) = (g.index(self.from), g.index(self.to));
        if last - first + 1 > MAX_PERIODS {
            return Err(QueryError::Invalid(format!(
                "from {} to {} by {g:?} is {} periods, more than {MAX_PERIODS}",
                self.from,
                self.to,
                last - first + 1
            )));
        }
        Ok((first..=last)
            .map(|i| {
                let start = day(g.start(i)).max(lo);
                let end = (day(g.start(i + 1)) - 1).min(hi);
                (Some(g.label(i)), start, end)
            })
            .collect())
    }
}

/// Days since 1970-01-01.
pub fn day(d: NaiveDate) -> i64 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days()
}

fn date_of(day: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Duration::days(day)
}

/// What a row of an answer is about: its period, the dimensions grouped by, its currency.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
pub struct Group {
    /// The period (`2025-03`, `2025-Q1`, `2025`) when the answer is by `grain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "2025")]
    pub period: Option<String>,
    /// The carrier, when grouped by carrier.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "northwind")]
    pub carrier: Option<String>,
    /// The line of business, when grouped by line.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "personal_auto")]
    pub line: Option<String>,
    /// The book (producer code; null for policies without one), when grouped by book.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "AG-3051")]
    pub book: Option<Option<String>>,
    /// ISO 4217: amounts are never added across currencies.
    #[schema(example = "USD")]
    pub currency: String,
}

/// The dimensions of one SQL row.
struct Dims {
    carrier: String,
    line: String,
    book: Option<String>,
    currency: String,
}

impl Filter {
    fn group(&self, period: Option<String>, d: &Dims) -> Group {
        let has = |x: Dim| self.group_by.contains(&x);
        Group {
            period,
            carrier: has(Dim::Carrier).then(|| d.carrier.clone()),
            line: has(Dim::Line).then(|| d.line.clone()),
            book: has(Dim::Book).then(|| d.book.clone()),
            currency: d.currency.clone(),
        }
    }

    /// ` AND` conditions on the columns named, for the filters asked for.
    fn sql(&self, carrier: &str, line: &str, book: &str) -> String {
        let mut out = String::new();
        for (column, value) in [
            (carrier, &self.carrier),
            (line, &self.line),
            (book, &self.book),
        ] {
            if let Some(v) = value {
                out.push_str(&format!(" AND {column} = {}", literal(v)));
            }
        }
        out
    }

    fn known(&self) -> i64 {
        self.known_at.timestamp_micros()
    }
}

/// A SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Rounded to `places` (half away from zero), and written with exactly that many.
fn places(d: Decimal, places: u32) -> Decimal {
    let mut r = d.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(places);
    r
}

fn money(d: Decimal) -> Decimal {
    places(d, 2)
}

fn ratio(d: Decimal) -> Decimal {
    places(d, 4)
}

// ---------------------------------------------------------------------------------------------
// Answers.

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PremiumItem {
    #[serde(flatten)]
    pub group: Group,
    /// Sum of the written premium of the transactions dated in the period.
    #[schema(value_type = String, example = "125400.00")]
    pub written_premium: Decimal,
    /// How many premium transactions.
    #[schema(example = 97)]
    pub transactions: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InForceItem {
    #[serde(flatten)]
    pub group: Group,
    /// Policies in force at the date.
    #[schema(example = 41)]
    pub policies: u64,
    /// Their premium at the date (the term's premium less movements dated after it).
    #[schema(value_type = String, example = "52210.17")]
    pub premium: Decimal,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EarnedItem {
    #[serde(flatten)]
    pub group: Group,
    #[schema(value_type = String, example = "48113.20")]
    pub earned_premium: Decimal,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IncurredItem {
    #[serde(flatten)]
    pub group: Group,
    /// Payments less recoveries recorded in the period.
    #[schema(value_type = String, example = "10350.00")]
    pub paid: Decimal,
    /// Net change of the case reserves recorded in the period.
    #[schema(value_type = String, example = "-1200.00")]
    pub reserve_change: Decimal,
    /// `paid + reserve_change`.
    #[schema(value_type = String, example = "9150.00")]
    pub incurred: Decimal,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LossRatioItem {
    #[serde(flatten)]
    pub group: Group,
    #[schema(value_type = String, example = "48113.20")]
    pub earned_premium: Decimal,
    #[schema(value_type = String, example = "9150.00")]
    pub incurred: Decimal,
    /// `incurred / earned_premium` to 4 places; null when nothing was earned.
    #[schema(value_type = Option<String>, example = "0.1902")]
    pub loss_ratio: Option<Decimal>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FrequencySeverityItem {
    #[serde(flatten)]
    pub group: Group,
    /// Claims with a loss date in the period.
    #[schema(example = 12)]
    pub claims: u64,
    /// Policy-years in force in the period (days in force / 365), to 4 places.
    #[schema(value_type = String, example = "87.5123")]
    pub exposure_policy_years: Decimal,
    /// `claims / exposure_policy_years` to 4 places; null without exposure.
    #[schema(value_type = Option<String>, example = "0.1371")]
    pub frequency: Option<Decimal>,
    /// Incurred to date of those claims.
    #[schema(value_type = String, example = "18300.00")]
    pub incurred: Decimal,
    /// `incurred / claims`; null without claims.
    #[schema(value_type = Option<String>, example = "1525.00")]
    pub severity: Option<Decimal>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TriangleItem {
    #[serde(flatten)]
    pub group: Group,
    /// The accident period: the period of the claims' loss date.
    #[schema(example = "2025")]
    pub accident_period: String,
    /// Cumulative amounts at development ages 0, 1, 2, …: the element at `k` sums the
    /// transactions recorded up to `k` periods after the accident period, through the
    /// period of `as_of`.
    #[schema(value_type = Vec<String>, example = json!(["1500.00", "1350.00"]))]
    pub development: Vec<Decimal>,
}

/// Which claim transactions a triangle adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Payments and recoveries.
    Paid,
    /// Payments, recoveries and reserve changes.
    Incurred,
}

impl Measure {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "paid" => Some(Self::Paid),
            "incurred" => Some(Self::Incurred),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading answers of SQL.

fn failed(e: impl std::fmt::Display) -> QueryError {
    QueryError::Failed(e.to_string())
}

/// One record batch's columns, cast to the types read.
struct Cols<'a>(&'a RecordBatch);

impl Cols<'_> {
    fn cast(&self, name: &str, to: &DataType) -> Result<ArrayRef, QueryError> {
        let a = self
            .0
            .column_by_name(name)
            .ok_or_else(|| failed(format!("no column {name} in the answer")))?;
        cast(a, to).map_err(failed)
    }

    fn strings(&self, name: &str) -> Result<Vec<Option<String>>, QueryError> {
        let a = self.cast(name, &DataType::Utf8)?;
        let a = a
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| failed(name))?;
        Ok((0..a.len())
            .map(|i| (!a.is_null(i)).then(|| a.value(i).to_owned()))
            .collect())
    }

    fn ints(&self, name: &str) -> Result<Vec<Option<i64>>, QueryError> {
        let a = self.cast(name, &DataType::Int64)?;
        let a = a
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| failed(name))?;
        Ok((0..a.len())
            .map(|i| (!a.is_null(i)).then(|| a.value(i)))
            .collect())
    }

    fn decimals(&self, name: &str) -> Result<Vec<Decimal>, QueryError> {
        let a = self.cast(name, &DataType::Decimal128(38, 9))?;
        let a = a
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .ok_or_else(|| failed(name))?;
        Ok((0..a.len())
            .map(|i| {
                if a.is_null(i) {
                    Decimal::ZERO
                } else {
                    Decimal::from_i128_with_scale(a.value(i), 9)
                }
            })
            .collect())
    }

    fn dims(&self) -> Result<Vec<Dims>, QueryError> {
        let carrier = self.strings("carrier")?;
        let line = self.strings("lob")?;
        let book = self.strings("book")?;
        let currency = self.strings("currency")?;
        Ok(carrier
            .into_iter()
            .zip(line)
            .zip(book)
            .zip(currency)
            .map(|(((c, l), b), cur)| Dims {
                carrier: c.unwrap_or_default(),
                line: l.unwrap_or_default(),
                book: b,
                currency: cur.unwrap_or_default(),
            })
            .collect())
    }
}

fn int(v: Option<i64>, what: &str) -> Result<i64, QueryError> {
    v.ok_or_else(|| failed(format!("{what} is null")))
}

/// Metrics within one caller's scope.
pub struct Insights<'a> {
    engine: &'a QueryEngine,
    scope: &'a Scope,
}

impl<'a> Insights<'a> {
    pub fn new(engine: &'a QueryEngine, scope: &'a Scope) -> Self {
        Self { engine, scope }
    }

    async fn run(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let limit = self.engine.limits().timeout;
        tokio::time::timeout(limit, self.engine.collect(sql, self.scope))
            .await
            .unwrap_or(Err(QueryError::Timeout(limit)))
    }

    /// Premium transactions with their written amount and their term, summed by dimensions,
    /// date and term. A renewal writes the new term's whole premium (the model records only
    /// its difference to the previous term).
    async fn written(&self, f: &Filter, condition: &str) -> Result<Vec<Written>, QueryError> {
        let sql = format!(
            "SELECT carrier, lob, book, currency, tday, term_start, term_end, \
                    SUM(amount) AS amount, COUNT(*) AS n FROM ( \
               SELECT t.carrier AS carrier, t.line_of_business AS lob, t.producer AS book, \
                      t.currency AS currency, CAST(t.effective_date AS INT) AS tday, \
                      CAST(p.effective_date AS INT) AS term_start, \
                      CAST(p.expiration_date AS INT) AS term_end, \
                      CASE WHEN t.kind = 'renewal' THEN \
                        (CASE WHEN t.currency = p.currency THEN p.premium \
                              ELSE CAST(0 AS DECIMAL(38, 9)) END) \
                      ELSE t.amount END AS amount \
               FROM premium_transactions t \
               JOIN policies p ON p.policy_id = t.policy_id AND p.version = t.policy_version \
               WHERE CAST(t.recorded_at AS BIGINT) <= {known}{filters}) w \
             WHERE {condition} \
             GROUP BY carrier, lob, book, currency, tday, term_start, term_end",
            known = f.known(),
            filters = f.sql("t.carrier", "t.line_of_business", "t.producer"),
        );
        let mut out = Vec::new();
        for b in self.run(&sql).await? {
            let c = Cols(&b);
            let dims = c.dims()?;
            let (days, starts, ends) =
                (c.ints("tday")?, c.ints("term_start")?, c.ints("term_end")?);
            let (amounts, ns) = (c.decimals("amount")?, c.ints("n")?);
            for (i, dims) in dims.into_iter().enumerate() {
                out.push(Written {
                    dims,
                    day: int(days[i], "tday")?,
                    term_start: int(starts[i], "term_start")?,
                    term_end: int(ends[i], "term_end")?,
                    amount: amounts[i],
                    n: ns[i].unwrap_or(0) as u64,
                });
            }
        }
        Ok(out)
    }

    /// Gross written premium: the transactions dated in the period.
    pub async fn premium(&self, f: &Filter, p: &Period) -> Result<Vec<PremiumItem>, QueryError> {
        let buckets = p.buckets()?;
        let (lo, hi) = (day(p.from), day(p.to));
        let rows = self
            .written(f, &format!("tday BETWEEN {lo} AND {hi}"))
            .await?;
        let mut sums: BTreeMap<Group, (Decimal, u64)> = BTreeMap::new();
        for r in rows {
            let Some((label, ..)) = buckets.iter().find(|(_, s, e)| *s <= r.day && r.day <= *e)
            else {
                continue;
            };
            let e = sums.entry(f.group(label.clone(), &r.dims)).or_default();
            e.0 += r.amount;
            e.1 += r.n;
        }
        Ok(sums
            .into_iter()
            .map(|(group, (amount, n))| PremiumItem {
                group,
                written_premium: money(amount),
                transactions: n,
            })
            .collect())
    }

    /// Earned premium: each transaction's written amount spread evenly over the days from its
    /// date to the end of its term.
    async fn earned_sums(
        &self,
        f: &Filter,
        p: &Period,
    ) -> Result<BTreeMap<Group, Decimal>, QueryError> {
        let buckets = p.buckets()?;
        let (lo, hi) = (day(p.from), day(p.to));
        let rows = self
            .written(
                f,
                &format!("term_end > {lo} AND term_start <= {hi} AND tday <= {hi}"),
            )
            .await?;
        let mut sums: BTreeMap<Group, Decimal> = BTreeMap::new();
        for r in rows {
            let (start, end) = earning_window(r.day, r.term_start, r.term_end);
            let len = Decimal::from(end - start);
            for (label, s, e) in &buckets {
                let overlap = (end.min(e + 1) - start.max(*s)).max(0);
                if overlap == 0 {
                    continue;
                }
                *sums.entry(f.group(label.clone(), &r.dims)).or_default() +=
                    r.amount * Decimal::from(overlap) / len;
            }
        }
        Ok(sums)
    }

    pub async fn earned(&self, f: &Filter, p: &Period) -> Result<Vec<EarnedItem>, QueryError> {
        let sums = self.earned_sums(f, p).await?;
        Ok(sums
            .into_iter()
            .map(|(group, v)| EarnedItem {
                group,
                earned_premium: money(v),
            })
            .collect())
    }

    /// Each policy term as known: its latest version, the date of its latest cancellation,
    /// and the sum of its movements dated after `as_of`. Only terms that overlap `[lo, hi]`.
    async fn terms(
        &self,
        f: &Filter,
        lo: i64,
        hi: i64,
        as_of: i64,
    ) -> Result<Vec<Term>, QueryError> {
        let known = f.known();
        let sql = format!(
            "WITH v AS ( \
               SELECT policy_id, version, carrier, line_of_business AS lob, producer AS book, \
                      status, premium, currency, CAST(effective_date AS INT) AS s, \
                      CAST(expiration_date AS INT) AS e \
               FROM policies WHERE CAST(valid_from AS BIGINT) <= {known}), \
             l AS ( \
               SELECT v.* FROM v JOIN ( \
                 SELECT policy_id, s, e, MAX(version) AS version FROM v GROUP BY policy_id, s, e) m \
               ON m.policy_id = v.policy_id AND m.version = v.version \
               WHERE v.s <= {hi} AND v.e > {lo}{filters}), \
             x AS ( \
               SELECT t.policy_id, v.s, v.e, t.kind, CAST(t.effective_date AS INT) AS d, \
                      t.amount, t.currency \
               FROM premium_transactions t \
               JOIN v ON v.policy_id = t.policy_id AND v.version = t.policy_version \
               WHERE CAST(t.recorded_at AS BIGINT) <= {known}) \
             SELECT l.carrier AS carrier, l.lob AS lob, l.book AS book, \
                    l.currency AS currency, l.status AS status, l.s AS s, l.e AS e, \
                    l.premium AS premium, \
                    MAX(CASE WHEN x.kind = 'cancellation' THEN x.d END) AS cancelled_on, \
                    SUM(CASE WHEN x.d > {as_of} AND x.currency = l.currency THEN x.amount \
                        ELSE CAST(0 AS DECIMAL(38, 9)) END) AS later \
             FROM l LEFT JOIN x ON x.policy_id = l.policy_id AND x.s = l.s AND x.e = l.e \
             GROUP BY l.policy_id, l.carrier, l.lob, l.book, l.currency, l.status, l.s, l.e, \
                      l.premium",
            filters = f.sql("v.carrier", "v.lob", "v.book"),
        );
        let mut out = Vec::new();
        for b in self.run(&sql).await? {
            let c = Cols(&b);
            let dims = c.dims()?;
            let status = c.strings("status")?;
            let (s, e) = (c.ints("s")?, c.ints("e")?);
            let cancelled = c.ints("cancelled_on")?;
            let (premium, later) = (c.decimals("premium")?, c.decimals("later")?);
            for (i, dims) in dims.into_iter().enumerate() {
                out.push(Term {
                    dims,
                    status: status[i].clone().unwrap_or_default(),
                    start: int(s[i], "s")?,
                    end: int(e[i], "e")?,
                    cancelled_on: cancelled[i],
                    premium: premium[i],
                    later: later[i],
                });
            }
        }
        Ok(out)
    }

    /// Policies in force at `as_of`, and their premium then.
    pub async fn in_force(
        &self,
        f: &Filter,
        as_of: NaiveDate,
    ) -> Result<Vec<InForceItem>, QueryError> {
        let d = day(as_of);
        let mut sums: BTreeMap<Group, (u64, Decimal)> = BTreeMap::new();
        for t in self.terms(f, d, d, d).await? {
            if t.start <= d && d < t.in_force_until() {
                let e = sums.entry(f.group(None, &t.dims)).or_default();
                e.0 += 1;
                e.1 += t.premium - t.later;
            }
        }
        Ok(sums
            .into_iter()
            .map(|(group, (n, premium))| InForceItem {
                group,
                policies: n,
                premium: money(premium),
            })
            .collect())
    }

    /// Claim transactions by dimensions, kind, loss date and recording date (UTC days).
    async fn movements(&self, f: &Filter, condition: &str) -> Result<Vec<Movement>, QueryError> {
        let sql = format!(
            "SELECT carrier, lob, book, currency, kind, loss, tday, SUM(amount) AS amount FROM ( \
               SELECT carrier, line_of_business AS lob, producer AS book, currency, kind, \
                      CAST(loss_date AS INT) AS loss, \
                      CAST(recorded_at AS BIGINT) / 86400000000 AS tday, amount \
               FROM claim_transactions \
               WHERE CAST(recorded_at AS BIGINT) <= {known}{filters}) m \
             WHERE {condition} \
             GROUP BY carrier, lob, book, currency, kind, loss, tday",
            known = f.known(),
            filters = f.sql("carrier", "line_of_business", "producer"),
        );
        let mut out = Vec::new();
        for b in self.run(&sql).await? {
            let c = Cols(&b);
            let dims = c.dims()?;
            let kind = c.strings("kind")?;
            let (loss, days) = (c.ints("loss")?, c.ints("tday")?);
            let amount = c.decimals("amount")?;
            for (i, dims) in dims.into_iter().enumerate() {
                out.push(Movement {
                    dims,
                    paid: kind[i].as_deref() != Some("reserve_change"),
                    loss: int(loss[i], "loss")?,
                    day: int(days[i], "tday")?,
                    amount: amount[i],
                });
            }
        }
        Ok(out)
    }

    /// Paid and reserve changes recorded in the period, by bucket.
    async fn incurred_sums(
        &self,
        f: &Filter,
        p: &Period,
    ) -> Result<BTreeMap<Group, (Decimal, Decimal)>, QueryError> {
        let buckets = p.buckets()?;
        let (lo, hi) = (day(p.from), day(p.to));
        let rows = self
            .movements(f, &format!("tday BETWEEN {lo} AND {hi}"))
            .await?;
        let mut sums: BTreeMap<Group, (Decimal, Decimal)> = BTreeMap::new();
        for r in rows {
            let Some((label, ..)) = buckets.iter().find(|(_, s, e)| *s <= r.day && r.day <= *e)
            else {
                continue;
            };
            let e = sums.entry(f.group(label.clone(), &r.dims)).or_default();
            if r.paid {
                e.0 += r.amount;
            } else {
                e.1 += r.amount;
            }
        }
        Ok(sums)
    }

    pub async fn incurred(&self, f: &Filter, p: &Period) -> Result<Vec<IncurredItem>, QueryError> {
        Ok(self
            .incurred_sums(f, p)
            .await?
            .into_iter()
            .map(|(group, (paid, reserve))| IncurredItem {
                group,
                paid: money(paid),
                reserve_change: money(reserve),
                incurred: money(paid + reserve),
            })
            .collect())
    }

    pub async fn loss_ratio(
        &self,
        f: &Filter,
        p: &Period,
    ) -> Result<Vec<LossRatioItem>, QueryError> {
        let earned = self.earned_sums(f, p).await?;
        let incurred = self.incurred_sums(f, p).await?;
        let mut groups: Vec<&Group> = earned.keys().chain(incurred.keys()).collect();
        groups.sort();
        groups.dedup();
        Ok(groups
            .into_iter()
            .map(|g| {
                let e = money(earned.get(g).copied().unwrap_or_default());
                let i = incurred
                    .get(g)
                    .map(|(p, r)| money(p + r))
                    .unwrap_or_default();
                LossRatioItem {
                    group: g.clone(),
                    earned_premium: e,
                    incurred: i,
                    loss_ratio: (!e.is_zero()).then(|| ratio(i / e)),
                }
            })
            .collect())
    }

    pub async fn frequency_severity(
        &self,
        f: &Filter,
        p: &Period,
    ) -> Result<Vec<FrequencySeverityItem>, QueryError> {
        let buckets = p.buckets()?;
        let (lo, hi) = (day(p.from), day(p.to));
        // Exposure: days in force in each bucket.
        let mut exposure: BTreeMap<Group, i64> = BTreeMap::new();
        for t in self.terms(f, lo, hi, hi).await? {
            let until = t.in_force_until();
            for (label, s, e) in &buckets {
                let days = (until.min(e + 1) - t.start.max(*s)).max(0);
                if days > 0 {
                    *exposure.entry(f.group(label.clone(), &t.dims)).or_default() += days;
                }
            }
        }
        // Claims by loss date, with their incurred to date.
        let known = f.known();
        let sql = format!(
            "WITH c AS ( \
               SELECT claim_id, version, carrier, line_of_business AS lob, producer AS book, \
                      currency, CAST(loss_date AS INT) AS loss \
               FROM claims WHERE CAST(valid_from AS BIGINT) <= {known}), \
             l AS ( \
               SELECT c.* FROM c JOIN ( \
                 SELECT claim_id, MAX(version) AS version FROM c GROUP BY claim_id) m \
               ON m.claim_id = c.claim_id AND m.version = c.version \
               WHERE c.loss BETWEEN {lo} AND {hi}{filters}), \
             x AS ( \
               SELECT claim_id, currency, SUM(amount) AS amount FROM claim_transactions \
               WHERE CAST(recorded_at AS BIGINT) <= {known} GROUP BY claim_id, currency) \
             SELECT l.carrier AS carrier, l.lob AS lob, l.book AS book, \
                    l.currency AS currency, l.loss AS loss, COUNT(*) AS claims, \
                    SUM(COALESCE(x.amount, CAST(0 AS DECIMAL(38, 9)))) AS incurred \
             FROM l LEFT JOIN x ON x.claim_id = l.claim_id AND x.currency = l.currency \
             GROUP BY l.carrier, l.lob, l.book, l.currency, l.loss",
            filters = f.sql("c.carrier", "c.lob", "c.book"),
        );
        let mut claims: BTreeMap<Group, (u64, Decimal)> = BTreeMap::new();
        for b in self.run(&sql).await? {
            let c = Cols(&b);
            let dims = c.dims()?;
            let (loss, n, incurred) = (c.ints("loss")?, c.ints("claims")?, c.decimals("incurred")?);
            for (i, dims) in dims.into_iter().enumerate() {
                let loss = int(loss[i], "loss")?;
                let Some((label, ..)) = buckets.iter().find(|(_, s, e)| *s <= loss && loss <= *e)
                else {
                    continue;
                };
                let e = claims.entry(f.group(label.clone(), &dims)).or_default();
                e.0 += n[i].unwrap_or(0) as u64;
                e.1 += incurred[i];
            }
        }
        let mut groups: Vec<&Group> = exposure.keys().chain(claims.keys()).collect();
        groups.sort();
        groups.dedup();
        Ok(groups
            .into_iter()
            .map(|g| {
                let days = exposure.get(g).copied().unwrap_or(0);
                let (n, incurred) = claims.get(g).copied().unwrap_or_default();
                let years = Decimal::from(days) / Decimal::from(DAYS_PER_YEAR);
                FrequencySeverityItem {
                    group: g.clone(),
                    claims: n,
                    exposure_policy_years: ratio(years),
                    frequency: (days > 0).then(|| {
                        ratio(Decimal::from(n) * Decimal::from(DAYS_PER_YEAR) / Decimal::from(days))
                    }),
                    incurred: money(incurred),
                    severity: (n > 0).then(|| money(incurred / Decimal::from(n))),
                }
            })
            .collect())
    }

    /// Loss-development triangles of the claims with a loss date in `[from, to]`, valued at
    /// `as_of` (transactions recorded on or before that day).
    pub async fn triangles(
        &self,
        f: &Filter,
        from: NaiveDate,
        to: NaiveDate,
        grain: Grain,
        measure: Measure,
        as_of: NaiveDate,
    ) -> Result<Vec<TriangleItem>, QueryError> {
        let (lo, hi, val) = (day(from), day(to), day(as_of));
        let rows = self
            .movements(
                f,
                &format!("loss BETWEEN {lo} AND {hi} AND tday <= {val} AND loss <= {val}"),
            )
            .await?;
        let last = grain.index(as_of);
        let first = grain.index(from);
        let span = last - first + 1;
        if span * span > MAX_PERIODS * MAX_PERIODS / 4 {
            return Err(QueryError::Invalid(format!(
                "from {from} to {as_of} by {grain:?} is {span} accident periods: too many cells"
            )));
        }
        // (group, accident period) → increments by development age.
        let mut cells: BTreeMap<(Group, i64), BTreeMap<i64, Decimal>> = BTreeMap::new();
        for r in rows {
            if measure == Measure::Paid && !r.paid {
                continue;
            }
            let ap = grain.index(date_of(r.loss));
            let age = (grain.index(date_of(r.day)) - ap).max(0);
            *cells
                .entry((f.group(None, &r.dims), ap))
                .or_default()
                .entry(age)
                .or_default() += r.amount;
        }
        Ok(cells
            .into_iter()
            .map(|((group, ap), increments)| {
                let mut total = Decimal::ZERO;
                let development = (0..=(last - ap).max(0))
                    .map(|age| {
                        total += increments.get(&age).copied().unwrap_or_default();
                        money(total)
                    })
                    .collect();
                TriangleItem {
                    group,
                    accident_period: grain.label(ap),
                    development,
                }
            })
            .collect())
    }
}

/// The days `[start, end)` over which a transaction dated `day` is earned: from its date (not
/// before its term starts) to its term's end; a transaction dated at or after the end is
/// earned on its date.
fn earning_window(day: i64, term_start: i64, term_end: i64) -> (i64, i64) {
    let start = day.max(term_start);
    if start >= term_end {
        (start, start + 1)
    } else {
        (start, term_end)
    }
}

struct Written {
    dims: Dims,
    day: i64,
    term_start: i64,
    term_end: i64,
    amount: Decimal,
    n: u64,
}

struct Term {
    dims: Dims,
    status: String,
    start: i64,
    end: i64,
    cancelled_on: Option<i64>,
    premium: Decimal,
    later: Decimal,
}

impl Term {
    /// The day the term stops being in force (exclusive): its end; for a cancelled term its
    /// latest cancellation's date (its start when it has none: cancelled from inception);
    /// its start (never in force) when quoted or lapsed.
    fn in_force_until(&self) -> i64 {
        match self.status.as_str() {
            "active" | "expired" => self.end,
            "cancelled" => self
                .cancelled_on
                .unwrap_or(self.start)
                .clamp(self.start, self.end),
            _ => self.start,
        }
    }
}

struct Movement {
    dims: Dims,
    /// A payment or recovery (not a reserve change).
    paid: bool,
    loss: i64,
    day: i64,
    amount: Decimal,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, dd: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, dd).unwrap()
    }

    #[test]
    fn periods_number_label_and_start() {
        for g in [Grain::Month, Grain::Quarter, Grain::Year] {
            let i = g.index(d(2025, 5, 17));
            assert_eq!(g.index(g.start(i)), i);
            assert_eq!(g.index(g.start(i + 1)), i + 1);
        }
        assert_eq!(
            Grain::Month.label(Grain::Month.index(d(2025, 5, 17))),
            "2025-05"
        );
        assert_eq!(
            Grain::Quarter.label(Grain::Quarter.index(d(2025, 5, 17))),
            "2025-Q2"
        );
        assert_eq!(Grain::Year.label(Grain::Year.index(d(2025, 5, 17))), "2025");
        assert_eq!(
            Grain::Quarter.index(d(2026, 1, 1)) - Grain::Quarter.index(d(2025, 12, 31)),
            1
        );
    }

    #[test]
    fn buckets_are_clipped_to_the_period() {
        let p = Period {
            from: d(2025, 2, 10),
            to: d(2025, 4, 5),
            grain: Some(Grain::Month),
        };
        let b = p.buckets().unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!((b[0].1, b[0].2), (day(d(2025, 2, 10)), day(d(2025, 2, 28))));
        assert_eq!((b[2].1, b[2].2), (day(d(2025, 4, 1)), day(d(2025, 4, 5))));
    }

    #[test]
    fn a_transaction_is_earned_from_its_date_to_its_terms_end() {
        let (s, e) = (day(d(2025, 1, 1)), day(d(2026, 1, 1)));
        assert_eq!(earning_window(day(d(2024, 12, 1)), s, e), (s, e));
        assert_eq!(
            earning_window(day(d(2025, 10, 1)), s, e).1 - day(d(2025, 10, 1)),
            92
        );
        assert_eq!(earning_window(e, s, e), (e, e + 1));
    }

    #[test]
    fn amounts_have_two_places_and_ratios_four() {
        assert_eq!(money(Decimal::from(5)).to_string(), "5.00");
        assert_eq!(money(Decimal::new(12345, 3)).to_string(), "12.35");
        assert_eq!(ratio(Decimal::ONE).to_string(), "1.0000");
    }

    #[test]
    fn sql_literals_are_quoted() {
        assert_eq!(literal("o'brien"), "'o''brien'");
    }
}
