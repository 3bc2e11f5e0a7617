//! The warehouse: analytics tables of the canonical model as Parquet, and SQL over them.
//!
//! - [`tables`]: the tables (policies and claims with every version's validity, coverages,
//!   premium and claim transactions), their Arrow schemas and one carrier's rows per month.
//! - [`writer`]: [`WarehouseWriter`] applies the store's outbox after a durable watermark and
//!   rewrites the partitions (`carrier=X/month=YYYY-MM/`) the events changed, one writer
//!   per location (a fenced lease in the store).
//! - [`query`]: [`QueryEngine`] runs read-only SQL with DataFusion, each table wrapped in a
//!   [`query::ScopedTable`] that filters every scan to the caller's carriers and books.
//! - [`insights`]: insurance metrics (written, in-force and earned premium, incurred losses,
//!   loss ratio, frequency and severity, development triangles) through the same scoped SQL.
//! - [`location`]: a local directory, or an S3 or GCS bucket, through `object_store`.

pub mod insights;
pub mod location;
pub mod query;
pub mod tables;
pub mod writer;

pub use location::Location;
pub use query::{Format, QueryEngine, QueryError, QueryLimits, QueryOutput};
pub use tables::Table;
pub use writer::{Lag, WarehouseWriter, Watermark};

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] carrierhub_store::StoreError),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("warehouse data is corrupt: {0}")]
    Corrupt(String),
    /// Another writer holds (or took over) the location's lease.
    #[error("{0}")]
    LeaseLost(String),
}

pub type Result<T, E = WarehouseError> = std::result::Result<T, E>;

// The engine and the object store API, as the warehouse uses them (one version for all).
pub use datafusion;
pub use object_store;
