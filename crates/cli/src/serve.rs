//! `carrierhub serve`: the API, the workers and the outbox relay, in one process by default
//! or split by `--role` over processes and machines that share the store and the broker.

use crate::app::{App, Location};
use crate::settings::Settings;
use anyhow::Context;
use carrierhub_api::gateway::GatewayConfig;
use carrierhub_api::AppState;
use carrierhub_broker::Broker;
use carrierhub_pipeline::{Deliverer, Relay, WebhookConfig, Worker, WorkerConfig, WORKER_GROUP};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// `serve`'s flags. Each one given overrides the settings file and the environment (see
/// docs/configuration.md); one not given leaves the setting as they say.
#[derive(Args, Clone, Debug, Default)]
pub struct ServeFlags {
    /// Address to listen on (`server.bind`, default 127.0.0.1:8080). Port 0 picks a free port
    /// (printed on start).
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    /// The roles of this process, comma-separated (`server.roles`; default: api, worker,
    /// relay, webhooks).
    #[arg(long = "role", value_enum, value_delimiter = ',')]
    pub roles: Vec<Role>,
    /// Do not process submissions in this process (the same as leaving `worker` out of
    /// `--role`).
    #[arg(long)]
    pub no_worker: bool,
    /// Where a process without the `api` role serves `/metrics` and `/healthz`
    /// (`server.admin_bind`, default 127.0.0.1:9090).
    #[arg(long)]
    pub admin_bind: Option<SocketAddr>,
    /// Submissions a worker process works on at once (`worker.concurrency`, default 2).
    #[arg(long)]
    pub worker_concurrency: Option<usize>,
    /// Seconds a worker's claim on a submission, and a delivery, hold without a sign of life;
    /// a worker that dies is replaced after this long (`worker.lease_secs`, default 30).
    #[arg(long)]
    pub lease_secs: Option<u64>,
    /// Claims of a submission before it is given up and dead-lettered (`worker.max_attempts`,
    /// default 10).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Do not apply the store's migrations on start: refuse to start, naming them, if any
    /// is pending (apply them with `carrierhub migrate`). `database.migrate = false`.
    #[arg(
        long,
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0,
        default_missing_value = "true"
    )]
    pub no_migrate: Option<bool>,
    /// Largest upload accepted, in MiB (`server.max_upload_mib`, default 1024).
    #[arg(long)]
    pub max_upload_mib: Option<usize>,
    /// How long an upload's `Idempotency-Key` and its response are kept, in hours: a request
    /// sent again with the key within this time gets the first response
    /// (`server.idempotency_ttl_hours`, default 24).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=24 * 365))]
    pub idempotency_ttl_hours: Option<u64>,
    /// Require API keys (made with `carrierhub keys create`); `auth.api_keys = true`.
    #[arg(
        long,
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0,
        default_missing_value = "true"
    )]
    pub api_keys: Option<bool>,
    /// Share rate limits between API replicas through this Redis server
    /// (`rate_limits.redis_url`).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Policies kept in the read cache, 0 turns it off (`server.read_cache_entries`, default
    /// 10000).
    #[arg(long)]
    pub read_cache_entries: Option<usize>,
    /// Seconds a request may take before it is answered 503; uploads and replays have
    /// `--upload-timeout-secs` (`gateway.request_timeout_secs`, default 30).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_secs: Option<u64>,
    /// Seconds an upload (its body included) or a replay may take before it is answered 503
    /// (`gateway.upload_timeout_secs`, default 600).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub upload_timeout_secs: Option<u64>,
    /// Largest request body of the routes that are not uploads, in KiB; uploads:
    /// `--max-upload-mib` (`gateway.max_body_kib`, default 1024).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024 * 1024))]
    pub max_body_kib: Option<u64>,
    /// Do not compress responses (gzip and zstd otherwise, as the client asks);
    /// `gateway.compression = false`.
    #[arg(
        long,
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0,
        default_missing_value = "true"
    )]
    pub no_compression: Option<bool>,
    /// A browser origin allowed to call the API (CORS), such as https://app.example.com;
    /// repeat it for several, or `*` for any (`gateway.cors_origins`; default none: CORS is
    /// off).
    #[arg(long = "cors-origin", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Let browsers send credentials (cookies, HTTP authentication) with cross-origin calls;
    /// refused with `--cors-origin '*'` (`gateway.cors_allow_credentials`).
    #[arg(long)]
    pub cors_allow_credentials: bool,
    /// Allow webhooks to private, loopback, link-local and metadata addresses (refused
    /// otherwise, when a webhook is created and at every delivery). For development and tests
    /// (`webhooks.allow_private`).
    #[arg(
        long,
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0,
        default_missing_value = "true"
    )]
    pub webhooks_allow_private: Option<bool>,
    /// Seconds one webhook delivery may take; a delivery whose process died is sent again
    /// after this plus 5 seconds (`webhooks.timeout_secs`, default 10).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub webhook_timeout_secs: Option<u64>,
    /// Milliseconds before a failed webhook delivery's first retry; each further retry waits
    /// twice as long, up to an hour, with jitter, for up to a day (`webhooks.backoff_ms`,
    /// default 5000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_backoff_ms: Option<u64>,
    /// Seconds a webhook's deliveries may all fail before it is disabled
    /// (`webhooks.disable_after_secs`, default 86400; `POST /v1/webhooks/{id}/enable` enables
    /// it again).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_disable_after_secs: Option<u64>,
    /// Milliseconds the warehouse role waits between two of its steps, each rewriting the
    /// files of the carriers that changed (`warehouse.interval_ms`, default 2000).
    #[arg(long)]
    pub warehouse_interval_ms: Option<u64>,
    /// Change events the warehouse role applies per step at most
    /// (`warehouse.events_per_step`).
    #[arg(long)]
    pub warehouse_events_per_step: Option<usize>,
    /// Milliseconds the warehouse role's lease on its location lasts unless renewed: one
    /// writer per location at a time; another takes over this long after the holder dies
    /// (`warehouse.lease_ms`, default 30000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(100..))]
    pub warehouse_lease_ms: Option<u64>,
    #[command(flatten)]
    pub query_limits: crate::warehouse::QueryLimitArgs,
    /// Seconds a shutdown (SIGTERM, Ctrl-C) may take: requests in flight, the workers'
    /// batches in hand, the relay's and the webhooks' current step. What is still running
    /// then is abandoned (it resumes elsewhere or after the restart)
    /// (`server.shutdown_grace_secs`, default 30).
    #[arg(long)]
    pub shutdown_grace_secs: Option<u64>,
    /// Seconds a shutdown keeps accepting requests, answering `/readyz` with 503, before the
    /// listener closes: time for load balancers to see it and stop sending requests
    /// (counted within `--shutdown-grace-secs`; `server.shutdown_delay_secs`, default 0).
    #[arg(long)]
    pub shutdown_delay_secs: Option<u64>,
}

impl ServeFlags {
    /// Puts the flags given over the settings.
    pub fn apply(&self, s: &mut Settings) {
        fn set<T: Clone>(slot: &mut T, flag: &Option<T>) {
            if let Some(value) = flag {
                *slot = value.clone();
            }
        }
        set(&mut s.server.bind, &self.bind);
        if !self.roles.is_empty() {
            s.server.roles = self.roles.clone();
        }
        if self.no_worker {
            s.server.roles.retain(|r| *r != Role::Worker);
        }
        set(&mut s.server.admin_bind, &self.admin_bind);
        set(&mut s.worker.concurrency, &self.worker_concurrency);
        set(&mut s.worker.lease_secs, &self.lease_secs);
        set(&mut s.worker.max_attempts, &self.max_attempts);
        if let Some(no) = self.no_migrate {
            s.database.migrate = !no;
        }
        set(&mut s.server.max_upload_mib, &self.max_upload_mib);
        set(
            &mut s.server.idempotency_ttl_hours,
            &self.idempotency_ttl_hours,
        );
        if self.api_keys == Some(true) {
            s.auth.api_keys = true;
        }
        if self.redis_url.is_some() {
            s.rate_limits.redis_url = self.redis_url.clone();
        }
        set(&mut s.server.read_cache_entries, &self.read_cache_entries);
        set(&mut s.server.shutdown_grace_secs, &self.shutdown_grace_secs);
        set(&mut s.server.shutdown_delay_secs, &self.shutdown_delay_secs);
        set(
            &mut s.gateway.request_timeout_secs,
            &self.request_timeout_secs,
        );
        set(
            &mut s.gateway.upload_timeout_secs,
            &self.upload_timeout_secs,
        );
        set(&mut s.gateway.max_body_kib, &self.max_body_kib);
        if let Some(no) = self.no_compression {
            s.gateway.compression = !no;
        }
        if !self.cors_origins.is_empty() {
            s.gateway.cors_origins = self.cors_origins.clone();
        }
        if self.cors_allow_credentials {
            s.gateway.cors_allow_credentials = true;
        }
        set(&mut s.webhooks.allow_private, &self.webhooks_allow_private);
        set(&mut s.webhooks.timeout_secs, &self.webhook_timeout_secs);
        set(&mut s.webhooks.backoff_ms, &self.webhook_backoff_ms);
        set(
            &mut s.webhooks.disable_after_secs,
            &self.webhook_disable_after_secs,
        );
        set(&mut s.warehouse.interval_ms, &self.warehouse_interval_ms);
        set(
            &mut s.warehouse.events_per_step,
            &self.warehouse_events_per_step,
        );
        set(&mut s.warehouse.lease_ms, &self.warehouse_lease_ms);
        self.query_limits.apply(&mut s.query);
    }
}

/// What `serve` runs with, from the settings tree ([`ServeArgs::from_settings`]).
#[derive(Clone)]
pub struct ServeArgs {
    pub bind: SocketAddr,
    pub roles: Vec<Role>,
    pub admin_bind: SocketAddr,
    pub worker_concurrency: usize,
    pub lease_secs: u64,
    pub max_attempts: u32,
    pub no_migrate: bool,
    pub max_upload_mib: usize,
    pub idempotency_ttl_hours: u64,
    pub auth: crate::settings::AuthSettings,
    pub rate_limits: carrierhub_api::RateLimitConfig,
    pub read_cache_entries: usize,
    pub gateway: GatewayConfig,
    pub webhooks_allow_private: bool,
    pub webhook_timeout_secs: u64,
    pub webhook_backoff_ms: u64,
    pub webhook_disable_after_secs: u64,
    pub warehouse_interval_ms: u64,
    pub warehouse_events_per_step: usize,
    pub warehouse_lease_ms: u64,
    pub query_limits: carrierhub_warehouse::QueryLimits,
    pub relay_poll: Duration,
    pub lag_interval: Duration,
    pub shutdown_grace_secs: u64,
    pub shutdown_delay_secs: u64,
}

impl ServeArgs {
    /// The one place `serve` reads the settings.
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            bind: s.server.bind,
            roles: s.server.roles.clone(),
            admin_bind: s.server.admin_bind,
            worker_concurrency: s.worker.concurrency,
            lease_secs: s.worker.lease_secs,
            max_attempts: s.worker.max_attempts,
            no_migrate: !s.database.migrate,
            max_upload_mib: s.server.max_upload_mib,
            idempotency_ttl_hours: s.server.idempotency_ttl_hours,
            auth: s.auth.clone(),
            rate_limits: s.rate_limits.clone(),
            read_cache_entries: s.server.read_cache_entries,
            gateway: s.gateway_config(),
            webhooks_allow_private: s.webhooks.allow_private,
            webhook_timeout_secs: s.webhooks.timeout_secs,
            webhook_backoff_ms: s.webhooks.backoff_ms,
            webhook_disable_after_secs: s.webhooks.disable_after_secs,
            warehouse_interval_ms: s.warehouse.interval_ms,
            warehouse_events_per_step: s.warehouse.events_per_step,
            warehouse_lease_ms: s.warehouse.lease_ms,
            query_limits: s.query.limits(),
            relay_poll: Duration::from_millis(s.relay.poll_ms),
            lag_interval: Duration::from_secs(s.metrics.lag_interval_secs.max(1)),
            shutdown_grace_secs: s.server.shutdown_grace_secs,
            shutdown_delay_secs: s.server.shutdown_delay_secs,
        }
    }

    fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The API's gateway settings, checked.
    pub fn gateway(&self) -> anyhow::Result<GatewayConfig> {
        self.gateway.validate()?;
        Ok(self.gateway.clone())
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
    tracing::info!("shutdown signal received");
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
async fn watch_lag(broker: Arc<dyn Broker>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
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
    // Cancelled by SIGTERM or Ctrl-C: readiness turns false at once, the roles finish what
    // they hold, and the listener closes (after `--shutdown-delay-secs`).
    let stop = CancellationToken::new();
    let pipeline = app
        .pipeline
        .clone()
        .with_lease(lease)
        .with_stop(stop.clone());
    let readiness =
        carrierhub_api::Readiness::new(app.store.clone(), Some(broker.clone()), stop.clone());
    let mut roles_running = tokio::task::JoinSet::new();
    let relay = args
        .has(Role::Relay)
        .then(|| Relay::new(app.store.clone(), broker.clone()).with_poll(args.relay_poll));
    if let Some(relay) = &relay {
        roles_running.spawn(relay.clone().run_until(stop.clone()));
    }
    if args.has(Role::Webhooks) {
        let config = WebhookConfig {
            allow_private: args.webhooks_allow_private,
            timeout: Duration::from_secs(args.webhook_timeout_secs),
            backoff_base: Duration::from_millis(args.webhook_backoff_ms),
            disable_after: Duration::from_secs(args.webhook_disable_after_secs),
            ..WebhookConfig::default()
        };
        let wake = relay.as_ref().map(Relay::subscribe);
        roles_running
            .spawn(Deliverer::new(app.store.clone(), config, wake).run_until(stop.clone()));
    }
    if args.has(Role::Worker) {
        let config = WorkerConfig {
            concurrency: args.worker_concurrency,
            ack_wait: lease,
            max_attempts: args.max_attempts,
            ..WorkerConfig::default()
        };
        roles_running
            .spawn(Worker::new(pipeline.clone(), broker.clone(), config).run_until(stop.clone()));
    }
    if args.has(Role::Warehouse) {
        let writer =
            carrierhub_warehouse::WarehouseWriter::new(app.store.clone(), warehouse.clone())
                .with_events_per_step(args.warehouse_events_per_step)
                .with_lease_ttl(Duration::from_millis(args.warehouse_lease_ms));
        roles_running.spawn(writer.run_until(
            Duration::from_millis(args.warehouse_interval_ms.max(1)),
            stop.clone(),
        ));
    }
    let lag = tokio::spawn(watch_lag(broker.clone(), args.lag_interval));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            stop.cancel();
        });
    }
    // The listener closes once the shutdown began and its delay passed.
    let close_listener = {
        let stop = stop.clone();
        let delay = Duration::from_secs(args.shutdown_delay_secs);
        async move {
            stop.cancelled().await;
            if !delay.is_zero() {
                tracing::info!(
                    ?delay,
                    "draining: /readyz answers 503; still accepting requests"
                );
                tokio::time::sleep(delay).await;
            }
            tracing::info!("draining: no longer accepting connections");
        }
    };
    tokio::spawn(crate::gauges::watch_store(
        app.store.clone(),
        Duration::from_secs(5),
    ));
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
        let auth = auth_of(&args)?;
        let rate_config = args.rate_limits.clone();
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
                args.query_limits.clone(),
            )),
            live: Default::default(),
            readiness: Some(readiness),
        };
        let server = carrierhub_api::serve(listener, state, close_listener);
        drain(server, roles_running, &stop, args.shutdown_grace_secs).await?;
    } else {
        let listener = tokio::net::TcpListener::bind(args.admin_bind)
            .await
            .with_context(|| format!("cannot listen on {}", args.admin_bind))?;
        let addr = listener.local_addr()?;
        println!(
            "CarrierHub {} serving /metrics, /healthz and /readyz on http://{addr}",
            roles.join(",")
        );
        std::io::stdout().flush()?;
        let server = carrierhub_api::serve_admin(listener, render, readiness, close_listener);
        drain(server, roles_running, &stop, args.shutdown_grace_secs).await?;
    }
    lag.abort();
    Ok(())
}

/// Runs `server` until the shutdown, then waits for it to finish the requests in flight and
/// for the roles to finish what they hold, all within `grace_secs` of the signal.
async fn drain(
    server: impl std::future::Future<Output = std::io::Result<()>>,
    mut roles: tokio::task::JoinSet<()>,
    stop: &CancellationToken,
    grace_secs: u64,
) -> anyhow::Result<()> {
    let grace = Duration::from_secs(grace_secs);
    let deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::pin!(deadline);
    tokio::select! {
        served = server => served?,
        _ = &mut deadline => {
            tracing::warn!(?grace, "requests still in flight at the end of the grace period are cut off");
            roles.abort_all();
            return Ok(());
        }
    }
    // The server returns only once the shutdown began (or on an error, returned above).
    tracing::info!("requests drained; waiting for the workers, the relay and the webhooks");
    tokio::select! {
        _ = async { while roles.join_next().await.is_some() {} } => {
            tracing::info!("shut down cleanly");
        }
        _ = &mut deadline => {
            tracing::warn!(
                ?grace,
                "work still running at the end of the grace period is abandoned; it resumes \
                 after the restart or on another process"
            );
            roles.abort_all();
        }
    }
    Ok(())
}

/// Authentication as the flags and the settings file configure it. Without any, development
/// mode, which only a loopback address may serve.
fn auth_of(args: &ServeArgs) -> anyhow::Result<carrierhub_api::Auth> {
    let api_keys = args.auth.api_keys;
    let oidc = args
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
        Duration::from_secs(args.auth.key_cache_secs),
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
