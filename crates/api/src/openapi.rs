//! The OpenAPI 3.1 document of the API, derived from the code: the handlers' `#[utoipa::path]`
//! annotations (parameters, bodies, the responses particular to each), the `ToSchema` types
//! of the crates that define them, and what the gateway adds to every operation (below,
//! [`Gateway`]): request ids, conditional GETs, authentication, roles, rate limits, time and
//! body limits, each with its problem+json response and its headers.
//!
//! [`ROUTES`] is the router's table: `router` builds its routes from it, and a test checks
//! that the document has exactly these operations. A new route needs its entry here, its
//! handler in `lib.rs::endpoint` and its annotation, or the tests fail.

use crate::{diff, events, insights, live, query, routes, uploads, webhooks, Problem};
use axum::http::{header, Method};
use axum::response::{Html, IntoResponse, Response};
use carrierhub_model::{ClaimStatus, LineOfBusiness, PolicyStatus};
use carrierhub_store::{
    AuditEntry, CarrierSummary, ClaimSummary, Delivery, Lineage, PolicyDetail, PolicySummary,
    PolicyVersion, PortfolioLine, Rejection, Role, Submission, Webhook,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    Content, ObjectBuilder, OpenApi as Document, Ref, RefOr, Required, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi, ToSchema};

/// One route of the router: its method, its path as the router declares it, and whether it
/// is public (no credentials needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub public: bool,
}

const fn route(method: &'static str, path: &'static str, public: bool) -> Route {
    Route {
        method,
        path,
        public,
    }
}

/// Every route the API serves. `router` builds itself from this table (see `lib.rs`), and
/// `tests/http/openapi.rs` checks that the document describes exactly these operations.
pub const ROUTES: &[Route] = &[
    route("GET", "/healthz", true),
    route("GET", "/readyz", true),
    route("GET", "/openapi.json", true),
    route("GET", "/docs", true),
    route("GET", "/metrics", false),
    route("GET", "/v1/carriers", false),
    route("GET", "/v1/carriers/{carrier}/submissions", false),
    route("POST", "/v1/carriers/{carrier}/submissions", false),
    route("GET", "/v1/policies", false),
    route("GET", "/v1/policies/{id}", false),
    route("GET", "/v1/policies/{id}/versions", false),
    route("GET", "/v1/policies/{id}/diff", false),
    route("GET", "/v1/claims", false),
    route("GET", "/v1/submissions", false),
    route("GET", "/v1/submissions/{id}", false),
    route("GET", "/v1/submissions/{id}/errors", false),
    route("POST", "/v1/submissions/{id}/replay", false),
    route("POST", "/v1/mappings/check", false),
    route("GET", "/v1/portfolio", false),
    route("GET", "/v1/audit", false),
    route("GET", "/v1/events", false),
    route("GET", "/v1/webhooks", false),
    route("POST", "/v1/webhooks", false),
    route("GET", "/v1/webhooks/{id}", false),
    route("DELETE", "/v1/webhooks/{id}", false),
    route("POST", "/v1/webhooks/{id}/enable", false),
    route("GET", "/v1/webhooks/{id}/deliveries", false),
    route(
        "POST",
        "/v1/webhooks/{id}/deliveries/{delivery}/redeliver",
        false,
    ),
    route("POST", "/v1/query", false),
    // Metrics over the warehouse (insights.rs).
    route("GET", "/v1/insights/premium", false),
    route("GET", "/v1/insights/in-force", false),
    route("GET", "/v1/insights/earned", false),
    route("GET", "/v1/insights/incurred", false),
    route("GET", "/v1/insights/loss-ratio", false),
    route("GET", "/v1/insights/frequency-severity", false),
    route("GET", "/v1/insights/triangles", false),
    route("GET", "/v1/insights/live", false),
];

/// Whether `path` is a public route (no credentials needed).
pub fn is_public(path: &str) -> bool {
    ROUTES.iter().any(|r| r.public && r.path == path)
}

/// The names of the security schemes in the document.
pub const API_KEY_BEARER: &str = "api_key";
pub const API_KEY_HEADER: &str = "api_key_header";
pub const OIDC: &str = "oidc";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "CarrierHub API",
        description = "Policies, claims and submissions of insurance carriers, in one canonical model, \
            versioned and traceable to the line each value came from.\n\n\
            Errors are RFC 9457 `application/problem+json`. Every route but the public ones \
            (`/healthz`, `/readyz`, `/openapi.json`, `/docs`) needs an API key \
            (`Authorization: Bearer chk_…` or `X-Api-Key: chk_…`) or an OIDC bearer token, \
            unless the server runs in development mode (no authentication configured, loopback only). \
            Requests are rate-limited per caller and route class (`RateLimit-Policy`, `RateLimit`, \
            429 with `Retry-After`). Every GET answers with a strong `ETag` (`If-None-Match` → 304). \
            Every response carries `X-Request-Id`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        routes::healthz,
        crate::health::readyz,
        openapi_json,
        docs,
        routes::metrics,
        routes::list_carriers,
        routes::list_carrier_submissions,
        uploads::create_submission,
        routes::list_policies,
        routes::get_policy,
        routes::list_policy_versions,
        routes::diff_policy_versions,
        routes::list_claims,
        routes::list_submissions,
        routes::get_submission,
        routes::list_submission_errors,
        uploads::replay_submission,
        uploads::check_mapping,
        routes::portfolio,
        routes::list_audit,
        events::stream,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::delete,
        webhooks::enable,
        webhooks::deliveries,
        webhooks::redeliver,
        query::run_query,
        insights::premium,
        insights::in_force,
        insights::earned,
        insights::incurred,
        insights::loss_ratio,
        insights::frequency_severity,
        insights::triangles,
        live::live,
    ),
    components(schemas(Problem, LineOfBusiness, PolicyStatus, ClaimStatus)),
    modifiers(&Gateway),
    tags(
        (name = "health", description = "Liveness, readiness, metrics and this document"),
        (name = "carriers", description = "Carriers and their counts"),
        (name = "policies", description = "Policies: current, as of an instant, their versions and differences"),
        (name = "claims", description = "Claims with paid, reserve and incurred"),
        (name = "submissions", description = "Carriers' payloads: uploads, status, rejected records, replays"),
        (name = "mappings", description = "Dry runs of mappings"),
        (name = "portfolio", description = "Premium and counts by carrier, line and currency"),
        (name = "audit", description = "The audit log of writes and refusals"),
        (name = "events", description = "Change events as a Server-Sent Events stream"),
        (name = "webhooks", description = "Change events POSTed to subscribed URLs: subscriptions, their delivery log, redelivery"),
        (name = "warehouse", description = "Read-only SQL over the warehouse's Parquet tables, within the caller's scope"),
        (name = "insights", description = "Premium, losses, ratios and development triangles computed over the warehouse, within the caller's scope (docs/insights.md)"),
    ),
)]
pub struct ApiDoc;

/// The document, built once, as JSON.
pub fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
        mark_required_headers(&mut doc);
        describe_extra_filters(&mut doc);
        // A replay's body may be empty (the named or the latest mapping is used).
        doc["paths"]["/v1/submissions/{id}/replay"]["post"]["requestBody"]["required"] =
            serde_json::Value::Bool(false);
        // Enabling needs no body (`since` is optional).
        doc["paths"]["/v1/webhooks/{id}/enable"]["post"]["requestBody"]["required"] =
            serde_json::Value::Bool(false);
        doc
    })
}

fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| serde_json::to_string_pretty(document()).expect("the document serialises"))
}

/// The `extra` parameter of the lists: any number of `extra.KEY=VALUE` query parameters,
/// an object whose property names are the parameters (form style, exploded). utoipa cannot
/// say what the names look like; this does.
fn describe_extra_filters(doc: &mut serde_json::Value) {
    for path in ["/v1/policies", "/v1/claims"] {
        let Some(params) = doc["paths"][path]["get"]["parameters"].as_array_mut() else {
            continue;
        };
        for param in params.iter_mut().filter(|p| p["name"] == "extra") {
            param["schema"] = serde_json::json!({
                "type": "object",
                "propertyNames": { "pattern": "^extra\\.[A-Za-z0-9_]{1,32}$" },
                "additionalProperties": { "type": "string", "pattern": "^[ -~]{0,64}$" },
                "maxProperties": 3,
            });
        }
    }
}

/// Marks the response headers that are always sent `required` (utoipa's headers cannot say
/// so): `X-Request-Id` on every response, `ETag`, `Cache-Control` and `Location` wherever
/// they are documented, and the rate limit fields and `Retry-After` of a 429.
fn mark_required_headers(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for item in paths.values_mut().filter_map(|i| i.as_object_mut()) {
        for op in item.values_mut().filter_map(|o| o.as_object_mut()) {
            let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) else {
                continue;
            };
            for (status, response) in responses.iter_mut() {
                let Some(headers) = response.get_mut("headers").and_then(|h| h.as_object_mut())
                else {
                    continue;
                };
                for (name, header) in headers.iter_mut() {
                    let always = match name.as_str() {
                        "X-Request-Id" | "ETag" | "Cache-Control" | "Location" => true,
                        "Retry-After" | "RateLimit" | "RateLimit-Policy" => status == "429",
                        _ => false,
                    };
                    if always {
                        header["required"] = serde_json::Value::Bool(true);
                    }
                }
            }
        }
    }
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "health", operation_id = "openapi",
    summary = "The OpenAPI 3.1 document of this API",
    responses((status = 200, description = "The document", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json(query: routes::Q) -> Result<Response, Problem> {
    crate::params::Params::new(query.0, &[])?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response())
}

/// `GET /docs`: the interactive reference, a page that reads `/openapi.json`.
#[utoipa::path(
    get, path = "/docs", tag = "health", operation_id = "docs",
    summary = "The interactive API reference (HTML)",
    responses((status = 200, description = "The reference page", content_type = "text/html", body = String)),
)]
pub async fn docs(query: routes::Q) -> Result<Html<&'static str>, Problem> {
    crate::params::Params::new(query.0, &[])?;
    Ok(Html(include_str!("docs.html")))
}

// ---------------------------------------------------------------------------------------------
// Response bodies the handlers assemble as JSON: their schemas.

/// `{"status": "ok"}`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct CarrierList {
    pub items: Vec<CarrierSummary>,
}

/// A page of policies; `as_of` when the read is as of an instant.
#[derive(Serialize, ToSchema)]
pub struct PolicyPage {
    pub items: Vec<PolicySummary>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// The instant an as-of read describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
}

/// A policy with its insured, coverages and claims; `as_of` when the read is as of an instant.
#[derive(Serialize, ToSchema)]
pub struct PolicyBody {
    #[serde(flatten)]
    pub policy: PolicyDetail,
    /// The instant an as-of read describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct PolicyVersionList {
    pub items: Vec<PolicyVersion>,
}

/// One side of a difference.
#[derive(Serialize, ToSchema)]
pub struct VersionRef {
    pub version: i64,
    pub valid_from: DateTime<Utc>,
    pub lineage: Lineage,
}

/// What changed between two versions of a policy, field by field.
#[derive(Serialize, ToSchema)]
pub struct PolicyDiff {
    pub policy_id: i64,
    pub from: VersionRef,
    pub to: VersionRef,
    pub changes: Vec<diff::Change>,
}

/// A page of claims; `as_of` when the read is as of an instant.
#[derive(Serialize, ToSchema)]
pub struct ClaimPage {
    pub items: Vec<ClaimSummary>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// The instant an as-of read describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct SubmissionPage {
    pub items: Vec<Submission>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RejectionPage {
    pub items: Vec<Rejection>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub items: Vec<AuditEntry>,
    /// Pass as `cursor` to get the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SubmissionLinks {
    #[serde(rename = "self")]
    #[schema(example = "/v1/submissions/3")]
    pub self_: String,
    #[schema(example = "/v1/submissions/3/errors")]
    pub errors: String,
}

/// A submission with its links; its first rejected records when read alone, the source
/// columns its mapping does not read when just received.
#[derive(Serialize, ToSchema)]
pub struct SubmissionBody {
    #[serde(flatten)]
    pub submission: Submission,
    pub links: SubmissionLinks,
    /// The first 100 rejected records (`GET /v1/submissions/{id}`); the rest at `links.errors`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<Rejection>>,
    /// Whether more rejected records than `errors` holds exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors_truncated: Option<bool>,
    /// Source columns no field of the mapping reads (answers of uploads and replays).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unmapped_columns: Option<Vec<String>>,
}

/// Portfolio lines; `as_of` when the read is as of an instant.
#[derive(Serialize, ToSchema)]
pub struct Portfolio {
    pub items: Vec<PortfolioLine>,
    /// The instant an as-of read describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
}

/// The caller's webhooks.
#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<Webhook>,
}

/// A webhook as created: with its signing secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct WebhookCreated {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The signing secret (`whsec_` + base64) of the Standard Webhooks signatures.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
    /// With `since`: how many past events were queued for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 42)]
    pub backfilled: Option<u64>,
}

/// A webhook enabled again.
#[derive(Serialize, ToSchema)]
pub struct WebhookEnabled {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// How many past events `since` queued for it (0 without `since`).
    #[schema(example = 42)]
    pub backfilled: u64,
}

/// A page of a webhook's deliveries, newest first.
#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A payload sent as the request's body.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct RawPayload(pub Vec<u8>);

/// A one-record payload of the demo's `northwind` carrier, for the examples.
const EXAMPLE_CSV: &str = "PolicyNo,LOB,Status,EffDate,ExpDate,GrossPremium,InsuredName,InsuredType,Zip,AgentCode,CovLimit,CovDeductible\nNW-AUTO-0000001,PPA,INF,11/27/2025,11/27/2026,\"1,219.53\",Richard Ramirez,IND,81509,AG-3051,\"500,000\",500\n";

/// An upload as a form: the payload and its mapping, by name or as a file.
#[derive(ToSchema)]
#[schema(example = json!({"file": EXAMPLE_CSV, "mapping": "northwind-policies"}))]
pub struct UploadForm {
    /// The carrier's payload (CSV, fixed-width, XLSX, XLS, JSON, NDJSON, XML).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// The name of a mapping stored for the carrier (its latest revision is used).
    pub mapping: Option<String>,
    /// The mapping itself (TOML), instead of `mapping`.
    pub mapping_file: Option<String>,
}

/// A dry run as a form: the payload and its mapping, as a file or by name with `carrier`.
#[derive(ToSchema)]
#[schema(example = json!({"file": EXAMPLE_CSV, "mapping": "northwind-policies", "carrier": "northwind"}))]
pub struct CheckForm {
    /// The payload to try the mapping on.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// The mapping (TOML).
    pub mapping_file: Option<String>,
    /// The name of a mapping stored for `carrier`, instead of `mapping_file`.
    pub mapping: Option<String>,
    /// The carrier whose stored mapping `mapping` names, and whose policies claims refer to.
    pub carrier: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// What the gateway adds to every operation.

/// Adds to the document what every operation gets from the gateway rather than from its
/// handler: the request headers every route reads, the problem responses of the layers
/// (400, 401, 403, 429, 503, 413, 304) with their headers, the response headers of every
/// response (`X-Request-Id`, `ETag`, rate limits), and the security schemes and
/// requirements.
pub struct Gateway;

/// A problem+json response, with `X-Request-Id` and the `extra` headers.
fn problem_response(description: &str, extra: &[(&str, &str)]) -> utoipa::openapi::Response {
    let mut builder = ResponseBuilder::new().description(description).content(
        "application/problem+json",
        Content::new(Some(RefOr::Ref(Ref::from_schema_name("Problem")))),
    );
    for (name, what) in extra {
        builder = builder.header(*name, header_of(what));
    }
    builder.build()
}

fn header_of(description: &str) -> utoipa::openapi::header::Header {
    let schema = if description.starts_with("Seconds") {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
    } else {
        ObjectBuilder::new().schema_type(Type::String)
    };
    // Whether it is always sent is marked on the JSON (`mark_required_headers`).
    HeaderBuilder::new()
        .description(Some(description))
        .schema(schema)
        .build()
}

const REQUEST_ID: &str = "The request's id: the client's `X-Request-Id` when it is 1 to 128 visible ASCII characters, otherwise one made for it (a UUID)";
const RETRY_AFTER: &str = "Seconds to wait before trying again";
const RATELIMIT_POLICY: &str =
    "The caller's quota for the route's class (IETF RateLimit fields): `\"reads\";q=600;w=60`";
const RATELIMIT: &str =
    "What is left of the quota: `\"reads\";r=599;t=1` (remaining, seconds until it is whole again)";
const ETAG: &str =
    "Strong entity tag of the body; send it as `If-None-Match` to get a 304 while it holds";
const CACHE_CONTROL: &str =
    "`private, no-cache`: only the caller's cache may keep the response, and it must revalidate";
const WWW_AUTHENTICATE: &str = "The Bearer challenge, with why the credentials were refused";

/// Whether some role may not call `method path` (so the route can answer 403), and which
/// roles may.
fn roles_allowed(method: &str, path: &str) -> Vec<Role> {
    let method = Method::from_bytes(method.as_bytes()).expect("a method");
    Role::ALL
        .into_iter()
        .filter(|r| crate::role_allows(*r, &method, path))
        .collect()
}

impl Modify for Gateway {
    fn modify(&self, doc: &mut Document) {
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY_BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("chk_<id>_<secret>")
                    .description(Some(
                        "An API key (`carrierhub keys create`) as `Authorization: Bearer chk_…`",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            API_KEY_HEADER,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Api-Key",
                "An API key as `X-Api-Key: chk_…` (not together with `Authorization`)",
            ))),
        );
        components.add_security_scheme(
            OIDC,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An OIDC access token (a JWT) from the identity provider the server trusts, as `Authorization: Bearer …`",
                    ))
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops: [(&str, &mut Option<Operation>); 3] = [
                ("GET", &mut item.get),
                ("POST", &mut item.post),
                ("DELETE", &mut item.delete),
            ];
            for (method, op) in ops {
                let Some(op) = op.as_mut() else { continue };
                let public = ROUTES
                    .iter()
                    .find(|r| r.method == method && r.path == path)
                    .is_none_or(|r| r.public);
                complete_operation(op, method, path, public);
            }
        }
    }
}

fn header_parameter(
    name: &str,
    description: &str,
    pattern: &str,
) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern)),
        ))
        .build()
}

fn complete_operation(op: &mut Operation, method: &str, path: &str, public: bool) {
    // An event stream never ends, so it is neither tagged nor answered with a 304 (`etag.rs`).
    let streaming =
        op.responses.responses.get("200").is_some_and(
            |r| matches!(r, RefOr::T(r) if r.content.contains_key("text/event-stream")),
        );
    let conditional = method == "GET" && !streaming;
    let params = op.parameters.get_or_insert_with(Vec::new);
    params.push(header_parameter(
        "X-Request-Id",
        "An id for the request, echoed in the response and the server's logs (1 to 128 visible ASCII characters; anything else is replaced)",
        "^[!-~]{1,128}$",
    ));
    if conditional {
        params.push(header_parameter(
            "If-None-Match",
            "Entity tags (`\"…\"`, `W/\"…\"`, or `*`): a 304 without a body when one matches the response's",
            "^[!-~]+$",
        ));
    }
    let responses = &mut op.responses.responses;
    // The handlers' own responses get the gateway's headers.
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        response
            .headers
            .insert("X-Request-Id".into(), header_of(REQUEST_ID));
        if conditional && status == "200" {
            response.headers.insert("ETag".into(), header_of(ETAG));
            response
                .headers
                .insert("Cache-Control".into(), header_of(CACHE_CONTROL));
        }
        if !public {
            response
                .headers
                .insert("RateLimit-Policy".into(), header_of(RATELIMIT_POLICY));
            response
                .headers
                .insert("RateLimit".into(), header_of(RATELIMIT));
        }
    }
    let mut add = |status: &str, response: utoipa::openapi::Response| {
        responses
            .entry(status.to_owned())
            .or_insert(RefOr::T(response));
    };
    let limits: &[(&str, &str)] = if public {
        &[("X-Request-Id", REQUEST_ID)]
    } else {
        &[
            ("X-Request-Id", REQUEST_ID),
            ("RateLimit-Policy", RATELIMIT_POLICY),
            ("RateLimit", RATELIMIT),
        ]
    };
    add(
        "400",
        problem_response(
            "Invalid request: an unknown or malformed query parameter, header or body, named in `detail`",
            limits,
        ),
    );
    if conditional {
        let mut not_modified = ResponseBuilder::new()
            .description("Not modified: `If-None-Match` names the current entity tag")
            .header("ETag", header_of(ETAG))
            .header("Cache-Control", header_of(CACHE_CONTROL))
            .header("X-Request-Id", header_of(REQUEST_ID));
        if !public {
            not_modified = not_modified
                .header("RateLimit-Policy", header_of(RATELIMIT_POLICY))
                .header("RateLimit", header_of(RATELIMIT));
        }
        add("304", not_modified.build());
    }
    if method == "POST" {
        add(
            "413",
            problem_response(
                "Payload too large: the body exceeds the route's limit (`limit_bytes`)",
                limits,
            ),
        );
    }
    add(
        "503",
        problem_response(
            "Unavailable: the server did not answer in time, or authentication or rate limits cannot be checked right now",
            &[
                ("X-Request-Id", REQUEST_ID),
                ("Retry-After", RETRY_AFTER),
            ],
        ),
    );
    if public {
        return;
    }
    add(
        "401",
        problem_response(
            "Unauthenticated: no credentials, credentials that do not hold (unknown, revoked or expired key, invalid token), or both `Authorization` and `X-Api-Key`",
            &[
                ("X-Request-Id", REQUEST_ID),
                ("WWW-Authenticate", WWW_AUTHENTICATE),
            ],
        ),
    );
    let allowed = roles_allowed(method, path);
    if allowed.len() < Role::ALL.len() {
        add(
            "403",
            problem_response(
                "Forbidden: the caller's role may not use this route",
                &[("X-Request-Id", REQUEST_ID)],
            ),
        );
    }
    add(
        "429",
        problem_response(
            "Too many requests: the caller's quota for the route's class is used up",
            &[
                ("X-Request-Id", REQUEST_ID),
                ("Retry-After", RETRY_AFTER),
                ("RateLimit-Policy", RATELIMIT_POLICY),
                ("RateLimit", RATELIMIT),
            ],
        ),
    );
    let roles = allowed
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let note = format!("Roles: {roles}.");
    op.description = Some(match op.description.take() {
        Some(d) if !d.is_empty() => format!("{d}\n\n{note}"),
        _ => note,
    });
    op.security = Some(
        [API_KEY_BEARER, API_KEY_HEADER, OIDC]
            .into_iter()
            .map(|name| utoipa::openapi::security::SecurityRequirement::new::<_, _, &str>(name, []))
            .collect(),
    );
    let mut extensions = op.extensions.take().unwrap_or_default();
    extensions.merge(
        utoipa::openapi::extensions::ExtensionsBuilder::new()
            .add(
                "x-roles",
                allowed.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            )
            .build(),
    );
    op.extensions = Some(extensions);
}
