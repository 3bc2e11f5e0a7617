//! The one place logging is set up: JSON lines for machines, pretty for terminals.

use std::io::IsTerminal;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// `CARRIERHUB_LOG` (or `RUST_LOG`) sets levels per module; commands that print their own
/// output default to warnings only.
pub fn init(format: Option<LogFormat>, quiet: bool) {
    let default = if quiet {
        "warn"
    } else {
        "info,tower_http=info"
    };
    let filter = std::env::var("CARRIERHUB_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .map(EnvFilter::new)
        .unwrap_or_else(|_| EnvFilter::new(default));
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // With an OTLP endpoint, the spans are exported too (`traces.rs`).
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(crate::traces::layer())
            .init(),
        LogFormat::Pretty => builder
            .compact()
            .finish()
            .with(crate::traces::layer())
            .init(),
    }
}
