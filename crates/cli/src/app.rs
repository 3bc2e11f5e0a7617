//! Opens the embedded store and pipeline from a data directory.

use anyhow::Context;
use carrierhub_pipeline::{DocumentStore, Pipeline};
use carrierhub_store::{SqliteStore, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The embedded store's file inside the data directory.
pub const DATABASE_FILE: &str = "carrierhub.db";

pub struct App {
    pub store: Arc<dyn Store>,
    pub pipeline: Pipeline,
    pub database_path: PathBuf,
}

impl App {
    /// Creates the data directory and the database on first use; applies migrations.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        let database_path = data_dir.join(DATABASE_FILE);
        let store = SqliteStore::open(&database_path)
            .await
            .with_context(|| format!("cannot open the store at {}", database_path.display()))?;
        let store: Arc<dyn Store> = Arc::new(store);
        let pipeline = Pipeline::new(
            store.clone(),
            DocumentStore::new(data_dir.join("documents")),
        );
        Ok(Self {
            store,
            pipeline,
            database_path,
        })
    }
}
