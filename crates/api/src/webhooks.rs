//! `/v1/webhooks`: subscriptions to change events, their delivery log and redelivery.
//!
//! A webhook belongs to its creator: administrators see and manage every webhook, anyone else
//! only their own. It carries its creator's scope, which the store applies when it queues
//! deliveries: a webhook never receives an event its creator could not read.

use crate::params::{path_id, Params};
use crate::problem::Problem;
use crate::{AppState, Caller};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use carrierhub_pipeline::webhooks::{check_url, new_secret, UrlError};
use carrierhub_store::{parse_as_of, Backfill, Delivery, NewWebhook, Role, StoreError, Webhook};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The event types a webhook may ask for.
pub const EVENT_TYPES: [&str; 8] = [
    "policy.created",
    "policy.updated",
    "policy.cancelled",
    "claim.created",
    "claim.updated",
    "submission.received",
    "submission.completed",
    "submission.failed",
];

/// A webhook to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where events are POSTed: an absolute http or https URL whose host resolves (within
    /// 2 s) to public addresses only, unless the server allows private ones.
    #[schema(example = "https://hooks.example.com/carrierhub")]
    url: String,
    /// Only these event types; empty or absent: every type.
    #[serde(default)]
    #[schema(example = json!(["policy.created", "claim.created"]))]
    event_types: Vec<String>,
    /// Only these carriers' events (within the caller's scope); empty or absent: every one.
    #[serde(default)]
    #[schema(example = json!(["northwind"]))]
    carriers: Vec<String>,
    #[serde(default)]
    #[schema(example = "Claims desk")]
    description: Option<String>,
    /// Backfill: also send the past events this webhook wants (within its filters and the
    /// caller's scope) from this point: an event id (the events published after it, as
    /// `Last-Event-ID`; `0` for every event kept) or an RFC 3339 instant or a date (the events
    /// that occurred from then on). Absent: only events published from now on.
    #[serde(default)]
    since: Option<Since>,
}

/// Where a backfill starts: an event id, or an instant.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Since {
    /// The events published after this event id (`0`: every event kept).
    Event(i64),
    /// The events that occurred at or after this instant (RFC 3339, or a date: midnight UTC).
    Instant(String),
}

impl Since {
    fn backfill(&self) -> Result<Backfill, Problem> {
        let bad = |detail: String| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-since",
                "Invalid backfill start",
                detail,
            )
            .with("field", "since")
        };
        match self {
            Since::Event(id) if *id < 0 => Err(bad(format!(
                "field 'since': {id} is not an event id (0 or more)"
            ))),
            Since::Event(id) => Ok(Backfill::AfterEvent(*id)),
            Since::Instant(text) => parse_as_of(text)
                .map(Backfill::Since)
                .map_err(|e| bad(format!("field 'since': {e}"))),
        }
    }
}

/// Queues the backfill of `webhook` from `since`; an event id the store does not know is a
/// 422 naming the field.
async fn backfill(state: &AppState, webhook: i64, since: Backfill) -> Result<u64, Problem> {
    match state.store.backfill_webhook(webhook, since).await {
        Ok(queued) => Ok(queued),
        Err(StoreError::NotFound(detail)) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-since",
            "Invalid backfill start",
            format!("field 'since': {detail}"),
        )
        .with("field", "since")),
        Err(e) => Err(e.into()),
    }
}

/// Enabling a webhook: what to backfill, if anything.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableWebhook {
    /// Also send the past events this webhook wants from this point (see `since` of a new
    /// webhook): typically the id of the last event it received, to catch up on the events
    /// published while it was disabled.
    #[serde(default)]
    since: Option<Since>,
}

/// Whose webhooks the caller manages: every one for an administrator.
fn owner(caller: &Caller) -> Option<&str> {
    (caller.role != Role::Admin).then_some(caller.subject.as_str())
}

fn not_found(id: i64) -> Problem {
    Problem::not_found(format!("no webhook with id {id}"))
}

fn refused(e: UrlError) -> Problem {
    let slug = match e {
        UrlError::Forbidden { .. } => "webhook-url-refused",
        _ => "invalid-webhook-url",
    };
    let problem = Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        slug,
        "The webhook URL is refused",
        e.to_string(),
    );
    match e {
        UrlError::Forbidden { ip, .. } => problem.with("address", ip.to_string()),
        _ => problem,
    }
}

#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", operation_id = "create_webhook",
    summary = "Subscribe a URL to change events",
    description = "The webhook carries its creator's scope: it never receives an event the creator could not read. Its signing secret is in this answer only.",
    request_body(content = CreateWebhook, content_type = "application/json"),
    responses(
        (status = 201, description = "Created, with its secret", body = crate::openapi::WebhookCreated,
            headers(("Location" = String, description = "The webhook: `/v1/webhooks/{id}`"))),
        (status = 422, description = "Unprocessable: a body that is not the JSON object described, an unknown event type, a carrier outside the caller's scope, a `since` that is no published event's id or instant, or a URL refused (not http(s), a host that does not resolve within 2 s, or a private, loopback, link-local or metadata address)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateWebhook>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Problem> {
    let Json(body) = body.map_err(|e| Problem::unprocessable(e.body_text()))?;
    if let Some(unknown) = body
        .event_types
        .iter()
        .find(|t| !EVENT_TYPES.contains(&t.as_str()))
    {
        return Err(Problem::unprocessable(format!(
            "unknown event type '{unknown}'; the types are {}",
            EVENT_TYPES.join(", ")
        )));
    }
    if let Some(outside) = body
        .carriers
        .iter()
        .find(|c| !caller.scope.allows_carrier(c))
    {
        return Err(Problem::unprocessable(format!(
            "carrier '{outside}' is outside this caller's scope"
        )));
    }
    let since = body.since.as_ref().map(Since::backfill).transpose()?;
    let url = check_url(body.url.trim(), state.webhooks_allow_private)
        .await
        .map_err(refused)?;
    let webhook = state
        .store
        .create_webhook(&NewWebhook {
            url: url.to_string(),
            secret: new_secret(),
            event_types: body.event_types,
            carriers: body.carriers,
            scope: caller.scope.clone(),
            description: body.description,
            created_by: caller.subject.clone(),
        })
        .await?;
    let mut shown = serde_json::to_value(&webhook).expect("serialise");
    // The only time the secret is shown.
    shown["secret"] = json!(webhook.secret);
    if let Some(since) = since {
        match backfill(&state, webhook.id, since).await {
            Ok(queued) => shown["backfilled"] = json!(queued),
            Err(problem) => {
                // Nothing half-made: the webhook goes with its refused backfill.
                state.store.delete_webhook(webhook.id, None).await?;
                return Err(problem);
            }
        }
    }
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/webhooks/{}", webhook.id))],
        Json(shown),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", operation_id = "list_webhooks",
    summary = "The caller's webhooks (every one for an administrator)",
    responses((status = 200, description = "Webhooks, oldest first", body = crate::openapi::WebhookList)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Problem> {
    Params::new(q, &[])?;
    let items = state.store.list_webhooks(owner(&caller)).await?;
    Ok(Json(json!({ "items": items })))
}

async fn find(state: &AppState, caller: &Caller, raw: &str) -> Result<Webhook, Problem> {
    let id = path_id("webhook", raw)?;
    state
        .store
        .get_webhook(id, owner(caller))
        .await?
        .ok_or_else(|| not_found(id))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "get_webhook",
    params(("id" = i64, Path, minimum = 1, example = 1, description = "The webhook's id")),
    responses(
        (status = 200, description = "The webhook (without its secret)", body = Webhook),
        (status = 404, description = "Not found: no such webhook, or another caller's", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Webhook>, Problem> {
    Ok(Json(find(&state, &caller, &id).await?))
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "delete_webhook",
    summary = "Delete a webhook",
    params(("id" = i64, Path, minimum = 1, example = 1, description = "The webhook's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Not found: no such webhook, or another caller's", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let id = path_id("webhook", &id)?;
    if state.store.delete_webhook(id, owner(&caller)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(id))
    }
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", operation_id = "list_webhook_deliveries",
    summary = "A webhook's deliveries, newest first, with their attempts",
    params(
        ("id" = i64, Path, minimum = 1, example = 1, description = "The webhook's id"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of deliveries", body = crate::openapi::DeliveryPage),
        (status = 404, description = "Not found: no such webhook, or another caller's", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Problem> {
    let p = Params::new(q, &["limit", "cursor"])?;
    let webhook = find(&state, &caller, &id).await?;
    let page = state.store.list_deliveries(webhook.id, &p.page()?).await?;
    Ok(Json(serde_json::to_value(page).expect("serialise")))
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery}/redeliver", tag = "webhooks", operation_id = "redeliver_webhook_delivery",
    summary = "Send a delivery again",
    description = "Queues the delivery for an attempt now, whatever its status, with the same `webhook-id`.",
    params(
        ("id" = i64, Path, minimum = 1, example = 1, description = "The webhook's id"),
        ("delivery" = i64, Path, minimum = 1, example = 1, description = "The delivery's id"),
    ),
    responses(
        (status = 202, description = "Queued", body = Delivery),
        (status = 404, description = "Not found: no such webhook (or another caller's), or no such delivery of it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let webhook = find(&state, &caller, &id).await?;
    let delivery = path_id("delivery", &delivery)?;
    let queued = state
        .store
        .redeliver(webhook.id, delivery)
        .await?
        .ok_or_else(|| {
            Problem::not_found(format!(
                "webhook {} has no delivery with id {delivery}",
                webhook.id
            ))
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::to_value(queued).expect("serialise")),
    ))
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/enable", tag = "webhooks", operation_id = "enable_webhook",
    summary = "Enable a webhook again",
    description = "Clears a disabled webhook's `disabled_at`, `disabled_reason` and `failing_since`; its pending deliveries become due now. Events published while it was disabled were not queued for it: with `since` (for instance the id of the last event it received), they are queued now, within its filters and its creator's scope (events queued for it already are not queued again). Enabling an enabled webhook resets its failure state the same way.",
    params(("id" = i64, Path, minimum = 1, example = 1, description = "The webhook's id")),
    request_body(content = EnableWebhook, content_type = "application/json", description = "Optional: what to backfill"),
    responses(
        (status = 200, description = "Enabled; `backfilled` counts the deliveries queued by `since`", body = crate::openapi::WebhookEnabled),
        (status = 404, description = "Not found: no such webhook, or another caller's", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unprocessable: a body that is not the JSON object described, or a `since` that is no published event's id or instant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Problem> {
    let id = path_id("webhook", &id)?;
    let body: EnableWebhook = if body.iter().all(u8::is_ascii_whitespace) {
        EnableWebhook::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Problem::unprocessable(format!("the request body: {e}")))?
    };
    let since = body.since.as_ref().map(Since::backfill).transpose()?;
    let webhook = state
        .store
        .enable_webhook(id, owner(&caller))
        .await?
        .ok_or_else(|| not_found(id))?;
    let queued = match since {
        Some(since) => backfill(&state, webhook.id, since).await?,
        None => 0,
    };
    let mut shown = serde_json::to_value(&webhook).expect("serialise");
    shown["backfilled"] = json!(queued);
    Ok(Json(shown))
}
