//! Readiness (`GET /readyz`): whether this process should be sent work. Liveness
//! (`/healthz`) only says the process answers; readiness checks what serving needs:
//!
//! - `database`: the store answers a trivial query;
//! - `migrations`: the store's schema is exactly this build's latest (a database migrated by
//!   a newer release, or one behind, is not served);
//! - `broker`: the message broker answers (NATS, or the embedded one's tables);
//! - `shutdown`: the process is not draining. It turns `draining` the moment a shutdown
//!   signal arrives, before anything stops, so load balancers stop sending requests.
//!
//! Every check has a time limit, so a database that hangs makes the answer 503 rather than
//! the probe time out. The checks run on the API port and, for processes without the API
//! role, on the admin port.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use carrierhub_broker::Broker;
use carrierhub_store::Store;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long one check may take before it counts as failing.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What readiness looks at.
#[derive(Clone)]
pub struct Readiness {
    store: Arc<dyn Store>,
    broker: Option<Arc<dyn Broker>>,
    draining: CancellationToken,
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Check {
    /// `ok`, `failing` or (for `shutdown`) `draining`.
    #[schema(example = "ok")]
    pub status: String,
    /// Why it is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The answer of `/readyz`: 200 with `status: ready` when every check is `ok`, 503 with
/// `status: not_ready` otherwise.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReadyReport {
    #[schema(example = "ready")]
    pub status: String,
    /// Each check by name: `database`, `migrations`, `broker` (when this process uses one)
    /// and `shutdown`.
    pub checks: BTreeMap<String, Check>,
}

impl ReadyReport {
    pub fn ready(&self) -> bool {
        self.status == "ready"
    }
}

impl Readiness {
    /// Readiness over `store` and `broker`; `draining` is cancelled when the process begins
    /// to shut down.
    pub fn new(
        store: Arc<dyn Store>,
        broker: Option<Arc<dyn Broker>>,
        draining: CancellationToken,
    ) -> Self {
        Self {
            store,
            broker,
            draining,
        }
    }

    /// Whether the process has begun to shut down.
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Completes when the process begins to shut down (long-lived responses such as event
    /// streams end then, so the server can drain).
    pub async fn draining(&self) {
        self.draining.cancelled().await
    }

    /// Runs every check (at once, each with its time limit).
    pub async fn check(&self) -> ReadyReport {
        let database = timed(async { self.store.ping().await.map_err(|e| e.to_string()) });
        let migrations =
            timed(async { self.store.check_schema().await.map_err(|e| e.to_string()) });
        let broker = async {
            match &self.broker {
                Some(b) => Some(timed(async { b.ping().await.map_err(|e| e.to_string()) }).await),
                None => None,
            }
        };
        let (database, migrations, broker) = tokio::join!(database, migrations, broker);
        let mut checks = BTreeMap::new();
        checks.insert("database".to_owned(), database);
        checks.insert("migrations".to_owned(), migrations);
        if let Some(broker) = broker {
            checks.insert("broker".to_owned(), broker);
        }
        checks.insert(
            "shutdown".to_owned(),
            if self.is_draining() {
                Check {
                    status: "draining".to_owned(),
                    detail: Some(
                        "shutting down: finishing the requests and work in hand".to_owned(),
                    ),
                }
            } else {
                ok()
            },
        );
        let ready = checks.values().all(|c| c.status == "ok");
        ReadyReport {
            status: if ready { "ready" } else { "not_ready" }.to_owned(),
            checks,
        }
    }

    /// The HTTP answer: 200 when ready, 503 when not, with the report either way.
    pub async fn respond(&self) -> Response {
        let report = self.check().await;
        let status = if report.ready() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, Json(report)).into_response()
    }
}

fn ok() -> Check {
    Check {
        status: "ok".to_owned(),
        detail: None,
    }
}

async fn timed(check: impl std::future::Future<Output = Result<(), String>>) -> Check {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => ok(),
        Ok(Err(detail)) => Check {
            status: "failing".to_owned(),
            detail: Some(detail),
        },
        Err(_) => Check {
            status: "failing".to_owned(),
            detail: Some(format!(
                "no answer within {} s",
                CHECK_TIMEOUT.as_secs_f64()
            )),
        },
    }
}

/// Readiness: the database, the schema, the broker, and not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "health", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready: every check is ok", body = ReadyReport),
        (status = 503, description = "Not ready: a check is failing, or the process is shutting down", body = ReadyReport),
    ))]
pub async fn readyz(
    State(state): State<crate::AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, crate::Problem> {
    crate::params::Params::new(q, &[])?;
    Ok(state.readiness().respond().await)
}

/// `/readyz` of the admin port (processes without the API role).
pub async fn admin_readyz(State(readiness): State<Readiness>) -> Response {
    readiness.respond().await
}
