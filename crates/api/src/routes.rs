//! Read endpoints: carriers, policies, claims, submissions and their errors.

use crate::openapi::{
    AuditPage, CarrierList, ClaimPage, Health, PolicyBody, PolicyDiff, PolicyPage,
    PolicyVersionList, Portfolio, RejectionPage, SubmissionBody, SubmissionPage,
};
use crate::params::{path_id, Params};
use crate::problem::Problem;
use crate::{AppState, Caller};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use carrierhub_model::{ClaimStatus, LineOfBusiness, PolicyStatus};
use carrierhub_model::{
    ClaimStatus as ClaimStatusCode, LineOfBusiness as Lob, PolicyStatus as PolicyStatusCode,
};
use carrierhub_store::{ClaimFilter, PolicyFilter, Submission, SubmissionFilter};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use std::collections::HashMap;

pub(crate) type Q = Query<HashMap<String, String>>;
type ApiResult<T> = Result<Json<T>, Problem>;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", operation_id = "healthz",
    responses((status = 200, description = "The process is alive", body = Health)))]
pub async fn healthz(Query(q): Q) -> Result<Json<Value>, Problem> {
    Params::new(q, &[])?;
    Ok(Json(json!({ "status": "ok" })))
}

/// `GET /metrics`: the process's metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health", operation_id = "metrics",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "Metrics in the Prometheus text format", body = String, content_type = "text/plain"),
        (status = 404, description = "This process keeps no metrics", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn metrics(State(state): State<AppState>, Query(q): Q) -> Result<Response, Problem> {
    Params::new(q, &[])?;
    if state.metrics.is_none() {
        return Err(Problem::not_found("this process keeps no metrics"));
    }
    Ok(render_metrics(state.metrics.as_ref()))
}

pub fn render_metrics(render: Option<&crate::MetricsRender>) -> Response {
    match render {
        Some(render) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            render(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub async fn not_found(uri: Uri) -> Problem {
    Problem::not_found(format!("no route for {}", uri.path()))
}

pub async fn method_not_allowed(uri: Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("{} does not accept this method", uri.path()),
    )
}

/// Carriers with their policy, claim and submission counts (those the caller may see).
#[utoipa::path(get, path = "/v1/carriers", tag = "carriers", operation_id = "list_carriers",
    responses((status = 200, description = "The carriers", body = CarrierList)))]
pub async fn list_carriers(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Q,
) -> ApiResult<Value> {
    Params::new(q, &[])?;
    let carriers = state.store.list_carriers(&caller.scope).await?;
    Ok(Json(json!({ "items": carriers })))
}

/// A response body, with the instant it describes when it is an as-of read.
fn body(value: impl serde::Serialize, as_of: Option<DateTime<Utc>>) -> Value {
    let mut body = serde_json::to_value(value).expect("serialise");
    if let Some(t) = as_of {
        body["as_of"] = json!(t);
        // The next page of an as-of list is read as of the same instant.
        if let Some(next) = body.get("next_cursor").and_then(Value::as_str) {
            if let Ok(c) = carrierhub_store::Cursor::decode(next) {
                body["next_cursor"] = json!(carrierhub_store::Cursor {
                    as_of: Some(t),
                    ..c
                }
                .encode());
            }
        }
    }
    body
}

/// Current versions of policies; with `as_of`, the versions current at that instant,
/// filtered on their values then.
#[utoipa::path(get, path = "/v1/policies", tag = "policies", operation_id = "list_policies",
    params(
        ("carrier" = Option<String>, Query, description = "Only this carrier's policies"),
        ("line_of_business" = Option<Lob>, Query, description = "Only this line of business"),
        ("status" = Option<PolicyStatusCode>, Query, description = "Only policies with this status"),
        ("as_of" = Option<String>, Query, description = "Read the versions current at this instant: RFC 3339 (`2025-12-01T00:00:00Z`), or a date for midnight UTC"),
        ("extra" = Option<Object>, Query, style = Form, explode, description = "`extra.KEY=VALUE` (any number): only records whose extras hold KEY with VALUE"),
        ("include" = Option<String>, Query, pattern = "^extras$", description = "`extras`: return the source fields the model has no place for"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses((status = 200, description = "A page of policies", body = PolicyPage)))]
pub async fn list_policies(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Q,
) -> ApiResult<Value> {
    let p = Params::with_prefixes(
        q,
        &[
            "carrier",
            "line_of_business",
            "status",
            "as_of",
            "include",
            "limit",
            "cursor",
        ],
        &["extra."],
    )?;
    let filter = PolicyFilter {
        carrier: p.text("carrier"),
        line_of_business: p.parsed::<LineOfBusiness>("line_of_business")?,
        status: p.parsed::<PolicyStatus>("status")?,
        as_of: p.as_of()?,
        extras: p.prefixed("extra."),
        include_extras: p.includes("extras", &["extras"])?,
        page: p.page()?,
    };
    let page = state.store.list_policies(&caller.scope, &filter).await?;
    Ok(Json(body(page, filter.as_of)))
}

/// One policy with insured, coverages, claims, number of versions and lineage; with
/// `as_of`, as it was then.
#[utoipa::path(get, path = "/v1/policies/{id}", tag = "policies", operation_id = "get_policy",
    params(
        ("id" = i64, Path, minimum = 1, example = 1, description = "The policy's id"),
        ("as_of" = Option<String>, Query, description = "Read the versions current at this instant: RFC 3339 (`2025-12-01T00:00:00Z`), or a date for midnight UTC"),
        ("include" = Option<String>, Query, pattern = "^extras$", description = "`extras`: return the source fields the model has no place for"),
    ),
    responses(
        (status = 200, description = "The policy", body = PolicyBody),
        (status = 404, description = "Not found: no such policy (or none yet at `as_of`), or one outside the caller's scope", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Value> {
    let id = path_id("policy", &id)?;
    let p = Params::new(q, &["as_of", "include"])?;
    let include_extras = p.includes("extras", &["extras"])?;
    let shown = |mut policy: carrierhub_store::PolicyDetail| {
        if !include_extras {
            policy.summary.extras = None;
        }
        policy
    };
    let Some(as_of) = p.as_of()? else {
        let policy = state
            .cache
            .policy(state.store.as_ref(), id, &caller.scope)
            .await?
            .ok_or_else(|| Problem::not_found(format!("no policy with id '{id}'")))?;
        let mut body = serde_json::to_value(&*policy).expect("serialise");
        if !include_extras {
            if let Some(fields) = body.as_object_mut() {
                fields.remove("extras");
            }
        }
        return Ok(Json(body));
    };
    match state
        .store
        .get_policy_as_of(id, as_of, &caller.scope)
        .await?
    {
        Some(policy) => Ok(Json(body(shown(policy), Some(as_of)))),
        None => {
            let versions = state.store.list_policy_versions(id, &caller.scope).await?;
            Err(Problem::not_found(match versions.first() {
                None => format!("no policy with id '{id}'"),
                Some(first) => format!(
                    "policy {id} did not exist yet at {}: its first version is from {}",
                    rfc3339(as_of),
                    rfc3339(first.valid_from)
                ),
            }))
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A policy's history: every version with its lineage, the premium movements it made, and
/// the transaction that made it.
#[utoipa::path(get, path = "/v1/policies/{id}/versions", tag = "policies", operation_id = "list_policy_versions",
    params(("id" = i64, Path, minimum = 1, example = 1, description = "The policy's id")),
    responses(
        (status = 200, description = "Every version, oldest first", body = PolicyVersionList),
        (status = 404, description = "Not found: no such policy, or one outside the caller's scope", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_policy_versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Value> {
    let id = path_id("policy", &id)?;
    let versions = state.store.list_policy_versions(id, &caller.scope).await?;
    if versions.is_empty() {
        return Err(Problem::not_found(format!("no policy with id '{id}'")));
    }
    Ok(Json(json!({ "items": versions })))
}

/// `GET /v1/policies/{id}/diff?from=V&to=W`: what changed between two versions (by default the
/// previous and the current one).
#[utoipa::path(get, path = "/v1/policies/{id}/diff", tag = "policies", operation_id = "diff_policy_versions",
    summary = "What changed between two versions of a policy",
    params(
        ("id" = i64, Path, minimum = 1, example = 1, description = "The policy's id"),
        ("from" = Option<i64>, Query, example = 1, description = "The earlier version (default: the one before `to`)"),
        ("to" = Option<i64>, Query, example = 1, description = "The later version (default: the current one)"),
    ),
    responses(
        (status = 200, description = "The changes, field by field", body = PolicyDiff),
        (status = 404, description = "Not found: no such policy, or one outside the caller's scope", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn diff_policy_versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Value> {
    let id = path_id("policy", &id)?;
    let p = Params::new(q, &["from", "to"])?;
    let versions = state.store.list_policy_versions(id, &caller.scope).await?;
    let Some(latest) = versions.last() else {
        return Err(Problem::not_found(format!("no policy with id '{id}'")));
    };
    let to = p.parsed::<i64>("to")?.unwrap_or(latest.version);
    let from = p.parsed::<i64>("from")?.unwrap_or(to - 1);
    let find = |v: i64, name: &str| {
        versions.iter().find(|x| x.version == v).ok_or_else(|| {
            Problem::bad_request(format!(
                "query parameter '{name}': policy {id} has versions 1 to {}, not {v}",
                latest.version
            ))
        })
    };
    let (a, b) = (find(from, "from")?, find(to, "to")?);
    Ok(Json(json!({
        "policy_id": id,
        "from": { "version": a.version, "valid_from": a.valid_from, "lineage": a.lineage },
        "to": { "version": b.version, "valid_from": b.valid_from, "lineage": b.lineage },
        "changes": crate::diff::diff(&a.record, &b.record),
    })))
}

/// Claims with paid, reserve and incurred; `as_of`, `extra.KEY` and `include=extras` as for
/// policies.
#[utoipa::path(get, path = "/v1/claims", tag = "claims", operation_id = "list_claims",
    params(
        ("carrier" = Option<String>, Query, description = "Only this carrier's claims"),
        ("status" = Option<ClaimStatusCode>, Query, description = "Only claims with this status"),
        ("policy_id" = Option<i64>, Query, description = "Only the claims of this policy"),
        ("as_of" = Option<String>, Query, description = "Read the versions current at this instant: RFC 3339 (`2025-12-01T00:00:00Z`), or a date for midnight UTC"),
        ("extra" = Option<Object>, Query, style = Form, explode, description = "`extra.KEY=VALUE` (any number): only records whose extras hold KEY with VALUE"),
        ("include" = Option<String>, Query, pattern = "^extras$", description = "`extras`: return the source fields the model has no place for"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses((status = 200, description = "A page of claims", body = ClaimPage)))]
pub async fn list_claims(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Q,
) -> ApiResult<Value> {
    let p = Params::with_prefixes(
        q,
        &[
            "carrier",
            "status",
            "policy_id",
            "as_of",
            "include",
            "limit",
            "cursor",
        ],
        &["extra."],
    )?;
    let filter = ClaimFilter {
        carrier: p.text("carrier"),
        status: p.parsed::<ClaimStatus>("status")?,
        policy_id: p.parsed::<i64>("policy_id")?,
        as_of: p.as_of()?,
        extras: p.prefixed("extra."),
        include_extras: p.includes("extras", &["extras"])?,
        page: p.page()?,
    };
    let page = state.store.list_claims(&caller.scope, &filter).await?;
    Ok(Json(body(page, filter.as_of)))
}

/// Submissions with their status and counts, newest last.
#[utoipa::path(get, path = "/v1/submissions", tag = "submissions", operation_id = "list_submissions",
    params(
        ("carrier" = Option<String>, Query, description = "Only this carrier's submissions"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses((status = 200, description = "A page of submissions", body = SubmissionPage)))]
pub async fn list_submissions(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Q,
) -> ApiResult<Value> {
    let p = Params::new(q, &["carrier", "limit", "cursor"])?;
    let filter = SubmissionFilter {
        carrier: p.text("carrier"),
        page: p.page()?,
    };
    Ok(Json(
        serde_json::to_value(state.store.list_submissions(&caller.scope, &filter).await?)
            .expect("serialise"),
    ))
}

/// A carrier's submissions.
#[utoipa::path(get, path = "/v1/carriers/{carrier}/submissions", tag = "submissions", operation_id = "list_carrier_submissions",
    params(
        ("carrier" = String, Path, min_length = 1, example = "northwind", description = "The carrier's id"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses((status = 200, description = "A page of submissions", body = SubmissionPage)))]
pub async fn list_carrier_submissions(
    State(state): State<AppState>,
    caller: Caller,
    Path(carrier): Path<String>,
    Query(q): Q,
) -> ApiResult<Value> {
    let p = Params::new(q, &["limit", "cursor"])?;
    let filter = SubmissionFilter {
        carrier: Some(carrier),
        page: p.page()?,
    };
    Ok(Json(
        serde_json::to_value(state.store.list_submissions(&caller.scope, &filter).await?)
            .expect("serialise"),
    ))
}

/// How many errors a submission shows inline; the rest are paged at `/errors`.
const INLINE_ERRORS: u32 = 100;

pub(crate) fn submission_body(s: &Submission) -> Value {
    let mut body = serde_json::to_value(s).expect("serialise");
    body["links"] = json!({
        "self": format!("/v1/submissions/{}", s.id),
        "errors": format!("/v1/submissions/{}/errors", s.id),
    });
    body
}

/// A submission: status, counts, and its first rejected records.
#[utoipa::path(get, path = "/v1/submissions/{id}", tag = "submissions", operation_id = "get_submission",
    params(("id" = i64, Path, minimum = 1, example = 1, description = "The submission's id")),
    responses(
        (status = 200, description = "The submission", body = SubmissionBody),
        (status = 404, description = "Not found: no such submission, or one outside the caller's scope", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_submission(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Value> {
    let id = path_id("submission", &id)?;
    let submission = state
        .store
        .get_submission(id, &caller.scope)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no submission with id '{id}'")))?;
    let errors = state
        .store
        .list_rejections(
            id,
            &caller.scope,
            &carrierhub_store::PageRequest {
                after_id: None,
                limit: INLINE_ERRORS,
            },
        )
        .await?;
    let mut body = submission_body(&submission);
    body["errors"] = serde_json::to_value(&errors.items).expect("serialise");
    body["errors_truncated"] = json!(errors.next_cursor.is_some());
    Ok(Json(body))
}

/// The records a submission rejected, and why.
#[utoipa::path(get, path = "/v1/submissions/{id}/errors", tag = "submissions", operation_id = "list_submission_errors",
    params(
        ("id" = i64, Path, minimum = 1, example = 1, description = "The submission's id"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of rejected records", body = RejectionPage),
        (status = 404, description = "Not found: no such submission, or one outside the caller's scope", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_submission_errors(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Value> {
    let id = path_id("submission", &id)?;
    let p = Params::new(q, &["limit", "cursor"])?;
    if state
        .store
        .get_submission(id, &caller.scope)
        .await?
        .is_none()
    {
        return Err(Problem::not_found(format!("no submission with id '{id}'")));
    }
    let page = state
        .store
        .list_rejections(id, &caller.scope, &p.page()?)
        .await?;
    Ok(Json(serde_json::to_value(page).expect("serialise")))
}

/// Policies, in-force count and written premium by carrier, line of business and currency;
/// with `as_of`, over the versions current then.
#[utoipa::path(get, path = "/v1/portfolio", tag = "portfolio", operation_id = "portfolio",
    params(("as_of" = Option<String>, Query, description = "Read the versions current at this instant: RFC 3339 (`2025-12-01T00:00:00Z`), or a date for midnight UTC"),),
    responses((status = 200, description = "The portfolio", body = Portfolio)))]
pub async fn portfolio(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Q,
) -> ApiResult<Value> {
    let p = Params::new(q, &["as_of"])?;
    let as_of = p.as_of()?;
    let lines = match as_of {
        Some(t) => state.store.portfolio_as_of(t, &caller.scope).await?,
        None => state.store.portfolio(&caller.scope).await?,
    };
    Ok(Json(body(json!({ "items": lines }), as_of)))
}

/// `GET /v1/audit`: the audit log, newest first (administrators only; see `auth.rs`).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", operation_id = "list_audit",
    summary = "The audit log, newest first",
    params(
        ("actor" = Option<String>, Query, description = "Only this actor's entries (`key:ID`, a token's subject, `anonymous`)"),
        ("denied" = Option<bool>, Query, description = "Only refused requests (401, 403, 429)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses((status = 200, description = "A page of entries", body = AuditPage)))]
pub async fn list_audit(State(state): State<AppState>, Query(q): Q) -> ApiResult<Value> {
    let p = Params::new(q, &["actor", "denied", "limit", "cursor"])?;
    let limit = p.parsed::<u32>("limit")?.unwrap_or(50);
    if limit == 0 || limit > crate::params::MAX_LIMIT {
        return Err(Problem::bad_request(format!(
            "query parameter 'limit' must be between 1 and {}, not {limit}",
            crate::params::MAX_LIMIT
        )));
    }
    let filter = carrierhub_store::AuditFilter {
        actor: p.text("actor"),
        denied_only: p.parsed::<bool>("denied")?.unwrap_or(false),
        before_id: p
            .text("cursor")
            .map(|c| {
                carrierhub_store::AuditFilter::parse_cursor(&c)
                    .map_err(|e| Problem::bad_request(format!("query parameter 'cursor': {e}")))
            })
            .transpose()?,
        limit,
    };
    let page = state.store.list_audit(&filter).await?;
    Ok(Json(serde_json::to_value(page).expect("serialise")))
}
