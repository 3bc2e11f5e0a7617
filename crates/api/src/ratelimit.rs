//! Rate limits per caller and route class: a GCRA limiter, kept in the process or shared in
//! Redis, and the axum middleware that applies it.
//!
//! Every request of an authenticated caller falls in one [`RouteClass`]; each (class, caller)
//! pair has its own budget, [`RateLimitConfig::effective_limit`]: the caller's own limit for
//! the class (a key's override), else its role's. A budget of `limit` requests per `window`
//! is enforced with the generic cell rate algorithm (GCRA): one request every
//! `window / limit` on average, with bursts of up to `limit` requests. GCRA keeps a single
//! timestamp per budget (the *theoretical arrival time*, TAT), so there is no window edge at
//! which a client can send twice its limit, and the state is one small key.
//!
//! Both backends run the same arithmetic ([`Gcra`]) on integer microseconds. The in-process
//! backend suits a single API process; with several replicas, [`RateLimiter::redis`] shares
//! the budgets: one Lua script reads, decides and writes atomically on the server, with the
//! server's clock (`TIME`), so the replicas' clocks do not matter and no two replicas can
//! spend the same request.
//!
//! The responses carry the IETF `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers, structured-field syntax); a refused request gets
//! `429` with `Retry-After` and a problem+json body.

use crate::{Caller, Problem};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use carrierhub_store::{RateLimit, Role};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The prefix of every key the limiter writes (in Redis, or in the process's map).
pub const KEY_PREFIX: &str = "carrierhub:rl:";

/// The header field that names the policy: `"reads";q=600;w=60`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The header field with what is left of it: `"reads";r=599;t=1`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

// ---------------------------------------------------------------------------------------------
// Route classes

/// What kind of work a request is, for its budget. Classes keep a burst of cheap reads from
/// starving uploads and the reverse, and let expensive queries have a budget of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteClass {
    /// `GET`, `HEAD` and `OPTIONS` requests that are not queries.
    Reads,
    /// Every other request with another method that is not an upload or a query.
    Writes,
    /// Requests that bring or re-read a whole payload: `POST /v1/carriers/{c}/submissions`,
    /// `POST /v1/submissions/{id}/replay`, `POST /v1/mappings/check`.
    Uploads,
    /// Aggregations over the whole book, whatever the method: `/v1/query`,
    /// `/v1/insights/...`, `/v1/portfolio`.
    Queries,
}

impl RouteClass {
    pub const ALL: [RouteClass; 4] = [
        RouteClass::Reads,
        RouteClass::Writes,
        RouteClass::Uploads,
        RouteClass::Queries,
    ];

    /// The name in the configuration, the keys of [`Caller::rate_limits`] and the headers.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Reads => "reads",
            RouteClass::Writes => "writes",
            RouteClass::Uploads => "uploads",
            RouteClass::Queries => "queries",
        }
    }
}

impl fmt::Display for RouteClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RouteClass {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RouteClass::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!(
                    "unknown route class '{s}'; the classes are reads, writes, uploads, queries"
                )
            })
    }
}

/// The class of a request, from its method and path (the path as the router sees it, from
/// `/v1`; empty segments, such as a trailing slash, are ignored).
pub fn classify(method: &Method, path: &str) -> RouteClass {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if matches!(
        segments.as_slice(),
        ["v1", "query", ..] | ["v1", "insights", ..] | ["v1", "portfolio", ..]
    ) {
        return RouteClass::Queries;
    }
    if method == Method::POST
        && matches!(
            segments.as_slice(),
            ["v1", "carriers", _, "submissions"]
                | ["v1", "submissions", _, "replay"]
                | ["v1", "mappings", "check"]
        )
    {
        return RouteClass::Uploads;
    }
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        RouteClass::Reads
    } else {
        RouteClass::Writes
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// The `[rate_limits]` section of the configuration.
///
/// ```toml
/// [rate_limits]
/// enabled = true                      # default
/// on_backend_error = "allow"          # or "deny"; default "allow"
/// redis_url = "redis://127.0.0.1:6379/0"   # shared budgets; absent: in the process
///
/// [rate_limits.analyst]               # only what differs from the defaults
/// reads = "1200/60s"
/// queries = "30/1m"
/// ```
///
/// A role table may name any of the four classes; a class it does not name keeps its
/// default ([`default_limit`]). A limit is written `LIMIT/WINDOW` with the window in seconds
/// (`60`, `60s`), minutes (`1m`) or hours (`1h`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Whether requests are limited at all. Default `true`.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// What to do with a request when the backend (Redis) cannot answer.
    #[serde(default)]
    pub on_backend_error: OnBackendError,
    /// Redis to share the budgets between API processes (`redis://[:password@]host[:port][/db]`).
    /// Without it each process keeps its own budgets in memory, so N processes behind a load
    /// balancer allow up to N times the limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    #[serde(default)]
    pub admin: ClassLimits,
    #[serde(default)]
    pub operator: ClassLimits,
    #[serde(default)]
    pub analyst: ClassLimits,
    #[serde(default)]
    pub carrier: ClassLimits,
}

fn enabled_by_default() -> bool {
    true
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            on_backend_error: OnBackendError::default(),
            redis_url: None,
            admin: ClassLimits::default(),
            operator: ClassLimits::default(),
            analyst: ClassLimits::default(),
            carrier: ClassLimits::default(),
        }
    }
}

/// The URL's password stays out of logs and panics.
impl fmt::Debug for RateLimitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitConfig")
            .field("enabled", &self.enabled)
            .field("on_backend_error", &self.on_backend_error)
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(carrierhub_store::redact_url),
            )
            .field("admin", &self.admin)
            .field("operator", &self.operator)
            .field("analyst", &self.analyst)
            .field("carrier", &self.carrier)
            .finish()
    }
}

/// A role's limits per class, each replacing the default when given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassLimits {
    #[serde(
        default,
        deserialize_with = "rate_limit_text",
        serialize_with = "rate_limit_as_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub reads: Option<RateLimit>,
    #[serde(
        default,
        deserialize_with = "rate_limit_text",
        serialize_with = "rate_limit_as_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub writes: Option<RateLimit>,
    #[serde(
        default,
        deserialize_with = "rate_limit_text",
        serialize_with = "rate_limit_as_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub uploads: Option<RateLimit>,
    #[serde(
        default,
        deserialize_with = "rate_limit_text",
        serialize_with = "rate_limit_as_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub queries: Option<RateLimit>,
}

impl ClassLimits {
    pub fn get(&self, class: RouteClass) -> Option<RateLimit> {
        match class {
            RouteClass::Reads => self.reads,
            RouteClass::Writes => self.writes,
            RouteClass::Uploads => self.uploads,
            RouteClass::Queries => self.queries,
        }
    }
}

/// `"600/60s"` through [`RateLimit`]'s `FromStr`, so the file reads like the CLI's flags.
fn rate_limit_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RateLimit>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// Writes a limit back as the text it is read from (`600/60s`).
fn rate_limit_as_text<S: serde::Serializer>(
    limit: &Option<RateLimit>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match limit {
        Some(limit) => s.serialize_str(&limit.to_string()),
        None => s.serialize_none(),
    }
}

/// What a request gets when the backend cannot say whether it is within its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBackendError {
    /// Serve it (a warning is logged and `carrierhub_rate_limit_errors_total` counts it): an
    /// outage of Redis does not become an outage of the API.
    #[default]
    Allow,
    /// Refuse it with `503` and `Retry-After: 1`: no request escapes the limits.
    Deny,
}

/// The limit of a role for a class when the configuration names none, per minute:
///
/// | role     | reads | writes | uploads | queries |
/// |----------|------:|-------:|--------:|--------:|
/// | admin    |  6000 |   1200 |     300 |    1200 |
/// | operator |  3000 |    600 |     120 |     600 |
/// | analyst  |   600 |     60 |      10 |     120 |
/// | carrier  |   300 |     60 |      30 |      30 |
pub fn default_limit(role: Role, class: RouteClass) -> RateLimit {
    use RouteClass::*;
    let per_minute = match (role, class) {
        (Role::Admin, Reads) => 6000,
        (Role::Admin, Writes) => 1200,
        (Role::Admin, Uploads) => 300,
        (Role::Admin, Queries) => 1200,
        (Role::Operator, Reads) => 3000,
        (Role::Operator, Writes) => 600,
        (Role::Operator, Uploads) => 120,
        (Role::Operator, Queries) => 600,
        (Role::Analyst, Reads) => 600,
        (Role::Analyst, Writes) => 60,
        (Role::Analyst, Uploads) => 10,
        (Role::Analyst, Queries) => 120,
        (Role::Carrier, Reads) => 300,
        (Role::Carrier, Writes) => 60,
        (Role::Carrier, Uploads) => 30,
        (Role::Carrier, Queries) => 30,
    };
    RateLimit {
        limit: per_minute,
        window_secs: 60,
    }
}

impl RateLimitConfig {
    /// The configured limits of a role.
    pub fn role(&self, role: Role) -> &ClassLimits {
        match role {
            Role::Admin => &self.admin,
            Role::Operator => &self.operator,
            Role::Analyst => &self.analyst,
            Role::Carrier => &self.carrier,
        }
    }

    /// A role's limit for a class: the configured one, else the default.
    pub fn limit(&self, role: Role, class: RouteClass) -> RateLimit {
        self.role(role)
            .get(class)
            .unwrap_or_else(|| default_limit(role, class))
    }

    /// The limit that applies to this caller: its own for the class (a key's override),
    /// else its role's.
    pub fn effective_limit(&self, caller: &Caller, class: RouteClass) -> RateLimit {
        caller
            .rate_limits
            .get(class.as_str())
            .copied()
            .unwrap_or_else(|| self.limit(caller.role, class))
    }
}

// ---------------------------------------------------------------------------------------------
// The algorithm

/// GCRA for one limit, in integer microseconds, shared by both backends (the Redis script
/// is the same arithmetic in Lua, on integers below 2^53, which Lua's doubles hold exactly).
///
/// The emission interval is `window / limit`, rounded up to the microsecond so that it is
/// an integer (a 7/1s limit refills one request every 142,858 µs); the tolerance is
/// `interval × limit`, which admits a burst of exactly `limit` requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gcra {
    interval: u64,
    tolerance: u64,
}

/// One decision of [`Gcra::step`], in microseconds; `tat` is the new TAT to store (only
/// when the request is allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    allowed: bool,
    remaining: u64,
    reset_after: u64,
    retry_after: u64,
    tat: Option<u64>,
}

impl Gcra {
    fn new(limit: RateLimit) -> Self {
        let window = u64::from(limit.window_secs.max(1)) * 1_000_000;
        let n = u64::from(limit.limit.max(1));
        let interval = window.div_ceil(n).max(1);
        Self {
            interval,
            tolerance: interval * n,
        }
    }

    /// The request arriving at `now`, given the stored TAT (none: an idle budget).
    fn step(self, now: u64, stored: Option<u64>) -> Step {
        let tat = stored.unwrap_or(now).max(now);
        let new_tat = tat + self.interval;
        let ahead = new_tat - now;
        if ahead > self.tolerance {
            Step {
                allowed: false,
                remaining: 0,
                reset_after: tat - now,
                retry_after: ahead - self.tolerance,
                tat: None,
            }
        } else {
            Step {
                allowed: true,
                remaining: (self.tolerance - ahead) / self.interval,
                reset_after: ahead,
                retry_after: 0,
                tat: Some(new_tat),
            }
        }
    }
}

/// The same step as [`Gcra::step`], atomically on the Redis server. KEYS[1] is the budget's
/// key; ARGV[1] the interval and ARGV[2] the tolerance, in microseconds. It answers
/// `{allowed, remaining, reset_after, retry_after}` (microseconds). The key expires when the
/// budget is whole again (its TAT), so idle budgets take no memory. `replicate_commands`
/// is implied from Redis 5 on and needed before it to write after `TIME`.
const GCRA_SCRIPT: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  tat = tonumber(stored)
  if tat == nil then return redis.error_reply('rate limit key ' .. KEYS[1] .. ' holds no timestamp') end
  if tat < now then tat = now end
end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > tolerance then
  return {0, 0, tat - now, ahead - tolerance}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(ahead / 1000))
return {1, math.floor((tolerance - ahead) / interval), ahead, 0}
"#;

// ---------------------------------------------------------------------------------------------
// The limiter

/// The outcome of one request against its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The budget the request was counted against.
    pub limit: RateLimit,
    /// Requests that may follow at once (after this one, when it was allowed).
    pub remaining: u32,
    /// Until the whole budget is available again.
    pub reset_after: Duration,
    /// Until a refused request would be allowed; zero when allowed.
    pub retry_after: Duration,
}

impl Decision {
    fn from_step(limit: RateLimit, step: &Step) -> Self {
        Self {
            allowed: step.allowed,
            limit,
            remaining: u32::try_from(step.remaining).unwrap_or(u32::MAX),
            reset_after: Duration::from_micros(step.reset_after),
            retry_after: Duration::from_micros(step.retry_after),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    #[error("rate limits: '{url}' is not a usable Redis URL: {source}")]
    InvalidUrl {
        url: String,
        source: redis::RedisError,
    },
    #[error("rate limits: cannot connect to Redis at {url}: {source}")]
    Connect {
        url: String,
        source: redis::RedisError,
    },
    #[error("rate limits: Redis failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("rate limits: Redis answered {0:?}, not a decision")]
    UnexpectedAnswer(Vec<i64>),
}

/// Budgets per (class, subject), in this process or shared in Redis. Cheap to clone: clones
/// share the budgets.
#[derive(Clone)]
pub struct RateLimiter {
    backend: Backend,
    prefix: Arc<str>,
}

#[derive(Clone)]
enum Backend {
    Memory(Arc<Memory>),
    Redis(RedisBackend),
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("backend", &self.backend_name())
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// How long a Redis connection attempt, and then a call, may take before the request is
/// treated as a backend error ([`OnBackendError`]).
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

impl RateLimiter {
    /// Budgets in this process's memory.
    pub fn in_memory() -> Self {
        Self {
            backend: Backend::Memory(Arc::new(Memory::new(MEMORY_SWEEP_EVERY))),
            prefix: KEY_PREFIX.into(),
        }
    }

    /// Budgets in Redis, shared by every process that uses the same server and prefix.
    /// Connects once (an unreachable server is an error here, at start); afterwards the
    /// connection is re-established by itself, and calls fail meanwhile.
    pub async fn redis(url: &str) -> Result<Self, RateLimitError> {
        let shown = carrierhub_store::redact_url(url);
        let client = redis::Client::open(url).map_err(|source| RateLimitError::InvalidUrl {
            url: shown.clone(),
            source,
        })?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_CONNECT_TIMEOUT))
            .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT))
            .set_number_of_retries(2);
        let connection = redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|source| RateLimitError::Connect {
                url: shown.clone(),
                source,
            })?;
        Ok(Self {
            backend: Backend::Redis(RedisBackend {
                connection,
                script_sha: redis::Script::new(GCRA_SCRIPT).get_hash().into(),
            }),
            prefix: KEY_PREFIX.into(),
        })
    }

    /// The same limiter writing under another key prefix (tests; several deployments on one
    /// Redis). The default is [`KEY_PREFIX`].
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().into();
        self
    }

    /// `memory` or `redis`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// The key of a budget: the prefix, the class and the subject. A subject that is long or
    /// has characters other than letters, digits and `._@-` (a token's subject may be a URL)
    /// is replaced by `~` and its SHA-256 in hex, so keys stay short and unambiguous.
    pub fn key(&self, class: RouteClass, subject: &str) -> String {
        let plain = !subject.is_empty()
            && subject.len() <= 64
            && subject
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
        if plain {
            format!("{}{}:{}", self.prefix, class, subject)
        } else {
            let digest = Sha256::digest(subject.as_bytes());
            format!("{}{}:~{}", self.prefix, class, hex::encode(digest))
        }
    }

    /// Counts one request of `subject` in `class` against `limit`: allowed requests spend
    /// from the budget, refused ones do not.
    pub async fn check(
        &self,
        class: RouteClass,
        subject: &str,
        limit: RateLimit,
    ) -> Result<Decision, RateLimitError> {
        let gcra = Gcra::new(limit);
        let key = self.key(class, subject);
        let step = match &self.backend {
            Backend::Memory(memory) => memory.step(key, gcra),
            Backend::Redis(redis) => redis.step(&key, gcra).await?,
        };
        Ok(Decision::from_step(limit, &step))
    }
}

/// How often a shard of the in-process map drops its idle budgets.
const MEMORY_SWEEP_EVERY: Duration = Duration::from_secs(10);
const MEMORY_SHARDS: usize = 16;

/// The in-process backend: TATs by key in a sharded map, so that concurrent requests of
/// different callers seldom wait on one lock. A budget whose TAT has passed is whole again,
/// exactly as if it were absent, so sweeping it changes no decision: each shard drops them
/// while it is in use, at most every `sweep_every`, and the map holds only the budgets
/// used within about a window.
struct Memory {
    started: Instant,
    sweep_every: u64,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Default)]
struct Shard {
    tats: HashMap<String, u64>,
    swept_at: u64,
}

impl Memory {
    fn new(sweep_every: Duration) -> Self {
        Self {
            started: Instant::now(),
            sweep_every: u64::try_from(sweep_every.as_micros()).unwrap_or(u64::MAX),
            hasher: RandomState::new(),
            shards: (0..MEMORY_SHARDS)
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn shard_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) % MEMORY_SHARDS as u64) as usize
    }

    fn step(&self, key: String, gcra: Gcra) -> Step {
        // A poisoned lock held plain integers: the map is still consistent.
        let mut shard = self.shards[self.shard_of(&key)]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = self.now();
        if now.saturating_sub(shard.swept_at) >= self.sweep_every {
            shard.tats.retain(|_, tat| *tat > now);
            shard.swept_at = now;
        }
        let step = gcra.step(now, shard.tats.get(&key).copied());
        if let Some(tat) = step.tat {
            shard.tats.insert(key, tat);
        }
        step
    }

    #[cfg(test)]
    fn keys(&self) -> Vec<String> {
        self.shards
            .iter()
            .flat_map(|s| s.lock().map(|s| s.tats.keys().cloned().collect::<Vec<_>>()))
            .flatten()
            .collect()
    }
}

#[derive(Clone)]
struct RedisBackend {
    connection: redis::aio::ConnectionManager,
    script_sha: Arc<str>,
}

impl RedisBackend {
    /// One round trip: `EVALSHA`, and `EVAL` (which also caches the script) when the server
    /// does not know the script yet (first use, a restart, `SCRIPT FLUSH`).
    async fn step(&self, key: &str, gcra: Gcra) -> Result<Step, RateLimitError> {
        let mut connection = self.connection.clone();
        let call = |command: &str, script: &str| {
            let mut cmd = redis::cmd(command);
            cmd.arg(script)
                .arg(1)
                .arg(key)
                .arg(gcra.interval)
                .arg(gcra.tolerance);
            cmd
        };
        let answer: Vec<i64> = match call("EVALSHA", &self.script_sha)
            .query_async(&mut connection)
            .await
        {
            Ok(answer) => answer,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                call("EVAL", GCRA_SCRIPT)
                    .query_async(&mut connection)
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        match answer.as_slice() {
            &[allowed @ (0 | 1), remaining, reset_after, retry_after]
                if remaining >= 0 && reset_after >= 0 && retry_after >= 0 =>
            {
                Ok(Step {
                    allowed: allowed == 1,
                    remaining: remaining as u64,
                    reset_after: reset_after as u64,
                    retry_after: retry_after as u64,
                    tat: None,
                })
            }
            _ => Err(RateLimitError::UnexpectedAnswer(answer)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The middleware

/// The middleware's state: the limiter and the configuration. Mount it after the layer
/// that authenticates (which puts the [`Caller`] in the request's extensions):
///
/// ```ignore
/// let limits = Arc::new(RateLimits::from_config(config.rate_limits).await?);
/// router.layer(axum::middleware::from_fn_with_state(limits, ratelimit::rate_limit))
///       .layer(authentication)   // outer: runs first
/// ```
#[derive(Debug)]
pub struct RateLimits {
    limiter: RateLimiter,
    config: RateLimitConfig,
    /// When the last backend error was logged (seconds since `started`, plus one): during
    /// an outage every request fails, and one warning in [`WARN_EVERY`] is enough.
    warned_at: AtomicU64,
    started: Instant,
}

const WARN_EVERY: Duration = Duration::from_secs(10);

impl RateLimits {
    pub fn new(config: RateLimitConfig, limiter: RateLimiter) -> Self {
        Self {
            limiter,
            config,
            warned_at: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// The limiter the configuration asks for: Redis when it names `redis_url`, else in
    /// this process.
    pub async fn from_config(config: RateLimitConfig) -> Result<Self, RateLimitError> {
        let limiter = match &config.redis_url {
            Some(url) => RateLimiter::redis(url).await?,
            None => RateLimiter::in_memory(),
        };
        Ok(Self::new(config, limiter))
    }

    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    fn warn(&self, class: RouteClass, error: &RateLimitError) {
        let now = self.started.elapsed().as_secs() + 1;
        let last = self.warned_at.load(Ordering::Relaxed);
        if (last == 0 || now >= last + WARN_EVERY.as_secs())
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                %error,
                %class,
                backend = self.limiter.backend_name(),
                policy = ?self.config.on_backend_error,
                "rate limits cannot be checked (further errors in the next {}s are only counted)",
                WARN_EVERY.as_secs()
            );
        }
    }
}

/// The axum middleware (`axum::middleware::from_fn_with_state`): counts the request of the
/// [`Caller`] in the extensions against its class's budget, and lets it through with the
/// `RateLimit-Policy` and `RateLimit` fields, or answers `429`. A request without a caller
/// (not authenticated, or a route such as `/healthz` outside authentication) is not counted.
///
/// Refusals are counted in `carrierhub_rate_limited_total{class,role}`, backend failures in
/// `carrierhub_rate_limit_errors_total{backend}`.
pub async fn rate_limit(
    State(limits): State<Arc<RateLimits>>,
    request: Request,
    next: Next,
) -> Response {
    if !limits.config.enabled {
        return next.run(request).await;
    }
    let Some(caller) = request.extensions().get::<Caller>() else {
        return next.run(request).await;
    };
    let class = classify(request.method(), request.uri().path());
    let limit = limits.config.effective_limit(caller, class);
    let role = caller.role;
    let decision = limits.limiter.check(class, &caller.subject, limit).await;
    match decision {
        Ok(decision) if decision.allowed => {
            let mut response = next.run(request).await;
            set_headers(response.headers_mut(), class, &decision);
            response
        }
        Ok(decision) => {
            metrics::counter!(
                "carrierhub_rate_limited_total",
                "class" => class.as_str(),
                "role" => role.as_str()
            )
            .increment(1);
            too_many_requests(class, &decision)
        }
        Err(error) => {
            metrics::counter!(
                "carrierhub_rate_limit_errors_total",
                "backend" => limits.limiter.backend_name()
            )
            .increment(1);
            limits.warn(class, &error);
            match limits.config.on_backend_error {
                OnBackendError::Allow => next.run(request).await,
                OnBackendError::Deny => unavailable(),
            }
        }
    }
}

/// Whole seconds, rounded up: a client that waits that long is not refused again for
/// having come a fraction of a second early.
fn ceil_secs(d: Duration) -> u64 {
    u64::try_from(d.as_micros().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// `RateLimit-Policy: "reads";q=600;w=60` and `RateLimit: "reads";r=599;t=1`, where `t` is
/// the seconds until the whole quota is available again.
fn set_headers(headers: &mut HeaderMap, class: RouteClass, decision: &Decision) {
    let policy = format!(
        "\"{}\";q={};w={}",
        class, decision.limit.limit, decision.limit.window_secs
    );
    let state = format!(
        "\"{}\";r={};t={}",
        class,
        decision.remaining,
        ceil_secs(decision.reset_after)
    );
    // Digits, letters and quotes only: always valid header values.
    if let (Ok(policy), Ok(state)) = (
        HeaderValue::from_str(&policy),
        HeaderValue::from_str(&state),
    ) {
        headers.insert(RATELIMIT_POLICY, policy);
        headers.insert(RATELIMIT, state);
    }
}

fn too_many_requests(class: RouteClass, decision: &Decision) -> Response {
    let retry_after = ceil_secs(decision.retry_after).max(1);
    let limit = decision.limit;
    let mut response = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests",
        format!(
            "the {class} limit of {} requests per {}s is used up; retry in {retry_after}s",
            limit.limit, limit.window_secs
        ),
    )
    .with("class", class.as_str())
    .with("limit", limit.limit)
    .with("window_secs", limit.window_secs)
    .with("retry_after_secs", retry_after)
    .into_response();
    let headers = response.headers_mut();
    set_headers(headers, class, decision);
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

fn unavailable() -> Response {
    let mut response = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "rate-limits-unavailable",
        "Rate limits unavailable",
        "the rate limit backend does not answer, and requests are refused until it does",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(text: &str) -> RateLimit {
        text.parse().expect("a rate limit")
    }

    #[test]
    fn routes_fall_in_their_classes() {
        use RouteClass::*;
        let cases = [
            (Method::POST, "/v1/carriers/acme/submissions", Uploads),
            (Method::GET, "/v1/carriers/acme/submissions", Reads),
            (Method::POST, "/v1/submissions/42/replay", Uploads),
            (Method::POST, "/v1/mappings/check", Uploads),
            (Method::POST, "/v1/mappings/check/", Uploads),
            (Method::GET, "/v1/query", Queries),
            (Method::POST, "/v1/query", Queries),
            (Method::GET, "/v1/insights/loss-ratio", Queries),
            (Method::GET, "/v1/portfolio", Queries),
            (Method::GET, "/v1/queryx", Reads),
            (Method::GET, "/v1/policies/7", Reads),
            (Method::HEAD, "/v1/policies", Reads),
            (Method::OPTIONS, "/v1/policies", Reads),
            (Method::POST, "/v1/keys", Writes),
            (Method::DELETE, "/v1/keys/abc", Writes),
            (Method::PUT, "/v1/carriers/acme/submissions", Writes),
            (Method::POST, "/v1/carriers/acme/submissions/9", Writes),
            (Method::PATCH, "/v1/submissions/42/replay", Writes),
        ];
        for (method, path, class) in cases {
            assert_eq!(classify(&method, path), class, "{method} {path}");
        }
        assert_eq!("Uploads".parse::<RouteClass>(), Ok(Uploads));
        assert!("bulk".parse::<RouteClass>().is_err());
    }

    #[test]
    fn gcra_allows_a_burst_then_one_request_per_interval() {
        let gcra = Gcra::new(limit("5/1s"));
        assert_eq!((gcra.interval, gcra.tolerance), (200_000, 1_000_000));
        let mut tat = None;
        for remaining in (0..5).rev() {
            let step = gcra.step(1_000, tat);
            assert!(step.allowed);
            assert_eq!(step.remaining, remaining);
            tat = step.tat;
        }
        let refused = gcra.step(1_000, tat);
        assert!(!refused.allowed && refused.tat.is_none());
        assert_eq!(
            (refused.retry_after, refused.reset_after),
            (200_000, 1_000_000)
        );
        // 150 ms later still refused, 200 ms later one more.
        assert!(!gcra.step(151_000, tat).allowed);
        let step = gcra.step(201_000, tat);
        assert!(step.allowed);
        assert_eq!((step.remaining, step.reset_after), (0, 1_000_000));
        // A budget idle for a whole window is whole again.
        let step = gcra.step(5_000_000, step.tat);
        assert_eq!((step.allowed, step.remaining), (true, 4));
    }

    #[test]
    fn gcra_rounds_the_interval_up_and_keeps_the_burst() {
        let gcra = Gcra::new(limit("7/1s"));
        assert_eq!(gcra.interval, 142_858);
        let mut tat = None;
        for _ in 0..7 {
            let step = gcra.step(0, tat);
            assert!(step.allowed);
            tat = step.tat;
        }
        assert!(!gcra.step(0, tat).allowed);
    }

    #[test]
    fn the_role_limit_applies_unless_the_caller_has_its_own() {
        let config: RateLimitConfig = toml::from_str(
            r#"
            [analyst]
            reads = "10/1m"
            "#,
        )
        .expect("config");
        let mut caller = Caller::development();
        caller.role = Role::Analyst;
        assert_eq!(
            config.effective_limit(&caller, RouteClass::Reads),
            limit("10/60s")
        );
        assert_eq!(
            config.effective_limit(&caller, RouteClass::Queries),
            default_limit(Role::Analyst, RouteClass::Queries)
        );
        caller.rate_limits.insert("reads".into(), limit("3/1s"));
        assert_eq!(
            config.effective_limit(&caller, RouteClass::Reads),
            limit("3/1s")
        );
    }

    #[test]
    fn the_configuration_is_checked() {
        let config: RateLimitConfig = toml::from_str(
            r#"
            enabled = false
            on_backend_error = "deny"
            redis_url = "redis://:secret@cache:6379/2"
            [carrier]
            uploads = "5/1h"
            "#,
        )
        .expect("config");
        assert!(!config.enabled);
        assert_eq!(config.on_backend_error, OnBackendError::Deny);
        assert_eq!(
            config.limit(Role::Carrier, RouteClass::Uploads),
            limit("5/1h")
        );
        assert!(!format!("{config:?}").contains("secret"));

        let defaults: RateLimitConfig = toml::from_str("").expect("empty config");
        assert!(defaults.enabled);
        assert_eq!(defaults.on_backend_error, OnBackendError::Allow);
        for role in Role::ALL {
            for class in RouteClass::ALL {
                assert_eq!(defaults.limit(role, class), default_limit(role, class));
            }
        }

        for (bad, expected) in [
            ("[analyst]\nbulk = \"1/1s\"", "unknown field `bulk`"),
            ("[guest]\nreads = \"1/1s\"", "unknown field `guest`"),
            ("[analyst]\nreads = \"fast\"", "is not a rate limit"),
            ("on_backend_error = \"retry\"", "unknown variant `retry`"),
        ] {
            let error = toml::from_str::<RateLimitConfig>(bad)
                .expect_err(bad)
                .to_string();
            assert!(error.contains(expected), "{bad}: {error}");
        }
    }

    #[test]
    fn idle_budgets_are_swept_and_busy_ones_kept() {
        let memory = Memory::new(Duration::ZERO);
        let quick = Gcra::new(limit("1000/1s"));
        for i in 0..100 {
            assert!(memory.step(format!("idle-{i}"), quick).allowed);
        }
        let slow = Gcra::new(limit("1/60s"));
        assert!(memory.step("busy".into(), slow).allowed);
        assert_eq!(memory.keys().len(), 101);
        std::thread::sleep(Duration::from_millis(5));
        // Each shard sweeps when it is next used: use every shard once.
        let mut unused: std::collections::BTreeSet<usize> = (0..MEMORY_SHARDS).collect();
        let mut probes = 0;
        while !unused.is_empty() {
            let key = format!("probe-{probes}");
            unused.remove(&memory.shard_of(&key));
            memory.step(key, slow);
            probes += 1;
        }
        let keys = memory.keys();
        assert!(
            keys.iter().all(|k| !k.starts_with("idle-")),
            "idle budgets left: {keys:?}"
        );
        assert_eq!(keys.len(), probes + 1);
        assert!(
            !memory.step("busy".into(), slow).allowed,
            "sweeping forgot a budget in use"
        );
    }

    #[test]
    fn long_or_unusual_subjects_are_hashed_in_keys() {
        let limiter = RateLimiter::in_memory();
        assert_eq!(
            limiter.key(RouteClass::Reads, "key_abc-1"),
            "carrierhub:rl:reads:key_abc-1"
        );
        let url = limiter.key(RouteClass::Writes, "https://idp.example/users/1");
        assert!(
            url.starts_with("carrierhub:rl:writes:~") && url.len() == 22 + 64,
            "{url}"
        );
        let long = limiter.key(RouteClass::Reads, &"a".repeat(65));
        assert_ne!(long, limiter.key(RouteClass::Reads, &"a".repeat(66)));
        assert_eq!(long.len(), "carrierhub:rl:reads:~".len() + 64);
    }
}
