//! The HTTP API: one axum router over the store and the pipeline.
//!
//! Architecture invariant: handlers translate HTTP to store and pipeline calls and back;
//! they hold no business rules. Every error leaves as RFC 9457 problem+json.

mod auth;
mod cache;
mod caller;
mod diff;
mod etag;
pub mod gateway;
mod idempotency;
pub mod oidc;
mod params;
mod problem;
mod query;
pub mod ratelimit;
mod routes;
mod uploads;

pub use auth::{role_allows, Auth};
pub use cache::ReadCache;
pub use caller::{AuthMethod, Caller};
pub use gateway::{CorsConfig, GatewayConfig, RequestId};
pub use idempotency::DEFAULT_TTL as DEFAULT_IDEMPOTENCY_TTL;
pub use problem::Problem;
pub use ratelimit::{
    rate_limit, Decision, OnBackendError, RateLimitConfig, RateLimitError, RateLimiter, RateLimits,
    RouteClass,
};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use carrierhub_pipeline::{Pipeline, Relay};
use carrierhub_store::Store;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// Renders metrics for `/metrics`.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub pipeline: Pipeline,
    /// Told when a submission is received, so its event is published at once; `None` when
    /// no relay runs in this process (another one polls the outbox).
    pub relay: Option<Relay>,
    /// Renders the process's metrics in the Prometheus text format.
    pub metrics: Option<MetricsRender>,
    /// Largest upload accepted, in bytes.
    pub max_upload_bytes: usize,
    /// How long an `Idempotency-Key` and its response are kept.
    pub idempotency_ttl: std::time::Duration,
    /// How callers are authenticated.
    pub auth: Auth,
    /// Hot reads, checked against the store on every use.
    pub cache: ReadCache,
    /// Request budgets per caller and route class; `None` turns rate limiting off.
    pub rate_limits: Option<Arc<RateLimits>>,
    /// Request ids, tracing, time and body limits, compression, CORS (`gateway.rs`).
    pub gateway: GatewayConfig,
    /// SQL over the warehouse (`POST /v1/query`); `None` answers 503.
    pub query: Option<carrierhub_warehouse::QueryEngine>,
}

pub fn router(state: AppState) -> Router {
    let (gateway, max_upload_bytes) = (state.gateway.clone(), state.max_upload_bytes);
    let uploads = Router::new()
        .route(
            "/v1/carriers/{carrier}/submissions",
            post(uploads::create_submission).get(routes::list_carrier_submissions),
        )
        .route("/v1/mappings/check", post(uploads::check_mapping))
        .layer(DefaultBodyLimit::max(state.max_upload_bytes));
    let api = Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/v1/carriers", get(routes::list_carriers))
        .route("/v1/policies", get(routes::list_policies))
        .route("/v1/policies/{id}", get(routes::get_policy))
        .route(
            "/v1/policies/{id}/versions",
            get(routes::list_policy_versions),
        )
        .route("/v1/policies/{id}/diff", get(routes::diff_policy_versions))
        .route("/v1/claims", get(routes::list_claims))
        .route("/v1/submissions", get(routes::list_submissions))
        .route("/v1/submissions/{id}", get(routes::get_submission))
        .route(
            "/v1/submissions/{id}/replay",
            post(uploads::replay_submission),
        )
        .route(
            "/v1/submissions/{id}/errors",
            get(routes::list_submission_errors),
        )
        .route("/v1/portfolio", get(routes::portfolio))
        .route("/v1/audit", get(routes::list_audit))
        .route("/v1/query", post(query::run_query))
        .merge(uploads)
        // Route layers see the matched route, and unmatched paths skip them. The last one
        // added runs first: authentication, then the caller's rate limit, then conditional
        // GETs around the handler.
        .route_layer(axum::middleware::from_fn(etag::conditional_get));
    let api = match &state.rate_limits {
        Some(limits) => api.route_layer(axum::middleware::from_fn_with_state(
            limits.clone(),
            ratelimit::rate_limit,
        )),
        None => api,
    };
    let api = api
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state);
    gateway::apply(api, &gateway, max_upload_bytes)
}

/// Serves `/metrics` and `/healthz` alone, for processes without the API role.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    metrics: Option<MetricsRender>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().route("/healthz", get(routes::healthz)).route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move { routes::render_metrics(metrics.as_ref()) }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, "API listening");
    let sweeper = tokio::spawn(idempotency::sweep_expired_keys(state.store.clone()));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    sweeper.abort();
    served
}
