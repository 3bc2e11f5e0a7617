//! Test support: a fresh PostgreSQL database per test, for the store's conformance suite and
//! the binary's tests.
//!
//! The server is reached through `postgres://postgres@127.0.0.1:5432/postgres`, or the URL in
//! `CARRIERHUB_TEST_POSTGRES_URL` (a database of a role that may `CREATE DATABASE`). Each
//! [`TestDatabase`] is a new database `carrierhub_test_<unique>` on that server, dropped when
//! the value is dropped, also when the test panics.
//!
//! When the server cannot be reached, [`TestDatabase::create_or_skip`] fails the test if the
//! environment says `CI=true`, and otherwise prints a notice and lets the test skip.

use sqlx::postgres::PgConnection;
use sqlx::Connection;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The environment variable naming the server to create test databases on.
pub const ADMIN_URL_VAR: &str = "CARRIERHUB_TEST_POSTGRES_URL";
/// The server used when [`ADMIN_URL_VAR`] is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A database created for one test; dropped (with its connections) when this is dropped.
pub struct TestDatabase {
    url: String,
    admin_url: String,
    name: String,
}

/// Whether the environment is CI's, where a missing server is a failure, not a skip.
pub fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn admin_url() -> String {
    std::env::var(ADMIN_URL_VAR)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database (the path) replaced by `database`; the query string is kept.
fn with_database(url: &str, database: &str) -> String {
    let authority_start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let rest = &url[authority_start..];
    let path_start = rest.find(['/', '?']).map(|i| authority_start + i);
    let (base, tail) = match path_start {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    format!("{base}/{database}{query}")
}

fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "carrierhub_test_{:x}_{:x}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

async fn admin_connection(admin_url: &str) -> Result<PgConnection, String> {
    let shown = crate::redact_url(admin_url);
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(admin_url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!("cannot connect to PostgreSQL at {shown}: {e}")),
        Err(_) => Err(format!(
            "cannot connect to PostgreSQL at {shown}: no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
    let mut conn = admin_connection(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .map_err(|e| format!("cannot drop test database {name}: {e}"))?;
    let _ = conn.close().await;
    Ok(())
}

impl TestDatabase {
    /// Creates a fresh, empty database. `Err` names the server and why it cannot be used.
    pub async fn create() -> Result<Self, String> {
        let admin_url = admin_url();
        let name = unique_name();
        let mut conn = admin_connection(&admin_url).await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .map_err(|e| {
                format!(
                    "cannot create a test database on {}: {e}",
                    crate::redact_url(&admin_url)
                )
            })?;
        let _ = conn.close().await;
        Ok(Self {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
        })
    }

    /// Creates a fresh database, or, when the server cannot be reached: panics under CI
    /// (`CI=true`), and otherwise prints a notice naming `test` and returns `None`.
    pub async fn create_or_skip(test: &str) -> Option<Self> {
        match Self::create().await {
            Ok(db) => Some(db),
            Err(e) if running_in_ci() => panic!(
                "{test}: PostgreSQL is required when CI=true, and {e}. Start the server or set \
                 {ADMIN_URL_VAR}"
            ),
            Err(e) => {
                // Straight to stderr: the test harness captures `eprintln!` of passing tests,
                // and a skip should be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "note: skipping {test} on PostgreSQL: {e}. Start a server or set \
                     {ADMIN_URL_VAR} to run it (with CI=true this is a failure)"
                );
                None
            }
        }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    /// Drops the database, closing whatever connections still use it. Runs on its own thread
    /// and runtime, so that it works inside or outside an async test, panicking or not.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime to drop {name}: {e}"))?;
            runtime.block_on(drop_database(&admin_url, &name))
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: {e}"),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_in_the_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t1"),
            "postgres://u:p@h/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t1"), "postgres://h/t1");
        assert_eq!(
            with_database("postgres://h?application_name=x", "t1"),
            "postgres://h/t1?application_name=x"
        );
    }
}
