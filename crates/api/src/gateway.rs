//! What every request goes through before and after its handler: a request id, the trace
//! span that carries it, CORS, compression, a time limit and a body limit. Each refusal is
//! problem+json, like every other error of the API.
//!
//! The layers, outermost first:
//!
//! 1. **Request id.** `X-Request-Id` is taken from the client when it is sane (1 to 128
//!    visible ASCII characters, one header), and otherwise a new one (a UUID v4) replaces it.
//!    It is put in the request's extensions as [`RequestId`] and in the header handlers see,
//!    and echoed on every response, 404, 405 and the refusals below included.
//! 2. **Trace.** One span per request, `request{method, path, request_id}`, at INFO, so every
//!    event logged while the request is handled carries the id; one line at its end with the
//!    status and latency. When traces are exported, the span continues the trace of a W3C
//!    `traceparent` header, and the events the request writes carry it on.
//! 3. **CORS**, when origins are configured: a preflight from an allowed origin is answered
//!    here (204), one from any other origin is refused (403) with no CORS header at all.
//! 4. **Compression** (gzip, zstd) of response bodies of at least
//!    [`COMPRESSION_MIN_BYTES`], as the client's `Accept-Encoding` allows.
//! 5. **Time limit**: a handler that has not answered in time is dropped, and the client
//!    gets a 503.
//! 6. **Body limit**: a body larger than the route's limit is a 413 that names the limit,
//!    whether its `Content-Length` says so up front or the body turns out larger as it is read.
//!
//! Upload routes (a carrier's payload, up to `max_upload_bytes`, which may take minutes to
//! send) and replays (which copy a stored document, as large as an upload) have a time limit
//! of their own; see [`RouteClass`].

use crate::problem::Problem;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;

/// The request and response header that identifies a request.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest `X-Request-Id` taken from a client; a longer one is replaced.
pub const MAX_REQUEST_ID_LENGTH: usize = 128;

/// Smallest response body compressed: below this, the encoding's own overhead and the CPU
/// cost outweigh the bytes saved.
pub const COMPRESSION_MIN_BYTES: u16 = 1024;

pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
/// A 1 GiB upload takes about 9 minutes at 2 MB/s.
pub const DEFAULT_UPLOAD_TIMEOUT_SECS: u64 = 600;
/// The API's own bodies (a replay's mapping, …) are small; uploads have their own limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_CORS_MAX_AGE_SECS: u64 = 3600;

/// Response headers a browser's script may read on a cross-origin response.
const EXPOSED_HEADERS: &str = "x-request-id, location, retry-after, idempotent-replayed";

/// How the API meets the network: time and size limits, compression and CORS.
///
/// Every field has a default (`GatewayConfig::default()`), so a configuration names only
/// what it changes; an unknown field is an error, so a misspelt one is not silently ignored.
/// [`GatewayConfig::validate`] checks the values before the server starts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Seconds a request may take before it is answered 503; uploads and replays have
    /// `upload_timeout_secs` instead. Default 30.
    pub request_timeout_secs: u64,
    /// Seconds an upload (its body included) or a replay may take. Default 600.
    pub upload_timeout_secs: u64,
    /// Largest request body of the routes that are not uploads, in bytes; uploads are limited
    /// by `max_upload_bytes` (`--max-upload-mib`). Default 1 MiB.
    pub max_body_bytes: usize,
    /// Compress response bodies (gzip or zstd, as the client's `Accept-Encoding` asks) of at
    /// least [`COMPRESSION_MIN_BYTES`]. Default on.
    pub compression: bool,
    /// Cross-origin requests from browsers. Off unless origins are listed.
    pub cors: CorsConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT_SECS,
            upload_timeout_secs: DEFAULT_UPLOAD_TIMEOUT_SECS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            compression: true,
            cors: CorsConfig::default(),
        }
    }
}

/// Which browser origins may call the API, and with what.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed, each `scheme://host[:port]` exactly as a browser sends it
    /// (`https://app.example.com`), or `*` alone for any origin. Empty (the default): CORS
    /// is off, and browsers refuse cross-origin calls.
    pub allowed_origins: Vec<String>,
    /// Methods a cross-origin request may use, or `*`. Default `GET`, `HEAD`, `POST`.
    pub allowed_methods: Vec<String>,
    /// Request headers a cross-origin request may send, or `*`. Default `authorization`,
    /// `content-type`, `idempotency-key`, `x-api-key`, `x-request-id`.
    pub allowed_headers: Vec<String>,
    /// Seconds a browser may keep a preflight's answer. Default 3600.
    pub max_age_secs: u64,
    /// Whether browsers send cookies and credentials. Never with a `*` anywhere: the Fetch
    /// standard forbids the combination, and it would hand every site the user's session.
    pub allow_credentials: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: ["GET", "HEAD", "POST"].map(String::from).to_vec(),
            allowed_headers: [
                "authorization",
                "content-type",
                "idempotency-key",
                "x-api-key",
                "x-request-id",
            ]
            .map(String::from)
            .to_vec(),
            max_age_secs: DEFAULT_CORS_MAX_AGE_SECS,
            allow_credentials: false,
        }
    }
}

/// A gateway setting that cannot be used, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gateway setting {field}: {reason}")]
pub struct GatewayConfigError {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> GatewayConfigError {
    GatewayConfigError {
        field,
        reason: reason.into(),
    }
}

impl GatewayConfig {
    /// Checks every value; the server refuses to start with an error naming the field.
    pub fn validate(&self) -> Result<(), GatewayConfigError> {
        if self.request_timeout_secs == 0 {
            return Err(invalid("request_timeout_secs", "must be at least 1"));
        }
        if self.upload_timeout_secs == 0 {
            return Err(invalid("upload_timeout_secs", "must be at least 1"));
        }
        if self.max_body_bytes == 0 {
            return Err(invalid("max_body_bytes", "must be at least 1"));
        }
        CorsPolicy::new(&self.cors).map(|_| ())
    }
}

/// What the request id of a request is: the client's `X-Request-Id` when sane, or one made
/// for it. In the request's extensions for handlers and the audit log; as an extractor, it
/// never fails (a router without the gateway gets a fresh id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(pub String);

impl RequestId {
    /// A new id: a random UUID (version 4).
    pub fn generate() -> Self {
        let bits = rand::random::<u128>();
        // Version 4 and the RFC 9562 variant: the bits a UUID v4 has fixed.
        let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
        let hex = format!("{bits:032x}");
        Self(format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        ))
    }

    /// The id a client sent, if it is one to keep: exactly one header, 1 to
    /// [`MAX_REQUEST_ID_LENGTH`] visible ASCII characters (no spaces or control characters,
    /// which could forge or split log lines).
    pub fn from_client(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(X_REQUEST_ID).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let bytes = value.as_bytes();
        let sane = !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID_LENGTH
            && bytes.iter().all(|b| b.is_ascii_graphic());
        sane.then(|| Self(String::from_utf8_lossy(bytes).into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::generate))
    }
}

/// The kinds of route whose limits differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// A carrier's payload: the body may be as large as `max_upload_bytes` and take
    /// `upload_timeout_secs` to send and store.
    Upload,
    /// A replay: a small body, but it copies a stored document, as large as an upload, so
    /// it has the upload's time limit.
    Replay,
    /// Everything else: `max_body_bytes` and `request_timeout_secs`.
    Default,
}

/// The routes (as `router` declares them) that receive a carrier's payload.
const UPLOAD_ROUTES: [&str; 2] = ["/v1/carriers/{carrier}/submissions", "/v1/mappings/check"];
const REPLAY_ROUTE: &str = "/v1/submissions/{id}/replay";

impl RouteClass {
    /// The class of a routed request (the gateway's layers run after routing, so the route
    /// it matched is known).
    pub fn of(request: &Request) -> Self {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        match (request.method(), route) {
            (&Method::POST, Some(route)) if UPLOAD_ROUTES.contains(&route) => Self::Upload,
            (&Method::POST, Some(REPLAY_ROUTE)) => Self::Replay,
            _ => Self::Default,
        }
    }
}

/// The limits of each route class.
#[derive(Debug, Clone, Copy)]
struct Limits {
    request_timeout: Duration,
    upload_timeout: Duration,
    max_body_bytes: usize,
    max_upload_bytes: usize,
}

impl Limits {
    fn timeout(&self, class: RouteClass) -> Duration {
        match class {
            RouteClass::Upload | RouteClass::Replay => self.upload_timeout,
            RouteClass::Default => self.request_timeout,
        }
    }

    fn body(&self, class: RouteClass) -> usize {
        match class {
            RouteClass::Upload => self.max_upload_bytes,
            RouteClass::Replay | RouteClass::Default => self.max_body_bytes,
        }
    }
}

/// Wraps `router` in the gateway's layers (see the module's documentation for what and in
/// which order). Call it on the finished router, after every route, fallback and layer of
/// its own: the layers apply to what the router holds at this point (its 404 and 405
/// fallbacks included), and their order puts the request id and the trace span outside
/// everything else.
///
/// `config` should have passed [`GatewayConfig::validate`]; a CORS section that has not is
/// left off (browsers are then refused) and the error logged, rather than failing here.
pub fn apply(router: Router, config: &GatewayConfig, max_upload_bytes: usize) -> Router {
    let limits = Limits {
        request_timeout: Duration::from_secs(config.request_timeout_secs.max(1)),
        upload_timeout: Duration::from_secs(config.upload_timeout_secs.max(1)),
        max_body_bytes: config.max_body_bytes,
        max_upload_bytes,
    };
    let cors = if config.cors.allowed_origins.is_empty() {
        None
    } else {
        match CorsPolicy::new(&config.cors) {
            Ok(policy) => Some(Arc::new(policy)),
            Err(error) => {
                tracing::error!(%error, "CORS is off: its configuration is invalid");
                None
            }
        }
    };
    let compress = config.compression;
    let compression = CompressionLayer::new()
        .gzip(compress)
        .zstd(compress)
        .compress_when(
            SizeAbove::new(COMPRESSION_MIN_BYTES)
                .and(NotForContentType::GRPC)
                .and(NotForContentType::IMAGES)
                .and(NotForContentType::SSE),
        );
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let id = request
                .extensions()
                .get::<RequestId>()
                .map(RequestId::as_str)
                .unwrap_or_default();
            // Named for traces by the declared route (`POST /v1/carriers/{carrier}/submissions`),
            // a child of the caller's span when the request carries a W3C `traceparent`.
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            let span = tracing::info_span!(
                "request",
                method = %request.method(),
                path = %request.uri().path(),
                request_id = %id,
                otel.name = %format_args!("{} {route}", request.method()),
                otel.kind = "server",
            );
            let traceparent = request
                .headers()
                .get(carrierhub_store::trace::TRACEPARENT)
                .and_then(|v| v.to_str().ok());
            carrierhub_store::trace::set_parent(&span, traceparent);
            span
        })
        .on_response(
            DefaultOnResponse::new()
                .level(tracing::Level::INFO)
                .latency_unit(LatencyUnit::Millis),
        );
    router.layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn(request_id))
            .layer(middleware::from_fn(red_metrics))
            .layer(trace)
            .layer(middleware::from_fn_with_state(cors, cors_middleware))
            .layer(compression)
            .layer(middleware::from_fn_with_state(limits, timeout))
            .layer(middleware::from_fn_with_state(limits, body_limit))
            // What axum's extractors (`String`, `Json`, forms) buffer at most, unless a route
            // sets its own (the upload routes do).
            .layer(DefaultBodyLimit::max(config.max_body_bytes)),
    )
}

/// Counts every request by method, route (as the router declares it: `/v1/policies/{id}`,
/// never the raw path, so the labels stay few) and status, and times it to the response's
/// head, in `carrierhub_http_requests_total` and `carrierhub_http_request_duration_seconds`.
/// Outside the time limits and authentication, so that their 503s, 401s and 429s count too.
async fn red_metrics(request: Request, next: Next) -> Response {
    let method: &'static str = match *request.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "carrierhub_http_requests_total",
        "method" => method,
        "route" => route.clone(),
        "status" => status
    )
    .increment(1);
    metrics::histogram!(
        "carrierhub_http_request_duration_seconds",
        "method" => method,
        "route" => route
    )
    .record(started.elapsed().as_secs_f64());
    response
}

async fn request_id(mut request: Request, next: Next) -> Response {
    let id = RequestId::from_client(request.headers()).unwrap_or_else(|| {
        if request.headers().contains_key(X_REQUEST_ID) {
            tracing::debug!(
                "X-Request-Id refused (not 1 to 128 visible ASCII characters): replaced"
            );
        }
        RequestId::generate()
    });
    // Visible ASCII only, by construction; the check costs nothing.
    let value = HeaderValue::from_str(id.as_str()).ok();
    if let Some(value) = &value {
        request.headers_mut().insert(X_REQUEST_ID, value.clone());
    }
    request.extensions_mut().insert(id);
    let mut response = next.run(request).await;
    if let Some(value) = value {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}

async fn timeout(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let limit = limits.timeout(RouteClass::of(&request));
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let secs = limit.as_secs();
            tracing::warn!(timeout_secs = secs, "request timed out");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Request timed out",
                format!("the server did not answer within {secs} s; try again later"),
            )
            .with("timeout_secs", secs)
            .into_response()
        }
    }
}

fn too_large(limit: usize) -> Response {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        "Payload too large",
        format!("the request body is larger than this route's limit of {limit} bytes"),
    )
    .with("limit_bytes", limit)
    .into_response()
}

async fn body_limit(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let limit = limits.body(RouteClass::of(&request));
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return too_large(limit);
    }
    // The body is cut at the limit as it is read; whatever the handler then answers (axum's
    // extractors say 413 in plain text, an upload's reader 400), the client is told why.
    let exceeded = Arc::new(AtomicBool::new(false));
    let flag = exceeded.clone();
    let request = request.map(|body| {
        Body::new(
            http_body_util::Limited::new(body, limit).map_err(move |error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    flag.store(true, Ordering::Relaxed);
                }
                error
            }),
        )
    });
    let response = next.run(request).await;
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    let cut = exceeded.load(Ordering::Relaxed) && !response.status().is_success();
    if cut || (response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_problem) {
        return too_large(limit);
    }
    response
}

/// The CORS configuration, checked and ready to answer with.
#[derive(Debug)]
struct CorsPolicy {
    /// `None`: any origin (`*`).
    origins: Option<Vec<HeaderValue>>,
    methods: HeaderValue,
    headers: Option<HeaderValue>,
    max_age: HeaderValue,
    credentials: bool,
}

/// Whether `origin` is what a browser sends as `Origin`: `scheme://host[:port]`, lowercase,
/// with no path, query, user or trailing slash.
fn check_origin(origin: &str) -> Result<HeaderValue, String> {
    let refuse = |why: &str| {
        Err(format!(
            "'{origin}' {why}; write an origin as the browser sends it, such as https://app.example.com"
        ))
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return refuse("has no scheme");
    };
    if scheme != "http" && scheme != "https" {
        return refuse("is neither http nor https");
    }
    if authority.is_empty() {
        return refuse("has no host");
    }
    if authority.contains(['/', '?', '#', '@']) {
        return refuse("has more than a scheme, host and port");
    }
    if origin.chars().any(|c| c.is_ascii_uppercase()) {
        return refuse("has capitals (browsers send origins in lowercase)");
    }
    if !origin.bytes().all(|b| b.is_ascii_graphic()) {
        return refuse("has characters an origin cannot have");
    }
    HeaderValue::from_str(origin).or_else(|_| refuse("is not a valid header value"))
}

/// A comma-separated header value from a list, or `*` (refused with credentials).
fn header_list(
    field: &'static str,
    items: &[String],
    credentials: bool,
    check: impl Fn(&str) -> bool,
) -> Result<Option<HeaderValue>, GatewayConfigError> {
    if items.iter().any(|i| i == "*") {
        if credentials {
            return Err(invalid(
                field,
                "'*' cannot be combined with allow_credentials",
            ));
        }
        if items.len() > 1 {
            return Err(invalid(
                field,
                "'*' stands alone: list names or '*', not both",
            ));
        }
        return Ok(Some(HeaderValue::from_static("*")));
    }
    if let Some(bad) = items.iter().find(|i| !check(i)) {
        return Err(invalid(field, format!("'{bad}' is not a valid name")));
    }
    if items.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_str(&items.join(", "))
        .map(Some)
        .map_err(|_| invalid(field, "is not a valid header value"))
}

impl CorsPolicy {
    fn new(config: &CorsConfig) -> Result<Self, GatewayConfigError> {
        let credentials = config.allow_credentials;
        let any_origin = config.allowed_origins.iter().any(|o| o == "*");
        let origins = if any_origin {
            if credentials {
                return Err(invalid(
                    "cors.allowed_origins",
                    "'*' cannot be combined with allow_credentials: list the origins",
                ));
            }
            if config.allowed_origins.len() > 1 {
                return Err(invalid(
                    "cors.allowed_origins",
                    "'*' stands alone: list origins or '*', not both",
                ));
            }
            None
        } else {
            Some(
                config
                    .allowed_origins
                    .iter()
                    .map(|o| check_origin(o).map_err(|e| invalid("cors.allowed_origins", e)))
                    .collect::<Result<Vec<_>, _>>()?,
            )
        };
        let methods = header_list(
            "cors.allowed_methods",
            &config.allowed_methods,
            credentials,
            |m| Method::from_bytes(m.as_bytes()).is_ok(),
        )?
        .ok_or_else(|| invalid("cors.allowed_methods", "list at least one method"))?;
        let headers = header_list(
            "cors.allowed_headers",
            &config.allowed_headers,
            credentials,
            |h| HeaderName::from_bytes(h.as_bytes()).is_ok(),
        )?;
        Ok(Self {
            origins,
            methods,
            headers,
            max_age: HeaderValue::from(config.max_age_secs),
            credentials,
        })
    }

    /// What `Access-Control-Allow-Origin` says to `origin`, if it is allowed.
    fn allow(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match &self.origins {
            // Never with credentials: `validate` refuses the combination.
            None => Some(HeaderValue::from_static("*")),
            Some(list) => list.contains(origin).then(|| origin.clone()),
        }
    }
}

async fn cors_middleware(
    State(policy): State<Option<Arc<CorsPolicy>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(policy) = policy else {
        return next.run(request).await;
    };
    let origin = request.headers().get(header::ORIGIN).cloned();
    let allowed = origin.as_ref().and_then(|o| policy.allow(o));
    let preflight = request.method() == Method::OPTIONS
        && origin.is_some()
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let Some(allowed) = allowed else {
            let origin = origin
                .as_ref()
                .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned())
                .unwrap_or_default();
            return Problem::new(
                StatusCode::FORBIDDEN,
                "cors-origin-refused",
                "Origin not allowed",
                format!("cross-origin requests from '{origin}' are not allowed"),
            )
            .into_response();
        };
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, policy.methods.clone());
        if let Some(allowed_headers) = &policy.headers {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                allowed_headers.clone(),
            );
        }
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, policy.max_age.clone());
        if policy.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        headers.append(
            header::VARY,
            HeaderValue::from_static(
                "origin, access-control-request-method, access-control-request-headers",
            ),
        );
        return response;
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if policy.origins.is_some() {
        // The answer depends on the origin: caches must not give one origin's to another.
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    if let Some(allowed) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
        if policy.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> GatewayConfig {
        GatewayConfig {
            cors: CorsConfig {
                allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
                allow_credentials: credentials,
                ..CorsConfig::default()
            },
            ..GatewayConfig::default()
        }
    }

    #[test]
    fn defaults_are_documented_values() {
        let c = GatewayConfig::default();
        assert_eq!(c.request_timeout_secs, 30);
        assert_eq!(c.upload_timeout_secs, 600);
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert!(c.compression);
        assert!(c.cors.allowed_origins.is_empty());
        assert!(!c.cors.allow_credentials);
        c.validate().expect("the defaults are valid");
    }

    #[test]
    fn a_partial_config_keeps_the_defaults_and_an_unknown_field_is_refused() {
        let c: GatewayConfig = serde_json::from_str(
            r#"{"request_timeout_secs": 5, "cors": {"allowed_origins": ["https://a.example"]}}"#,
        )
        .unwrap();
        assert_eq!(c.request_timeout_secs, 5);
        assert_eq!(c.upload_timeout_secs, 600);
        assert_eq!(c.cors.allowed_methods, ["GET", "HEAD", "POST"]);
        let e = serde_json::from_str::<GatewayConfig>(r#"{"request_timeout": 5}"#).unwrap_err();
        assert!(
            e.to_string().contains("unknown field `request_timeout`"),
            "{e}"
        );
        let e = serde_json::from_str::<GatewayConfig>(r#"{"cors": {"origins": []}}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `origins`"), "{e}");
    }

    #[test]
    fn a_wildcard_with_credentials_is_refused() {
        let e = cors(&["*"], true).validate().unwrap_err();
        assert_eq!(e.field, "cors.allowed_origins");
        assert!(e.reason.contains("allow_credentials"), "{e}");
        cors(&["*"], false)
            .validate()
            .expect("* without credentials");
        cors(&["https://a.example"], true)
            .validate()
            .expect("a listed origin with credentials");

        let mut c = cors(&["https://a.example"], true);
        c.cors.allowed_headers = vec!["*".into()];
        assert_eq!(c.validate().unwrap_err().field, "cors.allowed_headers");
        let mut c = cors(&["https://a.example"], true);
        c.cors.allowed_methods = vec!["*".into()];
        assert_eq!(c.validate().unwrap_err().field, "cors.allowed_methods");
    }

    #[test]
    fn origins_are_written_as_browsers_send_them() {
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://App.example.com",
            "ftp://app.example.com",
            "https://",
            "null",
            "https://user@app.example.com",
        ] {
            let e = cors(&[bad], false).validate().unwrap_err();
            assert_eq!(e.field, "cors.allowed_origins", "{bad}");
        }
        cors(&["http://localhost:5173", "https://app.example.com"], false)
            .validate()
            .expect("valid origins");
        assert!(cors(&["*", "https://a.example"], false).validate().is_err());
    }

    #[test]
    fn zero_limits_are_refused() {
        for (field, config) in [
            (
                "request_timeout_secs",
                GatewayConfig {
                    request_timeout_secs: 0,
                    ..Default::default()
                },
            ),
            (
                "upload_timeout_secs",
                GatewayConfig {
                    upload_timeout_secs: 0,
                    ..Default::default()
                },
            ),
            (
                "max_body_bytes",
                GatewayConfig {
                    max_body_bytes: 0,
                    ..Default::default()
                },
            ),
        ] {
            assert_eq!(config.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn generated_ids_are_uuid_v4_and_differ() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        let s = a.as_str();
        assert_eq!(s.len(), 36);
        let groups: Vec<&str> = s.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'), "version 4: {s}");
        assert!(
            matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "variant: {s}"
        );
        assert!(s
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn only_sane_client_ids_are_kept() {
        let with = |values: &[&[u8]]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(X_REQUEST_ID, HeaderValue::from_bytes(v).unwrap());
            }
            RequestId::from_client(&h)
        };
        assert_eq!(with(&[b"abc-123"]), Some(RequestId("abc-123".into())));
        assert_eq!(
            with(&[&[b'x'; 128]]).map(|r| r.0.len()),
            Some(MAX_REQUEST_ID_LENGTH)
        );
        assert_eq!(with(&[&[b'x'; 129]]), None);
        assert_eq!(with(&[b""]), None);
        assert_eq!(with(&[b"has space"]), None);
        assert_eq!(with(&[b"caf\xc3\xa9"]), None);
        assert_eq!(with(&[b"tab\there"]), None);
        assert_eq!(with(&[b"a", b"b"]), None);
        assert_eq!(with(&[]), None);
    }
}
