//! Rate limits: one behaviour suite run on both backends (`memory::NAME`, `redis::NAME`),
//! through the limiter and through the axum middleware, plus Redis-only tests: two replicas
//! sharing one budget under load, keys that expire, and a backend that fails.
//!
//! Redis is the real server at `redis://127.0.0.1:6379` (or `CARRIERHUB_TEST_REDIS_URL`);
//! each test writes under a key prefix of its own. Without a server the Redis tests are
//! skipped with a notice, except under `CI=true`, where that is a failure.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use carrierhub_api::ratelimit::{RATELIMIT, RATELIMIT_POLICY};
use carrierhub_api::{
    rate_limit, Caller, OnBackendError, RateLimitConfig, RateLimiter, RateLimits, RouteClass,
};
use carrierhub_store::testing::running_in_ci;
use carrierhub_store::{RateLimit, Role};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const REDIS_URL_VAR: &str = "CARRIERHUB_TEST_REDIS_URL";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Instantiates each named test (an `async fn(Target)`) once per backend.
macro_rules! both_backends {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Target::memory()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(target) =
                        super::Target::redis(concat!("redis::", stringify!($test))).await
                    else {
                        return;
                    };
                    super::$test(target).await;
                }
            )*
        }
    };
}

both_backends!(
    a_burst_is_allowed_then_refused,
    the_budget_refills_with_time,
    subjects_and_classes_are_independent,
    responses_carry_the_ratelimit_fields,
    a_refused_request_gets_429_with_a_problem,
    a_keys_own_limit_beats_its_roles,
    requests_without_a_caller_are_not_limited,
    concurrent_requests_share_one_budget,
);

/// A backend with budgets of the test's own: a new in-process limiter, or a prefix of
/// its own in Redis.
struct Target {
    url: Option<String>,
    prefix: String,
}

fn redis_url() -> String {
    std::env::var(REDIS_URL_VAR)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned())
}

fn unique_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "carrierhub:rl:test:{}-{nanos:x}-{}:",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Target {
    fn memory() -> Self {
        Self {
            url: None,
            prefix: unique_prefix(),
        }
    }

    /// `None` (the test skips) when Redis does not answer, except under CI.
    async fn redis(test: &str) -> Option<Self> {
        let url = redis_url();
        match RateLimiter::redis(&url).await {
            Ok(_) => Some(Self {
                url: Some(url),
                prefix: unique_prefix(),
            }),
            Err(e) if running_in_ci() => panic!(
                "{test}: Redis is required when CI=true, and {e}. Start the server or set \
                 {REDIS_URL_VAR}"
            ),
            Err(e) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "note: skipping {test}: {e}. Start Redis or set {REDIS_URL_VAR} to run it \
                     (with CI=true this is a failure)"
                );
                None
            }
        }
    }

    fn is_redis(&self) -> bool {
        self.url.is_some()
    }

    /// A limiter on the test's budgets. For Redis each call is a new connection, as another
    /// API replica would have; in memory, budgets are the process's, so this is a new,
    /// empty limiter each time.
    async fn limiter(&self) -> RateLimiter {
        let limiter = match &self.url {
            Some(url) => RateLimiter::redis(url).await.expect("connect to Redis"),
            None => RateLimiter::in_memory(),
        };
        limiter.with_key_prefix(self.prefix.clone())
    }

    async fn limits(&self, config: RateLimitConfig) -> Arc<RateLimits> {
        Arc::new(RateLimits::new(config, self.limiter().await))
    }
}

fn limit(text: &str) -> RateLimit {
    text.parse().expect("a rate limit")
}

fn caller(subject: &str, role: Role) -> Caller {
    Caller {
        subject: subject.into(),
        role,
        ..Caller::development()
    }
}

// ---------------------------------------------------------------------------------------------
// Through the limiter

async fn a_burst_is_allowed_then_refused(target: Target) {
    let limiter = target.limiter().await;
    let five = limit("5/1s");
    for remaining in (0..5).rev() {
        let d = limiter
            .check(RouteClass::Reads, "alice", five)
            .await
            .expect("check");
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.remaining, remaining);
        assert_eq!(d.limit, five);
        assert_eq!(d.retry_after, Duration::ZERO);
        assert!(d.reset_after <= Duration::from_secs(1), "{d:?}");
    }
    let refused = limiter
        .check(RouteClass::Reads, "alice", five)
        .await
        .expect("check");
    assert!(!refused.allowed);
    assert_eq!(refused.remaining, 0);
    // One request comes back every 200 ms; a little of it has passed since the burst.
    assert!(
        refused.retry_after > Duration::from_millis(100)
            && refused.retry_after <= Duration::from_millis(200),
        "{refused:?}"
    );
    assert!(
        refused.reset_after > Duration::from_millis(900)
            && refused.reset_after <= Duration::from_secs(1),
        "{refused:?}"
    );
    // Refused requests spend nothing: still refused, not further away.
    let again = limiter
        .check(RouteClass::Reads, "alice", five)
        .await
        .expect("check");
    assert!(!again.allowed && again.retry_after <= refused.retry_after);
}

async fn the_budget_refills_with_time(target: Target) {
    let limiter = target.limiter().await;
    let five = limit("5/1s");
    let check = || limiter.check(RouteClass::Writes, "bob", five);
    for _ in 0..5 {
        assert!(check().await.expect("check").allowed);
    }
    let refused = check().await.expect("check");
    assert!(!refused.allowed);
    tokio::time::sleep(refused.retry_after + Duration::from_millis(30)).await;
    let one = check().await.expect("check");
    assert!(
        one.allowed,
        "one request came back after Retry-After: {one:?}"
    );
    assert_eq!(one.remaining, 0);
    assert!(!check().await.expect("check").allowed, "only one came back");
    // After a whole window the whole burst is back.
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    for remaining in (0..5).rev() {
        let d = check().await.expect("check");
        assert!(d.allowed && d.remaining == remaining, "{d:?}");
    }
    assert!(!check().await.expect("check").allowed);
}

async fn subjects_and_classes_are_independent(target: Target) {
    let limiter = target.limiter().await;
    let two = limit("2/60s");
    for _ in 0..2 {
        assert!(
            limiter
                .check(RouteClass::Reads, "alice", two)
                .await
                .unwrap()
                .allowed
        );
    }
    assert!(
        !limiter
            .check(RouteClass::Reads, "alice", two)
            .await
            .unwrap()
            .allowed
    );
    for class in [RouteClass::Writes, RouteClass::Uploads, RouteClass::Queries] {
        let d = limiter.check(class, "alice", two).await.unwrap();
        assert!(d.allowed && d.remaining == 1, "{class}: {d:?}");
    }
    let bob = limiter.check(RouteClass::Reads, "bob", two).await.unwrap();
    assert!(bob.allowed && bob.remaining == 1, "{bob:?}");
    // A subject that is hashed into its key is a budget of its own too.
    let long = "https://idp.example/".to_owned() + &"x".repeat(200);
    let d = limiter.check(RouteClass::Reads, &long, two).await.unwrap();
    assert!(d.allowed && d.remaining == 1, "{d:?}");
    assert!(
        !limiter
            .check(RouteClass::Reads, "alice", two)
            .await
            .unwrap()
            .allowed
    );
}

/// Several tasks (and for Redis, two connections, as two API replicas would have) spend
/// one subject's budget for about 3 s: no more than burst + rate × elapsed is allowed,
/// and the limiter is not merely refusing either.
async fn concurrent_requests_share_one_budget(target: Target) {
    let budget = limit("20/1s");
    let replicas = if target.is_redis() {
        vec![target.limiter().await, target.limiter().await]
    } else {
        let shared = target.limiter().await;
        vec![shared.clone(), shared]
    };
    let run_for = Duration::from_secs(3);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for limiter in &replicas {
        for _ in 0..4 {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                let (mut allowed, mut checks) = (0u64, 0u64);
                while started.elapsed() < run_for {
                    let d = limiter
                        .check(RouteClass::Queries, "hammer", budget)
                        .await
                        .expect("check");
                    checks += 1;
                    if d.allowed {
                        allowed += 1;
                    }
                }
                (allowed, checks)
            }));
        }
    }
    let (mut allowed, mut checks) = (0, 0);
    for task in tasks {
        let (a, c) = task.await.expect("task");
        allowed += a;
        checks += c;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bound = 20.0 + 20.0 * elapsed + 1.0;
    eprintln!("{allowed} allowed of {checks} checks in {elapsed:.2}s (bound {bound:.1})");
    assert!(checks > 2 * allowed, "the budget was not under pressure");
    assert!(
        (allowed as f64) <= bound,
        "{allowed} allowed, more than {bound:.1}"
    );
    // The floor counts only the time the tasks were asked to run: on a loaded machine the
    // tasks may finish well after it, which raises the ceiling but allows nothing more.
    let floor = 0.8 * (20.0 + 20.0 * run_for.as_secs_f64());
    assert!(
        (allowed as f64) >= floor,
        "{allowed} allowed, under {floor:.1}"
    );
}

// ---------------------------------------------------------------------------------------------
// Through the middleware

/// A router with a read, an upload and a query route, the rate limits, and outside them a
/// stand-in for authentication that puts `caller` in the request.
fn app(limits: Arc<RateLimits>, caller: Option<Caller>) -> Router {
    Router::new()
        .route("/v1/policies", get(|| async { "policies" }))
        .route(
            "/v1/carriers/{carrier}/submissions",
            post(|| async { (StatusCode::ACCEPTED, "received") }),
        )
        .route("/v1/portfolio", get(|| async { "portfolio" }))
        .layer(middleware::from_fn_with_state(limits, rate_limit))
        .layer(middleware::from_fn(
            move |mut request: Request, next: Next| {
                let caller = caller.clone();
                async move {
                    if let Some(caller) = caller {
                        request.extensions_mut().insert(caller);
                    }
                    next.run(request).await
                }
            },
        ))
}

async fn send(app: &Router, method: Method, path: &str) -> Response {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .expect("request");
    app.clone().oneshot(request).await.expect("response")
}

fn header(response: &Response, name: impl axum::http::header::AsHeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_owned())
}

async fn json_body(response: Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    serde_json::from_slice(&bytes).expect("a JSON body")
}

fn config(text: &str) -> RateLimitConfig {
    toml::from_str(text).expect("configuration")
}

async fn responses_carry_the_ratelimit_fields(target: Target) {
    let limits = target
        .limits(config("[analyst]\nreads = \"3/60s\"\nqueries = \"10/1m\""))
        .await;
    let app = app(limits, Some(caller("ana", Role::Analyst)));
    // One request every 20 s; `t` is when the whole quota is back.
    for (r, t) in [(2, 20), (1, 40), (0, 60)] {
        let response = send(&app, Method::GET, "/v1/policies").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, RATELIMIT_POLICY).as_deref(),
            Some("\"reads\";q=3;w=60")
        );
        assert_eq!(
            header(&response, RATELIMIT),
            Some(format!("\"reads\";r={r};t={t}"))
        );
        assert_eq!(header(&response, "retry-after"), None);
    }
    let query = send(&app, Method::GET, "/v1/portfolio").await;
    assert_eq!(query.status(), StatusCode::OK);
    assert_eq!(
        header(&query, RATELIMIT_POLICY).as_deref(),
        Some("\"queries\";q=10;w=60")
    );
    assert_eq!(
        header(&query, RATELIMIT).as_deref(),
        Some("\"queries\";r=9;t=6")
    );
}

async fn a_refused_request_gets_429_with_a_problem(target: Target) {
    let limits = target
        .limits(config("[carrier]\nuploads = \"2/10s\""))
        .await;
    let app = app(limits, Some(caller("acme-feed", Role::Carrier)));
    for _ in 0..2 {
        let response = send(&app, Method::POST, "/v1/carriers/acme/submissions").await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let refused = send(&app, Method::POST, "/v1/carriers/acme/submissions").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("5"));
    assert_eq!(
        header(&refused, RATELIMIT_POLICY).as_deref(),
        Some("\"uploads\";q=2;w=10")
    );
    assert_eq!(
        header(&refused, RATELIMIT).as_deref(),
        Some("\"uploads\";r=0;t=10")
    );
    assert_eq!(
        header(&refused, "content-type").as_deref(),
        Some("application/problem+json")
    );
    let problem = json_body(refused).await;
    assert_eq!(
        problem["type"],
        "https://carrierhub.dev/problems/rate-limited"
    );
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["class"], "uploads");
    assert_eq!(problem["limit"], 2);
    assert_eq!(problem["window_secs"], 10);
    assert_eq!(problem["retry_after_secs"], 5);
    let detail = problem["detail"].as_str().expect("a detail");
    assert!(
        detail.contains("uploads") && detail.contains("2 requests per 10s"),
        "{detail}"
    );
    // Reads are another budget.
    let read = send(&app, Method::GET, "/v1/carriers/acme/submissions").await;
    assert_ne!(read.status(), StatusCode::TOO_MANY_REQUESTS);
}

async fn a_keys_own_limit_beats_its_roles(target: Target) {
    let limits = target
        .limits(config("[analyst]\nreads = \"100/60s\""))
        .await;
    let mut own = caller("key-with-limits", Role::Analyst);
    own.rate_limits.insert("reads".into(), limit("2/60s"));
    own.rate_limits.insert("queries".into(), limit("1/60s"));
    let with_override = app(limits.clone(), Some(own));
    let plain = app(limits, Some(caller("plain-key", Role::Analyst)));

    for _ in 0..2 {
        let response = send(&with_override, Method::GET, "/v1/policies").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, RATELIMIT_POLICY).as_deref(),
            Some("\"reads\";q=2;w=60")
        );
    }
    let refused = send(&with_override, Method::GET, "/v1/policies").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);

    let response = send(&plain, Method::GET, "/v1/policies").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, RATELIMIT_POLICY).as_deref(),
        Some("\"reads\";q=100;w=60")
    );
    assert_eq!(
        header(&response, RATELIMIT).as_deref(),
        Some("\"reads\";r=99;t=1")
    );
}

async fn requests_without_a_caller_are_not_limited(target: Target) {
    let limits = target.limits(config("[admin]\nreads = \"1/60s\"")).await;
    let anonymous = app(limits, None);
    for _ in 0..3 {
        let response = send(&anonymous, Method::GET, "/v1/policies").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, RATELIMIT), None);
    }
    let disabled = target
        .limits(config("enabled = false\n[admin]\nreads = \"1/60s\""))
        .await;
    let admin = app(disabled, Some(caller("root", Role::Admin)));
    for _ in 0..3 {
        let response = send(&admin, Method::GET, "/v1/policies").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, RATELIMIT_POLICY), None);
    }
}

// ---------------------------------------------------------------------------------------------
// Redis only

async fn redis_connection(url: &str) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(url)
        .expect("Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_expire_when_the_budget_is_whole() {
    let Some(target) = Target::redis("redis_keys_expire_when_the_budget_is_whole").await else {
        return;
    };
    let url = target.url.clone().expect("Redis");
    let limiter = target.limiter().await;
    let subject = format!("oidc|{}", "y".repeat(300));
    let key = limiter.key(RouteClass::Uploads, &subject);
    assert!(
        key.starts_with(&format!("{}uploads:~", target.prefix)),
        "{key}"
    );
    assert!(key.len() < target.prefix.len() + 80, "{key}");
    assert!(
        limiter
            .check(RouteClass::Uploads, &subject, limit("5/1s"))
            .await
            .expect("check")
            .allowed
    );
    let mut redis = redis_connection(&url).await;
    let ttl: i64 = ::redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .expect("PTTL");
    // The TAT is 200 ms ahead: the key lives that long, then the budget is whole anyway.
    assert!(ttl > 0 && ttl <= 200, "PTTL {ttl}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let exists: i64 = ::redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .expect("EXISTS");
    assert_eq!(exists, 0, "the key outlived its budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_script_is_loaded_again_after_a_flush() {
    let Some(target) = Target::redis("redis_script_is_loaded_again_after_a_flush").await else {
        return;
    };
    let url = target.url.clone().expect("Redis");
    let limiter = target.limiter().await;
    let two = limit("2/60s");
    assert!(
        limiter
            .check(RouteClass::Reads, "s", two)
            .await
            .unwrap()
            .allowed
    );
    // Another test may run the script meanwhile: flushing only makes EVALSHA miss.
    let mut redis = redis_connection(&url).await;
    let _: () = ::redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis)
        .await
        .expect("SCRIPT FLUSH");
    let d = limiter
        .check(RouteClass::Reads, "s", two)
        .await
        .expect("EVAL");
    assert!(d.allowed && d.remaining == 0, "{d:?}");
    assert!(
        !limiter
            .check(RouteClass::Reads, "s", two)
            .await
            .unwrap()
            .allowed
    );
}

/// A backend error, made real: the budget's key holds a hash, so the script fails on the
/// server. `allow` serves the request without the fields, `deny` answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_errors_follow_on_backend_error() {
    let Some(target) = Target::redis("redis_errors_follow_on_backend_error").await else {
        return;
    };
    let url = target.url.clone().expect("Redis");
    let limiter = target.limiter().await;
    let key = limiter.key(RouteClass::Reads, "broken");
    let mut redis = redis_connection(&url).await;
    let _: () = ::redis::cmd("HSET")
        .arg(&key)
        .arg("not")
        .arg("a timestamp")
        .query_async(&mut redis)
        .await
        .expect("HSET");
    let _: () = ::redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(60_000)
        .query_async(&mut redis)
        .await
        .expect("PEXPIRE");
    let error = limiter
        .check(RouteClass::Reads, "broken", limit("5/1s"))
        .await
        .expect_err("a hash is not a budget");
    assert!(error.to_string().contains("Redis"), "{error}");

    let allow = Arc::new(RateLimits::new(RateLimitConfig::default(), limiter.clone()));
    assert_eq!(allow.config().on_backend_error, OnBackendError::Allow);
    let response = send(
        &app(allow, Some(caller("broken", Role::Analyst))),
        Method::GET,
        "/v1/policies",
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, RATELIMIT), None);

    let deny = Arc::new(RateLimits::new(
        config("on_backend_error = \"deny\""),
        limiter,
    ));
    let response = send(
        &app(deny, Some(caller("broken", Role::Analyst))),
        Method::GET,
        "/v1/policies",
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
    let problem = json_body(response).await;
    assert_eq!(
        problem["type"],
        "https://carrierhub.dev/problems/rate-limits-unavailable"
    );
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_at_start() {
    // Port 1 on loopback: nothing listens there.
    let error = RateLimiter::redis("redis://:secret@127.0.0.1:1/0")
        .await
        .expect_err("nothing listens on port 1");
    let text = error.to_string();
    assert!(
        text.contains("cannot connect") && !text.contains("secret"),
        "{text}"
    );
    assert!(RateLimiter::redis("http://127.0.0.1:6379").await.is_err());
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// Refusals are counted by class and role. The recorder is local to this thread, so the
/// test runs its own single-threaded runtime under it.
#[test]
fn refusals_are_counted_by_class_and_role() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let limits = Arc::new(RateLimits::new(
                    config("[carrier]\nuploads = \"1/60s\""),
                    RateLimiter::in_memory(),
                ));
                let app = app(limits, Some(caller("acme-feed", Role::Carrier)));
                let mut statuses = Vec::new();
                for _ in 0..3 {
                    let response = send(&app, Method::POST, "/v1/carriers/acme/submissions").await;
                    statuses.push(response.status().as_u16());
                }
                assert_eq!(statuses, [202, 429, 429]);
            });
    });
    let rendered = handle.render();
    assert!(
        rendered.contains("carrierhub_rate_limited_total{class=\"uploads\",role=\"carrier\"} 2"),
        "{rendered}"
    );
}
