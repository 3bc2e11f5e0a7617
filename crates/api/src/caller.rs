//! The authenticated caller of a request, as the auth layer establishes it.

use carrierhub_store::{RateLimit, Role, Scope};
use serde::Serialize;
use std::collections::BTreeMap;

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// An API key (`Authorization: Bearer chk_…` or `X-Api-Key`).
    ApiKey,
    /// An OIDC bearer token (a JWT from the configured identity provider).
    Oidc,
    /// Nobody: development mode (no authentication configured, loopback only).
    Development,
}

/// Who is calling, what it may do and what it may see.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Caller {
    /// The key id or the token's subject: whom rate limits and the audit log count.
    pub subject: String,
    pub role: Role,
    pub scope: Scope,
    pub method: AuthMethod,
    /// Per route class, limits that replace the role's (a key's own limits).
    pub rate_limits: BTreeMap<String, RateLimit>,
}

impl Caller {
    /// The caller of development mode: an unrestricted admin.
    pub fn development() -> Self {
        Self {
            subject: "development".into(),
            role: Role::Admin,
            scope: Scope::all(),
            method: AuthMethod::Development,
            rate_limits: BTreeMap::new(),
        }
    }
}

/// Handlers take the caller as an argument; the auth layer put it in the request's
/// extensions. A request that reached a handler without one is refused (a routing mistake
/// must not serve data unauthenticated).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = crate::Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(crate::Problem::unauthenticated)
    }
}
