//! `GET /v1/events`: change events as Server-Sent Events, within the caller's scope (applied
//! by the store's query), in the order the relay published them.
//!
//! Each event is sent with `id:` the outbox id, `event:` its type and `data:` the envelope the
//! broker and webhooks carry. A client resumes with `Last-Event-ID` (or `?after=ID`) and gets
//! exactly the events published after that one; without either it gets the events published
//! from now on (`?after=0`: from the first). New events are read when the relay in this
//! process says it published some, or every `POLL` otherwise.

use crate::params::Params;
use crate::problem::Problem;
use crate::{AppState, Caller};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use carrierhub_store::{EventFilter, StoreError};
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

/// How often the outbox is read when no relay in this process signals new events.
const POLL: Duration = Duration::from_millis(500);
/// Events read from the store at a time.
const BATCH: u32 = 200;
/// How often a comment keeps an idle connection open through proxies.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Counts the open streams in `carrierhub_sse_clients`; dropped with the stream.
struct Client;

impl Client {
    fn new() -> Self {
        metrics::gauge!("carrierhub_sse_clients").increment(1.0);
        Client
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        metrics::gauge!("carrierhub_sse_clients").decrement(1.0);
    }
}

fn list(value: Option<String>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn position(raw: &str, name: &str) -> Result<i64, Problem> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| Problem::bad_request(format!("{name} must be an event id, not '{raw}'")))
}

#[utoipa::path(get, path = "/v1/events", tag = "events", operation_id = "stream_events",
    summary = "Change events as Server-Sent Events",
    description = "An endless `text/event-stream`: each event has `id:` (its position: send it back as `Last-Event-ID` to resume), `event:` its type and `data:` the envelope webhooks carry (JSON). Only events within the caller's scope are sent. Without `Last-Event-ID` or `after` the stream starts with the events published from now on. A comment (`: keep-alive`) is sent every 15 s on an idle stream.",
    params(
        ("Last-Event-ID" = Option<String>, Header, pattern = "^[0-9]{1,18}$", description = "Resume after this event (the `id:` of the last event received); wins over `after`"),
        ("after" = Option<i64>, Query, minimum = 0, description = "Start after this event id; `0` starts from the first event kept"),
        ("types" = Option<String>, Query, example = "policy.created,claim.created", description = "Only these event types, comma-separated (`policy.created`, `policy.updated`, `policy.cancelled`, `claim.created`, `claim.updated`, `submission.received`, `submission.completed`, `submission.failed`)"),
        ("carrier" = Option<String>, Query, example = "northwind", description = "Only these carriers' events, comma-separated (the caller's scope still applies)"),
    ),
    responses(
        (status = 200, description = "The stream; it does not end while the client reads it", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid request: an unknown parameter, or `Last-Event-ID`/`after` that is not an event id this server sent", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    let p = Params::new(q, &["after", "types", "carrier"])?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| Problem::bad_request("Last-Event-ID is not text"))
        })
        .transpose()?;
    let after = match (last_event_id, p.text("after")) {
        (Some(id), _) => Some(position(id, "Last-Event-ID")?),
        (None, Some(after)) => Some(position(&after, "query parameter 'after'")?),
        (None, None) => None,
    };
    let store = state.store.clone();
    // Where the stream starts: after the named event, or after the last one published.
    let mut cursor = match after {
        Some(0) => None,
        Some(id) => Some(id),
        None => store.last_published_event().await?,
    };
    let filter = EventFilter {
        after: cursor,
        types: list(p.text("types")),
        carriers: list(p.text("carrier")),
        limit: BATCH,
    };
    // An unknown position is refused before the stream starts.
    let first = match store.list_events(&caller.scope, &filter).await {
        Ok(events) => events,
        Err(StoreError::NotFound(detail)) => {
            return Err(Problem::bad_request(format!(
                "{detail}: resume from an event id this server sent"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let mut wake = state.relay.as_ref().map(|r| r.subscribe());
    let readiness = state.readiness();
    let scope = caller.scope.clone();
    let stream = async_stream(move |tx| async move {
        let _client = Client::new();
        let mut batch = first;
        loop {
            for event in &batch {
                let data = carrierhub_pipeline::webhooks::event_body(event).to_string();
                let sse = Event::default()
                    .id(event.id.to_string())
                    .event(&event.event_type)
                    .data(data);
                if tx.send(Ok(sse)).await.is_err() {
                    return;
                }
                cursor = Some(event.id);
            }
            if batch.len() < BATCH as usize {
                let wait = async {
                    match &mut wake {
                        Some(wake) => {
                            let _ = tokio::time::timeout(POLL * 4, wake.changed()).await;
                        }
                        None => tokio::time::sleep(POLL).await,
                    }
                };
                // A shutdown ends the stream, so the server can drain; the client resumes
                // with Last-Event-ID from another replica or after the restart.
                tokio::select! {
                    _ = readiness.draining() => return,
                    _ = wait => {}
                }
            }
            let filter = EventFilter {
                after: cursor,
                ..filter.clone()
            };
            batch = loop {
                match store.list_events(&scope, &filter).await {
                    Ok(events) => break events,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading events for a stream failed");
                        if tx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(POLL * 2).await;
                    }
                }
            };
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response())
}

/// A stream fed by a task: `produce` sends items until the receiver is dropped (the client
/// went away), which ends the task at its next send.
fn async_stream<F, Fut>(
    produce: F,
) -> impl futures_util::Stream<Item = Result<Event, Infallible>> + Send + 'static
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(produce(tx));
    let abort = AbortOnDrop(task);
    futures_util::stream::unfold((rx, abort), |(mut rx, abort)| async move {
        rx.recv().await.map(|item| (item, (rx, abort)))
    })
}

/// Ends the producing task when the response body (and so the stream) is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
