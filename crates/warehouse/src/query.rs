//! Read-only SQL over the warehouse's tables with DataFusion, within the caller's scope.
//!
//! Invariants:
//! - Scope is applied inside the table providers: [`ScopedTable`] wraps each table and puts
//!   a filter on the caller's carriers (the `carrier` partition column) and books (the
//!   `producer` column) on top of every scan it makes, whatever the query does with the
//!   table afterwards (joins, subqueries, aggregates, EXPLAIN ANALYZE). The SQL text is never
//!   rewritten.
//! - Only queries run: a statement that plans to anything but a query or an EXPLAIN (DDL,
//!   DML, COPY, SET, transactions) is refused before anything runs.
//! - Every query runs in its own session with a memory pool of `memory_limit` bytes and is
//!   cancelled after `timeout`.

use crate::location::Location;
use crate::tables::{Table, BOOK_COLUMN, PARTITION_COLUMNS};
use async_trait::async_trait;
use carrierhub_store::Scope;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{
    col, lit, Expr, LogicalPlan, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How results are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON array of objects.
    Json,
    /// CSV with a header line.
    Csv,
    /// An Arrow IPC stream.
    Arrow,
    /// A Parquet file.
    Parquet,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            "arrow" => Some(Self::Arrow),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    /// The format an `Accept` media type asks for.
    pub fn from_media_type(media: &str) -> Option<Self> {
        let media = media.split(';').next()?.trim().to_ascii_lowercase();
        match media.as_str() {
            "application/json" => Some(Self::Json),
            "text/csv" => Some(Self::Csv),
            "application/vnd.apache.arrow.stream" => Some(Self::Arrow),
            "application/vnd.apache.parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Arrow => "application/vnd.apache.arrow.stream",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// Why a query did not answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Not a query: DDL, DML, COPY, SET or a transaction statement.
    #[error("only read-only queries are accepted (SELECT, WITH, EXPLAIN): {0}")]
    NotReadOnly(String),
    /// A syntax or planning error (unknown table or column, wrong types).
    #[error("{0}")]
    Invalid(String),
    #[error("the query ran longer than its time limit of {0:?}")]
    Timeout(Duration),
    /// The memory pool, or the size of the answer, was exceeded.
    #[error("the query needs more memory than its limit: {0}")]
    TooLarge(String),
    #[error("the query failed: {0}")]
    Failed(String),
}

/// What a query answered.
pub struct QueryOutput {
    pub format: Format,
    pub body: Vec<u8>,
    pub rows: usize,
}

/// Limits of each query.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// The memory pool of one query, in bytes.
    pub memory_bytes: usize,
    pub timeout: Duration,
    /// The largest encoded answer, in bytes.
    pub max_result_bytes: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 512 * 1024 * 1024,
            timeout: Duration::from_secs(25),
            max_result_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Runs SQL over one warehouse.
#[derive(Clone)]
pub struct QueryEngine {
    location: Location,
    limits: QueryLimits,
}

impl QueryEngine {
    pub fn new(location: Location, limits: QueryLimits) -> Self {
        Self { location, limits }
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// A session over the warehouse's tables, each within `scope`.
    pub fn session(&self, scope: &Scope) -> Result<SessionContext, QueryError> {
        // No spilling to disk: a query past its memory is refused, not moved to local disk.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(failed)?;
        // The files' statistics are read for planning (DataFusion's default). Without them a
        // grouped aggregate is about 10% faster, but joins lose their choice of build side, and
        // a join of a small table with a large one can need many times the memory.
        let config = SessionConfig::new()
            .with_information_schema(false)
            .with_default_catalog_and_schema("carrierhub", "warehouse");
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_object_store(&self.location.base, self.location.store.clone());
        for table in Table::ALL {
            let provider = self.listing_table(table)?;
            let scoped = ScopedTable::new(provider, scope.clone());
            ctx.register_table(table.name(), Arc::new(scoped))
                .map_err(failed)?;
        }
        Ok(ctx)
    }

    fn listing_table(&self, table: Table) -> Result<Arc<dyn TableProvider>, QueryError> {
        let url = ListingTableUrl::parse(self.location.url_of(table.name())).map_err(failed)?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(
                PARTITION_COLUMNS
                    .iter()
                    .map(|c| (c.to_string(), DataType::Utf8View))
                    .collect(),
            );
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(scan_schema(&table.file_schema()));
        Ok(Arc::new(ListingTable::try_new(config).map_err(failed)?))
    }

    /// Runs `sql` within `scope` and encodes the answer.
    pub async fn run(
        &self,
        sql: &str,
        scope: &Scope,
        format: Format,
    ) -> Result<QueryOutput, QueryError> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.limits.timeout, self.run_inner(sql, scope, format))
            .await
            .unwrap_or(Err(QueryError::Timeout(self.limits.timeout)));
        let label = match &outcome {
            Ok(_) => "ok",
            Err(QueryError::NotReadOnly(_)) | Err(QueryError::Invalid(_)) => "invalid",
            Err(QueryError::Timeout(_)) => "timeout",
            Err(QueryError::TooLarge(_)) => "too_large",
            Err(QueryError::Failed(_)) => "failed",
        };
        metrics::histogram!("carrierhub_query_duration_seconds", "outcome" => label)
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    async fn run_inner(
        &self,
        sql: &str,
        scope: &Scope,
        format: Format,
    ) -> Result<QueryOutput, QueryError> {
        let batches = self.collect(sql, scope).await?;
        let rows = batches.iter().map(|b| b.num_rows()).sum();
        let max = self.limits.max_result_bytes;
        let body = tokio::task::spawn_blocking(move || encode(&batches, format))
            .await
            .map_err(failed)??;
        if body.len() > max {
            return Err(QueryError::TooLarge(format!(
                "the answer is {} bytes, more than the limit of {max}",
                body.len()
            )));
        }
        Ok(QueryOutput { format, body, rows })
    }

    /// Plans `sql`, refuses anything but a query, and runs it.
    pub async fn collect(&self, sql: &str, scope: &Scope) -> Result<Vec<RecordBatch>, QueryError> {
        let ctx = self.session(scope)?;
        let state = ctx.state();
        let plan = state.create_logical_plan(sql).await.map_err(classify)?;
        check_read_only(&plan)?;
        let frame = ctx.execute_logical_plan(plan).await.map_err(classify)?;
        let batches = frame.collect().await.map_err(classify)?;
        batches.iter().map(plain_strings).collect()
    }
}

/// The schema the tables are scanned with: the files' own, with strings read as
/// `Utf8View`. A short string (a carrier, a month, a line of business) then sits inside its
/// 16-byte view, so the partition values cost nothing to repeat into each batch and grouping
/// compares views, not bytes: together about a third off a grouped aggregate (see
/// `bench/warehouse.sh`).
fn scan_schema(file: &Schema) -> SchemaRef {
    let fields: Vec<Field> = file
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, file.metadata().clone()))
}

/// An answer's string columns as plain `Utf8`, whatever the plan made of them: the types a
/// caller gets (in Arrow IPC and Parquet above all) do not depend on how a scan reads.
fn plain_strings(batch: &RecordBatch) -> Result<RecordBatch, QueryError> {
    fn plain(t: &DataType) -> Option<DataType> {
        match t {
            DataType::Utf8View => Some(DataType::Utf8),
            DataType::BinaryView => Some(DataType::Binary),
            _ => None,
        }
    }
    let schema = batch.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| plain(f.data_type()).is_some())
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        match plain(field.data_type()) {
            Some(t) => {
                columns.push(cast(column, &t).map_err(failed)?);
                fields.push(field.as_ref().clone().with_data_type(t));
            }
            None => {
                columns.push(column.clone());
                fields.push(field.as_ref().clone());
            }
        }
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    RecordBatch::try_new(schema, columns).map_err(failed)
}

/// Refuses a plan that is not a query.
fn check_read_only(plan: &LogicalPlan) -> Result<(), QueryError> {
    let what = match plan {
        LogicalPlan::Ddl(ddl) => ddl.name().to_owned(),
        LogicalPlan::Dml(dml) => format!("{} {}", dml.op, dml.table_name),
        LogicalPlan::Copy(_) => "COPY".to_owned(),
        LogicalPlan::Statement(s) => s.name().to_owned(),
        LogicalPlan::DescribeTable(_) => return Ok(()),
        LogicalPlan::Explain(e) => return check_read_only(&e.plan),
        LogicalPlan::Analyze(a) => return check_read_only(&a.input),
        _ => return Ok(()),
    };
    Err(QueryError::NotReadOnly(what))
}

fn failed(e: impl std::fmt::Display) -> QueryError {
    QueryError::Failed(e.to_string())
}

/// Sorts DataFusion's errors into the caller's mistakes, exhausted resources and failures.
fn classify(e: DataFusionError) -> QueryError {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(m) => QueryError::TooLarge(m.clone()),
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => QueryError::Invalid(e.strip_backtrace()),
        _ => QueryError::Failed(e.strip_backtrace()),
    }
}

fn encode(batches: &[RecordBatch], format: Format) -> Result<Vec<u8>, QueryError> {
    use datafusion::arrow::{csv, ipc, json};
    let mut out = Vec::new();
    match format {
        Format::Json => {
            let mut w = json::ArrayWriter::new(&mut out);
            for b in batches {
                w.write(b).map_err(failed)?;
            }
            w.finish().map_err(failed)?;
            drop(w);
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
        }
        Format::Csv => {
            let mut w = csv::WriterBuilder::new().with_header(true).build(&mut out);
            for b in batches {
                w.write(b).map_err(failed)?;
            }
        }
        Format::Arrow => {
            let schema = batches
                .first()
                .map(|b| b.schema())
                .unwrap_or_else(|| Arc::new(datafusion::arrow::datatypes::Schema::empty()));
            let mut w = ipc::writer::StreamWriter::try_new(&mut out, &schema).map_err(failed)?;
            for b in batches {
                w.write(b).map_err(failed)?;
            }
            w.finish().map_err(failed)?;
        }
        Format::Parquet => {
            let schema = batches
                .first()
                .map(|b| b.schema())
                .unwrap_or_else(|| Arc::new(datafusion::arrow::datatypes::Schema::empty()));
            let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(&mut out, schema, None)
                .map_err(failed)?;
            for b in batches {
                w.write(b).map_err(failed)?;
            }
            w.close().map_err(failed)?;
        }
    }
    Ok(out)
}

/// A table within a scope: every scan of it is filtered to the scope's carriers and books.
#[derive(Debug)]
pub struct ScopedTable {
    inner: Arc<dyn TableProvider>,
    predicate: Option<Expr>,
}

impl ScopedTable {
    pub fn new(inner: Arc<dyn TableProvider>, scope: Scope) -> Self {
        let schema = inner.schema();
        let mut parts = Vec::new();
        if let Some(carriers) = scope.carrier_list() {
            parts.push(in_list(&schema, "carrier", carriers));
        }
        if let Some(books) = scope.book_list() {
            // A row without a producer is in no book: NULL IN (…) is not true.
            parts.push(in_list(&schema, BOOK_COLUMN, books));
        }
        let predicate = parts.into_iter().reduce(Expr::and);
        Self { inner, predicate }
    }
}

/// `column IN (values)`, the values typed as the column is scanned (`Utf8View`): the
/// predicate is planned straight into the scan's filter, where nothing coerces its types.
fn in_list(schema: &Schema, column: &str, values: Vec<String>) -> Expr {
    if values.is_empty() {
        return lit(false);
    }
    let typed = |v: String| {
        let text = ScalarValue::Utf8(Some(v));
        match schema.field_with_name(column) {
            Ok(f) => text.cast_to(f.data_type()).unwrap_or(text),
            Err(_) => text,
        }
    };
    col(column).in_list(values.into_iter().map(|v| lit(typed(v))).collect(), false)
}

#[async_trait]
impl TableProvider for ScopedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let Some(predicate) = &self.predicate else {
            return self.inner.scan(state, projection, filters, limit).await;
        };
        let schema = self.inner.schema();
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..schema.fields().len()).collect(),
        };
        // The scan reads the wanted columns and those the scope's filter needs.
        let mut columns = wanted.clone();
        for name in predicate.column_refs() {
            let i = schema.index_of(&name.name)?;
            if !columns.contains(&i) {
                columns.push(i);
            }
        }
        // The scope's filter also goes down as a hint, so whole carriers' files are pruned;
        // the limit does not (it would apply before the filter).
        let mut pushed = filters.to_vec();
        pushed.push(predicate.clone());
        let scan = self
            .inner
            .scan(state, Some(&columns), &pushed, None)
            .await?;
        let scanned = scan.schema();
        let df_schema = DFSchema::try_from(scanned.as_ref().clone())?;
        let physical = state.create_physical_expr(predicate.clone(), &df_schema)?;
        let filtered: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(physical, scan)?);
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = (0..wanted.len())
            .map(|i| {
                let name = scanned.field(i).name().clone();
                (
                    Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                    name,
                )
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(exprs, filtered)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int64Array, StringArray, StringViewArray};
    use datafusion::arrow::ipc::reader::StreamReader;

    #[test]
    fn answers_carry_plain_strings_whatever_the_scan_read() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("carrier", DataType::Utf8View, false),
            Field::new("line_of_business", DataType::Utf8View, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let long = "a carrier whose name is longer than a view's twelve inline bytes";
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringViewArray::from(vec!["northwind", long])),
                Arc::new(StringViewArray::from(vec![Some("property"), None])),
                Arc::new(Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let plain = plain_strings(&batch).unwrap();
        let body = encode(&[plain], Format::Arrow).unwrap();
        let read: Vec<RecordBatch> = StreamReader::try_new(body.as_slice(), None)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let schema = read[0].schema();
        let types: Vec<_> = schema.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(types, [&DataType::Utf8, &DataType::Utf8, &DataType::Int64]);
        assert!(!schema.field(0).is_nullable() && schema.field(1).is_nullable());
        let carrier = read[0].column(0).as_any().downcast_ref::<StringArray>();
        assert_eq!(
            carrier.unwrap().iter().collect::<Vec<_>>(),
            [Some("northwind"), Some(long)]
        );
        let line = read[0].column(1).as_any().downcast_ref::<StringArray>();
        assert_eq!(
            line.unwrap().iter().collect::<Vec<_>>(),
            [Some("property"), None]
        );
        assert_eq!(read[0].column(1).null_count(), 1);
    }

    #[test]
    fn tables_are_scanned_with_string_views_and_nothing_else_changes() {
        for table in Table::ALL {
            let file = table.file_schema();
            let scan = scan_schema(&file);
            assert_eq!(file.fields().len(), scan.fields().len());
            for (f, s) in file.fields().iter().zip(scan.fields()) {
                assert_eq!((f.name(), f.is_nullable()), (s.name(), s.is_nullable()));
                let expected = match f.data_type() {
                    DataType::Utf8 => &DataType::Utf8View,
                    other => other,
                };
                assert_eq!(s.data_type(), expected, "{}.{}", table.name(), f.name());
            }
        }
    }
}
