//! `GET /v1/insights/...`: insurance metrics over the warehouse, within the caller's scope
//! (docs/insights.md defines each). The handlers parse and check the parameters, naming the
//! one at fault; the metrics are computed by `carrierhub_warehouse::insights`.

use crate::caller::Caller;
use crate::params::Params;
use crate::problem::Problem;
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use carrierhub_model::{CarrierId, LineOfBusiness};
use carrierhub_store::{parse_as_of, Scope};
use carrierhub_warehouse::insights::{
    Dim, EarnedItem, Filter, FrequencySeverityItem, Grain, InForceItem, IncurredItem, Insights,
    LossRatioItem, Measure, Period, PremiumItem, TriangleItem, MAX_PERIODS,
};
use carrierhub_warehouse::{QueryEngine, QueryError};
use chrono::{Datelike, NaiveDate, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::str::FromStr;
use utoipa::{IntoParams, ToSchema};

type Q = Query<HashMap<String, String>>;

/// The filters and breakdowns of every metric.
#[allow(dead_code)] // parsed by `filter`; declared for the document
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    /// Only this carrier (within the caller's scope: another carrier's numbers are never
    /// seen, whatever this says).
    #[param(example = "northwind")]
    carrier: Option<String>,
    /// Only this line of business.
    #[param(value_type = Option<LineOfBusiness>)]
    line: Option<String>,
    /// Only this book: the policies' producer code.
    book: Option<String>,
    /// Break the answer down by these dimensions, comma-separated: `carrier`, `line`,
    /// `book` (it always is by currency).
    #[param(example = "carrier,line")]
    group_by: Option<String>,
    /// Read the warehouse as it was known at this instant (RFC 3339, or a date for midnight
    /// UTC): the versions and transactions recorded then. Now by default.
    known_at: Option<String>,
}

/// A period of days, optionally in calendar buckets.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeriodParams {
    /// The period's first day (included); 1 January of `to`'s year by default.
    #[param(example = "2025-01-01")]
    from: Option<NaiveDate>,
    /// The period's last day (included); today (UTC) by default.
    #[param(example = "2025-12-31")]
    to: Option<NaiveDate>,
    /// Break the period down by month, quarter or year (at most 1200 periods); one total
    /// for the whole period without it.
    #[param(value_type = Option<Grain>, inline, example = "quarter")]
    grain: Option<String>,
}

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InForceParams {
    /// The day the policies are in force; today (UTC) by default.
    #[param(example = "2025-06-30")]
    as_of: Option<NaiveDate>,
}

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TriangleParams {
    /// The first loss date of the accident periods (included); 1 January four years before
    /// `as_of`'s year by default.
    #[param(example = "2024-01-01")]
    from: Option<NaiveDate>,
    /// The last loss date of the accident periods (included); `as_of` by default.
    #[param(example = "2025-12-31")]
    to: Option<NaiveDate>,
    /// The valuation date: transactions recorded on or before it; today (UTC) by default.
    #[param(example = "2026-12-31")]
    as_of: Option<NaiveDate>,
    /// Accident and development periods: month, quarter or year (the default).
    #[param(value_type = Option<Grain>, inline, example = "year")]
    grain: Option<String>,
    /// `paid` (payments and recoveries) or `incurred` (and reserve changes; the default).
    #[param(value_type = Option<Measure>, inline, example = "incurred")]
    measure: Option<String>,
}

const FILTERS: [&str; 5] = ["carrier", "line", "book", "group_by", "known_at"];
const PERIOD: [&str; 3] = ["from", "to", "grain"];

fn params(q: HashMap<String, String>, more: &[&str]) -> Result<Params, Problem> {
    let allowed: Vec<&str> = FILTERS.iter().chain(more).copied().collect();
    Params::new(q, &allowed)
}

fn bad(name: &str, detail: String) -> Problem {
    Problem::bad_request(format!("query parameter '{name}': {detail}")).with("field", name)
}

fn filter(p: &Params) -> Result<Filter, Problem> {
    let carrier = p
        .text("carrier")
        .map(|c| {
            CarrierId::parse(&c)
                .map(|_| c.clone())
                .map_err(|e| bad("carrier", e.to_string()))
        })
        .transpose()?;
    let line = p
        .text("line")
        .map(|l| {
            LineOfBusiness::from_str(&l)
                .map(|v| v.code().to_owned())
                .map_err(|e| bad("line", e.to_string()))
        })
        .transpose()?;
    let book = p.text("book");
    if let Some(b) = &book {
        if b.len() > 200 || b.chars().any(char::is_control) {
            return Err(bad(
                "book",
                "a producer code of at most 200 characters without control characters".into(),
            ));
        }
    }
    let mut group_by = Vec::new();
    for item in p
        .text("group_by")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let dim = Dim::parse(item).ok_or_else(|| {
            bad(
                "group_by",
                format!("unknown dimension '{item}'; the dimensions are carrier, line, book"),
            )
        })?;
        if !group_by.contains(&dim) {
            group_by.push(dim);
        }
    }
    let known_at = match p.text("known_at") {
        Some(t) => parse_as_of(&t).map_err(|e| bad("known_at", e))?,
        None => Utc::now(),
    };
    Ok(Filter {
        carrier,
        line,
        book,
        group_by,
        known_at,
    })
}

fn date(p: &Params, name: &str) -> Result<Option<NaiveDate>, Problem> {
    p.text(name)
        .map(|v| {
            NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
                .map_err(|e| bad(name, format!("'{v}' is not a date YYYY-MM-DD: {e}")))
        })
        .transpose()
}

fn grain(p: &Params) -> Result<Option<Grain>, Problem> {
    p.text("grain")
        .map(|g| {
            Grain::parse(&g).ok_or_else(|| {
                bad(
                    "grain",
                    format!("unknown grain '{g}'; the grains are month, quarter, year"),
                )
            })
        })
        .transpose()
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn jan_first(year: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, 1, 1).unwrap_or(NaiveDate::MIN)
}

fn period(p: &Params) -> Result<Period, Problem> {
    let to = date(p, "to")?.unwrap_or_else(today);
    let from = date(p, "from")?.unwrap_or_else(|| jan_first(to.year()));
    if from > to {
        return Err(bad("from", format!("{from} is after 'to' ({to})")));
    }
    let period = Period {
        from,
        to,
        grain: grain(p)?,
    };
    period
        .buckets()
        .map_err(|_| bad("grain", format!("more than {MAX_PERIODS} periods")))?;
    Ok(period)
}

fn engine(state: &AppState) -> Result<&QueryEngine, Problem> {
    state.query.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "warehouse-unavailable",
            "Warehouse unavailable",
            "this server has no warehouse to compute insights from",
        )
    })
}

fn failure(e: QueryError) -> Problem {
    crate::query::limit_exceeded(&e).unwrap_or_else(|| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "insight-failed",
            "Insight failed",
            e.to_string(),
        )
    })
}

/// Written premium by period.
#[derive(Serialize, ToSchema)]
pub struct PremiumAnswer {
    #[schema(example = "2025-01-01")]
    pub from: NaiveDate,
    #[schema(example = "2025-12-31")]
    pub to: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grain: Option<Grain>,
    pub items: Vec<PremiumItem>,
}

/// Policies in force at a date.
#[derive(Serialize, ToSchema)]
pub struct InForceAnswer {
    #[schema(example = "2025-06-30")]
    pub as_of: NaiveDate,
    pub items: Vec<InForceItem>,
}

/// Earned premium of a period.
#[derive(Serialize, ToSchema)]
pub struct EarnedAnswer {
    #[schema(example = "2025-01-01")]
    pub from: NaiveDate,
    #[schema(example = "2025-12-31")]
    pub to: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grain: Option<Grain>,
    pub items: Vec<EarnedItem>,
}

/// Incurred losses of a period (calendar basis).
#[derive(Serialize, ToSchema)]
pub struct IncurredAnswer {
    #[schema(example = "2025-01-01")]
    pub from: NaiveDate,
    #[schema(example = "2025-12-31")]
    pub to: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grain: Option<Grain>,
    pub items: Vec<IncurredItem>,
}

/// Loss ratios of a period.
#[derive(Serialize, ToSchema)]
pub struct LossRatioAnswer {
    #[schema(example = "2025-01-01")]
    pub from: NaiveDate,
    #[schema(example = "2025-12-31")]
    pub to: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grain: Option<Grain>,
    pub items: Vec<LossRatioItem>,
}

/// Claim frequency and severity of a period (accident basis).
#[derive(Serialize, ToSchema)]
pub struct FrequencySeverityAnswer {
    #[schema(example = "2025-01-01")]
    pub from: NaiveDate,
    #[schema(example = "2025-12-31")]
    pub to: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grain: Option<Grain>,
    pub items: Vec<FrequencySeverityItem>,
}

/// Loss-development triangles.
#[derive(Serialize, ToSchema)]
pub struct TriangleAnswer {
    #[schema(example = "2024-01-01")]
    pub from: NaiveDate,
    #[schema(example = "2025-12-31")]
    pub to: NaiveDate,
    /// The valuation date.
    #[schema(example = "2026-12-31")]
    pub as_of: NaiveDate,
    pub grain: Grain,
    pub measure: Measure,
    /// One row per accident period (and group), oldest first.
    pub items: Vec<TriangleItem>,
}

/// What the period metrics share: parameters, engine, filter, period.
struct Request<'a> {
    insights: Insights<'a>,
    filter: Filter,
    period: Period,
}

fn period_request<'a>(
    state: &'a AppState,
    scope: &'a Scope,
    q: HashMap<String, String>,
) -> Result<Request<'a>, Problem> {
    let p = params(q, &PERIOD)?;
    let filter = filter(&p)?;
    let period = period(&p)?;
    Ok(Request {
        insights: Insights::new(engine(state)?, scope),
        filter,
        period,
    })
}

#[utoipa::path(get, path = "/v1/insights/premium", tag = "insights", operation_id = "insights_premium",
    summary = "Gross written premium",
    description = "The written premium of the premium transactions dated (`effective_date`) in the period, by period and the dimensions asked for: new business, endorsements, cancellations (negative) and reinstatements as recorded, and a renewal for the new term's whole premium. See docs/insights.md.",
    params(FilterParams, PeriodParams),
    responses(
        (status = 200, description = "Written premium", body = PremiumAnswer),
        (status = 408, description = "The computation ran past the query time limit", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The computation needed more memory than the query limit", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The computation failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This server has no warehouse", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn premium(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Q,
) -> Result<Json<PremiumAnswer>, Problem> {
    let r = period_request(&state, &caller.scope, q)?;
    let items = r
        .insights
        .premium(&r.filter, &r.period)
        .await
        .map_err(failure)?;
    Ok(Json(PremiumAnswer {
        from: r.period.from,
        to: r.period.to,
        grain: r.period.grain,
        items,
    }))
}

#[utoipa::path(get, path = "/v1/insights/in-force", tag = "insights", operation_id = "insights_in_force",
    summary = "Policies and premium in force at a date",
    description = "Policy terms in force on `as_of` (term start ≤ `as_of` < term end; a cancelled term only before its cancellation's date) and their premium on that day (the term's premium less the movements dated after it). See docs/insights.md.",
    params(FilterParams, InForceParams),
    responses(
        (status = 200, description = "In-force policies and premium", body = InForceAnswer),
        (status = 408, description = "The computation ran past the query time limit", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The computation needed more memory than the query limit", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The computation failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This server has no warehouse", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn in_force(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Q,
) -> Result<Json<InForceAnswer>, Problem> {
    let p = params(q, &["as_of"])?;
    let filter = filter(&p)?;
    let as_of = date(&p, "as_of")?.unwrap_or_else(today);
    let insights = Insights::new(engine(&state)?, &caller.scope);
    let items = insights.in_force(&filter, as_of).await.map_err(failure)?;
    Ok(Json(InForceAnswer { as_of, items }))
}

#[utoipa::path(get, path = "/v1/insights/earned", tag = "insights", operation_id = "insights_earned",
    summary = "Earned premium",
    description = "Each premium transaction's written amount earned evenly per day from its date to the end of its policy term; the days of the period (or of each of its periods) are summed. See docs/insights.md.",
    params(FilterParams, PeriodParams),
    responses(
        (status = 200, description = "Earned premium", body = EarnedAnswer),
        (status = 408, description = "The computation ran past the query time limit", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The computation needed more memory than the query limit", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The computation failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This server has no warehouse", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn earned(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Q,
) -> Result<Json<EarnedAnswer>, Problem> {
    let r = period_request(&state, &caller.scope, q)?;
    let items = r
        .insights
        .earned(&r.filter, &r.period)
        .await
        .map_err(failure)?;
    Ok(Json(EarnedAnswer {
        from: r.period.from,
        to: r.period.to,
        grain: r.period.grain,
        items,
    }))
}

#[utoipa::path(get, path = "/v1/insights/incurred", tag = "insights", operation_id = "insights_incurred",
    summary = "Incurred losses",
    description = "Paid (payments less recoveries) plus reserve changes of the claim transactions recorded in the period (calendar basis, by UTC recording day). See docs/insights.md.",
    params(FilterParams, PeriodParams),
    responses(
        (status = 200, description = "Incurred losses", body = IncurredAnswer),
        (status = 408, description = "The computation ran past the query time limit", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The computation needed more memory than the query limit", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The computation failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This server has no warehouse", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn incurred(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Q,
) -> Result<Json<IncurredAnswer>, Problem> {
    let r = period_request(&state, &caller.scope, q)?;
    let items = r
        .insights
        .incurred(&r.filter, &r.period)
        .await
        .map_err(failure)?;
    Ok(Json(IncurredAnswer {
        from: r.period.from,
        to: r.period.to,
        grain: r.period.grain,
        items,
    }))
}

#[utoipa::path(get, path = "/v1/insights/loss-ratio", tag = "insights", operation_id = "insights_loss_ratio",
    summary = "Loss ratio",
    description = "Incurred losses (calendar basis) over earned premium of the same period and group, to 4 places; null when nothing was earned. See docs/insights.md.",
    params(FilterParams, PeriodParams),
    responses(
        (status = 200, description = "Loss ratios", body = LossRatioAnswer),
        (status = 408, description = "The computation ran past the query time limit", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The computation needed more memory than the query limit", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The computation failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This server has no warehouse", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn loss_ratio(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Q,
) -> Result<Json<LossRatioAnswer>, Problem> {
    let r = period_request(&state, &caller.scope, q)?;
    let items = r
        .insights
        .loss_ratio(&r.filter, &r.period)
        .await
        .map_err(failure)?;
    Ok(Json(LossRatioAnswer {
        from: r.period.from,
        to: r.period.to,
        grain: r.period.grain,
        items,
    }))
}

#[utoipa::path(get, path = "/v1/insights/frequency-severity", tag = "insights", operation_id = "insights_frequency_severity",
    summary = "Claim frequency and severity",
    description = "Claims with a loss date in the period per policy-year of exposure (days in force in the period / 365), and their incurred to date per claim. See docs/insights.md.",
    params(FilterParams, PeriodParams),
    responses(
        (status = 200, description = "Frequency and severity", body = FrequencySeverityAnswer),
        (status = 408, description = "The computation ran past the query time limit", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The computation needed more memory than the query limit", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The computation failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This server has no warehouse", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn frequency_severity(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Q,
) -> Result<Json<FrequencySeverityAnswer>, Problem> {
    let r = period_request(&state, &caller.scope, q)?;
    let items = r
        .insights
        .frequency_severity(&r.filter, &r.period)
        .await
        .map_err(failure)?;
    Ok(Json(FrequencySeverityAnswer {
        from: r.period.from,
        to: r.period.to,
        grain: r.period.grain,
        items,
    }))
}

#[utoipa::path(get, path = "/v1/insights/triangles", tag = "insights", operation_id = "insights_triangles",
    summary = "Loss-development triangles",
    description = "Accident period (of the loss date) × development age (periods from the accident period to the period the transaction was recorded in, 0 for the same period), cumulative, valued at `as_of`. `measure=paid` adds payments and recoveries, `incurred` reserve changes too. See docs/insights.md.",
    params(FilterParams, TriangleParams),
    responses(
        (status = 200, description = "Triangles, one row per accident period", body = TriangleAnswer),
        (status = 408, description = "The computation ran past the query time limit", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The computation needed more memory than the query limit", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The computation failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This server has no warehouse", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn triangles(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Q,
) -> Result<Json<TriangleAnswer>, Problem> {
    let p = params(q, &["from", "to", "as_of", "grain", "measure"])?;
    let filter = filter(&p)?;
    let as_of = date(&p, "as_of")?.unwrap_or_else(today);
    let to = date(&p, "to")?.unwrap_or(as_of);
    let from = date(&p, "from")?.unwrap_or_else(|| jan_first(as_of.year() - 4));
    if from > to {
        return Err(bad("from", format!("{from} is after 'to' ({to})")));
    }
    let grain = grain(&p)?.unwrap_or(Grain::Year);
    let measure = match p.text("measure") {
        Some(m) => Measure::parse(&m).ok_or_else(|| {
            bad(
                "measure",
                format!("unknown measure '{m}'; the measures are paid, incurred"),
            )
        })?,
        None => Measure::Incurred,
    };
    let span = grain.index(as_of.max(to)) - grain.index(from) + 1;
    if span > MAX_PERIODS / 2 {
        return Err(bad(
            "grain",
            format!(
                "{span} periods from {from} to {}: at most {}",
                as_of.max(to),
                MAX_PERIODS / 2
            ),
        ));
    }
    let insights = Insights::new(engine(&state)?, &caller.scope);
    let items = insights
        .triangles(&filter, from, to, grain, measure, as_of)
        .await
        .map_err(failure)?;
    Ok(Json(TriangleAnswer {
        from,
        to,
        as_of,
        grain,
        measure,
        items,
    }))
}
