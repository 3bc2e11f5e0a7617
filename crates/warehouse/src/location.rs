//! Where the warehouse's files live: a local directory, or a bucket (`s3://bucket/prefix`,
//! `gs://bucket/prefix`) through `object_store`.

use crate::{Result, WarehouseError};
use object_store::path::Path;
use object_store::ObjectStore;
use std::sync::Arc;
use url::Url;

/// An object store, the prefix of the warehouse inside it, and the URL DataFusion reads it by.
#[derive(Clone)]
pub struct Location {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The warehouse's root inside `store` (no leading or trailing slash).
    pub(crate) prefix: Path,
    /// `s3://bucket`, `gs://bucket` or `file:///`: what `store` is registered under.
    pub(crate) base: Url,
    description: String,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl Location {
    /// `s3://bucket/prefix` (endpoint, region and credentials from the `AWS_*` environment:
    /// `AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint), `gs://bucket/prefix` (`GOOGLE_*`:
    /// `GOOGLE_SERVICE_ACCOUNT` or `GOOGLE_APPLICATION_CREDENTIALS`), `file:///dir`, or a
    /// directory path (created when missing).
    pub fn parse(url_or_path: &str) -> Result<Self> {
        let invalid = |e: &dyn std::fmt::Display| {
            WarehouseError::Config(format!("warehouse location '{url_or_path}': {e}"))
        };
        if let Some(rest) = url_or_path
            .strip_prefix("s3://")
            .or_else(|| url_or_path.strip_prefix("gs://"))
        {
            let scheme = &url_or_path[..2];
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid(&"no bucket"));
            }
            let store: Arc<dyn ObjectStore> = if scheme == "s3" {
                Arc::new(
                    object_store::aws::AmazonS3Builder::from_env()
                        .with_bucket_name(bucket)
                        .build()
                        .map_err(|e| invalid(&e))?,
                )
            } else {
                Arc::new(
                    object_store::gcp::GoogleCloudStorageBuilder::from_env()
                        .with_bucket_name(bucket)
                        .build()
                        .map_err(|e| invalid(&e))?,
                )
            };
            let base = Url::parse(&format!("{scheme}://{bucket}")).map_err(|e| invalid(&e))?;
            return Ok(Self {
                store,
                prefix: Path::from(prefix.trim_matches('/')),
                base,
                description: url_or_path.to_owned(),
            });
        }
        let dir = match url_or_path.strip_prefix("file://") {
            Some(p) => std::path::PathBuf::from(p),
            None => std::path::PathBuf::from(url_or_path),
        };
        std::fs::create_dir_all(&dir).map_err(|e| invalid(&e))?;
        let dir = dir.canonicalize().map_err(|e| invalid(&e))?;
        let prefix = Path::from_absolute_path(&dir).map_err(|e| invalid(&e))?;
        Ok(Self {
            store: Arc::new(object_store::local::LocalFileSystem::new()),
            prefix,
            base: Url::parse("file:///").expect("a valid URL"),
            description: dir.display().to_string(),
        })
    }

    /// The location for messages.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// `prefix/part/part…`
    pub(crate) fn path(&self, parts: &[&str]) -> Path {
        let mut p = self.prefix.clone();
        for part in parts {
            p = p.join(*part);
        }
        p
    }

    /// The URL of a directory under the root, ending in `/`, as DataFusion lists it.
    pub(crate) fn url_of(&self, dir: &str) -> String {
        let mut s = self.base.as_str().trim_end_matches('/').to_owned();
        s.push('/');
        s.push_str(self.prefix.as_ref());
        if !self.prefix.as_ref().is_empty() {
            s.push('/');
        }
        s.push_str(dir);
        s.push('/');
        s
    }
}
