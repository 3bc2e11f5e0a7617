//! `carrierhub serve`: the API, the workers and the outbox relay, in one process by default
//! or split by `--role` over processes and machines that share the store and the broker.

use crate::app::{App, Location};
use anyhow::Context;
use carrierhub_api::gateway::{self, CorsConfig, GatewayConfig};
use carrierhub_api::AppState;
use carrierhub_broker::Broker;
use carrierhub_pipeline::{Deliverer, Relay, WebhookConfig, Worker, WorkerConfig, WORKER_GROUP};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// What a process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// The HTTP API: receives submissions and serves reads.
    Api,
    /// Processes submissions from the broker.
    Worker,
    /// Publishes the outbox's change events to the broker.
    Relay,
    /// Delivers change events to webhooks.
    Webhooks,
    /// Keeps the warehouse's Parquet tables up to date from the outbox.
    Warehouse,
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port (printed on start).
    #[arg(long, env = "CARRIERHUB_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// The roles of this process, comma-separated (default: all of them).
    #[arg(
        long = "role",
        env = "CARRIERHUB_ROLES",
        value_enum,
        value_delimiter = ',',
        default_values_t = [Role::Api, Role::Worker, Role::Relay, Role::Webhooks]
    )]
    pub roles: Vec<Role>,
    /// Do not process submissions in this process (the same as leaving `worker` out of
    /// `--role`).
    #[arg(long)]
    pub no_worker: bool,
    /// Where a process without the `api` role serves `/metrics` and `/healthz`.
    #[arg(long, env = "CARRIERHUB_ADMIN_BIND", default_value = "127.0.0.1:9090")]
    pub admin_bind: SocketAddr,
    /// Submissions a worker process works on at once.
    #[arg(long, env = "CARRIERHUB_WORKER_CONCURRENCY", default_value_t = 2)]
    pub worker_concurrency: usize,
    /// Seconds a worker's claim on a submission, and a delivery, hold without a sign of life;
    /// a worker that dies is replaced after this long.
    #[arg(long, env = "CARRIERHUB_LEASE_SECS", default_value_t = 30)]
    pub lease_secs: u64,
    /// Claims of a submission before it is given up and dead-lettered.
    #[arg(long, env = "CARRIERHUB_MAX_ATTEMPTS", default_value_t = 10)]
    pub max_attempts: u32,
    /// Do not apply the store's migrations on start: refuse to start, naming them, if any
    /// is pending (apply them with `carrierhub migrate`).
    #[arg(
        long,
        env = "CARRIERHUB_NO_MIGRATE",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
        num_args = 0,
        default_missing_value = "true"
    )]
    pub no_migrate: bool,
    /// Largest upload accepted, in MiB.
    #[arg(long, env = "CARRIERHUB_MAX_UPLOAD_MIB", default_value_t = 1024)]
    pub max_upload_mib: usize,
    /// How long an upload's `Idempotency-Key` and its response are kept, in hours: a request
    /// sent again with the key within this time gets the first response.
    #[arg(
        long,
        env = "CARRIERHUB_IDEMPOTENCY_TTL_HOURS",
        default_value_t = 24,
        value_parser = clap::value_parser!(u64).range(1..=24 * 365)
    )]
    pub idempotency_ttl_hours: u64,
    /// The settings file (TOML): authentication, OIDC, rate limits. See docs/operations.md.
    #[arg(long, env = "CARRIERHUB_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Require API keys (made with `carrierhub keys create`); the same as `api_keys = true`
    /// in the settings file.
    #[arg(
        long,
        env = "CARRIERHUB_API_KEYS",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
        num_args = 0,
        default_missing_value = "true"
    )]
    pub api_keys: bool,
    /// Share rate limits between API replicas through this Redis server.
    #[arg(long, env = "CARRIERHUB_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Policies kept in the read cache (0 turns it off).
    #[arg(long, env = "CARRIERHUB_READ_CACHE_ENTRIES", default_value_t = 10_000)]
    pub read_cache_entries: usize,
    /// Seconds a request may take before it is answered 503 (uploads and replays have
    /// `--upload-timeout-secs`).
    #[arg(
        long,
        env = "CARRIERHUB_REQUEST_TIMEOUT_SECS",
        default_value_t = gateway::DEFAULT_REQUEST_TIMEOUT_SECS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub request_timeout_secs: u64,
    /// Seconds an upload (its body included) or a replay may take before it is answered 503.
    #[arg(
        long,
        env = "CARRIERHUB_UPLOAD_TIMEOUT_SECS",
        default_value_t = gateway::DEFAULT_UPLOAD_TIMEOUT_SECS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub upload_timeout_secs: u64,
    /// Largest request body of the routes that are not uploads, in KiB (uploads:
    /// `--max-upload-mib`).
    #[arg(
        long,
        env = "CARRIERHUB_MAX_BODY_KIB",
        default_value_t = gateway::DEFAULT_MAX_BODY_BYTES as u64 / 1024,
        value_parser = clap::value_parser!(u64).range(1..=1024 * 1024)
    )]
    pub max_body_kib: u64,
    /// Do not compress responses (gzip and zstd otherwise, as the client asks).
    #[arg(
        long,
        env = "CARRIERHUB_NO_COMPRESSION",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
        num_args = 0,
        default_missing_value = "true"
    )]
    pub no_compression: bool,
    /// A browser origin allowed to call the API (CORS), such as https://app.example.com;
    /// repeat it for several, or `*` for any. None (the default): CORS is off.
    #[arg(
        long = "cors-origin",
        env = "CARRIERHUB_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Let browsers send credentials (cookies, HTTP authentication) with cross-origin calls;
    /// refused with `--cors-origin '*'`.
    #[arg(long)]
    pub cors_allow_credentials: bool,
    /// Allow webhooks to private, loopback, link-local and metadata addresses (refused
    /// otherwise, when a webhook is created and at every delivery). For development and tests.
    #[arg(
        long,
        env = "CARRIERHUB_WEBHOOKS_ALLOW_PRIVATE",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
        num_args = 0,
        default_missing_value = "true"
    )]
    pub webhooks_allow_private: bool,
    /// Seconds one webhook delivery may take; a delivery whose process died is sent again
    /// after this plus 5 seconds.
    #[arg(
        long,
        env = "CARRIERHUB_WEBHOOK_TIMEOUT_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub webhook_timeout_secs: u64,
    /// Milliseconds before a failed webhook delivery's first retry; each further retry waits
    /// twice as long (up to an hour, with jitter), for up to a day.
    #[arg(
        long,
        env = "CARRIERHUB_WEBHOOK_BACKOFF_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub webhook_backoff_ms: u64,
    /// Milliseconds the warehouse role waits between two of its steps (each rewrites the
    /// month partitions that changed).
    #[arg(long, env = "CARRIERHUB_WAREHOUSE_INTERVAL_MS", default_value_t = 2000)]
    pub warehouse_interval_ms: u64,
    /// Change events the warehouse role applies per step at most.
    #[arg(long, env = "CARRIERHUB_WAREHOUSE_EVENTS_PER_STEP", default_value_t = carrierhub_warehouse::writer::EVENTS_PER_STEP)]
    pub warehouse_events_per_step: usize,
    /// Milliseconds the warehouse role's lease on its location lasts unless renewed: one
    /// writer per location at a time; another takes over this long after the holder dies.
    #[arg(
        long,
        env = "CARRIERHUB_WAREHOUSE_LEASE_MS",
        default_value_t = carrierhub_warehouse::writer::LEASE_TTL.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(100..)
    )]
    pub warehouse_lease_ms: u64,
    #[command(flatten)]
    pub query_limits: crate::warehouse::QueryLimitArgs,
}

impl ServeArgs {
    fn has(&self, role: Role) -> bool {
        self.roles.contains(&role) && !(role == Role::Worker && self.no_worker)
    }

    /// The API's gateway settings from the flags, the rest at their defaults; checked.
    pub fn gateway(&self) -> anyhow::Result<GatewayConfig> {
        let defaults = GatewayConfig::default();
        let config = GatewayConfig {
            request_timeout_secs: self.request_timeout_secs,
            upload_timeout_secs: self.upload_timeout_secs,
            max_body_bytes: usize::try_from(self.max_body_kib * 1024)?,
            compression: !self.no_compression,
            cors: CorsConfig {
                allowed_origins: self.cors_origins.clone(),
                allow_credentials: self.cors_allow_credentials,
                ..defaults.cors
            },
        };
        config.validate()?;
        Ok(config)
    }
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}

/// The Prometheus recorder of this process; `None` if one was installed already (tests that
/// serve twice in one process).
fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    // Request durations as a histogram (buckets, for quantiles over replicas and alerts on
    // p99); the other timings stay summaries.
    const REQUEST_SECONDS: [f64; 12] = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                "carrierhub_http_request_duration_seconds".to_owned(),
            ),
            &REQUEST_SECONDS,
        )
        .ok()?
        .install_recorder()
        .ok()
}

/// Keeps the broker's consumer lag in a gauge.
async fn watch_lag(broker: Arc<dyn Broker>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    loop {
        ticker.tick().await;
        if let Ok(lag) = broker.lag(WORKER_GROUP).await {
            metrics::gauge!("carrierhub_broker_consumer_lag_messages", "group" => WORKER_GROUP, "state" => "pending")
                .set(lag.pending as f64);
            metrics::gauge!("carrierhub_broker_consumer_lag_messages", "group" => WORKER_GROUP, "state" => "unacknowledged")
                .set(lag.unacknowledged as f64);
        }
    }
}

/// Starts this process's roles and runs until a shutdown signal.
pub async fn serve_app(
    app: App,
    broker: Arc<dyn Broker>,
    warehouse: carrierhub_warehouse::Location,
    args: ServeArgs,
) -> anyhow::Result<()> {
    let gateway = args.gateway()?;
    let metrics = install_metrics();
    let lease = Duration::from_secs(args.lease_secs.max(1));
    let pipeline = app.pipeline.clone().with_lease(lease);
    let relay = args
        .has(Role::Relay)
        .then(|| Relay::new(app.store.clone(), broker.clone()));
    if let Some(relay) = &relay {
        tokio::spawn(relay.clone().run());
    }
    if args.has(Role::Webhooks) {
        let config = WebhookConfig {
            allow_private: args.webhooks_allow_private,
            timeout: Duration::from_secs(args.webhook_timeout_secs),
            backoff_base: Duration::from_millis(args.webhook_backoff_ms),
            ..WebhookConfig::default()
        };
        let wake = relay.as_ref().map(Relay::subscribe);
        tokio::spawn(Deliverer::new(app.store.clone(), config, wake).run());
    }
    if args.has(Role::Worker) {
        let config = WorkerConfig {
            concurrency: args.worker_concurrency,
            ack_wait: lease,
            max_attempts: args.max_attempts,
            ..WorkerConfig::default()
        };
        tokio::spawn(Worker::new(pipeline.clone(), broker.clone(), config).run());
    }
    if args.has(Role::Warehouse) {
        let writer =
            carrierhub_warehouse::WarehouseWriter::new(app.store.clone(), warehouse.clone())
                .with_events_per_step(args.warehouse_events_per_step)
                .with_lease_ttl(Duration::from_millis(args.warehouse_lease_ms));
        tokio::spawn(writer.run(Duration::from_millis(args.warehouse_interval_ms.max(1))));
    }
    tokio::spawn(watch_lag(broker.clone()));
    let roles: Vec<&str> = [
        Role::Api,
        Role::Worker,
        Role::Relay,
        Role::Webhooks,
        Role::Warehouse,
    ]
    .into_iter()
    .filter(|r| args.has(*r))
    .map(|r| match r {
        Role::Api => "api",
        Role::Worker => "worker",
        Role::Relay => "relay",
        Role::Webhooks => "webhooks",
        Role::Warehouse => "warehouse",
    })
    .collect();
    tracing::info!(roles = ?roles, broker = %broker.describe(), "starting");

    let render: Option<carrierhub_api::MetricsRender> =
        metrics.map(|handle| Arc::new(move || handle.render()) as carrierhub_api::MetricsRender);
    if args.has(Role::Api) {
        let config = match &args.config {
            Some(path) => crate::config::Config::load(path)?,
            None => crate::config::Config::default(),
        };
        let auth = auth_of(&args, &config)?;
        let mut rate_config = config.rate_limits;
        if args.redis_url.is_some() {
            rate_config.redis_url = args.redis_url.clone();
        }
        let rate_limits = if rate_config.enabled {
            Some(Arc::new(
                carrierhub_api::RateLimits::from_config(rate_config)
                    .await
                    .context("rate limits")?,
            ))
        } else {
            None
        };
        let listener = tokio::net::TcpListener::bind(args.bind)
            .await
            .with_context(|| format!("cannot listen on {}", args.bind))?;
        let addr = listener.local_addr()?;
        println!("CarrierHub listening on http://{addr}");
        std::io::stdout().flush()?;
        let state = AppState {
            store: app.store,
            pipeline,
            relay,
            metrics: render,
            max_upload_bytes: args.max_upload_mib * 1024 * 1024,
            idempotency_ttl: Duration::from_secs(args.idempotency_ttl_hours * 3600),
            auth,
            cache: carrierhub_api::ReadCache::new(args.read_cache_entries),
            rate_limits,
            gateway,
            webhooks_allow_private: args.webhooks_allow_private,
            query: Some(carrierhub_warehouse::QueryEngine::new(
                warehouse,
                args.query_limits.limits(),
            )),
        };
        carrierhub_api::serve(listener, state, shutdown_signal()).await?;
    } else {
        let listener = tokio::net::TcpListener::bind(args.admin_bind)
            .await
            .with_context(|| format!("cannot listen on {}", args.admin_bind))?;
        let addr = listener.local_addr()?;
        println!(
            "CarrierHub {} serving /metrics on http://{addr}",
            roles.join(",")
        );
        std::io::stdout().flush()?;
        carrierhub_api::serve_admin(listener, render, shutdown_signal()).await?;
    }
    Ok(())
}

/// Authentication as the flags and the settings file configure it. Without any, development
/// mode, which only a loopback address may serve.
fn auth_of(
    args: &ServeArgs,
    config: &crate::config::Config,
) -> anyhow::Result<carrierhub_api::Auth> {
    let api_keys = args.api_keys || config.auth.api_keys;
    let oidc = config
        .auth
        .oidc
        .clone()
        .map(carrierhub_api::oidc::OidcVerifier::new)
        .transpose()
        .context("settings [auth.oidc]")?;
    if !api_keys && oidc.is_none() {
        if !args.bind.ip().is_loopback() {
            anyhow::bail!(
                "refusing to serve on {} without authentication: turn on API keys (--api-keys, \
                 then `carrierhub keys create`) or OIDC ([auth.oidc] in --config), or bind to a \
                 loopback address such as 127.0.0.1",
                args.bind
            );
        }
        tracing::warn!(
            bind = %args.bind,
            "development mode: no authentication is configured, and every request is served as an \
             unrestricted administrator; only loopback clients can connect"
        );
        return Ok(carrierhub_api::Auth::development());
    }
    let auth = carrierhub_api::Auth::enforced(
        api_keys,
        oidc,
        Duration::from_secs(config.auth.key_cache_secs),
    );
    tracing::info!(accepts = %auth.describe(), "authentication required");
    Ok(auth)
}

pub async fn run(location: &Location, args: ServeArgs) -> anyhow::Result<ExitCode> {
    // A setting that cannot work is refused before anything is opened.
    args.gateway()?;
    let app = App::open_with(location, !args.no_migrate).await?;
    tracing::info!(
        store = %location.describe(),
        data_dir = %location.data_dir.display(),
        migrated = !args.no_migrate,
        "store ready"
    );
    let broker = location.open_broker().await?;
    let warehouse = location.warehouse()?;
    serve_app(app, broker, warehouse, args).await?;
    Ok(ExitCode::SUCCESS)
}
