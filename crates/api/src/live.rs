//! `GET /v1/insights/live`: today's premium and claim movements (UTC day) by carrier, line
//! and currency, kept current in memory from the change events.
//!
//! Each API process keeps its own copy, from the shared store: a task seeds today's totals
//! with one read of the movements of every event published so far (up to position `S` of
//! the publication order), then reads the movements of the events published after `S`, in
//! order, a page of positions at a time, and adds them. A position range is read once, so
//! nothing is counted twice or missed (see `carrierhub_store::live`). When the UTC day
//! changes, the totals are seeded again for the new day. The task wakes when the relay in
//! this process publishes, or every `POLL` otherwise (another process's relay).
//!
//! Totals are kept per book (producer code) as well, so that the caller's scope (carriers,
//! and books under a book restriction) is applied when they are read, as the event stream
//! applies it: a movement outside the scope is never counted in an answer.
//!
//! Metrics: `carrierhub_live_behind_seconds` (how long ago the view last held every
//! published event) and `carrierhub_live_lag_events` (published events not yet added).

use crate::params::Params;
use crate::problem::Problem;
use crate::routes::Q;
use crate::{AppState, Caller};
use axum::extract::{Query, State};
use axum::Json;
use carrierhub_model::LineOfBusiness;
use carrierhub_store::live::{LiveAmounts, LiveKey, LiveRange};
use carrierhub_store::{Store, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::watch;
use utoipa::ToSchema;

/// How often the store is asked for new events when no relay in this process signals them.
const POLL: Duration = Duration::from_millis(500);
/// Publication positions read at a time while catching up.
const PAGE: i64 = 5_000;
/// The wait before trying again after the store failed.
const RETRY: Duration = Duration::from_secs(1);
/// How long a request waits for the first seed of a process.
const FIRST_SEED: Duration = Duration::from_secs(30);

/// The totals of one UTC day, as of a publication position.
#[derive(Debug, Clone)]
struct Totals {
    day: NaiveDate,
    /// The position of the last event added.
    through: i64,
    /// When the totals last held every event published by then.
    current_at: DateTime<Utc>,
    /// Published events not yet added, when last checked.
    lag_events: i64,
    sums: BTreeMap<LiveKey, LiveAmounts>,
}

/// The live view of a process: cheap to clone, started on first use.
#[derive(Clone)]
pub struct LiveView {
    inner: Arc<Inner>,
}

struct Inner {
    started: OnceLock<()>,
    totals: watch::Sender<Option<Arc<Totals>>>,
}

impl Default for LiveView {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                started: OnceLock::new(),
                totals: watch::channel(None).0,
            }),
        }
    }
}

impl LiveView {
    /// Starts following the store's events (once per view; later calls do nothing). Must be
    /// called within a Tokio runtime.
    pub fn start(&self, state: &AppState) {
        self.inner.started.get_or_init(|| {
            let store = state.store.clone();
            let wake = state.relay.as_ref().map(|r| r.subscribe());
            tokio::spawn(follow(store, Arc::downgrade(&self.inner), wake));
        });
    }

    /// The current totals, once the first seed is done (`None` if it is not within `wait`).
    async fn current(&self, wait: Duration) -> Option<Arc<Totals>> {
        let mut rx = self.inner.totals.subscribe();
        let seeded = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
        match seeded {
            Ok(Ok(totals)) => totals.clone(),
            _ => None,
        }
    }
}

/// The task that keeps the totals: seeds, then adds pages of new events; seeds again when
/// the UTC day changes. Ends when the view is dropped.
async fn follow(store: Arc<dyn Store>, view: Weak<Inner>, mut wake: Option<watch::Receiver<u64>>) {
    let mut totals: Option<Totals> = None;
    loop {
        let behind = match step(store.as_ref(), &mut totals).await {
            Ok(behind) => {
                let Some(view) = view.upgrade() else {
                    return;
                };
                if let Some(t) = &totals {
                    view.totals.send_replace(Some(Arc::new(t.clone())));
                }
                behind
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading events for the live view failed");
                tokio::time::sleep(RETRY).await;
                true
            }
        };
        if let Some(t) = &totals {
            let seconds = (Utc::now() - t.current_at).num_milliseconds().max(0) as f64 / 1e3;
            metrics::gauge!("carrierhub_live_behind_seconds").set(seconds);
            metrics::gauge!("carrierhub_live_lag_events").set(t.lag_events as f64);
        }
        if behind {
            continue;
        }
        match &mut wake {
            Some(wake) => {
                let _ = tokio::time::timeout(POLL, wake.changed()).await;
            }
            None => tokio::time::sleep(POLL).await,
        }
    }
}

/// The UTC day `[since, until)`.
fn day_bounds(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let since = day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    (since, since + chrono::Duration::days(1))
}

/// One move: a seed when there are no totals for today, else the next page of events.
/// True when events remain to be added.
async fn step(store: &dyn Store, totals: &mut Option<Totals>) -> Result<bool, StoreError> {
    let now = Utc::now();
    let today = now.date_naive();
    let last = store.last_published_seq().await?;
    let (since, until) = day_bounds(today);
    match totals {
        Some(t) if t.day == today => {
            if t.through >= last {
                t.current_at = now;
                t.lag_events = 0;
                return Ok(false);
            }
            let through = last.min(t.through + PAGE);
            let range = LiveRange {
                after: t.through,
                through,
                since,
                until,
            };
            for row in store.live_movements(&range).await? {
                t.sums.entry(row.key).or_default().add(&row.amounts);
            }
            t.through = through;
            t.lag_events = last - through;
            if through == last {
                t.current_at = now;
            }
            Ok(through < last)
        }
        _ => {
            let range = LiveRange {
                after: 0,
                through: last,
                since,
                until,
            };
            let mut sums: BTreeMap<LiveKey, LiveAmounts> = BTreeMap::new();
            for row in store.live_movements(&range).await? {
                sums.entry(row.key).or_default().add(&row.amounts);
            }
            tracing::info!(%today, through = last, keys = sums.len(), "live view seeded");
            *totals = Some(Totals {
                day: today,
                through: last,
                current_at: now,
                lag_events: 0,
                sums,
            });
            Ok(false)
        }
    }
}

/// Today's movements of one carrier, line and currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveLine {
    #[schema(example = "northwind")]
    pub carrier: String,
    #[schema(example = "personal_auto")]
    pub line_of_business: String,
    #[schema(example = "EUR")]
    pub currency: String,
    /// Premium transactions recorded today (new business, endorsements, cancellations, …).
    #[schema(example = 12)]
    pub premium_transactions: u64,
    /// Their sum: premium written today (return premium counts negative).
    #[schema(value_type = String, example = "10234.50")]
    pub premium_written: Decimal,
    /// Claims created today.
    #[schema(example = 2)]
    pub claims_new: u64,
    /// Claim transactions recorded today (payments, recoveries, reserve changes).
    #[schema(example = 3)]
    pub claim_transactions: u64,
    /// The change of incurred (paid + reserve) they make.
    #[schema(value_type = String, example = "4200.00")]
    pub claims_incurred: Decimal,
    /// The change of paid (payments less recoveries).
    #[schema(value_type = String, example = "1200.00")]
    pub claims_paid: Decimal,
}

/// Today's live totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveInsights {
    /// The UTC day the totals are of.
    #[schema(example = "2026-11-26")]
    pub day: NaiveDate,
    /// When the totals last held every event published by then.
    pub as_of: DateTime<Utc>,
    /// Published events not yet in the totals, when last checked (0 when current).
    #[schema(example = 0)]
    pub lag_events: i64,
    /// By carrier, line of business and currency, in that order; only those with movements.
    pub items: Vec<LiveLine>,
}

#[utoipa::path(get, path = "/v1/insights/live", tag = "insights", operation_id = "live_insights",
    summary = "Today's premium and claims, kept current from the change events",
    description = "Premium transactions and claims of the current UTC day by carrier, line of business and currency, within the caller's scope. Each API process keeps the totals in memory and adds the movements of every change event as it is published (within a second or so); `as_of` says when they last held every published event.",
    params(
        ("carrier" = Option<String>, Query, example = "northwind", description = "Only this carrier"),
        ("line" = Option<LineOfBusiness>, Query, description = "Only this line of business"),
    ),
    responses(
        (status = 200, description = "Today's totals", body = LiveInsights,
            example = json!({"day": "2026-11-26", "as_of": "2026-11-26T10:15:02.120Z", "lag_events": 0,
                "items": [{"carrier": "northwind", "line_of_business": "personal_auto", "currency": "EUR",
                    "premium_transactions": 12, "premium_written": "10234.50", "claims_new": 2,
                    "claim_transactions": 3, "claims_incurred": "4200.00", "claims_paid": "1200.00"}]})),
        (status = 400, description = "An unknown parameter or line of business", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn live(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Q,
) -> Result<Json<LiveInsights>, Problem> {
    let p = Params::new(q, &["carrier", "line"])?;
    let carrier = p.text("carrier");
    let line = p.parsed::<LineOfBusiness>("line")?.map(|l| l.code());
    state.live.start(&state);
    let Some(totals) = state.live.current(FIRST_SEED).await else {
        return Err(Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "live-view-starting",
            "Service Unavailable",
            "the live view has not read today's totals yet: try again shortly",
        ));
    };
    let mut lines: BTreeMap<(&str, &str, &str), LiveAmounts> = BTreeMap::new();
    for (key, amounts) in &totals.sums {
        let wanted = caller.scope.allows_carrier(&key.carrier)
            && caller.scope.allows_book(key.book.as_deref())
            && carrier.as_deref().is_none_or(|c| c == key.carrier)
            && line.is_none_or(|l| l == key.line_of_business);
        if wanted {
            lines
                .entry((
                    key.carrier.as_str(),
                    key.line_of_business.as_str(),
                    key.currency.as_str(),
                ))
                .or_default()
                .add(amounts);
        }
    }
    let items = lines
        .into_iter()
        .filter(|(_, a)| !a.is_zero())
        .map(|((carrier, line, currency), a)| LiveLine {
            carrier: carrier.to_owned(),
            line_of_business: line.to_owned(),
            currency: currency.to_owned(),
            premium_transactions: a.premium_transactions,
            premium_written: a.premium_written,
            claims_new: a.claims_new,
            claim_transactions: a.claim_transactions,
            claims_incurred: a.claims_incurred,
            claims_paid: a.claims_paid,
        })
        .collect();
    Ok(Json(LiveInsights {
        day: totals.day,
        as_of: totals.current_at,
        lag_events: totals.lag_events,
        items,
    }))
}
