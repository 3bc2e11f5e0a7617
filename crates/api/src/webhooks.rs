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
use carrierhub_store::{NewWebhook, Role, Webhook};
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    url: String,
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    carriers: Vec<String>,
    #[serde(default)]
    description: Option<String>,
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
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/webhooks/{}", webhook.id))],
        Json(shown),
    )
        .into_response())
}

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

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Webhook>, Problem> {
    Ok(Json(find(&state, &caller, &id).await?))
}

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
