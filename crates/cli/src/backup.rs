//! `carrierhub backup DIR` and `carrierhub restore DIR`, for the embedded store (SQLite in the
//! data directory).
//!
//! A backup is consistent while the server keeps writing: the database is copied with
//! `VACUUM INTO`, which reads one snapshot (a read transaction in WAL mode, so writers go
//! on), and then the raw documents that snapshot lists are copied. Documents are written to
//! disk before their rows are committed and are never changed or removed, so every document
//! the snapshot names is there to copy. The backup holds:
//!
//! - `carrierhub.db`: the store (canonical records, versions, submissions, rejections,
//!   mappings, API keys, webhooks and their secrets, the audit log, the outbox and the
//!   embedded broker's messages);
//! - `documents/`: the raw payloads, by SHA-256, as in the data directory;
//! - `carrierhub-backup.json`: what was copied, and the schema's migration.
//!
//! Not copied: the warehouse's Parquet files (they are rebuilt from the store with
//! `carrierhub warehouse sync`), and the spool of uploads in flight.
//!
//! `restore` checks the backup, copies it into place, and lets go of the claims (leases,
//! messages awaiting their acknowledgement) that the original's processes held: none works on
//! the copy, so its interrupted work resumes as soon as a server starts on it.
//!
//! PostgreSQL deployments back up with `pg_dump` (the database holds the documents' bytes
//! too); `backup` says so and exits.

use crate::app::{Location, DATABASE_FILE};
use anyhow::{bail, Context};
use carrierhub_pipeline::DocumentStore;
use clap::Args;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The file in a backup that says what it holds.
pub const MANIFEST: &str = "carrierhub-backup.json";

#[derive(Args)]
pub struct BackupArgs {
    /// The directory to write the backup into: created, or empty.
    pub dir: PathBuf,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// A directory `carrierhub backup` wrote.
    pub dir: PathBuf,
    /// Replace the store of a data directory that has one. Stop every process using it
    /// first; the replaced database is moved aside, not deleted.
    #[arg(long)]
    pub force: bool,
}

/// What a backup holds.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    created_at: chrono::DateTime<chrono::Utc>,
    carrierhub_version: String,
    /// The latest migration applied to the copied database.
    schema_version: i64,
    submissions: u64,
    documents: u64,
    document_bytes: u64,
}

const POSTGRES_BACKUP: &str = "the store is in PostgreSQL: back it up with PostgreSQL's own \
    tools, e.g. `pg_dump --format=custom --file=carrierhub.dump DATABASE_URL` (or continuous \
    archiving for point-in-time recovery), and restore with `pg_restore`. The database holds \
    everything, the documents' bytes included: the data directory's `documents/` is a cache, \
    and the warehouse is rebuilt with `carrierhub warehouse sync`. With NATS, its stream needs \
    no backup: unpublished events stay in the database's outbox. See docs/operations.md";

pub async fn backup(location: &Location, args: BackupArgs) -> anyhow::Result<ExitCode> {
    if location.database_url.is_some() {
        bail!("carrierhub backup copies the embedded store; {POSTGRES_BACKUP}");
    }
    let database = location.data_dir.join(DATABASE_FILE);
    if !database.exists() {
        bail!(
            "no store to back up: {} does not exist (is --data-dir right?)",
            database.display()
        );
    }
    prepare_empty_dir(&args.dir)?;
    let started = std::time::Instant::now();

    // One snapshot of the database, while writers go on.
    let copy = args.dir.join(DATABASE_FILE);
    let mut source = connect(&database, true).await?;
    sqlx::query("VACUUM INTO ?")
        .bind(copy.display().to_string())
        .execute(&mut source)
        .await
        .with_context(|| format!("cannot copy {} to {}", database.display(), copy.display()))?;
    source.close().await?;

    // The documents that snapshot lists.
    let mut copied = connect(&copy, false).await?;
    let documents: Vec<(String, i64)> = sqlx::query_as("SELECT sha256, size_bytes FROM documents")
        .fetch_all(&mut copied)
        .await?;
    let submissions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM submissions")
        .fetch_one(&mut copied)
        .await?;
    let schema_version = verify_database(&mut copied, &copy).await?;
    copied.close().await?;

    let from = DocumentStore::new(location.data_dir.join("documents"));
    let to = DocumentStore::new(args.dir.join("documents"));
    let mut bytes = 0;
    for (sha256, size) in &documents {
        bytes += copy_document(&from.path_of(sha256), &to.path_of(sha256), sha256, *size)
            .with_context(|| format!("backing up document {sha256}"))?;
    }
    let manifest = Manifest {
        format: 1,
        created_at: chrono::Utc::now(),
        carrierhub_version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_version,
        submissions: submissions as u64,
        documents: documents.len() as u64,
        document_bytes: bytes,
    };
    write_manifest(&args.dir, &manifest)?;
    println!(
        "backed up {} to {}: {} submissions, {} documents ({} bytes), schema {:04}, in {:.1} s",
        location.data_dir.display(),
        args.dir.display(),
        manifest.submissions,
        manifest.documents,
        manifest.document_bytes,
        manifest.schema_version,
        started.elapsed().as_secs_f64()
    );
    println!("not copied: the warehouse's files (rebuild them with `carrierhub warehouse sync`)");
    Ok(ExitCode::SUCCESS)
}

pub async fn restore(location: &Location, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    if location.database_url.is_some() {
        bail!("carrierhub restore restores the embedded store; {POSTGRES_BACKUP}");
    }
    let manifest_path = args.dir.join(MANIFEST);
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(&manifest_path).with_context(|| {
            format!(
                "{} is not a backup of carrierhub backup: cannot read {}",
                args.dir.display(),
                manifest_path.display()
            )
        })?)
        .with_context(|| format!("{}: not a backup manifest", manifest_path.display()))?;
    let backup_db = args.dir.join(DATABASE_FILE);

    // Check the backup before touching anything.
    let mut conn = connect(&backup_db, false).await?;
    let schema_version = verify_database(&mut conn, &backup_db).await?;
    if schema_version != manifest.schema_version {
        bail!(
            "{}: its schema is at migration {schema_version}, the manifest says {}",
            backup_db.display(),
            manifest.schema_version
        );
    }
    let documents: Vec<(String, i64)> = sqlx::query_as("SELECT sha256, size_bytes FROM documents")
        .fetch_all(&mut conn)
        .await?;
    conn.close().await?;

    let data_dir = &location.data_dir;
    let target = data_dir.join(DATABASE_FILE);
    if target.exists() && !args.force {
        bail!(
            "{} already has a store ({}); restoring would replace it. Stop every process using \
             it and pass --force (the replaced database is moved aside, not deleted)",
            data_dir.display(),
            target.display()
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;

    // The database: copied beside the target and checked there (this build must know its
    // migrations), renamed into place once the documents are in.
    let staging = data_dir.join(format!("{DATABASE_FILE}.restoring"));
    let staged = async {
        std::fs::copy(&backup_db, &staging).with_context(|| {
            format!(
                "cannot copy {} to {}",
                backup_db.display(),
                staging.display()
            )
        })?;
        // Checked, and the claims of the processes that worked on the original let go: none
        // works on this copy, and the first server started on it resumes their work at once.
        // In rollback-journal mode, so that the change is in the one file moved into place.
        let mut staged = connect(&staging, true).await?;
        sqlx::query("PRAGMA journal_mode = DELETE")
            .execute(&mut staged)
            .await?;
        verify_database(&mut staged, &staging).await?;
        let released = carrierhub_store::release_claims(&mut staged)
            .await
            .with_context(|| format!("releasing the claims held in {}", staging.display()))?;
        staged.close().await?;
        let pending = carrierhub_store::pending_migrations(&staging.display().to_string())
            .await
            .context("the backup's schema")?;
        anyhow::Ok((pending, released))
    };
    let (pending, released) = match staged.await {
        Ok(staged) => staged,
        Err(e) => {
            remove_staging(&staging);
            return Err(e);
        }
    };

    // The documents (content-addressed: one already there is the same bytes), each
    // verified against its hash.
    let from = DocumentStore::new(args.dir.join("documents"));
    let to = DocumentStore::new(data_dir.join("documents"));
    for (sha256, size) in &documents {
        if let Err(e) = copy_document(&from.path_of(sha256), &to.path_of(sha256), sha256, *size) {
            remove_staging(&staging);
            return Err(e.context(format!("restoring document {sha256}")));
        }
    }
    let mut moved_aside = None;
    if target.exists() {
        let aside = data_dir.join(format!(
            "replaced-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ));
        std::fs::create_dir_all(&aside)?;
        for suffix in ["", "-wal", "-shm"] {
            let file = data_dir.join(format!("{DATABASE_FILE}{suffix}"));
            if file.exists() {
                std::fs::rename(&file, aside.join(format!("{DATABASE_FILE}{suffix}")))
                    .with_context(|| format!("cannot move {} aside", file.display()))?;
            }
        }
        moved_aside = Some(aside);
    }
    std::fs::rename(&staging, &target)
        .with_context(|| format!("cannot move {} into place", staging.display()))?;

    // The warehouse's files describe the replaced store; they are rebuilt from this one.
    let warehouse = data_dir.join("warehouse");
    let stale_warehouse = location.warehouse_url.is_none() && warehouse.exists();
    if stale_warehouse {
        let aside = moved_aside
            .get_or_insert_with(|| {
                data_dir.join(format!(
                    "replaced-{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
                ))
            })
            .clone();
        std::fs::create_dir_all(&aside)?;
        std::fs::rename(&warehouse, aside.join("warehouse"))
            .with_context(|| format!("cannot move {} aside", warehouse.display()))?;
    }

    println!(
        "restored {} (taken {}) into {}: {} submissions, {} documents, schema {:04}",
        args.dir.display(),
        manifest
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        data_dir.display(),
        manifest.submissions,
        documents.len(),
        schema_version
    );
    if released.submissions > 0 {
        println!(
            "{} submissions were being processed when the backup was taken: the next `carrierhub \
             serve` resumes each after its last committed batch",
            released.submissions
        );
    }
    if released.messages + released.other > 0 {
        println!(
            "released as well: {} broker messages awaiting acknowledgement (delivered again), {} \
             other leases and locks (webhook deliveries, idempotency keys, the relay's and the \
             warehouse's leases)",
            released.messages, released.other
        );
    }
    if !pending.is_empty() {
        let list: Vec<String> = pending.iter().map(ToString::to_string).collect();
        println!(
            "the backup's schema is older than this build; `carrierhub serve` (or `carrierhub \
             migrate`) applies: {}",
            list.join(", ")
        );
    }
    if let Some(aside) = moved_aside {
        println!("the replaced files are in {}", aside.display());
    }
    if location.warehouse_url.is_some() || stale_warehouse {
        println!("rebuild the warehouse from the restored store: `carrierhub warehouse sync`");
    }
    Ok(ExitCode::SUCCESS)
}

fn remove_staging(staging: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", staging.display()));
    }
}

/// Creates `dir`, or accepts it empty.
fn prepare_empty_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty: back up into a new or empty directory",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

async fn connect(path: &Path, writable: bool) -> anyhow::Result<SqliteConnection> {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(!writable)
        .busy_timeout(Duration::from_secs(30))
        .disable_statement_logging()
        .connect()
        .await
        .with_context(|| format!("cannot open the SQLite database {}", path.display()))
}

/// `PRAGMA integrity_check` and the foreign keys pass, and the schema is one this build
/// knows; returns its latest migration.
async fn verify_database(conn: &mut SqliteConnection, path: &Path) -> anyhow::Result<i64> {
    let problems: Vec<String> = sqlx::query("PRAGMA integrity_check")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    if problems != ["ok"] {
        bail!(
            "{} fails its integrity check: {}",
            path.display(),
            problems.join("; ")
        );
    }
    let dangling = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut *conn)
        .await?;
    if let Some(row) = dangling.first() {
        bail!(
            "{}: {} rows refer to missing rows (the first in table {})",
            path.display(),
            dangling.len(),
            row.get::<String, _>(0)
        );
    }
    let version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut *conn)
            .await
            .with_context(|| format!("{}: not a CarrierHub store", path.display()))?;
    version.with_context(|| format!("{}: no migration was ever applied", path.display()))
}

/// Copies a document, checking its size and SHA-256 on the way; returns its size.
fn copy_document(from: &Path, to: &Path, sha256: &str, size: i64) -> anyhow::Result<u64> {
    let mut source =
        std::fs::File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    let dir = to.parent().expect("document paths have a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut copied = 0u64;
    loop {
        let n = source.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        temp.write_all(&buffer[..n])?;
        copied += n as u64;
    }
    let actual = format!("{:x}", hasher.finalize());
    if actual != sha256 || copied != size as u64 {
        bail!(
            "{} is damaged: {copied} bytes with SHA-256 {actual}, expected {size} bytes with \
             the hash in its name",
            from.display()
        );
    }
    temp.as_file().sync_all()?;
    temp.persist(to)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", to.display()))?;
    Ok(copied)
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let path = dir.join(MANIFEST);
    std::fs::write(&path, serde_json::to_vec_pretty(manifest)?)
        .with_context(|| format!("cannot write {}", path.display()))
}
