//! The brokers the conformance suite runs against, each fresh and isolated per test:
//! the embedded broker on SQLite and on PostgreSQL, and NATS JetStream.
//!
//! NATS is reached at `nats://127.0.0.1:4222` unless `CARRIERHUB_TEST_NATS_URL` says
//! otherwise; each test uses a namespace of its own (its own streams), deleted at the end.
//! Without a server the NATS and PostgreSQL halves skip with a notice, except under
//! `CI=true`, where they fail.

use carrierhub_broker::{Broker, EmbeddedBroker, NatsBroker};
use carrierhub_store::testing::{running_in_ci, TestDatabase};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const NATS_URL_VAR: &str = "CARRIERHUB_TEST_NATS_URL";

pub enum Target {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
    Nats { url: String, namespace: String },
}

impl Target {
    pub async fn sqlite() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        // The broker's tables are the store's: migrate as the store does.
        carrierhub_store::migrate(dir.path().join("hub.db").to_str().unwrap())
            .await
            .unwrap();
        Some(Self::Sqlite(dir))
    }

    pub async fn postgres() -> Option<Self> {
        let db = TestDatabase::create_or_skip("broker conformance").await?;
        carrierhub_store::migrate(db.url()).await.unwrap();
        Some(Self::Postgres(db))
    }

    pub async fn nats() -> Option<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let url = std::env::var(NATS_URL_VAR).unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let namespace = format!(
            "test{}x{}x{}",
            std::process::id(),
            chrono::Utc::now().timestamp_micros(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        match NatsBroker::connect_namespaced(&url, &namespace).await {
            Ok(_) => Some(Self::Nats { url, namespace }),
            Err(e) if running_in_ci() => panic!("NATS at {url} is required under CI=true: {e}"),
            Err(e) => {
                eprintln!("skipping: NATS at {url} is not reachable: {e}");
                None
            }
        }
    }

    /// A connection to this test's broker; calling it again is a new connection to the same
    /// durable state (a restart, as far as the broker is concerned).
    pub async fn broker(&self) -> Arc<dyn Broker> {
        match self {
            Self::Sqlite(dir) => Arc::new(
                EmbeddedBroker::open(dir.path().join("hub.db").to_str().unwrap())
                    .await
                    .unwrap(),
            ),
            Self::Postgres(db) => Arc::new(EmbeddedBroker::open(db.url()).await.unwrap()),
            Self::Nats { url, namespace } => Arc::new(
                NatsBroker::connect_namespaced(url, namespace)
                    .await
                    .unwrap(),
            ),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Self::Nats { url, namespace } = self {
            let (url, namespace) = (url.clone(), namespace.clone());
            // Drop runs inside the test's runtime: delete the streams from a thread of its own.
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        if let Ok(b) = NatsBroker::connect_namespaced(&url, &namespace).await {
                            let _ = b.delete_namespace().await;
                        }
                    })
            })
            .join();
        }
    }
}

/// Runs each named test against every broker.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(t) = $crate::common::Target::sqlite().await { super::$name(t).await }
                }
            )*
        }
        mod embedded_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(t) = $crate::common::Target::postgres().await { super::$name(t).await }
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(t) = $crate::common::Target::nats().await { super::$name(t).await }
                }
            )*
        }
    };
}
