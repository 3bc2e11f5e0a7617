//! The one place logging is set up: JSON lines for machines, pretty for terminals.

use crate::settings::{LogFormat, LogSettings};
use std::io::IsTerminal;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Levels per module from `[log]` (`level`, then `modules`); `CARRIERHUB_LOG` (or
/// `RUST_LOG`), when set, replaces them. Commands that print their own output log warnings
/// only, with the modules' levels still applied.
pub fn init(log: &LogSettings, quiet: bool) {
    let filter = std::env::var("CARRIERHUB_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .map(EnvFilter::new)
        .unwrap_or_else(|_| {
            let base = if quiet { "warn" } else { log.level.as_str() };
            EnvFilter::new(log.directives(base))
        });
    let json = match log.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // With an OTLP endpoint, the spans are exported too (`traces.rs`).
    if json {
        builder
            .json()
            .flatten_event(true)
            .finish()
            .with(crate::traces::layer())
            .init()
    } else {
        builder
            .compact()
            .finish()
            .with(crate::traces::layer())
            .init()
    }
}
