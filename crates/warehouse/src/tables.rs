//! The warehouse's tables: their Arrow schemas, and one carrier's rows as record batches per
//! month partition.
//!
//! Every table is partitioned hive-style by `carrier=<id>/month=<YYYY-MM>/`; the two
//! partition columns are in the path, not in the files. Money is `Decimal128(38, 9)`, dates
//! `Date32`, instants `Timestamp(Microsecond, "UTC")`, so a warehouse loads the files as they
//! are. The book a row belongs to (what a scope's books restrict) is its `producer` column.

use carrierhub_store::{WarehouseCarrier, WarehouseClaimVersion, WarehousePolicyVersion};
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, LazyLock};

/// Precision and scale of every money column.
pub const MONEY_PRECISION: u8 = 38;
pub const MONEY_SCALE: i8 = 9;

/// The partition columns, in path order.
pub const PARTITION_COLUMNS: [&str; 2] = ["carrier", "month"];
/// The column a book restriction applies to.
pub const BOOK_COLUMN: &str = "producer";

/// The tables, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Every version of every policy, with its validity (`valid_to` null: current).
    Policies,
    /// The coverages of every policy version.
    Coverages,
    PremiumTransactions,
    /// Every version of every claim.
    Claims,
    ClaimTransactions,
}

impl Table {
    pub const ALL: [Table; 5] = [
        Table::Policies,
        Table::Coverages,
        Table::PremiumTransactions,
        Table::Claims,
        Table::ClaimTransactions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Policies => "policies",
            Table::Coverages => "coverages",
            Table::PremiumTransactions => "premium_transactions",
            Table::Claims => "claims",
            Table::ClaimTransactions => "claim_transactions",
        }
    }

    /// The schema of the table's files (without the partition columns).
    pub fn file_schema(self) -> SchemaRef {
        SCHEMAS[self as usize].clone()
    }
}

fn money() -> DataType {
    DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE)
}

fn instant() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn f(name: &str, data_type: DataType, nullable: bool) -> Field {
    Field::new(name, data_type, nullable)
}

static SCHEMAS: LazyLock<Vec<SchemaRef>> = LazyLock::new(|| {
    use DataType::{Date32, Int64, Utf8};
    let policies = Schema::new(vec![
        f("policy_id", Int64, false),
        f("policy_number", Utf8, false),
        f("version", Int64, false),
        f("line_of_business", Utf8, false),
        f("line_of_business_original", Utf8, false),
        f("status", Utf8, false),
        f("status_original", Utf8, false),
        f("effective_date", Date32, false),
        f("expiration_date", Date32, false),
        f("premium", money(), false),
        f("currency", Utf8, false),
        f("producer", Utf8, true),
        f("insured_name", Utf8, false),
        f("insured_kind", Utf8, false),
        f("submission_id", Int64, false),
        f("valid_from", instant(), false),
        f("valid_to", instant(), true),
        f("is_current", DataType::Boolean, false),
    ]);
    let coverages = Schema::new(vec![
        f("policy_id", Int64, false),
        f("policy_number", Utf8, false),
        f("version", Int64, false),
        f("coverage_index", Int64, false),
        f("code", Utf8, false),
        f("limit_amount", money(), true),
        f("deductible", money(), true),
        f("premium", money(), true),
        f("currency", Utf8, true),
        f("line_of_business", Utf8, false),
        f("producer", Utf8, true),
        f("valid_from", instant(), false),
        f("valid_to", instant(), true),
        f("is_current", DataType::Boolean, false),
    ]);
    let premium_transactions = Schema::new(vec![
        f("id", Int64, false),
        f("policy_id", Int64, false),
        f("policy_number", Utf8, false),
        f("policy_version", Int64, false),
        f("kind", Utf8, false),
        f("amount", money(), false),
        f("currency", Utf8, false),
        f("effective_date", Date32, false),
        f("line_of_business", Utf8, false),
        f("producer", Utf8, true),
        f("submission_id", Int64, false),
        f("recorded_at", instant(), false),
    ]);
    let claims = Schema::new(vec![
        f("claim_id", Int64, false),
        f("claim_number", Utf8, false),
        f("version", Int64, false),
        f("policy_id", Int64, false),
        f("policy_number", Utf8, false),
        f("line_of_business", Utf8, false),
        f("producer", Utf8, true),
        f("loss_date", Date32, false),
        f("reported_date", Date32, false),
        f("status", Utf8, false),
        f("status_original", Utf8, false),
        f("cause", Utf8, true),
        f("paid", money(), false),
        f("reserve", money(), false),
        f("incurred", money(), false),
        f("currency", Utf8, false),
        f("submission_id", Int64, false),
        f("valid_from", instant(), false),
        f("valid_to", instant(), true),
        f("is_current", DataType::Boolean, false),
    ]);
    let claim_transactions = Schema::new(vec![
        f("id", Int64, false),
        f("claim_id", Int64, false),
        f("claim_number", Utf8, false),
        f("claim_version", Int64, false),
        f("policy_id", Int64, false),
        f("kind", Utf8, false),
        f("amount", money(), false),
        f("currency", Utf8, false),
        f("line_of_business", Utf8, false),
        f("producer", Utf8, true),
        f("loss_date", Date32, false),
        f("submission_id", Int64, false),
        f("recorded_at", instant(), false),
    ]);
    vec![
        Arc::new(policies),
        Arc::new(coverages),
        Arc::new(premium_transactions),
        Arc::new(claims),
        Arc::new(claim_transactions),
    ]
});

/// `amount` as a `Decimal128(38, 9)` value (rounded half-even past 9 places, which the
/// model's currencies never have).
pub fn decimal_to_i128(amount: Decimal) -> i128 {
    let mut d = amount;
    if d.scale() > MONEY_SCALE as u32 {
        d = d.round_dp(MONEY_SCALE as u32);
    }
    d.mantissa() * 10i128.pow(MONEY_SCALE as u32 - d.scale())
}

/// Days since 1970-01-01.
pub fn date32(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The month partition of a date: `YYYY-MM`.
pub fn month_of(d: NaiveDate) -> String {
    format!("{:04}-{:02}", d.year(), d.month())
}

/// Column builders of one table in one month.
struct Columns {
    cols: Vec<ColumnBuilder>,
    rows: usize,
}

enum ColumnBuilder {
    I64(Int64Builder),
    Str(StringBuilder),
    Date(Date32Builder),
    Money(Decimal128Builder),
    Ts(TimestampMicrosecondBuilder),
    Bool(BooleanBuilder),
}

/// One value of a row, in schema order.
enum V<'a> {
    I(i64),
    S(&'a str),
    OS(Option<&'a str>),
    D(NaiveDate),
    M(Decimal),
    OM(Option<Decimal>),
    T(DateTime<Utc>),
    OT(Option<DateTime<Utc>>),
    B(bool),
}

impl Columns {
    fn new(schema: &Schema) -> Self {
        let cols = schema
            .fields()
            .iter()
            .map(|field| match field.data_type() {
                DataType::Int64 => ColumnBuilder::I64(Int64Builder::new()),
                DataType::Utf8 => ColumnBuilder::Str(StringBuilder::new()),
                DataType::Date32 => ColumnBuilder::Date(Date32Builder::new()),
                DataType::Decimal128(..) => ColumnBuilder::Money(
                    Decimal128Builder::new()
                        .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)
                        .expect("valid precision"),
                ),
                DataType::Timestamp(..) => {
                    ColumnBuilder::Ts(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
                }
                DataType::Boolean => ColumnBuilder::Bool(BooleanBuilder::new()),
                other => unreachable!("no builder for {other}"),
            })
            .collect();
        Self { cols, rows: 0 }
    }

    fn push(&mut self, values: &[V<'_>]) {
        debug_assert_eq!(values.len(), self.cols.len());
        for (col, value) in self.cols.iter_mut().zip(values) {
            match (col, value) {
                (ColumnBuilder::I64(b), V::I(v)) => b.append_value(*v),
                (ColumnBuilder::Str(b), V::S(v)) => b.append_value(v),
                (ColumnBuilder::Str(b), V::OS(v)) => b.append_option(*v),
                (ColumnBuilder::Date(b), V::D(v)) => b.append_value(date32(*v)),
                (ColumnBuilder::Money(b), V::M(v)) => b.append_value(decimal_to_i128(*v)),
                (ColumnBuilder::Money(b), V::OM(v)) => b.append_option(v.map(decimal_to_i128)),
                (ColumnBuilder::Ts(b), V::T(v)) => b.append_value(micros(*v)),
                (ColumnBuilder::Ts(b), V::OT(v)) => b.append_option(v.map(micros)),
                (ColumnBuilder::Bool(b), V::B(v)) => b.append_value(*v),
                _ => unreachable!("a value does not match its column's type"),
            }
        }
        self.rows += 1;
    }

    fn finish(self, schema: SchemaRef) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self
            .cols
            .into_iter()
            .map(|c| -> ArrayRef {
                match c {
                    ColumnBuilder::I64(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Str(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Date(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Money(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Ts(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Bool(mut b) => Arc::new(b.finish()),
                }
            })
            .collect();
        RecordBatch::try_new(schema, arrays).expect("columns match the schema")
    }
}

/// Rows of one table, by month.
struct Partitions {
    table: Table,
    months: BTreeMap<String, Columns>,
}

impl Partitions {
    fn new(table: Table) -> Self {
        Self {
            table,
            months: BTreeMap::new(),
        }
    }

    fn push(&mut self, month: String, values: &[V<'_>]) {
        let schema = self.table.file_schema();
        self.months
            .entry(month)
            .or_insert_with(|| Columns::new(&schema))
            .push(values);
    }

    fn finish(self) -> Vec<(String, RecordBatch)> {
        let schema = self.table.file_schema();
        self.months
            .into_iter()
            .map(|(m, c)| (m, c.finish(schema.clone())))
            .collect()
    }
}

/// The instant a claim's loss date stands for when its policy's version is looked up: the
/// start of the day, UTC.
pub fn loss_instant(loss_date: NaiveDate) -> DateTime<Utc> {
    loss_date.and_time(NaiveTime::MIN).and_utc()
}

/// Each policy's versions, oldest first.
fn versions_by_policy(data: &WarehouseCarrier) -> HashMap<i64, Vec<&WarehousePolicyVersion>> {
    let mut by_policy: HashMap<i64, Vec<&WarehousePolicyVersion>> = HashMap::new();
    for v in &data.policy_versions {
        by_policy.entry(v.policy_id).or_default().push(v);
    }
    for list in by_policy.values_mut() {
        list.sort_by_key(|v| v.version);
    }
    by_policy
}

/// The version of policy `policy_id` in force at a claim's loss date, which gives the claim
/// (and its transactions) its line of business and producer (book): the version that was
/// current at the start of the loss day (UTC), `valid_from <= loss < valid_to`; the first
/// version when the loss predates every version. A policy that changes producer later thus
/// keeps its earlier claims in the earlier book.
pub fn in_force<'a>(
    by_policy: &HashMap<i64, Vec<&'a WarehousePolicyVersion>>,
    policy_id: i64,
    loss_date: NaiveDate,
) -> Option<&'a WarehousePolicyVersion> {
    let versions = by_policy.get(&policy_id)?;
    let at = loss_instant(loss_date);
    let mut chosen = *versions.first()?;
    for v in versions {
        if v.valid_from <= at {
            chosen = v;
        }
    }
    Some(chosen)
}

/// A change an outbox event reports: a record and, when the event names it, the version the
/// change made (`None`: any of the record's versions may be new).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Change {
    Policy { id: i64, version: Option<i64> },
    Claim { id: i64, version: Option<i64> },
}

/// Month partitions by table.
pub type PartitionSet = BTreeMap<Table, BTreeSet<String>>;

/// The partitions whose contents `changes` altered, given the history of the records they
/// name (what [`carrierhub_store::WarehouseSelection::Records`] reads). A new policy version
/// `n` touches the month of its effective date in policies (and coverages when it has
/// some), the month of version `n - 1` (whose `valid_to` it set), the months of its premium
/// transactions, and the months of the claim versions naming the policy whose loss is at
/// or after the version's `valid_from` (their policy version in force moved to it, see
/// [`in_force`]) with their transactions' months. A new claim version touches the month of
/// its loss date and that of the version before (a changed loss date moves the claim from
/// one month to another; a claim moved to another policy stays in its months), and its
/// transactions' month.
pub fn touched_partitions(changes: &[Change], data: &WarehouseCarrier) -> PartitionSet {
    let mut out = PartitionSet::new();
    let mut add = |table: Table, date: NaiveDate| {
        out.entry(table).or_default().insert(month_of(date));
    };
    let by_policy = versions_by_policy(data);
    let mut claims: HashMap<i64, Vec<&WarehouseClaimVersion>> = HashMap::new();
    let mut claims_of_policy: HashMap<i64, Vec<&WarehouseClaimVersion>> = HashMap::new();
    for v in &data.claim_versions {
        claims.entry(v.claim_id).or_default().push(v);
        claims_of_policy.entry(v.policy_id).or_default().push(v);
    }
    let mut premiums: HashMap<(i64, i64), Vec<NaiveDate>> = HashMap::new();
    for t in &data.premium_transactions {
        premiums
            .entry((t.policy_id, t.policy_version))
            .or_default()
            .push(t.effective_date);
    }
    let claim_tx: HashSet<(i64, i64)> = data
        .claim_transactions
        .iter()
        .map(|t| (t.claim_id, t.claim_version))
        .collect();
    for change in changes {
        match *change {
            Change::Policy { id, version } => {
                let Some(versions) = by_policy.get(&id) else {
                    continue;
                };
                let new = versions
                    .iter()
                    .filter(|v| version.is_none_or(|n| v.version == n));
                for v in new {
                    let previous = versions.iter().find(|p| p.version == v.version - 1);
                    for p in std::iter::once(v).chain(previous) {
                        add(Table::Policies, p.record.effective_date);
                        if !p.record.coverages.is_empty() {
                            add(Table::Coverages, p.record.effective_date);
                        }
                    }
                    for d in premiums.get(&(id, v.version)).into_iter().flatten() {
                        add(Table::PremiumTransactions, *d);
                    }
                    for c in claims_of_policy.get(&id).into_iter().flatten() {
                        let loss = c.record.loss_date;
                        if v.version == 1 || loss_instant(loss) >= v.valid_from {
                            add(Table::Claims, loss);
                            if claim_tx.contains(&(c.claim_id, c.version)) {
                                add(Table::ClaimTransactions, loss);
                            }
                        }
                    }
                }
            }
            Change::Claim { id, version } => {
                let Some(versions) = claims.get(&id) else {
                    continue;
                };
                let new = versions
                    .iter()
                    .filter(|v| version.is_none_or(|n| v.version == n));
                for v in new {
                    add(Table::Claims, v.record.loss_date);
                    if let Some(p) = versions.iter().find(|p| p.version == v.version - 1) {
                        add(Table::Claims, p.record.loss_date);
                    }
                    if claim_tx.contains(&(id, v.version)) {
                        add(Table::ClaimTransactions, v.record.loss_date);
                    }
                }
            }
        }
    }
    out
}

/// One carrier's rows: for each table, one record batch per month, months in order. The
/// rows are in the order of the store's ids, so the same data always gives the same batches.
pub fn carrier_batches(data: &WarehouseCarrier) -> Vec<(Table, Vec<(String, RecordBatch)>)> {
    let mut policies = Partitions::new(Table::Policies);
    let mut coverages = Partitions::new(Table::Coverages);
    let mut premiums = Partitions::new(Table::PremiumTransactions);
    let mut claims = Partitions::new(Table::Claims);
    let mut claim_tx = Partitions::new(Table::ClaimTransactions);

    // Each policy's current version: the fallback for a transaction whose version is gone.
    let mut current: HashMap<i64, &carrierhub_model::Policy> = HashMap::new();
    // Each policy version, for its transactions.
    let mut versions: HashMap<(i64, i64), &carrierhub_model::Policy> = HashMap::new();
    // Each policy's versions in order, for the claims (see [`in_force`]).
    let by_policy = versions_by_policy(data);
    for v in &data.policy_versions {
        let p = &v.record;
        versions.insert((v.policy_id, v.version), p);
        if v.valid_to.is_none() {
            current.insert(v.policy_id, p);
        } else {
            current.entry(v.policy_id).or_insert(p);
        }
        let month = month_of(p.effective_date);
        let currency = p.premium.currency.to_string();
        policies.push(
            month.clone(),
            &[
                V::I(v.policy_id),
                V::S(p.number.as_str()),
                V::I(v.version),
                V::S(p.line_of_business.value.code()),
                V::S(&p.line_of_business.original),
                V::S(p.status.value.code()),
                V::S(&p.status.original),
                V::D(p.effective_date),
                V::D(p.expiration_date),
                V::M(p.premium.amount),
                V::S(&currency),
                V::OS(p.producer.as_deref()),
                V::S(&p.insured.name),
                V::S(p.insured.kind.code()),
                V::I(v.submission_id),
                V::T(v.valid_from),
                V::OT(v.valid_to),
                V::B(v.valid_to.is_none()),
            ],
        );
        for (i, c) in p.coverages.iter().enumerate() {
            let currency = [&c.limit, &c.deductible, &c.premium]
                .into_iter()
                .flatten()
                .map(|m| m.currency.to_string())
                .next();
            coverages.push(
                month.clone(),
                &[
                    V::I(v.policy_id),
                    V::S(p.number.as_str()),
                    V::I(v.version),
                    V::I(i as i64),
                    V::S(&c.code),
                    V::OM(c.limit.as_ref().map(|m| m.amount)),
                    V::OM(c.deductible.as_ref().map(|m| m.amount)),
                    V::OM(c.premium.as_ref().map(|m| m.amount)),
                    V::OS(currency.as_deref()),
                    V::S(p.line_of_business.value.code()),
                    V::OS(p.producer.as_deref()),
                    V::T(v.valid_from),
                    V::OT(v.valid_to),
                    V::B(v.valid_to.is_none()),
                ],
            );
        }
    }
    for t in &data.premium_transactions {
        let p = versions
            .get(&(t.policy_id, t.policy_version))
            .or_else(|| current.get(&t.policy_id));
        let (number, line, producer) = match p {
            Some(p) => (
                p.number.as_str(),
                p.line_of_business.value.code(),
                p.producer.as_deref(),
            ),
            None => ("", "", None),
        };
        premiums.push(
            month_of(t.effective_date),
            &[
                V::I(t.id),
                V::I(t.policy_id),
                V::S(number),
                V::I(t.policy_version),
                V::S(&t.kind),
                V::M(t.amount),
                V::S(&t.currency),
                V::D(t.effective_date),
                V::S(line),
                V::OS(producer),
                V::I(t.submission_id),
                V::T(t.recorded_at),
            ],
        );
    }
    // Each claim version, for its transactions.
    let mut claim_versions: HashMap<(i64, i64), (&carrierhub_model::Claim, i64)> = HashMap::new();
    for v in &data.claim_versions {
        let c = &v.record;
        claim_versions.insert((v.claim_id, v.version), (c, v.policy_id));
        let policy = in_force(&by_policy, v.policy_id, c.loss_date).map(|p| &p.record);
        let line = policy.map_or("", |p| p.line_of_business.value.code());
        let producer = policy.and_then(|p| p.producer.as_deref());
        let currency = c.paid.currency.to_string();
        claims.push(
            month_of(c.loss_date),
            &[
                V::I(v.claim_id),
                V::S(c.number.as_str()),
                V::I(v.version),
                V::I(v.policy_id),
                V::S(c.policy_number.as_str()),
                V::S(line),
                V::OS(producer),
                V::D(c.loss_date),
                V::D(c.reported_date),
                V::S(c.status.value.code()),
                V::S(&c.status.original),
                V::OS(c.cause.as_deref()),
                V::M(c.paid.amount),
                V::M(c.reserve.amount),
                V::M(c.paid.amount + c.reserve.amount),
                V::S(&currency),
                V::I(v.submission_id),
                V::T(v.valid_from),
                V::OT(v.valid_to),
                V::B(v.valid_to.is_none()),
            ],
        );
    }
    for t in &data.claim_transactions {
        let Some((c, policy_id)) = claim_versions.get(&(t.claim_id, t.claim_version)) else {
            continue;
        };
        let policy = in_force(&by_policy, *policy_id, c.loss_date).map(|p| &p.record);
        let line = policy.map_or("", |p| p.line_of_business.value.code());
        let producer = policy.and_then(|p| p.producer.as_deref());
        claim_tx.push(
            month_of(c.loss_date),
            &[
                V::I(t.id),
                V::I(t.claim_id),
                V::S(c.number.as_str()),
                V::I(t.claim_version),
                V::I(*policy_id),
                V::S(&t.kind),
                V::M(t.amount),
                V::S(&t.currency),
                V::S(line),
                V::OS(producer),
                V::D(c.loss_date),
                V::I(t.submission_id),
                V::T(t.recorded_at),
            ],
        );
    }
    vec![
        (Table::Policies, policies.finish()),
        (Table::Coverages, coverages.finish()),
        (Table::PremiumTransactions, premiums.finish()),
        (Table::Claims, claims.finish()),
        (Table::ClaimTransactions, claim_tx.finish()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn money_is_scaled_to_nine_places() {
        assert_eq!(
            decimal_to_i128(Decimal::from_str("12.34").unwrap()),
            12_340_000_000
        );
        assert_eq!(
            decimal_to_i128(Decimal::from_str("-0.5").unwrap()),
            -500_000_000
        );
        assert_eq!(decimal_to_i128(Decimal::from(7)), 7_000_000_000);
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn policy_version(
        version: i64,
        effective: &str,
        producer: &str,
        from: &str,
        to: Option<&str>,
    ) -> WarehousePolicyVersion {
        let record = serde_json::json!({
            "carrier": "c", "number": "P1",
            "line_of_business": {"value": "homeowners", "original": "HO"},
            "status": {"value": "active", "original": "A"},
            "effective_date": effective, "expiration_date": "2026-12-31",
            "premium": {"amount": "100", "currency": "EUR"},
            "producer": producer,
            "insured": {"reference": null, "kind": "person", "name": "A", "postal_code": null, "country": null},
            "coverages": [],
        });
        WarehousePolicyVersion {
            policy_id: 1,
            version,
            record: serde_json::from_value(record).unwrap(),
            submission_id: 1,
            valid_from: at(from),
            valid_to: to.map(at),
        }
    }

    fn claim_version(claim_id: i64, version: i64, loss: &str, from: &str) -> WarehouseClaimVersion {
        let record = serde_json::json!({
            "carrier": "c", "number": format!("C{claim_id}"), "policy_number": "P1",
            "loss_date": loss, "reported_date": loss,
            "status": {"value": "open", "original": "O"}, "cause": null,
            "paid": {"amount": "10", "currency": "EUR"},
            "reserve": {"amount": "0", "currency": "EUR"},
        });
        WarehouseClaimVersion {
            claim_id,
            version,
            policy_id: 1,
            record: serde_json::from_value(record).unwrap(),
            submission_id: 1,
            valid_from: at(from),
            valid_to: None,
        }
    }

    /// Policy 1: AG1 from 2025-03-01, AG2 from 2025-06-15 (effective month moved to
    /// 2025-02); claim 7 lost 2025-01-20 (before the first version), claim 8 lost 2025-05-31,
    /// claim 9 lost 2025-07-01.
    fn history() -> WarehouseCarrier {
        WarehouseCarrier {
            policy_versions: vec![
                policy_version(
                    1,
                    "2025-01-10",
                    "AG1",
                    "2025-03-01T09:00:00Z",
                    Some("2025-06-15T12:00:00Z"),
                ),
                policy_version(2, "2025-02-10", "AG2", "2025-06-15T12:00:00Z", None),
            ],
            claim_versions: vec![
                claim_version(7, 1, "2025-01-20", "2025-03-02T00:00:00Z"),
                claim_version(8, 1, "2025-05-31", "2025-06-01T00:00:00Z"),
                claim_version(9, 1, "2025-07-01", "2025-07-02T00:00:00Z"),
            ],
            ..WarehouseCarrier::default()
        }
    }

    #[test]
    fn a_claim_takes_the_policy_version_in_force_at_its_loss() {
        let data = history();
        let by_policy = versions_by_policy(&data);
        let producer = |loss: &str| {
            let loss = NaiveDate::parse_from_str(loss, "%Y-%m-%d").unwrap();
            in_force(&by_policy, 1, loss)
                .and_then(|v| v.record.producer.clone())
                .unwrap()
        };
        assert_eq!(
            producer("2025-01-20"),
            "AG1",
            "before every version: the first"
        );
        assert_eq!(producer("2025-05-31"), "AG1");
        assert_eq!(
            producer("2025-06-15"),
            "AG1",
            "the day began before the change"
        );
        assert_eq!(producer("2025-06-16"), "AG2");
        assert!(in_force(&by_policy, 2, NaiveDate::MIN).is_none());
        let claims = &carrier_batches(&data)[3].1;
        let rows: Vec<(String, usize)> = claims
            .iter()
            .map(|(month, b)| (month.clone(), b.num_rows()))
            .collect();
        assert_eq!(
            rows,
            [
                ("2025-01".to_owned(), 1),
                ("2025-05".to_owned(), 1),
                ("2025-07".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn a_change_touches_the_months_of_its_versions_and_of_the_claims_it_moves() {
        let data = history();
        let months = |changes: &[Change]| -> Vec<(Table, String)> {
            touched_partitions(changes, &data)
                .into_iter()
                .flat_map(|(t, ms)| ms.into_iter().map(move |m| (t, m)))
                .collect()
        };
        let m = |t: Table, s: &str| (t, s.to_owned());
        // Version 2: its month and version 1's, and the claim lost after it began.
        assert_eq!(
            months(&[Change::Policy {
                id: 1,
                version: Some(2)
            }]),
            [
                m(Table::Policies, "2025-01"),
                m(Table::Policies, "2025-02"),
                m(Table::Claims, "2025-07")
            ]
        );
        // Version 1 (or an event without a version): every claim of the policy too.
        assert_eq!(
            months(&[Change::Policy {
                id: 1,
                version: Some(1)
            }]),
            [
                m(Table::Policies, "2025-01"),
                m(Table::Claims, "2025-01"),
                m(Table::Claims, "2025-05"),
                m(Table::Claims, "2025-07")
            ]
        );
        assert_eq!(
            months(&[Change::Claim {
                id: 8,
                version: Some(1)
            }]),
            [m(Table::Claims, "2025-05")]
        );
        assert!(months(&[Change::Claim {
            id: 99,
            version: None
        }])
        .is_empty());
    }

    #[test]
    fn dates_and_months() {
        let d = NaiveDate::from_ymd_opt(2025, 3, 9).unwrap();
        assert_eq!(month_of(d), "2025-03");
        assert_eq!(date32(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap()), 1);
    }
}
