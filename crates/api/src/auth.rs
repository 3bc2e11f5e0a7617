//! Authentication and authorisation at the gateway: who the caller is (an API key, an OIDC
//! token, or nobody in development mode), whether its role may use the route, and the audit
//! log of every write and every denied request.
//!
//! What the caller may *see* is not decided here: the caller's scope goes to the store's
//! queries (see `carrierhub_store::Scope`).

use crate::oidc::{OidcVerifier, TokenError};
use crate::{AppState, AuthMethod, Caller, Problem};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use carrierhub_store::{ApiKey, NewAuditEntry, Role, Store};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How requests are authenticated.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

enum AuthInner {
    /// No authentication configured: every request is an unrestricted admin. Only on a
    /// loopback address (`serve` refuses anything else).
    Development,
    Enforced(Enforced),
}

struct Enforced {
    api_keys: bool,
    oidc: Option<OidcVerifier>,
    /// Keys read from the store, by id, for `key_cache_ttl`: a request does not cost a
    /// database round trip, and a revoked key stops working within that time.
    keys: Mutex<HashMap<String, (Instant, Option<ApiKey>)>>,
    key_cache_ttl: Duration,
}

/// Keys held in the cache at most (unknown ids included, so that guessing cannot grow it).
const KEY_CACHE_ENTRIES: usize = 10_000;

impl Auth {
    /// Development mode: no authentication.
    pub fn development() -> Self {
        Self {
            inner: Arc::new(AuthInner::Development),
        }
    }

    /// Authentication required: API keys (when `api_keys`) and OIDC tokens (when
    /// configured). A revoked or expired key stops working within `key_cache_ttl`.
    pub fn enforced(api_keys: bool, oidc: Option<OidcVerifier>, key_cache_ttl: Duration) -> Self {
        Self {
            inner: Arc::new(AuthInner::Enforced(Enforced {
                api_keys,
                oidc,
                keys: Mutex::new(HashMap::new()),
                key_cache_ttl,
            })),
        }
    }

    pub fn is_development(&self) -> bool {
        matches!(*self.inner, AuthInner::Development)
    }

    /// What the OpenAPI document and the logs say about the accepted credentials.
    pub fn describe(&self) -> String {
        match &*self.inner {
            AuthInner::Development => "none (development mode)".into(),
            AuthInner::Enforced(e) => {
                let mut ways = Vec::new();
                if e.api_keys {
                    ways.push("API keys");
                }
                if e.oidc.is_some() {
                    ways.push("OIDC bearer tokens");
                }
                ways.join(" and ")
            }
        }
    }
}

/// Why a request has no caller.
struct Denied {
    status: StatusCode,
    detail: String,
}

impl Denied {
    fn unauthorized(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            detail: detail.into(),
        }
    }

    fn response(&self) -> Response {
        match self.status {
            StatusCode::UNAUTHORIZED => {
                let challenge = format!(
                    "Bearer realm=\"carrierhub\", error=\"invalid_token\", error_description=\"{}\"",
                    self.detail
                        .replace('…', "...")
                        .replace(['"', '\\'], "'")
                        .replace(|c: char| !c.is_ascii() || c.is_ascii_control(), "?")
                );
                let mut response = Problem::unauthorized(self.detail.clone()).into_response();
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                response
            }
            status => Problem::new(
                status,
                "authentication-unavailable",
                "Authentication unavailable",
                self.detail.clone(),
            )
            .into_response(),
        }
    }
}

/// The credentials of a request: `Authorization: Bearer …`, or `X-Api-Key: …`, not both (two
/// credentials would leave it to the server to pick whose request this is).
fn credentials(headers: &HeaderMap) -> Result<Option<String>, Denied> {
    if headers.contains_key(header::AUTHORIZATION) && headers.contains_key("x-api-key") {
        return Err(Denied::unauthorized(
            "send the credentials once: Authorization or X-Api-Key, not both",
        ));
    }
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value
            .to_str()
            .map_err(|_| Denied::unauthorized("the Authorization header is not text"))?;
        let (scheme, token) = text.trim().split_once(' ').unwrap_or((text, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(Denied::unauthorized(
                "the Authorization header must be 'Bearer <API key or token>'",
            ));
        }
        return Ok(Some(token.trim().to_owned()));
    }
    match headers.get("x-api-key") {
        Some(v) => v
            .to_str()
            .map(|t| Some(t.trim().to_owned()))
            .map_err(|_| Denied::unauthorized("the X-Api-Key header is not text")),
        None => Ok(None),
    }
}

impl Enforced {
    async fn caller(&self, store: &dyn Store, token: &str) -> Result<Caller, Denied> {
        if token.starts_with(carrierhub_store::TOKEN_PREFIX) {
            if !self.api_keys {
                return Err(Denied::unauthorized(
                    "API keys are not accepted by this server",
                ));
            }
            return self.key_caller(store, token).await;
        }
        let Some(oidc) = &self.oidc else {
            return Err(Denied::unauthorized(
                "not an API key (they start with 'chk_'), and this server accepts no other tokens",
            ));
        };
        oidc.authenticate(token).await.map_err(|e| match e {
            TokenError::KeysUnavailable => Denied {
                status: StatusCode::SERVICE_UNAVAILABLE,
                detail: e.to_string(),
            },
            e => Denied::unauthorized(e.to_string()),
        })
    }

    async fn key_caller(&self, store: &dyn Store, token: &str) -> Result<Caller, Denied> {
        let malformed = || Denied::unauthorized("the API key is malformed");
        let id = carrierhub_store::parse_token(token).ok_or_else(malformed)?;
        let cached = {
            let keys = self.keys.lock().expect("key cache lock");
            keys.get(id)
                .filter(|(at, _)| at.elapsed() < self.key_cache_ttl)
                .map(|(_, key)| key.clone())
        };
        let key = match cached {
            Some(key) => key,
            None => {
                let key = store.get_api_key(id).await.map_err(|e| {
                    tracing::error!(error = %e, "reading an API key failed");
                    Denied {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        detail: "API keys cannot be checked right now".into(),
                    }
                })?;
                let mut keys = self.keys.lock().expect("key cache lock");
                if keys.len() >= KEY_CACHE_ENTRIES {
                    keys.clear();
                }
                keys.insert(id.to_owned(), (Instant::now(), key.clone()));
                key
            }
        };
        // The same answer for an unknown id and a wrong secret: nothing to probe with.
        let key = key
            .filter(|k| carrierhub_store::verify_token(k, token))
            .ok_or_else(|| Denied::unauthorized("the API key is not valid"))?;
        if key.revoked_at.is_some() {
            return Err(Denied::unauthorized("the API key was revoked"));
        }
        if !key.is_active(chrono::Utc::now()) {
            return Err(Denied::unauthorized("the API key has expired"));
        }
        Ok(Caller {
            subject: format!("key:{}", key.id),
            role: key.role,
            scope: key.scope,
            method: AuthMethod::ApiKey,
            rate_limits: key.rate_limits,
        })
    }
}

/// Routes anyone may call, without credentials (`openapi::ROUTES` marks them).
fn is_public(path: &str) -> bool {
    crate::openapi::is_public(path)
}

/// Whether `role` may call `method route` (the route's template, `/v1/policies/{id}`).
/// Reads are open to every role (scope decides what they see); writes are by role.
pub fn role_allows(role: Role, method: &Method, route: &str) -> bool {
    use Role::*;
    let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    match (route, read) {
        ("/metrics", _) => matches!(role, Admin | Operator),
        ("/v1/audit", _) => role == Admin,
        (_, true) => true,
        ("/v1/carriers/{carrier}/submissions" | "/v1/mappings/check", false) => {
            matches!(role, Admin | Operator | Carrier)
        }
        ("/v1/submissions/{id}/replay", false) => matches!(role, Admin | Operator),
        // Webhooks belong to their creator and carry its scope.
        (
            "/v1/webhooks"
            | "/v1/webhooks/{id}"
            | "/v1/webhooks/{id}/enable"
            | "/v1/webhooks/{id}/deliveries/{delivery}/redeliver",
            false,
        ) => matches!(role, Admin | Operator | Carrier),
        // SQL reads only; the caller's scope decides what it sees.
        ("/v1/query", false) => true,
        // Any other write is an administrator's until a rule above says otherwise.
        (_, false) => role == Admin,
    }
}

/// What the audit log keeps of a request.
struct Audited {
    method: Method,
    route: String,
    path: String,
    client: Option<String>,
    request_id: Option<String>,
}

impl Audited {
    fn of(request: &Request) -> Self {
        Self {
            method: request.method().clone(),
            route: request
                .extensions()
                .get::<MatchedPath>()
                .map(|m| m.as_str().to_owned())
                .unwrap_or_else(|| request.uri().path().to_owned()),
            path: request.uri().path().to_owned(),
            client: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
            request_id: request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }

    fn is_write(&self) -> bool {
        !matches!(self.method, Method::GET | Method::HEAD | Method::OPTIONS)
    }

    async fn record(
        self,
        store: &dyn Store,
        caller: Option<&Caller>,
        status: StatusCode,
        detail: Option<String>,
    ) {
        let entry = NewAuditEntry {
            actor: caller.map_or_else(|| "anonymous".to_owned(), |c| c.subject.clone()),
            role: caller.map(|c| c.role.to_string()),
            action: format!("{} {}", self.method, self.route),
            target: Some(self.path),
            status: status.as_u16(),
            client: self.client,
            request_id: self.request_id,
            detail,
        };
        if let Err(e) = store.record_audit(&entry).await {
            tracing::error!(error = %e, action = %entry.action, "the audit log could not be written");
        }
    }
}

/// The middleware: establishes the caller, checks its role against the route, and writes
/// the audit log for writes and denied requests.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let audited = Audited::of(&request);
    let caller = match &*state.auth.inner {
        AuthInner::Development => Ok(Caller::development()),
        AuthInner::Enforced(enforced) => match credentials(request.headers()) {
            Err(denied) => Err(denied),
            Ok(None) => Err(Denied::unauthorized(
                "this request needs an API key or a bearer token (Authorization: Bearer …)",
            )),
            Ok(Some(token)) => enforced.caller(state.store.as_ref(), &token).await,
        },
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(denied) => {
            let response = denied.response();
            audited
                .record(
                    state.store.as_ref(),
                    None,
                    response.status(),
                    Some(denied.detail),
                )
                .await;
            return response;
        }
    };
    if !role_allows(caller.role, &audited.method, &audited.route) {
        let detail = format!(
            "role '{}' may not {} {}",
            caller.role, audited.method, audited.route
        );
        let response = Problem::forbidden(detail.clone()).into_response();
        audited
            .record(
                state.store.as_ref(),
                Some(&caller),
                response.status(),
                Some(detail),
            )
            .await;
        return response;
    }
    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    let status = response.status();
    if audited.is_write() || carrierhub_store::DENIED_STATUSES.contains(&status.as_u16()) {
        audited
            .record(state.store.as_ref(), Some(&caller), status, None)
            .await;
    }
    response
}
