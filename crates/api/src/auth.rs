//! Authentication and authorisation at the gateway: who the caller is (an API key, an OIDC
//! token, or nobody in development mode), and whether its role may use the route.
//!
//! What the caller may *see* is not decided here: the caller's scope goes to the store's
//! queries (see `carrierhub_store::Scope`).

use crate::{AppState, Caller};
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use carrierhub_store::Role;
use std::sync::Arc;

/// How requests are authenticated.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

enum AuthInner {
    /// No authentication configured: every request is an unrestricted admin. Only on a
    /// loopback address (`serve` refuses anything else).
    Development,
}

impl Auth {
    /// Development mode: no authentication.
    pub fn development() -> Self {
        Self {
            inner: Arc::new(AuthInner::Development),
        }
    }

    pub fn is_development(&self) -> bool {
        matches!(*self.inner, AuthInner::Development)
    }
}

/// Routes anyone may call, without credentials.
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/openapi.json" | "/docs")
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
        // Any other write is an administrator's until a rule above says otherwise.
        (_, false) => role == Admin,
    }
}

/// The middleware: establishes the caller and checks its role against the route.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if is_public(&path) {
        return next.run(request).await;
    }
    let caller = match &*state.auth.inner {
        AuthInner::Development => Caller::development(),
    };
    // Unmatched paths fall through to the 404 fallback, whoever asks.
    if let Some(route) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
    {
        if !role_allows(caller.role, request.method(), &route) {
            return crate::Problem::forbidden(format!(
                "role '{}' may not {} {route}",
                caller.role,
                request.method()
            ))
            .into_response();
        }
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}
