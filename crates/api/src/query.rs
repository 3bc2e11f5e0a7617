//! `POST /v1/query`: read-only SQL over the warehouse, within the caller's scope.
//!
//! The body is `{"sql": "…", "format": "json|csv|arrow|parquet"}`; without `format`, the
//! `Accept` header picks it (`application/json`, `text/csv`,
//! `application/vnd.apache.arrow.stream`, `application/vnd.apache.parquet`), JSON by default.

use crate::caller::Caller;
use crate::problem::Problem;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use carrierhub_warehouse::{Format, QueryError};
use serde::Deserialize;

/// A query: one read-only SQL statement over the warehouse's tables.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"sql": "SELECT carrier, count(*) AS policies FROM policies WHERE is_current GROUP BY carrier ORDER BY carrier", "format": "json"}))]
pub struct QueryRequest {
    /// `SELECT`, `WITH … SELECT` or `EXPLAIN`; anything else is refused.
    pub sql: String,
    /// `json` (an array of row objects), `csv`, `arrow` (IPC stream) or `parquet`; without it
    /// the `Accept` header decides, JSON by default.
    #[serde(default)]
    pub format: Option<String>,
}

#[utoipa::path(post, path = "/v1/query", tag = "warehouse", operation_id = "run_query",
    summary = "Run read-only SQL over the warehouse",
    description = "Apache DataFusion SQL over the warehouse's Parquet tables (`policies`, `coverages`, `premium_transactions`, `claims`, `claim_transactions`; see docs/warehouse.md). The caller's carrier and book scope is applied inside every table's scan: rows outside it do not exist for the query, in joins, subqueries and aggregates alike. Each query has a memory limit and a time limit.",
    request_body(content = QueryRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The result, in the format asked for",
            headers(("X-Result-Rows" = u64, description = "Rows in the result")),
            content(
                (Vec<serde_json::Map<String, serde_json::Value>> = "application/json"),
                (String = "text/csv"),
                (Vec<u8> = "application/vnd.apache.arrow.stream"),
                (Vec<u8> = "application/vnd.apache.parquet"),
            )),
        (status = 400, description = "Bad request: a body that is not the JSON object described, or an unknown format", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "Not acceptable: an `Accept` header naming no format produced", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The query ran past its time limit", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The query needed more memory than its limit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a read-only query, or invalid SQL (unknown tables or columns, syntax)", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The query failed while running", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This server has no warehouse to query", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn run_query(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<QueryRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Problem> {
    let Json(request) = body.map_err(|e| Problem::bad_request(e.body_text()))?;
    let Some(engine) = state.query.as_ref() else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "warehouse-unavailable",
            "Warehouse unavailable",
            "this server has no warehouse to query",
        ));
    };
    let format = match &request.format {
        Some(f) => Format::parse(f).ok_or_else(|| {
            Problem::bad_request(format!(
                "unknown format '{f}'; the formats are json, csv, arrow, parquet"
            ))
            .with("field", "format")
        })?,
        None => accepted(&headers)?,
    };
    match engine.run(&request.sql, &caller.scope, format).await {
        Ok(out) => Ok((
            [
                (header::CONTENT_TYPE, out.format.media_type().to_owned()),
                (
                    header::HeaderName::from_static("x-result-rows"),
                    out.rows.to_string(),
                ),
            ],
            out.body,
        )
            .into_response()),
        Err(e) => Err(problem(e)),
    }
}

/// The format the `Accept` header asks for: the first media type we produce, JSON for none
/// or `*/*`; 406 when it names only types we do not produce.
fn accepted(headers: &HeaderMap) -> Result<Format, Problem> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Format::Json);
    };
    let mut any = false;
    for media in accept.split(',') {
        if let Some(f) = Format::from_media_type(media) {
            return Ok(f);
        }
        let bare = media.split(';').next().unwrap_or("").trim();
        any |= bare == "*/*" || bare == "application/*";
    }
    if any || accept.trim().is_empty() {
        return Ok(Format::Json);
    }
    Err(Problem::new(
        StatusCode::NOT_ACCEPTABLE,
        "not-acceptable",
        "Not acceptable",
        format!(
            "cannot answer as '{accept}'; the formats are application/json, text/csv, \
             application/vnd.apache.arrow.stream, application/vnd.apache.parquet"
        ),
    ))
}

/// The answer to a query stopped by one of its limits (time, memory), the same for SQL and
/// for insights; `None` for any other error.
pub(crate) fn limit_exceeded(e: &QueryError) -> Option<Problem> {
    let detail = e.to_string();
    match e {
        QueryError::Timeout(_) => Some(Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "query-timeout",
            "Query timed out",
            detail,
        )),
        QueryError::TooLarge(_) => Some(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "query-too-large",
            "Query too large",
            detail,
        )),
        _ => None,
    }
}

fn problem(e: QueryError) -> Problem {
    let detail = e.to_string();
    match e {
        QueryError::NotReadOnly(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "query-not-read-only",
            "Not a read-only query",
            detail,
        ),
        QueryError::Invalid(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-query",
            "Invalid query",
            detail,
        ),
        QueryError::Timeout(_) | QueryError::TooLarge(_) => {
            limit_exceeded(&e).expect("a limit's error")
        }
        QueryError::Failed(_) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "query-failed",
            "Query failed",
            detail,
        ),
    }
}
