//! `carrierhub serve`: the API and the in-process worker, until Ctrl-C or SIGTERM.

use crate::app::{App, Location};
use anyhow::Context;
use carrierhub_api::AppState;
use carrierhub_pipeline::Worker;
use clap::Args;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port (printed on start).
    #[arg(long, env = "CARRIERHUB_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Do not process submissions in this process (another process's worker will).
    #[arg(long)]
    pub no_worker: bool,
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

/// Starts the worker and serves until a shutdown signal.
pub async fn serve_app(app: App, args: ServeArgs) -> anyhow::Result<()> {
    let worker = (!args.no_worker).then(|| Worker::new(app.pipeline.clone()));
    if let Some(w) = &worker {
        tokio::spawn(w.clone().run());
    }
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let addr = listener.local_addr()?;
    println!("CarrierHub listening on http://{addr}");
    std::io::stdout().flush()?;
    let state = AppState {
        store: app.store,
        pipeline: app.pipeline,
        worker,
        max_upload_bytes: args.max_upload_mib * 1024 * 1024,
        idempotency_ttl: std::time::Duration::from_secs(args.idempotency_ttl_hours * 3600),
    };
    carrierhub_api::serve(listener, state, shutdown_signal()).await?;
    Ok(())
}

pub async fn run(location: &Location, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let app = App::open_with(location, !args.no_migrate).await?;
    tracing::info!(
        store = %location.describe(),
        data_dir = %location.data_dir.display(),
        migrated = !args.no_migrate,
        "store ready"
    );
    serve_app(app, args).await?;
    Ok(ExitCode::SUCCESS)
}
