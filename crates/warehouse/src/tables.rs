//! The warehouse's tables: their Arrow schemas, and one carrier's rows as record batches per
//! month partition.
//!
//! Every table is partitioned hive-style by `carrier=<id>/month=<YYYY-MM>/`; the two
//! partition columns are in the path, not in the files. Money is `Decimal128(38, 9)`, dates
//! `Date32`, instants `Timestamp(Microsecond, "UTC")`, so a warehouse loads the files as they
//! are. The book a row belongs to (what a scope's books restrict) is its `producer` column.

use carrierhub_store::WarehouseCarrier;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
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

/// One carrier's rows: for each table, one record batch per month, months in order. The
/// rows are in the order of the store's ids, so the same data always gives the same batches.
pub fn carrier_batches(data: &WarehouseCarrier) -> Vec<(Table, Vec<(String, RecordBatch)>)> {
    let mut policies = Partitions::new(Table::Policies);
    let mut coverages = Partitions::new(Table::Coverages);
    let mut premiums = Partitions::new(Table::PremiumTransactions);
    let mut claims = Partitions::new(Table::Claims);
    let mut claim_tx = Partitions::new(Table::ClaimTransactions);

    // Each policy's current version: its number, line and book for the claims.
    let mut current: HashMap<i64, &carrierhub_model::Policy> = HashMap::new();
    // Each policy version, for its transactions.
    let mut versions: HashMap<(i64, i64), &carrierhub_model::Policy> = HashMap::new();
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
        let policy = current.get(&v.policy_id);
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
        let policy = current.get(policy_id);
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

    #[test]
    fn dates_and_months() {
        let d = NaiveDate::from_ymd_opt(2025, 3, 9).unwrap();
        assert_eq!(month_of(d), "2025-03");
        assert_eq!(date32(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap()), 1);
    }
}
