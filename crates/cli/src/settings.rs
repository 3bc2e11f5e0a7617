//! The settings tree: every setting of every command in one typed structure, read from
//! defaults, then the settings file (`--config FILE` or `CARRIERHUB_CONFIG`), then the
//! environment (`CARRIERHUB_<SECTION>_<KEY>`, and the older names documented before the file
//! existed), then the flags given on the command line. [`specs`] lists every setting with
//! its documentation; `carrierhub config docs` prints it, and docs/configuration.md holds it.

use crate::serve::Role;
use anyhow::{anyhow, bail, Context};
use carrierhub_api::oidc::OidcConfig;
use carrierhub_api::RateLimitConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Every setting. Each section is a table of the settings file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub data: DataSettings,
    pub database: DatabaseSettings,
    pub broker: BrokerSettings,
    pub server: ServerSettings,
    pub gateway: GatewaySettings,
    pub auth: AuthSettings,
    pub rate_limits: RateLimitConfig,
    pub worker: WorkerSettings,
    pub relay: RelaySettings,
    pub webhooks: WebhookSettings,
    pub warehouse: WarehouseSettings,
    pub query: QuerySettings,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    pub traces: TraceSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSettings {
    pub dir: PathBuf,
}

impl Default for DataSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./carrierhub-data"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub migrate: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            migrate: true,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    pub admin_bind: SocketAddr,
    pub roles: Vec<Role>,
    pub max_upload_mib: usize,
    pub idempotency_ttl_hours: u64,
    pub read_cache_entries: usize,
    pub shutdown_grace_secs: u64,
    pub shutdown_delay_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: ([127, 0, 0, 1], 8080).into(),
            admin_bind: ([127, 0, 0, 1], 9090).into(),
            roles: vec![Role::Api, Role::Worker, Role::Relay, Role::Webhooks],
            max_upload_mib: 1024,
            idempotency_ttl_hours: 24,
            read_cache_entries: 10_000,
            shutdown_grace_secs: 30,
            shutdown_delay_secs: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    pub request_timeout_secs: u64,
    pub upload_timeout_secs: u64,
    pub max_body_kib: u64,
    pub compression: bool,
    pub cors_origins: Vec<String>,
    pub cors_allow_credentials: bool,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        use carrierhub_api::gateway;
        Self {
            request_timeout_secs: gateway::DEFAULT_REQUEST_TIMEOUT_SECS,
            upload_timeout_secs: gateway::DEFAULT_UPLOAD_TIMEOUT_SECS,
            max_body_kib: gateway::DEFAULT_MAX_BODY_BYTES as u64 / 1024,
            compression: true,
            cors_origins: Vec::new(),
            cors_allow_credentials: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Accept API keys (`Authorization: Bearer chk_…` or `X-Api-Key`).
    pub api_keys: bool,
    /// How long a key read from the store is trusted before it is read again, in seconds:
    /// the longest a revoked key keeps working.
    pub key_cache_secs: u64,
    /// Accept OIDC bearer tokens of this identity provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcConfig>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            api_keys: false,
            key_cache_secs: 5,
            oidc: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub lease_secs: u64,
    pub max_attempts: u32,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 2,
            lease_secs: 30,
            max_attempts: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySettings {
    pub poll_ms: u64,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self { poll_ms: 200 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    pub allow_private: bool,
    pub timeout_secs: u64,
    pub backoff_ms: u64,
    pub disable_after_secs: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            timeout_secs: 10,
            backoff_ms: 5000,
            disable_after_secs: 86_400,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarehouseSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub interval_ms: u64,
    pub events_per_step: usize,
    pub lease_ms: u64,
}

impl Default for WarehouseSettings {
    fn default() -> Self {
        Self {
            url: None,
            interval_ms: 2000,
            events_per_step: carrierhub_warehouse::writer::EVENTS_PER_STEP,
            lease_ms: carrierhub_warehouse::writer::LEASE_TTL.as_millis() as u64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuerySettings {
    pub memory_mib: usize,
    pub timeout_secs: u64,
    pub max_result_mib: usize,
}

impl Default for QuerySettings {
    fn default() -> Self {
        Self {
            memory_mib: 512,
            timeout_secs: 25,
            max_result_mib: 64,
        }
    }
}

impl QuerySettings {
    pub fn limits(&self) -> carrierhub_warehouse::QueryLimits {
        carrierhub_warehouse::QueryLimits {
            memory_bytes: self.memory_mib.max(1) * 1024 * 1024,
            timeout: std::time::Duration::from_secs(self.timeout_secs.max(1)),
            max_result_bytes: self.max_result_mib.max(1) * 1024 * 1024,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON lines otherwise.
    #[default]
    Auto,
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
    pub modules: BTreeMap<String, String>,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Auto,
            modules: BTreeMap::new(),
        }
    }
}

impl LogSettings {
    /// The `tracing` filter directives: the base level, then one per module.
    pub fn directives(&self, base: &str) -> String {
        let mut out = base.trim().to_owned();
        for (module, level) in &self.modules {
            out.push_str(&format!(",{}={}", module.trim(), level.trim()));
        }
        out
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    pub lag_interval_secs: u64,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            lag_interval_secs: 5,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceSettings {
    pub otlp_endpoint: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The documented list of settings

/// What an environment variable's text becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Bool,
    /// Comma-separated in the environment.
    List,
    /// A table with keys of the user's choosing: the file only.
    Map,
}

/// One setting: its key in the file, how the environment spells it, what it does.
pub struct Spec {
    pub key: String,
    pub kind: Kind,
    /// The name this setting's environment variable had before the settings file; still read
    /// when the `CARRIERHUB_<SECTION>_<KEY>` name is not set.
    pub legacy_env: Option<&'static str>,
    /// The legacy variable means the opposite (`CARRIERHUB_NO_MIGRATE=true` is
    /// `database.migrate = false`).
    pub legacy_inverted: bool,
    /// The flag that overrides it, if any.
    pub flag: Option<&'static str>,
    pub doc: String,
}

impl Spec {
    /// `CARRIERHUB_<SECTION>_<KEY>`, or `None` for tables of free keys.
    pub fn env(&self) -> Option<String> {
        (self.kind != Kind::Map).then(|| {
            format!(
                "CARRIERHUB_{}",
                self.key.replace('.', "_").to_ascii_uppercase()
            )
        })
    }
}

fn spec(key: &str, kind: Kind, flag: Option<&'static str>, doc: &str) -> Spec {
    Spec {
        key: key.to_owned(),
        kind,
        legacy_env: None,
        legacy_inverted: false,
        flag,
        doc: doc.to_owned(),
    }
}

fn legacy(mut spec: Spec, env: &'static str) -> Spec {
    spec.legacy_env = Some(env);
    spec
}

fn legacy_inverted(mut spec: Spec, env: &'static str) -> Spec {
    spec.legacy_env = Some(env);
    spec.legacy_inverted = true;
    spec
}

/// Every setting, in the order of the documentation.
pub fn specs() -> Vec<Spec> {
    use Kind::*;
    let mut all = vec![
        spec("data.dir", Text, Some("--data-dir"),
            "Where the raw documents live, and the SQLite store unless `database.url` is set."),
        spec("database.url", Text, Some("--database-url"),
            "Keep the store in this PostgreSQL database (`postgres://user:password@host:port/db`) instead of SQLite in `data.dir`. Secret: its password is redacted by `config show`."),
        legacy_inverted(spec("database.migrate", Bool, Some("--no-migrate"),
            "Apply the store's pending migrations when `serve` starts. `false`: refuse to start, naming them, if any is pending (apply them with `carrierhub migrate`)."),
            "CARRIERHUB_NO_MIGRATE"),
        spec("broker.url", Text, Some("--broker"),
            "The message broker: `nats://host:port` for NATS JetStream (several processes and machines); unset for the broker embedded in the store's database. Secret: a password in it is redacted."),
        legacy(spec("server.bind", Text, Some("--bind"),
            "Address the API listens on. Port 0 picks a free port (printed on start). Without authentication only a loopback address is allowed."),
            "CARRIERHUB_BIND"),
        legacy(spec("server.admin_bind", Text, Some("--admin-bind"),
            "Where a process without the `api` role serves `/metrics` and `/healthz`."),
            "CARRIERHUB_ADMIN_BIND"),
        legacy(spec("server.roles", List, Some("--role"),
            "The roles of this process: `api`, `worker`, `relay`, `webhooks`, `warehouse` (the warehouse only when named)."),
            "CARRIERHUB_ROLES"),
        legacy(spec("server.max_upload_mib", Integer, Some("--max-upload-mib"),
            "Largest upload accepted, in MiB."),
            "CARRIERHUB_MAX_UPLOAD_MIB"),
        legacy(spec("server.idempotency_ttl_hours", Integer, Some("--idempotency-ttl-hours"),
            "How long an upload's `Idempotency-Key` and its response are kept, in hours (1 to 8760)."),
            "CARRIERHUB_IDEMPOTENCY_TTL_HOURS"),
        legacy(spec("server.read_cache_entries", Integer, Some("--read-cache-entries"),
            "Policies kept in the read cache (0 turns it off)."),
            "CARRIERHUB_READ_CACHE_ENTRIES"),
        legacy(spec("server.shutdown_grace_secs", Integer, Some("--shutdown-grace-secs"),
            "Seconds a shutdown (SIGTERM, Ctrl-C) may take: requests in flight, the workers' batches in hand, the relay's and the webhooks' current step; what still runs then is abandoned (it resumes after the restart). Keep it below the orchestrator's grace period."),
            "CARRIERHUB_SHUTDOWN_GRACE_SECS"),
        legacy(spec("server.shutdown_delay_secs", Integer, Some("--shutdown-delay-secs"),
            "Seconds a shutdown keeps accepting requests while `/readyz` answers 503, before the listener closes: time for load balancers to stop sending requests (within the grace period)."),
            "CARRIERHUB_SHUTDOWN_DELAY_SECS"),
        legacy(spec("gateway.request_timeout_secs", Integer, Some("--request-timeout-secs"),
            "Seconds a request may take before it is answered 503 (uploads and replays: `upload_timeout_secs`)."),
            "CARRIERHUB_REQUEST_TIMEOUT_SECS"),
        legacy(spec("gateway.upload_timeout_secs", Integer, Some("--upload-timeout-secs"),
            "Seconds an upload (its body included) or a replay may take before it is answered 503."),
            "CARRIERHUB_UPLOAD_TIMEOUT_SECS"),
        legacy(spec("gateway.max_body_kib", Integer, Some("--max-body-kib"),
            "Largest request body of the routes that are not uploads, in KiB (1 to 1048576)."),
            "CARRIERHUB_MAX_BODY_KIB"),
        legacy_inverted(spec("gateway.compression", Bool, Some("--no-compression"),
            "Compress responses (gzip or zstd, as the client asks)."),
            "CARRIERHUB_NO_COMPRESSION"),
        legacy(spec("gateway.cors_origins", List, Some("--cors-origin"),
            "Browser origins allowed to call the API (CORS), such as `https://app.example.com`, or `*` for any. Empty: CORS is off."),
            "CARRIERHUB_CORS_ORIGINS"),
        spec("gateway.cors_allow_credentials", Bool, Some("--cors-allow-credentials"),
            "Let browsers send credentials with cross-origin calls; refused with the origin `*`."),
        legacy(spec("auth.api_keys", Bool, Some("--api-keys"),
            "Require API keys (made with `carrierhub keys create`)."),
            "CARRIERHUB_API_KEYS"),
        spec("auth.key_cache_secs", Integer, None,
            "How long a key read from the store is trusted before it is read again, in seconds: the longest a revoked key keeps working."),
        spec("auth.oidc.issuer", Text, None,
            "Accept OIDC bearer tokens of this identity provider: its issuer, exactly as its tokens' `iss` spells it. Setting it turns OIDC on; `audience` and `jwks_url` are then required."),
        spec("auth.oidc.audience", Text, None,
            "This API's audience: a token's `aud` must name it."),
        spec("auth.oidc.jwks_url", Text, None,
            "Where the provider publishes its signing keys (`jwks_uri`); `https`, or `http` on a loopback address only."),
        spec("auth.oidc.leeway_secs", Integer, None,
            "Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds."),
        spec("auth.oidc.algorithms", List, None,
            "The signature algorithms accepted (JOSE names; never `none` nor HMAC)."),
        spec("auth.oidc.jwks_refresh_secs", Integer, None,
            "How long a fetched key set is trusted before it is fetched again, in seconds."),
        spec("auth.oidc.min_refetch_secs", Integer, None,
            "The least time between two fetches caused by unknown key ids, and between retries, in seconds."),
        spec("auth.oidc.subject_claim", Text, None,
            "The claim naming the caller (rate limits, audit log)."),
        spec("auth.oidc.role_claim", Text, None,
            "The claim holding the caller's role: a string or a list; a dotted path reaches into nested claims."),
        spec("auth.oidc.roles", Map, None,
            "Claim values to CarrierHub roles, e.g. `\"hub-admins\" = \"admin\"`. Empty: the values must be role names."),
        spec("auth.oidc.default_role", Text, None,
            "The role of a token that carries none; unset: such a token is refused."),
        spec("auth.oidc.carriers_claim", Text, None,
            "The claim listing the carriers the caller may see (absent: every carrier, except for role `carrier`)."),
        spec("auth.oidc.books_claim", Text, None,
            "The claim listing the books (producer codes) the caller may see (absent: every book)."),
        spec("rate_limits.enabled", Bool, None,
            "Whether requests are rate limited at all."),
        spec("rate_limits.on_backend_error", Text, None,
            "What a request gets when Redis cannot answer: `allow` (served, and counted) or `deny` (503)."),
        legacy(spec("rate_limits.redis_url", Text, Some("--redis-url"),
            "Share the budgets between API replicas through this Redis server (`redis://[:password@]host[:port][/db]`); unset: each process keeps its own. Secret: its password is redacted."),
            "CARRIERHUB_REDIS_URL"),
    ];
    for role in ["admin", "operator", "analyst", "carrier"] {
        for class in ["reads", "writes", "uploads", "queries"] {
            all.push(spec(
                &format!("rate_limits.{role}.{class}"),
                Text,
                None,
                &format!(
                    "The budget of role `{role}` for {class}, `LIMIT/WINDOW` such as `600/60s`, `30/1m`; unset: the default of docs/operations.md."
                ),
            ));
        }
    }
    all.extend([
        spec("worker.concurrency", Integer, Some("--worker-concurrency"),
            "Submissions a worker process works on at once."),
        legacy(spec("worker.lease_secs", Integer, Some("--lease-secs"),
            "Seconds a worker's claim on a submission, and a webhook delivery, hold without a sign of life."),
            "CARRIERHUB_LEASE_SECS"),
        legacy(spec("worker.max_attempts", Integer, Some("--max-attempts"),
            "Claims of a submission before it is given up and dead-lettered."),
            "CARRIERHUB_MAX_ATTEMPTS"),
        spec("relay.poll_ms", Integer, None,
            "Milliseconds between two looks at the outbox when no writer in this process says it changed: the longest other processes' events wait."),
        spec("webhooks.allow_private", Bool, Some("--webhooks-allow-private"),
            "Allow webhooks to private, loopback, link-local and metadata addresses. For development and tests."),
        legacy(spec("webhooks.timeout_secs", Integer, Some("--webhook-timeout-secs"),
            "Seconds one webhook delivery may take (1 to 300)."),
            "CARRIERHUB_WEBHOOK_TIMEOUT_SECS"),
        legacy(spec("webhooks.backoff_ms", Integer, Some("--webhook-backoff-ms"),
            "Milliseconds before a failed delivery's first retry; each further retry waits twice as long (up to an hour), for up to a day."),
            "CARRIERHUB_WEBHOOK_BACKOFF_MS"),
        legacy(spec("webhooks.disable_after_secs", Integer, Some("--webhook-disable-after-secs"),
            "Seconds a webhook's deliveries may all fail before it is disabled (`POST /v1/webhooks/{id}/enable` enables it again)."),
            "CARRIERHUB_WEBHOOK_DISABLE_AFTER_SECS"),
        spec("warehouse.url", Text, Some("--warehouse"),
            "Where the warehouse's Parquet files live: `s3://bucket/prefix` (credentials from `AWS_*`), `gs://bucket/prefix` (`GOOGLE_*`) or a directory; unset: `<data.dir>/warehouse`."),
        spec("warehouse.interval_ms", Integer, Some("--warehouse-interval-ms"),
            "Milliseconds the warehouse role waits between two of its steps."),
        spec("warehouse.events_per_step", Integer, Some("--warehouse-events-per-step"),
            "Change events the warehouse role applies per step at most."),
        spec("warehouse.lease_ms", Integer, Some("--warehouse-lease-ms"),
            "Milliseconds the warehouse role's lease on its location lasts unless renewed: one writer per location at a time; another takes over this long after the holder dies (at least 100)."),
        spec("query.memory_mib", Integer, Some("--query-memory-mib"),
            "Memory one warehouse query may use, in MiB."),
        spec("query.timeout_secs", Integer, Some("--query-timeout-secs"),
            "Seconds one warehouse query may run."),
        spec("query.max_result_mib", Integer, Some("--query-max-result-mib"),
            "Largest answer of one warehouse query, in MiB."),
        spec("log.level", Text, None,
            "The log level of `serve`: `error`, `warn`, `info`, `debug` or `trace` (other commands log warnings only). `CARRIERHUB_LOG` or `RUST_LOG`, when set, replace `level` and `modules`."),
        spec("log.format", Text, Some("--log-format"),
            "`json` (one object per line), `pretty`, or `auto`: pretty on a terminal, JSON otherwise."),
        spec("log.modules", Map, None,
            "Levels per module, e.g. `carrierhub_pipeline = \"debug\"`, `tower_http = \"warn\"`."),
        spec("metrics.lag_interval_secs", Integer, None,
            "Seconds between two readings of the broker's consumer lag (`carrierhub_broker_consumer_lag_messages`)."),
        legacy(spec("traces.otlp_endpoint", Text, Some("--otlp-endpoint"),
            "Export traces over OTLP/HTTP (protobuf) to this collector, such as `http://collector:4318` (spans go to `/v1/traces` under it); unset: no export. Spans follow the log levels (`log.level`), so traces need `info` or finer. `OTEL_SERVICE_NAME` names the service (default `carrierhub`)."),
            "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ]);
    all
}

// ---------------------------------------------------------------------------------------------
// Loading

/// Reads one environment variable.
pub type EnvLookup = dyn Fn(&str) -> Option<String>;

/// Where the settings come from, besides the defaults.
pub struct Sources<'a> {
    pub file: Option<&'a Path>,
    /// The environment's variables; `None` ignores the environment.
    pub env: Option<&'a EnvLookup>,
}

/// The process environment, for [`Sources::env`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Settings {
    /// Defaults, then the file, then the environment; checked (flags come after, with
    /// [`Settings::validate`] again).
    pub fn load(sources: &Sources<'_>) -> anyhow::Result<Self> {
        let mut tree = toml::Table::new();
        if let Some(path) = sources.file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the settings file {}", path.display()))?;
            // Parsed straight from the text first: an error names the line and the key.
            toml::from_str::<Settings>(&text).map_err(|e| {
                anyhow!(
                    "settings file {}: {}",
                    path.display(),
                    e.to_string().trim_end()
                )
            })?;
            tree = toml::from_str(&text)
                .map_err(|e| anyhow!("settings file {}: {e}", path.display()))?;
        }
        let mut from_env: Vec<(String, String)> = Vec::new();
        if let Some(env) = sources.env {
            for spec in specs() {
                let Some(name) = spec.env() else { continue };
                let (name, text, invert) = match env(&name) {
                    Some(text) => (name, text, false),
                    None => match spec
                        .legacy_env
                        .and_then(|legacy| Some((legacy, env(legacy)?)))
                    {
                        Some((legacy, text)) => (legacy.to_owned(), text, spec.legacy_inverted),
                        None => continue,
                    },
                };
                let value = env_value(&spec, &text, invert).map_err(|reason| {
                    anyhow!(
                        "environment variable {name} (setting {}): {reason}",
                        spec.key
                    )
                })?;
                set_path(&mut tree, &spec.key, value);
                from_env.push((spec.key.clone(), name));
            }
        }
        let mut settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(tree))
            .map_err(|e| {
                let path = e.path().to_string();
                let source = from_env
                    .iter()
                    .find(|(key, _)| path.starts_with(key.as_str()) || key.starts_with(&path))
                    .map(|(_, name)| format!(" (from environment variable {name})"))
                    .unwrap_or_default();
                let reason = e.inner().to_string();
                // The value's own error may repeat the key ("in `a.b`"): said once is enough.
                let reason = reason.split("\nin `").next().unwrap_or_default().trim();
                anyhow!("setting {path}{source}: {reason}")
            })?;
        settings.normalise();
        settings.validate()?;
        Ok(settings)
    }

    /// Empty URLs mean none (an environment variable set to the empty string unsets them).
    pub fn normalise(&mut self) {
        for url in [
            &mut self.database.url,
            &mut self.broker.url,
            &mut self.warehouse.url,
            &mut self.rate_limits.redis_url,
        ] {
            if url.as_deref().is_some_and(|u| u.trim().is_empty()) {
                *url = None;
            }
        }
    }

    /// Checks what serde cannot: ranges, URLs, CORS, OIDC, log levels. Each error names the
    /// setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        fn at_least(key: &str, value: u64, min: u64) -> anyhow::Result<()> {
            if value < min {
                bail!("setting {key}: must be at least {min}, not {value}");
            }
            Ok(())
        }
        fn within(key: &str, value: u64, min: u64, max: u64) -> anyhow::Result<()> {
            if !(min..=max).contains(&value) {
                bail!("setting {key}: must be between {min} and {max}, not {value}");
            }
            Ok(())
        }
        if let Some(url) = &self.database.url {
            crate::app::parse_database_url(url).map_err(|_| {
                anyhow!(
                    "setting database.url: '{}' is not a PostgreSQL URL \
                     (postgres://user@host:port/database); unset, the store is SQLite in data.dir",
                    carrierhub_store::redact_url(url)
                )
            })?;
        }
        if self.server.roles.is_empty() {
            bail!("setting server.roles: name at least one role (api, worker, relay, webhooks, warehouse)");
        }
        at_least(
            "server.max_upload_mib",
            self.server.max_upload_mib as u64,
            1,
        )?;
        within(
            "server.idempotency_ttl_hours",
            self.server.idempotency_ttl_hours,
            1,
            24 * 365,
        )?;
        at_least(
            "gateway.request_timeout_secs",
            self.gateway.request_timeout_secs,
            1,
        )?;
        at_least(
            "gateway.upload_timeout_secs",
            self.gateway.upload_timeout_secs,
            1,
        )?;
        within(
            "gateway.max_body_kib",
            self.gateway.max_body_kib,
            1,
            1024 * 1024,
        )?;
        self.gateway_config()
            .validate()
            .map_err(|e| anyhow!("setting gateway: {e}"))?;
        if let Some(oidc) = &self.auth.oidc {
            carrierhub_api::oidc::OidcVerifier::new(oidc.clone())
                .map_err(|e| anyhow!("setting auth.oidc: {e}"))?;
        }
        at_least("worker.concurrency", self.worker.concurrency as u64, 1)?;
        at_least(
            "worker.max_attempts",
            u64::from(self.worker.max_attempts),
            1,
        )?;
        at_least("relay.poll_ms", self.relay.poll_ms, 1)?;
        within("webhooks.timeout_secs", self.webhooks.timeout_secs, 1, 300)?;
        at_least("webhooks.backoff_ms", self.webhooks.backoff_ms, 1)?;
        at_least(
            "webhooks.disable_after_secs",
            self.webhooks.disable_after_secs,
            1,
        )?;
        at_least(
            "warehouse.events_per_step",
            self.warehouse.events_per_step as u64,
            1,
        )?;
        at_least("warehouse.lease_ms", self.warehouse.lease_ms, 100)?;
        at_least(
            "metrics.lag_interval_secs",
            self.metrics.lag_interval_secs,
            1,
        )?;
        const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
        let level_ok = |l: &str| LEVELS.contains(&l.trim().to_ascii_lowercase().as_str());
        if !level_ok(&self.log.level) {
            bail!(
                "setting log.level: '{}' is not a level (off, error, warn, info, debug, trace)",
                self.log.level
            );
        }
        for (module, level) in &self.log.modules {
            if !level_ok(level) {
                bail!(
                    "setting log.modules.{module}: '{level}' is not a level (off, error, warn, \
                     info, debug, trace)"
                );
            }
            if module.is_empty()
                || !module
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == ':')
            {
                bail!("setting log.modules: '{module}' is not a module path (such as carrierhub_pipeline)");
            }
        }
        Ok(())
    }

    /// The API's gateway settings.
    pub fn gateway_config(&self) -> carrierhub_api::GatewayConfig {
        let defaults = carrierhub_api::GatewayConfig::default();
        carrierhub_api::GatewayConfig {
            request_timeout_secs: self.gateway.request_timeout_secs,
            upload_timeout_secs: self.gateway.upload_timeout_secs,
            max_body_bytes: usize::try_from(self.gateway.max_body_kib.saturating_mul(1024))
                .unwrap_or(usize::MAX),
            compression: self.gateway.compression,
            cors: carrierhub_api::CorsConfig {
                allowed_origins: self.gateway.cors_origins.clone(),
                allow_credentials: self.gateway.cors_allow_credentials,
                ..defaults.cors
            },
        }
    }

    /// Where the data lives.
    pub fn location(&self) -> crate::app::Location {
        crate::app::Location {
            data_dir: self.data.dir.clone(),
            database_url: self.database.url.clone(),
            broker_url: self.broker.url.clone(),
            warehouse_url: self.warehouse.url.clone(),
        }
    }

    /// The tree as a TOML value, secrets redacted: passwords in URLs, and any text setting
    /// whose name says secret, password, token or key material.
    pub fn redacted(&self) -> anyhow::Result<toml::Value> {
        let mut value = toml::Value::try_from(self)?;
        redact(&mut value, "");
        Ok(value)
    }
}

/// An environment variable's text as the TOML value its setting takes.
fn env_value(spec: &Spec, text: &str, invert: bool) -> Result<toml::Value, String> {
    Ok(match spec.kind {
        Kind::Text => toml::Value::String(text.to_owned()),
        Kind::Integer => toml::Value::Integer(
            text.trim()
                .parse::<i64>()
                .map_err(|_| format!("'{text}' is not a whole number"))?,
        ),
        Kind::Bool => {
            let value = match text.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "t" | "yes" | "y" | "on" => true,
                "0" | "false" | "f" | "no" | "n" | "off" | "" => false,
                _ => return Err(format!("'{text}' is not true or false")),
            };
            toml::Value::Boolean(value != invert)
        }
        Kind::List => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        Kind::Map => return Err("a table is set in the settings file only".into()),
    })
}

/// Sets `a.b.c` in a table, creating the tables on the way.
fn set_path(tree: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("a key");
    let mut table = tree;
    for part in parts {
        let entry = table
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        table = entry.as_table_mut().expect("a table");
    }
    table.insert(last.to_owned(), value);
}

/// The value shown for a secret.
pub const REDACTED: &str = "***";

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["secret", "password", "token", "private_key", "credential"]
        .iter()
        .any(|word| name.contains(word))
}

fn redact(value: &mut toml::Value, name: &str) {
    match value {
        toml::Value::String(text) => {
            if is_secret_name(name) {
                *text = REDACTED.to_owned();
            } else {
                *text = carrierhub_store::redact_url(text);
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(|v| redact(v, name)),
        toml::Value::Table(table) => {
            for (key, v) in table.iter_mut() {
                redact(v, key);
            }
        }
        _ => {}
    }
}

/// The documentation of every setting as a Markdown table (docs/configuration.md holds it).
pub fn reference_markdown() -> String {
    let mut example = Settings::default();
    example.auth.oidc = Some(OidcConfig::new("", "", ""));
    let defaults = toml::Value::try_from(&example).expect("the defaults serialise");
    let mut out = String::from(
        "| Setting | Default | Environment | Flag | What it does |\n|---|---|---|---|---|\n",
    );
    for spec in specs() {
        let default = spec
            .key
            .split('.')
            .try_fold(&defaults, |v, part| v.get(part))
            .map(|v| match v {
                toml::Value::String(s) if s.is_empty() => "(required)".to_owned(),
                toml::Value::Table(t) if t.is_empty() => "(none)".to_owned(),
                other => format!("`{}`", inline(other)),
            })
            .unwrap_or_else(|| "(unset)".to_owned());
        let env = match (spec.env(), spec.legacy_env) {
            (None, _) => "(file only)".to_owned(),
            (Some(env), None) => format!("`{env}`"),
            (Some(env), Some(legacy)) => format!(
                "`{env}` (or `{legacy}`{})",
                if spec.legacy_inverted {
                    ", the opposite"
                } else {
                    ""
                }
            ),
        };
        let flag = spec
            .flag
            .map(|f| format!("`{f}`"))
            .unwrap_or_else(|| "".to_owned());
        out.push_str(&format!(
            "| `{}` | {default} | {env} | {flag} | {} |\n",
            spec.key,
            spec.doc.replace('|', "\\|")
        ));
    }
    out
}

/// A value as it is written after `key = ` in TOML.
fn inline(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Array(items) => format!(
            "[{}]",
            items.iter().map(inline).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_of_the_tree_is_documented_and_every_documented_setting_exists() {
        let mut full = Settings::default();
        full.database.url = Some("postgres://u@h/db".into());
        full.broker.url = Some("nats://h:4222".into());
        full.warehouse.url = Some("s3://b/p".into());
        full.rate_limits.redis_url = Some("redis://h".into());
        full.traces.otlp_endpoint = Some("http://collector:4318".into());
        let mut oidc = OidcConfig::new("i", "a", "https://j");
        oidc.default_role = Some(carrierhub_store::Role::Analyst);
        full.auth.oidc = Some(oidc);
        for role in [
            &mut full.rate_limits.admin,
            &mut full.rate_limits.operator,
            &mut full.rate_limits.analyst,
            &mut full.rate_limits.carrier,
        ] {
            let limit = Some("1/1s".parse().unwrap());
            role.reads = limit;
            role.writes = limit;
            role.uploads = limit;
            role.queries = limit;
        }
        let tree = toml::Value::try_from(&full).unwrap();
        let mut leaves = Vec::new();
        fn walk(v: &toml::Value, path: String, out: &mut Vec<String>) {
            match v {
                toml::Value::Table(t) if !t.is_empty() || path.is_empty() => {
                    for (k, v) in t {
                        let p = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        walk(v, p, out);
                    }
                }
                _ => out.push(path),
            }
        }
        walk(&tree, String::new(), &mut leaves);
        let documented: Vec<String> = specs().into_iter().map(|s| s.key).collect();
        for leaf in &leaves {
            assert!(documented.contains(leaf), "{leaf} is not documented");
        }
        for key in &documented {
            assert!(
                leaves.contains(key),
                "{key} is documented but not in the tree"
            );
        }
    }

    #[test]
    fn environment_names_are_unique() {
        let mut names: Vec<String> = specs()
            .iter()
            .flat_map(|s| s.env().into_iter().chain(s.legacy_env.map(String::from)))
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
