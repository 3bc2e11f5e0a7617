//! Raw payloads, stored before anything else happens, content-addressed by SHA-256 so the
//! same bytes are kept once however often they are sent.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

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
