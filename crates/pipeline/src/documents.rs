//! Raw payloads, stored before anything else happens, content-addressed by SHA-256 so the
//! same bytes are kept once however often they are sent.
//!
//! The data directory holds every document this machine received or read. When the store
//! shares documents (PostgreSQL), it is only a cache: the store holds every document's bytes,
//! and a process that needs one it lacks (a worker on another machine than the API that
//! received the file) fetches it from the store first ([`DocumentStore::local_path`]).
//! Readers then open the local file as always: they need a file they can seek in (an XLSX
//! is a zip), and a fetched document serves every later read of it on this machine.

use crate::PipelineError;
use carrierhub_store::{Store, StoreError};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::AsyncWrite;

/// A stored payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDocument {
    pub sha256: String,
    pub size_bytes: u64,
    pub path: PathBuf,
    /// False when identical bytes were already stored.
    pub newly_stored: bool,
}

/// The document directory (`<data dir>/documents`).
#[derive(Debug, Clone)]
pub struct DocumentStore {
    root: PathBuf,
}

impl DocumentStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where payloads are spooled before they are hashed; same filesystem as the store.
    pub fn incoming_dir(&self) -> PathBuf {
        self.root.join("incoming")
    }

    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(&sha256[..2]).join(sha256)
    }

    /// Copies `source` into the store while hashing it, in constant memory.
    pub fn put(&self, mut source: impl Read) -> io::Result<StoredDocument> {
        let incoming = self.incoming_dir();
        std::fs::create_dir_all(&incoming)?;
        let mut temp = tempfile::NamedTempFile::new_in(&incoming)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = source.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            temp.write_all(&buffer[..n])?;
            size += n as u64;
        }
        temp.as_file().sync_all()?;
        let sha256 = hex::encode(hasher.finalize());
        self.settle(sha256, size, |path| {
            temp.persist(path).map(drop).map_err(|e| e.error)
        })
    }

    /// Takes over a file already spooled into [`Self::incoming_dir`]: hashes it and moves it
    /// into place, so an upload is written to disk once.
    pub fn adopt(&self, spool: &Path) -> io::Result<StoredDocument> {
        let mut file = File::open(spool)?;
        file.sync_all()?;
        let mut hasher = Sha256::new();
        let size = io::copy(&mut file, &mut hasher)?;
        let sha256 = hex::encode(hasher.finalize());
        let stored = self.settle(sha256, size, |path| std::fs::rename(spool, path))?;
        if !stored.newly_stored {
            std::fs::remove_file(spool)?;
        }
        Ok(stored)
    }

    /// Puts content with this hash in place, unless identical bytes are already stored.
    fn settle(
        &self,
        sha256: String,
        size_bytes: u64,
        move_into: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<StoredDocument> {
        let path = self.path_of(&sha256);
        let newly_stored = !path.exists();
        if newly_stored {
            std::fs::create_dir_all(path.parent().expect("document paths have a parent"))?;
            move_into(&path)?;
        }
        Ok(StoredDocument {
            sha256,
            size_bytes,
            path,
            newly_stored,
        })
    }

    /// The local file of a stored document, for reading. When the store shares documents
    /// and this data directory lacks it, it is fetched from the store first. Without
    /// sharing (SQLite), this is [`Self::path_of`]: the document is here or nowhere.
    pub async fn local_path(
        &self,
        store: &dyn Store,
        sha256: &str,
    ) -> Result<PathBuf, PipelineError> {
        let path = self.path_of(sha256);
        if store.shares_documents() && !tokio::fs::try_exists(&path).await? {
            self.fetch(store, sha256, &path).await?;
        }
        Ok(path)
    }

    /// Copies a document from the store to `path`, verifying its hash. It is written to a
    /// temporary file and renamed into place, so a reader never sees part of it and two
    /// processes fetching it at once both end with the whole file.
    async fn fetch(
        &self,
        store: &dyn Store,
        sha256: &str,
        path: &Path,
    ) -> Result<(), PipelineError> {
        let started = std::time::Instant::now();
        let incoming = self.incoming_dir();
        let dir = path
            .parent()
            .expect("document paths have a parent")
            .to_owned();
        let temp = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&incoming)?;
            std::fs::create_dir_all(&dir)?;
            tempfile::NamedTempFile::new_in(&incoming)
        })
        .await
        .expect("creating a temporary file panicked")?;
        let mut sink = HashingWriter {
            file: tokio::fs::File::from_std(temp.as_file().try_clone()?),
            hasher: Sha256::new(),
        };
        let size = store.read_document_content(sha256, &mut sink).await?;
        sink.file.sync_all().await?;
        let found = hex::encode(sink.hasher.finalize());
        if found != sha256 {
            // The temporary file is removed when `temp` is dropped.
            return Err(StoreError::Corrupt(format!(
                "document {sha256} read from the store has SHA-256 {found}"
            ))
            .into());
        }
        let target = path.to_owned();
        tokio::task::spawn_blocking(move || match temp.persist(&target) {
            Ok(_) => Ok(()),
            // Another process put it in place meanwhile: the same bytes.
            Err(_) if target.exists() => Ok(()),
            Err(e) => Err(e.error),
        })
        .await
        .expect("moving a document into place panicked")?;
        tracing::info!(
            sha256,
            bytes = size,
            ms = started.elapsed().as_millis() as u64,
            "document fetched from the store"
        );
        Ok(())
    }

    pub fn open(&self, sha256: &str) -> io::Result<File> {
        let path = self.path_of(sha256);
        File::open(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("document {sha256} ({}): {e}", path.display()),
            )
        })
    }

    /// Removes a document nothing refers to (a payload refused before it became a submission).
    pub fn discard(&self, doc: &StoredDocument) {
        if doc.newly_stored {
            let _ = std::fs::remove_file(&doc.path);
            // Fails, as it should, while other documents share the directory.
            if let Some(dir) = doc.path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

pub(crate) fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Writes to a file and hashes what it wrote, so a fetched document is verified without
/// being read again.
struct HashingWriter {
    file: tokio::fs::File,
    hasher: Sha256,
}

impl AsyncWrite for HashingWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = ready!(Pin::new(&mut this.file).poll_write(cx, buf))?;
        this.hasher.update(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}
