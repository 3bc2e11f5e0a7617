//! The HTTP API: one axum router over the store and the pipeline.
//!
//! Architecture invariant: handlers translate HTTP to store and pipeline calls and back;
//! they hold no business rules. Every error leaves as RFC 9457 problem+json.

mod auth;
mod cache;
mod caller;
pub mod diff;
mod etag;
mod events;
pub mod gateway;
pub mod health;
mod idempotency;
mod insights;
pub mod live;
pub mod oidc;
pub mod openapi;
mod params;
mod problem;
mod query;
pub mod ratelimit;
mod routes;
mod uploads;
mod webhooks;

pub use auth::{role_allows, Auth};
pub use cache::ReadCache;
pub use caller::{AuthMethod, Caller};
pub use gateway::{CorsConfig, GatewayConfig, RequestId};
pub use health::Readiness;
pub use idempotency::DEFAULT_TTL as DEFAULT_IDEMPOTENCY_TTL;
pub use problem::Problem;
pub use ratelimit::{
    rate_limit, Decision, OnBackendError, RateLimitConfig, RateLimitError, RateLimiter, RateLimits,
    RouteClass,
};

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, MethodRouter};
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
    /// Accept webhooks whose URL resolves to a private, loopback or link-local address.
    pub webhooks_allow_private: bool,
    /// SQL over the warehouse (`POST /v1/query`, `GET /v1/insights/...`); `None` answers 503.
    pub query: Option<carrierhub_warehouse::QueryEngine>,
    /// Today's premium and claims, kept current from the change events
    /// (`GET /v1/insights/live`); started with the server, or on first use.
    pub live: live::LiveView,
    /// What `/readyz` checks, and the shutdown signal long responses end on; `None`: the
    /// store alone, never draining.
    pub readiness: Option<Readiness>,
}

impl AppState {
    /// The readiness checks of this process.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone().unwrap_or_else(|| {
            Readiness::new(
                self.store.clone(),
                None,
                tokio_util::sync::CancellationToken::new(),
            )
        })
    }
}

/// The handler of one route of [`openapi::ROUTES`]. Every entry of the table has one here;
/// a route without an entry is not served.
fn endpoint(route: &openapi::Route, max_upload_bytes: usize) -> MethodRouter<AppState> {
    let upload_limit = DefaultBodyLimit::max(max_upload_bytes);
    match (route.method, route.path) {
        ("GET", "/healthz") => get(routes::healthz),
        ("GET", "/readyz") => get(health::readyz),
        ("GET", "/openapi.json") => get(openapi::openapi_json),
        ("GET", "/docs") => get(openapi::docs),
        ("GET", "/metrics") => get(routes::metrics),
        ("GET", "/v1/carriers") => get(routes::list_carriers),
        ("GET", "/v1/carriers/{carrier}/submissions") => get(routes::list_carrier_submissions),
        ("POST", "/v1/carriers/{carrier}/submissions") => {
            post(uploads::create_submission).layer(upload_limit)
        }
        ("GET", "/v1/policies") => get(routes::list_policies),
        ("GET", "/v1/policies/{id}") => get(routes::get_policy),
        ("GET", "/v1/policies/{id}/versions") => get(routes::list_policy_versions),
        ("GET", "/v1/policies/{id}/diff") => get(routes::diff_policy_versions),
        ("GET", "/v1/claims") => get(routes::list_claims),
        ("GET", "/v1/submissions") => get(routes::list_submissions),
        ("GET", "/v1/submissions/{id}") => get(routes::get_submission),
        ("GET", "/v1/submissions/{id}/errors") => get(routes::list_submission_errors),
        ("POST", "/v1/submissions/{id}/replay") => post(uploads::replay_submission),
        ("POST", "/v1/mappings/check") => post(uploads::check_mapping).layer(upload_limit),
        ("GET", "/v1/portfolio") => get(routes::portfolio),
        ("GET", "/v1/audit") => get(routes::list_audit),
        ("GET", "/v1/events") => get(events::stream),
        ("GET", "/v1/webhooks") => get(webhooks::list),
        ("POST", "/v1/webhooks") => post(webhooks::create),
        ("GET", "/v1/webhooks/{id}") => get(webhooks::get),
        ("DELETE", "/v1/webhooks/{id}") => delete(webhooks::delete),
        ("POST", "/v1/webhooks/{id}/enable") => post(webhooks::enable),
        ("GET", "/v1/webhooks/{id}/deliveries") => get(webhooks::deliveries),
        ("POST", "/v1/webhooks/{id}/deliveries/{delivery}/redeliver") => post(webhooks::redeliver),
        ("POST", "/v1/query") => post(query::run_query),
        ("GET", "/v1/insights/premium") => get(insights::premium),
        ("GET", "/v1/insights/in-force") => get(insights::in_force),
        ("GET", "/v1/insights/earned") => get(insights::earned),
        ("GET", "/v1/insights/incurred") => get(insights::incurred),
        ("GET", "/v1/insights/loss-ratio") => get(insights::loss_ratio),
        ("GET", "/v1/insights/frequency-severity") => get(insights::frequency_severity),
        ("GET", "/v1/insights/triangles") => get(insights::triangles),
        ("GET", "/v1/insights/live") => get(live::live),
        (method, path) => unreachable!("openapi::ROUTES has {method} {path}, which has no handler"),
    }
}

pub fn router(state: AppState) -> Router {
    let (gateway, max_upload_bytes) = (state.gateway.clone(), state.max_upload_bytes);
    // The routes are the table's, and nothing else: the OpenAPI document describes exactly
    // these (tests/http/openapi.rs).
    let api = openapi::ROUTES
        .iter()
        .fold(Router::new(), |router, route| {
            router.route(route.path, endpoint(route, max_upload_bytes))
        })
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

/// Serves `/metrics`, `/healthz` and `/readyz` alone, for processes without the API role.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    metrics: Option<MetricsRender>,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(health::admin_readyz).with_state(readiness))
        .route(
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
    state.live.start(&state);
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    sweeper.abort();
    served
}
