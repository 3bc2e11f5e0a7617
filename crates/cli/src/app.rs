//! Opens the store and pipeline: the store in the data directory (SQLite) or in PostgreSQL
//! (`--database-url`), the raw documents always in the data directory.

use anyhow::Context;
use carrierhub_broker::Broker;
use carrierhub_pipeline::{DocumentStore, Pipeline};
use carrierhub_store::{Backend, MigrationInfo, Store, StoreError};
use std::path::PathBuf;
use std::sync::Arc;

/// The embedded store's file inside the data directory.
pub const DATABASE_FILE: &str = "carrierhub.db";

/// Where the data lives, from `--data-dir` and `--database-url`.
#[derive(Debug, Clone)]
pub struct Location {
    /// The raw documents, and the embedded store unless `database_url` is set.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL: the store lives there instead of in the data directory.
    pub database_url: Option<String>,
    /// A NATS URL; without one the broker is embedded in the store's database.
    pub broker_url: Option<String>,
    /// Where the warehouse's Parquet files live (`s3://…`, `gs://…` or a directory); by
    /// default `<data dir>/warehouse`.
    pub warehouse_url: Option<String>,
}

impl Location {
    /// What `carrierhub_store::open_store` takes: the PostgreSQL URL, or the SQLite file.
    fn locator(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => self.data_dir.join(DATABASE_FILE).display().to_string(),
        }
    }

    /// Connects to the broker (the store's migrations must have run for the embedded one).
    pub async fn open_broker(&self) -> anyhow::Result<Arc<dyn Broker>> {
        carrierhub_broker::open_broker(self.broker_url.as_deref(), &self.locator())
            .await
            .with_context(|| match &self.broker_url {
                Some(url) => format!(
                    "cannot use the broker at {}",
                    carrierhub_store::redact_url(url)
                ),
                None => format!("cannot open the embedded broker in {}", self.describe()),
            })
    }

    /// The warehouse's location (a bucket, or a directory, created when missing).
    pub fn warehouse(&self) -> anyhow::Result<carrierhub_warehouse::Location> {
        let url = match &self.warehouse_url {
            Some(url) => url.clone(),
            None => self.data_dir.join("warehouse").display().to_string(),
        };
        Ok(carrierhub_warehouse::Location::parse(&url)?)
    }

    /// The store for messages (a URL's password masked).
    pub fn describe(&self) -> String {
        Backend::parse(&self.locator()).describe()
    }

    /// Whether a store exists to be read: a PostgreSQL database always, the SQLite file once
    /// created (a dry run creates nothing).
    pub fn store_exists(&self) -> bool {
        self.database_url.is_some() || self.data_dir.join(DATABASE_FILE).exists()
    }

    fn create_data_dir(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create data directory {}", self.data_dir.display()))
    }

    /// Applies the store's pending migrations; returns the ones applied.
    pub async fn migrate(&self) -> anyhow::Result<Vec<MigrationInfo>> {
        self.create_data_dir()?;
        carrierhub_store::migrate(&self.locator())
            .await
            .map_err(|e| with_store_context(e, self))
    }
}

/// Adds which store failed, unless the error names it already.
fn with_store_context(e: StoreError, location: &Location) -> anyhow::Error {
    match e {
        StoreError::Connect { .. } | StoreError::Schema(_) => anyhow::Error::new(e),
        other => anyhow::Error::new(other).context(format!("cannot open {}", location.describe())),
    }
}

/// Parses `--database-url`: a PostgreSQL URL, or empty for none (SQLite in the data
/// directory).
pub fn parse_database_url(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Ok(String::new());
    }
    match Backend::parse(value) {
        Backend::Postgres(url) => Ok(url),
        Backend::Sqlite(_) => Err(format!(
            "'{value}' is not a PostgreSQL URL (postgres://user@host:port/database); \
             without --database-url the store is SQLite in --data-dir"
        )),
    }
}

pub struct App {
    pub store: Arc<dyn Store>,
    pub pipeline: Pipeline,
}

impl App {
    /// Creates the data directory and, for SQLite, the database on first use; applies
    /// migrations.
    pub async fn open(location: &Location) -> anyhow::Result<Self> {
        Self::open_with(location, true).await
    }

    /// As [`App::open`]; without `migrate`, opening fails, naming the missing migrations,
    /// unless the store's schema is current.
    pub async fn open_with(location: &Location, migrate: bool) -> anyhow::Result<Self> {
        location.create_data_dir()?;
        let store = carrierhub_store::open_store_with(&location.locator(), migrate)
            .await
            .map_err(|e| with_store_context(e, location))?;
        let pipeline = Pipeline::new(
            store.clone(),
            DocumentStore::new(location.data_dir.join("documents")),
        );
        Ok(Self { store, pipeline })
    }
}
